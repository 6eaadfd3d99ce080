//! The receiving side of an open connection: frames parsed, unmasked and validated where the
//! bytes were read.
//!
//! A frame that lies whole in the worker's receive buffer is unmasked in place and its message
//! is handed out borrowed from that buffer. Only what spans reads is kept per connection: up to
//! 14 header bytes inline, the payload of a frame still arriving, and a fragmented message being
//! assembled. Payload is unmasked and validated as it arrives, so invalid UTF-8 fails at once,
//! even in the middle of a frame.

use lanes_proto::assembler::{FrameKind, MessageAssembler, MessageKind};
use lanes_proto::frame::{
    FrameConfig, FrameHeader, HeaderDecode, MAX_HEADER_LEN, RSV1, decode_header,
};
use lanes_proto::mask::apply_mask;
use lanes_proto::{CloseCode, CloseFrame, OpCode, ProtocolError, utf8};

use crate::compress::{InflateScratch, RecvCompression};
use crate::stats::{self, Counters, opcode_slot};

/// Something the peer sent that the connection must act on.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Inbound<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
    Ping(&'a [u8]),
    Pong(&'a [u8]),
    Close(Option<CloseCode>, &'a str),
}

/// A frame whose payload spans reads.
#[derive(Debug, Clone, Copy)]
struct PartialFrame {
    header: FrameHeader,
    kind: FrameKind,
    received: u64,
}

/// Receive state of one connection.
#[derive(Debug)]
pub(crate) struct Receiver {
    frame_config: FrameConfig,
    assembler: MessageAssembler,
    header: [u8; MAX_HEADER_LEN],
    header_len: u8,
    partial: Option<PartialFrame>,
    /// The fragmented message being assembled, or the payload of a single-frame message that
    /// spans reads.
    message: Option<Vec<u8>>,
    /// The payload of a control frame that spans reads (at most 125 bytes).
    control: Option<Vec<u8>>,
    /// permessage-deflate, when negotiated.
    compression: Option<Box<RecvCompression>>,
}

impl Receiver {
    pub(crate) fn new(frame_config: FrameConfig, max_message_len: u64) -> Receiver {
        Receiver {
            frame_config,
            assembler: MessageAssembler::new(max_message_len),
            header: [0; MAX_HEADER_LEN],
            header_len: 0,
            partial: None,
            message: None,
            control: None,
            compression: None,
        }
    }

    /// Accepts compressed messages (RSV1 on a message's first frame) from now on.
    pub(crate) fn enable_compression(&mut self, side: RecvCompression) {
        self.frame_config.allowed_rsv |= RSV1;
        self.compression = Some(Box::new(side));
    }

    /// Whether nothing is held between reads.
    #[cfg(test)]
    pub(crate) fn is_idle(&self) -> bool {
        self.header_len == 0 && self.partial.is_none() && self.message.is_none()
    }

    /// Consumes bytes from the start of `data` and returns how many, with the event they
    /// completed, if any. Call again with the rest until all is consumed.
    /// Compressed messages are inflated into `scratch` and handed out from there; every
    /// frame header is counted in `counters` by opcode.
    pub(crate) fn next<'a>(
        &'a mut self,
        data: &'a mut [u8],
        scratch: &'a mut InflateScratch,
        counters: &Counters,
    ) -> Result<(usize, Option<Inbound<'a>>), ProtocolError> {
        if self.partial.is_some() {
            return self.continue_frame(data, scratch);
        }
        if self.header_len != 0 {
            return self.continue_header(data, scratch, counters);
        }
        match decode_header(data, &self.frame_config)? {
            HeaderDecode::NeedMore(_) => {
                self.header[..data.len()].copy_from_slice(data);
                self.header_len = data.len() as u8;
                Ok((data.len(), None))
            }
            HeaderDecode::Complete { header, header_len } => {
                stats::add(&counters.frames_received[opcode_slot(header.opcode)], 1);
                let kind = self.assembler.handle_header(&header)?;
                let total = header_len as u64 + header.payload_len;
                if (data.len() as u64) >= total {
                    let total = total as usize;
                    let payload = &mut data[header_len..total];
                    if let Some(key) = header.mask {
                        apply_mask(payload, key, 0);
                    }
                    let event = self.whole_frame(kind, payload, scratch)?;
                    Ok((total, event))
                } else {
                    self.partial = Some(PartialFrame {
                        header,
                        kind,
                        received: 0,
                    });
                    Ok((header_len, None))
                }
            }
        }
    }

    /// Completes a header that began in an earlier read.
    fn continue_header<'a>(
        &'a mut self,
        data: &'a mut [u8],
        scratch: &'a mut InflateScratch,
        counters: &Counters,
    ) -> Result<(usize, Option<Inbound<'a>>), ProtocolError> {
        let had = usize::from(self.header_len);
        let take = (MAX_HEADER_LEN - had).min(data.len());
        self.header[had..had + take].copy_from_slice(&data[..take]);
        match decode_header(&self.header[..had + take], &self.frame_config)? {
            HeaderDecode::NeedMore(_) => {
                self.header_len = (had + take) as u8;
                Ok((take, None))
            }
            HeaderDecode::Complete { header, header_len } => {
                self.header_len = 0;
                stats::add(&counters.frames_received[opcode_slot(header.opcode)], 1);
                let used = header_len - had;
                let kind = self.assembler.handle_header(&header)?;
                self.partial = Some(PartialFrame {
                    header,
                    kind,
                    received: 0,
                });
                if header.payload_len == 0 {
                    let (_, event) = self.continue_frame(&mut [], scratch)?;
                    return Ok((used, event));
                }
                Ok((used, None))
            }
        }
    }

    /// Takes payload bytes of a frame that spans reads.
    fn continue_frame<'a>(
        &'a mut self,
        data: &'a mut [u8],
        scratch: &'a mut InflateScratch,
    ) -> Result<(usize, Option<Inbound<'a>>), ProtocolError> {
        let Some(mut frame) = self.partial else {
            return Ok((0, None));
        };
        let remaining = frame.header.payload_len - frame.received;
        let take = remaining.min(data.len() as u64) as usize;
        let chunk = &mut data[..take];
        if let Some(key) = frame.header.mask {
            apply_mask(chunk, key, (frame.received & 3) as usize);
        }
        match frame.kind {
            FrameKind::Control(_) => {
                self.control
                    .get_or_insert_with(Vec::new)
                    .extend_from_slice(chunk);
            }
            FrameKind::Data { .. } => {
                if !self.assembler.is_compressed() {
                    // Compressed bytes are checked once inflated, at the message's end.
                    self.assembler.handle_data(chunk)?;
                }
                self.message
                    .get_or_insert_with(Vec::new)
                    .extend_from_slice(chunk);
            }
        }
        frame.received += take as u64;
        if frame.received < frame.header.payload_len {
            self.partial = Some(frame);
            return Ok((take, None));
        }
        self.partial = None;
        let event = match frame.kind {
            FrameKind::Control(op) => {
                let payload: &[u8] = self.control.get_or_insert_with(Vec::new);
                Some(control_event(op, payload)?)
            }
            FrameKind::Data { .. } => self.end_data_frame(scratch)?,
        };
        Ok((take, event))
    }

    /// A frame whose header and payload are all in `payload`'s buffer.
    fn whole_frame<'a>(
        &'a mut self,
        kind: FrameKind,
        payload: &'a mut [u8],
        scratch: &'a mut InflateScratch,
    ) -> Result<Option<Inbound<'a>>, ProtocolError> {
        match kind {
            FrameKind::Control(op) => control_event(op, payload).map(Some),
            FrameKind::Data {
                kind,
                first: true,
                last: true,
            } => {
                self.assembler.handle_frame_end()?;
                if self.assembler.is_compressed()
                    && let Some(side) = self.compression.as_deref_mut()
                {
                    // Inflated straight from the receive buffer into the worker's scratch.
                    let message = scratch.inflate(side, payload)?;
                    return message_event(kind, message).map(Some);
                }
                // Zero copy: the message is handed out from the receive buffer.
                message_event(kind, payload).map(Some)
            }
            FrameKind::Data { .. } => {
                if !self.assembler.is_compressed() {
                    self.assembler.handle_data(payload)?;
                }
                self.message
                    .get_or_insert_with(Vec::new)
                    .extend_from_slice(payload);
                self.end_data_frame(scratch)
            }
        }
    }

    /// A data frame ended: deliver its message if it was the last fragment.
    fn end_data_frame<'a>(
        &'a mut self,
        scratch: &'a mut InflateScratch,
    ) -> Result<Option<Inbound<'a>>, ProtocolError> {
        let Some(kind) = self.assembler.handle_frame_end()? else {
            return Ok(None);
        };
        let message = self.message.get_or_insert_with(Vec::new);
        if self.assembler.is_compressed()
            && let Some(side) = self.compression.as_deref_mut()
        {
            let inflated = scratch.inflate(side, message)?;
            return message_event(kind, inflated).map(Some);
        }
        message_event(kind, message).map(Some)
    }

    /// Frees the buffer of a message that was just delivered.
    pub(crate) fn after_delivery(&mut self) {
        if self.partial.is_none() && !self.assembler.is_message_open() {
            self.message = None;
        }
        if self.partial.is_none() {
            self.control = None;
        }
    }
}

