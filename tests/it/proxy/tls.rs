//! TLS on both sides: sandgate's listener (rustls, ALPN h2 and http/1.1) and an `https` upstream
//! whose certificate comes from a private CA given as `upstream_ca` (HTTP/2 by ALPN).

use crate::support::openai::{self, ORIGINALS};
use crate::support::{post_json, start_sandgate, test_options, ScriptedUpstream};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use serde_json::json;

fn chat_stream_request() -> serde_json::Value {
    json!({"model": "gpt-test", "n": 2, "stream": true, "messages": [{"role": "user", "content": "hi"}]})
}

fn expected() -> Vec<String> {
    ORIGINALS.iter().map(|t| sandgate::rewrite::rewrite(&test_options(), t)).collect()
}

#[tokio::test]
async fn the_tls_listener_serves_http1_and_h2() {
    let up = ScriptedUpstream::start(openai::script).await;
    let dir = crate::support::tls_dir();
    let sg = start_sandgate(&up.base_url(), |raw| {
        raw.set("tls.cert", dir.join("cert.pem").to_str().unwrap()).unwrap();
        raw.set("tls.key", dir.join("key.pem").to_str().unwrap()).unwrap();
    })
    .await;
    let body = serde_json::to_vec(&chat_stream_request()).unwrap();

    for (alpn, version) in
        [(&b"h2"[..], http::Version::HTTP_2), (&b"http/1.1"[..], http::Version::HTTP_11)]
    {
        let tcp = tokio::net::TcpStream::connect(sg.addr()).await.unwrap();
        let tls = crate::support::tls_connector(&[alpn])
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
        let io = TokioIo::new(tls);
        let req = http::Request::post(format!(
            "https://localhost:{}/v1/chat/completions",
            sg.addr().port()
        ))
        .header("content-type", "application/json")
        .body(crate::support::full(body.clone()))
        .unwrap();
        let resp = if version == http::Version::HTTP_2 {
            let (mut send, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await.unwrap();
            tokio::spawn(conn);
            send.send_request(req).await.unwrap()
        } else {
            let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            send.send_request(req).await.unwrap()
        };
        assert_eq!(resp.version(), version);
        assert_eq!(resp.status(), 200);
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let s = openai::chat_stream(&openai::parse_sse(&bytes), "delta");
        assert_eq!(s.texts, expected(), "over {}", String::from_utf8_lossy(alpn));
    }

    // Plain HTTP on the TLS port gets no answer.
    let plain = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        crate::support::call(sg.addr(), "GET", "/healthz", &[], ""),
    );
    let result = tokio::spawn(plain).await;
    assert!(
        !matches!(result, Ok(Ok((status, _, _))) if status == 200),
        "plain HTTP must not be served on the TLS listener"
    );
}

#[tokio::test]
async fn an_https_upstream_with_a_private_ca_is_reached_over_h2() {
    let up = ScriptedUpstream::start_tls(openai::script).await;
    let ca = crate::support::tls_dir().join("ca.pem");
    let sg = start_sandgate(&up.https_url(), |raw| {
        raw.set("upstream_ca", ca.to_str().unwrap()).unwrap();
        raw.set("upstream_http2", "true").unwrap();
        // Each worker thread has its own pool: one worker, so that both requests share one.
        raw.set("workers", "1").unwrap();
    })
    .await;
    let (status, _, body) =
        post_json(sg.addr(), "/v1/chat/completions", &chat_stream_request(), &[]).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let s = openai::chat_stream(&openai::parse_sse(&body), "delta");
    assert_eq!(s.texts, expected());
    let got = up.last_request();
    assert_eq!(got.version, http::Version::HTTP_2, "ALPN chose h2");
    assert_eq!(got.header("authorization"), Some("Bearer sk-client"));

    // A second request reuses the pooled connection.
    let (status, _, _) =
        post_json(sg.addr(), "/v1/chat/completions", &chat_stream_request(), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(up.accepted(), 1, "one pooled connection for both requests");
}

#[tokio::test]
async fn an_https_upstream_with_an_unknown_ca_answers_502() {
    let up = ScriptedUpstream::start_tls(openai::script).await;
    let sg = start_sandgate(&up.https_url(), |_| {}).await;
    let (status, _, body) =
        post_json(sg.addr(), "/v1/chat/completions", &chat_stream_request(), &[]).await;
    assert_eq!(status, 502);
    let (_, code, message) = crate::support::error_of(&body);
    assert_eq!(code, "upstream_connect_error");
    assert!(message.to_lowercase().contains("certificate"), "{message}");
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn an_https_upstream_is_reached_over_http1_unless_http2_is_asked_for() {
    let up = ScriptedUpstream::start_tls(openai::script).await;
    let ca = crate::support::tls_dir().join("ca.pem");
    let sg = start_sandgate(&up.https_url(), |raw| {
        raw.set("upstream_ca", ca.to_str().unwrap()).unwrap();
        raw.set("workers", "1").unwrap();
    })
    .await;
    // Two streams at once: each has its own connection, none waits for the other.
    let req = chat_stream_request();
    let (a, b) = tokio::join!(
        post_json(sg.addr(), "/v1/chat/completions", &req, &[]),
        post_json(sg.addr(), "/v1/chat/completions", &req, &[]),
    );
    assert_eq!((a.0.as_u16(), b.0.as_u16()), (200, 200));
    assert_eq!(openai::chat_stream(&openai::parse_sse(&a.2), "delta").texts, expected());
    let got = up.last_request();
    assert_eq!(got.version, http::Version::HTTP_11, "h2 was not offered");
    assert_eq!(up.accepted(), 2, "one connection per request in flight");
}
