//! The unmasking kernel against the byte-at-a-time reference, with the input split into pieces
//! at fuzzer-chosen points (as across reads or a ring buffer's wrap) and at any alignment.
#![no_main]

use lanes_proto::mask::{apply_mask, apply_mask_baseline, apply_mask_bytewise};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if input.len() < 7 {
        return;
    }
    let key = [input[0], input[1], input[2], input[3]];
    let phase = usize::from(input[4]);
    let align = usize::from(input[5] % 16);
    let piece = usize::from(input[6]).max(1) * 7;
    let data = &input[7..];

    let mut reference = data.to_vec();
    let expected_phase = apply_mask_bytewise(&mut reference, key, phase);
    assert_eq!(expected_phase, (phase + data.len()) % 4);

    // Whole, at an offset so the slice starts at every alignment.
    let mut storage = vec![0u8; data.len() + align];
    storage[align..].copy_from_slice(data);
    assert_eq!(apply_mask(&mut storage[align..], key, phase), expected_phase);
    assert_eq!(&storage[align..], &reference[..]);

    let mut baseline = data.to_vec();
    assert_eq!(apply_mask_baseline(&mut baseline, key, phase), expected_phase);
    assert_eq!(baseline, reference);

    // In pieces, carrying the phase.
    let mut pieces = data.to_vec();
    let mut p = phase % 4;
    for chunk in pieces.chunks_mut(piece) {
        p = apply_mask(chunk, key, p);
    }
    assert_eq!(p, expected_phase);
    assert_eq!(pieces, reference);
});
