//! examples/relay's handler under upstream restarts: the upstream feed (a lanes server that
//! publishes a numbered message every few milliseconds) is stopped and started again three
//! times on the same port; the relay's subscriber keeps receiving after each restart, and each
//! wait the relay took before reconnecting is within its back-off policy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

#[path = "../../../examples/relay/handler.rs"]
#[allow(dead_code, unreachable_pub)]
mod handler;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use handler::{Peer, Relay, UpstreamEvent};
use lanes::{
    Accept, Config, Connect, Cores, Handler, Message, Reconnect, Request, Server, ServerHandle,
    Upgrade, Ws,
};
use support::{Client, start_server};

/// The upstream feed: every connection is subscribed to `feed`.
struct Feed;

impl Handler for Feed {
    type State = ();
    fn on_upgrade(&mut self, _: &Request<'_>) -> Upgrade<()> {
        Upgrade::Accept(Accept::new(()))
    }
    fn on_open(&mut self, ws: &mut Ws<'_>, _: &mut ()) {
        ws.subscribe("feed");
    }
    fn on_message(&mut self, _: &mut Ws<'_>, _: &mut (), _: Message<'_>) {}
}

/// A feed on `addr` publishing "RUN-N" every 5 ms until stopped.
struct Upstream {
    server: ServerHandle,
    stop: Arc<AtomicBool>,
    publisher: std::thread::JoinHandle<()>,
}

impl Upstream {
    fn start(addr: SocketAddr, run: u32) -> Upstream {
        let server = Server::new(addr, |_| Feed)
            .cores(Cores::Count(1))
            .pin(false)
            .start()
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let remote = server.remote();
        let stopping = Arc::clone(&stop);
        let publisher = std::thread::spawn(move || {
            let mut n = 0u64;
            while !stopping.load(Ordering::Relaxed) {
                let _ = remote.publish_text("feed", &format!("{run}-{n}"));
                n += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Upstream {
            server,
            stop,
            publisher,
        }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.publisher.join().unwrap();
        self.server.shutdown().unwrap();
    }
}

/// Reads text messages until one from run `run` arrives (within 10 s).
fn wait_for_run(client: &mut Client, run: u32) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < until, "nothing from upstream run {run}");
        let frame = client.recv();
        let text = String::from_utf8(frame.payload.clone()).unwrap();
        if text.starts_with(&format!("{run}-")) {
            return;
        }
    }
}

fn within(policy: &Reconnect, n: u32, wait: Duration) -> bool {
    let full = policy.backoff(n);
    wait <= full && wait >= full.mul_f64(1.0 - policy.jitter) - Duration::from_micros(1)
}

#[test]
fn subscribers_keep_receiving_across_three_upstream_restarts() {
    let mut upstream = Upstream::start("127.0.0.1:0".parse().unwrap(), 0);
    let addr = upstream.server.local_addr();
    let (events_tx, events) = mpsc::channel();
    let relay = start_server(2, Config::default(), move |_| {
        Relay::new("ticks".into(), Some(events_tx.clone()))
    });
    let policy = Reconnect {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(400),
        multiplier: 2.0,
        jitter: 0.5,
        max_retries: None,
    };
    let connect = Connect::new(&format!("ws://{addr}/"), Peer::Upstream)
        .unwrap()
        .reconnect(policy);
    relay.remote().connect(0, connect).unwrap();
    let next = || events.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(next(), UpstreamEvent::Connected);
    let mut subscriber = Client::connect(relay.local_addr());
    wait_for_run(&mut subscriber, 0);
    for run in 1..=3 {
        upstream.stop();
        match next() {
            UpstreamEvent::Lost(Some(wait)) => assert!(within(&policy, 0, wait), "{wait:?}"),
            other => panic!("{other:?}"),
        }
        // Down for 300 ms: the attempts meanwhile fail, each after its back-off.
        std::thread::sleep(Duration::from_millis(300));
        upstream = Upstream::start(addr, run);
        loop {
            match next() {
                UpstreamEvent::Connected => break,
                UpstreamEvent::Failed {
                    retry,
                    wait: Some(wait),
                } => assert!(within(&policy, retry, wait), "retry {retry}: {wait:?}"),
                other => panic!("{other:?}"),
            }
        }
        wait_for_run(&mut subscriber, run);
    }
    upstream.stop();
    let stats = relay.remote().stats().total();
    assert_eq!(stats.outbound_opened, 4);
    assert!(stats.outbound_failed >= 3, "{}", stats.outbound_failed);
}
