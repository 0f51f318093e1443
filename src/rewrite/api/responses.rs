//! The Responses API: the text lives in `output[].content[]` parts of type `output_text`. In a stream
//! the text arrives as `response.output_text.delta` events, one
//! [`Rewriter`](crate::rewrite::Rewriter) per content part (keyed by `output_index`/`item_id` and
//! `content_index`), and is repeated whole by `response.output_text.done`,
//! `response.content_part.done`, `response.output_item.done` and the final `response.completed` (or
//! `response.incomplete` / `response.failed`).
//!
//! Invariants of the stream: the concatenated deltas of a part equal the engine's one-shot rewrite of
//! the part's upstream text; every event that repeats the whole text carries exactly that
//! concatenation; the text a part's rewriter still holds goes out as a synthesized delta event just
//! before the first event that repeats the whole text (or at the end of the stream); and
//! `sequence_number` stays strictly increasing, the events after a synthesized one being renumbered.
//! Annotations (`start_index`/`end_index`) are not moved.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::hold::{Body, Entry, Hold};
use super::{write_changed, Text};
use crate::rewrite::sse::{encode, Event};
use crate::rewrite::{rewrite, Options};

/// The state of one Responses SSE stream.
pub(super) struct Stream {
    opts: Arc<Options>,
    hold: Hold<PartKey>,
    /// Per open part: the data and event name of its last delta event, the template of a
    /// synthesized one.
    templates: BTreeMap<PartKey, (String, Option<String>)>,
    /// Parts whose rewriter has finished: their upstream and rewritten texts.
    finished: Vec<(PartKey, String, String)>,
    /// How much later upstream sequence numbers are shifted (one per synthesized event).
    offset: u64,
    /// The last sequence number sent.
    last_sent: Option<u64>,
}

/// The event types that can need work when no renumbering is going on.
const WORK_TYPES: [&str; 7] = [
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
    "response.incomplete",
    "response.failed",
];

impl Stream {
    pub(super) fn new(opts: Arc<Options>) -> Self {
        Stream {
            hold: Hold::new(Arc::clone(&opts)),
            opts,
            templates: BTreeMap::new(),
            finished: Vec::new(),
            offset: 0,
            last_sent: None,
        }
    }

    pub(super) fn blocks(&self) -> usize {
        self.hold.blocks()
    }

