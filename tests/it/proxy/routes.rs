//! The proxy's routes against a scripted upstream on loopback: the three rewritten routes (JSON and
//! streams, n=2, usage chunks), the mode header, history restore, header policy, upstream statuses,
//! transparent routes streaming both ways, the body limit, gateway keys, service routes and h2c.

use std::time::Duration;

use crate::support::openai::{self, ORIGINALS};
use crate::support::{
    call, post_json, start_sandgate, test_options, End, Recorded, Reply, ScriptedUpstream,
};
use bytes::Bytes;
use http_body_util::BodyExt;
use sandgate::rewrite::api::{self, Endpoint};
use sandgate::rewrite::{rewrite, Mode, Options};
use serde_json::{json, Value};

fn expected(opts: &Options, texts: &[&str]) -> Vec<String> {
    texts.iter().map(|t| rewrite(opts, t)).collect()
}

fn chat_request(stream: bool) -> Value {
    let mut v = json!({"model": "gpt-test", "n": 2,
                       "messages": [{"role": "user", "content": "plot A, B, C"}]});
    if stream {
        v["stream"] = json!(true);
        v["stream_options"] = json!({"include_usage": true});
    }
    v
}

fn completions_request(stream: bool) -> Value {
    let mut v = json!({"model": "gpt-test", "n": 2, "prompt": "Write Python:"});
    if stream {
        v["stream"] = json!(true);
        v["stream_options"] = json!({"include_usage": true});
    }
    v
}

fn responses_request(stream: bool) -> Value {
    json!({"model": "gpt-test", "input": "plot A, B, C", "stream": stream})
}

