//! A fast scripted OpenAI-like upstream for the benchmark (`cargo build --release --example
//! bench-upstream`): hyper 1 on a multi-threaded tokio runtime, answers prepared once at start.
//!
//! `POST /v1/chat/completions` answers by the request's `model`: a model whose name contains
//! `python` gets a completion holding a Python block, any other model plain prose. With
//! `"stream": true` the answer is an event stream: a role chunk, `--events` content chunks, a finish
//! chunk and `[DONE]`, sent `--interval-ms` apart;
//! every chunk carries its send time in `system_fingerprint` (`t<microseconds since the epoch>`), so
//! a client can measure each event's latency. `--latency-ms` delays every answer's headers by a fixed
//! time. `GET /v1/models` lists the two models. Everything else is 404.
//!
//! Usage: `bench-upstream --listen 127.0.0.1:9000 [--latency-ms 0] [--events 20] [--interval-ms 5]
//! [--threads 0]`. It prints `listening on ADDR` once it accepts connections.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// The prose of every answer; the Python variant adds a fenced block in the middle.
const PROSE: &str = "Here is a short program that prints the first ten squares. It uses a plain \
loop so that it is easy to follow, and it runs in any Python 3 interpreter.";
const CODE: &str =
    "```python\nimport math\n\ndef squares(n):\n    return [i * i for i in range(n)]\n\n\
for k, v in enumerate(squares(10)):\n    print(k, v, math.sqrt(v))\n```";
const OUTRO: &str = "Each line shows the index, its square and the square root of that square.";

type Body = BoxBody<Bytes, Infallible>;

struct Settings {
    latency: Duration,
    events: usize,
    interval: Duration,
}

struct Answers {
    json_plain: Bytes,
    json_python: Bytes,
    /// The text of each stream chunk, for the plain and the Python answer.
    deltas_plain: Vec<String>,
    deltas_python: Vec<String>,
    models: Bytes,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("bench-upstream: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let mut listen: SocketAddr = ([127, 0, 0, 1], 9000).into();
    let mut settings =
        Settings { latency: Duration::ZERO, events: 20, interval: Duration::from_millis(5) };
    let mut threads = 0usize;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--listen" => listen = value.parse().map_err(|e| bad(&e))?,
            "--latency-ms" => {
                settings.latency = Duration::from_millis(value.parse().map_err(|e| bad(&e))?)
            }
            "--events" => settings.events = value.parse().map_err(|e| bad(&e))?,
            "--interval-ms" => {
                settings.interval = Duration::from_millis(value.parse().map_err(|e| bad(&e))?)
            }
            "--threads" => threads = value.parse().map_err(|e| bad(&e))?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if threads > 0 {
        rt.worker_threads(threads);
    }
    let rt = rt.build().map_err(|e| e.to_string())?;
    rt.block_on(serve(listen, settings))
}

fn answer_text(python: bool) -> String {
    if python {
        format!("{PROSE}\n\n{CODE}\n\n{OUTRO}")
    } else {
        format!("{PROSE}\n\n{OUTRO}")
    }
}

/// Cuts a text into `n` pieces of about the same size, on character boundaries.
fn split(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let n = n.clamp(1, chars.len().max(1));
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let a = chars.len() * i / n;
        let b = chars.len() * (i + 1) / n;
        out.push(chars[a..b].iter().collect());
    }
    out
}

fn json_answer(model: &str, text: &str) -> Bytes {
    let v = serde_json::json!({
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 80, "total_tokens": 92}
    });
    Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
}

