//! The HTTP edge of sandgate: routing, the OpenAI routes it rewrites, the routes it proxies
//! transparently, and the small service routes (`/healthz`, `/readyz`, `/metrics`, the sandbox page).
//!
//! - [`Gateway::handle`] answers one request; it never fails: every error becomes an OpenAI-shaped
//!   response, logged once here;
//! - [`headers`]: the header policy; [`body`]: the body wrappers (idle timer, upload limit, the event
//!   stream); [`upstream`]: the pooled upstream client and its timeouts; [`verify`]: the link check
//!   the sandbox page asks for; `terminal`: whether a stream's events include its end (`[DONE]`).
//!
//! A `/v1` request gets a `Plan`, decided once from its route and headers: `Transparent` (every
//! other `/v1/...` route, and the rewritten routes in the mode `off`: both bodies stream through
//! unchanged) or `Rewrite`. Then one path runs the phases, for both plans:
//!
//! 1. **prepare request** (`Gateway::prepare_request`): the header policy (gateway keys); for
//!    `Rewrite` the body must be `application/json` (415 otherwise, also when the header is missing:
//!    a web page can send any other body without a CORS preflight), is read whole (up to
//!    `request_body_limit`), earlier answers in it signed by this sandgate are restored (at most
//!    `request_body_limit` bytes of them), and the `python` tool is added where the configuration or
//!    `x-sandgate-tools` asks for it;
//! 2. **send** (`Gateway::send`): the upstream latency is recorded here;
//! 3. **prepare response** (`Gateway::prepare_response`): the response headers for the client, and
//!    what the body goes through (`Answer`);
//! 4. **response body** (`Gateway::response_body`): JSON whole, event streams event by event (tool
//!    calls pass untouched: the client runs them), anything else as it comes; the overhead is
//!    recorded here, once ([`Metrics::answered`]; a stream's at its end).

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
use crate::rewrite::sse::Framer;
use crate::rewrite::{Cells, Context, Mode, Options};
use crate::sandbox::Sandbox;
use body::{
    full, ClientBody, ClientFault, Collected, Events, Idle, Prefixed, ProxyBody, SseBody,
    StreamEnd, UploadWatch,
};
use headers::{Auth, CONTEXT_HEADER, MODE_HEADER};

/// Everything a request needs: one per worker thread. The workers' gateways share everything but
/// the upstream client, whose pooled connections stay on the thread that opened them.
#[derive(Debug)]
pub struct Gateway {
    config: Arc<Config>,
    /// Rewrite options for each mode that rewrites and each context, built once: the configured ones
    /// and the per-request overrides (`options[mode][context]`).
    options: [[Arc<Options>; 3]; 3],
    upstream: upstream::Upstream,
    auth: Arc<Auth>,
    sandbox: Arc<Sandbox>,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
}

