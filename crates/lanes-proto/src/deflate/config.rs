//! The server's permessage-deflate settings: what it asks for, what it allows, how hard it
//! compresses.

/// The smallest LZ77 window RFC 7692 lets a peer ask for: 2^8 bytes.
pub const MIN_WINDOW_BITS: u8 = 8;
/// The largest LZ77 window, and the default: 2^15 = 32 KiB.
pub const MAX_WINDOW_BITS: u8 = 15;
/// The smallest window zlib (and zlib-rs) can compress raw deflate with: 2^9 bytes. A window
/// of 8 bits is compressed with 9, as zlib itself does since 1.2.9 (see [`DeflateConfig`]).
pub const MIN_COMPRESS_WINDOW_BITS: u8 = 9;

/// How a server negotiates and uses permessage-deflate (RFC 7692).
///
/// `DeflateConfig::default()` leaves the extension off. Turn it on with
/// `DeflateConfig { enabled: true, ..DeflateConfig::default() }`, which gives: context takeover
/// both ways, 32 KiB windows, level 1, memLevel 8, and messages under 128 bytes sent as they
/// are.
///
/// What compression costs, per connection that negotiated it (zlib-rs, measured in
/// `src/deflate/BACKENDS.md`): a [`Deflater`](super::Deflater) keeps about 312 KiB resident
/// at 15 window bits and memLevel 8 (260 KiB at memLevel 1; 192 and 136 KiB at 9 window bits),
/// and an [`Inflater`](super::Inflater) about 47 KiB whatever its window. Compression also
/// lets an attacker who can add text to a message learn secrets in the same compressed
/// stream from its length (CRIME/BREACH): do not compress secrets together with
/// attacker-chosen text, or use `server_no_context_takeover`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateConfig {
    /// Whether to accept permessage-deflate at all. Default: `false`, so that memory and CPU
    /// per connection stay as they are unless the application asks for compression.
    pub enabled: bool,
    /// Always compress each message on its own (`server_no_context_takeover`), even when the
    /// client does not ask for it. Costs compression ratio on similar consecutive messages;
    /// lets a runtime share one [`Deflater`](super::Deflater) between all the connections of a
    /// thread, since no state carries from one message to the next. Default: `false` (the
    /// client can still ask for it, and then it applies).
    pub server_no_context_takeover: bool,
    /// Ask the client to compress each message on its own (`client_no_context_takeover`; RFC
    /// 7692 requires clients to support it). Lets a runtime drop or pool a connection's
    /// [`Inflater`](super::Inflater) between messages. Default: `false`.
    pub client_no_context_takeover: bool,
    /// The largest window our compressor uses, 8..=15 bits; a client's smaller
    /// `server_max_window_bits` wins. Values outside 8..=15 act as the nearest bound.
    /// Default: 15.
    ///
    /// zlib cannot compress raw deflate with an 8-bit window and silently uses 9 (zlib 1.2.9
    /// onwards, zlib-ng and zlib-rs alike, and so every zlib-based server); we do the same, so a
    /// peer that agreed to 8 gets back-references up to 512 bytes. Peers built on zlib inflate
    /// with at least 9 bits for this reason (the zlib manual says so).
    pub server_max_window_bits: u8,
    /// The largest window we ask the client to compress with, 8..=15 bits, sent as
    /// `client_max_window_bits` when the client said it supports the parameter (browsers do);
    /// when it did not, the offer is still accepted with 15. A client's own smaller value
    /// wins. Values outside 8..=15 act as the nearest bound. Default: 15.
    pub client_max_window_bits: u8,
    /// The compression level, 0 (stored, no compression) to 9 (smallest, slowest); values
    /// above 9 act as 9. Default: 1, by far the cheapest for small messages (measured in
    /// `src/deflate/BACKENDS.md`: 0.25 µs for a 1 KiB JSON message, 46 µs for 16 KiB of text,
    /// to 33% and 45% of their size). Level 2 makes text about a third smaller than level 1
    /// for twice the CPU; level 6 is 8 times slower than 2 for a few percent more.
    pub level: u8,
    /// zlib's memLevel, 1..=9: the compressor's symbol buffer is 2^(memLevel + 6) symbols, 7
    /// bytes each (memLevel 8: 112 KiB, memLevel 1: 896 bytes). Smaller values save up to
    /// about 50 KiB of resident memory per compressor and make messages longer than the buffer
    /// compress 2 to 6 times slower and larger, cut into more deflate blocks (measured). Values
    /// outside 1..=9 act as the nearest bound. Default: 8, zlib's own default.
    pub mem_level: u8,
    /// Messages shorter than this many bytes are sent uncompressed: below it the few bytes
    /// saved do not pay for the CPU time (about 2 µs per message when the stream is reset
    /// after each one). Default: 128.
    pub min_compress_len: usize,
}

impl Default for DeflateConfig {
    fn default() -> DeflateConfig {
        DeflateConfig {
            enabled: false,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: MAX_WINDOW_BITS,
            level: 1,
            mem_level: 8,
            min_compress_len: 128,
        }
    }
}

/// A window size clamped to what RFC 7692 allows (8..=15).
pub(crate) fn clamp_window_bits(bits: u8) -> u8 {
    bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS)
}
