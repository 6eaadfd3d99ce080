//! The outgoing side of a connection: a backlog taken from the worker's pool only while there is
//! something to write, the caps on it, and what became of each send.

use lanes_proto::OpCode;
use lanes_proto::deflate::SendAs;
use lanes_proto::frame::{FrameHeader, MAX_HEADER_LEN, RSV1};
use lanes_proto::mask::apply_mask;
use lanes_proto::session::Output;

use crate::compress::{SendCompression, SharedDeflate};
use crate::config::{Backpressure, BackpressurePolicy};
use crate::pool::BufferPool;
use crate::rng::WorkerRng;
use crate::stats::{self, Counters, opcode_slot};
#[cfg(feature = "tls")]
use crate::tls::{RecordFraming, RecordLayer};

/// Written bytes at the front of the backlog beyond which the buffer is compacted.
const COMPACT_AFTER: usize = 64 * 1024;

/// What queuing a message needs from its worker: the buffer pool, the counters, the backlog
/// caps and the shared compressors ([`Local::sending`](crate::local::Local::sending) lends them).
pub(crate) struct Sending<'a> {
    pub(crate) pool: &'a mut BufferPool,
    pub(crate) counters: &'a Counters,
    pub(crate) backpressure: &'a Backpressure,
    pub(crate) deflate: &'a mut SharedDeflate,
    pub(crate) rng: &'a mut WorkerRng,
}

/// What became of a message given to [`Ws::send_text`](crate::Ws::send_text) and friends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStatus {
    /// Queued with the backlog under [`Backpressure::pause_len`](crate::config::Backpressure::pause_len); it is written at the end of
    /// this loop iteration.
    Sent,
    /// Queued, but the backlog is now over [`Backpressure::pause_len`](crate::config::Backpressure::pause_len): reading from this
    /// connection pauses until it drains (then `on_drain` fires).
    Backpressure,
    /// Not queued: the connection is closing, or the message would pass
    /// [`Backpressure::max_len`](crate::config::Backpressure::max_len) (with [`BackpressurePolicy::Close`] the connection is now
    /// being closed with 1008).
    Dropped,
}

/// The outgoing side of a connection: a backlog taken from the worker's pool only while there
/// is something to write.
#[derive(Debug)]
pub(crate) struct Outbox {
    /// Bytes to write: `buf[written..]`. `None` when empty (the buffer went back to the pool).
    buf: Option<Vec<u8>>,
    written: usize,
    /// Set when the hard cap was passed under [`BackpressurePolicy::Close`]: nothing more is
    /// queued, and the connection is closed with 1008 once the callback that sent returns.
    pub(crate) overflowed: bool,
    /// Set when the backlog waited past `max_age` under [`BackpressurePolicy::Drop`]: data
    /// messages are dropped (counted) until the backlog is written out.
    pub(crate) stale: bool,
    /// A [`TimerKind::Backlog`](crate::timer::TimerKind::Backlog) entry is on the wheel for
    /// this connection (at most one is).
    pub(crate) age_check: bool,
    /// An outbound connection's: data frames are masked, each with a fresh key.
    pub(crate) masked: bool,
    /// On a TLS connection: encrypted bytes waiting to be written, beside the plaintext here
    /// (kept by the connection's TLS layer, counted here so that the caps see them). A `u32`
    /// in the outbox's padding, read on every cap check: the layer holds at most a batch of
    /// ciphertext (256 KiB, `SEAL_BATCH` in `worker/io.rs`) and a handshake flight; the
    /// count saturates rather than wrap.
    sealed_len: u32,
    /// What only a connection with compression or TLS needs (boxed: every connection's slot
    /// holds an outbox, and a plain one pays one word for these).
    extras: Option<Box<Extras>>,
}

/// The TLS record framing among `extras`, if any: a function of the field alone, so that the
/// outbox's buffer can be borrowed beside it.
#[cfg(feature = "tls")]
#[inline]
fn framing_in(extras: &mut Option<Box<Extras>>) -> Option<&mut RecordFraming> {
    extras.as_deref_mut()?.framing.as_mut()
}

