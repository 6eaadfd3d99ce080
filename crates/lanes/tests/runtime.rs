//! The runtime over real loopback sockets: callbacks, the close handshake, protocol errors,
//! limits, timeouts, backpressure, worker spread and graceful shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashSet;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

use lanes::{
    Accept, CloseCode, Closed, Config, Cores, Handler, HttpResponse, Message, Request, Server,
    ServerHandle, Upgrade, Ws,
};
use lanes_proto::OpCode;
use support::Client;

/// What the recording handler saw.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Upgrade { path: String, worker: usize },
    Open(usize),
    Text(usize, String),
    Binary(usize, Vec<u8>),
    Ping(usize, Vec<u8>),
    Pong(usize, Vec<u8>),
    Drain(usize),
    Close(usize, u16),
}

/// Echoes messages and reports every callback. A text message "close" makes the server close
/// with 4000; "flood N" queues N 64 KiB messages.
struct Recorder {
    worker: usize,
    next: usize,
    events: Sender<Seen>,
}

impl Handler for Recorder {
    type State = usize;

    fn on_upgrade(&mut self, request: &Request<'_>) -> Upgrade<usize> {
        if request.path() == "/forbidden" {
            return Upgrade::Refuse(HttpResponse::new(403, "no"));
        }
        let _ = self.events.send(Seen::Upgrade {
            path: request.path().to_string(),
            worker: self.worker,
        });
        self.next += 1;
        let accept = Accept::new(self.worker * 1_000_000 + self.next);
        // Confirms the last subprotocol offered, with a cookie naming the peer's address.
        match request.subprotocols().last() {
            Some(protocol) => {
                let mut accept = accept.with_subprotocol(*protocol);
                let query = request.query().unwrap_or("");
                let peer = request.peer_addr().ip();
                accept
                    .headers
                    .push(("Set-Cookie".into(), format!("peer={peer}; q={query}")));
                Upgrade::Accept(accept)
            }
            None => Upgrade::Accept(accept),
        }
    }

    fn on_open(&mut self, _ws: &mut Ws<'_>, conn: &mut usize) {
        let _ = self.events.send(Seen::Open(*conn));
    }

    fn on_message(&mut self, ws: &mut Ws<'_>, conn: &mut usize, message: Message<'_>) {
        match message {
            Message::Text("close") => ws.close(CloseCode::new(4000), "asked to"),
            Message::Text(text) if text.starts_with("flood ") => {
                let n: usize = text[6..].parse().unwrap();
                let chunk = vec![7u8; 64 * 1024];
                for _ in 0..n {
                    ws.send_binary(&chunk);
                }
            }
            Message::Text(text) => {
                let _ = self.events.send(Seen::Text(*conn, text.to_string()));
                ws.send_text(text);
            }
            Message::Binary(bytes) => {
                let _ = self.events.send(Seen::Binary(*conn, bytes.to_vec()));
                ws.send_binary(bytes);
            }
        }
    }

    fn on_ping(&mut self, _ws: &mut Ws<'_>, conn: &mut usize, payload: &[u8]) {
        let _ = self.events.send(Seen::Ping(*conn, payload.to_vec()));
    }

    fn on_pong(&mut self, _ws: &mut Ws<'_>, conn: &mut usize, payload: &[u8]) {
        let _ = self.events.send(Seen::Pong(*conn, payload.to_vec()));
    }

    fn on_drain(&mut self, _ws: &mut Ws<'_>, conn: &mut usize) {
        let _ = self.events.send(Seen::Drain(*conn));
    }

    fn on_close(&mut self, conn: usize, closed: &mut Closed<'_>) {
        let _ = self.events.send(Seen::Close(conn, closed.code().as_u16()));
    }
}

