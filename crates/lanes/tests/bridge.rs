//! The broker bridge against real brokers on loopback: nats-server and redis-server, started
//! here on free ports (scripts/bridge_test.sh installs them from Debian when missing).
//!
//! For each broker: three nodes of two workers each share a topic with 300 subscribers and
//! three publishers, one per node (every subscriber gets every message exactly once, each
//! publisher's in order); the node whose subscribers all leave drops its upstream subscription
//! (checked on the broker); and the broker killed for 2 s and started again (the loss is
//! counted, drops are counted and bounded, the subscriptions are back on the broker, delivery
//! resumes in order); and the broker paused (SIGSTOP), which stalls no worker.

#![cfg(all(feature = "nats", feature = "redis"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lanes::{Accept, BridgeStats, BrokerConfig, Config, Handler, Message, Request, ServerHandle};
use lanes::{Upgrade, Ws};
use lanes_proto::OpCode;
use support::{Client, start_server};

/// Commands as text: `sub:T` (answered `ok:T`), `unsub:T` (answered `ok:T`), `pub:T:payload`.
struct Room;

impl Handler for Room {
    type State = ();

    fn on_upgrade(&mut self, _: &Request<'_>) -> Upgrade<()> {
        Upgrade::Accept(Accept::new(()))
    }

