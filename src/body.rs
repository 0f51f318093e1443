//! The body type every response sandgate sends has, and every request it sends upstream: a leaf
//! that both the error module (which renders errors as responses) and the proxy's body adapters
//! build on.

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};

/// A boxed error for bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response sandgate sends, and of every request it sends upstream.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// A complete body.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}
