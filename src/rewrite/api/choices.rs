//! Chat Completions and legacy Completions: the text lives in `choices[i]` (`message.content` /
//! `delta.content` for chat, `text` for legacy), and a stream interleaves the choices of `n > 1`,
//! so each choice index gets its own [`Rewriter`].
//!
//! Invariants of the stream: the concatenated text sent for a choice equals the engine's one-shot
//! rewrite of the concatenated upstream text of that choice; the text a choice's rewriter still holds
//! is sent before that choice's `finish_reason` chunk (inside it when the chunk carries text itself,
//! else as a synthesized chunk with the same envelope just before it), and before `[DONE]` or the end
//! of the stream for choices that never finished.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::{may_have_non_null, write_changed, Texts};
use crate::rewrite::sse::{encode, Event};
use crate::rewrite::{Options, Rewriter};

/// Which of the two choice-shaped APIs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// Chat Completions: `message.content`, `delta.content`.
    Chat,
    /// Legacy Completions: `text`.
    Legacy,
}

/// Rewrites the texts of a whole response body; `None` when it has no `choices` array.
pub(super) fn rewrite_json(value: &mut Value, kind: Kind, texts: &mut Texts<'_>) -> Option<()> {
    let choices = value.get_mut("choices")?.as_array_mut()?;
    for choice in choices {
        match kind {
            Kind::Chat => {
                let Some(content) = choice.get_mut("message").and_then(|m| m.get_mut("content"))
                else {
                    continue;
                };
                if let Value::Array(parts) = content {
                    for part in parts {
                        if part.get("type").and_then(Value::as_str) == Some("text") {
                            texts.rewrite(part.get_mut("text"));
                        }
                    }
                } else {
                    texts.rewrite(Some(content));
                }
            }
            Kind::Legacy => texts.rewrite(choice.get_mut("text")),
        }
    }
    Some(())
}

/// The state of one choice-shaped SSE stream.
pub(super) struct Stream {
    kind: Kind,
    opts: Arc<Options>,
    /// The rewriters of the choices that have not finished yet, by choice index.
    choices: BTreeMap<u64, Choice>,
    /// The data of the last chunk with choices, the envelope of chunks synthesized at the end.
    last_chunk: Option<String>,
    /// The `event:` name of that chunk (chat streams have none).
    last_event_type: Option<String>,
    /// Blocks counted by the rewriters of finished choices.
    finished_blocks: usize,
}

struct Choice {
    rewriter: Rewriter,
    /// Whether the choice's chunks carry a `logprobs` key (synthesized chunks then do too).
    logprobs: bool,
}

impl Stream {
    pub(super) fn new(kind: Kind, opts: Arc<Options>) -> Self {
        Stream {
            kind,
            opts,
            choices: BTreeMap::new(),
            last_chunk: None,
            last_event_type: None,
            finished_blocks: 0,
        }
    }

    pub(super) fn blocks(&self) -> usize {
        self.finished_blocks
            + self
                .choices
                .values()
                .map(|c| c.rewriter.blocks())
                .sum::<usize>()
    }

    /// Handles one complete event.
    pub(super) fn event(&mut self, event: Event, out: &mut Vec<u8>) {
        let Some(data) = event.data() else {
            out.extend_from_slice(event.raw());
            return;
        };
        if data.trim() == "[DONE]" {
            self.end(out);
            out.extend_from_slice(event.raw());
            return;
        }
        if !self.may_need(data) {
            out.extend_from_slice(event.raw());
            return;
        }
        let Ok(mut value) = serde_json::from_str::<Value>(data) else {
            out.extend_from_slice(event.raw());
            return;
        };
        let Some(chunk) = value.as_object_mut() else {
            out.extend_from_slice(event.raw());
            return;
        };
        let (changed, flushed) = self.chunk(chunk);
        if chunk
            .get("choices")
            .and_then(Value::as_array)
            .is_some_and(|c| !c.is_empty())
        {
            self.last_chunk = Some(data.to_owned());
            self.last_event_type = event.event_type().map(str::to_owned);
        }
        for (index, text, logprobs) in flushed {
            let synthesized = self.synthesize(chunk, index, text, logprobs);
            write_new(event.event_type(), &synthesized, out);
        }
        if changed {
            write_changed(&event, &value, out);
        } else {
            out.extend_from_slice(event.raw());
        }
    }

