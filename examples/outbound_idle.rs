//! Memory per idle outbound connection, beside the same figure for inbound ones: opens N
//! outbound connections from one worker of this process to a lanes server in another process
//! (examples/echo), half of them, then the rest, waiting each time until all are open and idle,
//! and prints the growth of this process's resident memory per connection (overall, and over the
//! second half: the marginal cost) and, with `--server-pid`, the same for the server (the
//! inbound side of the same connections).
//!
//! ```text
//! outbound_idle ws://127.0.0.1:9001/ 1000 --server-pid PID
//! ```
//!
//! `scripts/idle_memory_outbound.sh` starts the echo server and runs this, pinned to separate
//! cores, with the limit of open files raised. Loopback only; bounded in time (60 s to open
//! them all).

#![allow(clippy::print_stdout, clippy::print_stderr)] // a measuring program reports to its terminal

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lanes::{
    Connect, ConnectFailure, Cores, Handler, HttpResponse, Message, Request, Server, Upgrade,
    WorkerContext, Ws,
};

/// Counts outbound connections opened and failed; refuses inbound ones.
struct Counter {
    opened: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
}

impl Handler for Counter {
    type State = ();
    fn on_upgrade(&mut self, _: &Request<'_>) -> Upgrade<()> {
        Upgrade::Refuse(HttpResponse::new(404, ""))
    }
    fn on_open(&mut self, _: &mut Ws<'_>, _: &mut ()) {
        self.opened.fetch_add(1, Ordering::Relaxed);
    }
    fn on_message(&mut self, _: &mut Ws<'_>, _: &mut (), _: Message<'_>) {}
    fn on_connect_failed(&mut self, _: &mut WorkerContext<'_, ()>, _: (), f: &ConnectFailure) {
        eprintln!("outbound_idle: {f}");
        self.failed.fetch_add(1, Ordering::Relaxed);
    }
}

/// The resident memory of process `pid` (`self` for this one), in bytes.
fn rss(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Connections asked for and not yet open, at most (the worker's command queue is bounded).
const IN_FLIGHT: usize = 20;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(url), Some(n)) = (
        args.first(),
        args.get(1).and_then(|n| n.parse::<usize>().ok()),
    ) else {
        eprintln!("usage: outbound_idle WS_URL N [--server-pid PID]");
        return ExitCode::from(2);
    };
    let server_pid = args
        .iter()
        .position(|a| a == "--server-pid")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let opened = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let (o, f) = (Arc::clone(&opened), Arc::clone(&failed));
    let any_port = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let server = Server::new(any_port, move |_| Counter {
        opened: Arc::clone(&o),
        failed: Arc::clone(&f),
    })
    .cores(Cores::Count(1))
    .pin(false)
    .start();
    let server = match server {
        Ok(server) => server,
        Err(error) => {
            eprintln!("outbound_idle: {error}");
            return ExitCode::FAILURE;
        }
    };
    let remote = server.remote();
    std::thread::sleep(Duration::from_millis(300));
    // Opens connections until `target` are open, at most IN_FLIGHT asked at a time; false on a
    // failure or after 60 s.
    let mut asked = 0;
    let mut open_until = |target: usize| -> bool {
        let until = Instant::now() + Duration::from_secs(60);
        while opened.load(Ordering::Relaxed) < target {
            if failed.load(Ordering::Relaxed) > 0 || Instant::now() > until {
                return false;
            }
            while asked < target && asked - opened.load(Ordering::Relaxed) < IN_FLIGHT {
                let Ok(connect) = Connect::new(url, ()) else {
                    return false;
                };
                if remote.connect(0, connect).is_err() {
                    break;
                }
                asked += 1;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_secs(1));
        true
    };
    let sample = || (rss("self"), server_pid.as_deref().and_then(rss));
    let start = sample();
    // Half first, then the rest: the second half's growth is the marginal cost of a
    // connection, without what the first connections cost once (the buffers of the connects
    // in flight, the allocator's first growth).
    let half = n / 2;
    if !open_until(half) {
        eprintln!(
            "outbound_idle: only {} of {half} opened",
            opened.load(Ordering::Relaxed)
        );
        return ExitCode::FAILURE;
    }
    let middle = sample();
    if !open_until(n) {
        eprintln!(
            "outbound_idle: only {} of {n} opened",
            opened.load(Ordering::Relaxed)
        );
        return ExitCode::FAILURE;
    }
    let end = sample();
    println!("connections: {n} (in two halves)");
    let per = |a: u64, b: u64, count: usize| (b as f64 - a as f64) / count as f64;
    if let (Some(s), Some(m), Some(e)) = (start.0, middle.0, end.0) {
        println!(
            "outbound (this process, 1 worker): RSS {} -> {} -> {} KiB: {:.0} bytes per idle \
             connection overall, {:.0} over the second half",
            s / 1024,
            m / 1024,
            e / 1024,
            per(s, e, n),
            per(m, e, n - half)
        );
    }
    if let (Some(s), Some(m), Some(e)) = (start.1, middle.1, end.1) {
        println!(
            "inbound (the server): RSS {} -> {} -> {} KiB: {:.0} bytes per idle connection \
             overall, {:.0} over the second half",
            s / 1024,
            m / 1024,
            e / 1024,
            per(s, e, n),
            per(m, e, n - half)
        );
    }
    let _ = server.shutdown();
    ExitCode::SUCCESS
}
