//! Close frames: status codes, payload parsing and building (RFC 6455 §5.5.1, §7.4).
//!
//! A close payload is empty, or a 2-byte big-endian status code followed by a UTF-8 reason.
//! Which codes may appear on the wire follows RFC 6455 §7.4 and the IANA "WebSocket Close Code
//! Number Registry": 1000-1003 and 1007-1014 are defined; 1004 is reserved, 1005, 1006 and 1015
//! must never be sent; 0-999 are not used; the rest below 3000 is unassigned; 3000-3999 is for
//! libraries and frameworks (IANA registration), 4000-4999 for private use; 5000 and above is not
//! a close code.

use core::fmt;

use crate::error::ProtocolError;
use crate::utf8;

/// The largest close payload: a control frame carries at most 125 bytes.
pub const MAX_CLOSE_PAYLOAD_LEN: usize = 125;

/// The longest reason that fits in a close frame beside its 2-byte code.
pub const MAX_CLOSE_REASON_LEN: usize = MAX_CLOSE_PAYLOAD_LEN - 2;

/// A WebSocket close status code.
///
/// Any `u16` can be held (so that a received code can be reported); use
/// [`is_valid_on_wire`](Self::is_valid_on_wire) to know whether it may be sent or received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(u16);

impl CloseCode {
    /// 1000: the purpose of the connection has been fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigated away).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: the endpoint received a type of data it cannot accept.
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1005: no status code was present. Reported locally, never sent.
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: the connection ended without a close frame. Reported locally, never sent.
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: a message's data was not consistent with its type (invalid UTF-8 in text).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: the message violates the endpoint's policy.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: a message is too big to process.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client expected the server to negotiate an extension.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: the server met an unexpected condition.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012: the service is restarting (IANA registry).
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013: try again later (IANA registry).
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// 1014: a gateway received an invalid response (IANA registry).
    pub const BAD_GATEWAY: CloseCode = CloseCode(1014);

    /// Wraps a raw code without checking it.
    pub const fn new(code: u16) -> CloseCode {
        CloseCode(code)
    }