    /// The end of the stream (`[DONE]` or EOF): sends what every unfinished choice still holds.
    pub(super) fn end(&mut self, out: &mut Vec<u8>) {
        let choices = std::mem::take(&mut self.choices);
        if choices.is_empty() {
            return;
        }
        let envelope = self
            .last_chunk
            .as_deref()
            .and_then(|data| serde_json::from_str::<Value>(data).ok())
            .and_then(|v| match v {
                Value::Object(map) => Some(map),
                _ => None,
            })
            .unwrap_or_default();
        let event_type = self.last_event_type.clone();
        for (index, mut choice) in choices {
            let mut text = String::new();
            choice.rewriter.finish(&mut text);
            self.finished_blocks += choice.rewriter.blocks();
            if !text.is_empty() {
                let synthesized = self.synthesize(&envelope, index, text, choice.logprobs);
                write_new(event_type.as_deref(), &synthesized, out);
            }
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

    /// Rewrites the texts of one parsed chunk in place. Returns whether anything changed, and the
    /// held text of finishing choices that have no text slot of their own (index, text, logprobs).
    fn chunk(&mut self, chunk: &mut Map<String, Value>) -> (bool, Vec<(u64, String, bool)>) {
        let mut changed = false;
        let mut flushed = Vec::new();
        let Some(choices) = chunk.get_mut("choices").and_then(Value::as_array_mut) else {
            return (changed, flushed);
        };
        for (position, choice) in choices.iter_mut().enumerate() {
            let Some(choice) = choice.as_object_mut() else {
                continue;
            };
            let index = choice
                .get("index")
                .and_then(Value::as_u64)
                .unwrap_or(position as u64);
            let finishing = choice.get("finish_reason").is_some_and(|f| !f.is_null());
            let logprobs = choice.contains_key("logprobs");
            let slot = match self.kind {
                Kind::Chat => choice.get_mut("delta").and_then(|d| d.get_mut("content")),
                Kind::Legacy => choice.get_mut("text"),
            };
            match slot {
                Some(Value::String(text)) => {
                    let state = self.choices.entry(index).or_insert_with(|| Choice {
                        rewriter: Rewriter::new(Arc::clone(&self.opts)),
                        logprobs,
                    });
                    let mut new = String::with_capacity(text.len() + 16);
                    state.rewriter.push(text, &mut new);
                    if finishing {
                        state.rewriter.finish(&mut new);
                    }
                    if new != *text {
                        *text = new;
                        changed = true;
                    }
                }
                _ if finishing => {
                    if let Some(state) = self.choices.get_mut(&index) {
                        let mut held = String::new();
                        state.rewriter.finish(&mut held);
                        if !held.is_empty() {
                            flushed.push((index, held, state.logprobs));
                        }
                    }
                }
                _ => {}
            }
            if finishing {
                if let Some(state) = self.choices.remove(&index) {
                    self.finished_blocks += state.rewriter.blocks();
                }
            }
        }
        (changed, flushed)
    }

    /// A chunk with the envelope of `source` (every top-level field but `choices` and a non-null
    /// `usage`) and one choice carrying `text`, with no finish reason.
    fn synthesize(
        &self,
        source: &Map<String, Value>,
        index: u64,
        text: String,
        logprobs: bool,
    ) -> Value {
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
        if logprobs {
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

/// Appends a synthesized event.
fn write_new(event_type: Option<&str>, value: &Value, out: &mut Vec<u8>) {
    if let Ok(json) = serde_json::to_string(value) {
        encode(event_type, &json, out);
    }
}
