//! Fuzzes the markdown rewriter: no input panics, every chunking gives the one-shot output, and
//! restore gives the input back.
//!
//! The first bytes of the input choose the options and the chunk sizes; the rest is the markdown.

#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use sandgate::rewrite::{restore, rewrite, Mode, Options, Rewriter};

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else { return };
    let Some((&chunk_seed, rest)) = rest.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let mode = match control % 3 {
        0 => Mode::Link,
        1 => Mode::Widget,
        _ => Mode::Artifact,
    };
    let opts = Options {
        mode,
        show_code: control & 4 == 0,
        max_block_bytes: if control & 8 == 0 { 1 << 20 } else { 64 },
        ..Options::default()
    };
    let whole = rewrite(&opts, text);

    let mut rewriter = Rewriter::new(Arc::new(opts.clone()));
    let mut out = String::new();
    let mut at = 0;
    let mut size = usize::from(chunk_seed % 17) + 1;
    while at < text.len() {
        let mut end = (at + size).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        rewriter.push(&text[at..end], &mut out);
        at = end;
        size = (size * 7 + 3) % 23 + 1;
    }
    rewriter.finish(&mut out);
    assert_eq!(out, whole, "chunked output differs from one-shot output");

    if opts.max_block_bytes > 64 {
        assert_eq!(restore(&opts, &whole), text, "restore(rewrite(x)) != x");
    }
});
