//! Property tests of the rewrite engine over generated markdown built from the constructs that decide
//! where fenced code blocks are: nested containers of varied widths (block quotes, list items with
//! every marker and padding, tabs), fences of 3 to 6 backticks or tildes indented 0 to 5 columns with
//! all sorts of info strings and closing lines, setext underlines, thematic breaks, headings, HTML
//! blocks of types 1 to 7 and their end markers, link reference definitions, lazy continuation lines,
//! blank lines with spaces, and mixed line endings:
//! - the engine picks exactly the Python blocks pulldown-cmark finds, with exactly their content;
//! - any chunking of the input gives the same output as one chunk;
//! - `restore(rewrite(x)) == x`;
//! - each replacement's `cx` holds the blocks pulldown-cmark finds before it, the newest that fit the
//!   budget, whatever the chunking (budgets from 0 to 160 bytes, so that blocks are left out);
//! - with the code shown, the output after every push is a prefix of the one-shot output and lacks at
//!   most the line being received.
//!
//! A long campaign: `PROPTEST_CASES=200000 cargo test --release --test it engine::props::`.

use std::sync::Arc;

use crate::support::engine::{
    char_cuts, oracle_blocks, oracle_cx, payload_blocks, payload_cx, rewrite_chunked, variants,
};
use proptest::prelude::*;
use sandgate::rewrite::{restore, rewrite, Options, Rewriter};

/// Container prefixes (block quotes, list items of varied widths, indentation with tabs); a line's
/// prefix is up to three of these.
const CONTAINERS: &[&str] = &[
    "> ",
    ">",
    ">>",
    "> >",
    ">  ",
    " > ",
    ">\t",
    "- ",
    "-   ",
    "-    ",
    "-\t",
    " - ",
    "* ",
    "+ ",
    "1. ",
    "1.  ",
    "2) ",
    "10) ",
    "10. ",
    "  ",
    "   ",
    "    ",
    "     ",
    "\t",
    " \t",
    "  \t",
    "\t ",
    "-",
    "1.",
    ">",
    "0. ",
    "123456789) ",
    "1234567890. ",
    "- - ",
    "*\t",
    ">\t>",
];

/// Info strings after a fence run.
const INFOS: &[&str] = &[
    "python",
    "python",
    "py",
    "Python",
    "PY3",
    "python3",
    " python",
    "\tpy",
    "python{.x}",
    "py title=\"a.py\"",
    "python `x`",
    "py ~x~",
    "python`",
    "js",
    "",
    "",
    "pycon",
    "~~~",
    " ",
    "python  ",
    "pythonx",
    "py3\t",
    "é",
    "python\x0c",
    "\x0bpy",
    "py\x0b x",
];

/// Everything after a closing-fence run.
const FENCE_TAILS: &[&str] = &["", "", "", " ", "  ", "\t", " x", "`", "~", " `"];

const INDENTS: &[&str] = &["", "", "", " ", "  ", "   ", "    ", "     ", "\t", " \t"];

/// Lines that are not fences: paragraphs, headings, breaks, HTML blocks of every type with their end
/// markers, link reference definitions, indented code, blank lines with spaces.
const BODIES: &[&str] = &[
    "",
    "",
    "",
    " ",
    "  ",
    "\t",
    "     ",
    "text",
    "more text",
    "print(1)",
    "x = '```'",
    "    indented",
    "\tcode",
    "# heading",
    "###### six",
    "####### seven",
    "#",
    "#hash",
    "---",
    "===",
    "--",
    "= =",
    "***",
    "- - -",
    "___",
    "* * *",
    "-",
    "1. item",
    "2. item",
    "-  item",
    "<script>",
    "<script type=\"x\">",
    "</script>",
    "<pre>",
    "<pre x>",
    "</pre>",
    "<style",
    "</style>",
    "<textarea>",
    "x </textarea> y",
    "<!--",
    "<!-- c -->",
    "-->",
    "a --> b",
    "<?php",
    "?>",
    "<!DOCTYPE html",
    "<!x",
    ">",
    "<![CDATA[",
    "]]>",
    "<div>",
    "</div>",
    "<div",
    "<table>",
    "<p/>",
    "<hr/>",
    "<custom-tag attr=\"1\">",
    "</span>",
    "<a href='x'>",
    "<b>",
    "<b> x",
    "<a b=c\td>",
    "<a\x0cb>",
    "<a b='c'\x0b>",
    "<x-y />",
    "</a >",
    "</a b>",
    "<a b=>",
    "<a =b>",
    "<a b = \"c\" d=e/>",
    "<a_b>",
    "<a:b c>",
    "<a b=\"c\">x",
    "<a b='x\">",
    "<1a>",
    "[foo]: /url",
    "[foo]: /url \"title\"",
    "[foo]:",
    "\"title\"",
    "[foo]",
    "/url",
    "[bar]: <x y> 'z'",
    "[a]: b",
    "[foo]: /url 'ti",
    "tle'",
    "'title'",
    "(t)",
    "[foo",
    "bar]: /u",
    "[ ]: x",
    "[foo]:/url",
    "[foo]: <a b> \"t\"",
    "[x]: y z",
    "é 🐍 ü",
    "<pre\x0b>",
    "text\x0c",
];

