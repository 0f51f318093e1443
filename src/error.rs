//! The request error type, one mapping from error to HTTP status, and one renderer of the
//! OpenAI error shape `{"error":{"message","type","param","code"}}`, as a response body or as an
//! in-band SSE event once a stream has begun.
//!
//! Turning an error into a response has no side effects; the proxy logs each error in one place.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::body::{full, BoxError, ProxyBody};
use crate::config::ConfigError;

/// What can keep sandgate from starting, or stop its workers: reported to the operator, never
/// sent to a client.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("tls: {0}")]
    Tls(String),
    #[error("sandbox: {0}")]
    Sandbox(String),
    #[error("server task failed: {0}")]
    Task(String),
}

/// Everything that can go wrong while answering a request; each has its status and OpenAI code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no route for {method} {path}")]
    NotFound { method: String, path: String },
    #[error("invalid path {0:?}: it must stay below /v1/")]
    BadPath(String),
    #[error("method {0} is not allowed on this route")]
    MethodNotAllowed(String),
    #[error("request body exceeds the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("the client sent nothing for {after:?} in the middle of its request body")]
    ClientTimeout { after: Duration },
    #[error("cannot read the request body: {0}")]
    ClientBody(String),
    #[error(
        "invalid x-sandgate-mode header {value:?}: expected one of off, link, widget, artifact"
    )]
    BadModeHeader { value: String },
    #[error("invalid x-sandgate-tools header {value:?}: expected python, none or an empty value")]
    BadToolsHeader { value: String },
    #[error(
        "invalid x-sandgate-context header {value:?}: expected one of off, answer, conversation"
    )]
    BadContextHeader { value: String },
    #[error("this route takes only `Content-Type: application/json`; the request had {}", match .got { Some(t) => format!("{t:?}"), None => "none".to_owned() })]
    UnsupportedMediaType { got: Option<String> },
    #[error("missing or unknown API key: send one of this gateway's keys as `Authorization: Bearer <key>`")]
    Unauthorized,
    #[error("cannot connect to the upstream: {}", chain(.0))]
    UpstreamConnect(#[source] BoxError),
    #[error("the upstream timed out ({phase}, after {after:?})")]
    UpstreamTimeout { phase: TimeoutPhase, after: Duration },
    #[error("the upstream request failed: {}", chain(.0))]
    Upstream(#[source] BoxError),
    #[error("the upstream response broke off: {}", chain(.0))]
    UpstreamBody(#[source] BoxError),
}

/// An error and its causes, as one line (`a: b: c`): what the client reads of an upstream failure,
/// whose cause the error keeps as its source.
fn chain(e: &BoxError) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Which timeout fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutPhase {
    Connect,
    FirstByte,
    Idle,
}

impl std::fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TimeoutPhase::Connect => "connect",
            TimeoutPhase::FirstByte => "waiting for the first byte",
            TimeoutPhase::Idle => "idle between chunks",
        })
    }
}

impl Error {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::NotFound { .. } => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Error::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::ClientTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Error::ClientBody(_)
            | Error::BadModeHeader { .. }
            | Error::BadToolsHeader { .. }
            | Error::BadContextHeader { .. }
            | Error::BadPath(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Error::UpstreamConnect(_) | Error::Upstream(_) | Error::UpstreamBody(_) => {
                StatusCode::BAD_GATEWAY
            }
        }
    }

    /// The OpenAI error `type`.
    pub fn kind(&self) -> &'static str {
        if self.status().is_client_error() {
            "invalid_request_error"
        } else {
            "server_error"
        }
    }

    /// The OpenAI error `code`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::NotFound { .. } => "unknown_url",
            Error::BadPath(_) => "invalid_path",
            Error::MethodNotAllowed(_) => "method_not_allowed",
            Error::BodyTooLarge { .. } => "request_too_large",
            Error::UnsupportedMediaType { .. } => "unsupported_media_type",
            Error::ClientTimeout { .. } => "request_timeout",
            Error::ClientBody(_) => "invalid_body",
            Error::BadModeHeader { .. } => "invalid_sandgate_mode",
            Error::BadToolsHeader { .. } => "invalid_sandgate_tools",
            Error::BadContextHeader { .. } => "invalid_sandgate_context",
            Error::Unauthorized => "invalid_api_key",
            Error::UpstreamConnect(_) => "upstream_connect_error",
            Error::UpstreamTimeout { phase: TimeoutPhase::Connect, .. } => {
                "upstream_connect_timeout"
            }
            Error::UpstreamTimeout { phase: TimeoutPhase::FirstByte, .. } => "upstream_timeout",
            Error::UpstreamTimeout { phase: TimeoutPhase::Idle, .. } => "upstream_idle_timeout",
            Error::Upstream(_) => "upstream_error",
            Error::UpstreamBody(_) => "upstream_stream_error",
        }
    }

    /// The OpenAI error `param`.
    pub fn param(&self) -> Option<&'static str> {
        match self {
            Error::BadModeHeader { .. } => Some("x-sandgate-mode"),
            Error::BadToolsHeader { .. } => Some("x-sandgate-tools"),
            Error::BadContextHeader { .. } => Some("x-sandgate-context"),
            Error::UnsupportedMediaType { .. } => Some("content-type"),
            _ => None,
        }
    }

    /// The JSON body `{"error":{"message","type","param","code"}}`.
    pub fn body_json(&self) -> String {
        serde_json::json!({
            "error": {
                "message": self.to_string(),
                "type": self.kind(),
                "param": self.param(),
                "code": self.code(),
            }
        })
        .to_string()
    }

    /// The same object as one SSE event, sent in-band when a stream has already begun.
    pub fn sse_event(&self) -> Bytes {
        Bytes::from(format!("data: {}\n\n", self.body_json()))
    }

    /// The whole response for an error that happened before any byte was sent.
    pub fn to_response(&self) -> Response<ProxyBody> {
        let mut resp = Response::new(full(Bytes::from(self.body_json())));
        *resp.status_mut() = self.status();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if matches!(self, Error::Unauthorized) {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_render_in_the_openai_shape() {
        let e = Error::BodyTooLarge { limit: 10 };
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let v: serde_json::Value = serde_json::from_str(&e.body_json()).unwrap();
        assert_eq!(v["error"]["message"], "request body exceeds the limit of 10 bytes");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "request_too_large");
        assert!(v["error"]["param"].is_null());

        let e =
            Error::UpstreamTimeout { phase: TimeoutPhase::Idle, after: Duration::from_millis(5) };
        assert_eq!(e.status(), StatusCode::GATEWAY_TIMEOUT);
        let ev = e.sse_event();
        assert!(ev.starts_with(b"data: {\"error\":{") && ev.ends_with(b"}}\n\n"));
        let v: serde_json::Value = serde_json::from_slice(&ev[6..ev.len() - 2]).unwrap();
        assert_eq!(v["error"]["type"], "server_error");
        assert_eq!(v["error"]["code"], "upstream_idle_timeout");
    }
}
