//! The OpenAI wire shapes of a scripted answer: Chat Completions, legacy Completions and Responses,
//! whole (JSON) and streamed (the events in the order and shape the real API sends them). The demo's
//! model answers with them, and the tests' scripted upstream builds its answers with them too, so
//! sandgate is tested against the shapes it shows.
//!
//! An [`Answer`] holds what varies (ids, model, the choices' texts in the pieces they stream in,
//! whether they call the `python` tool, usage); every other field is what the real API sends.

use serde_json::{json, Value};

/// One answer of a scripted model.
#[derive(Clone, Debug)]
pub struct Answer<'a> {
    /// The distinctive part of every id: `chatcmpl-{id}`, `cmpl-{id}`, `resp_{id}`, `msg_{id}`,
    /// `fc_{id}` and `call_{id}_{choice}`.
    pub id: &'a str,
    pub model: &'a str,
    /// Seconds since the epoch.
    pub created: u64,
    pub system_fingerprint: &'a str,
    /// The choices (Chat and Completions answer with all of them, Responses with the first).
    pub choices: Vec<Choice<'a>>,
    /// The choices call the `python` tool with their text as the arguments (Chat and Responses).
    pub call: bool,
    pub prompt_tokens: u64,
    /// The completion tokens of each choice.
    pub completion_tokens: u64,
    /// A stream's chunks carry `"usage": null` and a last chunk carries the usage
    /// (`stream_options.include_usage`).
    pub include_usage: bool,
}

/// One choice: its text and the pieces it streams in (which join to the text).
#[derive(Clone, Debug)]
pub struct Choice<'a> {
    pub text: &'a str,
    pub pieces: Vec<&'a str>,
}

impl<'a> Choice<'a> {
    /// A choice whose text streams in the pieces `split` cuts it into.
    pub fn new(text: &'a str, split: impl Fn(&'a str) -> Vec<&'a str>) -> Self {
        Choice { text, pieces: split(text) }
    }
}

/// One server-sent event of a stream: its `event:` name (the Responses API names them) and data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub name: Option<&'static str>,
    pub data: String,
}

impl Event {
    /// The event as it goes on the wire, blank line included.
    pub fn to_frame(&self) -> String {
        let mut out = String::with_capacity(self.data.len() + 40);
        if let Some(name) = self.name {
            out.push_str("event: ");
            out.push_str(name);
            out.push('\n');
        }
        out.push_str("data: ");
        out.push_str(&self.data);
        out.push_str("\n\n");
        out
    }
}

/// A whole stream as text: every event's frame.
pub fn sse_text(events: &[Event]) -> String {
    events.iter().map(Event::to_frame).collect()
}

/// The `data: [DONE]` that ends Chat and Completions streams.
fn done() -> Event {
    Event { name: None, data: "[DONE]".to_owned() }
}

