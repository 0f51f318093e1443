//! The sandbox page in headless Chromium, fully offline: real hyper servers on loopback serve
//! `Sandbox::handle` with Pyodide from the npm package and wheels from PyPI (installed by
//! tests/setup/10-browser.sh), a second server on another origin hosts the widget iframe, and
//! tests/browser/drive.mjs (playwright-core) reports what the browser showed.
//!
//! The scenarios are data: [`SCENARIOS`] lists them, and each is a function holding its Python, the
//! steps the browser takes with it, and the assertions on what the browser reported. One test
//! starts the servers, runs every scenario's cases in one drive.mjs run, then checks each.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::support::browser::{
    self, call_home, entered, html, listen, repo, serve, serve_sandbox, signed, str_of, text, ENDED,
};
use sandgate::rewrite::payload;
use sandgate::sandbox::{Sandbox, SandboxConfig};
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// The other origin: serves host pages by path and counts requests to `/secret` (answered, as
/// any other path it has no page for, with CORS).
fn serve_host(
    listener: TcpListener,
    pages: HashMap<String, String>,
    secret_hits: Arc<AtomicUsize>,
) {
    let pages = Arc::new(pages);
    serve(listener, move |req| {
        let path = req.uri().path().to_string();
        if path == "/secret" {
            secret_hits.fetch_add(1, Ordering::SeqCst);
        }
        let res = match pages.get(&path) {
            Some(page) => html(page.clone()),
            None => {
                let mut res = text(200, "secret data\n");
                res.headers_mut().insert("access-control-allow-origin", "*".parse().unwrap());
                res
            }
        };
        async move { res }
    });
}

/// A sandbox with the npm Pyodide and the wheels.
fn sandbox(assets: &std::path::Path, timeout_ms: u64) -> Sandbox {
    browser::sandbox(assets.join("pyodide"), Some(assets.join("wheels")), timeout_ms)
}
/// The servers the scenarios' links point at, and what the other origin saw.
struct Env {
    /// The page with the npm Pyodide and the wheels, 30 s per run.
    main: String,
    /// The same, 5 s per run.
    short: String,
    /// Pyodide 0.27.7 with matplotlib, numpy and pandas, 60 s per run.
    mpl: String,
    /// Pyodide from another origin, as from the default CDN: the page's policy names that URL.
    elsewhere: String,
    /// The other origin (and, as "localhost", another site): host pages, and `/secret`.
    host: String,
    /// Requests that reached the other origin's `/secret`.
    secret_hits: Arc<AtomicUsize>,
    shots: PathBuf,
}

impl Env {
    /// A signed link to `code` on the page at `base`.
    fn link(&self, base: &str, code: &str) -> String {
        browser::link(base, code)
    }

    /// The path of a screenshot, under target/screenshots/.
    fn shot(&self, name: &str) -> String {
        self.shots.join(name).to_string_lossy().into_owned()
    }
}

/// What drive.mjs reported, by case name (each already checked for browser errors, dialogs and
/// uncaught page errors by `browser::drive`).
struct Report(HashMap<String, Value>);

impl Report {
    fn case(&self, name: &str) -> &Value {
        self.0.get(name).unwrap_or_else(|| panic!("no result for {name}"))
    }

    fn obs(&self, name: &str, label: &str) -> Value {
        self.case(name)["observations"][label].clone()
    }

    fn fetched(&self, name: &str, label: &str) -> u64 {
        let text = str_of(&self.case(name)["fetches"], label).to_string();
        text.parse().unwrap_or_else(|_| panic!("{name}: {label} fetched {text:?}"))
    }
}

/// What a scenario must show, given the servers and the report.
type Check = Box<dyn Fn(&Env, &Report)>;

/// One scenario: the cases the browser runs (drive.mjs's `{"name", "steps", ...}`), the pages the
/// other origin serves for them, and what they must show.
struct Scenario {
    cases: Vec<Value>,
    pages: Vec<(String, String)>,
    check: Check,
}

impl Scenario {
    fn new(cases: Vec<Value>, check: impl Fn(&Env, &Report) + 'static) -> Scenario {
        Scenario { cases, pages: Vec::new(), check: Box::new(check) }
    }
}

