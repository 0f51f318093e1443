#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]
//! The official openai SDKs (Python from PyPI, Node from npm) as clients of sandgate, with the
//! scripted upstream behind it: chat with and without streaming, `responses.create(stream=True)`,
//! `completions.create`, each handing back the rewritten text, and a 429 surfacing as the SDK's
//! `RateLimitError`. `tests/setup/20-sdk.sh` installs both SDKs.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use sandgate::rewrite::rewrite;
use serde_json::Value;
use support::openai::{self, ORIGINALS};
use support::{start_sandgate, test_options, ScriptedUpstream};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn require(path: &Path, what: &str) {
    assert!(
        path.exists(),
        "{what} is missing at {}: run `bash tests/setup/20-sdk.sh` (or `bash tests/run.sh`) first",
        path.display()
    );
}

async fn run(program: &Path, script: &Path, base_url: &str) -> Value {
    let mut cmd = tokio::process::Command::new(program);
    cmd.arg(script)
        .env("SANDGATE_BASE_URL", base_url)
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{} did not finish within 120 s", script.display()))
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} failed ({}):\n{stdout}\n{stderr}",
        script.display(),
        out.status
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("{} printed no JSON ({e}):\n{stdout}\n{stderr}", script.display())
    })
}

fn check(out: &Value) {
    let sdk = out["sdk"].as_str().unwrap();
    let opts = test_options();
    let want: Vec<Value> = ORIGINALS.iter().map(|t| Value::from(rewrite(&opts, t))).collect();
    let want_one = Value::from(rewrite(&opts, ORIGINALS[0]));
    assert_eq!(out["chat"].as_array().unwrap(), &want, "{sdk}: chat");
    assert_eq!(out["chat_stream"].as_array().unwrap(), &want, "{sdk}: chat stream");
    assert_eq!(out["chat_stream_usage"], 46, "{sdk}: the usage chunk reached the SDK");
    let r = &out["responses_stream"];
    assert_eq!(r["deltas"], want_one, "{sdk}: responses deltas");
    assert_eq!(r["done"], want_one, "{sdk}: response.output_text.done");
    assert_eq!(r["completed"], want_one, "{sdk}: response.completed");
    assert_eq!(out["completions"].as_array().unwrap(), &want, "{sdk}: completions");
    let rl = &out["rate_limit"];
    assert_eq!(rl["raised"], "RateLimitError", "{sdk}: {rl}");
    assert_eq!(rl["status"], 429, "{sdk}");
    assert_eq!(rl["retry_after"], "3", "{sdk}: Retry-After reached the SDK");
    assert!(
        rl["message"].as_str().unwrap().contains("Rate limit reached for gpt-test"),
        "{sdk}: {rl}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_gets_rewritten_text_and_rate_limit_errors() {
    let python = repo().join("target/venv/bin/python");
    require(&python, "the Python venv with the openai package");
    let up = ScriptedUpstream::start(openai::script).await;
    let sg = start_sandgate(&up.base_url(), |_| {}).await;
    let out = run(
        &python,
        &repo().join("tests/sdk/python/run_sdk.py"),
        &format!("http://{}/v1", sg.addr()),
    )
    .await;
    println!("python sdk: {}", out["version"]);
    check(&out);
    assert_eq!(up.last_request().header("authorization"), Some("Bearer sk-test-python"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_sdk_gets_rewritten_text_and_rate_limit_errors() {
    let dir = repo().join("tests/sdk/node");
    require(&dir.join("node_modules/openai/package.json"), "the npm package openai");
    let up = ScriptedUpstream::start(openai::script).await;
    let sg = start_sandgate(&up.base_url(), |_| {}).await;
    let out =
        run(Path::new("node"), &dir.join("run_sdk.mjs"), &format!("http://{}/v1", sg.addr())).await;
    println!("node sdk: {} on {}", out["version"], out["node"]);
    check(&out);
    assert_eq!(up.last_request().header("authorization"), Some("Bearer sk-test-node"));
}
