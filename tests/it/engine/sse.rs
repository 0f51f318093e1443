//! The WHATWG event-stream codec: field parsing, line ends, chunking, pass-through bytes and the
//! encoder.

use proptest::prelude::*;
use sandgate::rewrite::sse::{encode, Decoder, Event};

/// Decodes `input` cut at `cuts` (byte offsets, any order), then finishes.
fn decode_cut(input: &[u8], cuts: &[usize]) -> Vec<Event> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    let mut decoder = Decoder::new();
    let mut events = Vec::new();
    let mut start = 0;
    for cut in cuts {
        decoder.push(&input[start..cut], &mut events);
        start = cut;
    }
    decoder.push(&input[start..], &mut events);
    decoder.finish(&mut events);
    events
}

fn decode(input: &[u8]) -> Vec<Event> {
    decode_cut(input, &[])
}

fn decode_bytewise(input: &[u8]) -> Vec<Event> {
    let cuts: Vec<usize> = (0..input.len()).collect();
    decode_cut(input, &cuts)
}

fn raw_concat(events: &[Event]) -> Vec<u8> {
    events.iter().flat_map(|e| e.raw().to_vec()).collect()
}

fn datas(events: &[Event]) -> Vec<Option<&str>> {
    events.iter().map(Event::data).collect()
}

#[test]
fn whatwg_examples() {
    // The examples of the HTML standard, section 9.2.
    let input = b"data: YHOO\ndata: +2\ndata: 10\n\n";
    let events = decode(input);
    assert_eq!(datas(&events), [Some("YHOO\n+2\n10")]);

    let input = b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n";
    let events = decode(input);
    assert_eq!(
        datas(&events),
        [None, Some("first event"), Some("second event"), Some(" third event")]
    );
    assert_eq!(events[0].comments(), [" test stream"]);
    assert_eq!(events[1].id(), Some("1"));
    assert_eq!(events[2].id(), Some(""));

    // "data" without a colon is a data line with an empty value; the last block has no blank line.
    let input = b"data\n\ndata\ndata\n\ndata:";
    let events = decode(input);
    assert_eq!(datas(&events), [Some(""), Some("\n"), Some("")]);
    assert!(events[0].is_complete() && events[1].is_complete());
    assert!(!events[2].is_complete());
    assert_eq!(events[2].raw(), b"data:");
    assert_eq!(raw_concat(&events), input);

    // Both spellings give the same data.
    let events = decode(b"data:test\n\ndata: test\n\n");
    assert_eq!(datas(&events), [Some("test"), Some("test")]);
}

#[test]
fn line_ends_cr_lf_crlf_and_mixed() {
    for eol in ["\n", "\r", "\r\n"] {
        let input = format!(
            "event: add{eol}data: a{eol}data: b{eol}{eol}: note{eol}{eol}data: c{eol}{eol}"
        );
        for events in [decode(input.as_bytes()), decode_bytewise(input.as_bytes())] {
            assert_eq!(datas(&events), [Some("a\nb"), None, Some("c")], "eol {eol:?}");
            assert_eq!(events[0].event_type(), Some("add"));
            assert_eq!(events[1].comments(), [" note"]);
            assert!(events.iter().all(Event::is_complete));
            assert_eq!(raw_concat(&events), input.as_bytes());
        }
    }
    // Mixed ends in one stream: LF, then CR, then CRLF.
    let input = b"data: a\r\n\rdata: b\r\rdata: c\n\r\n";
    let events = decode(input);
    assert_eq!(datas(&events), [Some("a"), Some("b"), Some("c")]);
    assert_eq!(events[0].raw(), b"data: a\r\n\r");
    assert_eq!(events[1].raw(), b"data: b\r\r");
    assert_eq!(events[2].raw(), b"data: c\n\r\n");
}

#[test]
fn cr_at_chunk_end_followed_by_lf() {
    // The CR that ends an event is the last byte of a chunk and the LF opens the next: it is one
    // CRLF, not a CR event end followed by an empty keep-alive line.
    let mut decoder = Decoder::new();
    let mut events = Vec::new();
    decoder.push(b"data: x\r\n\r", &mut events);
    assert!(events.is_empty(), "the event waits for the byte after the CR");
    decoder.push(b"\ndata: y\r\n\r\n", &mut events);
    assert_eq!(datas(&events), [Some("x"), Some("y")]);
    assert_eq!(events[0].raw(), b"data: x\r\n\r\n");
    decoder.finish(&mut events);
    assert_eq!(events.len(), 2);

    // A final CR is a line end on its own at the end of the stream.
    let mut decoder = Decoder::new();
    let mut events = Vec::new();
    decoder.push(b"data: z\r\r", &mut events);
    assert!(events.is_empty());
    decoder.finish(&mut events);
    assert_eq!(datas(&events), [Some("z")]);
    assert!(events[0].is_complete());

    // A CR inside a line split from its LF.
    let events = decode_cut(b"data: a\r\ndata: b\r\n\r\n", &[8]);
    assert_eq!(datas(&events), [Some("a\nb")]);
}

