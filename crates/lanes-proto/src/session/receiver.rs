//! The receive half of a session: frames parsed, unmasked in place, validated and assembled
//! where the bytes were read.
//!
//! A frame that lies whole in the caller's buffer is unmasked in place and its message handed
//! out borrowed from that buffer. Only what spans calls is kept: up to 14 header bytes inline,
//! the payload of a frame still arriving, a fragmented message being assembled, and the payload
//! of a control frame split across reads. Payload is unmasked and validated as it arrives, so
//! invalid UTF-8 fails at once, even in the middle of a frame.

use super::{Closed, Event, Initiator, Output, Session, SessionConfig, Step};
use crate::assembler::{Assembly, FrameKind, MessageKind};
use crate::deflate::{DeflateParams, InflateScratch, RecvCompression};
use crate::frame::{
    FrameConfig, FrameHeader, HeaderDecode, MAX_HEADER_LEN, RSV1, Role, decode_header,
};
use crate::mask::apply_mask;
use crate::{CloseFrame, OpCode, ProtocolError, utf8};

/// A frame whose payload spans calls.
#[derive(Debug, Clone, Copy)]
struct PartialFrame {
    header: FrameHeader,
    kind: FrameKind,
    received: u64,
}

/// What one step of the frame machine gives: bytes used, and the event completed if any
/// (before the session's close rules).
type Advance<'a> = Result<(usize, Option<Event<'a>>), ProtocolError>;

/// `bits`: answer pings with a pong ([`SessionConfig::auto_pong`]).
const AUTO_PONG: u8 = 0x01;

/// What a receiver keeps between calls while something spans them: a partial header, a frame
/// whose payload is still arriving, a fragmented message, a split control frame. Boxed and
/// made only when something first spans calls, and freed by [`Receiver::release`] once nothing
/// is left, so that an idle connection's receiver is a few words.
#[derive(Debug, Default)]
pub(super) struct Carry {
    header: [u8; MAX_HEADER_LEN],
    pub(super) header_len: u8,
    partial: Option<PartialFrame>,
    /// The fragmented message being assembled (compressed bytes for a compressed message), or
    /// the payload of a single-frame message that spans calls.
    message: Vec<u8>,
    /// The payload of a control frame that spans calls (at most 125 bytes).
    control: Vec<u8>,
}

impl Carry {
    /// Whether it holds nothing, not even a buffer's capacity.
    fn is_empty(&self) -> bool {
        self.header_len == 0
            && self.partial.is_none()
            && self.message.capacity() == 0
            && self.control.capacity() == 0
    }
}

/// The receive half of a connection's session: frames parsed, unmasked in place, validated and
/// assembled into messages, within the size limits of the [`SessionConfig`] each call that
/// applies them is given (the receiver keeps only its role, the RSV bits an extension claims
/// and the auto-pong rule).
///
/// Holds no heap memory between reads unless a frame or a fragmented message spans them (then
/// one `Box` with what spans them, freed by [`release`](Self::release) once it is delivered;
/// and a `Box` for permessage-deflate once [`enable_deflate`](Self::enable_deflate) is called).
/// See the [module documentation](super) for the calling contract.
#[derive(Debug)]
pub struct Receiver {
    role: Role,
    /// RSV bits a negotiated extension claims ([`FrameConfig::allowed_rsv`]).
    allowed_rsv: u8,
    assembler: Assembly,
    /// [`AUTO_PONG`].
    bits: u8,
    /// What spans calls, when something does.
    pub(super) carry: Option<Box<Carry>>,
    /// permessage-deflate, when negotiated.
    compression: Option<Box<RecvCompression>>,
}

impl Receiver {
    /// A receive half with `config`'s role and auto-pong rule (its limits are given to
    /// [`handle_bytes`](Self::handle_bytes)). Allocates nothing.
    pub fn new(config: &SessionConfig) -> Receiver {
        Receiver {
            role: config.role,
            allowed_rsv: 0,
            assembler: Assembly::new(),
            bits: if config.auto_pong { AUTO_PONG } else { 0 },
            carry: None,
            compression: None,
        }
    }

