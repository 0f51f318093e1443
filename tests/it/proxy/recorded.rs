//! The twelve recorded OpenAI streams (tests/fixtures/openai-recorded/), replayed by the scripted
//! upstream in awkward network chunks, reach the client through sandgate with the same events in the
//! same order and the same text (JSON may differ only in whitespace or key order).

use std::time::Duration;

use crate::support::openai::{parse_sse, Event};
use crate::support::{post_json, start_sandgate, Reply, ScriptedUpstream};
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/openai-recorded");

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = std::fs::read_dir(FIXTURES)
        .unwrap_or_else(|e| panic!("cannot read the recorded streams at {FIXTURES}: {e}"));
    let mut out: Vec<(String, Vec<u8>)> = dir
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sse"))
        .map(|p| {
            (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

/// Everything a client reads out of a chat stream, per choice: content, refusal, tool call
/// arguments, finish reasons.
fn texts(events: &[Event]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in events {
        let Some(v) = e.json() else { continue };
        for c in v["choices"].as_array().cloned().unwrap_or_default() {
            let i = c["index"].as_u64().unwrap() as usize;
            if out.len() <= i {
                out.resize(i + 1, String::new());
            }
            let d = &c["delta"];
            for key in ["content", "refusal"] {
                if let Some(s) = d[key].as_str() {
                    out[i].push_str(&format!("[{key}]{s}"));
                }
            }
            for t in d["tool_calls"].as_array().cloned().unwrap_or_default() {
                if let Some(s) = t["function"]["arguments"].as_str() {
                    out[i].push_str(&format!("[args]{s}"));
                }
            }
            if let Some(f) = c["finish_reason"].as_str() {
                out[i].push_str(&format!("[finish]{f}"));
            }
        }
    }
    out
}

#[tokio::test]
async fn the_twelve_recorded_streams_pass_through_unchanged_in_substance() {
    let fixtures = fixtures();
    assert_eq!(fixtures.len(), 12, "expected twelve recorded streams in {FIXTURES}");
    for (k, (name, bytes)) in fixtures.into_iter().enumerate() {
        // Chunk sizes that split events, JSON strings and UTF-8 characters differently per file.
        let chunk = [1, 7, 29, 64, 113, 500][k % 6];
        let delay = if chunk < 30 { Duration::ZERO } else { Duration::from_millis(1) };
        let replay = bytes.clone();
        let up = ScriptedUpstream::start(move |_| Reply::sse(replay.clone(), chunk, delay)).await;
        let sg = start_sandgate(&up.base_url(), |_| {}).await;
        let req = serde_json::json!({"model": "gpt-4o-2024-08-06", "stream": true, "messages": []});
        let (status, headers, body) = post_json(sg.addr(), "/v1/chat/completions", &req, &[]).await;
        assert_eq!(status, 200, "{name}");
        assert_eq!(headers["x-accel-buffering"], "no");

        let sent = parse_sse(&bytes);
        let got = parse_sse(&body);
        assert_eq!(got.len(), sent.len(), "{name}: number of events");
        for (i, (a, b)) in sent.iter().zip(&got).enumerate() {
            assert_eq!(a.event, b.event, "{name}: event {i} type");
            if a.data != b.data {
                let va: Value = serde_json::from_str(&a.data).unwrap_or_else(|_| {
                    panic!("{name}: event {i} changed: {:?} -> {:?}", a.data, b.data)
                });
                let vb: Value = serde_json::from_str(&b.data).unwrap_or_else(|_| {
                    panic!("{name}: event {i} is no longer JSON: {:?}", b.data)
                });
                assert_eq!(va, vb, "{name}: event {i}");
            }
        }
        assert_eq!(texts(&got), texts(&sent), "{name}: text per choice");
        assert!(!texts(&sent).is_empty(), "{name}: the fixture carries text");
        sg.shutdown().await.unwrap();
    }
}
