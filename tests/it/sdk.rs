//! The official openai SDKs (Python from PyPI, Node from npm) as clients of sandgate, with the
//! scripted upstream behind it: chat with and without streaming, `responses.create(stream=True)`,
//! `completions.create`, each handing back the rewritten text, and a 429 surfacing as the SDK's
//! `RateLimitError`. `tests/setup/20-sdk.sh` installs both SDKs.
//!
//! And the agentic loop (`run_tools.py`, `run_tools.mjs`): the `python` tool is added with
//! `x-sandgate-tools: python` and with the `tools` key, not twice, not without either; a bad header
//! is the SDK's `BadRequestError`; streamed calls reach the SDK byte for byte and parse; the
//! follow-up with the tool's result goes upstream as the SDK sent it; the same on the Responses API.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::openai::{self, ORIGINALS};
use crate::support::{start_sandgate, test_options, tools, Recorded, ScriptedUpstream};
use base64::Engine as _;
use sandgate::rewrite::api::{tools::python_tool, Endpoint};
use sandgate::rewrite::rewrite;
use serde_json::{json, Value};

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
    run_with(program, script, &[("SANDGATE_BASE_URL", base_url)]).await
}

async fn run_with(program: &Path, script: &Path, envs: &[(&str, &str)]) -> Value {
    let mut cmd = tokio::process::Command::new(program);
    cmd.arg(script)
        .envs(envs.iter().copied())
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

/// The request the upstream received for a case of the tools scripts (its first message's text).
fn case<'a>(requests: &'a [Recorded], name: &str) -> Option<&'a Recorded> {
    requests.iter().find(|r| {
        let v = r.json();
        let first = v["messages"][0]["content"].clone();
        let first = if first.is_null() { v["input"][0]["content"].clone() } else { first };
        first == name
    })
}

fn tools_of(requests: &[Recorded], name: &str) -> Value {
    let r = case(requests, name).unwrap_or_else(|| panic!("no request for {name}"));
    assert_eq!(r.header("x-sandgate-tools"), None, "{name}: the header went upstream");
    r.json()["tools"].clone()
}

fn check_tools(out: &Value, requests: &[Recorded]) {
    let sdk = out["sdk"].as_str().unwrap();
    let chat_tool = json!([python_tool(Endpoint::ChatCompletions).unwrap()]);
    let responses_tool = json!([python_tool(Endpoint::Responses).unwrap()]);
    let args = tools::arguments();
    let b64 =
        |v: &Value| base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap();

    // Chat Completions.
    assert_eq!(
        out["chat_stream"],
        json!({"calls": [{"id": tools::CALL_ID, "name": "python", "arguments": args}], "finish": "tool_calls"}),
        "{sdk}"
    );
    assert_eq!(tools_of(requests, "chat_stream"), chat_tool, "{sdk}");
    assert_eq!(
        b64(&out["chat_stream_raw"]),
        tools::chat_call_sse().as_bytes(),
        "{sdk}: byte for byte"
    );
    assert_eq!(
        out["chat_json"],
        json!({"id": tools::CALL_ID, "name": "python", "arguments": args, "finish": "tool_calls"}),
        "{sdk}"
    );
    assert_eq!(out["chat_follow_up"], "The code printed: 6765", "{sdk}");
    let follow = case(requests, "chat_follow_up").unwrap().json();
    assert_eq!(follow["messages"], out["chat_follow_up_messages"], "{sdk}: the history as sent");
    assert_eq!(follow["tools"], chat_tool, "{sdk}");
    let own = tools_of(requests, "chat_own_tool");
    assert_eq!(own.as_array().unwrap().len(), 1, "{sdk}: {own}");
    assert_eq!(own[0]["function"]["description"], "my own", "{sdk}");
    assert_eq!(tools_of(requests, "chat_no_header"), Value::Null, "{sdk}");
    assert_eq!(
        out["chat_bad_header"],
        json!({"raised": "BadRequestError", "status": 400, "code": "invalid_sandgate_tools",
               "param": "x-sandgate-tools"}),
        "{sdk}"
    );
    assert!(case(requests, "chat_bad_header").is_none(), "{sdk}: a refused request went upstream");

    // Responses.
    assert_eq!(
        out["responses_stream"],
        json!({"deltas": args, "done": args,
               "item": {"type": "function_call", "name": "python", "call_id": tools::CALL_ID}}),
        "{sdk}"
    );
    assert_eq!(tools_of(requests, "responses_stream"), responses_tool, "{sdk}");
    assert_eq!(
        b64(&out["responses_stream_raw"]),
        tools::responses_call_sse().as_bytes(),
        "{sdk}: byte for byte"
    );
    assert_eq!(
        out["responses_json"],
        json!({"type": "function_call", "name": "python", "arguments": args}),
        "{sdk}"
    );
    assert_eq!(out["responses_follow_up"], "The code printed: 6765", "{sdk}");
    let follow = case(requests, "responses_follow_up").unwrap().json();
    assert_eq!(follow["input"], out["responses_follow_up_input"], "{sdk}: the history as sent");
    assert_eq!(follow["tools"], responses_tool, "{sdk}");
    let own = tools_of(requests, "responses_own_tool");
    assert_eq!(own.as_array().unwrap().len(), 1, "{sdk}: {own}");
    assert_eq!(own[0]["strict"], false, "{sdk}");
    assert_eq!(tools_of(requests, "responses_no_header"), Value::Null, "{sdk}");

    // The configuration key.
    assert_eq!(tools_of(requests, "key_chat"), chat_tool, "{sdk}");
    assert_eq!(tools_of(requests, "key_chat_none"), Value::Null, "{sdk}");
    assert_eq!(tools_of(requests, "key_responses"), responses_tool, "{sdk}");
    assert_eq!(tools_of(requests, "key_responses_none"), Value::Null, "{sdk}");
}

