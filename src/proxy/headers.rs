//! The header policy, in one place.
//!
//! Requests: the client's credentials and provider headers (Authorization, api-key,
//! OpenAI-Organization, OpenAI-Project, OpenAI-Beta, ...) go upstream unchanged; hop-by-hop headers,
//! `Host`, `x-sandgate-mode`, `x-sandgate-context` and `x-sandgate-tools` do not; with gateway keys
//! the client's key is checked and replaced by the configured upstream key (and then the client may
//! not pick the organization or project that key is billed to). Responses: hop-by-hop headers are dropped; everything else (Retry-After,
//! x-ratelimit-*, x-request-id, ...) reaches the client.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use subtle::ConstantTimeEq;

use crate::error::{Error, StartError};
use crate::rewrite::api::Tool;

/// The request header that overrides the mode for one request.
pub const MODE_HEADER: &str = "x-sandgate-mode";

/// The request header that says, for one request, whether sandgate adds its tools.
pub const TOOLS_HEADER: &str = "x-sandgate-tools";
/// The request header that overrides the cells context (`context`) for one request.
pub const CONTEXT_HEADER: &str = "x-sandgate-context";

/// Headers that describe one connection rather than the message (RFC 9110 section 7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes hop-by-hop headers, including those the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

/// Turns a client's request headers into the headers to send upstream.
pub fn upstream_request(h: &mut HeaderMap, auth: &Auth) -> Result<(), Error> {
    strip_hop_by_hop(h);
    h.remove(header::HOST);
    h.remove(MODE_HEADER);
    h.remove(TOOLS_HEADER);
    h.remove(CONTEXT_HEADER);
    auth.apply(h)
}

/// The tools `x-sandgate-tools` asks for: `None` without the header (the configuration decides),
/// `python` for the `python` tool, empty or `none` for no tool (ASCII case and surrounding
/// whitespace ignored); anything else is an error.
pub fn tools_header(h: &HeaderMap) -> Result<Option<Vec<Tool>>, Error> {
    let Some(v) = h.get(TOOLS_HEADER) else { return Ok(None) };
    let bad =
        || Error::BadToolsHeader { value: String::from_utf8_lossy(v.as_bytes()).into_owned() };
    let text = v.to_str().map_err(|_| bad())?.trim();
    if text.is_empty() || text.eq_ignore_ascii_case("none") {
        return Ok(Some(Vec::new()));
    }
    let tool: Tool = text.parse().map_err(|_| bad())?;
    Ok(Some(vec![tool]))
}

/// Marks a rewritten route's request: its body was read whole (so there is nothing left to expect a
/// `100 Continue` for), and the answer must come unencoded.
pub fn for_rewritten_route(h: &mut HeaderMap, body_len: usize) {
    h.remove(header::EXPECT);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body_len));
    h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
}

/// Cleans an upstream response's headers for the client.
pub fn client_response(h: &mut HeaderMap) {
    strip_hop_by_hop(h);
}

/// Headers of an event stream on its way to the client: its length changes as it is rewritten, and
/// no cache or buffering proxy in between should hold it.
pub fn for_event_stream(h: &mut HeaderMap) {
    h.remove(header::CONTENT_LENGTH);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
}

/// The response body is encoded (gzip, br, ...), so sandgate cannot read it.
pub fn is_encoded(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.trim().is_empty() && !v.trim().eq_ignore_ascii_case("identity"))
}

/// The media type of a body, lower-cased, without parameters.
pub fn media_type(h: &HeaderMap) -> String {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Gateway keys: who may use this sandgate, and what it sends upstream instead.
///
/// Keys are kept only as HMAC-SHA256 digests under a random per-process key, and a presented key is
/// digested the same way before it is compared, in constant time, with every configured digest: all
/// digests are 32 bytes, so neither a key's content nor its length shows in the timing.
#[derive(Clone, Debug, Default)]
pub struct Auth {
    digests: Vec<[u8; 32]>,
    hasher: Option<ring::hmac::Key>,
    upstream: Option<HeaderValue>,
}

impl Auth {
    /// No keys: the client's own credentials go upstream unchanged. `upstream` is the
    /// `Authorization` value sent in place of a client's key (`Config::upstream_authorization`).
    pub fn new(keys: Vec<String>, upstream: Option<HeaderValue>) -> Result<Self, StartError> {
        let hasher = if keys.is_empty() {
            None
        } else {
            let rng = ring::rand::SystemRandom::new();
            let key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng).map_err(|_| {
                StartError::Config(crate::config::ConfigError(
                    "api_keys: the system gave no random key to digest them with".to_owned(),
                ))
            })?;
            Some(key)
        };
        let digests = match &hasher {
            Some(h) => keys.iter().map(|k| digest(h, k)).collect(),
            None => Vec::new(),
        };
        Ok(Auth { digests, hasher, upstream })
    }

    /// Checks the client's key and swaps in the upstream key, when gateway keys are configured.
    pub fn apply(&self, h: &mut HeaderMap) -> Result<(), Error> {
        let Some(hasher) = &self.hasher else {
            return Ok(());
        };
        let presented = h
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .or_else(|| h.get("api-key").and_then(|v| v.to_str().ok()).map(str::trim));
        let ok = presented.is_some_and(|p| {
            // Compare against every key's digest, each in constant time, so timing reveals nothing.
            let p = digest(hasher, p);
            self.digests.iter().fold(subtle::Choice::from(0), |found, k| found | p.ct_eq(k)).into()
        });
        if !ok {
            return Err(Error::Unauthorized);
        }
        h.remove(header::AUTHORIZATION);
        h.remove("api-key");
        if let Some(v) = &self.upstream {
            // The provider account is the operator's: its organization and project are not the
            // client's to choose.
            h.remove("openai-organization");
            h.remove("openai-project");
            h.insert(header::AUTHORIZATION, v.clone());
        }
        Ok(())
    }
}

