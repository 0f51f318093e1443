//! The sandbox page as a place to work, in headless Chromium, fully offline: an answer's earlier
//! blocks run as cells before the opened one (`#cx=`), input() reads the Input box or asks the
//! person, files go in through `#files` or a drop and come out as downloads in `#outputs`.
//!
//! A real sandgate (in-process, on a loopback port, with Pyodide from target/browser-assets as
//! tests/setup/10-browser.sh installs it) serves the page; tests/browser/cells.mjs drives Chromium
//! through playwright-core and reports what the page showed; the assertions are here.

use std::collections::HashMap;

use crate::support::browser::{self, entered_last, repo, signed, str_of};
use crate::support::{openai, post_json, Reply, ScriptedUpstream};
use sandgate::rewrite::payload;
use serde_json::{json, Value};

/// A sandgate serving the sandbox page with the offline Pyodide, `timeout` per run.
async fn sandgate(upstream: &ScriptedUpstream, timeout: &str) -> sandgate::server::Running {
    let pyodide = browser::pyodide().to_string_lossy().into_owned();
    let wheels = browser::assets().join("wheels").to_string_lossy().into_owned();
    crate::support::start_sandgate(&upstream.base_url(), |raw| {
        raw.set("pyodide_dir", &pyodide).unwrap();
        raw.set("wheels_dir", &wheels).unwrap();
        raw.set("sandbox_timeout", timeout).unwrap();
    })
    .await
}

/// A link to `code` whose earlier cells are `cells`, `omitted` older ones left out: the
/// `cx` parameter is the payload of {"cells": [...], "omitted": N}, as the engine writes it; signed
/// with the test sandgate's key (`TEST_LINK_KEY`, [`browser::LINK_KEY`]), as its own links are.
fn cells_link(base: &str, cells: &[&str], omitted: usize, code: &str) -> String {
    let mut fragment = format!("py={}", payload::encode(code));
    if !cells.is_empty() || omitted > 0 {
        let context = json!({"cells": cells, "omitted": omitted}).to_string();
        fragment.push_str(&format!("&cx={}", payload::encode(&context)));
    }
    signed(base, &fragment)
}

/// The sandbox links in a rewritten answer, in order, moved from the test sandgate's public URL to
/// `base` (the fragment, which is all a link's MAC covers, is unchanged).
fn links_in(text: &str, base: &str) -> Vec<String> {
    let public = "http://sandgate.test/sandbox#";
    text.match_indices(public)
        .map(|(at, _)| {
            let rest = &text[at + public.len()..];
            let end = rest.find([')', ' ', '"', '\n']).unwrap_or(rest.len());
            format!("{base}/sandbox#{}", &rest[..end])
        })
        .collect()
}

/// What the scripted model answers: the step-by-step answer to the first question, a block that
/// builds on it to the follow-up.
fn model(r: &crate::support::Recorded) -> Reply {
    let asked = String::from_utf8_lossy(&r.body);
    let answer = if asked.contains("now count them") { FOLLOW_UP } else { STEP_BY_STEP };
    Reply::json(&openai::chat_json(&[answer]))
}

/// The step-by-step answer of issue 11: block 1 makes the list, block 2 loops over it.
const FRUITS: &str =
    "fruits = [\"apple\", \"banana\", \"cherry\"]\nprint(len(fruits), \"fruits\")\n";
const LOOP: &str = "for fruit in fruits:\n    print(\"I like\", fruit)\n";

const STEP_BY_STEP: &str = "1. Create the list:\n\n```python\nfruits = [\"apple\", \"banana\", \"cherry\"]\n\
    print(len(fruits), \"fruits\")\n```\n\n2. Loop over it:\n\n```python\nfor fruit in fruits:\n    \
    print(\"I like\", fruit)\n```\n";
const FOLLOW_UP: &str =
    "Count them:\n\n```python\nprint(len(fruits) + 1, \"with the one you ate\")\n```\n";

const AREA_CELLS: [&str; 2] =
    ["import math\nradius = 2\n", "def area(r):\n    return math.pi * r * r\n\narea.__name__\n"];
const AREA_BLOCK: &str = "print(round(area(radius), 2))\n";