#[test]
fn utf8_split_across_chunks() {
    let input = "data: {\"content\":\"héllo ✓ 🐍 日本\"}\n\n".as_bytes();
    let whole = decode(input);
    assert_eq!(whole[0].data(), Some("{\"content\":\"héllo ✓ 🐍 日本\"}"));
    // Every single cut, and every byte on its own.
    for cut in 0..=input.len() {
        assert_eq!(decode_cut(input, &[cut]), whole, "cut at {cut}");
    }
    assert_eq!(decode_bytewise(input), whole);
}

#[test]
fn invalid_utf8_is_replaced_in_fields_and_kept_in_raw() {
    let input = b"data: a\xFFb\n\n";
    let events = decode(input);
    assert_eq!(events[0].data(), Some("a\u{FFFD}b"));
    assert_eq!(events[0].raw(), input);
}

#[test]
fn byte_order_mark_is_skipped_once_and_kept_in_raw() {
    let input = b"\xEF\xBB\xBFdata: a\n\n\xEF\xBB\xBFdata: b\n\n";
    for events in [decode(input), decode_bytewise(input)] {
        assert_eq!(events[0].data(), Some("a"));
        // Only the stream's first bytes may be a BOM; later it is part of the field name.
        assert_eq!(events[1].data(), None);
        assert_eq!(raw_concat(&events), input);
    }
}

#[test]
fn comments_keep_alives_and_unknown_fields_pass_through() {
    let input = b": ping\n\n\n\nretry: 3000\n\nfoo: bar\ndata: x\n\n";
    let events = decode(input);
    assert_eq!(events.len(), 5);
    assert_eq!(events[0].comments(), [" ping"]);
    assert_eq!(events[1].raw(), b"\n");
    assert_eq!(events[2].raw(), b"\n");
    assert_eq!(events[3].retry(), Some(3000));
    assert_eq!(events[3].data(), None);
    assert_eq!(events[4].data(), Some("x"));
    assert_eq!(raw_concat(&events), input);
}

#[test]
fn id_with_nul_and_bad_retry_are_ignored() {
    let events =
        decode(b"id: 7\nid: a\0b\nretry: 12x\nretry: 99999999999999999999999\ndata: d\n\n");
    assert_eq!(events[0].id(), Some("7"));
    assert_eq!(events[0].retry(), None);
}

#[test]
fn trailing_partial_event_is_returned_unchanged() {
    for tail in [&b"data: {\"a\":1}\n"[..], b"data: {\"a\"", b"event: x\r", b": c"] {
        let mut input = b"data: one\n\n".to_vec();
        input.extend_from_slice(tail);
        let events = decode(&input);
        assert_eq!(events.len(), 2, "tail {tail:?}");
        assert!(events[0].is_complete());
        assert!(!events[1].is_complete());
        assert_eq!(events[1].raw(), tail);
        assert_eq!(raw_concat(&events), input);
    }
    // Nothing held: no trailing event.
    let mut decoder = Decoder::new();
    let mut events = Vec::new();
    decoder.push(b"data: one\n\n", &mut events);
    assert!(decoder.is_empty());
    decoder.finish(&mut events);
    assert_eq!(events.len(), 1);
}

#[test]
fn write_with_data_keeps_other_lines_and_their_places() {
    let events = decode(b"event: message\r\n: c\r\ndata: old\r\ndata: old2\r\nid: 5\r\n\r\n");
    let mut out = Vec::new();
    events[0].write_with_data("{\"new\":true}", &mut out);
    assert_eq!(
        String::from_utf8(out.clone()).unwrap(),
        "event: message\r\n: c\r\ndata: {\"new\":true}\nid: 5\r\n\r\n"
    );
    let again = decode(&out);
    assert_eq!(again[0].data(), Some("{\"new\":true}"));
    assert_eq!(again[0].event_type(), Some("message"));
    assert_eq!(again[0].id(), Some("5"));

    // Multi-line data comes back as several data lines; leading spaces survive.
    let mut out = Vec::new();
    events[0].write_with_data(" a\nb\r\nc", &mut out);
    assert_eq!(decode(&out)[0].data(), Some(" a\nb\nc"));
}

