//! The errors of the protocol: one variant per rule a peer can break.
//!
//! A [`ProtocolError`] ends a WebSocket connection; [`ProtocolError::close_code`] says which close
//! code to send. A [`HandshakeError`] refuses an opening handshake; [`HandshakeError::status`]
//! says which HTTP status to answer with. A [`ResponseError`] is the client's view of a server
//! response it cannot accept.

use core::fmt;

/// A rule of RFC 6455 that a frame or message broke.
///
/// Each variant knows the close code the connection must be closed with
/// ([`close_code`](Self::close_code)); its `Display` text says what was wrong and is short enough
/// to use as the close reason (at most 123 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The opcode is one of the reserved values 0x3-0x7 or 0xB-0xF (RFC 6455 §5.2).
    ReservedOpcode(u8),
    /// An RSV bit is set that no negotiated extension claims (RFC 6455 §5.2). The value holds the
    /// offending bits in the frame's first byte (`0x40` RSV1, `0x20` RSV2, `0x10` RSV3).
    ReservedBits(u8),
    /// A control frame has FIN = 0 (RFC 6455 §5.5: control frames must not be fragmented).
    FragmentedControlFrame,
    /// A control frame's payload is longer than 125 bytes (RFC 6455 §5.5).
    ControlFrameTooLong,
    /// A 64-bit payload length has its most significant bit set (RFC 6455 §5.2).
    LengthTopBitSet,
    /// A client sent a frame without a mask (RFC 6455 §5.1: a server must close).
    UnmaskedFrame,
    /// A server sent a masked frame (RFC 6455 §5.1: a client must close).
    MaskedFrame,
    /// A frame's payload is longer than the configured maximum frame size.
    FrameTooBig,
    /// A message (all its fragments together) is longer than the configured maximum.
    MessageTooBig,
    /// A continuation frame arrived while no fragmented message was open (RFC 6455 §5.4).
    UnexpectedContinuation,
    /// A new text or binary frame arrived while a fragmented message was still open
    /// (RFC 6455 §5.4).
    ExpectedContinuation,
    /// A text message is not valid UTF-8 (RFC 6455 §8.1).
    InvalidUtf8,
    /// A close frame has a payload of exactly one byte (RFC 6455 §5.5.1).
    CloseFrameOneByte,
    /// A close frame carries a code that may not appear on the wire (RFC 6455 §7.4).
    InvalidCloseCode(u16),
    /// A close frame's reason is not valid UTF-8 (RFC 6455 §5.5.1).
    InvalidCloseReason,
    /// A message sent compressed (permessage-deflate, RFC 7692 §7.2.2) is not valid deflate
    /// data, or refers back further than the window. RFC 7692 says to fail the connection and
    /// names no code; this is 1002, as Python's `websockets` does (Node's `ws` sends 1007).
    InvalidCompressedData,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            ProtocolError::ReservedBits(bits) => {
                write!(f, "RSV bits {bits:#04x} set without a negotiated extension")
            }
            ProtocolError::FragmentedControlFrame => f.write_str("fragmented control frame"),
            ProtocolError::ControlFrameTooLong => {
                f.write_str("control frame payload longer than 125 bytes")
            }
            ProtocolError::LengthTopBitSet => {
                f.write_str("64-bit payload length with the most significant bit set")
            }
            ProtocolError::UnmaskedFrame => f.write_str("client frame is not masked"),
            ProtocolError::MaskedFrame => f.write_str("server frame is masked"),
            ProtocolError::FrameTooBig => f.write_str("frame larger than the maximum frame size"),
            ProtocolError::MessageTooBig => {
                f.write_str("message larger than the maximum message size")
            }
            ProtocolError::UnexpectedContinuation => {
                f.write_str("continuation frame without an open message")
            }
            ProtocolError::ExpectedContinuation => {
                f.write_str("new data frame while a fragmented message is open")
            }
            ProtocolError::InvalidUtf8 => f.write_str("text message is not valid UTF-8"),
            ProtocolError::CloseFrameOneByte => f.write_str("close frame payload of one byte"),
            ProtocolError::InvalidCloseCode(code) => write!(f, "invalid close code {code}"),
            ProtocolError::InvalidCloseReason => f.write_str("close reason is not valid UTF-8"),
            ProtocolError::InvalidCompressedData => {
                f.write_str("compressed message is not valid deflate data")
            }
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Why an opening handshake request was refused (server side).
///
/// Each variant knows the HTTP status to answer with ([`status`](Self::status)) and a short
/// reason for the response body ([`reason`](Self::reason));
/// [`write_response`](Self::write_response) writes the whole response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The bytes are not an HTTP/1.x request head (httparse refused them).
    MalformedHead,
    /// The request head is longer than the configured maximum (before its end was seen).
    HeadTooLarge,
    /// The request has more header fields than the configured maximum.
    TooManyHeaders,
    /// The method is not GET (RFC 6455 §4.1).
    MethodNotGet,
    /// The request is HTTP/1.0; RFC 6455 §4.1 requires HTTP/1.1 or later.
    HttpVersion,
    /// There is no `Host` header field (RFC 6455 §4.1).
    MissingHost,
    /// There is more than one `Host` header field (RFC 9112 §3.2).
    DuplicateHost,
    /// The request announces a body (`Content-Length` other than 0, or `Transfer-Encoding`).
    /// An upgrade request has none; accepting one would read its bytes as WebSocket frames.
    UnexpectedBody,
    /// `Upgrade` is absent or does not name `websocket`.
    NotWebSocketUpgrade,
    /// `Connection` does not contain the token `upgrade`.
    ConnectionNotUpgrade,
    /// `Sec-WebSocket-Key` is absent.
    MissingKey,
    /// `Sec-WebSocket-Key` appears more than once, or does not base64-decode to 16 bytes.
    InvalidKey,
    /// `Sec-WebSocket-Version` is absent, or is anything but one field with the value 13.
    UnsupportedVersion,
    /// `Sec-WebSocket-Extensions` does not follow the grammar of RFC 6455 §9.1.
    MalformedExtensions,
    /// `Sec-WebSocket-Protocol` holds something that is not a comma-separated list of tokens.
    MalformedSubprotocols,
}

