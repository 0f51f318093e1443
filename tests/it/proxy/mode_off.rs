//! Mode off, configured or asked for with `x-sandgate-mode: off`: the rewritten routes are proxied
//! like every other `/v1` route. The answer comes back byte for byte, JSON and stream; the request
//! goes upstream as it came (history links not restored, no `python` tool added, a body that is not
//! JSON not refused); only sandgate's own headers stay behind, and a bad one is still a 400.

use crate::support::openai::{self, ORIGINALS};
use crate::support::{call, post_json, start_sandgate, ScriptedUpstream};
use serde_json::{json, Value};

fn chat(messages: Value, stream: bool) -> Value {
    json!({"model": "gpt-test", "stream": stream, "messages": messages})
}

const OFF: (&str, &str) = ("x-sandgate-mode", "off");

#[tokio::test]
async fn the_answer_comes_back_as_the_upstream_sent_it() {
    let up = ScriptedUpstream::start(openai::script).await;
    let sg = start_sandgate(&up.base_url(), |_| {}).await;
    let question = json!([{"role": "user", "content": "plot A, B, C"}]);
    let (status, _, json_body) =
        post_json(sg.addr(), "/v1/chat/completions", &chat(question.clone(), false), &[OFF]).await;
    assert_eq!(status, 200);
    assert_eq!(json_body, serde_json::to_vec(&openai::chat_json(&ORIGINALS[..1])).unwrap());
    let (status, headers, sse) =
        post_json(sg.addr(), "/v1/chat/completions", &chat(question, true), &[OFF]).await;
    assert_eq!(status, 200);
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    assert_eq!(sse, openai::chat_sse(&ORIGINALS[..1], false).as_bytes());
    assert!(!String::from_utf8_lossy(&sse).contains("/sandbox"));
}

#[tokio::test]
async fn the_request_goes_upstream_as_it_came() {
    let up = ScriptedUpstream::start(openai::script).await;
    let sg = start_sandgate(&up.base_url(), |_| {}).await;
    // A first answer, rewritten: its link is this sandgate's own, signed.
    let question = json!([{"role": "user", "content": "plot A, B, C"}]);
    let (_, _, body) =
        post_json(sg.addr(), "/v1/chat/completions", &chat(question, false), &[]).await;
    let rewritten = openai::json_texts(&serde_json::from_slice(&body).unwrap(), "message");
    assert!(rewritten[0].contains("http://sandgate.test/sandbox"), "{rewritten:?}");

    // In mode off that history (and the tools header) reach the upstream untouched.
    let history = chat(
        json!([{"role": "user", "content": "plot"},
               {"role": "assistant", "content": rewritten[0]},
               {"role": "user", "content": "again"}]),
        false,
    );
    let sent = serde_json::to_vec(&history).unwrap();
    let headers = [
        ("content-type", "application/json"),
        OFF,
        ("x-sandgate-tools", "python"),
        ("x-sandgate-context", "conversation"),
    ];
    let (status, _, _) =
        call(sg.addr(), "POST", "/v1/chat/completions", &headers, sent.clone()).await;
    assert_eq!(status, 200);
    let got = up.last_request();
    assert_eq!(got.body, sent, "no history restored, no tool added: the bytes as sent");
    for name in ["x-sandgate-mode", "x-sandgate-tools", "x-sandgate-context"] {
        assert_eq!(got.header(name), None, "{name} is sandgate's, not the upstream's");
    }

    // The same request in link mode is restored and gets the tool: the difference is the mode.
    let (status, _, _) =
        call(sg.addr(), "POST", "/v1/chat/completions", &headers[..1], sent.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(up.last_request().json()["messages"][1]["content"], ORIGINALS[0]);

    // A body that is not JSON is the upstream's to judge, not refused with 415.
    let text = [("content-type", "text/plain"), OFF];
    let (status, _, _) = call(sg.addr(), "POST", "/v1/chat/completions", &text, "hello").await;
    assert_ne!(status, 415);
    assert_eq!(up.last_request().body, "hello");
    let (status, _, _) = call(sg.addr(), "POST", "/v1/chat/completions", &text[..1], "hello").await;
    assert_eq!(status, 415, "outside mode off the rewritten routes take JSON only");
}

#[tokio::test]
async fn configured_off_is_the_same_and_bad_headers_are_still_refused() {
    let up = ScriptedUpstream::start(openai::script).await;
    let sg = start_sandgate(&up.base_url(), |raw| raw.set("mode", "off").unwrap()).await;
    let question = json!([{"role": "user", "content": "plot A, B, C"}]);
    let (status, _, body) =
        post_json(sg.addr(), "/v1/chat/completions", &chat(question.clone(), false), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(body, serde_json::to_vec(&openai::chat_json(&ORIGINALS[..1])).unwrap());
    let before = up.requests().len();
    for bad in [("x-sandgate-tools", "perl"), ("x-sandgate-context", "everything")] {
        let (status, _, _) =
            post_json(sg.addr(), "/v1/chat/completions", &chat(question.clone(), false), &[bad])
                .await;
        assert_eq!(status, 400, "{bad:?}");
    }
    assert_eq!(up.requests().len(), before, "refused before any upstream request");
}