async fn serve(listen: SocketAddr, settings: Settings) -> Result<(), String> {
    let answers = Arc::new(Answers {
        json_plain: json_answer("bench-plain", &answer_text(false)),
        json_python: json_answer("bench-python", &answer_text(true)),
        deltas_plain: split(&answer_text(false), settings.events),
        deltas_python: split(&answer_text(true), settings.events),
        models: Bytes::from_static(
            br#"{"object":"list","data":[{"id":"bench-plain","object":"model","created":1700000000,"owned_by":"bench"},{"id":"bench-python","object":"model","created":1700000000,"owned_by":"bench"}]}"#,
        ),
    });
    let settings = Arc::new(settings);
    let listener =
        TcpListener::bind(listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    println!("listening on {}", listener.local_addr().map_err(|e| e.to_string())?);
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(_) => {
                // Out of file descriptors or a reset before accept: wait a little and go on.
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let answers = answers.clone();
        let settings = settings.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let answers = answers.clone();
                let settings = settings.clone();
                async move { Ok::<_, Infallible>(handle(req, &answers, &settings).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

fn full(bytes: Bytes) -> Body {
    Full::new(bytes).boxed()
}

fn respond(status: StatusCode, content_type: &str, body: Body) -> Response<Body> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    resp
}

async fn handle(req: Request<Incoming>, answers: &Answers, settings: &Settings) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    if !settings.latency.is_zero() {
        tokio::time::sleep(settings.latency).await;
    }
    match (method.as_str(), path.as_str()) {
        ("GET", "/v1/models") => respond(
            StatusCode::OK,
            "application/json",
            full(answers.models.clone()),
        ),
        ("POST", "/v1/chat/completions") => {
            let request: serde_json::Value =
                serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            let model = request["model"].as_str().unwrap_or("bench-plain").to_owned();
            let python = model.contains("python");
            if request["stream"].as_bool() == Some(true) {
                let deltas = if python {
                    &answers.deltas_python
                } else {
                    &answers.deltas_plain
                };
                let mut resp = respond(
                    StatusCode::OK,
                    "text/event-stream",
                    stream(model, deltas.clone(), settings.interval),
                );
                resp.headers_mut().insert(
                    http::header::CACHE_CONTROL,
                    http::HeaderValue::from_static("no-cache"),
                );
                resp
            } else {
                let bytes = if python {
                    answers.json_python.clone()
                } else {
                    answers.json_plain.clone()
                };
                respond(StatusCode::OK, "application/json", full(bytes))
            }
        }
        _ => respond(
            StatusCode::NOT_FOUND,
            "application/json",
            full(Bytes::from_static(
                br#"{"error":{"message":"no such route","type":"invalid_request_error","param":null,"code":null}}"#,
            )),
        ),
    }
}

fn now_micros() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros()).unwrap_or(0)
}

/// One `chat.completion.chunk` event, stamped with its send time.
fn chunk(model: &str, delta: serde_json::Value, finish: Option<&str>) -> Bytes {
    let v = serde_json::json!({
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": model,
        "system_fingerprint": format!("t{}", now_micros()),
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
    });
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&serde_json::to_vec(&v).unwrap_or_default());
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// The event stream: a role chunk, one chunk per delta, a finish chunk, `[DONE]`; `interval` apart.
fn stream(model: String, deltas: Vec<String>, interval: Duration) -> Body {
    // Step 0 is the role chunk, 1..=n the deltas, n+1 the finish chunk, n+2 `[DONE]`.
    let n = deltas.len();
    let steps = futures_util::stream::unfold(0usize, move |step| {
        let model = model.clone();
        let delta = deltas.get(step.wrapping_sub(1)).cloned();
        async move {
            if step > n + 2 {
                return None;
            }
            if step > 0 && !interval.is_zero() {
                tokio::time::sleep(interval).await;
            }
            let bytes = if step == 0 {
                chunk(&model, serde_json::json!({"role": "assistant", "content": ""}), None)
            } else if step <= n {
                chunk(&model, serde_json::json!({"content": delta.unwrap_or_default()}), None)
            } else if step == n + 1 {
                chunk(&model, serde_json::json!({}), Some("stop"))
            } else {
                Bytes::from_static(b"data: [DONE]\n\n")
            };
            Some((Ok::<_, Infallible>(Frame::data(bytes)), step + 1))
        }
    });
    BodyExt::boxed(StreamBody::new(steps))
}
