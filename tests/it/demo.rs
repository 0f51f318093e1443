//! The demo: the scripted upstream answers every canned prompt in JSON and as a stream on the three
//! generating routes; `sandgate::rewrite::api` and a real sandgate in front of it turn each Python
//! block into a run link whose payload decodes to the block's code; the playground's routes answer
//! with the right headers and refuse what they should.

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sandgate::config::Config;
use sandgate::demo::{self, Pace, ANSWERS, DEFAULT, DEMO_MODEL};
use sandgate::playground;
use sandgate::rewrite::api::{rewrite_json, Endpoint, SseRewriter};
use sandgate::rewrite::{Mode, Options};
use serde_json::{json, Value};

const PUBLIC_URL: &str = "http://127.0.0.1:8787";

/// Every canned answer's example prompt with its expected markdown and Python block count, plus a
/// prompt that falls through to the default answer.
fn cases() -> Vec<(&'static str, &'static str, usize)> {
    let mut cases: Vec<_> =
        ANSWERS.iter().map(|c| (c.prompt, c.markdown, c.python_blocks)).collect();
    cases.push(("hello, who are you?", DEFAULT, 0));
    cases
}

/// Decodes every run link's `py=` payload (base64url without padding of raw DEFLATE) in a text.
fn link_payloads(text: &str) -> Vec<String> {
    let marker = "/sandbox#py=";
    text.match_indices(marker)
        .map(|(i, _)| {
            let rest = &text[i + marker.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                .unwrap_or(rest.len());
            let raw =
                base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&rest[..end]).unwrap();
            String::from_utf8(miniz_oxide::inflate::decompress_to_vec(&raw).unwrap()).unwrap()
        })
        .collect()
}

fn link_options() -> Arc<Options> {
    Arc::new(Options {
        mode: Mode::Link,
        show_code: true,
        public_url: PUBLIC_URL.to_owned(),
        ..Options::default()
    })
}

type TestClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn call(
    client: &TestClient,
    method: Method,
    url: &str,
    body: Option<&Value>,
) -> (StatusCode, http::HeaderMap, Bytes) {
    let mut req = Request::builder().method(method).uri(url);
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let resp = client.request(req.body(Full::new(body)).unwrap()).await.unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, bytes)
}

/// The `data:` payloads of an event stream, in order.
fn sse_data(bytes: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(bytes).unwrap();
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| e.lines().filter_map(|l| l.strip_prefix("data: ")).collect::<Vec<_>>().join("\n"))
        .collect()
}

/// The text of each choice of a chat stream, by index.
fn chat_stream_texts(bytes: &[u8]) -> Vec<String> {
    let mut texts: Vec<String> = Vec::new();
    for data in sse_data(bytes) {
        if data == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(&data).unwrap();
        for choice in v["choices"].as_array().unwrap() {
            let i = choice["index"].as_u64().unwrap() as usize;
            if texts.len() <= i {
                texts.resize(i + 1, String::new());
            }
            if let Some(s) = choice["delta"]["content"].as_str() {
                texts[i].push_str(s);
            }
        }
    }
    texts
}

fn chat_request(prompt: &str, stream: bool) -> Value {
    json!({
        "model": "any-model",
        "messages": [
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": prompt}
        ],
        "stream": stream,
        "n": 2,
        "stream_options": {"include_usage": true}
    })
}

async fn upstream() -> (String, demo::ShutdownHandle) {
    let (addr, handle) = demo::start_upstream_with(Pace::INSTANT).await.unwrap();
    (format!("http://{addr}"), handle)
}

