//! `Sec-WebSocket-Accept`: base64(SHA-1(key + GUID)) (RFC 6455 §4.2.2 item 5.4).

use base64::Engine as _;
use sha1::{Digest, Sha1};

/// The GUID that RFC 6455 §1.3 appends to the key.
pub const WEBSOCKET_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The length of an accept value: base64 of a 20-byte SHA-1 digest.
pub const ACCEPT_KEY_LEN: usize = 28;

/// Computes the `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key` value (as sent, without
/// surrounding white space).
///
/// ```
/// use lanes_proto::handshake::accept_key;
/// // RFC 6455 §1.3.
/// assert_eq!(&accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &[u8]) -> [u8; ACCEPT_KEY_LEN] {
    let mut sha1 = Sha1::new();
    sha1.update(key);
    sha1.update(WEBSOCKET_GUID);
    let digest = sha1.finalize();
    let mut out = [0u8; ACCEPT_KEY_LEN];
    // 20 bytes always encode to exactly 28 characters, so the slice is large enough.
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(digest.as_slice(), &mut out)
        .unwrap_or(0);
    debug_assert_eq!(written, ACCEPT_KEY_LEN);
    out
}
