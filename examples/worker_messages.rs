//! Worker-to-worker messages (`Remote::send_to_worker`, `Handler::on_worker_message`) on this
//! machine: how many per second one worker can send another, and the latency one message adds
//! when the receiving worker is idle. Two workers, pinned to the first two cores (`--no-pin` to
//! let them float); no connection is involved. Bounded in time; loopback only (the server
//! listens on a free port of 127.0.0.1 and nobody connects).
//!
//! ```text
//! cargo run --release -p lanes --example worker_messages -- [--seconds 3] [--samples 20000]
//! ```
//!
//! Throughput: worker 0 sends batches of 256 to worker 1 and, after each batch, a message to
//! itself to send the next one (so its loop keeps turning); a full queue ends the batch early.
//! Worker 1 counts. Latency: worker 0 sends one timestamped message; worker 1 notes how long it
//! took to arrive and asks for the next; one message in flight at a time.

#![allow(clippy::print_stdout)] // a benchmark program reports to its terminal

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Parser;
use lanes::{
    Cores, Handler, HttpResponse, Message, Request, SendError, Server, Upgrade, WorkerContext,
    WorkerInfo, WorkerMessage, Ws,
};

#[derive(Parser)]
#[command(about = "Worker-to-worker messages: per second, and the latency of one")]
struct Args {
    /// Seconds of the throughput run (after 1 s of warm-up).
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Latency samples (one message in flight at a time).
    #[arg(long, default_value_t = 20_000)]
    samples: usize,
    /// Do not pin the two workers to cores 0 and 1.
    #[arg(long)]
    no_pin: bool,
}

/// Messages of this benchmark.
enum Bench {
    /// To worker 0: send a batch to worker 1 (then this again, to itself).
    Pump,
    /// To worker 1: one message of the stream, counted.
    Item,
    /// To worker 1: a latency probe sent at that instant.
    Probe(Instant),
    /// To worker 0: send the next probe.
    NextProbe,
}

const BATCH: usize = 256;

/// What the two workers and the main thread share (read outside the measured paths).
struct Shared {
    pumping: AtomicBool,
    received: AtomicU64,
    full: AtomicU64,
    samples: usize,
}

struct Bencher {
    index: usize,
    shared: Arc<Shared>,
    latencies_ns: Vec<u64>,
    results: mpsc::Sender<Vec<u64>>,
}

impl Handler for Bencher {
    type State = ();
    fn on_upgrade(&mut self, _: &Request<'_>) -> Upgrade<()> {
        Upgrade::Refuse(HttpResponse::new(404, "no WebSocket here"))
    }
    fn on_message(&mut self, _: &mut Ws<'_>, _: &mut (), _: Message<'_>) {}

    fn on_worker_message(&mut self, ctx: &mut WorkerContext<'_, ()>, message: WorkerMessage) {
        let Ok(message) = message.downcast::<Bench>() else {
            return;
        };
        let remote = ctx.remote();
        match (self.index, message) {
            (0, Bench::Pump) => {
                if !self.shared.pumping.load(Ordering::Relaxed) {
                    return;
                }
                for _ in 0..BATCH {
                    if let Err(SendError::QueueFull) = remote.send_to_worker(1, Bench::Item) {
                        self.shared.full.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
                let _ = remote.send_to_worker(0, Bench::Pump);
            }
            (1, Bench::Item) => {
                self.shared.received.fetch_add(1, Ordering::Relaxed);
            }
            (0, Bench::NextProbe) => {
                let _ = remote.send_to_worker(1, Bench::Probe(Instant::now()));
            }
            (1, Bench::Probe(sent)) => {
                self.latencies_ns.push(sent.elapsed().as_nanos() as u64);
                if self.latencies_ns.len() < self.shared.samples {
                    let _ = remote.send_to_worker(0, Bench::NextProbe);
                } else {
                    let _ = self.results.send(std::mem::take(&mut self.latencies_ns));
                }
            }
            _ => {}
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let shared = Arc::new(Shared {
        pumping: AtomicBool::new(false),
        received: AtomicU64::new(0),
        full: AtomicU64::new(0),
        samples: args.samples.max(1),
    });
    let (results, latencies) = mpsc::channel();
    let factory = {
        let shared = Arc::clone(&shared);
        move |info: WorkerInfo| Bencher {
            index: info.index,
            shared: Arc::clone(&shared),
            latencies_ns: Vec::with_capacity(shared.samples),
            results: results.clone(),
        }
    };
    let server = Server::new("127.0.0.1:0".parse()?, factory)
        .cores(Cores::Count(2))
        .pin(!args.no_pin)
        .start()?;
    let remote = server.remote();

    // Throughput.
    shared.pumping.store(true, Ordering::Relaxed);
    remote.send_to_worker(0, Bench::Pump)?;
    std::thread::sleep(Duration::from_secs(1));
    let (start, before) = (Instant::now(), shared.received.load(Ordering::Relaxed));
    std::thread::sleep(Duration::from_secs_f64(args.seconds));
    let (elapsed, after) = (start.elapsed(), shared.received.load(Ordering::Relaxed));
    shared.pumping.store(false, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(200)); // the queue drains
    let per_s = (after - before) as f64 / elapsed.as_secs_f64();

    // Latency, one message in flight.
    remote.send_to_worker(0, Bench::NextProbe)?;
    let mut ns: Vec<u64> = latencies.recv_timeout(Duration::from_secs(60))?;
    ns.sort_unstable();
    let at = |q: f64| ns[((ns.len() - 1) as f64 * q) as usize] as f64 / 1000.0;

    println!(
        "workers: 2, {}",
        if args.no_pin {
            "not pinned"
        } else {
            "pinned to cores 0 and 1"
        }
    );
    println!(
        "throughput: {per_s:.0} messages/s from worker 0 to worker 1 over {:.1} s \
         ({} batches ended early on a full queue: the receiver is the limit)",
        elapsed.as_secs_f64(),
        shared.full.load(Ordering::Relaxed)
    );
    println!(
        "latency of one message, {} samples: p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        ns.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
    server.shutdown()?;
    Ok(())
}