#[tokio::test]
async fn chat_answers_each_prompt_in_json_and_as_a_stream() {
    let (base, _handle) = upstream().await;
    let client = client();
    for (prompt, markdown, _) in cases() {
        let url = format!("{base}/v1/chat/completions");
        let (status, _, body) =
            call(&client, Method::POST, &url, Some(&chat_request(prompt, false))).await;
        assert_eq!(status, StatusCode::OK, "{prompt}");
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["model"], "any-model");
        let choices = v["choices"].as_array().unwrap();
        assert_eq!(choices.len(), 2, "n=2 gives two choices");
        for (i, c) in choices.iter().enumerate() {
            assert_eq!(c["index"], i);
            assert_eq!(c["message"]["content"], markdown, "{prompt}");
            assert_eq!(c["finish_reason"], "stop");
        }
        assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0);

        let (status, headers, body) =
            call(&client, Method::POST, &url, Some(&chat_request(prompt, true))).await;
        assert_eq!(status, StatusCode::OK);
        assert!(headers["content-type"].to_str().unwrap().starts_with("text/event-stream"));
        let events = sse_data(&body);
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
        // Small deltas, not one big chunk.
        assert!(events.len() > 40, "{} events for {prompt}", events.len());
        let texts = chat_stream_texts(&body);
        assert_eq!(texts, [markdown, markdown], "{prompt}");
        // Each choice opens with its role and ends with its finish reason; usage comes last.
        let parsed: Vec<Value> =
            events[..events.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
        for i in 0..2 {
            let first = parsed
                .iter()
                .find(|v| v["choices"].get(0).is_some_and(|c| c["index"] == i))
                .unwrap();
            assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
            let finishes = parsed
                .iter()
                .filter(|v| {
                    v["choices"]
                        .get(0)
                        .is_some_and(|c| c["index"] == i && c["finish_reason"] == "stop")
                })
                .count();
            assert_eq!(finishes, 1);
        }
        let last = parsed.last().unwrap();
        assert_eq!(last["choices"], json!([]));
        assert!(last["usage"]["completion_tokens"].as_u64().unwrap() > 0);
        assert!(parsed[..parsed.len() - 1].iter().all(|v| v["usage"].is_null()));
    }
}

#[tokio::test]
async fn without_include_usage_chunks_carry_no_usage() {
    let (base, _handle) = upstream().await;
    let body = json!({"messages": [{"role": "user", "content": "pandas"}], "stream": true});
    let (_, _, bytes) =
        call(&client(), Method::POST, &format!("{base}/v1/chat/completions"), Some(&body)).await;
    for data in sse_data(&bytes) {
        if data != "[DONE]" {
            let v: Value = serde_json::from_str(&data).unwrap();
            assert!(v.get("usage").is_none(), "{data}");
            assert_eq!(v["model"], DEMO_MODEL);
        }
    }
    assert_eq!(chat_stream_texts(&bytes), [demo::answer_for("pandas")]);
}

