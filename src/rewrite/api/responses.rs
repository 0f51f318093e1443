//! The Responses API: the text lives in `output[].content[]` parts of type `output_text`. In a stream
//! the text arrives as `response.output_text.delta` events, one [`Rewriter`] per content part (keyed
//! by `output_index`/`item_id` and `content_index`), and is repeated whole by
//! `response.output_text.done`, `response.content_part.done`, `response.output_item.done` and the
//! final `response.completed` (or `response.incomplete` / `response.failed`).
//!
//! Invariants of the stream: the concatenated deltas of a part equal the engine's one-shot rewrite of
//! the part's upstream text; every event that repeats the whole text carries exactly that
//! concatenation; the text a part's rewriter still holds goes out as a synthesized delta event just
//! before the first event that repeats the whole text (or at the end of the stream); and
//! `sequence_number` stays strictly increasing, the events after a synthesized one being renumbered.
//! Annotations (`start_index`/`end_index`) are not moved.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::{write_changed, Texts};
use crate::rewrite::sse::{encode, Event};
use crate::rewrite::{rewrite, Options, Rewriter};

/// Rewrites the texts of a whole response body; `None` when it has no `output` array.
pub(super) fn rewrite_json(value: &mut Value, texts: &mut Texts<'_>) -> Option<()> {
    let object = value.as_object_mut()?;
    let output = object.get_mut("output")?.as_array_mut()?;
    for item in output {
        for_each_output_text(item, |_, text| texts.rewrite(Some(text)));
    }
    if let Some(Value::String(joined)) = object.get_mut("output_text") {
        let new = rewrite(texts.opts, joined);
        if new != *joined {
            *joined = new;
            texts.changed = true;
        }
    }
    Some(())
}

/// The state of one Responses SSE stream.
pub(super) struct Stream {
    opts: Arc<Options>,
    parts: Vec<Part>,
    /// How much later upstream sequence numbers are shifted (one per synthesized event).
    offset: u64,
    /// The last sequence number sent.
    last_sent: Option<u64>,
}

