//! The embeddable runner in headless Chromium, offline: a page on another origin (another
//! loopback port, and another site: `localhost` against `127.0.0.1`) imports
//! `{sandgate}/sandbox/runner.js`, which embeds the sandbox page (`#runner=1`) in a hidden
//! opaque-origin iframe and drives it over the postMessage protocol. Sandgate's side is
//! `Sandbox::handle` on real hyper servers, with the Pyodide 0.27.7 distribution (it has
//! matplotlib) that tests/setup/10-browser.sh assembles. The host page's script runs the steps and
//! reports each RunResult; tests/browser/runner.mjs reports what the browser saw; every assertion
//! is here.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;

use crate::support::browser::{self, html, listen, serve, serve_sandbox_on, str_of, text, Verify};
use base64::Engine as _;
use sandgate::sandbox::Sandbox;
use serde_json::{json, Value};

/// Serves `Sandbox::handle` on a loopback port (the runner's page never asks `/sandbox/verify`:
/// it is not answered); answers the base URL.
async fn serve_sandbox(sandbox: Sandbox) -> String {
    let (listener, base) = listen().await;
    serve_sandbox_on(listener, sandbox, Verify::Missing);
    base
}

/// The other origin (and, as "localhost", another site): serves the host pages by path; answers
/// its base URL.
async fn serve_host(pages: HashMap<String, String>) -> String {
    let (listener, base) = listen().await;
    let pages = Arc::new(pages);
    serve(listener, move |req| {
        let res = match pages.get(req.uri().path()) {
            Some(page) => html(page.clone()),
            None => text(404, "no such page\n"),
        };
        async move { res }
    });
    base.replace("127.0.0.1", "localhost")
}

fn sandbox(assets: &Path, timeout_ms: u64) -> Sandbox {
    browser::sandbox(assets.join("pyodide-0.27.7"), None, timeout_ms)
}

/// matplotlib: a figure shown, then state kept for the next run.
const FIGURE_CODE: &str = r#"import matplotlib.pyplot as plt
plt.figure(figsize=(4, 3))
plt.plot([1, 2, 3], [1, 4, 9])
plt.title("Squares")
plt.show()
print("figure shown")
"#;

/// `_repr_html_` with markup the page's allowlist drops.
const HTML_CODE: &str = r#"class Rich:
    def _repr_html_(self):
        return ('<b>bold</b><script>parent.__sgPwned = 1</script>'
                '<img src=x onerror="parent.__sgPwned = 2"><table><tr><td colspan="2" onclick="x()">cell</td></tr></table>')
display(Rich())
"last"
"#;

/// Python tries every way out of the worker it has: printed protocol messages (with the ids the
/// module uses), the worker's own postMessage, the windows a page would have, and the runner's
/// callback found by walking up the frames; then it ends normally.
const FORGE_CODE: &str = r#"import js, json, sys
from pyodide.ffi import to_js

fake = {"protocol": "sandgate-runner", "version": 1, "type": "result", "id": "m1",
        "result": {"status": "done", "stdout": "forged\n", "stderr": "", "results": [],
                   "files": [], "durationMs": 1, "fresh": False}}
print(json.dumps(fake))
for i in range(1, 60):
    fake["id"] = "m" + str(i)
    js.postMessage(to_js(fake, dict_converter=js.Object.fromEntries))
    js.self.postMessage(to_js(fake, dict_converter=js.Object.fromEntries))
reached = []
for name in ("parent", "top", "opener", "frameElement", "document"):
    if getattr(js, name, None) is not None:
        reached.append(name)
print("windows:", reached)
forger, frame = None, sys._getframe()
while frame is not None and forger is None:
    forger = frame.f_locals.get("post")
    frame = frame.f_back
forger("finished", True)
forger("result", "forged value")
sys.__stdout__.write(json.dumps(fake) + "\n")
print("end of forge")
"#;

