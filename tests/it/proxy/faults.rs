//! Failures on either side: the client going away mid-stream, each timeout, the upstream cutting or
//! refusing the connection, graceful shutdown, and a bad configuration file.

use std::time::Duration;

use crate::support::openai::{self, ORIGINALS};
use crate::support::{eventually, post_json, start_sandgate, End, Reply, ScriptedUpstream};
use http_body_util::BodyExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn stream_request() -> serde_json::Value {
    json!({"model": "gpt-test", "stream": true, "messages": [{"role": "user", "content": "hi"}]})
}

/// Splits a received stream into the events before an in-band error and the error itself.
fn split_error(body: &[u8]) -> (Vec<openai::Event>, serde_json::Value) {
    let mut events = openai::parse_sse(body);
    let last = events.pop().expect("no events");
    let v = last.json().expect("the last event is JSON");
    assert!(v["error"].is_object(), "the last event is not an error: {v}");
    assert!(v["error"].get("param").is_some());
    (events, v)
}

/// Reads from a raw connection until `needle` arrives, the peer closes, or 5 s pass.
async fn read_until(tcp: &mut tokio::net::TcpStream, needle: &str) -> String {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while !String::from_utf8_lossy(&received).contains(needle) {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&received).into_owned()
}

/// Sends a streaming chat request over a raw socket and reads until the first content delta.
async fn open_stream(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = serde_json::to_vec(&stream_request()).unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: sandgate\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&body).await.unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&received).contains("\"content\"") {
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "sandgate closed the connection");
        received.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&received).starts_with("HTTP/1.1 200"));
    tcp
}

#[tokio::test]
async fn a_client_leaving_mid_stream_closes_the_upstream_connection() {
    // A long, slow stream: 40-byte pieces every 20 ms.
    let sse = openai::chat_sse(&[&ORIGINALS[0].repeat(20)], false);
    let up =
        ScriptedUpstream::start(move |_| Reply::sse(sse.clone(), 40, Duration::from_millis(20)))
            .await;
    let sg = start_sandgate(&up.base_url(), |_| {}).await;

    let tcp = open_stream(sg.addr()).await;
    assert_eq!(up.accepted(), 1);
    assert_eq!(up.closed(), 0, "the upstream connection is open while streaming");
    assert_eq!(sg.metrics().streams_in_flight(), 1);

    drop(tcp);
    assert!(
        eventually(Duration::from_secs(5), || up.closed() == 1).await,
        "the upstream saw its connection closed (accepted {}, closed {})",
        up.accepted(),
        up.closed()
    );
    assert!(eventually(Duration::from_secs(5), || up.bodies_abandoned() == 1).await);
    assert_eq!(up.bodies_done(), 0, "the upstream never finished its answer");
    assert!(eventually(Duration::from_secs(5), || sg.metrics().streams_in_flight() == 0).await);
    assert_eq!(sg.metrics().streams_cancelled(), 1);
}

#[tokio::test]
async fn a_client_leaving_while_the_upstream_is_silent_closes_the_upstream_connection() {
    // The upstream sends a few events, then thinks for a long time (longer than this test waits).
    let up = super::partial_stream(3, false, 64, End::Stall).await;
    let sg = start_sandgate(&up.base_url(), |_| {}).await;
    let tcp = open_stream(sg.addr()).await;
    assert!(eventually(Duration::from_secs(5), || sg.metrics().streams_in_flight() == 1).await);
    assert_eq!(up.closed(), 0);

    // Nothing is being written when the client leaves: sandgate notices the closed socket itself.
    drop(tcp);
    assert!(
        eventually(Duration::from_secs(5), || up.closed() == 1).await,
        "the upstream connection was not closed while the upstream was silent"
    );
    assert!(eventually(Duration::from_secs(5), || sg.metrics().streams_in_flight() == 0).await);
    assert_eq!(sg.metrics().streams_cancelled(), 1);
}

