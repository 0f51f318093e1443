//! Renders the sandbox page from `templates/` once, at startup, and builds the Content-Security-Policy
//! that matches the configuration.
//!
//! The configuration reaches the page's script only through `data-*` attributes set by lol_html on
//! `<main id="sandgate">` (values are escaped for attribute context, never pasted into script), and
//! the policy names exactly the sources the configuration implies: the page's own origin, the
//! Pyodide URL (a CDN only under the pinned release's path), plotly.js and, when Pyodide is not
//! self-hosted, PyPI for micropip.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use lol_html::{element, rewrite_str, RewriteStrSettings};

use super::{response, SandboxConfig};

/// The Pyodide release the page uses (the same on jsDelivr and npm).
pub const PYODIDE_VERSION: &str = "0.29.5";

/// The default Pyodide base URL: the pinned release on the jsDelivr CDN.
pub const DEFAULT_PYODIDE_URL: &str = "https://cdn.jsdelivr.net/pyodide/v0.29.5/full/";

/// plotly.js from npm on jsDelivr, used when the wheels directory has no `plotly.min.js`; the
/// version matches the one bundled in the plotly 7.1 wheel.
pub const DEFAULT_PLOTLY_JS_URL: &str =
    "https://cdn.jsdelivr.net/npm/plotly.js-dist-min@4.1.1/plotly.min.js";

/// Origins micropip reaches for PyPI packages (the index and the files).
const PYPI_ORIGINS: &str = "https://pypi.org https://files.pythonhosted.org";

const TEMPLATE: &str = include_str!("../../templates/sandbox.html");
const FIGURE_TEMPLATE: &str = include_str!("../../templates/figure.html");
const FIGURE_JS: &str = include_str!("../../templates/figure.js");
const PAGE_JS: &str = include_str!("../../templates/page.js");
const WORKER_JS: &str = include_str!("../../templates/worker.js");
/// The Python side of the worker, put into `worker.js` as a string literal in place of
/// [`RUNNER_PLACEHOLDER`] (quoted as written there).
const RUNNER_PY: &str = include_str!("../../templates/runner.py");
const RUNNER_PLACEHOLDER: &str = "'{{templates/runner.py}}'";
const PAGE_CSS: &str = include_str!("../../templates/page.css");
const RUNNER_JS: &str = include_str!("../../templates/runner.js");

/// The page, rendered, with the policies its responses carry.
#[derive(Debug)]
pub(crate) struct Rendered {
    html: Bytes,
    worker_js: Bytes,
    page_csp: HeaderValue,
    worker_csp: HeaderValue,
    figure_html: Bytes,
    figure_csp: HeaderValue,
}

impl Rendered {
    /// `GET /sandbox`.
    pub(crate) fn page(&self) -> Response<Full<Bytes>> {
        let mut res = response(StatusCode::OK, "text/html; charset=utf-8", self.html.clone());
        let h = res.headers_mut();
        h.insert(header::CONTENT_SECURITY_POLICY, self.page_csp.clone());
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        res
    }

    /// `GET /sandbox/figure`: the document of one Plotly figure's frame. Its policy lets it run
    /// its own script and plotly.js and reach nothing at all; `Document-Isolation-Policy` asks the
    /// browser for a process of its own (Chromium), so that a figure that freezes plotly.js
    /// does not freeze the page that must stop it.
    pub(crate) fn figure(&self) -> Response<Full<Bytes>> {
        let mut res =
            response(StatusCode::OK, "text/html; charset=utf-8", self.figure_html.clone());
        let h = res.headers_mut();
        h.insert(header::CONTENT_SECURITY_POLICY, self.figure_csp.clone());
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert(
            header::HeaderName::from_static("document-isolation-policy"),
            HeaderValue::from_static("isolate-and-credentialless"),
        );
        res
    }