impl HandshakeError {
    /// The HTTP status code to answer with.
    ///
    /// 405 for a method other than GET, 426 for a missing or unsupported `Sec-WebSocket-Version`,
    /// 431 for a head over the size or header-count limit, 400 for everything else.
    ///
    /// ```
    /// use lanes_proto::HandshakeError;
    /// assert_eq!(HandshakeError::UnsupportedVersion.status(), 426);
    /// assert_eq!(HandshakeError::MethodNotGet.status(), 405);
    /// assert_eq!(HandshakeError::InvalidKey.status(), 400);
    /// ```
    pub const fn status(&self) -> u16 {
        match self {
            HandshakeError::MethodNotGet => 405,
            HandshakeError::UnsupportedVersion => 426,
            HandshakeError::HeadTooLarge | HandshakeError::TooManyHeaders => 431,
            _ => 400,
        }
    }

    /// A short reason, in English, for the response body and for logs.
    pub const fn reason(&self) -> &'static str {
        match self {
            HandshakeError::MalformedHead => "malformed HTTP request head",
            HandshakeError::HeadTooLarge => "request head too large",
            HandshakeError::TooManyHeaders => "too many header fields",
            HandshakeError::MethodNotGet => "method must be GET",
            HandshakeError::HttpVersion => "HTTP/1.1 or later required",
            HandshakeError::MissingHost => "missing Host header",
            HandshakeError::DuplicateHost => "more than one Host header",
            HandshakeError::UnexpectedBody => "upgrade request must not have a body",
            HandshakeError::NotWebSocketUpgrade => "Upgrade header must contain websocket",
            HandshakeError::ConnectionNotUpgrade => "Connection header must contain upgrade",
            HandshakeError::MissingKey => "missing Sec-WebSocket-Key",
            HandshakeError::InvalidKey => "Sec-WebSocket-Key must be base64 of 16 bytes",
            HandshakeError::UnsupportedVersion => "Sec-WebSocket-Version must be 13",
            HandshakeError::MalformedExtensions => "malformed Sec-WebSocket-Extensions",
            HandshakeError::MalformedSubprotocols => "malformed Sec-WebSocket-Protocol",
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason(), self.status())
    }
}

impl std::error::Error for HandshakeError {}

/// Why a client refuses a server's handshake response, or cannot build its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseError {
    /// The bytes are not an HTTP/1.1 response head.
    MalformedHead,
    /// The response head is longer than the configured maximum.
    HeadTooLarge,
    /// The response has more header fields than the configured maximum.
    TooManyHeaders,
    /// The status is not 101 Switching Protocols; the value is the status received.
    Status(u16),
    /// `Upgrade` does not name `websocket`.
    NotWebSocketUpgrade,
    /// `Connection` does not contain `upgrade`.
    ConnectionNotUpgrade,
    /// `Sec-WebSocket-Accept` is absent or does not match the key sent.
    AcceptMismatch,
    /// The server chose a subprotocol the client did not offer, or more than one.
    UnrequestedSubprotocol,
    /// The server accepted an extension the client did not offer.
    UnrequestedExtension,
    /// The server accepted the same extension more than once.
    DuplicateExtension,
    /// `Sec-WebSocket-Extensions` in the response does not follow RFC 6455 §9.1.
    MalformedExtensions,
    /// A value given to build the request (host, path, subprotocol, header) holds bytes that
    /// cannot appear there, such as CR or LF.
    InvalidRequestValue,
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseError::MalformedHead => f.write_str("malformed HTTP response head"),
            ResponseError::HeadTooLarge => f.write_str("response head too large"),
            ResponseError::TooManyHeaders => f.write_str("too many header fields in response"),
            ResponseError::Status(status) => write!(f, "expected status 101, got {status}"),
            ResponseError::NotWebSocketUpgrade => {
                f.write_str("response Upgrade header does not name websocket")
            }
            ResponseError::ConnectionNotUpgrade => {
                f.write_str("response Connection header does not contain upgrade")
            }
            ResponseError::AcceptMismatch => {
                f.write_str("Sec-WebSocket-Accept missing or does not match the key")
            }
            ResponseError::UnrequestedSubprotocol => {
                f.write_str("server chose a subprotocol that was not offered")
            }
            ResponseError::UnrequestedExtension => {
                f.write_str("server accepted an extension that was not offered")
            }
            ResponseError::DuplicateExtension => {
                f.write_str("server accepted the same extension twice")
            }
            ResponseError::MalformedExtensions => {
                f.write_str("malformed Sec-WebSocket-Extensions in response")
            }
            ResponseError::InvalidRequestValue => {
                f.write_str("request value contains bytes not allowed in an HTTP head")
            }
        }
    }
}

impl std::error::Error for ResponseError {}
