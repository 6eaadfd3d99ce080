//! What a published message looks like on the broker: a 19-byte head (and the latest-value key,
//! if any) before the payload, the same for NATS and Redis.
//!
//! ```text
//! 0       magic 0x4C ('L')
//! 1       version 0x01
//! 2       flags: 0x01 binary (else text), 0x02 a latest-value key follows the head
//! 3..11   the origin node's id, u64 little-endian
//! 11..19  when it was published: microseconds since the Unix epoch, u64 little-endian
//! [19..21 the key's length, u16 little-endian; then the key, UTF-8]
//! then    the payload
//! ```
//!
//! Anything else on the bridge's subjects (another program publishing there, a newer version)
//! is refused by [`decode`] and counted, never delivered.

use lanes_proto::OpCode;

const MAGIC: u8 = 0x4C;
const VERSION: u8 = 0x01;
const BINARY: u8 = 0x01;
const KEYED: u8 = 0x02;
/// The head's length without a key.
pub(crate) const HEAD_LEN: usize = 19;

/// A decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Envelope<'a> {
    pub(crate) origin: u64,
    pub(crate) published_at_us: u64,
    pub(crate) opcode: OpCode,
    pub(crate) latest: Option<&'a str>,
    pub(crate) payload: &'a [u8],
}

/// Why bytes from the broker are not a message of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// Shorter than its head says, or not starting with our magic and version.
    Head,
    /// A text message or a key that is not UTF-8.
    Utf8,
}

/// Writes the envelope of a message into `out` (cleared first).
pub(crate) fn encode(
    out: &mut Vec<u8>,
    origin: u64,
    published_at_us: u64,
    opcode: OpCode,
    latest: Option<&str>,
    payload: &[u8],
) {
    out.clear();
    let key = latest.map(|k| &k.as_bytes()[..k.len().min(usize::from(u16::MAX))]);
    out.reserve(HEAD_LEN + key.map_or(0, |k| 2 + k.len()) + payload.len());
    let mut flags = 0;
    if opcode == OpCode::Binary {
        flags |= BINARY;
    }
    if key.is_some() {
        flags |= KEYED;
    }
    out.extend_from_slice(&[MAGIC, VERSION, flags]);
    out.extend_from_slice(&origin.to_le_bytes());
    out.extend_from_slice(&published_at_us.to_le_bytes());
    if let Some(key) = key {
        out.extend_from_slice(&(key.len() as u16).to_le_bytes());
        out.extend_from_slice(key);
    }
    out.extend_from_slice(payload);
}

/// Reads an envelope; text payloads and keys are checked to be UTF-8.
pub(crate) fn decode(bytes: &[u8]) -> Result<Envelope<'_>, Malformed> {
    let Some((head, rest)) = bytes.split_first_chunk::<HEAD_LEN>() else {
        return Err(Malformed::Head);
    };
    if head[0] != MAGIC || head[1] != VERSION || head[2] & !(BINARY | KEYED) != 0 {
        return Err(Malformed::Head);
    }
    let flags = head[2];
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&head[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let (latest, payload) = if flags & KEYED != 0 {
        let Some((len, rest)) = rest.split_first_chunk::<2>() else {
            return Err(Malformed::Head);
        };
        let len = usize::from(u16::from_le_bytes(*len));
        if rest.len() < len {
            return Err(Malformed::Head);
        }
        let (key, payload) = rest.split_at(len);
        let key = std::str::from_utf8(key).map_err(|_| Malformed::Utf8)?;
        (Some(key), payload)
    } else {
        (None, rest)
    };
    let opcode = if flags & BINARY != 0 {
        OpCode::Binary
    } else {
        std::str::from_utf8(payload).map_err(|_| Malformed::Utf8)?;
        OpCode::Text
    };
    Ok(Envelope {
        origin: word(3),
        published_at_us: word(11),
        opcode,
        latest,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_encoded_decodes_the_same() {
        let mut out = Vec::new();
        let cases: [(OpCode, Option<&str>, &[u8]); 5] = [
            (OpCode::Text, None, b"hello"),
            (OpCode::Binary, None, &[0xFF, 0, 1]),
            (OpCode::Text, Some("BTC"), "prix €".as_bytes()),
            (OpCode::Binary, Some(""), b""),
            (OpCode::Text, None, b""),
        ];
        for (opcode, latest, payload) in cases {
            encode(&mut out, 0x0102_0304_0506_0708, 42, opcode, latest, payload);
            let env = decode(&out).unwrap();
            assert_eq!(
                env,
                Envelope {
                    origin: 0x0102_0304_0506_0708,
                    published_at_us: 42,
                    opcode,
                    latest,
                    payload,
                }
            );
        }
    }

    #[test]
    fn the_head_is_laid_out_as_documented() {
        let mut out = Vec::new();
        encode(&mut out, 1, 2, OpCode::Binary, Some("k"), b"xy");
        assert_eq!(
            out,
            [
                0x4C, 0x01, 0x03, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0, b'k', b'x',
                b'y'
            ]
        );
    }

    #[test]
    fn foreign_or_cut_messages_are_refused() {
        let mut out = Vec::new();
        encode(&mut out, 7, 8, OpCode::Text, Some("key"), b"payload");
        // Cut anywhere inside the head or the key: refused, never a panic.
        for len in 0..HEAD_LEN + 2 + 3 {
            assert_eq!(decode(&out[..len]), Err(Malformed::Head), "cut at {len}");
        }
        let mut wrong = out.clone();
        wrong[0] = b'{';
        assert_eq!(decode(&wrong), Err(Malformed::Head));
        let mut newer = out.clone();
        newer[1] = 2;
        assert_eq!(decode(&newer), Err(Malformed::Head));
        let mut flags = out.clone();
        flags[2] |= 0x80;
        assert_eq!(decode(&flags), Err(Malformed::Head));
        assert_eq!(decode(b"{\"plain\":\"json\"}"), Err(Malformed::Head));
    }

    #[test]
    fn text_that_is_not_utf8_is_refused() {
        let mut out = Vec::new();
        encode(&mut out, 1, 1, OpCode::Text, None, &[0xC3]);
        assert_eq!(decode(&out), Err(Malformed::Utf8));
        encode(&mut out, 1, 1, OpCode::Binary, None, &[0xC3]);
        assert!(decode(&out).is_ok());
        let mut keyed = Vec::new();
        encode(&mut keyed, 1, 1, OpCode::Binary, Some("ab"), b"");
        keyed[HEAD_LEN + 2] = 0xFF;
        assert_eq!(decode(&keyed), Err(Malformed::Utf8));
    }
}
