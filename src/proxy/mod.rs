//! The HTTP edge of sandgate: routing, the OpenAI routes it rewrites, the routes it proxies
//! transparently, and the small service routes (`/healthz`, `/readyz`, `/metrics`, the sandbox page).
//!
//! - [`Gateway::handle`] answers one request; it never fails: every error becomes an OpenAI-shaped
//!   response, logged once here;
//! - [`headers`]: the header policy; [`body`]: the body adapters (the streaming rewrite lives there);
//!   [`upstream`]: the pooled upstream client and its timeouts; [`verify`]: the link check the
//!   sandbox page asks for; `terminal`: whether a stream's events include its end (`[DONE]`).
//!
//! Rewritten routes (`POST /v1/chat/completions`, `/v1/completions`, `/v1/responses`): the request body
//! must be `application/json` (415 otherwise, also when the header is missing: a web page can send any
//! other body without a CORS preflight), is read whole (up to `request_body_limit`), earlier answers in
//! it signed by this sandgate are restored (at most `request_body_limit` bytes of them), the `python`
//! tool is added where the configuration or `x-sandgate-tools` asks for it, and the response is
//! rewritten: JSON whole, event streams event by event (tool calls pass untouched: the client runs
//! them). Every other `/v1/...` request and
//! its response stream through unchanged.

pub mod body;
pub mod headers;
mod terminal;
pub mod upstream;
pub mod verify;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::config::Config;
use crate::error::{Error, StartError};
use crate::metrics::Metrics;
use crate::rewrite::api::{self, Endpoint, SseRewriter, Tool};
use crate::rewrite::{Cells, Context, Mode, Options};
use crate::sandbox::Sandbox;
use body::{
    full, ClientBody, ClientFault, Collected, IdleBody, Prefixed, ProxyBody, SseBody, StreamGuard,
    UploadWatch,
};
use headers::{Auth, CONTEXT_HEADER, MODE_HEADER};

/// Everything a request needs: one per worker thread. The workers' gateways share everything but
/// the upstream client, whose pooled connections stay on the thread that opened them.
#[derive(Debug)]
pub struct Gateway {
    config: Arc<Config>,
    /// Rewrite options for each mode and context, built once: the configured ones and the
    /// per-request overrides (`options[mode][context]`).
    options: [[Arc<Options>; 3]; 4],
    upstream: upstream::Upstream,
    auth: Arc<Auth>,
    sandbox: Arc<Sandbox>,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
}

impl Gateway {
    pub fn new(config: Arc<Config>, metrics: Arc<Metrics>) -> Result<Self, StartError> {
        let base = config.rewrite_options();
        let options = [Mode::Off, Mode::Link, Mode::Widget, Mode::Artifact].map(|mode| {
            [Context::Off, Context::Answer, Context::Conversation]
                .map(|context| Arc::new(Options { mode, context, ..base.clone() }))
        });
        let upstream = upstream::Upstream::new(&config)?;
        let auth = Auth::new(config.api_keys.clone(), config.upstream_authorization.clone())?;
        let sandbox = Sandbox::new(config.sandbox_config()).map_err(StartError::Sandbox)?;
        Ok(Gateway {
            config,
            options,
            upstream,
            auth: Arc::new(auth),
            sandbox: Arc::new(sandbox),
            metrics,
            ready: Arc::new(AtomicBool::new(false)),
        })
    }

