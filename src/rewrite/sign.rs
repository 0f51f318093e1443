//! Signed links: the MAC that tells a replacement this sandgate made from any other text.
//!
//! A link's fragment ends with `&mac=M`, where M is base64url without padding of the first 16 bytes
//! of HMAC-SHA256(link key, SHA-256(S)) and S is the fragment text after `#` up to (not including)
//! `&mac=`. So the MAC covers every parameter before it (`py`, `md`, `sg`, `cx`). [`restore`] expands
//! only replacements with a valid MAC, and the sandbox page auto-runs only links whose MAC sandgate
//! confirms through `GET /sandbox/verify?h=<base64url SHA-256(S)>&mac=M`, answered by [`verify`]: only
//! the hash travels, the code never leaves the browser.
//!
//! [`LinkKey::public`] is a well-known key, written here and in the README: links signed with it are
//! as good as unsigned. The engine's default options use it (the command line and the fixtures); a
//! server uses `link_key` from its configuration, or a random key per process.
//!
//! [`restore`]: super::restore

use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::{digest, hmac};
use subtle::ConstantTimeEq;

/// The parameter that carries the MAC, always the last one of a signed link.
pub const MAC_PARAM: &str = "&mac=";

/// The well-known key of [`LinkKey::public`]. It is public: a link signed with it proves nothing.
pub const PUBLIC_LINK_KEY: &str = "sandgate public link key: links signed with it are unsigned";

/// The shortest `link_key` accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 16;

/// How many bytes of the HMAC a link carries.
const MAC_BYTES: usize = 16;

/// A key that signs links. Cheap to clone; its bytes are never printed.
#[derive(Clone)]
pub struct LinkKey {
    bytes: Arc<[u8]>,
    key: hmac::Key,
}

impl LinkKey {
    /// A key from its bytes; `None` if it is shorter than [`MIN_KEY_BYTES`].
    pub fn new(bytes: &[u8]) -> Option<Self> {
        (bytes.len() >= MIN_KEY_BYTES)
            .then(|| LinkKey { bytes: bytes.into(), key: hmac::Key::new(hmac::HMAC_SHA256, bytes) })
    }

    /// The public, well-known key ([`PUBLIC_LINK_KEY`]).
    pub fn public() -> Self {
        let bytes = PUBLIC_LINK_KEY.as_bytes();
        LinkKey { bytes: bytes.into(), key: hmac::Key::new(hmac::HMAC_SHA256, bytes) }
    }

    /// A random 32-byte key from the system's generator; `None` if it cannot give one.
    pub fn random() -> Option<Self> {
        let mut bytes = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).ok()?;
        LinkKey::new(&bytes)
    }

    /// Whether this is the public key.
    pub fn is_public(&self) -> bool {
        &*self.bytes == PUBLIC_LINK_KEY.as_bytes()
    }

    /// The MAC of the signed text S, as it goes after `&mac=`.
    pub fn mac(&self, signed: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.tag(&hash(signed)))
    }

    /// Whether `mac` (as after `&mac=`) is the MAC of S; constant time in the MAC's bytes.
    pub fn is_valid(&self, signed: &str, mac: &str) -> bool {
        self.check(&hash(signed), mac) == Verdict::Valid
    }

    fn tag(&self, hash: &[u8; 32]) -> [u8; MAC_BYTES] {
        let tag = hmac::sign(&self.key, hash);
        let mut out = [0u8; MAC_BYTES];
        out.copy_from_slice(&tag.as_ref()[..MAC_BYTES]);
        out
    }

    fn check(&self, hash: &[u8; 32], mac: &str) -> Verdict {
        let mut given = [0u8; MAC_BYTES];
        match URL_SAFE_NO_PAD.decode_slice(mac.as_bytes(), &mut given[..]) {
            Ok(MAC_BYTES) if mac.len() == 22 => {}
            _ => return Verdict::Malformed,
        }
        if bool::from(self.tag(hash).ct_eq(&given)) {
            Verdict::Valid
        } else {
            Verdict::Invalid
        }
    }
}

