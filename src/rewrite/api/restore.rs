//! The way back on request bodies: earlier answers that a client sends as history get every
//! replacement sandgate made turned back into the original markdown (with [`restore`]), so the model
//! never sees links or iframes.
//!
//! Chat Completions: `messages[]` with role `assistant`, content a string or parts of type `text`;
//! Responses: `input[]` items with role `assistant`, content a string or parts of type
//! `output_text`, `input_text` or `text`; legacy Completions: `prompt`, a string or an array of
//! strings (token arrays are left alone).

use serde_json::Value;

use super::Endpoint;
use crate::rewrite::restore;

/// See [`super::restore_request`].
pub(super) fn restore_request(endpoint: Endpoint, body: &[u8]) -> Option<(Vec<u8>, usize)> {
    // Every replacement's URL holds `#py=`. Most requests carry no earlier answer of sandgate's, and
    // this spares them the parse (for a long conversation, most of sandgate's time on the request).
    if !super::json_may_spell(body, &[b"#py="]) {
        return None;
    }
    let mut value: Value = serde_json::from_slice(body).ok()?;
    let mut restored = 0;
    match endpoint {
        Endpoint::ChatCompletions => {
            let messages = value.get_mut("messages")?.as_array_mut()?;
            for message in messages.iter_mut().filter(|m| is_assistant(m)) {
                restore_content(message.get_mut("content"), &["text"], &mut restored);
            }
        }
        Endpoint::Responses => {
            let input = value.get_mut("input")?.as_array_mut()?;
            for item in input.iter_mut().filter(|m| is_assistant(m)) {
                let kinds = ["output_text", "input_text", "text"];
                restore_content(item.get_mut("content"), &kinds, &mut restored);
            }
        }
        Endpoint::Completions => match value.get_mut("prompt")? {
            Value::Array(prompts) => {
                for prompt in prompts {
                    restore_text(prompt, &mut restored);
                }
            }
            prompt => restore_text(prompt, &mut restored),
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
fn restore_content(content: Option<&mut Value>, kinds: &[&str], restored: &mut usize) {
    match content {
        Some(Value::Array(parts)) => {
            for part in parts {
                let kind = part.get("type").and_then(Value::as_str);
                if kind.is_some_and(|k| kinds.contains(&k)) {
                    if let Some(text) = part.get_mut("text") {
                        restore_text(text, restored);
                    }
                }
            }
        }
        Some(text) => restore_text(text, restored),
        None => {}
    }
}

/// Restores `text` if it is a string, counting it when it changed.
fn restore_text(text: &mut Value, restored: &mut usize) {
    if let Value::String(text) = text {
        let new = restore(text);
        if new != *text {
            *text = new;
            *restored += 1;
        }
    }
}
