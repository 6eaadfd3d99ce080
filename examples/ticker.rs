//! A market-data style fan-out: every WebSocket connection is subscribed to the topic `ticks`
//! when it opens, and a producer thread publishes `--rate` timestamped binary updates per
//! second to it, through the server's [`Remote`], for as long as the server runs. Messages
//! from clients are ignored; plain HTTP requests get 426 Upgrade Required.
//!
//! ```text
//! cargo run --release --example ticker -- [--addr 127.0.0.1:9001] [--cores N | --core-list 0,1] [--no-pin] [--rate 1000] [--size 16]
//! cargo run --release -p lanes-load -- --addr 127.0.0.1:9001 fanout --source server -n 1000
//! ```
//!
//! `scripts/fanout.sh` runs both, pinned, at 1,000 and 10,000 subscribers and prints a table.
//!
//! Across nodes (`--broker`, features `lanes/nats` or `lanes/redis`): one node produces, the
//! others run with `--rate 0` and pass on what reaches them through the broker
//! (`scripts/bridge_latency.sh`).
//!
//! An update is `--size` bytes (at least 16): the sequence number (u64, little-endian, from 0),
//! the time it was published in nanoseconds since the UNIX epoch (u64, little-endian, from
//! `SystemTime`, so another process on the machine can compute the delivery latency), then
//! zero padding. This is the stamp lanes-load's fanout mode decodes.
//!
//! Pacing: update n is due at start + n / rate, computed from n, so the schedule does not
//! drift. A producer that wakes late publishes the updates due since, back to back, but at
//! most [`MAX_CATCH_UP`] of them; older due times are skipped (and counted), never bunched.
//! Sequence numbers count updates actually published, so a skipped due time is not a gap a
//! subscriber would see. Every 10 s the producer prints the server's counters on stderr.
//!
//! The producer thread runs beside the workers, unpinned (under `taskset` it shares the
//! workers' cores). It sleeps between updates; there is no clean exit on Ctrl-C (the process
//! simply ends).

#![allow(clippy::print_stderr)] // an example program reports to its terminal

use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use lanes::{Accept, Config, Handler, Message, Remote, Request, SendError, Upgrade, Ws};

mod cli;
use cli::ServerArgs;

/// The topic every connection is subscribed to.
const TOPIC: &str = "ticks";
/// The stamp at the start of every update: sequence number and publish time.
const STAMP_LEN: usize = 16;
/// Most late updates published back to back when the producer wakes late.
const MAX_CATCH_UP: u64 = 8;
/// How often the producer prints the server's counters.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Subscribes every connection to [`TOPIC`]; ignores what clients send.
struct Ticker;

impl Handler for Ticker {
    type State = ();

    fn on_upgrade(&mut self, _request: &Request<'_>) -> Upgrade<()> {
        Upgrade::Accept(Accept::new(()))
    }

    fn on_open(&mut self, ws: &mut Ws<'_>, _conn: &mut ()) {
        ws.subscribe(TOPIC);
    }

    fn on_message(&mut self, _ws: &mut Ws<'_>, _conn: &mut (), _message: Message<'_>) {}
}

/// A deadline schedule: slot n is due at `start + n / rate` seconds, computed from n (no
/// accumulated rounding, so no drift). Time is an argument, so it is tested without sleeping.
#[derive(Debug)]
struct Schedule {
    start: Instant,
    rate: u128,
    /// The next slot to publish.
    next: u64,
}

impl Schedule {
    fn new(start: Instant, rate: u32) -> Schedule {
        Schedule {
            start,
            rate: u128::from(rate.max(1)),
            next: 0,
        }
    }

