//! Property tests of the rewrite engine over generated markdown built from the constructs that decide
//! where fenced code blocks are (containers, fences of every kind, HTML blocks, indented code,
//! paragraphs, mixed line endings):
//! - the engine picks exactly the Python blocks pulldown-cmark finds, with exactly their content;
//! - any chunking of the input gives the same output as one chunk;
//! - `restore(rewrite(x)) == x`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod engine;

use engine::{oracle_blocks, payload_blocks, rewrite_chunked, variants};
use proptest::prelude::*;
use sandgate::rewrite::{restore, rewrite};

const PREFIXES: &[&str] = &[
    "", "", "", "", "> ", ">", "- ", "* ", "1. ", "2) ", "  ", "   ", "    ", "\t", "> - ", "- > ",
    " > ", "-\t", "10. ", ">  ",
];

const BODIES: &[&str] = &[
    "```python",
    "```py",
    "~~~python",
    "````python",
    "```",
    "~~~",
    "````",
    "```js",
    "``` Python3 x",
    "print(1)",
    "x = '```'",
    "",
    "",
    "text",
    "more text",
    "# heading",
    "---",
    "===",
    "<div>",
    "</div>",
    "<!--",
    "-->",
    "    indented",
    "* * *",
    "1. item",
    "```python`",
    "~~~ py",
    "\tcode",
    "<pre>",
    "</pre>",
    "<custom-tag attr=\"1\">",
    "-",
    "```py3 title=\"a.py\"",
    "é 🐍 ü",
];

const EOLS: &[&str] = &["\n", "\n", "\n", "\n", "\n", "\r\n", "\r"];

/// Generated markdown; `lone_cr` allows a bare `\r` line ending. The spec counts it as a line ending
/// and so does the engine, but pulldown-cmark 0.13 does not inside code blocks, so the oracle test
/// leaves it out.
fn markdown_with(lone_cr: bool) -> impl Strategy<Value = String> {
    let eols = if lone_cr { EOLS.len() } else { EOLS.len() - 1 };
    let line = (0..PREFIXES.len(), 0..BODIES.len(), 0..eols);
    (prop::collection::vec(line, 0..24), any::<bool>()).prop_map(|(lines, final_eol)| {
        let mut text = String::new();
        let n = lines.len();
        for (i, (p, b, e)) in lines.into_iter().enumerate() {
            text.push_str(PREFIXES[p]);
            text.push_str(BODIES[b]);
            if i + 1 < n || final_eol {
                text.push_str(EOLS[e]);
            }
        }
        text
    })
}

fn markdown() -> impl Strategy<Value = String> {
    markdown_with(true)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 768, ..ProptestConfig::default() })]

    #[test]
    fn agrees_with_pulldown_cmark(input in markdown_with(false), variant in 0usize..6) {
        let (name, opts) = variants().swap_remove(variant);
        let out = rewrite(&opts, &input);
        prop_assert_eq!(payload_blocks(&out), oracle_blocks(&opts, &input), "{} on {:?}", name, input);
    }

    #[test]
    fn chunking_does_not_change_output(
        input in markdown(),
        variant in 0usize..6,
        cuts in prop::collection::vec(0usize..400, 0..12),
    ) {
        let (name, opts) = variants().swap_remove(variant);
        let whole = rewrite(&opts, &input);
        prop_assert_eq!(rewrite_chunked(&opts, &input, &cuts), whole, "{} on {:?} cut at {:?}", name, input, cuts);
    }

    #[test]
    fn restore_undoes_rewrite(input in markdown(), variant in 0usize..6) {
        let (name, opts) = variants().swap_remove(variant);
        let out = rewrite(&opts, &input);
        prop_assert_eq!(restore(&out), input.clone(), "{} on {:?}", name, input);
    }

    #[test]
    fn arbitrary_text_never_panics_and_chunks_agree(input in "\\PC{0,200}", cuts in prop::collection::vec(0usize..200, 0..8)) {
        for (name, opts) in variants() {
            let whole = rewrite(&opts, &input);
            prop_assert_eq!(rewrite_chunked(&opts, &input, &cuts), whole, "{}", name);
            let _ = restore(&input);
        }
    }
}
