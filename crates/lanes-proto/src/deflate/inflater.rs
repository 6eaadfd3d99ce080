//! Decompressing a message as its frames arrive (RFC 7692 §7.2.2), within a size limit.

use zlib_rs::{InflateFlush, Status};

use super::TRAILER;
use crate::error::ProtocolError;

/// The first output room for a piece of compressed input, per input byte.
const FIRST_ROOM_PER_BYTE: usize = 4;
/// The least output room to offer.
const MIN_ROOM: usize = 256;

/// The decompressor for the messages one end receives.
///
/// Feed it the payload of a compressed message's frames, unmasked, in order, in pieces of any
/// size ([`handle_data`](Self::handle_data)), then mark the message's end
/// ([`handle_message_end`](Self::handle_message_end)), which appends the `00 00 ff ff` that the
/// sender removed. The inflated bytes are appended to a buffer the caller owns.
///
/// The size limit is enforced while inflating: output is produced in steps that never go past
/// the limit plus one byte, so a message that would inflate to more than the limit fails with
/// [`ProtocolError::MessageTooBig`] (close 1009) having produced, and allocated for, at most
/// that much. Data that is not valid deflate fails with
/// [`ProtocolError::InvalidCompressedData`] (close 1002). After an error the connection is to
/// be closed; [`reset`](Self::reset) makes the inflater usable again.
///
/// Bytes after a final block (BFINAL = 1; RFC 7692 §7.2.3.4) are ignored, and the next message
/// starts a new stream with an empty window.
///
/// ```
/// use lanes_proto::deflate::Inflater;
/// let mut inflater = Inflater::new(15, false, 1 << 20);
/// let mut out = Vec::new();
/// // RFC 7692 §7.2.3.1, in two frames: "Hello".
/// inflater.handle_data(&[0xf2, 0x48, 0xcd], &mut out).unwrap();
/// inflater.handle_data(&[0xc9, 0xc9, 0x07, 0x00], &mut out).unwrap();
/// inflater.handle_message_end(&mut out).unwrap();
/// assert_eq!(out, b"Hello");
/// ```
pub struct Inflater {
    stream: zlib_rs::Inflate,
    no_context_takeover: bool,
    max_message_len: u64,
    /// Bytes inflated for the message in progress.
    message_len: u64,
    /// The stream of the message in progress ended with a final block.
    stream_ended: bool,
}

impl Inflater {
    /// A decompressor for messages compressed with a window of at most `window_bits`, whose
    /// sender resets its window after each message when `no_context_takeover`, refusing any
    /// message that inflates to more than `max_message_len` bytes.
    ///
    /// Current behaviour: zlib-rs always reserves the full 32 KiB window, so windows up to 15
    /// bits are accepted whatever `window_bits` says (a peer that exceeds the window it agreed
    /// to is not caught), and the memory is the same for every setting.
    pub fn new(window_bits: u8, no_context_takeover: bool, max_message_len: u64) -> Inflater {
        let _ = window_bits;
        Inflater {
            // Negative window bits: raw deflate. 15 accepts every window up to 15 bits.
            stream: zlib_rs::Inflate::new(false, 15),
            no_context_takeover,
            max_message_len,
            message_len: 0,
            stream_ended: false,
        }
    }

    /// The most bytes one message may inflate to.
    pub const fn max_message_len(&self) -> u64 {
        self.max_message_len
    }

    /// Inflates the next piece of a compressed message's payload (unmasked), appending the
    /// output to `out`, and returns how many bytes it appended. Output may lag input by up to a
    /// few bytes until [`handle_message_end`](Self::handle_message_end).
    pub fn handle_data(
        &mut self,
        compressed: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<usize, ProtocolError> {
        self.inflate(compressed, out)
    }

    /// Ends the message: inflates the `00 00 ff ff` tail that the sender removed, appends the
    /// rest of the output to `out`, returns how many bytes it appended, and readies the
    /// inflater for the next message.
    pub fn handle_message_end(&mut self, out: &mut Vec<u8>) -> Result<usize, ProtocolError> {
        let appended = self.inflate(&TRAILER, out)?;
        if self.no_context_takeover || self.stream_ended {
            self.stream.reset(false);
        }
        self.message_len = 0;
        self.stream_ended = false;
        Ok(appended)
    }

    /// Forgets the message in progress and the window: for a fresh start after an error, or
    /// to drop the window of a sender that does not take over context.
    pub fn reset(&mut self) {
        self.stream.reset(false);
        self.message_len = 0;
        self.stream_ended = false;
    }

    fn inflate(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<usize, ProtocolError> {
        let start = out.len();
        if self.stream_ended {
            return Ok(0);
        }
        let mut room = input
            .len()
            .saturating_mul(FIRST_ROOM_PER_BYTE)
            .max(MIN_ROOM);
        loop {
            // One byte more than the limit allows, to see whether the message goes past it.
            let allowed = self.max_message_len.saturating_sub(self.message_len);
            let allowed = usize::try_from(allowed)
                .unwrap_or(usize::MAX)
                .saturating_add(1);
            let step = room.min(allowed);
            let at = out.len();
            reserve_bounded(out, step, allowed);
            out.resize(at + step, 0);
            let (in_before, out_before) = (self.stream.total_in(), self.stream.total_out());
            let status = self
                .stream
                .decompress(input, &mut out[at..], InflateFlush::NoFlush);
            let consumed = (self.stream.total_in() - in_before) as usize;
            let produced = (self.stream.total_out() - out_before) as usize;
            out.truncate(at + produced);
            input = input.get(consumed..).unwrap_or_default();
            self.message_len += produced as u64;
            if self.message_len > self.max_message_len {
                return Err(ProtocolError::MessageTooBig);
            }
            match status {
                Err(_) => return Err(ProtocolError::InvalidCompressedData),
                Ok(Status::StreamEnd) => {
                    self.stream_ended = true;
                    break;
                }
                // All input taken and room left over: nothing is pending.
                Ok(_) if input.is_empty() && produced < step => break,
                // No progress possible (inflate always progresses with input and room; this
                // only guards the loop).
                Ok(_) if consumed == 0 && produced == 0 => break,
                Ok(_) => room = room.saturating_mul(2),
            }
        }
        Ok(out.len() - start)
    }
}

/// Makes room for `step` more bytes, growing the capacity geometrically as `Vec` does but never
/// past `allowed` bytes beyond the current length, so that a bomb cannot make us allocate more
/// than the limit.
fn reserve_bounded(out: &mut Vec<u8>, step: usize, allowed: usize) {
    let needed = out.len().saturating_add(step);
    if needed <= out.capacity() {
        return;
    }
    let ceiling = out.len().saturating_add(allowed);
    let target = out.capacity().saturating_mul(2).max(needed).min(ceiling);
    out.reserve_exact(target - out.len());
}

impl core::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Inflater")
            .field("no_context_takeover", &self.no_context_takeover)
            .field("max_message_len", &self.max_message_len)
            .field("message_len", &self.message_len)
            .field("stream_ended", &self.stream_ended)
            .finish_non_exhaustive()
    }
}