    /// The numeric value.
    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// Whether this code may appear in a close frame on the wire (RFC 6455 §7.4 and the IANA
    /// registry): 1000-1003, 1007-1014 and 3000-4999.
    ///
    /// ```
    /// use lanes_proto::CloseCode;
    /// assert!(CloseCode::NORMAL.is_valid_on_wire());
    /// assert!(CloseCode::new(4000).is_valid_on_wire());
    /// assert!(!CloseCode::ABNORMAL.is_valid_on_wire());
    /// assert!(!CloseCode::new(1004).is_valid_on_wire());
    /// assert!(!CloseCode::new(5000).is_valid_on_wire());
    /// ```
    pub const fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> u16 {
        code.0
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A parsed close frame payload, borrowed from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseFrame<'a> {
    /// The status code, or `None` when the payload was empty (report [`CloseCode::NO_STATUS`]).
    pub code: Option<CloseCode>,
    /// The reason, empty when there was none.
    pub reason: &'a str,
}

impl<'a> CloseFrame<'a> {
    /// Parses an (unmasked) close frame payload.
    ///
    /// Errors: a 1-byte payload, a code that may not appear on the wire, a reason that is not
    /// valid UTF-8, and a payload longer than 125 bytes (which the frame decoder already refuses).
    ///
    /// ```
    /// use lanes_proto::{CloseCode, CloseFrame, ProtocolError};
    /// let frame = CloseFrame::parse(b"\x03\xe8bye").unwrap();
    /// assert_eq!(frame.code, Some(CloseCode::NORMAL));
    /// assert_eq!(frame.reason, "bye");
    /// assert_eq!(CloseFrame::parse(b"\x03"), Err(ProtocolError::CloseFrameOneByte));
    /// ```
    pub fn parse(payload: &'a [u8]) -> Result<CloseFrame<'a>, ProtocolError> {
        match payload {
            [] => Ok(CloseFrame {
                code: None,
                reason: "",
            }),
            [_] => Err(ProtocolError::CloseFrameOneByte),
            [hi, lo, reason @ ..] => {
                if payload.len() > MAX_CLOSE_PAYLOAD_LEN {
                    return Err(ProtocolError::ControlFrameTooLong);
                }
                let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
                if !code.is_valid_on_wire() {
                    return Err(ProtocolError::InvalidCloseCode(code.0));
                }
                let reason =
                    utf8::validate(reason).map_err(|_| ProtocolError::InvalidCloseReason)?;
                Ok(CloseFrame {
                    code: Some(code),
                    reason,
                })
            }
        }
    }
}

/// Writes a close payload (code and reason) into `out` and returns its length.
///
/// The reason is cut to [`MAX_CLOSE_REASON_LEN`] bytes at a character boundary, so the result
/// always fits a control frame and is always valid UTF-8. A code that may not be sent
/// ([`CloseCode::is_valid_on_wire`] is false: 1005, 1006, 1015, ...) gives an empty payload,
/// which is how "no status code" is said on the wire (RFC 6455 §5.5.1), and the reason is
/// dropped with it.
///
/// ```
/// use lanes_proto::{CloseCode, close::{write_close_payload, MAX_CLOSE_PAYLOAD_LEN}};
/// let mut buf = [0u8; MAX_CLOSE_PAYLOAD_LEN];
/// let len = write_close_payload(&mut buf, CloseCode::GOING_AWAY, "shutdown");
/// assert_eq!(&buf[..len], b"\x03\xe9shutdown");
/// ```
pub fn write_close_payload(
    out: &mut [u8; MAX_CLOSE_PAYLOAD_LEN],
    code: CloseCode,
    reason: &str,
) -> usize {
    if !code.is_valid_on_wire() {
        return 0;
    }
    let reason = truncate_at_char_boundary(reason, MAX_CLOSE_REASON_LEN);
    out[..2].copy_from_slice(&code.0.to_be_bytes());
    out[2..2 + reason.len()].copy_from_slice(reason.as_bytes());
    2 + reason.len()
}

/// The longest prefix of `text` that is at most `max_len` bytes and ends on a char boundary.
fn truncate_at_char_boundary(text: &str, max_len: usize) -> &str {
    if text.len() <= max_len {
        return text;
    }
    let mut end = max_len;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The close code each protocol error closes with (beside the codes, so that errors need
/// not know them).
impl ProtocolError {
    /// The close code to close the connection with: 1009 for size limits (an inflated message
    /// too included), 1007 for invalid UTF-8, 1002 for every other protocol violation (invalid
    /// compressed data included).
    ///
    /// ```
    /// use lanes_proto::{CloseCode, ProtocolError};
    /// assert_eq!(ProtocolError::InvalidUtf8.close_code(), CloseCode::INVALID_PAYLOAD);
    /// assert_eq!(ProtocolError::MessageTooBig.close_code().as_u16(), 1009);
    /// ```
    pub const fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::FrameTooBig | ProtocolError::MessageTooBig => CloseCode::MESSAGE_TOO_BIG,
            ProtocolError::InvalidUtf8 | ProtocolError::InvalidCloseReason => {
                CloseCode::INVALID_PAYLOAD
            }
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every u16 against the table of RFC 6455 §7.4.1-7.4.2 and the IANA registry, written out
    /// range by range rather than with the same `matches!` as the code.
    #[test]
    fn close_code_table() {
        let mut valid = Vec::new();
        for code in 0..=u16::MAX {
            if CloseCode(code).is_valid_on_wire() {
                valid.push(code);
            }
        }
        let mut expected: Vec<u16> = vec![1000, 1001, 1002, 1003];
        expected.extend([1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014]);
        expected.extend(3000..5000);
        assert_eq!(valid, expected);
        for never in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            assert!(!CloseCode(never).is_valid_on_wire(), "{never}");
        }
    }

    #[test]
    fn parse_cases() {
        assert_eq!(
            CloseFrame::parse(b""),
            Ok(CloseFrame {
                code: None,
                reason: ""
            })
        );
        assert_eq!(
            CloseFrame::parse(&[0x03, 0xe8]),
            Ok(CloseFrame {
                code: Some(CloseCode::NORMAL),
                reason: ""
            })
        );
        assert_eq!(
            CloseFrame::parse(&[0x03]),
            Err(ProtocolError::CloseFrameOneByte)
        );
        assert_eq!(
            CloseFrame::parse(&[0x03, 0xed]),
            Err(ProtocolError::InvalidCloseCode(1005))
        );
        assert_eq!(
            CloseFrame::parse(&[0x0f, 0x9f]),
            Ok(CloseFrame {
                code: Some(CloseCode(3999)),
                reason: ""
            })
        );
        // "κόσμε" is fine; a lone continuation byte is not.
        let mut ok = vec![0x03, 0xe8];
        ok.extend("κόσμε".as_bytes());
        assert_eq!(CloseFrame::parse(&ok).unwrap().reason, "κόσμε");
        assert_eq!(
            CloseFrame::parse(&[0x03, 0xe8, b'a', 0x80]),
            Err(ProtocolError::InvalidCloseReason)
        );
        assert_eq!(
            CloseFrame::parse(&[0x03, 0xe8, 0xce, 0xba, 0xe1]),
            Err(ProtocolError::InvalidCloseReason)
        );
        let long = [b'a'; 126];
        assert_eq!(
            CloseFrame::parse(&long),
            Err(ProtocolError::ControlFrameTooLong)
        );
    }

    #[test]
    fn write_then_parse_round_trips_and_truncates_on_char_boundary() {
        let mut buf = [0u8; MAX_CLOSE_PAYLOAD_LEN];
        let reason = "é".repeat(100); // 200 bytes
        let len = write_close_payload(&mut buf, CloseCode::new(4001), &reason);
        assert_eq!(len, 2 + 122); // 61 two-byte characters fit in 123 bytes
        let parsed = CloseFrame::parse(&buf[..len]).unwrap();
        assert_eq!(parsed.code, Some(CloseCode::new(4001)));
        assert_eq!(parsed.reason, "é".repeat(61));
        for never_sent in [
            CloseCode::NO_STATUS,
            CloseCode::ABNORMAL,
            CloseCode::new(1015),
        ] {
            assert_eq!(write_close_payload(&mut buf, never_sent, "x"), 0);
        }
        assert_eq!(
            CloseFrame::parse(&buf[..0]),
            Ok(CloseFrame {
                code: None,
                reason: ""
            })
        );
    }
}
