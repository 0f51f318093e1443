//! The link payload: raw DEFLATE (RFC 1951) of UTF-8 text, then base64url without padding.
