//! Chat Completions and legacy Completions: the text lives in `choices[i]` (`message.content` /
//! `delta.content` for chat, `text` for legacy), and a stream interleaves the choices of `n > 1`,
//! so each choice index gets its own [`Rewriter`](crate::rewrite::Rewriter).
//!
//! Invariants of the stream: the concatenated text sent for a choice equals the engine's one-shot
//! rewrite of the concatenated upstream text of that choice; events keep their order and go out
//! byte-identical unless their text changed (see [`super::hold`]); the text a choice's rewriter
//! still holds is sent before that choice's `finish_reason` chunk (inside it when the chunk carries
//! text itself, else as a synthesized chunk with the same envelope just before it), and before
//! `[DONE]` or the end of the stream for choices that never finished.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::hold::{Body, Entry, Hold};
use super::{may_have_non_null, present, write_changed, Text};
use crate::rewrite::sse::{encode, Event};
use crate::rewrite::Options;

/// Which of the two choice-shaped APIs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// Chat Completions: `message.content`, `delta.content`.
    Chat,
    /// Legacy Completions: `text`.
    Legacy,
}

/// The state of one choice-shaped SSE stream.
pub(super) struct Stream {
    kind: Kind,
    hold: Hold<u64>,
    /// Whether each choice's chunks carry a `logprobs` key (synthesized chunks then do too).
    logprobs: BTreeMap<u64, bool>,
    /// The data of the last chunk with choices, the envelope of chunks synthesized at the end.
    last_chunk: Option<String>,
    /// The `event:` name of that chunk (chat streams have none).
    last_event_type: Option<String>,
}

impl Stream {
    pub(super) fn new(kind: Kind, opts: Arc<Options>) -> Self {
        Stream {
            kind,
            hold: Hold::new(opts),
            logprobs: BTreeMap::new(),
            last_chunk: None,
            last_event_type: None,
        }
    }

    pub(super) fn blocks(&self) -> usize {
        self.hold.blocks()
    }