fn start(workers: usize, config: Config) -> (ServerHandle, SocketAddr, Receiver<Seen>) {
    let (tx, rx) = channel();
    let server = Server::new("127.0.0.1:0".parse().unwrap(), move |info| Recorder {
        worker: info.index,
        next: 0,
        events: tx.clone(),
    })
    .cores(Cores::Count(workers))
    .pin(false)
    .config(config);
    let handle = server.start().unwrap();
    let addr = handle.local_addr();
    (handle, addr, rx)
}

fn next(rx: &Receiver<Seen>) -> Seen {
    rx.recv_timeout(Duration::from_secs(10)).expect("an event")
}

/// Skips to the next event matching `pred`.
fn wait_for(rx: &Receiver<Seen>, pred: impl Fn(&Seen) -> bool) -> Seen {
    loop {
        let seen = next(rx);
        if pred(&seen) {
            return seen;
        }
    }
}

fn open(addr: SocketAddr, rx: &Receiver<Seen>) -> (Client, usize) {
    let client = Client::connect(addr);
    let Seen::Open(id) = wait_for(rx, |s| matches!(s, Seen::Open(_))) else {
        unreachable!()
    };
    (client, id)
}

#[test]
fn echo_callbacks_and_clean_close() {
    let (handle, addr, rx) = start(1, Config::default());
    let (mut client, id) = open(addr, &rx);
    client.send(true, OpCode::Text, b"hello");
    assert_eq!(client.recv().payload, b"hello");
    assert_eq!(next(&rx), Seen::Text(id, "hello".into()));
    client.send(true, OpCode::Binary, &[0, 1, 2, 255]);
    assert_eq!(client.recv().payload, [0, 1, 2, 255]);
    assert_eq!(next(&rx), Seen::Binary(id, vec![0, 1, 2, 255]));
    // Ping is answered with a pong carrying the same payload.
    client.send(true, OpCode::Ping, b"are you there");
    let pong = client.recv();
    assert_eq!(
        (pong.opcode, pong.payload.as_slice()),
        (OpCode::Pong, &b"are you there"[..])
    );
    assert_eq!(next(&rx), Seen::Ping(id, b"are you there".to_vec()));
    client.send(true, OpCode::Pong, b"unsolicited");
    assert_eq!(next(&rx), Seen::Pong(id, b"unsolicited".to_vec()));
    // Clean close: the server echoes the code, closes TCP, on_close gets the peer's code.
    client.send(true, OpCode::Close, &[0x03, 0xe8]);
    let close = client.recv();
    assert_eq!(close.close_code(), Some(1000));
    assert!(client.is_closed_by_server());
    assert_eq!(next(&rx), Seen::Close(id, 1000));
    handle.shutdown().unwrap();
    assert!(rx.try_recv().is_err(), "no second on_close");
}

#[test]
fn fragmented_and_byte_by_byte_messages_arrive_whole() {
    let (_handle, addr, rx) = start(1, Config::default());
    let (mut client, id) = open(addr, &rx);
    // Fragmented, with a ping in between.
    client.send(false, OpCode::Text, "κό".as_bytes());
    client.send(true, OpCode::Ping, b"p");
    client.send(false, OpCode::Continuation, "σμ".as_bytes());
    client.send(true, OpCode::Continuation, "ε".as_bytes());
    assert_eq!(client.recv().opcode, OpCode::Pong);
    assert_eq!(client.recv().payload, "κόσμε".as_bytes());
    wait_for(&rx, |s| *s == Seen::Text(id, "κόσμε".into()));
    // One frame written one byte at a time, each byte its own segment.
    let payload: Vec<u8> = (0..300u32).map(|i| (i % 251) as u8).collect();
    let bytes = Client::encode(true, OpCode::Binary, &payload);
    for byte in &bytes {
        client.send_raw(std::slice::from_ref(byte));
        std::thread::sleep(Duration::from_micros(200));
    }
    assert_eq!(client.recv().payload, payload);
    wait_for(&rx, |s| *s == Seen::Binary(id, payload.clone()));
}

