//! The message assembler: the fragmentation rules of RFC 6455 §5.4 as a state machine.
//!
//! The runtime hands it each frame header as it is decoded, the (unmasked) payload of data
//! frames as it arrives, and the end of each frame. The assembler says what the frame is, keeps
//! the running size of the open message against the maximum, validates text incrementally (so
//! invalid UTF-8 fails fast, even mid-frame), and says when a message is complete. It holds no
//! payload: where the bytes live is the runtime's business.
//!
//! ```
//! use lanes_proto::assembler::{FrameKind, MessageAssembler, MessageKind};
//! use lanes_proto::frame::{FrameHeader, OpCode};
//! use lanes_proto::ProtocolError;
//!
//! let mut assembler = MessageAssembler::new(1 << 20);
//! // "Hel" then "lo" (RFC 6455 §5.7), with a ping in between.
//! let kind = assembler.handle_header(&FrameHeader::new(false, OpCode::Text, 3)).unwrap();
//! assert_eq!(kind, FrameKind::Data { kind: MessageKind::Text, first: true, last: false });
//! assembler.handle_data(b"Hel").unwrap();
//! assert_eq!(assembler.handle_frame_end(), Ok(None));
//! let ping = assembler.handle_header(&FrameHeader::new(true, OpCode::Ping, 0)).unwrap();
//! assert_eq!(ping, FrameKind::Control(OpCode::Ping));
//! assert_eq!(assembler.handle_frame_end(), Ok(None));
//! assembler.handle_header(&FrameHeader::new(true, OpCode::Continuation, 2)).unwrap();
//! assembler.handle_data(b"lo").unwrap();
//! assert_eq!(assembler.handle_frame_end(), Ok(Some(MessageKind::Text)));
//!
//! // A continuation with no open message is an error.
//! let stray = FrameHeader::new(true, OpCode::Continuation, 1);
//! assert_eq!(assembler.handle_header(&stray), Err(ProtocolError::UnexpectedContinuation));
//! ```

use crate::error::ProtocolError;
use crate::frame::{FrameHeader, OpCode, RSV1};
use crate::utf8::Utf8Validator;

/// The default [`MessageAssembler`] maximum message size: 16 MiB.
pub const DEFAULT_MAX_MESSAGE_LEN: u64 = 16 << 20;

/// The type of a data message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// UTF-8 text (opcode 0x1).
    Text,
    /// Arbitrary bytes (opcode 0x2).
    Binary,
}

/// What a frame is, as the assembler sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A control frame (close, ping or pong), which may sit between fragments of a message.
    Control(OpCode),
    /// A frame carrying (part of) a data message.
    Data {
        /// The type of the message this frame belongs to.
        kind: MessageKind,
        /// Whether this frame starts the message (opcode text/binary, not continuation).
        first: bool,
        /// Whether this frame ends the message (FIN set).
        last: bool,
    },
}

/// Tracks fragmentation, message size and text validity for one connection's receive side.
#[derive(Debug, Clone)]
pub struct MessageAssembler {
    max_message_len: u64,
    assembly: Assembly,
}

impl MessageAssembler {
    /// An assembler that refuses messages longer than `max_message_len` bytes.
    pub const fn new(max_message_len: u64) -> MessageAssembler {
        MessageAssembler {
            max_message_len,
            assembly: Assembly::new(),
        }
    }

    /// The largest message this assembler accepts, in bytes.
    pub const fn max_message_len(&self) -> u64 {
        self.max_message_len
    }

    /// Whether a fragmented data message has started and not yet ended.
    pub const fn is_message_open(&self) -> bool {
        self.assembly.is_message_open()
    }

