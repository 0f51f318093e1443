//! The HTTP edge under hostile clients (issue 10, findings 3 and 4), against the `sandgate` binary as
//! a child process, its memory read from `/proc/PID/status` (VmRSS):
//!
//! - static files are sent from one shared copy per file: 200 HTTP/2 streams that grant no window
//!   (h2 `initial_window_size` 0), and 100 HTTP/1.1 clients that never read, keep sandgate's resident
//!   memory under [`RSS_BOUND_MB`]; HTTP/2 connections get at most `max_concurrent_streams` streams;
//! - the write timeout cuts clients that stop reading: their sockets are closed;
//! - the request body timeout (not the 300 s upstream idle timeout) ends a stalled request body with
//!   a 408;
//! - the connection cap: under `ulimit -n 128`, slow-body sockets that fill it do not keep `/healthz`
//!   from answering within the body timeout plus a second, and the log does not spin on EMFILE.
//!
//! Every wait is bounded; the memory checks stop the clients as soon as the bound is passed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::support::binary::Binary;
use crate::support::ScriptedUpstream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The documented bound (README, security model) on sandgate's resident memory under these clients.
const RSS_BOUND_MB: f64 = 150.0;

/// The static file the clients ask for: larger than the Pyodide wasm (8.6 MB), and larger than what
/// loopback socket buffers absorb, so that a client that does not read really blocks the writes.
const FILE_MB: usize = 16;

/// A temporary static directory holding `big.wasm` of [`FILE_MB`] (bytes that do not compress).
fn static_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sandgate-edge-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut bytes = vec![0u8; FILE_MB << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in &mut bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(dir.join("big.wasm"), bytes).unwrap();
    dir
}

/// sandgate's descriptors once its worker threads have started (their runtimes open a few each).
async fn settled_fds(sg: &Binary) -> usize {
    let mut last = sg.open_fds();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = sg.open_fds();
        if now == last {
            break;
        }
        last = now;
    }
    last
}

fn rss_mb(sg: &Binary) -> f64 {
    sg.status_kb("VmRSS") as f64 / 1024.0
}

async fn start_with_static(dir: &std::path::Path, extra: &[&str]) -> (ScriptedUpstream, Binary) {
    let up = ScriptedUpstream::start(crate::support::openai::script).await;
    let pyodide = format!("pyodide_dir={}", dir.display());
    let mut args = vec!["--set", &pyodide];
    args.extend_from_slice(extra);
    let sg = Binary::start(&up.base_url(), &args, None).await;
    (up, sg)
}

