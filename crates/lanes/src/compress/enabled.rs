//! The compressors (the `deflate` feature).

use lanes_proto::deflate::{DeflateConfig, DeflateParams, Deflater, SendAs};

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
opaque_debug!(SendCompression, SharedDeflate);

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

    /// The send side of an outbound connection: the client's parameters.
    pub(crate) fn for_client(params: &DeflateParams) -> SendCompression {
        SendCompression {
            takeover: !params.client_no_context_takeover,
            own: None,
            window_bits: params.client_max_window_bits,
        }
    }

    /// Whether this connection's messages can share one compressed copy (no context takeover).
    pub(crate) fn shared_window(&self) -> Option<u8> {
        (!self.takeover).then_some(self.window_bits)
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

/// Scratch buffers that grew for one large message do not keep its memory.
fn shrink(buf: &mut Vec<u8>) {
    const KEEP: usize = 256 * 1024;
    if buf.capacity() > KEEP {
        *buf = Vec::new();
    }
}
