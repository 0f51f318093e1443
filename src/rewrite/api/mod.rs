//! The OpenAI API shapes: Chat Completions, legacy Completions and Responses, as whole JSON bodies
//! ([`rewrite_json`]) and as SSE streams ([`SseRewriter`]), plus [`restore_request`] on request
//! bodies.
//!
//! - `choices`: Chat Completions and legacy Completions (`choices[i]`, one rewriter per index);
//! - `responses`: the Responses API (`output[].content[]`, one rewriter per content part);
//! - `hold`: the event queue both stream shapes share, which decides what text each event carries;
//! - `restore`: the way back, on the history a client sends;
//! - [`tools`]: the `python` tool, added to a request's `tools` when asked for.
//!
//! Nothing here fails: a body or an event that is not what the endpoint should send passes through
//! untouched, an event is never dropped or reordered, and an event whose text the engine leaves as
//! it was goes out byte-identical (while the engine holds text back, the events carrying it wait, so
//! that a stream without Python comes out byte for byte as it went in). Changed events are
//! re-serialised by `serde_json` with `preserve_order` and `arbitrary_precision`, so key order and
//! numbers are kept; only string escapes may be spelled differently. Whole JSON bodies are not
//! re-serialised at all (`json`): only the rewritten strings are re-encoded, in place, and every
//! other byte goes out as it came. The engine has no "off": with the mode `off` the proxy and the
//! command line do not call it.
//!
//! - `json`: where the text fields of a whole body stand, found in one validating pass.

mod choices;
mod hold;
mod json;
mod responses;
mod restore;
pub mod tools;

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use serde::de::{self, Deserializer, IgnoredAny, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::sse::{Decoder, Event};
use super::{Cells, Options, Rewriter};
pub use tools::{add_python_tool, Tool};

/// The three rewritten routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`
    ChatCompletions,
    /// `POST /v1/completions`
    Completions,
    /// `POST /v1/responses`
    Responses,
}

impl Endpoint {
    /// The endpoint for a path relative to `/v1/` (`chat/completions`, `completions`, `responses`).
    pub fn from_path(rest: &str) -> Option<Self> {
        match rest.trim_end_matches('/') {
            "chat/completions" => Some(Endpoint::ChatCompletions),
            "completions" => Some(Endpoint::Completions),
            "responses" => Some(Endpoint::Responses),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat/completions",
            Endpoint::Completions => "completions",
            Endpoint::Responses => "responses",
        }
    }
}

/// What a rewrite did, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Python blocks rewritten (the sum of [`Rewriter::blocks`] over every text).
    pub blocks_rewritten: usize,
}

/// Rewrites a whole JSON response body. `None` when the body is not JSON of the expected shape or
/// when nothing changed: the caller then forwards the original bytes.
///
/// Chat Completions: every `choices[i].message.content` (a string, or the `text` of its parts of type
/// `text`); Completions: every `choices[i].text`; Responses: the `text` of every `output[].content[]`
/// part of type `output_text` (and a top-level `output_text` string, which some servers add).
///
/// The body is not parsed into a tree: one pass finds (and validates the whole body around) the text
/// strings, only those are decoded and rewritten, and the changed ones are re-encoded and spliced
/// back in; whitespace, escapes, key order, unknown fields and numbers elsewhere stay byte for byte.
pub fn rewrite_json(
    endpoint: Endpoint,
    opts: &Arc<Options>,
    body: &[u8],
) -> Option<(Vec<u8>, Stats)> {
    // A Python block needs a fence: three backticks or tildes in a row.
    if !json_may_spell(body, &[b"```", b"~~~"]) {
        return None;
    }
    // Strict UTF-8 first, as a parse into a tree would insist on: invalid bytes anywhere (not only
    // in the text fields) leave the body alone.
    let body = std::str::from_utf8(body).ok()?;
    let fields = json::find(endpoint, body)?;
    let mut spans: Vec<(Range<usize>, bool)> =
        fields.texts.into_iter().map(|s| (s, true)).collect();
    spans.extend(fields.joined.map(|s| (s, false)));
    spans.sort_by_key(|(span, _)| span.start);
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut blocks = 0;
    for (span, counted) in spans {
        // Decoding fails only on a string that no tree parse would take either (a lone surrogate).
        let text: Cow<'_, str> = serde_json::from_str(&body[span.clone()]).ok()?;
        let mut rewriter = Rewriter::new(Arc::clone(opts));
        let mut new = String::with_capacity(text.len() + 256);
        rewriter.push(&text, &mut new);
        rewriter.finish(&mut new);
        if counted {
            blocks += rewriter.blocks();
        }
        if new == text {
            continue;
        }
        let out = out.get_or_insert_with(|| Vec::with_capacity(body.len() + 1024));
        out.extend_from_slice(&body.as_bytes()[copied..span.start]);
        serde_json::to_writer(&mut *out, &new).ok()?;
        copied = span.end;
    }
    let mut out = out?;
    out.extend_from_slice(&body.as_bytes()[copied..]);
    Some((out, Stats { blocks_rewritten: blocks }))
}

/// Whether a JSON text can decode to strings holding one of `needles` (ASCII): only if a needle stands
/// in it literally, or an escape of an ASCII character (`\u00..`) could spell it. Bodies that cannot
/// are not parsed at all.
pub(super) fn json_may_spell(body: &[u8], needles: &[&[u8]]) -> bool {
    needles.iter().any(|n| memchr::memmem::find(body, n).is_some())
        || memchr::memmem::find(body, b"\\u00").is_some()
}