    /// `GET /sandbox/<name>`: the page's script, style and worker script, the figure frame's
    /// script, and the runner module other pages import (`runner.js`).
    pub(crate) fn asset(&self, name: &str) -> Option<Response<Full<Bytes>>> {
        let static_js = |js: &'static str| Bytes::from_static(js.as_bytes());
        let (content_type, body) = match name {
            "page.js" => ("text/javascript; charset=utf-8", static_js(PAGE_JS)),
            "worker.js" => ("text/javascript; charset=utf-8", self.worker_js.clone()),
            "page.css" => ("text/css; charset=utf-8", static_js(PAGE_CSS)),
            "runner.js" => ("text/javascript; charset=utf-8", static_js(RUNNER_JS)),
            "figure.js" => ("text/javascript; charset=utf-8", static_js(FIGURE_JS)),
            _ => return None,
        };
        let mut res = response(StatusCode::OK, content_type, body);
        let h = res.headers_mut();
        // The page fetches the worker source to start it from a `data:` URL, which must also work
        // from an opaque origin (a widget iframe); pages of any origin import the runner module.
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        // A worker started from this URL directly takes its policy from this response.
        let csp = if name == "worker.js" {
            self.worker_csp.clone()
        } else {
            HeaderValue::from_static("default-src 'none'; sandbox")
        };
        h.insert(header::CONTENT_SECURITY_POLICY, csp);
        Some(res)
    }
}

/// Renders the page for `config`; `wheels` tells whether `/wheels/` is served, `plotly_local`
/// whether it holds `plotly.min.js`.
pub(crate) fn render(
    config: &SandboxConfig,
    wheels: bool,
    plotly_local: bool,
) -> Result<Rendered, String> {
    if config.timeout_ms == 0 {
        return Err("timeout_ms must be greater than 0".to_string());
    }
    let pyodide_url = &config.pyodide_url;
    if !pyodide_url.ends_with('/') {
        return Err(format!("pyodide_url must end with '/': {pyodide_url}"));
    }
    let pyodide_source = csp_source(pyodide_url).map_err(|e| format!("pyodide_url: {e}"))?;
    // plotly.js runs only in the figure frames (`/sandbox/figure`, one directory below the page).
    let (plotly_url, plotly_source) = if plotly_local {
        ("../wheels/plotly.min.js".to_string(), "'self'".to_string())
    } else {
        let source = csp_source(DEFAULT_PLOTLY_JS_URL)?;
        (DEFAULT_PLOTLY_JS_URL.to_string(), source)
    };
    let online = config.pyodide_dir.is_none();
    let mut indexes = Vec::new();
    if wheels {
        indexes.push("wheels/simple/{package_name}/");
    }
    if online && wheels {
        // micropip's name for its default index; without any list it uses PyPI by itself.
        indexes.push("PYPI");
    }

    let mut connect = vec!["'self'".to_string(), pyodide_source.clone()];
    if online {
        connect.push(PYPI_ORIGINS.to_string());
    }
    let figure_scripts = dedup(vec!["'self'".to_string(), plotly_source]).join(" ");
    let scripts = vec!["'self'".to_string(), pyodide_source];
    let scripts = dedup(scripts).join(" ");
    let connect = dedup(connect).join(" ");
    // `sandbox allow-scripts` gives the page an opaque origin even when it is opened top-level:
    // it behaves exactly as in a widget iframe, and requests it makes to sandgate's own origin
    // (the proxy's API) are cross-origin, without cookies. `allow-downloads` lets the files a
    // run wrote be saved (Chromium refuses downloads from a sandboxed document without it).
    let page_csp = format!(
        "default-src 'none'; script-src {scripts} 'wasm-unsafe-eval'; worker-src data:; \
         connect-src {connect}; style-src 'self' 'unsafe-inline'; img-src data: blob:; \
         frame-src 'self'; base-uri 'none'; form-action 'none'; sandbox allow-scripts allow-downloads"
    );
    // A figure frame loads plotly.js and its own script, and connects nowhere: the figure's JSON
    // comes by postMessage.
    let figure_csp = format!(
        "default-src 'none'; script-src {figure_scripts}; style-src 'unsafe-inline'; \
         img-src data: blob:; font-src data:; base-uri 'none'; form-action 'none'; \
         sandbox allow-scripts"
    );
    let worker_csp = format!(
        "default-src 'none'; script-src {scripts} 'wasm-unsafe-eval'; connect-src {connect}"
    );

    let timeout = config.timeout_ms.to_string();
    let max_code_bytes = config.max_code_bytes.to_string();
    let max_figure_json_chars = config.max_figure_json_chars.to_string();
    let indexes = indexes.join(" ");
    let offline = if online { "false" } else { "true" };
    let settings = RewriteStrSettings {
        element_content_handlers: vec![element!("main#sandgate", |el| {
            for (name, value) in [
                ("data-pyodide-url", pyodide_url.as_str()),
                ("data-package-indexes", indexes.as_str()),
                ("data-timeout-ms", timeout.as_str()),
                ("data-offline", offline),
                ("data-pyodide-version", PYODIDE_VERSION),
                ("data-max-code-bytes", max_code_bytes.as_str()),
                ("data-max-figure-json-chars", max_figure_json_chars.as_str()),
            ] {
                el.set_attribute(name, &escape_ampersand(value))?;
            }
            Ok(())
        })],
        ..RewriteStrSettings::new()
    };
    let html = rewrite_str(TEMPLATE, settings).map_err(|e| format!("sandbox template: {e}"))?;
    if !html.contains("data-pyodide-url") {
        return Err("sandbox template: no <main id=\"sandgate\"> element".to_string());
    }
    let settings = RewriteStrSettings {
        element_content_handlers: vec![element!("script#plotly", |el| {
            el.set_attribute("src", &escape_ampersand(&plotly_url))?;
            Ok(())
        })],
        ..RewriteStrSettings::new()
    };
    let figure_html =
        rewrite_str(FIGURE_TEMPLATE, settings).map_err(|e| format!("figure template: {e}"))?;
    Ok(Rendered {
        html: Bytes::from(html),
        worker_js: Bytes::from(worker_js()?),
        page_csp: HeaderValue::from_str(&page_csp).map_err(|e| format!("page policy: {e}"))?,
        worker_csp: HeaderValue::from_str(&worker_csp)
            .map_err(|e| format!("worker policy: {e}"))?,
        figure_html: Bytes::from(figure_html),
        figure_csp: HeaderValue::from_str(&figure_csp)
            .map_err(|e| format!("figure policy: {e}"))?,
    })
}

