//! The way back on request bodies: earlier answers that a client sends as history get every
//! replacement sandgate made turned back into the original markdown (with [`restore`]), so the model
//! never sees links or iframes.
//!
//! Chat Completions: `messages[]` with role `assistant`, content a string or parts of type `text`;
//! Responses: `input[]` items with role `assistant`, content a string or parts of type
//! `output_text`, `input_text` or `text`; legacy Completions: `prompt`, a string or an array of
//! strings (token arrays are left alone).
//!
//! With the conversation context, the same walk also collects the Python blocks of the assistant
//! texts (as restored: the original markdown), oldest first, into [`Cells`] for the answer's
//! rewriters. A legacy `prompt` is not an answer of the model's (nor can its answers be told from the
//! rest), so it gives no cells.

use std::sync::Arc;

use serde_json::Value;

use super::Endpoint;
use crate::rewrite::{collect_cells, restore, Cells, Options};

/// Where the cells of the history go, and the options that decide what a Python block is.
pub(super) type Collect<'a> = Option<(&'a Arc<Options>, &'a mut Cells)>;

/// See [`super::restore_request`].
pub(super) fn restore_request(endpoint: Endpoint, body: &[u8]) -> Option<(Vec<u8>, usize)> {
    restore_request_collecting(endpoint, body, None)
}

/// See [`super::restore_request_with_cells`].
pub(super) fn restore_request_collecting(
    endpoint: Endpoint,
    body: &[u8],
    mut collect: Collect<'_>,
) -> Option<(Vec<u8>, usize)> {
    // Every replacement's URL holds `#py=`. Most requests carry no earlier answer of sandgate's, and
    // this spares them the parse (for a long conversation, most of sandgate's time on the request).
    // Collecting cells needs a fence somewhere.
    let needles: &[&[u8]] = match collect {
        None => &[b"#py="],
        Some(_) => &[b"#py=", b"```", b"~~~"],
    };
    if !super::json_may_spell(body, needles) {
        return None;
    }
    let mut value: Value = serde_json::from_slice(body).ok()?;
    let mut restored = 0;
    match endpoint {
        Endpoint::ChatCompletions => {
            let messages = value.get_mut("messages")?.as_array_mut()?;
            for message in messages.iter_mut().filter(|m| is_assistant(m)) {
                let content = message.get_mut("content");
                restore_content(content, &["text"], &mut restored, &mut collect);
            }
        }
        Endpoint::Responses => {
            let input = value.get_mut("input")?.as_array_mut()?;
            for item in input.iter_mut().filter(|m| is_assistant(m)) {
                let kinds = ["output_text", "input_text", "text"];
                restore_content(item.get_mut("content"), &kinds, &mut restored, &mut collect);
            }
        }
        Endpoint::Completions => match value.get_mut("prompt")? {
            Value::Array(prompts) => {
                for prompt in prompts {
                    restore_text(prompt, &mut restored, &mut None);
                }
            }
            prompt => restore_text(prompt, &mut restored, &mut None),
        },
    }
    if restored == 0 {
        return None;
    }
    let out = serde_json::to_vec(&value).ok()?;
    Some((out, restored))
}

fn is_assistant(message: &Value) -> bool {
    message.get("role").and_then(Value::as_str) == Some("assistant")
}

/// Restores a content that is a string, or the `text` of its parts whose type is in `kinds`.
fn restore_content(
    content: Option<&mut Value>,
    kinds: &[&str],
    restored: &mut usize,
    collect: &mut Collect<'_>,
) {
    match content {
        Some(Value::Array(parts)) => {
            for part in parts {
                let kind = part.get("type").and_then(Value::as_str);
                if kind.is_some_and(|k| kinds.contains(&k)) {
                    if let Some(text) = part.get_mut("text") {
                        restore_text(text, restored, collect);
                    }
                }
            }
        }
        Some(text) => restore_text(text, restored, collect),
        None => {}
    }
}

/// Restores `text` if it is a string, counting it when it changed; then collects its cells.
fn restore_text(text: &mut Value, restored: &mut usize, collect: &mut Collect<'_>) {
    if let Value::String(text) = text {
        let new = restore(text);
        if new != *text {
            *text = new;
            *restored += 1;
        }
        if let Some((opts, cells)) = collect {
            collect_cells(opts, text, cells);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;
    use crate::rewrite::{rewrite, Options};

    const ANSWER: &str = "Run this:\n\n```python\nprint(6765)\n```\n";

    fn rewritten() -> String {
        let out = rewrite(&Options::default(), ANSWER);
        assert!(out.contains("#py="), "{out}");
        out
    }

    #[test]
    fn tool_messages_and_tool_calls_are_left_alone() {
        let link = rewritten();
        let call = json!({"code": link}).to_string();
        let body = json!({"messages": [
            {"role": "user", "content": "fibonacci?"},
            {"role": "assistant", "content": link},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "python", "arguments": call}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": link},
            {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": link}]},
        ]});
        let (out, n) =
            restore_request(Endpoint::ChatCompletions, body.to_string().as_bytes()).unwrap();
        assert_eq!(n, 1);
        let out: Value = serde_json::from_slice(&out).unwrap();
        let mut want = body.clone();
        want["messages"][1]["content"] = json!(ANSWER);
        assert_eq!(out, want);

        // Links only in tool messages and tool calls: nothing to restore, the bytes go on as they are.
        let mut only_tools = body;
        only_tools["messages"].as_array_mut().unwrap().remove(1);
        assert_eq!(
            restore_request(Endpoint::ChatCompletions, only_tools.to_string().as_bytes()),
            None
        );
    }

    #[test]
    fn function_call_items_and_their_outputs_are_left_alone() {
        let link = rewritten();
        let call = json!({"code": link}).to_string();
        let body = json!({"input": [
            {"role": "user", "content": "fibonacci?"},
            {"type": "function_call", "call_id": "call_1", "name": "python", "arguments": call},
            {"type": "function_call_output", "call_id": "call_1", "output": link},
            {"type": "function_call_output", "call_id": "call_1",
             "output": [{"type": "input_text", "text": link}]},
        ]});
        assert_eq!(restore_request(Endpoint::Responses, body.to_string().as_bytes()), None);

        let mut with_answer = body.clone();
        with_answer["input"].as_array_mut().unwrap().push(json!({
            "role": "assistant", "content": [{"type": "output_text", "text": link}]
        }));
        let (out, n) =
            restore_request(Endpoint::Responses, with_answer.to_string().as_bytes()).unwrap();
        assert_eq!(n, 1);
        let out: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(out["input"][4]["content"][0]["text"], ANSWER);
        assert_eq!(out["input"].as_array().unwrap()[..4], body["input"].as_array().unwrap()[..]);
    }
}