impl Gateway {
    pub fn new(config: Arc<Config>, metrics: Arc<Metrics>) -> Result<Self, StartError> {
        let base = &config.rewrite;
        let options = [Mode::Link, Mode::Widget, Mode::Artifact].map(|mode| {
            [Context::Off, Context::Answer, Context::Conversation]
                .map(|context| Arc::new(Options { mode, context, ..base.clone() }))
        });
        let upstream = upstream::Upstream::new(&config)?;
        let auth = Auth::new(config.api_keys.clone(), config.upstream_authorization.clone())?;
        let sandbox = Sandbox::new(config.sandbox.clone()).map_err(StartError::Sandbox)?;
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
            let label = endpoint.map_or("v1_other", Endpoint::as_str);
            let plan = match endpoint {
                Some(endpoint) => self.plan(endpoint, &req),
                None => Ok(Plan::Transparent),
            };
            let result = match plan {
                Ok(plan) => self.exchange(plan, req, start).await,
                Err(e) => Err(e),
            };
            return (label, result);
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
                    let key = &self.config.rewrite.link_key;
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
            p if crate::playground::is_playground_path(p) => {
                let resp = crate::playground::handle(req).await;
                let resp = resp.map(|b| b.map_err(|never| match never {}).boxed_unsync());
                ("playground", Ok(resp))
            }
            _ => ("not_found", Err(not_found(&req))),
        }
    }

    /// The plan of a rewritten route: its options (the configured mode and context unless
    /// `x-sandgate-mode` or `x-sandgate-context` say otherwise) and whether the `python` tool is
    /// added (as configured, unless `x-sandgate-tools` says otherwise). The mode `off` makes the
    /// route transparent: the one place where "off" is decided. A bad header is refused (400)
    /// whatever the mode, before anything goes upstream.
    fn plan(&self, endpoint: Endpoint, req: &Request<Incoming>) -> Result<Plan, Error> {
        let lossy = |v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
        let mode = match req.headers().get(MODE_HEADER) {
            None => self.config.rewrite.mode,
            Some(v) => v
                .to_str()
                .ok()
                .and_then(|s| s.parse::<Mode>().ok())
                .ok_or_else(|| Error::BadModeHeader { value: lossy(v) })?,
        };
        let context = match req.headers().get(CONTEXT_HEADER) {
            None => self.config.rewrite.context,
            Some(v) => v
                .to_str()
                .ok()
                .and_then(|s| s.parse::<Context>().ok())
                .ok_or_else(|| Error::BadContextHeader { value: lossy(v) })?,
        };
        let tools = headers::tools_header(req.headers())?;
        let python_tool = tools.as_deref().unwrap_or(&self.config.tools).contains(&Tool::Python);
        let i = match mode {
            Mode::Off => return Ok(Plan::Transparent),
            Mode::Link => 0,
            Mode::Widget => 1,
            Mode::Artifact => 2,
        };
        let j = match context {
            Context::Off => 0,
            Context::Answer => 1,
            Context::Conversation => 2,
        };
        Ok(Plan::Rewrite { endpoint, opts: self.options[i][j].clone(), python_tool })
    }

    /// The phases of a proxied request, the same for both plans.
    async fn exchange(
        &self,
        plan: Plan,
        req: Request<Incoming>,
        start: Instant,
    ) -> Result<Response<ProxyBody>, Error> {
        let (plan, outgoing) = self.prepare_request(plan, req).await?;
        // Sandgate's own time so far: everything before the request went upstream.
        let before = start.elapsed();
        let resp = self.send(outgoing.req, outgoing.upload.as_ref()).await?;
        let (mut parts, body) = resp.into_parts();
        let answer = self.prepare_response(plan, outgoing.head, &mut parts);
        self.response_body(parts, body, answer, before).await
    }

    /// Phase 1: the request that goes upstream. Transparent: the client's, under the header policy,
    /// its body streaming (with the size limit and the request body timeout). Rewrite: the body read
    /// whole, restored, maybe given the tool; the plan comes back with the history's cells in its
    /// options (the conversation context).
    async fn prepare_request(
        &self,
        plan: Plan,
        req: Request<Incoming>,
    ) -> Result<(Plan, Outgoing), Error> {
        let Plan::Rewrite { endpoint, mut opts, python_tool } = plan else {
            let uri = self.upstream_uri(&req);
            let (method, headers, body, upload) = self.outgoing(req)?;
            // A HEAD answer has no body: nothing to frame, and no stream to count.
            let head = method == Method::HEAD;
            let req = build_request(method, &uri, headers, body.boxed_unsync())?;
            return Ok((Plan::Transparent, Outgoing { req, upload: Some(upload), head }));
        };
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
        let restored = if opts.context == Context::Conversation {
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
        let req = build_request(method, &uri, up_headers, full(body))?;
        let plan = Plan::Rewrite { endpoint, opts, python_tool };
        Ok((plan, Outgoing { req, upload: None, head: false }))
    }

    /// Phase 2: sends the request and waits for the response headers; the upstream latency is
    /// recorded here. When a request body still streaming was cut off (too large, too slow), that
    /// is the answer, not the upstream failure it caused.
    async fn send(
        &self,
        req: Request<ProxyBody>,
        upload: Option<&UploadWatch>,
    ) -> Result<Response<Incoming>, Error> {
        let sent = Instant::now();
        let resp = self
            .upstream
            .send(req, upload)
            .await
            .map_err(|e| upload.and_then(|u| self.client_fault(u)).unwrap_or(e))?;
        self.metrics.upstream_latency.observe(sent.elapsed());
        Ok(resp)
    }

    /// Phase 3: the response headers for the client (hop-by-hop headers dropped; an event stream
    /// marked as one: no length, no caching), and what the body goes through. Only a successful,
    /// unencoded answer of a rewritten route is rewritten.
    fn prepare_response(
        &self,
        plan: Plan,
        head: bool,
        parts: &mut http::response::Parts,
    ) -> Answer {
        headers::client_response(&mut parts.headers);
        let media = headers::media_type(&parts.headers);
        let encoded = headers::is_encoded(&parts.headers);
        let stream = !head && media == "text/event-stream";
        if stream {
            headers::for_event_stream(&mut parts.headers);
        }
        let rewrite = match plan {
            Plan::Rewrite { endpoint, opts, .. } if parts.status.is_success() => {
                if encoded {
                    tracing::warn!(
                        encoding = ?parts.headers.get(header::CONTENT_ENCODING),
                        "the upstream encoded its answer despite accept-encoding: identity; passing it through unchanged"
                    );
                    None
                } else {
                    Some((endpoint, opts))
                }
            }
            _ => None,
        };
        match rewrite {
            // An encoded stream cannot be framed, nor take an event appended: it passes as it is.
            _ if stream && encoded => Answer::Pass,
            Some((endpoint, opts)) if stream => {
                Answer::Stream(Events::Rewrite(Box::new(SseRewriter::new(endpoint, opts))))
            }
            // An event stream not rewritten is framed like the rewritten ones: a failure or a
            // stall after it began ends it with an in-band error event rather than a cut
            // connection.
            None if stream => Answer::Stream(Events::Pass(Framer::default())),
            Some((endpoint, opts)) if media == "application/json" => {
                Answer::Json { endpoint, opts }
            }
            _ => Answer::Pass,
        }
    }

    /// Phase 4: the body for the client, under the idle timeout, and the overhead recorded once
    /// (sandgate's time before the request went upstream and while rewriting, never the upstream's):
    /// a stream's when it ends, through its callback.
    async fn response_body(
        &self,
        mut parts: http::response::Parts,
        body: Incoming,
        answer: Answer,
        before: std::time::Duration,
    ) -> Result<Response<ProxyBody>, Error> {
        let idle = self.config.timeouts.idle;
        let body = match answer {
            Answer::Stream(events) => {
                self.metrics.stream_started();
                let metrics = self.metrics.clone();
                let on_end = Box::new(move |end: StreamEnd| {
                    if end.cancelled {
                        tracing::info!("client went away mid-stream; upstream request dropped");
                    }
                    metrics.stream_ended(end.cancelled);
                    metrics.answered(before + end.rewriting, end.blocks);
                });
                SseBody::new(body, events, idle, self.config.log_content, on_end).boxed_unsync()
            }
            Answer::Json { endpoint, opts } => {
                let limit = self.config.json_rewrite_limit;
                match body::collect_up_to(body, idle, limit).await? {
                    Collected::Whole(bytes) => {
                        let rewriting = Instant::now();
                        let (out, blocks) = match api::rewrite_json(endpoint, &opts, &bytes) {
                            Some((rewritten, stats)) => {
                                (Bytes::from(rewritten), stats.blocks_rewritten)
                            }
                            None => (bytes, 0),
                        };
                        if self.config.log_content {
                            tracing::debug!(body = %String::from_utf8_lossy(&out), "response to client");
                        }
                        parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(out.len()));
                        self.metrics.answered(before + rewriting.elapsed(), blocks);
                        full(out)
                    }
                    Collected::TooLarge { head, rest } => {
                        tracing::warn!(
                            limit,
                            "the upstream's answer is larger than json_rewrite_limit: passed on unchanged"
                        );
                        self.metrics.answered(before, 0);
                        Prefixed::new(head, rest).boxed_unsync()
                    }
                }
            }
            Answer::Pass => {
                self.metrics.answered(before, 0);
                Idle::upstream(body, idle).boxed_unsync()
            }
        };
        Ok(Response::from_parts(parts, body))
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
    ) -> Result<(Method, http::HeaderMap, ClientBody<Incoming>, UploadWatch), Error> {
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
}

/// What a `/v1` request gets, decided once, by the route and [`Gateway::plan`], before anything is
/// read or sent.
#[derive(Debug)]
enum Plan {
    /// Both bodies stream through unchanged: every other `/v1` route, and the rewritten routes in
    /// the mode `off`.
    Transparent,
    /// A rewritten route: the request read whole, its history restored, the `python` tool added when
    /// asked for; the answer rewritten with `opts`.
    Rewrite { endpoint: Endpoint, opts: Arc<Options>, python_tool: bool },
}

/// The request to send upstream, as [`Gateway::prepare_request`] left it.
struct Outgoing {
    req: Request<ProxyBody>,
    /// For a client's body still streaming (transparent): how it fares.
    upload: Option<UploadWatch>,
    /// A `HEAD` request: its answer has no body.
    head: bool,
}

/// What the answer's body goes through, as [`Gateway::prepare_response`] decided.
enum Answer {
    /// An event stream: rewritten event by event, or framed.
    Stream(Events),
    /// A whole JSON answer, rewritten at once (up to `json_rewrite_limit`).
    Json { endpoint: Endpoint, opts: Arc<Options> },
    /// Anything else, as it comes.
    Pass,
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
