//! Data-driven tests of the rewrite engine: one directory per case under
//! `tests/fixtures/rewrite/`, holding `input.md` and the expected output for each option set
//! (`link.md`, `link-hidden.md`, `widget.md`, ...). `UPDATE_EXPECT=1 cargo test --test rewrite_fixtures`
//! writes the expected files from the current output; review the diff before committing it.
//!
//! For every case and option set the test also checks that the engine agrees with pulldown-cmark on
//! which blocks are Python and what their code is, that every chunking of the input gives the same
//! output, and that `restore` gives the input back byte for byte.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod engine;

use std::fs;
use std::path::Path;

use engine::{oracle_blocks, payload_blocks, rewrite_char_by_char, rewrite_chunked, variants};
use sandgate::rewrite::{restore, rewrite, Mode, Options};

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
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rewrite");
    let mut failures = Vec::new();
    for (name, input) in cases() {
        for (variant, opts) in variants() {
            let actual = rewrite(&opts, &input);
            let path = dir.join(&name).join(format!("{variant}.md"));
            if update {
                fs::write(&path, &actual).unwrap();
                continue;
            }
            match fs::read_to_string(&path) {
                Ok(expected) if expected == actual => {}
                Ok(expected) => failures.push(format!(
                    "{name}/{variant}: output differs\n--- expected\n{expected}\n--- actual\n{actual}"
                )),
                Err(_) => failures.push(format!("{name}/{variant}: {} missing", path.display())),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n(UPDATE_EXPECT=1 rewrites the expected files)",
        failures.join("\n")
    );
}

#[test]
fn fixtures_agree_with_pulldown_cmark() {
    for (name, input) in cases() {
        for (variant, opts) in variants() {
            let expected = oracle_blocks(&opts, &input);
            let actual = payload_blocks(&rewrite(&opts, &input));
            assert_eq!(actual, expected, "{name}/{variant}: blocks differ from pulldown-cmark");
        }
    }
}

#[test]
fn fixtures_chunking_gives_the_same_output() {
    for (name, input) in cases() {
        for (variant, opts) in variants() {
            let whole = rewrite(&opts, &input);
            for cut in 0..=input.len() {
                if input.is_char_boundary(cut) {
                    let split = rewrite_chunked(&opts, &input, &[cut]);
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
        for (variant, opts) in variants() {
            let rewritten = rewrite(&opts, &input);
            assert_eq!(restore(&rewritten), input, "{name}/{variant}: restore(rewrite(x)) != x");
            // Restoring what holds no replacement changes nothing.
            assert_eq!(restore(&input), input, "{name}: restore of the input itself");
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
    assert_eq!(restore(&out), "```python\n1\n```\n");
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