/// `worker.js` with the runner's Python in it, as a JSON string (which is a JavaScript string
/// literal too).
fn worker_js() -> Result<String, String> {
    if WORKER_JS.matches(RUNNER_PLACEHOLDER).count() != 1 {
        return Err(format!("worker template: {RUNNER_PLACEHOLDER} must occur exactly once"));
    }
    let runner = serde_json::to_string(RUNNER_PY).map_err(|e| format!("runner.py: {e}"))?;
    Ok(WORKER_JS.replace(RUNNER_PLACEHOLDER, &runner))
}

/// The CSP source expression for a configured URL: `'self'` for a path on this server (absolute or
/// relative to the page, which matters when sandgate is served under a path prefix); for an
/// absolute http(s) URL the URL without query, so that a CDN origin is allowed only under the
/// pinned release's path, not for every package the CDN hosts. Refuses anything that could
/// smuggle a directive into the policy.
pub(crate) fn csp_source(url: &str) -> Result<String, String> {
    if url
        .bytes()
        .any(|b| !(b.is_ascii_graphic()) || matches!(b, b';' | b',' | b'\'' | b'"' | b'\\'))
    {
        return Err(format!("{url:?} contains a character not allowed in a URL here"));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        // A path on this server, absolute or relative to the page: `/pyodide/`, `pyodide/`.
        let first = url.split('/').next().unwrap_or_default();
        if url.starts_with("//") || first.contains(':') {
            return Err(format!("{url:?} is neither a path nor an http(s) URL"));
        }
        return Ok("'self'".to_string());
    };
    if scheme != "https" && scheme != "http" {
        return Err(format!("{url:?} is not an http(s) URL"));
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.contains('@') {
        return Err(format!("{url:?} has no valid host"));
    }
    let without_query = rest.split(['?', '#']).next().unwrap_or_default();
    Ok(format!("{scheme}://{without_query}"))
}

/// lol_html escapes `"` in attribute values but leaves `&` alone; escaping it first makes the
/// browser decode exactly the original text.
fn escape_ampersand(value: &str) -> String {
    value.replace('&', "&amp;")
}

fn dedup(items: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}