    /// Handles one complete event.
    pub(super) fn event(&mut self, event: Event, out: &mut Vec<u8>) {
        let Some(data) = event.data() else {
            self.pass(event, out);
            return;
        };
        if data.trim() == "[DONE]" {
            self.finish_all();
            self.pass(event, out);
            self.drain(out);
            return;
        }
        if !self.may_need(data) {
            self.pass(event, out);
            return;
        }
        // Only what decides the work is read here; the whole value is parsed only for an event
        // whose text changes.
        let Ok(chunk) = serde_json::from_str::<LiteChunk<'_>>(data) else {
            self.pass(event, out);
            return;
        };
        let Some(choices) = chunk.choices else {
            self.pass(event, out);
            return;
        };
        let mut texts = Vec::new();
        let mut finishing = Vec::new();
        let mut finishing_bare = Vec::new();
        for (position, choice) in choices.iter().enumerate() {
            let index = choice.index.unwrap_or(position as u64);
            let finishes = choice.finish_reason.is_some();
            let text = match self.kind {
                Kind::Chat => choice.delta.as_ref().and_then(|d| d.content.as_ref()),
                Kind::Legacy => choice.text.as_ref(),
            };
            match text.and_then(|t| t.0.as_deref()) {
                Some(text) => {
                    let pointer = match (self.kind, position) {
                        (Kind::Chat, 0) => Cow::Borrowed("/choices/0/delta/content"),
                        (Kind::Legacy, 0) => Cow::Borrowed("/choices/0/text"),
                        (Kind::Chat, _) => Cow::Owned(format!("/choices/{position}/delta/content")),
                        (Kind::Legacy, _) => Cow::Owned(format!("/choices/{position}/text")),
                    };
                    self.logprobs.entry(index).or_insert(choice.logprobs);
                    texts.push((index, pointer, text.to_owned()));
                    if finishes {
                        finishing.push(index);
                    }
                }
                None if finishes => finishing_bare.push(index),
                None => {}
            }
        }
        if !choices.is_empty() {
            // The buffers are reused: no allocation per event once they are large enough.
            let last = self.last_chunk.get_or_insert_with(String::new);
            last.clear();
            last.push_str(data);
            if self.last_event_type.as_deref() != event.event_type() {
                self.last_event_type = event.event_type().map(str::to_owned);
            }
        }
        if finishing_bare.iter().any(|i| self.hold.has(i)) {
            let envelope = envelope_of(data);
            for index in finishing_bare {
                if let Some(finished) = self.hold.finish(&index) {
                    if !finished.leftover.is_empty() {
                        let synthesized = self.synthesize(&envelope, index, finished.leftover);
                        let event_type = event.event_type().map(str::to_owned);
                        self.hold.push_entry(Entry::new_event(event_type, synthesized));
                    }
                }
            }
        }
        if texts.is_empty() {
            self.pass(event, out);
        } else {
            self.hold.push(event, None, texts, &finishing);
        }
        self.drain(out);
    }

    /// The end of the stream (EOF): sends what every unfinished choice still holds.
    pub(super) fn end(&mut self, out: &mut Vec<u8>) {
        self.finish_all();
        self.drain(out);
        while let Some(entry) = self.hold.pop_any() {
            render(entry, out);
        }
    }

    /// Ends every choice still open (at `[DONE]` or the end of the stream); their held text goes
    /// out in chunks with the envelope of the last chunk.
    fn finish_all(&mut self) {
        let keys = self.hold.keys();
        if keys.is_empty() {
            return;
        }
        let envelope = self.last_chunk.as_deref().map(envelope_of).unwrap_or_default();
        for index in keys {
            if let Some(finished) = self.hold.finish(&index) {
                if !finished.leftover.is_empty() {
                    let synthesized = self.synthesize(&envelope, index, finished.leftover);
                    let entry = Entry::new_event(self.last_event_type.clone(), synthesized);
                    self.hold.push_entry(entry);
                }
            }
        }
    }

    /// An event that needs no change: written now, or queued behind waiting events.
    fn pass(&mut self, event: Event, out: &mut Vec<u8>) {
        if self.hold.is_idle() {
            out.extend_from_slice(event.raw());
        } else {
            self.hold.push_entry(Entry::upstream(event, None, false));
        }
    }

    /// Writes the events that are decided.
    fn drain(&mut self, out: &mut Vec<u8>) {
        while let Some(entry) = self.hold.pop_ready() {
            render(entry, out);
        }
    }

    /// Whether a chunk's data may carry text or a finish reason (the only things that need work).
    fn may_need(&self, data: &str) -> bool {
        let text_key = match self.kind {
            Kind::Chat => "\"content\"",
            Kind::Legacy => "\"text\"",
        };
        data.contains(text_key) || may_have_non_null(data, "\"finish_reason\"")
    }

    /// A chunk with the envelope of `source` (every top-level field but `choices` and a non-null
    /// `usage`) and one choice carrying `text`, with no finish reason.
    fn synthesize(&self, source: &Map<String, Value>, index: u64, text: String) -> Value {
        let mut choice = Map::new();
        match self.kind {
            Kind::Chat => {
                choice.insert("index".to_owned(), Value::from(index));
                let mut delta = Map::new();
                delta.insert("content".to_owned(), Value::String(text));
                choice.insert("delta".to_owned(), Value::Object(delta));
            }
            Kind::Legacy => {
                choice.insert("text".to_owned(), Value::String(text));
                choice.insert("index".to_owned(), Value::from(index));
            }
        }
        if self.logprobs.get(&index).copied().unwrap_or(false) {
            choice.insert("logprobs".to_owned(), Value::Null);
        }
        choice.insert("finish_reason".to_owned(), Value::Null);
        let choices = Value::Array(vec![Value::Object(choice)]);
        let mut chunk = Map::new();
        let mut choices = Some(choices);
        for (key, value) in source {
            match key.as_str() {
                "choices" => {
                    if let Some(choices) = choices.take() {
                        chunk.insert(key.clone(), choices);
                    }
                }
                "usage" if !value.is_null() => {}
                _ => {
                    chunk.insert(key.clone(), value.clone());
                }
            }
        }
        if let Some(choices) = choices {
            chunk.insert("choices".to_owned(), choices);
        }
        Value::Object(chunk)
    }
}

/// The top-level fields of a chunk (empty when it is not a JSON object).
fn envelope_of(data: &str) -> Map<String, Value> {
    match serde_json::from_str::<Value>(data) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// What is read of every chunk that may need work.
#[derive(Deserialize)]
struct LiteChunk<'a> {
    #[serde(borrow, default)]
    choices: Option<Vec<LiteChoice<'a>>>,
}

#[derive(Deserialize)]
struct LiteChoice<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(borrow, default)]
    delta: Option<LiteDelta<'a>>,
    #[serde(borrow, default)]
    text: Option<Text<'a>>,
    /// Present and not `null`.
    #[serde(default)]
    finish_reason: Option<IgnoredAny>,
    /// Present, even as `null`.
    #[serde(default, deserialize_with = "present")]
    logprobs: bool,
}

#[derive(Deserialize)]
struct LiteDelta<'a> {
    #[serde(borrow, default)]
    content: Option<Text<'a>>,
}

/// Writes a decided event: its exact bytes when nothing changed.
fn render(mut entry: Entry, out: &mut Vec<u8>) {
    let changed = entry.apply();
    match (&entry.body, &entry.value) {
        (Body::Upstream(event), Some(value)) if changed => write_changed(event, value, out),
        (Body::Upstream(event), _) => out.extend_from_slice(event.raw()),
        (Body::New { event_type }, Some(value)) => write_new(event_type.as_deref(), value, out),
        (Body::New { .. }, None) => {}
    }
}

/// Appends a synthesized event.
fn write_new(event_type: Option<&str>, value: &Value, out: &mut Vec<u8>) {
    if let Ok(json) = serde_json::to_string(value) {
        encode(event_type, &json, out);
    }
}