/// The event for a complete data message.
fn message_event(kind: MessageKind, message: &[u8]) -> Result<Inbound<'_>, ProtocolError> {
    Ok(match kind {
        MessageKind::Text => Inbound::Text(utf8::validate(message)?),
        MessageKind::Binary => Inbound::Binary(message),
    })
}

/// The event for a control frame whose payload is at hand.
fn control_event(op: OpCode, payload: &[u8]) -> Result<Inbound<'_>, ProtocolError> {
    Ok(match op {
        OpCode::Ping => Inbound::Ping(payload),
        OpCode::Pong => Inbound::Pong(payload),
        _ => {
            let close = CloseFrame::parse(payload)?;
            Inbound::Close(close.code, close.reason)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lanes_proto::frame::FrameHeader;

    fn masked(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        let key = [1, 2, 3, 4];
        let mut header = [0u8; MAX_HEADER_LEN];
        let n = FrameHeader::new(fin, opcode, payload.len() as u64)
            .with_mask(key)
            .encode(&mut header);
        let mut out = header[..n].to_vec();
        let mut body = payload.to_vec();
        apply_mask(&mut body, key, 0);
        out.extend(body);
        out
    }

    /// Owned form of an event, to compare across runs.
    fn own(event: &Inbound<'_>) -> String {
        format!("{event:?}")
    }

    /// Feeds `stream` in pieces of `piece` bytes; returns the events and whether the receiver
    /// held nothing at the end.
    fn run(stream: &[u8], piece: usize) -> (Vec<String>, bool) {
        let mut receiver = Receiver::new(FrameConfig::server(), 1 << 20);
        let mut scratch = InflateScratch::new(1 << 20);
        let counters = Counters::default();
        let mut events = Vec::new();
        for chunk in stream.chunks(piece) {
            let mut data = chunk.to_vec();
            let mut offset = 0;
            while offset < data.len() {
                let (used, event) = receiver
                    .next(&mut data[offset..], &mut scratch, &counters)
                    .unwrap();
                offset += used;
                if let Some(event) = event {
                    events.push(own(&event));
                }
                receiver.after_delivery();
            }
        }
        (events, receiver.is_idle())
    }

    #[test]
    fn same_events_whatever_the_read_sizes_and_nothing_held_after() {
        let mut stream = masked(true, OpCode::Text, b"hello");
        stream.extend(masked(false, OpCode::Binary, &[1; 300]));
        stream.extend(masked(true, OpCode::Ping, b"p"));
        stream.extend(masked(true, OpCode::Continuation, &[2; 70_000]));
        stream.extend(masked(true, OpCode::Text, "κόσμε".as_bytes()));
        stream.extend(masked(true, OpCode::Text, b""));
        stream.extend(masked(true, OpCode::Close, &[0x03, 0xe8]));
        let (whole, idle) = run(&stream, stream.len());
        assert!(idle);
        assert_eq!(whole.len(), 6);
        assert_eq!(whole[0], "Text(\"hello\")");
        assert_eq!(whole[1], "Ping([112])");
        assert!(whole[2].starts_with("Binary([1, 1"));
        assert_eq!(whole[5], "Close(Some(CloseCode(1000)), \"\")");
        for piece in [1, 2, 3, 7, 13, 100, 1000, 4096] {
            assert_eq!(run(&stream, piece), (whole.clone(), true), "piece {piece}");
        }
    }

    #[test]
    fn invalid_utf8_fails_before_the_frame_ends() {
        let mut receiver = Receiver::new(FrameConfig::server(), 1 << 20);
        let frame = masked(true, OpCode::Text, b"abc\xffdefghij");
        // Header and the first 4 payload bytes only.
        let mut first = frame[..6 + 4].to_vec();
        let mut scratch = InflateScratch::new(1 << 20);
        let counters = Counters::default();
        let (used, event) = receiver.next(&mut first, &mut scratch, &counters).unwrap();
        assert_eq!((used, event), (6, None));
        assert_eq!(
            receiver.next(&mut first[6..], &mut scratch, &counters),
            Err(ProtocolError::InvalidUtf8)
        );
    }
}
