//! Shared test helpers: a scripted OpenAI-like upstream written with hyper, a small HTTP client, and
//! builders and parsers for the OpenAI API shapes (JSON and SSE).
//!
//! The upstream answers every request through a script (a closure from the recorded request to a
//! [`Reply`]): JSON or SSE bodies cut into chunks of a chosen size with chosen delays, error statuses
//! with headers, a stall before the headers or mid-body, or a cut connection. It records every request
//! it received and counts its connections, so a test can see when the proxy closed one. `tls/` holds
//! a test-only CA and a certificate for 127.0.0.1 and localhost (valid for 100 years).

pub mod binary;
pub mod browser;
pub mod engine;
pub mod expect;
pub mod openai;
pub mod tools;

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type TestBody = UnsyncBoxBody<Bytes, BoxError>;

/// A request as the scripted upstream received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// Path and query, e.g. `/v1/models?limit=2`.
    pub uri: String,
    pub version: http::Version,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// How many data frames the body arrived in.
    pub frames: usize,
}

impl Recorded {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// How a scripted body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// A clean end of the body.
    Finish,
    /// The connection is cut (the body fails mid-way).
    Cut,
    /// Nothing more is sent, and the body never ends.
    Stall,
}

/// One scripted answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Wait this long before sending the headers.
    pub head_delay: Duration,
    /// Body pieces, each sent after its delay.
    pub chunks: Vec<(Duration, Bytes)>,
    pub end: End,
}

impl Reply {
    pub fn new(status: u16) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            head_delay: Duration::ZERO,
            chunks: Vec::new(),
            end: End::Finish,
        }
    }

    /// A JSON answer in one piece.
    pub fn json(value: &serde_json::Value) -> Self {
        Reply::new(200)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(value).unwrap_or_default())
    }

    /// An event stream, cut into network chunks of `chunk` bytes sent `delay` apart.
    pub fn sse(bytes: impl Into<Bytes>, chunk: usize, delay: Duration) -> Self {
        Reply::new(200)
            .header("content-type", "text/event-stream; charset=utf-8")
            .chunked(bytes, chunk, delay)
    }

    /// An error status with an OpenAI-shaped body.
    pub fn error(status: u16, message: &str, kind: &str) -> Self {
        let body = serde_json::json!({"error": {"message": message, "type": kind, "param": null, "code": null}});
        Reply::new(status)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body).unwrap_or_default())
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn body(mut self, bytes: impl Into<Bytes>) -> Self {
        self.chunks = vec![(Duration::ZERO, bytes.into())];
        self.headers.push(("content-length".to_owned(), self.body_len().to_string()));
        self
    }

    pub fn chunked(mut self, bytes: impl Into<Bytes>, chunk: usize, delay: Duration) -> Self {
        let bytes = bytes.into();
        self.chunks =
            bytes.chunks(chunk.max(1)).map(|c| (delay, Bytes::copy_from_slice(c))).collect();
        self
    }

    pub fn head_delay(mut self, d: Duration) -> Self {
        self.head_delay = d;
        self
    }

    pub fn end(mut self, end: End) -> Self {
        self.end = end;
        self
    }

    fn body_len(&self) -> usize {
        self.chunks.iter().map(|(_, b)| b.len()).sum()
    }
}

type Script = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<Recorded>>,
    accepted: AtomicUsize,
    closed: AtomicUsize,
    bodies_done: AtomicUsize,
    /// Bodies the peer stopped reading before their end (the proxy dropped the response).
    bodies_abandoned: AtomicUsize,
}

/// The scripted upstream server.
pub struct ScriptedUpstream {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ScriptedUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ScriptedUpstream {
    /// Starts a server on an ephemeral loopback port answering with `script`.
    pub async fn start(script: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_with(script, None).await
    }

