//! The session (`lanes_proto::session`) through its public API: RFC 6455 examples, fragmentation
//! with control frames between fragments, the close handshake in both directions and both
//! roles, auto-pong, permessage-deflate in both roles, every input fed whole, split at every
//! byte and one byte at a time; and keepalive and close timing with an in-memory client/server
//! pair on a virtual clock.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use lanes_proto::deflate::{DeflateConfig, DeflateParams, Deflater, InflateScratch, SendAs};
use lanes_proto::frame::{FrameHeader, RSV1};
use lanes_proto::session::{
    Closed, Connection, Event, Initiator, Output, SessionConfig, SessionState, Timeout,
    encode_frame,
};
use lanes_proto::{CloseCode, OpCode, ProtocolError, Role};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// An event, owned, to compare runs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owned {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String, Initiator),
    Error(ProtocolError),
}

impl Owned {
    fn of(event: &Event<'_>) -> Owned {
        match *event {
            Event::Text(text) => Owned::Text(text.to_owned()),
            Event::Binary(bytes) => Owned::Binary(bytes.to_vec()),
            Event::Ping(bytes) => Owned::Ping(bytes.to_vec()),
            Event::Pong(bytes) => Owned::Pong(bytes.to_vec()),
            Event::Close(Closed {
                code,
                reason,
                initiator,
            }) => Owned::Close(code.map(CloseCode::as_u16), reason.to_owned(), initiator),
        }
    }
}

/// What the session asked to send: each control frame whole, and every header seen.
#[derive(Default)]
struct Recorder {
    sent: Vec<(OpCode, Vec<u8>)>,
    headers: usize,
    next_key: u8,
}

impl Output for Recorder {
    fn control(&mut self, opcode: OpCode, frame: &[u8]) {
        self.sent.push((opcode, frame.to_vec()));
    }
    fn mask_key(&mut self) -> [u8; 4] {
        self.next_key = self.next_key.wrapping_add(1);
        [self.next_key, 0xa5, 0x5a, 0x11]
    }
    fn frame_received(&mut self, _header: &FrameHeader) {
        self.headers += 1;
    }
}

/// A frame as the peer of `receiver` sends it: masked when the receiver is a server.
fn frame(receiver: Role, fin: bool, opcode: OpCode, rsv: u8, payload: &[u8]) -> Vec<u8> {
    let sender = match receiver {
        Role::Server => Role::Client,
        Role::Client => Role::Server,
    };
    let mut out = Vec::new();
    let header = FrameHeader::new(fin, opcode, 0).with_rsv(rsv);
    encode_frame(&mut out, sender, header, payload, KEY);
    out
}

/// The outcome of feeding a stream: events (an error last, if any), the control frames the
/// session sent, and the final state.
#[derive(Debug, PartialEq)]
struct Run {
    events: Vec<Owned>,
    sent: Vec<(OpCode, Vec<u8>)>,
    state: SessionState,
    idle: bool,
}

/// Feeds `stream` to a fresh session cut at the `cuts` offsets (each piece a separate read,
/// handled to the end before the next is read).
fn run_cut(
    config: SessionConfig,
    deflate: Option<&DeflateParams>,
    stream: &[u8],
    cuts: &[usize],
) -> Run {
    let mut conn = Connection::new(config, 0);
    if let Some(params) = deflate {
        conn.enable_deflate(params);
    }
    let mut scratch = InflateScratch::new(config.max_message_len);
    let mut out = Recorder::default();
    let mut events = Vec::new();
    let mut bounds: Vec<usize> = cuts.iter().copied().filter(|&c| c < stream.len()).collect();
    bounds.push(stream.len());
    let mut start = 0;
    'reads: for end in bounds {
        let mut data = stream[start..end].to_vec();
        start = end;
        let mut at = 0;
        while at < data.len() {
            match conn.handle_bytes(&mut data[at..], &mut scratch, 1, &mut out) {
                Ok(step) => {
                    assert!(step.used > 0);
                    at += step.used;
                    if let Some(event) = step.event {
                        events.push(Owned::of(&event));
                    }
                    conn.receiver.release();
                }
                Err(error) => {
                    events.push(Owned::Error(error));
                    break 'reads;
                }
            }
        }
    }
    if conn.session.state() != SessionState::Open {
        // Once the session stops receiving, the next bytes are ignored and nothing is kept.
        let mut more = [0x81];
        let step = conn.handle_bytes(&mut more, &mut scratch, 1, &mut out);
        assert_eq!(
            step,
            Ok(lanes_proto::Step {
                used: 1,
                event: None
            })
        );
    }
    Run {
        events,
        sent: out.sent,
        state: conn.session.state(),
        idle: conn.receiver.is_idle(),
    }
}

