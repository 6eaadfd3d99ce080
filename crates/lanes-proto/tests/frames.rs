//! Frames against the examples of RFC 6455 §5.7, decoded and encoded byte-exact, and a stream
//! of frames read whole, split at every byte, and one byte at a time.

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use lanes_proto::assembler::{MessageAssembler, MessageKind};
use lanes_proto::frame::{
    FrameConfig, FrameHeader, HeaderDecode, MAX_HEADER_LEN, OpCode, Role, decode_header,
};
use lanes_proto::mask::apply_mask;
use lanes_proto::{CloseCode, CloseFrame, ProtocolError};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// RFC 6455 §5.7: a single-frame unmasked text message containing "Hello".
const HELLO_UNMASKED: &[u8] = &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
/// RFC 6455 §5.7: a single-frame masked text message containing "Hello".
const HELLO_MASKED: &[u8] = &[
    0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
];
/// RFC 6455 §5.7: a fragmented unmasked text message, "Hel" then "lo".
const HEL: &[u8] = &[0x01, 0x03, 0x48, 0x65, 0x6c];
const LO: &[u8] = &[0x80, 0x02, 0x6c, 0x6f];
/// RFC 6455 §5.7: an unmasked ping with body "Hello", and the masked pong answering it.
const PING: &[u8] = &[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
const PONG_MASKED: &[u8] = &[
    0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
];
/// RFC 6455 §5.7: headers of 256 bytes and of 64 KiB of binary data in one unmasked frame.
const BINARY_256_HEADER: &[u8] = &[0x82, 0x7e, 0x01, 0x00];
const BINARY_64K_HEADER: &[u8] = &[0x82, 0x7f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00];

fn encode(header: FrameHeader) -> Vec<u8> {
    let mut out = [0u8; MAX_HEADER_LEN];
    let len = header.encode(&mut out);
    out[..len].to_vec()
}

/// A frame as a server sends it: header then payload.
fn server_frame(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = encode(FrameHeader::new(fin, opcode, payload.len() as u64));
    out.extend_from_slice(payload);
    out
}

/// A frame as a client sends it: header with `key`, then the masked payload.
fn client_frame(fin: bool, opcode: OpCode, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut out = encode(FrameHeader::new(fin, opcode, payload.len() as u64).with_mask(key));
    let mut masked = payload.to_vec();
    apply_mask(&mut masked, key, 0);
    out.extend_from_slice(&masked);
    out
}

#[test]
fn rfc_examples_encode_byte_exact() {
    assert_eq!(server_frame(true, OpCode::Text, b"Hello"), HELLO_UNMASKED);
    assert_eq!(
        client_frame(true, OpCode::Text, b"Hello", KEY),
        HELLO_MASKED
    );
    assert_eq!(server_frame(false, OpCode::Text, b"Hel"), HEL);
    assert_eq!(server_frame(true, OpCode::Continuation, b"lo"), LO);
    assert_eq!(server_frame(true, OpCode::Ping, b"Hello"), PING);
    assert_eq!(client_frame(true, OpCode::Pong, b"Hello", KEY), PONG_MASKED);
    assert_eq!(
        encode(FrameHeader::new(true, OpCode::Binary, 256)),
        BINARY_256_HEADER
    );
    assert_eq!(
        encode(FrameHeader::new(true, OpCode::Binary, 65536)),
        BINARY_64K_HEADER
    );
}

fn decode_complete(bytes: &[u8], config: &FrameConfig) -> (FrameHeader, usize) {
    match decode_header(bytes, config) {
        Ok(HeaderDecode::Complete { header, header_len }) => (header, header_len),
        other => panic!("{bytes:x?}: {other:?}"),
    }
}

#[test]
fn rfc_examples_decode() {
    let client = FrameConfig::client();
    let server = FrameConfig::server();
    let (h, n) = decode_complete(HELLO_UNMASKED, &client);
    assert_eq!((h, n), (FrameHeader::new(true, OpCode::Text, 5), 2));
    assert_eq!(&HELLO_UNMASKED[n..], b"Hello");

    let (h, n) = decode_complete(HELLO_MASKED, &server);
    assert_eq!(h, FrameHeader::new(true, OpCode::Text, 5).with_mask(KEY));
    let mut payload = HELLO_MASKED[n..].to_vec();
    apply_mask(&mut payload, KEY, 0);
    assert_eq!(payload, b"Hello");

    assert_eq!(
        decode_complete(HEL, &client).0,
        FrameHeader::new(false, OpCode::Text, 3)
    );
    assert_eq!(
        decode_complete(LO, &client).0,
        FrameHeader::new(true, OpCode::Continuation, 2)
    );
    assert_eq!(
        decode_complete(PING, &client).0,
        FrameHeader::new(true, OpCode::Ping, 5)
    );
    assert_eq!(
        decode_complete(PONG_MASKED, &server).0,
        FrameHeader::new(true, OpCode::Pong, 5).with_mask(KEY)
    );
    assert_eq!(
        decode_complete(BINARY_256_HEADER, &client),
        (FrameHeader::new(true, OpCode::Binary, 256), 4)
    );
    assert_eq!(
        decode_complete(BINARY_64K_HEADER, &client),
        (FrameHeader::new(true, OpCode::Binary, 65536), 10)
    );
    // A server refuses the unmasked examples, a client the masked ones.
    assert_eq!(
        decode_header(HELLO_UNMASKED, &server),
        Err(ProtocolError::UnmaskedFrame)
    );
    assert_eq!(
        decode_header(HELLO_MASKED, &client),
        Err(ProtocolError::MaskedFrame)
    );
}

/// What a reader reports, in order.
#[derive(Debug, Clone, PartialEq)]
enum Event {
    Frame {
        opcode: OpCode,
        fin: bool,
        payload: Vec<u8>,
    },
    Message(MessageKind),
    Close(Option<CloseCode>, String),
    Error(ProtocolError),
}

/// A slow, simple reader: buffers everything, decodes headers, unmasks payloads as their bytes
/// arrive, runs the assembler and the close parser.
struct Reader {
    config: FrameConfig,
    assembler: MessageAssembler,
    buffered: Vec<u8>,
    current: Option<(FrameHeader, Vec<u8>)>,
    events: Vec<Event>,
    failed: bool,
}

impl Reader {
    fn new(role: Role, max_message_len: u64) -> Reader {
        let config = match role {
            Role::Server => FrameConfig::server(),
            Role::Client => FrameConfig::client(),
        };
        Reader {
            config,
            assembler: MessageAssembler::new(max_message_len),
            buffered: Vec::new(),
            current: None,
            events: Vec::new(),
            failed: false,
        }
    }

    fn fail(&mut self, error: ProtocolError) {
        self.events.push(Event::Error(error));
        self.failed = true;
    }

    fn feed(&mut self, bytes: &[u8]) {
        if self.failed {
            return;
        }
        self.buffered.extend_from_slice(bytes);
        loop {
            if let Some((header, payload)) = self.current.as_mut() {
                let want = header.payload_len as usize - payload.len();
                let take = want.min(self.buffered.len());
                let start = payload.len();
                payload.extend(self.buffered.drain(..take));
                if let Some(key) = header.mask {
                    apply_mask(&mut payload[start..], key, start);
                }
                let is_control = header.opcode.is_control();
                let done = payload.len() == header.payload_len as usize;
                if !is_control {
                    let chunk = payload[start..].to_vec();
                    if let Err(e) = self.assembler.handle_data(&chunk) {
                        return self.fail(e);
                    }
                }
                if !done {
                    return;
                }
                let Some((header, payload)) = self.current.take() else {
                    unreachable!()
                };
                if header.opcode == OpCode::Close {
                    match CloseFrame::parse(&payload) {
                        Ok(close) => self
                            .events
                            .push(Event::Close(close.code, close.reason.to_string())),
                        Err(e) => return self.fail(e),
                    }
                } else {
                    self.events.push(Event::Frame {
                        opcode: header.opcode,
                        fin: header.fin,
                        payload,
                    });
                }
                match self.assembler.handle_frame_end() {
                    Ok(Some(kind)) => self.events.push(Event::Message(kind)),
                    Ok(None) => {}
                    Err(e) => return self.fail(e),
                }
                continue;
            }
            match decode_header(&self.buffered, &self.config) {
                Ok(HeaderDecode::NeedMore(n)) => {
                    assert!(n >= 1);
                    return;
                }
                Ok(HeaderDecode::Complete { header, header_len }) => {
                    self.buffered.drain(..header_len);
                    if let Err(e) = self.assembler.handle_header(&header) {
                        return self.fail(e);
                    }
                    self.current = Some((header, Vec::new()));
                }
                Err(e) => return self.fail(e),
            }
        }
    }
}

/// Reads `stream` whole, split into two at every byte, and one byte at a time; all must agree.
fn read_every_way(stream: &[u8], role: Role, max_message_len: u64) -> Vec<Event> {
    let mut whole = Reader::new(role, max_message_len);
    whole.feed(stream);
    for split in 0..=stream.len() {
        let mut reader = Reader::new(role, max_message_len);
        reader.feed(&stream[..split]);
        reader.feed(&stream[split..]);
        assert_eq!(reader.events, whole.events, "split at {split}");
    }
    let mut bytewise = Reader::new(role, max_message_len);
    for byte in stream {
        bytewise.feed(std::slice::from_ref(byte));
    }
    assert_eq!(bytewise.events, whole.events, "one byte at a time");
    whole.events
}

fn text(fin: bool, opcode: OpCode, payload: &[u8]) -> Event {
    Event::Frame {
        opcode,
        fin,
        payload: payload.to_vec(),
    }
}

#[test]
fn rfc_example_stream_read_every_way() {
    let mut stream = Vec::new();
    for part in [HELLO_UNMASKED, HEL, PING, LO] {
        stream.extend_from_slice(part);
    }
    stream.extend_from_slice(BINARY_256_HEADER);
    stream.extend((0..=255u8).collect::<Vec<_>>());
    stream.extend(server_frame(true, OpCode::Close, b"\x03\xe8bye"));
    let events = read_every_way(&stream, Role::Client, 1 << 20);
    assert_eq!(
        events,
        vec![
            text(true, OpCode::Text, b"Hello"),
            Event::Message(MessageKind::Text),
            text(false, OpCode::Text, b"Hel"),
            text(true, OpCode::Ping, b"Hello"),
            text(true, OpCode::Continuation, b"lo"),
            Event::Message(MessageKind::Text),
            Event::Frame {
                opcode: OpCode::Binary,
                fin: true,
                payload: (0..=255u8).collect()
            },
            Event::Message(MessageKind::Binary),
            Event::Close(Some(CloseCode::NORMAL), "bye".into()),
        ]
    );
}

#[test]
fn masked_stream_with_64k_frame_read_one_byte_at_a_time() {
    let big: Vec<u8> = (0..65536u32).map(|i| (i * 7) as u8).collect();
    let mut stream = client_frame(true, OpCode::Binary, &big, [1, 2, 3, 4]);
    stream.extend(HELLO_MASKED);
    let mut reader = Reader::new(Role::Server, 1 << 20);
    for byte in &stream {
        reader.feed(std::slice::from_ref(byte));
    }
    assert_eq!(
        reader.events,
        vec![
            Event::Frame {
                opcode: OpCode::Binary,
                fin: true,
                payload: big
            },
            Event::Message(MessageKind::Binary),
            text(true, OpCode::Text, b"Hello"),
            Event::Message(MessageKind::Text),
        ]
    );
}

#[test]
fn protocol_errors_read_every_way() {
    let cases: Vec<(Vec<u8>, ProtocolError)> = vec![
        // Invalid UTF-8 in the middle of the second fragment: fails before "lo" completes.
        (
            [HEL, &[0x80, 0x03, 0x6c, 0xff, 0x6f][..]].concat(),
            ProtocolError::InvalidUtf8,
        ),
        // Continuation with no message open.
        (LO.to_vec(), ProtocolError::UnexpectedContinuation),
        // Text frame while a fragmented message is open.
        (
            [HEL, HELLO_UNMASKED].concat(),
            ProtocolError::ExpectedContinuation,
        ),
        // Text message ending inside a character.
        (
            server_frame(true, OpCode::Text, b"ab\xce"),
            ProtocolError::InvalidUtf8,
        ),
        // Close with one byte, with code 1005, with a bad reason.
        (
            server_frame(true, OpCode::Close, b"\x03"),
            ProtocolError::CloseFrameOneByte,
        ),
        (
            server_frame(true, OpCode::Close, b"\x03\xed"),
            ProtocolError::InvalidCloseCode(1005),
        ),
        (
            server_frame(true, OpCode::Close, b"\x03\xe8\xc0\xaf"),
            ProtocolError::InvalidCloseReason,
        ),
        // Reserved opcode, fragmented ping, over-long ping.
        (vec![0x83, 0x00], ProtocolError::ReservedOpcode(3)),
        (vec![0x09, 0x00], ProtocolError::FragmentedControlFrame),
        (
            // Written by hand: the encoder refuses to build it.
            [&[0x89, 0x7e, 0x00, 0x7e][..], &[0u8; 126]].concat(),
            ProtocolError::ControlFrameTooLong,
        ),
        // Message over the limit (300 bytes in two fragments of 150 + 150, limit 256).
        (
            [
                server_frame(false, OpCode::Binary, &[0u8; 150]),
                server_frame(true, OpCode::Continuation, &[0u8; 150]),
            ]
            .concat(),
            ProtocolError::MessageTooBig,
        ),
    ];
    for (stream, error) in cases {
        let events = read_every_way(&stream, Role::Client, 256);
        assert_eq!(events.last(), Some(&Event::Error(error)), "{stream:x?}");
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e, Event::Error(_)))
                .count(),
            1
        );
    }
}

#[test]
fn close_codes_of_errors() {
    use ProtocolError::*;
    for (error, code) in [
        (ReservedOpcode(3), 1002),
        (ReservedBits(0x40), 1002),
        (FragmentedControlFrame, 1002),
        (ControlFrameTooLong, 1002),
        (LengthTopBitSet, 1002),
        (UnmaskedFrame, 1002),
        (MaskedFrame, 1002),
        (FrameTooBig, 1009),
        (MessageTooBig, 1009),
        (UnexpectedContinuation, 1002),
        (ExpectedContinuation, 1002),
        (InvalidUtf8, 1007),
        (CloseFrameOneByte, 1002),
        (InvalidCloseCode(999), 1002),
        (InvalidCloseReason, 1007),
    ] {
        assert_eq!(error.close_code().as_u16(), code, "{error}");
        assert!(error.to_string().len() <= 123, "{error}");
    }
}
