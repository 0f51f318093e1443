//! A WHATWG event-stream (SSE) codec: a push decoder that cuts a byte stream into events while
//! keeping each event's exact bytes, and an encoder for the events the rewriter changes or adds.
//!
//! The decoder follows the parsing rules of the HTML standard (section 9.2.6, "Interpreting an event
//! stream"): lines end with CRLF, LF or CR; a blank line ends an event; a line starting with `:` is a
//! comment; `field: value` loses one space after the colon; a line without a colon is a field with an
//! empty value; `data` lines are joined with `\n`; an `id` containing NUL is ignored; a leading
//! byte-order mark is skipped. Unlike a browser it dispatches everything, comment-only blocks and
//! bare blank lines (keep-alives) included, so that a proxy can pass them on.
//!
//! Chunking never matters: for every split of the same bytes into chunks the decoder yields the same
//! events, and the concatenation of their [`Event::raw`] bytes is exactly the input. To keep that
//! promise, a CR that is the last byte seen so far and ends an event is held until the next byte (or
//! [`Decoder::finish`]) shows whether an LF follows it. UTF-8 characters split across chunks need no
//! care: a line is decoded only once it is complete (invalid bytes become U+FFFD, as the standard
//! says, while the raw bytes stay untouched).
//!
//! At the end of the stream, bytes of an event that never got its closing blank line are returned by
//! [`Decoder::finish`] as an event with [`Event::is_complete`] false: it is passed on unchanged, never
//! dropped and never interpreted (a browser or the OpenAI SDKs would not dispatch it either).
//!
//! [`Framer`] is the decoder's light sibling, for a stream that passes without being rewritten: it
//! only finds where events end, so that a stream cut by a failure is cut between events. A stream is
//! scanned by one of the two, never both.

use std::ops::Range;

use bytes::Bytes;

/// One event of the stream: its exact bytes plus the parsed fields.
///
/// A field's text is kept as where it stands in the raw bytes whenever those bytes are the text (one
/// line of valid UTF-8, the common case), so that decoding an event copies nothing but its bytes.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Event {
    raw: Vec<u8>,
    /// The stream's byte-order mark starts `raw` (the first event only) and belongs to no line.
    bom: bool,
    event: Option<Text>,
    data: Option<Text>,
    id: Option<String>,
    retry: Option<u64>,
    comments: Vec<String>,
    complete: bool,
}

/// A field's value: its place in the event's raw bytes, or (several `data` lines, invalid UTF-8)
/// the text decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Text {
    At(Range<usize>),
    Decoded(String),
}

impl Text {
    /// The value `bytes`, which stand at `at` in the event's raw bytes.
    fn of(bytes: &[u8], at: Range<usize>) -> Text {
        match std::str::from_utf8(bytes) {
            Ok(_) => Text::At(at),
            Err(_) => Text::Decoded(String::from_utf8_lossy(bytes).into_owned()),
        }
    }

    fn get<'a>(&'a self, raw: &'a [u8]) -> &'a str {
        match self {
            // Checked when the line was read; the check cannot fail here.
            Text::At(at) => {
                raw.get(at.clone()).and_then(|b| std::str::from_utf8(b).ok()).unwrap_or("")
            }
            Text::Decoded(text) => text,
        }
    }
}

impl Event {
    /// The exact bytes of the event as received, the terminating blank line included.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// Takes the exact bytes out of the event.
    pub fn into_raw(self) -> Vec<u8> {
        self.raw
    }

    /// The value of the last `event:` line, if there was one.
    pub fn event_type(&self) -> Option<&str> {
        self.event.as_ref().map(|t| t.get(&self.raw))
    }

    /// The `data:` lines joined with `\n`; `None` when the event has no data line.
    pub fn data(&self) -> Option<&str> {
        self.data.as_ref().map(|t| t.get(&self.raw))
    }

    /// The value of the last valid `id:` line, if there was one.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The value of the last valid `retry:` line, if there was one.
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    /// The comment lines, without their leading `:`.
    pub fn comments(&self) -> &[String] {
        &self.comments
    }

    /// False only for the trailing bytes returned by [`Decoder::finish`] that never got their
    /// closing blank line.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Appends to `out` this event with its data replaced by `data`: every other line (`event:`,
    /// `id:`, comments, unknown fields) keeps its bytes and its place; the data lines are replaced by
    /// `data: ...\n` lines at the place of the first one (or before the closing blank line when the
    /// event had none). An incomplete event gets its closing blank line.
    pub fn write_with_data(&self, data: &str, out: &mut Vec<u8>) {
        let (lines, end_of_lines) = self.lines();
        let mut written = false;
        for (bytes, is_data) in lines {
            if is_data {
                if !written {
                    write_data_lines(data, out);
                    written = true;
                }
            } else {
                let bytes = &self.raw[bytes];
                out.extend_from_slice(bytes);
                if !bytes.ends_with(b"\n") && !bytes.ends_with(b"\r") {
                    out.push(b'\n');
                }
            }
        }
        if !written {
            write_data_lines(data, out);
        }
        if self.complete {
            out.extend_from_slice(&self.raw[end_of_lines..]);
        } else {
            out.push(b'\n');
        }
    }

