//! The README's example page for the agentic loop, as written there, in headless Chromium, offline:
//! an app server on another loopback port serves the page and forwards `/v1/` to a real sandgate
//! (as the README says a page reaches `/v1`), in front of the demo's scripted model. Asked for the
//! 20th Fibonacci number, the model calls `python`, the page runs the code with the runner
//! (`runner.js` from sandgate's origin), sends the output back as the tool message, and logs the
//! model's answer, "The code printed: 6765". tests/browser/runner.mjs reports what the browser saw.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::support::browser::{self, repo};
use http_body_util::{BodyExt, Full};
use hyper::Response;

/// The html block of the README's section "Example: a web page that runs the loop".
fn readme_example() -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme
        .split("### Example: a web page that runs the loop")
        .nth(1)
        .expect("the README has the example section");
    let block = section.split("```html\n").nth(1).expect("an html block in the section");
    block.split("\n```\n").next().unwrap().to_owned()
}

/// Clicks Ask once the example's script has connected, and reports `#log` when the answer is in.
const DRIVER: &str = r#"<script type="module">
const log = () => document.querySelector('#log').textContent;
const started = Date.now();
while (!document.querySelector('#ask').onclick) {
  if (Date.now() - started > 120000) break;
  await new Promise((r) => setTimeout(r, 50));
}
document.querySelector('#ask').click();
while (!/The code printed|error/.test(log()) && Date.now() - started < 240000) {
  await new Promise((r) => setTimeout(r, 100));
}
window.__sgReport = { log: log() };
window.__sgDone = true;
</script>"#;

/// The app's server: the page at `/`, and `/v1/...` forwarded to sandgate with the app's key;
/// answers its base URL.
async fn serve_app(page: String, sandgate: SocketAddr) -> String {
    let (listener, base) = browser::listen().await;
    let page = Arc::new(page);
    browser::serve(listener, move |req| {
        let page = page.clone();
        async move {
            let path = req.uri().path().to_owned();
            if path.starts_with("/v1/") {
                let tools = req
                    .headers()
                    .get("x-sandgate-tools")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let mut headers =
                    vec![("content-type", "application/json"), ("authorization", "Bearer app-key")];
                if !tools.is_empty() {
                    headers.push(("x-sandgate-tools", tools.as_str()));
                }
                let (status, h, bytes) =
                    crate::support::call(sandgate, "POST", &path, &headers, body).await;
                let mut res = Response::builder().status(status);
                if let Some(ct) = h.get("content-type") {
                    res = res.header("content-type", ct);
                }
                res.body(Full::new(bytes)).unwrap()
            } else if path == "/" {
                browser::html(page.to_string())
            } else {
                browser::text(404, "no such page\n")
            }
        }
    });
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_example_page_runs_the_loop_with_the_demo_model() {
    let _browser = browser::lock().await;
    let pyodide = browser::pyodide_0277();

    let (model, _handle) =
        sandgate::demo::start_upstream_with(sandgate::demo::Pace::INSTANT).await.unwrap();
    let sg = crate::support::start_sandgate(&format!("http://{model}/v1"), |raw| {
        raw.set("pyodide_dir", pyodide.to_str().unwrap()).unwrap();
    })
    .await;
    let example = readme_example();
    assert!(example.contains("'x-sandgate-tools': 'python'") && example.contains("role: 'tool'"));
    let page = example.replace(
        "https://sandgate.example/sandbox/runner.js",
        &format!("http://localhost:{}/sandbox/runner.js", sg.addr().port()),
    ) + DRIVER;
    let app = serve_app(page, sg.addr()).await;

    let png = browser::screenshots("screenshots").join("readme-example.png");
    let (observed, _) = browser::node(
        "runner.mjs",
        [OsStr::new(&format!("{app}/")), OsStr::new("300000"), png.as_os_str()],
    );
    assert!(observed["error"].is_null(), "driver: {observed:#}");
    assert_eq!(observed["pageErrors"], serde_json::json!([]), "{observed:#}");
    let log = observed["report"]["log"].as_str().unwrap();
    eprintln!("the example page's log:\n{log}");
    // The call's code, what it printed (the tool message), and the model's answer, in that order.
    let code_at = log.find(&format!(">>> {}", sandgate::demo::FIBONACCI_CODE)).expect(log);
    let printed_at = log[code_at..].find("\n6765\n").expect(log) + code_at;
    let answer_at = log.find("The code printed: 6765").expect(log);
    assert!(code_at < printed_at && printed_at < answer_at, "{log}");
    for url in observed["requests"].as_array().unwrap() {
        let url = url.as_str().unwrap();
        assert!(
            ["http://127.0.0.1:", "http://localhost:", "data:", "blob:"]
                .iter()
                .any(|p| url.starts_with(p)),
            "a request left loopback: {url}"
        );
    }
}
