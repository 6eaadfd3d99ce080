//! The fanout mode against small servers made here: a broadcast server (every message
//! received is sent to every other connection) for the client source, and a ticker (it stamps
//! and sends messages to every connection on its own, on a schedule) for the server source.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::ops::ControlFlow;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lanes_load::fanout::{FanoutPlan, encode, run_fanout, unix_now_ns};
use lanes_proto::OpCode;
use lanes_proto::session::{Event, SessionConfig};
use support::{accept_upgrade, push_frame, serve_session, spawn_server};

/// The connections, each with the client's address.
type Peers = Arc<Mutex<Vec<(SocketAddr, TcpStream)>>>;

/// Starts the broadcast server on a free loopback port; it runs until the test process ends.
fn broadcast_server() -> SocketAddr {
    let peers: Peers = Arc::default();
    spawn_server(move |stream| serve(stream, &peers))
}

fn serve(mut stream: TcpStream, peers: &Peers) {
    let Some(buf) = accept_upgrade(&mut stream) else {
        return;
    };
    let id = stream.peer_addr().unwrap();
    peers
        .lock()
        .unwrap()
        .push((id, stream.try_clone().unwrap()));
    serve_session(
        &mut stream,
        buf,
        SessionConfig::server(),
        None,
        |event, _| {
            let (opcode, payload) = match event {
                Event::Binary(bytes) => (OpCode::Binary, bytes),
                Event::Text(text) => (OpCode::Text, text.as_bytes()),
                _ => return ControlFlow::Continue(()),
            };
            let mut bytes = Vec::new();
            push_frame(&mut bytes, opcode, 0, payload);
            for (peer, out) in peers.lock().unwrap().iter_mut() {
                if *peer != id {
                    let _ = out.write_all(&bytes);
                }
            }
            ControlFlow::Continue(())
        },
    );
}

/// Accepts every connection and, from its start, sends every connection a stamped message
/// every `interval`, each with `padding` extra bytes; sequence numbers count from 0 at
/// the start, so connections join a running stream. Every `skip_every`-th message (if any)
/// is sent to nobody.
fn ticker(interval: Duration, padding: usize, skip_every: Option<u64>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let peers: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let accepted = Arc::clone(&peers);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            stream.set_nodelay(true).unwrap();
            if accept_upgrade(&mut stream).is_some() {
                accepted.lock().unwrap().push(stream);
            }
        }
    });
    std::thread::spawn(move || {
        let start = Instant::now();
        for seq in 0u64.. {
            let due = start + interval * seq as u32;
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            if skip_every.is_some_and(|n| seq % n == n - 1) {
                continue;
            }
            let mut payload = encode(seq, unix_now_ns().unwrap()).to_vec();
            payload.resize(payload.len() + padding, 0x5a);
            let mut bytes = Vec::new();
            push_frame(&mut bytes, OpCode::Binary, 0, &payload);
            peers
                .lock()
                .unwrap()
                .retain_mut(|peer| peer.write_all(&bytes).is_ok());
        }
    });
    addr
}

fn plan(addr: SocketAddr, subscribers: u32, rate: Option<u32>, duration_ms: u64) -> FanoutPlan {
    FanoutPlan::new(
        addr,
        subscribers,
        rate,
        Duration::from_millis(200),
        Duration::from_millis(duration_ms),
    )
}

#[test]
fn every_subscriber_gets_every_message_in_order() {
    let addr = broadcast_server();
    let result = run_fanout(&plan(addr, 20, Some(200), 1000), &AtomicU64::new(0)).unwrap();
    // 200 msg/s for 1 s, to 20 subscribers.
    assert!(
        (195..=205).contains(&result.published),
        "{}",
        result.published
    );
    assert_eq!(result.deliveries, result.published * 20);
    assert_eq!(
        (
            result.missed,
            result.out_of_order,
            result.malformed,
            result.disconnected
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(result.latency_ns.len(), result.deliveries);
    assert!(result.latency_ns.value_at_quantile(0.5) > 0);
    assert_eq!(result.silent, 0);
}

#[test]
fn client_source_over_several_threads() {
    let addr = broadcast_server();
    let plan = FanoutPlan {
        threads: 3,
        ..plan(addr, 10, Some(100), 500)
    };
    let progress = AtomicU64::new(0);
    let result = run_fanout(&plan, &progress).unwrap();
    assert!(
        (48..=52).contains(&result.published),
        "{}",
        result.published
    );
    assert_eq!(result.deliveries, result.published * 10);
    assert_eq!((result.missed, result.disconnected), (0, 0));
    assert!(progress.into_inner() >= result.deliveries);
}

#[test]
fn server_source_sets_each_base_from_the_first_delivery() {
    // Subscribers join a stream that has been running: nothing before they joined is missed.
    let addr = ticker(Duration::from_millis(2), 48, None);
    std::thread::sleep(Duration::from_millis(100));
    let plan = FanoutPlan {
        threads: 2,
        ..plan(addr, 8, None, 1000)
    };
    let result = run_fanout(&plan, &AtomicU64::new(0)).unwrap();
    // 500 messages/s for 1 s, every one seen by all 8.
    assert!(
        (490..=510).contains(&result.published),
        "{}",
        result.published
    );
    assert_eq!(result.deliveries, result.published * 8);
    assert_eq!(
        (
            result.missed,
            result.out_of_order,
            result.malformed,
            result.disconnected,
            result.silent
        ),
        (0, 0, 0, 0, 0)
    );
    assert!(result.latency_ns.value_at_quantile(0.5) > 0);
}

#[test]
fn server_source_counts_gaps_after_the_base() {
    // Every 10th message goes to nobody: 10% of the stream is missed by every subscriber, and
    // is not counted as published (nobody saw it).
    let addr = ticker(Duration::from_millis(1), 0, Some(10));
    let result = run_fanout(&plan(addr, 4, None, 1000), &AtomicU64::new(0)).unwrap();
    assert!(
        (880..=920).contains(&result.published),
        "{}",
        result.published
    );
    assert_eq!(result.deliveries, result.published * 4);
    // About 120 gaps per subscriber over the whole run (warm-up, window, drain).
    assert!(
        (4 * 100..=4 * 150).contains(&result.missed),
        "{}",
        result.missed
    );
    assert_eq!(result.out_of_order, 0);
}

#[test]
fn a_server_that_never_publishes_gives_silent_subscribers() {
    let addr = ticker(Duration::from_secs(3600), 0, None);
    // The first message goes out at once, to nobody yet; the next one in an hour.
    std::thread::sleep(Duration::from_millis(50));
    let result = run_fanout(&plan(addr, 3, None, 300), &AtomicU64::new(0)).unwrap();
    assert_eq!((result.published, result.deliveries), (0, 0));
    assert_eq!(result.silent, 3);
}

#[test]
fn a_refused_connection_is_a_clear_error() {
    // A port that was just free: nothing listens there.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let plan = FanoutPlan::new(
        addr,
        1,
        Some(10),
        Duration::ZERO,
        Duration::from_millis(100),
    );
    let error = run_fanout(&plan, &AtomicU64::new(0)).unwrap_err();
    assert!(error.contains("cannot connect"), "{error}");
}