#[tokio::test]
async fn completions_and_responses_answer_in_json_and_as_streams() {
    let (base, _handle) = upstream().await;
    let client = client();
    for (prompt, markdown, _) in cases() {
        let url = format!("{base}/v1/completions");
        let (status, _, body) =
            call(&client, Method::POST, &url, Some(&json!({"model": "m", "prompt": prompt}))).await;
        assert_eq!(status, StatusCode::OK);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["choices"][0]["text"], markdown);

        let (_, _, body) = call(
            &client,
            Method::POST,
            &url,
            Some(&json!({"model": "m", "prompt": [prompt], "stream": true})),
        )
        .await;
        let mut text = String::new();
        for data in sse_data(&body) {
            if data != "[DONE]" {
                let v: Value = serde_json::from_str(&data).unwrap();
                text.push_str(v["choices"][0]["text"].as_str().unwrap());
            }
        }
        assert_eq!(text, markdown);

        let url = format!("{base}/v1/responses");
        let input = json!([{"role": "user", "content": [{"type": "input_text", "text": prompt}]}]);
        let (status, _, body) =
            call(&client, Method::POST, &url, Some(&json!({"model": "m", "input": input}))).await;
        assert_eq!(status, StatusCode::OK);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["object"], "response");
        assert_eq!(v["output"][0]["content"][0]["text"], markdown);

        let (_, _, body) = call(
            &client,
            Method::POST,
            &url,
            Some(&json!({"model": "m", "input": prompt, "stream": true})),
        )
        .await;
        let raw = std::str::from_utf8(&body).unwrap();
        assert!(raw.starts_with("event: response.created\n"));
        let mut text = String::new();
        let mut sequence = Vec::new();
        for data in sse_data(&body) {
            let v: Value = serde_json::from_str(&data).unwrap();
            sequence.push(v["sequence_number"].as_u64().unwrap());
            if v["type"] == "response.output_text.delta" {
                text.push_str(v["delta"].as_str().unwrap());
            }
            if v["type"] == "response.completed" {
                assert_eq!(v["response"]["output"][0]["content"][0]["text"], markdown);
            }
        }
        assert_eq!(text, markdown);
        assert_eq!(sequence, (0..sequence.len() as u64).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn models_and_bad_requests() {
    let (base, _handle) = upstream().await;
    let client = client();
    let (status, _, body) = call(&client, Method::GET, &format!("{base}/v1/models"), None).await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["data"][0]["id"], DEMO_MODEL);

    let chat = format!("{base}/v1/chat/completions");
    for (body, status, needle) in [
        (json!([1, 2]), StatusCode::BAD_REQUEST, "JSON object"),
        (json!({"messages": []}), StatusCode::BAD_REQUEST, "no user message"),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "n": 0}),
            StatusCode::BAD_REQUEST,
            "n:",
        ),
    ] {
        let (s, _, bytes) = call(&client, Method::POST, &chat, Some(&body)).await;
        assert_eq!(s, status, "{body}");
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{message}");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
    let (s, _, _) = call(&client, Method::GET, &chat, None).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    let (s, _, bytes) = call(&client, Method::GET, &format!("{base}/v1/files"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(serde_json::from_slice::<Value>(&bytes).unwrap()["error"]["message"].is_string());
}

#[tokio::test]
async fn shutdown_closes_the_listener() {
    let (addr, handle) = demo::start_upstream_with(Pace::INSTANT).await.unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_ok());
    handle.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn the_api_rewrite_links_every_python_block_of_every_answer() {
    let (base, _handle) = upstream().await;
    let client = client();
    let opts = link_options();
    for (prompt, markdown, blocks) in cases() {
        let code = python_blocks(markdown);
        assert_eq!(code.len(), blocks, "{prompt}");
        let url = format!("{base}/v1/chat/completions");

        let (_, _, json_body) =
            call(&client, Method::POST, &url, Some(&chat_request(prompt, false))).await;
        let rewritten = rewrite_json(Endpoint::ChatCompletions, &opts, &json_body);
        let (_, _, sse_body) =
            call(&client, Method::POST, &url, Some(&chat_request(prompt, true))).await;
        let mut sse = SseRewriter::new(Endpoint::ChatCompletions, opts.clone());
        let mut out = Vec::new();
        // Feed the stream in awkward pieces, as a network would.
        for piece in sse_body.chunks(37) {
            sse.push(piece, &mut out);
        }
        sse.finish(&mut out);
        let streamed = chat_stream_texts(&out);

        if blocks == 0 {
            assert!(rewritten.is_none(), "{prompt}: nothing to rewrite");
            assert_eq!(streamed, [markdown, markdown]);
            continue;
        }
        let (json_out, stats) = rewritten.expect("a Python answer is rewritten");
        assert_eq!(stats.blocks_rewritten, 2 * blocks, "{prompt}: both choices");
        let v: Value = serde_json::from_slice(&json_out).unwrap();
        for choice in v["choices"].as_array().unwrap() {
            let text = choice["message"]["content"].as_str().unwrap();
            assert_eq!(link_payloads(text), code, "{prompt}");
            assert!(text.contains(&format!("]({PUBLIC_URL}/sandbox#py=")));
        }
        assert_eq!(sse.stats().blocks_rewritten, 2 * blocks);
        for text in &streamed {
            assert_eq!(link_payloads(text), code, "{prompt}: streamed");
        }
        // Streamed and whole answers are rewritten alike.
        assert_eq!(streamed[0], v["choices"][0]["message"]["content"].as_str().unwrap());
    }
}

/// A real sandgate in front of the scripted upstream: what an SDK user sees.
#[tokio::test]
async fn sandgate_in_front_of_the_scripted_upstream_rewrites_json_and_streams() {
    let (base, _handle) = upstream().await;
    let mut config = Config::for_upstream(&format!("{base}/v1")).unwrap();
    let public = "https://sandbox.example";
    config.rewrite.public_url = public.to_owned();
    let server = sandgate::server::spawn(config).await.unwrap();
    let addr: SocketAddr = server.addr();
    let client = client();
    let url = format!("http://{addr}/v1/chat/completions");
    for (prompt, markdown, blocks) in cases() {
        let code = python_blocks(markdown);
        let (status, _, body) =
            call(&client, Method::POST, &url, Some(&chat_request(prompt, false))).await;
        assert_eq!(status, StatusCode::OK);
        let v: Value = serde_json::from_slice(&body).unwrap();
        let whole = v["choices"][0]["message"]["content"].as_str().unwrap().to_owned();
        let (status, _, body) =
            call(&client, Method::POST, &url, Some(&chat_request(prompt, true))).await;
        assert_eq!(status, StatusCode::OK);
        let streamed = chat_stream_texts(&body);
        assert_eq!(streamed, [whole.clone(), whole.clone()], "{prompt}");
        assert_eq!(link_payloads(&whole), code, "{prompt}");
        assert_eq!(whole.matches(&format!("{public}/sandbox#py=")).count(), blocks);
        if blocks == 0 {
            assert_eq!(whole, markdown);
        }
    }
    server.shutdown().await.unwrap();
}

async fn playground(req: Request<Full<Bytes>>) -> (StatusCode, http::HeaderMap, Bytes) {
    let resp = playground::handle(req).await;
    let (parts, body) = resp.into_parts();
    (parts.status, parts.headers, body.collect().await.unwrap().to_bytes())
}

fn render_request(content_type: &str, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    Request::builder()
        .method(Method::POST)
        .uri("/playground/render")
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .unwrap()
}

#[tokio::test]
async fn playground_page_and_assets_carry_strict_headers() {
    for (path, kind) in [
        ("/", "text/html"),
        ("/playground/playground.js", "text/javascript"),
        ("/playground/playground.css", "text/css"),
    ] {
        assert!(playground::is_playground_path(path));
        let req = Request::get(path).body(Full::new(Bytes::new())).unwrap();
        let (status, headers, body) = playground(req).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(headers["content-type"].to_str().unwrap().starts_with(kind));
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.starts_with("default-src 'none'"), "{csp}");
        assert!(!csp.contains("unsafe-inline") && !csp.contains("http"), "{csp}");
        assert!(!body.is_empty());
    }
    let page = playground::playground_response(&Method::GET);
    let html = page.into_body().collect().await.unwrap().to_bytes();
    let html = std::str::from_utf8(&html).unwrap();
    // No inline script or style (the policy forbids them), and every example prompt offered.
    assert!(!html.contains("<script>") && !html.contains("style="));
    assert!(html.contains("src=\"playground/playground.js\""));
    assert_eq!(html.matches("class=\"example\"").count(), ANSWERS.len());

    let (status, _, _) =
        playground(Request::get("/playground/nope.js").body(Full::new(Bytes::new())).unwrap())
            .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, headers, _) =
        playground(Request::post("/").body(Full::new(Bytes::new())).unwrap()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "GET, HEAD");
    assert!(!playground::is_playground_path("/sandbox"));
    assert!(!playground::is_playground_path("/v1/models"));
}