#[tokio::test]
async fn connect_refused_answers_502() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let sg = start_sandgate(&format!("http://{addr}/v1"), |_| {}).await;
    let (status, _, body) =
        post_json(sg.addr(), "/v1/chat/completions", &stream_request(), &[]).await;
    assert_eq!(status, 502);
    let (kind, code, message) = crate::support::error_of(&body);
    assert_eq!((kind.as_str(), code.as_str()), ("server_error", "upstream_connect_error"));
    assert!(message.starts_with("cannot connect to the upstream"), "{message}");
}

#[tokio::test]
async fn the_connect_timeout_answers_504() {
    // A listener with a backlog of zero that never accepts: once its queue is full, the kernel drops
    // new SYNs and connecting hangs.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_millis(200), tokio::net::TcpStream::connect(addr))
                .await
        {
            fillers.push(s);
        }
    }
    let sg = start_sandgate(&format!("http://{addr}/v1"), |raw| {
        raw.set("timeouts.connect", "300ms").unwrap();
    })
    .await;
    let (status, _, body) = post_json(sg.addr(), "/v1/models", &json!({}), &[]).await;
    assert_eq!(status, 504, "{}", String::from_utf8_lossy(&body));
    let (_, code, message) = crate::support::error_of(&body);
    assert_eq!(code, "upstream_connect_timeout");
    assert!(message.contains("connect"), "{message}");
    drop(listener);
}

#[tokio::test]
async fn the_first_byte_timeout_answers_504() {
    let up = ScriptedUpstream::start(|_| {
        Reply::json(&openai::chat_json(&ORIGINALS[..1])).head_delay(Duration::from_secs(3))
    })
    .await;
    let sg = start_sandgate(&up.base_url(), |raw| {
        raw.set("timeouts.first_byte", "300ms").unwrap();
    })
    .await;
    for path in ["/v1/chat/completions", "/v1/models"] {
        let (status, _, body) = post_json(sg.addr(), path, &stream_request(), &[]).await;
        assert_eq!(status, 504, "{path}");
        let (kind, code, _) = crate::support::error_of(&body);
        assert_eq!((kind.as_str(), code.as_str()), ("server_error", "upstream_timeout"));
    }
}

#[tokio::test]
async fn the_idle_timeout_mid_stream_ends_with_an_in_band_error() {
    let up = super::partial_stream(3, true, 64, End::Stall).await;
    let sg = start_sandgate(&up.base_url(), |raw| {
        raw.set("timeouts.idle", "300ms").unwrap();
    })
    .await;
    let (status, headers, body) =
        post_json(sg.addr(), "/v1/chat/completions", &stream_request(), &[]).await;
    assert_eq!(status, 200, "the stream had begun");
    assert_eq!(headers["cache-control"], "no-cache");
    let (events, err) = split_error(&body);
    assert_eq!(err["error"]["code"], "upstream_idle_timeout");
    assert_eq!(err["error"]["type"], "server_error");
    assert!(!events.is_empty(), "the events before the stall arrived");
    for e in &events {
        assert!(e.json().is_some(), "a whole event before the error: {:?}", e.data);
    }
    assert!(body.ends_with(b"}}\n\n"), "the error event ends the stream cleanly");
    assert!(eventually(Duration::from_secs(5), || up.bodies_abandoned() == 1).await);
    assert_eq!(sg.metrics().streams_cancelled(), 0, "the client did not cancel");
}

#[tokio::test]
async fn the_idle_timeout_before_a_json_answer_completes_answers_504() {
    let json = serde_json::to_vec(&openai::chat_json(&ORIGINALS)).unwrap();
    let up = ScriptedUpstream::start(move |_| {
        Reply::new(200)
            .header("content-type", "application/json")
            .chunked(json[..json.len() / 2].to_vec(), 100, Duration::ZERO)
            .end(End::Stall)
    })
    .await;
    let sg = start_sandgate(&up.base_url(), |raw| {
        raw.set("timeouts.idle", "300ms").unwrap();
    })
    .await;
    let req = json!({"model": "m", "messages": []});
    let (status, _, body) = post_json(sg.addr(), "/v1/chat/completions", &req, &[]).await;
    assert_eq!(status, 504);
    assert_eq!(crate::support::error_of(&body).1, "upstream_idle_timeout");
}