    /// The event's lines as the decoder cut them, the closing blank line excepted: where each
    /// stands (its line end included) and whether it is a `data` line; then where the closing blank
    /// line starts. Found again from the raw bytes, which only a changed event needs.
    fn lines(&self) -> (Vec<(Range<usize>, bool)>, usize) {
        let raw = &self.raw[..];
        let mut pos = if self.bom { BOM.len() } else { 0 };
        let mut lines = Vec::new();
        while pos < raw.len() {
            let (end, next) = match memchr::memchr2(b'\n', b'\r', &raw[pos..]) {
                None => (raw.len(), raw.len()),
                Some(rel) => {
                    let end = pos + rel;
                    let crlf = raw[end] == b'\r' && raw.get(end + 1) == Some(&b'\n');
                    (end, end + 1 + usize::from(crlf))
                }
            };
            if end == pos {
                break;
            }
            let text = &raw[pos..end];
            let name = match memchr::memchr(b':', text) {
                Some(colon) => &text[..colon],
                None => text,
            };
            lines.push((pos..next, name == b"data"));
            pos = next;
        }
        (lines, pos)
    }
}

/// Appends a new event to `out`: an `event:` line when `event` is given, the data as `data:` lines,
/// then the closing blank line.
pub fn encode(event: Option<&str>, data: &str, out: &mut Vec<u8>) {
    if let Some(name) = event {
        out.extend_from_slice(b"event: ");
        // A line end inside the name would start a new field; it cannot be represented, so it is cut.
        out.extend_from_slice(name.split(['\r', '\n']).next().unwrap_or("").as_bytes());
        out.push(b'\n');
    }
    write_data_lines(data, out);
    out.push(b'\n');
}

/// A push decoder: feed it byte chunks, it hands out complete events.
#[derive(Debug, Default)]
pub struct Decoder {
    /// Bytes of the event being read (from `event_start`) and bytes not yet scanned.
    buf: Vec<u8>,
    /// Where the current event starts in `buf`.
    event_start: usize,
    /// Where the current line starts in `buf`.
    line_start: usize,
    /// How far `buf` was searched for a line end without finding one (so that a long line arriving
    /// in many small chunks is searched once).
    scanned: usize,
    /// Whether the stream's first bytes were checked for a byte-order mark.
    bom_checked: bool,
    /// A byte-order mark was skipped and the event it starts is not handed out yet.
    bom_pending: bool,
    /// The event being built (fields of the complete lines seen so far; places relative to
    /// `event_start`, which compacting the buffer does not change).
    current: Event,
}

impl Decoder {
    pub fn new() -> Self {
        Decoder::default()
    }

    /// Feeds bytes; appends every event they complete to `events`.
    pub fn push(&mut self, chunk: &[u8], events: &mut Vec<Event>) {
        self.buf.extend_from_slice(chunk);
        self.scan(false, events);
        self.compact();
    }

    /// Ends the stream: appends the events still held (a final CR-terminated event), then the
    /// trailing bytes of an unterminated event, if any, as an incomplete event.
    pub fn finish(&mut self, events: &mut Vec<Event>) {
        self.scan(true, events);
        if self.event_start < self.buf.len() {
            // The final line had no line end: record it so that re-encoding keeps it.
            if self.line_start < self.buf.len() {
                let start = self.line_start;
                let end = self.buf.len();
                self.line(start, end);
            }
            let mut event = std::mem::take(&mut self.current);
            event.raw = self.buf[self.event_start..].to_vec();
            event.bom = std::mem::take(&mut self.bom_pending);
            event.complete = false;
            events.push(event);
        }
        *self = Decoder::default();
    }

    /// Whether bytes of an unfinished event are held.
    pub fn is_empty(&self) -> bool {
        self.event_start >= self.buf.len()
    }