    /// Accepts compressed messages (RSV1 on a message's first frame) from now on, inflating
    /// them under the negotiated `params` as the role requires (a server with the `client_*`
    /// parameters, a client with the `server_*` ones). A connection whose peer takes context
    /// over makes its own inflater on its first compressed message; one without uses the
    /// shared inflater of the [`InflateScratch`] given to
    /// [`handle_bytes`](Self::handle_bytes). Inflated messages are bounded by `config`'s
    /// `max_message_len` (the same config `handle_bytes` is given), enforced while
    /// inflating.
    ///
    /// Without the `deflate` feature this does nothing: compressed messages stay refused
    /// (1002, RSV1 not negotiated).
    pub fn enable_deflate(&mut self, params: &DeflateParams, config: &SessionConfig) {
        if cfg!(not(feature = "deflate")) {
            return;
        }
        self.allowed_rsv |= RSV1;
        let max = config.max_message_len;
        self.compression = Some(Box::new(RecvCompression::new(params, self.role, max)));
    }

    /// Whether nothing is held between reads: no partial header, frame or message, and no
    /// buffer (after [`release`](Self::release)).
    pub fn is_idle(&self) -> bool {
        !self.assembler.is_message_open() && self.carry.as_deref().is_none_or(Carry::is_empty)
    }

    /// How many bytes the receiver holds between calls: the fragmented or partial message
    /// (compressed, for a compressed one), a partial control frame's payload and a partial
    /// header. At most `max_message_len` + 125 + 14. (Allocated capacity can be larger.)
    pub fn buffered_len(&self) -> usize {
        self.carry.as_deref().map_or(0, |c| {
            c.message.len() + c.control.len() + usize::from(c.header_len)
        })
    }

    /// Frees the buffer of a message or control frame just delivered; call once the event is
    /// handled, so that an idle connection holds no buffer. (Forgetting it costs memory, not
    /// correctness: a new message never follows an old one in the buffer.)
    #[inline]
    pub fn release(&mut self) {
        if self.carry.is_some() {
            self.release_carry();
        }
    }

    /// [`release`](Self::release)'s work, when something was carried.
    #[inline(never)]
    fn release_carry(&mut self) {
        let Some(carry) = self.carry.as_deref_mut() else {
            return;
        };
        if carry.partial.is_none() {
            if !self.assembler.is_message_open() && carry.message.capacity() != 0 {
                carry.message = Vec::new();
            }
            if carry.control.capacity() != 0 {
                carry.control = Vec::new();
            }
        }
        if carry.is_empty() {
            self.carry = None;
        }
    }

    /// What spans calls, made when something first does.
    #[inline]
    fn carry_mut(&mut self) -> &mut Carry {
        self.carry.get_or_insert_with(Box::default)
    }

    /// The message bytes carried so far (empty when nothing is carried).
    #[inline]
    fn carried_message(&self) -> &[u8] {
        self.carry.as_deref().map_or(&[], |c| &c.message)
    }

