//! Log volume under hostile clients: every kind of bad client gets at most one line per
//! connection, at debug level, and a client that makes a handler panic on every connection
//! gets a few error lines in all, so an attacker cannot flood the logs. The tests take turns,
//! each counting the lines logged during its turn.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use lanes::{Accept, Config, Handler, Message, Request, Upgrade, Ws};
use lanes_proto::OpCode;
use support::{Client, start_echo, start_server};

/// Where the subscriber writes: every line, kept for the test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every line logged in this process (at every level), and this test's turn.
fn captured() -> (&'static Captured, MutexGuard<'static, ()>) {
    static TURN: Mutex<()> = Mutex::new(());
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let captured = CAPTURED.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        captured
    });
    (captured, turn)
}

#[test]
fn a_bad_client_costs_at_most_one_debug_line() {
    let (captured, _turn) = captured();
    let mut config = Config::default();
    config.timeouts.handshake = Duration::from_millis(200);
    let handle = start_echo(2, config);
    let addr = handle.local_addr();
    let start_lines = captured.0.lock().unwrap().len();
    const EACH: usize = 10;
    for _ in 0..EACH {
        // Garbage instead of a request head: 400.
        let mut c = Client::raw(addr);
        c.send_raw(b"\x16\x03\x01 not http\r\n\r\n");
        c.read_to_end();
        // An upgrade without a key: 400.
        let mut c = Client::raw(addr);
        c.send_raw(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Version: 13\r\n\r\n",
        );
        c.read_to_end();
        // Refused by the handler: 403.
        let mut c = Client::raw(addr);
        c.send_raw(
            b"GET /forbidden HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        );
        c.read_to_end();
        // An unmasked frame (1002), then more garbage after the close.
        let mut c = Client::connect(addr);
        c.send_raw(&[0x81, 0x02, b'h', b'i']);
        assert_eq!(c.recv().close_code(), Some(1002));
        let _ = c.stream.write_all(&[0xff; 64]);
        // Invalid UTF-8 (1007), repeated.
        let mut c = Client::connect(addr);
        for _ in 0..5 {
            let _ = c
                .stream
                .write_all(&Client::encode(true, OpCode::Text, &[0xc3, 0x28]));
        }
        assert_eq!(c.recv().close_code(), Some(1007));
        // A slowloris: half a head, then silence past the handshake timeout.
        let mut c = Client::raw(addr);
        c.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n");
        c.read_to_end();
    }
    let bad_clients = 6 * EACH;
    // Wait until every connection is gone, so every line that will be written is.
    let deadline = Instant::now() + Duration::from_secs(10);
    while handle.stats().total().connections > 0
        || handle.metrics().counter(
            "lanes_connections_closed_total",
            &[("core", "all"), ("cause", "protocol_error")],
        ) != Some(2 * EACH as u64)
    {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    let text = String::from_utf8(captured.0.lock().unwrap()[start_lines..].to_vec()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let at = |level: &str| lines.iter().filter(|l| l.contains(level)).count();
    assert_eq!(at(" WARN "), 0, "{text}");
    assert_eq!(at(" ERROR "), 0, "{text}");
    assert_eq!(at(" INFO "), 0, "{text}");
    assert!(
        lines.len() <= bad_clients,
        "{} lines for {bad_clients} clients:\n{text}",
        lines.len()
    );
    // The refusals and protocol errors are there, one each (the slowloris ends silently).
    assert_eq!(at(" DEBUG "), 5 * EACH, "{text}");
    handle.shutdown().unwrap();
}

/// Panics on every message.
struct Fragile;

/// What [`Fragile`] panics with (left out of the test's output).
const BOOM: &str = "the handler fails on every message";

impl Handler for Fragile {
    type State = ();
    fn on_upgrade(&mut self, _: &Request<'_>) -> Upgrade<()> {
        Upgrade::Accept(Accept::new(()))
    }
    fn on_message(&mut self, _: &mut Ws<'_>, _: &mut (), _: Message<'_>) {
        std::panic::panic_any(BOOM);
    }
}

#[test]
fn a_handler_that_panics_for_every_client_logs_a_few_lines_and_counts_all() {
    let (captured, _turn) = captured();
    // The default hook would print each of the panics on stderr; keep the others.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<&str>() != Some(&BOOM) {
            hook(info);
        }
    }));
    let handle = start_server(1, Config::default(), |_| Fragile);
    let addr = handle.local_addr();
    let start_lines = captured.0.lock().unwrap().len();
    const CLIENTS: u64 = 100;
    for _ in 0..CLIENTS {
        let mut client = Client::connect(addr);
        client.send(true, OpCode::Text, b"boom");
        assert_eq!(client.recv().close_code(), Some(1011));
    }
    let panics = || {
        handle
            .metrics()
            .counter("lanes_handler_panics_total", &[("core", "all")])
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while panics() != Some(CLIENTS) {
        assert!(Instant::now() < deadline, "{:?} panics counted", panics());
        std::thread::sleep(Duration::from_millis(10));
    }
    let text = String::from_utf8(captured.0.lock().unwrap()[start_lines..].to_vec()).unwrap();
    let errors = text.lines().filter(|l| l.contains(" ERROR ")).count();
    // The first ten of the minute, each with its connection's id.
    assert_eq!(errors, 10, "{text}");
    let first = text.lines().find(|l| l.contains(" ERROR ")).unwrap();
    assert!(
        first.contains("connection=") && first.contains("panicked"),
        "{first}"
    );
    handle.shutdown().unwrap();
}