#[test]
fn protocol_errors_close_with_their_codes_and_on_close_fires_once() {
    let mut config = Config::default();
    config.limits.max_message_len = 1000;
    let (_handle, addr, rx) = start(1, config);
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (vec![0x83, 0x80, 1, 2, 3, 4], 1002), // reserved opcode
        (vec![0x81, 0x05, b'h', b'e', b'l', b'l', b'o'], 1002), // unmasked
        (Client::encode(true, OpCode::Text, b"\xff\xfe"), 1007),
        (Client::encode(true, OpCode::Binary, &[0; 1001]), 1009),
        (Client::encode(true, OpCode::Continuation, b"x"), 1002),
    ];
    for (bytes, code) in cases {
        let (mut client, id) = open(addr, &rx);
        client.send_raw(&bytes);
        let close = client.recv();
        assert_eq!(close.close_code(), Some(code), "{bytes:x?}");
        assert!(client.is_closed_by_server());
        assert_eq!(
            wait_for(&rx, |s| matches!(s, Seen::Close(..))),
            Seen::Close(id, code)
        );
    }
}

#[test]
fn server_initiated_close_and_peer_reset() {
    let (_handle, addr, rx) = start(1, Config::default());
    let (mut client, id) = open(addr, &rx);
    client.send(true, OpCode::Text, b"close");
    // Sent before the client has seen the server's close, but after it was sent: never
    // delivered. (Once `recv` has echoed the close, the server may have closed the socket:
    // nothing more can be sent then.)
    client.send(true, OpCode::Text, b"late");
    let close = client.recv();
    assert_eq!(close.close_code(), Some(4000));
    assert!(client.is_closed_by_server());
    assert_eq!(
        wait_for(&rx, |s| matches!(s, Seen::Close(..) | Seen::Text(..))),
        Seen::Close(id, 4000)
    );

    // A peer that vanishes without a close frame: 1006.
    let (client, id) = open(addr, &rx);
    drop(client);
    assert_eq!(
        wait_for(&rx, |s| matches!(s, Seen::Close(..))),
        Seen::Close(id, 1006)
    );
}

