//! Static files from a configured directory (`/pyodide/`, `/wheels/`), and the PEP 503 "simple"
//! package index that lets micropip find the wheels of `/wheels/`.
//!
//! A request path is percent-decoded once and split into segments; empty, `.`, `..` and hidden
//! segments, backslashes and NUL are refused, and the file found must still lie under the
//! directory once symlinks are resolved. Anything refused is a plain 404, like a missing file.
//! A file's bytes are shared: every response being sent holds a reference to one copy per file (the
//! 8.6 MB wasm is in memory once, however many clients are reading it, even clients that never
//! read), and the copy is freed when the last of those responses ends. A file replaced on disk (other
//! length or modification time) is read again for the responses that follow.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::SystemTime;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;

use super::{not_found, response};

/// A directory whose files are served, canonicalized once at startup.
#[derive(Debug)]
pub(crate) struct Root {
    path: PathBuf,
    /// The copies of files being sent now, by canonical path.
    shared: Mutex<HashMap<PathBuf, SharedFile>>,
    /// Held while a file is read from disk, so that readers arriving together read it once.
    loading: tokio::sync::Mutex<()>,
}

/// One file's bytes, as long as a response holds them, and what the file looked like when read.
#[derive(Debug)]
struct SharedFile {
    len: u64,
    modified: Option<SystemTime>,
    bytes: Weak<Vec<u8>>,
}

/// A reference to a shared copy, as the owner of a response's [`Bytes`].
struct Owner(Arc<Vec<u8>>);