/// Runs `stream` whole, split at every byte boundary, and one byte at a time (and in a few
/// piece sizes), checks that every run gives the same result, and returns it. Masked input
/// is unmasked in place, so each run starts from a fresh copy.
fn run_all(config: SessionConfig, deflate: Option<&DeflateParams>, stream: &[u8]) -> Run {
    let whole = run_cut(config, deflate, stream, &[]);
    for cut in 1..stream.len() {
        assert_eq!(
            run_cut(config, deflate, stream, &[cut]),
            whole,
            "split at {cut}"
        );
    }
    for piece in [1, 2, 3, 5, 7, 13, 100] {
        let cuts: Vec<usize> = (piece..stream.len()).step_by(piece).collect();
        assert_eq!(
            run_cut(config, deflate, stream, &cuts),
            whole,
            "pieces of {piece}"
        );
    }
    whole
}

fn text(s: &str) -> Owned {
    Owned::Text(s.to_owned())
}

// ---- RFC 6455 §5.7 ---------------------------------------------------------------------------

#[test]
fn rfc_6455_5_7_examples() {
    let client = SessionConfig::client();
    let server = SessionConfig::server();
    // A single-frame unmasked text message.
    let run = run_all(client, None, &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    assert_eq!(run.events, [text("Hello")]);
    assert!(run.idle && run.sent.is_empty());
    // A single-frame masked text message.
    let masked = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    assert_eq!(run_all(server, None, &masked).events, [text("Hello")]);
    // A fragmented unmasked text message.
    let fragmented = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
    assert_eq!(run_all(client, None, &fragmented).events, [text("Hello")]);
    // Unmasked ping, and the masked pong that answers it; the ping is answered with that
    // pong's payload ("Hello"), and the server's own pong is unmasked.
    let run = run_all(client, None, &[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    assert_eq!(run.events, [Owned::Ping(b"Hello".to_vec())]);
    assert_eq!(run.sent.len(), 1);
    let (op, pong) = &run.sent[0];
    assert_eq!(*op, OpCode::Pong);
    assert_eq!(&pong[..2], [0x8a, 0x85], "masked: the client sends it");
    let mut payload = pong[6..].to_vec();
    lanes_proto::mask::apply_mask(&mut payload, [pong[2], pong[3], pong[4], pong[5]], 0);
    assert_eq!(payload, b"Hello");
    let masked_pong = [
        0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    let run = run_all(server, None, &masked_pong);
    assert_eq!(run.events, [Owned::Pong(b"Hello".to_vec())]);
    assert!(run.sent.is_empty(), "a pong is not answered");
    // 256 bytes binary in a single unmasked frame: 0x82 0x7E 0x0100.
    let mut big = vec![0x82, 0x7e, 0x01, 0x00];
    big.extend((0..=255u8).collect::<Vec<_>>());
    assert_eq!(
        run_cut(client, None, &big, &[]).events,
        [Owned::Binary((0..=255u8).collect())]
    );
    // 64 KiB binary in a single unmasked frame: 0x82 0x7F 0x0000000000010000.
    let mut huge = vec![0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0];
    huge.extend(vec![7u8; 65536]);
    let whole = run_cut(client, None, &huge, &[]);
    assert_eq!(whole.events, [Owned::Binary(vec![7u8; 65536])]);
    for cuts in [
        vec![1],
        vec![5, 9, 10, 11],
        (1000..huge.len()).step_by(1000).collect(),
    ] {
        assert_eq!(
            run_cut(client, None, &huge, &cuts),
            whole,
            "{:?}",
            &cuts[..1]
        );
    }
}

// ---- Fragmentation -----------------------------------------------------------------------------

#[test]
fn fragments_with_control_frames_between_them() {
    for role in [Role::Server, Role::Client] {
        let config = SessionConfig::new(role);
        let text_bytes = "κόσμε, world".as_bytes();
        let mut stream = frame(role, false, OpCode::Text, 0, &text_bytes[..3]); // cuts 'ό'
        stream.extend(frame(role, true, OpCode::Ping, 0, b"p1"));
        stream.extend(frame(
            role,
            false,
            OpCode::Continuation,
            0,
            &text_bytes[3..8],
        ));
        stream.extend(frame(role, true, OpCode::Pong, 0, b""));
        stream.extend(frame(role, false, OpCode::Continuation, 0, b""));
        stream.extend(frame(role, true, OpCode::Continuation, 0, &text_bytes[8..]));
        stream.extend(frame(role, false, OpCode::Binary, 0, &[1, 2]));
        stream.extend(frame(role, true, OpCode::Ping, 0, &[0xff; 125]));
        stream.extend(frame(role, true, OpCode::Continuation, 0, &[3]));
        stream.extend(frame(role, true, OpCode::Text, 0, b""));
        let run = run_all(config, None, &stream);
        assert_eq!(
            run.events,
            [
                Owned::Ping(b"p1".to_vec()),
                Owned::Pong(vec![]),
                text("κόσμε, world"),
                Owned::Ping(vec![0xff; 125]),
                Owned::Binary(vec![1, 2, 3]),
                text(""),
            ],
            "{role:?}"
        );
        assert_eq!(run.sent.len(), 2, "two pongs");
        assert!(run.idle);
        assert_eq!(run.state, SessionState::Open);
    }
}

#[test]
fn fragmentation_errors_close_with_1002() {
    let role = Role::Server;
    let cases: [(Vec<u8>, ProtocolError); 3] = [
        (
            frame(role, true, OpCode::Continuation, 0, b"x"),
            ProtocolError::UnexpectedContinuation,
        ),
        (
            [
                frame(role, false, OpCode::Text, 0, b"a"),
                frame(role, true, OpCode::Binary, 0, b"b"),
            ]
            .concat(),
            ProtocolError::ExpectedContinuation,
        ),
        (
            vec![0x09, 0x80, 0, 0, 0, 0], // a ping without FIN
            ProtocolError::FragmentedControlFrame,
        ),
    ];
    for (stream, error) in cases {
        let run = run_all(SessionConfig::server(), None, &stream);
        assert_eq!(run.events, [Owned::Error(error)]);
        assert_eq!(run.sent.len(), 1);
        assert_eq!(
            &run.sent[0].1[..4],
            [0x88, 2 + error.to_string().len() as u8, 0x03, 0xea]
        );
        assert_eq!(run.state, SessionState::CloseSent);
    }
}

// ---- Close handshake -------------------------------------------------------------------------

#[test]
fn a_peer_close_is_echoed_with_its_code_in_both_roles() {
    for role in [Role::Server, Role::Client] {
        let config = SessionConfig::new(role);
        let mut stream = frame(role, true, OpCode::Text, 0, b"last");
        stream.extend(frame(role, true, OpCode::Close, 0, b"\x0f\xa0going"));
        stream.extend(frame(
            role,
            true,
            OpCode::Text,
            0,
            b"after the close: ignored",
        ));
        stream.extend([0xff, 0xff, 0xff]); // not even a valid frame: ignored too
        let run = run_all(config, None, &stream);
        assert_eq!(
            run.events,
            [
                text("last"),
                Owned::Close(Some(4000), "going".into(), Initiator::Peer)
            ]
        );
        assert_eq!(run.state, SessionState::Closed);
        assert_eq!(run.sent.len(), 1);
        let (op, echo) = &run.sent[0];
        assert_eq!(*op, OpCode::Close);
        match role {
            // Same code, no reason.
            Role::Server => assert_eq!(echo, &[0x88, 0x02, 0x0f, 0xa0]),
            Role::Client => {
                assert_eq!(&echo[..2], [0x88, 0x82]);
                let mut code = echo[6..].to_vec();
                lanes_proto::mask::apply_mask(&mut code, [echo[2], echo[3], echo[4], echo[5]], 0);
                assert_eq!(code, [0x0f, 0xa0]);
            }
        }
    }
}

#[test]
fn an_empty_close_is_echoed_empty() {
    let run = run_all(
        SessionConfig::server(),
        None,
        &frame(Role::Server, true, OpCode::Close, 0, b""),
    );
    assert_eq!(
        run.events,
        [Owned::Close(None, String::new(), Initiator::Peer)]
    );
    assert_eq!(run.sent, [(OpCode::Close, vec![0x88, 0x00])]);
}

#[test]
fn after_our_close_only_the_peers_close_is_delivered() {
    for role in [Role::Server, Role::Client] {
        let config = SessionConfig::new(role);
        let mut stream = frame(role, true, OpCode::Text, 0, b"in flight");
        stream.extend(frame(role, true, OpCode::Ping, 0, b"p"));
        stream.extend(frame(role, true, OpCode::Pong, 0, b"q"));
        stream.extend(frame(role, false, OpCode::Binary, 0, b"fr"));
        stream.extend(frame(role, true, OpCode::Continuation, 0, b"ag"));
        stream.extend(frame(role, true, OpCode::Close, 0, b"\x03\xe8"));
        for cut in 0..=stream.len() {
            let mut conn = Connection::new(config, 0);
            let mut out = Recorder::default();
            assert!(
                conn.session
                    .close(CloseCode::GOING_AWAY, "bye", 0, &mut out)
            );
            assert!(!conn.session.can_send());
            assert_eq!(conn.session.sent_close(), Some(CloseCode::GOING_AWAY));
            let mut scratch = InflateScratch::new(1 << 20);
            let mut events = Vec::new();
            for piece in [&stream[..cut], &stream[cut..]] {
                let mut data = piece.to_vec();
                let mut at = 0;
                while at < data.len() {
                    let step = conn
                        .handle_bytes(&mut data[at..], &mut scratch, 0, &mut out)
                        .unwrap();
                    at += step.used;
                    events.extend(step.event.as_ref().map(Owned::of));
                    conn.receiver.release();
                }
            }
            assert_eq!(
                events,
                [Owned::Close(Some(1000), String::new(), Initiator::Us)]
            );
            assert_eq!(out.sent.len(), 1, "our close only: no pong, no echo");
            assert_eq!(conn.session.state(), SessionState::Closed);
            assert_eq!(conn.poll_timeout(), None);
            assert!(conn.receiver.is_idle());
        }
    }
}

#[test]
fn bad_input_closes_with_the_right_code() {
    let role = Role::Server;
    let small = SessionConfig {
        max_frame_len: 100,
        max_message_len: 150,
        ..SessionConfig::server()
    };
    let cases: Vec<(SessionConfig, Vec<u8>, ProtocolError, u16)> = vec![
        (
            SessionConfig::server(),
            frame(role, true, OpCode::Text, 0, b"ok \xce\x41 bad"),
            ProtocolError::InvalidUtf8,
            1007,
        ),
        (
            SessionConfig::server(),
            frame(role, true, OpCode::Close, 0, b"\x03\xe8\xff"),
            ProtocolError::InvalidCloseReason,
            1007,
        ),
        (
            SessionConfig::server(),
            [
                frame(role, false, OpCode::Text, 0, b"\xe2\x82"),
                frame(role, true, OpCode::Continuation, 0, b""),
            ]
            .concat(),
            ProtocolError::InvalidUtf8,
            1007,
        ),
        (
            small,
            frame(role, true, OpCode::Binary, 0, &[0; 101]),
            ProtocolError::FrameTooBig,
            1009,
        ),
        (
            small,
            [
                frame(role, false, OpCode::Binary, 0, &[0; 100]),
                frame(role, true, OpCode::Continuation, 0, &[0; 51]),
            ]
            .concat(),
            ProtocolError::MessageTooBig,
            1009,
        ),
        (
            SessionConfig::server(),
            frame(role, true, OpCode::Close, 0, b"\x03\xed"),
            ProtocolError::InvalidCloseCode(1005),
            1002,
        ),
        (
            SessionConfig::server(),
            frame(role, true, OpCode::Close, 0, b"\x03"),
            ProtocolError::CloseFrameOneByte,
            1002,
        ),
        (
            SessionConfig::server(),
            frame(role, true, OpCode::Binary, RSV1, b"x"),
            ProtocolError::ReservedBits(RSV1),
            1002,
        ),
        (
            SessionConfig::server(),
            frame(Role::Client, true, OpCode::Binary, 0, b"x"),
            ProtocolError::UnmaskedFrame,
            1002,
        ),
        (
            SessionConfig::client(),
            frame(Role::Server, true, OpCode::Binary, 0, b"x"),
            ProtocolError::MaskedFrame,
            1002,
        ),
    ];
    for (config, mut stream, error, code) in cases {
        // Bytes after the error are never looked at.
        stream.extend(frame(config.role, true, OpCode::Text, 0, b"never"));
        let run = run_all(config, None, &stream);
        assert_eq!(run.events.last(), Some(&Owned::Error(error)), "{error:?}");
        assert_eq!(error.close_code().as_u16(), code);
        let (op, close) = run.sent.last().unwrap();
        assert_eq!(*op, OpCode::Close);
        let payload_at = if config.role == Role::Client { 6 } else { 2 };
        let mut payload = close[payload_at..].to_vec();
        if config.role == Role::Client {
            lanes_proto::mask::apply_mask(
                &mut payload,
                [close[2], close[3], close[4], close[5]],
                0,
            );
        }
        assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), code);
        assert_eq!(&payload[2..], error.to_string().as_bytes());
        assert_eq!(run.state, SessionState::CloseSent);
    }
}

#[test]
fn invalid_text_fails_before_its_frame_ends() {
    let stream = frame(Role::Server, true, OpCode::Text, 0, b"abc\xffdefghij");
    // Header and 4 payload bytes only: the 0xff is already refused.
    let run = run_cut(SessionConfig::server(), None, &stream[..10], &[6]);
    assert_eq!(run.events, [Owned::Error(ProtocolError::InvalidUtf8)]);
}

// ---- Auto-pong ---------------------------------------------------------------------------------

#[test]
fn auto_pong_can_be_turned_off() {
    let stream = frame(Role::Server, true, OpCode::Ping, 0, b"are you there");
    let on = run_all(SessionConfig::server(), None, &stream);
    assert_eq!(on.events, [Owned::Ping(b"are you there".to_vec())]);
    assert_eq!(on.sent, [(OpCode::Pong, b"\x8a\x0dare you there".to_vec())]);
    let off = SessionConfig {
        auto_pong: false,
        ..SessionConfig::server()
    };
    let run = run_all(off, None, &stream);
    assert_eq!(run.events, on.events, "the ping is delivered either way");
    assert!(run.sent.is_empty());
}

// ---- permessage-deflate ----------------------------------------------------------------------

/// Messages compressed as `sender` under `params`: each as (first-frame RSV, payload).
fn compressed(params: &DeflateParams, sender: Role, messages: &[&[u8]]) -> Vec<Vec<u8>> {
    let config = DeflateConfig {
        enabled: true,
        min_compress_len: 0,
        ..DeflateConfig::default()
    };
    let mut deflater: Deflater = params.deflater(sender, &config);
    messages
        .iter()
        .map(|m| {
            let mut out = Vec::new();
            assert_eq!(deflater.compress(m, &mut out), SendAs::Compressed);
            out
        })
        .collect()
}

#[test]
fn compressed_messages_in_both_roles() {
    let long = "compressible text, compressible text, compressible text ".repeat(8);
    let messages: [&[u8]; 3] = [
        b"Hello, Hello, Hello",
        long.as_bytes(),
        b"Hello, Hello, Hello",
    ];
    for role in [Role::Server, Role::Client] {
        let sender = match role {
            Role::Server => Role::Client,
            Role::Client => Role::Server,
        };
        for params in [
            DeflateParams::default(),
            DeflateParams {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                ..DeflateParams::default()
            },
        ] {
            let payloads = compressed(&params, sender, &messages);
            let mut stream = Vec::new();
            // Whole; fragmented in three with a ping between; uncompressed; whole again.
            stream.extend(frame(role, true, OpCode::Text, RSV1, &payloads[0]));
            let (a, rest) = payloads[1].split_at(payloads[1].len() / 3);
            let (b, c) = rest.split_at(rest.len() / 2);
            stream.extend(frame(role, false, OpCode::Text, RSV1, a));
            stream.extend(frame(role, true, OpCode::Ping, 0, b""));
            stream.extend(frame(role, false, OpCode::Continuation, 0, b));
            stream.extend(frame(role, true, OpCode::Continuation, 0, c));
            stream.extend(frame(role, true, OpCode::Binary, 0, b"plain"));
            stream.extend(frame(role, true, OpCode::Binary, RSV1, &payloads[2]));
            let config = SessionConfig::new(role);
            let run = run_all(config, Some(&params), &stream);
            assert_eq!(
                run.events,
                [
                    text("Hello, Hello, Hello"),
                    Owned::Ping(vec![]),
                    text(&long),
                    Owned::Binary(b"plain".to_vec()),
                    Owned::Binary(b"Hello, Hello, Hello".to_vec()),
                ],
                "{role:?} {params:?}"
            );
            // Without deflate enabled, RSV1 is a protocol error.
            let run = run_cut(config, None, &stream, &[]);
            assert_eq!(
                run.events,
                [Owned::Error(ProtocolError::ReservedBits(RSV1))]
            );
        }
    }
}

#[test]
fn rfc_7692_7_2_3_1_fragmented_compressed_hello() {
    // 0x41 0x03 0xf2 0x48 0xcd, then 0x80 0x04 0xc9 0xc9 0x07 0x00 (server to client).
    let wire = [
        0x41, 0x03, 0xf2, 0x48, 0xcd, 0x80, 0x04, 0xc9, 0xc9, 0x07, 0x00,
    ];
    let run = run_all(
        SessionConfig::client(),
        Some(&DeflateParams::default()),
        &wire,
    );
    assert_eq!(run.events, [text("Hello")]);
}

#[test]
fn inflated_messages_go_through_the_size_limit_and_utf8_check() {
    let params = DeflateParams::default();
    let config = SessionConfig {
        max_message_len: 1000,
        ..SessionConfig::server()
    };
    // 1001 bytes that compress to a handful: the limit holds on the inflated size.
    let payloads = compressed(&params, Role::Client, &[&[b'a'; 1001], b"caf\xc3"]);
    let bomb = frame(Role::Server, true, OpCode::Binary, RSV1, &payloads[0]);
    assert!(bomb.len() < 100);
    let run = run_all(config, Some(&params), &bomb);
    assert_eq!(run.events, [Owned::Error(ProtocolError::MessageTooBig)]);
    // Text that inflates to invalid UTF-8 (a cut 'é') fails with 1007.
    let fresh = compressed(&params, Role::Client, &[b"caf\xc3"]);
    let bad = frame(Role::Server, true, OpCode::Text, RSV1, &fresh[0]);
    let run = run_all(config, Some(&params), &bad);
    assert_eq!(run.events, [Owned::Error(ProtocolError::InvalidUtf8)]);
    // Not deflate data at all: 1002.
    let junk = frame(
        Role::Server,
        true,
        OpCode::Binary,
        RSV1,
        &[0xff, 0xff, 0xff],
    );
    let run = run_all(config, Some(&params), &junk);
    assert_eq!(
        run.events,
        [Owned::Error(ProtocolError::InvalidCompressedData)]
    );
    assert_eq!(run.sent[0].1[2..4], [0x03, 0xea]);
}

// ---- Timing: a client and a server on a virtual clock ------------------------------------------

/// One end of the pair: its connection and what it has written, not yet delivered.
struct End {
    conn: Connection,
    out: Recorder,
    events: Vec<Owned>,
}

/// A client and a server exchanging bytes in memory, with a virtual clock in microseconds.
struct Pair {
    client: End,
    server: End,
    now_us: u64,
    scratch: InflateScratch,
}

impl Pair {
    fn new(client: SessionConfig, server: SessionConfig) -> Pair {
        let end = |config| End {
            conn: Connection::new(config, 0),
            out: Recorder::default(),
            events: Vec::new(),
        };
        Pair {
            client: end(client),
            server: end(server),
            now_us: 0,
            scratch: InflateScratch::new(1 << 20),
        }
    }

    /// Delivers what `from` has written to `to`, at the current time.
    fn deliver(from: &mut End, to: &mut End, now_us: u64, scratch: &mut InflateScratch) -> bool {
        let frames: Vec<_> = from.out.sent.drain(..).collect();
        for (_, bytes) in &frames {
            let mut data = bytes.clone();
            let mut at = 0;
            while at < data.len() {
                let step = to
                    .conn
                    .handle_bytes(&mut data[at..], scratch, now_us, &mut to.out)
                    .unwrap();
                at += step.used;
                to.events.extend(step.event.as_ref().map(Owned::of));
                to.conn.receiver.release();
            }
        }
        !frames.is_empty()
    }

    /// Moves bytes both ways until neither end has anything to send.
    fn drive(&mut self) {
        loop {
            let a = Pair::deliver(
                &mut self.client,
                &mut self.server,
                self.now_us,
                &mut self.scratch,
            );
            let b = Pair::deliver(
                &mut self.server,
                &mut self.client,
                self.now_us,
                &mut self.scratch,
            );
            if !a && !b {
                return;
            }
        }
    }

    /// Sets the clock to `now_us` and lets both ends act on their deadlines; returns their
    /// timeouts.
    fn advance_to(&mut self, now_us: u64) -> (Option<Timeout>, Option<Timeout>) {
        self.now_us = now_us;
        let c = self
            .client
            .conn
            .handle_timeout(now_us, &mut self.client.out);
        let s = self
            .server
            .conn
            .handle_timeout(now_us, &mut self.server.out);
        (c, s)
    }
}

fn keepalive(role: Role, auto_pong: bool) -> SessionConfig {
    SessionConfig {
        ping_interval_us: Some(1_000_000),
        pong_timeout_us: 500_000,
        close_timeout_us: 200_000,
        auto_pong,
        ..SessionConfig::new(role)
    }
}

fn no_keepalive(role: Role) -> SessionConfig {
    SessionConfig {
        ping_interval_us: None,
        ..keepalive(role, true)
    }
}

#[test]
fn keepalive_ping_after_silence_and_an_answered_pong_keeps_the_connection() {
    let mut pair = Pair::new(no_keepalive(Role::Client), keepalive(Role::Server, true));
    assert_eq!(pair.client.conn.poll_timeout(), None);
    assert_eq!(pair.server.conn.poll_timeout(), Some(1_000_000));
    assert_eq!(pair.advance_to(999_999), (None, None));
    assert!(
        pair.server.out.sent.is_empty(),
        "no ping before the interval"
    );
    assert_eq!(pair.advance_to(1_000_000), (None, None));
    assert_eq!(pair.server.out.sent, [(OpCode::Ping, vec![0x89, 0x00])]);
    // The pong deadline: ping time + pong timeout.
    assert_eq!(pair.server.conn.poll_timeout(), Some(1_500_000));
    pair.now_us = 1_000_300;
    pair.drive();
    assert_eq!(pair.client.events, [Owned::Ping(vec![])]);
    assert_eq!(pair.server.events, [Owned::Pong(vec![])]);
    assert_eq!(pair.server.conn.session.take_ping_rtt_us(), Some(300));
    assert_eq!(
        pair.server.conn.session.take_ping_rtt_us(),
        None,
        "taken once"
    );
    // Answered: the next ping is an interval after the pong.
    assert_eq!(pair.server.conn.poll_timeout(), Some(2_000_300));
    assert_eq!(pair.advance_to(1_500_000), (None, None));
    assert_eq!(pair.server.conn.session.state(), SessionState::Open);
}

#[test]
fn the_rtt_is_from_ping_to_pong() {
    let mut pair = Pair::new(no_keepalive(Role::Client), keepalive(Role::Server, true));
    pair.advance_to(1_000_000);
    // The ping reaches the client 40 µs later; its pong reaches the server 70 µs after that.
    pair.now_us = 1_000_040;
    Pair::deliver(
        &mut pair.server,
        &mut pair.client,
        pair.now_us,
        &mut pair.scratch,
    );
    pair.now_us = 1_000_110;
    Pair::deliver(
        &mut pair.client,
        &mut pair.server,
        pair.now_us,
        &mut pair.scratch,
    );
    assert_eq!(pair.server.conn.session.take_ping_rtt_us(), Some(110));
}

#[test]
fn a_missing_pong_times_out_exactly_at_ping_time_plus_pong_timeout() {
    for (client_role, server_role) in [(Role::Client, Role::Server), (Role::Server, Role::Client)] {
        // The end that pings (`server` here) talks to one that does not answer.
        let mut pair = Pair::new(keepalive(client_role, false), keepalive(server_role, true));
        pair.client.conn.config.ping_interval_us = None;
        pair.advance_to(1_000_000);
        pair.drive(); // the ping arrives, nothing comes back
        assert_eq!(pair.client.events, [Owned::Ping(vec![])]);
        assert_eq!(pair.advance_to(1_499_999), (None, None));
        assert_eq!(
            pair.advance_to(1_500_000),
            (None, Some(Timeout::PongMissed))
        );
        assert_eq!(pair.server.conn.session.state(), SessionState::TimedOut);
        assert_eq!(pair.server.conn.poll_timeout(), None);
        assert!(!pair.server.conn.session.can_send());
    }
}

#[test]
fn a_message_after_the_ping_counts_as_a_sign_of_life() {
    let silent = SessionConfig {
        auto_pong: false,
        ..no_keepalive(Role::Client)
    };
    let mut pair = Pair::new(silent, keepalive(Role::Server, true));
    pair.advance_to(1_000_000);
    Pair::deliver(
        &mut pair.server,
        &mut pair.client,
        1_000_000,
        &mut pair.scratch,
    );
    assert!(pair.server.conn.session.is_awaiting_pong());
    // No pong: the client sends a message at 1_200_000 instead.
    pair.now_us = 1_200_000;
    let mut message = Vec::new();
    encode_frame(
        &mut message,
        Role::Client,
        FrameHeader::new(true, OpCode::Text, 0),
        b"hi",
        KEY,
    );
    pair.client.out.sent.push((OpCode::Text, message));
    pair.drive();
    assert_eq!(pair.server.events, [text("hi")]);
    // No longer waiting: a runtime that armed its timer for the pong deadline re-arms it.
    assert!(!pair.server.conn.session.is_awaiting_pong());
    assert_eq!(pair.advance_to(1_500_000).1, None);
    assert_eq!(pair.server.conn.poll_timeout(), Some(2_200_000));
    assert_eq!(
        pair.server.conn.session.take_ping_rtt_us(),
        None,
        "no pong, no RTT"
    );
}

/// A server-side end alone, fed bytes from a peer at chosen times: keepalive after 1 s, the
/// pong within 500 ms, a frame or message finished within 3 s of its first byte.
fn lone_server() -> End {
    let config = SessionConfig {
        message_timeout_us: 3_000_000,
        ..keepalive(Role::Server, true)
    };
    End {
        conn: Connection::new(config, 0),
        out: Recorder::default(),
        events: Vec::new(),
    }
}

/// Feeds `bytes` from the peer at `now_us`.
fn feed(end: &mut End, bytes: &[u8], now_us: u64, scratch: &mut InflateScratch) {
    let mut data = bytes.to_vec();
    let mut at = 0;
    while at < data.len() {
        let step = end
            .conn
            .handle_bytes(&mut data[at..], scratch, now_us, &mut end.out)
            .unwrap();
        at += step.used;
        end.events.extend(step.event.as_ref().map(Owned::of));
        end.conn.receiver.release();
    }
}

#[test]
fn a_frame_trickled_a_byte_at_a_time_times_out_from_its_first_byte() {
    let mut scratch = InflateScratch::new(1 << 20);
    let mut server = lone_server();
    let message = frame(Role::Server, true, OpCode::Text, 0, b"slow");
    // One byte every 100 ms from t = 0.5 s: each is a sign of nothing.
    for (i, byte) in message.iter().take(message.len() - 1).enumerate() {
        let now = 500_000 + i as u64 * 100_000;
        feed(&mut server, &[*byte], now, &mut scratch);
        assert_eq!(
            server.conn.poll_timeout(),
            Some(3_500_000),
            "the deadline runs from the first byte, whatever follows"
        );
    }
    assert!(server.events.is_empty());
    let timeout = server.conn.handle_timeout(3_499_999, &mut server.out);
    assert_eq!(timeout, None);
    let timeout = server.conn.handle_timeout(3_500_000, &mut server.out);
    assert_eq!(timeout, Some(Timeout::MessageIncomplete));
    assert_eq!(server.conn.session.state(), SessionState::TimedOut);
    // No keepalive ping went out meanwhile; the only frame is the 1008 close.
    let mut close = vec![0x88, 30, 0x03, 0xf0];
    close.extend_from_slice(b"message not finished in time");
    assert_eq!(server.out.sent, [(OpCode::Close, close)]);
}

#[test]
fn most_of_a_large_frame_then_a_byte_now_and_then_times_out() {
    let mut scratch = InflateScratch::new(1 << 20);
    let mut server = lone_server();
    let payload = vec![b'x'; 100_000];
    let message = frame(Role::Server, true, OpCode::Binary, 0, &payload);
    let (bulk, rest) = message.split_at(message.len() - 10);
    feed(&mut server, bulk, 2_000_000, &mut scratch);
    for (i, byte) in rest.iter().take(9).enumerate() {
        feed(
            &mut server,
            &[*byte],
            2_000_000 + (i as u64 + 1) * 300_000,
            &mut scratch,
        );
    }
    assert_eq!(server.conn.poll_timeout(), Some(5_000_000));
    assert_eq!(
        server.conn.handle_timeout(5_000_000, &mut server.out),
        Some(Timeout::MessageIncomplete)
    );
}

#[test]
fn a_finished_message_ends_the_deadline_and_restarts_keepalive_from_its_end() {
    let mut scratch = InflateScratch::new(1 << 20);
    let mut server = lone_server();
    let message = frame(Role::Server, true, OpCode::Text, 0, b"done");
    let (head, tail) = message.split_at(3);
    feed(&mut server, head, 100_000, &mut scratch);
    assert_eq!(server.conn.poll_timeout(), Some(3_100_000));
    feed(&mut server, tail, 2_900_000, &mut scratch);
    assert_eq!(server.events, [text("done")]);
    // Keepalive counts from the completed message.
    assert_eq!(server.conn.poll_timeout(), Some(3_900_000));
}

#[test]
fn a_fragmented_message_must_finish_in_time_though_pings_come_between_its_fragments() {
    let mut scratch = InflateScratch::new(1 << 20);
    let mut server = lone_server();
    feed(
        &mut server,
        &frame(Role::Server, false, OpCode::Text, 0, b"a"),
        1_000_000,
        &mut scratch,
    );
    for t in [1_500_000, 2_500_000, 3_500_000] {
        feed(
            &mut server,
            &frame(Role::Server, true, OpCode::Ping, 0, b""),
            t,
            &mut scratch,
        );
        feed(
            &mut server,
            &frame(Role::Server, false, OpCode::Continuation, 0, b"b"),
            t,
            &mut scratch,
        );
    }
    assert_eq!(server.events.len(), 3, "the pings were delivered");
    assert_eq!(server.conn.poll_timeout(), Some(4_000_000));
    assert_eq!(
        server.conn.handle_timeout(4_000_000, &mut server.out),
        Some(Timeout::MessageIncomplete)
    );
}

#[test]
fn stray_bytes_are_no_answer_to_a_keepalive_ping() {
    let mut scratch = InflateScratch::new(1 << 20);
    let mut server = lone_server();
    assert_eq!(server.conn.handle_timeout(1_000_000, &mut server.out), None);
    assert_eq!(server.out.sent.len(), 1, "the ping");
    // A header byte is not a pong; the message deadline now governs (3 s from that byte).
    let message = frame(Role::Server, true, OpCode::Pong, 0, b"");
    feed(&mut server, &message[..1], 1_200_000, &mut scratch);
    assert_eq!(server.conn.poll_timeout(), Some(4_200_000));
    // The rest completes the pong: alive, and keepalive counts from it.
    feed(&mut server, &message[1..], 1_300_000, &mut scratch);
    assert_eq!(server.events, [Owned::Pong(vec![])]);
    assert_eq!(server.conn.poll_timeout(), Some(2_300_000));
}

#[test]
fn an_unanswered_close_times_out_at_close_time_plus_close_timeout() {
    let mut pair = Pair::new(no_keepalive(Role::Client), no_keepalive(Role::Server));
    assert!(
        pair.server
            .conn
            .session
            .close(CloseCode::NORMAL, "", 7, &mut pair.server.out)
    );
    assert_eq!(pair.server.conn.poll_timeout(), Some(200_007));
    // The close is never delivered.
    assert_eq!(pair.advance_to(200_006), (None, None));
    assert_eq!(
        pair.advance_to(200_007),
        (None, Some(Timeout::CloseUnanswered))
    );
    assert_eq!(pair.server.conn.session.state(), SessionState::TimedOut);
}

#[test]
fn an_answered_close_ends_both_sessions_closed() {
    for client_closes in [true, false] {
        let mut pair = Pair::new(keepalive(Role::Client, true), keepalive(Role::Server, true));
        pair.now_us = 10;
        let (closer, other) = if client_closes {
            (&mut pair.client, &mut pair.server)
        } else {
            (&mut pair.server, &mut pair.client)
        };
        assert!(
            closer
                .conn
                .session
                .close(CloseCode::new(4001), "done", 10, &mut closer.out)
        );
        assert_eq!(closer.conn.session.state(), SessionState::CloseSent);
        assert_eq!(other.conn.session.state(), SessionState::Open);
        pair.drive();
        let (closer, other) = if client_closes {
            (&pair.client, &pair.server)
        } else {
            (&pair.server, &pair.client)
        };
        assert_eq!(
            other.events,
            [Owned::Close(Some(4001), "done".into(), Initiator::Peer)]
        );
        assert_eq!(
            closer.events,
            [Owned::Close(Some(4001), String::new(), Initiator::Us)]
        );
        for end in [closer, other] {
            assert_eq!(end.conn.session.state(), SessionState::Closed);
            assert_eq!(end.conn.poll_timeout(), None);
            assert!(!end.conn.session.can_send());
            assert_eq!(end.conn.session.sent_close(), Some(CloseCode::new(4001)));
        }
        // Nothing is due any more, however long we wait.
        assert_eq!(pair.advance_to(u64::MAX), (None, None));
    }
}