#[test]
fn upgrade_sees_the_request_and_chooses_a_subprotocol() {
    let (_handle, addr, rx) = start(1, Config::default());
    let mut client = Client::raw(addr);
    client.send_raw(
        b"GET /room/7?who=me HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
          Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          Sec-WebSocket-Protocol: v1.chat, v2.chat\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    let mut response = Vec::new();
    while !response.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        std::io::Read::read_exact(&mut client.stream, &mut byte).unwrap();
        response.push(byte[0]);
    }
    let response = String::from_utf8(response).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{response}"
    );
    assert!(response.contains("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert!(response.contains("\r\nSec-WebSocket-Protocol: v2.chat\r\n"));
    assert!(response.contains("\r\nSet-Cookie: peer=127.0.0.1; q=who=me\r\n"));
    assert_eq!(
        next(&rx),
        Seen::Upgrade {
            path: "/room/7".into(),
            worker: 0
        }
    );
}

#[test]
fn plain_http_and_bad_handshakes_get_http_answers() {
    let (_handle, addr, rx) = start(1, Config::default());
    let mut client = Client::raw(addr);
    client.send_raw(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    let answer = String::from_utf8(client.read_to_end()).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
        "{answer}"
    );
    assert!(answer.contains("\r\nSec-WebSocket-Version: 13\r\n"));

    let mut client = Client::raw(addr);
    client.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n");
    let answer = String::from_utf8(client.read_to_end()).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );

    let mut client = Client::raw(addr);
    client.send_raw(b"GET /forbidden HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
    let answer = String::from_utf8(client.read_to_end()).unwrap();
    assert!(answer.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{answer}");
    assert!(
        rx.try_recv().is_err(),
        "no callbacks for refused handshakes"
    );
}

#[test]
fn slowloris_is_dropped_while_others_are_served() {
    let mut config = Config::default();
    config.timeouts.handshake = Duration::from_millis(300);
    let (_handle, addr, rx) = start(1, config);
    let mut slow = Client::raw(addr);
    slow.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n");
    let (mut client, _) = open(addr, &rx);
    for i in 0..5 {
        // Once the handshake timeout has passed the server has dropped it: a write may fail.
        let _ = slow.stream.write_all(b"X-Slow: 1\r\n");
        client.send(true, OpCode::Text, format!("m{i}").as_bytes());
        assert_eq!(client.recv().payload, format!("m{i}").as_bytes());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(slow.is_closed_by_server());
}

#[test]
fn keepalive_pings_and_closes_a_silent_peer() {
    let mut config = Config::default();
    config.timeouts.ping_interval = Some(Duration::from_millis(200));
    config.timeouts.pong = Duration::from_millis(300);
    let (_handle, addr, rx) = start(1, config);
    let (mut client, id) = open(addr, &rx);
    let ping = client.recv();
    assert_eq!(ping.opcode, OpCode::Ping);
    // Never answer: the server gives up and reports 1006.
    assert!(client.is_closed_by_server());
    assert_eq!(
        wait_for(&rx, |s| matches!(s, Seen::Close(..))),
        Seen::Close(id, 1006)
    );
}

#[test]
fn a_message_instead_of_a_pong_brings_the_next_ping_an_interval_later() {
    // The timer was armed for the pong deadline (30 s off); the message ends the wait, and the
    // next ping must come a ping interval after it, not at the old pong deadline.
    let mut config = Config::default();
    config.timeouts.ping_interval = Some(Duration::from_millis(200));
    config.timeouts.pong = Duration::from_secs(30);
    let (_handle, addr, rx) = start(1, config);
    let (mut client, id) = open(addr, &rx);
    assert_eq!(client.recv().opcode, OpCode::Ping);
    client.send(true, OpCode::Text, b"alive");
    assert_eq!(client.recv().payload, b"alive");
    assert_eq!(
        wait_for(&rx, |s| matches!(s, Seen::Text(..))),
        Seen::Text(id, "alive".into())
    );
    let sent = std::time::Instant::now();
    // (The client's read timeout is 10 s: the old behaviour failed here.)
    assert_eq!(client.recv().opcode, OpCode::Ping);
    assert!(
        sent.elapsed() < Duration::from_secs(9),
        "{:?}",
        sent.elapsed()
    );
}

#[test]
fn backpressure_pauses_reads_and_drain_resumes_them() {
    let mut config = Config::default();
    config.backpressure.pause_len = 256 * 1024;
    let (_handle, addr, rx) = start(1, config);
    let (mut client, id) = open(addr, &rx);
    // 320 x 64 KiB = 20 MiB queued while the client does not read: more than loopback's
    // socket buffers take, far over the 256 KiB limit.
    client.send(true, OpCode::Text, b"flood 320");
    client.send(true, OpCode::Text, b"after");
    std::thread::sleep(Duration::from_millis(300));
    // "after" is not read while the backlog is over the limit.
    assert!(rx.try_iter().all(|s| s != Seen::Text(id, "after".into())));
    for _ in 0..320 {
        assert_eq!(client.recv().payload.len(), 64 * 1024);
    }
    assert_eq!(
        wait_for(&rx, |s| matches!(s, Seen::Drain(_))),
        Seen::Drain(id)
    );
    assert_eq!(client.recv().payload, b"after");
}

#[test]
fn connections_spread_over_workers_and_shutdown_sends_1001_to_all() {
    let (handle, addr, rx) = start(2, Config::default());
    assert_eq!(handle.worker_count(), 2);
    let mut clients = Vec::new();
    let mut workers = HashSet::new();
    let mut ids = HashSet::new();
    for _ in 0..40 {
        let client = Client::connect(addr);
        if let Seen::Upgrade { worker, .. } = wait_for(&rx, |s| matches!(s, Seen::Upgrade { .. })) {
            workers.insert(worker);
        }
        if let Seen::Open(id) = wait_for(&rx, |s| matches!(s, Seen::Open(_))) {
            ids.insert(id);
        }
        clients.push(client);
    }
    assert_eq!(workers.len(), 2, "both workers got connections");
    // Each client answers the server's close, as a well-behaved peer does.
    let closers: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            std::thread::spawn(move || {
                let close = client.recv();
                let code = close.close_code();
                client.send(true, OpCode::Close, &close.payload);
                (code, client.is_closed_by_server())
            })
        })
        .collect();
    handle.shutdown().unwrap();
    for closer in closers {
        assert_eq!(closer.join().unwrap(), (Some(1001), true));
    }
    let mut closed = HashSet::new();
    for seen in rx.try_iter() {
        if let Seen::Close(id, code) = seen {
            assert_eq!(code, 1001);
            assert!(closed.insert(id), "on_close once per connection");
        }
    }
    assert_eq!(closed, ids);
}

#[test]
fn start_up_problems_name_the_address_or_core() {
    let (tx, _rx) = channel();
    let factory = move |info: lanes::WorkerInfo| Recorder {
        worker: info.index,
        next: 0,
        events: tx.clone(),
    };
    // An address that is not on this machine (TEST-NET-1): binding fails, nothing is sent.
    let addr: SocketAddr = "192.0.2.1:9".parse().unwrap();
    let error = Server::new(addr, factory.clone())
        .cores(Cores::Count(1))
        .start()
        .err()
        .expect("bind fails");
    assert!(matches!(error, lanes::Error::Bind { addr: a, .. } if a == addr));
    assert!(error.to_string().contains("192.0.2.1:9"), "{error}");
    let error = Server::new("127.0.0.1:0".parse().unwrap(), factory.clone())
        .cores(Cores::List(vec![9999]))
        .start()
        .err()
        .expect("no such core");
    assert!(matches!(
        error,
        lanes::Error::CoreUnavailable { core: 9999 }
    ));
    assert!(error.to_string().contains("9999"));
    let error = Server::new("127.0.0.1:0".parse().unwrap(), factory)
        .cores(Cores::Count(0))
        .start()
        .err()
        .expect("no cores");
    assert!(matches!(error, lanes::Error::NoCores));
}

#[test]
fn excess_connections_get_503_and_a_send_over_the_hard_cap_closes_with_1008() {
    let mut config = Config::default();
    config.limits.max_connections_per_worker = 2;
    config.backpressure.max_len = 1 << 20;
    let (_handle, addr, rx) = start(1, config);
    let (mut first, id) = open(addr, &rx);
    let (_second, _) = open(addr, &rx);
    let mut third = Client::raw(addr);
    let answer = String::from_utf8(third.read_to_end()).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{answer}"
    );
    // 32 x 64 KiB = 2 MiB queued without reading: over the 1 MiB hard cap.
    first.send(true, OpCode::Text, b"flood 32");
    let mut saw_close = None;
    for _ in 0..40 {
        let frame = first.recv();
        if frame.opcode == OpCode::Close {
            saw_close = frame.close_code();
            break;
        }
    }
    assert_eq!(saw_close, Some(1008));
    assert_eq!(
        wait_for(&rx, |s| matches!(s, Seen::Close(..))),
        Seen::Close(id, 1008)
    );
}

