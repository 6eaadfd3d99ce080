//! One WebSocket connection's protocol state machine, for either role, without I/O: frames
//! parsed, unmasked, validated and assembled into messages; the close handshake; auto-pong;
//! keepalive; and the control frames all of that obliges us to send.
//!
//! A session is split in two halves so that a received message can borrow the receive half
//! while the application sends and closes through the control half:
//! - [`Receiver`], the receive half (56 bytes on 64-bit targets): the frame decoder and message
//!   assembler, with whatever spans reads (a partial header inline, a partial frame's
//!   payload, a fragmented message).
//! - [`Session`], the control half (24 bytes): the close handshake state, keepalive
//!   bookkeeping, and what the session owes the peer.
//!
//! [`Connection`] holds both, for owners that need no such split (a test client, a load
//! generator).
//!
//! # Contract
//!
//! As in quinn-proto's `Connection`, the caller owns the socket, the clock and the buffers;
//! the session only reacts to calls, and time is an argument (microseconds on any monotonic
//! clock, the same for every call).
//!
//! 1. **Make** a [`Session`] and a [`Receiver`] from one [`SessionConfig`] once the opening
//!    handshake is done, and call [`Receiver::enable_deflate`] if permessage-deflate was
//!    agreed. One [`InflateScratch`] per thread serves all of its connections. Keep the
//!    config: the limits and timeouts are not copied into each connection, and the calls that
//!    apply them ([`Receiver::handle_bytes`], [`Receiver::enable_deflate`],
//!    [`Session::poll_timeout`], [`Session::handle_timeout`]) are given it (one config can
//!    serve every connection of a role).
//! 2. **Bytes read** from the peer: call [`Receiver::handle_bytes`] with them (mutable: the
//!    payload is unmasked in place), then again with the rest (`&mut data[step.used..]`) until
//!    all are consumed. Each call returns at most one [`Event`], borrowed from the bytes or the
//!    scratch: handle it (the [`Session`] is free to use meanwhile: send, close), then call
//!    [`Receiver::release`]. Bytes that are not consumed are never needed again: anything that
//!    spans calls is kept by the receiver. A [`ProtocolError`] means the connection failed:
//!    the session has already given `out` a close frame with the error's close code; report
//!    the error, write what `out` got, and end the connection (bytes given later are ignored).
//! 3. **[`Output`]**: during [`Receiver::handle_bytes`], [`Session::close`] and
//!    [`Session::handle_timeout`], the session hands `out` each control frame it must send,
//!    whole and encoded (masked in the client role with a key from [`Output::mask_key`]):
//!    the pong answering a ping (when [`SessionConfig::auto_pong`]), the echo of the peer's
//!    close, our close, the keepalive ping. Write them in the order given, after whatever the
//!    application sent before. No data frame may follow a close: check
//!    [`Session::can_send`] before sending one.
//! 4. **Timers**: after every call that takes a time, ask [`Session::poll_timeout`] for the
//!    next deadline, and call [`Session::handle_timeout`] once it has passed. It sends the
//!    keepalive ping through `out`, or returns a [`Timeout`]: drop the connection then.
//! 5. **Closing**: [`Session::close`] starts the handshake. The peer's answer arrives as
//!    [`Event::Close`] with [`Initiator::Us`]; a peer that closes first is answered at once
//!    and reported with [`Initiator::Peer`]. Either way the state is then
//!    [`SessionState::Closed`]: a server ends the TCP connection, a client waits for the
//!    server to. After our close, nothing is delivered but the peer's close.
//!
//! The round trip of a keepalive ping is available from [`Session::take_ping_rtt_us`] once its
//! pong has arrived (as the [`Event::Pong`] that brought it is handled, say).
//!
//! ```
//! use lanes_proto::deflate::InflateScratch;
//! use lanes_proto::session::{Connection, Event, Output, SessionConfig};
//! use lanes_proto::OpCode;
//!
//! /// What the session asks to send, in order.
//! #[derive(Default)]
//! struct Wire(Vec<u8>);
//! impl Output for Wire {
//!     fn control(&mut self, _opcode: OpCode, frame: &[u8]) { self.0.extend_from_slice(frame) }
//! }
//!
//! let mut conn = Connection::new(SessionConfig::server(), 0);
//! let mut scratch = InflateScratch::new(1 << 20);
//! let mut wire = Wire::default();
//! // RFC 6455 §5.7: a masked "Hello", then a masked ping "Hello".
//! let mut bytes = vec![0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
//!                      0x89, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
//! let mut at = 0;
//! let mut seen = Vec::new();
//! while at < bytes.len() {
//!     let step = conn.handle_bytes(&mut bytes[at..], &mut scratch, 1_000, &mut wire).unwrap();
//!     at += step.used;
//!     match step.event {
//!         Some(Event::Text(text)) => seen.push(text.to_string()),
//!         Some(Event::Ping(payload)) => seen.push(format!("ping {payload:?}")),
//!         _ => {}
//!     }
//!     conn.receiver.release();
//! }
//! assert_eq!(seen, ["Hello", "ping [72, 101, 108, 108, 111]"]);
//! // The auto-pong, unmasked (a server's frame): RFC 6455 §5.7's pong "Hello".
//! assert_eq!(wire.0, b"\x8a\x05Hello");
//! assert!(conn.receiver.is_idle());
//! ```

