//! The link payload: raw DEFLATE (RFC 1951) of UTF-8 text, then base64url without padding
//! (RFC 4648 section 5). The same encoding carries the code (`py=`) and, when the code is hidden, the
//! original markdown of the block (`md=`).

use std::cell::RefCell;

use super::deflate::Deflater;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// The largest text a payload may decode to; a larger one is refused (a DEFLATE bomb in a request).
pub const MAX_DECODED_BYTES: usize = 16 << 20;

/// Encodes text as a payload.
pub fn encode(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(deflate(text.as_bytes()))
}

thread_local! {
    /// One encoder per thread: its match tables (256 KB) are kept from one payload to the next and
    /// never cleared (see [`Deflater`]).
    static DEFLATER: RefCell<Deflater> = RefCell::new(Deflater::new());
}

/// Raw DEFLATE of `input`, with the thread's encoder (a new one where it is in use or gone, as in a
/// thread-local destructor; miniz_oxide past the encoder's 1 GiB).
fn deflate(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 2 + 16);
    let reused = DEFLATER
        .try_with(|cell| Some(cell.try_borrow_mut().ok()?.compress(input, &mut out)))
        .ok()
        .flatten();
    match reused {
        Some(Some(())) => out,
        Some(None) => miniz_oxide::deflate::compress_to_vec(input, 6),
        None => match Deflater::new().compress(input, &mut out) {
            Some(()) => out,
            None => miniz_oxide::deflate::compress_to_vec(input, 6),
        },
    }
}

/// Decodes a payload back to text; `None` if it is not base64url of raw DEFLATE of UTF-8 text no larger
/// than [`MAX_DECODED_BYTES`].
pub fn decode(payload: &str) -> Option<String> {
    decode_limited(payload, MAX_DECODED_BYTES)
}

/// [`decode`] with a smaller limit: `None` as soon as the text would grow past `limit` bytes (inflating
/// stops there, so a DEFLATE bomb costs at most `limit` bytes of memory).
pub fn decode_limited(payload: &str, limit: usize) -> Option<String> {
    let deflated = URL_SAFE_NO_PAD.decode(payload.as_bytes()).ok()?;
    let limit = limit.min(MAX_DECODED_BYTES);
    let raw = miniz_oxide::inflate::decompress_to_vec_with_limit(&deflated, limit).ok()?;
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
    fn same_bytes_as_a_fresh_encoder() {
        let long = "x = [i * i for i in range(100)]\n".repeat(500);
        for text in ["", "print(1)\n", long.as_str(), "a"] {
            let mut fresh = Vec::new();
            assert_eq!(Deflater::new().compress(text.as_bytes(), &mut fresh), Some(()));
            assert_eq!(deflate(text.as_bytes()), fresh);
        }
    }

    #[test]
    fn the_limit_stops_inflating() {
        let big = "A".repeat(1 << 20);
        let p = encode(&big);
        assert!(p.len() < 2048, "{}", p.len());
        assert_eq!(decode_limited(&p, 1 << 20).map(|s| s.len()), Some(1 << 20));
        assert_eq!(decode_limited(&p, (1 << 20) - 1), None);
        assert_eq!(decode_limited(&p, 0), None);
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(decode("!!"), None);
        assert_eq!(decode(&URL_SAFE_NO_PAD.encode([0xff, 0xff, 0xff])), None);
    }
}