impl PartialEq for LinkKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for LinkKey {}

impl fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_public() { "LinkKey(public)" } else { "LinkKey(..)" })
    }
}

/// What [`verify`] says about a hash and a MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The MAC is this key's for that hash.
    Valid,
    /// Both are well formed, and the MAC is not this key's for that hash.
    Invalid,
    /// The hash is not 32 bytes or the MAC not 16, in base64url without padding.
    Malformed,
}

/// Checks a MAC against the hash of the signed text, both as they travel (base64url without
/// padding): the check `GET /sandbox/verify?h=&mac=` answers.
pub fn verify(key: &LinkKey, hash: &str, mac: &str) -> Verdict {
    let mut h = [0u8; 32];
    match URL_SAFE_NO_PAD.decode_slice(hash.as_bytes(), &mut h[..]) {
        Ok(32) if hash.len() == 43 => key.check(&h, mac),
        _ => Verdict::Malformed,
    }
}

/// SHA-256 of the signed text.
pub fn hash(signed: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, signed.as_bytes()).as_ref());
    out
}

/// The hash of the signed text as `verify` takes it (base64url without padding).
pub fn hash_param(signed: &str) -> String {
    URL_SAFE_NO_PAD.encode(hash(signed))
}

/// Splits a link's fragment (the text after `#`) into the signed text S and the MAC: `None` unless
/// it ends with `&mac=` and a value holding no further parameter.
pub fn split(fragment: &str) -> Option<(&str, &str)> {
    let at = fragment.rfind(MAC_PARAM)?;
    let mac = &fragment[at + MAC_PARAM.len()..];
    (!mac.contains('&')).then(|| (&fragment[..at], mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mac_verifies_with_its_key_only() {
        let key = LinkKey::new(b"0123456789abcdef").unwrap();
        let other = LinkKey::new(b"0123456789abcdeF").unwrap();
        let signed = "py=AA&md=BB&sg=n";
        let mac = key.mac(signed);
        assert_eq!(mac.len(), 22);
        assert!(key.is_valid(signed, &mac));
        assert!(!other.is_valid(signed, &mac));
        assert!(!key.is_valid("py=AA&md=BB", &mac));
        assert_eq!(verify(&key, &hash_param(signed), &mac), Verdict::Valid);
        assert_eq!(verify(&other, &hash_param(signed), &mac), Verdict::Invalid);
        assert_eq!(verify(&key, &hash_param(signed), &other.mac(signed)), Verdict::Invalid);
    }

    #[test]
    fn malformed_hashes_and_macs() {
        let key = LinkKey::public();
        let h = hash_param("py=AA");
        let mac = key.mac("py=AA");
        assert_eq!(verify(&key, &h, &mac), Verdict::Valid);
        for bad in [
            "",
            "AA",
            &mac[..21],
            &format!("{mac}A"),
            &format!("{mac}=="),
            "!!!!!!!!!!!!!!!!!!!!!!",
        ] {
            assert_eq!(verify(&key, &h, bad), Verdict::Malformed, "{bad:?}");
        }
        for bad in ["", &h[..42], &format!("{h}A"), "not base64!"] {
            assert_eq!(verify(&key, bad, &mac), Verdict::Malformed, "{bad:?}");
        }
    }

    #[test]
    fn keys_shorter_than_16_bytes_are_refused() {
        assert!(LinkKey::new(b"0123456789abcde").is_none());
        assert!(LinkKey::new(b"0123456789abcdef").is_some());
        assert!(LinkKey::public().is_public());
        let random = LinkKey::random().unwrap();
        assert!(!random.is_public());
        assert_ne!(random, LinkKey::random().unwrap());
        assert_eq!(format!("{random:?}"), "LinkKey(..)");
    }

    #[test]
    fn split_takes_the_last_parameter() {
        assert_eq!(split("py=A&md=B&mac=M"), Some(("py=A&md=B", "M")));
        assert_eq!(split("py=A&mac=M&sg=n"), None);
        assert_eq!(split("py=A"), None);
    }
}
