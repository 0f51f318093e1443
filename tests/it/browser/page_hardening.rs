//! The sandbox page's limits under hostile code (issue 10), in headless Chromium through
//! tests/browser/drive.mjs, fully offline like tests/it/browser/sandbox.rs: sanitized HTML cannot
//! cover the controls, the spare worker never imports a package off the run's clock, and figures
//! that freeze plotly.js still end at the time limit and on Stop.
//!
//! The test servers are [`browser::serve_sandbox`]'s: `Sandbox::handle` plus `/tick/<name>` (code
//! in the sandbox calls it, to show that it is still running) and `/tick-count/<name>`. Each test runs its own browser; one at
//! a time, so that the time bounds measure the page rather than the other tests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::support::browser::{
    self, entered, link, listen, serve_sandbox, serve_sandbox_on, str_of, Verify, ENDED, LINK_KEY,
};
use sandgate::rewrite::sign::MAC_PARAM;
use sandgate::rewrite::{payload, LinkKey};
use sandgate::sandbox::Sandbox;
use serde_json::{json, Value};

/// The assets root, with what these tests use checked: Chromium, Pyodide, micropip, the wheels.
fn assets() -> PathBuf {
    browser::wheels();
    browser::assets()
}

fn sandbox(assets: &Path, wheels: &Path, timeout_ms: u64) -> Sandbox {
    browser::sandbox(assets.join("pyodide"), Some(wheels.to_path_buf()), timeout_ms)
}

/// Runs the cases in one browser (holding the browser lock) and answers each case's result by
/// name, after checking that it ran to its end without a page error or a dialog.
async fn drive(name: &str, cases: Value) -> HashMap<String, Value> {
    let _one = browser::lock().await;
    browser::drive(&format!("page-hardening-{name}"), &cases).await
}

/// What is under the centre of each control: the control itself, or what covers it.
const HIT_TEST: &str = r#"(() => {
  const out = {};
  for (const id of ['stop', 'run', 'edit', 'status']) {
    const el = document.getElementById(id);
    const r = el.getBoundingClientRect();
    const at = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
    out[id] = at === el || el.contains(at) ? 'itself'
      : at ? at.tagName.toLowerCase() + (at.id ? '#' + at.id : '') + ' ' + at.textContent.slice(0, 40) : 'nothing';
  }
  out.classes = [...document.querySelectorAll('#result .html-result [class]')].map((e) => e.className);
  out.resultContain = getComputedStyle(document.getElementById('result')).contain;
  return out;
})()"#;

/// Finding 8: `_repr_html_` with the class names of plotly.js's own stylesheet (loaded by the
/// figure shown first): a fixed full-viewport layer and a fake status note.
const OVERLAY_CODE: &str = r#"import asyncio
import plotly.graph_objects as go

go.Figure(data=[go.Bar(x=["A"], y=[1])]).show()

class Cover:
    def _repr_html_(self):
        return ('<div class="maplibregl-pseudo-fullscreen">covering the page</div>'
                '<div class="plotly-notifier"><div class="notifier-note">Done in 0.2 s</div></div>'
                '<div class="html-result" id="stop">not the button</div>')

display(Cover())
print("covering")
await asyncio.sleep(60)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sanitized_html_cannot_cover_the_controls() {
    let assets = assets();
    let base = serve_sandbox(sandbox(&assets, &assets.join("wheels"), 90_000)).await;
    let results = drive(
        "overlay",
        json!({"cases": [{"name": "overlay", "steps": [
            {"do": "goto", "url": link(&base, OVERLAY_CODE)},
            {"do": "until", "timeoutMs": 90000, "js":
                "document.getElementById('stdout').textContent.includes('covering') && !!document.querySelector('#result .html-result')"},
            // Time for plotly.js to load and draw the figure shown before the HTML.
            {"do": "sleep", "ms": 2000},
            {"do": "eval", "label": "hits", "js": HIT_TEST},
            {"do": "screenshot", "path": browser::repo().join("target/page-hardening-overlay.png").to_string_lossy()},
            {"do": "click", "selector": "#stop"},
            {"do": "wait", "states": ENDED, "timeoutMs": 5000},
            {"do": "observe", "label": "end"},
        ]}]}),
    )
    .await;
    let case = &results["overlay"];
    let hits = &case["evals"]["hits"];
    for control in ["stop", "run", "edit", "status"] {
        assert_eq!(str_of(hits, control), "itself", "{control} is covered: {hits:#}");
    }
    assert_eq!(hits["classes"], json!([]), "class attributes survived the sanitizer: {hits:#}");
    assert_eq!(str_of(hits, "resultContain"), "paint", "{hits:#}");
    let end = &case["observations"]["end"];
    assert_eq!(str_of(end, "state"), "stopped", "{end:#}");
    assert_eq!(str_of(end, "status"), "Stopped", "{end:#}");
}

