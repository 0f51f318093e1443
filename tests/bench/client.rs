//! The benchmark's streaming client (`cargo build --release --example bench-client`): what a load
//! tool cannot measure on event streams.
//!
//! - `stream`: sends `--requests` streaming chat requests, `--concurrency` at a time over kept-alive
//!   HTTP/1.1 connections, and measures each one's time to first byte (request sent to the first
//!   body bytes) and each event's latency (arrival time minus the send time the bench upstream writes
//!   into `system_fingerprint` as `t<microseconds since the epoch>`). Prints one JSON object.
//! - `hold`: opens `--streams` streams at once, each on its own connection, waits until every one has
//!   received its first event, reads the resident memory of process `--pid` (`VmRSS` and `VmHWM` in
//!   `/proc/<pid>/status`), then reads every stream to its end and checks each ended with `[DONE]`.
//!   Prints one JSON object.
//!
//! Every wait is bounded by `--timeout-s` (default 60). Only loopback URLs are accepted.
//!
//! Usage: `bench-client stream --url URL --model M [--requests 200] [--concurrency 4]
//! [--header k:v]...` or `bench-client hold --url URL --model M --streams 1000 --pid PID`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;

struct Args {
    command: String,
    url: String,
    model: String,
    requests: usize,
    concurrency: usize,
    streams: usize,
    pid: u32,
    headers: Vec<(String, String)>,
    timeout: Duration,
}

/// What one stream measured.
#[derive(Default)]
struct Sample {
    ttfb_us: u64,
    total_us: u64,
    event_us: Vec<u64>,
    done: bool,
}

fn main() {
    let code = match parse_args().and_then(|args| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(run(args))
    }) {
        Ok(json) => {
            println!("{json}");
            0
        }
        Err(e) => {
            eprintln!("bench-client: {e}");
            2
        }
    };
    std::process::exit(code);
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let command = it.next().ok_or("expected `stream` or `hold`")?;
    let mut a = Args {
        command,
        url: String::new(),
        model: "bench-python".to_owned(),
        requests: 200,
        concurrency: 4,
        streams: 1000,
        pid: 0,
        headers: Vec::new(),
        timeout: Duration::from_secs(60),
    };
    while let Some(flag) = it.next() {
        let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = |v: &str| v.parse::<usize>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--url" => a.url = v,
            "--model" => a.model = v,
            "--requests" => a.requests = num(&v)?,
            "--concurrency" => a.concurrency = num(&v)?.max(1),
            "--streams" => a.streams = num(&v)?,
            "--pid" => a.pid = num(&v)? as u32,
            "--timeout-s" => a.timeout = Duration::from_secs(num(&v)? as u64),
            "--header" => {
                let (k, val) = v
                    .split_once(':')
                    .ok_or_else(|| format!("--header {v}: expected name:value"))?;
                a.headers.push((k.trim().to_owned(), val.trim().to_owned()));
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if !a.url.starts_with("http://127.0.0.1:") {
        return Err(format!("--url {}: only http://127.0.0.1 URLs are allowed", a.url));
    }
    Ok(a)
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

async fn run(args: Args) -> Result<String, String> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(args.concurrency.max(args.streams))
        .build(connector);
    let body = Bytes::from(
        serde_json::to_vec(&serde_json::json!({
            "model": args.model,
            "stream": true,
            "messages": [{"role": "user", "content": "Write a short Python program that prints squares."}]
        }))
        .map_err(|e| e.to_string())?,
    );
    let args = Arc::new(args);
    match args.command.as_str() {
        "stream" => stream(args, client, body).await,
        "hold" => hold(args, client, body).await,
        other => Err(format!("unknown command {other}: expected `stream` or `hold`")),
    }
}

/// One streaming request, read to its end.
async fn one(
    client: &HttpClient,
    args: &Args,
    body: Bytes,
    first: Option<tokio::sync::mpsc::Sender<()>>,
) -> Result<Sample, String> {
    let mut req = Request::post(&args.url).header("content-type", "application/json");
    for (k, v) in &args.headers {
        req = req.header(k, v);
    }
    let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let resp = client.request(req).await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status()));
    }
    let mut body = resp.into_body();
    let mut sample = Sample::default();
    let mut pending = Vec::new();
    let mut first = first;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        let now = now_micros();
        if sample.ttfb_us == 0 {
            sample.ttfb_us = start.elapsed().as_micros().max(1) as u64;
        }
        pending.extend_from_slice(data);
        // Complete events end with a blank line.
        while let Some(end) = find(&pending, b"\n\n") {
            let event: Vec<u8> = pending.drain(..end + 2).collect();
            if let Some(sent) = stamp(&event) {
                sample.event_us.push(now.saturating_sub(sent));
            }
            if find(&event, b"[DONE]").is_some() {
                sample.done = true;
            }
            if let Some(tx) = first.take() {
                let _ = tx.send(()).await;
            }
        }
    }
    sample.total_us = start.elapsed().as_micros() as u64;
    Ok(sample)
}

