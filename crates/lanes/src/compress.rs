//! permessage-deflate in the runtime: which compressor and decompressor each connection uses.
//!
//! The protocol crate does the compressing ([`Deflater`], [`Inflater`]); this module decides
//! whose state it is. A connection that negotiated context takeover in a direction owns that
//! direction's state (it carries from message to message). Without context takeover the state
//! belongs to the worker and is shared by all its connections: a message is compressed, or a
//! whole received message inflated, in one go, so nothing is left in the shared state between
//! messages. A connection without compression holds nothing (two empty `Option<Box<_>>`);
//! one with context takeover makes its own state only when its first message needs it.

use lanes_proto::ProtocolError;
use lanes_proto::deflate::{DeflateConfig, DeflateParams, Deflater, Inflater, SendAs};

/// Compressor state is large and opaque: debug output says only what kind it is.
macro_rules! opaque_debug {
    ($($name:ident),*) => {$(
        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name)).finish_non_exhaustive()
            }
        }
    )*};
}
opaque_debug!(
    SendCompression,
    RecvCompression,
    SharedDeflate,
    InflateScratch
);

/// The send side of a connection that negotiated compression.
pub(crate) struct SendCompression {
    /// Server context takeover: the connection keeps its own compressor.
    takeover: bool,
    /// That compressor, made when the first message is compressed (so a connection that
    /// never sends a long message never pays for one).
    own: Option<Deflater>,
    /// The window the peer allows us.
    window_bits: u8,
}

impl SendCompression {
    pub(crate) fn new(params: &DeflateParams) -> SendCompression {
        SendCompression {
            takeover: !params.server_no_context_takeover,
            own: None,
            window_bits: params.server_max_window_bits,
        }
    }

    /// Whether this connection's messages can share one compressed copy (no context takeover).
    pub(crate) fn shared_window(&self) -> Option<u8> {
        (!self.takeover).then_some(self.window_bits)
    }
}

/// The receive side of a connection that negotiated compression.
pub(crate) struct RecvCompression {
    /// Client context takeover: the connection keeps its own decompressor.
    takeover: bool,
    /// That decompressor, made for the first compressed message received.
    own: Option<Inflater>,
    window_bits: u8,
    max_message_len: u64,
}

impl RecvCompression {
    pub(crate) fn new(params: &DeflateParams, max_message_len: u64) -> RecvCompression {
        RecvCompression {
            takeover: !params.client_no_context_takeover,
            own: None,
            window_bits: params.client_max_window_bits,
            max_message_len,
        }
    }
}

/// A worker's shared compressors (one per window size in use) and compression scratch.
pub(crate) struct SharedDeflate {
    config: DeflateConfig,
    /// Index: window bits - 9 (9..=15).
    deflaters: [Option<Deflater>; 7],
    /// Where messages are compressed to before they are framed.
    pub(crate) out: Vec<u8>,
}

impl SharedDeflate {
    pub(crate) fn new(config: DeflateConfig) -> SharedDeflate {
        SharedDeflate {
            config,
            deflaters: Default::default(),
            out: Vec::new(),
        }
    }

    pub(crate) fn config(&self) -> &DeflateConfig {
        &self.config
    }

    /// Compresses `message` for a connection with `side`; the result is in `self.out` when
    /// it says [`SendAs::Compressed`].
    pub(crate) fn compress(&mut self, side: &mut SendCompression, message: &[u8]) -> SendAs {
        self.out.clear();
        shrink(&mut self.out);
        if side.takeover {
            let config = &self.config;
            let own = side
                .own
                .get_or_insert_with(|| Deflater::new(side.window_bits, false, config));
            own.compress(message, &mut self.out)
        } else {
            let deflater = shared(&mut self.deflaters, side.window_bits, &self.config);
            deflater.compress(message, &mut self.out)
        }
    }

    /// Compresses `message` with the shared compressor of `window_bits`, into `self.out`.
    pub(crate) fn compress_shared(&mut self, window_bits: u8, message: &[u8]) -> SendAs {
        self.out.clear();
        shrink(&mut self.out);
        shared(&mut self.deflaters, window_bits, &self.config).compress(message, &mut self.out)
    }
}

/// The shared compressor for `window_bits`, made on first use.
fn shared<'a>(
    deflaters: &'a mut [Option<Deflater>; 7],
    window_bits: u8,
    config: &DeflateConfig,
) -> &'a mut Deflater {
    let bits = window_bits.clamp(9, 15);
    deflaters[usize::from(bits - 9)].get_or_insert_with(|| Deflater::new(bits, true, config))
}

/// A worker's shared decompressor and the buffer messages are inflated into.
pub(crate) struct InflateScratch {
    max_message_len: u64,
    shared: Option<Inflater>,
    /// The inflated message, handed to the handler borrowed.
    pub(crate) out: Vec<u8>,
}

impl InflateScratch {
    pub(crate) fn new(max_message_len: u64) -> InflateScratch {
        InflateScratch {
            max_message_len,
            shared: None,
            out: Vec::new(),
        }
    }

    /// Inflates one whole compressed message into `self.out`.
    pub(crate) fn inflate(
        &mut self,
        side: &mut RecvCompression,
        compressed: &[u8],
    ) -> Result<&[u8], ProtocolError> {
        self.out.clear();
        shrink(&mut self.out);
        let max = self.max_message_len;
        let inflater = if side.takeover {
            let (bits, own_max) = (side.window_bits, side.max_message_len);
            side.own
                .get_or_insert_with(|| Inflater::new(bits, false, own_max))
        } else {
            self.shared
                .get_or_insert_with(|| Inflater::new(15, true, max))
        };
        let result = inflater
            .handle_data(compressed, &mut self.out)
            .and_then(|_| inflater.handle_message_end(&mut self.out));
        if result.is_err() {
            // The connection fails; a shared decompressor must start clean for the next one.
            inflater.reset();
        }
        result.map(|_| self.out.as_slice())
    }
}

/// Scratch buffers that grew for one large message do not keep its memory.
fn shrink(buf: &mut Vec<u8>) {
    const KEEP: usize = 256 * 1024;
    if buf.capacity() > KEEP {
        *buf = Vec::new();
    }
}
