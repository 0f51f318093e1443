//! `sandgate demo` as a person meets it: the real binary starts with its scripted model, and
//! headless Chromium (tests/browser/playground.mjs) types a prompt into the playground, watches the
//! answer stream in as rendered markdown, clicks the run link and follows the sandbox page to the
//! end of the run. Pyodide (0.27.7, with matplotlib) is served by sandgate from the directory that
//! tests/setup/10-browser.sh assembles, so nothing leaves loopback. Screenshots go to
//! target/playground-screenshots/.

use std::ffi::OsStr;
use std::path::Path;
use std::time::Instant;

use crate::support::browser::{self, repo, Demo};
use serde_json::Value;

/// Runs the driver for one prompt and returns its observation.
fn drive(url: &str, prompt: &str, shots: &Path) -> Value {
    std::fs::create_dir_all(shots).unwrap();
    let started = Instant::now();
    let (observation, success) =
        browser::node("playground.mjs", [OsStr::new(url), OsStr::new(prompt), shots.as_os_str()]);
    assert!(
        observation["error"].is_null() && success,
        "driver failed after {:?}: {}\nobservation: {observation:#}",
        started.elapsed(),
        observation["error"]
    );
    observation
}

/// What every prompt's journey must show: the answer streamed in as rendered markdown, one run
/// link that opens the sandbox in a new tab without an opener, and nothing loaded off loopback.
fn check_playground(obs: &Value, base: &str, code: &str) {
    let pg = &obs["playground"];
    assert_eq!(pg["state"], "done", "{obs:#}");
    let states: Vec<&str> =
        pg["states"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(states, ["idle", "streaming", "done"], "{obs:#}");
    assert!(
        pg["partialRenders"].as_u64().unwrap() >= 3,
        "the answer appeared as it streamed: {obs:#}"
    );
    assert!(pg["minRenderGapMs"].as_f64().unwrap() >= 50.0, "renders are throttled: {obs:#}");
    assert_eq!(pg["cspViolations"], serde_json::json!([]), "{obs:#}");
    assert_eq!(pg["pythonBlocks"], 1, "{obs:#}");
    assert_eq!(pg["scripts"], 0, "{obs:#}");
    let links = pg["links"].as_array().unwrap();
    let run: Vec<&Value> =
        links.iter().filter(|l| l["href"].as_str().unwrap().contains("/sandbox#py=")).collect();
    assert_eq!(run.len(), 1, "{obs:#}");
    assert_eq!(run[0]["text"], "▶ Run in sandbox");
    assert!(run[0]["href"].as_str().unwrap().starts_with(base));
    assert_eq!(run[0]["target"], "_blank");
    assert_eq!(run[0]["rel"], "noopener noreferrer");
    for request in obs["requests"].as_array().unwrap() {
        let r = request.as_str().unwrap();
        assert!(
            r.starts_with(base) || r.starts_with("data:") || r.starts_with("blob:"),
            "a request left sandgate: {r}"
        );
    }
    assert_eq!(obs["pageErrors"], serde_json::json!([]), "{obs:#}");
    assert_eq!(obs["dialogs"], serde_json::json!([]), "{obs:#}");
    let sandbox = &obs["sandbox"];
    assert_eq!(sandbox["code"], code, "the sandbox got the block's code");
    assert_eq!(sandbox["opener"], true, "the sandbox tab has no opener");
}

/// The code of the only Python block of a canned answer.
fn only_block(markdown: &str) -> String {
    let start = markdown.find("```python\n").unwrap() + "```python\n".len();
    let end = start + markdown[start..].find("\n```").unwrap() + 1;
    markdown[start..end].to_owned()
}

#[test]
fn the_demo_playground_streams_an_answer_and_its_run_link_runs_the_code() {
    let _browser = browser::lock_blocking();
    browser::pyodide_0277();
    browser::wheels();
    let assets = browser::assets();
    let wheels_dir = format!("wheels_dir={}", assets.join("wheels").display());
    let demo = Demo::start(&assets, ["--set", &wheels_dir]);
    let (url, banner) = (&demo.url, &demo.banner);
    assert!(url.starts_with("http://127.0.0.1:") && url.ends_with('/'), "{url}");
    assert!(banner.contains(&format!("OPENAI_BASE_URL={}v1 ", url)), "{banner}");
    let shots = repo().join("target/playground-screenshots");
    let base = demo.url.trim_end_matches('/');

    let canned = |name: &str| sandgate::demo::ANSWERS.iter().find(|c| c.name == name).unwrap();

    // A matplotlib figure: the code runs and the figure is captured.
    let matplotlib = canned("matplotlib");
    let obs = drive(&demo.url, matplotlib.prompt, &shots.join("matplotlib"));
    check_playground(&obs, base, &only_block(matplotlib.markdown));
    let sandbox = &obs["sandbox"];
    assert_eq!(sandbox["state"], "done", "{obs:#}");
    assert!(sandbox["pngs"].as_u64().unwrap() >= 1, "{obs:#}");
    assert_eq!(sandbox["stderr"], "", "{obs:#}");

    // A script that raises: the sandbox ends in `error` with the traceback on the user's line.
    let error = canned("error");
    let obs = drive(&demo.url, error.prompt, &shots.join("error"));
    check_playground(&obs, base, &only_block(error.markdown));
    let sandbox = &obs["sandbox"];
    assert_eq!(sandbox["state"], "error", "{obs:#}");
    assert!(sandbox["stdout"].as_str().unwrap().contains("red: 12.0"), "{obs:#}");
    let stderr = sandbox["stderr"].as_str().unwrap();
    assert!(stderr.contains("ZeroDivisionError"), "{stderr}");
    assert!(stderr.contains("line 2"), "{stderr}");
}
