//! A worker thread that dies anyway (handler panics are caught per connection, so this is a
//! bug: here, a log subscriber that panics on lanes' own log line) is reported at once, and
//! nothing pretends its connections are open. In its own test binary because it installs a
//! global tracing subscriber.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once, mpsc};
use std::time::Duration;

use lanes::{
    Accept, Config, ConnId, Cores, Error, Handler, Message, Request, SendError, Server, Upgrade, Ws,
};
use lanes_proto::OpCode;
use support::Client;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// While set, a worker thread that logs an event about a panicked callback panics in the
/// subscriber: outside every catch of lanes', so the worker thread dies.
static TRIP: AtomicBool = AtomicBool::new(false);

/// The tests here share [`TRIP`]: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

struct Tripwire;

struct MessageText(String);

impl Visit for MessageText {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl Subscriber for Tripwire {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let on_worker = std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("lanes-worker"));
        if !on_worker || !TRIP.load(Ordering::SeqCst) {
            return;
        }
        let mut text = MessageText(String::new());
        event.record(&mut text);
        if text.0.contains("panicked") {
            TRIP.store(false, Ordering::SeqCst);
            panic!("the log subscriber's own bug");
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn install_tripwire() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| tracing::subscriber::set_global_default(Tripwire).unwrap());
}

/// Says which connection it is on open; panics on "panic"; echoes the rest.
struct Tell;

impl Handler for Tell {
    type State = ();
    fn on_upgrade(&mut self, _: &Request<'_>) -> Upgrade<()> {
        Upgrade::Accept(Accept::new(()))
    }
    fn on_open(&mut self, ws: &mut Ws<'_>, _: &mut ()) {
        let id = ws.id();
        ws.send_text(&format!("{} {} {}", id.worker, id.slot, id.generation));
    }
    fn on_message(&mut self, ws: &mut Ws<'_>, _: &mut (), message: Message<'_>) {
        match message {
            Message::Text("panic") => panic!("the handler's bug"),
            Message::Text(text) => ws.send_text(text),
            Message::Binary(bytes) => ws.send_binary(bytes),
        };
    }
}

fn server(config: Config) -> Server<impl Fn(lanes::WorkerInfo) -> Tell + Send + Clone> {
    Server::new("127.0.0.1:0".parse().unwrap(), |_| Tell)
        .cores(Cores::Count(2))
        .pin(false)
        .stop_on_signals(false)
        .config(config)
}

/// Connects until there is a client on each of the 2 workers; the clients and their ids.
fn one_client_per_worker(addr: std::net::SocketAddr) -> Vec<(Client, ConnId)> {
    let mut found: Vec<Option<(Client, ConnId)>> = vec![None, None];
    for _ in 0..200 {
        let mut client = Client::connect(addr);
        let said = String::from_utf8(client.recv().payload).unwrap();
        let numbers: Vec<u32> = said.split(' ').map(|n| n.parse().unwrap()).collect();
        let id = ConnId {
            worker: numbers[0] as u16,
            slot: numbers[1],
            generation: numbers[2],
        };
        let place = &mut found[usize::from(id.worker)];
        if place.is_none() {
            *place = Some((client, id));
        }
        if found.iter().all(Option::is_some) {
            return found.into_iter().map(Option::unwrap).collect();
        }
    }
    panic!("the kernel put 200 connections on one worker");
}

#[test]
fn the_handle_reports_a_dead_worker_and_stops_pretending_its_connections_are_open() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    install_tripwire();
    let handle = server(Config::default()).start().unwrap();
    let mut clients = one_client_per_worker(handle.local_addr());
    let remote = handle.remote();
    assert_eq!(handle.stats().total().connections, 2);
    assert!(handle.failed_workers().is_empty());

    TRIP.store(true, Ordering::SeqCst);
    let (victim, victim_id) = &mut clients[1];
    victim.send(true, OpCode::Text, b"panic");
    // The worker's sockets closed with it.
    assert!(victim.is_closed_by_server());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while handle.failed_workers().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no failed worker reported"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(handle.failed_workers(), vec![1]);
    assert!(!remote.is_open(*victim_id));
    assert_eq!(
        remote.send_text(*victim_id, "x"),
        Err(SendError::WorkerDied)
    );
    let stats = handle.stats();
    assert_eq!(
        stats.total().connections,
        1,
        "only worker 0's connection is open"
    );

    // Worker 0 goes on serving its connection, and publishes reach it.
    let (survivor, survivor_id) = &mut clients[0];
    assert!(remote.is_open(*survivor_id));
    survivor.send(true, OpCode::Text, b"still here");
    assert_eq!(survivor.recv().payload, b"still here");
    remote.send_text(*survivor_id, "by id").unwrap();
    assert_eq!(survivor.recv().payload, b"by id");

    match handle.shutdown() {
        Err(Error::WorkerPanicked { index: 1 }) => {}
        other => panic!("shutdown returned {other:?}"),
    }
}

#[test]
fn run_returns_at_once_naming_the_dead_worker_after_stopping_the_others() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    install_tripwire();
    let mut config = Config::default();
    config.timeouts.shutdown = Duration::from_secs(5);
    let (addr_tx, addr_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let handle = server(config).start().unwrap();
        addr_tx.send(handle.local_addr()).unwrap();
        done_tx.send(handle.wait()).unwrap();
    });
    let addr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let mut clients = one_client_per_worker(addr);
    TRIP.store(true, Ordering::SeqCst);
    clients[0].0.send(true, OpCode::Text, b"panic");
    // The other worker is shut down gracefully: its client gets 1001.
    let close = clients[1].0.recv();
    assert_eq!(close.close_code(), Some(1001));
    drop(clients);
    match done_rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Err(Error::WorkerPanicked { index: 0 })) => {}
        other => panic!("wait returned {other:?}"),
    }
}

#[test]
fn a_factory_that_panics_fails_start_naming_the_worker() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let started = Server::new("127.0.0.1:0".parse().unwrap(), |info: lanes::WorkerInfo| {
        if info.index == 1 {
            panic!("no handler for worker 1");
        }
        support::TestEcho
    })
    .cores(Cores::Count(2))
    .pin(false)
    .start();
    match started {
        Err(Error::WorkerPanicked { index: 1 }) => {}
        Err(other) => panic!("start returned {other:?}"),
        Ok(_) => panic!("start succeeded with a worker whose factory panicked"),
    }
}