    /// Cuts complete lines and events out of `buf`. With `at_end`, a CR at the very end is a line
    /// end on its own.
    fn scan(&mut self, at_end: bool, events: &mut Vec<Event>) {
        if !self.bom_checked {
            let have = &self.buf[..];
            if have.len() < BOM.len() && BOM.starts_with(have) && !at_end {
                return;
            }
            self.bom_checked = true;
            if have.starts_with(BOM) {
                self.line_start = BOM.len();
                self.bom_pending = true;
            }
        }
        let mut pos = self.line_start.max(self.scanned);
        while let Some(offset) = memchr::memchr2(b'\n', b'\r', &self.buf[pos..]) {
            let end = pos + offset;
            let next = match self.buf[end] {
                b'\n' => end + 1,
                _ => match self.buf.get(end + 1) {
                    Some(b'\n') => end + 2,
                    Some(_) => end + 1,
                    None if at_end => end + 1,
                    // A CR as the last byte: an LF may follow in the next chunk.
                    None => {
                        self.scanned = end;
                        return;
                    }
                },
            };
            let start = self.line_start;
            if start == end {
                self.dispatch(next, events);
            } else {
                self.line(start, end);
            }
            self.line_start = next;
            pos = next;
        }
        self.scanned = self.buf.len();
    }

    /// Records one complete, non-blank line `buf[start..end]` (its line end left out).
    fn line(&mut self, start: usize, end: usize) {
        let text = &self.buf[start..end];
        let (name, value_start) = match memchr::memchr(b':', text) {
            Some(0) => {
                let comment = String::from_utf8_lossy(&text[1..]).into_owned();
                self.current.comments.push(comment);
                return;
            }
            Some(colon) => {
                let after = start + colon + 1;
                (&text[..colon], after + usize::from(self.buf.get(after) == Some(&b' ')))
            }
            None => (text, end),
        };
        let value_start = value_start.min(end);
        let value = &self.buf[value_start..end];
        let at = value_start - self.event_start..end - self.event_start;
        match name {
            b"data" => {
                let data = match self.current.data.take() {
                    None => Text::of(value, at),
                    Some(first) => {
                        let mut joined = first.get(&self.buf[self.event_start..]).to_owned();
                        joined.push('\n');
                        joined.push_str(&String::from_utf8_lossy(value));
                        Text::Decoded(joined)
                    }
                };
                self.current.data = Some(data);
            }
            b"event" => self.current.event = Some(Text::of(value, at)),
            b"id" if !value.contains(&0) => {
                self.current.id = Some(String::from_utf8_lossy(value).into_owned());
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                // Too many digits to fit is treated like any other invalid value: ignored.
                if let Ok(ms) = std::str::from_utf8(value).unwrap_or("").parse() {
                    self.current.retry = Some(ms);
                }
            }
            _ => {}
        }
    }

    /// Ends the current event with the blank line that runs to `next`.
    fn dispatch(&mut self, next: usize, events: &mut Vec<Event>) {
        let mut event = std::mem::take(&mut self.current);
        event.raw = self.buf[self.event_start..next].to_vec();
        event.bom = std::mem::take(&mut self.bom_pending);
        event.complete = true;
        events.push(event);
        self.event_start = next;
    }

    /// Drops the bytes of events already handed out.
    fn compact(&mut self) {
        if self.event_start == 0 {
            return;
        }
        let shift = self.event_start;
        self.buf.drain(..shift);
        self.event_start = 0;
        self.line_start -= shift;
        self.scanned -= shift;
    }
}

