#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]
//! The sandbox page in headless Chromium, fully offline: real hyper servers on loopback serve
//! `Sandbox::handle` with Pyodide from the npm package and wheels from PyPI (installed by
//! tests/setup/10-browser.sh), a second server on another origin hosts the widget iframe, and
//! tests/browser/drive.mjs (playwright-core) reports what the browser showed.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use sandgate::sandbox::{Sandbox, SandboxConfig};
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// The public link format: raw DEFLATE, then base64url without padding.
fn payload(code: &str) -> String {
    let deflated = miniz_oxide::deflate::compress_to_vec(code.as_bytes(), 9);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(deflated)
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Fails with the command to run when something the setup script installs is missing.
fn require(path: &Path, what: &str) {
    assert!(
        path.exists(),
        "{what} is missing at {}: run `bash tests/setup/10-browser.sh` (or `bash tests/run.sh`)",
        path.display()
    );
}

async fn serve_sandbox(sandbox: Sandbox) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sandbox = Arc::new(sandbox);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let sandbox = sandbox.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let sandbox = sandbox.clone();
                    async move {
                        let res = sandbox.handle(req.method(), req.uri().path()).await;
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
    addr
}

/// The other origin: serves host pages by path and counts requests to `/secret`.
async fn serve_host(
    listener: TcpListener,
    pages: HashMap<String, String>,
    secret_hits: Arc<AtomicUsize>,
) {
    let pages = Arc::new(pages);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let pages = pages.clone();
            let hits = secret_hits.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let pages = pages.clone();
                    let hits = hits.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        if path == "/secret" {
                            hits.fetch_add(1, Ordering::SeqCst);
                        }
                        let res = match pages.get(&path) {
                            Some(html) => Response::builder()
                                .header("content-type", "text/html; charset=utf-8")
                                .body(Full::new(Bytes::from(html.clone()))),
                            None => Response::builder()
                                .header("access-control-allow-origin", "*")
                                .body(Full::new(Bytes::from_static(b"secret data\n"))),
                        };
                        Ok::<_, Infallible>(res.unwrap())
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

fn sandbox(assets: &Path, timeout_ms: u64) -> Sandbox {
    Sandbox::new(SandboxConfig {
        pyodide_url: "/pyodide/".to_string(),
        pyodide_dir: Some(assets.join("pyodide")),
        wheels_dir: Some(assets.join("wheels")),
        timeout_ms,
    })
    .unwrap()
}

const PRINT_CODE: &str = r#"import sys
print("hello from the sandbox")
print("naïve café ✓ 日本語")
# One character split across two writes reaches the page whole.
check = "✓".encode()
sys.stdout.buffer.write(check[:2]); sys.stdout.buffer.flush()
sys.stdout.buffer.write(check[2:] + b" split\n"); sys.stdout.buffer.flush()
sys.stderr.write("a warning on stderr\n")
answer = 6 * 7
{"answer": answer, "word": 'abc'}
"#;

const ERROR_CODE: &str = r#"def divide(a, b):
    return a / b

print("before the error")
divide(1, 0)
"#;

const HOSTILE_CODE: &str = r#"# </textarea><img src=x onerror=alert('textarea')>
a = "</script><script>alert('script')</script>"
b = '<iframe src="javascript:alert(\'iframe\')"></iframe>'
c = '"><img src=x onerror=alert(1)>'
d = "[click](javascript:alert('link'))"
for s in (a, b, c, d):
    print(s)
a + b + c + d
"#;

/// The example of NVIDIA's post "Sandboxing Agentic AI Workflows with WebAssembly": a Plotly bar
/// chart whose `fig` is built and never shown.
const PLOTLY_CODE: &str = r#"import plotly.graph_objects as go

categories = ["A", "B", "C"]
values = [10, 20, 15]

fig = go.Figure(data=[go.Bar(x=categories, y=values)])
fig.update_layout(title="Values by category", xaxis_title="Category", yaxis_title="Value")
print("figure built")
"#;

const MATPLOTLIB_CODE: &str = r#"import matplotlib.pyplot as plt

plt.plot([1, 2, 3], [1, 4, 9], marker="o")
plt.title("Squares")
plt.show()

fig, ax = plt.subplots()
ax.bar(["x", "y"], [3, 5])
print("two figures")
"#;

const DATAFRAME_CODE: &str = r#"import pandas as pd
pd.DataFrame({"name": ["a", "b"], "value": [1, 2]})
"#;

const REPR_HTML_CODE: &str = r#"class Shiny:
    def _repr_html_(self):
        return "<b>bold text</b><script>alert('repr')</script><img src=x onerror=\"alert('img')\">"

Shiny()
"#;

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// The state names of an observation's history, in order.
fn states(obs: &Value) -> Vec<String> {
    obs["states"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s[0].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// The time (ms) at which the history first entered `state`.
fn entered(obs: &Value, state: &str) -> Option<f64> {
    obs["states"]
        .as_array()?
        .iter()
        .find(|s| s[0].as_str() == Some(state))
        .and_then(|s| s[1].as_f64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_page_in_headless_chromium() {
    let repo = repo();
    let assets = repo.join("target/browser-assets");
    require(Path::new("/usr/bin/chromium"), "Debian's chromium");
    require(&repo.join("tests/browser/node_modules/playwright-core"), "playwright-core");
    require(&assets.join("pyodide/pyodide.asm.wasm"), "the Pyodide distribution");
    require(&assets.join("pyodide/micropip-0.11.1-py3-none-any.whl"), "the micropip wheel");
    require(&assets.join("wheels/plotly-7.1.0-py3-none-any.whl"), "the plotly wheel");
    require(&assets.join("wheels/plotly.min.js"), "plotly.js");
    let shots = repo.join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = |name: &str| shots.join(name).to_string_lossy().into_owned();

    let main = serve_sandbox(sandbox(&assets, 30_000)).await;
    let short = serve_sandbox(sandbox(&assets, 5_000)).await;
    // Pyodide 0.27.7 with matplotlib, numpy and pandas: the same page against another release.
    require(
        &assets.join("pyodide-0.27.7/.complete"),
        "the Pyodide 0.27.7 distribution with matplotlib",
    );
    let mpl = serve_sandbox(
        Sandbox::new(SandboxConfig {
            pyodide_url: "/pyodide/".to_string(),
            pyodide_dir: Some(assets.join("pyodide-0.27.7")),
            wheels_dir: None,
            timeout_ms: 60_000,
        })
        .unwrap(),
    )
    .await;
    let mpl_url = format!("http://127.0.0.1:{}", mpl.port());
    let host_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host_port = host_listener.local_addr().unwrap().port();
    let main_url = format!("http://127.0.0.1:{}", main.port());
    // Pyodide from another origin, as from the default CDN: the page's policy names that URL.
    let cdn_like = serve_sandbox(sandbox(&assets, 30_000)).await;
    let elsewhere = serve_sandbox(
        Sandbox::new(SandboxConfig {
            pyodide_url: format!("http://127.0.0.1:{}/pyodide/", cdn_like.port()),
            pyodide_dir: None,
            wheels_dir: None,
            timeout_ms: 30_000,
        })
        .unwrap(),
    )
    .await;
    let elsewhere_url = format!("http://127.0.0.1:{}", elsewhere.port());
    let short_url = format!("http://127.0.0.1:{}", short.port());
    // "localhost" makes the host page another site as well as another origin.
    let host_url = format!("http://localhost:{host_port}");
    let link = |base: &str, code: &str| format!("{base}/sandbox#py={}", payload(code));

    let widget_code = "import sys\nprint('widget ok', sys.platform)\n21 * 2\n";
    let mut pages = HashMap::new();
    pages.insert(
        "/widget".to_string(),
        format!(
            "<!DOCTYPE html><html><body><h1>A chat page on another origin</h1>\n\
             <iframe sandbox=\"allow-scripts\" src=\"{}\" width=\"900\" height=\"620\" \
             title=\"Python sandbox\"></iframe></body></html>",
            link(&main_url, widget_code)
        ),
    );
    let secret_hits = Arc::new(AtomicUsize::new(0));
    serve_host(host_listener, pages, secret_hits.clone()).await;

    let fetch_code = format!(
        "import js\nprint('fetching')\nresponse = await js.fetch('{host_url}/secret')\nprint('got', response.status)\n"
    );
    let missing_code = "import surely_not_a_real_package_name\nprint('unreachable')\n";
    let timeout_code = "print('spinning')\nwhile True:\n    pass\n";
    let done = json!(["done", "error", "timeout", "stopped"]);

    let cases = json!({"cases": [
        {"name": "print", "steps": [
            {"do": "goto", "url": format!("{}&md=ignored&sg=1", link(&main_url, PRINT_CODE))},
            {"do": "wait", "states": done, "timeoutMs": 90000},
            {"do": "observe", "label": "end"},
            {"do": "screenshot", "path": shot("done.png")},
            {"do": "tab", "label": "tab", "count": 3},
        ]},
        {"name": "print-dark-phone", "viewport": {"width": 390, "height": 844}, "colorScheme": "dark", "steps": [
            {"do": "goto", "url": link(&main_url, PRINT_CODE)},
            {"do": "wait", "states": done, "timeoutMs": 90000},
            {"do": "observe", "label": "end"},
            {"do": "screenshot", "path": shot("done-dark-phone.png")},
        ]},
        {"name": "pyodide-elsewhere", "steps": [
            {"do": "goto", "url": link(&elsewhere_url, PRINT_CODE)},
            {"do": "wait", "states": done, "timeoutMs": 90000},
            {"do": "observe", "label": "end"},
        ]},
        {"name": "error", "steps": [
            {"do": "goto", "url": link(&main_url, ERROR_CODE)},
            {"do": "wait", "states": done, "timeoutMs": 90000},
            {"do": "observe", "label": "end"},
            {"do": "screenshot", "path": shot("error.png")},
        ]},
        {"name": "timeout", "steps": [
            {"do": "goto", "url": link(&short_url, timeout_code)},
            {"do": "wait", "states": ["running"], "timeoutMs": 90000},
            {"do": "probe", "label": "while-running"},
            {"do": "wait", "states": done, "timeoutMs": 30000},
            {"do": "observe", "label": "timeout"},
            {"do": "screenshot", "path": shot("timeout.png")},
            {"do": "click", "selector": "#edit"},
            {"do": "fill", "selector": "#code", "value": "print('again')\n1 + 1\n"},
            {"do": "click", "selector": "#run"},
            {"do": "wait", "states": done, "timeoutMs": 90000},
            {"do": "observe", "label": "again"},
            {"do": "fill", "selector": "#code", "value": "print('looping')\nwhile True:\n    pass\n"},
            {"do": "click", "selector": "#run"},
            {"do": "wait", "states": ["running"], "timeoutMs": 30000},
            {"do": "click", "selector": "#stop"},
            {"do": "wait", "states": done, "timeoutMs": 5000},
            {"do": "observe", "label": "stopped"},
            {"do": "fill", "selector": "#code", "value": "print('after stop')\n"},
            {"do": "click", "selector": "#run"},
            {"do": "wait", "states": done, "timeoutMs": 90000},
            {"do": "observe", "label": "after-stop"},
        ]},
        {"name": "hostile", "steps": [
            {"do": "goto", "url": link(&main_url, HOSTILE_CODE)},
            {"do": "wait", "states": done, "timeoutMs": 90000},
            {"do": "observe", "label": "end"},
            {"do": "screenshot", "path": shot("hostile.png")},
        ]},
        {"name": "widget", "steps": [
            {"do": "goto", "url": format!("{host_url}/widget")},
            {"do": "wait", "frame": true, "states": done, "timeoutMs": 90000},
            {"do": "observe", "frame": true, "label": "end"},
            {"do": "screenshot", "path": shot("widget.png")},
        ]},
        {"name": "fetch-blocked", "steps": [
            {"do": "goto", "url": link(&main_url, &fetch_code)},
            {"do": "wait", "states": done, "timeoutMs": 90000},
            {"do": "observe", "label": "end"},
        ]},
        {"name": "missing-package", "steps": [
            {"do": "goto", "url": link(&main_url, missing_code)},
            {"do": "wait", "states": done, "timeoutMs": 90000},
            {"do": "observe", "label": "end"},
        ]},
        {"name": "pyodide-package-missing", "steps": [
            {"do": "goto", "url": link(&main_url, "import numpy\nprint(numpy.arange(3))\n")},
            {"do": "wait", "states": done, "timeoutMs": 90000},
            {"do": "observe", "label": "end"},
        ]},
        {"name": "no-code", "steps": [
            {"do": "goto", "url": format!("{main_url}/sandbox#md=only")},
            {"do": "wait", "states": done, "timeoutMs": 30000},
            {"do": "observe", "label": "end"},
        ]},
        {"name": "repr-html", "steps": [
            {"do": "goto", "url": link(&main_url, REPR_HTML_CODE)},
            {"do": "wait", "states": done, "timeoutMs": 90000},
            {"do": "observe", "label": "end"},
        ]},
        {"name": "matplotlib", "steps": [
            {"do": "goto", "url": link(&mpl_url, MATPLOTLIB_CODE)},
            {"do": "wait", "states": done, "timeoutMs": 180000},
            {"do": "observe", "label": "end"},
            {"do": "screenshot", "path": shot("matplotlib.png")},
        ]},
        {"name": "dataframe", "steps": [
            {"do": "goto", "url": link(&mpl_url, DATAFRAME_CODE)},
            {"do": "wait", "states": done, "timeoutMs": 180000},
            {"do": "observe", "label": "end"},
            {"do": "screenshot", "path": shot("dataframe.png")},
        ]},
        {"name": "plotly", "steps": [
            {"do": "goto", "url": link(&main_url, PLOTLY_CODE)},
            {"do": "wait", "states": done, "timeoutMs": 180000},
            {"do": "wait", "states": ["done"], "timeoutMs": 1000},
            {"do": "observe", "label": "end"},
            {"do": "screenshot", "path": shot("plotly.png")},
        ]},
    ]});

    let cases_file = repo.join("target/browser-cases.json");
    std::fs::write(&cases_file, serde_json::to_vec_pretty(&cases).unwrap()).unwrap();
    let browser_dir = repo.join("tests/browser");
    let output = tokio::process::Command::new("node")
        .arg("drive.mjs")
        .arg(&cases_file)
        .current_dir(&browser_dir)
        .kill_on_drop(true)
        .output()
        .await
        .expect("node must be installed (tests/setup/10-browser.sh)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "drive.mjs failed: {}\n{stderr}", output.status);
    // Kept for whoever debugs a failure: every observation, console line and navigation.
    std::fs::write(repo.join("target/browser-report.json"), &output.stdout).unwrap();
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("drive.mjs printed no JSON ({e}): {stderr}"));
    let results: HashMap<String, Value> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (str_of(r, "name").to_string(), r.clone()))
        .collect();
    let case = |name: &str| -> &Value {
        let r = results.get(name).unwrap_or_else(|| panic!("no result for {name}"));
        assert!(
            r["error"].is_null(),
            "case {name} failed in the browser: {}\nobservations: {:#}\nevents: {:#}",
            r["error"],
            r["observations"],
            r["events"]
        );
        assert!(
            r["events"]["dialogs"].as_array().unwrap().is_empty(),
            "case {name} opened a dialog: {}",
            r["events"]["dialogs"]
        );
        assert!(
            r["events"]["pageErrors"].as_array().unwrap().is_empty(),
            "case {name} had uncaught page errors: {}",
            r["events"]["pageErrors"]
        );
        r
    };
    let obs = |name: &str, label: &str| -> Value { case(name)["observations"][label].clone() };

    // Printed output (streamed, multi-byte intact), stderr, and the last expression's repr.
    for name in ["print", "print-dark-phone", "pyodide-elsewhere"] {
        let end = obs(name, "end");
        assert_eq!(str_of(&end, "state"), "done", "{name}: {end:#}");
        // The policy's sandbox directive: an opaque origin even top-level.
        assert_eq!(str_of(&end, "origin"), "null", "{name}");
        assert_eq!(states(&end), ["loading", "running", "done"], "{name}: state history");
        assert_eq!(
            str_of(&end, "stdout"),
            "hello from the sandbox\nnaïve café ✓ 日本語\n✓ split\n"
        );
        assert!(str_of(&end, "stderr").contains("a warning on stderr"));
        assert_eq!(str_of(&end, "result"), "{'answer': 42, 'word': 'abc'}");
        assert_eq!(str_of(&end, "code"), PRINT_CODE);
        assert_eq!(end["overflowsX"], false, "{name}: wider than the screen");
    }
    // The controls are reachable with the keyboard, in reading order (Stop is disabled when idle).
    assert_eq!(case("print")["probes"]["tab"]["order"], json!(["run", "edit", "code"]));

    // An exception: state error, the traceback with the user's own lines, no Pyodide frames.
    let end = obs("error", "end");
    assert_eq!(str_of(&end, "state"), "error", "{end:#}");
    assert_eq!(states(&end), ["loading", "running", "error"]);
    assert_eq!(str_of(&end, "stdout"), "before the error\n");
    let tb = str_of(&end, "stderr");
    assert!(tb.contains("Traceback (most recent call last)"), "{tb}");
    assert!(tb.contains("File \"main.py\", line 5, in <module>"), "{tb}");
    assert!(tb.contains("File \"main.py\", line 2, in divide"), "{tb}");
    assert!(tb.contains("return a / b"), "{tb}");
    assert!(tb.contains("ZeroDivisionError: division by zero"), "{tb}");
    assert!(!tb.contains("_pyodide") && !tb.contains("/lib/python"), "internal frames shown: {tb}");

    // An endless loop: stopped by the 5 s limit, the page answers meanwhile, Run again works.
    let probe = &case("timeout")["probes"]["while-running"];
    assert_eq!(str_of(probe, "pressed"), "true", "Edit did not respond while running: {probe}");
    assert_eq!(str_of(probe, "state"), "running", "{probe}");
    assert!(probe["evalMs"].as_f64().unwrap() < 1000.0, "page unresponsive: {probe}");
    let t = obs("timeout", "timeout");
    assert_eq!(str_of(&t, "state"), "timeout", "{t:#}");
    // Printed while the loop ran: the output streams, it does not wait for the end.
    assert_eq!(str_of(&t, "stdout"), "spinning\n");
    let ran = entered(&t, "timeout").unwrap() - entered(&t, "running").unwrap();
    assert!((4900.0..9000.0).contains(&ran), "timeout after {ran} ms, the limit is 5000 ms");
    let again = obs("timeout", "again");
    assert_eq!(str_of(&again, "state"), "done", "{again:#}");
    assert_eq!(str_of(&again, "stdout"), "again\n");
    assert_eq!(str_of(&again, "result"), "2");
    // Stop ends a run at once, and the fresh worker runs the next one.
    let stopped = obs("timeout", "stopped");
    assert_eq!(str_of(&stopped, "state"), "stopped", "{stopped:#}");
    assert_eq!(str_of(&stopped, "stdout"), "looping\n");
    let after = obs("timeout", "after-stop");
    assert_eq!(str_of(&after, "state"), "done", "{after:#}");
    assert_eq!(str_of(&after, "stdout"), "after stop\n");

    // Hostile strings are shown as text; nothing runs, nothing navigates.
    let hostile = case("hostile");
    let end = obs("hostile", "end");
    assert_eq!(str_of(&end, "state"), "done", "{end:#}");
    assert_eq!(str_of(&end, "code"), HOSTILE_CODE);
    let out = str_of(&end, "stdout");
    assert!(out.contains("</script><script>alert('script')</script>"));
    assert!(out.contains("<iframe src=\"javascript:alert('iframe')\"></iframe>"));
    assert!(out.contains("\"><img src=x onerror=alert(1)>"));
    assert!(str_of(&end, "result").contains("onerror=alert(1)>"));
    assert_eq!(end["activeElementsInOutputs"], 0, "markup from the code became elements");
    assert_eq!(end["scriptsInDocument"], 1, "a script element was added to the page");
    let navigations = hostile["events"]["navigations"].as_array().unwrap();
    assert!(
        navigations
            .iter()
            .all(|n| str_of(n, "url").starts_with(&format!("{main_url}/sandbox#py="))),
        "unexpected navigation: {navigations:?}"
    );

    // A widget: opaque-origin iframe in a page of another origin, worker and all.
    let end = obs("widget", "end");
    assert_eq!(str_of(&end, "state"), "done", "{end:#}");
    assert_eq!(str_of(&end, "origin"), "null", "the widget is not in an opaque origin");
    assert_eq!(str_of(&end, "stdout"), "widget ok emscripten\n");
    assert_eq!(str_of(&end, "result"), "42");

    // Python's fetch to an origin the policy does not allow never leaves the browser.
    let end = obs("fetch-blocked", "end");
    assert_eq!(str_of(&end, "state"), "error", "{end:#}");
    assert_eq!(str_of(&end, "stdout"), "fetching\n");
    assert!(str_of(&end, "stderr").contains("the request was blocked"), "{end:#}");
    assert_eq!(secret_hits.load(Ordering::SeqCst), 0, "the blocked fetch reached the other origin");

    // A package that is nowhere: a clear message, then the ImportError.
    let end = obs("missing-package", "end");
    assert_eq!(str_of(&end, "state"), "error", "{end:#}");
    let err = str_of(&end, "stderr");
    assert!(err.contains("package 'surely_not_a_real_package_name' is not available"), "{err}");
    assert!(
        err.contains("ModuleNotFoundError: No module named 'surely_not_a_real_package_name'"),
        "{err}"
    );
    assert!(err.contains("is not available in this sandbox"), "{err}");

    // A Pyodide package missing from the self-hosted copy: a clear line, then the ImportError.
    let end = obs("pyodide-package-missing", "end");
    assert_eq!(str_of(&end, "state"), "error", "{end:#}");
    let err = str_of(&end, "stderr");
    assert!(
        err.contains(
            "Package 'numpy' is part of Pyodide but could not be loaded: this sandbox serves its \
             own copy of Pyodide, which does not include that package."
        ),
        "{err}"
    );
    assert!(err.contains("ModuleNotFoundError: No module named 'numpy'"), "{err}");

    // A link without code.
    let end = obs("no-code", "end");
    assert_eq!(str_of(&end, "state"), "error", "{end:#}");
    assert!(str_of(&end, "stderr").contains("carries no code"), "{end:#}");

    // _repr_html_ is shown as markup, without its script, image or handler.
    let end = obs("repr-html", "end");
    assert_eq!(str_of(&end, "state"), "done", "{end:#}");
    assert_eq!(end["resultHtml"], json!({"text": "bold text", "tables": 0, "bold": 1}));
    assert_eq!(end["activeElementsInOutputs"], 0, "{end:#}");
    assert_eq!(end["scriptsInDocument"], 1, "{end:#}");

    // matplotlib (Pyodide 0.27.7): show() and a figure left open both become PNGs.
    let end = obs("matplotlib", "end");
    assert_eq!(str_of(&end, "state"), "done", "{end:#}");
    assert_eq!(str_of(&end, "stdout"), "two figures\n");
    let pngs = end["pngs"].as_array().unwrap();
    assert_eq!(pngs.len(), 2, "{end:#}");
    assert!(
        pngs.iter().all(|p| p[0].as_u64().unwrap() > 200 && p[1].as_u64().unwrap() > 150),
        "{pngs:?}"
    );
    assert_eq!(str_of(&end, "stderr"), "", "{end:#}");

    // A pandas DataFrame shows as its HTML table.
    let end = obs("dataframe", "end");
    assert_eq!(str_of(&end, "state"), "done", "{end:#}");
    assert_eq!(end["resultHtml"]["tables"], 1, "{end:#}");
    assert!(str_of(&end["resultHtml"], "text").contains("value"), "{end:#}");

    // NVIDIA's Plotly example, offline: plotly and narwhals from the wheels directory through
    // micropip, plotly.js from it too; the figure was never shown, yet it is drawn.
    let end = obs("plotly", "end");
    assert_eq!(str_of(&end, "state"), "done", "{end:#}");
    assert_eq!(str_of(&end, "stdout"), "figure built\n");
    assert_eq!(end["plotlyFigures"], 1, "{end:#}");
    assert_eq!(end["plotlyBars"], 3, "{end:#}");
    assert_eq!(end["plotlyTickLabels"], json!(["A", "B", "C"]), "{end:#}");
}