#[tokio::test]
async fn no_timeout_cuts_a_stream_that_keeps_producing() {
    // Twenty pieces 100 ms apart: two seconds in all, far past every timeout, never silent for long.
    let sse = openai::chat_sse(&ORIGINALS[..1], false);
    let piece = sse.len() / 20 + 1;
    let up = ScriptedUpstream::start(move |_| {
        Reply::sse(sse.clone(), piece, Duration::from_millis(100))
            .head_delay(Duration::from_millis(100))
    })
    .await;
    let sg = start_sandgate(&up.base_url(), |raw| {
        raw.set("timeouts.first_byte", "400ms").unwrap();
        raw.set("timeouts.idle", "400ms").unwrap();
        raw.set("timeouts.connect", "400ms").unwrap();
    })
    .await;
    let (status, _, body) =
        post_json(sg.addr(), "/v1/chat/completions", &stream_request(), &[]).await;
    assert_eq!(status, 200);
    let s = openai::chat_stream(&openai::parse_sse(&body), "delta");
    assert_eq!(
        s.texts,
        vec![sandgate::rewrite::rewrite(&crate::support::test_options(), ORIGINALS[0])]
    );
    assert!(s.done);
}

#[tokio::test]
async fn an_upstream_cut_mid_stream_ends_with_an_in_band_error() {
    let up = super::partial_stream(2, false, 64, End::Cut).await;
    let sg = start_sandgate(&up.base_url(), |_| {}).await;
    // The three rewritten routes, and an event stream on a transparent route (the Assistants API's
    // runs stream like this).
    let paths = ["/v1/chat/completions", "/v1/responses", "/v1/completions", "/v1/threads/runs"];
    for path in paths {
        let (status, _, body) = post_json(sg.addr(), path, &stream_request(), &[]).await;
        assert_eq!(status, 200);
        let (events, err) = split_error(&body);
        assert_eq!(err["error"]["code"], "upstream_stream_error", "{path}");
        assert!(events.len() > 3, "{path}: the events before the cut arrived");
    }
}

#[tokio::test]
async fn an_upstream_closing_before_answering_gives_502() {
    // Reads the request, then closes without a word.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            drop(s);
        }
    });
    let sg = start_sandgate(&format!("http://{addr}/v1"), |_| {}).await;
    let (status, _, body) =
        post_json(sg.addr(), "/v1/chat/completions", &stream_request(), &[]).await;
    assert_eq!(status, 502);
    assert_eq!(crate::support::error_of(&body).1, "upstream_error");
}

