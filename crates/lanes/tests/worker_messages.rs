//! Application values sent to a chosen worker (`Remote::send_to_worker`), handled on its thread
//! by `Handler::on_worker_message`; `worker_for` names the worker that owns a key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use lanes::{
    Accept, Config, Handler, Message, Request, SendError, Upgrade, WorkerContext, WorkerInfo,
    WorkerMessage, Ws,
};
use lanes_proto::OpCode;
use support::{Client, start_server};

/// A value sent by the tests: which sender, its sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Numbered {
    sender: usize,
    seq: u64,
}

/// What a worker reports for every message it handled: its index, its thread, the message.
type Report = (usize, thread::ThreadId, Numbered);

enum Control {
    /// Block the worker until the sender of the reply is dropped (to fill its queue).
    Hold(mpsc::Receiver<()>),
    /// Send this text to every open connection of the worker.
    Tell(String),
}

struct Recorder {
    index: usize,
    reports: mpsc::Sender<Report>,
}

impl Handler for Recorder {
    type State = ();
    fn on_upgrade(&mut self, _: &Request<'_>) -> Upgrade<()> {
        Upgrade::Accept(Accept::new(()))
    }
    fn on_message(&mut self, ws: &mut Ws<'_>, _: &mut (), message: Message<'_>) {
        // "who": this worker's index. "to N": ask worker N (maybe this one) to tell its
        // connections, from a callback.
        if let Message::Text("who") = message {
            ws.send_text(&self.index.to_string());
        } else if let Message::Text(text) = message
            && let Some(n) = text.strip_prefix("to ")
        {
            let worker: usize = n.parse().unwrap();
            let sent = ws
                .remote()
                .send_to_worker(worker, Control::Tell(format!("from {}", self.index)));
            ws.send_text(&format!("{sent:?}"));
        }
    }
    fn on_worker_message(&mut self, ctx: &mut WorkerContext<'_, ()>, message: WorkerMessage) {
        assert_eq!(ctx.worker_index(), self.index);
        let message = match message.downcast::<Numbered>() {
            Ok(numbered) => {
                let _ = self
                    .reports
                    .send((self.index, thread::current().id(), numbered));
                return;
            }
            Err(other) => other,
        };
        match message.downcast::<Control>() {
            Ok(Control::Hold(release)) => {
                let _ = release.recv();
            }
            Ok(Control::Tell(text)) => ctx.for_each(|ws, _| {
                ws.send_text(&text);
            }),
            Err(_) => panic!("a message of a type nobody sends"),
        }
    }
}

fn start(workers: usize, config: Config) -> (lanes::ServerHandle, mpsc::Receiver<Report>) {
    let (reports, received) = mpsc::channel();
    let server = start_server(workers, config, move |info: WorkerInfo| Recorder {
        index: info.index,
        reports: reports.clone(),
    });
    (server, received)
}

#[test]
fn messages_from_three_threads_arrive_on_the_chosen_worker_in_each_senders_order() {
    let (server, reports) = start(2, Config::default());
    let remote = server.remote();
    const PER_SENDER: u64 = 20_000;
    let senders: Vec<_> = (0..3)
        .map(|sender| {
            let remote = remote.clone();
            thread::spawn(move || {
                for seq in 0..PER_SENDER {
                    // Retried on a full queue: every message must arrive for the order check.
                    while let Err(error) = remote.send_to_worker(1, Numbered { sender, seq }) {
                        assert_eq!(error, SendError::QueueFull);
                        thread::yield_now();
                    }
                }
            })
        })
        .collect();
    for sender in senders {
        sender.join().unwrap();
    }
    let mut next = [0u64; 3];
    let mut thread_of_worker = None;
    for _ in 0..3 * PER_SENDER {
        let (worker, thread, numbered) = reports.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(worker, 1, "handled by worker {worker}");
        assert_eq!(
            *thread_of_worker.get_or_insert(thread),
            thread,
            "one thread"
        );
        assert_eq!(
            numbered.seq, next[numbered.sender],
            "sender {}",
            numbered.sender
        );
        next[numbered.sender] += 1;
    }
    assert_eq!(next, [PER_SENDER; 3]);
    assert!(
        reports.recv_timeout(Duration::from_millis(100)).is_err(),
        "nothing twice"
    );
    server.shutdown().unwrap();
}

