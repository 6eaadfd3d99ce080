//! Cross-core messaging over loopback with two workers: topics, sends by id from other
//! threads, stale ids, the slow-subscriber policies, timers, and shutdown with messages in
//! flight.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use lanes::{
    Accept, BackpressurePolicy, CloseCode, Closed, Config, ConnId, Handler, Message, Request,
    SendError, ServerHandle, SubscribeStatus, Upgrade, WorkerContext, Ws,
};
use lanes_proto::OpCode;
use support::{Client, start_server, wait_until};

/// Test events from the handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Closed(ConnId),
    Timer(ConnId, u64),
}

/// Answers commands sent as text: `sub:T` (answered `subscribed:T`, `already:T` or
/// `atlimit:T`), `unsub:T`, `pub:T:payload`, `others:T:payload` (everyone but the sender),
/// `timer:MS:TOKEN`. On open it tells the client its id as `id:WORKER:SLOT:GENERATION`; when
/// the client closes with the reason `bye`, `on_close` publishes `left:SLOT` to `lobby`.
struct Hub {
    events: Sender<Seen>,
    ticks: Arc<AtomicU64>,
}

impl Handler for Hub {
    type State = ConnId;

    fn on_upgrade(&mut self, _: &Request<'_>) -> Upgrade<ConnId> {
        Upgrade::Accept(Accept::new(ConnId {
            worker: 0,
            slot: 0,
            generation: 0,
        }))
    }

    fn on_open(&mut self, ws: &mut Ws<'_>, conn: &mut ConnId) {
        *conn = ws.id();
        let id = ws.id();
        ws.send_text(&format!("id:{}:{}:{}", id.worker, id.slot, id.generation));
    }

    fn on_message(&mut self, ws: &mut Ws<'_>, _: &mut ConnId, message: Message<'_>) {
        let Message::Text(text) = message else {
            return;
        };
        if let Some(topic) = text.strip_prefix("sub:") {
            let answer = match ws.subscribe(topic) {
                SubscribeStatus::Subscribed => "subscribed",
                SubscribeStatus::AlreadySubscribed => "already",
                SubscribeStatus::AtLimit => "atlimit",
                other => panic!("{other:?}"),
            };
            ws.send_text(&format!("{answer}:{topic}"));
        } else if let Some(topic) = text.strip_prefix("unsub:") {
            assert!(ws.unsubscribe(topic));
            ws.send_text(&format!("unsubscribed:{topic}"));
        } else if let Some(rest) = text.strip_prefix("pub:") {
            let (topic, payload) = rest.split_once(':').unwrap();
            ws.publish_text(topic, payload).unwrap();
        } else if let Some(rest) = text.strip_prefix("others:") {
            let (topic, payload) = rest.split_once(':').unwrap();
            ws.publish_text_except_self(topic, payload).unwrap();
        } else if let Some(rest) = text.strip_prefix("timer:") {
            let (ms, token) = rest.split_once(':').unwrap();
            ws.set_timer(
                Duration::from_millis(ms.parse().unwrap()),
                token.parse().unwrap(),
            );
        }
    }

    fn on_timer(&mut self, ws: &mut Ws<'_>, conn: &mut ConnId, token: u64) {
        let _ = self.events.send(Seen::Timer(*conn, token));
        ws.send_text(&format!("timer:{token}"));
    }

    fn on_tick(&mut self, ctx: &mut WorkerContext<'_, ConnId>) {
        self.ticks.fetch_add(1, Ordering::Relaxed);
        let _ = ctx.worker_index();
    }

    fn on_close(&mut self, conn: ConnId, closed: &mut Closed<'_>) {
        assert_eq!(closed.id(), conn);
        if closed.reason() == "bye" {
            let _ = closed.publish_text("lobby", &format!("left:{}", conn.slot));
        }
        let _ = self.events.send(Seen::Closed(conn));
    }
}

struct Fixture {
    handle: ServerHandle,
    addr: SocketAddr,
    events: Receiver<Seen>,
    ticks: Vec<Arc<AtomicU64>>,
}

