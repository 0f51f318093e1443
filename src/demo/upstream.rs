//! The scripted OpenAI-compatible upstream of `sandgate demo`: a hyper server on a loopback port
//! that answers like a model would, with no network and no key.
//!
//! It answers `POST /v1/chat/completions` (JSON, or `stream: true` as server-sent events with small
//! deltas a few milliseconds apart, honouring `n` and `stream_options.include_usage`),
//! `POST /v1/completions` and `POST /v1/responses` (JSON and streams, one choice), and
//! `GET /v1/models`. The text comes from [`super::answers::answer_for`] applied to the last user
//! message. Anything else gets an OpenAI-shaped error.
//!
//! Tools: when a chat or Responses request offers a tool named `python` and the last user message
//! asks for it ([`super::answers::python_call_for`]), the answer is a call of `python` instead of
//! text (`tool_calls`, streamed as argument deltas; a Responses `function_call` item, streamed as
//! `response.function_call_arguments.*` events). When the request's last message is a tool result
//! (chat role `tool`, a Responses `function_call_output` item), the answer is
//! [`super::answers::answer_to_tool_result`] of it.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use super::answers::{answer_for, answer_to_tool_result, python_call_for};

/// The model name the scripted upstream lists and answers as when a request names none.
pub const DEMO_MODEL: &str = "sandgate-demo";

/// The largest request body the scripted upstream reads.
const BODY_LIMIT: usize = 8 << 20;

/// The most choices one request may ask for with `n`.
const MAX_CHOICES: u64 = 8;

/// How the scripted upstream paces its streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pace {
    /// The pause before the first event of a stream, as a model takes to start.
    pub first: Duration,
    /// The pause between two events.
    pub between: Duration,
}

impl Default for Pace {
    /// Roughly a fast model: 200 ms to the first token, then a small delta every 15 ms.
    fn default() -> Self {
        Pace { first: Duration::from_millis(200), between: Duration::from_millis(15) }
    }
}

impl Pace {
    /// No pauses at all, for tests.
    pub const INSTANT: Pace = Pace { first: Duration::ZERO, between: Duration::ZERO };
}