#[test]
fn a_full_queue_is_an_error_and_counted_and_a_worker_that_does_not_exist_too() {
    let mut config = Config::default();
    config.limits.remote_queue_len = 8;
    let (server, reports) = start(2, config);
    let remote = server.remote();
    let (release, held) = mpsc::channel();
    remote.send_to_worker(0, Control::Hold(held)).unwrap();
    // The worker is held in the callback: its queue fills at 8.
    let mut accepted = Vec::new();
    let mut full = 0;
    for seq in 0..20 {
        match remote.send_to_worker(0, Numbered { sender: 0, seq }) {
            Ok(()) => accepted.push(seq),
            Err(SendError::QueueFull) => full += 1,
            Err(other) => panic!("{other}"),
        }
    }
    // The hold itself may still be queued, or taken already: 7 or 8 places were left.
    assert!(
        accepted.len() == 7 || accepted.len() == 8,
        "{accepted:?} accepted"
    );
    assert_eq!(accepted.len() + full, 20);
    assert_eq!(server.stats().workers[0].queue_full, full as u64);
    assert_eq!(
        remote.send_to_worker(2, Numbered { sender: 0, seq: 0 }),
        Err(SendError::NoSuchWorker)
    );
    drop(release);
    for &seq in &accepted {
        let (worker, _, numbered) = reports.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!((worker, numbered.seq), (0, seq));
    }
    assert!(
        reports.recv_timeout(Duration::from_millis(100)).is_err(),
        "only those"
    );
    server.shutdown().unwrap();
}

#[test]
fn a_callback_sends_to_a_worker_that_reaches_its_own_connections() {
    let (server, _reports) = start(2, Config::default());
    let addr = server.local_addr();
    // Connections until each worker has one (the kernel spreads them); "who" names the worker.
    let mut on_worker: [Option<Client>; 2] = [None, None];
    for _ in 0..64 {
        let mut client = Client::connect(addr);
        client.send(true, OpCode::Text, b"who");
        let worker: usize = String::from_utf8(client.recv().payload)
            .unwrap()
            .parse()
            .unwrap();
        on_worker[worker].get_or_insert(client);
        if on_worker.iter().all(Option::is_some) {
            break;
        }
    }
    let [Some(mut a), Some(mut b)] = on_worker else {
        panic!("the kernel put 64 connections on one worker");
    };
    // The client on worker 0 asks worker 1 to tell its connections, and the other way round.
    a.send(true, OpCode::Text, b"to 1");
    assert_eq!(a.recv().payload, b"Ok(())");
    assert_eq!(b.recv().payload, b"from 0");
    b.send(true, OpCode::Text, b"to 0");
    assert_eq!(b.recv().payload, b"Ok(())");
    assert_eq!(a.recv().payload, b"from 1");
    // To itself: handled in its next iteration.
    a.send(true, OpCode::Text, b"to 0");
    assert_eq!(a.recv().payload, b"Ok(())");
    assert_eq!(a.recv().payload, b"from 0");
    // To a worker that does not exist.
    a.send(true, OpCode::Text, b"to 2");
    assert_eq!(a.recv().payload, b"Err(NoSuchWorker)");
    server.shutdown().unwrap();
}

#[test]
fn worker_for_is_the_documented_mapping() {
    let (server, _reports) = start(2, Config::default());
    let remote = server.remote();
    for room in 0..100 {
        let key = format!("room-{room}");
        assert_eq!(
            remote.worker_for(&key),
            lanes::worker_for(key.as_bytes(), 2)
        );
    }
    server.shutdown().unwrap();
}
