//! Frame headers: decoding with every rule of RFC 6455 §5.2 and §5.5, and encoding.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               |Masking-key, if MASK set to 1  |
//! +-------------------------------+-------------------------------+
//! ```
//!
//! The decoder looks only at header bytes; the payload is the caller's to read, unmask
//! ([`crate::mask`]) and validate. Every check happens as soon as the bytes it needs are there,
//! so a bad frame is refused before any of its payload is buffered.
//!
//! Receiving is lenient in one respect: a length that was not encoded in the minimal number of
//! bytes is accepted (RFC 6455 puts that duty on the sender; the encoder here always uses the
//! minimal form).

use crate::error::ProtocolError;

/// The longest frame header: 2 bytes, 8 bytes of extended length and 4 bytes of masking key.
pub const MAX_HEADER_LEN: usize = 14;

/// The longest payload of a control frame (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD_LEN: u64 = 125;

/// The FIN bit in the first header byte.
const FIN_BIT: u8 = 0x80;
/// RSV1, RSV2 and RSV3 in the first header byte.
const RSV_BITS: u8 = 0x70;
/// The opcode in the first header byte.
const OPCODE_BITS: u8 = 0x0f;
/// The MASK bit in the second header byte.
const MASK_BIT: u8 = 0x80;
/// The 7-bit payload length in the second header byte.
const LEN7_BITS: u8 = 0x7f;
/// A 7-bit length of 126: a 16-bit length follows.
const LEN7_U16: u8 = 0x7e;
/// A 7-bit length of 127: a 64-bit length follows.
const LEN7_U64: u8 = 0x7f;

/// RSV1, claimed by permessage-deflate (RFC 7692).
pub const RSV1: u8 = 0x40;
/// RSV2, claimed by no registered extension.
pub const RSV2: u8 = 0x20;
/// RSV3, claimed by no registered extension.
pub const RSV3: u8 = 0x10;

/// The default [`FrameConfig::max_frame_len`]: 16 MiB.
pub const DEFAULT_MAX_FRAME_LEN: u64 = 16 << 20;

/// A frame opcode (RFC 6455 §5.2, §11.8). Reserved values have no variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OpCode {
    /// 0x0: a continuation of a fragmented message.
    Continuation = 0x0,
    /// 0x1: the first frame of a text message.
    Text = 0x1,
    /// 0x2: the first frame of a binary message.
    Binary = 0x2,
    /// 0x8: close.
    Close = 0x8,
    /// 0x9: ping.
    Ping = 0x9,
    /// 0xA: pong.
    Pong = 0xa,
}

impl OpCode {
    /// The opcode for a 4-bit value, or `None` for the reserved values 0x3-0x7 and 0xB-0xF.
    pub const fn from_u8(value: u8) -> Option<OpCode> {
        match value {
            0x0 => Some(OpCode::Continuation),
            0x1 => Some(OpCode::Text),
            0x2 => Some(OpCode::Binary),
            0x8 => Some(OpCode::Close),
            0x9 => Some(OpCode::Ping),
            0xa => Some(OpCode::Pong),
            _ => None,
        }
    }

    /// The 4-bit wire value.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// Whether this is a control opcode (close, ping, pong).
    pub const fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// Which end of the connection this is. It decides the masking rule (RFC 6455 §5.1): a server
/// requires every received frame to be masked, a client requires none to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The server end: receives masked frames, sends unmasked ones.
    Server,
    /// The client end: receives unmasked frames, sends masked ones.
    Client,
}

/// What the frame decoder enforces beyond the fixed rules of RFC 6455.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameConfig {
    /// Our role; decides whether received frames must be masked. No default.
    pub role: Role,
    /// RSV bits that a negotiated extension claims ([`RSV1`] for permessage-deflate), allowed on
    /// the first frame of a data message (opcode text or binary) only; any other RSV bit, and
    /// any RSV bit on a continuation or control frame, is a protocol error. Default: none.
    pub allowed_rsv: u8,
    /// The largest payload a single frame may declare, in bytes. Default:
    /// [`DEFAULT_MAX_FRAME_LEN`] (16 MiB). Bounds the memory a peer can make us commit to one
    /// frame: a larger declared length is refused ([`ProtocolError::FrameTooBig`], close 1009)
    /// from its header alone.
    pub max_frame_len: u64,
}

