//! Upstream and client faults beyond those in `proxy/faults.rs` (which covers cuts, stalls past
//! each timeout, client disconnects at one point, shutdown): malformed event streams, events that
//! are not JSON, 10 MB answers, answers sent one byte at a time, clients leaving at random points
//! (nothing left behind afterwards), and 1,000 concurrent streams each checked against the engine.
//! Every test is bounded in time.

use std::sync::Arc;
use std::time::Duration;

use crate::support::openai::{self, ORIGINALS};
use crate::support::{eventually, post_json, start_sandgate, Reply, ScriptedUpstream};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every test runs under this limit.
const LIMIT: Duration = Duration::from_secs(180);

fn stream_request() -> serde_json::Value {
    json!({"model": "gpt-test", "stream": true, "messages": [{"role": "user", "content": "hi"}]})
}

fn expected(text: &str) -> String {
    sandgate::rewrite::rewrite(&crate::support::test_options(), text)
}

/// A small deterministic generator (xorshift), so that "random" points are the same every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f).await.expect("the test ran past its time limit")
}

#[tokio::test]
async fn a_malformed_event_stream_without_python_passes_through_byte_for_byte() {
    bounded(async {
        // Comments, unknown fields, lines without a colon, `event:`/`id:`/`retry:`, CR and CRLF line
        // ends, a data line split over two `data:` lines, a blank data field, stray blank lines, and
        // an unterminated last event.
        let mut sse = String::new();
        sse.push_str(": keep-alive comment\n\n");
        sse.push_str("garbage line without a colon\n\n");
        sse.push_str("retry: 3000\nid: 7\n\n");
        sse.push_str("event: ping\r\ndata: {\"x\":1}\r\n\r\n");
        sse.push_str(
            "data: {\"choices\":[{\"index\":0,\r\ndata: \"delta\":{\"content\":\"split\"}}]}\r\r",
        );
        sse.push_str("data:\n\n\n\n\n");
        sse.push_str("unknownfield: value\ndata: [DONE\n\n");
        sse.push_str("data:{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"no space\"}}]}\n\n");
        sse.push_str("data: {\"unterminated\": tru");
        let body = sse.clone();
        let up = ScriptedUpstream::start(move |r| {
            // Odd piece sizes (1 to 13 bytes) cut lines, CRLFs and UTF-8 anywhere.
            let n = 1 + r.body.len() % 13;
            Reply::sse(body.clone(), n, Duration::ZERO)
        })
        .await;
        let sg = start_sandgate(&up.base_url(), |_| {}).await;
        for path in ["/v1/chat/completions", "/v1/completions", "/v1/responses"] {
            let (status, headers, got) = post_json(sg.addr(), path, &stream_request(), &[]).await;
            assert_eq!(status, 200, "{path}");
            assert!(headers["content-type"].to_str().unwrap().starts_with("text/event-stream"));
            assert_eq!(
                String::from_utf8_lossy(&got),
                sse,
                "{path}: the malformed stream changed on its way through"
            );
        }
        assert_eq!(sg.metrics().streams_in_flight(), 0);
    })
    .await;
}

