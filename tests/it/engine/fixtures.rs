//! Data-driven tests of the rewrite engine: one directory per case under
//! `tests/fixtures/rewrite/`, holding `input.md` and the expected output for each option set
//! (`link.md`, `link-hidden.md`, `widget.md`, ...), compared byte for byte by `support::expect`,
//! which shows a unified diff for each file that differs. `UPDATE_EXPECT=1 cargo test --test it
//! engine::fixtures::` writes the expected files from the current output; review the diff before
//! committing it.
//!
//! For every case and option set the test also checks that the engine agrees with pulldown-cmark on
//! which blocks are Python and what their code is, that every chunking of the input gives the same
//! output, and that `restore` gives the input back byte for byte; and that each replacement's `cx`
//! holds the blocks pulldown-cmark finds before it, within the budget (also under the extra option
//! sets of `context_variants`, which have no expected files).

use std::fs;
use std::path::Path;

use crate::support::engine::{
    context_variants, oracle_blocks, oracle_cx, payload_blocks, payload_cx, rewrite_char_by_char,
    rewrite_chunked, variants,
};
use crate::support::expect;
use sandgate::rewrite::{restore, rewrite, Mode, Options};

/// Every option set the checks run under: the six with expected files and the context ones.
fn all_variants() -> Vec<(&'static str, Options)> {
    let mut all = variants();
    all.extend(context_variants());
    all
}

fn cases() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rewrite");
    let mut cases: Vec<(String, String)> = fs::read_dir(&dir)
        .expect("fixture directory")
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let input = fs::read_to_string(path.join("input.md")).expect("input.md");
            (name, input)
        })
        .collect();
    cases.sort();
    assert!(cases.len() >= 15, "fixtures missing");
    cases
}

