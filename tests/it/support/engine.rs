//! Shared helpers for the rewrite-engine tests: the pulldown-cmark oracle, payload extraction,
//! chunked feeding, and an event stream's events.

use std::sync::Arc;

use pulldown_cmark::{CodeBlockKind, Event, Parser, Tag, TagEnd};
use sandgate::rewrite::{payload, Cells, Context, Mode, Options, Rewriter, ANSWER_CONTEXT_FACTOR};

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

/// Option sets that exercise the cells context beyond the default: a budget so small that earlier
/// blocks are left out, no budget at all, and no context.
pub fn context_variants() -> Vec<(&'static str, Options)> {
    let base = Options { public_url: PUBLIC_URL.to_owned(), ..Options::default() };
    vec![
        ("link-budget-24", Options { context_bytes: 24, ..base.clone() }),
        (
            "widget-hidden-budget-0",
            Options { mode: Mode::Widget, show_code: false, context_bytes: 0, ..base.clone() },
        ),
        ("link-context-off", Options { context: Context::Off, ..base }),
    ]
}

/// The `cx` each replacement should carry, computed from the blocks pulldown-cmark finds (not with
/// the engine's own [`Cells`]): for block `k`, the longest run of blocks just before it whose code
/// fits the budget, and how many blocks came before that run; `None` when nothing came before.
/// Once the answer's links have carried `ANSWER_CONTEXT_FACTOR` × the budget, a link carries no
/// cells and counts all `k` earlier blocks as left out.
pub fn oracle_cx(opts: &Options, blocks: &[String]) -> Vec<Option<(Vec<String>, usize)>> {
    let mut allowance = opts.context_bytes.saturating_mul(ANSWER_CONTEXT_FACTOR);
    (0..blocks.len())
        .map(|k| {
            if opts.context == Context::Off || k == 0 {
                return None;
            }
            let mut start = k;
            let mut bytes = 0;
            while start > 0 && bytes + blocks[start - 1].len() <= opts.context_bytes {
                bytes += blocks[start - 1].len();
                start -= 1;
            }
            if bytes > allowance {
                // The answer's links have carried all they may: this one carries no cells.
                return Some((Vec::new(), k));
            }
            allowance -= bytes;
            Some((blocks[start..k].to_vec(), start))
        })
        .collect()
}

/// The `cx` of every sandbox URL in a rewritten text, in order, decoded: the cells and how many
/// were left out; `None` for a URL without `cx`.
pub fn payload_cx(rewritten: &str) -> Vec<Option<(Vec<String>, usize)>> {
    let mut out = Vec::new();
    for url in rewritten.split("/sandbox#py=").skip(1) {
        let end = url
            .bytes()
            .position(|b| !(payload::is_payload_byte(b) || b"&=;".contains(&b)))
            .unwrap_or(url.len());
        let fragment = url[..end].replace("&amp;", "&");
        let cx = fragment.split('&').find_map(|p| p.strip_prefix("cx="));
        out.push(cx.map(|cx| {
            let cells = Cells::decode(cx).expect("cx decodes");
            (cells.cells().map(str::to_owned).collect(), cells.omitted())
        }));
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

/// `cuts` as byte offsets into `input`: each at most its length and rounded down to a char
/// boundary, in order.
pub fn char_cuts(input: &str, cuts: &[usize]) -> Vec<usize> {
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
    cuts
}

/// Feeds `input` in chunks cut at the given byte offsets (rounded down to char boundaries).
pub fn rewrite_chunked(opts: &Options, input: &str, cuts: &[usize]) -> String {
    let mut rewriter = Rewriter::new(Arc::new(opts.clone()));
    let mut out = String::new();
    let mut last = 0;
    for cut in char_cuts(input, cuts) {
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

/// The events of a whole event stream, as the engine's decoder reads it.
pub fn sse_events(bytes: &[u8]) -> Vec<sandgate::rewrite::sse::Event> {
    let mut decoder = sandgate::rewrite::sse::Decoder::new();
    let mut events = Vec::new();
    decoder.push(bytes, &mut events);
    decoder.finish(&mut events);
    events
}
