//! Slow and hostile peers on loopback: a peer that trickles bytes is closed with 1008 once a
//! frame it began is not finished within `timeouts.message` (the rule itself is tested on a
//! fake clock in lanes-proto's session tests; this checks the runtime acts on it); a stalled
//! subscriber is cut off (or skipped) once its output waits past `backpressure.max_age`; and
//! under the latest-value policy a subscriber that stalls then reads gets only the newest value
//! per key, while the others get everything.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use lanes::{
    Accept, BackpressurePolicy, CloseCause, Config, Handler, Message, Request, ServerHandle,
    Upgrade, Ws,
};
use lanes_proto::OpCode;
use support::{Client, start_echo, start_server, wait_until};

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
    // Counted when the connection is removed, just after the close frame is written.
    wait_until("the close counted as a timeout", || {
        handle.stats().total().closed_by(CloseCause::Timeout) == 1
    });
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

/// Subscribes every connection to "prices" and says so.
struct Prices;

impl Handler for Prices {
    type State = ();
    fn on_upgrade(&mut self, _: &Request<'_>) -> Upgrade<()> {
        Upgrade::Accept(Accept::new(()))
    }
    fn on_open(&mut self, ws: &mut Ws<'_>, _: &mut ()) {
        ws.subscribe("prices");
        ws.send_text("subscribed");
    }
    fn on_message(&mut self, _: &mut Ws<'_>, _: &mut (), _: Message<'_>) {}
}

/// A small server-side send buffer, so that a stalled client is seen behind quickly.
fn market_config() -> Config {
    let mut config = Config::default();
    config.socket.send_buffer_len = Some(64 * 1024);
    config
}

/// A subscriber whose socket takes almost nothing and which reads only when told.
fn stalled_subscriber(handle: &ServerHandle) -> Client {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&handle.local_addr().into()).unwrap();
    let mut client = Client::handshake(socket.into());
    assert_eq!(client.recv().payload, b"subscribed");
    client
}

fn reading_subscriber(handle: &ServerHandle) -> Client {
    let mut client = Client::connect(handle.local_addr());
    assert_eq!(client.recv().payload, b"subscribed");
    client
}

/// A 1 KiB price update: "key seq " and padding.
fn update(key: usize, seq: usize) -> String {
    format!("k{key} {seq} {}", "p".repeat(1000))
}

fn parse(payload: &[u8]) -> (usize, usize) {
    let text = std::str::from_utf8(payload).unwrap();
    let mut parts = text.split(' ');
    let key = parts.next().unwrap()[1..].parse().unwrap();
    let seq = parts.next().unwrap().parse().unwrap();
    (key, seq)
}