/// One `output_text` content part seen in `response.output_text.delta` events.
struct Part {
    output_index: Option<u64>,
    item_id: Option<String>,
    content_index: u64,
    /// `None` once flushed.
    rewriter: Option<Rewriter>,
    /// Blocks counted by rewriters of this part that were flushed.
    blocks: usize,
    /// The concatenated upstream deltas.
    text_in: String,
    /// The concatenated deltas sent.
    text_out: String,
    /// The data and event name of the part's last delta event: the template of a synthesized one.
    template: String,
    template_event: Option<String>,
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
            opts,
            parts: Vec::new(),
            offset: 0,
            last_sent: None,
        }
    }

    pub(super) fn blocks(&self) -> usize {
        self.parts
            .iter()
            .map(|p| p.blocks + p.rewriter.as_ref().map_or(0, Rewriter::blocks))
            .sum()
    }

    /// Handles one complete event.
    pub(super) fn event(&mut self, event: Event, out: &mut Vec<u8>) {
        let Some(data) = event.data() else {
            out.extend_from_slice(event.raw());
            return;
        };
        if self.offset == 0 {
            if let Some(name) = event.event_type() {
                if !WORK_TYPES.contains(&name) {
                    self.note_sent_raw(data);
                    out.extend_from_slice(event.raw());
                    return;
                }
            }
        }
        let Ok(mut value) = serde_json::from_str::<Value>(data) else {
            out.extend_from_slice(event.raw());
            return;
        };
        let Some(object) = value.as_object_mut() else {
            out.extend_from_slice(event.raw());
            return;
        };
        let sequence = object.get("sequence_number").and_then(Value::as_u64);
        let mut changed = match object.get("type").and_then(Value::as_str) {
            Some("response.output_text.delta") => self.delta(object, data, event.event_type()),
            Some("response.output_text.done") => {
                let key = PartKey::of_event(object);
                self.flush(std::slice::from_ref(&key), sequence, out);
                self.set_full_text(&key, object.get_mut("text"))
            }
            Some("response.content_part.done") => {
                let key = PartKey::of_event(object);
                self.flush(std::slice::from_ref(&key), sequence, out);
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
                    Some(item) => self.item(output_index, item, sequence, out),
                    None => false,
                }
            }
            Some("response.completed" | "response.incomplete" | "response.failed") => {
                let all: Vec<PartKey> = self.parts.iter().map(Part::key).collect();
                self.flush(&all, sequence, out);
                let output = object
                    .get_mut("response")
                    .and_then(|r| r.get_mut("output"))
                    .and_then(Value::as_array_mut);
                let mut changed = false;
                for (position, item) in output.into_iter().flatten().enumerate() {
                    changed |= self.item(Some(position as u64), item, sequence, out);
                }
                changed
            }
            _ => false,
        };
        if let Some(sequence) = sequence {
            let renumbered = sequence.saturating_add(self.offset);
            if renumbered != sequence {
                object.insert("sequence_number".to_owned(), Value::from(renumbered));
                changed = true;
            }
            self.last_sent = Some(renumbered);
        }
        if changed {
            write_changed(&event, &value, out);
        } else {
            out.extend_from_slice(event.raw());
        }
    }

    /// The end of the stream: sends what every part still holds.
    pub(super) fn end(&mut self, out: &mut Vec<u8>) {
        let all: Vec<PartKey> = self.parts.iter().map(Part::key).collect();
        self.flush(&all, None, out);
    }

    /// Records the sequence number of an event passed through without parsing it whole.
    fn note_sent_raw(&mut self, data: &str) {
        // Only the position of the number is needed; a full parse is avoided for speed.
        let Some(at) = data.find("\"sequence_number\"") else {
            return;
        };
        let rest = data[at + "\"sequence_number\"".len()..].trim_start();
        let Some(rest) = rest.strip_prefix(':') else {
            return;
        };
        let rest = rest.trim_start();
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if let Ok(n) = rest[..digits].parse() {
            self.last_sent = Some(n);
        }
    }

    /// Feeds a delta to its part's rewriter; returns whether the delta changed.
    fn delta(&mut self, object: &mut Map<String, Value>, data: &str, name: Option<&str>) -> bool {
        let key = PartKey::of_event(object);
        let Some(Value::String(delta)) = object.get_mut("delta") else {
            return false;
        };
        let position = match self.parts.iter().position(|p| key.matches(&p.key())) {
            Some(position) => position,
            None => {
                self.parts.push(Part {
                    output_index: key.output_index,
                    item_id: key.item_id.clone(),
                    content_index: key.content_index,
                    rewriter: None,
                    blocks: 0,
                    text_in: String::new(),
                    text_out: String::new(),
                    template: String::new(),
                    template_event: None,
                });
                self.parts.len() - 1
            }
        };
        let part = &mut self.parts[position];
        let rewriter = part
            .rewriter
            .get_or_insert_with(|| Rewriter::new(Arc::clone(&self.opts)));
        let mut new = String::with_capacity(delta.len() + 16);
        rewriter.push(delta, &mut new);
        part.text_in.push_str(delta);
        part.text_out.push_str(&new);
        part.template.clear();
        part.template.push_str(data);
        part.template_event = name.map(str::to_owned);
        if new != *delta {
            *delta = new;
            true
        } else {
            false
        }
    }

    /// Rewrites the `output_text` parts of a message item; flushes their parts first.
    fn item(
        &mut self,
        output_index: Option<u64>,
        item: &mut Value,
        sequence: Option<u64>,
        out: &mut Vec<u8>,
    ) -> bool {
        let item_id = item.get("id").and_then(Value::as_str).map(str::to_owned);
        let mut keys = Vec::new();
        for_each_output_text(item, |content_index, _| {
            keys.push(PartKey {
                output_index,
                item_id: item_id.clone(),
                content_index,
            });
        });
        self.flush(&keys, sequence, out);
        let mut changed = false;
        for_each_output_text(item, |content_index, text| {
            let key = PartKey {
                output_index,
                item_id: item_id.clone(),
                content_index,
            };
            changed |= self.set_full_text(&key, Some(text));
        });
        changed
    }

    /// Ends the rewriters of the parts matching `keys`, sending held text as synthesized delta
    /// events, numbered before the event whose upstream sequence number is `before`.
    fn flush(&mut self, keys: &[PartKey], before: Option<u64>, out: &mut Vec<u8>) {
        for part in &mut self.parts {
            let Some(mut rewriter) = part.rewriter.take() else {
                continue;
            };
            if !keys.iter().any(|k| k.matches(&part.key())) {
                part.rewriter = Some(rewriter);
                continue;
            }
            let mut held = String::new();
            rewriter.finish(&mut held);
            part.blocks += rewriter.blocks();
            if held.is_empty() {
                continue;
            }
            part.text_out.push_str(&held);
            let Ok(Value::Object(mut template)) = serde_json::from_str::<Value>(&part.template)
            else {
                continue;
            };
            if template.contains_key("sequence_number") {
                let number = match before {
                    Some(s) => Some(s.saturating_add(self.offset)),
                    None => self.last_sent.map(|n| n.saturating_add(1)),
                };
                if let Some(number) = number {
                    template.insert("sequence_number".to_owned(), Value::from(number));
                    self.offset += 1;
                    self.last_sent = Some(number);
                }
            }
            template.insert("delta".to_owned(), Value::String(held));
            if let Some(logprobs) = template.get_mut("logprobs") {
                if logprobs.is_array() {
                    *logprobs = Value::Array(Vec::new());
                }
            }
            if let Ok(json) = serde_json::to_string(&Value::Object(template)) {
                encode(part.template_event.as_deref(), &json, out);
            }
        }
    }

    /// Replaces a whole text that repeats a part: with the deltas sent when it equals the deltas
    /// received, else with its one-shot rewrite. Returns whether it changed.
    fn set_full_text(&self, key: &PartKey, slot: Option<&mut Value>) -> bool {
        let Some(Value::String(text)) = slot else {
            return false;
        };
        let new = match self.parts.iter().find(|p| key.matches(&p.key())) {
            Some(part) if part.rewriter.is_none() && part.text_in == *text => part.text_out.clone(),
            _ => rewrite(&self.opts, text),
        };
        if new != *text {
            *text = new;
            true
        } else {
            false
        }
    }
}

impl Part {
    fn key(&self) -> PartKey {
        PartKey {
            output_index: self.output_index,
            item_id: self.item_id.clone(),
            content_index: self.content_index,
        }
    }
}

/// Which content part an event is about.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PartKey {
    output_index: Option<u64>,
    item_id: Option<String>,
    content_index: u64,
}

impl PartKey {
    fn of_event(object: &Map<String, Value>) -> Self {
        PartKey {
            output_index: object.get("output_index").and_then(Value::as_u64),
            item_id: object
                .get("item_id")
                .and_then(Value::as_str)
                .map(str::to_owned),
            content_index: object
                .get("content_index")
                .and_then(Value::as_u64)
                .unwrap_or(0),
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
