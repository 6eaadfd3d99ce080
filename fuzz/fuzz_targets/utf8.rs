//! The incremental UTF-8 validator against `std::str::from_utf8`: the input is cut into chunks
//! at fuzzer-chosen sizes; the validator must accept exactly what std accepts, and must fail no
//! later than the chunk holding the first impossible byte.
#![no_main]

use lanes_proto::utf8::{Utf8Validator, validate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&cut, data)) = input.split_first() else {
        return;
    };
    let std_result = std::str::from_utf8(data);
    assert_eq!(validate(data).is_ok(), std_result.is_ok());

    // The offset of the first byte after which no continuation can make the input valid.
    let impossible_at = match std_result {
        Ok(_) => None,
        Err(e) => e.error_len().map(|len| {
            let at = e.valid_up_to();
            if (0xc2..=0xf4).contains(&data[at]) { at + len } else { at }
        }),
    };

    let chunk_len = usize::from(cut % 17) + 1;
    let mut validator = Utf8Validator::new();
    let mut offset = 0;
    let mut failed_in: Option<(usize, usize)> = None;
    for chunk in data.chunks(chunk_len) {
        if validator.feed(chunk).is_err() {
            failed_in = Some((offset, offset + chunk.len()));
            break;
        }
        offset += chunk.len();
    }
    match (impossible_at, failed_in) {
        (Some(at), Some((start, end))) => {
            assert!(start <= at && at < end, "failed in {start}..{end}, impossible at {at}")
        }
        (Some(at), None) => panic!("accepted up to the end, impossible byte at {at}"),
        (None, Some(range)) => panic!("failed in {range:?} on a valid prefix"),
        (None, None) => assert_eq!(validator.finish().is_ok(), std_result.is_ok()),
    }
});