/// Stops the scripted upstream when asked, or when dropped.
#[derive(Debug)]
pub struct ShutdownHandle {
    trigger: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ShutdownHandle {
    /// Stops accepting, closes every connection and waits for the server task to end.
    pub async fn shutdown(mut self) {
        if let Some(trigger) = self.trigger.take() {
            let _ = trigger.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ShutdownHandle {
    fn drop(&mut self) {
        if let Some(trigger) = self.trigger.take() {
            let _ = trigger.send(());
        }
    }
}

/// Starts the scripted upstream on `127.0.0.1:0` with the default pace; its base URL is
/// `http://{addr}/v1`.
pub async fn start_upstream() -> io::Result<(SocketAddr, ShutdownHandle)> {
    start_upstream_with(Pace::default()).await
}

/// Starts the scripted upstream on `127.0.0.1:0` with the given pace.
pub async fn start_upstream_with(pace: Pace) -> io::Result<(SocketAddr, ShutdownHandle)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (trigger, mut stop) = oneshot::channel::<()>();
    let script = Arc::new(Script { pace, ids: AtomicU64::new(1) });
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                _ = &mut stop => break,
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let script = script.clone();
                    connections.spawn(async move {
                        let service = service_fn(move |req| {
                            let script = script.clone();
                            async move { Ok::<_, Infallible>(script.answer(req).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                    while connections.try_join_next().is_some() {}
                }
            }
        }
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    });
    Ok((addr, ShutdownHandle { trigger: Some(trigger), task: Some(task) }))
}

/// Splits a text into small deltas, as a model streams tokens: each piece is a word with the
/// whitespace before it, long words cut into pieces of at most eight characters.
pub fn deltas(text: &str) -> Vec<&str> {
    const MAX_CHARS: usize = 8;
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = 0;
    let mut prev_space = false;
    for (i, c) in text.char_indices() {
        let space = c.is_whitespace();
        // A piece is a word with the whitespace before it: cut where whitespace follows a word.
        let gap_starts = space && !prev_space;
        if i > start && (gap_starts || chars >= MAX_CHARS) {
            out.push(&text[start..i]);
            start = i;
            chars = 0;
        }
        chars += 1;
        prev_space = space;
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

/// The text of the last user message of a request to one of the three generating routes.
pub fn last_user_text(path: &str, request: &Value) -> Option<String> {
    match path {
        "/v1/chat/completions" => {
            let messages = request.get("messages")?.as_array()?;
            let last = messages
                .iter()
                .rev()
                .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))?;
            Some(content_text(last.get("content")?))
        }
        "/v1/completions" => match request.get("prompt")? {
            Value::String(s) => Some(s.clone()),
            Value::Array(items) => items.last().and_then(Value::as_str).map(str::to_owned),
            _ => None,
        },
        "/v1/responses" => match request.get("input")? {
            Value::String(s) => Some(s.clone()),
            Value::Array(items) => {
                let last = items.iter().rev().find(|m| {
                    m.get("role").and_then(Value::as_str) == Some("user")
                        || m.get("type").and_then(Value::as_str) == Some("input_text")
                })?;
                match last.get("content") {
                    Some(content) => Some(content_text(content)),
                    None => last.get("text").and_then(Value::as_str).map(str::to_owned),
                }
            }
            _ => None,
        },
        _ => None,
    }
}

/// Whether a chat or Responses request offers a tool named `python` (`function.name` in Chat
/// Completions, `name` in the Responses API).
pub fn offers_python(request: &Value) -> bool {
    let Some(tools) = request.get("tools").and_then(Value::as_array) else { return false };
    tools.iter().any(|t| {
        t.get("name").and_then(Value::as_str) == Some("python")
            || t.pointer("/function/name").and_then(Value::as_str) == Some("python")
    })
}

/// The text of the tool result a request ends with: its last chat message with role `tool`, or its
/// last Responses `input` item of type `function_call_output`; `None` when it ends otherwise.
pub fn last_tool_result(path: &str, request: &Value) -> Option<String> {
    match path {
        "/v1/chat/completions" => {
            let last = request.get("messages")?.as_array()?.last()?;
            (last.get("role").and_then(Value::as_str) == Some("tool"))
                .then(|| last.get("content").map(content_text).unwrap_or_default())
        }
        "/v1/responses" => {
            let last = request.get("input")?.as_array()?.last()?;
            (last.get("type").and_then(Value::as_str) == Some("function_call_output"))
                .then(|| last.get("output").map(content_text).unwrap_or_default())
        }
        _ => None,
    }
}

/// The text of a message's content: a string, or the text parts of an array joined by newlines.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

type Body = UnsyncBoxBody<Bytes, Infallible>;

struct Script {
    pace: Pace,
    ids: AtomicU64,
}

/// What one generating request asked for.
struct Ask {
    id: String,
    created: u64,
    model: String,
    /// The answer's text, or with [`Ask::call`] the call's arguments (JSON text).
    text: String,
    /// The answer is a call of the `python` tool.
    call: bool,
    prompt_tokens: u64,
    n: u64,
    stream: bool,
    include_usage: bool,
}

impl Script {
    async fn answer(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_owned();
        let method = req.method().clone();
        match (method, path.as_str()) {
            (Method::GET, "/v1/models") => {
                json_response(StatusCode::OK, &json!({"object": "list", "data": [model_object()]}))
            }
            (Method::GET, p) if p.strip_prefix("/v1/models/") == Some(DEMO_MODEL) => {
                json_response(StatusCode::OK, &model_object())
            }
            (Method::GET, p) if p.starts_with("/v1/models/") => error_response(
                StatusCode::NOT_FOUND,
                &format!("The model '{}' does not exist", &p["/v1/models/".len()..]),
                "invalid_request_error",
                Some("model_not_found"),
            ),
            (Method::POST, "/v1/chat/completions" | "/v1/completions" | "/v1/responses") => {
                self.generate(&path, req.into_body()).await
            }
            (_, "/v1/models" | "/v1/chat/completions" | "/v1/completions" | "/v1/responses") => {
                error_response(
                    StatusCode::METHOD_NOT_ALLOWED,
                    &format!("{} is not allowed on {path}", req.method()),
                    "invalid_request_error",
                    None,
                )
            }
            _ => error_response(
                StatusCode::NOT_FOUND,
                &format!("the demo upstream has no route {path}"),
                "invalid_request_error",
                Some("unknown_url"),
            ),
        }
    }

    async fn generate(&self, path: &str, body: Incoming) -> Response<Body> {
        let bytes = match Limited::new(body, BODY_LIMIT).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    &format!("cannot read the request body: {e}"),
                    "invalid_request_error",
                    None,
                )
            }
        };
        let request: Value = match serde_json::from_slice(&bytes) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) | Err(_) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    "the request body is not a JSON object",
                    "invalid_request_error",
                    None,
                )
            }
        };
        let tool_result = last_tool_result(path, &request);
        let Some(prompt) = last_user_text(path, &request).or_else(|| tool_result.clone()) else {
            let what = match path {
                "/v1/chat/completions" => "messages: no user message",
                "/v1/completions" => "prompt: missing",
                _ => "input: missing",
            };
            return error_response(StatusCode::BAD_REQUEST, what, "invalid_request_error", None);
        };
        let (text, call) = match (&tool_result, python_call_for(&prompt)) {
            (Some(result), _) => (answer_to_tool_result(result), false),
            (None, Some(code)) if offers_python(&request) => {
                (json!({"code": code}).to_string(), true)
            }
            (None, _) => (answer_for(&prompt).to_owned(), false),
        };
        let n = match request.get("n") {
            None | Some(Value::Null) => 1,
            Some(v) => match v.as_u64() {
                Some(n) if (1..=MAX_CHOICES).contains(&n) => n,
                _ => {
                    return error_response(
                        StatusCode::BAD_REQUEST,
                        &format!("n: must be an integer from 1 to {MAX_CHOICES}"),
                        "invalid_request_error",
                        Some("invalid_value"),
                    )
                }
            },
        };
        let serial = self.ids.fetch_add(1, Ordering::Relaxed);
        let ask = Ask {
            id: format!("{serial:08x}"),
            created: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            model: request
                .get("model")
                .and_then(Value::as_str)
                .filter(|m| !m.is_empty())
                .unwrap_or(DEMO_MODEL)
                .to_owned(),
            text,
            call,
            prompt_tokens: tokens(&prompt),
            // Only Chat Completions answers with several choices here.
            n: if path == "/v1/chat/completions" { n } else { 1 },
            stream: request.get("stream").and_then(Value::as_bool) == Some(true),
            include_usage: request
                .pointer("/stream_options/include_usage")
                .and_then(Value::as_bool)
                == Some(true),
        };
        match (path, ask.stream) {
            ("/v1/chat/completions", false) => json_response(StatusCode::OK, &chat_json(&ask)),
            ("/v1/chat/completions", true) => self.sse(chat_events(&ask), false),
            ("/v1/completions", false) => json_response(StatusCode::OK, &completion_json(&ask)),
            ("/v1/completions", true) => self.sse(completion_events(&ask), false),
            (_, false) => json_response(StatusCode::OK, &responses_json(&ask)),
            (_, true) => self.sse(responses_events(&ask), true),
        }
    }

    /// A stream of events, paced; `named` events carry an `event:` line (the Responses API).
    fn sse(&self, events: Vec<(Option<&'static str>, String)>, named: bool) -> Response<Body> {
        let pace = self.pace;
        let frames = events.into_iter().map(move |(name, data)| {
            let mut text = String::with_capacity(data.len() + 32);
            if let (true, Some(name)) = (named, name) {
                text.push_str("event: ");
                text.push_str(name);
                text.push('\n');
            }
            text.push_str("data: ");
            text.push_str(&data);
            text.push_str("\n\n");
            Bytes::from(text)
        });
        let stream =
            futures_util::stream::unfold((frames, true), move |(mut frames, first)| async move {
                let frame = frames.next()?;
                let pause = if first { pace.first } else { pace.between };
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
                Some((Ok::<_, Infallible>(Frame::data(frame)), (frames, false)))
            });
        let mut resp = Response::new(BodyExt::boxed_unsync(StreamBody::new(stream)));
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream; charset=utf-8"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        resp
    }
}