    /// Whether the data message now being received was sent compressed: RSV1 set on its first
    /// frame, which means permessage-deflate (RFC 7692 §6) when that was negotiated (the frame
    /// decoder refuses RSV1 otherwise, and on continuation and control frames always). The
    /// answer holds from the message's first header until the next message's, so it may be
    /// read after [`handle_frame_end`](Self::handle_frame_end) returned the message.
    ///
    /// The payload of a compressed message goes through a
    /// [`deflate::Inflater`](crate::deflate::Inflater) before [`handle_data`](Self::handle_data)
    /// sees it.
    pub const fn is_compressed(&self) -> bool {
        self.assembly.is_compressed()
    }

    /// Takes the header of the next frame. Errors: a continuation with no open message, a new
    /// text or binary frame while a message is open, and a message that would grow past the
    /// maximum (checked from the declared length, before any payload is buffered).
    pub fn handle_header(&mut self, header: &FrameHeader) -> Result<FrameKind, ProtocolError> {
        self.assembly.handle_header(header, self.max_message_len)
    }

    /// Takes the next piece of a data frame's payload (already unmasked, and inflated where an
    /// extension compressed it). Text is validated as it comes: an impossible byte fails now.
    /// The bytes passed here count against the maximum message size too, so inflated data
    /// that outgrows it fails as soon as it does. Payload of control frames is not passed here.
    pub fn handle_data(&mut self, payload: &[u8]) -> Result<(), ProtocolError> {
        self.assembly.handle_data(payload, self.max_message_len)
    }

    /// Marks the end of the current frame. Returns the message's kind when this frame completed
    /// a data message; fails when a text message ends in the middle of a character.
    pub fn handle_frame_end(&mut self) -> Result<Option<MessageKind>, ProtocolError> {
        self.assembly.handle_frame_end()
    }

    /// Forgets any open message (after an error, or to reuse the assembler).
    pub fn reset(&mut self) {
        self.assembly.reset();
    }
}

/// [`MessageAssembler`]'s state without its limit, which each call that checks it is given:
/// what a session's receiver keeps per connection (the limit is the same for all of a
/// worker's connections, so it is not copied into each). 24 bytes: the flags share a byte.
#[derive(Debug, Clone)]
pub(crate) struct Assembly {
    /// The open data message's payload bytes declared by its frames so far, the current one
    /// included (0 when none is open).
    declared_len: u64,
    /// The open message's payload bytes passed to `handle_data` so far (after inflation,
    /// where an extension compresses: this is what bounds a decompression bomb).
    received_len: u64,
    /// The open data message's kind: `None` between messages.
    open: Option<MessageKind>,
    /// [`IN_DATA_FRAME`], [`FRAME_IS_LAST`], [`COMPRESSED`].
    flags: u8,
    utf8: Utf8Validator,
}

/// The frame now being received is a data frame.
const IN_DATA_FRAME: u8 = 1;
/// The frame now being received has FIN set.
const FRAME_IS_LAST: u8 = 2;
/// The current (or last completed) data message had RSV1 on its first frame.
const COMPRESSED: u8 = 4;

impl Assembly {
    pub(crate) const fn new() -> Assembly {
        Assembly {
            declared_len: 0,
            received_len: 0,
            open: None,
            flags: 0,
            utf8: Utf8Validator::new(),
        }
    }

    const fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// See [`MessageAssembler::is_message_open`].
    pub(crate) const fn is_message_open(&self) -> bool {
        self.open.is_some()
    }

    /// See [`MessageAssembler::is_compressed`].
    pub(crate) const fn is_compressed(&self) -> bool {
        self.has(COMPRESSED)
    }

