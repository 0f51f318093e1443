//! Unit tests of the page rendering, the headers and the file serving, through `Sandbox::handle`.
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::Method;
use http_body_util::BodyExt;

use super::files::{content_type, normalize_project, percent_decode, safe_segments, wheel_project};
use super::page::csp_source;
use super::*;

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sandgate-sandbox-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A Pyodide-like directory, a wheels directory and a secret file beside them.
fn fixture() -> (TempDir, Sandbox) {
    let tmp = TempDir::new();
    let py = tmp.0.join("pyodide");
    let wheels = tmp.0.join("wheels");
    std::fs::create_dir_all(py.join("sub")).unwrap();
    std::fs::create_dir_all(&wheels).unwrap();
    std::fs::write(py.join("pyodide.asm.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(py.join("pyodide.mjs"), b"export {}").unwrap();
    std::fs::write(py.join("pyodide-lock.json"), b"{}").unwrap();
    std::fs::write(py.join("sub").join("a b.txt"), b"spaced").unwrap();
    std::fs::write(py.join(".hidden"), b"hidden").unwrap();
    std::fs::write(tmp.0.join("secret.txt"), b"secret").unwrap();
    std::fs::write(wheels.join("plotly-7.1.0-py3-none-any.whl"), b"PK").unwrap();
    std::fs::write(wheels.join("Foo_Bar-1.0-py3-none-any.whl"), b"PK").unwrap();
    std::fs::write(wheels.join("plotly.min.js"), b"var Plotly={}").unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(tmp.0.join("secret.txt"), py.join("link.txt")).unwrap();
        std::os::unix::fs::symlink(&tmp.0, py.join("up")).unwrap();
    }
    let sandbox = Sandbox::new(SandboxConfig {
        pyodide_url: "/pyodide/".to_string(),
        pyodide_dir: Some(py),
        wheels_dir: Some(wheels),
        timeout_ms: 7_000,
        ..SandboxConfig::default()
    })
    .unwrap();
    (tmp, sandbox)
}

async fn get(sandbox: &Sandbox, path: &str) -> (u16, http::HeaderMap, Vec<u8>) {
    let res =
        sandbox.handle(&Method::GET, path).await.unwrap_or_else(|| panic!("{path} is not handled"));
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
    (status, headers, body)
}

fn header<'a>(headers: &'a http::HeaderMap, name: &str) -> &'a str {
    headers.get(name).map(|v| v.to_str().unwrap()).unwrap_or_default()
}

