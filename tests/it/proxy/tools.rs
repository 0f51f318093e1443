//! The `python` tool at the gateway, with real servers on loopback: the tool is added to chat and
//! Responses requests with `x-sandgate-tools: python` or the `tools` key and only then; never twice;
//! the header is checked and never forwarded; a body sandgate adds nothing to goes upstream byte for
//! byte (follow-ups carrying tool messages too); tool calls come back byte for byte, streamed or not.

use crate::support::tools::{self as script, RECORDED_TOOL_STREAMS};
use crate::support::{error_of, post_json, start_sandgate, ScriptedUpstream};
use sandgate::rewrite::api::{tools::python_tool, Endpoint};
use serde_json::{json, Value};

const CHAT: &str = "/v1/chat/completions";
const RESPONSES: &str = "/v1/responses";

fn chat_request(stream: bool) -> Value {
    json!({"model": "gpt-test", "stream": stream, "temperature": 0.25,
           "messages": [{"role": "user", "content": "What is the 20th Fibonacci number?"}]})
}

fn responses_request(stream: bool) -> Value {
    json!({"model": "gpt-test", "stream": stream, "input": "What is the 20th Fibonacci number?"})
}

/// A follow-up: the model's call and the tool's result, with text that sandgate would rewrite in
/// an answer (a sandgate link, a Python fence) in both.
fn chat_follow_up() -> Value {
    let link = sandgate::rewrite::rewrite(
        &crate::support::test_options(),
        "```python\nprint(6765)\n```\n",
    );
    json!({"model": "gpt-test", "messages": [
        {"role": "user", "content": "What is the 20th Fibonacci number?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": script::CALL_ID, "type": "function",
            "function": {"name": "python", "arguments": json!({"code": link}).to_string()}}]},
        {"role": "tool", "tool_call_id": script::CALL_ID, "content": format!("6765\n{link}")},
    ]})
}

fn responses_follow_up() -> Value {
    let link = sandgate::rewrite::rewrite(
        &crate::support::test_options(),
        "```python\nprint(6765)\n```\n",
    );
    json!({"model": "gpt-test", "input": [
        {"role": "user", "content": "What is the 20th Fibonacci number?"},
        {"type": "function_call", "call_id": script::CALL_ID, "name": "python",
         "arguments": json!({"code": link}).to_string()},
        {"type": "function_call_output", "call_id": script::CALL_ID, "output": format!("6765\n{link}")},
    ]})
}

/// The request `sent` plus the `python` tool, as the upstream must receive it.
fn with_tool(endpoint: Endpoint, sent: &Value) -> Value {
    let mut want = sent.clone();
    let tools = want.as_object_mut().unwrap().entry("tools").or_insert(json!([]));
    tools.as_array_mut().unwrap().push(python_tool(endpoint).unwrap());
    want
}

#[tokio::test]
async fn the_header_adds_the_tool_and_is_not_forwarded() {
    let up = ScriptedUpstream::start(script::script).await;
    let sg = start_sandgate(&up.base_url(), |_| {}).await;
    let cases = [
        (CHAT, Endpoint::ChatCompletions, chat_request(false)),
        (RESPONSES, Endpoint::Responses, responses_request(false)),
    ];
    for (path, endpoint, sent) in cases {
        for value in ["python", " Python "] {
            let (status, _, _) =
                post_json(sg.addr(), path, &sent, &[("x-sandgate-tools", value)]).await;
            assert_eq!(status, 200, "{path}");
            let got = up.last_request();
            assert_eq!(got.json(), with_tool(endpoint, &sent), "{path}");
            assert_eq!(got.header("x-sandgate-tools"), None);
        }
        // Tools of the client's own come first and stay as they were.
        let mut own = sent.clone();
        own["tools"] = json!([{"type": "function", "name": "search", "parameters": {}}]);
        post_json(sg.addr(), path, &own, &[("x-sandgate-tools", "python")]).await;
        assert_eq!(up.last_request().json(), with_tool(endpoint, &own), "{path}");
    }
    // Where there are no tools, the header changes nothing.
    let legacy = json!({"model": "gpt-test", "prompt": "Write Python:"});
    let body = serde_json::to_vec(&legacy).unwrap();
    let (status, _, _) = crate::support::call(
        sg.addr(),
        "POST",
        "/v1/completions",
        &[("content-type", "application/json"), ("x-sandgate-tools", "python")],
        body.clone(),
    )
    .await;
    assert_eq!(status, 404, "the tool script has no completions route");
    assert_eq!(up.last_request().body, body);
}