/// A directory of pure-Python wheels made for one test: `(project, code of its __init__.py)`.
/// Served as the sandbox's `wheels_dir`, so micropip installs them from the test server.
fn wheels(name: &str, projects: &[(&str, &str)]) -> PathBuf {
    let dir =
        browser::repo().join(format!("target/page-hardening-wheels/{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Python's zipfile writes the wheel (a zip with a .dist-info directory).
    const MAKE_WHEEL: &str = r#"import sys, zipfile
out, project, init = sys.argv[1], sys.argv[2], sys.argv[3]
info = project + "-1.0.dist-info/"
with zipfile.ZipFile(out + "/" + project + "-1.0-py3-none-any.whl", "w") as z:
    z.writestr(project + "/__init__.py", init)
    z.writestr(info + "METADATA", "Metadata-Version: 2.1\nName: " + project + "\nVersion: 1.0\n")
    z.writestr(info + "WHEEL", "Wheel-Version: 1.0\nGenerator: sandgate-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    z.writestr(info + "top_level.txt", project + "\n")
    z.writestr(info + "RECORD", project + "/__init__.py,,\n" + info + "METADATA,,\n" + info + "WHEEL,,\n" + info + "top_level.txt,,\n" + info + "RECORD,,\n")
"#;
    for (project, init) in projects {
        let status = std::process::Command::new("python3")
            .args(["-c", MAKE_WHEEL])
            .arg(&dir)
            .args([project, init])
            .status()
            .expect("python3 must be installed (tests/setup/10-browser.sh)");
        assert!(status.success(), "could not write the {project} wheel");
    }
    dir
}

/// The end of a package whose import starts a timer that calls home (`tick()`, from
/// [`browser::call_home`]) every 100 ms, for as long as its worker lives.
const CALL_HOME_INIT: &str = r#"from pyodide.ffi import create_proxy

js.setInterval(create_proxy(tick), 100)
"#;

/// A package whose import spins for 30 s.
const SLOW_IMPORT_INIT: &str = r#"import time
_until = time.time() + 30
while time.time() < _until:
    pass
"#;

/// Finding 6: a package's import runs on the run's clock only. The spare worker installs the
/// last run's packages but does not import them, so a timer started by an import dies with the
/// run's worker; and an import that spins is stopped by the run's time limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_run_only_on_the_runs_clock() {
    let assets = assets();
    // The package calls the server that serves it (the worker's policy allows only that one):
    // its port is known before the wheel is written.
    let (listener, base) = listen().await;
    let (tick, count) = browser::call_home(&base, "import");
    let call_home = format!("{tick}\n{CALL_HOME_INIT}");
    let dir = wheels("imports", &[("sgcallhome", &call_home), ("sgslowimport", SLOW_IMPORT_INIT)]);
    serve_sandbox_on(listener, sandbox(&assets, &dir, 30_000), Verify::Answer);
    let short = serve_sandbox(sandbox(&assets, &dir, 5_000)).await;
    let call_home_code =
        "import asyncio\nimport sgcallhome\nawait asyncio.sleep(1)\nprint('imported')\n";
    let results = drive(
        "imports",
        json!({"cases": [
            {"name": "call-home", "steps": [
                {"do": "goto", "url": link(&base, call_home_code)},
                {"do": "wait", "states": ENDED, "timeoutMs": 90000},
                {"do": "observe", "label": "end"},
                // Chromium may take a moment to stop a terminated worker.
                {"do": "sleep", "ms": 1000},
                {"do": "fetch", "url": count, "label": "after-run"},
                // The spare boots, then installs sgcallhome (it was the last run's package).
                {"do": "until", "timeoutMs": 90000, "js": "document.body.dataset.spare === 'ready'"},
                {"do": "sleep", "ms": 4000},
                {"do": "fetch", "url": count, "label": "spare-ready"},
                {"do": "click", "selector": "#run"},
                {"do": "wait", "states": ENDED, "timeoutMs": 90000},
                {"do": "observe", "label": "again"},
            ]},
            {"name": "slow-import", "steps": [
                {"do": "goto", "url": link(&short, "import sgslowimport\nprint('imported')\n")},
                {"do": "wait", "states": ENDED, "timeoutMs": 90000},
                {"do": "observe", "label": "end"},
            ]},
        ]}),
    )
    .await;
    let number = |case: &str, label: &str| -> u64 {
        str_of(&results[case]["fetches"], label).parse().unwrap()
    };

    let end = &results["call-home"]["observations"]["end"];
    assert_eq!(str_of(end, "state"), "done", "{end:#}");
    assert_eq!(str_of(end, "stdout"), "imported\n", "{end:#}");
    let during = number("call-home", "after-run");
    assert!(during >= 3, "the package's timer did not call home during the run: {during}");
    let spare = number("call-home", "spare-ready") - during;
    eprintln!("page: {during} calls home during the run, {spare} from the spare after it");
    assert_eq!(spare, 0, "the spare worker ran the package's import off the clock");
    // Run again in the spare: the package was installed there, and is imported on this run's clock.
    let again = &results["call-home"]["observations"]["again"];
    assert_eq!(str_of(again, "state"), "done", "{again:#}");
    assert_eq!(str_of(again, "worker"), "warm", "{again:#}");
    assert_eq!(str_of(again, "stdout"), "imported\n", "{again:#}");

    // The spinning import is part of the run: stopped at the 5 s limit, not after 30 s.
    let end = &results["slow-import"]["observations"]["end"];
    assert_eq!(str_of(end, "state"), "timeout", "{end:#}");
    let ran = entered(end, "timeout").unwrap() - entered(end, "running").unwrap();
    eprintln!("page: a spinning import stopped {ran:.0} ms after the run started (limit 5000 ms)");
    assert!((4900.0..7000.0).contains(&ran), "timeout after {ran} ms, the limit is 5000 ms");
}

/// Finding 7: two small figures that keep plotly.js busy for a long time (on the page, they froze
/// it for 25 to 77 s): a histogram2d of 1e5 x 1e5 bins, and an axis with a tick every 1 over a
/// range of 1e9.
const HISTOGRAM_CODE: &str = r#"import plotly.graph_objects as go
go.Figure(go.Histogram2d(x=[0, 1], y=[0, 1], xbins=dict(start=0, end=1, size=1e-5),
                         ybins=dict(start=0, end=1, size=1e-5))).show()
print("shown")
"#;
const DTICK_CODE: &str = r#"import plotly.graph_objects as go
go.Figure(go.Scatter(x=[0, 1e9], y=[0, 1]), layout=dict(xaxis=dict(range=[0, 1e9], dtick=1))).show()
print("shown")
"#;

/// Finding 7: each Plotly figure is drawn in a frame of its own, which the page removes at the
/// time limit and on Stop; the frame has a process of its own, so the page keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freezing_figures_end_at_the_limit_and_on_stop() {
    let assets = assets();
    // 10 s: importing plotly is on the clock, and takes seconds on a busy machine.
    let short = serve_sandbox(sandbox(&assets, &assets.join("wheels"), 10_000)).await;
    let frame_there = "!!document.querySelector('#figures iframe.plotly-figure')";
    let mut cases = Vec::new();
    for (name, code) in [("histogram2d", HISTOGRAM_CODE), ("dtick", DTICK_CODE)] {
        cases.push(json!({"name": format!("{name}-limit"), "steps": [
            {"do": "goto", "url": link(&short, code)},
            {"do": "until", "timeoutMs": 90000, "js": frame_there},
            {"do": "sleep", "ms": 1000},
            // The page answers while the figure's frame is busy.
            {"do": "probe", "label": "while-drawing"},
            {"do": "wait", "states": ENDED, "timeoutMs": 30000},
            {"do": "observe", "label": "end"},
        ]}));
        cases.push(json!({"name": format!("{name}-stop"), "steps": [
            {"do": "goto", "url": link(&short, code)},
            {"do": "until", "timeoutMs": 90000, "js": frame_there},
            {"do": "sleep", "ms": 1000},
            {"do": "eval", "label": "before-stop", "js": "({ now: performance.now(), state: document.body.dataset.state })"},
            {"do": "click", "selector": "#stop"},
            {"do": "wait", "states": ENDED, "timeoutMs": 5000},
            {"do": "observe", "label": "end"},
        ]}));
    }
    let results = drive("figures", json!({ "cases": cases })).await;
    for name in ["histogram2d", "dtick"] {
        let case = &results[&format!("{name}-limit")];
        let probe = &case["probes"]["while-drawing"];
        assert_eq!(str_of(probe, "pressed"), "true", "{name}: Edit did not respond: {probe}");
        assert_eq!(str_of(probe, "state"), "running", "{name}: the figure was drawn: {probe}");
        let end = &case["observations"]["end"];
        assert_eq!(str_of(end, "state"), "timeout", "{name}: {end:#}");
        assert_eq!(str_of(end, "stdout"), "shown\n", "{name}: {end:#}");
        assert_eq!(end["figureFrames"], 0, "{name}: the busy figure's frame was not removed");
        assert!(str_of(end, "stderr").contains("A figure was still being drawn"), "{end:#}");
        let ran = entered(end, "timeout").unwrap() - entered(end, "running").unwrap();
        eprintln!(
            "page: {name}: timeout {ran:.0} ms after the run started (limit 10000 ms); while \
             drawing, a round trip into the page took {} ms and a click on Edit {} ms",
            probe["evalMs"], probe["clickMs"]
        );
        assert!((9900.0..12000.0).contains(&ran), "{name}: timeout after {ran} ms");

        let case = &results[&format!("{name}-stop")];
        let before = &case["evals"]["before-stop"];
        assert_eq!(str_of(before, "state"), "running", "{name}: {before}");
        let end = &case["observations"]["end"];
        assert_eq!(str_of(end, "state"), "stopped", "{name}: {end:#}");
        assert_eq!(end["figureFrames"], 0, "{name}: the busy figure's frame was not removed");
        let took = entered(end, "stopped").unwrap() - before["now"].as_f64().unwrap();
        // The bound is the wait step's: stopped within 5 s of the click, however busy the figure.
        eprintln!("page: {name}: stopped {took:.0} ms after the Stop click began");
    }
}

/// Code that calls home when it runs (so a run shows on the server, not only on the page).
fn calling_home(base: &str, name: &str) -> String {
    format!("import js\nawait js.fetch('{base}/tick/{name}')\nprint('ran {name}')\n")
}

/// The crafted-link case: the page runs on open only the links this sandgate made (their MAC
/// confirmed through `/sandbox/verify`, which sees only the hash and the MAC); a hand-written link,
/// one with a bad MAC, one whose code was changed after signing and one the check cannot confirm
/// show their code with a note, and run when Run is pressed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_links_this_sandgate_made_run_on_open() {
    let assets = assets();
    let (listener, base) = listen().await;
    let log = serve_sandbox_on(
        listener,
        sandbox(&assets, &assets.join("wheels"), 30_000),
        Verify::Answer,
    );
    let (listener, unasked) = listen().await;
    serve_sandbox_on(listener, sandbox(&assets, &assets.join("wheels"), 30_000), Verify::Missing);

    // The link the engine writes for an answer, with this sandgate's key and public URL.
    let options = sandgate::rewrite::Options {
        public_url: base.clone(),
        link_key: LinkKey::new(LINK_KEY).unwrap(),
        ..Default::default()
    };
    let answer = format!("Here:\n\n```python\n{}```\n", calling_home(&base, "engine"));
    let rewritten = sandgate::rewrite::rewrite(&options, &answer);
    let at = rewritten.find(&format!("{base}/sandbox#")).unwrap();
    let engine_link = rewritten[at..].split(')').next().unwrap().to_string();
    assert!(engine_link.contains(MAC_PARAM), "{engine_link}");

    let fragment = |code: &str| format!("py={}", payload::encode(code));
    let hand_written = format!("{base}/sandbox#{}", fragment(&calling_home(&base, "hand")));
    let bad_mac = format!(
        "{base}/sandbox#{}{MAC_PARAM}{}",
        fragment(&calling_home(&base, "bad-mac")),
        "A".repeat(22)
    );
    // The engine's link with its code swapped for other code, the MAC kept.
    let signed_py = engine_link.split(['#', '&']).find(|p| p.starts_with("py=")).unwrap();
    let changed = engine_link.replace(signed_py, &fragment(&calling_home(&base, "changed")));
    let unconfirmed = link(&unasked, &calling_home(&unasked, "unasked"));

    let held = |url: &str, server: &str, name: &str| {
        let ticks = format!("{server}/tick-count/{name}");
        json!([
            {"do": "goto", "url": url},
            {"do": "wait", "states": ["ready"], "timeoutMs": 30000},
            // Time in which a run would have started (a warm spare runs in well under this).
            {"do": "sleep", "ms": 1500},
            {"do": "observe", "label": "held"},
            {"do": "fetch", "url": ticks, "label": "before"},
            {"do": "click", "selector": "#run"},
            {"do": "wait", "states": ENDED, "timeoutMs": 90000},
            {"do": "observe", "label": "run"},
            {"do": "fetch", "url": ticks, "label": "after"},
        ])
    };
    let results = drive(
        "links",
        json!({"cases": [
            {"name": "engine", "steps": [
                {"do": "goto", "url": engine_link},
                {"do": "wait", "states": ENDED, "timeoutMs": 90000},
                {"do": "observe", "label": "end"},
                {"do": "fetch", "url": format!("{base}/tick-count/engine"), "label": "after"},
            ]},
            {"name": "hand", "steps": held(&hand_written, &base, "hand")},
            {"name": "bad-mac", "steps": held(&bad_mac, &base, "bad-mac")},
            {"name": "changed", "steps": held(&changed, &base, "changed")},
            {"name": "unasked", "steps": held(&unconfirmed, &unasked, "unasked")},
        ]}),
    )
    .await;
    let count = |case: &str, label: &str| str_of(&results[case]["fetches"], label).to_string();

    // The engine's link runs on open, once, with no note.
    let end = &results["engine"]["observations"]["end"];
    assert_eq!(str_of(end, "state"), "done", "{end:#}");
    assert_eq!(str_of(end, "link"), "signed", "{end:#}");
    assert!(end["linkNote"].is_null(), "{end:#}");
    assert_eq!(str_of(end, "stdout"), "ran engine\n", "{end:#}");
    assert_eq!(count("engine", "after"), "1");

    // The others wait for Run, with their code shown and the note, then run what they show.
    for (case, server, link_state) in [
        ("hand", &base, "unsigned"),
        ("bad-mac", &base, "invalid"),
        ("changed", &base, "invalid"),
        ("unasked", &unasked, "unsigned"),
    ] {
        let held = &results[case]["observations"]["held"];
        assert_eq!(str_of(held, "state"), "ready", "{case}: {held:#}");
        assert_eq!(str_of(held, "link"), link_state, "{case}: {held:#}");
        assert!(entered(held, "running").is_none(), "{case} ran before Run: {held:#}");
        assert_eq!(str_of(held, "stdout"), "", "{case}: {held:#}");
        assert_eq!(str_of(held, "code"), calling_home(server, case), "{case}: {held:#}");
        let note = str_of(held, "linkNote");
        assert!(note.contains("not made by this sandgate"), "{case}: {held:#}");
        assert!(note.contains("Read the code first"), "{case}: {held:#}");
        let run = &results[case]["observations"]["run"];
        assert_eq!(str_of(run, "state"), "done", "{case}: {run:#}");
        assert_eq!(str_of(run, "stdout"), format!("ran {case}\n"), "{case}: {run:#}");
        assert_eq!(count(case, "before"), "0", "{case} called home before Run");
        assert_eq!(count(case, "after"), "1", "{case}: runs once, on Run");
    }

    // Verify saw the hash and the MAC only: never the code, compressed or not.
    let queries = log.lock().unwrap().clone();
    assert_eq!(queries.len(), 3, "engine, bad-mac and changed ask; hand has no MAC: {queries:?}");
    for q in &queries {
        let names: Vec<&str> = q.split('&').map(|p| p.split('=').next().unwrap()).collect();
        assert_eq!(names, ["h", "mac"], "{q}");
        let h = q.strip_prefix("h=").unwrap().split('&').next().unwrap();
        assert_eq!(h.len(), 43, "{q}");
        assert!(!q.contains(signed_py.trim_start_matches("py=")), "{q}");
    }
    let engine_fragment = &engine_link[engine_link.find('#').unwrap() + 1..];
    let (signed, mac) = sandgate::rewrite::sign::split(engine_fragment).unwrap();
    let expected = format!("h={}&mac={mac}", sandgate::rewrite::sign::hash_param(signed));
    assert_eq!(queries[0], expected, "the page hashes exactly what the engine signed");
}