mod control;
mod receiver;

pub use control::{Session, SessionState, Timeout};
pub use receiver::Receiver;

use crate::assembler::DEFAULT_MAX_MESSAGE_LEN;
use crate::deflate::InflateScratch;
use crate::frame::{DEFAULT_MAX_FRAME_LEN, FrameHeader, MAX_HEADER_LEN, OpCode, Role};
use crate::mask::apply_mask;
use crate::{CloseCode, ProtocolError};

/// The limits and rules of one connection's session.
///
/// [`server`](Self::server) and [`client`](Self::client) give the defaults; change fields
/// with struct update syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// Our role: decides the masking rule of received frames (RFC 6455 §5.1) and whether the
    /// control frames we send are masked. No default.
    pub role: Role,
    /// The largest payload a single received frame may declare, in bytes; a larger one fails
    /// the connection from its header alone (1009), before any of it is buffered. Bounds the
    /// memory a peer can make us commit to one frame. Default: 16 MiB.
    pub max_frame_len: u64,
    /// The largest received message, all fragments together and after inflating, in bytes;
    /// a larger one fails the connection (1009) as soon as its declared or inflated length
    /// passes the limit. Bounds the memory of a fragmented message and of a decompression
    /// bomb. Default: 16 MiB.
    pub max_message_len: u64,
    /// Answer every ping with a pong carrying the same payload (RFC 6455 §5.5.2). The ping is
    /// delivered either way. Default: true.
    pub auto_pong: bool,
    /// Keepalive: send a ping after this many microseconds in which the peer completed no
    /// message, ping, pong or close (stray bytes do not count); `None` turns keepalive off.
    /// Finds dead peers behind NATs and load balancers. Default: 30 s.
    pub ping_interval_us: Option<u64>,
    /// After a keepalive ping, how long (microseconds) the peer has to complete a message,
    /// ping, pong or close before [`Timeout::PongMissed`]. Default: 30 s.
    pub pong_timeout_us: u64,
    /// How long (microseconds) the peer has to finish a frame or a fragmented message once
    /// its first byte arrived, before [`Timeout::MessageIncomplete`]. Bounds how long a peer
    /// that trickles bytes (a header byte at a time, or most of a large frame and then a byte
    /// now and then) can hold a connection and its partial-message buffer; keepalive is
    /// suspended meanwhile. Default: 30 s.
    pub message_timeout_us: u64,
    /// After our close frame, how long (microseconds) we wait for the peer's before
    /// [`Timeout::CloseUnanswered`]. Default: 2 s.
    pub close_timeout_us: u64,
}

impl SessionConfig {
    /// The defaults for `role`.
    pub const fn new(role: Role) -> SessionConfig {
        SessionConfig {
            role,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            max_message_len: DEFAULT_MAX_MESSAGE_LEN,
            auto_pong: true,
            ping_interval_us: Some(30_000_000),
            pong_timeout_us: 30_000_000,
            message_timeout_us: 30_000_000,
            close_timeout_us: 2_000_000,
        }
    }

    /// The defaults for a server: 16 MiB frames and messages, auto-pong, a keepalive ping
    /// after 30 s of silence, 30 s for its answer, 2 s for the answer to our close.
    pub const fn server() -> SessionConfig {
        SessionConfig::new(Role::Server)
    }

    /// The defaults for a client (as for a server, in the client role).
    pub const fn client() -> SessionConfig {
        SessionConfig::new(Role::Client)
    }
}

/// What the session's owner provides while bytes are handled or control frames are due.
pub trait Output {
    /// A control frame the session must send now (auto-pong, close echo, our close, keepalive
    /// ping), whole and encoded: masked in the client role with a key from
    /// [`mask_key`](Self::mask_key). Queue it behind what was sent before.
    fn control(&mut self, opcode: OpCode, frame: &[u8]);

    /// A fresh masking key, asked for in the client role only (RFC 6455 §5.3: unpredictable,
    /// from a strong source of entropy). The default, `[0; 4]`, is for servers.
    fn mask_key(&mut self) -> [u8; 4] {
        [0; 4]
    }

    /// A frame header was decoded (for per-opcode counters, say). Default: nothing.
    fn frame_received(&mut self, header: &FrameHeader) {
        let _ = header;
    }
}