#[tokio::test]
async fn without_header_or_key_bodies_go_upstream_byte_for_byte() {
    let up = ScriptedUpstream::start(script::script).await;
    let sg = start_sandgate(&up.base_url(), |_| {}).await;
    for (path, sent) in [(CHAT, chat_request(false)), (RESPONSES, responses_request(true))] {
        let bytes = serde_json::to_vec_pretty(&sent).unwrap();
        for headers in [&[][..], &[("x-sandgate-tools", "none")], &[("x-sandgate-tools", "")]] {
            let mut h = vec![("content-type", "application/json")];
            h.extend_from_slice(headers);
            let (status, _, _) =
                crate::support::call(sg.addr(), "POST", path, &h, bytes.clone()).await;
            assert_eq!(status, 200, "{path} {headers:?}");
            let got = up.last_request();
            assert_eq!(got.body, bytes, "{path} {headers:?}");
            assert_eq!(got.header("x-sandgate-tools"), None);
        }
    }
}

#[tokio::test]
async fn the_config_key_adds_the_tool_and_the_header_turns_it_off() {
    let up = ScriptedUpstream::start(script::script).await;
    let sg = start_sandgate(&up.base_url(), |raw| raw.set("tools", "python").unwrap()).await;
    for (path, endpoint, sent) in [
        (CHAT, Endpoint::ChatCompletions, chat_request(true)),
        (RESPONSES, Endpoint::Responses, responses_request(false)),
    ] {
        let (status, _, _) = post_json(sg.addr(), path, &sent, &[]).await;
        assert_eq!(status, 200);
        assert_eq!(up.last_request().json(), with_tool(endpoint, &sent), "{path}");
        let bytes = serde_json::to_vec(&sent).unwrap();
        let h = [("content-type", "application/json"), ("x-sandgate-tools", "none")];
        crate::support::call(sg.addr(), "POST", path, &h, bytes.clone()).await;
        assert_eq!(up.last_request().body, bytes, "{path}: none turns it off");
    }
}

#[tokio::test]
async fn a_request_with_its_own_python_tool_keeps_it_byte_for_byte() {
    let up = ScriptedUpstream::start(script::script).await;
    let sg = start_sandgate(&up.base_url(), |raw| raw.set("tools", "python").unwrap()).await;
    let mut chat = chat_request(false);
    chat["tools"] = json!([{"type": "function", "function": {"name": "python",
        "description": "my own runner", "parameters": {"type": "object"}}}]);
    let mut responses = responses_request(false);
    responses["tools"] = json!([{"type": "function", "name": "python", "description": "mine",
        "parameters": {"type": "object"}, "strict": false}]);
    for (path, sent) in [(CHAT, chat), (RESPONSES, responses)] {
        let bytes = serde_json::to_vec(&sent).unwrap();
        let h = [("content-type", "application/json"), ("x-sandgate-tools", "python")];
        let (status, _, _) = crate::support::call(sg.addr(), "POST", path, &h, bytes.clone()).await;
        assert_eq!(status, 200);
        assert_eq!(up.last_request().body, bytes, "{path}");
    }
}

