//! UTF-8 validation of text payloads, whole or incremental across fragments and reads.
//!
//! The bulk of every chunk is checked with `simdutf8` (SIMD with runtime CPU detection, its own
//! ASCII fast path); only a character cut by a chunk boundary (at most 3 bytes) is carried over
//! and finished on the next chunk. Validation fails fast: as soon as a byte makes the input
//! impossible to complete as UTF-8, [`Utf8Validator::feed`] fails, even if the message or frame
//! is not finished (Autobahn 6.4.x checks this). A valid but unfinished character at the end of
//! a chunk is not an error until [`Utf8Validator::finish`].

use crate::error::ProtocolError;

/// Validates a complete text payload and returns it as `&str`.
///
/// ```
/// use lanes_proto::utf8::validate;
/// assert_eq!(validate("héllo".as_bytes()), Ok("héllo"));
/// assert!(validate(b"\xff").is_err());
/// ```
pub fn validate(bytes: &[u8]) -> Result<&str, ProtocolError> {
    simdutf8::basic::from_utf8(bytes).map_err(|_| ProtocolError::InvalidUtf8)
}

/// Incremental UTF-8 validator for a text message that arrives in pieces.
///
/// It holds at most the 3 bytes of one unfinished character; it never copies the rest.
///
/// ```
/// use lanes_proto::utf8::Utf8Validator;
/// let text = "κόσμε".as_bytes();
/// let mut v = Utf8Validator::new();
/// v.feed(&text[..3]).unwrap(); // ends in the middle of 'ό'
/// v.feed(&text[3..]).unwrap();
/// v.finish().unwrap();
///
/// // Fails at the first impossible byte, before the message ends:
/// let mut v = Utf8Validator::new();
/// assert!(v.feed(&[0xce, 0x41]).is_err());
/// ```
#[derive(Debug, Clone, Default)]
pub struct Utf8Validator {
    /// The bytes of an unfinished character carried from the previous chunk.
    partial: [u8; 4],
    /// How many bytes of `partial` are in use (0 when the last chunk ended on a boundary).
    partial_len: u8,
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub const fn new() -> Utf8Validator {
        Utf8Validator {
            partial: [0; 4],
            partial_len: 0,
        }
    }

    /// Whether the bytes fed so far end in the middle of a character.
    pub const fn is_mid_char(&self) -> bool {
        self.partial_len != 0
    }

    /// Validates the next chunk of the message.
    ///
    /// Fails as soon as the input seen so far can no longer be the start of valid UTF-8. After an
    /// error the validator's state is unspecified; call [`reset`](Self::reset) before reuse.
    pub fn feed(&mut self, mut input: &[u8]) -> Result<(), ProtocolError> {
        if self.partial_len != 0 {
            input = self.complete_partial(input)?;
            if self.partial_len != 0 {
                // The whole chunk went into the still unfinished character.
                return Ok(());
            }
        }
        let bulk_len = start_of_unfinished_tail(input);
        let (bulk, tail) = input.split_at(bulk_len);
        validate(bulk)?;
        if !tail.is_empty() {
            if !is_valid_prefix(tail) {
                return Err(ProtocolError::InvalidUtf8);
            }
            self.partial[..tail.len()].copy_from_slice(tail);
            self.partial_len = tail.len() as u8;
        }
        Ok(())
    }

    /// Ends the message: an unfinished character at the end is an error. Resets the validator.
    pub fn finish(&mut self) -> Result<(), ProtocolError> {
        let unfinished = self.is_mid_char();
        self.reset();
        if unfinished {
            Err(ProtocolError::InvalidUtf8)
        } else {
            Ok(())
        }
    }

    /// Forgets any carried bytes, ready for a new message.
    pub fn reset(&mut self) {
        self.partial_len = 0;
    }

    /// Moves bytes from `input` into the carried character until it is complete or `input` runs
    /// out; returns the rest of `input`.
    fn complete_partial<'a>(&mut self, input: &'a [u8]) -> Result<&'a [u8], ProtocolError> {
        let have = usize::from(self.partial_len);
        let want = sequence_len(self.partial[0]);
        let take = want.saturating_sub(have).min(input.len());
        self.partial[have..have + take].copy_from_slice(&input[..take]);
        let now = have + take;
        match core::str::from_utf8(&self.partial[..now]) {
            Ok(_) => self.partial_len = 0,
            Err(e) if e.error_len().is_none() => self.partial_len = now as u8,
            Err(_) => return Err(ProtocolError::InvalidUtf8),
        }
        Ok(&input[take..])
    }
}

/// The length of the sequence that `lead` starts, judged by its bit pattern alone (1 for ASCII
/// and, harmlessly, for stray continuation bytes; 0 for bytes that never start a sequence).
const fn sequence_len(lead: u8) -> usize {
    match lead {
        0x00..=0x7f => 1,
        0x80..=0xbf => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        0xf8..=0xff => 0,
    }
}

/// Index where a character that `input` does not finish begins, or `input.len()` when the input
/// ends on a character boundary (or is invalid in a way the bulk check will catch).
fn start_of_unfinished_tail(input: &[u8]) -> usize {
    let len = input.len();
    for back in 1..=len.min(3) {
        let byte = input[len - back];
        if byte & 0xc0 != 0x80 {
            return if sequence_len(byte) > back {
                len - back
            } else {
                len
            };
        }
    }
    len
}

