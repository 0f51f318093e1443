//! What the browser tests share: where the assets are (as tests/setup/10-browser.sh installs them,
//! each checked with the command to run when it is missing), the drive.mjs runner, one lock, so
//! that one headless Chromium runs at a time, and the loopback servers the pages are served from
//! ([`serve`] for any handler, [`serve_sandbox`] for `Sandbox::handle` with `/sandbox/verify` and
//! the tick counters, [`link`] for a link signed as sandgate signs its own), the other Node
//! drivers ([`node`]) and `sandgate demo` ([`Demo`]).
//!
//! In one test binary the browser tests would otherwise run beside each other (and beside the
//! heavy proxy tests) on the test threads; each Chromium with Pyodide takes a core and hundreds of
//! MB, and the page's time limits are measured against the page, not the machine. Every browser
//! test holds [`lock`] (or [`lock_blocking`] in a plain `#[test]`) from its start to its end.

use std::collections::HashMap;
use std::convert::Infallible;
use std::ffi::OsStr;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use sandgate::proxy::verify;
use sandgate::rewrite::sign::MAC_PARAM;
use sandgate::rewrite::{payload, LinkKey};
use sandgate::sandbox::{Sandbox, SandboxConfig};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, MutexGuard};

static BROWSER: Mutex<()> = Mutex::const_new(());

/// Waits for the browser; the guard releases it when dropped (a failed test releases it too).
pub async fn lock() -> MutexGuard<'static, ()> {
    BROWSER.lock().await
}

/// [`lock`] for a test outside an async runtime.
pub fn lock_blocking() -> MutexGuard<'static, ()> {
    BROWSER.blocking_lock()
}

/// The repository's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Fails with the command to run when something the setup script installs is missing.
pub fn require(path: &Path, what: &str) {
    assert!(
        path.exists(),
        "{what} is missing at {}: run `bash tests/setup/10-browser.sh` (or `bash tests/run.sh`)",
        path.display()
    );
}

/// tests/browser: the Node drivers, run from there (their node_modules are there).
pub fn drivers() -> PathBuf {
    repo().join("tests/browser")
}

/// `target/browser-assets`, after checking for what every browser test needs: Debian's Chromium
/// and playwright-core (in tests/browser/node_modules).
pub fn assets() -> PathBuf {
    require(Path::new("/usr/bin/chromium"), "Debian's chromium");
    require(&drivers().join("node_modules/playwright-core"), "playwright-core");
    repo().join("target/browser-assets")
}

/// The Pyodide distribution from npm (`pyodide/` of [`assets`]).
pub fn pyodide() -> PathBuf {
    let dir = assets().join("pyodide");
    require(&dir.join("pyodide.asm.wasm"), "the Pyodide distribution");
    dir
}

/// Pyodide 0.27.7 with matplotlib, numpy and pandas (`pyodide-0.27.7/` of [`assets`]).
pub fn pyodide_0277() -> PathBuf {
    let dir = assets().join("pyodide-0.27.7");
    require(&dir.join(".complete"), "the Pyodide 0.27.7 distribution with matplotlib");
    dir
}

/// The wheels directory (`wheels/` of [`assets`]) with plotly and plotly.js, and the micropip
/// wheel beside [`pyodide`] that installs them.
pub fn wheels() -> PathBuf {
    let dir = assets().join("wheels");
    require(&pyodide().join("micropip-0.11.1-py3-none-any.whl"), "the micropip wheel");
    require(&dir.join("plotly-7.1.0-py3-none-any.whl"), "the plotly wheel");
    require(&dir.join("plotly.min.js"), "plotly.js");
    dir
}

/// Runs tests/browser/drive.mjs on `cases` (written to `target/<name>.json`, the report kept in
/// `target/<name>-report.json` for whoever debugs a failure) and answers each case's result by
/// name, after checking that it ran to its end without a page error or a dialog.
pub async fn drive(name: &str, cases: &Value) -> HashMap<String, Value> {
    let cases_file = repo().join(format!("target/{name}.json"));
    std::fs::write(&cases_file, serde_json::to_vec_pretty(cases).unwrap()).unwrap();
    let output = tokio::process::Command::new("node")
        .arg("drive.mjs")
        .arg(&cases_file)
        .current_dir(drivers())
        .kill_on_drop(true)
        .output()
        .await
        .expect("node must be installed (tests/setup/10-browser.sh)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "drive.mjs failed: {}\n{stderr}", output.status);
    std::fs::write(repo().join(format!("target/{name}-report.json")), &output.stdout).unwrap();
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

/// A listener on a loopback port, and its base URL (`http://127.0.0.1:PORT`).
pub async fn listen() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, format!("http://127.0.0.1:{port}"))
}