#[tokio::test]
async fn an_invalid_header_is_refused_before_the_upstream() {
    let up = ScriptedUpstream::start(script::script).await;
    let sg = start_sandgate(&up.base_url(), |_| {}).await;
    for path in [CHAT, RESPONSES, "/v1/completions"] {
        for bad in ["pyhton", "python,shell", "1"] {
            let (status, headers, body) =
                post_json(sg.addr(), path, &chat_request(false), &[("x-sandgate-tools", bad)])
                    .await;
            assert_eq!(status, 400, "{path} {bad}");
            assert_eq!(headers["content-type"], "application/json");
            let (kind, code, message) = error_of(&body);
            assert_eq!(
                (kind.as_str(), code.as_str()),
                ("invalid_request_error", "invalid_sandgate_tools")
            );
            assert!(
                message.contains(&format!("{bad:?}")) && message.contains("python"),
                "{message}"
            );
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["error"]["param"], "x-sandgate-tools");
        }
    }
    assert!(up.requests().is_empty(), "nothing reached the upstream");
}

#[tokio::test]
async fn follow_ups_with_tool_messages_go_upstream_unchanged() {
    let up = ScriptedUpstream::start(script::script).await;
    let sg = start_sandgate(&up.base_url(), |_| {}).await;
    for (path, endpoint, sent) in [
        (CHAT, Endpoint::ChatCompletions, chat_follow_up()),
        (RESPONSES, Endpoint::Responses, responses_follow_up()),
    ] {
        let bytes = serde_json::to_vec(&sent).unwrap();
        let h = [("content-type", "application/json")];
        let (status, _, body) =
            crate::support::call(sg.addr(), "POST", path, &h, bytes.clone()).await;
        assert_eq!(status, 200);
        assert_eq!(up.last_request().body, bytes, "{path}: byte for byte without the tool");
        let answer: Value = serde_json::from_slice(&body).unwrap();
        let text = match endpoint {
            Endpoint::ChatCompletions => answer["choices"][0]["message"]["content"].clone(),
            _ => answer["output"][0]["content"][0]["text"].clone(),
        };
        assert_eq!(text, "The code printed: 6765");

        // With the tool on, the tool is the only change: the messages are the client's.
        post_json(sg.addr(), path, &sent, &[("x-sandgate-tools", "python")]).await;
        assert_eq!(up.last_request().json(), with_tool(endpoint, &sent), "{path}");
    }
}

/// Streams `model`'s answer to `request` through sandgate with the tool on and returns the bytes
/// the client received with the bytes the upstream sent.
async fn through(addr: std::net::SocketAddr, path: &str, request: &Value) -> Vec<u8> {
    let (status, headers, body) =
        post_json(addr, path, request, &[("x-sandgate-tools", "python")]).await;
    assert_eq!(status, 200);
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    body.to_vec()
}

#[tokio::test]
async fn streamed_tool_calls_pass_byte_for_byte() {
    let up = ScriptedUpstream::start(script::script).await;
    let sg = start_sandgate(&up.base_url(), |_| {}).await;
    // Real recorded gpt-4o tool-call streams, and calls whose arguments hold a Python fence.
    for name in RECORDED_TOOL_STREAMS {
        let mut request = chat_request(true);
        request["model"] = json!(format!("recorded/{name}"));
        let got = through(sg.addr(), CHAT, &request).await;
        assert_eq!(got, script::recorded(name), "{name}");
    }
    let got = through(sg.addr(), CHAT, &chat_request(true)).await;
    assert_eq!(String::from_utf8(got).unwrap(), script::chat_call_sse());
    let got = through(sg.addr(), RESPONSES, &responses_request(true)).await;
    assert_eq!(String::from_utf8(got).unwrap(), script::responses_call_sse());

    // Not streamed: the JSON answers come back as they were sent.
    for (path, request, want) in [
        (CHAT, chat_request(false), script::chat_call_json()),
        (RESPONSES, responses_request(false), script::responses_call_json()),
    ] {
        let (status, _, body) =
            post_json(sg.addr(), path, &request, &[("x-sandgate-tools", "python")]).await;
        assert_eq!(status, 200);
        assert_eq!(body, serde_json::to_vec(&want).unwrap(), "{path}");
    }
}
