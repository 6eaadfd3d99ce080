//! A panic in a handler callback costs the connection it ran for, not the worker: the
//! connection is closed with 1011 and `on_close` runs; `on_upgrade`/`on_http` answer 500; a
//! panicking tick or `on_close` is counted and the worker goes on. One worker, so every
//! connection here shares the worker that saw the panics.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::time::{Duration, Instant};

use lanes::{
    Accept, CloseCause, Closed, Config, Handler, HttpResponse, Message, Request, Upgrade,
    WorkerContext, Ws,
};
use lanes_proto::OpCode;
use support::{Client, start_server};

/// Panics where the test asks it to: on the message `boom`, in `on_open` for the path
/// `/open`, in `on_close` for connections that said `die-late`, in `on_upgrade` for `/upgrade`,
/// in `on_http` for `/http`, and in the first tick. Echoes everything else.
struct Fragile {
    closes: Sender<(String, CloseCause, u16)>,
    ticks: Arc<AtomicU64>,
}

impl Handler for Fragile {
    type State = String;

    fn on_upgrade(&mut self, request: &Request<'_>) -> Upgrade<String> {
        if request.path() == "/upgrade" {
            panic!("on_upgrade fails");
        }
        Upgrade::Accept(Accept::new(request.path().to_string()))
    }

    fn on_open(&mut self, _: &mut Ws<'_>, path: &mut String) {
        if path == "/open" {
            panic!("on_open fails");
        }
    }

    fn on_message(&mut self, ws: &mut Ws<'_>, state: &mut String, message: Message<'_>) {
        match message {
            Message::Text("boom") => panic!("on_message fails"),
            Message::Text("die-late") => *state = "die-late".into(),
            Message::Text(text) => {
                ws.send_text(text);
            }
            Message::Binary(bytes) => {
                ws.send_binary(bytes);
            }
        }
    }

    fn on_close(&mut self, state: String, closed: &mut Closed<'_>) {
        if state == "die-late" {
            panic!("on_close fails");
        }
        let _ = self
            .closes
            .send((state, closed.cause(), closed.code().as_u16()));
    }

    fn on_tick(&mut self, _: &mut WorkerContext<'_, String>) {
        if self.ticks.fetch_add(1, Ordering::Relaxed) == 0 {
            panic!("the first tick fails");
        }
    }

    fn on_http(&mut self, request: &Request<'_>) -> HttpResponse {
        if request.path() == "/http" {
            panic!("on_http fails");
        }
        HttpResponse::new(200, "fine")
    }
}

fn echo_works(client: &mut Client) {
    client.send(true, OpCode::Text, b"still here");
    let frame = client.recv();
    assert_eq!(
        (frame.opcode, frame.payload),
        (OpCode::Text, b"still here".to_vec())
    );
}

fn connect_to(addr: std::net::SocketAddr, path: &str) -> Client {
    let stream = TcpStream::connect(addr).unwrap();
    Client::handshake_at(stream, path)
}

fn http_status(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.lines().next().unwrap_or_default().to_string()
}

#[test]
fn a_panicking_callback_costs_its_connection_not_the_worker() {
    let (closes, closed) = channel();
    let ticks = Arc::new(AtomicU64::new(0));
    let worker_ticks = Arc::clone(&ticks);
    let mut config = Config::default();
    config.timers.tick_interval = Some(Duration::from_millis(20));
    let handle = start_server(1, config, move |_| Fragile {
        closes: closes.clone(),
        ticks: Arc::clone(&worker_ticks),
    });
    let addr = handle.local_addr();
    let mut bystander = Client::connect(addr);
    echo_works(&mut bystander);

    // on_message: the connection is failed with 1011, and on_close runs for it.
    let mut victim = connect_to(addr, "/victim");
    victim.send(true, OpCode::Text, b"boom");
    let frame = victim.recv();
    assert_eq!(
        (frame.opcode, frame.close_code()),
        (OpCode::Close, Some(1011))
    );
    let seen = closed.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(seen, ("/victim".into(), CloseCause::HandlerPanic, 1011));
    echo_works(&mut bystander);

    // on_open: the same.
    let mut opener = connect_to(addr, "/open");
    let frame = opener.recv();
    assert_eq!(
        (frame.opcode, frame.close_code()),
        (OpCode::Close, Some(1011))
    );
    let seen = closed.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(seen, ("/open".into(), CloseCause::HandlerPanic, 1011));
    echo_works(&mut bystander);

    // on_upgrade and on_http: a 500 answer.
    assert_eq!(
        http_status(addr, "/http"),
        "HTTP/1.1 500 Internal Server Error"
    );
    assert_eq!(http_status(addr, "/elsewhere"), "HTTP/1.1 200 OK");
    let mut upgrade = TcpStream::connect(addr).unwrap();
    upgrade
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        upgrade,
        "GET /upgrade HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = upgrade.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 500 "), "{answer}");
    echo_works(&mut bystander);

    // on_close: the state is dropped; nothing else is lost.
    let mut late = connect_to(addr, "/late");
    late.send(true, OpCode::Text, b"die-late");
    late.send(true, OpCode::Close, &[0x03, 0xe8]);
    assert_eq!(late.recv().opcode, OpCode::Close);
    echo_works(&mut bystander);

    // The first tick panicked; the ticks go on.
    let until = Instant::now() + Duration::from_secs(5);
    while ticks.load(Ordering::Relaxed) < 3 {
        assert!(Instant::now() < until, "the ticks stopped after a panic");
        std::thread::sleep(Duration::from_millis(10));
    }

    // Every panic counted: on_message, on_open, on_http, on_upgrade, on_close, on_tick.
    let stats = handle.stats().total();
    assert_eq!(stats.handler_panics, 6, "{stats:?}");
    assert_eq!(stats.closed_by(CloseCause::HandlerPanic), 2);
    let snapshot = handle.metrics();
    assert_eq!(
        snapshot.counter("lanes_handler_panics_total", &[("core", "all")]),
        Some(6)
    );
    echo_works(&mut bystander);
    handle.shutdown().unwrap();
}
