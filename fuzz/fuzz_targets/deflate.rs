//! permessage-deflate, two oracles.
//!
//! Inflating arbitrary bytes: whatever the input, the outcome (bytes or error) is the same
//! whether the message arrives whole or cut into fuzzer-sized pieces, and no message yields
//! more than the limit.
//!
//! Round trip: the input, cut into messages, is compressed with fuzzer-chosen window bits,
//! level, memLevel and context setting, and must inflate back to itself piece by piece.
#![no_main]

use lanes_proto::ProtocolError;
use lanes_proto::deflate::{DeflateConfig, Deflater, Inflater, SendAs};
use libfuzzer_sys::fuzz_target;

const LIMIT: u64 = 64 << 10;

fn inflate(inflater: &mut Inflater, pieces: &[&[u8]]) -> Result<Vec<u8>, ProtocolError> {
    let mut out = Vec::new();
    for piece in pieces {
        inflater.handle_data(piece, &mut out)?;
    }
    inflater.handle_message_end(&mut out)?;
    Ok(out)
}

fuzz_target!(|input: &[u8]| {
    let Some((&[a, b], data)) = input.split_first_chunk::<2>() else {
        return;
    };
    let piece_len = usize::from(a % 31) + 1;

    // Arbitrary input, whole and in pieces: same outcome, within the limit.
    let mut whole = Inflater::new(15, false, LIMIT);
    let mut split = Inflater::new(15, false, LIMIT);
    let pieces: Vec<&[u8]> = data.chunks(piece_len).collect();
    let whole_result = inflate(&mut whole, &[data]);
    let split_result = inflate(&mut split, &pieces);
    match (&whole_result, &split_result) {
        (Ok(x), Ok(y)) => {
            assert_eq!(x, y);
            assert!(x.len() as u64 <= LIMIT);
        }
        (Err(x), Err(y)) => assert_eq!(x, y),
        _ => panic!("whole {whole_result:?} but split {split_result:?}"),
    }

    // Round trip: messages separated by 0xff bytes.
    let config = DeflateConfig {
        level: b % 10,
        mem_level: (b / 10) % 9 + 1,
        min_compress_len: usize::from(a & 0x80),
        ..DeflateConfig::default()
    };
    let window_bits = 8 + (a >> 5) % 8;
    let no_context_takeover = a & 0x40 != 0;
    let mut deflater = Deflater::new(window_bits, no_context_takeover, &config);
    let mut inflater = Inflater::new(window_bits, no_context_takeover, LIMIT);
    for message in data.split(|&byte| byte == 0xff) {
        let mut compressed = Vec::new();
        match deflater.compress(message, &mut compressed) {
            SendAs::Uncompressed => assert!(compressed.is_empty()),
            SendAs::Compressed => {
                let pieces: Vec<&[u8]> = compressed.chunks(piece_len).collect();
                assert_eq!(inflate(&mut inflater, &pieces).as_deref(), Ok(message));
            }
        }
    }
});
