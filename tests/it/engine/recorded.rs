//! The twelve recorded OpenAI Chat Completions streams (`tests/fixtures/openai-recorded/`, real
//! `gpt-4o` responses) through the SSE rewriter, fed whole, in 1-byte chunks and in other sizes.
//! None contains a Python block, so each must come out byte-identical: the same events in the same
//! order, with the same content, refusal and tool-call arguments per choice.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::support::engine::sse_events as events;
use sandgate::rewrite::api::{Endpoint, SseRewriter};
use sandgate::rewrite::{Mode, Options};
use serde_json::Value;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/openai-recorded");

/// Each file and its number of events (`[DONE]` included), as the fixtures' README lists them.
const STREAMS: [(&str, usize); 12] = [
    ("173417d5", 14),
    ("2018feb6", 11),
    ("4cc50a61", 5),
    ("569c877e", 15),
    ("7e5ea4d1", 18),
    ("83b060ba", 6),
    ("a247c49c", 14),
    ("a491adda", 50),
    ("c6aa7e39", 18),
    ("d6155801", 181),
    ("e2aad469", 34),
    ("f82268f2", 26),
];

fn read(name: &str) -> Vec<u8> {
    let path = PathBuf::from(DIR).join(format!("{name}.sse"));
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("cannot read the recorded stream {}: {e}", path.display()))
}

/// Feeds `input` in chunks whose sizes cycle through `sizes`.
fn run(opts: &Arc<Options>, input: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut rewriter = SseRewriter::new(Endpoint::ChatCompletions, Arc::clone(opts));
    let mut out = Vec::new();
    let mut at = 0;
    for size in sizes.iter().cycle() {
        if at >= input.len() {
            break;
        }
        let end = (at + size.max(&1)).min(input.len());
        rewriter.push(&input[at..end], &mut out);
        at = end;
    }
    rewriter.finish(&mut out);
    assert_eq!(rewriter.stats().blocks_rewritten, 0);
    out
}

/// The texts of a stream, per choice: content, refusal, and the arguments of each tool call.
#[derive(Debug, Default, PartialEq, Eq)]
struct Texts {
    content: BTreeMap<u64, String>,
    refusal: BTreeMap<u64, String>,
    arguments: BTreeMap<(u64, u64), String>,
    finish: BTreeMap<u64, String>,
    usage: Vec<Value>,
}

fn texts(bytes: &[u8]) -> Texts {
    let mut texts = Texts::default();
    for event in events(bytes) {
        let data = event.data().expect("every recorded event has data");
        if data == "[DONE]" {
            continue;
        }
        let value: Value = serde_json::from_str(data).expect("recorded events are JSON");
        if !value["usage"].is_null() {
            texts.usage.push(value["usage"].clone());
        }
        for choice in value["choices"].as_array().unwrap() {
            let index = choice["index"].as_u64().unwrap();
            let delta = &choice["delta"];
            if let Some(s) = delta["content"].as_str() {
                texts.content.entry(index).or_default().push_str(s);
            }
            if let Some(s) = delta["refusal"].as_str() {
                texts.refusal.entry(index).or_default().push_str(s);
            }
            for call in delta["tool_calls"].as_array().into_iter().flatten() {
                let key = (index, call["index"].as_u64().unwrap());
                if let Some(s) = call["function"]["arguments"].as_str() {
                    texts.arguments.entry(key).or_default().push_str(s);
                }
            }
            if let Some(s) = choice["finish_reason"].as_str() {
                texts.finish.insert(index, s.to_owned());
            }
        }
    }
    texts
}

fn all_opts() -> Vec<Arc<Options>> {
    let mut all = Vec::new();
    for mode in [Mode::Link, Mode::Widget, Mode::Artifact, Mode::Off] {
        for show_code in [true, false] {
            all.push(Arc::new(Options { mode, show_code, ..Options::default() }));
        }
    }
    all
}

#[test]
fn the_twelve_recorded_streams_are_all_there() {
    let dir = PathBuf::from(DIR);
    assert!(
        dir.is_dir(),
        "the recorded streams are missing: expected the directory {}",
        dir.display()
    );
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".sse").map(str::to_owned)
        })
        .collect();
    found.sort();
    let expected: Vec<&str> = STREAMS.iter().map(|(name, _)| *name).collect();
    assert_eq!(found, expected);
}

#[test]
fn recorded_streams_pass_byte_identical_in_every_chunking() {
    let chunkings: [&[usize]; 6] = [&[usize::MAX], &[1], &[2], &[7, 1, 13], &[64], &[4096]];
    for (name, count) in STREAMS {
        let input = read(name);
        let before = events(&input);
        assert_eq!(before.len(), count, "{name}: events in the recording");
        assert_eq!(before.last().unwrap().data(), Some("[DONE]"), "{name}: ends with [DONE]");
        let want = texts(&input);
        for opts in all_opts() {
            for sizes in chunkings {
                let output = run(&opts, &input, sizes);
                let after = events(&output);
                assert_eq!(
                    after.len(),
                    count,
                    "{name} {sizes:?} {:?}: same number of events",
                    opts.mode
                );
                for (i, (a, b)) in before.iter().zip(&after).enumerate() {
                    assert_eq!(
                        String::from_utf8_lossy(b.raw()),
                        String::from_utf8_lossy(a.raw()),
                        "{name} {sizes:?}: event {i} is byte-identical"
                    );
                }
                assert_eq!(texts(&output), want, "{name}: the same texts per choice");
                assert_eq!(output, input, "{name} {sizes:?}: byte-identical output");
            }
        }
    }
}

#[test]
fn recorded_streams_carry_what_the_readme_says() {
    // Guards the fixtures themselves, so that the test above really covers these shapes.
    let n3 = texts(&read("a491adda"));
    assert_eq!(n3.content.len(), 3, "a491adda has three choices");
    assert_eq!(n3.finish.len(), 3);
    assert!(!texts(&read("173417d5")).refusal[&0].is_empty(), "173417d5 has a refusal");
    assert!(!texts(&read("2018feb6")).arguments.is_empty(), "2018feb6 has tool calls");
    assert_eq!(texts(&read("4cc50a61")).finish[&0], "length");
    assert_eq!(texts(&read("173417d5")).usage.len(), 1, "173417d5 has a usage chunk");
    assert!(texts(&read("d6155801")).content[&0].len() > 500, "d6155801 is long");
}