    /// See [`MessageAssembler::handle_header`]; `max_message_len` is the limit.
    pub(crate) fn handle_header(
        &mut self,
        header: &FrameHeader,
        max_message_len: u64,
    ) -> Result<FrameKind, ProtocolError> {
        let (kind, first) = match header.opcode {
            OpCode::Close | OpCode::Ping | OpCode::Pong => {
                self.flags &= !IN_DATA_FRAME;
                return Ok(FrameKind::Control(header.opcode));
            }
            OpCode::Continuation => match self.open {
                Some(kind) => (kind, false),
                None => return Err(ProtocolError::UnexpectedContinuation),
            },
            OpCode::Text | OpCode::Binary if self.open.is_some() => {
                return Err(ProtocolError::ExpectedContinuation);
            }
            OpCode::Text => (MessageKind::Text, true),
            OpCode::Binary => (MessageKind::Binary, true),
        };
        let compressed = if first {
            self.declared_len = 0;
            self.received_len = 0;
            header.rsv & RSV1 != 0
        } else {
            self.has(COMPRESSED)
        };
        let declared_len = self.declared_len.saturating_add(header.payload_len);
        if declared_len > max_message_len {
            return Err(ProtocolError::MessageTooBig);
        }
        self.declared_len = declared_len;
        self.open = Some(kind);
        // One store for the three flags.
        self.flags = IN_DATA_FRAME
            | if header.fin { FRAME_IS_LAST } else { 0 }
            | if compressed { COMPRESSED } else { 0 };
        Ok(FrameKind::Data {
            kind,
            first,
            last: header.fin,
        })
    }

    /// See [`MessageAssembler::handle_data`]; `max_message_len` is the limit.
    pub(crate) fn handle_data(
        &mut self,
        payload: &[u8],
        max_message_len: u64,
    ) -> Result<(), ProtocolError> {
        if !self.has(IN_DATA_FRAME) {
            return Ok(());
        }
        let Some(kind) = self.open else {
            return Ok(());
        };
        self.received_len = self.received_len.saturating_add(payload.len() as u64);
        if self.received_len > max_message_len {
            return Err(ProtocolError::MessageTooBig);
        }
        match kind {
            MessageKind::Text => self.utf8.feed(payload),
            MessageKind::Binary => Ok(()),
        }
    }

    /// See [`MessageAssembler::handle_frame_end`].
    pub(crate) fn handle_frame_end(&mut self) -> Result<Option<MessageKind>, ProtocolError> {
        if !self.has(IN_DATA_FRAME) {
            return Ok(None);
        }
        self.flags &= !IN_DATA_FRAME;
        if !self.has(FRAME_IS_LAST) {
            return Ok(None);
        }
        let finished = self.open.take();
        if finished == Some(MessageKind::Text) {
            self.utf8.finish()?;
        }
        Ok(finished)
    }

    /// See [`MessageAssembler::reset`].
    pub(crate) fn reset(&mut self) {
        *self = Assembly::new();
    }
}