    /// The same over TLS (ALPN h2 and http/1.1) with the test certificate for 127.0.0.1 and
    /// localhost, issued by `tests/it/support/tls/ca.pem`.
    pub async fn start_tls(script: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_with(script, Some(tls_acceptor())).await
    }

    async fn start_with(
        script: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Self {
        // A deep backlog (the kernel caps it at somaxconn): on a busy machine this accept loop can
        // fall behind a thousand connects at once, and a full backlog drops SYNs, which sandgate
        // would see as connect timeouts (the 504 the thousand-streams fault test once got).
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(4096).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let script: Script = Arc::new(script);
        let s = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                s.accepted.fetch_add(1, Ordering::SeqCst);
                let io = Tracked { inner: stream, shared: s.clone() };
                let shared = s.clone();
                let script = script.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let shared = shared.clone();
                        let script = script.clone();
                        async move { Ok::<_, Infallible>(answer(req, shared, script).await) }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(io), svc).await;
                        }
                        Some(acceptor) => {
                            if let Ok(tls_io) = acceptor.accept(io).await {
                                let _ = builder.serve_connection(TokioIo::new(tls_io), svc).await;
                            }
                        }
                    }
                });
            }
        });
        ScriptedUpstream { addr, shared, task }
    }

    /// The base URL to configure sandgate with.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The base URL of a TLS upstream.
    pub fn https_url(&self) -> String {
        format!("https://{}/v1", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    pub fn last_request(&self) -> Recorded {
        self.requests().pop().expect("the upstream received no request")
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections whose socket was closed so far.
    pub fn closed(&self) -> usize {
        self.shared.closed.load(Ordering::SeqCst)
    }

    pub fn bodies_abandoned(&self) -> usize {
        self.shared.bodies_abandoned.load(Ordering::SeqCst)
    }

    pub fn bodies_done(&self) -> usize {
        self.shared.bodies_done.load(Ordering::SeqCst)
    }
}

async fn answer(req: Request<Incoming>, shared: Arc<Shared>, script: Script) -> Response<TestBody> {
    let (parts, body) = req.into_parts();
    let mut frames = 0;
    let mut buf = Vec::new();
    let mut body = body;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    frames += 1;
                    buf.extend_from_slice(d);
                }
            }
            Err(_) => break,
        }
    }
    let recorded = Recorded {
        method: parts.method.to_string(),
        uri: parts.uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default(),
        version: parts.version,
        headers: parts.headers,
        body: Bytes::from(buf),
        frames,
    };
    shared.requests.lock().unwrap().push(recorded.clone());
    let reply = script(&recorded);
    if !reply.head_delay.is_zero() {
        tokio::time::sleep(reply.head_delay).await;
    }
    let mut resp = Response::new(ScriptBody::spawn(reply.chunks.clone(), reply.end, shared));
    *resp.status_mut() = StatusCode::from_u16(reply.status).unwrap();
    for (k, v) in &reply.headers {
        resp.headers_mut().append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    resp
}

/// A body fed by a task that sends the scripted chunks with their delays.
struct ScriptBody {
    rx: mpsc::Receiver<Result<Bytes, io::Error>>,
}