#[test]
fn fixtures_match_expected_output() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rewrite");
    let mut failures = Vec::new();
    for (name, input) in cases() {
        for (variant, opts) in variants() {
            let actual = rewrite(&opts, &input);
            let path = dir.join(&name).join(format!("{variant}.md"));
            if let Err(wrong) = expect::file(&path, &actual) {
                failures.push(format!("{name}/{variant}: output {wrong}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n({}=1 rewrites the expected files)",
        failures.join("\n"),
        expect::UPDATE
    );
}

#[test]
fn fixtures_agree_with_pulldown_cmark() {
    for (name, input) in cases() {
        for (variant, opts) in all_variants() {
            let expected = oracle_blocks(&opts, &input);
            let out = rewrite(&opts, &input);
            let actual = payload_blocks(&out);
            assert_eq!(actual, expected, "{name}/{variant}: blocks differ from pulldown-cmark");
            assert_eq!(
                payload_cx(&out),
                oracle_cx(&opts, &expected),
                "{name}/{variant}: cx differs from the earlier blocks pulldown-cmark finds"
            );
        }
    }
}

#[test]
fn fixtures_chunking_gives_the_same_output() {
    for (name, input) in cases() {
        for (variant, opts) in all_variants() {
            let whole = rewrite(&opts, &input);
            let whole_cx = payload_cx(&whole);
            for cut in 0..=input.len() {
                if input.is_char_boundary(cut) {
                    let split = rewrite_chunked(&opts, &input, &[cut]);
                    assert_eq!(
                        payload_cx(&split),
                        whole_cx,
                        "{name}/{variant}: cx, split at {cut}"
                    );
                    assert_eq!(split, whole, "{name}/{variant}: split at {cut}");
                }
            }
            assert_eq!(
                rewrite_char_by_char(&opts, &input),
                whole,
                "{name}/{variant}: char by char"
            );
            let thirds: Vec<usize> = (1..input.len()).step_by(3).collect();
            assert_eq!(
                rewrite_chunked(&opts, &input, &thirds),
                whole,
                "{name}/{variant}: 3-byte chunks"
            );
        }
    }
}

#[test]
fn fixtures_restore_to_the_input() {
    for (name, input) in cases() {
        for (variant, opts) in all_variants() {
            let rewritten = rewrite(&opts, &input);
            assert_eq!(
                restore(&opts, &rewritten),
                input,
                "{name}/{variant}: restore(rewrite(x)) != x"
            );
            // Restoring what holds no replacement changes nothing.
            assert_eq!(restore(&opts, &input), input, "{name}: restore of the input itself");
        }
    }
}

#[test]
fn mode_off_changes_nothing() {
    let opts = Options { mode: Mode::Off, ..Options::default() };
    for (name, input) in cases() {
        assert_eq!(rewrite(&opts, &input), input, "{name}");
    }
}

#[test]
fn hostile_code_stays_inside_payloads() {
    let input = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rewrite/hostile/input.md"),
    )
    .unwrap();
    for (variant, opts) in variants() {
        let out = rewrite(&opts, &input);
        // Whatever the engine added is the output minus the input's own lines.
        let added: String = if opts.show_code {
            out.strip_prefix(input.as_str()).expect("code shown: the input comes first").to_owned()
        } else {
            out.clone()
        };
        for needle in ["</script>", "javascript:", "onerror", "-->", "<img", "\")", "\"]"] {
            assert!(!added.contains(needle), "{variant}: `{needle}` leaked into {added:?}");
        }
        let blocks = payload_blocks(&out);
        assert_eq!(blocks.len(), 1, "{variant}");
        assert!(blocks[0].contains("</script><script>alert(1)</script>"), "{variant}");
        // A link line is exactly one markdown link; an iframe has exactly one src attribute.
        if opts.mode == Mode::Link {
            let link = added.lines().find(|l| l.contains("sandbox#py=")).unwrap();
            assert!(
                link.starts_with("[▶ Run in sandbox](http://127.0.0.1:8787/sandbox#py="),
                "{link}"
            );
            assert_eq!(link.matches('(').count(), 1, "{link}");
            assert_eq!(link.matches(')').count(), 1, "{link}");
        } else {
            assert_eq!(added.matches("src=\"").count(), 1, "{variant}");
            assert_eq!(added.matches("<iframe").count(), 1, "{variant}");
        }
    }
}

#[test]
fn configured_text_and_url_are_escaped() {
    let opts = Options {
        link_text: "Run [it] (now) *".to_owned(),
        public_url: "https://sand.example/a b)(".to_owned(),
        ..Options::default()
    };
    let out = rewrite(&opts, "```python\n1\n```\n");
    let link = out.lines().last().unwrap();
    assert!(
        link.starts_with(r"[Run \[it\] \(now\) \*](https://sand.example/a%20b%29%28/sandbox#py="),
        "{link}"
    );
    assert_eq!(restore(&opts, &out), "```python\n1\n```\n");
}

#[test]
fn oversized_block_passes_unchanged() {
    for show_code in [true, false] {
        let opts = Options { show_code, max_block_bytes: 64, ..Options::default() };
        let input =
            format!("```python\n{}```\n\n```python\nsmall = 1\n```\n", "x = 1\n".repeat(40));
        let out = rewrite(&opts, &input);
        let blocks = payload_blocks(&out);
        assert_eq!(blocks, vec!["small = 1\n".to_owned()], "show_code={show_code}");
        assert!(out.starts_with(&format!("```python\n{}```\n", "x = 1\n".repeat(40))));
        assert_eq!(rewrite_char_by_char(&opts, &input), out);
    }
}

#[test]
fn hidden_code_streams_text_around_blocks() {
    use std::sync::Arc;
    let opts = Arc::new(Options { show_code: false, ..Options::default() });
    let mut rewriter = sandgate::rewrite::Rewriter::new(opts);
    let mut out = String::new();
    rewriter.push("Some prose that streams", &mut out);
    assert_eq!(out, "Some prose that streams", "prose is not held");
    rewriter.push(" on.\n``", &mut out);
    assert_eq!(out, "Some prose that streams on.\n", "a possible fence is held");
    rewriter.push("`python\nprint(1)\n", &mut out);
    assert_eq!(out, "Some prose that streams on.\n", "the block is held");
    rewriter.push("```\nafter", &mut out);
    assert!(out.starts_with("Some prose that streams on.\n[▶ Run in sandbox](http"));
    assert!(out.ends_with(")\nafter"), "{out}");
    let mut shown = sandgate::rewrite::Rewriter::new(Arc::new(Options::default()));
    let mut out = String::new();
    shown.push("```python\nprint(1)", &mut out);
    assert_eq!(out, "```python\nprint(1)", "visible code streams with no pause");
}

/// Three blocks in list items, the step-by-step answer of issue 11.
const STEPS: &str = "1. Make:\n   ```python\n   fruits = [\"a\", \"b\"]\n   ```\n\
                     2. Loop:\n   ```python\n   for f in fruits:\n       print(f)\n   ```\n\
                     3. Count:\n   ```python\n   print(len(fruits), f)\n   ```\n";

fn cx_of(out: &str) -> Vec<Option<(Vec<String>, usize)>> {
    payload_cx(out)
}

fn cells(code: &[&str], omitted: usize) -> Option<(Vec<String>, usize)> {
    Some((code.iter().map(|c| (*c).to_owned()).collect(), omitted))
}

#[test]
fn later_blocks_carry_the_earlier_ones() {
    let (make, each, count) = (
        "fruits = [\"a\", \"b\"]\n",
        "for f in fruits:\n    print(f)\n",
        "print(len(fruits), f)\n",
    );
    for (variant, opts) in variants() {
        let out = rewrite(&opts, STEPS);
        assert_eq!(payload_blocks(&out), [make, each, count], "{variant}");
        assert_eq!(
            cx_of(&out),
            [None, cells(&[make], 0), cells(&[make, each], 0)],
            "{variant}: the first link has no cx, the later ones their earlier blocks, oldest first"
        );
        assert_eq!(restore(&opts, &out), STEPS, "{variant}: restore ignores cx");
    }
}

#[test]
fn the_budget_leaves_out_the_oldest_blocks() {
    let (make, each) = ("fruits = [\"a\", \"b\"]\n", "for f in fruits:\n    print(f)\n");
    // Room for the second block (31 bytes) alone, not with the first (21 more).
    let opts = Options { context_bytes: 40, ..Options::default() };
    let out = rewrite(&opts, STEPS);
    assert_eq!(cx_of(&out), [None, cells(&[make], 0), cells(&[each], 1)]);
    // Exactly the size of both: both fit; one byte less: the oldest goes.
    let both = make.len() + each.len();
    let opts = Options { context_bytes: both, ..Options::default() };
    assert_eq!(cx_of(&rewrite(&opts, STEPS))[2], cells(&[make, each], 0));
    let opts = Options { context_bytes: both - 1, ..Options::default() };
    assert_eq!(cx_of(&rewrite(&opts, STEPS))[2], cells(&[each], 1));
    // No budget: every earlier block is left out, and the links still say how many.
    let opts = Options { context_bytes: 0, show_code: false, ..Options::default() };
    let out = rewrite(&opts, STEPS);
    assert_eq!(cx_of(&out), [None, cells(&[], 1), cells(&[], 2)]);
    assert_eq!(restore(&opts, &out), STEPS);
    assert_eq!(rewrite_char_by_char(&opts, STEPS), out);
}

#[test]
fn context_off_gives_version_1_links() {
    let opts = Options { context: sandgate::rewrite::Context::Off, ..Options::default() };
    let out = rewrite(&opts, STEPS);
    assert!(!out.contains("&cx="), "{out}");
    assert_eq!(cx_of(&out), [None, None, None]);
    // The code links are the same as with the context, less `cx` (and so with another `mac`).
    let unsigned = |text: &str| -> String {
        text.lines()
            .map(|l| match l.find("&mac=") {
                Some(at) => format!("{}{}\n", &l[..at], &l[at + "&mac=".len() + 22..]),
                None => format!("{l}\n"),
            })
            .collect()
    };
    let with = unsigned(&rewrite(&Options::default(), STEPS));
    let stripped: String = with
        .lines()
        .map(|l| match l.find("&cx=") {
            Some(at) => format!("{})\n", &l[..at]),
            None => format!("{l}\n"),
        })
        .collect();
    assert_eq!(stripped, unsigned(&out));
}

#[test]
fn a_block_too_large_to_rewrite_cuts_the_context() {
    // The second block passes unchanged (past max_block_bytes): the third cannot run on the first
    // alone, so it carries no cells, only the count of what came before.
    let big = "x = 1\n".repeat(40);
    let input = format!(
        "```python\na = 1\n```\n\n```python\n{big}```\n\n```python\nb = 2\n```\n\n```python\nprint(a, b)\n```\n"
    );
    for show_code in [true, false] {
        let opts = Options { show_code, max_block_bytes: 64, ..Options::default() };
        let out = rewrite(&opts, &input);
        assert_eq!(payload_blocks(&out), ["a = 1\n", "b = 2\n", "print(a, b)\n"], "{show_code}");
        assert_eq!(cx_of(&out), [None, cells(&[], 2), cells(&["b = 2\n"], 2)], "{show_code}");
        assert_eq!(rewrite_char_by_char(&opts, &input), out);
        assert_eq!(restore(&opts, &out), input);
    }
}

#[test]
fn cx_comes_after_md_and_sg() {
    // An unclosed block in a list item: `md` (code hidden) and `sg` come first, then `cx`.
    let input = "```python\na = 1\n```\n- item\n  ```python\n  print(a)\n- next\n";
    let opts = Options { show_code: false, ..Options::default() };
    let out = rewrite(&opts, input);
    let link = out.lines().find(|l| l.contains("&cx=")).expect("a link with cx");
    let (md, sg, cx) =
        (link.find("&md=").unwrap(), link.find("&sg=").unwrap(), link.find("&cx=").unwrap());
    let mac = link.find("&mac=").unwrap();
    assert!(md < sg && sg < cx && cx < mac, "{link}");
    assert_eq!(restore(&opts, &out), input);
}

#[test]
fn replacements_without_cx_and_old_iframes_still_restore() {
    // Links, widgets and artifacts without `cx`, and iframes with `sandbox="allow-scripts"` only, as
    // before cells: signed, they restore (unsigned version-1 links do not:
    // tests/it/proxy/restore_trust.rs).
    let off = sandgate::rewrite::Context::Off;
    for (variant, opts) in variants() {
        let opts = Options { context: off, ..opts };
        let v1 = rewrite(&opts, STEPS).replace(
            "<iframe sandbox=\"allow-scripts allow-downloads\"",
            "<iframe sandbox=\"allow-scripts\"",
        );
        assert_ne!(v1, STEPS, "{variant}");
        assert_eq!(restore(&opts, &v1), STEPS, "{variant}");
    }
}

#[test]
fn cells_stream_with_nothing_held() {
    // With the code shown, each link goes out as soon as its block closes, carrying the earlier
    // blocks that already went out.
    use std::sync::Arc;
    let mut rewriter = sandgate::rewrite::Rewriter::new(Arc::new(Options::default()));
    let mut out = String::new();
    rewriter.push("```python\na = 1\n```\n", &mut out);
    assert_eq!(cx_of(&out), [None]);
    rewriter.push("```python\nprint(a)\n```\n", &mut out);
    assert_eq!(cx_of(&out), [None, cells(&["a = 1\n"], 0)]);
    assert!(out.ends_with(")\n"), "the second link is out before the text ends: {out}");
}

#[test]
fn an_answers_links_carry_a_bounded_total_of_earlier_code() {
    // 60 blocks of 10 bytes under a budget of 100: each link could carry up to 100 bytes, but the
    // links of the answer together carry at most 16 × 100; the ones past that carry no cells and
    // count every earlier block as left out (so a long answer no longer costs its square).
    let input: String = (10..70).map(|i| format!("```python\nprint({i})\n```\n\n")).collect();
    let opts = Options { context_bytes: 100, ..Options::default() };
    let out = rewrite(&opts, &input);
    let blocks = oracle_blocks(&opts, &input);
    assert_eq!(blocks.len(), 60);
    let cx = cx_of(&out);
    assert_eq!(cx, oracle_cx(&opts, &blocks));
    let carried: usize =
        cx.iter().flatten().map(|(cells, _)| cells.iter().map(String::len).sum::<usize>()).sum();
    assert!(carried <= 16 * 100, "{carried} bytes of earlier code in all");
    assert_eq!(cx[59], cells(&[], 59), "the last link runs alone and says so");
    assert_eq!(
        cx[5],
        cells(&["print(10)\n", "print(11)\n", "print(12)\n", "print(13)\n", "print(14)\n"], 0)
    );
    assert_eq!(restore(&opts, &out), input);
}