/// Whether `tail` (1 to 3 bytes) can still become a valid character.
fn is_valid_prefix(tail: &[u8]) -> bool {
    match core::str::from_utf8(tail) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The index of the first byte at which `input` can no longer be valid UTF-8, or `None` when
    /// it is valid or a valid prefix. Derived from `std`'s error report: an invalid sequence
    /// starting at `valid_up_to` with `error_len` bytes of a valid prefix fails at the byte after
    /// that prefix when it started with a possible lead byte, else at the lead itself.
    fn std_first_impossible(input: &[u8]) -> Option<usize> {
        match core::str::from_utf8(input) {
            Ok(_) => None,
            Err(e) => {
                let at = e.valid_up_to();
                let len = e.error_len()?;
                if (0xc2..=0xf4).contains(&input[at]) {
                    Some(at + len)
                } else {
                    Some(at)
                }
            }
        }
    }

    /// Feeds `chunks` and returns the stream offset of the chunk byte at which it failed (found
    /// by feeding that failing chunk again byte by byte), or whether `finish` passed.
    fn run_chunks(chunks: &[&[u8]]) -> Result<(), usize> {
        let mut v = Utf8Validator::new();
        let mut offset = 0;
        for chunk in chunks {
            let before = v.clone();
            if v.feed(chunk).is_err() {
                let mut one = before;
                for (i, byte) in chunk.iter().enumerate() {
                    if one.feed(&[*byte]).is_err() {
                        return Err(offset + i);
                    }
                }
                panic!("chunk failed whole but not byte by byte");
            }
            offset += chunk.len();
        }
        v.finish().map_err(|_| usize::MAX)
    }

    fn check_against_std(input: &[u8]) {
        let expected_ok = core::str::from_utf8(input).is_ok();
        let impossible = std_first_impossible(input);
        // Whole.
        assert_eq!(validate(input).is_ok(), expected_ok);
        let whole = run_chunks(&[input]);
        assert_eq!(whole.is_ok(), expected_ok, "{input:x?}");
        // Every split point into two chunks, and one byte at a time.
        for split in 0..=input.len() {
            let (a, b) = input.split_at(split);
            let got = run_chunks(&[a, b]);
            assert_eq!(got.is_ok(), expected_ok, "{input:x?} split {split}");
            if let Some(at) = impossible {
                assert_eq!(got, Err(at), "{input:x?} split {split}");
            }
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        let got = run_chunks(&bytes);
        match impossible {
            Some(at) => assert_eq!(got, Err(at), "{input:x?} byte by byte"),
            None if expected_ok => assert_eq!(got, Ok(())),
            // Valid prefix with an unfinished last character: fails only at finish.
            None => assert_eq!(got, Err(usize::MAX)),
        }
    }

    #[test]
    fn known_cases() {
        let cases: &[&[u8]] = &[
            b"",
            b"Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!",
            "κόσμε".as_bytes(),
            b"\xf0\x90\x80\x80", // U+10000
            b"\xf4\x8f\xbf\xbf", // U+10FFFF
            b"\xf4\x90\x80\x80", // > U+10FFFF
            b"\xed\xa0\x80",     // surrogate U+D800
            b"\xed\x9f\xbf",     // U+D7FF, valid
            b"\xc0\xaf",         // overlong '/'
            b"\xe0\x80\xaf",     // overlong
            b"\xf0\x80\x80\xaf", // overlong
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
            b"\x80",
            b"\xbf",
            b"\xfe",
            b"\xff",
            b"\xce",               // unfinished at end
            b"\xe1\xbd",           // unfinished at end
            b"\xf0\x9f\x98",       // unfinished at end
            b"a\xf0\x9f\x98\x80b", // emoji inside ASCII
            b"\xce\xbaa\xce",
        ];
        for case in cases {
            check_against_std(case);
        }
    }

    #[test]
    fn long_inputs_cross_simd_blocks() {
        let mut text = "ascii only ".repeat(20).into_bytes();
        text.extend("mixed κόσμε 😀 ∑ ".repeat(20).as_bytes());
        check_against_std(&text);
        let mut bad = text.clone();
        bad[150] = 0xff;
        check_against_std(&bad);
        let mut cut = text.clone();
        cut.truncate(text.len() - 2); // ends inside the trailing space? keep as is
        check_against_std(&cut);
    }

    fn utf8ish_bytes() -> impl Strategy<Value = Vec<u8>> {
        // Mostly bytes that matter for UTF-8 (leads, continuations, boundaries), some ASCII.
        let byte = prop_oneof![
            0x00u8..0x80,
            0x80u8..0xc0,
            0xc0u8..0xe0,
            0xe0u8..0xf0,
            0xf0u8..0xf8,
            0xf8u8..=0xff,
        ];
        proptest::collection::vec(byte, 0..24)
    }

    fn valid_text() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<char>(), 0..16)
            .prop_map(|chars| chars.into_iter().collect::<String>().into_bytes())
    }

    proptest! {
        #[test]
        fn random_bytes_match_std(input in utf8ish_bytes()) {
            check_against_std(&input);
        }

        #[test]
        fn random_text_matches_std(input in valid_text()) {
            check_against_std(&input);
        }

        #[test]
        fn random_text_with_one_byte_changed(
            input in valid_text(), at in any::<prop::sample::Index>(), byte in any::<u8>()
        ) {
            let mut input = input;
            if !input.is_empty() {
                let i = at.index(input.len());
                input[i] = byte;
            }
            check_against_std(&input);
        }
    }
}
