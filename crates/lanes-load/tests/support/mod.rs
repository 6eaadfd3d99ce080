//! Pieces of the tiny blocking WebSocket servers the lanes-load tests run against: a listener
//! with a thread per connection, the upgrade, a receive loop on lanes-proto's server session,
//! and frame encoding. The upgrade and the receive loop work on any blocking byte stream:
//! a `TcpStream`, or a rustls `StreamOwned` over one (tests/tls.rs).

#![allow(dead_code, unreachable_pub, missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::ops::ControlFlow;
use std::sync::Arc;

use lanes_proto::OpCode;
use lanes_proto::deflate::{DeflateParams, InflateScratch};
use lanes_proto::frame::{FrameHeader, MAX_HEADER_LEN};
use lanes_proto::handshake::{
    AcceptOptions, HeadLimits, Parsed, RequestHead, UpgradeOffer, write_accept,
};
use lanes_proto::session::{Connection, Event, Output, SessionConfig};
use serde_json::Value;

/// How much one read takes.
const CHUNK: usize = 64 * 1024;

/// Listens on a free loopback port and runs `serve` on a thread of its own for every
/// connection (with TCP_NODELAY set); it runs until the test process ends.
pub fn spawn_server(serve: impl Fn(TcpStream) + Send + Sync + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = Arc::new(serve);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            stream.set_nodelay(true).unwrap();
            let serve = Arc::clone(&serve);
            std::thread::spawn(move || serve(stream));
        }
    });
    addr
}

/// Reads a request head and answers 101 with no extension; returns the bytes read after the
/// head, or `None` if the client went away first.
pub fn accept_upgrade(stream: &mut (impl Read + Write)) -> Option<Vec<u8>> {
    accept_upgrade_with(stream, |_| (None, ())).map(|(rest, ())| rest)
}

/// Reads a request head and answers 101 with the `Sec-WebSocket-Extensions` value that
/// `choose` picks from the offer (none: no header); returns the bytes read after the head
/// and what `choose` returned beside the value, or `None` if the client went away first.
pub fn accept_upgrade_with<T>(
    stream: &mut (impl Read + Write),
    choose: impl FnOnce(&UpgradeOffer<'_>) -> (Option<String>, T),
) -> Option<(Vec<u8>, T)> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; CHUNK];
    let (head_len, chosen) = loop {
        let n = stream.read(&mut chunk).unwrap_or(0);
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Parsed::Complete(head) = RequestHead::parse(&buf, &HeadLimits::default()).unwrap() {
            let offer = UpgradeOffer::validate(&head).unwrap();
            let (extensions, chosen) = choose(&offer);
            let options = AcceptOptions {
                extensions: extensions.as_deref(),
                ..AcceptOptions::default()
            };
            let mut response = Vec::new();
            write_accept(&offer, &options, &mut response).unwrap();
            stream.write_all(&response).unwrap();
            break (head.head_len(), chosen);
        }
    };
    buf.drain(..head_len);
    Some((buf, chosen))
}

/// The server session's answers (pongs, the echo of the client's close), queued in the
/// bytes to write.
struct Answers<'a>(&'a mut Vec<u8>);

impl Output for Answers<'_> {
    fn control(&mut self, _opcode: OpCode, frame: &[u8]) {
        self.0.extend_from_slice(frame);
    }
}

/// Serves what the client sends, starting with the bytes already in `buf`, through a server
/// session (lanes-proto's, with `config`; inflating under `deflate` when it was agreed): every
/// event goes to `on_event` with the bytes to answer so far, which are written after each
/// read's events. The session answers pings and echoes the client's close on its own (its
/// answers are queued in the same bytes, in order). Ends after the client's close (answered),
/// when `on_event` breaks (after writing the answers before it), when a write fails, on a
/// protocol error, or when the client goes away.
pub fn serve_session(
    stream: &mut (impl Read + Write),
    mut buf: Vec<u8>,
    config: SessionConfig,
    deflate: Option<&DeflateParams>,
    mut on_event: impl FnMut(Event<'_>, &mut Vec<u8>) -> ControlFlow<()>,
) {
    let mut conn = Connection::new(config, 0);
    if let Some(params) = deflate {
        conn.enable_deflate(params);
    }
    let mut scratch = InflateScratch::new(config.max_message_len);
    let mut chunk = vec![0u8; CHUNK];
    let mut out = Vec::new();
    loop {
        let mut at = 0;
        let mut done = false;
        out.clear();
        while at < buf.len() {
            let Ok(step) =
                conn.handle_bytes(&mut buf[at..], &mut scratch, 0, &mut Answers(&mut out))
            else {
                done = true;
                break;
            };
            at += step.used;
            if let Some(event) = step.event {
                let closed = matches!(event, Event::Close(_));
                if on_event(event, &mut out).is_break() || closed {
                    done = true;
                    break;
                }
            }
        }
        conn.receiver.release();
        buf.clear();
        let failed = !out.is_empty() && stream.write_all(&out).is_err();
        if failed || done {
            return;
        }
        let n = stream.read(&mut chunk).unwrap_or(0);
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Appends an unmasked whole frame (FIN set) with the given RSV bits to `out`.
pub fn push_frame(out: &mut Vec<u8>, opcode: OpCode, rsv: u8, payload: &[u8]) {
    let mut head = [0u8; MAX_HEADER_LEN];
    let n = FrameHeader::new(true, opcode, payload.len() as u64)
        .with_rsv(rsv)
        .encode(&mut head);
    out.extend_from_slice(&head[..n]);
    out.extend_from_slice(payload);
}

/// A number in a JSON summary.
pub fn number(summary: &Value, key: &str) -> u64 {
    summary[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} in {summary}"))
}

/// Echoes every text and binary message of an upgraded connection (`buf`: what came after its
/// request), counting them in `received`, until the client's close (counted in `closes`;
/// the session answers it, after the echoes before it).
pub fn serve_counting_echo(
    stream: &mut (impl Read + Write),
    buf: Vec<u8>,
    received: &std::sync::atomic::AtomicU64,
    closes: &std::sync::atomic::AtomicU64,
) {
    use std::sync::atomic::Ordering;
    serve_session(stream, buf, SessionConfig::server(), None, |event, out| {
        let (opcode, payload) = match event {
            Event::Close(_) => {
                closes.fetch_add(1, Ordering::SeqCst);
                return ControlFlow::Break(());
            }
            Event::Text(text) => (OpCode::Text, text.as_bytes()),
            Event::Binary(bytes) => (OpCode::Binary, bytes),
            _ => return ControlFlow::Continue(()),
        };
        received.fetch_add(1, Ordering::SeqCst);
        push_frame(out, opcode, 0, payload);
        ControlFlow::Continue(())
    });
}