impl Answer<'_> {
    fn completion_total(&self) -> u64 {
        self.completion_tokens * self.choices.len() as u64
    }

    fn usage(&self) -> Value {
        let completion = self.completion_total();
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        })
    }

    /// The id of choice `i`'s call of `python`.
    fn call_id(&self, i: usize) -> String {
        format!("call_{}_{i}", self.id)
    }

    fn finish_reason(&self) -> &'static str {
        if self.call {
            "tool_calls"
        } else {
            "stop"
        }
    }

    /// The choices' pieces round-robin, as several choices arrive from the real API.
    fn interleaved(&self) -> Vec<(usize, &str)> {
        let longest = self.choices.iter().map(|c| c.pieces.len()).max().unwrap_or(0);
        let mut out = Vec::new();
        for j in 0..longest {
            for (i, choice) in self.choices.iter().enumerate() {
                if let Some(piece) = choice.pieces.get(j) {
                    out.push((i, *piece));
                }
            }
        }
        out
    }

    /// A `chat.completion`.
    pub fn chat_json(&self) -> Value {
        let choices: Vec<Value> = self
            .choices
            .iter()
            .enumerate()
            .map(|(i, choice)| {
                let message = if self.call {
                    let call = json!({"id": self.call_id(i), "type": "function",
                                      "function": {"name": "python", "arguments": choice.text}});
                    json!({"role": "assistant", "content": null, "refusal": null,
                           "tool_calls": [call]})
                } else {
                    json!({"role": "assistant", "content": choice.text, "refusal": null})
                };
                json!({"index": i, "message": message, "logprobs": null,
                       "finish_reason": self.finish_reason()})
            })
            .collect();
        json!({
            "id": format!("chatcmpl-{}", self.id),
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": self.usage(),
            "system_fingerprint": self.system_fingerprint,
        })
    }

    /// The chunks of a chat stream: each choice opens with its role (a call with its id and name),
    /// the deltas interleave round-robin, each choice ends with its finish reason, then the usage
    /// chunk (when asked for) and `[DONE]`.
    pub fn chat_events(&self) -> Vec<Event> {
        let id = format!("chatcmpl-{}", self.id);
        let chunk = |choice: Value, usage: Option<Value>| {
            let mut v = json!({
                "id": id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "system_fingerprint": self.system_fingerprint,
                "choices": choice,
            });
            if self.include_usage {
                v["usage"] = usage.unwrap_or(Value::Null);
            }
            Event { name: None, data: v.to_string() }
        };
        let delta_chunk = |i: usize, delta: Value, finish: Value| {
            chunk(
                json!([{"index": i, "delta": delta, "logprobs": null, "finish_reason": finish}]),
                None,
            )
        };
        let mut out = Vec::new();
        for i in 0..self.choices.len() {
            let delta = if self.call {
                json!({"role": "assistant", "content": null, "refusal": null, "tool_calls": [
                    {"index": 0, "id": self.call_id(i), "type": "function",
                     "function": {"name": "python", "arguments": ""}}]})
            } else {
                json!({"role": "assistant", "content": "", "refusal": null})
            };
            out.push(delta_chunk(i, delta, Value::Null));
        }
        for (i, piece) in self.interleaved() {
            let delta = if self.call {
                json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
            } else {
                json!({"content": piece})
            };
            out.push(delta_chunk(i, delta, Value::Null));
        }
        for i in 0..self.choices.len() {
            out.push(delta_chunk(i, json!({}), json!(self.finish_reason())));
        }
        if self.include_usage {
            out.push(chunk(json!([]), Some(self.usage())));
        }
        out.push(done());
        out
    }

    /// A legacy `text_completion`.
    pub fn completion_json(&self) -> Value {
        let choices: Vec<Value> = self
            .choices
            .iter()
            .enumerate()
            .map(|(i, c)| json!({"text": c.text, "index": i, "logprobs": null, "finish_reason": "stop"}))
            .collect();
        json!({
            "id": format!("cmpl-{}", self.id),
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": self.usage(),
        })
    }

    /// The chunks of a legacy completion stream: the pieces round-robin, each choice's finish, the
    /// usage chunk (when asked for) and `[DONE]`.
    pub fn completion_events(&self) -> Vec<Event> {
        let id = format!("cmpl-{}", self.id);
        let chunk = |choices: Value, usage: Option<Value>| {
            let mut v = json!({
                "id": id,
                "object": "text_completion",
                "created": self.created,
                "model": self.model,
                "choices": choices,
            });
            if self.include_usage {
                v["usage"] = usage.unwrap_or(Value::Null);
            }
            Event { name: None, data: v.to_string() }
        };
        let text_chunk = |i: usize, text: &str, finish: Value| {
            chunk(
                json!([{"text": text, "index": i, "logprobs": null, "finish_reason": finish}]),
                None,
            )
        };
        let mut out: Vec<Event> = self
            .interleaved()
            .into_iter()
            .map(|(i, piece)| text_chunk(i, piece, Value::Null))
            .collect();
        for i in 0..self.choices.len() {
            out.push(text_chunk(i, "", json!("stop")));
        }
        if self.include_usage {
            out.push(chunk(json!([]), Some(self.usage())));
        }
        out.push(done());
        out
    }

    fn first_text(&self) -> &str {
        self.choices.first().map_or("", |c| c.text)
    }

    fn first_pieces(&self) -> &[&str] {
        self.choices.first().map_or(&[], |c| c.pieces.as_slice())
    }

    fn response_object(&self, status: &str, output: Value) -> Value {
        let usage = if status == "completed" {
            json!({
                "input_tokens": self.prompt_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": self.completion_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": self.prompt_tokens + self.completion_tokens,
            })
        } else {
            Value::Null
        };
        json!({
            "id": format!("resp_{}", self.id),
            "object": "response",
            "created_at": self.created,
            "status": status,
            "error": null,
            "incomplete_details": null,
            "instructions": null,
            "max_output_tokens": null,
            "model": self.model,
            "output": output,
            "parallel_tool_calls": true,
            "previous_response_id": null,
            "reasoning": {"effort": null, "summary": null},
            "store": true,
            "temperature": 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": usage,
            "user": null,
            "metadata": {},
        })
    }

    fn message_item(&self, text: &str, status: &str) -> Value {
        let content = if status == "in_progress" {
            json!([])
        } else {
            json!([{"type": "output_text", "text": text, "annotations": [], "logprobs": []}])
        };
        json!({
            "id": format!("msg_{}", self.id),
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": content,
        })
    }

    /// A Responses `function_call` item calling `python` with `arguments`.
    fn call_item(&self, arguments: &str, status: &str) -> Value {
        json!({
            "id": format!("fc_{}", self.id),
            "type": "function_call",
            "status": status,
            "arguments": arguments,
            "call_id": self.call_id(0),
            "name": "python",
        })
    }

    /// A completed Responses `response` (of the first choice).
    pub fn responses_json(&self) -> Value {
        let item = if self.call {
            self.call_item(self.first_text(), "completed")
        } else {
            self.message_item(self.first_text(), "completed")
        };
        self.response_object("completed", json!([item]))
    }

    /// The events of a Responses stream (of the first choice), each with its `type` and
    /// `sequence_number`: the message item and its text in deltas, or with [`Answer::call`] the
    /// `function_call` item and its arguments in deltas, then the done events.
    pub fn responses_events(&self) -> Vec<Event> {
        let text = self.first_text();
        let mut out = Vec::new();
        let mut seq = 0u64;
        let mut event = |name: &'static str, mut v: Value| {
            v["type"] = json!(name);
            v["sequence_number"] = json!(seq);
            seq += 1;
            out.push(Event { name: Some(name), data: v.to_string() });
        };
        let in_progress = json!({"response": self.response_object("in_progress", json!([]))});
        event("response.created", in_progress.clone());
        event("response.in_progress", in_progress);
        if self.call {
            let item_id = format!("fc_{}", self.id);
            event(
                "response.output_item.added",
                json!({"output_index": 0, "item": self.call_item("", "in_progress")}),
            );
            for piece in self.first_pieces() {
                event(
                    "response.function_call_arguments.delta",
                    json!({"item_id": item_id, "output_index": 0, "delta": piece}),
                );
            }
            event(
                "response.function_call_arguments.done",
                json!({"item_id": item_id, "output_index": 0, "name": "python", "arguments": text}),
            );
            event(
                "response.output_item.done",
                json!({"output_index": 0, "item": self.call_item(text, "completed")}),
            );
        } else {
            let item_id = format!("msg_{}", self.id);
            let part = |text: &str| {
                json!({"item_id": item_id, "output_index": 0, "content_index": 0,
                       "part": {"type": "output_text", "text": text, "annotations": [],
                                "logprobs": []}})
            };
            event(
                "response.output_item.added",
                json!({"output_index": 0, "item": self.message_item("", "in_progress")}),
            );
            event("response.content_part.added", part(""));
            for piece in self.first_pieces() {
                event(
                    "response.output_text.delta",
                    json!({"item_id": item_id, "output_index": 0, "content_index": 0,
                           "delta": piece, "logprobs": []}),
                );
            }
            event(
                "response.output_text.done",
                json!({"item_id": item_id, "output_index": 0, "content_index": 0,
                       "text": text, "logprobs": []}),
            );
            event("response.content_part.done", part(text));
            event(
                "response.output_item.done",
                json!({"output_index": 0, "item": self.message_item(text, "completed")}),
            );
        }
        event("response.completed", json!({"response": self.responses_json()}));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(texts: &[&'static str], call: bool) -> Answer<'static> {
        Answer {
            id: "t1",
            model: "m",
            created: 7,
            system_fingerprint: "fp",
            choices: texts
                .iter()
                .map(|t| Choice::new(t, |t: &'static str| t.split_inclusive(' ').collect()))
                .collect(),
            call,
            prompt_tokens: 3,
            completion_tokens: 4,
            include_usage: true,
        }
    }

    fn data(events: &[Event]) -> Vec<Value> {
        events
            .iter()
            .filter(|e| e.data != "[DONE]")
            .map(|e| serde_json::from_str(&e.data).unwrap())
            .collect()
    }

    #[test]
    fn a_chat_stream_joins_to_its_json_and_ends_with_usage_and_done() {
        let a = answer(&["one two three", "four five"], false);
        let events = a.chat_events();
        assert_eq!(events.last().unwrap().data, "[DONE]");
        let chunks = data(&events);
        let mut texts = [String::new(), String::new()];
        for c in &chunks {
            for choice in c["choices"].as_array().unwrap() {
                let i = choice["index"].as_u64().unwrap() as usize;
                texts[i] += choice["delta"]["content"].as_str().unwrap_or("");
            }
        }
        let json = a.chat_json();
        assert_eq!(texts[0], json["choices"][0]["message"]["content"]);
        assert_eq!(texts[1], json["choices"][1]["message"]["content"]);
        // The second piece of choice 0 comes after the first of choice 1: round-robin.
        assert_eq!(chunks[2]["choices"][0]["delta"]["content"], "one ");
        assert_eq!(chunks[3]["choices"][0]["index"], 1);
        let last = chunks.last().unwrap();
        assert_eq!(last["usage"]["total_tokens"], 3 + 4 * 2);
        assert!(chunks[..chunks.len() - 1].iter().all(|c| c["usage"].is_null()));
    }

    #[test]
    fn a_call_streams_its_arguments_and_finishes_with_tool_calls() {
        let a = answer(&["{\"code\": \"print(1)\"}"], true);
        let chunks = data(&a.chat_events());
        let args: String = chunks
            .iter()
            .filter_map(|c| {
                c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()
            })
            .collect();
        assert_eq!(args, "{\"code\": \"print(1)\"}");
        assert_eq!(a.chat_json()["choices"][0]["finish_reason"], "tool_calls");
        let events = a.responses_events();
        let done = events.iter().find(|e| e.name == Some("response.function_call_arguments.done"));
        assert!(done.unwrap().data.contains("print(1)"));
    }

    #[test]
    fn a_responses_stream_numbers_its_events_and_completes_with_the_json() {
        let a = answer(&["a b c"], false);
        let events = a.responses_events();
        let values = data(&events);
        for (i, (e, v)) in events.iter().zip(&values).enumerate() {
            assert_eq!(v["sequence_number"], i as u64);
            assert_eq!(Some(v["type"].as_str().unwrap()), e.name);
        }
        assert_eq!(values.last().unwrap()["response"], a.responses_json());
        assert!(sse_text(&events).starts_with("event: response.created\ndata: {"));
    }

    #[test]
    fn a_completion_stream_joins_to_its_json() {
        let a = answer(&["x y", "z"], false);
        let chunks = data(&a.completion_events());
        let joined: String = chunks
            .iter()
            .flat_map(|c| c["choices"].as_array().unwrap().clone())
            .filter(|c| c["index"] == 0)
            .map(|c| c["text"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(joined, a.completion_json()["choices"][0]["text"]);
    }
}