fn model_object() -> Value {
    json!({"id": DEMO_MODEL, "object": "model", "created": 1_767_225_600u64, "owned_by": "sandgate"})
}

/// A rough token count: one token per four bytes, at least one.
fn tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4).max(1)
}

fn usage_chat(ask: &Ask) -> Value {
    let completion = tokens(&ask.text) * ask.n;
    json!({
        "prompt_tokens": ask.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": ask.prompt_tokens + completion,
    })
}

/// The id of choice `i`'s call of `python`.
fn call_id(ask: &Ask, i: u64) -> String {
    format!("call_demo{}_{i}", ask.id)
}

fn chat_json(ask: &Ask) -> Value {
    let choices: Vec<Value> = (0..ask.n)
        .map(|i| {
            let (message, finish) = if ask.call {
                let call = json!({"id": call_id(ask, i), "type": "function",
                                  "function": {"name": "python", "arguments": ask.text}});
                let message = json!({"role": "assistant", "content": null, "refusal": null,
                                     "tool_calls": [call]});
                (message, "tool_calls")
            } else {
                (json!({"role": "assistant", "content": ask.text, "refusal": null}), "stop")
            };
            json!({"index": i, "message": message, "logprobs": null, "finish_reason": finish})
        })
        .collect();
    json!({
        "id": format!("chatcmpl-demo{}", ask.id),
        "object": "chat.completion",
        "created": ask.created,
        "model": ask.model,
        "choices": choices,
        "usage": usage_chat(ask),
        "system_fingerprint": "fp_sandgate_demo",
    })
}

