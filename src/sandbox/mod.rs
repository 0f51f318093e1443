//! The sandbox page (`GET /sandbox`) and the static assets it needs (`/sandbox/*.js`, `/pyodide/`,
//! `/wheels/`).
//!
//! The page is rendered once, at startup, from the templates embedded in the binary: the
//! configuration (Pyodide URL, timeout, package indexes, the code and figure limits) goes into
//! `data-*` attributes through lol_html, so no configured value is ever pasted into HTML or
//! JavaScript. The worker script carries the Python runner (`templates/runner.py`) as a string
//! literal. Every answer carries its
//! own headers: the page and its worker script a strict Content-Security-Policy, the static files
//! `Access-Control-Allow-Origin: *` so that a widget in an opaque origin can load them. Files come
//! from the configured directories only; a path that tries to leave them is a 404.

mod files;
mod page;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;

pub use page::{DEFAULT_PLOTLY_JS_URL, DEFAULT_PYODIDE_URL, PYODIDE_VERSION};

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
    /// The most code (UTF-8 bytes) a link may carry: the largest block the engine rewrites
    /// (`max_block_bytes`).
    pub max_code_bytes: usize,
    /// The most characters of Plotly JSON for all the figures of one run (the worker does not send
    /// a larger figure, the page refuses figures beyond it).
    pub max_figure_json_chars: usize,
}

/// The default of [`SandboxConfig::max_figure_json_chars`].
pub const DEFAULT_MAX_FIGURE_JSON_CHARS: usize = 5_000_000;

impl Default for SandboxConfig {
    /// The public defaults: Pyodide from the pinned CDN release, no local files, 30 s per run, the
    /// engine's default block limit.
    fn default() -> Self {
        SandboxConfig {
            pyodide_url: DEFAULT_PYODIDE_URL.to_string(),
            pyodide_dir: None,
            wheels_dir: None,
            timeout_ms: 30_000,
            max_code_bytes: crate::rewrite::DEFAULT_MAX_BLOCK_BYTES,
            max_figure_json_chars: DEFAULT_MAX_FIGURE_JSON_CHARS,
        }
    }
}

/// Serves the page and the assets.
#[derive(Debug)]
pub struct Sandbox {
    page: page::Rendered,
    pyodide: Option<files::Root>,
    wheels: Option<files::Root>,
}

impl Sandbox {
    /// Checks the configuration, opens the directories and renders the page; the error says which
    /// setting is wrong.
    pub fn new(config: SandboxConfig) -> Result<Self, String> {
        let pyodide = match &config.pyodide_dir {
            Some(dir) => Some(files::Root::open(dir).map_err(|e| format!("pyodide_dir: {e}"))?),
            None => None,
        };
        let wheels = match &config.wheels_dir {
            Some(dir) => Some(files::Root::open(dir).map_err(|e| format!("wheels_dir: {e}"))?),
            None => None,
        };
        let plotly_local =
            wheels.as_ref().is_some_and(|root| root.path().join("plotly.min.js").is_file());
        let page = page::render(&config, wheels.is_some(), plotly_local)?;
        Ok(Sandbox { page, pyodide, wheels })
    }

    /// Whether `path` (without query) is one this module owns: `/sandbox`, `/sandbox/...`,
    /// `/pyodide/...`, `/wheels/...`.
    pub fn owns(path: &str) -> bool {
        Route::of(path).is_some()
    }

    /// Answers a GET/HEAD for a path this module owns (`/sandbox`, `/sandbox/...`, `/pyodide/...`,
    /// `/wheels/...`); `None` for any other path.
    pub async fn handle(&self, method: &Method, path: &str) -> Option<Response<Full<Bytes>>> {
        let path = path.split(['?', '#']).next().unwrap_or_default();
        let route = Route::of(path)?;
        if method != Method::GET && method != Method::HEAD {
            return Some(method_not_allowed());
        }
        let head = method == Method::HEAD;
        let response = match route {
            Route::Page => self.page.page(),
            Route::Figure => self.page.figure(),
            Route::PageAsset(name) => match self.page.asset(name) {
                Some(response) => response,
                None => not_found(),
            },
            Route::Pyodide(rest) => match &self.pyodide {
                Some(root) => root.serve(rest).await,
                None => not_found(),
            },
            Route::Wheels(rest) => match &self.wheels {
                Some(root) => match rest.strip_prefix("simple/") {
                    Some(project) => root.simple_index(project).await,
                    None => root.serve(rest).await,
                },
                None => not_found(),
            },
        };
        Some(if head { strip_body(response) } else { response })
    }
}

/// The paths this module owns.
enum Route<'a> {
    Page,
    /// `/sandbox/figure`: the frame one Plotly figure is drawn in.
    Figure,
    PageAsset(&'a str),
    Pyodide(&'a str),
    Wheels(&'a str),
}

impl<'a> Route<'a> {
    fn of(path: &'a str) -> Option<Self> {
        if path == "/sandbox" {
            return Some(Route::Page);
        }
        if path == "/sandbox/figure" {
            return Some(Route::Figure);
        }
        if let Some(rest) = path.strip_prefix("/sandbox/") {
            return Some(Route::PageAsset(rest));
        }
        if let Some(rest) = path.strip_prefix("/pyodide/") {
            return Some(Route::Pyodide(rest));
        }
        if let Some(rest) = path.strip_prefix("/wheels/") {
            return Some(Route::Wheels(rest));
        }
        None
    }
}

/// A response with the headers every answer of this module (and the playground's) carries.
pub(crate) fn response(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(body));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    res
}

fn not_found() -> Response<Full<Bytes>> {
    let mut res = response(
        StatusCode::NOT_FOUND,
        "text/plain; charset=utf-8",
        Bytes::from_static(b"not found\n"),
    );
    res.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    res
}

fn method_not_allowed() -> Response<Full<Bytes>> {
    let mut res = response(
        StatusCode::METHOD_NOT_ALLOWED,
        "text/plain; charset=utf-8",
        Bytes::from_static(b"method not allowed\n"),
    );
    res.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    res
}

/// The same response without its body, keeping the length a GET would have had.
pub(crate) fn strip_body(res: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    use http_body::Body as _;
    let (mut parts, body) = res.into_parts();
    if let Some(len) = body.size_hint().exact() {
        parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    Response::from_parts(parts, Full::new(Bytes::new()))
}