/// Every scenario, in the order the browser runs them.
const SCENARIOS: &[fn(&Env) -> Scenario] = &[
    print,
    error,
    timeout,
    hostile,
    widget,
    fetch_blocked,
    missing_package,
    pyodide_package_missing,
    no_code,
    repr_html,
    matplotlib,
    dataframe,
    plotly,
    forge_started,
    forge_finished,
    lingering,
    fresh_interpreter,
    line_separators,
    display,
    plotly_large,
    plotly_link,
    fixture_hostile,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_page_in_headless_chromium() {
    let _browser = browser::lock().await;
    browser::wheels();
    let assets = browser::assets();
    let mpl_pyodide = browser::pyodide_0277();
    let shots = browser::screenshots("screenshots");

    let main = serve_sandbox(sandbox(&assets, 30_000)).await;
    let short = serve_sandbox(sandbox(&assets, 5_000)).await;
    let mpl = serve_sandbox(browser::sandbox(mpl_pyodide, None, 60_000)).await;
    let (host_listener, host) = listen().await;
    let cdn_like = serve_sandbox(sandbox(&assets, 30_000)).await;
    let elsewhere = serve_sandbox(
        Sandbox::new(SandboxConfig {
            pyodide_url: format!("{cdn_like}/pyodide/"),
            pyodide_dir: None,
            wheels_dir: None,
            timeout_ms: 30_000,
            ..SandboxConfig::default()
        })
        .unwrap(),
    )
    .await;
    let env = Env {
        main,
        short,
        mpl,
        elsewhere,
        host: host.replace("127.0.0.1", "localhost"),
        secret_hits: Arc::new(AtomicUsize::new(0)),
        shots,
    };

    let scenarios: Vec<Scenario> = SCENARIOS.iter().map(|scenario| scenario(&env)).collect();
    let pages: HashMap<String, String> =
        scenarios.iter().flat_map(|s| s.pages.iter().cloned()).collect();
    serve_host(host_listener, pages, env.secret_hits.clone());
    let cases: Vec<Value> = scenarios.iter().flat_map(|s| s.cases.iter().cloned()).collect();
    let report = Report(browser::drive("browser", &json!({ "cases": cases })).await);

    for scenario in &scenarios {
        (scenario.check)(&env, &report);
    }
    // Nothing anywhere reached the other origin's /secret (fetch, styles, srcset, links).
    assert_eq!(env.secret_hits.load(Ordering::SeqCst), 0, "a request reached the other origin");
}

/// Printed output (streamed, multi-byte intact), stderr, and the last expression's repr; the same
/// on a dark phone screen and with Pyodide from another origin.
fn print(env: &Env) -> Scenario {
    const CODE: &str = r#"import sys
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
    let cases = vec![
        json!({"name": "print", "steps": [
            {"do": "goto", "url": signed(&env.main, &format!("py={}&md=ignored&sg=1", payload::encode(CODE)))},
            {"do": "wait", "states": ENDED, "timeoutMs": 90000},
            {"do": "observe", "label": "end"},
            {"do": "screenshot", "path": env.shot("done.png")},
            {"do": "tab", "label": "tab", "count": 3},
        ]}),
        json!({"name": "print-dark-phone", "viewport": {"width": 390, "height": 844}, "colorScheme": "dark", "steps": [
            {"do": "goto", "url": env.link(&env.main, CODE)},
            {"do": "wait", "states": ENDED, "timeoutMs": 90000},
            {"do": "observe", "label": "end"},
            {"do": "screenshot", "path": env.shot("done-dark-phone.png")},
        ]}),
        json!({"name": "pyodide-elsewhere", "steps": [
            {"do": "goto", "url": env.link(&env.elsewhere, CODE)},
            {"do": "wait", "states": ENDED, "timeoutMs": 90000},
            {"do": "observe", "label": "end"},
        ]}),
    ];
    Scenario::new(cases, |_, r| {
        for name in ["print", "print-dark-phone", "pyodide-elsewhere"] {
            let end = r.obs(name, "end");
            assert_eq!(str_of(&end, "state"), "done", "{name}: {end:#}");
            // The policy's sandbox directive: an opaque origin even top-level.
            assert_eq!(str_of(&end, "origin"), "null", "{name}");
            assert_eq!(str_of(&end, "link"), "signed", "{name}: {end:#}");
            assert!(end["linkNote"].is_null(), "{name}: {end:#}");
            assert_eq!(states(&end), ["loading", "running", "done"], "{name}: state history");
            assert_eq!(
                str_of(&end, "stdout"),
                "hello from the sandbox\nnaïve café ✓ 日本語\n✓ split\n"
            );
            assert!(str_of(&end, "stderr").contains("a warning on stderr"));
            assert_eq!(str_of(&end, "result"), "{'answer': 42, 'word': 'abc'}");
            assert_eq!(str_of(&end, "code"), CODE);
            assert_eq!(end["overflowsX"], false, "{name}: wider than the screen");
        }
        // The controls are reachable with the keyboard, in reading order (Stop is disabled when
        // idle).
        assert_eq!(r.case("print")["probes"]["tab"]["order"], json!(["run", "edit", "code"]));
    })
}

/// An exception: state error, the traceback with the user's own lines, no Pyodide frames.
fn error(env: &Env) -> Scenario {
    const CODE: &str = r#"def divide(a, b):
    return a / b

print("before the error")
divide(1, 0)
"#;
    let case = json!({"name": "error", "steps": [
        {"do": "goto", "url": env.link(&env.main, CODE)},
        {"do": "wait", "states": ENDED, "timeoutMs": 90000},
        {"do": "observe", "label": "end"},
        {"do": "screenshot", "path": env.shot("error.png")},
    ]});
    Scenario::new(vec![case], |_, r| {
        let end = r.obs("error", "end");
        assert_eq!(str_of(&end, "state"), "error", "{end:#}");
        assert_eq!(states(&end), ["loading", "running", "error"]);
        assert_eq!(str_of(&end, "stdout"), "before the error\n");
        let tb = str_of(&end, "stderr");
        assert!(tb.contains("Traceback (most recent call last)"), "{tb}");
        assert!(tb.contains("File \"main.py\", line 5, in <module>"), "{tb}");
        assert!(tb.contains("File \"main.py\", line 2, in divide"), "{tb}");
        assert!(tb.contains("return a / b"), "{tb}");
        assert!(tb.contains("ZeroDivisionError: division by zero"), "{tb}");
        assert!(
            !tb.contains("_pyodide") && !tb.contains("/lib/python"),
            "internal frames shown: {tb}"
        );
    })
}

/// An endless loop: stopped by the 5 s limit, the page answers meanwhile, Run again works; Stop
/// ends a run at once, and the fresh worker runs the next one.
fn timeout(env: &Env) -> Scenario {
    let code = "print('spinning')\nwhile True:\n    pass\n";
    let case = json!({"name": "timeout", "steps": [
        {"do": "goto", "url": env.link(&env.short, code)},
        {"do": "wait", "states": ["running"], "timeoutMs": 90000},
        {"do": "probe", "label": "while-running"},
        {"do": "wait", "states": ENDED, "timeoutMs": 30000},
        {"do": "observe", "label": "timeout"},
        {"do": "screenshot", "path": env.shot("timeout.png")},
        {"do": "click", "selector": "#edit"},
        {"do": "fill", "selector": "#code", "value": "print('again')\n1 + 1\n"},
        {"do": "click", "selector": "#run"},
        {"do": "wait", "states": ENDED, "timeoutMs": 90000},
        {"do": "observe", "label": "again"},
        {"do": "fill", "selector": "#code", "value": "print('looping')\nwhile True:\n    pass\n"},
        {"do": "click", "selector": "#run"},
        {"do": "wait", "states": ["running"], "timeoutMs": 30000},
        {"do": "click", "selector": "#stop"},
        {"do": "wait", "states": ENDED, "timeoutMs": 5000},
        {"do": "observe", "label": "stopped"},
        {"do": "fill", "selector": "#code", "value": "print('after stop')\n"},
        {"do": "click", "selector": "#run"},
        {"do": "wait", "states": ENDED, "timeoutMs": 90000},
        {"do": "observe", "label": "after-stop"},
    ]});
    Scenario::new(vec![case], |_, r| {
        let probe = &r.case("timeout")["probes"]["while-running"];
        assert_eq!(str_of(probe, "pressed"), "true", "Edit did not respond while running: {probe}");
        assert_eq!(str_of(probe, "state"), "running", "{probe}");
        assert!(probe["evalMs"].as_f64().unwrap() < 1000.0, "page unresponsive: {probe}");
        let t = r.obs("timeout", "timeout");
        assert_eq!(str_of(&t, "state"), "timeout", "{t:#}");
        // Printed while the loop ran: the output streams, it does not wait for the end.
        assert_eq!(str_of(&t, "stdout"), "spinning\n");
        let ran = entered(&t, "timeout").unwrap() - entered(&t, "running").unwrap();
        assert!((4900.0..9000.0).contains(&ran), "timeout after {ran} ms, the limit is 5000 ms");
        let again = r.obs("timeout", "again");
        assert_eq!(str_of(&again, "state"), "done", "{again:#}");
        assert_eq!(str_of(&again, "stdout"), "again\n");
        assert_eq!(str_of(&again, "result"), "2");
        // Stop ends a run at once, and the fresh worker runs the next one.
        let stopped = r.obs("timeout", "stopped");
        assert_eq!(str_of(&stopped, "state"), "stopped", "{stopped:#}");
        assert_eq!(str_of(&stopped, "stdout"), "looping\n");
        let after = r.obs("timeout", "after-stop");
        assert_eq!(str_of(&after, "state"), "done", "{after:#}");
        assert_eq!(str_of(&after, "stdout"), "after stop\n");
    })
}

/// Hostile strings are shown as text; nothing runs, nothing navigates. A payload that became
/// markup would either run (the canary, the title) or be refused by the policy (a violation).
fn hostile(env: &Env) -> Scenario {
    // Each payload would, if it ever became markup, either run (setting the canary
    // `window.__sgPwned` or the title) or be refused by the policy (a `securitypolicyviolation`
    // event); the page has no `allow-modals`, so an `alert` alone would prove nothing.
    const CODE: &str = r#"# </textarea><img src=x onerror="window.__sgPwned='textarea'">
a = "</script><script>window.__sgPwned = 'script'; document.title = 'pwned'</script>"
b = '<iframe src="javascript:parent.__sgPwned=\'iframe\'"></iframe>'
c = '"><img src=x onerror="window.__sgPwned=1; document.title=\'pwned\'">'
d = "[click](javascript:window.__sgPwned='link')"
e = '<svg onload="window.__sgPwned=\'svg\'"></svg><style>body{background:red}</style>'
for s in (a, b, c, d, e):
    print(s)
a + b + c + d + e
"#;
    let case = json!({"name": "hostile", "steps": [
        {"do": "goto", "url": env.link(&env.main, CODE)},
        {"do": "wait", "states": ENDED, "timeoutMs": 90000},
        {"do": "observe", "label": "end"},
        {"do": "screenshot", "path": env.shot("hostile.png")},
    ]});
    Scenario::new(vec![case], |env, r| {
        let hostile = r.case("hostile");
        let end = r.obs("hostile", "end");
        assert_eq!(str_of(&end, "state"), "done", "{end:#}");
        assert_eq!(str_of(&end, "code"), CODE);
        let out = str_of(&end, "stdout");
        assert!(out.contains(
            "</script><script>window.__sgPwned = 'script'; document.title = 'pwned'</script>"
        ));
        assert!(out.contains("<iframe src=\"javascript:parent.__sgPwned='iframe'\"></iframe>"));
        assert!(
            out.contains("\"><img src=x onerror=\"window.__sgPwned=1; document.title='pwned'\">")
        );
        assert!(out.contains("<svg onload=\"window.__sgPwned='svg'\"></svg><style>"));
        assert!(str_of(&end, "result").contains("onerror=\"window.__sgPwned=1;"));
        assert_untouched("hostile", &end);
        assert_eq!(end["activeElementsInOutputs"], 0, "markup from the code became elements");
        let navigations = hostile["events"]["navigations"].as_array().unwrap();
        assert!(
            navigations
                .iter()
                .all(|n| str_of(n, "url").starts_with(&format!("{}/sandbox#py=", env.main))),
            "unexpected navigation: {navigations:?}"
        );
    })
}

/// A widget: opaque-origin iframe in a page of another origin, worker and all.
fn widget(env: &Env) -> Scenario {
    let code = "import sys\nprint('widget ok', sys.platform)\n21 * 2\n";
    let page = format!(
        "<!DOCTYPE html><html><body><h1>A chat page on another origin</h1>\n\
         <iframe sandbox=\"allow-scripts\" src=\"{}\" width=\"900\" height=\"620\" \
         title=\"Python sandbox\"></iframe></body></html>",
        env.link(&env.main, code)
    );
    let case = json!({"name": "widget", "steps": [
        {"do": "goto", "url": format!("{}/widget", env.host)},
        {"do": "wait", "frame": true, "states": ENDED, "timeoutMs": 90000},
        {"do": "observe", "frame": true, "label": "end"},
        {"do": "screenshot", "path": env.shot("widget.png")},
    ]});
    let mut scenario = Scenario::new(vec![case], |_, r| {
        let end = r.obs("widget", "end");
        assert_eq!(str_of(&end, "state"), "done", "{end:#}");
        assert_eq!(str_of(&end, "origin"), "null", "the widget is not in an opaque origin");
        // It ran on open: from the opaque origin, the page reached /sandbox/verify (CORS,
        // connect-src).
        assert_eq!(str_of(&end, "link"), "signed", "{end:#}");
        assert_eq!(str_of(&end, "stdout"), "widget ok emscripten\n");
        assert_eq!(str_of(&end, "result"), "42");
    });
    scenario.pages.push(("/widget".to_string(), page));
    scenario
}

/// Python's fetch to an origin the policy does not allow never leaves the browser.
fn fetch_blocked(env: &Env) -> Scenario {
    let code = format!(
        "import js\nprint('fetching')\nresponse = await js.fetch('{}/secret')\nprint('got', response.status)\n",
        env.host
    );
    let case = json!({"name": "fetch-blocked", "steps": [
        {"do": "goto", "url": env.link(&env.main, &code)},
        {"do": "wait", "states": ENDED, "timeoutMs": 90000},
        {"do": "observe", "label": "end"},
    ]});
    Scenario::new(vec![case], |env, r| {
        let end = r.obs("fetch-blocked", "end");
        assert_eq!(str_of(&end, "state"), "error", "{end:#}");
        assert_eq!(str_of(&end, "stdout"), "fetching\n");
        assert!(str_of(&end, "stderr").contains("the request was blocked"), "{end:#}");
        assert_eq!(
            env.secret_hits.load(Ordering::SeqCst),
            0,
            "the blocked fetch reached the other origin"
        );
    })
}

/// A package that is nowhere: a clear message, then the ImportError.
fn missing_package(env: &Env) -> Scenario {
    let code = "import surely_not_a_real_package_name\nprint('unreachable')\n";
    let case = json!({"name": "missing-package", "steps": [
        {"do": "goto", "url": env.link(&env.main, code)},
        {"do": "wait", "states": ENDED, "timeoutMs": 90000},
        {"do": "observe", "label": "end"},
    ]});
    Scenario::new(vec![case], |_, r| {
        let end = r.obs("missing-package", "end");
        assert_eq!(str_of(&end, "state"), "error", "{end:#}");
        let err = str_of(&end, "stderr");
        assert!(err.contains("package 'surely_not_a_real_package_name' is not available"), "{err}");
        assert!(
            err.contains("ModuleNotFoundError: No module named 'surely_not_a_real_package_name'"),
            "{err}"
        );
        assert!(err.contains("is not available in this sandbox"), "{err}");
    })
}

/// A Pyodide package missing from the self-hosted copy: a clear line, then the ImportError.
fn pyodide_package_missing(env: &Env) -> Scenario {
    let case = json!({"name": "pyodide-package-missing", "steps": [
        {"do": "goto", "url": env.link(&env.main, "import numpy\nprint(numpy.arange(3))\n")},
        {"do": "wait", "states": ENDED, "timeoutMs": 90000},
        {"do": "observe", "label": "end"},
    ]});
    Scenario::new(vec![case], |_, r| {
        let end = r.obs("pyodide-package-missing", "end");
        assert_eq!(str_of(&end, "state"), "error", "{end:#}");
        let err = str_of(&end, "stderr");
        assert!(
            err.contains(
                "Package 'numpy' is part of Pyodide but could not be loaded: this sandbox serves \
                 its own copy of Pyodide, which does not include that package."
            ),
            "{err}"
        );
        assert!(err.contains("ModuleNotFoundError: No module named 'numpy'"), "{err}");
    })
}

/// A link without code.
fn no_code(env: &Env) -> Scenario {
    let case = json!({"name": "no-code", "steps": [
        {"do": "goto", "url": format!("{}/sandbox#md=only", env.main)},
        {"do": "wait", "states": ENDED, "timeoutMs": 30000},
        {"do": "observe", "label": "end"},
    ]});
    Scenario::new(vec![case], |_, r| {
        let end = r.obs("no-code", "end");
        assert_eq!(str_of(&end, "state"), "error", "{end:#}");
        assert!(str_of(&end, "stderr").contains("carries no code"), "{end:#}");
    })
}

/// _repr_html_ is shown as markup rebuilt from the allowlist: no script, style, link, image,
/// srcset, form, SVG or MathML survives, and no attribute beyond the layout ones.
fn repr_html(env: &Env) -> Scenario {
    // `_repr_html_` full of what the allowlist must drop; `{host}` is the other origin, whose
    // `/secret` counts requests.
    const CODE: &str = r#"class Shiny:
    def _repr_html_(self):
        return (
            "<b>bold text</b><script>window.__sgPwned = 'script'</script>"
            "<img src=x onerror=\"window.__sgPwned = 'img'\">"
            "<a href=\"javascript:window.__sgPwned = 'href'\" target=_self>a link</a>"
            "<p style=\"background: url({host}/secret)\" onclick=\"window.__sgPwned = 'p'\">styled</p>"
            "<style>body { background: url({host}/secret) }</style>"
            "<svg><script>window.__sgPwned = 'svg'</script>"
            "<image href=x onerror=\"window.__sgPwned = 'svg image'\"/></svg>"
            "<math><mtext><img src=x onerror=\"window.__sgPwned = 'math'\"></mtext></math>"
            "<picture><source srcset=\"{host}/secret\"><img srcset=\"{host}/secret 1x\"></picture>"
            "<form action=\"javascript:window.__sgPwned = 'form'\"><input name=q value=typed>"
            "<button formaction=\"{host}/secret\">go</button></form>"
            "<details open ontoggle=\"window.__sgPwned = 'details'\"><summary>more</summary>inside</details>"
            "<table><tr><td colspan=2 style=\"color: red\" onmouseover=\"x()\">cell</td></tr></table>"
        )

Shiny()
"#;
    let case = json!({"name": "repr-html", "steps": [
        {"do": "goto", "url": env.link(&env.main, &CODE.replace("{host}", &env.host))},
        {"do": "wait", "states": ENDED, "timeoutMs": 90000},
        {"do": "observe", "label": "end"},
    ]});
    Scenario::new(vec![case], |_, r| {
        let end = r.obs("repr-html", "end");
        assert_eq!(str_of(&end, "state"), "done", "{end:#}");
        assert_eq!(
            end["resultTags"],
            json!(["b", "details", "div", "p", "summary", "table", "tbody", "td", "tr"]),
            "{end:#}"
        );
        assert_eq!(end["resultAttributes"], json!(["class", "colspan", "open"]), "{end:#}");
        assert_eq!(end["resultHtml"]["text"], "bold texta linkstyledmoreinsidecell", "{end:#}");
        assert_eq!(end["activeElementsInOutputs"], 0, "{end:#}");
        // The inert document DOMParser builds reports the handler attributes it parsed (and will
        // never run) to the policy: those are the only violations allowed here.
        let mut untouched = end.clone();
        let violations = untouched["violations"].as_array_mut().unwrap();
        violations.retain(|v| str_of(v, "directive") != "script-src-attr");
        assert_untouched("repr-html", &untouched);
    })
}

/// matplotlib (Pyodide 0.27.7): show() and a figure left open both become PNGs.
fn matplotlib(env: &Env) -> Scenario {
    const CODE: &str = r#"import matplotlib.pyplot as plt

plt.plot([1, 2, 3], [1, 4, 9], marker="o")
plt.title("Squares")
plt.show()

fig, ax = plt.subplots()
ax.bar(["x", "y"], [3, 5])
print("two figures")
"#;
    let case = json!({"name": "matplotlib", "steps": [
        {"do": "goto", "url": env.link(&env.mpl, CODE)},
        {"do": "wait", "states": ENDED, "timeoutMs": 180000},
        {"do": "observe", "label": "end"},
        {"do": "screenshot", "path": env.shot("matplotlib.png")},
    ]});
    Scenario::new(vec![case], |_, r| {
        let end = r.obs("matplotlib", "end");
        assert_eq!(str_of(&end, "state"), "done", "{end:#}");
        assert_eq!(str_of(&end, "stdout"), "two figures\n");
        let pngs = end["pngs"].as_array().unwrap();
        assert_eq!(pngs.len(), 2, "{end:#}");
        assert!(
            pngs.iter().all(|p| p[0].as_u64().unwrap() > 200 && p[1].as_u64().unwrap() > 150),
            "{pngs:?}"
        );
        assert_eq!(str_of(&end, "stderr"), "", "{end:#}");
    })
}

/// A pandas DataFrame shows as its HTML table.
fn dataframe(env: &Env) -> Scenario {
    const CODE: &str = r#"import pandas as pd
pd.DataFrame({"name": ["a", "b"], "value": [1, 2]})
"#;
    let case = json!({"name": "dataframe", "steps": [
        {"do": "goto", "url": env.link(&env.mpl, CODE)},
        {"do": "wait", "states": ENDED, "timeoutMs": 180000},
        {"do": "observe", "label": "end"},
        {"do": "screenshot", "path": env.shot("dataframe.png")},
    ]});
    Scenario::new(vec![case], |_, r| {
        let end = r.obs("dataframe", "end");
        assert_eq!(str_of(&end, "state"), "done", "{end:#}");
        assert_eq!(end["resultHtml"]["tables"], 1, "{end:#}");
        assert!(str_of(&end["resultHtml"], "text").contains("value"), "{end:#}");
    })
}

/// NVIDIA's Plotly example, offline: plotly and narwhals from the wheels directory through
/// micropip, plotly.js from it too; the figure was never shown, yet it is drawn.
fn plotly(env: &Env) -> Scenario {
    // The example of NVIDIA's post "Sandboxing Agentic AI Workflows with WebAssembly": a Plotly
    // bar chart whose `fig` is built and never shown.
    const CODE: &str = r#"import plotly.graph_objects as go

categories = ["A", "B", "C"]
values = [10, 20, 15]

fig = go.Figure(data=[go.Bar(x=categories, y=values)])
fig.update_layout(title="Values by category", xaxis_title="Category", yaxis_title="Value")
print("figure built")
"#;
    let case = json!({"name": "plotly", "steps": [
        {"do": "goto", "url": env.link(&env.main, CODE)},
        {"do": "wait", "states": ENDED, "timeoutMs": 180000},
        {"do": "wait", "states": ["done"], "timeoutMs": 1000},
        {"do": "observe", "label": "end"},
        {"do": "screenshot", "path": env.shot("plotly.png")},
    ]});
    Scenario::new(vec![case], |_, r| {
        let end = r.obs("plotly", "end");
        assert_eq!(str_of(&end, "state"), "done", "{end:#}");
        assert_eq!(str_of(&end, "stdout"), "figure built\n");
        assert_eq!(end["plotlyFigures"], 1, "{end:#}");
        assert_eq!(end["plotlyBars"], 3, "{end:#}");
        assert_eq!(end["plotlyTickLabels"], json!(["A", "B", "C"]), "{end:#}");
    })
}

/// The clock is the page's: re-sent 'started' messages (from the runner's own callback, found by
/// Python, and through the worker's postMessage) do not push the limit back.
fn forge_started(env: &Env) -> Scenario {
    // Python forges the message that starts the clock, through the worker's own postMessage (as
    // old pages listened to) and through the runner's callback, found by walking up the frames.
    const CODE: &str = r#"import js, sys, time
from pyodide.ffi import to_js

forger, frame = None, sys._getframe()
while frame is not None and forger is None:
    forger = frame.f_locals.get("post")
    frame = frame.f_back
print("forging", forger is not None)
last = 0.0
while True:
    if time.time() - last > 0.05:
        last = time.time()
        forger("started", None)
        for i in range(4):
            js.postMessage(to_js({"type": "started", "id": i}, dict_converter=js.Object.fromEntries))
"#;
    let case = json!({"name": "forge-started", "steps": [
        {"do": "goto", "url": env.link(&env.short, CODE)},
        {"do": "wait", "states": ["running"], "timeoutMs": 90000},
        {"do": "wait", "states": ENDED, "timeoutMs": 30000},
        {"do": "observe", "label": "end"},
    ]});
    Scenario::new(vec![case], |_, r| {
        let end = r.obs("forge-started", "end");
        assert_eq!(str_of(&end, "state"), "timeout", "{end:#}");
        assert_eq!(str_of(&end, "stdout"), "forging True\n", "{end:#}");
        let ran = entered(&end, "timeout").unwrap() - entered(&end, "running").unwrap();
        assert!(
            (4900.0..9000.0).contains(&ran),
            "forged starts: timeout after {ran} ms, the limit is 5000 ms"
        );
        eprintln!("browser: forged 'started' loop stopped after {ran:.0} ms (limit 5000 ms)");
    })
}

/// A forged 'finished' does not end the run: the loop is stopped at the limit, its worker with it
/// (it calls home no more), and Run again gets a fresh worker.
fn forge_finished(env: &Env) -> Scenario {
    // Python forges the end of its run, then spins, calling home (`tick()`) five times a second.
    const CODE: &str = r#"import js, time
from pyodide.ffi import to_js

for i in range(4):
    js.postMessage(to_js({"type": "finished", "ok": True, "id": i}, dict_converter=js.Object.fromEntries))
print("forged")
last = 0.0
while True:
    if time.time() - last > 0.2:
        last = time.time()
        tick()
"#;
    let (tick, count) = call_home(&env.short, "forge-finished");
    let code = format!("{tick}\n{CODE}");
    let case = json!({"name": "forge-finished", "steps": [
        {"do": "goto", "url": env.link(&env.short, &code)},
        {"do": "wait", "states": ENDED, "timeoutMs": 90000},
        {"do": "observe", "label": "end"},
        // Chromium stops a worker busy in a loop up to 2 s after terminate() (it asks nicely
        // first): count after that.
        {"do": "sleep", "ms": 3000},
        {"do": "fetch", "url": count, "label": "ticks-after"},
        {"do": "sleep", "ms": 2500},
        {"do": "fetch", "url": count, "label": "ticks-later"},
        {"do": "click", "selector": "#edit"},
        {"do": "fill", "selector": "#code", "value": "print(1)\n"},
        {"do": "click", "selector": "#run"},
        {"do": "wait", "states": ENDED, "timeoutMs": 30000},
        {"do": "observe", "label": "again"},
    ]});
    Scenario::new(vec![case], |_, r| {
        let end = r.obs("forge-finished", "end");
        assert_eq!(str_of(&end, "state"), "timeout", "{end:#}");
        assert_eq!(str_of(&end, "stdout"), "forged\n", "{end:#}");
        let after = r.fetched("forge-finished", "ticks-after");
        assert!(after > 5, "the spinning code did not call home: {after}");
        assert_eq!(
            r.fetched("forge-finished", "ticks-later"),
            after,
            "the spinning worker outlived its run"
        );
        let again = r.obs("forge-finished", "again");
        assert_eq!(str_of(&again, "state"), "done", "{again:#}");
        assert_eq!(str_of(&again, "stdout"), "1\n", "{again:#}");
    })
}

/// What a normal run leaves behind (a JS interval, an asyncio task) dies with its worker.
fn lingering(env: &Env) -> Scenario {
    // A run that ends normally but leaves a JavaScript interval and an asyncio task calling home.
    const CODE: &str = r#"import asyncio, js
from pyodide.ffi import create_proxy

js.setInterval(create_proxy(tick), 100)

async def forever():
    while True:
        tick()
        await asyncio.sleep(0.1)

asyncio.ensure_future(forever())
await asyncio.sleep(0.5)
print("leaving")
"#;
    let (tick, count) = call_home(&env.main, "lingering");
    let code = format!("{tick}\n{CODE}");
    let case = json!({"name": "lingering", "steps": [
        {"do": "goto", "url": env.link(&env.main, &code)},
        {"do": "wait", "states": ENDED, "timeoutMs": 90000},
        {"do": "observe", "label": "end"},
        {"do": "sleep", "ms": 500},
        {"do": "fetch", "url": count, "label": "ticks-after"},
        {"do": "sleep", "ms": 2000},
        {"do": "fetch", "url": count, "label": "ticks-later"},
    ]});
    Scenario::new(vec![case], |_, r| {
        let end = r.obs("lingering", "end");
        assert_eq!(str_of(&end, "state"), "done", "{end:#}");
        assert_eq!(str_of(&end, "stdout"), "leaving\n", "{end:#}");
        let after = r.fetched("lingering", "ticks-after");
        assert!(after > 3, "the interval and the task did not call home during the run: {after}");
        assert_eq!(r.fetched("lingering", "ticks-later"), after, "timers outlived the run");
    })
}

/// Run again gets a fresh interpreter: nothing run 1 left anywhere is visible, and it is the spare
/// worker, booted while the reader read (how long that saves is printed, not checked).
fn fresh_interpreter(env: &Env) -> Scenario {
    // Run 1 leaves state everywhere it can; run 2 (Run again) looks for it.
    const LEAVE_STATE: &str = r#"import builtins, sys, js
builtins.leaked = "run 1"
sys.leaked = "run 1"
js.globalThis.leaked = "run 1"
secret = 41
print("left")
"#;
    const FIND_STATE: &str = r#"import builtins, sys, js
print(getattr(builtins, "leaked", "fresh"), getattr(sys, "leaked", "fresh"),
      getattr(js.globalThis, "leaked", "fresh"), globals().get("secret", "fresh"))
"#;
    let case = json!({"name": "fresh-interpreter", "steps": [
        {"do": "goto", "url": env.link(&env.main, LEAVE_STATE)},
        {"do": "wait", "states": ENDED, "timeoutMs": 90000},
        {"do": "observe", "label": "first"},
        {"do": "click", "selector": "#edit"},
        {"do": "fill", "selector": "#code", "value": FIND_STATE},
        // The spare worker boots meanwhile, as a reader takes to press Run again.
        {"do": "until", "timeoutMs": 60000, "js": "document.body.dataset.spare === 'ready'"},
        {"do": "click", "selector": "#run"},
        {"do": "wait", "states": ENDED, "timeoutMs": 30000},
        {"do": "observe", "label": "second"},
    ]});
    Scenario::new(vec![case], |_, r| {
        let first = r.obs("fresh-interpreter", "first");
        assert_eq!(str_of(&first, "stdout"), "left\n", "{first:#}");
        let second = r.obs("fresh-interpreter", "second");
        assert_eq!(str_of(&second, "state"), "done", "{second:#}");
        assert_eq!(str_of(&second, "stdout"), "fresh fresh fresh fresh\n", "{second:#}");
        let history = second["states"].as_array().unwrap();
        let again_from =
            history.iter().rev().find(|s| s[0] == "loading").unwrap()[1].as_f64().unwrap();
        let again_to = history.last().unwrap()[1].as_f64().unwrap();
        let first_to = entered(&first, "done").unwrap();
        eprintln!(
            "browser: first run {first_to:.0} ms from page start to done; Run again {:.0} ms with a spare worker",
            again_to - again_from
        );
        assert_eq!(str_of(&first, "worker"), "cold", "{first:#}");
        assert_eq!(
            str_of(&second, "worker"),
            "warm",
            "Run again did not take the booted spare: {second:#}"
        );
    })
}

/// Tracebacks quote the line the compiler counted, whatever characters line 1 holds.
fn line_separators(env: &Env) -> Scenario {
    // Line 1 holds characters str.splitlines() would take for line ends (U+2028, U+0085, form
    // feed).
    const CODE: &str =
        "s = \"a\u{2028}b\u{85}c\x0cd\"\nx = 1\nraise ValueError(\"from line three\")\n";
    let case = json!({"name": "line-separators", "steps": [
        {"do": "goto", "url": env.link(&env.main, CODE)},
        {"do": "wait", "states": ENDED, "timeoutMs": 90000},
        {"do": "observe", "label": "end"},
    ]});
    Scenario::new(vec![case], |_, r| {
        let end = r.obs("line-separators", "end");
        assert_eq!(str_of(&end, "state"), "error", "{end:#}");
        let tb = str_of(&end, "stderr");
        assert!(
            tb.contains(
                "File \"main.py\", line 3, in <module>\n    raise ValueError(\"from line three\")"
            ),
            "{tb}"
        );
    })
}

/// display() shows values in order; Figure.show() and a bare Figure() as the last value become
/// PNGs, each once, without Agg's warnings (Pyodide 0.27.7 with matplotlib).
fn display(env: &Env) -> Scenario {
    // display(), Figure.show() and a Figure() built without pyplot as the last expression.
    const CODE: &str = r#"from matplotlib.figure import Figure
import matplotlib.pyplot as plt

display("first", 6 * 7)

class Rich:
    def _repr_html_(self):
        return "<b>rich</b>"

display(Rich())
alone = Figure(figsize=(4, 3))
alone.subplots().plot([0, 1, 2], [2, 0, 1])
alone.show()
managed = plt.figure(figsize=(4, 3))
managed.gca().plot([1, 2], [2, 1])
managed.show()
plt.plot([1, 2, 3], [3, 1, 2])
display(plt.gcf())
last = Figure(figsize=(3, 2))
last.subplots().bar(["a", "b"], [1, 2])
last
"#;
    let case = json!({"name": "display", "steps": [
        {"do": "goto", "url": env.link(&env.mpl, CODE)},
        {"do": "wait", "states": ENDED, "timeoutMs": 180000},
        {"do": "observe", "label": "end"},
        {"do": "screenshot", "path": env.shot("display.png")},
    ]});
    Scenario::new(vec![case], |_, r| {
        let end = r.obs("display", "end");
        assert_eq!(str_of(&end, "state"), "done", "{end:#}");
        assert_eq!(
            end["results"],
            json!([["pre", "'first'"], ["pre", "42"], ["div.html-result", "rich"]]),
            "{end:#}"
        );
        assert_eq!(end["pngs"].as_array().unwrap().len(), 4, "{end:#}");
        assert_eq!(str_of(&end, "stderr"), "", "{end:#}");
    })
}

/// Plotly figures over the size limit are not drawn, with a note; the others are.
fn plotly_large(env: &Env) -> Scenario {
    // One alone (6 MB), and one that would take the run over 5 MB in all; the small one and the
    // first 3 MB one are drawn.
    const CODE: &str = r#"import plotly.graph_objects as go

go.Figure(data=[go.Bar(x=["A", "B"], y=[1, 2])]).show()
go.Figure(data=[go.Bar(x=["A"], y=[1])], layout_meta={"blob": "x" * 6_000_000}).show()
go.Figure(data=[go.Bar(x=["B"], y=[2])], layout_meta={"blob": "y" * 3_000_000}).show()
go.Figure(data=[go.Bar(x=["C"], y=[3])], layout_meta={"blob": "z" * 3_000_000}).show()
print("shown")
"#;
    let case = json!({"name": "plotly-large", "steps": [
        {"do": "goto", "url": env.link(&env.main, CODE)},
        {"do": "wait", "states": ENDED, "timeoutMs": 180000},
        {"do": "observe", "label": "end"},
    ]});
    Scenario::new(vec![case], |_, r| {
        let end = r.obs("plotly-large", "end");
        assert_eq!(str_of(&end, "state"), "done", "{end:#}");
        assert_eq!(str_of(&end, "stdout"), "shown\n", "{end:#}");
        assert_eq!(end["plotlyFigures"], 2, "{end:#}");
        let notes = str_of(&end, "stderr");
        assert_eq!(notes.matches("A Plotly figure was not drawn").count(), 2, "{notes}");
        assert!(notes.contains("(6.0 MB) is over the limit of 5.0 MB"), "{notes}");
        assert!(notes.contains("(3.0 MB) is over the limit of 5.0 MB"), "{notes}");
    })
}

/// Links in Plotly titles and annotations are text: clicking them goes nowhere.
fn plotly_link(env: &Env) -> Scenario {
    // `{host}` is the other origin.
    const CODE: &str = r#"import plotly.graph_objects as go

fig = go.Figure(data=[go.Bar(x=["A", "B"], y=[1, 2])])
fig.update_layout(title='<a href="{host}/secret" target="_self">a link in the title</a>')
fig.add_annotation(text='<a href="{host}/secret" target="_self">a link in a note</a>', x="A", y=1)
fig
"#;
    let case = json!({"name": "plotly-link", "steps": [
        {"do": "goto", "url": env.link(&env.main, &CODE.replace("{host}", &env.host))},
        {"do": "wait", "states": ENDED, "timeoutMs": 180000},
        {"do": "observe", "label": "end"},
        {"do": "click", "figure": 0, "selector": ".plotly-figure .gtitle a", "force": true},
        {"do": "click", "figure": 0, "selector": ".plotly-figure .annotation a", "force": true},
        {"do": "sleep", "ms": 1000},
        {"do": "observe", "label": "after-clicks"},
    ]});
    Scenario::new(vec![case], |_, r| {
        let end = r.obs("plotly-link", "end");
        assert_eq!(str_of(&end, "state"), "done", "{end:#}");
        assert!(end["figureAnchors"].as_u64().unwrap() >= 2, "{end:#}");
        assert_eq!(end["figureLinks"], 0, "{end:#}");
        let after = r.obs("plotly-link", "after-clicks");
        assert_eq!(str_of(&after, "state"), "done", "{after:#}");
        let navigations = r.case("plotly-link")["events"]["navigations"].as_array().unwrap();
        assert!(
            navigations.iter().all(|n| str_of(n, "url").contains("/sandbox#py=")),
            "{navigations:?}"
        );
    })
}

/// The Python blocks of the engine's hostile fixture, each opened from a link built with
/// sandgate's own payload encoder: shown as text, like the hostile case.
fn fixture_hostile(env: &Env) -> Scenario {
    let fixture =
        std::fs::read_to_string(repo().join("tests/fixtures/rewrite/hostile/input.md")).unwrap();
    let blocks = python_blocks(&fixture);
    assert!(!blocks.is_empty(), "no Python block in the hostile fixture");
    let cases = blocks
        .iter()
        .enumerate()
        .map(|(i, code)| {
            json!({"name": format!("fixture-hostile-{i}"), "steps": [
                {"do": "goto", "url": env.link(&env.main, code)},
                {"do": "wait", "states": ENDED, "timeoutMs": 90000},
                {"do": "observe", "label": "end"},
            ]})
        })
        .collect();
    Scenario::new(cases, move |_, r| {
        for (i, code) in blocks.iter().enumerate() {
            let name = format!("fixture-hostile-{i}");
            let end = r.obs(&name, "end");
            assert_eq!(str_of(&end, "state"), "done", "{name}: {end:#}");
            assert_eq!(str_of(&end, "code"), code, "{name}");
            assert_untouched(&name, &end);
            assert_eq!(end["activeElementsInOutputs"], 0, "{name}: {end:#}");
            let navigations = r.case(&name)["events"]["navigations"].as_array().unwrap();
            assert!(
                navigations.iter().all(|n| str_of(n, "url").contains("/sandbox#py=")),
                "{name}"
            );
        }
        assert!(
            str_of(&r.obs("fixture-hostile-0", "end"), "stdout")
                .starts_with("</script><script>alert(1)</script>\n"),
            "{:#}",
            r.obs("fixture-hostile-0", "end")
        );
    })
}

/// The state names of an observation's history, in order.
fn states(obs: &Value) -> Vec<String> {
    obs["states"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s[0].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// A page the hostile code did not touch: the canary unset, the title unchanged, no policy
/// violation (markup that became elements would have caused one) and the page's only script.
fn assert_untouched(name: &str, end: &Value) {
    assert!(end["canary"].is_null(), "{name}: the canary was set: {end:#}");
    assert_eq!(str_of(end, "title"), "sandgate sandbox", "{name}: {end:#}");
    assert_eq!(end["violations"], json!([]), "{name}: policy violations: {end:#}");
    assert_eq!(end["scriptsInDocument"], 1, "{name}: a script element was added to the page");
}

/// The code of each Python block, as pulldown-cmark (the engine's oracle) reports it.
fn python_blocks(markdown: &str) -> Vec<String> {
    crate::support::engine::oracle_blocks(&sandgate::rewrite::Options::default(), markdown)
}