/// The chunks of a chat stream: each choice opens with its role, deltas interleave round-robin as
/// several choices arrive from the real API, each choice ends with its finish reason, then the usage
/// chunk (when asked for) and `[DONE]`.
fn chat_events(ask: &Ask) -> Vec<(Option<&'static str>, String)> {
    let id = format!("chatcmpl-demo{}", ask.id);
    let chunk = |choices: Value, usage: Option<Value>| {
        let mut v = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": ask.created,
            "model": ask.model,
            "system_fingerprint": "fp_sandgate_demo",
            "choices": choices,
        });
        if ask.include_usage {
            v["usage"] = usage.unwrap_or(Value::Null);
        }
        (None, v.to_string())
    };
    let pieces = deltas(&ask.text);
    let mut out = Vec::with_capacity((pieces.len() + 3) * ask.n as usize);
    for i in 0..ask.n {
        // A call opens with its id and name, as the real API streams one, and no content.
        let delta = if ask.call {
            json!({"role": "assistant", "content": null, "refusal": null, "tool_calls": [
                {"index": 0, "id": call_id(ask, i), "type": "function",
                 "function": {"name": "python", "arguments": ""}}]})
        } else {
            json!({"role": "assistant", "content": "", "refusal": null})
        };
        out.push(chunk(
            json!([{"index": i, "delta": delta, "logprobs": null, "finish_reason": null}]),
            None,
        ));
    }
    for piece in &pieces {
        for i in 0..ask.n {
            let delta = if ask.call {
                json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
            } else {
                json!({"content": piece})
            };
            out.push(chunk(
                json!([{"index": i, "delta": delta, "logprobs": null, "finish_reason": null}]),
                None,
            ));
        }
    }
    let finish = if ask.call { "tool_calls" } else { "stop" };
    for i in 0..ask.n {
        out.push(chunk(
            json!([{"index": i, "delta": {}, "logprobs": null, "finish_reason": finish}]),
            None,
        ));
    }
    if ask.include_usage {
        out.push(chunk(json!([]), Some(usage_chat(ask))));
    }
    out.push((None, "[DONE]".to_owned()));
    out
}

fn completion_json(ask: &Ask) -> Value {
    json!({
        "id": format!("cmpl-demo{}", ask.id),
        "object": "text_completion",
        "created": ask.created,
        "model": ask.model,
        "choices": [{"text": &ask.text, "index": 0, "logprobs": null, "finish_reason": "stop"}],
        "usage": usage_chat(ask),
    })
}

fn completion_events(ask: &Ask) -> Vec<(Option<&'static str>, String)> {
    let id = format!("cmpl-demo{}", ask.id);
    let chunk = |text: &str, finish: Value| {
        let mut v = json!({
            "id": id,
            "object": "text_completion",
            "created": ask.created,
            "model": ask.model,
            "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": finish}],
        });
        if ask.include_usage {
            v["usage"] = Value::Null;
        }
        (None, v.to_string())
    };
    let mut out: Vec<_> =
        deltas(&ask.text).into_iter().map(|piece| chunk(piece, Value::Null)).collect();
    out.push(chunk("", json!("stop")));
    if ask.include_usage {
        let v = json!({
            "id": id,
            "object": "text_completion",
            "created": ask.created,
            "model": ask.model,
            "choices": [],
            "usage": usage_chat(ask),
        });
        out.push((None, v.to_string()));
    }
    out.push((None, "[DONE]".to_owned()));
    out
}