/// Waits (at most `limit`) until `cond` holds, checking every 50 ms.
async fn until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_window_h2_readers_of_a_large_file_share_one_copy_of_it() {
    let dir = static_dir("h2");
    let (_up, sg) = start_with_static(&dir, &[]).await;
    let before = rss_mb(&sg);
    let (connections, per_connection) = (4, 50);
    let mut held = Vec::new();
    let mut peak = before;
    'outer: for _ in 0..connections {
        let tcp = TcpStream::connect(sg.addr).await.unwrap();
        let (client, conn) = h2::client::Builder::new()
            .initial_window_size(0)
            .handshake::<_, bytes::Bytes>(tcp)
            .await
            .unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut client = client.ready().await.unwrap();
        for _ in 0..per_connection {
            let req = http::Request::get(format!("http://{}/pyodide/big.wasm", sg.addr))
                .body(())
                .unwrap();
            let (resp, _) = client.send_request(req, true).unwrap();
            let resp = tokio::time::timeout(Duration::from_secs(30), resp)
                .await
                .expect("response headers within 30 s")
                .unwrap();
            assert_eq!(resp.status(), 200);
            // The body is never read and no window is granted: sandgate holds the response.
            held.push(resp);
            client = client.ready().await.unwrap();
            peak = peak.max(rss_mb(&sg));
            if peak > RSS_BOUND_MB {
                break 'outer;
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    peak = peak.max(rss_mb(&sg));
    println!(
        "{} zero-window h2 streams of a {FILE_MB} MB file: VmRSS {before:.1} MB before, at most \
         {peak:.1} MB with them",
        held.len()
    );
    assert!(peak <= RSS_BOUND_MB, "VmRSS reached {peak:.1} MB with {} streams", held.len());
    assert_eq!(held.len(), connections * per_connection);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_connection_gets_at_most_max_concurrent_streams() {
    let dir = static_dir("streams");
    let (_up, sg) = start_with_static(&dir, &["--set", "max_concurrent_streams=7"]).await;
    let tcp = TcpStream::connect(sg.addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut conn = Box::pin(conn);
    tokio::spawn(async move {
        // The server's SETTINGS arrive with the first exchange; report the limit once it is known.
        let mut tx = Some(tx);
        let _ = std::future::poll_fn(|cx| {
            let r = std::future::Future::poll(conn.as_mut(), cx);
            if conn.max_concurrent_send_streams() != usize::MAX {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(conn.max_concurrent_send_streams());
                }
            }
            r
        })
        .await;
    });
    let mut client = client.ready().await.unwrap();
    let req = http::Request::get(format!("http://{}/healthz", sg.addr)).body(()).unwrap();
    let (resp, _) = client.send_request(req, true).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(30), resp).await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    let max = tokio::time::timeout(Duration::from_secs(10), rx).await.unwrap().unwrap();
    assert_eq!(max, 7);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Connects and asks for the big file over HTTP/1.1, then never reads. Its receive buffer is set
/// small, which also turns off the kernel's growing of it (loopback's may reach 32 MB).
async fn non_reader(addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 << 10).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    s.write_all(b"GET /pyodide/big.wasm HTTP/1.1\r\nhost: sandgate\r\n\r\n").await.unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_clients_that_never_read_share_one_copy_of_a_large_file() {
    let dir = static_dir("h1");
    let (_up, sg) = start_with_static(&dir, &[]).await;
    let before = rss_mb(&sg);
    let fds = settled_fds(&sg).await;
    let mut clients = Vec::new();
    let mut peak = before;
    for _ in 0..100 {
        clients.push(non_reader(sg.addr).await);
        peak = peak.max(rss_mb(&sg));
        if peak > RSS_BOUND_MB {
            break;
        }
    }
    // Every connection accepted and its response under way.
    until(Duration::from_secs(30), || sg.open_fds() >= fds + clients.len()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    peak = peak.max(rss_mb(&sg));
    println!(
        "{} HTTP/1.1 clients that never read a {FILE_MB} MB file: VmRSS {before:.1} MB before, at \
         most {peak:.1} MB with them",
        clients.len()
    );
    assert!(peak <= RSS_BOUND_MB, "VmRSS reached {peak:.1} MB with {} clients", clients.len());
    assert_eq!(clients.len(), 100);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_timeout_closes_clients_that_stop_reading() {
    let dir = static_dir("write");
    let (_up, sg) = start_with_static(&dir, &["--set", "timeouts.write=1s"]).await;
    let fds = settled_fds(&sg).await;
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(non_reader(sg.addr).await);
    }
    assert!(until(Duration::from_secs(30), || sg.open_fds() >= fds + 5).await, "accepted");
    // Their writes block; one second later sandgate closes them, without their reading anything.
    let closed = until(Duration::from_secs(30), || sg.open_fds() <= fds).await;
    assert!(closed, "sandgate still holds {} descriptors (had {fds})", sg.open_fds());
    // The client sees the connection end after the bytes the buffers took.
    let mut c = clients.pop().unwrap();
    let mut sink = vec![0u8; 1 << 20];
    let mut got = 0usize;
    let end = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match c.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the connection was not closed");
    assert!(got < FILE_MB << 20, "the whole file arrived ({got} bytes)");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A request whose headers promise a body that never comes.
const SLOW_BODY: &[u8] = b"POST /v1/chat/completions HTTP/1.1\r\nhost: sandgate\r\n\
    content-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"model\":";

/// Reads what the server sends until it closes (or `limit` passes).
async fn read_to_close(s: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()?;
    Some(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_body_gets_408_after_the_request_body_timeout() {
    let up = ScriptedUpstream::start(crate::support::openai::script).await;
    let sg = crate::support::start_sandgate(&up.base_url(), |raw| {
        raw.set("timeouts.request_body", "1s").unwrap();
    })
    .await;
    let mut s = TcpStream::connect(sg.addr()).await.unwrap();
    s.write_all(SLOW_BODY).await.unwrap();
    // The upstream idle timeout stays 300 s: the answer comes from the request body timeout.
    let out = read_to_close(&mut s, Duration::from_secs(60)).await.expect("an answer and a close");
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
    assert!(up.requests().is_empty(), "nothing went upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_while_slow_body_sockets_fill_the_connection_cap() {
    let up = ScriptedUpstream::start(crate::support::openai::script).await;
    let body_timeout = Duration::from_secs(2);
    let sg = Binary::start(
        &up.base_url(),
        &["--set", "timeouts.request_body=2s", "--set", "workers=2"],
        Some(128),
    )
    .await;
    let listening = sg
        .log()
        .iter()
        .find(|l| l.contains("sandgate listening"))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .unwrap();
    let cap = listening["fields"]["max_connections"].as_u64().expect("the cap is logged") as usize;
    assert!(cap < 128, "the cap leaves room under ulimit -n 128: {cap}");
    let fds = settled_fds(&sg).await;
    let mut slow = Vec::new();
    for _ in 0..cap {
        let mut s = TcpStream::connect(sg.addr).await.unwrap();
        s.write_all(SLOW_BODY).await.unwrap();
        slow.push(s);
    }
    assert!(
        until(Duration::from_secs(30), || sg.open_fds() >= fds + cap).await,
        "sandgate took the slow sockets ({} descriptors, had {fds})",
        sg.open_fds()
    );
    // Every slot is taken: /healthz waits in the backlog until the first slow body times out.
    let started = Instant::now();
    let mut h = TcpStream::connect(sg.addr).await.unwrap();
    h.write_all(b"GET /healthz HTTP/1.1\r\nhost: sandgate\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut h, Duration::from_secs(60)).await.expect("/healthz answers");
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&answer);
    println!("/healthz with {cap} slow-body sockets holding every slot: answered in {took:?}");
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    assert!(took < body_timeout + Duration::from_secs(1), "/healthz took {took:?}");
    // The slow sockets got a clear 408 and were closed.
    for s in slow.iter_mut().take(3) {
        let out = read_to_close(s, Duration::from_secs(30)).await.expect("closed");
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    }
    let accept_lines = sg.log().iter().filter(|l| l.contains("accept failed")).count();
    assert!(accept_lines <= 2, "the log repeated accept failures {accept_lines} times");
}
