//! The link payload: raw DEFLATE (RFC 1951) of UTF-8 text, then base64url without padding
//! (RFC 4648 section 5). The same encoding carries the code (`py=`) and, when the code is hidden, the
//! original markdown of the block (`md=`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// The largest text a payload may decode to; a larger one is refused (a DEFLATE bomb in a request).
pub const MAX_DECODED_BYTES: usize = 16 << 20;

const LEVEL: u8 = 6;

/// Encodes text as a payload.
pub fn encode(text: &str) -> String {
    let deflated = miniz_oxide::deflate::compress_to_vec(text.as_bytes(), LEVEL);
    URL_SAFE_NO_PAD.encode(deflated)
}

/// Decodes a payload back to text; `None` if it is not base64url of raw DEFLATE of UTF-8 text no larger
/// than [`MAX_DECODED_BYTES`].
pub fn decode(payload: &str) -> Option<String> {
    let deflated = URL_SAFE_NO_PAD.decode(payload.as_bytes()).ok()?;
    let raw =
        miniz_oxide::inflate::decompress_to_vec_with_limit(&deflated, MAX_DECODED_BYTES).ok()?;
    String::from_utf8(raw).ok()
}

/// Whether a byte can appear in a payload.
pub fn is_payload_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for text in ["", "print('hi')\n", "é</script>\u{1F600}\r\n"] {
            let p = encode(text);
            assert!(p.bytes().all(is_payload_byte), "{p}");
            assert_eq!(decode(&p).as_deref(), Some(text));
        }
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(decode("!!"), None);
        assert_eq!(decode(&URL_SAFE_NO_PAD.encode([0xff, 0xff, 0xff])), None);
    }
}
