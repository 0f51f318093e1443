//! OpenAI API shapes for tests: answers the scripted upstream sends (JSON and SSE for Chat
//! Completions, legacy Completions and Responses) built from original markdown texts, and parsers that
//! take the text back out of what a client received.

use std::time::Duration;

use sandgate::demo::shapes::{sse_text, Answer, Choice};
use serde_json::{json, Value};

use super::{Recorded, Reply};

/// Markdown answers with Python blocks, non-ASCII text and a block inside a list item.
pub const ORIGINALS: [&str; 2] = [
    "Here is a bar chart:\n\n```python\nimport plotly.express as px\n\
     fig = px.bar(x=[\"A\", \"B\", \"C\"], y=[10, 20, 15])\nfig.show()\n```\n\n\
     Run it to see the chart. Ünïcødé ✓ and 日本語 travel too.\n",
    "Two steps:\n\n1. Compute:\n\n   ```py\n   print(sum(range(10)))\n   ```\n\
     2. Done; `inline()` and\n\n```js\nconsole.log(1)\n```\nstay as they are.\n\n\
     ```python3\nfor i in range(3):\n    print(i)\n```\n",
];

const MODEL: &str = "gpt-test";

/// Answers the OpenAI routes from [`ORIGINALS`]: JSON or a stream (61-byte network chunks, 1 ms
/// apart) as the request asks, with `n` choices.
pub fn script(r: &Recorded) -> Reply {
    let v = r.json();
    if v["model"] == "rate-limited" {
        return Reply::error(429, "Rate limit reached for gpt-test", "requests")
            .header("retry-after", "3")
            .header("x-ratelimit-remaining-requests", "0");
    }
    let stream = v["stream"].as_bool().unwrap_or(false);
    let usage = v["stream_options"]["include_usage"].as_bool().unwrap_or(false);
    let n = (v["n"].as_u64().unwrap_or(1) as usize).clamp(1, 2);
    let texts = &ORIGINALS[..n];
    let path = r.uri.split('?').next().unwrap_or("");
    let tick = Duration::from_millis(1);
    match (path, stream) {
        ("/v1/chat/completions", true) => Reply::sse(chat_sse(texts, usage), 61, tick),
        ("/v1/chat/completions", false) => Reply::json(&chat_json(texts)),
        ("/v1/completions", true) => Reply::sse(completions_sse(texts, usage), 61, tick),
        ("/v1/completions", false) => Reply::json(&completions_json(texts)),
        ("/v1/responses", true) => Reply::sse(responses_sse(ORIGINALS[0]), 61, tick),
        ("/v1/responses", false) => Reply::json(&responses_json(ORIGINALS[0])),
        ("/v1/models", _) => Reply::json(&json!({"object": "list", "data": [
            {"id": "gpt-test", "object": "model", "created": 1, "owned_by": "test"}]})),
        _ => Reply::error(404, &format!("no route {path}"), "invalid_request_error"),
    }
}

/// Splits a text into small deltas (1 to 7 characters, never inside a character).
pub fn deltas(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().map(|(i, _)| i).chain([text.len()]).peekable();
    let mut start = 0;
    let mut k = 0;
    let _ = chars.next();
    while start < text.len() {
        let n = 1 + (k * 5 + 3) % 7;
        let end = chars.by_ref().take(n).last().unwrap_or(text.len());
        out.push(&text[start..end]);
        start = end;
        k += 1;
    }
    out
}

/// The tests' answer with one choice for each text: fixed ids, model, time and usage.
fn answer<'a>(texts: &[&'a str], include_usage: bool) -> Answer<'a> {
    Answer {
        id: "test",
        model: MODEL,
        created: 1_700_000_000,
        system_fingerprint: "fp_test",
        choices: texts.iter().map(|t| Choice::new(t, deltas)).collect(),
        call: false,
        prompt_tokens: 12,
        completion_tokens: 34 / texts.len().max(1) as u64,
        include_usage,
    }
}

pub fn chat_json(texts: &[&str]) -> Value {
    answer(texts, false).chat_json()
}

pub fn chat_sse(texts: &[&str], include_usage: bool) -> String {
    sse_text(&answer(texts, include_usage).chat_events())
}

pub fn completions_json(texts: &[&str]) -> Value {
    answer(texts, false).completion_json()
}

pub fn completions_sse(texts: &[&str], include_usage: bool) -> String {
    sse_text(&answer(texts, include_usage).completion_events())
}

pub fn responses_json(text: &str) -> Value {
    answer(&[text], false).responses_json()
}

pub fn responses_sse(text: &str) -> String {
    sse_text(&answer(&[text], false).responses_events())
}

/// One parsed server-sent event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub event: Option<String>,
    pub data: String,
}

impl Event {
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.data).ok()
    }
}