#[test]
fn a_stalled_subscriber_is_dropped_once_its_output_waits_past_max_age() {
    let mut config = market_config();
    config.backpressure.max_age = Some(Duration::from_millis(500));
    let handle = start_server(1, config, |_| Prices);
    let _stalled = stalled_subscriber(&handle);
    let mut reader = reading_subscriber(&handle);
    let remote = handle.remote();
    let start = Instant::now();
    let mut closed_after = None;
    for seq in 0..10_000 {
        remote.publish_text("prices", &update(0, seq)).unwrap();
        let (_, got) = parse(&reader.recv().payload);
        assert_eq!(got, seq, "the reading subscriber misses nothing");
        if handle.stats().total().closed_slow == 1 {
            closed_after = Some(start.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let took = closed_after.expect("the stalled subscriber was never dropped");
    eprintln!("stalled subscriber dropped {took:?} after publishing began");
    // Filling the buffers takes about 200 updates; then 500 ms of age and the wheel's tick.
    assert!(took < Duration::from_secs(5), "dropped only after {took:?}");
    let stats = handle.stats().total();
    assert_eq!(stats.connections, 1);
    let slow = CloseCause::ALL
        .iter()
        .position(|c| *c == CloseCause::SlowConsumer);
    assert_eq!(stats.closed[slow.unwrap()], 1);
    handle.shutdown().unwrap();
}

#[test]
fn under_the_drop_policy_a_stalled_subscriber_is_skipped_not_closed() {
    let mut config = market_config();
    config.backpressure.max_age = Some(Duration::from_millis(300));
    config.backpressure.policy = BackpressurePolicy::Drop;
    let handle = start_server(1, config, |_| Prices);
    let _stalled = stalled_subscriber(&handle);
    let mut reader = reading_subscriber(&handle);
    let remote = handle.remote();
    let start = Instant::now();
    let mut seq = 0;
    while handle.stats().total().messages_dropped == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "nothing was ever dropped"
        );
        remote.publish_text("prices", &update(0, seq)).unwrap();
        assert_eq!(parse(&reader.recv().payload).1, seq);
        seq += 1;
        std::thread::sleep(Duration::from_millis(1));
    }
    let stats = handle.stats().total();
    assert_eq!(stats.connections, 2, "skipped, not closed");
    assert_eq!(stats.closed_slow, 0);
    handle.shutdown().unwrap();
}

#[test]
fn a_subscriber_that_stalls_then_reads_gets_only_the_newest_value_per_key() {
    const KEYS: usize = 10;
    const UPDATES: usize = 3000;
    let handle = start_server(1, market_config(), |_| Prices);
    let mut stalled = stalled_subscriber(&handle);
    let mut reader = reading_subscriber(&handle);
    let remote = handle.remote();
    // The reading subscriber reads as the updates come: every one, in order.
    let reading = std::thread::spawn(move || {
        for seq in 0..UPDATES {
            assert_eq!(parse(&reader.recv().payload), (seq % KEYS, seq));
        }
        reader
    });
    // About 5 s of updates, round robin over the keys, while `stalled` reads nothing.
    let mut last = [0usize; KEYS];
    for seq in 0..UPDATES {
        let key = seq % KEYS;
        remote
            .publish_latest_text("prices", &format!("k{key}"), &update(key, seq))
            .unwrap();
        last[key] = seq;
        if seq % 6 == 5 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let _reader = reading.join().unwrap();
    // Now it reads: what was in flight when it fell behind, then the newest value per key.
    std::thread::sleep(Duration::from_millis(100));
    stalled
        .stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut received = Vec::new();
    while let Some(frame) = stalled.try_recv() {
        received.push(parse(&frame.payload));
    }
    let mut newest = [None; KEYS];
    for &(key, seq) in &received {
        assert!(
            newest[key] < Some(seq),
            "out of order for k{key}: {received:?}"
        );
        newest[key] = Some(seq);
    }
    for key in 0..KEYS {
        assert_eq!(
            newest[key],
            Some(last[key]),
            "k{key} ends at its last value"
        );
    }
    eprintln!(
        "stalled then read: {} of {UPDATES} updates received, {} conflated",
        received.len(),
        handle.stats().total().messages_conflated
    );
    // The in-flight part is bounded by the socket buffers (about 200 updates of 1 KiB), not by
    // what was published while it stalled.
    assert!(
        received.len() < 600,
        "got {} of {UPDATES} updates",
        received.len()
    );
    let stats = handle.stats().total();
    assert!(stats.messages_conflated > 2000, "{stats:?}");
    assert_eq!(stats.connections, 2);
    handle.shutdown().unwrap();
}

/// Sends a frame header declaring `len` bytes and `sent` bytes of its payload, fast.
fn begin_frame(client: &mut Client, len: usize, sent: usize) {
    let frame = Client::encode(true, OpCode::Binary, &vec![3u8; len]);
    let header = frame.len() - len;
    client.send_raw(&frame[..header + sent]);
}

#[test]
fn over_the_memory_budget_the_largest_holders_are_closed_and_the_rest_served() {
    let mut config = Config::default();
    config.memory.worker_budget = 8 << 20;
    // A small kernel send buffer: the stalled readers' echoes stay in lanes' buffers, where the
    // budget counts them (with autotuning the kernel took 5 MB of the 12 MiB once, and the
    // worker stayed under its budget).
    config.socket.send_buffer_len = Some(64 * 1024);
    let handle = start_echo(1, config);
    let addr = handle.local_addr();
    let mut bystander = Client::connect(addr);
    let mut small = Client::connect(addr);
    begin_frame(&mut small, 2 << 20, 1 << 20); // 1 MiB held: under the budget

    // A partial message of 10 MiB: over the budget, and the largest holder: 1009.
    let mut partial = Client::connect(addr);
    begin_frame(&mut partial, 12 << 20, 10 << 20);
    let close = partial.recv();
    assert_eq!(close.close_code(), Some(1009), "{close:?}");

    // Readers that never read, each with a 6 MiB echo waiting: together over the budget, so
    // the largest holder is dropped (it may be cut off while it is still sending).
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.connect(&addr.into()).unwrap();
        let mut client = Client::handshake(socket.into());
        let _ = client
            .stream
            .write_all(&Client::encode(true, OpCode::Binary, &vec![4u8; 6 << 20]));
        stalled.push(client);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let budget = CloseCause::ALL
        .iter()
        .position(|c| *c == CloseCause::MemoryBudget);
    while handle.stats().total().closed[budget.unwrap()] < 2 {
        assert!(Instant::now() < deadline, "{:?}", handle.stats().total());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(handle.stats().total().buffered_bytes <= 8 << 20);

    // Everyone else goes on: the small partial message completes, the bystander is served.
    let rest = Client::encode(true, OpCode::Binary, &vec![3u8; 2 << 20]);
    small.send_raw(&rest[rest.len() - (1 << 20)..]);
    assert_eq!(small.recv().payload.len(), 2 << 20);
    bystander.send(true, OpCode::Text, b"still served");
    assert_eq!(bystander.recv().payload, b"still served");
    let stats = handle.stats().total();
    assert_eq!(
        stats.connections, 3,
        "the bystander, the small one, one stalled: {stats:?}"
    );
    drop(stalled);
    handle.shutdown().unwrap();
}
