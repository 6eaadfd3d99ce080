//! Log volume under hostile clients: every kind of bad client gets at most one line per
//! connection, at debug level, so an attacker cannot flood the logs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lanes::Config;
use lanes_proto::OpCode;
use support::{Client, start_echo};

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

#[test]
fn a_bad_client_costs_at_most_one_debug_line() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

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