/// The part of an [`Outbox`] only a connection with compression or TLS uses.
#[derive(Debug, Default)]
struct Extras {
    /// permessage-deflate, when negotiated.
    compression: Option<Box<SendCompression>>,
    /// On a connection with lanes' own TLS record layer: the backlog is laid out as records,
    /// sealed in place before they are written.
    #[cfg(feature = "tls")]
    framing: Option<RecordFraming>,
}

impl Outbox {
    pub(crate) const fn new() -> Outbox {
        Outbox {
            buf: None,
            written: 0,
            overflowed: false,
            stale: false,
            age_check: false,
            masked: false,
            sealed_len: 0,
            extras: None,
        }
    }

    #[cfg_attr(not(any(feature = "tls", feature = "deflate")), allow(dead_code))]
    fn extras_mut(&mut self) -> &mut Extras {
        self.extras.get_or_insert_with(Box::default)
    }

    /// permessage-deflate's compressor, when negotiated.
    #[inline]
    pub(crate) fn compression(&self) -> Option<&SendCompression> {
        self.extras.as_deref()?.compression.as_deref()
    }

    #[inline]
    fn compression_mut(&mut self) -> Option<&mut SendCompression> {
        self.extras.as_deref_mut()?.compression.as_deref_mut()
    }

    /// Sends data messages through `compression` from now on (permessage-deflate was
    /// negotiated).
    #[cfg_attr(not(any(feature = "tls", feature = "deflate")), allow(dead_code))]
    pub(crate) fn set_compression(&mut self, compression: SendCompression) {
        self.extras_mut().compression = Some(Box::new(compression));
    }

    /// Encrypted bytes waiting to be written (on a TLS connection).
    #[inline]
    pub(crate) fn sealed_len(&self) -> usize {
        self.sealed_len as usize
    }

