#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]
//! The sandbox page's limits under hostile code (issue 10), in headless Chromium through
//! tests/browser/drive.mjs, fully offline like tests/browser.rs: sanitized HTML cannot cover the
//! controls.
//!
//! The test server serves `Sandbox::handle` plus `/tick/<name>` (code in the sandbox calls it, to
//! show that it is still running) and `/tick-count/<name>`. Each test runs its own browser; one at
//! a time, so that the time bounds measure the page rather than the other tests.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use sandgate::rewrite::payload;
use sandgate::sandbox::{Sandbox, SandboxConfig};
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// One browser at a time.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn assets() -> PathBuf {
    let repo = repo();
    let assets = repo.join("target/browser-assets");
    for (path, what) in [
        (PathBuf::from("/usr/bin/chromium"), "Debian's chromium"),
        (repo.join("tests/browser/node_modules/playwright-core"), "playwright-core"),
        (assets.join("pyodide/pyodide.asm.wasm"), "the Pyodide distribution"),
        (assets.join("pyodide/micropip-0.11.1-py3-none-any.whl"), "the micropip wheel"),
        (assets.join("wheels/plotly-7.1.0-py3-none-any.whl"), "the plotly wheel"),
        (assets.join("wheels/plotly.min.js"), "plotly.js"),
    ] {
        assert!(
            path.exists(),
            "{what} is missing at {}: run `bash tests/setup/10-browser.sh` (or `bash tests/run.sh`)",
            path.display()
        );
    }
    assets
}

fn sandbox(assets: &Path, wheels: &Path, timeout_ms: u64) -> Sandbox {
    Sandbox::new(SandboxConfig {
        pyodide_url: "/pyodide/".to_string(),
        pyodide_dir: Some(assets.join("pyodide")),
        wheels_dir: Some(wheels.to_path_buf()),
        timeout_ms,
    })
    .unwrap()
}

/// Serves `Sandbox::handle` and the tick counters; answers the base URL.
async fn serve(sandbox: Sandbox) -> String {
    let (listener, base) = listen().await;
    serve_on(listener, sandbox);
    base
}

/// A listener on a loopback port, and its base URL.
async fn listen() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    (listener, format!("http://127.0.0.1:{}", addr.port()))
}

fn serve_on(listener: TcpListener, sandbox: Sandbox) {
    let sandbox = Arc::new(sandbox);
    let ticks: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let sandbox = sandbox.clone();
            let ticks = ticks.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let sandbox = sandbox.clone();
                    let ticks = ticks.clone();
                    async move {
                        let path = req.uri().path();
                        if let Some(name) = path.strip_prefix("/tick/") {
                            *ticks.lock().unwrap().entry(name.to_string()).or_default() += 1;
                            let res = Response::builder()
                                .header("access-control-allow-origin", "*")
                                .body(Full::new(Bytes::from_static(b"tick\n")));
                            return Ok(res.unwrap());
                        }
                        if let Some(name) = path.strip_prefix("/tick-count/") {
                            let n = ticks.lock().unwrap().get(name).copied().unwrap_or(0);
                            return Ok(Response::new(Full::new(Bytes::from(n.to_string()))));
                        }
                        let res = sandbox.handle(req.method(), path).await;
                        Ok::<_, Infallible>(res.unwrap_or_else(|| {
                            Response::builder()
                                .status(404)
                                .body(Full::new(Bytes::from_static(b"not sandbox\n")))
                                .unwrap()
                        }))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

fn link(base: &str, code: &str) -> String {
    format!("{base}/sandbox#py={}", payload::encode(code))
}

/// Runs the cases in one browser and answers each case's result by name, after checking that it
/// ran to its end without a page error or a dialog.
async fn drive(name: &str, cases: Value) -> HashMap<String, Value> {
    let _one = BROWSER.lock().await;
    let repo = repo();
    let cases_file = repo.join(format!("target/page-hardening-{name}.json"));
    std::fs::write(&cases_file, serde_json::to_vec_pretty(&cases).unwrap()).unwrap();
    let output = tokio::process::Command::new("node")
        .arg("drive.mjs")
        .arg(&cases_file)
        .current_dir(repo.join("tests/browser"))
        .kill_on_drop(true)
        .output()
        .await
        .expect("node must be installed (tests/setup/10-browser.sh)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "drive.mjs failed: {}\n{stderr}", output.status);
    std::fs::write(repo.join(format!("target/page-hardening-{name}-report.json")), &output.stdout)
        .unwrap();
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("drive.mjs printed no JSON ({e}): {stderr}"));
    let mut results = HashMap::new();
    for r in report["results"].as_array().unwrap() {
        let case = r["name"].as_str().unwrap().to_string();
        assert!(
            r["error"].is_null(),
            "case {case} failed in the browser: {}\nobservations: {:#}\nevals: {:#}\nevents: {:#}",
            r["error"],
            r["observations"],
            r["evals"],
            r["events"]
        );
        assert_eq!(r["events"]["dialogs"], json!([]), "case {case} opened a dialog");
        assert_eq!(r["events"]["pageErrors"], json!([]), "case {case} had uncaught page errors");
        results.insert(case, r.clone());
    }
    results
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

const ENDED: [&str; 4] = ["done", "error", "timeout", "stopped"];

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
    let base = serve(sandbox(&assets, &assets.join("wheels"), 90_000)).await;
    let results = drive(
        "overlay",
        json!({"cases": [{"name": "overlay", "steps": [
            {"do": "goto", "url": link(&base, OVERLAY_CODE)},
            {"do": "until", "timeoutMs": 90000, "js":
                "document.getElementById('stdout').textContent.includes('covering') && !!document.querySelector('#result .html-result')"},
            // Time for plotly.js to load and draw the figure shown before the HTML.
            {"do": "sleep", "ms": 2000},
            {"do": "eval", "label": "hits", "js": HIT_TEST},
            {"do": "screenshot", "path": repo().join("target/page-hardening-overlay.png").to_string_lossy()},
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
