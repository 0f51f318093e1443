//! The OpenAI API shapes: Chat Completions, legacy Completions and Responses, as whole JSON bodies
//! and as SSE streams, plus `restore` on request bodies.
//!
//! STUB SIGNATURES: the implementation replaces the bodies, the signatures are what the proxy calls.

use std::sync::Arc;

use super::Options;

/// The three rewritten routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`
    ChatCompletions,
    /// `POST /v1/completions`
    Completions,
    /// `POST /v1/responses`
    Responses,
}

impl Endpoint {
    /// The endpoint for a path relative to `/v1/` (`chat/completions`, `completions`, `responses`).
    pub fn from_path(rest: &str) -> Option<Self> {
        match rest.trim_end_matches('/') {
            "chat/completions" => Some(Endpoint::ChatCompletions),
            "completions" => Some(Endpoint::Completions),
            "responses" => Some(Endpoint::Responses),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat/completions",
            Endpoint::Completions => "completions",
            Endpoint::Responses => "responses",
        }
    }
}

/// What a rewrite did, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub blocks_rewritten: usize,
}

/// Rewrites a whole JSON response body. `None` when the body is not JSON of the expected shape or
/// nothing changed: the caller then forwards the original bytes.
pub fn rewrite_json(
    endpoint: Endpoint,
    opts: &Arc<Options>,
    body: &[u8],
) -> Option<(Vec<u8>, Stats)> {
    let _ = (endpoint, opts, body);
    None
}

/// Rewrites an SSE response stream event by event, as bytes arrive.
#[derive(Debug)]
pub struct SseRewriter {
    endpoint: Endpoint,
    opts: Arc<Options>,
    stats: Stats,
}

impl SseRewriter {
    pub fn new(endpoint: Endpoint, opts: Arc<Options>) -> Self {
        SseRewriter { endpoint, opts, stats: Stats::default() }
    }

    /// Feeds bytes from the upstream; appends to `out` the bytes to send to the client now.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let _ = (&self.endpoint, &self.opts);
        out.extend_from_slice(chunk);
    }

    /// The upstream stream ended; appends whatever is still held.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let _ = out;
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }
}

/// Restores earlier rewritten answers in a request body (chat `messages[]` with role `assistant`,
/// Responses `input[]` assistant items, legacy `prompt`). `None` when the body is not JSON or nothing
/// was restored: the caller then forwards the original bytes. The count is the number of replacements
/// undone.
pub fn restore_request(endpoint: Endpoint, body: &[u8]) -> Option<(Vec<u8>, usize)> {
    let _ = (endpoint, body);
    None
}