#[tokio::test]
async fn shutdown_lets_a_stream_in_flight_finish() {
    let sse = openai::chat_sse(&ORIGINALS[..1], false);
    let piece = sse.len() / 10 + 1;
    let up =
        ScriptedUpstream::start(move |_| Reply::sse(sse.clone(), piece, Duration::from_millis(50)))
            .await;
    let sg = start_sandgate(&up.base_url(), |_| {}).await;
    let addr = sg.addr();

    let req = http::Request::post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(crate::support::full(serde_json::to_vec(&stream_request()).unwrap()))
        .unwrap();
    let resp = crate::support::client().request(req).await.unwrap();
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap();

    let shutdown = tokio::spawn(sg.shutdown());
    assert!(
        eventually(Duration::from_secs(5), || std::net::TcpStream::connect(addr).is_err()).await,
        "the listener closes at once"
    );
    let rest = body.collect().await.expect("the stream finishes").to_bytes();
    let mut all = first.into_data().unwrap().to_vec();
    all.extend_from_slice(&rest);
    let s = openai::chat_stream(&openai::parse_sse(&all), "delta");
    assert_eq!(
        s.texts,
        vec![sandgate::rewrite::rewrite(&crate::support::test_options(), ORIGINALS[0])]
    );
    assert!(s.done);
    tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .expect("the server ends once the stream is done")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn shutdown_closes_streams_still_open_after_the_grace_period() {
    let up = ScriptedUpstream::start(|_| {
        Reply::sse("data: {}\n\n", 100, Duration::ZERO).end(End::Stall)
    })
    .await;
    let sg = start_sandgate(&up.base_url(), |raw| {
        raw.set("timeouts.shutdown_grace", "300ms").unwrap();
    })
    .await;
    let req = http::Request::post(format!("http://{}/v1/chat/completions", sg.addr()))
        .header("content-type", "application/json")
        .body(crate::support::full(serde_json::to_vec(&stream_request()).unwrap()))
        .unwrap();
    let resp = crate::support::client().request(req).await.unwrap();
    let mut body = resp.into_body();
    body.frame().await.unwrap().unwrap();
    tokio::time::timeout(Duration::from_secs(5), sg.shutdown())
        .await
        .expect("shutdown ends after the grace period")
        .unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), body.collect()).await.unwrap();
    assert!(end.is_err(), "the unfinished stream was cut, not ended cleanly");
    assert!(eventually(Duration::from_secs(5), || up.bodies_abandoned() == 1).await);
}

