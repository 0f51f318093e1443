//! The sandbox page (`GET /sandbox`) and the static assets it needs (`/pyodide/`, `/wheels/`).
//!
//! STUB SIGNATURES: the implementation replaces the bodies, the signatures are what the server calls.

use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::Full;

/// What the page needs to know, from the validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxConfig {
    /// Base URL of the Pyodide distribution (ends with `/`): a CDN by default, `/pyodide/` when
    /// `pyodide_dir` is set.
    pub pyodide_url: String,
    /// A local Pyodide distribution served at `/pyodide/`.
    pub pyodide_dir: Option<PathBuf>,
    /// A directory of extra wheels (and JS such as plotly.js) served at `/wheels/`.
    pub wheels_dir: Option<PathBuf>,
    /// How long one run may take before the worker is terminated.
    pub timeout_ms: u64,
}

/// Serves the page and the assets.
#[derive(Debug)]
pub struct Sandbox {
    config: SandboxConfig,
}

impl Sandbox {
    pub fn new(config: SandboxConfig) -> Result<Self, String> {
        Ok(Sandbox { config })
    }

    /// Answers a GET/HEAD for a path this module owns (`/sandbox`, `/sandbox/...`, `/pyodide/...`,
    /// `/wheels/...`); `None` for any other path.
    pub async fn handle(
        &self,
        method: &http::Method,
        path: &str,
    ) -> Option<http::Response<Full<Bytes>>> {
        let _ = (&self.config, method, path);
        None
    }
}
