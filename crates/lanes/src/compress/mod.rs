//! permessage-deflate on the send side: which compressor each connection uses. (The receive
//! side is the session's: [`lanes_proto::deflate::InflateScratch`].)
//!
//! The protocol crate does the compressing ([`Deflater`]); this module decides whose state it
//! is. A connection that negotiated server context takeover owns its compressor (its window
//! carries from message to message). Without context takeover the compressor belongs to the
//! worker and is shared by all its connections: a message is compressed in one go, so nothing
//! is left in the shared state between messages. A connection without compression holds
//! nothing (an empty `Option<Box<_>>`); one with context takeover makes its own compressor only
//! when its first message needs it.

//!
//! Without the `deflate` feature nothing is negotiated and nothing compresses: the types here
//! are empty stand-ins ([`SendCompression`] has no values), so the send path keeps its shape.

#[cfg(not(feature = "deflate"))]
mod disabled;
#[cfg(feature = "deflate")]
mod enabled;

#[cfg(not(feature = "deflate"))]
pub(crate) use disabled::{SendCompression, SharedDeflate};
#[cfg(feature = "deflate")]
pub(crate) use enabled::{SendCompression, SharedDeflate};
