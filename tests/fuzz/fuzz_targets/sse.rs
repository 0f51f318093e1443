//! Fuzzes the SSE rewriter of each API shape: no input panics, and every chunking of the same bytes
//! gives the same output as one chunk.

#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use sandgate::rewrite::api::{Endpoint, SseRewriter};
use sandgate::rewrite::Options;

fn run(endpoint: Endpoint, opts: &Arc<Options>, data: &[u8], chunk: usize) -> Vec<u8> {
    let mut rewriter = SseRewriter::new(endpoint, opts.clone());
    let mut out = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        rewriter.push(piece, &mut out);
    }
    rewriter.finish(&mut out);
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else { return };
    let endpoint = match control % 3 {
        0 => Endpoint::ChatCompletions,
        1 => Endpoint::Completions,
        _ => Endpoint::Responses,
    };
    let opts = Arc::new(Options { show_code: control & 4 == 0, ..Options::default() });
    let whole = run(endpoint, &opts, rest, rest.len());
    let chunked = run(endpoint, &opts, rest, usize::from(control >> 3) + 1);
    assert_eq!(chunked, whole, "chunked output differs from one-shot output");
});