    /// Handles one complete event.
    pub(super) fn event(&mut self, event: Event, out: &mut Vec<u8>) {
        let Some(data) = event.data() else {
            self.pass(event, None, out);
            return;
        };
        if let Some(name) = event.event_type() {
            if !WORK_TYPES.contains(&name) {
                self.pass(event, None, out);
                return;
            }
        }
        if event.event_type().is_none_or(|t| t == "response.output_text.delta") {
            // The bulk of a stream: read only what the delta needs.
            if let Ok(lite) = serde_json::from_str::<LiteDelta<'_>>(data) {
                if lite.kind.as_deref() == Some("response.output_text.delta") {
                    if let Some(delta) = lite.delta.and_then(|d| d.0) {
                        let key = self.open_key(PartKey {
                            output_index: lite.output_index,
                            item_id: lite.item_id.map(Cow::into_owned),
                            content_index: lite.content_index.unwrap_or(0),
                        });
                        // The template's buffers are reused from the part's last delta.
                        match self.templates.get_mut(&key) {
                            Some((last, event_type)) => {
                                last.clear();
                                last.push_str(data);
                                if event_type.as_deref() != event.event_type() {
                                    *event_type = event.event_type().map(str::to_owned);
                                }
                            }
                            None => {
                                let template =
                                    (data.to_owned(), event.event_type().map(str::to_owned));
                                self.templates.insert(key.clone(), template);
                            }
                        }
                        let text = vec![(key, Cow::Borrowed("/delta"), delta.into_owned())];
                        self.hold.push(event, None, text, &[]);
                        self.drain(out);
                        return;
                    }
                }
            }
        }
        let Ok(mut value) = serde_json::from_str::<Value>(data) else {
            self.pass(event, None, out);
            return;
        };
        let Some(object) = value.as_object_mut() else {
            self.pass(event, None, out);
            return;
        };
        let dirty = match object.get("type").and_then(Value::as_str) {
            Some("response.output_text.done") => {
                let key = PartKey::of_event(object);
                self.finish(|k| key.matches(k));
                self.set_full_text(&key, object.get_mut("text"))
            }
            Some("response.content_part.done") => {
                let key = PartKey::of_event(object);
                self.finish(|k| key.matches(k));
                match object.get_mut("part") {
                    Some(part) if is_output_text(part) => {
                        self.set_full_text(&key, part.get_mut("text"))
                    }
                    _ => false,
                }
            }
            Some("response.output_item.done") => {
                let output_index = object.get("output_index").and_then(Value::as_u64);
                match object.get_mut("item") {
                    Some(item) => self.item(output_index, item),
                    None => false,
                }
            }
            Some("response.completed" | "response.incomplete" | "response.failed") => {
                self.finish(|_| true);
                let output = object
                    .get_mut("response")
                    .and_then(|r| r.get_mut("output"))
                    .and_then(Value::as_array_mut);
                let mut changed = false;
                for (position, item) in output.into_iter().flatten().enumerate() {
                    changed |= self.item(Some(position as u64), item);
                }
                changed
            }
            _ => false,
        };
        self.pass(event, Some((value, dirty)), out);
    }

    /// The end of the stream: sends what every part still holds.
    pub(super) fn end(&mut self, out: &mut Vec<u8>) {
        self.finish(|_| true);
        self.drain(out);
        while let Some(entry) = self.hold.pop_any() {
            self.render(entry, out);
        }
    }

    /// An event with no text of its own (parsed or not, changed or not): written now when nothing
    /// waits and nothing needs renumbering, else queued.
    fn pass(&mut self, event: Event, parsed: Option<(Value, bool)>, out: &mut Vec<u8>) {
        let (value, dirty) = match parsed {
            Some((value, dirty)) => (Some(value), dirty),
            None => (None, false),
        };
        self.hold.push_entry(Entry::upstream(event, value, dirty));
        self.drain(out);
    }

    /// Writes the events that are decided.
    fn drain(&mut self, out: &mut Vec<u8>) {
        while let Some(entry) = self.hold.pop_ready() {
            self.render(entry, out);
        }
    }

    /// Writes a decided event, renumbered: its exact bytes when nothing changed.
    fn render(&mut self, mut entry: Entry, out: &mut Vec<u8>) {
        let mut changed = entry.apply();
        match &entry.body {
            Body::New { event_type } => {
                let Some(Value::Object(mut value)) = entry.value.take() else {
                    return;
                };
                if value.contains_key("sequence_number") {
                    let number = self.last_sent.map_or(0, |n| n.saturating_add(1));
                    value.insert("sequence_number".to_owned(), Value::from(number));
                    self.offset += 1;
                    self.last_sent = Some(number);
                }
                if let Ok(json) = serde_json::to_string(&Value::Object(value)) {
                    encode(event_type.as_deref(), &json, out);
                }
            }
            Body::Upstream(event) => {
                if self.offset == 0 && entry.value.is_none() {
                    if let Some(number) = event.data().and_then(sequence_number_of) {
                        self.last_sent = Some(number);
                    }
                    out.extend_from_slice(event.raw());
                    return;
                }
                if entry.value.is_none() {
                    entry.value = event.data().and_then(|d| serde_json::from_str(d).ok());
                }
                if let Some(Value::Object(object)) = &mut entry.value {
                    if let Some(number) = object.get("sequence_number").and_then(Value::as_u64) {
                        let renumbered = number.saturating_add(self.offset);
                        if renumbered != number {
                            object.insert("sequence_number".to_owned(), Value::from(renumbered));
                            changed = true;
                        }
                        self.last_sent = Some(renumbered);
                    }
                }
                match &entry.value {
                    Some(value) if changed => write_changed(event, value, out),
                    _ => out.extend_from_slice(event.raw()),
                }
            }
        }
    }

    /// The key of the open part `probe` belongs to, or `probe` for a new part.
    fn open_key(&self, probe: PartKey) -> PartKey {
        self.hold.find_key(|k| probe.matches(k)).unwrap_or(probe)
    }

    /// Ends the rewriters of the open parts selected by `which`; held text goes out as a
    /// synthesized delta event queued now (before the event being handled).
    fn finish(&mut self, which: impl Fn(&PartKey) -> bool) {
        for key in self.hold.keys() {
            if !which(&key) {
                continue;
            }
            let Some(finished) = self.hold.finish(&key) else {
                continue;
            };
            let template = self.templates.remove(&key);
            if !finished.leftover.is_empty() {
                if let Some((data, event_type)) = template {
                    if let Ok(Value::Object(mut value)) = serde_json::from_str::<Value>(&data) {
                        value.insert("delta".to_owned(), Value::String(finished.leftover));
                        if let Some(logprobs) = value.get_mut("logprobs") {
                            if logprobs.is_array() {
                                *logprobs = Value::Array(Vec::new());
                            }
                        }
                        let entry = Entry::new_event(event_type, Value::Object(value));
                        self.hold.push_entry(entry);
                    }
                }
            }
            self.finished.push((key, finished.text_in, finished.text_out));
        }
    }

    /// Rewrites the `output_text` parts of a message item; finishes their parts first.
    fn item(&mut self, output_index: Option<u64>, item: &mut Value) -> bool {
        let item_id = item.get("id").and_then(Value::as_str).map(str::to_owned);
        let key_of =
            |content_index| PartKey { output_index, item_id: item_id.clone(), content_index };
        let mut keys = Vec::new();
        for_each_output_text(item, |content_index, _| keys.push(key_of(content_index)));
        self.finish(|k| keys.iter().any(|key| key.matches(k)));
        let mut changed = false;
        for_each_output_text(item, |content_index, text| {
            changed |= self.set_full_text(&key_of(content_index), Some(text));
        });
        changed
    }

    /// Replaces a whole text that repeats a part: with the deltas sent when it equals the deltas
    /// received, else with its one-shot rewrite. Returns whether it changed.
    fn set_full_text(&self, key: &PartKey, slot: Option<&mut Value>) -> bool {
        let Some(Value::String(text)) = slot else {
            return false;
        };
        let streamed =
            self.finished.iter().rev().find(|(k, text_in, _)| key.matches(k) && text_in == text);
        let new = match streamed {
            Some((_, _, text_out)) => text_out.clone(),
            None => rewrite(&self.opts, text),
        };
        if new != *text {
            *text = new;
            true
        } else {
            false
        }
    }
}