#[tokio::test]
async fn events_that_are_not_json_pass_through_in_place_and_the_rest_is_still_rewritten() {
    bounded(async {
        let original = ORIGINALS[0];
        let good: Vec<String> = openai::deltas(original)
            .into_iter()
            .map(|d| {
                let v = json!({"id": "c", "object": "chat.completion.chunk", "model": "m",
                    "choices": [{"index": 0, "delta": {"content": d}, "finish_reason": null}]});
                format!("data: {v}\n\n")
            })
            .collect();
        let bad = [
            "data: {not json at all\n\n",
            "data: [1, 2\n\n",
            "data: \"just a string\"\n\n",
            "data: {\"choices\": 5}\n\n",
            "data: {\"choices\": [{\"index\": \"zero\", \"delta\": {\"content\": 7}}]}\n\n",
            "data: \u{1F600} not JSON, but UTF-8\n\n",
        ];
        // A bad event after every fourth good one, then the end.
        let mut sse = String::new();
        let mut bad_iter = bad.iter().cycle();
        let mut bad_sent = Vec::new();
        for (i, g) in good.iter().enumerate() {
            sse.push_str(g);
            if i % 4 == 3 {
                let b = bad_iter.next().unwrap();
                sse.push_str(b);
                bad_sent.push(b.trim_start_matches("data: ").trim_end().to_owned());
            }
        }
        sse.push_str("data: [DONE]\n\n");
        let up =
            ScriptedUpstream::start(move |_| Reply::sse(sse.clone(), 37, Duration::ZERO)).await;
        let sg = start_sandgate(&up.base_url(), |_| {}).await;
        let (status, _, got) =
            post_json(sg.addr(), "/v1/chat/completions", &stream_request(), &[]).await;
        assert_eq!(status, 200);
        let events = openai::parse_sse(&got);
        let is_chunk = |e: &openai::Event| {
            e.json().is_some_and(|v| v["choices"][0]["delta"]["content"].is_string())
        };
        // Every bad event arrives, unchanged and in its order.
        let bad_got: Vec<String> = events
            .iter()
            .filter(|e| e.data != "[DONE]" && !is_chunk(e))
            .map(|e| e.data.clone())
            .collect();
        assert_eq!(bad_got, bad_sent);
        // The good events still carry the rewritten text.
        let good_events: Vec<openai::Event> =
            events.into_iter().filter(|e| e.data == "[DONE]" || is_chunk(e)).collect();
        let s = openai::chat_stream(&good_events, "delta");
        assert_eq!(s.texts, vec![expected(original)]);
        assert!(s.done);
        assert_ne!(s.texts[0], original, "the Python block was rewritten");
    })
    .await;
}

/// A markdown text of about `size` bytes with a Python block every few paragraphs.
fn big_text(size: usize) -> String {
    let mut text = String::with_capacity(size + 1024);
    let mut i = 0;
    while text.len() < size {
        text.push_str(&format!(
            "Paragraph {i}: some prose with ünïcødé and a `span`.\n\n```python\nprint({i} * {i})\n```\n\n"
        ));
        i += 1;
    }
    text
}

#[tokio::test]
async fn a_10_mb_json_answer_is_rewritten_whole() {
    bounded(async {
        let text = big_text(10 << 20);
        let answer = serde_json::to_vec(&openai::chat_json(&[text.as_str()])).unwrap();
        assert!(answer.len() > 10 << 20);
        let up = ScriptedUpstream::start(move |_| {
            Reply::new(200).header("content-type", "application/json").chunked(
                answer.clone(),
                64 << 10,
                Duration::ZERO,
            )
        })
        .await;
        let sg = start_sandgate(&up.base_url(), |_| {}).await;
        let req = json!({"model": "m", "messages": []});
        let (status, headers, body) = post_json(sg.addr(), "/v1/chat/completions", &req, &[]).await;
        assert_eq!(status, 200);
        assert_eq!(
            headers["content-length"].to_str().unwrap(),
            body.len().to_string(),
            "the content length is the rewritten one"
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let got = openai::json_texts(&v, "message");
        assert!(got[0] == expected(&text), "the 10 MB answer differs from the engine's rewrite");
    })
    .await;
}

#[tokio::test]
async fn a_json_answer_past_the_rewrite_limit_passes_through_unchanged() {
    bounded(async {
        let text = big_text(3 << 20);
        let answer = serde_json::to_vec(&openai::chat_json(&[text.as_str()])).unwrap();
        let sent = answer.clone();
        let up = ScriptedUpstream::start(move |_| {
            Reply::new(200).header("content-type", "application/json").chunked(
                sent.clone(),
                64 << 10,
                Duration::ZERO,
            )
        })
        .await;
        let sg = start_sandgate(&up.base_url(), |raw| {
            raw.set("json_rewrite_limit", "1048576").unwrap();
        })
        .await;
        let req = json!({"model": "m", "messages": []});
        let (status, _, body) = post_json(sg.addr(), "/v1/chat/completions", &req, &[]).await;
        assert_eq!(status, 200);
        assert!(body[..] == answer[..], "the answer past the limit arrives byte for byte");
        assert!(!String::from_utf8_lossy(&body).contains("/sandbox#py="), "and is not rewritten");
    })
    .await;
}

#[tokio::test]
async fn a_10_mb_event_and_a_stream_of_small_events_are_rewritten() {
    bounded(async {
        let text = big_text(10 << 20);
        // One event carrying the whole text (ten times the framer's hold limit), then 2 MB of it
        // again in 4 kB deltas.
        let one = json!({"id": "c", "object": "chat.completion.chunk", "model": "m",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]});
        let mut sse = format!("data: {one}\n\n");
        let many_text = big_text(2 << 20);
        let mut rest = many_text.as_str();
        let mut many = String::new();
        while !rest.is_empty() {
            let mut cut = rest.len().min(4096);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            let v = json!({"id": "c", "object": "chat.completion.chunk", "model": "m",
                "choices": [{"index": 1, "delta": {"content": &rest[..cut]}, "finish_reason": null}]});
            many.push_str(&format!("data: {v}\n\n"));
            rest = &rest[cut..];
        }
        sse.push_str(&many);
        sse.push_str("data: [DONE]\n\n");
        let sse = Bytes::from(sse);
        let up =
            ScriptedUpstream::start(move |_| Reply::sse(sse.clone(), 64 << 10, Duration::ZERO))
                .await;
        let sg = start_sandgate(&up.base_url(), |_| {}).await;
        let (status, _, body) =
            post_json(sg.addr(), "/v1/chat/completions", &stream_request(), &[]).await;
        assert_eq!(status, 200);
        let s = openai::chat_stream(&openai::parse_sse(&body), "delta");
        assert_eq!(s.texts.len(), 2);
        assert!(s.texts[0] == expected(&text), "the 10 MB event differs from the engine's rewrite");
        assert!(
            s.texts[1] == expected(&many_text),
            "the 2 MB stream of small events differs from the engine's rewrite"
        );
        assert!(s.done);
    })
    .await;
}