/// Parses an event stream (WHATWG rules: CR, LF or CRLF line ends; comments ignored; multi-line data
/// joined with LF; an event without data is not dispatched; an unterminated last event is dropped).
pub fn parse_sse(bytes: &[u8]) -> Vec<Event> {
    let text = String::from_utf8(bytes.to_vec()).expect("the stream is not UTF-8");
    let mut events = Vec::new();
    let mut event: Option<String> = None;
    let mut data: Vec<String> = Vec::new();
    let normalized = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut lines: Vec<&str> = normalized.split('\n').collect();
    // The piece after the last line end is an unfinished line.
    lines.pop();
    for line in lines {
        if line.is_empty() {
            if !data.is_empty() {
                events.push(Event { event: event.take(), data: data.join("\n") });
            }
            event = None;
            data.clear();
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => event = Some(value.to_owned()),
            "data" => data.push(value.to_owned()),
            _ => {}
        }
    }
    events
}

/// The text of each choice of a Chat Completions stream, by index; also whether a usage chunk and
/// `[DONE]` came, and whether every finish chunk came after all of its choice's content.
pub struct ChatStream {
    pub texts: Vec<String>,
    pub usage: Option<Value>,
    pub done: bool,
    pub finish_reasons: Vec<Option<String>>,
}

pub fn chat_stream(events: &[Event], field: &str) -> ChatStream {
    let mut s =
        ChatStream { texts: Vec::new(), usage: None, done: false, finish_reasons: Vec::new() };
    for e in events {
        if e.data == "[DONE]" {
            s.done = true;
            continue;
        }
        let v = e.json().unwrap_or_else(|| panic!("event is not JSON: {:?}", e.data));
        assert!(v.get("error").is_none(), "in-band error: {v}");
        if v["usage"].is_object() {
            s.usage = Some(v["usage"].clone());
        }
        for c in v["choices"].as_array().cloned().unwrap_or_default() {
            let i = c["index"].as_u64().unwrap() as usize;
            if s.texts.len() <= i {
                s.texts.resize(i + 1, String::new());
                s.finish_reasons.resize(i + 1, None);
            }
            assert!(s.finish_reasons[i].is_none(), "content after the finish chunk of choice {i}");
            let piece =
                if field == "text" { c["text"].as_str() } else { c["delta"]["content"].as_str() };
            if let Some(p) = piece {
                s.texts[i].push_str(p);
            }
            if let Some(f) = c["finish_reason"].as_str() {
                s.finish_reasons[i] = Some(f.to_owned());
            }
        }
    }
    s
}

/// The texts of a Chat Completions (`message.content`) or Completions (`text`) JSON answer.
pub fn json_texts(v: &Value, field: &str) -> Vec<String> {
    v["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let t = if field == "text" { &c["text"] } else { &c["message"]["content"] };
            t.as_str().unwrap().to_owned()
        })
        .collect()
}

/// What a Responses stream carried: the concatenated deltas, and the full texts repeated by the
/// `.done` events and `response.completed`.
pub struct ResponsesStream {
    pub deltas: String,
    pub text_done: String,
    pub part_done: String,
    pub item_done: String,
    pub completed: String,
    pub sequence: Vec<u64>,
    pub types: Vec<String>,
}

pub fn responses_stream(events: &[Event]) -> ResponsesStream {
    let mut s = ResponsesStream {
        deltas: String::new(),
        text_done: String::new(),
        part_done: String::new(),
        item_done: String::new(),
        completed: String::new(),
        sequence: Vec::new(),
        types: Vec::new(),
    };
    for e in events {
        let v = e.json().unwrap_or_else(|| panic!("event is not JSON: {:?}", e.data));
        assert!(v.get("error").is_none(), "in-band error: {v}");
        let ty = v["type"].as_str().unwrap().to_owned();
        assert_eq!(e.event.as_deref(), Some(ty.as_str()), "event: line and type differ");
        s.sequence.push(v["sequence_number"].as_u64().unwrap());
        match ty.as_str() {
            "response.output_text.delta" => s.deltas.push_str(v["delta"].as_str().unwrap()),
            "response.output_text.done" => s.text_done = v["text"].as_str().unwrap().to_owned(),
            "response.content_part.done" => {
                s.part_done = v["part"]["text"].as_str().unwrap().to_owned()
            }
            "response.output_item.done" => {
                s.item_done = v["item"]["content"][0]["text"].as_str().unwrap().to_owned()
            }
            "response.completed" => {
                s.completed =
                    v["response"]["output"][0]["content"][0]["text"].as_str().unwrap().to_owned()
            }
            _ => {}
        }
        s.types.push(ty);
    }
    s
}

/// The text of a Responses JSON answer.
pub fn responses_text(v: &Value) -> String {
    v["output"][0]["content"][0]["text"].as_str().unwrap().to_owned()
}