#[tokio::test]
async fn render_turns_an_answer_into_safe_html() {
    let opts = link_options();
    let plotly = ANSWERS.iter().find(|c| c.name == "plotly").unwrap();
    let rewritten = sandgate::rewrite::rewrite(&opts, plotly.markdown);
    let hostile = format!(
        "{rewritten}\n<script>alert(1)</script>\n\n[x](javascript:alert(2)) <img src=x onerror=alert(3)>\n"
    );
    let body = json!({ "markdown": hostile }).to_string();
    let (status, headers, bytes) = playground(render_request("application/json", body)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["cache-control"], "no-store");
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    let html = v["html"].as_str().unwrap();
    assert!(html.contains("<pre><code class=\"language-python\">"), "{html}");
    assert!(html.contains(&format!("<a href=\"{PUBLIC_URL}/sandbox#py=")), "{html}");
    assert!(html.contains("target=\"_blank\" rel=\"noopener noreferrer\">▶ Run in sandbox</a>"));
    assert!(!html.contains("<script") && !html.contains("<img"), "{html}");
    assert!(!html.contains("href=\"javascript"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert_eq!(
        link_payloads(html),
        python_blocks(plotly.markdown),
        "the link survives rendering intact"
    );
}

#[tokio::test]
async fn render_refuses_what_it_should() {
    let (status, _, _) = playground(render_request("text/plain", "{\"markdown\":\"x\"}")).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, _, bytes) = playground(render_request("application/json", "not json")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(serde_json::from_slice::<Value>(&bytes).unwrap()["error"]["message"].is_string());
    let (status, _, _) =
        playground(render_request("application/json; charset=utf-8", "{\"markdown\":1}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let big = json!({ "markdown": "a".repeat(playground::RENDER_BODY_LIMIT) }).to_string();
    let (status, _, _) = playground(render_request("application/json", big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, headers, _) =
        playground(Request::get("/playground/render").body(Full::new(Bytes::new())).unwrap()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "POST");
}

/// The code of each Python block, as pulldown-cmark (the engine's oracle) reports it.
fn python_blocks(markdown: &str) -> Vec<String> {
    crate::support::engine::oracle_blocks(&sandgate::rewrite::Options::default(), markdown)
}

/// Posts JSON with extra headers; returns the status and the body.
async fn post_with(
    client: &TestClient,
    url: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> (StatusCode, Bytes) {
    let mut req = Request::post(url).header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client.request(req.body(Full::new(Bytes::from(body.to_string()))).unwrap());
    let (parts, body) = resp.await.unwrap().into_parts();
    (parts.status, body.collect().await.unwrap().to_bytes())
}

/// The single call of a chat answer (JSON or stream): its id, name and arguments; and the text.
fn chat_call(bytes: &[u8], stream: bool) -> (Option<(String, String, String)>, String, String) {
    if !stream {
        let v: Value = serde_json::from_slice(bytes).unwrap();
        let choice = &v["choices"][0];
        let text = choice["message"]["content"].as_str().unwrap_or_default().to_owned();
        let finish = choice["finish_reason"].as_str().unwrap().to_owned();
        let call = choice["message"]["tool_calls"].as_array().map(|calls| {
            assert_eq!(calls.len(), 1);
            let f = &calls[0]["function"];
            let id = calls[0]["id"].as_str().unwrap().to_owned();
            (
                id,
                f["name"].as_str().unwrap().to_owned(),
                f["arguments"].as_str().unwrap().to_owned(),
            )
        });
        return (call, text, finish);
    }
    let (mut id, mut name, mut args, mut text, mut finish) =
        (None, String::new(), String::new(), String::new(), String::new());
    for data in sse_data(bytes) {
        if data == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(&data).unwrap();
        for choice in v["choices"].as_array().unwrap() {
            if choice["index"] != 0 {
                continue;
            }
            let delta = &choice["delta"];
            text.push_str(delta["content"].as_str().unwrap_or_default());
            for call in delta["tool_calls"].as_array().into_iter().flatten() {
                assert_eq!(call["index"], 0);
                if let Some(i) = call["id"].as_str() {
                    id = Some(i.to_owned());
                }
                name.push_str(call["function"]["name"].as_str().unwrap_or_default());
                args.push_str(call["function"]["arguments"].as_str().unwrap_or_default());
            }
            if let Some(f) = choice["finish_reason"].as_str() {
                finish = f.to_owned();
            }
        }
    }
    (id.map(|id| (id, name, args)), text, finish)
}

/// The `function_call` item of a Responses answer (JSON or stream) and its output text. A stream's
/// argument deltas must add up to its done event's arguments and to the completed response's.
fn responses_call(bytes: &[u8], stream: bool) -> (Option<Value>, String) {
    let response = if stream {
        let mut deltas = String::new();
        let mut done = None;
        let mut completed = None;
        for data in sse_data(bytes) {
            let v: Value = serde_json::from_str(&data).unwrap();
            match v["type"].as_str().unwrap() {
                "response.function_call_arguments.delta" => {
                    deltas.push_str(v["delta"].as_str().unwrap())
                }
                "response.function_call_arguments.done" => done = Some(v["arguments"].clone()),
                "response.completed" => completed = Some(v["response"].clone()),
                _ => {}
            }
        }
        let completed = completed.unwrap();
        if let Some(done) = done {
            assert_eq!(done, Value::from(deltas.clone()));
            assert_eq!(completed["output"][0]["arguments"], done);
        }
        completed
    } else {
        serde_json::from_slice(bytes).unwrap()
    };
    let output = response["output"].as_array().unwrap();
    let call = output.iter().find(|i| i["type"] == "function_call").cloned();
    let text: String = output
        .iter()
        .flat_map(|i| i["content"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["text"].as_str().map(str::to_owned))
        .collect();
    (call, text)
}

/// Runs the code the model asked for (here with the machine's python3, where the browser's runner
/// would run it) and returns what it printed.
fn run_python(code: &str) -> String {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(code)
        .output()
        .expect("python3 runs the demo's code in this test");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The agentic loop with the demo's scripted model behind a real sandgate: asked for the 20th
/// Fibonacci number with `x-sandgate-tools: python`, the model calls `python` with code that prints
/// 6765; given the tool message, it answers "The code printed: 6765". Without the header it answers
/// with a Python block, as before.
#[tokio::test]
async fn the_fibonacci_round_trip_calls_python_and_answers_with_what_it_printed() {
    let (base, _handle) = upstream().await;
    let config = Config::for_upstream(&format!("{base}/v1")).unwrap();
    let server = sandgate::server::spawn(config).await.unwrap();
    let addr: SocketAddr = server.addr();
    let client = client();
    let tools = [("x-sandgate-tools", "python")];
    let question = "What is the 20th fibonacci number?";

    let chat = format!("http://{addr}/v1/chat/completions");
    for stream in [false, true] {
        let messages = json!([{"role": "user", "content": question}]);
        let ask = json!({"model": "m", "messages": messages, "stream": stream});
        let (status, body) = post_with(&client, &chat, &ask, &tools).await;
        assert_eq!(status, StatusCode::OK);
        let (call, text, finish) = chat_call(&body, stream);
        let (id, name, arguments) = call.expect("a tool call");
        assert_eq!((name.as_str(), text.as_str(), finish.as_str()), ("python", "", "tool_calls"));
        let code =
            serde_json::from_str::<Value>(&arguments).unwrap()["code"].as_str().unwrap().to_owned();
        assert_eq!(code, demo::FIBONACCI_CODE);
        let printed = run_python(&code);
        assert_eq!(printed, "6765\n");

        let mut history = messages.as_array().unwrap().clone();
        history.push(json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": id, "type": "function", "function": {"name": "python", "arguments": arguments}}]}));
        history.push(json!({"role": "tool", "tool_call_id": id, "content": printed}));
        let follow = json!({"model": "m", "messages": history, "stream": stream});
        let (status, body) = post_with(&client, &chat, &follow, &tools).await;
        assert_eq!(status, StatusCode::OK);
        let (call, text, finish) = chat_call(&body, stream);
        assert!(call.is_none(), "stream {stream}");
        assert_eq!((text.as_str(), finish.as_str()), ("The code printed: 6765", "stop"));

        // Without the tool: the fibonacci answer, whose Python block gets its run link.
        let (status, body) = post_with(&client, &chat, &ask, &[]).await;
        assert_eq!(status, StatusCode::OK);
        let (call, text, _) = chat_call(&body, stream);
        assert!(call.is_none());
        assert_eq!(link_payloads(&text), [demo::FIBONACCI_CODE]);
    }

    let responses = format!("http://{addr}/v1/responses");
    for stream in [false, true] {
        let input =
            json!([{"role": "user", "content": [{"type": "input_text", "text": question}]}]);
        let ask = json!({"model": "m", "input": input, "stream": stream});
        let (status, body) = post_with(&client, &responses, &ask, &tools).await;
        assert_eq!(status, StatusCode::OK);
        let (call, text) = responses_call(&body, stream);
        let call = call.expect("a function_call item");
        assert_eq!((call["name"].as_str(), text.as_str()), (Some("python"), ""));
        let arguments = call["arguments"].as_str().unwrap();
        let code =
            serde_json::from_str::<Value>(arguments).unwrap()["code"].as_str().unwrap().to_owned();
        assert_eq!(code, demo::FIBONACCI_CODE);
        let printed = run_python(&code);

        let mut history = input.as_array().unwrap().clone();
        history.push(call.clone());
        history.push(
            json!({"type": "function_call_output", "call_id": call["call_id"], "output": printed}),
        );
        let follow = json!({"model": "m", "input": history, "stream": stream});
        let (status, body) = post_with(&client, &responses, &follow, &tools).await;
        assert_eq!(status, StatusCode::OK);
        let (call, text) = responses_call(&body, stream);
        assert!(call.is_none());
        assert_eq!(text, "The code printed: 6765");

        let (status, body) =
            post_with(&client, &responses, &ask, &[("x-sandgate-tools", "none")]).await;
        assert_eq!(status, StatusCode::OK);
        let (call, text) = responses_call(&body, stream);
        assert!(call.is_none());
        assert_eq!(link_payloads(&text), [demo::FIBONACCI_CODE]);
    }
    server.shutdown().await.unwrap();
}