/// What is read of a `response.output_text.delta` event.
#[derive(Deserialize)]
struct LiteDelta<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    item_id: Option<Cow<'a, str>>,
    #[serde(default)]
    output_index: Option<u64>,
    #[serde(default)]
    content_index: Option<u64>,
    #[serde(borrow, default)]
    delta: Option<Text<'a>>,
}

/// The value of the first `"sequence_number"` key of a JSON text, read without parsing it whole.
fn sequence_number_of(data: &str) -> Option<u64> {
    let at = data.find("\"sequence_number\"")?;
    let rest = data[at + "\"sequence_number\"".len()..].trim_start();
    let rest = rest.strip_prefix(':')?.trim_start();
    let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    rest[..digits].parse().ok()
}

/// Which content part an event is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct PartKey {
    output_index: Option<u64>,
    item_id: Option<String>,
    content_index: u64,
}

impl PartKey {
    fn of_event(object: &Map<String, Value>) -> Self {
        PartKey {
            output_index: object.get("output_index").and_then(Value::as_u64),
            item_id: object.get("item_id").and_then(Value::as_str).map(str::to_owned),
            content_index: object.get("content_index").and_then(Value::as_u64).unwrap_or(0),
        }
    }

    /// Same content index, and the same output index (or, lacking one, the same item id).
    fn matches(&self, other: &PartKey) -> bool {
        if self.content_index != other.content_index {
            return false;
        }
        match (self.output_index, other.output_index) {
            (Some(a), Some(b)) => a == b,
            _ => match (&self.item_id, &other.item_id) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            },
        }
    }
}

fn is_output_text(part: &Value) -> bool {
    part.get("type").and_then(Value::as_str) == Some("output_text")
}

/// Calls `f(content_index, text)` for every `output_text` part of an output item.
fn for_each_output_text(item: &mut Value, mut f: impl FnMut(u64, &mut Value)) {
    let Some(content) = item.get_mut("content").and_then(Value::as_array_mut) else {
        return;
    };
    for (index, part) in content.iter_mut().enumerate() {
        if is_output_text(part) {
            if let Some(text) = part.get_mut("text") {
                f(index as u64, text);
            }
        }
    }
}