fn start(config: Config) -> Fixture {
    let (tx, events) = channel();
    let ticks: Vec<Arc<AtomicU64>> = (0..2).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let worker_ticks = ticks.clone();
    let handle = start_server(2, config, move |info| Hub {
        events: tx.clone(),
        ticks: Arc::clone(&worker_ticks[info.index]),
    });
    let addr = handle.local_addr();
    Fixture {
        handle,
        addr,
        events,
        ticks,
    }
}

fn text(client: &mut Client) -> String {
    let frame = client.recv();
    assert_eq!(frame.opcode, OpCode::Text, "{frame:?}");
    String::from_utf8(frame.payload).unwrap()
}

/// Connects and reads the connection's id.
fn connect(addr: SocketAddr) -> (Client, ConnId) {
    let mut client = Client::connect(addr);
    let hello = text(&mut client);
    let parts: Vec<&str> = hello.strip_prefix("id:").unwrap().split(':').collect();
    let id = ConnId {
        worker: parts[0].parse().unwrap(),
        slot: parts[1].parse().unwrap(),
        generation: parts[2].parse().unwrap(),
    };
    (client, id)
}

/// Connects until each of the two workers has `per_worker` connections (the kernel picks the
/// worker); the extra connections are closed.
fn connect_on_both(addr: SocketAddr, per_worker: usize) -> Vec<(Client, ConnId)> {
    let mut on: [Vec<(Client, ConnId)>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..400 {
        if on.iter().all(|w| w.len() >= per_worker) {
            break;
        }
        let (client, id) = connect(addr);
        let list = &mut on[usize::from(id.worker)];
        if list.len() < per_worker {
            list.push((client, id));
        }
    }
    assert!(
        on.iter().all(|w| w.len() == per_worker),
        "the kernel never spread connections over both workers"
    );
    let [a, b] = on;
    a.into_iter().chain(b).collect()
}

fn subscribe(client: &mut Client, topic: &str) {
    client.send(true, OpCode::Text, format!("sub:{topic}").as_bytes());
    assert_eq!(text(client), format!("subscribed:{topic}"));
}

#[test]
fn everyone_but_me_subscription_answers_and_a_leave_notice_from_on_close() {
    let mut config = Config::default();
    config.limits.max_subscriptions_per_connection = 2;
    let fx = start(config);
    let mut clients = connect_on_both(fx.addr, 2);
    for (client, _) in &mut clients {
        subscribe(client, "lobby");
    }
    let (me, my_id) = &mut clients[0];
    let my_id = *my_id;
    me.send(true, OpCode::Text, b"sub:lobby");
    assert_eq!(text(me), "already:lobby");
    subscribe(me, "x");
    me.send(true, OpCode::Text, b"sub:y");
    assert_eq!(text(me), "atlimit:y");

    // Everyone but the sender, on both workers.
    me.send(true, OpCode::Text, b"others:lobby:hi");
    for (client, _) in &mut clients[1..] {
        assert_eq!(text(client), "hi");
    }
    // The sender got nothing: the next thing it hears is its own later publish.
    let me = &mut clients[0].0;
    me.send(true, OpCode::Text, b"pub:lobby:mark");
    assert_eq!(text(me), "mark");
    for (client, _) in &mut clients[1..] {
        assert_eq!(text(client), "mark");
    }

    // A leave notice published from on_close reaches the others on both workers.
    let (mut leaving, leaving_id) = clients.remove(0);
    assert_eq!(leaving_id, my_id);
    leaving.send(true, OpCode::Close, b"\x03\xe8bye");
    assert_eq!(leaving.recv().opcode, OpCode::Close);
    for (client, _) in &mut clients {
        assert_eq!(text(client), format!("left:{}", my_id.slot));
    }
    // (Connections connect_on_both dropped close too.)
    let closed = std::iter::from_fn(|| fx.events.recv_timeout(Duration::from_secs(5)).ok())
        .any(|seen| seen == Seen::Closed(my_id));
    assert!(closed);
}

#[test]
fn an_invalid_config_is_refused_at_start_naming_the_field() {
    let mut config = Config::default();
    config.backpressure.pause_len = 0;
    let server = lanes::Server::new("127.0.0.1:0".parse().unwrap(), |_| Hub {
        events: channel().0,
        ticks: Arc::default(),
    })
    .config(config);
    match server.start() {
        Err(lanes::Error::Config(error)) => {
            assert_eq!(error.field(), "backpressure.pause_len");
            assert!(
                error.to_string().contains("allowed 1 byte to max_len"),
                "{error}"
            );
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("started with backpressure.pause_len = 0"),
    }
}

#[test]
fn publishes_reach_subscribers_on_every_worker_in_publish_order() {
    let fx = start(Config::default());
    let mut clients = connect_on_both(fx.addr, 3);
    for (client, _) in &mut clients {
        subscribe(client, "t");
    }
    assert_eq!(fx.handle.stats().total().subscriptions, 6);
    const N: usize = 200;
    // Three publishers at once: a connection on worker 0, one on worker 1, a foreign thread.
    let remote = fx.handle.remote();
    let foreign = std::thread::spawn(move || {
        for i in 0..N {
            remote.publish_text("t", &format!("R{i}")).unwrap();
        }
    });
    let (first, rest) = clients.split_at_mut(3);
    for i in 0..N {
        first[0]
            .0
            .send(true, OpCode::Text, format!("pub:t:A{i}").as_bytes());
        rest[0]
            .0
            .send(true, OpCode::Text, format!("pub:t:B{i}").as_bytes());
    }
    foreign.join().unwrap();
    for (client, id) in &mut clients {
        let mut next: HashMap<char, usize> = HashMap::new();
        for _ in 0..3 * N {
            let message = text(client);
            let (publisher, seq) = message.split_at(1);
            let publisher = publisher.chars().next().unwrap();
            let expected = next.entry(publisher).or_default();
            assert_eq!(
                seq.parse::<usize>().unwrap(),
                *expected,
                "{id:?} from {publisher}"
            );
            *expected += 1;
        }
        assert_eq!(next.values().copied().collect::<Vec<_>>(), vec![N; 3]);
    }
    let total = fx.handle.stats().total();
    assert_eq!(total.delivered, 6 * 3 * N as u64);
    // Every publish is handled once by each of the two workers.
    assert_eq!(total.published, 2 * 3 * N as u64);
}

#[test]
fn sends_from_a_foreign_thread_arrive_and_a_stale_id_is_rejected() {
    let fx = start(Config::default());
    let (mut client, id) = connect(fx.addr);
    let remote = fx.handle.remote();
    assert!(remote.is_open(id));
    let sender = remote.clone();
    std::thread::spawn(move || {
        for i in 0..100 {
            sender.send_text(id, &format!("direct {i}")).unwrap();
        }
        sender.send_binary(id, &[1, 2, 3]).unwrap();
    })
    .join()
    .unwrap();
    for i in 0..100 {
        assert_eq!(text(&mut client), format!("direct {i}"));
    }
    let frame = client.recv();
    assert_eq!(
        (frame.opcode, frame.payload),
        (OpCode::Binary, vec![1, 2, 3])
    );

    // Closed by the server through the remote: the close handshake runs as usual.
    remote.close(id, CloseCode::new(4000), "bye").unwrap();
    let frame = client.recv();
    assert_eq!(frame.close_code(), Some(4000));
    client.send(true, OpCode::Close, &frame.payload[..2]);
    assert_eq!(fx.events.recv().unwrap(), Seen::Closed(id));
    assert!(!remote.is_open(id));
    assert_eq!(remote.send_text(id, "late"), Err(SendError::Gone));
    assert_eq!(
        remote.close(id, CloseCode::NORMAL, ""),
        Err(SendError::Gone)
    );
    // An id that never existed, and a worker that does not exist.
    let bogus = ConnId { worker: 7, ..id };
    assert_eq!(remote.send_text(bogus, "x"), Err(SendError::Gone));

    // A later connection that may reuse the slot gets a new generation; the old id stays gone.
    let mut later = Vec::new();
    for _ in 0..8 {
        later.push(connect(fx.addr));
    }
    assert_eq!(remote.send_text(id, "late"), Err(SendError::Gone));
    for (client, new_id) in &mut later {
        assert_ne!(*new_id, id);
        remote.send_text(*new_id, "fresh").unwrap();
        assert_eq!(text(client), "fresh");
    }
}

#[test]
fn unsubscribe_and_disconnect_remove_subscriptions() {
    let fx = start(Config::default());
    let remote = fx.handle.remote();
    let (mut client, _) = connect(fx.addr);
    subscribe(&mut client, "t");
    subscribe(&mut client, "u");
    assert_eq!(remote.stats().total().subscriptions, 2);
    client.send(true, OpCode::Text, b"unsub:t");
    assert_eq!(text(&mut client), "unsubscribed:t");
    assert_eq!(remote.stats().total().subscriptions, 1);
    remote.publish_text("t", "not for you").unwrap();
    remote.publish_text("u", "marker").unwrap();
    // Publishes from one thread arrive in order, so had "t" reached us it would come first.
    assert_eq!(text(&mut client), "marker");

    drop(client); // disconnect without a close handshake
    wait_until("the subscription to go", || {
        remote.stats().total().subscriptions == 0 && remote.stats().total().connections == 0
    });
    // A new subscriber to "u" gets only what is published after it subscribed.
    let (mut again, _) = connect(fx.addr);
    subscribe(&mut again, "u");
    remote.publish_text("u", "second").unwrap();
    assert_eq!(text(&mut again), "second");
}

/// A subscriber whose socket takes almost nothing and which never reads.
fn stalled_subscriber(addr: SocketAddr, topic: &str) -> Client {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut client = Client::handshake(socket.into());
    let _ = text(&mut client); // its id
    subscribe(&mut client, topic);
    client
}

/// Publishes `n` numbered 1 KiB messages from a foreign thread while a fast subscriber reads
/// them all; returns the fast subscriber's count. The publisher stays at most 128 messages
/// (128 KiB, under every backlog cap the tests set) ahead of the fast subscriber, so that a
/// test thread descheduled on a busy machine cannot make the fast one look slow.
fn flood(fx: &Fixture, topic: &str, n: usize, fast: &mut Client) -> usize {
    let remote = fx.handle.remote();
    let topic_name = topic.to_owned();
    let read = Arc::new(AtomicU64::new(0));
    let progress = Arc::clone(&read);
    let publisher = std::thread::spawn(move || {
        let pad = "x".repeat(1024);
        for i in 0..n {
            while i as u64 > progress.load(Ordering::Acquire) + 128 {
                std::thread::sleep(Duration::from_micros(200));
            }
            remote
                .publish_text(&topic_name, &format!("{i:06}{pad}"))
                .unwrap();
        }
    });
    for i in 0..n {
        read.store(i as u64, Ordering::Release);
        let message = text(fast);
        assert_eq!(
            &message[..6],
            format!("{i:06}"),
            "the fast subscriber missed nothing"
        );
    }
    publisher.join().unwrap();
    n
}

#[test]
fn a_slow_subscriber_loses_messages_not_memory_and_never_slows_the_others() {
    let mut config = Config::default();
    config.backpressure.pause_len = 64 * 1024;
    config.backpressure.max_len = 512 * 1024;
    config.backpressure.policy = BackpressurePolicy::Drop;
    let fx = start(config);
    let mut slow = stalled_subscriber(fx.addr, "feed");
    let (mut fast, _) = connect(fx.addr);
    subscribe(&mut fast, "feed");
    const N: usize = 20_000; // 20 MiB: more than every socket buffer on the way
    assert_eq!(flood(&fx, "feed", N, &mut fast), N);
    // Now read the slow one: it gets, in order, exactly what was not dropped. (Its worker
    // may still be delivering, and counting drops, when the fast one has everything: the
    // count is read once the slow one has been quiet for the read timeout.)
    slow.stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut received = 0u64;
    let mut last = None;
    while let Some(frame) = slow.try_recv() {
        let seq: usize = std::str::from_utf8(&frame.payload[..6])
            .unwrap()
            .parse()
            .unwrap();
        assert!(last.is_none_or(|l| seq > l));
        last = Some(seq);
        received += 1;
    }
    let dropped = fx.handle.stats().total().messages_dropped;
    assert!(
        dropped > 0,
        "the slow subscriber's backlog was never capped"
    );
    assert_eq!(received + dropped, N as u64);
    assert_eq!(fx.handle.stats().total().closed_slow, 0);
}

#[test]
fn a_published_frame_the_socket_takes_in_part_arrives_whole_and_before_the_next() {
    // A subscriber with a small receive buffer, not reading while 16 frames of 256 KiB are
    // published: the first is written at once and the socket takes only part of it; the
    // rest of it, then the others, are queued and follow.
    let fx = start(Config::default());
    let mut slow = stalled_subscriber(fx.addr, "big");
    const N: usize = 16;
    const LEN: usize = 256 * 1024;
    let remote = fx.handle.remote();
    for i in 0..N {
        let byte = b'a' + i as u8;
        remote.publish_binary("big", &vec![byte; LEN]).unwrap();
    }
    for i in 0..N {
        let frame = slow.recv();
        assert_eq!(frame.opcode, OpCode::Binary);
        assert_eq!(frame.payload.len(), LEN, "frame {i}");
        let byte = b'a' + i as u8;
        assert!(frame.payload.iter().all(|&b| b == byte), "frame {i}");
    }
    let total = fx.handle.stats().total();
    assert_eq!(total.delivered, N as u64);
    assert_eq!(total.messages_dropped, 0);
}

#[test]
fn a_slow_subscriber_is_closed_with_1008_under_the_close_policy() {
    let mut config = Config::default();
    config.backpressure.pause_len = 64 * 1024;
    config.backpressure.max_len = 512 * 1024;
    config.backpressure.policy = BackpressurePolicy::Close;
    let fx = start(config);
    let mut slow = stalled_subscriber(fx.addr, "feed");
    let (mut fast, _) = connect(fx.addr);
    subscribe(&mut fast, "feed");
    assert_eq!(flood(&fx, "feed", 20_000, &mut fast), 20_000);
    let stats = fx.handle.stats().total();
    assert_eq!(stats.closed_slow, 1);
    assert_eq!(stats.messages_dropped, 0);
    // The slow one finds a 1008 close after what was queued before the cap.
    let close = loop {
        let frame = slow.recv();
        if frame.opcode == OpCode::Close {
            break frame;
        }
    };
    assert_eq!(close.close_code(), Some(1008));
}

#[test]
fn connection_timers_and_the_worker_tick_fire() {
    let mut config = Config::default();
    config.timers.tick_interval = Some(Duration::from_millis(20));
    let fx = start(config);
    let (mut client, id) = connect(fx.addr);
    let set_at = Instant::now();
    client.send(true, OpCode::Text, b"timer:60:7");
    assert_eq!(text(&mut client), "timer:7");
    assert!(set_at.elapsed() >= Duration::from_millis(60));
    assert_eq!(fx.events.recv().unwrap(), Seen::Timer(id, 7));

    // A timer on a connection that closes first never fires.
    let (mut short, short_id) = connect(fx.addr);
    short.send(true, OpCode::Text, b"timer:100:9");
    short.send(true, OpCode::Close, &1000u16.to_be_bytes());
    assert_eq!(short.recv().close_code(), Some(1000));
    assert_eq!(fx.events.recv().unwrap(), Seen::Closed(short_id));
    std::thread::sleep(Duration::from_millis(200));
    assert!(fx.events.try_recv().is_err(), "no timer after the close");

    // Both workers tick, about every 20 ms.
    let before: Vec<u64> = fx.ticks.iter().map(|t| t.load(Ordering::Relaxed)).collect();
    std::thread::sleep(Duration::from_millis(500));
    for (worker, tick) in fx.ticks.iter().enumerate() {
        let n = tick.load(Ordering::Relaxed) - before[worker];
        assert!(
            (10..=30).contains(&n),
            "worker {worker} ticked {n} times in 500 ms"
        );
    }
}

#[test]
fn shutdown_writes_queued_messages_before_the_1001_close() {
    let fx = start(Config::default());
    let (mut client, id) = connect(fx.addr);
    let remote = fx.handle.remote();
    for i in 0..1000 {
        remote.send_text(id, &format!("m{i}")).unwrap();
    }
    let Fixture { handle, .. } = fx;
    let stopper = std::thread::spawn(move || handle.shutdown());
    for i in 0..1000 {
        assert_eq!(text(&mut client), format!("m{i}"));
    }
    let close = client.recv();
    assert_eq!(close.close_code(), Some(1001));
    client.send(true, OpCode::Close, &close.payload[..2]);
    stopper.join().unwrap().unwrap();
    assert_eq!(remote.send_text(id, "after"), Err(SendError::ShutDown));
    assert_eq!(remote.publish_text("t", "after"), Err(SendError::ShutDown));
}