/// Lines the oracle property leaves out: pulldown-cmark counts a line of form feeds or vertical tabs
/// as blank where a block starts (`scan_blank_line`) but not where a paragraph goes on, which the
/// engine does not copy (the spec's blank line holds only spaces and tabs, and no model writes them).
const EXOTIC_BODIES: &[&str] = &["\x0c", " \x0b ", "\x0c\t"];

const EOLS: &[&str] = &["\n", "\n", "\n", "\n", "\n", "\r\n", "\r"];

/// One line's body: a fixed body, an opening fence or a closing-looking fence.
fn body(exotic: bool) -> impl Strategy<Value = String> {
    let fixed = prop::sample::select(BODIES).prop_map(str::to_owned);
    let exotic =
        prop::sample::select(if exotic { EXOTIC_BODIES } else { BODIES }).prop_map(str::to_owned);
    let fence_char = prop::sample::select(&[b'`', b'~'][..]);
    let open = (
        prop::sample::select(INDENTS),
        fence_char.clone(),
        3usize..=6,
        prop::sample::select(INFOS),
    )
        .prop_map(|(indent, ch, len, info)| {
            format!("{indent}{}{info}", String::from(ch as char).repeat(len))
        });
    let close =
        (prop::sample::select(INDENTS), fence_char, 2usize..=6, prop::sample::select(FENCE_TAILS))
            .prop_map(|(indent, ch, len, tail)| {
                format!("{indent}{}{tail}", String::from(ch as char).repeat(len))
            });
    prop_oneof![5 => fixed, 3 => open, 3 => close, 1 => exotic]
}

/// Generated markdown; `exotic` allows a bare `\r` line ending and [`EXOTIC_BODIES`]. The spec counts
/// a lone `\r` as a line ending and so does the engine, but pulldown-cmark 0.13 does not inside code
/// blocks, so the oracle test leaves both out.
fn markdown_with(exotic: bool) -> impl Strategy<Value = String> {
    let eols = if exotic { EOLS } else { &EOLS[..EOLS.len() - 1] };
    let fresh = prop::collection::vec(prop::sample::select(CONTAINERS), 0..=3);
    let prefix = prop_oneof![
        // No prefix: lazy continuation lines, or the end of the containers.
        2 => Just(Prefix::None),
        // The previous line's prefix again: a new item or quote line at the same depth.
        1 => Just(Prefix::Same),
        // The previous line's prefix with list markers turned into spaces: a continuation line.
        3 => Just(Prefix::Continue),
        3 => fresh.prop_map(Prefix::Fresh),
    ];
    let line = (prefix, body(exotic), prop::sample::select(eols));
    (prop::collection::vec(line, 0..24), any::<bool>()).prop_map(|(lines, final_eol)| {
        let mut text = String::new();
        let n = lines.len();
        let mut previous = String::new();
        for (i, (prefix, body, eol)) in lines.into_iter().enumerate() {
            let prefix = match prefix {
                Prefix::None => String::new(),
                Prefix::Same => previous.clone(),
                Prefix::Continue => continuation(&previous),
                Prefix::Fresh(parts) => parts.concat(),
            };
            text.push_str(&prefix);
            text.push_str(&body);
            if i + 1 < n || final_eol {
                text.push_str(eol);
            }
            previous = prefix;
        }
        text
    })
}