fn message_item(ask: &Ask, text: &str, status: &str) -> Value {
    let content = if status == "in_progress" {
        json!([])
    } else {
        json!([{"type": "output_text", "text": text, "annotations": [], "logprobs": []}])
    };
    json!({
        "id": format!("msg_demo{}", ask.id),
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    })
}

fn response_object(ask: &Ask, status: &str, output: Value) -> Value {
    let completed = status == "completed";
    let output_tokens = tokens(&ask.text);
    json!({
        "id": format!("resp_demo{}", ask.id),
        "object": "response",
        "created_at": ask.created,
        "status": status,
        "error": null,
        "incomplete_details": null,
        "model": ask.model,
        "output": output,
        "parallel_tool_calls": true,
        "tool_choice": "auto",
        "tools": [],
        "usage": if completed {
            json!({
                "input_tokens": ask.prompt_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": ask.prompt_tokens + output_tokens,
            })
        } else {
            Value::Null
        },
    })
}

/// A Responses `function_call` item calling `python` with `arguments`.
fn call_item(ask: &Ask, arguments: &str, status: &str) -> Value {
    json!({
        "id": format!("fc_demo{}", ask.id),
        "type": "function_call",
        "status": status,
        "arguments": arguments,
        "call_id": call_id(ask, 0),
        "name": "python",
    })
}

fn responses_json(ask: &Ask) -> Value {
    let item = if ask.call {
        call_item(ask, &ask.text, "completed")
    } else {
        message_item(ask, &ask.text, "completed")
    };
    response_object(ask, "completed", json!([item]))
}

