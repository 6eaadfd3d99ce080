//! What a connection expects back: the messages in flight, in order, and when each was sent.
//!
//! Every payload carries its sequence number in its first bytes (binary: 8 bytes little-endian;
//! text: 16 hex digits), the rest is a fixed per-connection pattern. An echo is checked in full:
//! its length, its sequence number (the oldest in flight) and every other byte.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use crate::args::Kind;

/// Why an echo did not match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EchoError {
    /// A message arrived with nothing in flight.
    Unexpected,
    /// The length differs from what was sent.
    Length {
        /// Bytes sent.
        expected: usize,
        /// Bytes received.
        got: usize,
    },
    /// The bytes differ (wrong message, reordered, or corrupted).
    Content {
        /// The sequence number expected.
        seq: u64,
    },
    /// A text message came back as binary or the reverse.
    Kind,
}

impl fmt::Display for EchoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EchoError::Unexpected => f.write_str("message received with none in flight"),
            EchoError::Length { expected, got } => {
                write!(f, "echo of {got} bytes, {expected} sent")
            }
            EchoError::Content { seq } => {
                write!(f, "echo of message {seq} differs from what was sent")
            }
            EchoError::Kind => f.write_str("echo has the wrong message type"),
        }
    }
}

/// Messages in flight on one connection.
#[derive(Debug)]
pub struct EchoTracker {
    kind: Kind,
    template: Vec<u8>,
    in_flight: VecDeque<(u64, Instant)>,
    next_seq: u64,
}

impl EchoTracker {
    /// A tracker for `size`-byte messages of `kind`; `salt` varies the pattern per connection.
    pub fn new(size: usize, kind: Kind, salt: u64) -> EchoTracker {
        let template = (0..size)
            .map(|i| {
                let x = (i as u64)
                    .wrapping_mul(31)
                    .wrapping_add(salt.wrapping_mul(7));
                match kind {
                    Kind::Text => b'a' + (x % 26) as u8,
                    Kind::Binary => (x % 251) as u8,
                }
            })
            .collect();
        EchoTracker {
            kind,
            template,
            in_flight: VecDeque::new(),
            next_seq: 0,
        }
    }

    /// The payload length.
    pub fn size(&self) -> usize {
        self.template.len()
    }

    /// Messages sent and not yet echoed.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    fn stamp_len(&self) -> usize {
        match self.kind {
            Kind::Binary => 8.min(self.template.len()),
            Kind::Text => 16.min(self.template.len()),
        }
    }

    fn stamp(&self, seq: u64, out: &mut [u8]) {
        match self.kind {
            Kind::Binary => {
                let bytes = seq.to_le_bytes();
                out.copy_from_slice(&bytes[..out.len()]);
            }
            Kind::Text => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                for (i, byte) in out.iter_mut().enumerate() {
                    *byte = HEX[((seq >> (4 * i)) & 0xf) as usize];
                }
            }
        }
    }

    /// Appends the next message's payload to `out` and records it as sent at `now`.
    pub fn push_next(&mut self, now: Instant, out: &mut Vec<u8>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let start = out.len();
        out.extend_from_slice(&self.template);
        let stamp_len = self.stamp_len();
        self.stamp(seq, &mut out[start..start + stamp_len]);
        self.in_flight.push_back((seq, now));
    }

    /// Checks an echo against the oldest message in flight; returns its round-trip time.
    pub fn check(
        &mut self,
        is_text: bool,
        payload: &[u8],
        now: Instant,
    ) -> Result<Duration, EchoError> {
        let &(seq, sent) = self.in_flight.front().ok_or(EchoError::Unexpected)?;
        if is_text != (self.kind == Kind::Text) {
            return Err(EchoError::Kind);
        }
        if payload.len() != self.template.len() {
            return Err(EchoError::Length {
                expected: self.template.len(),
                got: payload.len(),
            });
        }
        let stamp_len = self.stamp_len();
        let mut expected = [0u8; 16];
        self.stamp(seq, &mut expected[..stamp_len]);
        if payload[..stamp_len] != expected[..stamp_len]
            || payload[stamp_len..] != self.template[stamp_len..]
        {
            return Err(EchoError::Content { seq });
        }
        self.in_flight.pop_front();
        Ok(now.saturating_duration_since(sent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_in_order_pass_and_report_their_round_trip() {
        for kind in [Kind::Binary, Kind::Text] {
            for size in [1, 7, 8, 20, 1024] {
                let mut t = EchoTracker::new(size, kind, 3);
                let start = Instant::now();
                let mut sent = Vec::new();
                t.push_next(start, &mut sent);
                t.push_next(start + Duration::from_millis(1), &mut sent);
                assert_eq!(t.in_flight(), 2);
                let (first, second) = sent.split_at(size);
                if kind == Kind::Text {
                    assert!(std::str::from_utf8(first).is_ok());
                }
                let later = start + Duration::from_millis(5);
                assert_eq!(
                    t.check(kind == Kind::Text, first, later),
                    Ok(Duration::from_millis(5))
                );
                assert_eq!(
                    t.check(kind == Kind::Text, second, later),
                    Ok(Duration::from_millis(4))
                );
                assert_eq!(t.in_flight(), 0);
                assert_eq!(
                    t.check(kind == Kind::Text, second, later),
                    Err(EchoError::Unexpected)
                );
            }
        }
    }

    #[test]
    fn wrong_echoes_are_caught() {
        let now = Instant::now();
        let mut t = EchoTracker::new(20, Kind::Binary, 1);
        let mut sent = Vec::new();
        t.push_next(now, &mut sent);
        t.push_next(now, &mut sent);
        let (first, second) = sent.split_at(20);
        // Out of order: the second message first.
        assert_eq!(
            t.check(false, second, now),
            Err(EchoError::Content { seq: 0 })
        );
        // Truncated, corrupted in the pattern, wrong type.
        assert_eq!(
            t.check(false, &first[..19], now),
            Err(EchoError::Length {
                expected: 20,
                got: 19
            })
        );
        let mut corrupt = first.to_vec();
        corrupt[15] ^= 1;
        assert_eq!(
            t.check(false, &corrupt, now),
            Err(EchoError::Content { seq: 0 })
        );
        assert_eq!(t.check(true, first, now), Err(EchoError::Kind));
        // A failed check leaves the message in flight.
        assert_eq!(t.check(false, first, now), Ok(Duration::ZERO));
    }

    #[test]
    fn payloads_of_different_connections_differ() {
        let now = Instant::now();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        EchoTracker::new(64, Kind::Binary, 1).push_next(now, &mut a);
        EchoTracker::new(64, Kind::Binary, 2).push_next(now, &mut b);
        assert_ne!(a, b);
    }
}
