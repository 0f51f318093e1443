//! The agentic loop for tests: an upstream that behaves like a model offered the `python` tool. It
//! calls `python` (JSON or a stream, Chat Completions or Responses, shaped as the OpenAI API sends
//! them) unless the request ends with the tool's result, which it answers with "The code printed: "
//! and the result's first line.

use std::time::Duration;

use serde_json::{json, Value};

use super::openai::{self, deltas};
use super::{Recorded, Reply};

/// The code the scripted model calls `python` with. Its text holds a Python fence, which an
/// argument must carry through sandgate untouched.
pub const CODE: &str = "# a ```python fence in a comment stays as it is\nprint(6765)\n";

/// The call's arguments, as the model sends them: JSON text.
pub fn arguments() -> String {
    json!({"code": CODE}).to_string()
}

pub const CALL_ID: &str = "call_Py7aQ1xR";

/// What the scripted model answers a tool result with.
pub fn answer_to(result: &str) -> String {
    format!("The code printed: {}", result.lines().next().unwrap_or(""))
}

/// Answers `/v1/chat/completions` and `/v1/responses` as described above; streams go out in
/// 13-byte network chunks. A model named `recorded/<file>` gets that recorded stream instead.
pub fn script(r: &Recorded) -> Reply {
    let v = r.json();
    let stream = v["stream"].as_bool().unwrap_or(false);
    let path = r.uri.split('?').next().unwrap_or("");
    let tick = Duration::from_millis(1);
    if let Some(name) = v["model"].as_str().and_then(|m| m.strip_prefix("recorded/")) {
        return Reply::sse(recorded(name), 17, tick);
    }
    match path {
        "/v1/chat/completions" => {
            let last = v["messages"].as_array().and_then(|m| m.last()).cloned().unwrap_or_default();
            if last["role"] == "tool" {
                let text = answer_to(last["content"].as_str().unwrap_or_default());
                return if stream {
                    Reply::sse(openai::chat_sse(&[&text], false), 13, tick)
                } else {
                    Reply::json(&openai::chat_json(&[&text]))
                };
            }
            if stream {
                Reply::sse(chat_call_sse(), 13, tick)
            } else {
                Reply::json(&chat_call_json())
            }
        }
        "/v1/responses" => {
            let last = v["input"].as_array().and_then(|m| m.last()).cloned().unwrap_or_default();
            if last["type"] == "function_call_output" {
                let text = answer_to(last["output"].as_str().unwrap_or_default());
                return if stream {
                    Reply::sse(openai::responses_sse(&text), 13, tick)
                } else {
                    Reply::json(&openai::responses_json(&text))
                };
            }
            if stream {
                Reply::sse(responses_call_sse(), 13, tick)
            } else {
                Reply::json(&responses_call_json())
            }
        }
        _ => Reply::error(404, &format!("no route {path}"), "invalid_request_error"),
    }
}

const CHAT_ID: &str = "chatcmpl-tool1";

fn chunk(delta: Value, finish: Value) -> Value {
    json!({"id": CHAT_ID, "object": "chat.completion.chunk", "created": 1_767_225_600u64,
           "model": "gpt-test", "system_fingerprint": "fp_test",
           "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
}

/// A chat answer that calls `python`.
pub fn chat_call_json() -> Value {
    json!({
        "id": CHAT_ID, "object": "chat.completion", "created": 1_767_225_600u64, "model": "gpt-test",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "refusal": null,
            "tool_calls": [{"id": CALL_ID, "type": "function",
                            "function": {"name": "python", "arguments": arguments()}}]},
            "logprobs": null, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 80, "completion_tokens": 20, "total_tokens": 100},
    })
}

/// A streamed chat answer that calls `python`: the role chunk with `content: null`, the call's id
/// and name, its arguments in small deltas, the finish chunk, `[DONE]`.
pub fn chat_call_sse() -> String {
    let mut out = String::new();
    let mut push = |v: Value| out.push_str(&format!("data: {v}\n\n"));
    push(chunk(json!({"role": "assistant", "content": null}), Value::Null));
    push(chunk(
        json!({"tool_calls": [{"index": 0, "id": CALL_ID, "type": "function",
                               "function": {"name": "python", "arguments": ""}}]}),
        Value::Null,
    ));
    for piece in deltas(&arguments()) {
        push(chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
            Value::Null,
        ));
    }
    push(chunk(json!({}), json!("tool_calls")));
    out.push_str("data: [DONE]\n\n");
    out
}

const RESP_ID: &str = "resp_tool1";
const ITEM_ID: &str = "fc_tool1";

fn call_item(arguments: &str, status: &str) -> Value {
    json!({"id": ITEM_ID, "type": "function_call", "status": status, "arguments": arguments,
           "call_id": CALL_ID, "name": "python"})
}

fn response(status: &str, output: Value) -> Value {
    json!({"id": RESP_ID, "object": "response", "created_at": 1_767_225_600u64, "status": status,
           "error": null, "incomplete_details": null, "model": "gpt-test", "output": output,
           "parallel_tool_calls": true, "tool_choice": "auto", "tools": []})
}

/// A Responses answer that calls `python`.
pub fn responses_call_json() -> Value {
    response("completed", json!([call_item(&arguments(), "completed")]))
}

/// A streamed Responses answer that calls `python`: the `function_call` item, its
/// `response.function_call_arguments.delta` events and the done events, with `event:` lines.
pub fn responses_call_sse() -> String {
    let mut out = String::new();
    let mut seq = 0;
    let mut event = |name: &str, mut v: Value| {
        v["type"] = json!(name);
        v["sequence_number"] = json!(seq);
        seq += 1;
        out.push_str(&format!("event: {name}\ndata: {v}\n\n"));
    };
    event("response.created", json!({"response": response("in_progress", json!([]))}));
    event("response.in_progress", json!({"response": response("in_progress", json!([]))}));
    event(
        "response.output_item.added",
        json!({"output_index": 0, "item": call_item("", "in_progress")}),
    );
    for piece in deltas(&arguments()) {
        event(
            "response.function_call_arguments.delta",
            json!({"item_id": ITEM_ID, "output_index": 0, "delta": piece}),
        );
    }
    event(
        "response.function_call_arguments.done",
        json!({"item_id": ITEM_ID, "output_index": 0, "arguments": arguments()}),
    );
    event(
        "response.output_item.done",
        json!({"output_index": 0, "item": call_item(&arguments(), "completed")}),
    );
    event("response.completed", json!({"response": responses_call_json()}));
    out
}

/// The recorded OpenAI chat streams (real gpt-4o bytes) that call tools.
pub const RECORDED_TOOL_STREAMS: [&str; 4] =
    ["2018feb6.sse", "a247c49c.sse", "c6aa7e39.sse", "f82268f2.sse"];

pub fn recorded(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/openai-recorded")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
