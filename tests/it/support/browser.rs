//! What the browser tests share: where the assets are (as tests/setup/10-browser.sh installs them,
//! each checked with the command to run when it is missing), the drive.mjs runner, and one lock,
//! so that one headless Chromium runs at a time.
//!
//! In one test binary the browser tests would otherwise run beside each other (and beside the
//! heavy proxy tests) on the test threads; each Chromium with Pyodide takes a core and hundreds of
//! MB, and the page's time limits are measured against the page, not the machine. Every browser
//! test holds [`lock`] (or [`lock_blocking`] in a plain `#[test]`) from its start to its end.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
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
