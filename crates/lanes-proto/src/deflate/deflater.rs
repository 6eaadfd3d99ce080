//! Compressing one message at a time (RFC 7692 §7.2.1).

use zlib_rs::{DeflateFlush, Method, Status, Strategy};

use super::SendAs;
use super::TRAILER;
use super::config::{DeflateConfig, MIN_COMPRESS_WINDOW_BITS, clamp_window_bits};

/// The compressor for the messages one end sends.
///
/// Each call to [`compress`](Self::compress) turns one whole message into the payload to send:
/// raw deflate, flushed with an empty stored block whose `00 00 ff ff` is then removed (RFC 7692
/// §7.2.1). With context takeover the LZ77 window carries over to the next message, so the
/// peer must see every compressed message in order; without it the stream is reset after each
/// message, so one `Deflater` may serve any number of connections in turn.
pub struct Deflater {
    stream: zlib_rs::Deflate,
    no_context_takeover: bool,
    min_compress_len: usize,
}

impl Deflater {
    /// A compressor with a window of at most `window_bits` (8..=15; 8 compresses with 9, as
    /// zlib does, and values outside the range act as the nearest bound) that resets after each
    /// message when `no_context_takeover`, with level, memLevel and threshold from `config`.
    pub fn new(window_bits: u8, no_context_takeover: bool, config: &DeflateConfig) -> Deflater {
        let window_bits = clamp_window_bits(window_bits).max(MIN_COMPRESS_WINDOW_BITS);
        let stream = zlib_rs::Deflate::new_with_config(zlib_rs::DeflateConfig {
            level: i32::from(config.level.min(9)),
            method: Method::Deflated,
            // Negative window bits: raw deflate, no zlib header or checksum.
            window_bits: -i32::from(window_bits),
            mem_level: i32::from(config.mem_level.clamp(1, 9)),
            strategy: Strategy::Default,
        });
        Deflater {
            stream,
            no_context_takeover,
            min_compress_len: config.min_compress_len,
        }
    }

    /// Compresses one whole message and appends the payload to send to `out`, or leaves `out`
    /// as it is and says to send the message uncompressed.
    ///
    /// A message is sent uncompressed when it is shorter than
    /// [`DeflateConfig::min_compress_len`]; without context takeover also when compressing
    /// does not make it shorter. It never fails: should the compressor report an error (it
    /// only does on a bug), the stream is reset and the message goes uncompressed, which the
    /// peer can always read.
    ///
    /// ```
    /// use lanes_proto::deflate::{DeflateConfig, Deflater, SendAs};
    /// // Level 6 (zlib's default) gives the RFC's bytes; level 1 encodes the same differently.
    /// let config = DeflateConfig { level: 6, min_compress_len: 0, ..DeflateConfig::default() };
    /// let mut deflater = Deflater::new(15, false, &config);
    /// let mut out = Vec::new();
    /// // RFC 7692 §7.2.3.1 and §7.2.3.2: "Hello", then "Hello" again with the window shared.
    /// assert_eq!(deflater.compress(b"Hello", &mut out), SendAs::Compressed);
    /// assert_eq!(out, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
    /// out.clear();
    /// assert_eq!(deflater.compress(b"Hello", &mut out), SendAs::Compressed);
    /// assert_eq!(out, [0xf2, 0x00, 0x11, 0x00, 0x00]);
    /// ```
    pub fn compress(&mut self, message: &[u8], out: &mut Vec<u8>) -> SendAs {
        if message.len() < self.min_compress_len {
            return SendAs::Uncompressed;
        }
        if message.is_empty() {
            // An empty stored block, whose 00 00 ff ff the receiver adds (RFC 7692 §7.2.3.6).
            // zlib refuses a second sync flush with no input in between, so the compressor
            // is not asked; its window is unchanged either way.
            if self.no_context_takeover {
                return SendAs::Uncompressed;
            }
            out.push(0x00);
            return SendAs::Compressed;
        }
        let start = out.len();
        let flushed = self.deflate_into(message, out);
        let compressed_len = out.len() - start;
        if !flushed || !out.ends_with(&TRAILER) || compressed_len < TRAILER.len() {
            out.truncate(start);
            self.stream.reset();
            return SendAs::Uncompressed;
        }
        out.truncate(out.len() - TRAILER.len());
        if self.no_context_takeover {
            self.stream.reset();
            if out.len() - start >= message.len() {
                out.truncate(start);
                return SendAs::Uncompressed;
            }
        }
        SendAs::Compressed
    }

    /// Whether this compressor resets after each message.
    pub const fn is_no_context_takeover(&self) -> bool {
        self.no_context_takeover
    }

    /// Forgets the LZ77 window, so that the next message is compressed on its own. The peer
    /// needs no notice: a message that refers to nothing before it is always readable.
    pub fn reset(&mut self) {
        self.stream.reset();
    }

    /// Runs the compressor over `input` with a sync flush, appending to `out`. False on error.
    fn deflate_into(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> bool {
        // Room for the whole output in one pass in almost every case: incompressible data
        // grows by 5 bytes per stored block of up to 64 KiB, plus the flush.
        let mut room = input.len() + input.len() / 64 + 64;
        loop {
            let at = out.len();
            out.resize(at + room, 0);
            let (in_before, out_before) = (self.stream.total_in(), self.stream.total_out());
            let status = self
                .stream
                .compress(input, &mut out[at..], DeflateFlush::SyncFlush);
            let consumed = (self.stream.total_in() - in_before) as usize;
            let produced = (self.stream.total_out() - out_before) as usize;
            out.truncate(at + produced);
            input = input.get(consumed..).unwrap_or_default();
            match status {
                Err(_) => return false,
                // All input taken and room left over: the flush is complete.
                Ok(_) if input.is_empty() && produced < room => return true,
                Ok(Status::BufError) if consumed == 0 && produced == 0 => return false,
                Ok(_) => room = room.max(64) * 2,
            }
        }
    }
}

impl core::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Deflater")
            .field("no_context_takeover", &self.no_context_takeover)
            .field("min_compress_len", &self.min_compress_len)
            .finish_non_exhaustive()
    }
}