    fn on_message(&mut self, ws: &mut Ws<'_>, _: &mut (), message: Message<'_>) {
        let Message::Text(text) = message else {
            return;
        };
        if let Some(topic) = text.strip_prefix("sub:") {
            ws.subscribe(topic);
            ws.send_text(&format!("ok:{topic}"));
        } else if let Some(topic) = text.strip_prefix("unsub:") {
            ws.unsubscribe(topic);
            ws.send_text(&format!("ok:{topic}"));
        } else if let Some(rest) = text.strip_prefix("pub:") {
            let (topic, payload) = rest.split_once(':').unwrap();
            ws.publish_text(topic, payload).unwrap();
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Nats,
    Redis,
}

/// A broker process on loopback, killed when dropped.
struct Broker {
    kind: Kind,
    port: u16,
    /// nats-server's monitoring port.
    monitor: u16,
    child: Child,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Broker {
    fn start(kind: Kind) -> Broker {
        let (port, monitor) = (free_port(), free_port());
        let child = Broker::spawn(kind, port, monitor);
        let broker = Broker {
            kind,
            port,
            monitor,
            child,
        };
        broker.wait_ready();
        broker
    }

    fn spawn(kind: Kind, port: u16, monitor: u16) -> Child {
        let mut command = match kind {
            Kind::Nats => {
                let mut c = Command::new("nats-server");
                c.args(["-a", "127.0.0.1", "-p", &port.to_string()]);
                c.args(["-m", &monitor.to_string()]);
                c
            }
            Kind::Redis => {
                let mut c = Command::new("redis-server");
                c.args(["--bind", "127.0.0.1", "--port", &port.to_string()]);
                c.args(["--save", "", "--appendonly", "no"]);
                c
            }
        };
        command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {kind:?}'s server ({e}): run scripts/bridge_test.sh, which installs it")
            })
    }

    fn wait_ready(&self) {
        let until = Instant::now() + Duration::from_secs(10);
        let ports = match self.kind {
            Kind::Nats => vec![self.port, self.monitor],
            Kind::Redis => vec![self.port],
        };
        for port in ports {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < until, "{:?} did not start", self.kind);
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    fn url(&self) -> String {
        match self.kind {
            Kind::Nats => format!("nats://127.0.0.1:{}", self.port),
            Kind::Redis => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends the broker a signal by name (`STOP`, `CONT`).
    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn restart(&mut self) {
        self.child = Broker::spawn(self.kind, self.port, self.monitor);
        self.wait_ready();
    }

    /// For each subject subscribed on the broker, how many connections subscribe to it: NATS'
    /// `/connz?subs=1` monitoring page, or Redis' `PUBSUB CHANNELS` and `PUBSUB NUMSUB`.
    fn subscriptions(&self) -> HashMap<String, usize> {
        let mut subjects = HashMap::new();
        match self.kind {
            Kind::Nats => {
                let page = http_get(self.monitor, "/connz?subs=1");
                let json: serde_json::Value = serde_json::from_str(&page).unwrap();
                for conn in json["connections"].as_array().into_iter().flatten() {
                    for subject in conn["subscriptions_list"].as_array().into_iter().flatten() {
                        *subjects
                            .entry(subject.as_str().unwrap().to_owned())
                            .or_insert(0) += 1;
                    }
                }
            }
            Kind::Redis => {
                let client = redis::Client::open(self.url()).unwrap();
                let mut conn = client.get_connection().unwrap();
                let channels: Vec<String> = redis::cmd("PUBSUB")
                    .arg("CHANNELS")
                    .query(&mut conn)
                    .unwrap();
                for channel in channels {
                    let counts: Vec<(String, usize)> = redis::cmd("PUBSUB")
                        .arg("NUMSUB")
                        .arg(&channel)
                        .query(&mut conn)
                        .unwrap();
                    subjects.extend(counts.into_iter().filter(|(_, n)| *n > 0));
                }
            }
        }
        subjects
    }

    fn wait_subscriptions(&self, subject: &str, nodes: usize) {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let now = self.subscriptions();
            if now.get(subject).copied().unwrap_or(0) == nodes {
                return;
            }
            assert!(
                Instant::now() < until,
                "{:?}: {subject} should have {nodes} subscriptions, has {now:?}",
                self.kind
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

fn http_get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (_, body) = response.split_once("\r\n\r\n").unwrap();
    body.to_owned()
}

/// A lanes node of two workers using `broker`.
fn node(broker: &Broker, queue_len: usize) -> ServerHandle {
    let mut config = Config::default();
    config.broker = Some(BrokerConfig::new(broker.url()).queue_len(queue_len));
    start_server(2, config, |_| Room)
}

fn stats(node: &ServerHandle) -> BridgeStats {
    node.remote().bridge_stats().unwrap()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn client(addr: SocketAddr) -> Client {
    let client = Client::connect(addr);
    client
        .stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client
}

fn text(client: &mut Client) -> String {
    let frame = client.recv();
    assert_eq!(frame.opcode, OpCode::Text, "{frame:?}");
    String::from_utf8(frame.payload).unwrap()
}

fn command(client: &mut Client, line: &str) {
    client.send(true, OpCode::Text, line.as_bytes());
}

fn subscribe(client: &mut Client, topic: &str) {
    command(client, &format!("sub:{topic}"));
    assert_eq!(text(client), format!("ok:{topic}"));
}

/// 300 subscribers over three nodes, three publishers on different nodes: every subscriber
/// gets every message once, each publisher's in order; then one node's subscribers leave and
/// its upstream subscription goes.
fn fan_out_across_nodes(kind: Kind) {
    const SUBSCRIBERS: usize = 300;
    const MESSAGES: usize = 200;
    let broker = Broker::start(kind);
    let nodes: Vec<ServerHandle> = (0..3).map(|_| node(&broker, 65_536)).collect();
    let mut subscribers: Vec<(usize, Client)> = (0..SUBSCRIBERS)
        .map(|i| {
            let n = i % nodes.len();
            let mut c = client(nodes[n].local_addr());
            subscribe(&mut c, "room.all");
            (n, c)
        })
        .collect();
    // One upstream subscription per node, whatever its number of subscribers and workers.
    broker.wait_subscriptions("lanes.room%2Eall", 3);
    for node in &nodes {
        assert_eq!(stats(node).upstream_subscriptions, 1);
    }
    let mut publishers: Vec<Client> = nodes.iter().map(|n| client(n.local_addr())).collect();
    for seq in 0..MESSAGES {
        for (p, publisher) in publishers.iter_mut().enumerate() {
            command(publisher, &format!("pub:room.all:{p}:{seq}"));
        }
    }
    for (n, subscriber) in &mut subscribers {
        let mut next = [0usize; 3];
        for _ in 0..MESSAGES * 3 {
            let line = text(subscriber);
            let (p, seq) = line.split_once(':').unwrap();
            let (p, seq): (usize, usize) = (p.parse().unwrap(), seq.parse().unwrap());
            assert_eq!(
                seq, next[p],
                "{kind:?}: a subscriber on node {n} got publisher {p}'s #{seq}, expected #{}",
                next[p]
            );
            next[p] += 1;
        }
        assert_eq!(next, [MESSAGES; 3]);
        // Nothing more: no message twice.
        subscriber
            .stream
            .set_read_timeout(Some(Duration::from_millis(1)))
            .unwrap();
        assert!(
            subscriber.try_recv().is_none(),
            "{kind:?}: a message came twice"
        );
    }
    for node in &nodes {
        let s = stats(node);
        assert_eq!(s.sent, MESSAGES as u64, "{kind:?}: {s:?}");
        assert_eq!(s.received, 2 * MESSAGES as u64, "{kind:?}: {s:?}");
        assert_eq!(s.dropped_queue_full + s.dropped_send_failed, 0);
        assert_eq!(s.malformed, 0);
        // Redis sends a node its own messages back, and the node skips them; NATS is asked not to.
        let echoes = if kind == Kind::Redis {
            MESSAGES as u64
        } else {
            0
        };
        assert_eq!(s.own_echoes, echoes, "{kind:?}: {s:?}");
        assert_eq!(s.latency_us.count(), 2 * MESSAGES as u64);
    }
    // Interest: node 0's subscribers leave (some unsubscribe, the others close); its upstream
    // subscription goes, the other nodes' stay.
    let (leaving, _staying): (Vec<_>, Vec<_>) = subscribers.into_iter().partition(|(n, _)| *n == 0);
    for (i, (_, mut c)) in leaving.into_iter().enumerate() {
        if i % 2 == 0 {
            command(&mut c, "unsub:room.all");
            assert_eq!(text(&mut c), "ok:room.all");
        }
    }
    broker.wait_subscriptions("lanes.room%2Eall", 2);
    wait_for("node 0's upstream subscription to go", || {
        stats(&nodes[0]).upstream_subscriptions == 0
    });
    assert_eq!(stats(&nodes[1]).upstream_subscriptions, 1);
}

#[test]
fn nats_fan_out_across_nodes() {
    fan_out_across_nodes(Kind::Nats);
}

#[test]
fn redis_fan_out_across_nodes() {
    fan_out_across_nodes(Kind::Redis);
}

/// The broker killed for 2 s during a run and started again.
fn broker_restart(kind: Kind) {
    const QUEUE: usize = 100;
    let mut broker = Broker::start(kind);
    let nodes: Vec<ServerHandle> = (0..2).map(|_| node(&broker, QUEUE)).collect();
    wait_for("both bridges to connect", || {
        nodes.iter().all(|n| stats(n).connected)
    });
    let mut subscriber = client(nodes[1].local_addr());
    subscribe(&mut subscriber, "ticks");
    let mut other = client(nodes[1].local_addr());
    subscribe(&mut other, "quiet");
    broker.wait_subscriptions("lanes.ticks", 1);
    broker.wait_subscriptions("lanes.quiet", 1);
    let mut publisher = client(nodes[0].local_addr());
    let mut seq = 0usize;
    let publish = |publisher: &mut Client, seq: &mut usize, count: usize, pause: Duration| {
        for _ in 0..count {
            command(publisher, &format!("pub:ticks:{seq}"));
            *seq += 1;
            std::thread::sleep(pause);
        }
    };
    publish(&mut publisher, &mut seq, 50, Duration::from_millis(2));
    // The first 50 arrive before the broker goes (one still inside the broker when it is
    // killed would be lost, and that is the broker's loss, not the bridge's).
    let mut got: Vec<usize> = (0..50)
        .map(|_| text(&mut subscriber).parse().unwrap())
        .collect();
    assert!(got.iter().copied().eq(0..50), "{kind:?}: {got:?}");
    broker.kill();
    let killed = Instant::now();
    wait_for("the bridges to notice the loss", || {
        nodes.iter().all(|n| !stats(n).connected)
    });
    // Publish through the outage: the queue (100) fills, the rest is dropped and counted.
    while killed.elapsed() < Duration::from_secs(2) {
        publish(&mut publisher, &mut seq, 10, Duration::from_millis(2));
    }
    let during = seq - 50;
    let s = stats(&nodes[0]);
    assert!(s.losses >= 1, "{kind:?}: {s:?}");
    assert!(
        s.dropped_queue_full > 0 && s.dropped_queue_full <= during as u64,
        "{kind:?}: {during} published during the outage: {s:?}"
    );
    assert!(s.queue_depth <= QUEUE as u64, "{kind:?}: {s:?}");
    broker.restart();
    wait_for("the bridges to reconnect", || {
        nodes.iter().all(|n| {
            let s = stats(n);
            s.connected && s.reconnects >= 1
        })
    });
    // The subscriptions are back on the broker, and only once.
    broker.wait_subscriptions("lanes.ticks", 1);
    broker.wait_subscriptions("lanes.quiet", 1);
    let before = seq;
    publish(&mut publisher, &mut seq, 50, Duration::from_millis(1));
    // Then what waited in the queue, and the last 50, in order.
    while got.last() != Some(&(seq - 1)) {
        let line = text(&mut subscriber);
        got.push(line.parse::<usize>().unwrap());
    }
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "{kind:?}: out of order: {got:?}"
    );
    assert!(
        got.ends_with(&(before..seq).collect::<Vec<_>>()),
        "{kind:?}"
    );
    // Some were dropped (counted above); no more arrived than were published.
    assert!(got.len() < seq, "{kind:?}: {} of {seq} arrived", got.len());
}

#[test]
fn nats_broker_restart() {
    broker_restart(Kind::Nats);
}

#[test]
fn redis_broker_restart() {
    broker_restart(Kind::Redis);
}

/// A broker that stops answering (SIGSTOP) stalls no worker: the node serves its own
/// subscribers while its publishes wait for the broker (a worker waiting for the broker would
/// leave the local reads below to time out, as the broker is only let go after them); once the
/// broker answers again, what waited reaches the other node, in order.
fn paused_broker(kind: Kind) {
    let broker = Broker::start(kind);
    let nodes: Vec<ServerHandle> = (0..2).map(|_| node(&broker, 65_536)).collect();
    let mut local = client(nodes[0].local_addr());
    subscribe(&mut local, "t");
    let mut remote = client(nodes[1].local_addr());
    subscribe(&mut remote, "t");
    broker.wait_subscriptions("lanes.t", 2);
    let mut publisher = client(nodes[0].local_addr());
    broker.signal("STOP");
    for i in 0..100 {
        command(&mut publisher, &format!("pub:t:{i}"));
    }
    for i in 0..100 {
        assert_eq!(text(&mut local), i.to_string(), "{kind:?}");
    }
    // The node still answers everything else too.
    subscribe(&mut publisher, "other");
    std::thread::sleep(Duration::from_millis(300));
    broker.signal("CONT");
    for i in 0..100 {
        assert_eq!(text(&mut remote), i.to_string(), "{kind:?}");
    }
    let s = stats(&nodes[0]);
    assert_eq!(
        s.dropped_queue_full + s.dropped_send_failed,
        0,
        "{kind:?}: {s:?}"
    );
}

#[test]
fn nats_paused_broker_stalls_no_worker() {
    paused_broker(Kind::Nats);
}

#[test]
fn redis_paused_broker_stalls_no_worker() {
    paused_broker(Kind::Redis);
}
