//! The event queue shared by the stream shapes: it feeds the texts of events (content deltas) to one
//! [`Rewriter`] per text (a choice, a content part) and decides what each event carries.
//!
//! An event whose text the engine passes on as it came goes out byte-identical. While the engine
//! holds back the start of a text (a line that might open a fence, a Python block whose replacement
//! is not decided yet), the event carrying it waits, and every later event waits behind it so that
//! the order of events never changes. When the engine's output catches up with the held texts, the
//! waiting events go out unchanged; when it differs from them (a block was rewritten), the output
//! produced so far goes into the first waiting event of that text and the other waiting events of
//! that text get an empty text (they are still sent). The concatenated texts of a key's events (and
//! of any event the caller synthesizes from [`Hold::finish`]'s leftover) always equal the
//! concatenated output of its rewriter: nothing is lost, duplicated or moved between keys.

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::Value;

use crate::rewrite::sse::Event;
use crate::rewrite::{Options, Rewriter};

/// One queued event.
pub(super) struct Entry {
    pub(super) body: Body,
    /// The parsed data, when the event was parsed.
    pub(super) value: Option<Value>,
    /// The texts of the event that go through rewriters.
    segments: Vec<Segment>,
    /// Whether the caller changed `value` beyond the segments.
    pub(super) dirty: bool,
}

pub(super) enum Body {
    /// An upstream event.
    Upstream(Event),
    /// An event made here (`value` holds its data).
    New { event_type: Option<String> },
}

struct Segment {
    /// A JSON pointer to the text in the entry's value (a constant for the usual places).
    pointer: Cow<'static, str>,
    original: String,
    resolved: Option<Resolved>,
}

/// What a segment's text was decided to be.
enum Resolved {
    /// Its original text (nothing copied: the usual case).
    Same,
    New(String),
}

impl Entry {
    /// An upstream event that waits for nothing of its own.
    pub(super) fn upstream(event: Event, value: Option<Value>, dirty: bool) -> Self {
        Entry { body: Body::Upstream(event), value, segments: Vec::new(), dirty }
    }

    /// An event made here.
    pub(super) fn new_event(event_type: Option<String>, value: Value) -> Self {
        Entry {
            body: Body::New { event_type },
            value: Some(value),
            segments: Vec::new(),
            dirty: true,
        }
    }

    fn is_ready(&self) -> bool {
        self.segments.iter().all(|s| s.resolved.is_some())
    }

    /// Puts the decided texts into the value (parsing the upstream data if it was not parsed
    /// yet); returns whether the value now differs from the upstream data.
    pub(super) fn apply(&mut self) -> bool {
        let mut changed = self.dirty;
        let differs = self
            .segments
            .iter()
            .any(|s| matches!(&s.resolved, Some(Resolved::New(r)) if *r != s.original));
        if !differs {
            return changed;
        }
        if self.value.is_none() {
            if let Body::Upstream(event) = &self.body {
                self.value = event.data().and_then(|d| serde_json::from_str(d).ok());
            }
        }
        if let Some(value) = &mut self.value {
            for segment in &mut self.segments {
                let Some(Resolved::New(resolved)) = segment.resolved.take() else {
                    continue;
                };
                if resolved != segment.original {
                    if let Some(slot) = value.pointer_mut(&segment.pointer) {
                        *slot = Value::String(resolved);
                        changed = true;
                    }
                }
            }
        }
        changed
    }
}

/// The queue and the rewriters, keyed by `K` (a choice index, a content part).
pub(super) struct Hold<K> {
    opts: Arc<Options>,
    queue: VecDeque<Entry>,
    /// The absolute number of `queue[0]`.
    base: usize,
    /// Boxed: a map's node has room for eleven values, and a text's rewriter is large.
    texts: BTreeMap<K, Box<Text>>,
    finished_blocks: usize,
}

/// The state of one text.
struct Text {
    rewriter: Rewriter,
    /// Output of the rewriter not given to an event yet.
    output: String,
    /// The segments waiting for output: (absolute entry number, segment number).
    pending: VecDeque<(usize, usize)>,
    /// Everything pushed, and everything the rewriter gave, for events that repeat the whole text.
    text_in: String,
    text_out: String,
}

/// A finished text: what it was and what it became.
pub(super) struct Finished {
    /// Output that no event of the text could carry: the caller sends it in an event of its own.
    pub(super) leftover: String,
    pub(super) text_in: String,
    pub(super) text_out: String,
}

impl<K: Ord + Clone> Hold<K> {
    pub(super) fn new(opts: Arc<Options>) -> Self {
        Hold { opts, queue: VecDeque::new(), base: 0, texts: BTreeMap::new(), finished_blocks: 0 }
    }

    pub(super) fn blocks(&self) -> usize {
        self.finished_blocks + self.texts.values().map(|t| t.rewriter.blocks()).sum::<usize>()
    }

