//! Whose decompressor inflates a received message: the connection's own, or one shared by a
//! thread's connections.
//!
//! A connection whose peer keeps its compression context between messages (context takeover)
//! needs an [`Inflater`] of its own: the window carries from message to message. Without context
//! takeover every message stands alone, so one [`Inflater`] can serve every connection of a
//! thread in turn: a whole message is inflated in one go, leaving nothing in it between
//! messages. [`InflateScratch`] is that thread's shared part (the shared inflater and the
//! buffer messages are inflated into); [`RecvCompression`] is a connection's part.

use super::DeflateParams;
#[cfg(feature = "deflate")]
use super::Inflater;
use crate::error::ProtocolError;
use crate::frame::Role;

/// Scratch buffers that grew for one large message do not keep its memory past this.
#[cfg(feature = "deflate")]
const KEEP_CAPACITY: usize = 256 * 1024;

/// The window the shared inflater accepts: the largest, so any agreed window fits.
#[cfg(feature = "deflate")]
const SHARED_WINDOW_BITS: u8 = 15;

/// The receive side of one connection that negotiated permessage-deflate.
///
/// It holds no decompressor until the first compressed message arrives, and then only when
/// the peer takes context over (its window carries to the next message); otherwise the
/// [`InflateScratch`]'s shared inflater is used. Made by
/// [`Receiver::enable_deflate`](crate::session::Receiver::enable_deflate); usable on its own with
/// [`InflateScratch::inflate`].
pub struct RecvCompression {
    /// The peer takes context over: this connection keeps its own inflater.
    takeover: bool,
    /// That inflater, made for the first compressed message.
    #[cfg(feature = "deflate")]
    own: Option<Inflater>,
    /// The peer's window.
    window_bits: u8,
    #[cfg_attr(not(feature = "deflate"), allow(dead_code))]
    max_message_len: u64,
}

impl RecvCompression {
    /// The receive side for the messages that `role` receives under `params` (a server
    /// inflates with the `client_*` parameters, a client with the `server_*` ones), refusing
    /// any message that inflates to more than `max_message_len` bytes.
    pub fn new(params: &DeflateParams, role: Role, max_message_len: u64) -> RecvCompression {
        let (no_takeover, window_bits) = match role {
            Role::Server => (
                params.client_no_context_takeover,
                params.client_max_window_bits,
            ),
            Role::Client => (
                params.server_no_context_takeover,
                params.server_max_window_bits,
            ),
        };
        RecvCompression {
            takeover: !no_takeover,
            #[cfg(feature = "deflate")]
            own: None,
            window_bits,
            max_message_len,
        }
    }

    /// Whether this connection keeps its own inflater (the peer takes context over).
    pub const fn takes_context_over(&self) -> bool {
        self.takeover
    }

    /// Whether this connection's own inflater has been made (it is, on the first compressed
    /// message, when the peer takes context over).
    pub const fn has_own_inflater(&self) -> bool {
        #[cfg(feature = "deflate")]
        return self.own.is_some();
        #[cfg(not(feature = "deflate"))]
        false
    }
}

/// One thread's inflating scratch: the inflater shared by its connections without context
/// takeover, and the buffer every compressed message is inflated into and handed out from.
///
/// One per thread (or per event loop); a message inflated into it stays valid until the next
/// message is inflated. The buffer keeps its capacity between messages up to 256 KiB, and is
/// freed after a larger one.
///
/// ```
/// use lanes_proto::deflate::{DeflateParams, InflateScratch, RecvCompression};
/// use lanes_proto::Role;
/// let mut scratch = InflateScratch::new(1 << 20);
/// let mut side = RecvCompression::new(&DeflateParams::default(), Role::Client, 1 << 20);
/// // RFC 7692 §7.2.3.1: "Hello".
/// let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
/// assert_eq!(scratch.inflate(&mut side, &hello).unwrap(), b"Hello");
/// ```
pub struct InflateScratch {
    max_message_len: u64,
    #[cfg(feature = "deflate")]
    shared: Option<Inflater>,
    out: Vec<u8>,
}

impl InflateScratch {
    /// Scratch whose shared inflater refuses messages that inflate past `max_message_len`
    /// bytes (the largest limit of the connections it serves). Allocates nothing until used.
    pub const fn new(max_message_len: u64) -> InflateScratch {
        InflateScratch {
            max_message_len,
            #[cfg(feature = "deflate")]
            shared: None,
            out: Vec::new(),
        }
    }

    /// Inflates one whole compressed message (its frames' payloads, unmasked, end to end) with
    /// `side`'s inflater or the shared one, and returns the inflated bytes.
    ///
    /// Errors: [`ProtocolError::InvalidCompressedData`] (1002) and
    /// [`ProtocolError::MessageTooBig`] (1009, found while inflating, before allocating past
    /// the limit). After an error the inflater used is reset, so a shared one is clean for the
    /// next connection. Without the `deflate` feature nothing can be inflated: every message is
    /// [`ProtocolError::InvalidCompressedData`].
    #[cfg(not(feature = "deflate"))]
    pub fn inflate(
        &mut self,
        side: &mut RecvCompression,
        compressed: &[u8],
    ) -> Result<&[u8], ProtocolError> {
        let _ = (side, compressed, self.max_message_len, &self.out);
        Err(ProtocolError::InvalidCompressedData)
    }

