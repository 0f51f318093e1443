//! The listener and the connection loop: TCP (TCP_NODELAY) or TLS (rustls, ALPN h2 and http/1.1),
//! HTTP/1.1 and HTTP/2 (also h2c with prior knowledge) on the same port, a header read timeout, and
//! graceful shutdown: stop accepting, let responses in flight finish up to a deadline, then close.
//! [`limits`]: the connection cap (from the open-files limit) and the back-off after a failed
//! accept; [`io`]: the write timeout on every client connection. HTTP/2 connections may have at most
//! `max_concurrent_streams` streams open.
//!
//! [`Server::bind`] + [`Server::serve`] is what `sandgate serve` runs; [`spawn`] runs the same server on
//! a task and hands back its address and a shutdown handle, for tests and the demo.

mod io;
mod limits;

use std::future::Future;
use std::io as stdio;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Sleep;
use tokio_rustls::TlsAcceptor;

use crate::config::{Config, TlsFiles};
use crate::error::StartError;
use crate::metrics::Metrics;
use crate::proxy::upstream::pem_certificates;
use crate::proxy::Gateway;
use io::WriteTimeout;
use limits::{Backoff, Limits};

/// A bound, not yet serving, sandgate.
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    tls: Option<TlsAcceptor>,
    gateway: Arc<Gateway>,
    config: Arc<Config>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Builds the gateway (upstream client, sandbox, metrics) and binds the listener.
    pub async fn bind(config: Config) -> Result<Server, StartError> {
        let config = Arc::new(config);
        let tls = config.tls.as_ref().map(tls_acceptor).transpose()?;
        let gateway = Arc::new(Gateway::new(config.clone(), Arc::new(Metrics::new()))?);
        let listener = limits::listen(config.listen)
            .map_err(|source| StartError::Bind { addr: config.listen, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| StartError::Bind { addr: config.listen, source })?;
        Ok(Server { listener, addr, tls, gateway, config })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.gateway.metrics().clone()
    }

    /// Serves until `shutdown` completes, then drains connections for up to `shutdown_grace`.
    ///
    /// `workers` threads each run a single-threaded runtime that accepts from the shared listener and
    /// serves its connections to the end with a [`Gateway`] of its own: a request, its upstream
    /// connection and its rewriting stay on one thread, so no wake-up crosses threads (the
    /// work-stealing runtime spent about a third of its CPU per proxied request on such hand-offs).
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
        let Server { listener, addr, tls, gateway, config } = self;
        let bind_error = |source| StartError::Bind { addr, source };
        let listener = listener.into_std().map_err(bind_error)?;
        let (stop, stopped) = watch::channel(false);
        let limits = Limits::new(config.max_connections);
        let mut workers = Vec::with_capacity(config.workers);
        for i in 0..config.workers.max(1) {
            workers.push(Worker {
                listener: listener.try_clone().map_err(bind_error)?,
                tls: tls.clone(),
                gateway: if i == 0 { gateway.clone() } else { Arc::new(gateway.for_worker()?) },
                config: config.clone(),
                limits: limits.clone(),
                stop: stopped.clone(),
            });
        }
        drop(listener);

        let (ended_tx, mut ended) = mpsc::unbounded_channel::<Result<(), StartError>>();
        let mut running = 0;
        let mut spawn_error = None;
        for (i, worker) in workers.into_iter().enumerate() {
            let ended_tx = ended_tx.clone();
            let spawned =
                std::thread::Builder::new().name(format!("sandgate-{i}")).spawn(move || {
                    let result = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| {
                            StartError::Task(format!("cannot start a worker runtime: {e}"))
                        })
                        .and_then(|rt| rt.block_on(worker.run()));
                    let _ = ended_tx.send(result);
                });
            match spawned {
                Ok(_) => running += 1,
                Err(e) => {
                    spawn_error =
                        Some(StartError::Task(format!("cannot start a worker thread: {e}")));
                    break;
                }
            }
        }
        drop(ended_tx);

        let mut result = match spawn_error {
            Some(e) => Err(e),
            None => {
                gateway.set_ready(true);
                tracing::info!(
                    %addr,
                    workers = running,
                    tls = tls.is_some(),
                    upstream = %config.upstream,
                    mode = %config.rewrite.mode,
                    max_connections = limits.max_connections,
                    open_files = limits.open_files,
                    "sandgate listening"
                );
                if config.link_key_random {
                    tracing::info!(
                        "link_key not set: links are signed with a per-process key; set link_key \
                         for replicas to share"
                    );
                }
                tokio::select! {
                    () = shutdown => {
                        tracing::info!(
                            grace_ms = config.timeouts.shutdown_grace.as_millis() as u64,
                            "shutting down: draining connections"
                        );
                        Ok(())
                    }
                    // A worker never ends on its own: if one does, the server stops with its error.
                    early = ended.recv() => {
                        running -= 1;
                        Err(match early {
                            Some(Err(e)) => e,
                            _ => StartError::Task("a worker thread ended unexpectedly".to_owned()),
                        })
                    }
                }
            }
        };
        gateway.set_ready(false);
        let _ = stop.send(true);
        while running > 0 {
            match ended.recv().await {
                Some(Err(e)) if result.is_ok() => result = Err(e),
                Some(_) => {}
                None => break,
            }
            running -= 1;
        }
        result
    }
}