/// The same, then a loop that keeps re-sending 'started' to push the clock back.
const FORGE_LOOP_CODE: &str = r#"import sys, time
forger, frame = None, sys._getframe()
while frame is not None and forger is None:
    forger = frame.f_locals.get("post")
    frame = frame.f_back
print("forging", forger is not None)
while True:
    forger("started", None)
    forger("finished", True)
    time.sleep(0.05)
"#;

/// The host page's script: `{main}` and `{short}` are the two sandgate origins, `{codes}` the
/// Python above as JSON. Each step's RunResult goes into the report; every message the page
/// receives is recorded too.
const HOST_SCRIPT: &str = r#"
import { connect, PROTOCOL_VERSION } from '{main}/sandbox/runner.js';
import * as shortModule from '{short}/sandbox/runner.js';
const codes = {codes};
const report = { version: PROTOCOL_VERSION, steps: {}, messages: [], foreign: 0 };
window.__sgReport = report;
window.addEventListener('message', (ev) => {
  const frames = [...document.querySelectorAll('iframe')];
  const from = frames.findIndex((f) => f.contentWindow === ev.source);
  if (from < 0) { report.foreign += 1; return; }
  const d = ev.data || {};
  report.messages.push({ frame: from, protocol: d.protocol, version: d.version, type: d.type, id: d.id,
    status: d.result && d.result.status, stdout: d.result && d.result.stdout,
    text: typeof d.text === 'string' ? d.text : null });
});
const until = async (check, ms) => {
  const end = performance.now() + ms;
  while (!check() && performance.now() < end) await new Promise((r) => setTimeout(r, 20));
};
const step = async (name, fn) => {
  const t0 = performance.now();
  try {
    report.steps[name] = { ...(await fn()), elapsedMs: performance.now() - t0 };
  } catch (e) {
    report.steps[name] = { thrown: String((e && e.stack) || e) };
  }
};
try {
  const t0 = performance.now();
  const runner = await connect();
  report.connectMs = performance.now() - t0;
  report.info = runner.info;
  const frame = document.querySelector('iframe');
  report.frame = { sandbox: frame.getAttribute('sandbox'), src: frame.src, display: getComputedStyle(frame).display };
  await step('assign', () => runner.run('x = 6 * 7'));
  const live = [];
  await step('print', async () => ({ ...(await runner.run('print(x)', { onOutput: (o) => live.push(o) })), live }));
  await step('value', () => runner.run('x + 1'));
  const shown = [];
  await step('figure', async () => ({ ...(await runner.run(codes.figure, { onDisplay: (r) => shown.push(r.type) })), shown }));
  await step('html', () => runner.run(codes.html));
  await step('error', () => runner.run('def f():\n    return 1 / 0\n\nprint("before")\nf()\n'));
  await step('after-error', () => runner.run('print(x)'));
  await step('timeout', () => runner.run('print("spinning", flush=True)\nwhile True:\n    pass\n', { timeoutMs: 2000 }));
  await step('after-timeout', () => runner.run('print(globals().get("x", "fresh"))'));
  await step('stdin', () => runner.run('import sys\nname = input("Name? ")\nprint("hello", name)\nprint(len(sys.stdin.read().splitlines()))\n', { stdin: 'Ada\nline 2\nline 3\n' }));
  await step('no-stdin', () => runner.run('input()'));
  await step('files', () => runner.run('print(open("data.csv").read().splitlines()[1])\nopen("out.txt", "w").write("written")\n',
    { files: [{ name: 'data.csv', data: 'a,b\n1,2\n' }, { name: 'raw.bin', data: new Uint8Array([0, 255, 1]) }] }));
  await step('files-kept', () => runner.run('import os\nprint(all(os.path.exists(f) for f in ["data.csv", "out.txt", "raw.bin"]))\nprint(open("raw.bin", "rb").read())\n'));
  await step('files-bad', () => runner.run('1', { files: [{ name: '../x', data: 'no' }] }));
  await step('stop', async () => {
    const outputs = [];
    const running = runner.run('import time\nprint("looping", flush=True)\nwhile True:\n    time.sleep(0.01)\n', { onOutput: (o) => outputs.push(o) });
    await until(() => outputs.length > 0, 60000);
    const t = performance.now();
    await runner.stop();
    const r = await running;
    return { ...r, stopMs: performance.now() - t };
  });
  await step('after-stop', () => runner.run('y = 1\nprint(globals().get("x", "fresh"))'));
  await step('reset', async () => { await runner.reset(); return {}; });
  await step('after-reset', () => runner.run('print(globals().get("y", "fresh"))'));
  await step('forge', () => runner.run(codes.forge));
  await step('forge-loop', () => runner.run(codes.forgeLoop, { timeoutMs: 3000 }));
  await step('after-forge', () => runner.run('print("clean")'));
  // The protocol without the module: what does not follow it is ignored, what does is answered.
  await step('raw', async () => {
    const got = [];
    const listen = (ev) => { if (ev.source === frame.contentWindow && ev.data && String(ev.data.id).startsWith('raw')) got.push(ev.data); };
    window.addEventListener('message', listen);
    const w = frame.contentWindow;
    w.postMessage({ type: 'run', id: 'raw-no-protocol', code: 'print(1)' }, '*');
    w.postMessage({ protocol: 'sandgate-runner', version: 2, type: 'run', id: 'raw-v2', code: 'print(2)' }, '*');
    w.postMessage({ protocol: 'sandgate-runner', version: 1, type: 'run', id: { no: 1 }, code: 'print(3)' }, '*');
    w.postMessage('{"protocol":"sandgate-runner","version":1,"type":"run","id":"raw-string","code":"print(4)"}', '*');
    w.postMessage({ protocol: 'sandgate-runner', version: 1, type: 'run', id: 'raw-bad', code: 42 }, '*');
    w.postMessage({ protocol: 'sandgate-runner', version: 1, type: 'run', id: 'raw-ok', code: 'print("raw")' }, '*');
    await until(() => got.some((m) => m.type === 'result' && m.id === 'raw-ok'), 60000);
    window.removeEventListener('message', listen);
    return { got: got.map((m) => ({ type: m.type, id: m.id, status: m.result && m.result.status, stdout: m.result && m.result.stdout, stderr: m.result && m.result.stderr })) };
  });
  // The page's own limit caps the caller's.
  const short = await shortModule.connect();
  report.shortInfo = short.info;
  await step('capped', () => short.run('while True:\n    pass\n', { timeoutMs: 60000 }));
  runner.close();
  await step('closed', async () => {
    try { await runner.run('1'); return { rejected: false }; } catch (e) { return { rejected: true, message: String(e.message) }; }
  });
  report.framesLeft = document.querySelectorAll('iframe').length;
  report.canary = window.__sgPwned === undefined ? null : String(window.__sgPwned);
} catch (e) {
  report.error = String((e && e.stack) || e);
} finally {
  window.__sgDone = true;
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_module_on_another_origin_in_headless_chromium() {
    let _browser = browser::lock().await;
    browser::pyodide_0277();
    let assets = browser::assets();
    let main_url = serve_sandbox(sandbox(&assets, 30_000)).await;
    let short_url = serve_sandbox(sandbox(&assets, 3_000)).await;
    let codes = json!({
        "figure": FIGURE_CODE, "html": HTML_CODE, "forge": FORGE_CODE, "forgeLoop": FORGE_LOOP_CODE,
    });
    // JSON inside a script element: `<` escaped, so that no `</script>` can close it.
    let codes = codes.to_string().replace('<', "\\u003c");
    let script = HOST_SCRIPT
        .replace("{main}", &main_url)
        .replace("{short}", &short_url)
        .replace("{codes}", &codes);
    let html = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>An app on another origin</title></head>\
         <body><h1>An app that runs Python through sandgate</h1><script type=\"module\">{script}</script></body></html>"
    );
    let host = serve_host(HashMap::from([("/app".to_string(), html)])).await;
    let host_url = format!("{host}/app");

    let png = browser::screenshots("screenshots").join("runner-host.png");
    let (observed, _) =
        browser::node("runner.mjs", [OsStr::new(&host_url), OsStr::new("300000"), png.as_os_str()]);
    assert!(observed["error"].is_null(), "driver: {observed:#}");
    let report = &observed["report"];
    assert!(report["error"].is_null(), "host page: {report:#}");
    assert_eq!(observed["pageErrors"], json!([]), "{observed:#}");
    for url in observed["requests"].as_array().unwrap() {
        let url = url.as_str().unwrap();
        assert!(
            url.starts_with("http://127.0.0.1:")
                || url.starts_with("http://localhost:")
                || url.starts_with("data:")
                || url.starts_with("blob:"),
            "a request left loopback: {url}"
        );
    }
    let step = |name: &str| -> &Value {
        let s = &report["steps"][name];
        assert!(s.is_object() && s["thrown"].is_null(), "step {name}: {report:#}");
        s
    };
    eprintln!(
        "runner: connect {:.0} ms; first run (boot included) {:.0} ms; warm print {:.0} ms",
        report["connectMs"].as_f64().unwrap(),
        step("assign")["elapsedMs"].as_f64().unwrap(),
        step("print")["elapsedMs"].as_f64().unwrap()
    );

    // The module: version 1, a hidden iframe of sandgate's sandbox page in an opaque origin.
    assert_eq!(report["version"], 1);
    assert_eq!(report["frame"]["sandbox"], "allow-scripts", "{report:#}");
    assert_eq!(report["frame"]["src"], format!("{main_url}/sandbox#runner=1"));
    assert_eq!(report["frame"]["display"], "none");
    assert_eq!(report["info"]["timeoutMs"], 30_000);
    assert_eq!(report["shortInfo"]["timeoutMs"], 3_000);

    // State persists from run to run: x = 6 * 7, then print(x) gives 42, streamed live.
    let assign = step("assign");
    assert_eq!(str_of(assign, "status"), "done", "{assign:#}");
    assert_eq!(str_of(assign, "stdout"), "");
    assert_eq!(assign["results"], json!([]));
    assert_eq!(assign["fresh"], true, "the first run has a fresh interpreter");
    let print = step("print");
    assert_eq!(str_of(print, "status"), "done", "{print:#}");
    assert_eq!(str_of(print, "stdout"), "42\n");
    assert_eq!(str_of(print, "stderr"), "");
    assert_eq!(print["fresh"], false);
    assert_eq!(print["live"], json!([{"stream": "stdout", "text": "42\n"}]));
    assert!(print["durationMs"].as_f64().unwrap() >= 0.0);
    let value = step("value");
    assert_eq!(value["results"], json!([{"type": "text", "data": "43"}]), "{value:#}");

    // A matplotlib figure comes back as PNG, base64, with its size.
    let figure = step("figure");
    assert_eq!(str_of(figure, "status"), "done", "{figure:#}");
    assert_eq!(str_of(figure, "stdout"), "figure shown\n");
    let results = figure["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{figure:#}");
    assert_eq!(results[0]["type"], "png");
    let png = base64::engine::general_purpose::STANDARD
        .decode(str_of(&results[0], "data"))
        .expect("png data is base64");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let (w, h) = (results[0]["width"].as_u64().unwrap(), results[0]["height"].as_u64().unwrap());
    assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()) as u64, w);
    assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()) as u64, h);
    assert!(w > 300 && h > 200, "{w}x{h}");
    assert_eq!(figure["shown"], json!(["png"]), "the figure was announced live");
    eprintln!("runner: matplotlib figure {w}x{h}, {} bytes of PNG", png.len());

    // HTML is sanitized as on the page; the last expression follows display().
    let html = step("html");
    assert_eq!(str_of(html, "status"), "done", "{html:#}");
    assert_eq!(
        html["results"],
        json!([
            {"type": "html", "data": "<b>bold</b><table><tbody><tr><td colspan=\"2\">cell</td></tr></tbody></table>"},
            {"type": "text", "data": "'last'"},
        ]),
        "{html:#}"
    );

    // An error: its status and the user's traceback; the interpreter lives on.
    let error = step("error");
    assert_eq!(str_of(error, "status"), "error", "{error:#}");
    assert_eq!(str_of(error, "stdout"), "before\n");
    let tb = str_of(error, "stderr");
    assert!(tb.contains("ZeroDivisionError: division by zero"), "{tb}");
    assert!(tb.contains("line 2, in f"), "{tb}");
    assert!(!tb.contains("_pyodide"), "{tb}");
    let after = step("after-error");
    assert_eq!(str_of(after, "stdout"), "42\n", "{after:#}");
    assert_eq!(after["fresh"], false);

    // A timeout (the caller's 2 s): its status at the limit; the next run is fresh and says so.
    let timeout = step("timeout");
    assert_eq!(str_of(timeout, "status"), "timeout", "{timeout:#}");
    assert_eq!(str_of(timeout, "stdout"), "spinning\n");
    assert!(str_of(timeout, "stderr").contains("longer than 2 s"), "{timeout:#}");
    let ran = timeout["durationMs"].as_f64().unwrap();
    assert!((1900.0..6000.0).contains(&ran), "timed out after {ran} ms, the limit was 2000 ms");
    let after = step("after-timeout");
    assert_eq!(str_of(after, "status"), "done", "{after:#}");
    assert_eq!(str_of(after, "stdout"), "fresh\n", "{after:#}");
    assert_eq!(after["fresh"], true, "{after:#}");
    eprintln!(
        "runner: timeout after {ran:.0} ms (limit 2000 ms); next run with a fresh interpreter {:.0} ms",
        after["elapsedMs"].as_f64().unwrap()
    );

    // stdin given beforehand is what input() and sys.stdin read; without it, input() fails.
    let stdin = step("stdin");
    assert_eq!(str_of(stdin, "status"), "done", "{stdin:#}");
    assert_eq!(str_of(stdin, "stdout"), "Name? hello Ada\n2\n", "{stdin:#}");
    let no_stdin = step("no-stdin");
    assert_eq!(str_of(no_stdin, "status"), "error", "{no_stdin:#}");
    assert!(str_of(no_stdin, "stderr").contains("EOFError"), "{no_stdin:#}");

    // Files go into the working directory before the run; the files it writes come back, base64;
    // both stay for the next run. A name with a directory in it is refused.
    let files = step("files");
    assert_eq!(str_of(files, "status"), "done", "{files:#}");
    assert_eq!(str_of(files, "stdout"), "1,2\n", "{files:#}");
    assert_eq!(
        files["files"],
        json!([{"name": "out.txt", "size": 7, "data": "d3JpdHRlbg=="}]),
        "{files:#}"
    );
    let kept = step("files-kept");
    assert_eq!(str_of(kept, "stdout"), "True\nb'\\x00\\xff\\x01'\n", "{kept:#}");
    assert_eq!(kept["files"], json!([]), "{kept:#}");
    let bad = step("files-bad");
    assert_eq!(str_of(bad, "status"), "error", "{bad:#}");
    assert_eq!(
        str_of(bad, "stderr"),
        "sandgate runner: files: each name must be a plain file name (no directories)\n"
    );

    // stop(): the run ends at once as stopped; the next run is fresh.
    let stop = step("stop");
    assert_eq!(str_of(stop, "status"), "stopped", "{stop:#}");
    assert_eq!(str_of(stop, "stdout"), "looping\n");
    assert!(stop["stopMs"].as_f64().unwrap() < 2000.0, "{stop:#}");
    let after = step("after-stop");
    assert_eq!(str_of(after, "stdout"), "fresh\n", "{after:#}");
    assert_eq!(after["fresh"], true);

    // reset(): a fresh interpreter, y is gone.
    let after = step("after-reset");
    assert_eq!(str_of(after, "stdout"), "fresh\n", "{after:#}");
    assert_eq!(after["fresh"], true);

    // Python cannot forge a result: what it printed is stdout, what it posted reached nobody,
    // and no window is within its reach.
    let forge = step("forge");
    assert_eq!(str_of(forge, "status"), "done", "{forge:#}");
    let out = str_of(forge, "stdout");
    assert!(out.starts_with("{\"protocol\": \"sandgate-runner\""), "{out}");
    assert!(out.contains("windows: []\n"), "{out}");
    assert!(out.ends_with("end of forge\n"), "{out}");
    assert_eq!(forge["results"], json!([{"type": "text", "data": "forged value"}]), "{forge:#}");
    let forge_loop = step("forge-loop");
    assert_eq!(str_of(forge_loop, "status"), "timeout", "{forge_loop:#}");
    assert_eq!(str_of(forge_loop, "stdout"), "forging True\n");
    let ran = forge_loop["durationMs"].as_f64().unwrap();
    assert!((2900.0..8000.0).contains(&ran), "forged starts: {ran} ms, the limit was 3000 ms");
    let after = step("after-forge");
    assert_eq!(str_of(after, "stdout"), "clean\n", "{after:#}");
    assert_eq!(after["fresh"], true);
    // Every message the host received came from a runner iframe, followed the protocol, and
    // each request (of each runner) had exactly one result: the one run() resolved with.
    assert_eq!(report["foreign"], 0, "{report:#}");
    let messages = report["messages"].as_array().unwrap();
    let mut results: HashMap<String, Vec<&Value>> = HashMap::new();
    for m in messages {
        assert_eq!(m["protocol"], "sandgate-runner", "{m}");
        assert_eq!(m["version"], 1, "{m}");
        let kind = str_of(m, "type");
        assert!(["ready", "output", "display", "result", "ack"].contains(&kind), "{m}");
        if kind == "result" {
            results.entry(format!("{} {}", m["frame"], m["id"])).or_default().push(m);
        }
        assert!(!str_of(m, "stdout").starts_with("forged"), "a forged result arrived: {m}");
        assert_ne!(str_of(m, "text"), "forged\n", "{m}");
    }
    assert!(results.values().all(|r| r.len() == 1), "{results:#?}");
    let forge_results: Vec<&&Value> = results
        .values()
        .flatten()
        .filter(|m| str_of(m, "stdout").contains("end of forge"))
        .collect();
    assert_eq!(forge_results.len(), 1);
    assert_eq!(forge_results[0]["status"], "done");

    // The raw protocol: a message without the envelope, of another version, with a bad id or as
    // a string is ignored; a bad field gets an error result; a good one runs.
    let raw = step("raw");
    assert_eq!(
        raw["got"],
        json!([
            {"type": "result", "id": "raw-bad", "status": "error", "stdout": "",
             "stderr": "sandgate runner: code must be a string\n"},
            {"type": "output", "id": "raw-ok"},
            {"type": "result", "id": "raw-ok", "status": "done", "stdout": "raw\n", "stderr": ""},
        ]),
        "{raw:#}"
    );

    // The page's 3 s limit caps the caller's 60 s.
    let capped = step("capped");
    assert_eq!(str_of(capped, "status"), "timeout", "{capped:#}");
    let ran = capped["durationMs"].as_f64().unwrap();
    assert!((2900.0..8000.0).contains(&ran), "capped: {ran} ms, the page's limit is 3000 ms");

    // close(): the iframe is gone, runs are refused.
    assert_eq!(step("closed")["rejected"], true);
    assert_eq!(report["framesLeft"], 1, "only the second runner's iframe is left");
    assert!(report["canary"].is_null(), "markup from Python ran in the host page");
}
