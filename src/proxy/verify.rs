//! `GET /sandbox/verify?h=<hash>&mac=<mac>`: whether this sandgate signed a link.
//!
//! The sandbox page sends the base64url SHA-256 of the link's signed text and its MAC, never the code,
//! and auto-runs the link only on 204. [`answer`] is a pure function of the key and the query, so that
//! test servers answer exactly as sandgate does.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::rewrite::sign::{self, Verdict};
use crate::rewrite::LinkKey;

/// The path of the check.
pub const PATH: &str = "/sandbox/verify";

/// The answer to `GET /sandbox/verify?{query}`: 204 when `mac` is the key's MAC for the hash `h`, 403
/// when it is not, 400 when either is missing or malformed. Always `Access-Control-Allow-Origin: *`
/// (the page runs in an opaque origin) and `Cache-Control: no-store`.
pub fn answer(key: &LinkKey, query: Option<&str>) -> Response<Bytes> {
    let (mut hash, mut mac) = (None, None);
    for param in query.unwrap_or("").split('&') {
        match param.split_once('=') {
            Some(("h", v)) if hash.is_none() => hash = Some(v),
            Some(("mac", v)) if mac.is_none() => mac = Some(v),
            _ => {}
        }
    }
    let (status, text) = match (hash, mac) {
        (Some(h), Some(m)) => match sign::verify(key, h, m) {
            Verdict::Valid => (StatusCode::NO_CONTENT, ""),
            Verdict::Invalid => (StatusCode::FORBIDDEN, "not signed by this sandgate\n"),
            Verdict::Malformed => (StatusCode::BAD_REQUEST, "malformed h or mac\n"),
        },
        _ => (StatusCode::BAD_REQUEST, "expected ?h=<sha-256, base64url>&mac=<mac>\n"),
    };
    let mut resp = Response::new(Bytes::from_static(text.as_bytes()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if !text.is_empty() {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_204_403_400() {
        let key = LinkKey::new(b"0123456789abcdef").unwrap();
        let signed = "py=AA&sg=n";
        let (h, m) = (sign::hash_param(signed), key.mac(signed));
        let q = |q: &str| answer(&key, Some(q));
        assert_eq!(q(&format!("h={h}&mac={m}")).status(), StatusCode::NO_CONTENT);
        assert_eq!(q(&format!("mac={m}&h={h}")).status(), StatusCode::NO_CONTENT);
        let other = LinkKey::public().mac(signed);
        assert_eq!(q(&format!("h={h}&mac={other}")).status(), StatusCode::FORBIDDEN);
        assert_eq!(q(&format!("h={h}")).status(), StatusCode::BAD_REQUEST);
        assert_eq!(q(&format!("h={h}&mac=x")).status(), StatusCode::BAD_REQUEST);
        assert_eq!(answer(&key, None).status(), StatusCode::BAD_REQUEST);
        for resp in [q(&format!("h={h}&mac={m}")), q("")] {
            assert_eq!(resp.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
            assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-store");
        }
    }
}
