//! Shared helpers for the rewrite-engine tests: the pulldown-cmark oracle, payload extraction, and
//! chunked feeding.

#![allow(dead_code)]

use std::sync::Arc;

use pulldown_cmark::{CodeBlockKind, Event, Parser, Tag, TagEnd};
use sandgate::rewrite::{payload, Mode, Options, Rewriter};

pub const PUBLIC_URL: &str = "http://127.0.0.1:8787";

/// The six option sets every fixture is checked under: each mode, code shown and hidden.
pub fn variants() -> Vec<(&'static str, Options)> {
    let mut out = Vec::new();
    for (name, mode) in
        [("link", Mode::Link), ("widget", Mode::Widget), ("artifact", Mode::Artifact)]
    {
        for show_code in [true, false] {
            let label: &'static str = match (name, show_code) {
                ("link", true) => "link",
                ("link", false) => "link-hidden",
                ("widget", true) => "widget",
                ("widget", false) => "widget-hidden",
                ("artifact", true) => "artifact",
                _ => "artifact-hidden",
            };
            out.push((
                label,
                Options {
                    mode,
                    show_code,
                    public_url: PUBLIC_URL.to_owned(),
                    ..Options::default()
                },
            ));
        }
    }
    out
}

/// The Python blocks pulldown-cmark finds, in order: their content.
pub fn oracle_blocks(opts: &Options, markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for event in Parser::new(markdown) {
        match event {
            Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(info)))
                if opts.is_python_info(&info) =>
            {
                current = Some(String::new());
            }
            Event::Text(text) => {
                if let Some(block) = current.as_mut() {
                    block.push_str(&text);
                }
            }
            Event::End(TagEnd::CodeBlock) => {
                if let Some(block) = current.take() {
                    blocks.push(block);
                }
            }
            _ => {}
        }
    }
    blocks
}

/// The code of every sandbox URL in a rewritten text, in order.
pub fn payload_blocks(rewritten: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut rest = rewritten;
    while let Some(at) = rest.find("/sandbox#py=") {
        rest = &rest[at + "/sandbox#py=".len()..];
        let end = rest.bytes().position(|b| !payload::is_payload_byte(b)).unwrap_or(rest.len());
        blocks.push(payload::decode(&rest[..end]).expect("payload decodes"));
        rest = &rest[end..];
    }
    blocks
}

/// Feeds `input` in chunks cut at the given byte offsets (rounded down to char boundaries).
pub fn rewrite_chunked(opts: &Options, input: &str, cuts: &[usize]) -> String {
    let mut rewriter = Rewriter::new(Arc::new(opts.clone()));
    let mut out = String::new();
    let mut last = 0;
    let mut cuts: Vec<usize> = cuts
        .iter()
        .map(|&c| {
            let mut c = c.min(input.len());
            while !input.is_char_boundary(c) {
                c -= 1;
            }
            c
        })
        .collect();
    cuts.sort_unstable();
    for cut in cuts {
        if cut < last {
            continue;
        }
        rewriter.push(&input[last..cut], &mut out);
        last = cut;
    }
    rewriter.push(&input[last..], &mut out);
    rewriter.finish(&mut out);
    out
}

/// Every character in its own chunk.
pub fn rewrite_char_by_char(opts: &Options, input: &str) -> String {
    let mut rewriter = Rewriter::new(Arc::new(opts.clone()));
    let mut out = String::new();
    let mut buf = [0u8; 4];
    for ch in input.chars() {
        rewriter.push(ch.encode_utf8(&mut buf), &mut out);
    }
    rewriter.finish(&mut out);
    out
}
