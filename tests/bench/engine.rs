//! The benchmark's in-process figures (`cargo run --release --example bench-engine`): what the proxy
//! spends on one answer, without HTTP. Plain timed loops after a warm-up; it prints one line per
//! figure (the median of five runs of each loop) and judges nothing.
//!
//! - `json`: `rewrite_json` of the bench upstream's chat answer (prose and a Python block), and of
//!   the same answer without Python (found to hold no fence, not even parsed);
//! - `sse`: the cost per event of a chat stream of 22 chunks through `SseRewriter`, with and without
//!   Python (the events without Python pass byte-identical);
//! - `payload`: one link payload of the answer's block;
//! - `cells`: one-shot rewrites of answers of many small blocks (the `cx` each link carries grows
//!   with the earlier blocks up to `context_bytes`), by answer size.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use sandgate::rewrite::api::{rewrite_json, Endpoint, SseRewriter};
use sandgate::rewrite::{rewrite, Context, Options};

/// The bench upstream's answer (tests/bench/upstream.rs): prose, and in the Python variant a block.
const PROSE: &str = "Here is a short program that prints the first ten squares. It uses a plain \
loop so that it is easy to follow, and it runs in any Python 3 interpreter.";
const CODE: &str =
    "```python\nimport math\n\ndef squares(n):\n    return [i * i for i in range(n)]\n\n\
for k, v in enumerate(squares(10)):\n    print(k, v, math.sqrt(v))\n```";
const OUTRO: &str = "Each line shows the index, its square and the square root of that square.";

fn answer(python: bool) -> String {
    if python {
        format!("{PROSE}\n\n{CODE}\n\n{OUTRO}")
    } else {
        format!("{PROSE}\n\n{OUTRO}")
    }
}

fn json_answer(text: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "bench-python",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 80, "total_tokens": 92}
    }))
    .unwrap()
}

/// The stream the bench upstream sends: a role chunk, 20 content chunks, a finish chunk, `[DONE]`.
fn sse_answer(text: &str) -> Vec<u8> {
    let chars: Vec<char> = text.chars().collect();
    let n = 20;
    let mut out = Vec::new();
    let mut chunk = |delta: serde_json::Value, finish: Option<&str>| {
        let v = serde_json::json!({
            "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1_700_000_000,
            "model": "bench-python", "system_fingerprint": "t1700000000000000",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
        });
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&serde_json::to_vec(&v).unwrap());
        out.extend_from_slice(b"\n\n");
    };
    chunk(serde_json::json!({"role": "assistant", "content": ""}), None);
    for i in 0..n {
        let piece: String = chars[chars.len() * i / n..chars.len() * (i + 1) / n].iter().collect();
        chunk(serde_json::json!({ "content": piece }), None);
    }
    chunk(serde_json::json!({}), Some("stop"));
    out.extend_from_slice(b"data: [DONE]\n\n");
    out
}

/// The events of `body`, cut where the upstream's writes end (each event its own chunk).
fn events(body: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(end) = memchr::memmem::find(&body[at..], b"\n\n") {
        out.push(&body[at..at + end + 2]);
        at += end + 2;
    }
    out
}

/// Nanoseconds per call of `f`, the median of five timed runs of `n` calls after one warm-up run.
fn time(n: usize, mut f: impl FnMut()) -> f64 {
    let mut runs = Vec::new();
    for round in 0..6 {
        let started = Instant::now();
        for _ in 0..n {
            f();
        }
        if round > 0 {
            runs.push(started.elapsed().as_nanos() as f64 / n as f64);
        }
    }
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

fn main() {
    let opts = Arc::new(Options::default());
    for python in [true, false] {
        let body = json_answer(&answer(python));
        let ns = time(20_000, || {
            black_box(rewrite_json(Endpoint::ChatCompletions, &opts, black_box(&body)));
        });
        let what = if python { "with a Python block" } else { "without Python" };
        println!(
            "json: rewrite_json of the chat answer {what} ({} bytes): {:.2} µs",
            body.len(),
            ns / 1e3
        );
    }
    for python in [true, false] {
        let body = sse_answer(&answer(python));
        let chunks = events(&body);
        let mut out = Vec::with_capacity(body.len() * 2);
        let ns = time(5_000, || {
            let mut rewriter = SseRewriter::new(Endpoint::ChatCompletions, Arc::clone(&opts));
            out.clear();
            for chunk in &chunks {
                rewriter.push(black_box(chunk), &mut out);
            }
            rewriter.finish(&mut out);
            black_box(&out);
        });
        let what = if python { "with a Python block" } else { "without Python" };
        println!(
            "sse: a chat stream {what}: {:.0} ns per event ({} events)",
            ns / chunks.len() as f64,
            chunks.len()
        );
    }
    let code = &CODE["```python\n".len()..CODE.len() - 3];
    let ns = time(20_000, || {
        black_box(sandgate::rewrite::payload::encode(black_box(code)));
    });
    println!("payload: encode of a {}-byte block: {:.2} µs", code.len(), ns / 1e3);
    for context in [Context::Off, Context::Answer] {
        let opts = Options { context, ..Options::default() };
        for blocks in [100, 1_000, 4_000] {
            let mut text = String::new();
            for i in 0..blocks {
                text.push_str(&format!(
                    "Paragraph {i}: prose.\n\n```python\nprint({i} * {i})\n```\n\n"
                ));
            }
            let started = Instant::now();
            let out = rewrite(&opts, &text);
            let s = started.elapsed().as_secs_f64();
            println!(
                "cells: one-shot rewrite of {blocks} small blocks ({} KB in, {} KB out), context {context}: \
                 {:.1} ms, {:.1} µs a block",
                text.len() / 1024,
                out.len() / 1024,
                s * 1e3,
                s * 1e6 / blocks as f64
            );
        }
    }
}