const BROKEN_CELLS: [&str; 3] = [
    "total = 10\nprint(\"cell one ran\")\n",
    "def share(n):\n    return total / n\n\nprint(\"cell two starts\")\nshare(0)\n",
    "print(\"cell three ran\")\n",
];

const ASK_CODE: &str = "name = input(\"Name? \")\nage = int(input(\"Age? \"))\n\
    print(f\"{name} is {age}\")\n";
const STDIN_CODE: &str =
    "import sys\nfirst = input()\nrest = sys.stdin.read()\nprint(repr(first), repr(rest))\n";
const INTERACTIVE_CODE: &str = "n = int(input(\"Number? \"))\nprint(\"double\", n * 2)\n\
    word = input()\nprint(\"word\", word)\ntry:\n    input(\"More? \")\nexcept EOFError as e:\n    \
    print(\"EOF:\", e)\n";

const CSV: &str = "region,amount\nnorth,120\nsouth,80\nwest,42\n";
const READ_CSV_CODE: &str = "text = open(\"sales.csv\").read()\nrows = text.splitlines()[1:]\n\
    total = sum(int(r.split(\",\")[1]) for r in rows)\nprint(len(rows), \"rows, total\", total)\n\
    import os\nprint(sorted(f for f in os.listdir() if not f.startswith(\".\")))\n";