impl FrameConfig {
    /// The defaults for a server: masked frames required, no RSV bits, 16 MiB frames.
    pub const fn server() -> FrameConfig {
        FrameConfig {
            role: Role::Server,
            allowed_rsv: 0,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
        }
    }

    /// The defaults for a client: unmasked frames required, no RSV bits, 16 MiB frames.
    pub const fn client() -> FrameConfig {
        FrameConfig {
            role: Role::Client,
            allowed_rsv: 0,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
        }
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Whether this is the last frame of its message.
    pub fin: bool,
    /// The RSV bits as they sit in the first byte (a combination of [`RSV1`], [`RSV2`],
    /// [`RSV3`]).
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, present when the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    /// The payload length in bytes.
    pub payload_len: u64,
}

/// The outcome of [`decode_header`] on the bytes available so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderDecode {
    /// A whole header: the payload starts `header_len` bytes into the input.
    Complete {
        /// The header.
        header: FrameHeader,
        /// How many bytes of input the header took (2 to 14).
        header_len: usize,
    },
    /// The header is not complete: at least this many more bytes are needed.
    NeedMore(usize),
}

/// Decodes a frame header at the start of `buf`, enforcing RFC 6455's rules and `config`.
///
/// Each rule is checked as soon as its bytes are present: reserved opcodes, unclaimed RSV bits
/// and a fragmented control frame from the first byte; the masking rule and an over-long control
/// frame from the second; the 64-bit length's top bit and the maximum frame size from the
/// extended length, before the masking key. Bytes past the header are not looked at.
///
/// RSV bits in [`FrameConfig::allowed_rsv`] are accepted on text and binary frames only; on
/// continuation and control frames every RSV bit is a protocol error (RFC 7692 §6.1).
///
/// ```
/// use lanes_proto::frame::{decode_header, FrameConfig, HeaderDecode, OpCode};
/// // RFC 6455 §5.7: a single-frame masked text message "Hello".
/// let bytes = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
/// let HeaderDecode::Complete { header, header_len } =
///     decode_header(&bytes, &FrameConfig::server()).unwrap()
/// else { panic!() };
/// assert_eq!(header_len, 6);
/// assert_eq!(header.opcode, OpCode::Text);
/// assert_eq!(header.payload_len, 5);
/// assert_eq!(header.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
/// assert_eq!(decode_header(&bytes[..3], &FrameConfig::server()), Ok(HeaderDecode::NeedMore(3)));
/// ```
#[inline]
pub fn decode_header(buf: &[u8], config: &FrameConfig) -> Result<HeaderDecode, ProtocolError> {
    // What a server receives most: a masked frame with a 7-bit length and no RSV bit, its
    // header whole. Anything else (and any error) takes the general path below, which gives
    // the same answer for these frames.
    if let [first, second, k0, k1, k2, k3, ..] = *buf
        && config.role == Role::Server
        && second & MASK_BIT != 0
        && second & LEN7_BITS < LEN7_U16
        && first & RSV_BITS == 0
        && let Some(opcode) = OpCode::from_u8(first & OPCODE_BITS)
    {
        let fin = first & FIN_BIT != 0;
        let payload_len = u64::from(second & LEN7_BITS);
        if (fin || !opcode.is_control()) && payload_len <= config.max_frame_len {
            return Ok(HeaderDecode::Complete {
                header: FrameHeader {
                    fin,
                    rsv: 0,
                    opcode,
                    mask: Some([k0, k1, k2, k3]),
                    payload_len,
                },
                header_len: 6,
            });
        }
    }
    decode_header_general(buf, config)
}