    /// Whether nothing waits (an event may then be written at once).
    pub(super) fn is_idle(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether `key` has a text not finished yet.
    pub(super) fn has(&self, key: &K) -> bool {
        self.texts.contains_key(key)
    }

    /// The first key of a text not finished yet that satisfies `which`.
    pub(super) fn find_key(&self, which: impl Fn(&K) -> bool) -> Option<K> {
        self.texts.keys().find(|k| which(k)).cloned()
    }

    /// The keys of the texts not finished yet.
    pub(super) fn keys(&self) -> Vec<K> {
        self.texts.keys().cloned().collect()
    }

    /// Queues an event whose texts (`key`, JSON pointer into its data, text) go through their
    /// rewriters; the texts of the keys in `finishing` end with this event, which then carries all
    /// their remaining output. `value` is the parsed data if the caller has it (else it is parsed
    /// only if a text changes).
    pub(super) fn push(
        &mut self,
        event: Event,
        value: Option<Value>,
        texts: Vec<(K, Cow<'static, str>, String)>,
        finishing: &[K],
    ) {
        let id = self.base + self.queue.len();
        let mut segments = Vec::with_capacity(texts.len());
        let mut keys = Vec::with_capacity(texts.len());
        for (number, (key, pointer, text)) in texts.into_iter().enumerate() {
            let state = self.texts.entry(key.clone()).or_insert_with(|| {
                Box::new(Text {
                    rewriter: Rewriter::new(Arc::clone(&self.opts)),
                    output: String::new(),
                    pending: VecDeque::new(),
                    text_in: String::new(),
                    text_out: String::new(),
                })
            });
            let before = state.output.len();
            state.rewriter.push(&text, &mut state.output);
            state.text_out.push_str(&state.output[before..]);
            state.text_in.push_str(&text);
            state.pending.push_back((id, number));
            segments.push(Segment { pointer, original: text, resolved: None });
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        self.queue.push_back(Entry { body: Body::Upstream(event), value, segments, dirty: false });
        for key in &keys {
            if finishing.contains(key) {
                if let Some(state) = self.texts.get_mut(key) {
                    let before = state.output.len();
                    state.rewriter.finish(&mut state.output);
                    state.text_out.push_str(&state.output[before..]);
                }
            }
            self.resolve(key, finishing.contains(key));
        }
        for key in finishing {
            if keys.contains(key) {
                self.retire(key);
            }
        }
    }

    /// Queues an event that carries no text of its own.
    pub(super) fn push_entry(&mut self, entry: Entry) {
        self.queue.push_back(entry);
    }

    /// Ends the text of `key` (when no event carries text for it any more): every waiting event of
    /// it is decided. `None` when the key has no text.
    pub(super) fn finish(&mut self, key: &K) -> Option<Finished> {
        let state = self.texts.get_mut(key)?;
        let before = state.output.len();
        state.rewriter.finish(&mut state.output);
        state.text_out.push_str(&state.output[before..]);
        if state.pending.is_empty() {
            // Nothing waits: the rest needs an event of its own.
        } else {
            self.resolve(key, true);
        }
        let mut state = self.texts.remove(key)?;
        self.finished_blocks += state.rewriter.blocks();
        Some(Finished {
            leftover: std::mem::take(&mut state.output),
            text_in: state.text_in,
            text_out: state.text_out,
        })
    }

    /// The first event, if it is decided.
    pub(super) fn pop_ready(&mut self) -> Option<Entry> {
        if self.queue.front().is_some_and(Entry::is_ready) {
            self.base += 1;
            self.queue.pop_front()
        } else {
            None
        }
    }

    /// The first event, decided or not: for the very end, when every text has been finished (an
    /// undecided text then stays as it came).
    pub(super) fn pop_any(&mut self) -> Option<Entry> {
        let entry = self.queue.pop_front()?;
        self.base += 1;
        Some(entry)
    }

    /// Removes a finished key whose output all went to its events.
    fn retire(&mut self, key: &K) {
        if let Some(state) = self.texts.remove(key) {
            self.finished_blocks += state.rewriter.blocks();
        }
    }

    /// Gives the output of `key` to its waiting events as far as it can be decided; with `last`,
    /// all of it (the text has ended).
    fn resolve(&mut self, key: &K, last: bool) {
        let Some(state) = self.texts.get_mut(key) else {
            return;
        };
        while let Some(&(id, number)) = state.pending.front() {
            let Some(segment) = self
                .queue
                .get_mut(id.wrapping_sub(self.base))
                .and_then(|entry| entry.segments.get_mut(number))
            else {
                state.pending.pop_front();
                continue;
            };
            if last && state.pending.len() == 1 {
                segment.resolved = Some(Resolved::New(std::mem::take(&mut state.output)));
                state.pending.pop_front();
                break;
            }
            if state.output.starts_with(segment.original.as_str()) {
                state.output.drain(..segment.original.len());
                segment.resolved = Some(Resolved::Same);
                state.pending.pop_front();
                continue;
            }
            if !last && segment.original.starts_with(state.output.as_str()) {
                // The engine still holds the rest of this text.
                break;
            }
            // The output differs from the texts: it all goes into the first waiting event, the
            // others carry an empty text.
            segment.resolved = Some(Resolved::New(std::mem::take(&mut state.output)));
            state.pending.pop_front();
            while let Some((id, number)) = state.pending.pop_front() {
                if let Some(segment) = self
                    .queue
                    .get_mut(id.wrapping_sub(self.base))
                    .and_then(|entry| entry.segments.get_mut(number))
                {
                    segment.resolved = Some(Resolved::New(String::new()));
                }
            }
        }
    }
}