const WRITE_CODE: &str = "import os\nos.makedirs(\"out\", exist_ok=True)\n\
    with open(\"summary.csv\", \"w\") as f:\n    f.write(\"region,share\\nnorth,0.5\\n\")\n\
    with open(\"out/notes.txt\", \"w\") as f:\n    f.write(\"two lines\\nof notes\\n\")\n\
    with open(\"big.bin\", \"wb\") as f:\n    f.write(b\"x\" * 51_000_000)\n\
    print(\"wrote\", os.path.getsize(\"summary.csv\"))\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cells_input_and_files_in_headless_chromium() {
    let _browser = browser::lock().await;
    let repo = repo();
    browser::pyodide();
    let shots = repo.join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = |name: &str| shots.join(name).to_string_lossy().into_owned();

    let upstream = ScriptedUpstream::start(model).await;
    let main = sandgate(&upstream, "30s").await;
    let short = sandgate(&upstream, "4s").await;
    let main_url = format!("http://{}", main.addr());
    let short_url = format!("http://{}", short.addr());
    let done = json!(["done", "error", "timeout", "stopped"]);

    // The step-by-step answer through sandgate: its second block's link, as the engine wrote it.
    let chat = |messages: Value| json!({"model": "gpt-test", "messages": messages});
    let question = json!([{"role": "user", "content": "step by step: list fruits, then loop"}]);
    let (status, _, body) =
        post_json(main.addr(), "/v1/chat/completions", &chat(question.clone()), &[]).await;
    assert_eq!(status, 200);
    let answer = openai::json_texts(&serde_json::from_slice(&body).unwrap(), "message").remove(0);
    let links = links_in(&answer, &main_url);
    assert_eq!(links.len(), 2, "{answer}");
    let step_by_step = links[1].clone();
    assert!(step_by_step.contains("&cx="), "the engine gave block 2 no context: {step_by_step}");
    // A follow-up with that answer in the history and the conversation context: its block's link
    // carries both earlier blocks.
    let mut history = question.as_array().unwrap().clone();
    history.push(json!({"role": "assistant", "content": answer}));
    history.push(json!({"role": "user", "content": "now count them"}));
    let header = [("x-sandgate-context", "conversation")];
    let (status, _, body) =
        post_json(main.addr(), "/v1/chat/completions", &chat(json!(history)), &header).await;
    assert_eq!(status, 200);
    let follow_up =
        openai::json_texts(&serde_json::from_slice(&body).unwrap(), "message").remove(0);
    let conversation = links_in(&follow_up, &main_url).remove(0);

    let cases = json!({"cases": [
        {"name": "step-by-step", "steps": [
            {"do": "goto", "url": step_by_step},
            {"do": "wait", "states": done, "timeoutMs": 90000},
            {"do": "observe", "label": "end"},
            {"do": "screenshot", "path": shot("cells.png")},
            {"do": "click", "selector": "#run-alone"},
            {"do": "wait", "states": ["loading"], "timeoutMs": 5000},
            {"do": "wait", "states": done, "timeoutMs": 60000},
            {"do": "observe", "label": "alone"},
            {"do": "click", "selector": "#run"},
            {"do": "wait", "states": ["loading"], "timeoutMs": 5000},
            {"do": "wait", "states": done, "timeoutMs": 60000},
            {"do": "observe", "label": "again"},
        ]},
        {"name": "three-blocks", "steps": [
            {"do": "goto", "url": cells_link(&main_url, &AREA_CELLS, 0, AREA_BLOCK)},
            {"do": "wait", "states": done, "timeoutMs": 90000},
            {"do": "observe", "label": "end"},
        ]},
        {"name": "broken-cell", "steps": [
            {"do": "goto", "url": cells_link(&main_url, &BROKEN_CELLS, 0, "print(\"block ran\")\n")},
            {"do": "wait", "states": done, "timeoutMs": 90000},
            {"do": "observe", "label": "end"},
            {"do": "screenshot", "path": shot("cells-broken.png")},
        ]},
        {"name": "omitted", "steps": [
            {"do": "goto", "url": cells_link(&main_url, &[FRUITS], 2, LOOP)},
            {"do": "wait", "states": done, "timeoutMs": 90000},
            {"do": "observe", "label": "end"},
        ]},
        {"name": "no-cells", "steps": [
            {"do": "goto", "url": signed(&main_url, &format!("py={}&zz=unknown", payload::encode("print('plain')\n")))},
            {"do": "wait", "states": done, "timeoutMs": 90000},
            {"do": "observe", "label": "end"},
        ]},
        {"name": "damaged-cells", "steps": [
            {"do": "goto", "url": signed(&main_url, &format!("py={}&cx=%%%", payload::encode("print('still runs')\n")))},
            {"do": "wait", "states": done, "timeoutMs": 90000},
            {"do": "observe", "label": "end"},
        ]},
        {"name": "conversation", "steps": [
            {"do": "goto", "url": conversation},
            {"do": "wait", "states": done, "timeoutMs": 90000},
            {"do": "observe", "label": "end"},
        ]},
        {"name": "stdin-box", "steps": [
            {"do": "goto", "url": cells_link(&main_url, &[], 0, ASK_CODE)},
            // The box is empty, so the first run asks; Stop, fill the box, Run again.
            {"do": "waitFor", "selector": "#input", "timeoutMs": 90000},
            {"do": "click", "selector": "#stop"},
            {"do": "wait", "states": ["stopped"], "timeoutMs": 5000},
            {"do": "fill", "selector": "#stdin", "value": "Ada\n36\n"},
            {"do": "click", "selector": "#run"},
            {"do": "wait", "states": ["loading"], "timeoutMs": 5000},
            {"do": "wait", "states": done, "timeoutMs": 60000},
            {"do": "observe", "label": "box"},
            {"do": "fill", "selector": "#stdin", "value": "Ada\n"},
            {"do": "click", "selector": "#run"},
            {"do": "wait", "states": ["loading"], "timeoutMs": 5000},
            {"do": "wait", "states": done, "timeoutMs": 60000},
            {"do": "observe", "label": "short"},
            {"do": "click", "selector": "#edit"},
            {"do": "fill", "selector": "#code", "value": STDIN_CODE},
            {"do": "fill", "selector": "#stdin", "value": "line one\nline two\nline three"},
            {"do": "click", "selector": "#run"},
            {"do": "wait", "states": ["loading"], "timeoutMs": 5000},
            {"do": "wait", "states": done, "timeoutMs": 60000},
            {"do": "observe", "label": "read"},
        ]},
        {"name": "interactive", "steps": [
            {"do": "goto", "url": cells_link(&short_url, &[], 0, INTERACTIVE_CODE)},
            {"do": "waitFor", "selector": "#input", "timeoutMs": 90000},
            {"do": "observe", "label": "asked"},
            // Longer than the 4 s limit: waiting for the person is not counted.
            {"do": "sleep", "ms": 5000},
            {"do": "observe", "label": "waited"},
            {"do": "enter", "selector": "#input", "value": "21"},
            {"do": "sleep", "ms": 300},
            {"do": "waitFor", "selector": "#input", "timeoutMs": 10000},
            {"do": "observe", "label": "second"},
            {"do": "enter", "selector": "#input", "value": "hello"},
            {"do": "sleep", "ms": 300},
            {"do": "waitFor", "selector": "#input", "timeoutMs": 10000},
            {"do": "click", "selector": "#input-end"},
            {"do": "wait", "states": done, "timeoutMs": 10000},
            {"do": "observe", "label": "end"},
            {"do": "screenshot", "path": shot("input.png")},
        ]},
        {"name": "files", "steps": [
            {"do": "goto", "url": cells_link(&main_url, &[], 0, READ_CSV_CODE)},
            {"do": "wait", "states": done, "timeoutMs": 90000},
            {"do": "observe", "label": "without"},
            {"do": "setFiles", "selector": "#files", "files": [{"name": "sales.csv", "text": CSV, "mimeType": "text/csv"}]},
            {"do": "drop", "files": [{"name": "dropped.txt", "text": "from a drop\n"}]},
            {"do": "sleep", "ms": 300},
            {"do": "observe", "label": "added"},
            {"do": "click", "selector": "#run"},
            {"do": "wait", "states": ["loading"], "timeoutMs": 5000},
            {"do": "wait", "states": done, "timeoutMs": 60000},
            {"do": "observe", "label": "with"},
            // They stay for Run again.
            {"do": "click", "selector": "#run"},
            {"do": "wait", "states": ["loading"], "timeoutMs": 5000},
            {"do": "wait", "states": done, "timeoutMs": 60000},
            {"do": "observe", "label": "again"},
            {"do": "drop", "files": [{"name": "huge.bin", "bytes": 51_000_000}]},
            {"do": "sleep", "ms": 500},
            {"do": "observe", "label": "huge"},
        ]},
        {"name": "outputs", "steps": [
            {"do": "goto", "url": cells_link(&main_url, &[], 0, WRITE_CODE)},
            {"do": "wait", "states": done, "timeoutMs": 90000},
            {"do": "observe", "label": "end"},
            {"do": "download", "selector": "#outputs a[download=\"summary.csv\"]", "label": "summary"},
            {"do": "download", "selector": "#outputs a[download=\"notes.txt\"]", "label": "notes"},
            {"do": "screenshot", "path": shot("outputs.png")},
        ]},
    ]});

    let cases_file = repo.join("target/cells-browser-cases.json");
    std::fs::write(&cases_file, serde_json::to_vec_pretty(&cases).unwrap()).unwrap();
    let output = tokio::process::Command::new("node")
        .arg("cells.mjs")
        .arg(&cases_file)
        .current_dir(repo.join("tests/browser"))
        .kill_on_drop(true)
        .output()
        .await
        .expect("node must be installed (tests/setup/10-browser.sh)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "cells.mjs failed: {}\n{stderr}", output.status);
    std::fs::write(repo.join("target/cells-browser-report.json"), &output.stdout).unwrap();
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("cells.mjs printed no JSON ({e}): {stderr}"));
    let results: HashMap<String, Value> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (str_of(r, "name").to_string(), r.clone()))
        .collect();
    let only = std::env::var("ONLY").ok();
    let wanted = |name: &str| only.as_deref().is_none_or(|o| name.contains(o));
    let case = |name: &str| -> &Value {
        let r = results.get(name).unwrap_or_else(|| panic!("no result for {name}"));
        assert!(
            r["error"].is_null(),
            "case {name} failed in the browser: {}\nobservations: {:#}\nevents: {:#}",
            r["error"],
            r["observations"],
            r["events"]
        );
        assert!(r["events"]["pageErrors"].as_array().unwrap().is_empty(), "{name}: {r:#}");
        r
    };
    let obs = |name: &str, label: &str| case(name)["observations"][label].clone();

    if wanted("step-by-step") {
        // Block 2's link runs block 1 first, in the same interpreter: the loop prints its lines.
        let end = obs("step-by-step", "end");
        assert_eq!(str_of(&end, "state"), "done", "{end:#}");
        assert_eq!(
            str_of(&end, "stdout"),
            "I like apple\nI like banana\nI like cherry\n",
            "{end:#}"
        );
        assert_eq!(str_of(&end, "stderr"), "", "{end:#}");
        assert_eq!(str_of(&end, "code"), LOOP);
        assert_eq!(end["cellsHidden"], false, "{end:#}");
        assert_eq!(end["runAloneHidden"], false, "{end:#}");
        let cells = end["cells"].as_array().unwrap();
        assert_eq!(cells.len(), 1, "{end:#}");
        assert_eq!(str_of(&cells[0], "id"), "cell-1");
        assert_eq!(str_of(&cells[0], "state"), "done", "{end:#}");
        assert_eq!(str_of(&cells[0], "code"), FRUITS, "the cell's code is readable");
        assert_eq!(cells[0]["open"], false, "cells start collapsed");
        // The cell's output is under the cell, not in #stdout.
        assert_eq!(str_of(&cells[0], "stdout"), "3 fruits\n", "{end:#}");
        // Run this block alone: a fresh interpreter without the cell, so the name is missing.
        let alone = obs("step-by-step", "alone");
        assert_eq!(str_of(&alone, "state"), "error", "{alone:#}");
        assert!(
            str_of(&alone, "stderr").contains("NameError: name 'fruits' is not defined"),
            "{alone:#}"
        );
        assert_eq!(str_of(&alone["cells"][0], "state"), "skipped", "{alone:#}");
        assert_eq!(str_of(&alone["cells"][0], "stdout"), "", "{alone:#}");
        // Run again runs the cells again.
        let again = obs("step-by-step", "again");
        assert_eq!(str_of(&again, "state"), "done", "{again:#}");
        assert_eq!(str_of(&again, "stdout"), str_of(&end, "stdout"));
        assert_eq!(str_of(&again["cells"][0], "stdout"), "3 fruits\n");
    }

    if wanted("three-blocks") {
        // The third block uses a name from each earlier one; cell 2's last value shows under it.
        let end = obs("three-blocks", "end");
        assert_eq!(str_of(&end, "state"), "done", "{end:#}");
        assert_eq!(str_of(&end, "stdout"), "12.57\n", "{end:#}");
        let cells = end["cells"].as_array().unwrap();
        assert_eq!(cells.len(), 2, "{end:#}");
        assert!(cells.iter().all(|c| str_of(c, "state") == "done"), "{end:#}");
        assert_eq!(str_of(&cells[1], "result"), "'area'", "{end:#}");
        assert_eq!(str_of(&end, "result"), "", "a cell's value is not the block's: {end:#}");
    }

    if wanted("broken-cell") {
        // Cell 2 raises: the run stops there, the page says where, the block does not run.
        let end = obs("broken-cell", "end");
        assert_eq!(str_of(&end, "state"), "error", "{end:#}");
        assert_eq!(str_of(&end, "stdout"), "", "the opened block ran: {end:#}");
        let cells = end["cells"].as_array().unwrap();
        assert_eq!(
            cells.iter().map(|c| str_of(c, "state")).collect::<Vec<_>>(),
            ["done", "error", "waiting"],
            "{end:#}"
        );
        assert_eq!(str_of(&cells[0], "stdout"), "cell one ran\n");
        assert_eq!(str_of(&cells[1], "stdout"), "cell two starts\n");
        assert_eq!(str_of(&cells[2], "stdout"), "", "cell 3 ran after cell 2 failed");
        assert_eq!(cells[1]["open"], true, "the failed cell is opened: {end:#}");
        let tb = str_of(&cells[1], "stderr");
        assert!(tb.contains("File \"cell 2\", line 5, in <module>"), "{tb}");
        assert!(tb.contains("File \"cell 2\", line 2, in share"), "{tb}");
        assert!(tb.contains("return total / n"), "{tb}");
        assert!(tb.contains("ZeroDivisionError: division by zero"), "{tb}");
        assert!(!tb.contains("_pyodide"), "{tb}");
        assert!(str_of(&end, "status").contains("Cell 2 raised an error"), "{end:#}");
        let note = str_of(&end, "stderr");
        assert!(note.contains("Cell 2 (an earlier block of the answer) raised an error"), "{note}");
        assert!(note.contains("this block did not run"), "{note}");
    }

    if wanted("omitted") {
        let end = obs("omitted", "end");
        assert_eq!(str_of(&end, "state"), "done", "{end:#}");
        assert_eq!(end["cellsNoteHidden"], false, "{end:#}");
        assert!(
            str_of(&end, "cellsNote").starts_with("2 earlier blocks were left out of this link"),
            "{end:#}"
        );
        assert_eq!(end["cells"].as_array().unwrap().len(), 1);
    }

    if wanted("no-cells") {
        // A version-1 link (and unknown parameters): no cells section, no run-alone control.
        let end = obs("no-cells", "end");
        assert_eq!(str_of(&end, "state"), "done", "{end:#}");
        assert_eq!(str_of(&end, "stdout"), "plain\n");
        assert_eq!(end["cellsHidden"], true, "{end:#}");
        assert_eq!(end["runAloneHidden"], true, "{end:#}");
        assert_eq!(end["outputsHidden"], true, "{end:#}");
    }

    if wanted("damaged-cells") {
        // A damaged cx: a clear note, and the block runs alone.
        let end = obs("damaged-cells", "end");
        assert_eq!(str_of(&end, "state"), "done", "{end:#}");
        assert_eq!(str_of(&end, "stdout"), "still runs\n");
        assert!(
            str_of(&end, "cellsNote")
                .contains("The earlier cells in this link is not valid base64url."),
            "{end:#}"
        );
        assert!(str_of(&end, "cellsNote").contains("This block runs alone."), "{end:#}");
    }

    if wanted("conversation") {
        // The earlier answer's blocks (from the history) come first: all of them run, in order.
        let end = obs("conversation", "end");
        assert_eq!(str_of(&end, "state"), "done", "{end:#}");
        assert_eq!(str_of(&end, "stdout"), "4 with the one you ate\n", "{end:#}");
        let cells = end["cells"].as_array().unwrap();
        assert_eq!(cells.len(), 2, "{end:#}");
        assert_eq!(str_of(&cells[0], "stdout"), "3 fruits\n", "{end:#}");
        assert_eq!(str_of(&cells[1], "stdout"), "I like apple\nI like banana\nI like cherry\n");
    }

    if wanted("stdin-box") {
        let box_ = obs("stdin-box", "box");
        assert_eq!(str_of(&box_, "state"), "done", "{box_:#}");
        // Prompts go to stdout; the box's lines are read, not echoed (as from a pipe).
        assert_eq!(str_of(&box_, "stdout"), "Name? Age? Ada is 36\n", "{box_:#}");
        let short = obs("stdin-box", "short");
        assert_eq!(str_of(&short, "state"), "error", "{short:#}");
        let err = str_of(&short, "stderr");
        assert!(err.contains("EOFError: EOF when reading a line: input() reads from the Input box, and all its lines have been read"), "{err}");
        assert!(err.contains("line 2, in <module>"), "{err}");
        let read = obs("stdin-box", "read");
        assert_eq!(str_of(&read, "state"), "done", "{read:#}");
        assert_eq!(
            str_of(&read, "stdout"),
            "'line one' 'line two\\nline three'\n",
            "sys.stdin.read() gets the rest of the box: {read:#}"
        );
    }

    if wanted("interactive") {
        // JavaScript Promise Integration in this Chromium: input() waits for the person.
        let asked = obs("interactive", "asked");
        assert_eq!(str_of(&asked, "interactiveInput"), "yes", "{asked:#}");
        assert_eq!(str_of(&asked, "state"), "running", "{asked:#}");
        assert_eq!(str_of(&asked, "input"), "waiting", "{asked:#}");
        assert_eq!(str_of(&asked, "stdout"), "Number? ", "the prompt is in the output: {asked:#}");
        assert_eq!(asked["inputField"]["inStdout"], true, "{asked:#}");
        assert_eq!(str_of(&asked["inputField"], "label"), "Input: Number?", "{asked:#}");
        assert!(str_of(&asked, "stdinNote").contains("the program asks you"), "{asked:#}");
        let waited = obs("interactive", "waited");
        assert_eq!(
            str_of(&waited, "state"),
            "running",
            "the wait counted against the limit: {waited:#}"
        );
        let second = obs("interactive", "second");
        assert_eq!(str_of(&second, "stdout"), "Number? 21\ndouble 42\n", "{second:#}");
        let end = obs("interactive", "end");
        assert_eq!(str_of(&end, "state"), "done", "{end:#}");
        assert_eq!(
            str_of(&end, "stdout"),
            "Number? 21\ndouble 42\nhello\nword hello\nMore? EOF: EOF when reading a line: you ended the input\n",
            "{end:#}"
        );
        assert!(end["inputField"].is_null(), "{end:#}");
        let from = entered_last(&end, "running").unwrap();
        let to = entered_last(&end, "done").unwrap();
        eprintln!(
            "cells_browser: interactive run {:.0} ms from running to done, with {} s of waiting",
            to - from,
            5
        );
    }

    if wanted("files") {
        let without = obs("files", "without");
        assert_eq!(str_of(&without, "state"), "error", "{without:#}");
        assert!(str_of(&without, "stderr").contains("FileNotFoundError"), "{without:#}");
        let added = obs("files", "added");
        assert_eq!(
            added["filesList"],
            json!(["sales.csv (41 B) Remove", "dropped.txt (12 B) Remove"]),
            "{added:#}"
        );
        let with = obs("files", "with");
        assert_eq!(str_of(&with, "state"), "done", "{with:#}");
        assert_eq!(
            str_of(&with, "stdout"),
            "3 rows, total 242\n['dropped.txt', 'sales.csv']\n",
            "{with:#}"
        );
        // Files read but not changed are not outputs.
        assert_eq!(with["outputs"], json!([]), "{with:#}");
        let again = obs("files", "again");
        assert_eq!(str_of(&again, "stdout"), str_of(&with, "stdout"), "{again:#}");
        let huge = obs("files", "huge");
        assert!(
            str_of(&huge, "filesNote")
                .contains("huge.bin is 51.0 MB: a file can be at most 50.0 MB."),
            "{huge:#}"
        );
        assert_eq!(huge["filesList"].as_array().unwrap().len(), 2, "{huge:#}");
    }

    if wanted("outputs") {
        let end = obs("outputs", "end");
        assert_eq!(str_of(&end, "state"), "done", "{end:#}");
        assert_eq!(str_of(&end, "stdout"), "wrote 23\n", "{end:#}");
        assert_eq!(end["outputsHidden"], false, "{end:#}");
        let outputs = end["outputs"].as_array().unwrap();
        let by_name = |n: &str| {
            outputs
                .iter()
                .find(|o| str_of(o, "text").starts_with(n))
                .unwrap_or_else(|| panic!("{n} not in #outputs: {end:#}"))
        };
        assert_eq!(outputs.len(), 3, "{end:#}");
        let summary = by_name("summary.csv");
        assert_eq!(str_of(summary, "download"), "summary.csv");
        assert_eq!(str_of(summary, "href"), "blob");
        assert_eq!(str_of(summary, "text"), "summary.csv 23 B");
        let notes = by_name("out/notes.txt");
        assert_eq!(str_of(notes, "download"), "notes.txt");
        let big = by_name("big.bin");
        assert!(big["download"].is_null(), "{end:#}");
        assert!(
            str_of(big, "text")
                .contains("is not offered: larger than the 50 MB limit for one file"),
            "{end:#}"
        );
        let downloads = &case("outputs")["downloads"];
        assert_eq!(str_of(&downloads["summary"], "name"), "summary.csv", "{downloads:#}");
        assert!(downloads["summary"]["failure"].is_null(), "{downloads:#}");
        assert_eq!(str_of(&downloads["summary"], "text"), "region,share\nnorth,0.5\n");
        assert_eq!(str_of(&downloads["notes"], "text"), "two lines\nof notes\n");
    }
}