#[test]
fn data_followed_by_end_of_stream_still_ends_the_connection() {
    // No keepalive: only the end of stream itself can end these connections.
    let mut config = Config::default();
    config.timeouts.ping_interval = None;
    let (_handle, addr, rx) = start(1, config);
    let mut ids = HashSet::new();
    let mut clients = Vec::new();
    for _ in 0..20 {
        let (client, id) = open(addr, &rx);
        ids.insert(id);
        clients.push(client);
    }
    for client in &mut clients {
        // A frame and the FIN in quick succession, often in one readiness event.
        let frame = Client::encode(true, OpCode::Text, b"bye");
        client.send_raw(&frame);
        client.stream.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let mut closed = HashSet::new();
    while closed.len() < ids.len() {
        if let Seen::Close(id, code) = wait_for(&rx, |s| matches!(s, Seen::Close(..))) {
            assert_eq!(code, 1006);
            closed.insert(id);
        }
    }
    assert_eq!(closed, ids);
}

#[test]
fn after_a_spike_the_connections_left_keep_their_ids_messages_and_timers() {
    // 400 connections on one worker, then all but three go: the connection table shrinks to
    // its last connection, and a second later the worker reclaims memory (the wheel drops the
    // stale entries and moves the live ones down). The three still echo, their keepalive
    // pings still come, and new connections take the freed keys without disturbing them.
    let mut config = Config::default();
    config.timeouts.ping_interval = Some(Duration::from_millis(1500));
    let (_handle, addr, rx) = start(1, config);
    let mut clients: Vec<Option<(Client, usize)>> =
        (0..400).map(|_| Some(open(addr, &rx))).collect();
    let mut survivors: Vec<(Client, usize)> = [0, 150, 200]
        .iter()
        .map(|&i| clients[i].take().unwrap())
        .collect();
    drop(clients);
    for _ in 0..397 {
        wait_for(&rx, |s| matches!(s, Seen::Close(..)));
    }
    std::thread::sleep(Duration::from_millis(1300));
    let mut fresh: Vec<(Client, usize)> = (0..20).map(|_| open(addr, &rx)).collect();
    for (client, id) in survivors.iter_mut().chain(fresh.iter_mut()) {
        let text = format!("from {id}");
        client.send(true, OpCode::Text, text.as_bytes());
        let mut frame = client.recv();
        while frame.opcode == OpCode::Ping {
            frame = client.recv();
        }
        assert_eq!(frame.payload, text.as_bytes());
        assert_eq!(
            wait_for(&rx, |s| matches!(s, Seen::Text(..))),
            Seen::Text(*id, text)
        );
    }
    // Silent for the ping interval: every survivor is pinged.
    for (client, _) in &mut survivors {
        assert_eq!(client.recv().opcode, OpCode::Ping);
    }
}

/// Busy polling changes when the worker sleeps, not what it does: with a 200 µs window, echoes
/// spaced closer and further than the window, a fragmented message and a keepalive round all
/// come back as without it, and the server shuts down.
#[test]
fn busy_polling_worker_serves_as_the_blocking_one_does() {
    let mut config = Config::default();
    config.socket.busy_poll = Some(Duration::from_micros(200));
    let handle = support::start_echo(1, config);
    let addr = handle.local_addr();
    let mut clients: Vec<Client> = (0..4).map(|_| Client::connect(addr)).collect();
    for round in 0..20u32 {
        for (i, client) in clients.iter_mut().enumerate() {
            let payload = format!("{round}:{i}");
            client.send(true, OpCode::Text, payload.as_bytes());
            assert_eq!(client.recv().payload, payload.as_bytes());
        }
        // Every few rounds, a gap longer than the window: the worker blocks, then wakes.
        if round % 5 == 4 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let client = &mut clients[0];
    client.send(false, OpCode::Binary, b"ab");
    client.send(true, OpCode::Ping, b"p");
    client.send(true, OpCode::Continuation, b"cd");
    assert_eq!(client.recv().opcode, OpCode::Pong);
    assert_eq!(client.recv().payload, b"abcd");
    client.send(true, OpCode::Close, &1000u16.to_be_bytes());
    assert_eq!(client.recv().close_code(), Some(1000));
    handle.shutdown().unwrap();
}
