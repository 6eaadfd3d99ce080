//! Metrics against known answers: counts of what the test clients did, read back through the
//! server handle, `/metrics` on the WebSocket port and on the admin address, and with an
//! InfluxDB that never answers (workers must not notice).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

#[cfg(feature = "metrics")]
use lanes::metrics::InfluxConfig;
use lanes::metrics::{Snapshot, Value};
use lanes::{CloseCause, Config, ServerHandle};
use lanes_proto::OpCode;
use support::{Client, start_echo};

/// Polls `check` on fresh snapshots until it holds (the workers count after they act).
fn eventually(handle: &ServerHandle, what: &str, check: impl Fn(&Snapshot) -> bool) -> Snapshot {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let snapshot = handle.metrics();
        if check(&snapshot) {
            return snapshot;
        }
        assert!(Instant::now() < deadline, "{what}: {snapshot:#?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn all(snapshot: &Snapshot, name: &str) -> u64 {
    snapshot.counter(name, &[("core", "all")]).unwrap()
}

fn with(snapshot: &Snapshot, name: &str, label: (&str, &str)) -> u64 {
    snapshot
        .counter(name, &[("core", "all"), label])
        .unwrap_or_else(|| panic!("{name} {label:?}"))
}

/// One HTTP GET; the answer's status line and body.
fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

/// The value of the exposition line `name{labels} value` (labels written as in the text).
#[cfg(feature = "metrics")]
fn exposed(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn counts_match_what_the_clients_did() {
    let handle = start_echo(2, Config::default());
    let addr = handle.local_addr();
    const CLIENTS: u64 = 6;
    const MESSAGES: u64 = 50;
    let mut clients: Vec<Client> = (0..CLIENTS).map(|_| Client::connect(addr)).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        for m in 0..MESSAGES {
            let payload = format!("client {i} message {m}");
            if m % 2 == 0 {
                client.send(true, OpCode::Text, payload.as_bytes());
            } else {
                // A fragmented binary message: two frames, one message.
                let (a, b) = payload.as_bytes().split_at(3);
                client.send(false, OpCode::Binary, a);
                client.send(true, OpCode::Continuation, b);
            }
            assert_eq!(client.recv().payload, payload.as_bytes());
        }
    }
    // Three close cleanly, one breaks the protocol (unmasked frame: 1002), one sends invalid
    // UTF-8 (1007), one just goes away.
    for client in &mut clients[..3] {
        client.send(true, OpCode::Close, &[0x03, 0xe8]);
        assert_eq!(client.recv().opcode, OpCode::Close);
    }
    clients[3].send_raw(&[0x81, 0x02, b'h', b'i']);
    assert_eq!(clients[3].recv().close_code(), Some(1002));
    clients[4].send(true, OpCode::Text, &[0xff, 0xfe]);
    assert_eq!(clients[4].recv().close_code(), Some(1007));
    drop(clients);
    // Refused handshakes: a bad one (400), one the handler refuses (403), a plain GET (426).
    let mut bad = Client::raw(addr);
    bad.send_raw(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Version: 13\r\n\r\n",
    );
    let answer = String::from_utf8(bad.read_to_end()).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let mut refused = Client::raw(addr);
    refused.send_raw(
        b"GET /forbidden HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    let answer = String::from_utf8(refused.read_to_end()).unwrap();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    let (status, _) = http_get(addr, "/");
    assert!(status.starts_with("HTTP/1.1 426"), "{status}");

    let s = eventually(&handle, "every connection counted as closed", |s| {
        s.value("lanes_connections_open", &[("core", "all")]) == Some(&Value::Gauge(0.0))
            && with(s, "lanes_connections_closed_total", ("cause", "reset")) == 1
    });
    let texts = MESSAGES.div_ceil(2) * CLIENTS;
    let binaries = MESSAGES / 2 * CLIENTS;
    // The invalid UTF-8 message counts: it began (the unmasked frame was refused at its header).
    assert_eq!(
        all(&s, "lanes_messages_received_total"),
        texts + binaries + 1
    );
    assert_eq!(all(&s, "lanes_messages_sent_total"), texts + binaries);
    // The invalid UTF-8 frame counts; the unmasked one was refused at its header.
    assert_eq!(
        with(&s, "lanes_frames_received_total", ("opcode", "text")),
        texts + 1
    );
    assert_eq!(
        with(&s, "lanes_frames_received_total", ("opcode", "binary")),
        binaries
    );
    assert_eq!(
        with(
            &s,
            "lanes_frames_received_total",
            ("opcode", "continuation")
        ),
        binaries
    );
    assert_eq!(
        with(&s, "lanes_frames_received_total", ("opcode", "close")),
        3
    );
    assert_eq!(
        with(&s, "lanes_frames_sent_total", ("opcode", "text")),
        texts
    );
    assert_eq!(
        with(&s, "lanes_frames_sent_total", ("opcode", "binary")),
        binaries
    );
    // Three echoes of the clients' closes, and the two protocol errors' closes.
    assert_eq!(with(&s, "lanes_frames_sent_total", ("opcode", "close")), 5);
    assert_eq!(all(&s, "lanes_connections_opened_total"), CLIENTS);
    assert_eq!(all(&s, "lanes_connections_accepted_total"), CLIENTS + 3);
    assert_eq!(
        with(&s, "lanes_connections_closed_total", ("cause", "clean")),
        3
    );
    assert_eq!(
        with(
            &s,
            "lanes_connections_closed_total",
            ("cause", "protocol_error")
        ),
        2
    );
    assert_eq!(with(&s, "lanes_protocol_errors_total", ("code", "1002")), 1);
    assert_eq!(with(&s, "lanes_protocol_errors_total", ("code", "1007")), 1);
    assert_eq!(
        with(&s, "lanes_handshakes_rejected_total", ("status", "400")),
        1
    );
    assert_eq!(
        with(&s, "lanes_handshakes_rejected_total", ("status", "403")),
        1
    );
    assert_eq!(
        with(&s, "lanes_handshakes_rejected_total", ("status", "426")),
        1
    );
    assert!(all(&s, "lanes_bytes_received_total") > 0);
    assert!(all(&s, "lanes_bytes_sent_total") > 0);
    assert!(all(&s, "lanes_loop_iterations_total") > 0);
    // The per-core samples add up to the totals.
    let family = s.family("lanes_messages_received_total").unwrap();
    let per_core: u64 = family
        .samples
        .iter()
        .filter(|x| x.label("core") != Some("all"))
        .map(|x| match x.value {
            Value::Counter(n) => n,
            _ => 0,
        })
        .sum();
    assert_eq!(per_core, texts + binaries + 1);
    let stats = handle.stats().total();
    let closed: u64 = stats.closed.iter().sum();
    assert_eq!(stats.opened, stats.connections + closed);
    assert_eq!(stats.closed_by(CloseCause::Clean), 3);
    match s
        .value("lanes_loop_lag_seconds", &[("core", "all")])
        .unwrap()
    {
        Value::Histogram { counts, .. } => assert!(counts.count() > 0),
        other => panic!("{other:?}"),
    }
    handle.shutdown().unwrap();
}

#[test]
fn keepalive_pings_give_round_trip_times() {
    let mut config = Config::default();
    config.timeouts.ping_interval = Some(Duration::from_millis(30));
    // The connection's timer waits for the pong deadline before the next ping.
    config.timeouts.pong = Duration::from_millis(30);
    let handle = start_echo(1, config);
    let mut client = Client::connect(handle.local_addr());
    let mut pongs = 0;
    while pongs < 3 {
        let frame = client.recv();
        assert_eq!(frame.opcode, OpCode::Ping);
        client.send(true, OpCode::Pong, &frame.payload);
        pongs += 1;
    }
    let s = eventually(&handle, "three round trips", |s| {
        all(s, "lanes_pongs_received_total") == 3
    });
    assert!(all(&s, "lanes_pings_sent_total") >= 3);
    match s
        .value("lanes_ping_rtt_seconds", &[("core", "all")])
        .unwrap()
    {
        Value::Histogram { counts, .. } => {
            assert_eq!(counts.count(), 3);
            // Loopback, a test thread answering: well under the 30 ms interval.
            assert!(counts.quantile(1.0).unwrap() < 1e6, "{counts:?}");
        }
        other => panic!("{other:?}"),
    }
    handle.shutdown().unwrap();
}

#[test]
fn buffered_bytes_follow_a_stalled_reader() {
    let handle = start_echo(1, Config::default());
    let mut client = Client::connect(handle.local_addr());
    // Asks for echoes and never reads them: the backlog builds up on the server. The writes
    // do not block: once the server pauses reading (its backlog over the pause length) a
    // blocking write could wait for ever, between two looks at the gauge.
    let frame = Client::<TcpStream>::encode(true, OpCode::Binary, &vec![7u8; 64 * 1024]);
    client.stream.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut at = 0;
    let s = loop {
        match client.stream.write(&frame[at..]) {
            Ok(n) => at = (at + n) % frame.len(),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("{e}"),
        }
        let s = handle.metrics();
        if s.value("lanes_buffered_bytes", &[("core", "all")]) != Some(&Value::Gauge(0.0)) {
            break s;
        }
        assert!(Instant::now() < deadline, "no backlog after 30 s");
    };
    match s.value("lanes_buffered_bytes", &[("core", "0")]) {
        Some(Value::Gauge(v)) => assert!(*v > 0.0),
        other => panic!("{other:?}"),
    }
    drop(client);
    eventually(&handle, "backlog released with the connection", |s| {
        s.value("lanes_buffered_bytes", &[("core", "all")]) == Some(&Value::Gauge(0.0))
            && all(s, "lanes_connections_opened_total") == 1
            && with(s, "lanes_connections_closed_total", ("cause", "reset")) == 1
    });
    handle.shutdown().unwrap();
}

#[cfg(feature = "metrics")]
#[test]
fn metrics_on_the_websocket_port_and_on_the_admin_address() {
    let mut config = Config::default();
    config.metrics.path = Some("/metrics".into());
    config.metrics.addr = Some("127.0.0.1:0".parse().unwrap());
    let handle = start_echo(1, config);
    let jobs = handle
        .registry()
        .counter("app_jobs_total", "Jobs.", &[("kind", "a \"quoted\" one")])
        .unwrap();
    jobs.add(5);
    let mut client = Client::connect(handle.local_addr());
    client.send(true, OpCode::Text, b"hello");
    client.recv();
    eventually(&handle, "the echo counted", |s| {
        all(s, "lanes_messages_sent_total") == 1
    });
    for addr in [handle.local_addr(), handle.metrics_addr().unwrap()] {
        let (status, body) = http_get(addr, "/metrics");
        assert_eq!(status, "HTTP/1.1 200 OK", "{addr}");
        assert_eq!(
            exposed(&body, "lanes_messages_received_total{core=\"all\"}"),
            Some(1)
        );
        assert_eq!(
            exposed(&body, "lanes_messages_received_total{core=\"0\"}"),
            Some(1)
        );
        assert!(body.contains("# TYPE lanes_loop_lag_seconds histogram\n"));
        assert!(body.contains("lanes_loop_lag_seconds_bucket{core=\"0\",le=\"+Inf\"} "));
        assert_eq!(
            exposed(&body, "app_jobs_total{kind=\"a \\\"quoted\\\" one\"}"),
            Some(5)
        );
    }
    // Off by default: the same path is a plain request the handler answers (426).
    let plain = start_echo(1, Config::default());
    let (status, _) = http_get(plain.local_addr(), "/metrics");
    assert!(status.starts_with("HTTP/1.1 426"), "{status}");
    plain.shutdown().unwrap();
    handle.shutdown().unwrap();
}

#[cfg(feature = "metrics")]
#[test]
fn an_influxdb_that_never_answers_does_not_stall_the_workers() {
    // Accepts connections and never reads or answers.
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", black_hole.local_addr().unwrap());
    let mut influx = InfluxConfig::v1(url, "lanes").interval(Duration::from_millis(10));
    influx.timeout = Duration::from_secs(2);
    influx.retry_min = Duration::from_millis(1);
    influx.retry_max = Duration::from_millis(1);
    influx.max_pending_batches = 4;
    let mut config = Config::default();
    config.metrics.influx = Some(influx);
    let handle = start_echo(1, config);
    let mut client = Client::connect(handle.local_addr());
    let mut echoes = 0u64;
    let mut slowest = Duration::ZERO;
    // Echo while the reporter's writes hang and time out (each takes `timeout`).
    loop {
        let sent = Instant::now();
        client.send(true, OpCode::Text, b"ping");
        assert_eq!(client.recv().payload, b"ping");
        slowest = slowest.max(sent.elapsed());
        echoes += 1;
        let failed = handle
            .metrics()
            .counter("lanes_influx_batches_failed_total", &[])
            .unwrap();
        if failed >= 3 {
            break;
        }
    }
    let s = handle.metrics();
    assert_eq!(all(&s, "lanes_messages_received_total"), echoes);
    assert_eq!(s.counter("lanes_influx_batches_sent_total", &[]), Some(0));
    // Bounded: at most 4 batches wait (lanes-metrics' own tests fill the queue past its cap).
    match s.value("lanes_influx_pending_batches", &[]) {
        Some(Value::Gauge(v)) => assert!(*v <= 4.0, "{v}"),
        other => panic!("{other:?}"),
    }
    // A worker that waited on the reporter would have held an echo for a whole write
    // timeout (2 s); none came near it.
    assert!(slowest < Duration::from_secs(1), "{slowest:?}");
    drop(client);
    handle.shutdown().unwrap();
}