/// The events of a Responses stream, each with its `type` and `sequence_number`.
fn responses_events(ask: &Ask) -> Vec<(Option<&'static str>, String)> {
    if ask.call {
        return responses_call_events(ask);
    }
    let item_id = format!("msg_demo{}", ask.id);
    let mut out = Vec::new();
    let mut seq = 0u64;
    let mut event = |name: &'static str, mut v: Value| {
        v["type"] = json!(name);
        v["sequence_number"] = json!(seq);
        seq += 1;
        out.push((Some(name), v.to_string()));
    };
    event("response.created", json!({"response": response_object(ask, "in_progress", json!([]))}));
    event(
        "response.in_progress",
        json!({"response": response_object(ask, "in_progress", json!([]))}),
    );
    event(
        "response.output_item.added",
        json!({"output_index": 0, "item": message_item(ask, "", "in_progress")}),
    );
    event(
        "response.content_part.added",
        json!({"item_id": item_id, "output_index": 0, "content_index": 0,
               "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}}),
    );
    for piece in deltas(&ask.text) {
        event(
            "response.output_text.delta",
            json!({"item_id": item_id, "output_index": 0, "content_index": 0,
                   "delta": piece, "logprobs": []}),
        );
    }
    event(
        "response.output_text.done",
        json!({"item_id": item_id, "output_index": 0, "content_index": 0,
               "text": &ask.text, "logprobs": []}),
    );
    event(
        "response.content_part.done",
        json!({"item_id": item_id, "output_index": 0, "content_index": 0,
               "part": {"type": "output_text", "text": &ask.text, "annotations": [], "logprobs": []}}),
    );
    event(
        "response.output_item.done",
        json!({"output_index": 0, "item": message_item(ask, &ask.text, "completed")}),
    );
    event("response.completed", json!({"response": responses_json(ask)}));
    out
}

/// The events of a Responses stream that calls `python`: the `function_call` item, its arguments
/// in deltas, and the done events.
fn responses_call_events(ask: &Ask) -> Vec<(Option<&'static str>, String)> {
    let item_id = format!("fc_demo{}", ask.id);
    let mut out = Vec::new();
    let mut seq = 0u64;
    let mut event = |name: &'static str, mut v: Value| {
        v["type"] = json!(name);
        v["sequence_number"] = json!(seq);
        seq += 1;
        out.push((Some(name), v.to_string()));
    };
    event("response.created", json!({"response": response_object(ask, "in_progress", json!([]))}));
    event(
        "response.in_progress",
        json!({"response": response_object(ask, "in_progress", json!([]))}),
    );
    event(
        "response.output_item.added",
        json!({"output_index": 0, "item": call_item(ask, "", "in_progress")}),
    );
    for piece in deltas(&ask.text) {
        event(
            "response.function_call_arguments.delta",
            json!({"item_id": item_id, "output_index": 0, "delta": piece}),
        );
    }
    event(
        "response.function_call_arguments.done",
        json!({"item_id": item_id, "output_index": 0, "name": "python", "arguments": &ask.text}),
    );
    event(
        "response.output_item.done",
        json!({"output_index": 0, "item": call_item(ask, &ask.text, "completed")}),
    );
    event("response.completed", json!({"response": responses_json(ask)}));
    out
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut resp = Response::new(BodyExt::boxed_unsync(Full::new(Bytes::from(value.to_string()))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn error_response(
    status: StatusCode,
    message: &str,
    kind: &str,
    code: Option<&str>,
) -> Response<Body> {
    json_response(
        status,
        &json!({"error": {"message": message, "type": kind, "param": null, "code": code}}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_cover_the_text_in_small_pieces() {
        for text in [
            "Hello, world! A longerwordthaneight and ünïcødé ✓ 日本語日本語日本語.\n\n```python\nx = 1\n```\n",
            "",
            "   leading spaces",
        ] {
            let pieces = deltas(text);
            assert_eq!(pieces.concat(), text);
            assert!(pieces.iter().all(|p| !p.is_empty()));
            assert!(pieces
                .iter()
                .all(|p| p.trim_start().chars().count() <= 8 || p.chars().count() <= 8));
        }
        assert_eq!(deltas("a bc  d"), ["a", " bc", "  d"]);
    }

    #[test]
    fn tools_offered_and_tool_results_are_read_from_each_shape() {
        let chat_tools = json!({"tools": [{"type": "function", "function": {"name": "python"}}]});
        let responses_tools = json!({"tools": [{"type": "function", "name": "python"}]});
        assert!(offers_python(&chat_tools) && offers_python(&responses_tools));
        assert!(!offers_python(&json!({"tools": [{"type": "function", "name": "search"}]})));
        assert!(!offers_python(&json!({})));

        let chat = json!({"messages": [
            {"role": "user", "content": "fibonacci"},
            {"role": "assistant", "content": null, "tool_calls": []},
            {"role": "tool", "tool_call_id": "c", "content": [{"type": "text", "text": "6765"}]}
        ]});
        assert_eq!(last_tool_result("/v1/chat/completions", &chat).as_deref(), Some("6765"));
        let answered = json!({"messages": [{"role": "tool", "content": "1"}, {"role": "user", "content": "again"}]});
        assert_eq!(last_tool_result("/v1/chat/completions", &answered), None);
        let input = json!({"input": [
            {"role": "user", "content": "fibonacci"},
            {"type": "function_call", "call_id": "c", "name": "python", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "6765\n"}
        ]});
        assert_eq!(last_tool_result("/v1/responses", &input).as_deref(), Some("6765\n"));
        assert_eq!(last_tool_result("/v1/responses", &json!({"input": "hi"})), None);
        assert_eq!(last_tool_result("/v1/completions", &chat), None);
    }

    #[test]
    fn last_user_text_reads_each_request_shape() {
        let chat = json!({"messages": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "reply"},
            {"role": "user", "content": [{"type": "text", "text": "plot"}, {"type": "text", "text": "this"}]},
            {"role": "system", "content": "late system"}
        ]});
        assert_eq!(last_user_text("/v1/chat/completions", &chat).as_deref(), Some("plot\nthis"));
        assert_eq!(
            last_user_text("/v1/completions", &json!({"prompt": ["a", "b"]})).as_deref(),
            Some("b")
        );
        let input = json!({"input": [
            {"role": "user", "content": [{"type": "input_text", "text": "pandas"}]}
        ]});
        assert_eq!(last_user_text("/v1/responses", &input).as_deref(), Some("pandas"));
        assert_eq!(last_user_text("/v1/responses", &json!({"input": "hi"})).as_deref(), Some("hi"));
        assert_eq!(last_user_text("/v1/chat/completions", &json!({"messages": []})), None);
    }
}