    /// Inflates one whole compressed message (its frames' payloads, unmasked, end to end) with
    /// `side`'s inflater or the shared one, and returns the inflated bytes.
    ///
    /// Errors: [`ProtocolError::InvalidCompressedData`] (1002) and
    /// [`ProtocolError::MessageTooBig`] (1009, found while inflating, before allocating past
    /// the limit). After an error the inflater used is reset, so a shared one is clean for the
    /// next connection.
    #[cfg(feature = "deflate")]
    pub fn inflate(
        &mut self,
        side: &mut RecvCompression,
        compressed: &[u8],
    ) -> Result<&[u8], ProtocolError> {
        self.out.clear();
        if self.out.capacity() > KEEP_CAPACITY {
            self.out = Vec::new();
        }
        let inflater = if side.takeover {
            let (bits, max) = (side.window_bits, side.max_message_len);
            side.own
                .get_or_insert_with(|| Inflater::new(bits, false, max))
        } else {
            let max = self.max_message_len;
            self.shared
                .get_or_insert_with(|| Inflater::new(SHARED_WINDOW_BITS, true, max))
        };
        let result = inflater
            .handle_data(compressed, &mut self.out)
            .and_then(|_| inflater.handle_message_end(&mut self.out));
        if result.is_err() {
            inflater.reset();
        }
        result.map(|_| self.out.as_slice())
    }
}

/// Decompressor state is large and opaque: debug output says only what kind it is.
impl core::fmt::Debug for RecvCompression {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RecvCompression")
            .field("takeover", &self.takeover)
            .field("own", &self.has_own_inflater())
            .field("window_bits", &self.window_bits)
            .finish_non_exhaustive()
    }
}

impl core::fmt::Debug for InflateScratch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("InflateScratch")
            .field("max_message_len", &self.max_message_len)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, feature = "deflate"))]
mod tests {
    use super::*;
    use crate::deflate::{DeflateConfig, Deflater, SendAs};

    const HELLO: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];

    fn compress(deflater: &mut Deflater, message: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        assert_eq!(deflater.compress(message, &mut out), SendAs::Compressed);
        out
    }

    #[test]
    fn takeover_uses_the_connections_own_inflater_made_on_first_use() {
        let params = DeflateParams::default();
        let mut side = RecvCompression::new(&params, Role::Server, 1 << 20);
        assert!(side.takes_context_over());
        assert!(!side.has_own_inflater());
        let mut scratch = InflateScratch::new(1 << 20);
        let config = DeflateConfig {
            enabled: true,
            min_compress_len: 0,
            ..DeflateConfig::default()
        };
        let mut deflater = params.deflater(Role::Client, &config);
        let message = b"the same words, the same words, the same words";
        for _ in 0..3 {
            // The second and later copies refer back into the first: the window carried over.
            let wire = compress(&mut deflater, message);
            assert_eq!(scratch.inflate(&mut side, &wire).unwrap(), message);
        }
        assert!(side.has_own_inflater());
        assert!(scratch.shared.is_none());
    }

    #[test]
    fn without_takeover_the_shared_inflater_serves_every_connection() {
        let params = DeflateParams {
            server_no_context_takeover: true,
            ..DeflateParams::default()
        };
        let mut a = RecvCompression::new(&params, Role::Client, 1 << 20);
        let mut b = RecvCompression::new(&params, Role::Client, 1 << 20);
        // The server's parameters decide what a client receives; the client's don't.
        assert!(!a.takes_context_over());
        assert!(RecvCompression::new(&params, Role::Server, 1 << 20).takes_context_over());
        let mut scratch = InflateScratch::new(1 << 20);
        assert_eq!(scratch.inflate(&mut a, &HELLO).unwrap(), b"Hello");
        // Corrupt data fails and leaves the shared inflater clean for the next connection.
        assert_eq!(
            scratch.inflate(&mut b, &[0xff, 0xff, 0xff]),
            Err(ProtocolError::InvalidCompressedData)
        );
        assert_eq!(scratch.inflate(&mut b, &HELLO).unwrap(), b"Hello");
        assert!(!a.has_own_inflater() && !b.has_own_inflater());
    }

    #[test]
    fn the_limit_holds_while_inflating() {
        let params = DeflateParams::default();
        let config = DeflateConfig {
            enabled: true,
            ..DeflateConfig::default()
        };
        let wire = compress(&mut params.deflater(Role::Server, &config), &[b'a'; 10_000]);
        let mut side = RecvCompression::new(&params, Role::Client, 9_999);
        let mut scratch = InflateScratch::new(1 << 20);
        assert_eq!(
            scratch.inflate(&mut side, &wire),
            Err(ProtocolError::MessageTooBig)
        );
        let mut side = RecvCompression::new(&params, Role::Client, 10_000);
        assert_eq!(scratch.inflate(&mut side, &wire).unwrap().len(), 10_000);
    }
}