/// [`decode_header`] for any header.
fn decode_header_general(buf: &[u8], config: &FrameConfig) -> Result<HeaderDecode, ProtocolError> {
    let Some(&first) = buf.first() else {
        return Ok(HeaderDecode::NeedMore(2));
    };
    let fin = first & FIN_BIT != 0;
    let rsv = first & RSV_BITS;
    let raw_opcode = first & OPCODE_BITS;
    let opcode = OpCode::from_u8(raw_opcode).ok_or(ProtocolError::ReservedOpcode(raw_opcode))?;
    // Extensions claim RSV bits for the first frame of a data message only (RFC 7692 §6.1; no
    // registered extension defines them on control or continuation frames).
    let allowed_rsv = match opcode {
        OpCode::Text | OpCode::Binary => config.allowed_rsv,
        _ => 0,
    };
    let unclaimed = rsv & !allowed_rsv;
    if unclaimed != 0 {
        return Err(ProtocolError::ReservedBits(unclaimed));
    }
    let is_control = opcode.is_control();
    if is_control && !fin {
        return Err(ProtocolError::FragmentedControlFrame);
    }

    let Some(&second) = buf.get(1) else {
        return Ok(HeaderDecode::NeedMore(1));
    };
    let masked = second & MASK_BIT != 0;
    match (config.role, masked) {
        (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
        (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
        _ => {}
    }
    let len7 = second & LEN7_BITS;
    if is_control && u64::from(len7) > MAX_CONTROL_PAYLOAD_LEN {
        return Err(ProtocolError::ControlFrameTooLong);
    }
    let length_end = match len7 {
        LEN7_U16 => 4,
        LEN7_U64 => 10,
        _ => 2,
    };
    let header_len = length_end + if masked { 4 } else { 0 };
    if buf.len() < length_end {
        return Ok(HeaderDecode::NeedMore(header_len - buf.len()));
    }

    // The length is checked before the masking key arrives.
    let payload_len = match len7 {
        LEN7_U16 => u64::from(u16::from_be_bytes([buf[2], buf[3]])),
        LEN7_U64 => {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&buf[2..10]);
            let len = u64::from_be_bytes(bytes);
            if len >> 63 != 0 {
                return Err(ProtocolError::LengthTopBitSet);
            }
            len
        }
        short => u64::from(short),
    };
    if payload_len > config.max_frame_len {
        return Err(ProtocolError::FrameTooBig);
    }
    if buf.len() < header_len {
        return Ok(HeaderDecode::NeedMore(header_len - buf.len()));
    }
    let mask = masked.then(|| {
        [
            buf[length_end],
            buf[length_end + 1],
            buf[length_end + 2],
            buf[length_end + 3],
        ]
    });
    Ok(HeaderDecode::Complete {
        header: FrameHeader {
            fin,
            rsv,
            opcode,
            mask,
            payload_len,
        },
        header_len,
    })
}

impl FrameHeader {
    /// An unmasked header with no RSV bits: what a server sends.
    ///
    /// ```
    /// use lanes_proto::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
    /// let mut out = [0u8; MAX_HEADER_LEN];
    /// let len = FrameHeader::new(true, OpCode::Text, 5).encode(&mut out);
    /// assert_eq!(&out[..len], &[0x81, 0x05]);
    /// ```
    pub const fn new(fin: bool, opcode: OpCode, payload_len: u64) -> FrameHeader {
        FrameHeader {
            fin,
            rsv: 0,
            opcode,
            mask: None,
            payload_len,
        }
    }

    /// The same header with a masking key: what a client sends. The caller must mask the
    /// payload with the same key ([`crate::mask::apply_mask`]).
    pub const fn with_mask(self, key: [u8; 4]) -> FrameHeader {
        FrameHeader {
            mask: Some(key),
            ..self
        }
    }

    /// The same header with the given RSV bits (masked to the three RSV positions).
    pub const fn with_rsv(self, rsv: u8) -> FrameHeader {
        FrameHeader {
            rsv: rsv & RSV_BITS,
            ..self
        }
    }

    /// How many bytes [`encode`](Self::encode) writes.
    pub const fn encoded_len(&self) -> usize {
        let extended = if self.payload_len <= 125 {
            0
        } else if self.payload_len <= 0xffff {
            2
        } else {
            8
        };
        2 + extended + if self.mask.is_some() { 4 } else { 0 }
    }

    /// Writes the header into `out` with the minimal length encoding and returns its length.
    ///
    /// A payload length of 2^63 or more cannot be encoded; it is written as 2^63 - 1 (no frame
    /// that long can exist in memory).
    ///
    /// A control frame must have FIN set and at most 125 bytes of payload (RFC 6455 §5.5);
    /// debug builds assert it, release builds write what they are given.
    pub fn encode(&self, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
        debug_assert!(
            !self.opcode.is_control() || (self.fin && self.payload_len <= MAX_CONTROL_PAYLOAD_LEN),
            "invalid control frame header: {self:?}"
        );
        out[0] = (if self.fin { FIN_BIT } else { 0 }) | (self.rsv & RSV_BITS) | self.opcode.as_u8();
        let mask_bit = if self.mask.is_some() { MASK_BIT } else { 0 };
        let len = self.payload_len.min(u64::MAX >> 1);
        let mut at = 2;
        if len <= 125 {
            out[1] = mask_bit | len as u8;
        } else if len <= 0xffff {
            out[1] = mask_bit | LEN7_U16;
            out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            at = 4;
        } else {
            out[1] = mask_bit | LEN7_U64;
            out[2..10].copy_from_slice(&len.to_be_bytes());
            at = 10;
        }
        if let Some(key) = self.mask {
            out[at..at + 4].copy_from_slice(&key);
            at += 4;
        }
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast path of `decode_header` answers as the general path does: every first and
    /// second byte, with a masking key, cut at every length up to a whole 6-byte header, for
    /// both roles, with and without RSV1 claimed, and with frame limits below and above the
    /// 7-bit lengths.
    #[test]
    fn the_fast_path_agrees_with_the_general_one() {
        let mut checked = 0;
        for role in [Role::Server, Role::Client] {
            for allowed_rsv in [0, RSV1] {
                for max_frame_len in [0, 5, 125, DEFAULT_MAX_FRAME_LEN] {
                    let config = FrameConfig {
                        role,
                        allowed_rsv,
                        max_frame_len,
                    };
                    for first in 0..=255u8 {
                        for second in 0..=255u8 {
                            let bytes = [first, second, 0x37, 0xfa, 0x21, 0x3d, 0x7f];
                            for len in 0..=bytes.len() {
                                assert_eq!(
                                    decode_header(&bytes[..len], &config),
                                    decode_header_general(&bytes[..len], &config),
                                    "{config:?} {:?}",
                                    &bytes[..len]
                                );
                                checked += 1;
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 2 * 2 * 4 * 256 * 256 * 8);
    }

    fn decode(buf: &[u8], config: &FrameConfig) -> Result<HeaderDecode, ProtocolError> {
        decode_header(buf, config)
    }

    #[test]
    fn opcode_table() {
        for value in 0u8..16 {
            let expected = matches!(value, 0x0 | 0x1 | 0x2 | 0x8 | 0x9 | 0xa);
            assert_eq!(OpCode::from_u8(value).is_some(), expected, "{value:#x}");
            if let Some(op) = OpCode::from_u8(value) {
                assert_eq!(op.as_u8(), value);
                assert_eq!(op.is_control(), value >= 8);
            }
        }
    }

    #[test]
    fn reserved_opcodes_are_refused_from_the_first_byte() {
        for op in (0x3..=0x7).chain(0xb..=0xf) {
            assert_eq!(
                decode(&[0x80 | op], &FrameConfig::server()),
                Err(ProtocolError::ReservedOpcode(op))
            );
        }
    }

    #[test]
    fn rsv_bits_need_an_extension() {
        let server = FrameConfig::server();
        for (bits, byte) in [(RSV1, 0xc1), (RSV2, 0xa1), (RSV3, 0x91), (0x70, 0xf1)] {
            assert_eq!(
                decode(&[byte, 0x80], &server),
                Err(ProtocolError::ReservedBits(bits))
            );
        }
        let deflate = FrameConfig {
            allowed_rsv: RSV1,
            ..server
        };
        let Ok(HeaderDecode::Complete { header, .. }) = decode(&[0xc1, 0x80, 1, 2, 3, 4], &deflate)
        else {
            panic!("RSV1 with deflate negotiated")
        };
        assert_eq!(header.rsv, RSV1);
        assert_eq!(
            decode(&[0xe1, 0x80], &deflate),
            Err(ProtocolError::ReservedBits(RSV2))
        );
        // RSV1 is for the first frame of a data message only.
        assert_eq!(
            decode(&[0xc9, 0x80], &deflate),
            Err(ProtocolError::ReservedBits(RSV1))
        );
        assert_eq!(
            decode(&[0xc0, 0x80], &deflate),
            Err(ProtocolError::ReservedBits(RSV1))
        );
        assert!(matches!(
            decode(&[0xc2, 0x80, 1, 2, 3, 4], &deflate),
            Ok(HeaderDecode::Complete { .. })
        ));
    }

    #[test]
    fn control_frame_rules() {
        let server = FrameConfig::server();
        // Ping with FIN = 0.
        assert_eq!(
            decode(&[0x09], &server),
            Err(ProtocolError::FragmentedControlFrame)
        );
        // Ping of 126 bytes (16-bit length form) and of 125 (fine).
        assert_eq!(
            decode(&[0x89, 0xfe, 0x00, 0x7e], &server),
            Err(ProtocolError::ControlFrameTooLong)
        );
        assert!(matches!(
            decode(&[0x89, 0xfd, 1, 2, 3, 4], &server),
            Ok(HeaderDecode::Complete {
                header: FrameHeader {
                    payload_len: 125,
                    ..
                },
                ..
            })
        ));
        // Close with a 64-bit length form.
        assert_eq!(
            decode(&[0x88, 0xff], &server),
            Err(ProtocolError::ControlFrameTooLong)
        );
    }

    #[test]
    fn masking_follows_the_role() {
        assert_eq!(
            decode(&[0x81, 0x05], &FrameConfig::server()),
            Err(ProtocolError::UnmaskedFrame)
        );
        assert_eq!(
            decode(&[0x81, 0x85], &FrameConfig::client()),
            Err(ProtocolError::MaskedFrame)
        );
    }

    #[test]
    fn length_forms_and_limits() {
        let client = FrameConfig::client();
        let mut top = vec![0x82, 0x7f];
        top.extend(0x8000_0000_0000_0000u64.to_be_bytes());
        assert_eq!(decode(&top, &client), Err(ProtocolError::LengthTopBitSet));

        let small = FrameConfig {
            max_frame_len: 1000,
            ..client
        };
        assert_eq!(
            decode(&[0x82, 0x7e, 0x03, 0xe9], &small),
            Err(ProtocolError::FrameTooBig)
        );
        assert!(matches!(
            decode(&[0x82, 0x7e, 0x03, 0xe8], &small),
            Ok(HeaderDecode::Complete {
                header: FrameHeader {
                    payload_len: 1000,
                    ..
                },
                header_len: 4
            })
        ));
        // Length limits are enforced before the masking key arrives.
        let small_server = FrameConfig {
            max_frame_len: 10,
            ..FrameConfig::server()
        };
        assert_eq!(
            decode(&[0x82, 0xfe, 0x01, 0x00], &small_server),
            Err(ProtocolError::FrameTooBig)
        );
        let mut top_masked = vec![0x82, 0xff];
        top_masked.extend(u64::MAX.to_be_bytes());
        assert_eq!(
            decode(&top_masked, &FrameConfig::server()),
            Err(ProtocolError::LengthTopBitSet)
        );
        // A non-minimal encoding of 5 is accepted.
        assert!(matches!(
            decode(&[0x82, 0x7e, 0x00, 0x05], &client),
            Ok(HeaderDecode::Complete {
                header: FrameHeader { payload_len: 5, .. },
                header_len: 4
            })
        ));
    }

    #[test]
    fn need_more_counts_are_exact() {
        let server = FrameConfig::server();
        let mut frame = vec![0x82, 0xff];
        frame.extend(70_000u64.to_be_bytes());
        frame.extend([1, 2, 3, 4]);
        assert_eq!(frame.len(), MAX_HEADER_LEN);
        assert_eq!(decode(&[], &server), Ok(HeaderDecode::NeedMore(2)));
        assert_eq!(decode(&frame[..1], &server), Ok(HeaderDecode::NeedMore(1)));
        for have in 2..MAX_HEADER_LEN {
            assert_eq!(
                decode(&frame[..have], &server),
                Ok(HeaderDecode::NeedMore(MAX_HEADER_LEN - have))
            );
        }
    }

    #[test]
    fn encode_uses_minimal_lengths_and_round_trips() {
        let mut out = [0u8; MAX_HEADER_LEN];
        for (len, expect_len) in [
            (0u64, 2),
            (125, 2),
            (126, 4),
            (0xffff, 4),
            (0x1_0000, 10),
            (u64::MAX >> 1, 10),
        ] {
            for mask in [None, Some([9, 8, 7, 6])] {
                for opcode in [OpCode::Text, OpCode::Binary, OpCode::Continuation] {
                    for fin in [false, true] {
                        let rsv = if opcode == OpCode::Continuation {
                            0
                        } else {
                            RSV1
                        };
                        let mut header = FrameHeader::new(fin, opcode, len).with_rsv(rsv);
                        header.mask = mask;
                        let n = header.encode(&mut out);
                        let want = expect_len + if mask.is_some() { 4 } else { 0 };
                        assert_eq!(n, want);
                        assert_eq!(header.encoded_len(), n);
                        let config = FrameConfig {
                            role: if mask.is_some() {
                                Role::Server
                            } else {
                                Role::Client
                            },
                            allowed_rsv: RSV1,
                            max_frame_len: u64::MAX,
                        };
                        assert_eq!(
                            decode(&out[..n], &config),
                            Ok(HeaderDecode::Complete {
                                header,
                                header_len: n
                            })
                        );
                    }
                }
            }
        }
    }

    proptest::proptest! {
        /// Any encodable header decodes back to itself, and any prefix of it asks for exactly
        /// the missing bytes.
        #[test]
        fn encode_decode_round_trip(
            fin in proptest::bool::ANY,
            rsv in 0u8..8,
            op in proptest::sample::select(vec![0u8, 1, 2, 8, 9, 10]),
            len in proptest::prop_oneof![0u64..=125, 126u64..=0xffff, 0x1_0000u64..(1u64 << 63)],
            mask in proptest::option::of(proptest::prelude::any::<[u8; 4]>()),
        ) {
            let opcode = OpCode::from_u8(op).unwrap();
            let len = if opcode.is_control() { len % 126 } else { len };
            let fin = fin || opcode.is_control();
            let rsv = if matches!(opcode, OpCode::Text | OpCode::Binary) { rsv << 4 } else { 0 };
            let header = FrameHeader { fin, rsv, opcode, mask, payload_len: len };
            let mut out = [0u8; MAX_HEADER_LEN];
            let n = header.encode(&mut out);
            let config = FrameConfig {
                role: if mask.is_some() { Role::Server } else { Role::Client },
                allowed_rsv: RSV_BITS,
                max_frame_len: u64::MAX,
            };
            proptest::prop_assert_eq!(
                decode(&out[..n], &config),
                Ok(HeaderDecode::Complete { header, header_len: n })
            );
            for have in 0..n {
                let need = match decode(&out[..have], &config) {
                    Ok(HeaderDecode::NeedMore(need)) => need,
                    other => panic!("{other:?}"),
                };
                proptest::prop_assert!(need >= 1 && have + need <= n);
                if have >= 2 {
                    proptest::prop_assert_eq!(have + need, n);
                }
            }
        }
    }
}
