//! Masking and unmasking of frame payloads (RFC 6455 §5.3).
//!
//! Byte `i` of a payload is XORed with byte `i mod 4` of the 4-byte masking key. The same
//! operation masks and unmasks. Both functions take a *phase*, the position in the key of the
//! first byte of `buf`, and return the phase for the byte after it, so a payload split across
//! reads, or across the wrap of a ring buffer, is unmasked piece by piece in place:
//!
//! ```
//! use lanes_proto::mask::apply_mask;
//! let key = [0x37, 0xfa, 0x21, 0x3d];
//! let mut whole = *b"Hello";
//! apply_mask(&mut whole, key, 0);
//!
//! let mut split = *b"Hello";
//! let phase = apply_mask(&mut split[..3], key, 0);
//! assert_eq!(phase, 3);
//! apply_mask(&mut split[3..], key, phase);
//! assert_eq!(split, whole);
//! assert_eq!(whole, [0x7f, 0x9f, 0x4d, 0x51, 0x58]); // RFC 6455 §5.7
//! ```

/// Bytes handled per iteration of the wide loop: eight 64-bit words, which the compiler turns
/// into vector XORs (SSE2 on every x86-64, AVX2 where detected).
const BLOCK_LEN: usize = 64;

/// Payloads shorter than this skip the CPU feature check: the SSE2 loop is already as fast as
/// the call overhead allows.
#[cfg(target_arch = "x86_64")]
const AVX2_MIN_LEN: usize = 128;

/// XORs `buf` with `key`, starting at position `phase` (taken mod 4) of the key; returns the
/// phase after the last byte, `(phase + buf.len()) % 4`.
///
/// Works a 64-byte block at a time, then 8 bytes at a time, then byte by byte for the tail.
/// `chunks_exact_mut` plus `u64::from_ne_bytes` compiles to unaligned word loads and stores, so
/// any alignment of `buf` is fine; the compiler turns the block loop into vector XORs. On x86-64
/// CPUs with AVX2 (detected at run time), payloads of 128 bytes or more run the same code
/// compiled for AVX2, which doubles the vector width: the benchmark `benches/unmask.rs` measured
/// 4 KiB at about 0.70x memcpy with SSE2 and at memcpy speed with AVX2.
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], phase: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    if buf.len() >= AVX2_MIN_LEN && std::is_x86_feature_detected!("avx2") {
        // SAFETY: `apply_mask_avx2` only requires the CPU to support AVX2, which was just
        // checked at run time. Its body is safe code.
        #[allow(unsafe_code)]
        return unsafe { apply_mask_avx2(buf, key, phase) };
    }
    apply_mask_baseline(buf, key, phase)
}

/// [`apply_mask_baseline`] compiled with AVX2 enabled.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn apply_mask_avx2(buf: &mut [u8], key: [u8; 4], phase: usize) -> usize {
    apply_mask_baseline(buf, key, phase)
}

/// The word-at-a-time kernel without run-time CPU dispatch: the vector width is whatever the
/// crate was compiled for (SSE2 for the default x86-64 target). [`apply_mask`] is the one to
/// use; this one is public so that benchmarks can compare the two in one run.
#[inline(always)]
pub fn apply_mask_baseline(buf: &mut [u8], key: [u8; 4], phase: usize) -> usize {
    let phase = phase & 3;
    let next_phase = (phase + buf.len()) & 3;
    let rotated = rotate_key(key, phase);
    let word_key = u64::from_ne_bytes([
        rotated[0], rotated[1], rotated[2], rotated[3], rotated[0], rotated[1], rotated[2],
        rotated[3],
    ]);

    let mut blocks = buf.chunks_exact_mut(BLOCK_LEN);
    for block in &mut blocks {
        xor_words(block, word_key);
    }
    let rest = blocks.into_remainder();
    let mut words = rest.chunks_exact_mut(8);
    for word in &mut words {
        xor_word(word, word_key);
    }
    // Every block and word is a multiple of 4 bytes long, so the tail starts at key position 0
    // of the rotated key.
    for (i, byte) in words.into_remainder().iter_mut().enumerate() {
        *byte ^= rotated[i & 3];
    }
    next_phase
}

