//! Without the `deflate` feature: no connection compresses.

use lanes_proto::deflate::{DeflateConfig, SendAs};

/// A connection's compression: without the feature there is none, so this has no values and
/// every `Option<Box<SendCompression>>` is `None`.
#[derive(Debug)]
pub(crate) enum SendCompression {}

impl SendCompression {
    pub(crate) fn shared_window(&self) -> Option<u8> {
        match *self {}
    }
}

/// The worker's shared compressor state: empty.
#[derive(Debug)]
pub(crate) struct SharedDeflate {
    config: DeflateConfig,
    /// Where a compressed message would be: always empty.
    pub(crate) out: Vec<u8>,
}

impl SharedDeflate {
    pub(crate) fn new(config: DeflateConfig) -> SharedDeflate {
        SharedDeflate {
            config,
            out: Vec::new(),
        }
    }

    pub(crate) fn config(&self) -> &DeflateConfig {
        &self.config
    }

    pub(crate) fn compress(&mut self, side: &mut SendCompression, _message: &[u8]) -> SendAs {
        match *side {}
    }

    /// Nothing can be compressed: send as it is.
    pub(crate) fn compress_shared(&mut self, _window_bits: u8, _message: &[u8]) -> SendAs {
        SendAs::Uncompressed
    }
}