/// Rewrites an SSE response stream event by event, as bytes arrive.
///
/// Events are cut with the [`sse`](super::sse) decoder; each complete event is handed to the
/// endpoint's state machine, which appends to the output either the event's exact bytes or the event
/// with new data, possibly preceded by synthesized events that carry text the engine held back. An
/// event whose text the engine still holds waits (and the events after it too) until the engine's
/// output decides it. The bytes of an unterminated event at the end of the stream pass through
/// unchanged, after the held text has been flushed.
pub struct SseRewriter {
    endpoint: Endpoint,
    state: State,
    decoder: Decoder,
    events: Vec<Event>,
}

impl SseRewriter {
    pub fn new(endpoint: Endpoint, opts: Arc<Options>) -> Self {
        let state = match endpoint {
            Endpoint::ChatCompletions => {
                State::Choices(choices::Stream::new(choices::Kind::Chat, opts))
            }
            Endpoint::Completions => {
                State::Choices(choices::Stream::new(choices::Kind::Legacy, opts))
            }
            Endpoint::Responses => State::Responses(responses::Stream::new(opts)),
        };
        SseRewriter { endpoint, state, decoder: Decoder::new(), events: Vec::new() }
    }

    /// Feeds bytes from the upstream; appends to `out` the bytes to send to the client now: whole
    /// events only (the bytes of an event not yet ended wait in the decoder), so a stream cut after
    /// any push is cut between events.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        self.decoder.push(chunk, &mut self.events);
        self.drain_events(out);
    }

    /// The upstream stream ended; appends whatever is still held, the bytes of an unfinished last
    /// event included.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if let Some(event) = self.end(out) {
            out.extend_from_slice(event.raw());
        }
    }

    /// The upstream stream broke off: appends the text still held, as [`SseRewriter::finish`] does,
    /// but not the unfinished event the stream ended in (a client's parser would drop it anyway).
    /// Returns how many bytes that event had.
    pub fn finish_broken(&mut self, out: &mut Vec<u8>) -> usize {
        self.end(out).map_or(0, |event| event.raw().len())
    }

    /// Flushes the decoder and the held text; hands back the unfinished last event, if any.
    fn end(&mut self, out: &mut Vec<u8>) -> Option<Event> {
        self.decoder.finish(&mut self.events);
        let trailing = match self.events.last() {
            Some(event) if !event.is_complete() => self.events.pop(),
            _ => None,
        };
        self.drain_events(out);
        match &mut self.state {
            State::Choices(stream) => stream.end(out),
            State::Responses(stream) => stream.end(out),
        }
        trailing
    }

    pub fn stats(&self) -> Stats {
        let blocks_rewritten = match &self.state {
            State::Choices(stream) => stream.blocks(),
            State::Responses(stream) => stream.blocks(),
        };
        Stats { blocks_rewritten }
    }

    fn drain_events(&mut self, out: &mut Vec<u8>) {
        for event in self.events.drain(..) {
            match &mut self.state {
                State::Choices(stream) => stream.event(event, out),
                State::Responses(stream) => stream.event(event, out),
            }
        }
    }
}

impl fmt::Debug for SseRewriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseRewriter")
            .field("endpoint", &self.endpoint)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Restores earlier rewritten answers in a request body (chat `messages[]` with role `assistant`,
/// Responses `input[]` assistant items, legacy `prompt`). `None` when the body is not JSON or nothing
/// was restored: the caller then forwards the original bytes. The count is the number of texts in
/// which replacements were undone. Only links signed with `opts.link_key` for `opts.public_url` are
/// restored, and at most `budget` bytes of hidden markdown in all (the server gives
/// `request_body_limit`).
pub fn restore_request(
    endpoint: Endpoint,
    opts: &Options,
    body: &[u8],
    budget: usize,
) -> Option<(Vec<u8>, usize)> {
    restore::restore_request(endpoint, opts, body, budget)
}

/// [`restore_request`], also collecting into `cells` the Python blocks of the history's assistant
/// texts (chat `messages[]`, Responses `input[]`), oldest first, as `opts` would rewrite them and
/// within its budget: the conversation context, which the answer's rewriters get as
/// [`Options::history`]. A body that holds no fence and no replacement is not even parsed.
pub fn restore_request_with_cells(
    endpoint: Endpoint,
    opts: &Arc<Options>,
    body: &[u8],
    budget: usize,
    cells: &mut Cells,
) -> Option<(Vec<u8>, usize)> {
    restore::restore_request_collecting(endpoint, opts, body, budget, Some((opts, cells)))
}

/// The per-endpoint stream state.
enum State {
    Choices(choices::Stream),
    Responses(responses::Stream),
}

/// A text field: the string when it is one, `None` for any other JSON value.
struct Text<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Owned(v))))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Text(None))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Text(None))
            }
        }
        deserializer.deserialize_any(Visit)
    }
}

/// For `deserialize_with`: the field is there (whatever its value).
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    IgnoredAny::deserialize(deserializer).map(|_| true)
}

/// The event with `value` as its new data, re-serialised.
fn write_changed(event: &Event, value: &Value, out: &mut Vec<u8>) {
    match serde_json::to_string(value) {
        Ok(json) => event.write_with_data(&json, out),
        // Serialising a `Value` cannot fail; should it ever, the original event is kept.
        Err(_) => out.extend_from_slice(event.raw()),
    }
}

/// Whether `json` may hold the key `key` with a value other than `null`. Cheap and conservative: any
/// `\u` escape (which could spell a key) answers yes.
fn may_have_non_null(json: &str, key: &str) -> bool {
    if json.contains("\\u") {
        return true;
    }
    let mut rest = json;
    while let Some(at) = rest.find(key) {
        rest = &rest[at + key.len()..];
        let after = rest.trim_start();
        if let Some(value) = after.strip_prefix(':') {
            if !value.trim_start().starts_with("null") {
                return true;
            }
        }
    }
    false
}