/// One worker thread's share of the server: a handle on the listener and a gateway of its own.
struct Worker {
    listener: std::net::TcpListener,
    tls: Option<TlsAcceptor>,
    gateway: Arc<Gateway>,
    config: Arc<Config>,
    limits: Limits,
    stop: watch::Receiver<bool>,
}

impl Worker {
    /// Accepts and serves connections until told to stop, then drains its connections for up to
    /// `shutdown_grace`.
    async fn run(self) -> Result<(), StartError> {
        let Worker { listener, tls, gateway, config, limits, mut stop } = self;
        let addr = listener
            .local_addr()
            .map_err(|source| StartError::Bind { addr: config.listen, source })?;
        let listener =
            TcpListener::from_std(listener).map_err(|source| StartError::Bind { addr, source })?;
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(config.timeouts.header_read)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .max_concurrent_streams(config.max_concurrent_streams);
        let graceful = GracefulShutdown::new();
        let mut tasks = JoinSet::new();
        let mut backoff = Backoff::default();

        loop {
            // A connection slot first: when all are taken, clients wait in the listen backlog.
            let permit = tokio::select! {
                biased;
                // A dropped sender (the serving task was cancelled) stops the worker too.
                _ = stop.wait_for(|stop| *stop) => break,
                permit = limits.connections.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let accepted = tokio::select! {
                biased;
                _ = stop.wait_for(|stop| *stop) => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    let wait = backoff.failed(&e);
                    drop(permit);
                    tokio::select! {
                        biased;
                        _ = stop.wait_for(|stop| *stop) => break,
                        () = tokio::time::sleep(wait) => continue,
                    }
                }
            };
            backoff.succeeded();
            let _ = stream.set_nodelay(true);
            let conn = serve_connection(
                stream,
                peer,
                tls.clone(),
                builder.clone(),
                gateway.clone(),
                graceful.watcher(),
                config.timeouts,
            );
            tasks.spawn(async move {
                conn.await;
                drop(permit);
            });
            while tasks.try_join_next().is_some() {}
        }

        drop(listener);
        tokio::select! {
            () = graceful.shutdown() => tracing::debug!("worker: all connections closed"),
            () = tokio::time::sleep(config.timeouts.shutdown_grace) => {
                tracing::warn!("shutdown grace period over: closing the remaining connections");
            }
        }
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        Ok(())
    }
}