    /// When `slot` is due.
    fn due(&self, slot: u64) -> Instant {
        let ns = u128::from(slot) * 1_000_000_000 / self.rate;
        self.start + Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    /// At `now`: `Ok(skipped)` when the next slot is due (publish one update now; `skipped`
    /// older due slots were given up because more than [`MAX_CATCH_UP`] were late), or
    /// `Err(wait)` until it is.
    fn poll(&mut self, now: Instant) -> Result<u64, Duration> {
        let due = self.due(self.next);
        if due > now {
            return Err(due - now);
        }
        // The last slot due by now: n * 1e9 / rate < elapsed + 1 ns.
        let elapsed = now.saturating_duration_since(self.start).as_nanos();
        let last_due = ((elapsed + 1) * self.rate - 1) / 1_000_000_000;
        let last_due = u64::try_from(last_due).unwrap_or(u64::MAX).max(self.next);
        let late = last_due - self.next + 1;
        let skipped = late.saturating_sub(MAX_CATCH_UP);
        self.next += skipped + 1;
        Ok(skipped)
    }
}

/// Nanoseconds since the UNIX epoch now (0 if the clock is before 1970).
fn unix_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Writes the stamp into the first [`STAMP_LEN`] bytes of `update`.
fn stamp(update: &mut [u8], seq: u64, unix_ns: u64) {
    update[..8].copy_from_slice(&seq.to_le_bytes());
    update[8..STAMP_LEN].copy_from_slice(&unix_ns.to_le_bytes());
}

/// Publishes `rate` updates of `size` bytes per second to [`TOPIC`] until the server shuts
/// down.
fn produce(remote: &Remote, rate: u32, size: usize) {
    let mut update = vec![0u8; size.max(STAMP_LEN)];
    let start = Instant::now();
    let mut schedule = Schedule::new(start, rate);
    let (mut seq, mut skipped, mut not_queued) = (0u64, 0u64, 0u64);
    let mut report_at = start + REPORT_EVERY;
    loop {
        let now = Instant::now();
        if now >= report_at {
            let total = remote.stats().total();
            eprintln!(
                "ticker: {seq} updates published, {skipped} due times skipped (late), \
                 {not_queued} publishes not queued everywhere; {} subscribers, {} deliveries \
                 queued, {} dropped, {} slow subscribers closed",
                total.subscriptions, total.delivered, total.messages_dropped, total.closed_slow
            );
            report_at += REPORT_EVERY;
        }
        match schedule.poll(now) {
            Err(wait) => {
                std::thread::sleep(wait.min(report_at.saturating_duration_since(now)));
                continue;
            }
            Ok(late) => skipped += late,
        }
        stamp(&mut update, seq, unix_now_ns());
        match remote.publish_binary(TOPIC, &update) {
            Ok(()) => {}
            Err(SendError::ShutDown) => return,
            // A worker's queue was full: its subscribers miss this update (they see a gap).
            Err(_) => not_queued += 1,
        }
        seq += 1;
    }
}

/// The ticker's options.
#[derive(Debug, Parser)]
#[command(
    about = "WebSocket fan-out: every connection subscribes to \"ticks\"; a producer publishes \
             timestamped updates to it at a fixed rate"
)]
struct Args {
    #[command(flatten)]
    server: ServerArgs,
    /// Updates published per second; 0: no producer (a node that only passes on what other
    /// nodes publish, with --broker).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    rate: u32,
    /// Bytes per update: the 16-byte stamp, then zero padding.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(16..=(16 << 20)))]
    size: u32,
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::init_logging();
    let handle = match args
        .server
        .server(|_worker| Ticker, Config::default())
        .start()
    {
        Ok(handle) => handle,
        Err(error) => {
            eprintln!("ticker: {error}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "ticker: listening on {}, {} worker(s); publishing {} updates/s of {} bytes to \"{TOPIC}\"",
        handle.local_addr(),
        handle.worker_count(),
        args.rate,
        args.size
    );
    if args.rate == 0 {
        return match handle.wait() {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("ticker: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let remote = handle.remote();
    let (rate, size) = (args.rate, args.size as usize);
    let producer = std::thread::Builder::new()
        .name("ticker-producer".into())
        .spawn(move || produce(&remote, rate, size));
    let producer = match producer {
        Ok(producer) => producer,
        Err(error) => {
            eprintln!("ticker: cannot start the producer: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Serves until SIGINT or SIGTERM (a graceful shutdown: close 1001 to every subscriber).
    let stopped = handle.wait();
    // The producer returns once the server is shutting down.
    let _ = producer.join();
    match stopped {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ticker: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_time_updates_follow_the_schedule_without_drift() {
        let start = Instant::now();
        // 3 per second: 333,333,333.3 ns apart, which no Duration step holds exactly.
        let mut schedule = Schedule::new(start, 3);
        assert_eq!(schedule.poll(start), Ok(0));
        assert_eq!(schedule.poll(start), Err(Duration::from_nanos(333_333_333)));
        for _ in 1..3000 {
            let due = schedule.due(schedule.next);
            assert_eq!(schedule.poll(due), Ok(0));
        }
        // Slot 3000 is due at exactly 1000 s.
        assert_eq!(schedule.due(3000), start + Duration::from_secs(1000));
        assert_eq!(
            schedule.poll(start + Duration::from_secs(999)),
            Err(Duration::from_secs(1))
        );
    }

    #[test]
    fn a_late_producer_catches_up_a_little_and_skips_the_rest() {
        let start = Instant::now();
        let mut schedule = Schedule::new(start, 1000);
        // Wakes 100.5 ms late: slots 0..=100 are due.
        let now = start + Duration::from_micros(100_500);
        assert_eq!(schedule.poll(now), Ok(101 - MAX_CATCH_UP));
        for _ in 1..MAX_CATCH_UP {
            assert_eq!(schedule.poll(now), Ok(0));
        }
        assert_eq!(schedule.next, 101);
        assert_eq!(schedule.poll(now), Err(Duration::from_micros(500)));
        // A little late: everything due is published, nothing skipped.
        let now = start + Duration::from_micros(103_000);
        assert_eq!(schedule.poll(now), Ok(0));
        assert_eq!(schedule.poll(now), Ok(0));
        assert_eq!(schedule.poll(now), Ok(0));
        assert!(schedule.poll(now).is_err());
    }

    #[test]
    fn the_stamp_is_what_lanes_load_decodes() {
        let mut update = vec![0xffu8; 24];
        stamp(&mut update, 0x0102, 0x0a0b_0c0d);
        assert_eq!(&update[..8], &0x0102u64.to_le_bytes());
        assert_eq!(&update[8..16], &0x0a0b_0c0du64.to_le_bytes());
        assert_eq!(&update[16..], &[0xff; 8]);
        assert!(unix_now_ns() > 1_600_000_000_000_000_000);
    }
}