/// Runs a tools script against two sandgates in front of the same scripted model: one without the
/// `tools` key, one with `tools = ["python"]`.
async fn run_tools(program: &Path, script: &Path) -> (Value, Vec<Recorded>) {
    let up = ScriptedUpstream::start(tools::script).await;
    let plain = start_sandgate(&up.base_url(), |_| {}).await;
    let keyed = start_sandgate(&up.base_url(), |raw| raw.set("tools", "python").unwrap()).await;
    let plain_url = format!("http://{}/v1", plain.addr());
    let keyed_url = format!("http://{}/v1", keyed.addr());
    let envs = [
        ("SANDGATE_BASE_URL", plain_url.as_str()),
        ("SANDGATE_TOOLS_BASE_URL", keyed_url.as_str()),
    ];
    let out = run_with(program, script, &envs).await;
    (out, up.requests())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_runs_the_agentic_loop_through_sandgate() {
    let python = repo().join("target/venv/bin/python");
    require(&python, "the Python venv with the openai package");
    let (out, requests) = run_tools(&python, &repo().join("tests/sdk/python/run_tools.py")).await;
    check_tools(&out, &requests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_sdk_runs_the_agentic_loop_through_sandgate() {
    let dir = repo().join("tests/sdk/node");
    require(&dir.join("node_modules/openai/package.json"), "the npm package openai");
    let (out, requests) = run_tools(Path::new("node"), &dir.join("run_tools.mjs")).await;
    check_tools(&out, &requests);
}

/// openai-python closes the connection right after `[DONE]` (and after `response.completed`), while
/// the upstream body is still open: such a stream was delivered whole. It is not counted in
/// `sandgate_streams_cancelled_total`, and no "client went away mid-stream" line is logged for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_sdk_stream_read_to_its_end_is_not_counted_as_cancelled() {
    let python = repo().join("target/venv/bin/python");
    require(&python, "the Python venv with the openai package");
    // The scripted answers, then a body that stays open: the SDK is the side that closes.
    let up =
        ScriptedUpstream::start(|r: &Recorded| openai::script(r).end(crate::support::End::Stall))
            .await;
    let sg =
        crate::support::binary::Binary::start(&up.base_url(), &["--set", "log_level=info"], None)
            .await;
    let out = run(
        &python,
        &repo().join("tests/sdk/python/stream_to_end.py"),
        &format!("http://{}/v1", sg.addr),
    )
    .await;
    assert!(out["chat_chunks"].as_u64().unwrap() > 3, "{out}");
    assert_eq!(out["completed"], true, "{out}");

    // The SDK has closed both connections; wait (bounded) until sandgate has seen both streams end.
    let metrics = |text: &str, name: &str| -> Option<i64> {
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    };
    let mut text = String::new();
    for _ in 0..200 {
        let (status, _, body) =
            crate::support::call(sg.addr, "GET", "/metrics", &[], bytes::Bytes::new()).await;
        assert_eq!(status, 200);
        text = String::from_utf8_lossy(&body).into_owned();
        if metrics(&text, "sandgate_streams_in_flight") == Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(metrics(&text, "sandgate_streams_in_flight"), Some(0), "{text}");
    assert_eq!(metrics(&text, "sandgate_streams_cancelled_total"), Some(0), "{text}");
    let log = sg.log();
    assert!(
        !log.iter().any(|l| l.contains("client went away mid-stream")),
        "a complete stream was logged as cancelled:\n{}",
        log.join("\n")
    );
}