fn assert_sse_headers(h: &http::HeaderMap) {
    assert!(h["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    assert_eq!(h["cache-control"], "no-cache");
    assert_eq!(h["x-accel-buffering"], "no");
    assert!(h.get("content-length").is_none());
}

#[tokio::test]
async fn chat_completions_json_and_stream_agree_with_the_engine() {
    let up = ScriptedUpstream::start(openai::script).await;
    let sg = start_sandgate(&up.base_url(), |_| {}).await;
    let want = expected(&test_options(), &ORIGINALS);

    let (status, headers, body) =
        post_json(sg.addr(), "/v1/chat/completions", &chat_request(false), &[]).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["content-length"].to_str().unwrap(), body.len().to_string());
    let v: Value = serde_json::from_slice(&body).unwrap();
    let json_texts = openai::json_texts(&v, "message");
    assert_eq!(json_texts, want);
    assert_eq!(v["usage"]["total_tokens"], 46, "other fields pass through");
    assert_eq!(up.last_request().header("accept-encoding"), Some("identity"));

    let (status, headers, body) =
        post_json(sg.addr(), "/v1/chat/completions", &chat_request(true), &[]).await;
    assert_eq!(status, 200);
    assert_sse_headers(&headers);
    let events = openai::parse_sse(&body);
    let s = openai::chat_stream(&events, "delta");
    assert_eq!(s.texts, json_texts, "streamed text equals non-streamed text");
    assert_eq!(s.texts, want);
    assert_eq!(s.finish_reasons, vec![Some("stop".to_owned()); 2]);
    assert_eq!(s.usage.unwrap()["total_tokens"], 46, "the usage chunk arrives");
    assert!(s.done, "data: [DONE] arrives");
    assert!(body.ends_with(b"data: [DONE]\n\n"), "[DONE] is the last event");
}

#[tokio::test]
async fn completions_json_and_stream_agree_with_the_engine() {
    let up = ScriptedUpstream::start(openai::script).await;
    let sg = start_sandgate(&up.base_url(), |_| {}).await;
    let want = expected(&test_options(), &ORIGINALS);

    let (status, _, body) =
        post_json(sg.addr(), "/v1/completions", &completions_request(false), &[]).await;
    assert_eq!(status, 200);
    let json_texts = openai::json_texts(&serde_json::from_slice(&body).unwrap(), "text");
    assert_eq!(json_texts, want);

    let (status, headers, body) =
        post_json(sg.addr(), "/v1/completions", &completions_request(true), &[]).await;
    assert_eq!(status, 200);
    assert_sse_headers(&headers);
    let s = openai::chat_stream(&openai::parse_sse(&body), "text");
    assert_eq!(s.texts, json_texts);
    assert_eq!(s.texts, want);
    assert!(s.usage.is_some() && s.done);
}

#[tokio::test]
async fn responses_json_and_stream_agree_with_the_engine() {
    let up = ScriptedUpstream::start(openai::script).await;
    let sg = start_sandgate(&up.base_url(), |_| {}).await;
    let want = rewrite(&test_options(), ORIGINALS[0]);

    let (status, _, body) =
        post_json(sg.addr(), "/v1/responses", &responses_request(false), &[]).await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(openai::responses_text(&v), want);

    let (status, headers, body) =
        post_json(sg.addr(), "/v1/responses", &responses_request(true), &[]).await;
    assert_eq!(status, 200);
    assert_sse_headers(&headers);
    let events = openai::parse_sse(&body);
    let s = openai::responses_stream(&events);
    assert_eq!(s.deltas, want, "the deltas add up to the rewritten text");
    assert_eq!(s.text_done, want);
    assert_eq!(s.part_done, want);
    assert_eq!(s.item_done, want);
    assert_eq!(s.completed, want);
    assert!(
        s.sequence.windows(2).all(|w| w[0] < w[1]),
        "sequence_number increases: {:?}",
        s.sequence
    );
    assert_eq!(s.types.first().unwrap(), "response.created");
    assert_eq!(s.types.last().unwrap(), "response.completed");
}

#[tokio::test]
async fn the_mode_header_overrides_the_mode_for_one_request() {
    let up = ScriptedUpstream::start(openai::script).await;
    let sg = start_sandgate(&up.base_url(), |_| {}).await;

    let (status, _, body) = post_json(
        sg.addr(),
        "/v1/chat/completions",
        &chat_request(true),
        &[("x-sandgate-mode", "off")],
    )
    .await;
    assert_eq!(status, 200);
    let s = openai::chat_stream(&openai::parse_sse(&body), "delta");
    assert_eq!(s.texts, ORIGINALS, "off leaves the answer as it was");
    assert!(
        up.last_request().header("x-sandgate-mode").is_none(),
        "the mode header is not forwarded"
    );

    for mode in [Mode::Widget, Mode::Artifact, Mode::Link] {
        let opts = Options { mode, ..test_options() };
        let (status, _, body) = post_json(
            sg.addr(),
            "/v1/chat/completions",
            &chat_request(false),
            &[("x-sandgate-mode", mode.as_str())],
        )
        .await;
        assert_eq!(status, 200);
        let texts = openai::json_texts(&serde_json::from_slice(&body).unwrap(), "message");
        assert_eq!(texts, expected(&opts, &ORIGINALS), "mode {mode}");
    }

    let before = up.requests().len();
    let (status, _, body) = post_json(
        sg.addr(),
        "/v1/chat/completions",
        &chat_request(false),
        &[("x-sandgate-mode", "sparkles")],
    )
    .await;
    assert_eq!(status, 400);
    let (kind, code, message) = crate::support::error_of(&body);
    assert_eq!(kind, "invalid_request_error");
    assert_eq!(code, "invalid_sandgate_mode");
    assert!(message.contains("\"sparkles\""), "{message}");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["param"], "x-sandgate-mode");
    assert_eq!(up.requests().len(), before, "nothing went upstream");
}