#[tokio::test]
async fn a_10_mb_body_on_a_transparent_route_streams_through_unchanged() {
    bounded(async {
        let blob: Vec<u8> =
            (0..(10u32 << 20)).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
        let blob = Bytes::from(blob);
        let sent = blob.clone();
        let up = ScriptedUpstream::start(move |_| {
            Reply::new(200).header("content-type", "application/octet-stream").chunked(
                sent.clone(),
                64 << 10,
                Duration::ZERO,
            )
        })
        .await;
        let sg = start_sandgate(&up.base_url(), |_| {}).await;
        let (status, _, body) =
            crate::support::call(sg.addr(), "GET", "/v1/files/file-1/content", &[], Bytes::new())
                .await;
        assert_eq!(status, 200);
        assert_eq!(body.len(), blob.len());
        assert!(body == blob, "the transparent body changed");
    })
    .await;
}

#[tokio::test]
async fn answers_sent_one_byte_at_a_time_are_rewritten_and_not_cut_by_the_idle_timeout() {
    bounded(async {
        let original = ORIGINALS[1];
        let sse = openai::chat_sse(&[original], false);
        let json_answer = serde_json::to_vec(&openai::chat_json(&[original])).unwrap();
        let up = ScriptedUpstream::start(move |r| {
            // One byte per write, a millisecond apart: every UTF-8 character, line end and event
            // boundary arrives split.
            if r.json()["stream"] == true {
                Reply::sse(sse.clone(), 1, Duration::from_millis(1))
            } else {
                Reply::new(200).header("content-type", "application/json").chunked(
                    json_answer.clone(),
                    1,
                    Duration::from_millis(1),
                )
            }
        })
        .await;
        // The stream takes seconds (thousands of bytes, a millisecond apart), several times the
        // idle timeout, whose 2 s leave room for a busy machine's scheduling gaps.
        let sg = start_sandgate(&up.base_url(), |raw| {
            raw.set("timeouts.idle", "2s").unwrap();
        })
        .await;
        let started = std::time::Instant::now();
        let (status, _, body) =
            post_json(sg.addr(), "/v1/chat/completions", &stream_request(), &[]).await;
        eprintln!("one-byte stream: {} bytes in {:?}", body.len(), started.elapsed());
        assert_eq!(status, 200);
        let s = openai::chat_stream(&openai::parse_sse(&body), "delta");
        assert_eq!(s.texts, vec![expected(original)]);
        assert!(s.done);

        let req = json!({"model": "m", "messages": []});
        let (status, _, body) = post_json(sg.addr(), "/v1/chat/completions", &req, &[]).await;
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(openai::json_texts(&v, "message"), vec![expected(original)]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_leaving_at_random_points_leave_no_task_and_no_busy_upstream_connection() {
    bounded(async {
        // A long stream: about 60 pieces, 5 ms apart.
        let sse = openai::chat_sse(&[&ORIGINALS[0].repeat(3)], false);
        let piece = sse.len() / 60 + 1;
        let total = sse.len();
        let up = ScriptedUpstream::start(move |_| {
            Reply::sse(sse.clone(), piece, Duration::from_millis(5))
        })
        .await;
        let sg = start_sandgate(&up.base_url(), |_| {}).await;
        let addr = sg.addr();
        let rt = tokio::runtime::Handle::current().metrics();
        // Let the server settle, then count the tasks it keeps for itself.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let baseline = rt.num_alive_tasks();

        let body = serde_json::to_vec(&stream_request()).unwrap();
        let request = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: sandgate\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n{}",
            body.len(),
            String::from_utf8(body).unwrap()
        )
        .into_bytes();
        let request = Arc::new(request);
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut clients = tokio::task::JoinSet::new();
        let n = 60;
        for i in 0..n {
            // Where this client leaves: while sending its request, right after it, after reading
            // some of the answer, or only after reading all of it.
            let send = match i % 4 {
                0 => rng.below(request.len() as u64) as usize,
                _ => request.len(),
            };
            let read = match i % 4 {
                0 | 1 => 0,
                2 => 1 + rng.below(total as u64) as usize,
                _ => usize::MAX,
            };
            let linger = Duration::from_millis(rng.below(40));
            let request = request.clone();
            clients.spawn(async move {
                let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                tcp.write_all(&request[..send]).await.unwrap();
                tokio::time::sleep(linger).await;
                let mut got = 0usize;
                let mut buf = [0u8; 4096];
                while got < read {
                    match tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await {
                        Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                        Ok(Ok(k)) => {
                            got += k;
                            // A whole answer ends with the chunked body's last chunk.
                            if read == usize::MAX && buf[..k].ends_with(b"0\r\n\r\n") {
                                break;
                            }
                        }
                    }
                }
                drop(tcp);
            });
        }
        while let Some(r) = clients.join_next().await {
            r.unwrap();
        }

        // Every stream has ended.
        assert!(
            eventually(Duration::from_secs(10), || sg.metrics().streams_in_flight() == 0).await,
            "streams still in flight: {}",
            sg.metrics().streams_in_flight()
        );
        // Every answer the upstream started was either finished or abandoned: none is still being
        // fed to a connection nobody reads.
        assert!(
            eventually(Duration::from_secs(10), || {
                up.bodies_done() + up.bodies_abandoned() == up.requests().len()
            })
            .await,
            "upstream answers still running: {} requests, {} done, {} abandoned",
            up.requests().len(),
            up.bodies_done(),
            up.bodies_abandoned()
        );
        assert!(up.requests().len() >= n / 2, "most clients reached the upstream");
        assert!(up.bodies_abandoned() > 0, "some clients left mid-stream");
        assert!(
            eventually(Duration::from_secs(10), || up.closed() >= up.bodies_abandoned()).await,
            "the connection of every abandoned answer is closed ({} closed, {} abandoned)",
            up.closed(),
            up.bodies_abandoned()
        );
        // What is left: the pool's idle upstream connections, each with one task on either side
        // (sandgate's client connection and the upstream's server connection), and the task that
        // reaps the pool's idle connections (started with the pool's first connection).
        let open = up.accepted() - up.closed();
        assert!(
            eventually(Duration::from_secs(10), || rt.num_alive_tasks() <= baseline + 2 * open + 1)
                .await,
            "tasks left behind: {} alive, {} before the clients, {} idle upstream connections",
            rt.num_alive_tasks(),
            baseline,
            open
        );
        let (status, _, m) = crate::support::call(addr, "GET", "/metrics", &[], Bytes::new()).await;
        assert_eq!(status, 200);
        let m = String::from_utf8_lossy(&m);
        assert!(m.contains("\nsandgate_streams_in_flight 0\n"), "{m}");

        // The server still answers.
        let (status, _, body) = post_json(addr, "/v1/chat/completions", &stream_request(), &[]).await;
        assert_eq!(status, 200);
        assert!(openai::chat_stream(&openai::parse_sse(&body), "delta").done);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_streams_each_match_the_engine() {
    bounded(async {
        // Each stream's text is its own (the request's message names it), cut into pieces of its
        // own size; half Chat Completions, half Responses.
        fn text_of(i: usize) -> String {
            format!(
                "Stream {i}.\n\n{}\n```python\nprint({i})\n```\n",
                ORIGINALS[i % 2].replace("range(10)", &format!("range({i})"))
            )
        }
        let up = ScriptedUpstream::start(|r| {
            let v = r.json();
            let i: usize = v["messages"][0]["content"]
                .as_str()
                .or_else(|| v["input"].as_str())
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let piece = 150 + i % 397;
            let tick = Duration::from_millis(2);
            if r.uri.starts_with("/v1/responses") {
                Reply::sse(openai::responses_sse(&text_of(i)), piece, tick)
            } else {
                Reply::sse(openai::chat_sse(&[&text_of(i)], false), piece, tick)
            }
        })
        .await;
        // The scripted upstream shares this test's two threads with a thousand clients: on a busy
        // machine its accept loop falls behind and connects wait for SYN retransmits (1 s, 3 s, 7 s,
        // 15 s). The default 10 s connect timeout then gave a 504; this test is about the rewriting.
        let sg = start_sandgate(&up.base_url(), |raw| {
            raw.set("timeouts.connect", "60s").unwrap();
        })
        .await;
        let addr = sg.addr();
        let client = crate::support::client();
        let n = 1000;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..n {
            let client = client.clone();
            tasks.spawn(async move {
                let (path, body) = if i % 2 == 0 {
                    let b = json!({"model": "m", "stream": true,
                        "messages": [{"role": "user", "content": i.to_string()}]});
                    ("/v1/chat/completions", b)
                } else {
                    ("/v1/responses", json!({"model": "m", "stream": true, "input": i.to_string()}))
                };
                let req = http::Request::post(format!("http://{addr}{path}"))
                    .header("content-type", "application/json")
                    .body(crate::support::full(serde_json::to_vec(&body).unwrap()))
                    .unwrap();
                let resp = client.request(req).await.unwrap();
                assert_eq!(resp.status(), 200, "stream {i}");
                let bytes = resp.into_body().collect().await.unwrap().to_bytes();
                let events = openai::parse_sse(&bytes);
                let want = expected(&text_of(i));
                if i % 2 == 0 {
                    let s = openai::chat_stream(&events, "delta");
                    assert_eq!(s.texts, vec![want], "stream {i}");
                    assert!(s.done, "stream {i} ended with [DONE]");
                } else {
                    let s = openai::responses_stream(&events);
                    assert_eq!(s.deltas, want, "stream {i}");
                    assert_eq!(s.completed, want, "stream {i}");
                }
                i
            });
        }
        // All open at once: the gauge sees many of them in flight together.
        let mut peak = 0;
        let mut done = 0;
        loop {
            peak = peak.max(sg.metrics().streams_in_flight());
            match tokio::time::timeout(Duration::from_millis(5), tasks.join_next()).await {
                Ok(Some(r)) => {
                    r.unwrap();
                    done += 1;
                }
                Ok(None) => break,
                Err(_) => {}
            }
        }
        assert_eq!(done, n);
        assert!(peak >= 100, "at most {peak} streams were open at once");
        assert_eq!(up.requests().len(), n);
        assert!(
            eventually(Duration::from_secs(10), || sg.metrics().streams_in_flight() == 0).await
        );
    })
    .await;
}
