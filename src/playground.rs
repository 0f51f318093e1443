//! The playground page at `/`, served by `serve` and `demo` alike: a person types a prompt, the answer streams in through sandgate's own
//! `/v1/chat/completions` and is shown as rendered markdown, with each run link opening the sandbox.
//!
//! Markdown is rendered on the server, by pulldown-cmark, at `POST /playground/render` (JSON
//! `{"markdown": "..."}` in, `{"html": "..."}` out), and the page re-renders the growing answer as
//! deltas arrive, at most every 100 ms. Rendering here rather than in the browser keeps one careful
//! renderer, in Rust, between model output and `innerHTML`: raw HTML in the markdown becomes
//! escaped text, links and images keep only `http`/`https` targets (as links that open a new tab),
//! and nothing else can produce markup. The page loads nothing from third parties, and its
//! Content-Security-Policy allows only its own script, style and API.
//!
//! The render route asks for `Content-Type: application/json`, which a cross-site form cannot send
//! without a CORS preflight this server never grants, and answers JSON with `nosniff`, so neither
//! the route nor its answer can be abused as an HTML page of this origin.

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use lol_html::html_content::ContentType;
use lol_html::{element, rewrite_str, RewriteStrSettings};
use pulldown_cmark::{CodeBlockKind, CowStr, Event, Options, Parser, Tag, TagEnd};
use serde_json::{json, Value};

use crate::demo::ANSWERS;

/// The largest markdown text `POST /playground/render` accepts (bytes of the JSON body).
pub const RENDER_BODY_LIMIT: usize = 4 << 20;

/// How long `POST /playground/render` waits for its whole body.
pub const RENDER_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The page's Content-Security-Policy: its own script (the runner module `sandbox/runner.js`
/// included), style and API, and frames of its own origin only (the runner's hidden sandbox page,
/// opaque-origin through its `sandbox` attribute); nothing else.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; frame-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The policy of every other playground answer (scripts, style, rendered JSON).
const ASSET_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

const TEMPLATE: &str = include_str!("../templates/playground.html");
const SCRIPT: &str = include_str!("../templates/playground/playground.js");
const STYLE: &str = include_str!("../templates/playground/playground.css");

/// Whether a path belongs to the playground: `/` and everything under `/playground/`.
pub fn is_playground_path(path: &str) -> bool {
    path == "/" || path.starts_with("/playground/")
}

/// `GET /` (and `HEAD /`): the playground page.
pub fn playground_response(method: &Method) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        return method_not_allowed("GET, HEAD");
    }
    let mut res =
        response(StatusCode::OK, "text/html; charset=utf-8", Bytes::from_static(page().as_bytes()));
    res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(PAGE_CSP));
    head_if(method, res)
}

/// Answers any request for a playground path ([`is_playground_path`]): the page, its script and
/// style, and the markdown renderer. Unknown paths under `/playground/` are 404.
pub async fn handle<B>(req: Request<B>) -> Response<Full<Bytes>>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let path = req.uri().path();
    let method = req.method().clone();
    match path {
        "/" => playground_response(&method),
        "/playground/render" => render_route(req).await,
        "/playground/playground.js" | "/playground/playground.css" => {
            if method != Method::GET && method != Method::HEAD {
                return method_not_allowed("GET, HEAD");
            }
            let (content_type, body) = if path.ends_with(".js") {
                ("text/javascript; charset=utf-8", SCRIPT)
            } else {
                ("text/css; charset=utf-8", STYLE)
            };
            head_if(
                &method,
                response(StatusCode::OK, content_type, Bytes::from_static(body.as_bytes())),
            )
        }
        _ => error(StatusCode::NOT_FOUND, &format!("no playground file {path}")),
    }
}

/// Renders markdown to HTML that is safe to put into `innerHTML`: raw HTML in the markdown is
/// shown as text, links and images keep only `http(s)` targets and open in a new tab, and every
/// text and attribute is escaped.
pub fn render_markdown(markdown: &str) -> String {
    let options =
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    // Whether each open link or image was kept, to close exactly those.
    let mut kept: Vec<bool> = Vec::new();
    let events = Parser::new_ext(markdown, options).map(|event| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        // A raw HTML block is shown as a code block of its source.
        Event::Start(Tag::HtmlBlock) => {
            Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(CowStr::Borrowed("html"))))
        }
        Event::End(TagEnd::HtmlBlock) => Event::End(TagEnd::CodeBlock),
        Event::Start(Tag::Link { dest_url, title, .. })
        | Event::Start(Tag::Image { dest_url, title, .. }) => match safe_url(&dest_url) {
            Some(url) => {
                kept.push(true);
                Event::Html(CowStr::from(anchor(url, &title)))
            }
            None => {
                kept.push(false);
                Event::Text(CowStr::Borrowed(""))
            }
        },
        Event::End(TagEnd::Link) | Event::End(TagEnd::Image) => {
            if kept.pop().unwrap_or(false) {
                Event::Html(CowStr::Borrowed("</a>"))
            } else {
                Event::Text(CowStr::Borrowed(""))
            }
        }
        other => other,
    });
    let mut html = String::with_capacity(markdown.len() * 3 / 2 + 64);
    pulldown_cmark::html::push_html(&mut html, events);
    html
}

/// The URL a link may keep: `http` or `https` only (case-insensitive), without control characters.
fn safe_url(url: &str) -> Option<&str> {
    let url = url.trim();
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let http = lower.starts_with("http://") || lower.starts_with("https://");
    (http && !url.chars().any(char::is_control)).then_some(url)
}

