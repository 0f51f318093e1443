//! The way back on request bodies: earlier answers that a client sends as history get every
//! replacement sandgate made turned back into the original markdown (with [`restore`]), so the model
//! never sees links or iframes. Only links this sandgate signed are expanded, and at most `budget`
//! bytes of hidden markdown per request (see [`restore_counted`]).
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
use crate::rewrite::{collect_cells, restore_counted, Cells, Options};

/// Where the cells of the history go, and the options that decide what a Python block is.
pub(super) type Collect<'a> = Option<(&'a Arc<Options>, &'a mut Cells)>;

/// See [`super::restore_request`].
pub(super) fn restore_request(
    endpoint: Endpoint,
    opts: &Options,
    body: &[u8],
    budget: usize,
) -> Option<(Vec<u8>, usize)> {
    restore_request_collecting(endpoint, opts, body, budget, None)
}

/// See [`super::restore_request_with_cells`].
pub(super) fn restore_request_collecting(
    endpoint: Endpoint,
    opts: &Options,
    body: &[u8],
    budget: usize,
    collect: Collect<'_>,
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
    let mut restore = Restore { opts, budget, restored: 0, collect };
    match endpoint {
        Endpoint::ChatCompletions => {
            let messages = value.get_mut("messages")?.as_array_mut()?;
            for message in messages.iter_mut().filter(|m| is_assistant(m)) {
                restore.content(message.get_mut("content"), &["text"]);
            }
        }
        Endpoint::Responses => {
            let input = value.get_mut("input")?.as_array_mut()?;
            for item in input.iter_mut().filter(|m| is_assistant(m)) {
                let kinds = ["output_text", "input_text", "text"];
                restore.content(item.get_mut("content"), &kinds);
            }
        }
        Endpoint::Completions => {
            // A prompt is no answer of the model's: no cells from it.
            restore.collect = None;
            match value.get_mut("prompt")? {
                Value::Array(prompts) => {
                    for prompt in prompts {
                        restore.text(prompt);
                    }
                }
                prompt => restore.text(prompt),
            }
        }
    }
    if restore.restored == 0 {
        return None;
    }
    let out = serde_json::to_vec(&value).ok()?;
    Some((out, restore.restored))
}

fn is_assistant(message: &Value) -> bool {
    message.get("role").and_then(Value::as_str) == Some("assistant")
}

/// The texts of one request, restored under one budget.
struct Restore<'a> {
    opts: &'a Options,
    /// Bytes of hidden markdown that may still be inflated.
    budget: usize,
    /// How many texts changed.
    restored: usize,
    collect: Collect<'a>,
}

impl Restore<'_> {
    /// Restores a content that is a string, or the `text` of its parts whose type is in `kinds`.
    fn content(&mut self, content: Option<&mut Value>, kinds: &[&str]) {
        match content {
            Some(Value::Array(parts)) => {
                for part in parts {
                    let kind = part.get("type").and_then(Value::as_str);
                    if kind.is_some_and(|k| kinds.contains(&k)) {
                        if let Some(text) = part.get_mut("text") {
                            self.text(text);
                        }
                    }
                }
            }
            Some(text) => self.text(text),
            None => {}
        }
    }

    /// Restores `text` if it is a string, counting it when it changed; then collects its cells.
    fn text(&mut self, text: &mut Value) {
        if let Value::String(text) = text {
            let (new, n) = restore_counted(self.opts, text, &mut self.budget);
            if n > 0 {
                let new = new.into_owned();
                if new != *text {
                    *text = new;
                    self.restored += 1;
                }
            }
            if let Some((opts, cells)) = &mut self.collect {
                collect_cells(opts, text, cells);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::rewrite::{rewrite, Options};

    const ANSWER: &str = "Run this:\n\n```python\nprint(6765)\n```\n";

    fn restore(endpoint: Endpoint, body: &Value) -> Option<(Vec<u8>, usize)> {
        let body = body.to_string();
        restore_request(endpoint, &Options::default(), body.as_bytes(), usize::MAX)
    }

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
        let (out, n) = restore(Endpoint::ChatCompletions, &body).unwrap();
        assert_eq!(n, 1);
        let out: Value = serde_json::from_slice(&out).unwrap();
        let mut want = body.clone();
        want["messages"][1]["content"] = json!(ANSWER);
        assert_eq!(out, want);

        // Links only in tool messages and tool calls: nothing to restore, the bytes go on as they are.
        let mut only_tools = body;
        only_tools["messages"].as_array_mut().unwrap().remove(1);
        assert_eq!(restore(Endpoint::ChatCompletions, &only_tools), None);
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
        assert_eq!(restore(Endpoint::Responses, &body), None);

        let mut with_answer = body.clone();
        with_answer["input"].as_array_mut().unwrap().push(json!({
            "role": "assistant", "content": [{"type": "output_text", "text": link}]
        }));
        let (out, n) = restore(Endpoint::Responses, &with_answer).unwrap();
        assert_eq!(n, 1);
        let out: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(out["input"][4]["content"][0]["text"], ANSWER);
        assert_eq!(out["input"].as_array().unwrap()[..4], body["input"].as_array().unwrap()[..]);
    }
}
