//! Slow and hostile peers on loopback: a peer that trickles bytes is closed with 1008 once a
//! frame it began is not finished within `timeouts.message` (the rule itself is tested on a
//! fake clock in lanes-proto's session tests; this checks the runtime acts on it).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use lanes::{CloseCause, Config};
use lanes_proto::OpCode;
use support::{Client, start_echo};

/// Sends `bytes` one at a time every `every` until the server closes; the close frame's code
/// and how long it took, or `None` when the bytes ran out first.
fn trickle(client: &mut Client, bytes: &[u8], every: Duration) -> Option<(Option<u16>, Duration)> {
    client.stream.set_read_timeout(Some(every)).unwrap();
    let start = Instant::now();
    for byte in bytes {
        if client.stream.write_all(&[*byte]).is_err() {
            break;
        }
        if let Some(frame) = client.try_recv() {
            assert_eq!(frame.opcode, OpCode::Close);
            return Some((frame.close_code(), start.elapsed()));
        }
    }
    None
}

#[test]
fn a_peer_that_trickles_a_header_is_closed_with_1008_after_the_message_timeout() {
    let mut config = Config::default();
    config.timeouts.message = Duration::from_millis(300);
    // Keepalive would not save it either way: stray bytes are no sign of life.
    config.timeouts.ping_interval = Some(Duration::from_millis(100));
    let handle = start_echo(1, config);
    let mut client = Client::connect(handle.local_addr());
    client.send(true, OpCode::Text, b"warm");
    assert_eq!(client.recv().payload, b"warm");
    // A 64 KiB frame's header and payload, a byte every 20 ms: 65 s at that pace.
    let frame = Client::encode(true, OpCode::Binary, &vec![1u8; 65536]);
    let (code, took) = trickle(&mut client, &frame, Duration::from_millis(20))
        .expect("never closed while trickling");
    assert_eq!(code, Some(1008));
    assert!(took < Duration::from_secs(5), "closed only after {took:?}");
    let stats = handle.stats().total();
    let timeout = CloseCause::ALL
        .iter()
        .position(|c| *c == CloseCause::Timeout);
    assert_eq!(stats.closed[timeout.unwrap()], 1);
    handle.shutdown().unwrap();
}

#[test]
fn most_of_a_large_frame_then_a_byte_now_and_then_is_closed_and_its_buffer_freed() {
    // With keepalive far off (its timer entry due long after the message deadline) and with
    // keepalive off (no timer entry at all before the frame began).
    for ping_interval in [Some(Duration::from_secs(30)), None] {
        large_frame_then_a_byte_now_and_then(ping_interval);
    }
}

fn large_frame_then_a_byte_now_and_then(ping_interval: Option<Duration>) {
    let mut config = Config::default();
    config.timeouts.message = Duration::from_millis(500);
    config.timeouts.ping_interval = ping_interval;
    let handle = start_echo(1, config);
    let mut client = Client::connect(handle.local_addr());
    let frame = Client::encode(true, OpCode::Binary, &vec![2u8; 4 << 20]);
    let (bulk, rest) = frame.split_at(frame.len() - 64);
    client.send_raw(bulk);
    let (code, _) = trickle(&mut client, rest, Duration::from_millis(50)).expect("never closed");
    assert_eq!(code, Some(1008));
    // The connection and what it held are gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    while handle.stats().total().connections != 0 {
        assert!(Instant::now() < deadline, "the connection is still open");
        std::thread::sleep(Duration::from_millis(10));
    }
    handle.shutdown().unwrap();
}

#[test]
fn complete_messages_keep_a_connection_alive_past_the_message_timeout() {
    let mut config = Config::default();
    config.timeouts.message = Duration::from_millis(200);
    let handle = start_echo(1, config);
    let mut client = Client::connect(handle.local_addr());
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(800) {
        client.send(true, OpCode::Text, b"tick");
        assert_eq!(client.recv().payload, b"tick");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(handle.stats().total().connections, 1);
    handle.shutdown().unwrap();
}