    /// Consumes bytes from the start of `data` and returns how many, with the event they
    /// completed, if any. Call again with the rest until all of `data` is consumed (`used` is
    /// never 0 for non-empty `data`). The frames' payloads are unmasked in place in `data`,
    /// and a message lying whole in `data` is handed out borrowed from it; a compressed message
    /// is inflated into `scratch` and handed out from there.
    ///
    /// `config` is the [`SessionConfig`] the halves were made from: its frame and message
    /// limits apply (its role and auto-pong rule were fixed by [`new`](Self::new)).
    ///
    /// The session's rules are applied here (see the [module documentation](super)):
    /// - `now_us` is when the bytes arrived. A completed message, ping, pong or close is a sign
    ///   of life (keepalive counts from it); bytes that complete nothing are not: a frame or
    ///   fragmented message begun must be finished within
    ///   [`SessionConfig::message_timeout_us`] of its first byte
    ///   ([`Timeout::MessageIncomplete`](super::Timeout::MessageIncomplete)), so a peer that
    ///   trickles bytes cannot keep a connection or its buffers forever;
    /// - a ping while open: a pong with the same payload is given to `out` when
    ///   [`SessionConfig::auto_pong`], and the ping is delivered;
    /// - a close while open: echoed through `out` (the same code, or an empty close when it had
    ///   none) and delivered with [`Initiator::Peer`]; the session is then
    ///   [`Closed`](super::SessionState::Closed);
    /// - after our close: data, pings and pongs are consumed and dropped; the peer's close is
    ///   delivered with [`Initiator::Us`] and the session is then closed;
    /// - once closed, timed out or failed, every byte is consumed and ignored;
    /// - a protocol error: the session gives `out` a close frame with the error's close code
    ///   (1002, 1007 or 1009) and text as reason (unless a close was already sent), ignores
    ///   every later byte, and the error is returned. The caller reports it and, once the
    ///   close frame is written, may end the TCP connection (RFC 6455 §7.1.7).
    #[inline]
    pub fn handle_bytes<'a>(
        &'a mut self,
        session: &mut Session,
        config: &SessionConfig,
        data: &'a mut [u8],
        scratch: &'a mut InflateScratch,
        now_us: u64,
        out: &mut impl Output,
    ) -> Result<Step<'a>, ProtocolError> {
        if data.is_empty() {
            return Ok(Step {
                used: 0,
                event: None,
            });
        }
        let open = session.is_open();
        if !open && !session.is_receiving() {
            // Closed, timed out or failed: nothing more is read, so nothing is kept either.
            self.clear();
            return Ok(Step {
                used: data.len(),
                event: None,
            });
        }
        let auto_pong = self.bits & AUTO_PONG != 0;
        // A control frame leaves a fragmented message as open as it found it.
        let message_open = self.assembler.is_message_open();
        let (used, event) = match self.advance(data, config, scratch, out) {
            Ok(step) => step,
            Err(error) => {
                session.fail(&error, now_us, out);
                return Err(error);
            }
        };
        // What is left unfinished after this step: a step that completes nothing leaves a
        // header, a frame or a fragmented message begun; a whole message leaves nothing; a
        // control frame leaves a fragmented message as it found it.
        let event = match event {
            // The hot path: a message while open goes straight out.
            Some(Event::Text(_) | Event::Binary(_)) if open => {
                session.progress(false, true, now_us);
                event
            }
            None => {
                session.progress(true, false, now_us);
                None
            }
            Some(event) => {
                let data = matches!(event, Event::Text(_) | Event::Binary(_));
                session.progress(!data && message_open, true, now_us);
                session.on_event(event, auto_pong, now_us, out)
            }
        };
        Ok(Step { used, event })
    }

    /// The frame decoder's rules: this receiver's role and claimed RSV bits, `config`'s limit.
    #[inline]
    fn frame_config(&self, config: &SessionConfig) -> FrameConfig {
        FrameConfig {
            role: self.role,
            allowed_rsv: self.allowed_rsv,
            max_frame_len: config.max_frame_len,
        }
    }

    /// Drops whatever is held (after the session stopped receiving).
    #[cold]
    fn clear(&mut self) {
        self.carry = None;
        self.assembler.reset();
    }

    /// One step of the frame machine.
    #[inline]
    fn advance<'a>(
        &'a mut self,
        data: &'a mut [u8],
        config: &SessionConfig,
        scratch: &'a mut InflateScratch,
        out: &mut impl Output,
    ) -> Advance<'a> {
        if let Some(carry) = self.carry.as_deref() {
            if carry.partial.is_some() {
                return self.continue_frame(data, config, scratch);
            }
            if carry.header_len != 0 {
                return self.continue_header(data, config, scratch, out);
            }
        }
        match decode_header(data, &self.frame_config(config))? {
            HeaderDecode::NeedMore(_) => {
                // Fewer than 14 bytes: a header is never longer.
                let len = data.len().min(MAX_HEADER_LEN);
                let carry = self.carry_mut();
                carry.header[..len].copy_from_slice(&data[..len]);
                carry.header_len = len as u8;
                Ok((len, None))
            }
            HeaderDecode::Complete { header, header_len } => {
                out.frame_received(&header);
                let kind = self
                    .assembler
                    .handle_header(&header, config.max_message_len)?;
                let total = header_len as u64 + header.payload_len;
                if (data.len() as u64) >= total {
                    // The fast path: the whole frame is here.
                    let total = total as usize;
                    let payload = &mut data[header_len..total];
                    if let Some(key) = header.mask {
                        apply_mask(payload, key, 0);
                    }
                    let event = self.whole_frame(kind, payload, config, scratch)?;
                    Ok((total, event))
                } else {
                    self.carry_mut().partial = Some(PartialFrame {
                        header,
                        kind,
                        received: 0,
                    });
                    Ok((header_len, None))
                }
            }
        }
    }

    /// Completes a header that began in an earlier call.
    #[inline(never)]
    fn continue_header<'a>(
        &'a mut self,
        data: &'a mut [u8],
        config: &SessionConfig,
        scratch: &'a mut InflateScratch,
        out: &mut impl Output,
    ) -> Advance<'a> {
        let frame_config = self.frame_config(config);
        let carry = self.carry_mut();
        let had = usize::from(carry.header_len);
        let take = (MAX_HEADER_LEN - had).min(data.len());
        carry.header[had..had + take].copy_from_slice(&data[..take]);
        match decode_header(&carry.header[..had + take], &frame_config)? {
            HeaderDecode::NeedMore(_) => {
                carry.header_len = (had + take) as u8;
                Ok((take, None))
            }
            HeaderDecode::Complete { header, header_len } => {
                carry.header_len = 0;
                out.frame_received(&header);
                let used = header_len - had;
                let kind = self
                    .assembler
                    .handle_header(&header, config.max_message_len)?;
                self.carry_mut().partial = Some(PartialFrame {
                    header,
                    kind,
                    received: 0,
                });
                if header.payload_len == 0 {
                    let (_, event) = self.continue_frame(&mut [], config, scratch)?;
                    return Ok((used, event));
                }
                Ok((used, None))
            }
        }
    }

    /// Takes payload bytes of a frame that spans calls.
    #[inline(never)]
    fn continue_frame<'a>(
        &'a mut self,
        data: &'a mut [u8],
        config: &SessionConfig,
        scratch: &'a mut InflateScratch,
    ) -> Advance<'a> {
        let Some(mut frame) = self.carry.as_deref().and_then(|c| c.partial) else {
            return Ok((0, None));
        };
        let remaining = frame.header.payload_len - frame.received;
        let take = remaining.min(data.len() as u64) as usize;
        let chunk = &mut data[..take];
        if let Some(key) = frame.header.mask {
            apply_mask(chunk, key, (frame.received & 3) as usize);
        }
        if let FrameKind::Data { .. } = frame.kind
            && !self.assembler.is_compressed()
        {
            // Compressed bytes are checked once inflated, at the message's end.
            self.assembler.handle_data(chunk, config.max_message_len)?;
        }
        let carry = self.carry_mut();
        if frame.received == 0 {
            // A new frame's payload: nothing of an earlier delivered one may precede it.
            match frame.kind {
                FrameKind::Control(_) => carry.control.clear(),
                FrameKind::Data { first: true, .. } => carry.message.clear(),
                FrameKind::Data { .. } => {}
            }
        }
        match frame.kind {
            FrameKind::Control(_) => carry.control.extend_from_slice(chunk),
            FrameKind::Data { .. } => carry.message.extend_from_slice(chunk),
        }
        frame.received += take as u64;
        if frame.received < frame.header.payload_len {
            carry.partial = Some(frame);
            return Ok((take, None));
        }
        carry.partial = None;
        let event = match frame.kind {
            FrameKind::Control(op) => {
                let control = self.carry.as_deref().map_or(&[][..], |c| &c.control);
                Some(control_event(op, control)?)
            }
            FrameKind::Data { last, .. } => self.end_data_frame(last, config, scratch)?,
        };
        Ok((take, event))
    }

    /// A frame whose header and payload are all in the caller's buffer.
    #[inline]
    fn whole_frame<'a>(
        &'a mut self,
        kind: FrameKind,
        payload: &'a mut [u8],
        config: &SessionConfig,
        scratch: &'a mut InflateScratch,
    ) -> Result<Option<Event<'a>>, ProtocolError> {
        match kind {
            FrameKind::Control(op) => control_event(op, payload).map(Some),
            FrameKind::Data {
                kind,
                first: true,
                last: true,
            } => {
                if self.assembler.is_compressed() {
                    // Inflated straight from the caller's buffer into the scratch.
                    return inflate_message(
                        &mut self.assembler,
                        config,
                        self.compression.as_deref_mut(),
                        payload,
                        scratch,
                    );
                }
                self.assembler.handle_frame_end()?;
                // Zero copy: the message is handed out from the caller's buffer, validated
                // here, once.
                Ok(Some(match kind {
                    MessageKind::Text => Event::Text(utf8::validate(payload)?),
                    MessageKind::Binary => Event::Binary(payload),
                }))
            }
            FrameKind::Data { first, last, .. } => {
                if !self.assembler.is_compressed() {
                    self.assembler
                        .handle_data(payload, config.max_message_len)?;
                }
                let carry = self.carry_mut();
                if first {
                    carry.message.clear();
                }
                carry.message.extend_from_slice(payload);
                self.end_data_frame(last, config, scratch)
            }
        }
    }

    /// A data frame whose payload went into `self.message` ended: deliver its message if it
    /// was the last fragment.
    #[inline(never)]
    fn end_data_frame<'a>(
        &'a mut self,
        last: bool,
        config: &SessionConfig,
        scratch: &'a mut InflateScratch,
    ) -> Result<Option<Event<'a>>, ProtocolError> {
        if last && self.assembler.is_compressed() {
            let message = self.carry.as_deref().map_or(&[][..], |c| &c.message);
            return inflate_message(
                &mut self.assembler,
                config,
                self.compression.as_deref_mut(),
                message,
                scratch,
            );
        }
        let Some(kind) = self.assembler.handle_frame_end()? else {
            return Ok(None);
        };
        // SAFETY: the carried message holds exactly the bytes of this message, each passed to
        // `self.assembler.handle_data` in order as it arrived (`continue_frame` and
        // `whole_frame` append to it only after `handle_data` accepted them, and empty it when
        // a message's first frame begins; a compressed message does not get here), and
        // `handle_frame_end` just returned the message's kind, so for text its validator
        // accepted the whole of it.
        #[allow(unsafe_code)]
        let event = unsafe { assembled_event(kind, self.carried_message()) };
        Ok(Some(event))
    }
}