    /// Counts `len` encrypted bytes waiting in the connection's TLS layer.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn set_sealed_len(&mut self, len: usize) {
        self.sealed_len = u32::try_from(len).unwrap_or(u32::MAX);
    }

    #[cfg(feature = "tls")]
    #[inline]
    fn framing_mut(&mut self) -> Option<&mut RecordFraming> {
        framing_in(&mut self.extras)
    }

    /// Bytes queued and not yet written (encrypted ones included).
    #[inline]
    pub(crate) fn buffered_len(&self) -> usize {
        self.buf.as_ref().map_or(0, |b| b.len() - self.written) + self.sealed_len()
    }

    /// Whether plaintext is queued (on a TLS connection: frames not yet encrypted).
    #[cfg(feature = "tls")]
    #[inline]
    pub(crate) fn has_plain(&self) -> bool {
        self.buf.is_some()
    }

    /// From now on the backlog is laid out as TLS records and sealed in place (lanes' own
    /// record layer took over). Anything queued before is moved into records.
    #[cfg(feature = "tls")]
    pub(crate) fn frame_records(&mut self, pool: &mut BufferPool) {
        if self.framing_mut().is_some() {
            return;
        }
        let mut framing = RecordFraming::new();
        if let Some(old) = self.buf.take() {
            let mut buf = pool.take();
            framing.append(&mut buf, &old[self.written..]);
            pool.put(old);
            self.buf = Some(buf);
            self.written = 0;
        }
        self.extras_mut().framing = Some(framing);
    }

    /// Sealed records ready to write (framed backlog only).
    #[cfg(feature = "tls")]
    pub(crate) fn sealed(&self) -> &[u8] {
        let framing = self.extras.as_deref().and_then(|e| e.framing.as_ref());
        match (&self.buf, framing) {
            (Some(buf), Some(framing)) => &buf[self.written..framing.sealed_end()],
            _ => &[],
        }
    }

    /// Seals queued records in place, in order, until `budget` bytes are sealed or none is
    /// left (framed backlog only).
    #[cfg(feature = "tls")]
    pub(crate) fn seal(
        &mut self,
        records: &mut RecordLayer,
        budget: usize,
    ) -> Result<(), rustls::Error> {
        let framing = framing_in(&mut self.extras);
        match (&mut self.buf, framing) {
            (Some(buf), Some(framing)) => framing.seal(buf, records, budget),
            _ => Ok(()),
        }
    }

    /// Seals everything queued, then queues the key update the peer asked for: what is queued
    /// later goes out after it, under the new key (framed backlog only).
    #[cfg(feature = "tls")]
    pub(crate) fn seal_owed_update(
        &mut self,
        records: &mut RecordLayer,
        pool: &mut BufferPool,
    ) -> Result<(), rustls::Error> {
        let Some(framing) = framing_in(&mut self.extras) else {
            return Ok(());
        };
        framing.seal_owed_update(self.buf.get_or_insert_with(|| pool.take()), records)
    }

    /// The bytes still to write.
    pub(crate) fn pending(&self) -> &[u8] {
        match &self.buf {
            Some(buf) => &buf[self.written..],
            None => &[],
        }
    }

    /// Records that `n` bytes were written; returns the buffer to the pool when empty.
    pub(crate) fn consume(&mut self, n: usize, pool: &mut BufferPool) {
        self.written += n;
        let Some(buf) = self.buf.as_mut() else {
            return;
        };
        if self.written >= buf.len() {
            if let Some(buf) = self.buf.take() {
                pool.put(buf);
            }
            self.buffer_returned();
        } else if self.written >= COMPACT_AFTER && self.written * 2 >= buf.len() {
            // A peer that always leaves a little unread must not make the buffer keep every
            // byte ever sent: drop the written part once it is most of the buffer.
            buf.drain(..self.written);
            #[cfg(feature = "tls")]
            if let Some(framing) = framing_in(&mut self.extras) {
                framing.shift(self.written);
            }
            self.written = 0;
        }
    }

    /// Capacity of the underlying buffer (for tests).
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.buf.as_ref().map_or(0, Vec::capacity)
    }

    /// Appends `bytes` to the backlog (in a buffer from the pool if it has none): as they are,
    /// or into its TLS records.
    #[inline(always)]
    fn extend(&mut self, bytes: &[u8], pool: &mut BufferPool) {
        let buf = self.buf.get_or_insert_with(|| pool.take());
        #[cfg(feature = "tls")]
        if let Some(framing) = framing_in(&mut self.extras) {
            framing.append(buf, bytes);
            return;
        }
        buf.extend_from_slice(bytes);
    }

    /// The buffer went back to the pool: nothing is written of the next one, nor framed.
    fn buffer_returned(&mut self) {
        self.written = 0;
        #[cfg(feature = "tls")]
        if let Some(framing) = self.framing_mut() {
            framing.reset();
        }
    }

    /// Appends raw bytes (the handshake response).
    pub(crate) fn push_raw(&mut self, bytes: &[u8], pool: &mut BufferPool) {
        self.extend(bytes, pool);
    }

    /// Gives the buffer back (the connection is going away).
    pub(crate) fn release(&mut self, pool: &mut BufferPool) {
        if let Some(buf) = self.buf.take() {
            pool.put(buf);
        }
        self.buffer_returned();
    }

    /// Queues one frame; the caller has checked the phase and the caps.
    #[inline]
    fn push_frame(&mut self, opcode: OpCode, payload: &[u8], pool: &mut BufferPool) {
        self.push_frame_rsv(opcode, 0, payload, pool);
    }

    /// Queues one frame of an outbound connection: masked with a fresh key (with RSV bits; RSV1:
    /// compressed). Outbound connections keep rustls' record layer, so there is no framing.
    #[inline(never)]
    fn push_masked(&mut self, opcode: OpCode, rsv: u8, payload: &[u8], ctx: &mut Sending<'_>) {
        let key = ctx.rng.next_key();
        let buf = self.buf.get_or_insert_with(|| ctx.pool.take());
        let mut header = [0u8; MAX_HEADER_LEN];
        let n = FrameHeader::new(true, opcode, payload.len() as u64)
            .with_rsv(rsv)
            .with_mask(key)
            .encode(&mut header);
        buf.reserve(n + payload.len());
        buf.extend_from_slice(&header[..n]);
        let start = buf.len();
        buf.extend_from_slice(payload);
        apply_mask(&mut buf[start..], key, 0);
    }

    /// Queues one frame with RSV bits (RSV1: compressed).
    #[inline]
    fn push_frame_rsv(&mut self, opcode: OpCode, rsv: u8, payload: &[u8], pool: &mut BufferPool) {
        let buf = self.buf.get_or_insert_with(|| pool.take());
        let mut header = [0u8; MAX_HEADER_LEN];
        let n = FrameHeader::new(true, opcode, payload.len() as u64)
            .with_rsv(rsv)
            .encode(&mut header);
        #[cfg(feature = "tls")]
        if let Some(framing) = framing_in(&mut self.extras) {
            framing.append_frame(buf, &header[..n], payload);
            return;
        }
        buf.reserve(n + payload.len());
        buf.extend_from_slice(&header[..n]);
        buf.extend_from_slice(payload);
    }

    /// Whether `len` more bytes may be queued; past the hard cap, applies the policy (and
    /// counts it) and says why not.
    #[inline]
    pub(crate) fn admit(&mut self, len: usize, ctx: &mut Sending<'_>) -> Result<(), SendStatus> {
        if self.overflowed {
            return Err(SendStatus::Dropped);
        }
        if self.stale {
            stats::add(&ctx.counters.messages_dropped, 1);
            return Err(SendStatus::Dropped);
        }
        if self.buffered_len() + len > ctx.backpressure.max_len {
            if ctx.backpressure.policy == BackpressurePolicy::Close {
                self.overflowed = true;
                stats::add(&ctx.counters.closed_slow, 1);
            } else {
                stats::add(&ctx.counters.messages_dropped, 1);
            }
            return Err(SendStatus::Dropped);
        }
        Ok(())
    }

    #[inline]
    fn status(&self, ctx: &Sending<'_>) -> SendStatus {
        if self.buffered_len() > ctx.backpressure.pause_len {
            SendStatus::Backpressure
        } else {
            SendStatus::Sent
        }
    }

    /// Queues a data or control frame, applying the backlog caps; a data message is
    /// compressed when the connection negotiated permessage-deflate and it is long enough.
    #[inline(always)]
    pub(crate) fn send(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        ctx: &mut Sending<'_>,
    ) -> SendStatus {
        // Admitted on its uncompressed length (plus what deflate may add to incompressible
        // data), before compressing: a compressor with context takeover must not advance
        // over a message that is then dropped.
        if let Err(status) = self.admit(payload.len() + MAX_HEADER_LEN + 64, ctx) {
            return status;
        }
        stats::add(&ctx.counters.frames_sent[opcode_slot(opcode)], 1);
        if self.is_plain() {
            self.push_plain(opcode, payload, ctx.pool);
        } else {
            self.push_special(opcode, payload, ctx);
        }
        self.status(ctx)
    }

    /// Whether frames go out as they are: no compression, no mask, no TLS records.
    #[inline(always)]
    fn is_plain(&self) -> bool {
        // A connection without extras has neither compression nor TLS records; a TLS one
        // without records (outbound, through rustls) sends its frames as they are.
        #[cfg(feature = "tls")]
        let plain = self
            .extras
            .as_deref()
            .is_none_or(|e| e.compression.is_none() && e.framing.is_none());
        #[cfg(not(feature = "tls"))]
        let plain = self
            .extras
            .as_deref()
            .is_none_or(|e| e.compression.is_none());
        plain && !self.masked
    }

    /// The hot path of [`send`](Self::send): an unmasked, uncompressed frame appended to the
    /// plaintext backlog, a short one's 2-byte header written without the general encoder.
    #[inline(always)]
    fn push_plain(&mut self, opcode: OpCode, payload: &[u8], pool: &mut BufferPool) {
        if payload.len() > 125 {
            self.push_frame(opcode, payload, pool);
            return;
        }
        let buf = self.buf.get_or_insert_with(|| pool.take());
        buf.reserve(2 + payload.len());
        // FIN and the opcode; no mask bit, the length in the second byte (RFC 6455 §5.2).
        buf.extend_from_slice(&[0x80 | opcode as u8, payload.len() as u8]);
        buf.extend_from_slice(payload);
    }

    /// [`send`](Self::send) on a connection that compresses, masks or frames TLS records.
    #[inline(never)]
    fn push_special(&mut self, opcode: OpCode, payload: &[u8], ctx: &mut Sending<'_>) {
        if self.compression().is_some() && matches!(opcode, OpCode::Text | OpCode::Binary) {
            self.push_compressible(opcode, payload, ctx);
        } else if self.masked {
            self.push_masked(opcode, 0, payload, ctx);
        } else {
            self.push_frame(opcode, payload, ctx.pool);
        }
    }

    /// Queues a data message on a connection with compression: compressed when long enough.
    /// Kept out of line so that the uncompressed path of [`send`](Self::send) stays small.
    #[inline(never)]
    fn push_compressible(&mut self, opcode: OpCode, payload: &[u8], ctx: &mut Sending<'_>) {
        if let Some(side) = self.compression_mut()
            && payload.len() >= ctx.deflate.config().min_compress_len
            && ctx.deflate.compress(side, payload) == SendAs::Compressed
        {
            let compressed = std::mem::take(&mut ctx.deflate.out);
            if self.masked {
                self.push_masked(opcode, RSV1, &compressed, ctx);
            } else {
                self.push_frame_rsv(opcode, RSV1, &compressed, ctx.pool);
            }
            ctx.deflate.out = compressed;
        } else if self.masked {
            self.push_masked(opcode, 0, payload, ctx);
        } else {
            self.push_frame(opcode, payload, ctx.pool);
        }
    }

    /// Queues an already encoded frame with the RSV1 of a compressed message.
    pub(crate) fn send_compressed(
        &mut self,
        opcode: OpCode,
        compressed: &[u8],
        ctx: &mut Sending<'_>,
    ) -> SendStatus {
        if let Err(status) = self.admit(compressed.len() + MAX_HEADER_LEN, ctx) {
            return status;
        }
        stats::add(&ctx.counters.frames_sent[opcode_slot(opcode)], 1);
        if self.masked {
            self.push_masked(opcode, RSV1, compressed, ctx);
        } else {
            self.push_frame_rsv(opcode, RSV1, compressed, ctx.pool);
        }
        self.status(ctx)
    }

    /// Whether an encoded frame may be written to the socket at once, without queuing it
    /// first: nothing is queued (so nothing must go before it), and frames go out as they are
    /// (no compression, mask or TLS records). The caps still apply ([`admit`](Self::admit)).
    #[inline]
    pub(crate) fn writes_through(&self) -> bool {
        self.buf.is_none() && self.sealed_len == 0 && self.is_plain()
    }

    /// Counts a frame written at once (see [`writes_through`](Self::writes_through)) of which
    /// the socket took `written` bytes; what it did not take is queued, to follow with the
    /// next write (a frame is never cut short).
    pub(crate) fn wrote_through(
        &mut self,
        opcode: OpCode,
        frame: &[u8],
        written: usize,
        ctx: &mut Sending<'_>,
    ) -> SendStatus {
        stats::add(&ctx.counters.frames_sent[opcode_slot(opcode)], 1);
        stats::add(&ctx.counters.bytes_sent, written as u64);
        if written < frame.len() {
            self.extend(&frame[written..], ctx.pool);
        }
        self.status(ctx)
    }

    /// Queues an already encoded frame (a published message), applying the backlog caps. Not
    /// for a masked outbox: the frame is a server's.
    pub(crate) fn send_encoded(
        &mut self,
        opcode: OpCode,
        frame: &[u8],
        ctx: &mut Sending<'_>,
    ) -> SendStatus {
        if let Err(status) = self.admit(frame.len(), ctx) {
            return status;
        }
        stats::add(&ctx.counters.frames_sent[opcode_slot(opcode)], 1);
        self.extend(frame, ctx.pool);
        self.status(ctx)
    }
}