fn anchor(url: &str, title: &str) -> String {
    let mut a = String::with_capacity(url.len() + 64);
    a.push_str("<a href=\"");
    escape_into(&mut a, url);
    a.push('"');
    if !title.is_empty() {
        a.push_str(" title=\"");
        escape_into(&mut a, title);
        a.push('"');
    }
    a.push_str(" target=\"_blank\" rel=\"noopener noreferrer\">");
    a
}

/// Escapes text for HTML text and double- or single-quoted attribute values.
fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// The page, rendered once: the template with the demo's example prompts as suggestions.
fn page() -> &'static str {
    static PAGE: OnceLock<String> = OnceLock::new();
    PAGE.get_or_init(|| {
        let mut items = String::new();
        for canned in ANSWERS {
            let mut prompt = String::new();
            escape_into(&mut prompt, canned.prompt);
            let _ = write!(
                items,
                "<li><button type=\"button\" class=\"example\" data-prompt=\"{prompt}\">{prompt}</button></li>"
            );
        }
        let settings = RewriteStrSettings {
            element_content_handlers: vec![element!("ul#examples", |el| {
                el.set_inner_content(&items, ContentType::Html);
                Ok(())
            })],
            ..RewriteStrSettings::new()
        };
        // The template is part of the binary and tested; should lol_html ever refuse it, the page
        // still works without suggestions.
        rewrite_str(TEMPLATE, settings).unwrap_or_else(|_| TEMPLATE.to_owned())
    })
}

async fn render_route<B>(req: Request<B>) -> Response<Full<Bytes>>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if req.method() != Method::POST {
        return method_not_allowed("POST");
    }
    let json_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json_type {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be JSON (Content-Type: application/json)",
        );
    }
    let read = Limited::new(req.into_body(), RENDER_BODY_LIMIT).collect();
    let Ok(read) = tokio::time::timeout(RENDER_BODY_TIMEOUT, read).await else {
        return error(StatusCode::REQUEST_TIMEOUT, "the body did not arrive in time");
    };
    let bytes = match read {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            let too_large = e.downcast_ref::<http_body_util::LengthLimitError>().is_some();
            return if too_large {
                error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("the body is larger than {RENDER_BODY_LIMIT} bytes"),
                )
            } else {
                error(StatusCode::BAD_REQUEST, &format!("cannot read the body: {e}"))
            };
        }
    };
    let markdown = match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => match map.get("markdown") {
            Some(Value::String(s)) => s.clone(),
            _ => return error(StatusCode::BAD_REQUEST, "markdown: expected a string field"),
        },
        _ => return error(StatusCode::BAD_REQUEST, "the body is not a JSON object"),
    };
    let html = render_markdown(&markdown);
    let mut res = response(
        StatusCode::OK,
        "application/json",
        Bytes::from(json!({ "html": html }).to_string()),
    );
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// A response with the headers every playground answer carries: the sandbox's, a policy, no
/// caching.
fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut res = crate::sandbox::response(status, content_type, body);
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(ASSET_CSP));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

/// An error in the OpenAI error shape, like the rest of sandgate's answers.
fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let body = json!({"error": {
        "message": message,
        "type": "invalid_request_error",
        "param": null,
        "code": null,
    }});
    response(status, "application/json", Bytes::from(body.to_string()))
}

fn method_not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut res = error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("method not allowed here (allowed: {allow})"),
    );
    res.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
    res
}

/// The same response without its body for `HEAD`, keeping the length a GET would have had.
fn head_if(method: &Method, res: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    if method != Method::HEAD {
        return res;
    }
    crate::sandbox::strip_body(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_html_is_text() {
        let html =
            render_markdown("<script>alert(1)</script>\n\nHi <img src=x onerror=alert(2)> there\n");
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
        assert!(html.contains("&lt;img src=x onerror=alert(2)&gt;"), "{html}");
    }

    #[test]
    fn only_http_links_survive_and_open_a_new_tab() {
        let html = render_markdown(
            "[ok](https://example.org/a?b=1&c=\"2\") [bad](javascript:alert(1)) \
             [data](data:text/html,x) [Mixed](JaVaScRiPt:alert(1)) <mailto:a@b.c>\n",
        );
        assert!(
            html.contains(
                "<a href=\"https://example.org/a?b=1&amp;c=%222%22\" target=\"_blank\" rel=\"noopener noreferrer\">ok</a>"
            ) || html.contains(
                "<a href=\"https://example.org/a?b=1&amp;c=&quot;2&quot;\" target=\"_blank\" rel=\"noopener noreferrer\">ok</a>"
            ),
            "{html}"
        );
        assert_eq!(html.matches("<a ").count(), 1, "{html}");
        assert!(!html.to_ascii_lowercase().contains("javascript:alert(1)\""), "{html}");
        assert!(html.contains("bad") && html.contains("data") && html.contains("Mixed"));
    }

    #[test]
    fn images_become_links() {
        let html = render_markdown("![a chart](https://example.org/c.png) ![x](javascript:1)\n");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("href=\"https://example.org/c.png\""), "{html}");
        assert!(html.contains("a chart</a>"), "{html}");
    }

    #[test]
    fn code_blocks_and_tables_render() {
        let html =
            render_markdown("```python\nprint('<b>')\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n");
        assert!(
            html.contains("<pre><code class=\"language-python\">print(&#39;&lt;b&gt;&#39;)")
                || html.contains("<pre><code class=\"language-python\">print('&lt;b&gt;')"),
            "{html}"
        );
        assert!(html.contains("<table>"), "{html}");
    }

    #[test]
    fn page_lists_every_example_prompt() {
        let page = page();
        for canned in ANSWERS {
            let mut escaped = String::new();
            escape_into(&mut escaped, canned.prompt);
            assert!(page.contains(&escaped), "missing {:?}", canned.prompt);
        }
    }
}
