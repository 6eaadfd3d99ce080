//! permessage-deflate (RFC 7692): negotiation, and compression of whole messages.
//!
//! - [`negotiate`] picks the first acceptable offer from a client's `Sec-WebSocket-Extensions`
//!   under a server's [`DeflateConfig`] and gives the agreed [`DeflateParams`] and the value to
//!   answer with.
//! - [`ClientOffer`] is a client's offer and [`accept_answer`] checks the server's answer to
//!   it (RFC 7692 §7.1) and gives the agreed [`DeflateParams`].
//! - [`Deflater`] compresses one message at a time, [`Inflater`] decompresses one as its
//!   frames arrive, within a size limit enforced while inflating.
//!
//! Framing stays with the caller: a compressed message has RSV1 set on its first frame only
//! ([`SendAs::Compressed`]); a receiver allows RSV1 by putting
//! [`frame::RSV1`](crate::frame::RSV1) in [`FrameConfig::allowed_rsv`](crate::frame::FrameConfig)
//! (the decoder then still refuses it on continuation and control frames, RFC 7692 §6.1) and
//! asks [`MessageAssembler::is_compressed`](crate::assembler::MessageAssembler::is_compressed)
//! whether a message needs inflating.
//!
//! Receiving, per data frame of a message that `is_compressed`: pass the unmasked payload to
//! [`Inflater::handle_data`], then the bytes it appended to
//! [`MessageAssembler::handle_data`](crate::assembler::MessageAssembler::handle_data) (UTF-8 and
//! size checks on the inflated text); on the last frame, call
//! [`Inflater::handle_message_end`] and pass its bytes the same way before
//! [`MessageAssembler::handle_frame_end`](crate::assembler::MessageAssembler::handle_frame_end).
//!
//! [`RecvCompression`] (a connection's receive side) and [`InflateScratch`] (a thread's shared
//! inflater and output buffer) decide whose [`Inflater`] inflates a message; the
//! [`session::Receiver`](crate::session::Receiver) uses them once
//! [`enable_deflate`](crate::session::Receiver::enable_deflate) is called.
//!
//! Errors: invalid deflate data fails the connection with 1002
//! ([`ProtocolError::InvalidCompressedData`](crate::ProtocolError::InvalidCompressedData); RFC
//! 7692 says only "_Fail the WebSocket Connection_": Python's `websockets` sends 1002 too,
//! Node's `ws` 1007; 1007 is kept for invalid UTF-8 here), and a message that inflates past
//! the limit with 1009 ([`ProtocolError::MessageTooBig`](crate::ProtocolError::MessageTooBig)).
//!
//! The compressor is zlib-rs (pure Rust), chosen by measurement over miniz_oxide and the C
//! zlib and zlib-ng: see `src/deflate/BACKENDS.md`, which also gives the memory per state.

mod answer;
mod config;
#[cfg(feature = "deflate")]
mod deflater;
#[cfg(feature = "deflate")]
mod inflater;
mod negotiate;
mod scratch;

pub use answer::{AnswerError, ClientOffer, accept_answer};
pub use config::{DeflateConfig, MAX_WINDOW_BITS, MIN_COMPRESS_WINDOW_BITS, MIN_WINDOW_BITS};
#[cfg(feature = "deflate")]
pub use deflater::Deflater;
#[cfg(feature = "deflate")]
pub use inflater::Inflater;
pub use negotiate::{DeflateParams, Negotiated, negotiate};
pub use scratch::{InflateScratch, RecvCompression};

/// The extension's name in `Sec-WebSocket-Extensions`.
pub const EXTENSION_NAME: &str = "permessage-deflate";

/// The tail of a sync flush (an empty stored block), which a sender removes from each
/// compressed message and a receiver appends again (RFC 7692 §7.2.1, §7.2.2).
pub const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// How to send a message that went through `Deflater::compress` (feature `deflate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum SendAs {
    /// The compressed payload was appended to `out`: send it, with RSV1
    /// ([`frame::RSV1`](crate::frame::RSV1)) set on the message's first frame only.
    Compressed,
    /// Nothing was appended: send the original bytes, without RSV1.
    Uncompressed,
}
