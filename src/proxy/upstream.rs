//! The upstream client: pooled connections, HTTP/1.1 (and HTTP/2 by ALPN over TLS when
//! `upstream_http2` is set), rustls with the webpki roots for `https` upstreams, TCP_NODELAY, the
//! connect and first-byte timeouts, and the mapping of client failures to [`Error`].
//!
//! HTTP/1.1 is the default because an HTTP/2 upstream takes every request of a worker on one
//! connection, where the upstream's concurrent-stream limit (often 100) would queue further requests
//! behind long streams until they hit the first-byte timeout.

use std::error::Error as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::config::Config;
use crate::error::{Error, StartError, TimeoutPhase};
use crate::proxy::body::{ProxyBody, UploadWatch};

/// A pooled HTTP(S) client.
#[derive(Clone, Debug)]
pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, ProxyBody>,
    first_byte: Duration,
    connect: Duration,
}

impl Upstream {
    /// A client for the configured upstream: its timeouts, `upstream_ca` (root certificates trusted
    /// besides the webpki roots) and `upstream_http2`.
    pub fn new(config: &Config) -> Result<Self, StartError> {
        let timeouts = &config.timeouts;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeouts.connect));
        http.set_keepalive(Some(Duration::from_secs(60)));
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(client_tls(config.upstream_ca.as_deref())?)
            .https_or_http()
            .enable_http1();
        let https = if config.upstream_http2 {
            builder.enable_http2().wrap_connector(http)
        } else {
            builder.wrap_connector(http)
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(https);
        Ok(Upstream { client, first_byte: timeouts.first_byte, connect: timeouts.connect })
    }

    /// Sends a request and waits for the response headers, within the first-byte timeout: the
    /// connection, the TLS handshake, the request and the upstream's thinking all count. With
    /// `upload`, a request body still streaming from the client, the clock restarts whenever the body
    /// makes progress: an upload that keeps producing is never cut, and the timeout runs in full from
    /// its last piece (the body's own idle timeout watches the client).
    pub async fn send(
        &self,
        req: Request<ProxyBody>,
        upload: Option<&UploadWatch>,
    ) -> Result<Response<Incoming>, Error> {
        let response = self.client.request(req);
        tokio::pin!(response);
        let mut from = Instant::now();
        loop {
            tokio::select! {
                result = &mut response => return result.map_err(|e| classify(e, self.connect)),
                () = tokio::time::sleep_until((from + self.first_byte).into()) => {
                    match upload.map(UploadWatch::last_progress) {
                        Some(last) if last > from => from = last,
                        _ => {
                            return Err(Error::UpstreamTimeout {
                                phase: TimeoutPhase::FirstByte,
                                after: self.first_byte,
                            })
                        }
                    }
                }
            }
        }
    }
}

/// The certificates of the PEM file at `path`, the value of the configuration key `key`; a file
/// without any is an error.
pub(crate) fn pem_certificates(
    key: &str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, StartError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| StartError::Tls(format!("{key}: {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(StartError::Tls(format!("{key}: {}: no certificate found", path.display())));
    }
    Ok(certs)
}

/// The TLS client configuration: the webpki roots, plus the operator's own CA if any.
fn client_tls(extra_ca: Option<&Path>) -> Result<rustls::ClientConfig, StartError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_ca {
        for cert in pem_certificates("upstream_ca", path)? {
            roots
                .add(cert)
                .map_err(|e| StartError::Tls(format!("upstream_ca: {}: {e}", path.display())))?;
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StartError::Tls(format!("upstream client: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// Turns a client error into a connect failure, a connect timeout or another upstream failure,
/// keeping it as the cause.
fn classify(e: hyper_util::client::legacy::Error, connect_timeout: Duration) -> Error {
    let mut timed_out = false;
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            timed_out |= io.kind() == std::io::ErrorKind::TimedOut;
        }
        source = s.source();
    }
    if e.is_connect() {
        if timed_out {
            return Error::UpstreamTimeout { phase: TimeoutPhase::Connect, after: connect_timeout };
        }
        return Error::UpstreamConnect(Box::new(e));
    }
    Error::Upstream(Box::new(e))
}
