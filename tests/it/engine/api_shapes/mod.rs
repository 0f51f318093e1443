//! The OpenAI API shapes through the rewriter, JSON and SSE.
//!
//! The expectations are computed with the engine itself (`rewrite::rewrite`, the one-shot output),
//! so these tests hold for any engine whose streaming output, for every chunking, concatenates to
//! its one-shot output. The inputs contain Python blocks cut into many small deltas (fence lines
//! split too), several choices or parts with different texts, and events around them that must pass
//! untouched: a dropped, duplicated, reordered or misrouted delta changes a concatenated text and
//! fails the comparison.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::support::engine::sse_events as events;
use sandgate::rewrite::api::{restore_request, rewrite_json, Endpoint, SseRewriter, Stats};
use sandgate::rewrite::sse::Event;
use sandgate::rewrite::{self, Mode, Options, Rewriter};
use serde_json::{json, Value};

mod chat;
mod generated;
mod json;
mod responses;
mod restore;

/// Prose, a Python block, a bash block, and a tilde `py` block with non-ASCII text.
const MD_A: &str = "Here is a quick way to list primes:\n\n```python\ndef primes(n):\n    out = []\n    for k in range(2, n):\n        if all(k % p for p in out):\n            out.append(k)\n    return out\n\nprint(primes(30))\n```\n\nIt prints the primes below 30. In the shell:\n\n```bash\nseq 2 29 | factor\n```\n\nAnd squares — ✓ héllo 🐍:\n\n~~~py\nimport math\nprint([math.sqrt(i) for i in range(5)])\n~~~\n";

/// A Python block in a list item, then an unclosed block cut by max_tokens.
const MD_B: &str = "Steps:\n\n1. Install nothing.\n2. Run this:\n\n   ```python3\n   x = [i * i for i in range(5)]\n   print(x)\n   ```\n\n3. Then this one:\n\n```python\nfor i in range(3):\n    print(\"line\", i)\n";

/// No Python at all (inline code and a JavaScript block).
const MD_PROSE: &str =
    "Use `print()` to show a value.\n\n```js\nconsole.log(1)\n```\n\nThat is all. ✓\n";

/// The options the tests run with: every mode, the code shown or hidden.
fn all_opts() -> Vec<Arc<Options>> {
    let mut all = Vec::new();
    for mode in [Mode::Link, Mode::Widget, Mode::Artifact] {
        for show_code in [true, false] {
            all.push(Arc::new(Options { mode, show_code, ..Options::default() }));
        }
    }
    all
}

/// The engine's one-shot output and block count.
fn one_shot(opts: &Arc<Options>, text: &str) -> (String, usize) {
    let mut rewriter = Rewriter::new(Arc::clone(opts));
    let mut out = String::new();
    rewriter.push(text, &mut out);
    rewriter.finish(&mut out);
    assert_eq!(out, rewrite::rewrite(opts, text), "push+finish equals rewrite");
    (out, rewriter.blocks())
}

/// Cuts `text` into pieces of 1 to 6 characters, pseudo-randomly from `seed`.
fn split(text: &str, seed: u64) -> Vec<String> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let chars: Vec<char> = text.chars().collect();
    let mut pieces = Vec::new();
    let mut at = 0;
    while at < chars.len() {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let len = 1 + ((state >> 33) % 6) as usize;
        let end = (at + len).min(chars.len());
        pieces.push(chars[at..end].iter().collect());
        at = end;
    }
    pieces
}

/// Cuts `text` so that every backtick and tilde is a delta of its own (fence lines split apart).
fn split_fences(text: &str) -> Vec<String> {
    let mut pieces: Vec<String> = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        if c == '`' || c == '~' || c == '\n' {
            if !current.is_empty() {
                pieces.push(std::mem::take(&mut current));
            }
            pieces.push(c.to_string());
        } else {
            current.push(c);
            if current.len() >= 4 {
                pieces.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.is_empty() {
        pieces.push(current);
    }
    pieces
}

/// The length in bytes of the longest common prefix of two texts.
fn common_prefix(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map_or(a.len().min(b.len()), |((i, _), _)| i)
}

fn sse_bytes(datas: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for data in datas {
        out.extend_from_slice(format!("data: {data}\n\n").as_bytes());
    }
    out
}

/// Runs `input` through an [`SseRewriter`] fed in chunks of `chunk` bytes.
fn run(endpoint: Endpoint, opts: &Arc<Options>, input: &[u8], chunk: usize) -> (Vec<u8>, Stats) {
    let mut rewriter = SseRewriter::new(endpoint, Arc::clone(opts));
    let mut out = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        rewriter.push(piece, &mut out);
    }
    rewriter.finish(&mut out);
    (out, rewriter.stats())
}

/// Runs `input` in several chunkings (whole, 1, 2, 7, 64 and 1000 bytes) and checks that they all
/// give the same output and stats.
fn run_all(endpoint: Endpoint, opts: &Arc<Options>, input: &[u8]) -> (Vec<u8>, Stats) {
    let whole = run(endpoint, opts, input, input.len());
    for chunk in [1, 2, 7, 64, 1000] {
        let got = run(endpoint, opts, input, chunk);
        assert_eq!(
            String::from_utf8_lossy(&got.0),
            String::from_utf8_lossy(&whole.0),
            "chunks of {chunk} bytes give the same output"
        );
        assert_eq!(got.1, whole.1, "chunks of {chunk} bytes give the same stats");
    }
    whole
}

fn parse(event: &Event) -> Option<Value> {
    serde_json::from_str(event.data()?).ok()
}

/// Walks the output against the input: every input event appears in the output, in order, either
/// byte-identical or re-serialised as `rewritten(input event, output event)` allows (both JSON);
/// every other output event goes to `extra`, with the input events and the index of the next one
/// not yet seen.
fn check_alignment(
    input: &[u8],
    output: &[u8],
    rewritten: impl Fn(&Event, &Event, Value, Value) -> bool,
    mut extra: impl FnMut(&Event, &[Event], usize),
) {
    let ins = events(input);
    let mut next = 0;
    for out in &events(output) {
        if let Some(inp) = ins.get(next) {
            if out.raw() == inp.raw() {
                next += 1;
                continue;
            }
            if let (Some(a), Some(b)) = (parse(inp), parse(out)) {
                if rewritten(inp, out, a, b) {
                    next += 1;
                    continue;
                }
            }
        }
        extra(out, &ins, next);
    }
    assert_eq!(next, ins.len(), "every input event appears in the output, in order");
}

/// A body from tests/fixtures/api/.
fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/api/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}