/// The session's control frames (auto-pong, close echo, our close, keepalive ping) queued on a
/// connection's outgoing buffer, and the frames received counted, by opcode.
pub(crate) struct ControlSink<'a> {
    pub(crate) outbox: &'a mut Outbox,
    pub(crate) pool: &'a mut BufferPool,
    pub(crate) counters: &'a Counters,
    pub(crate) rng: &'a mut WorkerRng,
}

impl<'a> ControlSink<'a> {
    /// The sink for `outbox`, with the worker's pool and counters.
    pub(crate) fn new(outbox: &'a mut Outbox, sending: Sending<'a>) -> ControlSink<'a> {
        ControlSink {
            outbox,
            pool: sending.pool,
            counters: sending.counters,
            rng: sending.rng,
        }
    }
}

impl Output for ControlSink<'_> {
    fn control(&mut self, opcode: OpCode, frame: &[u8]) {
        stats::add(&self.counters.frames_sent[opcode_slot(opcode)], 1);
        if opcode == OpCode::Ping {
            // The session pings only for keepalive.
            stats::add(&self.counters.pings_sent, 1);
        }
        self.outbox.push_raw(frame, self.pool);
    }

    fn mask_key(&mut self) -> [u8; 4] {
        self.rng.next_key()
    }

    #[inline]
    fn frame_received(&mut self, header: &FrameHeader) {
        stats::add(
            &self.counters.frames_received[opcode_slot(header.opcode)],
            1,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::Local;

    #[test]
    fn a_backlog_that_never_empties_stays_bounded() {
        let mut local = Local::detached(crate::Config::default());
        let mut outbox = Outbox::new();
        let payload = [7u8; 1000];
        for _ in 0..100_000 {
            assert_eq!(
                outbox.send(OpCode::Binary, &payload, &mut local.sending()),
                SendStatus::Sent
            );
            // The socket takes all but the last byte each time.
            let n = outbox.buffered_len() - 1;
            outbox.consume(n, &mut local.pool);
        }
        assert_eq!(outbox.buffered_len(), 1);
        assert!(outbox.capacity() < 1 << 20, "{}", outbox.capacity());
    }

    /// The short-frame path writes what the general encoder writes, for every opcode a
    /// handler sends and every length on both sides of the 125-byte switch (and of 65,535,
    /// where the header grows again).
    #[test]
    fn plain_frames_match_the_general_encoder() {
        let mut local = Local::detached(crate::Config::default());
        for opcode in [OpCode::Text, OpCode::Binary, OpCode::Ping, OpCode::Pong] {
            // Control frames carry at most 125 bytes (`Ws::ping` cuts them there).
            let longest = if opcode.is_control() { 125 } else { 300 };
            for len in (0..=longest).chain([65_535, 65_536]) {
                if len > longest && opcode.is_control() {
                    continue;
                }
                let payload: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
                let mut outbox = Outbox::new();
                outbox.send(opcode, &payload, &mut local.sending());
                let mut expected = Vec::new();
                let header = FrameHeader::new(true, opcode, len as u64);
                lanes_proto::session::encode_frame(
                    &mut expected,
                    lanes_proto::Role::Server,
                    header,
                    &payload,
                    [0; 4],
                );
                assert_eq!(outbox.pending(), &expected[..], "{opcode:?}, {len} bytes");
                outbox.release(&mut local.pool);
            }
        }
    }
}