/// Serves every connection `listener` accepts (HTTP/1.1) with `handler`, for as long as the test's
/// runtime runs.
pub fn serve<F, Fut>(listener: TcpListener, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let res = handler(req);
                    async move { Ok::<_, Infallible>(res.await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

/// A plain response with `status` and `body`.
pub fn text(status: u16, body: &'static str) -> Response<Full<Bytes>> {
    Response::builder().status(status).body(Full::new(Bytes::from_static(body.as_bytes()))).unwrap()
}

/// An HTML page.
pub fn html(page: String) -> Response<Full<Bytes>> {
    Response::builder()
        .header("content-type", "text/html; charset=utf-8")
        .body(Full::new(Bytes::from(page)))
        .unwrap()
}

/// The link key of the sandbox servers: they answer `/sandbox/verify` as a sandgate with this key
/// does, and [`link`] signs with it, as sandgate signs its own.
pub const LINK_KEY: &[u8] = crate::support::TEST_LINK_KEY.as_bytes();

/// `{base}/sandbox#{fragment}&mac=M`, signed with [`LINK_KEY`].
pub fn signed(base: &str, fragment: &str) -> String {
    let mac = LinkKey::new(LINK_KEY).unwrap().mac(fragment);
    format!("{base}/sandbox#{fragment}{MAC_PARAM}{mac}")
}

/// A signed link to `code` on the sandbox page at `base`.
pub fn link(base: &str, code: &str) -> String {
    signed(base, &format!("py={}", payload::encode(code)))
}

/// A sandbox serving Pyodide from `pyodide_dir` at `/pyodide/`, and wheels from `wheels_dir`.
pub fn sandbox(pyodide_dir: PathBuf, wheels_dir: Option<PathBuf>, timeout_ms: u64) -> Sandbox {
    Sandbox::new(SandboxConfig {
        pyodide_url: "/pyodide/".to_string(),
        pyodide_dir: Some(pyodide_dir),
        wheels_dir,
        timeout_ms,
        ..SandboxConfig::default()
    })
    .unwrap()
}

/// What a sandbox server answers at `/sandbox/verify`.
#[derive(Clone, Copy)]
pub enum Verify {
    /// As sandgate does, with [`LINK_KEY`].
    Answer,
    /// Not at all: 404, as from a sandgate that cannot be asked (or a page that never asks).
    Missing,
}

/// The query of every `/sandbox/verify` request a sandbox server received, in order.
pub type VerifyLog = Arc<std::sync::Mutex<Vec<String>>>;

/// Serves `Sandbox::handle` on a new loopback port, answering `/sandbox/verify`; answers the base
/// URL. See [`serve_sandbox_on`].
pub async fn serve_sandbox(sandbox: Sandbox) -> String {
    let (listener, base) = listen().await;
    serve_sandbox_on(listener, sandbox, Verify::Answer);
    base
}

/// Serves `Sandbox::handle` on `listener`, `/sandbox/verify` as `verify` says (logging every
/// query), plus two paths of the tests' own: `/tick/<name>` counts a request (code in the sandbox
/// calls it, with CORS, to show that it is still running) and `/tick-count/<name>` answers the
/// count so far. Anything else is a 404.
pub fn serve_sandbox_on(listener: TcpListener, sandbox: Sandbox, verify: Verify) -> VerifyLog {
    let sandbox = Arc::new(sandbox);
    let ticks: Arc<std::sync::Mutex<HashMap<String, usize>>> = Arc::default();
    let log = VerifyLog::default();
    let verify_log = log.clone();
    let key = LinkKey::new(LINK_KEY).unwrap();
    serve(listener, move |req| {
        let (sandbox, ticks, log, key) =
            (sandbox.clone(), ticks.clone(), verify_log.clone(), key.clone());
        async move {
            let path = req.uri().path();
            if path == verify::PATH {
                let query = req.uri().query();
                log.lock().unwrap().push(query.unwrap_or_default().to_string());
                if let Verify::Answer = verify {
                    return verify::answer(&key, query).map(Full::new);
                }
            }
            if let Some(name) = path.strip_prefix("/tick/") {
                *ticks.lock().unwrap().entry(name.to_string()).or_default() += 1;
                return Response::builder()
                    .header("access-control-allow-origin", "*")
                    .body(Full::new(Bytes::from_static(b"tick\n")))
                    .unwrap();
            }
            if let Some(name) = path.strip_prefix("/tick-count/") {
                let n = ticks.lock().unwrap().get(name).copied().unwrap_or(0);
                return Response::new(Full::new(Bytes::from(n.to_string())));
            }
            let res = sandbox.handle(req.method(), path).await;
            res.unwrap_or_else(|| text(404, "not sandbox\n"))
        }
    });
    log
}

/// The states a run ends in.
pub const ENDED: [&str; 4] = ["done", "error", "timeout", "stopped"];

/// `v[key]` as a string, empty when it is not one.
pub fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// The time (ms) at which an observation's state history first entered `state`.
pub fn entered(obs: &Value, state: &str) -> Option<f64> {
    obs["states"]
        .as_array()?
        .iter()
        .find(|s| s[0].as_str() == Some(state))
        .and_then(|s| s[1].as_f64())
}

/// The time (ms) at which the history last entered `state`.
pub fn entered_last(obs: &Value, state: &str) -> Option<f64> {
    obs["states"]
        .as_array()?
        .iter()
        .rev()
        .find(|s| s[0].as_str() == Some(state))
        .and_then(|s| s[1].as_f64())
}

/// `target/<dir>`, created, for the drivers' screenshots.
pub fn screenshots(dir: &str) -> PathBuf {
    let dir = repo().join("target").join(dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the Node driver `script` (in [`drivers`]) with `args` and answers the JSON it printed and
/// whether it exited with success.
pub fn node<S: AsRef<OsStr>>(script: &str, args: impl IntoIterator<Item = S>) -> (Value, bool) {
    let output = std::process::Command::new("node")
        .current_dir(drivers())
        .arg(script)
        .args(args)
        .output()
        .expect("node runs (installed by tests/setup/10-browser.sh)");
    let observed = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "the driver printed no JSON ({e}); stderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (observed, output.status.success())
}

/// `sandgate demo` (the real binary, its scripted model, Pyodide 0.27.7 from [`assets`]) on a
/// loopback port, killed when the test ends however it ends.
pub struct Demo {
    child: Child,
    /// The playground's URL, as the banner names it (`http://127.0.0.1:PORT/`).
    pub url: String,
    /// The banner, up to its `Ctrl-C` line.
    pub banner: String,
}

impl Demo {
    /// Starts the demo with `extra` arguments, and reads its banner.
    pub fn start<S: AsRef<OsStr>>(assets: &Path, extra: impl IntoIterator<Item = S>) -> Demo {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sandgate"))
            .arg("demo")
            .args(["--listen", "127.0.0.1:0"])
            .arg("--pyodide-dir")
            .arg(assets.join("pyodide-0.27.7"))
            .args(extra)
            .env_remove("SANDGATE_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut banner = String::new();
        let mut url = None;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            banner.push_str(&line);
            banner.push('\n');
            if let Some(rest) = line.trim().strip_prefix("Open the playground:") {
                url = Some(rest.trim().to_owned());
            }
            if line.starts_with("Ctrl-C") {
                break;
            }
        }
        let url = url.unwrap_or_else(|| panic!("no playground URL in the banner:\n{banner}"));
        Demo { child, url, banner }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Python that defines `tick()`: a synchronous call home to `{base}/tick/{name}` (its errors
/// ignored), as counted by [`serve_sandbox_on`]; and the URL that answers the count so far.
pub fn call_home(base: &str, name: &str) -> (String, String) {
    let tick = format!(
        r#"import js

def tick(*args):
    try:
        request = js.XMLHttpRequest.new()
        request.open("GET", "{base}/tick/{name}", False)
        request.send()
    except Exception:
        pass
"#
    );
    (tick, format!("{base}/tick-count/{name}"))
}