/// Inflates a whole compressed message and passes the inflated bytes through the assembler
/// (size limit, UTF-8) before it is delivered.
#[inline(never)]
fn inflate_message<'a>(
    assembler: &mut Assembly,
    config: &SessionConfig,
    side: Option<&mut RecvCompression>,
    compressed: &[u8],
    scratch: &'a mut InflateScratch,
) -> Result<Option<Event<'a>>, ProtocolError> {
    // RSV1 passes the frame decoder only once `enable_deflate` made `side`.
    let side = side.ok_or(ProtocolError::InvalidCompressedData)?;
    let inflated = scratch.inflate(side, compressed)?;
    assembler.handle_data(inflated, config.max_message_len)?;
    let Some(kind) = assembler.handle_frame_end()? else {
        return Ok(None);
    };
    // SAFETY: `inflated` is the whole message, all of it just passed to
    // `assembler.handle_data` in one piece, and `handle_frame_end` returned its kind, so for
    // text the validator accepted all of it.
    #[allow(unsafe_code)]
    let event = unsafe { assembled_event(kind, inflated) };
    Ok(Some(event))
}

/// The event for a data message the assembler has validated.
///
/// # Safety
///
/// For [`MessageKind::Text`], `message` must be exactly the bytes passed, in order, to
/// [`MessageAssembler::handle_data`] for one text message whose
/// [`MessageAssembler::handle_frame_end`] then returned `Ok(Some(MessageKind::Text))`: the
/// assembler's validator accepted every byte and the message ends on a character boundary, so
/// `message` is valid UTF-8.
#[allow(unsafe_code)]
#[inline]
unsafe fn assembled_event(kind: MessageKind, message: &[u8]) -> Event<'_> {
    match kind {
        MessageKind::Text => {
            debug_assert!(core::str::from_utf8(message).is_ok());
            // SAFETY: the caller guarantees `message` is valid UTF-8 (see `# Safety`); not
            // validating it again saves a second pass over every fragmented or compressed
            // text message (benches/proto.rs, `session_fragmented_text`).
            Event::Text(unsafe { core::str::from_utf8_unchecked(message) })
        }
        MessageKind::Binary => Event::Binary(message),
    }
}

/// The event for a control frame whose payload is at hand.
#[inline]
fn control_event(op: OpCode, payload: &[u8]) -> Result<Event<'_>, ProtocolError> {
    Ok(match op {
        OpCode::Ping => Event::Ping(payload),
        OpCode::Pong => Event::Pong(payload),
        _ => {
            let close = CloseFrame::parse(payload)?;
            Event::Close(Closed {
                code: close.code,
                reason: close.reason,
                initiator: Initiator::Peer,
            })
        }
    })
}