/// Something the peer sent that the application is to see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A whole text message, valid UTF-8.
    Text(&'a str),
    /// A whole binary message.
    Binary(&'a [u8]),
    /// A ping and its payload (already answered when [`SessionConfig::auto_pong`]).
    Ping(&'a [u8]),
    /// A pong and its payload.
    Pong(&'a [u8]),
    /// The peer's close frame: the session is [`SessionState::Closed`] now.
    Close(Closed<'a>),
}

/// The peer's close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed<'a> {
    /// Its code, `None` when it had none (report [`CloseCode::NO_STATUS`], 1005).
    pub code: Option<CloseCode>,
    /// Its reason, empty when none.
    pub reason: &'a str,
    /// Who closed first.
    pub initiator: Initiator,
}

/// Who started the close handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Initiator {
    /// The peer closed first; our echo (the same code, or an empty close) was already given to
    /// the [`Output`].
    Peer,
    /// We closed first ([`Session::close`], or a protocol error); this is the peer's answer.
    Us,
}

/// What one [`Receiver::handle_bytes`] call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step<'a> {
    /// Bytes consumed from the start of the input (more than 0 unless the input was empty).
    pub used: usize,
    /// The event those bytes completed, if any.
    pub event: Option<Event<'a>>,
}

/// Both halves of a session and the [`SessionConfig`] they were made from, for owners that
/// need no split borrow: test clients, load generators. The fields are public, so the halves
/// can still be used apart (with [`config`](Self::config) passed to the calls that take it).
#[derive(Debug)]
pub struct Connection {
    /// The control half.
    pub session: Session,
    /// The receive half.
    pub receiver: Receiver,
    /// The limits and timeouts both halves are made from and applied with.
    pub config: SessionConfig,
}

impl Connection {
    /// A session and its receive half for `config`, opened at `now_us`.
    pub fn new(config: SessionConfig, now_us: u64) -> Connection {
        Connection {
            session: Session::new(config, now_us),
            receiver: Receiver::new(&config),
            config,
        }
    }

    /// [`Session::poll_timeout`] with this connection's configuration.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.session.poll_timeout(&self.config)
    }

    /// [`Session::handle_timeout`] with this connection's configuration.
    pub fn handle_timeout(&mut self, now_us: u64, out: &mut impl Output) -> Option<Timeout> {
        self.session.handle_timeout(&self.config, now_us, out)
    }

    /// [`Receiver::enable_deflate`] with this connection's configuration.
    pub fn enable_deflate(&mut self, params: &crate::deflate::DeflateParams) {
        self.receiver.enable_deflate(params, &self.config);
    }

    /// [`Receiver::handle_bytes`] with this connection's session.
    #[inline]
    pub fn handle_bytes<'a>(
        &'a mut self,
        data: &'a mut [u8],
        scratch: &'a mut InflateScratch,
        now_us: u64,
        out: &mut impl Output,
    ) -> Result<Step<'a>, ProtocolError> {
        self.receiver
            .handle_bytes(&mut self.session, &self.config, data, scratch, now_us, out)
    }
}

/// Appends one frame to `out`: `header`'s FIN, RSV bits and opcode, with `payload`, masked
/// with `mask_key` in the client role (the key is ignored in the server role; `header`'s own
/// mask and length are replaced).
///
/// ```
/// use lanes_proto::session::encode_frame;
/// use lanes_proto::frame::FrameHeader;
/// use lanes_proto::{OpCode, Role};
/// // RFC 6455 §5.7: "Hello" from a client, and from a server.
/// let mut out = Vec::new();
/// let hello = FrameHeader::new(true, OpCode::Text, 0);
/// encode_frame(&mut out, Role::Client, hello, b"Hello", [0x37, 0xfa, 0x21, 0x3d]);
/// assert_eq!(out, [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
/// out.clear();
/// encode_frame(&mut out, Role::Server, hello, b"Hello", [0x37, 0xfa, 0x21, 0x3d]);
/// assert_eq!(out, b"\x81\x05Hello");
/// ```
pub fn encode_frame(
    out: &mut Vec<u8>,
    role: Role,
    header: FrameHeader,
    payload: &[u8],
    mask_key: [u8; 4],
) {
    let header = FrameHeader {
        payload_len: payload.len() as u64,
        ..header
    };
    encode_frame_with(out, role, header, mask_key, |o| {
        o.extend_from_slice(payload)
    });
}

/// [`encode_frame`] for a payload that `fill` appends to `out` itself (so it is written in
/// place, with no copy): it must append exactly `header.payload_len` bytes. The payload is
/// then masked in place in the client role.
pub fn encode_frame_with(
    out: &mut Vec<u8>,
    role: Role,
    header: FrameHeader,
    mask_key: [u8; 4],
    fill: impl FnOnce(&mut Vec<u8>),
) {
    let header = match role {
        Role::Client => header.with_mask(mask_key),
        Role::Server => FrameHeader {
            mask: None,
            ..header
        },
    };
    let mut head = [0u8; MAX_HEADER_LEN];
    let head_len = header.encode(&mut head);
    out.extend_from_slice(&head[..head_len]);
    let start = out.len();
    fill(out);
    debug_assert_eq!((out.len() - start) as u64, header.payload_len);
    if let Some(key) = header.mask {
        apply_mask(&mut out[start..], key, 0);
    }
}

#[cfg(test)]
mod tests;