/// Serves one accepted connection to its end. The TLS handshake and each branch's connection future
/// are boxed, so a connection's task holds only the state of the protocol stack it runs (a plain
/// one no TLS state): the task's cell was 10 KB a connection, 6.9 KB with the branches boxed.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    builder: auto::Builder<TokioExecutor>,
    gateway: Arc<Gateway>,
    watcher: hyper_util::server::graceful::Watcher,
    timeouts: crate::config::Timeouts,
) {
    let header_read = timeouts.header_read;
    let stream = WriteTimeout::new(stream, timeouts.write);
    // hyper keeps the allocation of a connection's request future for as long as the connection
    // lives: the handler's state machine (kilobytes) goes in a box of its own, freed as soon as the
    // response head is ready instead of staying with every open stream.
    let service = service_fn(move |req| {
        let gateway = gateway.clone();
        async move {
            let handled = Box::pin(gateway.handle(req));
            Ok::<_, std::convert::Infallible>(handled.await)
        }
    });
    let result = match tls {
        None => {
            let io = FirstBytes::new(stream, header_read);
            let conn = builder.serve_connection(TokioIo::new(io), service);
            Box::pin(watcher.watch(conn.into_owned())).await
        }
        Some(acceptor) => {
            match tokio::time::timeout(header_read, Box::pin(acceptor.accept(stream))).await {
                Ok(Ok(tls_stream)) => {
                    let io = FirstBytes::new(tls_stream, header_read);
                    let conn = builder.serve_connection(TokioIo::new(io), service);
                    Box::pin(watcher.watch(conn.into_owned())).await
                }
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// The first bytes of an HTTP/2 connection (RFC 9113 section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A client connection that must show what it speaks within a deadline.
///
/// hyper-util's auto server reads the first bytes to tell HTTP/1.1 from HTTP/2 before either
/// protocol's own timers run, so a client that connects and sends nothing (or half the HTTP/2
/// preface) would hold a task and a socket forever. Until the bytes read rule out the HTTP/2 preface
/// (then hyper's HTTP/1.1 header read timeout takes over) or complete it, a read that waits past the
/// deadline fails with `TimedOut`, which ends the connection. After that it is a plain pass-through.
struct FirstBytes<IO> {
    io: IO,
    deadline: Option<Pin<Box<Sleep>>>,
    /// How many bytes were read, while they still match the HTTP/2 preface.
    seen: usize,
}

impl<IO> FirstBytes<IO> {
    fn new(io: IO, within: Duration) -> Self {
        FirstBytes { io, deadline: Some(Box::pin(tokio::time::sleep(within))), seen: 0 }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for FirstBytes<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<stdio::Result<()>> {
        let this = self.get_mut();
        let Some(deadline) = this.deadline.as_mut() else {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        };
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                let end = (this.seen + new.len()).min(H2_PREFACE.len());
                let matches = new.iter().zip(&H2_PREFACE[this.seen..end]).all(|(a, b)| a == b);
                this.seen += new.len();
                if new.is_empty() || !matches || this.seen >= H2_PREFACE.len() {
                    this.deadline = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => match deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(stdio::Error::new(
                    stdio::ErrorKind::TimedOut,
                    "the client sent no request in time",
                ))),
                Poll::Pending => Poll::Pending,
            },
            ready => ready,
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for FirstBytes<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<stdio::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[stdio::IoSlice<'_>],
    ) -> Poll<stdio::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<stdio::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<stdio::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

fn tls_acceptor(files: &TlsFiles) -> Result<TlsAcceptor, StartError> {
    let certs = pem_certificates("tls.cert", &files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| StartError::Tls(format!("tls.key: {}: {e}", files.key.display())))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StartError::Tls(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| StartError::Tls(format!("tls: certificate and key do not fit: {e}")))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// A server running on a task.
#[derive(Debug)]
pub struct Running {
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    trigger: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), StartError>>>,
}

/// Binds and starts serving on a new task; returns at once with the bound address.
pub async fn spawn(config: Config) -> Result<Running, StartError> {
    let server = Server::bind(config).await?;
    let addr = server.local_addr();
    let metrics = server.metrics();
    let (trigger, wait) = oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(async {
        let _ = wait.await;
    }));
    Ok(Running { addr, metrics, trigger: Some(trigger), task: Some(task) })
}

impl Running {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Stops accepting, drains (up to the grace period) and waits for the server to end.
    pub async fn shutdown(mut self) -> Result<(), StartError> {
        if let Some(t) = self.trigger.take() {
            let _ = t.send(());
        }
        match self.task.take() {
            Some(task) => task.await.map_err(|e| StartError::Task(e.to_string()))?,
            None => Ok(()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(t) = self.trigger.take() {
            let _ = t.send(());
        }
    }
}

/// Completes on SIGTERM or Ctrl-C (SIGINT).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}