async fn stream(args: Arc<Args>, client: HttpClient, body: Bytes) -> Result<String, String> {
    let limit = Arc::new(Semaphore::new(args.concurrency));
    let deadline = Instant::now() + args.timeout;
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.requests {
        let permit = limit.clone().acquire_owned().await.map_err(|e| e.to_string())?;
        if Instant::now() > deadline {
            break;
        }
        let (client, args, body) = (client.clone(), args.clone(), body.clone());
        tasks.spawn(async move {
            let r = tokio::time::timeout(args.timeout, one(&client, &args, body, None)).await;
            drop(permit);
            r.unwrap_or_else(|_| Err("timed out".to_owned()))
        });
    }
    let mut samples = Vec::new();
    let mut errors = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok(s)) => samples.push(s),
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut ttfb: Vec<u64> = samples.iter().map(|s| s.ttfb_us).collect();
    let mut total: Vec<u64> = samples.iter().map(|s| s.total_us).collect();
    let mut events: Vec<u64> = samples.iter().flat_map(|s| s.event_us.clone()).collect();
    let incomplete = samples.iter().filter(|s| !s.done).count();
    Ok(serde_json::json!({
        "requests": samples.len(),
        "errors": errors.len(),
        "first_error": errors.first(),
        "incomplete": incomplete,
        "rps": samples.len() as f64 / elapsed.max(1e-9),
        "ttfb_p50_us": pct(&mut ttfb, 50.0),
        "ttfb_p99_us": pct(&mut ttfb, 99.0),
        "total_p50_us": pct(&mut total, 50.0),
        "events": events.len(),
        "event_p50_us": pct(&mut events, 50.0),
        "event_p99_us": pct(&mut events, 99.0),
    })
    .to_string())
}

async fn hold(args: Arc<Args>, client: HttpClient, body: Bytes) -> Result<String, String> {
    let before = memory(args.pid);
    let (tx, mut rx) = tokio::sync::mpsc::channel(args.streams.max(1));
    let mut tasks = tokio::task::JoinSet::new();
    let start = Instant::now();
    for _ in 0..args.streams {
        let (client, args, body, tx) = (client.clone(), args.clone(), body.clone(), tx.clone());
        tasks.spawn(async move {
            tokio::time::timeout(args.timeout, one(&client, &args, body, Some(tx)))
                .await
                .unwrap_or_else(|_| Err("timed out".to_owned()))
        });
    }
    drop(tx);
    let mut open = 0;
    let deadline = tokio::time::Instant::now() + args.timeout;
    while open < args.streams {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(())) => open += 1,
            _ => break,
        }
    }
    let open_after = start.elapsed();
    let during = memory(args.pid);
    let mut done = 0;
    let mut errors = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok(s)) if s.done => done += 1,
            Ok(Ok(_)) => errors.push("ended without [DONE]".to_owned()),
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let after = memory(args.pid);
    Ok(serde_json::json!({
        "streams": args.streams,
        "open": open,
        "open_after_ms": open_after.as_millis() as u64,
        "done": done,
        "errors": errors.len(),
        "first_error": errors.first(),
        "rss_before_kb": before.0,
        "rss_open_kb": during.0,
        "rss_after_kb": after.0,
        "hwm_kb": after.1,
    })
    .to_string())
}

/// `VmRSS` and `VmHWM` of a process, in kB (0 when unknown).
fn memory(pid: u32) -> (u64, u64) {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return (0, 0);
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

/// The send time written by the bench upstream: `"system_fingerprint"`, then `"t<digits>"`.
fn stamp(event: &[u8]) -> Option<u64> {
    let at = find(event, b"\"system_fingerprint\"")? + 20;
    let rest = &event[at..];
    let t = find(rest, b"\"t")? + 2;
    let digits: Vec<u8> = rest[t..].iter().take_while(|b| b.is_ascii_digit()).copied().collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

/// The `p`th percentile (nearest rank) of the values, 0 when there are none.
fn pct(values: &mut [u64], p: f64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable();
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}