    /// A gateway for another worker thread: the same configuration, sandbox, metrics and readiness,
    /// with an upstream client (and connection pool) of its own.
    pub fn for_worker(&self) -> Result<Self, StartError> {
        Ok(Gateway {
            config: self.config.clone(),
            options: self.options.clone(),
            upstream: upstream::Upstream::new(&self.config)?,
            auth: self.auth.clone(),
            sandbox: self.sandbox.clone(),
            metrics: self.metrics.clone(),
            ready: self.ready.clone(),
        })
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// `/readyz` answers 200 only between these two: the listener is up and not shutting down.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Answers one request. Never fails: errors become OpenAI-shaped responses.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        let start = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let (route, result) = self.route(req, start).await;
        let resp = match result {
            Ok(resp) => resp,
            Err(e) => {
                if e.status().is_server_error() {
                    tracing::warn!(%method, %path, status = e.status().as_u16(), error = %e, "request failed");
                } else {
                    tracing::info!(%method, %path, status = e.status().as_u16(), error = %e, "request refused");
                }
                e.to_response()
            }
        };
        self.metrics.request(route, resp.status().as_u16());
        tracing::debug!(
            %method, %path, route, status = resp.status().as_u16(),
            micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX),
            "answered"
        );
        resp
    }

    /// Picks the route; returns its metrics label with the outcome.
    async fn route(
        &self,
        req: Request<Incoming>,
        start: Instant,
    ) -> (&'static str, Result<Response<ProxyBody>, Error>) {
        let path = req.uri().path();
        let api_rest = if path == "/v1" { Some("") } else { path.strip_prefix("/v1/") };
        if let Some(rest) = api_rest {
            if !is_safe_api_path(rest) {
                return ("v1_other", Err(Error::BadPath(path.to_owned())));
            }
            let endpoint =
                if req.method() == Method::POST { Endpoint::from_path(rest) } else { None };
            return match endpoint {
                Some(ep) => (ep.as_str(), self.rewritten(ep, req, start).await),
                None => ("v1_other", self.transparent(req, start).await),
            };
        }
        match path {
            "/healthz" => ("healthz", Ok(text(StatusCode::OK, "ok\n"))),
            "/readyz" => {
                let ready = self.ready.load(Ordering::Relaxed);
                let resp = if ready {
                    text(StatusCode::OK, "ready\n")
                } else {
                    text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                };
                ("readyz", Ok(resp))
            }
            "/metrics" => {
                let mut resp = text(StatusCode::OK, self.metrics.render());
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                ("metrics", Ok(resp))
            }
            verify::PATH => {
                let resp = if matches!(*req.method(), Method::GET | Method::HEAD) {
                    let key = &self.config.link_key;
                    Ok(verify::answer(key, req.uri().query()).map(full))
                } else {
                    Err(Error::MethodNotAllowed(req.method().to_string()))
                };
                ("sandbox", resp)
            }
            p if Sandbox::owns(p) => {
                let resp = self.sandbox.handle(req.method(), p).await;
                let result = resp
                    .map(|r| r.map(|b| b.map_err(|never| match never {}).boxed_unsync()))
                    .ok_or_else(|| not_found(&req));
                ("sandbox", result)
            }
            p if crate::demo::is_playground_path(p) => {
                let resp = crate::demo::playground(req).await;
                let resp = resp.map(|b| b.map_err(|never| match never {}).boxed_unsync());
                ("playground", Ok(resp))
            }
            _ => ("not_found", Err(not_found(&req))),
        }
    }

    /// The rewrite options for a request: the configured mode and context unless `x-sandgate-mode`
    /// or `x-sandgate-context` say otherwise.
    fn options_for(&self, req: &Request<Incoming>) -> Result<Arc<Options>, Error> {
        let lossy = |v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
        let mode = match req.headers().get(MODE_HEADER) {
            None => self.config.mode,
            Some(v) => v
                .to_str()
                .ok()
                .and_then(|s| s.parse::<Mode>().ok())
                .ok_or_else(|| Error::BadModeHeader { value: lossy(v) })?,
        };
        let context = match req.headers().get(CONTEXT_HEADER) {
            None => self.config.context,
            Some(v) => v
                .to_str()
                .ok()
                .and_then(|s| s.parse::<Context>().ok())
                .ok_or_else(|| Error::BadContextHeader { value: lossy(v) })?,
        };
        let i = match mode {
            Mode::Off => 0,
            Mode::Link => 1,
            Mode::Widget => 2,
            Mode::Artifact => 3,
        };
        let j = match context {
            Context::Off => 0,
            Context::Answer => 1,
            Context::Conversation => 2,
        };
        Ok(self.options[i][j].clone())
    }

    /// Whether the `python` tool is added to a request: as configured, unless `x-sandgate-tools`
    /// says otherwise.
    fn python_tool_for(&self, req: &Request<Incoming>) -> Result<bool, Error> {
        let tools = headers::tools_header(req.headers())?;
        let tools = tools.as_deref().unwrap_or(&self.config.tools);
        Ok(tools.contains(&Tool::Python))
    }

    fn upstream_uri(&self, req: &Request<Incoming>) -> String {
        let rest = req.uri().path().strip_prefix("/v1").unwrap_or("").trim_start_matches('/');
        self.config.upstream.uri_for(rest, req.uri().query())
    }

    /// A body longer than the limit by its declared length is refused before reading it.
    fn check_declared_length(&self, headers: &http::HeaderMap) -> Result<(), Error> {
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        match declared {
            Some(n) if n > self.config.request_body_limit as u64 => {
                Err(Error::BodyTooLarge { limit: self.config.request_body_limit })
            }
            _ => Ok(()),
        }
    }

    /// Splits a client's request into what goes upstream: its method, its headers under the header
    /// policy (gateway keys checked), and its body under the size limit and the request body timeout,
    /// with the [`UploadWatch`] that tells how the body fared.
    fn outgoing(
        &self,
        req: Request<Incoming>,
    ) -> Result<(Method, http::HeaderMap, ClientBody, UploadWatch), Error> {
        let (parts, body) = req.into_parts();
        let mut headers = parts.headers;
        headers::upstream_request(&mut headers, &self.auth)?;
        self.check_declared_length(&headers)?;
        let upload = UploadWatch::default();
        let limit = self.config.request_body_limit;
        let body = ClientBody::new(body, limit, self.config.timeouts.request_body, upload.clone());
        Ok((parts.method, headers, body, upload))
    }

    /// The error for a request body cut off by its [`ClientBody`], if that is what happened.
    fn client_fault(&self, upload: &UploadWatch) -> Option<Error> {
        upload.get().map(|f| match f {
            ClientFault::TooLarge => Error::BodyTooLarge { limit: self.config.request_body_limit },
            ClientFault::Idle => Error::ClientTimeout { after: self.config.timeouts.request_body },
        })
    }

    /// `POST /v1/chat/completions`, `/v1/completions`, `/v1/responses`.
    async fn rewritten(
        &self,
        endpoint: Endpoint,
        req: Request<Incoming>,
        start: Instant,
    ) -> Result<Response<ProxyBody>, Error> {
        let mut opts = self.options_for(&req)?;
        let python_tool = self.python_tool_for(&req)?;
        // Only JSON, checked after the gateway key: a web page can send other bodies without a CORS
        // preflight, so a missing type is refused too (the openai SDKs always send it).
        let media = headers::media_type(req.headers());
        let wrong_type = (media != "application/json").then(|| {
            let got = req.headers().get(header::CONTENT_TYPE);
            Error::UnsupportedMediaType {
                got: got.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
            }
        });
        let uri = self.upstream_uri(&req);
        let (method, mut up_headers, body, upload) = self.outgoing(req)?;
        if let Some(e) = wrong_type {
            return Err(e);
        }
        let body = body
            .collect()
            .await
            .map_err(|e| self.client_fault(&upload).unwrap_or(Error::ClientBody(e.to_string())))?
            .to_bytes();
        // With the conversation context, the history's Python blocks become the answer's first
        // cells: they travel in the options of this request only.
        let mut history = Cells::default();
        let budget = self.config.request_body_limit;
        let restored = if opts.mode != Mode::Off && opts.context == Context::Conversation {
            api::restore_request_with_cells(endpoint, &opts, &body, budget, &mut history)
        } else {
            api::restore_request(endpoint, &opts, &body, budget)
        };
        if !history.is_empty() {
            opts = Arc::new(Options { history, ..Options::clone(&opts) });
        }
        let body = match restored {
            Some((restored, n)) => {
                self.metrics.histories_restored(n);
                Bytes::from(restored)
            }
            None => body,
        };
        let body = match python_tool.then(|| api::add_python_tool(endpoint, &body)).flatten() {
            Some(with_tool) => Bytes::from(with_tool),
            None => body,
        };
        if self.config.log_content {
            tracing::debug!(body = %String::from_utf8_lossy(&body), "request to upstream");
        }
        headers::for_rewritten_route(&mut up_headers, body.len());
        let up_req = build_request(method, &uri, up_headers, full(body))?;

        let sent = Instant::now();
        let resp = self.upstream.send(up_req, None).await?;
        let waited = sent.elapsed();
        self.metrics.upstream_latency.observe(waited);
        let before = sent.saturating_duration_since(start);

        let (mut rparts, rbody) = resp.into_parts();
        headers::client_response(&mut rparts.headers);
        let rewritable = rparts.status.is_success() && !headers::is_encoded(&rparts.headers);
        if rparts.status.is_success() && headers::is_encoded(&rparts.headers) {
            tracing::warn!(
                encoding = ?rparts.headers.get(header::CONTENT_ENCODING),
                "the upstream encoded its answer despite accept-encoding: identity; passing it through unchanged"
            );
        }
        let media = headers::media_type(&rparts.headers);

        if rewritable && media == "text/event-stream" {
            headers::for_event_stream(&mut rparts.headers);
            let rewriter =
                (opts.mode != Mode::Off).then(|| SseRewriter::new(endpoint, opts.clone()));
            let guard = StreamGuard::new(self.metrics.clone(), before, self.config.log_content);
            let body = SseBody::new(rbody, rewriter, self.config.timeouts.idle, guard);
            return Ok(Response::from_parts(rparts, body.boxed_unsync()));
        }

        if rewritable && media == "application/json" && opts.mode != Mode::Off {
            let collecting = Instant::now();
            let idle = self.config.timeouts.idle;
            let bytes = match body::collect_up_to(rbody, idle, self.config.json_rewrite_limit)
                .await?
            {
                Collected::Whole(bytes) => bytes,
                Collected::TooLarge { head, rest } => {
                    tracing::warn!(
                        limit = self.config.json_rewrite_limit,
                        "the upstream's answer is larger than json_rewrite_limit: passed on unchanged"
                    );
                    self.metrics.overhead.observe(before);
                    let body = Prefixed::new(head, IdleBody::new(rest, idle));
                    return Ok(Response::from_parts(rparts, body.boxed_unsync()));
                }
            };
            let upstream_time = waited + collecting.elapsed();
            let out = match api::rewrite_json(endpoint, &opts, &bytes) {
                Some((rewritten, stats)) => {
                    self.metrics.blocks_rewritten(stats.blocks_rewritten);
                    Bytes::from(rewritten)
                }
                None => bytes,
            };
            if self.config.log_content {
                tracing::debug!(body = %String::from_utf8_lossy(&out), "response to client");
            }
            rparts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(out.len()));
            self.metrics.overhead.observe(start.elapsed().saturating_sub(upstream_time));
            return Ok(Response::from_parts(rparts, full(out)));
        }

        self.metrics.overhead.observe(before);
        let body = IdleBody::new(rbody, self.config.timeouts.idle);
        Ok(Response::from_parts(rparts, body.boxed_unsync()))
    }

    /// Every other `/v1/...` request: both bodies stream through unchanged.
    async fn transparent(
        &self,
        req: Request<Incoming>,
        start: Instant,
    ) -> Result<Response<ProxyBody>, Error> {
        let uri = self.upstream_uri(&req);
        let (method, up_headers, body, upload) = self.outgoing(req)?;
        // A HEAD answer has no body: nothing to frame, and no stream to count.
        let head = method == Method::HEAD;
        let up_req = build_request(method, &uri, up_headers, body.boxed_unsync())?;

        let sent = Instant::now();
        let resp = match self.upstream.send(up_req, Some(&upload)).await {
            Ok(resp) => resp,
            Err(e) => return Err(self.client_fault(&upload).unwrap_or(e)),
        };
        self.metrics.upstream_latency.observe(sent.elapsed());
        let before = sent.saturating_duration_since(start);
        let (mut rparts, rbody) = resp.into_parts();
        headers::client_response(&mut rparts.headers);
        let stream = !head && headers::media_type(&rparts.headers) == "text/event-stream";
        if stream {
            headers::for_event_stream(&mut rparts.headers);
        }
        // An event stream is not rewritten here, but framed like the rewritten ones: a failure or a
        // stall after it began ends it with an in-band error event rather than a cut connection. (An
        // encoded stream cannot be framed, nor take an event appended: it passes as it is.)
        if stream && !headers::is_encoded(&rparts.headers) {
            let guard = StreamGuard::new(self.metrics.clone(), before, self.config.log_content);
            let body = SseBody::new(rbody, None, self.config.timeouts.idle, guard);
            return Ok(Response::from_parts(rparts, body.boxed_unsync()));
        }
        self.metrics.overhead.observe(before);
        let body = IdleBody::new(rbody, self.config.timeouts.idle);
        Ok(Response::from_parts(rparts, body.boxed_unsync()))
    }
}

/// A path below `/v1/` must stay below the upstream base: no `.` or `..` segments (also
/// percent-encoded) and no encoded slashes or backslashes that the upstream might decode.
pub fn is_safe_api_path(rest: &str) -> bool {
    rest.split('/').all(|segment| {
        let lower = segment.to_ascii_lowercase();
        let decoded = lower.replace("%2e", ".");
        decoded != "."
            && decoded != ".."
            && !lower.contains("%2f")
            && !lower.contains("%5c")
            && !segment.contains('\\')
    })
}

fn build_request(
    method: Method,
    uri: &str,
    headers: http::HeaderMap,
    body: ProxyBody,
) -> Result<Request<ProxyBody>, Error> {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        // The pooled client switches to HTTP/2 by ALPN where `upstream_http2` offers it.
        .version(Version::HTTP_11)
        .body(body)
        .map_err(|e| Error::Upstream(format!("cannot build the upstream request: {e}").into()))?;
    *req.headers_mut() = headers;
    Ok(req)
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<ProxyBody> {
    let mut resp = Response::new(full(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

fn not_found(req: &Request<Incoming>) -> Error {
    Error::NotFound { method: req.method().to_string(), path: req.uri().path().to_owned() }
}