/// The fixed-length digest a key is compared by.
fn digest(hasher: &ring::hmac::Key, key: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::hmac::sign(hasher, key.as_bytes()).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_named_headers_are_stripped() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("keep-alive, x-private"));
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("authorization", HeaderValue::from_static("Bearer sk-1"));
        h.insert("openai-organization", HeaderValue::from_static("org-1"));
        h.insert("host", HeaderValue::from_static("sandgate"));
        h.insert(MODE_HEADER, HeaderValue::from_static("off"));
        h.insert(TOOLS_HEADER, HeaderValue::from_static("python"));
        h.insert(CONTEXT_HEADER, HeaderValue::from_static("conversation"));
        upstream_request(&mut h, &Auth::default()).unwrap();
        let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["authorization", "openai-organization"]);
        assert_eq!(h["authorization"], "Bearer sk-1");
    }

    #[test]
    fn gateway_keys_are_checked_and_swapped() {
        let auth = Auth::new(
            vec!["gw-1".into(), "gw-2".into()],
            Some(HeaderValue::from_static("Bearer sk-up")),
        )
        .unwrap();
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer gw-2"));
        h.insert("openai-organization", HeaderValue::from_static("org-client"));
        h.insert("openai-project", HeaderValue::from_static("proj-client"));
        h.insert("openai-beta", HeaderValue::from_static("assistants=v2"));
        auth.apply(&mut h).unwrap();
        assert_eq!(h["authorization"], "Bearer sk-up");
        assert!(h.get("openai-organization").is_none() && h.get("openai-project").is_none());
        assert_eq!(h["openai-beta"], "assistants=v2");

        // Gateway keys without an upstream key (an upstream that needs none): the client's key is
        // checked and not forwarded; its other headers are.
        let keyless = Auth::new(vec!["gw-1".into()], None).unwrap();
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer gw-1"));
        h.insert("openai-organization", HeaderValue::from_static("org-client"));
        keyless.apply(&mut h).unwrap();
        assert!(h.get("authorization").is_none());
        assert_eq!(h["openai-organization"], "org-client");

        let mut h = HeaderMap::new();
        h.insert("api-key", HeaderValue::from_static("gw-1"));
        auth.apply(&mut h).unwrap();
        assert_eq!(h["authorization"], "Bearer sk-up");
        assert!(h.get("api-key").is_none());

        for bad in ["Bearer gw-3", "Bearer gw-", "Bearer gw-22", "Basic gw-1", "gw-1", ""] {
            let mut h = HeaderMap::new();
            h.insert("authorization", HeaderValue::from_str(bad).unwrap());
            assert!(matches!(auth.apply(&mut h), Err(Error::Unauthorized)), "{bad:?}");
        }
        assert!(matches!(auth.apply(&mut HeaderMap::new()), Err(Error::Unauthorized)));
        // Only fixed-length digests are kept and compared: a key's length cannot show in the time.
        assert_eq!(auth.digests.len(), 2);
        assert!(!format!("{auth:?}").contains("gw-1"), "keys are not kept in the clear");
    }

    #[test]
    fn the_tools_header_is_python_none_or_empty() {
        let parse = |v: &[u8]| {
            let mut h = HeaderMap::new();
            h.insert(TOOLS_HEADER, HeaderValue::from_bytes(v).unwrap());
            tools_header(&h)
        };
        assert_eq!(tools_header(&HeaderMap::new()).unwrap(), None);
        assert_eq!(parse(b"python").unwrap(), Some(vec![Tool::Python]));
        assert_eq!(parse(b" Python ").unwrap(), Some(vec![Tool::Python]));
        assert_eq!(parse(b"").unwrap(), Some(vec![]));
        assert_eq!(parse(b"NONE").unwrap(), Some(vec![]));
        for bad in [&b"pyth"[..], b"python,shell", b"true", b"python\xff", b"off"] {
            match parse(bad) {
                Err(Error::BadToolsHeader { value }) => {
                    assert_eq!(value, String::from_utf8_lossy(bad), "{bad:?}")
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn media_types_and_encodings() {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("Text/Event-Stream; charset=utf-8"));
        assert_eq!(media_type(&h), "text/event-stream");
        assert!(!is_encoded(&h));
        h.insert("content-encoding", HeaderValue::from_static("identity"));
        assert!(!is_encoded(&h));
        h.insert("content-encoding", HeaderValue::from_static("gzip"));
        assert!(is_encoded(&h));
    }
}