impl AsRef<[u8]> for Owner {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Root {
    pub(crate) fn open(dir: &Path) -> Result<Self, String> {
        let path = std::fs::canonicalize(dir)
            .map_err(|e| format!("cannot open {}: {e}", dir.display()))?;
        if !path.is_dir() {
            return Err(format!("{} is not a directory", dir.display()));
        }
        Ok(Root { path, shared: Mutex::new(HashMap::new()), loading: tokio::sync::Mutex::new(()) })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The file at `rel` (the request path after the prefix, still percent-encoded), or 404.
    pub(crate) async fn serve(&self, rel: &str) -> Response<Full<Bytes>> {
        let Some((file, meta)) = self.resolve(rel).await else {
            return not_found();
        };
        let Some(body) = self.bytes(&file, &meta).await else {
            return not_found();
        };
        let mut res = response(StatusCode::OK, content_type(&file), body);
        static_headers(&mut res);
        res
    }

    /// `simple/<project>/`: an HTML page (PEP 503) linking the wheels of that project that lie in
    /// the directory's top level, or 404 when there are none, so that micropip tries its next
    /// index or Pyodide's own packages.
    pub(crate) async fn simple_index(&self, project: &str) -> Response<Full<Bytes>> {
        // Links are relative to the index's own URL, which some micropip versions ask for without
        // the trailing slash.
        let up = if project.ends_with('/') { "../../" } else { "../" };
        let project = project.strip_suffix('/').unwrap_or(project);
        let Some(project) = percent_decode(project) else {
            return not_found();
        };
        if project.is_empty() || project.contains('/') {
            return not_found();
        }
        let wanted = normalize_project(&project);
        let Ok(mut entries) = tokio::fs::read_dir(&self.path).await else {
            return not_found();
        };
        let mut wheels = Vec::new();
        while let Ok(Some(entry)) = entries.next_entry().await {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if wheel_project(&name).is_some_and(|p| normalize_project(p) == wanted)
                && entry.file_type().await.is_ok_and(|t| t.is_file())
            {
                wheels.push(name);
            }
        }
        if wheels.is_empty() {
            return not_found();
        }
        wheels.sort();
        let mut html = String::from("<!DOCTYPE html>\n<html><body>\n");
        for name in &wheels {
            // Wheel names are limited to a safe alphabet by `wheel_project`: nothing to escape.
            html.push_str(&format!("<a href=\"{up}{name}\">{name}</a><br>\n"));
        }
        html.push_str("</body></html>\n");
        let mut res = response(StatusCode::OK, "text/html; charset=utf-8", Bytes::from(html));
        static_headers(&mut res);
        res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        res
    }

    /// The bytes of `file`: the copy other responses hold if the file has not changed since, or
    /// read now and shared from then on.
    async fn bytes(&self, file: &Path, meta: &std::fs::Metadata) -> Option<Bytes> {
        let (len, modified) = (meta.len(), meta.modified().ok());
        if let Some(bytes) = self.shared_copy(file, len, modified) {
            return Some(bytes);
        }
        let _loading = self.loading.lock().await;
        if let Some(bytes) = self.shared_copy(file, len, modified) {
            return Some(bytes);
        }
        let data = Arc::new(tokio::fs::read(file).await.ok()?);
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        shared.retain(|_, f| f.bytes.strong_count() > 0);
        // What was read is recorded as the file at `meta`; if it changed in between, the next
        // request sees another length or time and reads it again.
        shared
            .insert(file.to_path_buf(), SharedFile { len, modified, bytes: Arc::downgrade(&data) });
        Some(Bytes::from_owner(Owner(data)))
    }

    fn shared_copy(&self, file: &Path, len: u64, modified: Option<SystemTime>) -> Option<Bytes> {
        let shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let entry = shared.get(file)?;
        if entry.len != len || entry.modified != modified {
            return None;
        }
        entry.bytes.upgrade().map(|data| Bytes::from_owner(Owner(data)))
    }

    /// The canonical path of an existing regular file under the root and its metadata, or `None`.
    async fn resolve(&self, rel: &str) -> Option<(PathBuf, std::fs::Metadata)> {
        let segments = safe_segments(rel)?;
        let mut candidate = self.path.clone();
        candidate.extend(segments);
        let real = tokio::fs::canonicalize(&candidate).await.ok()?;
        if !real.starts_with(&self.path) {
            return None;
        }
        let meta = tokio::fs::metadata(&real).await.ok()?;
        meta.is_file().then_some((real, meta))
    }
}

/// The segments of a relative request path, or `None` if any of them could leave the directory,
/// name a hidden file, or does not decode to plain UTF-8.
pub(crate) fn safe_segments(rel: &str) -> Option<Vec<String>> {
    let decoded = percent_decode(rel)?;
    if decoded.is_empty() || decoded.contains(['\\', '\0']) {
        return None;
    }
    let mut out = Vec::new();
    for segment in decoded.split('/') {
        if segment.is_empty() || segment.starts_with('.') || segment.contains(':') {
            return None;
        }
        out.push(segment.to_string());
    }
    Some(out)
}

/// Decodes `%XX` escapes once; `None` for a malformed escape or bytes that are not UTF-8.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The media type of a served file, by extension: what Pyodide and browsers require (`.wasm` must
/// be `application/wasm`, JavaScript `text/javascript`).
pub(crate) fn content_type(path: &Path) -> &'static str {
    let ext =
        path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
    match ext.as_str() {
        "wasm" => "application/wasm",
        "js" | "mjs" | "cjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "zip" | "whl" => "application/zip",
        "tar" => "application/x-tar",
        "gz" | "tgz" => "application/gzip",
        "bz2" => "application/x-bzip2",
        "txt" | "ts" | "py" | "pyi" => "text/plain; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "html" | "htm" => "text/html; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        _ => "application/octet-stream",
    }
}

/// The project name of a wheel file name (`plotly-7.1.0-py3-none-any.whl` -> `plotly`), if the
/// name is a well-formed wheel name in a safe alphabet.
pub(crate) fn wheel_project(file_name: &str) -> Option<&str> {
    let stem = file_name.strip_suffix(".whl")?;
    if !file_name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+' | b'!'))
    {
        return None;
    }
    let parts: Vec<&str> = stem.split('-').collect();
    if !(parts.len() == 5 || parts.len() == 6) || parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    Some(parts[0])
}

/// PEP 503 normalization: lowercase, runs of `-`, `_`, `.` become one `-`.
pub(crate) fn normalize_project(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_sep {
                out.push('-');
            }
            in_sep = true;
        } else {
            out.extend(c.to_lowercase());
            in_sep = false;
        }
    }
    out
}

/// Headers for static files: loadable from any origin (widgets run in an opaque one), inert if
/// opened as a document.
fn static_headers(res: &mut Response<Full<Bytes>>) {
    let h = res.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert("cross-origin-resource-policy", HeaderValue::from_static("cross-origin"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
}