#[test]
fn a_bad_config_file_stops_the_binary_with_a_message_naming_the_key() {
    let dir = std::env::temp_dir().join(format!("sandgate-badconf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        ("unknown.toml", "lissen = \"127.0.0.1:1\"\n", "unknown key \"lissen\" at line 1"),
        (
            "type.toml",
            "[timeouts]\nidle = 5\n",
            "timeouts.idle: invalid type: integer `5`, expected a string",
        ),
        ("value.toml", "mode = \"links\"\n", "mode: unknown mode `links`"),
        ("listen.toml", "listen = \"x\"\n", "listen: invalid socket address \"x\""),
    ];
    for (name, text, want) in cases {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sandgate"))
            .arg("--config")
            .arg(&path)
            .env_remove("SANDGATE_CONFIG")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{name}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Values are checked after the layers are merged, so their errors name the key only.
        let prefix = if name == "listen.toml" || name == "value.toml" {
            "sandgate: config: ".to_owned()
        } else {
            format!("sandgate: config: {}: ", path.display())
        };
        assert!(
            stderr.starts_with(&prefix) && stderr.contains(want),
            "{name}: {stderr:?} should start with {prefix:?} and say {want:?}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_client_too_slow_with_its_headers_is_disconnected() {
    let up = ScriptedUpstream::start(openai::script).await;
    let sg = start_sandgate(&up.base_url(), |raw| {
        raw.set("timeouts.header_read", "300ms").unwrap();
    })
    .await;
    let mut tcp = tokio::net::TcpStream::connect(sg.addr()).await.unwrap();
    tcp.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: sandgate\r\n").await.unwrap();
    // The rest of the headers never come: the server must hang up rather than wait forever.
    let mut buf = [0u8; 1024];
    let mut received = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the connection is still open");
    let text = String::from_utf8_lossy(&received);
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn an_h2_client_resetting_its_stream_closes_the_upstream_connection() {
    let sse = openai::chat_sse(&[&ORIGINALS[0].repeat(20)], false);
    let up =
        ScriptedUpstream::start(move |_| Reply::sse(sse.clone(), 40, Duration::from_millis(20)))
            .await;
    let sg = start_sandgate(&up.base_url(), |_| {}).await;
    let (send, resp) =
        crate::support::h2_post_json(sg.addr(), "/v1/chat/completions", &stream_request(), &[])
            .await;
    let mut body = resp.into_body();
    body.frame().await.unwrap().unwrap();
    assert_eq!(sg.metrics().streams_in_flight(), 1);

    // Dropping the body resets the HTTP/2 stream; the connection itself stays open.
    drop(body);
    assert!(eventually(Duration::from_secs(5), || up.closed() == 1).await);
    assert!(eventually(Duration::from_secs(5), || sg.metrics().streams_in_flight() == 0).await);
    assert_eq!(sg.metrics().streams_cancelled(), 1);
    assert!(!send.is_closed(), "the client's HTTP/2 connection is still usable");
}

#[tokio::test]
async fn a_client_silent_in_the_middle_of_its_body_gets_408() {
    let up = ScriptedUpstream::start(openai::script).await;
    let sg = start_sandgate(&up.base_url(), |raw| {
        // The client's body has its own timeout, apart from the upstream's idle timeout.
        raw.set("timeouts.request_body", "300ms").unwrap();
    })
    .await;
    for path in ["/v1/chat/completions", "/v1/files"] {
        let mut tcp = tokio::net::TcpStream::connect(sg.addr()).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: sandgate\r\ncontent-type: application/json\r\n\
             content-length: 100\r\n\r\n{{\"model\":"
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        let text = read_until(&mut tcp, "}}").await;
        assert!(text.starts_with("HTTP/1.1 408"), "{path}: {text}");
        assert!(text.contains("\"code\":\"request_timeout\""), "{path}: {text}");
    }
}

#[tokio::test]
async fn a_client_that_connects_and_sends_nothing_or_half_a_preface_is_disconnected() {
    let up = ScriptedUpstream::start(openai::script).await;
    let sg = start_sandgate(&up.base_url(), |raw| {
        raw.set("timeouts.header_read", "300ms").unwrap();
    })
    .await;
    for first in [&b""[..], b"PRI * HTTP/2.0\r\n"] {
        // Before connecting: sandgate's deadline runs from its accept, which a busy machine may
        // schedule before this task gets back from the connect.
        let started = std::time::Instant::now();
        let mut tcp = tokio::net::TcpStream::connect(sg.addr()).await.unwrap();
        tcp.write_all(first).await.unwrap();
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await;
        let label = String::from_utf8_lossy(first);
        match read {
            Ok(Ok(0) | Err(_)) => {}
            Ok(Ok(n)) => panic!("{label:?}: unexpected answer {:?}", &buf[..n]),
            Err(_) => panic!("{label:?}: the connection is still open after 5 s"),
        }
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(250), "{label:?}: closed after {waited:?}");
    }
    // A connection that keeps to the protocol is served as before.
    let (status, _, _) = post_json(sg.addr(), "/v1/models", &stream_request(), &[]).await;
    assert_eq!(status, 200);
    assert!(up.requests().len() == 1);
}

#[tokio::test]
async fn the_first_byte_timeout_runs_from_the_end_of_a_slow_upload() {
    let up = ScriptedUpstream::start(|r| {
        Reply::json(&json!({"object": "file", "bytes": r.body.len()}))
            .head_delay(Duration::from_millis(100))
    })
    .await;
    let sg = start_sandgate(&up.base_url(), |raw| {
        raw.set("timeouts.first_byte", "300ms").unwrap();
    })
    .await;
    // Four parts 250 ms apart: the upload alone lasts longer than the first-byte timeout.
    let mut tcp = tokio::net::TcpStream::connect(sg.addr()).await.unwrap();
    let head =
        "POST /v1/files HTTP/1.1\r\nhost: sandgate\r\ncontent-type: application/octet-stream\r\n\
                content-length: 4000\r\n\r\n";
    tcp.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        tcp.write_all(&[b'x'; 1000]).await.unwrap();
    }
    let text = read_until(&mut tcp, "}").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"bytes\":4000"), "{text}");
    assert_eq!(up.last_request().body.len(), 4000);
}

#[tokio::test]
async fn a_stream_the_client_leaves_still_counts_the_blocks_it_rewrote() {
    let sse = openai::chat_sse(&[&ORIGINALS[0].repeat(20)], false);
    let up =
        ScriptedUpstream::start(move |_| Reply::sse(sse.clone(), 40, Duration::from_millis(10)))
            .await;
    let sg = start_sandgate(&up.base_url(), |_| {}).await;
    let mut tcp = open_stream(sg.addr()).await;
    let text = read_until(&mut tcp, "/sandbox#py=").await;
    assert!(text.contains("/sandbox#py="), "no link arrived: {text}");
    drop(tcp);
    assert!(eventually(Duration::from_secs(5), || sg.metrics().streams_in_flight() == 0).await);
    assert_eq!(sg.metrics().streams_cancelled(), 1);
    let text = sg.metrics().render();
    let blocks: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("sandgate_blocks_rewritten_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no blocks counter in {text}"));
    assert!((1..20).contains(&blocks), "blocks rewritten before the client left: {blocks}");
}