impl Default for MessageAssembler {
    fn default() -> MessageAssembler {
        MessageAssembler::new(DEFAULT_MAX_MESSAGE_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(fin: bool, opcode: OpCode, len: u64) -> FrameHeader {
        FrameHeader::new(fin, opcode, len)
    }

    #[test]
    fn single_frame_messages() {
        let mut a = MessageAssembler::default();
        assert_eq!(
            a.handle_header(&header(true, OpCode::Binary, 4)),
            Ok(FrameKind::Data {
                kind: MessageKind::Binary,
                first: true,
                last: true
            })
        );
        a.handle_data(&[0xff, 0xfe, 0, 1]).unwrap(); // binary: not validated
        assert_eq!(a.handle_frame_end(), Ok(Some(MessageKind::Binary)));
        assert!(!a.is_message_open());
    }

    #[test]
    fn compressed_flag_comes_from_the_first_frame() {
        let mut a = MessageAssembler::default();
        a.handle_header(&header(false, OpCode::Text, 3).with_rsv(RSV1))
            .unwrap();
        assert!(a.is_compressed());
        a.handle_frame_end().unwrap();
        // A ping in between does not change it; neither does the continuation.
        a.handle_header(&header(true, OpCode::Ping, 0)).unwrap();
        a.handle_frame_end().unwrap();
        assert!(a.is_compressed());
        a.handle_header(&header(true, OpCode::Continuation, 2))
            .unwrap();
        assert_eq!(a.handle_frame_end(), Ok(Some(MessageKind::Text)));
        assert!(
            a.is_compressed(),
            "still readable once the message is complete"
        );
        a.handle_header(&header(true, OpCode::Binary, 1)).unwrap();
        assert!(!a.is_compressed());
        a.handle_header(&header(true, OpCode::Binary, 1).with_rsv(RSV1))
            .unwrap_err();
        a.reset();
        assert!(!a.is_compressed());
    }

    #[test]
    fn new_data_frame_inside_a_message_is_an_error() {
        let mut a = MessageAssembler::default();
        a.handle_header(&header(false, OpCode::Text, 1)).unwrap();
        a.handle_data(b"a").unwrap();
        a.handle_frame_end().unwrap();
        assert_eq!(
            a.handle_header(&header(true, OpCode::Binary, 1)),
            Err(ProtocolError::ExpectedContinuation)
        );
        assert_eq!(
            a.handle_header(&header(true, OpCode::Text, 1)),
            Err(ProtocolError::ExpectedContinuation)
        );
    }

    #[test]
    fn control_frames_between_fragments_keep_the_message() {
        let mut a = MessageAssembler::default();
        a.handle_header(&header(false, OpCode::Text, 2)).unwrap();
        a.handle_data(&"é".as_bytes()[..1]).unwrap(); // half a character
        assert_eq!(a.handle_frame_end(), Ok(None));
        for op in [OpCode::Ping, OpCode::Pong] {
            assert_eq!(
                a.handle_header(&header(true, op, 0)),
                Ok(FrameKind::Control(op))
            );
            a.handle_data(b"\xff").unwrap(); // control payload is not text: ignored
            assert_eq!(a.handle_frame_end(), Ok(None));
        }
        a.handle_header(&header(true, OpCode::Continuation, 1))
            .unwrap();
        a.handle_data(&"é".as_bytes()[1..]).unwrap();
        assert_eq!(a.handle_frame_end(), Ok(Some(MessageKind::Text)));
    }

    #[test]
    fn text_fails_fast_and_at_the_end() {
        let mut a = MessageAssembler::default();
        a.handle_header(&header(false, OpCode::Text, 3)).unwrap();
        assert_eq!(a.handle_data(b"a\xce\x41"), Err(ProtocolError::InvalidUtf8));

        let mut a = MessageAssembler::default();
        a.handle_header(&header(true, OpCode::Text, 2)).unwrap();
        a.handle_data(b"a\xce").unwrap();
        assert_eq!(a.handle_frame_end(), Err(ProtocolError::InvalidUtf8));
    }

    #[test]
    fn message_size_counts_every_fragment() {
        let mut a = MessageAssembler::new(10);
        a.handle_header(&header(false, OpCode::Binary, 6)).unwrap();
        a.handle_frame_end().unwrap();
        a.handle_header(&header(false, OpCode::Continuation, 4))
            .unwrap();
        a.handle_frame_end().unwrap();
        assert_eq!(
            a.handle_header(&header(true, OpCode::Continuation, 1)),
            Err(ProtocolError::MessageTooBig)
        );
        let mut a = MessageAssembler::new(10);
        assert_eq!(
            a.handle_header(&header(true, OpCode::Text, 11)),
            Err(ProtocolError::MessageTooBig)
        );
        // Bytes passed in (inflated data, say) count as well as declared lengths.
        let mut a = MessageAssembler::new(10);
        a.handle_header(&header(false, OpCode::Binary, 4)).unwrap();
        a.handle_data(&[0; 8]).unwrap();
        assert_eq!(a.handle_data(&[0; 3]), Err(ProtocolError::MessageTooBig));
        // Declared lengths near u64::MAX do not overflow.
        let mut a = MessageAssembler::new(u64::MAX - 1);
        a.handle_header(&header(false, OpCode::Binary, u64::MAX - 2))
            .unwrap();
        a.handle_frame_end().unwrap();
        assert_eq!(
            a.handle_header(&header(true, OpCode::Continuation, u64::MAX >> 1)),
            Err(ProtocolError::MessageTooBig)
        );
    }
}