#[tokio::test]
async fn history_reaches_the_upstream_as_the_original_text() {
    let up = ScriptedUpstream::start(openai::script).await;
    let sg = start_sandgate(&up.base_url(), |_| {}).await;

    // First turn: the client receives the rewritten answer.
    let (_, _, body) =
        post_json(sg.addr(), "/v1/chat/completions", &chat_request(false), &[]).await;
    let rewritten = openai::json_texts(&serde_json::from_slice(&body).unwrap(), "message");

    // Second turn: the client sends it back as history.
    let second = json!({"model": "gpt-test", "messages": [
        {"role": "user", "content": "plot A, B, C"},
        {"role": "assistant", "content": rewritten[0]},
        {"role": "user", "content": "now in red"},
        {"role": "assistant", "content": [{"type": "text", "text": rewritten[1]}]},
        {"role": "user", "content": "thanks"}]});
    let sent = serde_json::to_vec(&second).unwrap();
    let (status, _, _) = post_json(sg.addr(), "/v1/chat/completions", &second, &[]).await;
    assert_eq!(status, 200);
    let got = up.last_request();
    let v = got.json();
    assert_eq!(v["messages"][1]["content"].as_str().unwrap(), ORIGINALS[0], "byte-exact");
    assert_eq!(v["messages"][3]["content"][0]["text"].as_str().unwrap(), ORIGINALS[1]);
    assert_eq!(v["messages"][2]["content"], "now in red");
    let opts = test_options();
    let restored_count = api::restore_request(Endpoint::ChatCompletions, &opts, &sent, usize::MAX)
        .map_or(0, |r| r.1);
    assert_eq!(got.header("content-length").unwrap(), got.body.len().to_string());

    // Responses API: assistant items in `input`.
    let (_, _, body) = post_json(sg.addr(), "/v1/responses", &responses_request(false), &[]).await;
    let rewritten = openai::responses_text(&serde_json::from_slice(&body).unwrap());
    let second = json!({"model": "gpt-test", "input": [
        {"role": "user", "content": "plot"},
        {"type": "message", "role": "assistant",
         "content": [{"type": "output_text", "text": rewritten}]},
        {"role": "user", "content": "again"}]});
    let (status, _, _) = post_json(sg.addr(), "/v1/responses", &second, &[]).await;
    assert_eq!(status, 200);
    let v = up.last_request().json();
    assert_eq!(v["input"][1]["content"][0]["text"].as_str().unwrap(), ORIGINALS[0]);

    // The metric counts what the engine restored.
    let (_, _, metrics) = call(sg.addr(), "GET", "/metrics", &[], "").await;
    let metrics = String::from_utf8(metrics.to_vec()).unwrap();
    let restored_responses = api::restore_request(
        Endpoint::Responses,
        &opts,
        &serde_json::to_vec(&second).unwrap(),
        usize::MAX,
    )
    .map_or(0, |r| r.1);
    assert!(
        metrics.contains(&format!(
            "sandgate_histories_restored_total {}\n",
            restored_count + restored_responses
        )),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_body_that_is_not_json_is_forwarded_unchanged() {
    let up = ScriptedUpstream::start(|_| {
        Reply::error(400, "We could not parse the JSON body", "invalid_request_error")
    })
    .await;
    let sg = start_sandgate(&up.base_url(), |_| {}).await;
    let raw = "{\"model\": \"gpt-test\", \"messages\": [oops";
    let (status, _, body) = call(
        sg.addr(),
        "POST",
        "/v1/chat/completions",
        &[("content-type", "application/json")],
        raw,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(up.last_request().body, raw.as_bytes());
    let (_, _, message) = crate::support::error_of(&body);
    assert_eq!(message, "We could not parse the JSON body");
}

#[tokio::test]
async fn credentials_and_provider_headers_go_upstream_unchanged() {
    let up = ScriptedUpstream::start(openai::script).await;
    let sg = start_sandgate(&up.base_url(), |_| {}).await;
    let headers = [
        ("content-type", "application/json"),
        ("authorization", "Bearer sk-client-123"),
        ("api-key", "azure-key"),
        ("openai-organization", "org-42"),
        ("openai-project", "proj-7"),
        ("openai-beta", "assistants=v2"),
        ("x-stainless-lang", "python"),
        ("connection", "keep-alive, x-hop"),
        ("x-hop", "secret"),
        ("keep-alive", "timeout=5"),
    ];
    let body = serde_json::to_vec(&chat_request(false)).unwrap();
    let (status, resp_headers, _) =
        call(sg.addr(), "POST", "/v1/chat/completions?trace=1", &headers, body).await;
    assert_eq!(status, 200);
    let got = up.last_request();
    assert_eq!(got.uri, "/v1/chat/completions?trace=1");
    for (k, v) in &headers[1..7] {
        assert_eq!(got.header(k), Some(*v), "{k} forwarded");
    }
    assert!(got.header("x-hop").is_none(), "headers named by Connection are dropped");
    assert!(got.header("keep-alive").is_none());
    assert_eq!(got.header("host"), Some(up.addr.to_string().as_str()));
    assert_eq!(resp_headers["content-type"], "application/json");
}

#[tokio::test]
async fn upstream_error_statuses_reach_the_client_with_body_and_headers() {
    let up = ScriptedUpstream::start(|r: &Recorded| {
        let status: u16 =
            r.json()["model"].as_str().unwrap().trim_start_matches("status-").parse().unwrap();
        let mut reply = Reply::error(status, &format!("upstream says {status}"), "test_error")
            .header("x-request-id", "req-1");
        if status == 429 {
            reply = reply.header("retry-after", "7").header("x-ratelimit-remaining-requests", "0");
        }
        reply
    })
    .await;
    let sg = start_sandgate(&up.base_url(), |_| {}).await;
    for status in [400u16, 401, 404, 429, 500, 503] {
        for (path, stream) in [
            ("/v1/chat/completions", false),
            ("/v1/chat/completions", true),
            ("/v1/responses", true),
            ("/v1/embeddings", false),
        ] {
            let req =
                json!({"model": format!("status-{status}"), "stream": stream, "messages": []});
            let (got, headers, body) = post_json(sg.addr(), path, &req, &[]).await;
            assert_eq!(got.as_u16(), status, "{path}");
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["error"]["message"], format!("upstream says {status}"));
            assert_eq!(v["error"]["type"], "test_error");
            assert_eq!(headers["x-request-id"], "req-1");
            if status == 429 {
                assert_eq!(headers["retry-after"], "7");
                assert_eq!(headers["x-ratelimit-remaining-requests"], "0");
            }
        }
    }
}

#[tokio::test]
async fn transparent_routes_map_paths_and_queries() {
    let up = ScriptedUpstream::start(openai::script).await;
    let sg = start_sandgate(&up.base_url(), |_| {}).await;
    let (status, _, body) = call(
        sg.addr(),
        "GET",
        "/v1/models?limit=2&after=x%20y",
        &[("authorization", "Bearer sk-c")],
        "",
    )
    .await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["data"][0]["id"], "gpt-test");
    let got = up.last_request();
    assert_eq!(got.method, "GET");
    assert_eq!(got.uri, "/v1/models?limit=2&after=x%20y");
    assert_eq!(got.header("authorization"), Some("Bearer sk-c"));

    // Paths cannot climb out of the upstream base.
    let before = up.requests().len();
    for path in ["/v1/../admin", "/v1/files/%2e%2E/x", "/v1/a%2Fb", "/v1/./models"] {
        let (status, _, body) = call(sg.addr(), "GET", path, &[], "").await;
        assert_eq!(status, 400, "{path}");
        assert_eq!(crate::support::error_of(&body).1, "invalid_path");
    }
    assert_eq!(up.requests().len(), before);

    // A GET on a rewritten path is not rewritten, just proxied.
    let (status, _, _) = call(sg.addr(), "GET", "/v1/chat/completions/abc", &[], "").await;
    assert_eq!(status, 404);
    assert_eq!(up.last_request().uri, "/v1/chat/completions/abc");
}

#[tokio::test]
async fn a_streamed_upload_and_a_streamed_download_pass_through() {
    let up = ScriptedUpstream::start(|r: &Recorded| {
        if r.method == "POST" {
            Reply::json(&json!({"id": "file-1", "object": "file", "bytes": r.body.len(),
                                "frames": r.frames}))
        } else {
            // The download stops mid-way: what was sent must reach the client anyway.
            Reply::new(200)
                .header("content-type", "application/octet-stream")
                .chunked(&b"first part;second part"[..], 11, Duration::from_millis(5))
                .end(End::Stall)
        }
    })
    .await;
    let sg = start_sandgate(&up.base_url(), |_| {}).await;

    // Upload in five pieces, 30 ms apart, without a Content-Length.
    let (tx, rx) =
        tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, crate::support::BoxError>>(1);
    let pieces: Vec<Bytes> =
        (0..5).map(|i| Bytes::from(format!("--piece {i} {}--\n", "x".repeat(1000)))).collect();
    let expected_body: Vec<u8> = pieces.iter().flat_map(|p| p.to_vec()).collect();
    tokio::spawn(async move {
        for p in pieces {
            tx.send(Ok(http_body::Frame::data(p))).await.unwrap();
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    });
    let body = http_body_util::StreamBody::new(tokio_stream_from(rx)).boxed_unsync();
    let req = http::Request::post(format!("http://{}/v1/files", sg.addr()))
        .header("content-type", "multipart/form-data; boundary=x")
        .body(body)
        .unwrap();
    let resp = crate::support::client().request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let got = up.last_request();
    assert_eq!(got.body, expected_body, "the upload arrives intact");
    assert_eq!(v["bytes"], expected_body.len());
    assert!(
        got.frames >= 3,
        "the upload streamed through in pieces, not as one buffered body ({} frames)",
        got.frames
    );

    // Download: the upstream stalls after two pieces; the client has them already.
    let req = http::Request::get(format!("http://{}/v1/files/file-1/content", sg.addr()))
        .body(crate::support::full(""))
        .unwrap();
    let resp = crate::support::client().request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut received = Vec::new();
    while received.len() < 22 {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("the pieces sent before the stall arrive")
            .unwrap()
            .unwrap();
        received.extend_from_slice(frame.data_ref().unwrap());
    }
    assert_eq!(received, b"first part;second part");
}

/// A `Stream` over an mpsc receiver (tokio-stream is not a dependency).
fn tokio_stream_from<T>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn an_event_stream_is_not_buffered() {
    // Half a stream, then silence: the client must receive the first half before any timeout.
    let up = super::partial_stream(2, false, 50, End::Stall).await;
    let sg = start_sandgate(&up.base_url(), |_| {}).await;
    let body = serde_json::to_vec(&json!({"model": "m", "stream": true, "messages": []})).unwrap();
    let req = http::Request::post(format!("http://{}/v1/chat/completions", sg.addr()))
        .header("content-type", "application/json")
        .body(crate::support::full(body))
        .unwrap();
    let resp = crate::support::client().request(req).await.unwrap();
    let mut body = resp.into_body();
    let mut received = Vec::new();
    let mut events = 0;
    while events < 3 {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("events arrive while the upstream is still streaming")
            .unwrap()
            .unwrap();
        received.extend_from_slice(frame.data_ref().unwrap());
        events = openai::parse_sse(&received).len();
    }
    assert_eq!(sg.metrics().streams_in_flight(), 1);
    drop(body);
    assert!(
        crate::support::eventually(Duration::from_secs(5), || sg.metrics().streams_in_flight()
            == 0)
        .await
    );
}

#[tokio::test]
async fn the_request_body_limit_answers_413() {
    let up = ScriptedUpstream::start(openai::script).await;
    let sg = start_sandgate(&up.base_url(), |raw| {
        raw.set("request_body_limit", "2000").unwrap();
    })
    .await;
    let big = json!({"model": "m", "messages": [{"role": "user", "content": "x".repeat(3000)}]});

    // Declared length over the limit, on a rewritten route.
    let (status, _, body) = post_json(sg.addr(), "/v1/chat/completions", &big, &[]).await;
    assert_eq!(status, 413);
    let (kind, code, message) = crate::support::error_of(&body);
    assert_eq!(kind, "invalid_request_error");
    assert_eq!(code, "request_too_large");
    assert_eq!(message, "request body exceeds the limit of 2000 bytes");

    // Streamed without a length, on a rewritten route and on a transparent one.
    for path in ["/v1/chat/completions", "/v1/files"] {
        let (tx, rx) = tokio::sync::mpsc::channel::<
            Result<http_body::Frame<Bytes>, crate::support::BoxError>,
        >(1);
        tokio::spawn(async move {
            for _ in 0..6 {
                if tx.send(Ok(http_body::Frame::data(Bytes::from(vec![b'y'; 500])))).await.is_err()
                {
                    return;
                }
            }
        });
        let body = http_body_util::StreamBody::new(tokio_stream_from(rx)).boxed_unsync();
        let req = http::Request::post(format!("http://{}{path}", sg.addr()))
            .header("content-type", "application/json")
            .body(body)
            .unwrap();
        let resp = crate::support::client().request(req).await.unwrap();
        assert_eq!(resp.status(), 413, "{path}");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(crate::support::error_of(&body).1, "request_too_large");
    }
    assert!(
        up.requests().iter().all(|r| r.body.len() <= 2000),
        "no oversized body reached the upstream whole"
    );

    // Under the limit passes.
    let small = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let (status, _, _) = post_json(sg.addr(), "/v1/chat/completions", &small, &[]).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn gateway_keys_guard_the_routes_and_swap_in_the_provider_key() {
    let up = ScriptedUpstream::start(openai::script).await;
    let sg = start_sandgate(&up.base_url(), |raw| {
        raw.set("api_keys", "gw-alice,gw-bob").unwrap();
        raw.set("upstream_api_key", "sk-provider").unwrap();
    })
    .await;
    let req = serde_json::to_vec(&chat_request(false)).unwrap();
    for auth in [None, Some("Bearer gw-eve"), Some("Bearer sk-provider"), Some("gw-bob")] {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(a) = auth {
            headers.push(("authorization", a));
        }
        let (status, headers, body) =
            call(sg.addr(), "POST", "/v1/chat/completions", &headers, req.clone()).await;
        assert_eq!(status, 401, "{auth:?}");
        assert_eq!(headers["www-authenticate"], "Bearer");
        assert_eq!(crate::support::error_of(&body).1, "invalid_api_key");
    }
    let (status, _, _) = call(sg.addr(), "GET", "/v1/models", &[], "").await;
    assert_eq!(status, 401, "transparent routes are guarded too");
    assert!(up.requests().is_empty(), "nothing reached the upstream");

    let (status, _, _) = call(
        sg.addr(),
        "POST",
        "/v1/chat/completions",
        &[
            ("content-type", "application/json"),
            ("authorization", "Bearer gw-bob"),
            ("openai-organization", "org-chosen-by-the-client"),
            ("openai-project", "proj-chosen-by-the-client"),
            ("expect", "100-continue"),
        ],
        req.clone(),
    )
    .await;
    assert_eq!(status, 200);
    let got = up.last_request();
    assert_eq!(got.header("authorization"), Some("Bearer sk-provider"));
    // The provider account is the operator's: the client does not pick what it is billed to.
    assert!(got.header("openai-organization").is_none());
    assert!(got.header("openai-project").is_none());
    // The body was read whole before it went upstream: nothing to wait for a 100 Continue.
    assert!(got.header("expect").is_none());
    let (status, _, _) = call(sg.addr(), "GET", "/v1/models", &[("api-key", "gw-alice")], "").await;
    assert_eq!(status, 200);
    let got = up.last_request();
    assert_eq!(got.header("authorization"), Some("Bearer sk-provider"));
    assert!(got.header("api-key").is_none());
}

#[tokio::test]
async fn service_routes_and_metrics() {
    let up = ScriptedUpstream::start(openai::script).await;
    let sg = start_sandgate(&up.base_url(), |_| {}).await;
    let (status, _, body) = call(sg.addr(), "GET", "/healthz", &[], "").await;
    assert_eq!((status.as_u16(), &body[..]), (200, &b"ok\n"[..]));
    let (status, _, _) = call(sg.addr(), "GET", "/readyz", &[], "").await;
    assert_eq!(status, 200);
    let (status, _, body) = call(sg.addr(), "GET", "/nope", &[], "").await;
    assert_eq!(status, 404);
    assert_eq!(crate::support::error_of(&body).1, "unknown_url");

    let (_, _, body) =
        post_json(sg.addr(), "/v1/chat/completions", &chat_request(false), &[]).await;
    let blocks = api::rewrite_json(
        Endpoint::ChatCompletions,
        &std::sync::Arc::new(test_options()),
        &serde_json::to_vec(&openai::chat_json(&ORIGINALS)).unwrap(),
    )
    .map_or(0, |r| r.1.blocks_rewritten);
    assert!(!body.is_empty());
    post_json(sg.addr(), "/v1/chat/completions", &chat_request(true), &[]).await;
    call(sg.addr(), "GET", "/v1/models", &[], "").await;

    let (status, headers, body) = call(sg.addr(), "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(body.to_vec()).unwrap();
    for line in [
        "sandgate_requests_total{route=\"chat/completions\",status=\"200\"} 2\n",
        "sandgate_requests_total{route=\"healthz\",status=\"200\"} 1\n",
        "sandgate_requests_total{route=\"not_found\",status=\"404\"} 1\n",
        "sandgate_requests_total{route=\"v1_other\",status=\"200\"} 1\n",
        "sandgate_upstream_latency_seconds_count 3\n",
        "sandgate_streams_in_flight 0\n",
        "sandgate_streams_cancelled_total 0\n",
        "# TYPE sandgate_overhead_seconds histogram\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    // The streamed answer counts its blocks too, once the stream has ended.
    assert!(text.contains(&format!("sandgate_blocks_rewritten_total {}\n", blocks * 2)), "{text}");
}

#[tokio::test]
async fn http2_prior_knowledge_clients_are_served() {
    let up = ScriptedUpstream::start(openai::script).await;
    let sg = start_sandgate(&up.base_url(), |_| {}).await;
    let (_sender, resp) = crate::support::h2_post_json(
        sg.addr(),
        "/v1/chat/completions",
        &chat_request(true),
        &[("authorization", "Bearer sk-h2")],
    )
    .await;
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert_sse_headers(resp.headers());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let s = openai::chat_stream(&openai::parse_sse(&body), "delta");
    assert_eq!(s.texts, expected(&test_options(), &ORIGINALS));
    assert_eq!(up.last_request().header("authorization"), Some("Bearer sk-h2"));
}

#[tokio::test]
async fn several_worker_threads_serve_concurrent_requests_and_stop_cleanly() {
    let up = ScriptedUpstream::start(openai::script).await;
    let sg = start_sandgate(&up.base_url(), |raw| {
        raw.set("workers", "4").unwrap();
    })
    .await;
    let addr = sg.addr();
    let want = expected(&crate::support::test_options(), &ORIGINALS);
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..40 {
        calls.spawn(async move {
            let (status, _, body) =
                post_json(addr, "/v1/chat/completions", &chat_request(i % 2 == 0), &[]).await;
            (i, status, body)
        });
    }
    while let Some(done) = calls.join_next().await {
        let (i, status, body) = done.unwrap();
        assert_eq!(status, 200, "request {i}");
        let texts = if i % 2 == 0 {
            openai::chat_stream(&openai::parse_sse(&body), "delta").texts
        } else {
            let v: Value = serde_json::from_slice(&body).unwrap();
            v["choices"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["message"]["content"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(texts, want, "request {i}");
    }
    assert_eq!(sg.metrics().requests("chat/completions", 200), 40);
    assert!(up.accepted() >= 1 && up.accepted() <= 40);
    tokio::time::timeout(Duration::from_secs(10), sg.shutdown())
        .await
        .expect("every worker stops")
        .unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "the listener is closed");
}