#[derive(Clone, Debug)]
enum Prefix {
    None,
    Same,
    Continue,
    Fresh(Vec<&'static str>),
}

/// A prefix with its list markers turned into spaces (tabs and `>` kept).
fn continuation(prefix: &str) -> String {
    prefix
        .chars()
        .map(|c| if matches!(c, '-' | '*' | '+' | '.' | ')' | '0'..='9') { ' ' } else { c })
        .collect()
}

fn markdown() -> impl Strategy<Value = String> {
    markdown_with(true)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

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
    fn cx_holds_the_earlier_blocks_within_the_budget(
        input in markdown_with(false),
        variant in 0usize..6,
        budget in 0usize..160,
        cuts in prop::collection::vec(0usize..400, 0..12),
    ) {
        let (name, opts) = variants().swap_remove(variant);
        let opts = Options { context_bytes: budget, ..opts };
        let out = rewrite(&opts, &input);
        let expected = oracle_cx(&opts, &oracle_blocks(&opts, &input));
        prop_assert_eq!(payload_cx(&out), expected, "{} budget {} on {:?}", name, budget, input);
        let split = rewrite_chunked(&opts, &input, &cuts);
        prop_assert_eq!(payload_cx(&split), payload_cx(&out), "{} budget {} on {:?} cut at {:?}", name, budget, input, cuts);
    }

    #[test]
    fn context_budgets_keep_chunking_and_restore(
        input in markdown(),
        variant in 0usize..6,
        budget in 0usize..160,
        cuts in prop::collection::vec(0usize..400, 0..12),
    ) {
        let (name, opts) = variants().swap_remove(variant);
        let opts = Options { context_bytes: budget, ..opts };
        let whole = rewrite(&opts, &input);
        prop_assert_eq!(rewrite_chunked(&opts, &input, &cuts), whole.clone(), "{} budget {} on {:?} cut at {:?}", name, budget, input, cuts);
        prop_assert_eq!(restore(&opts, &whole), input.clone(), "{} budget {} on {:?}", name, budget, input);
    }

    #[test]
    fn restore_undoes_rewrite(input in markdown(), variant in 0usize..6) {
        let (name, opts) = variants().swap_remove(variant);
        let out = rewrite(&opts, &input);
        prop_assert_eq!(restore(&opts, &out), input.clone(), "{} on {:?}", name, input);
    }

    #[test]
    fn shown_code_holds_at_most_the_current_line(
        input in markdown(),
        variant in prop::sample::select(&[0usize, 2, 4][..]),
        cuts in prop::collection::vec(0usize..400, 0..16),
    ) {
        let (name, opts) = variants().swap_remove(variant);
        prop_assert!(opts.show_code);
        let whole = rewrite(&opts, &input);
        let mut rewriter = Rewriter::new(Arc::new(opts.clone()));
        let mut out = String::new();
        let mut last = 0;
        for pushed in chunk_ends(&input, &cuts) {
            rewriter.push(&input[last..pushed], &mut out);
            last = pushed;
            prop_assert!(whole.starts_with(&out), "{} on {:?}: {:?} is not a prefix of the output", name, input, out);
            // The output so far is the input so far with whole units added: undone, it is a prefix of
            // the input that lacks at most the line being received (and a `\r` that may start `\r\n`).
            let emitted = restore(&opts, &out);
            let so_far = &input[..pushed];
            prop_assert!(so_far.starts_with(&emitted), "{} on {:?}: restore({:?}) is not a prefix of {:?}", name, input, out, so_far);
            let line_start = so_far.strip_suffix('\r').unwrap_or(so_far).rfind(['\n', '\r']).map_or(0, |at| at + 1);
            prop_assert!(emitted.len() >= line_start, "{} on {:?}: after {:?} only {:?} went out", name, input, so_far, out);
        }
        rewriter.finish(&mut out);
        prop_assert_eq!(out, whole);
    }

    #[test]
    fn arbitrary_text_never_panics_and_chunks_agree(input in "\\PC{0,200}", cuts in prop::collection::vec(0usize..200, 0..8)) {
        for (name, opts) in variants() {
            let whole = rewrite(&opts, &input);
            prop_assert_eq!(rewrite_chunked(&opts, &input, &cuts), whole, "{}", name);
            let _ = restore(&opts, &input);
        }
    }
}

/// The end of each chunk when `input` is cut at `cuts` (rounded down to char boundaries), in order.
fn chunk_ends(input: &str, cuts: &[usize]) -> Vec<usize> {
    let mut ends = char_cuts(input, cuts);
    ends.push(input.len());
    ends.dedup();
    ends
}
