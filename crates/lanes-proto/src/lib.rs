//! # lanes-proto
//!
//! The sans-IO core of lanes: everything RFC 6455 says about bytes, and nothing about sockets,
//! threads or clocks.
//!
//! What it does, one module per concern:
//! - [`handshake`]: the opening handshake, server side (parse, validate per RFC 6455 §4.2.1,
//!   expose path/query/headers/subprotocols/extensions, build the 101 or the error response)
//!   and client side (build the request, check the response).
//! - [`frame`]: frame header decoding with every rule of §5.2 and §5.5 enforced as soon as the
//!   bytes are there, and encoding with minimal lengths.
//! - [`mask`]: the unmasking kernel, word-at-a-time, resumable at any phase.
//! - [`utf8`]: UTF-8 validation, whole or incremental across fragments, failing fast.
//! - [`close`]: close codes and close frame payloads.
//! - [`assembler`]: the fragmentation rules of §5.4 and the message size limit.
//! - [`session`]: one connection's sans-IO state machine for either role, built on the above:
//!   bytes in, events out (zero copy where a frame lies whole in the input), the close
//!   handshake, auto-pong and keepalive, with the control frames they oblige us to send handed
//!   to the caller's [`Output`].
//! - [`deflate`]: permessage-deflate (RFC 7692): negotiation, and compressing and inflating
//!   messages, with the size limit enforced while inflating.
//! - [`ProtocolError`], [`HandshakeError`], [`ResponseError`]: one variant per rule, each knowing
//!   its close code or HTTP status.
//!
//! What it does not do: read or write sockets, read a clock (time is an argument: the
//! [`Session`] keeps deadlines, the caller's timers fire them), buffer more than what spans
//! reads, or generate random numbers (a client supplies its key nonce and masking keys).
//!
//! Limits: no input panics (the decoders are fuzzed); every size a peer controls is bounded by
//! a documented setting ([`handshake::HeadLimits`], [`frame::FrameConfig::max_frame_len`],
//! [`assembler::MessageAssembler::new`]'s maximum message size, which [`deflate::Inflater`]
//! enforces on inflated messages before it allocates past it).
//!
//! Unsafe code: one block in [`mask::apply_mask`], which calls the kernel compiled for AVX2
//! after checking at run time that the CPU has AVX2 (measured: 4 KiB unmasking goes from 0.70x
//! to about 1x memcpy); and one `unsafe fn` in the session's receiver (two commented call
//! sites) that hands out an assembled text message as `&str` without validating it a second
//! time, since the assembler's incremental validator already accepted every byte (measured in
//! `benches/proto.rs`, `session_fragmented_text`). Everything else is `deny(unsafe_code)`.

#![deny(unsafe_code)]

pub mod assembler;
pub mod close;
pub mod deflate;
mod error;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod session;
pub mod utf8;

pub use close::{CloseCode, CloseFrame};
pub use error::{HandshakeError, ProtocolError, ResponseError};
pub use frame::{FrameHeader, OpCode, Role};
pub use session::{
    Closed, Connection, Event, Initiator, Output, Receiver, Session, SessionConfig, SessionState,
    Step, Timeout,
};