#[tokio::test]
async fn page_has_strict_headers_and_configuration_attributes() {
    let (_tmp, sandbox) = fixture();
    let (status, h, body) = get(&sandbox, "/sandbox").await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&h, "x-content-type-options"), "nosniff");
    assert_eq!(header(&h, "referrer-policy"), "no-referrer");
    assert!(h.get("set-cookie").is_none());
    let csp = header(&h, "content-security-policy");
    assert!(csp.starts_with("default-src 'none';"), "{csp}");
    assert!(csp.contains("script-src 'self' 'wasm-unsafe-eval';"), "{csp}");
    assert!(csp.contains("worker-src data:;"), "{csp}");
    assert!(csp.contains("connect-src 'self';"), "{csp}");
    assert!(csp.contains("img-src data: blob:;"), "{csp}");
    assert!(csp.contains("frame-src 'self';"), "{csp}");
    assert!(csp.ends_with("; sandbox allow-scripts allow-downloads"), "{csp}");
    assert!(!csp.contains(" 'unsafe-eval'"), "{csp}");
    let html = String::from_utf8(body).unwrap();
    assert!(html.contains(r#"data-pyodide-url="/pyodide/""#), "{html}");
    assert!(html.contains(r#"data-timeout-ms="7000""#));
    // plotly.js is not the page's: it runs in the figure frames only.
    assert!(!html.contains("plotly"), "{html}");
    assert!(html.contains(r#"data-package-indexes="wheels/simple/{package_name}/""#));
    assert!(html.contains(r#"data-offline="true""#));
    assert!(html.contains(r#"<body data-state="loading">"#));
}

#[tokio::test]
async fn cdn_default_allows_exactly_the_cdn_and_pypi() {
    let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    let (_, h, body) = get(&sandbox, "/sandbox").await;
    let csp = header(&h, "content-security-policy");
    assert!(
        csp.contains(
            "script-src 'self' https://cdn.jsdelivr.net/pyodide/v0.29.5/full/ 'wasm-unsafe-eval';"
        ),
        "{csp}"
    );
    assert!(
        csp.contains(
            "connect-src 'self' https://cdn.jsdelivr.net/pyodide/v0.29.5/full/ https://pypi.org \
             https://files.pythonhosted.org;"
        ),
        "{csp}"
    );
    let html = String::from_utf8(body).unwrap();
    assert!(html.contains(&format!(r#"data-pyodide-url="{DEFAULT_PYODIDE_URL}""#)));
    assert!(html.contains(r#"data-offline="false""#));
    // The figure frame loads plotly.js from the CDN, exactly that file.
    let (_, h, body) = get(&sandbox, "/sandbox/figure").await;
    let csp = header(&h, "content-security-policy");
    assert!(csp.contains(&format!("script-src 'self' {DEFAULT_PLOTLY_JS_URL};")), "{csp}");
    let html = String::from_utf8(body).unwrap();
    assert!(html.contains(&format!(r#"<script id="plotly" src="{DEFAULT_PLOTLY_JS_URL}""#)));
    // Nothing local is served without directories.
    assert_eq!(get(&sandbox, "/pyodide/pyodide.mjs").await.0, 404);
    assert_eq!(get(&sandbox, "/wheels/x.whl").await.0, 404);
}

#[tokio::test]
async fn configured_values_cannot_break_out_of_their_attribute_or_the_policy() {
    for bad in [
        "https://evil.example/x'; script-src *; '/",
        "https://a.example/\"><script>alert(1)</script>/",
        "javascript:alert(1)/",
        "//cdn.example/pyodide/",
        "https://user@cdn.example/",
        "https://cdn.example/no-slash",
        "https://cdn.example/a b/",
    ] {
        let config = SandboxConfig { pyodide_url: bad.to_string(), ..SandboxConfig::default() };
        let err = Sandbox::new(config).unwrap_err();
        assert!(err.starts_with("pyodide_url"), "{bad}: {err}");
    }
    // `&` is kept exactly: the browser decodes `&amp;` back to it.
    let config = SandboxConfig {
        pyodide_url: "https://cdn.example/py/?a=1&amp=2/".to_string(),
        ..SandboxConfig::default()
    };
    let sandbox = Sandbox::new(config).unwrap();
    let html = String::from_utf8(get(&sandbox, "/sandbox").await.2).unwrap();
    assert!(html.contains(r#"data-pyodide-url="https://cdn.example/py/?a=1&amp;amp=2/""#));
    assert!(Sandbox::new(SandboxConfig { timeout_ms: 0, ..SandboxConfig::default() }).is_err());
}

#[tokio::test]
async fn figure_frame_has_its_own_policy_and_process() {
    let (_tmp, sandbox) = fixture();
    let (status, h, body) = get(&sandbox, "/sandbox/figure").await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&h, "document-isolation-policy"), "isolate-and-credentialless");
    let csp = header(&h, "content-security-policy");
    assert_eq!(
        csp,
        "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; img-src data: blob:; \
         font-src data:; base-uri 'none'; form-action 'none'; sandbox allow-scripts"
    );
    let html = String::from_utf8(body).unwrap();
    // One directory below the page: /sandbox/figure -> /wheels/plotly.min.js.
    assert!(html.contains(r#"<script id="plotly" src="../wheels/plotly.min.js""#), "{html}");
    assert!(html.contains(r#"<script src="figure.js""#), "{html}");
    let (status, h, body) = get(&sandbox, "/sandbox/figure.js").await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "content-type"), "text/javascript; charset=utf-8");
    assert!(String::from_utf8(body).unwrap().contains("figure-drawn"));
}

#[tokio::test]
async fn page_assets_and_worker_policy() {
    let (_tmp, sandbox) = fixture();
    let (status, h, body) = get(&sandbox, "/sandbox/worker.js").await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "content-type"), "text/javascript; charset=utf-8");
    assert_eq!(header(&h, "access-control-allow-origin"), "*");
    let csp = header(&h, "content-security-policy");
    assert!(csp.contains("'wasm-unsafe-eval'"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert!(!csp.contains('*'), "{csp}");
    assert!(String::from_utf8(body).unwrap().contains("loadPyodide"));
    assert_eq!(get(&sandbox, "/sandbox/page.js").await.0, 200);
    worker_carries_the_runner(&sandbox).await;
    assert_eq!(
        header(&get(&sandbox, "/sandbox/page.css").await.1, "content-type"),
        "text/css; charset=utf-8"
    );
    assert_eq!(get(&sandbox, "/sandbox/other.js").await.0, 404);
    // The page's and the figure frame's scripts never turn worker data into markup, nor evaluate
    // strings.
    for script in ["page.js", "figure.js"] {
        let js = String::from_utf8(get(&sandbox, &format!("/sandbox/{script}")).await.2).unwrap();
        for banned in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("] {
            assert!(!js.contains(banned), "{script} uses {banned}");
        }
    }
    assert_eq!(get(&sandbox, "/sandbox/").await.0, 404);
}

#[tokio::test]
async fn runner_module_is_served_to_any_origin() {
    let (_tmp, sandbox) = fixture();
    let (status, h, body) = get(&sandbox, "/sandbox/runner.js").await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "content-type"), "text/javascript; charset=utf-8");
    assert_eq!(header(&h, "access-control-allow-origin"), "*");
    let module = String::from_utf8(body).unwrap();
    assert!(module.contains("export function connect("), "{module}");
    assert!(module.contains("export const PROTOCOL_VERSION = 1;"), "{module}");
    // The page it embeds is the sandbox page of the same server, in an opaque-origin iframe.
    assert!(module.contains("new URL('../sandbox#runner=1', import.meta.url)"), "{module}");
    assert!(module.contains("frame.setAttribute('sandbox', 'allow-scripts')"), "{module}");
    let res = sandbox.handle(&Method::HEAD, "/sandbox/runner.js").await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-length"], module.len().to_string().as_str());
}

#[tokio::test]
async fn static_files_have_types_and_cors() {
    let (_tmp, sandbox) = fixture();
    let (status, h, body) = get(&sandbox, "/pyodide/pyodide.asm.wasm").await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "content-type"), "application/wasm");
    assert_eq!(header(&h, "access-control-allow-origin"), "*");
    assert_eq!(header(&h, "x-content-type-options"), "nosniff");
    assert_eq!(body, b"\0asm\x01\0\0\0");
    let (_, h, _) = get(&sandbox, "/pyodide/pyodide.mjs").await;
    assert_eq!(header(&h, "content-type"), "text/javascript; charset=utf-8");
    let (_, h, _) = get(&sandbox, "/pyodide/pyodide-lock.json").await;
    assert_eq!(header(&h, "content-type"), "application/json");
    let (status, _, body) = get(&sandbox, "/pyodide/sub/a%20b.txt").await;
    assert_eq!((status, body.as_slice()), (200, b"spaced".as_slice()));
    let (_, h, _) = get(&sandbox, "/wheels/plotly-7.1.0-py3-none-any.whl").await;
    assert_eq!(header(&h, "content-type"), "application/zip");
    let (_, h, _) = get(&sandbox, "/wheels/plotly.min.js").await;
    assert_eq!(header(&h, "content-type"), "text/javascript; charset=utf-8");
}

#[tokio::test]
async fn traversal_and_symlink_escapes_are_404() {
    let (_tmp, sandbox) = fixture();
    for path in [
        "/pyodide/../secret.txt",
        "/pyodide/%2e%2e/secret.txt",
        "/pyodide/%2E%2E%2Fsecret.txt",
        "/pyodide/sub/../../secret.txt",
        "/pyodide/..%5Csecret.txt",
        "/pyodide//etc/passwd",
        "/pyodide/%2Fetc%2Fpasswd",
        "/pyodide/link.txt",
        "/pyodide/up/secret.txt",
        "/pyodide/.hidden",
        "/pyodide/sub",
        "/pyodide/",
        "/pyodide/%ff",
        "/pyodide/%zz",
        "/pyodide/nul%00.txt",
        "/pyodide/missing.js",
        "/wheels/../pyodide/pyodide.mjs",
    ] {
        let (status, _, body) = get(&sandbox, path).await;
        assert_eq!(status, 404, "{path} answered {}", String::from_utf8_lossy(&body));
    }
}

#[tokio::test]
async fn simple_index_lists_the_wheels_of_a_project() {
    let (_tmp, sandbox) = fixture();
    let (status, h, body) = get(&sandbox, "/wheels/simple/plotly/").await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "content-type"), "text/html; charset=utf-8");
    let html = String::from_utf8(body).unwrap();
    assert!(html.contains(
        r#"<a href="../../plotly-7.1.0-py3-none-any.whl">plotly-7.1.0-py3-none-any.whl</a>"#
    ));
    assert!(!html.contains("Foo_Bar"));
    // Without the trailing slash the links still resolve to /wheels/<file>.
    let html = String::from_utf8(get(&sandbox, "/wheels/simple/plotly").await.2).unwrap();
    assert!(html.contains(r#"<a href="../plotly-7.1.0-py3-none-any.whl">"#), "{html}");
    // PEP 503 names match in any spelling.
    let html = String::from_utf8(get(&sandbox, "/wheels/simple/foo-bar/").await.2).unwrap();
    assert!(html.contains("Foo_Bar-1.0-py3-none-any.whl"), "{html}");
    assert_eq!(get(&sandbox, "/wheels/simple/numpy/").await.0, 404);
    assert_eq!(get(&sandbox, "/wheels/simple/..%2f/").await.0, 404);
}

#[tokio::test]
async fn head_other_methods_and_foreign_paths() {
    let (_tmp, sandbox) = fixture();
    let res = sandbox.handle(&Method::HEAD, "/pyodide/pyodide.asm.wasm").await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-length"], "8");
    assert!(res.into_body().collect().await.unwrap().to_bytes().is_empty());
    let res = sandbox.handle(&Method::POST, "/sandbox").await.unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["allow"], "GET, HEAD");
    assert!(sandbox.handle(&Method::GET, "/v1/chat/completions").await.is_none());
    assert!(sandbox.handle(&Method::GET, "/sandboxes").await.is_none());
    assert!(sandbox.handle(&Method::GET, "/").await.is_none());
    // A query string does not change the answer.
    assert_eq!(get(&sandbox, "/sandbox?x=1").await.0, 200);
}

#[test]
fn helpers() {
    assert_eq!(percent_decode("a%20b%2F").as_deref(), Some("a b/"));
    assert_eq!(percent_decode("%e2%9c%93").as_deref(), Some("✓"));
    assert_eq!(percent_decode("%"), None);
    assert_eq!(percent_decode("%c3"), None);
    assert_eq!(safe_segments("a/b.js"), Some(vec!["a".into(), "b.js".into()]));
    assert_eq!(safe_segments("a/./b"), None);
    assert_eq!(safe_segments("C:/x"), None);
    assert_eq!(content_type(std::path::Path::new("x.WASM")), "application/wasm");
    assert_eq!(content_type(std::path::Path::new("x.tar")), "application/x-tar");
    assert_eq!(content_type(std::path::Path::new("x")), "application/octet-stream");
    assert_eq!(wheel_project("plotly-7.1.0-py3-none-any.whl"), Some("plotly"));
    assert_eq!(wheel_project("a-1-2-py3-none-any.whl"), Some("a"));
    assert_eq!(wheel_project("plotly.min.js"), None);
    assert_eq!(wheel_project("x<y-1-py3-none-any.whl"), None);
    assert_eq!(normalize_project("Foo__Bar.baz"), "foo-bar-baz");
    assert_eq!(csp_source("/pyodide/").unwrap(), "'self'");
    assert_eq!(csp_source("pyodide/").unwrap(), "'self'");
    assert!(csp_source("data:text/html,x/").is_err());
    assert_eq!(
        csp_source("https://cdn.example:8443/p/?v=1").unwrap(),
        "https://cdn.example:8443/p/"
    );
    assert!(csp_source("ftp://x/").is_err());
}

/// `worker.js` as served holds `templates/runner.py` as one JavaScript string literal, which reads
/// back as exactly the file.
async fn worker_carries_the_runner(sandbox: &Sandbox) {
    let js = String::from_utf8(get(sandbox, "/sandbox/worker.js").await.2).unwrap();
    assert!(!js.contains("{{templates/runner.py}}"), "the placeholder is left in worker.js");
    let start = js.find("const RUNNER = ").unwrap() + "const RUNNER = ".len();
    let literal = &js[start..start + js[start..].find(";\n").unwrap()];
    let runner: String = serde_json::from_str(literal).unwrap();
    assert_eq!(runner, include_str!("../../templates/runner.py"));
}

/// The page's limits come from the configuration: the code a link may carry is the engine's
/// block limit, and the figures' JSON cap is the one the worker is given.
#[tokio::test]
async fn page_limits_come_from_the_configuration() {
    let config = SandboxConfig {
        max_code_bytes: 4096,
        max_figure_json_chars: 1234,
        ..SandboxConfig::default()
    };
    let sandbox = Sandbox::new(config).unwrap();
    let html = String::from_utf8(get(&sandbox, "/sandbox").await.2).unwrap();
    assert!(html.contains(r#"data-max-code-bytes="4096""#), "{html}");
    assert!(html.contains(r#"data-max-figure-json-chars="1234""#), "{html}");
    let mut raw = crate::config::RawConfig::default();
    raw.set("max_block_bytes", "4096").unwrap();
    assert_eq!(raw.validate().unwrap().sandbox.max_code_bytes, 4096);
    assert_eq!(SandboxConfig::default().max_code_bytes, crate::rewrite::DEFAULT_MAX_BLOCK_BYTES);
    // Neither script carries a limit of its own.
    for script in ["page.js", "worker.js"] {
        let js = String::from_utf8(get(&sandbox, &format!("/sandbox/{script}")).await.2).unwrap();
        for literal in ["5_000_000", "1 << 20;"] {
            assert!(!js.contains(literal), "{script} repeats the limit {literal}");
        }
    }
}

/// `templates/runner.py` is valid Python (compiled by the machine's python3, without writing
/// bytecode).
#[test]
fn runner_py_compiles() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/templates/runner.py");
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys; compile(open(sys.argv[1]).read(), sys.argv[1], 'exec')", path])
        .output()
        .expect("python3 runs (tests/setup/20-sdk.sh installs it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