/// The UTF-8 byte-order mark, skipped at the start of a stream.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Writes `data` as `data:` lines, one per line of `data` (split at CRLF, LF or CR, which the
/// decoder turns back into `\n`).
fn write_data_lines(data: &str, out: &mut Vec<u8>) {
    let mut rest = data;
    loop {
        let (line, next) = match rest.find(['\r', '\n']) {
            Some(i) if rest[i..].starts_with("\r\n") => (&rest[..i], Some(&rest[i + 2..])),
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
        match next {
            Some(next) => rest = next,
            None => break,
        }
    }
}

/// Splits an event stream at event boundaries (blank lines, with LF, CR or CRLF line ends) without
/// decoding it: bytes of an event still incomplete are held until the event ends, up to
/// [`Framer::MAX_HELD`].
#[derive(Debug)]
pub struct Framer {
    held: Vec<u8>,
    /// The current line has no characters yet.
    line_empty: bool,
    /// The last byte seen was a CR (a following LF belongs to it).
    after_cr: bool,
    /// Part of the current event was sent without its end, because it grew past the limit.
    mid_event: bool,
}

impl Default for Framer {
    fn default() -> Self {
        Framer { held: Vec::new(), line_empty: true, after_cr: false, mid_event: false }
    }
}

impl Framer {
    /// An event larger than this is passed on in pieces rather than held whole.
    pub const MAX_HELD: usize = 1 << 20;

    /// Takes more stream bytes; returns those that complete events (with anything held before).
    /// Without held bytes, the answer is a slice of the input: no copy.
    pub fn complete(&mut self, bytes: Bytes) -> Bytes {
        match self.last_boundary(&bytes) {
            Some(end) => {
                self.mid_event = false;
                let out = if self.held.is_empty() {
                    bytes.slice(..end)
                } else {
                    let mut out = std::mem::take(&mut self.held);
                    out.extend_from_slice(&bytes[..end]);
                    Bytes::from(out)
                };
                self.held.extend_from_slice(&bytes[end..]);
                out
            }
            None if self.held.len() + bytes.len() > Self::MAX_HELD => {
                self.mid_event = true;
                if self.held.is_empty() {
                    return bytes;
                }
                let mut out = std::mem::take(&mut self.held);
                out.extend_from_slice(&bytes);
                Bytes::from(out)
            }
            None => {
                self.held.extend_from_slice(&bytes);
                Bytes::new()
            }
        }
    }

    /// Whatever is held: the start of an event that has not ended.
    pub fn take_rest(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.held)
    }

    /// Whether part of the current event was already passed on (it outgrew [`Framer::MAX_HELD`]).
    pub fn is_mid_event(&self) -> bool {
        self.mid_event
    }

    /// Where the last event completed by `bytes` ends in them, jumping from line end to line end.
    fn last_boundary(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut boundary = None;
        let mut i = 0;
        while i < bytes.len() {
            if std::mem::take(&mut self.after_cr) && bytes[i] == b'\n' {
                // The LF of a CRLF: the line end, and a boundary, run one byte further.
                if boundary == Some(i) {
                    boundary = Some(i + 1);
                }
                i += 1;
                continue;
            }
            let Some(rel) = memchr::memchr2(b'\n', b'\r', &bytes[i..]) else {
                self.line_empty = false;
                break;
            };
            let at = i + rel;
            if rel > 0 {
                self.line_empty = false;
            }
            if self.line_empty {
                boundary = Some(at + 1);
            }
            self.line_empty = true;
            self.after_cr = bytes[at] == b'\r';
            i = at + 1;
        }
        boundary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_framer_releases_whole_events_only() {
        let mut f = Framer::default();
        assert_eq!(&f.complete(Bytes::from_static(b"data: a\n"))[..], b"");
        assert_eq!(&f.complete(Bytes::from_static(b"\ndata: b"))[..], b"data: a\n\n");
        // A CR ends the blank line; the LF after it is part of the same line end.
        assert_eq!(&f.complete(Bytes::from_static(b"\r\n\r"))[..], b"data: b\r\n\r");
        assert_eq!(
            &f.complete(Bytes::from_static(b"\ndata: c\r\rdata: d\n"))[..],
            b"\ndata: c\r\r"
        );
        assert_eq!(f.take_rest(), b"data: d\n");
        let mut f = Framer::default();
        let big = vec![b'x'; Framer::MAX_HELD + 1];
        assert_eq!(f.complete(Bytes::from(big.clone())).len(), big.len());
        assert!(f.is_mid_event());
        assert_eq!(&f.complete(Bytes::from_static(b"\n\n"))[..], b"\n\n");
        assert!(!f.is_mid_event());
    }

    #[test]
    fn the_framer_cuts_where_the_decoder_ends_events() {
        let input: &[u8] =
            b": hi\r\n\r\ndata: a\n\nevent: e\rdata: b\r\rdata: c\r\n\r\n\n\ndata: \xff\n\ndata: d";
        let mut events = Vec::new();
        let mut decoder = Decoder::new();
        decoder.push(input, &mut events);
        decoder.finish(&mut events);
        let mut ends = Vec::new();
        let mut at = 0;
        for e in events.iter().filter(|e| e.is_complete()) {
            at += e.raw().len();
            ends.push(at);
        }
        for size in 1..input.len() {
            let mut f = Framer::default();
            let mut out = Vec::new();
            let mut cuts = Vec::new();
            for chunk in input.chunks(size) {
                let done = f.complete(Bytes::copy_from_slice(chunk));
                out.extend_from_slice(&done);
                if !done.is_empty() {
                    cuts.push(out.len());
                }
            }
            // A cut falls where an event ends, or (the LF of its CRLF not yet seen) one byte before.
            let at_an_end =
                |c: usize| ends.contains(&c) || (input[c - 1] == b'\r' && ends.contains(&(c + 1)));
            assert!(cuts.iter().all(|&c| at_an_end(c)), "chunks of {size}: {cuts:?} {ends:?}");
            assert!(at_an_end(out.len()) && out.len() + 1 >= *ends.last().unwrap(), "{size}");
            out.extend_from_slice(&f.take_rest());
            assert_eq!(out, input, "chunks of {size}");
        }
    }
}