impl ScriptBody {
    fn spawn(chunks: Vec<(Duration, Bytes)>, end: End, shared: Arc<Shared>) -> TestBody {
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(async move {
            for (delay, bytes) in chunks {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                if tx.send(Ok(bytes)).await.is_err() {
                    shared.bodies_abandoned.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            }
            match end {
                End::Finish => {
                    shared.bodies_done.fetch_add(1, Ordering::SeqCst);
                }
                End::Cut => {
                    let _ =
                        tx.send(Err(io::Error::new(io::ErrorKind::ConnectionReset, "cut"))).await;
                }
                End::Stall => {
                    tx.closed().await;
                    shared.bodies_abandoned.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        ScriptBody { rx }.boxed_unsync()
    }
}

impl Body for ScriptBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A TCP stream that counts itself closed when dropped.
struct Tracked {
    inner: TcpStream,
    shared: Arc<Shared>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.shared.closed.fetch_add(1, Ordering::SeqCst);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The directory of the test certificates.
pub fn tls_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/tls")
}

/// A TLS acceptor with the test certificate (ALPN h2 and http/1.1).
pub fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = tls_dir();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("cert.pem"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("key.pem")).unwrap();
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
}

/// A TLS connector that trusts only the test CA and offers the given ALPN protocols.
pub fn tls_connector(alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(tls_dir().join("ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// The `link_key` of every test sandgate: links made with [`test_options`] are its own.
pub const TEST_LINK_KEY: &str = "sandgate test link key, 32 bytes";

/// Starts sandgate in-process against an upstream, with `tweak` applied to the raw configuration.
pub async fn start_sandgate(
    upstream: &str,
    tweak: impl FnOnce(&mut sandgate::config::RawConfig),
) -> sandgate::server::Running {
    let mut raw = sandgate::config::RawConfig::default();
    raw.set("listen", "127.0.0.1:0").unwrap();
    raw.set("upstream", upstream).unwrap();
    raw.set("public_url", "http://sandgate.test").unwrap();
    raw.set("link_key", TEST_LINK_KEY).unwrap();
    tweak(&mut raw);
    let config = raw.validate().unwrap();
    sandgate::server::spawn(config).await.unwrap()
}

/// The rewrite options a default test sandgate uses (for expectations).
pub fn test_options() -> sandgate::rewrite::Options {
    sandgate::rewrite::Options {
        public_url: "http://sandgate.test".to_owned(),
        link_key: sandgate::rewrite::LinkKey::new(TEST_LINK_KEY.as_bytes()).unwrap(),
        ..sandgate::rewrite::Options::default()
    }
}

/// A plain HTTP client for tests.
pub fn client(
) -> hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, TestBody>
{
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()
}

pub fn full(bytes: impl Into<Bytes>) -> TestBody {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// Sends a request and reads the whole answer.
pub async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> (StatusCode, HeaderMap, Bytes) {
    let mut req = Request::builder().method(method).uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(full(body)).unwrap();
    let resp = client().request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, bytes)
}

/// POSTs `body` as JSON to `path` over HTTP/2 with prior knowledge, on a new connection; answers
/// the response, its body unread, and the connection's sender (the connection lives while it does).
pub async fn h2_post_json(
    addr: SocketAddr,
    path: &str,
    body: &serde_json::Value,
    extra: &[(&str, &str)],
) -> (hyper::client::conn::http2::SendRequest<TestBody>, Response<Incoming>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut req =
        Request::post(format!("http://{addr}{path}")).header("content-type", "application/json");
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let req = req.body(full(serde_json::to_vec(body).unwrap())).unwrap();
    let resp = send.send_request(req).await.unwrap();
    (send, resp)
}

/// POSTs JSON with a bearer key.
pub async fn post_json(
    addr: SocketAddr,
    path: &str,
    body: &serde_json::Value,
    extra: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Bytes) {
    let mut headers =
        vec![("content-type", "application/json"), ("authorization", "Bearer sk-client")];
    headers.extend_from_slice(extra);
    call(addr, "POST", path, &headers, serde_json::to_vec(body).unwrap()).await
}

/// Polls `cond` every 10 ms until it holds or `limit` passes; returns whether it held.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Parses an OpenAI error body and returns (type, code, message).
pub fn error_of(body: &[u8]) -> (String, String, String) {
    let v: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)));
    let e = &v["error"];
    assert!(e.is_object(), "no error object in {v}");
    assert!(e.get("param").is_some(), "no param in {v}");
    (
        e["type"].as_str().unwrap_or_default().to_owned(),
        e["code"].as_str().unwrap_or_default().to_owned(),
        e["message"].as_str().unwrap_or_default().to_owned(),
    )
}
