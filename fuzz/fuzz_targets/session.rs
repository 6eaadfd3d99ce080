//! The session (`lanes_proto::session`): Receiver + Session in either role, with or without
//! permessage-deflate, fed a byte stream whole, in chunks, and one byte at a time.
//!
//! Input: byte 0 picks the setup (bit 0: role; bit 1: deflate; bit 2: small limits; bit 3: we
//! close before the first byte arrives; bits 4-7: chunk size - 1), byte 1 the deflate
//! parameters (bit 0: server_no_context_takeover, bit 1: client_no_context_takeover); the rest
//! is the stream.
//!
//! Oracles: the three feedings give the same events, the same control frames sent and the
//! same error; nothing is delivered after a close (ours: only the peer's close; the peer's:
//! nothing at all) or after an error; every call consumes at least one byte; what the receiver
//! holds never exceeds the limits (message + a control payload + a header); delivered messages
//! respect the message limit; and nothing panics (text is checked as UTF-8 by the type, and
//! again by the receiver's debug assertion).
#![no_main]

use lanes_proto::deflate::{DeflateParams, InflateScratch};
use lanes_proto::session::{Closed, Connection, Event, Initiator, Output, SessionConfig};
use lanes_proto::{CloseCode, OpCode, ProtocolError, Role};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Clone, PartialEq)]
enum Owned {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String, Initiator),
    Sent(OpCode, Vec<u8>),
    Error(ProtocolError),
}

#[derive(Default)]
struct Record {
    log: Vec<Owned>,
}

impl Output for Record {
    fn control(&mut self, opcode: OpCode, frame: &[u8]) {
        self.log.push(Owned::Sent(opcode, frame.to_vec()));
    }
    fn mask_key(&mut self) -> [u8; 4] {
        [9, 8, 7, 6]
    }
}

fn own(event: &Event<'_>) -> Owned {
    match *event {
        Event::Text(t) => Owned::Text(t.to_owned()),
        Event::Binary(b) => Owned::Binary(b.to_vec()),
        Event::Ping(b) => Owned::Ping(b.to_vec()),
        Event::Pong(b) => Owned::Pong(b.to_vec()),
        Event::Close(Closed { code, reason, initiator }) => {
            Owned::Close(code.map(CloseCode::as_u16), reason.to_owned(), initiator)
        }
    }
}

fn run(
    config: SessionConfig,
    deflate: Option<DeflateParams>,
    we_close: bool,
    stream: &[u8],
    chunk: usize,
) -> Vec<Owned> {
    let mut conn = Connection::new(config, 0);
    if let Some(params) = deflate {
        conn.enable_deflate(&params);
    }
    let mut scratch = InflateScratch::new(config.max_message_len);
    let mut out = Record::default();
    if we_close {
        assert!(conn.session.close(CloseCode::NORMAL, "", 0, &mut out));
    }
    let hold_max = config.max_message_len + 125 + 14;
    let mut closed = false;
    let mut failed = false;
    for (i, piece) in stream.chunks(chunk.max(1)).enumerate() {
        let mut data = piece.to_vec();
        let mut at = 0;
        let len = data.len();
        while at < len {
            match conn.handle_bytes(&mut data[at..], &mut scratch, i as u64, &mut out) {
                Ok(step) => {
                    assert!(step.used > 0 && step.used <= len - at);
                    at += step.used;
                    if let Some(event) = step.event {
                        assert!(!closed && !failed, "event after a close or an error");
                        match event {
                            Event::Close(c) => {
                                closed = true;
                                let expected = if we_close { Initiator::Us } else { Initiator::Peer };
                                assert_eq!(c.initiator, expected);
                            }
                            _ => assert!(!we_close, "data or ping/pong after our close"),
                        }
                        if let Event::Text(t) = event {
                            assert!(t.len() as u64 <= config.max_message_len);
                        }
                        if let Event::Binary(b) = event {
                            assert!(b.len() as u64 <= config.max_message_len);
                        }
                        out.log.push(own(&event));
                    }
                    conn.receiver.release();
                }
                Err(error) => {
                    assert!(!failed && !closed);
                    failed = true;
                    out.log.push(Owned::Error(error));
                    at = len;
                }
            }
            assert!(conn.receiver.buffered_len() as u64 <= hold_max);
        }
    }
    if closed || failed {
        assert!(!conn.session.can_send());
    }
    out.log
}

fuzz_target!(|input: &[u8]| {
    let [setup, params, stream @ ..] = input else {
        return;
    };
    let role = if setup & 1 == 0 { Role::Server } else { Role::Client };
    let deflate = (setup & 2 != 0).then(|| DeflateParams {
        server_no_context_takeover: params & 1 != 0,
        client_no_context_takeover: params & 2 != 0,
        ..DeflateParams::default()
    });
    let (max_frame_len, max_message_len) =
        if setup & 4 == 0 { (1 << 16, 1 << 17) } else { (100, 150) };
    let config = SessionConfig {
        max_frame_len,
        max_message_len,
        ..SessionConfig::new(role)
    };
    let we_close = setup & 8 != 0;
    let chunk = usize::from(setup >> 4) + 1;
    let whole = run(config, deflate, we_close, stream, stream.len());
    let chunked = run(config, deflate, we_close, stream, chunk);
    let bytewise = run(config, deflate, we_close, stream, 1);
    assert_eq!(whole, chunked);
    assert_eq!(whole, bytewise);
});