/// The plain reference: one byte at a time. Used by tests, fuzz targets and benchmarks as the
/// oracle for [`apply_mask`]; not meant for production use.
pub fn apply_mask_bytewise(buf: &mut [u8], key: [u8; 4], phase: usize) -> usize {
    let mut phase = phase & 3;
    for byte in buf.iter_mut() {
        *byte ^= key[phase];
        phase = (phase + 1) & 3;
    }
    phase
}

/// The key as seen from position `phase`: `[key[phase], key[phase + 1], ...]` (mod 4).
#[inline]
fn rotate_key(key: [u8; 4], phase: usize) -> [u8; 4] {
    u32::from_le_bytes(key)
        .rotate_right(8 * phase as u32)
        .to_le_bytes()
}

#[inline(always)]
fn xor_words(block: &mut [u8], word_key: u64) {
    for word in block.chunks_exact_mut(8) {
        xor_word(word, word_key);
    }
}

#[inline(always)]
fn xor_word(word: &mut [u8], word_key: u64) {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(word);
    word.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word_key).to_ne_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + 7) as u8).collect()
    }

    #[test]
    fn rotate_key_matches_definition() {
        let key = [1, 2, 3, 4];
        assert_eq!(rotate_key(key, 0), [1, 2, 3, 4]);
        assert_eq!(rotate_key(key, 1), [2, 3, 4, 1]);
        assert_eq!(rotate_key(key, 2), [3, 4, 1, 2]);
        assert_eq!(rotate_key(key, 3), [4, 1, 2, 3]);
    }

    /// Every length 0..=1100, every alignment 0..8 of the slice start, every phase 0..4.
    #[test]
    fn equals_reference_for_every_length_alignment_and_phase() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let source = pattern(1100 + 8);
        let mut fast = vec![0u8; source.len()];
        let mut slow = vec![0u8; source.len()];
        for len in 0..=1100 {
            for align in 0..8 {
                for phase in 0..4 {
                    fast.copy_from_slice(&source);
                    slow.copy_from_slice(&source);
                    let b = apply_mask_bytewise(&mut slow[align..align + len], key, phase);
                    // The dispatching entry point (AVX2 where the CPU has it) and the portable
                    // kernel, each against the reference.
                    let mut portable = source.clone();
                    let p = apply_mask_baseline(&mut portable[align..align + len], key, phase);
                    assert_eq!(p, b, "phase len={len} align={align} phase={phase}");
                    assert_eq!(
                        portable, slow,
                        "bytes len={len} align={align} phase={phase}"
                    );
                    let a = apply_mask(&mut fast[align..align + len], key, phase);
                    assert_eq!(a, b, "phase len={len} align={align} phase={phase}");
                    assert_eq!(fast, slow, "bytes len={len} align={align} phase={phase}");
                }
            }
        }
    }

    #[test]
    fn masking_twice_restores_the_input() {
        let key = [0xde, 0xad, 0xbe, 0xef];
        let original = pattern(333);
        let mut buf = original.clone();
        apply_mask(&mut buf, key, 2);
        assert_ne!(buf, original);
        apply_mask(&mut buf, key, 2);
        assert_eq!(buf, original);
    }

    proptest! {
        #[test]
        fn split_anywhere_equals_whole(
            data in proptest::collection::vec(any::<u8>(), 0..2000),
            key in any::<[u8; 4]>(),
            phase in 0usize..4,
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..5),
        ) {
            let mut whole = data.clone();
            apply_mask_bytewise(&mut whole, key, phase);
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
            points.push(0);
            points.push(data.len());
            points.sort_unstable();
            let mut pieces = data.clone();
            let mut p = phase;
            for pair in points.windows(2) {
                p = apply_mask(&mut pieces[pair[0]..pair[1]], key, p);
            }
            prop_assert_eq!(p, (phase + data.len()) % 4);
            prop_assert_eq!(pieces, whole);
        }
    }
}