#[test]
fn encode_writes_event_line_and_data() {
    let mut out = Vec::new();
    encode(Some("response.output_text.delta"), "{\"x\":1}", &mut out);
    encode(None, "{\"y\":2}", &mut out);
    assert_eq!(out, b"event: response.output_text.delta\ndata: {\"x\":1}\n\ndata: {\"y\":2}\n\n");
    let events = decode(&out);
    assert_eq!(events[0].event_type(), Some("response.output_text.delta"));
    assert_eq!(datas(&events), [Some("{\"x\":1}"), Some("{\"y\":2}")]);
}

/// One generated event: what the stream should say, and how it is written.
#[derive(Clone, Debug)]
struct Gen {
    event: Option<String>,
    data: Option<Vec<String>>,
    comment: Option<String>,
}

fn field_text() -> impl Strategy<Value = String> {
    // Anything but line ends; includes multi-byte characters, colons and leading spaces.
    "[ a-z:é✓🐍{}\"\\\\]{0,12}"
}

fn gen_event() -> impl Strategy<Value = Gen> {
    (
        proptest::option::of("[a-z.]{1,10}"),
        proptest::option::of(proptest::collection::vec(field_text(), 1..4)),
        proptest::option::of(field_text()),
    )
        .prop_map(|(event, data, comment)| Gen { event, data, comment })
}

fn render(events: &[Gen], eol: &str) -> String {
    let mut s = String::new();
    for e in events {
        if let Some(c) = &e.comment {
            s.push_str(&format!(":{c}{eol}"));
        }
        if let Some(name) = &e.event {
            s.push_str(&format!("event: {name}{eol}"));
        }
        for line in e.data.iter().flatten() {
            s.push_str(&format!("data: {line}{eol}"));
        }
        s.push_str(eol);
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every split of the byte stream gives the same events, whose raw bytes are the input, and
    /// whose fields are the ones written.
    #[test]
    fn chunking_never_matters(
        events in proptest::collection::vec(gen_event(), 0..8),
        eol in prop_oneof![Just("\n"), Just("\r"), Just("\r\n")],
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let input = render(&events, eol);
        let whole = decode(input.as_bytes());
        let split = decode_cut(input.as_bytes(), &cuts);
        prop_assert_eq!(&split, &whole);
        prop_assert_eq!(raw_concat(&whole), input.as_bytes());
        prop_assert_eq!(whole.len(), events.len());
        for (got, want) in whole.iter().zip(&events) {
            prop_assert!(got.is_complete());
            prop_assert_eq!(got.event_type(), want.event.as_deref());
            let joined = want.data.as_ref().map(|d| d.join("\n"));
            prop_assert_eq!(got.data(), joined.as_deref());
            let comments: Vec<String> = want.comment.iter().cloned().collect();
            prop_assert_eq!(got.comments(), &comments[..]);
        }
    }

    /// Arbitrary bytes: no panic, same events for every split, nothing lost.
    #[test]
    fn arbitrary_bytes_same_events_for_every_split(
        input in proptest::collection::vec(
            prop_oneof![Just(b'\r'), Just(b'\n'), Just(b':'), Just(b' '), Just(0xEFu8), Just(0xBBu8), Just(0xBFu8), any::<u8>()],
            0..200),
        cuts in proptest::collection::vec(any::<usize>(), 0..20),
    ) {
        let whole = decode(&input);
        prop_assert_eq!(raw_concat(&whole), input.clone());
        prop_assert_eq!(decode_cut(&input, &cuts), whole.clone());
        // Every event but the last is complete.
        for e in whole.iter().rev().skip(1) {
            prop_assert!(e.is_complete());
        }
    }

    /// Re-encoding an event with its own data gives an event with the same fields.
    #[test]
    fn write_with_data_round_trips(
        events in proptest::collection::vec(gen_event(), 1..4),
        eol in prop_oneof![Just("\n"), Just("\r"), Just("\r\n")],
        data in proptest::collection::vec(field_text(), 1..4),
    ) {
        let input = render(&events, eol);
        for event in decode(input.as_bytes()) {
            let mut out = Vec::new();
            let data = data.join("\n");
            event.write_with_data(&data, &mut out);
            let again = decode(&out);
            prop_assert_eq!(again.len(), 1);
            prop_assert_eq!(again[0].data(), Some(data.as_str()));
            prop_assert_eq!(again[0].event_type(), event.event_type());
            prop_assert_eq!(again[0].comments(), event.comments());
        }
    }
}
