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
use super::shapes::{Answer, Choice, Event};

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
        let id = format!("demo{serial:08x}");
        let model = request
            .get("model")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
            .unwrap_or(DEMO_MODEL);
        // Only Chat Completions answers with several choices here.
        let n = if path == "/v1/chat/completions" { n } else { 1 };
        let answer = Answer {
            id: &id,
            model,
            created: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            system_fingerprint: "fp_sandgate_demo",
            choices: (0..n).map(|_| Choice::new(&text, deltas)).collect(),
            call,
            prompt_tokens: tokens(&prompt),
            completion_tokens: tokens(&text),
            include_usage: request
                .pointer("/stream_options/include_usage")
                .and_then(Value::as_bool)
                == Some(true),
        };
        let stream = request.get("stream").and_then(Value::as_bool) == Some(true);
        match (path, stream) {
            ("/v1/chat/completions", false) => json_response(StatusCode::OK, &answer.chat_json()),
            ("/v1/chat/completions", true) => self.sse(answer.chat_events()),
            ("/v1/completions", false) => json_response(StatusCode::OK, &answer.completion_json()),
            ("/v1/completions", true) => self.sse(answer.completion_events()),
            (_, false) => json_response(StatusCode::OK, &answer.responses_json()),
            (_, true) => self.sse(answer.responses_events()),
        }
    }

    /// A stream of events, paced.
    fn sse(&self, events: Vec<Event>) -> Response<Body> {
        let pace = self.pace;
        let frames = events.into_iter().map(|event| Bytes::from(event.to_frame()));
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