#[tokio::test]
async fn an_upstream_stalling_its_tls_handshake_answers_504_on_every_route() {
    // Accepts TCP connections and never says a word: the TLS handshake never completes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            conns.push(conn);
        }
    });
    let sg = start_sandgate(&format!("https://{addr}/v1"), |raw| {
        raw.set("timeouts.first_byte", "300ms").unwrap();
    })
    .await;
    for (method, path) in
        [("GET", "/v1/models"), ("POST", "/v1/files"), ("POST", "/v1/chat/completions")]
    {
        let started = std::time::Instant::now();
        let body = serde_json::to_vec(&stream_request()).unwrap();
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            crate::support::call(
                sg.addr(),
                method,
                path,
                &[("content-type", "application/json")],
                body,
            ),
        )
        .await;
        let (status, _, body) = answer.unwrap_or_else(|_| panic!("{method} {path} hangs"));
        assert_eq!(status, 504, "{method} {path}");
        assert_eq!(crate::support::error_of(&body).1, "upstream_timeout", "{method} {path}");
        assert!(started.elapsed() < Duration::from_secs(3), "{method} {path}");
    }
    held.abort();
}

#[tokio::test]
async fn an_encoded_event_stream_on_a_transparent_route_is_passed_on_as_it_comes() {
    // Two pieces of a gzip-encoded stream, the second 1.5 s after the first; no blank line in them.
    let piece: Vec<u8> = (0u8..100).map(|i| i.wrapping_mul(37) | 0x80).collect();
    let stream = [piece.clone(), piece.clone()].concat();
    let up = ScriptedUpstream::start(move |_| {
        Reply::new(200)
            .header("content-type", "text/event-stream")
            .header("content-encoding", "gzip")
            .chunked(stream.clone(), 100, Duration::from_millis(1500))
    })
    .await;
    let sg = start_sandgate(&up.base_url(), |_| {}).await;
    let req = http::Request::post(format!("http://{}/v1/threads/runs", sg.addr()))
        .header("accept-encoding", "gzip")
        .header("content-type", "application/json")
        .body(crate::support::full(serde_json::to_vec(&stream_request()).unwrap()))
        .unwrap();
    let resp = crate::support::client().request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], &piece[..], "the first piece arrives alone, not held for an event end");
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(&rest[..], &piece[..], "and nothing is appended");
}

#[tokio::test]
async fn a_head_request_for_an_event_stream_counts_no_stream() {
    let up =
        ScriptedUpstream::start(|_| Reply::new(200).header("content-type", "text/event-stream"))
            .await;
    let sg = start_sandgate(&up.base_url(), |_| {}).await;
    let (status, headers, body) =
        crate::support::call(sg.addr(), "HEAD", "/v1/threads/runs", &[], "").await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/event-stream");
    assert!(body.is_empty());
    assert!(eventually(Duration::from_secs(2), || sg.metrics().streams_in_flight() == 0).await);
    assert_eq!(
        sg.metrics().streams_cancelled(),
        0,
        "a HEAD answer is not a stream the client left"
    );
}
