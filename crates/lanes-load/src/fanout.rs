//! The fanout mode: N subscriber connections receive timestamped messages; lanes-load measures
//! each delivery's latency and checks that nothing was lost or reordered.
//!
//! Where the messages come from (`--source`):
//! - `client` (the default): one more connection, the publisher, sends messages at a fixed
//!   rate, and the server under test relays each to every other connection (a chat-room
//!   broadcast). Send times are the publisher's schedule, so a late publisher shows as latency.
//! - `server`: the server produces the messages itself (`examples/ticker` publishes to a topic
//!   every subscriber joins on connect); lanes-load only subscribes. The server stamps each
//!   message when it publishes it.
//!
//! A message's payload starts with 16 bytes: the sequence number and the send time in
//! nanoseconds since the UNIX epoch (`SystemTime`), both little-endian; any bytes after them are
//! padding and ignored. Wall-clock time, so that another process can stamp messages:
//! lanes-load itself reads its monotonic clock and converts it as `start_unix_ns + elapsed`
//! ([`Clock`]), so its own figures stay monotonic within a run; across processes on one
//! machine both sides read the same system clock (a clock step during a run would skew the
//! figures).
//!
//! Bookkeeping: with the client source every subscriber is connected before the first message
//! (sequence number 0), so a delivery's gap is measured from 0. With the server source
//! subscribers join a stream already running, each at its own moment: the first delivery a
//! subscriber sees sets its sequence base, and gaps after it count as missed. A delivery is in
//! the measured window when its send time is ([`Window`]); `published` is, with the client
//! source, the messages the publisher sent in the window and, with the server source, the
//! distinct sequence numbers any subscriber received with a send time in the window (a message
//! that reached no subscriber is not seen). A server that stamps the moment it publishes, and
//! catches up after waking late, can put a few more or fewer messages in a window than its
//! nominal rate times the duration.
//!
//! Limits: subscribers are spread over `--threads` client threads, each with its own mio loop;
//! each thread connects its subscribers in batches (blocking connects, every upgrade request of
//! a batch sent before the responses are read; with TLS each subscriber's handshake is done
//! before its upgrade request is sent, and the subscribers of one batch do full handshakes, as
//! none has read its session tickets yet when the next starts). The send time is read from the clock once per socket read, so
//! messages that arrive in the same read share a receive time.

use std::collections::HashSet;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Barrier, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use lanes_proto::OpCode;
use lanes_proto::assembler::DEFAULT_MAX_MESSAGE_LEN;
use lanes_proto::deflate::InflateScratch;
use lanes_proto::session::{Connection, Event};
use mio::{Events, Interest, Poll, Token};

use crate::client::{Wire, connect_and_upgrade, push_frame, session_config, start_upgrade};
use crate::cpu::{pin, process_cpu_time};
use crate::echo::new_histogram;
use crate::memory::process_rss_kib;
use crate::metrics::{LoadMetrics, ThreadMetrics};
use crate::rng::Rng;
use crate::tls::Tls;
use crate::transport::{Stream, Transport};

/// Length of the stamp at the start of every payload (sequence number and send time), and of
/// the payloads lanes-load's own publisher sends.
pub const PAYLOAD_LEN: usize = 16;

/// How long subscribers keep reading after the window, for messages still on their way.
const DRAIN: Duration = Duration::from_millis(200);

/// With the client source, the pause between the last connection and the first message, so a
/// relay that registers a connection only after its handshake response has seen them all.
const SETTLE: Duration = Duration::from_millis(100);

/// Subscribers whose upgrade requests are sent before the first response is read: a server
/// already busy publishing answers them in one loop iteration instead of one each. Under the
/// usual listen backlog (1024 for lanes).
const CONNECT_BATCH: u32 = 128;

/// Bytes read from a socket at once (one buffer per client thread).
const READ_CHUNK: usize = 64 * 1024;

/// Encodes a stamp: `seq` and the send time `sent_unix_ns` (nanoseconds since the UNIX epoch).
pub fn encode(seq: u64, sent_unix_ns: u64) -> [u8; PAYLOAD_LEN] {
    let mut out = [0u8; PAYLOAD_LEN];
    out[..8].copy_from_slice(&seq.to_le_bytes());
    out[8..].copy_from_slice(&sent_unix_ns.to_le_bytes());
    out
}

/// Decodes the stamp at the start of `payload`: (sequence number, send time in nanoseconds
/// since the UNIX epoch). `None` when the payload is shorter than a stamp; bytes after it are
/// padding.
pub fn decode(payload: &[u8]) -> Option<(u64, u64)> {
    let seq = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
    let sent = u64::from_le_bytes(payload.get(8..PAYLOAD_LEN)?.try_into().ok()?);
    Some((seq, sent))
}

/// Nanoseconds since the UNIX epoch now, from the system clock.
pub fn unix_now_ns() -> Result<u64, String> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .map_err(|_| "the system clock is before 1970".to_string())
}

/// Wall-clock time from the monotonic clock: the system time read once at the start, plus the
/// monotonic time elapsed since. Comparable with another process's `SystemTime` stamps, and
/// never going backwards within a run.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
    start_unix_ns: u64,
}

impl Clock {
    /// A clock that starts now.
    pub fn new() -> Result<Clock, String> {
        Ok(Clock::starting_at(Instant::now(), unix_now_ns()?))
    }

    /// A clock whose `start` is `start_unix_ns` nanoseconds after the UNIX epoch.
    pub fn starting_at(start: Instant, start_unix_ns: u64) -> Clock {
        Clock {
            start,
            start_unix_ns,
        }
    }

    /// Nanoseconds since the UNIX epoch at `at` (at the start for instants before it).
    pub fn unix_ns(&self, at: Instant) -> u64 {
        self.start_unix_ns
            .saturating_add(at.saturating_duration_since(self.start).as_nanos() as u64)
    }
}

/// The measured window, as send times in nanoseconds since the UNIX epoch: `start_ns`
/// included, `end_ns` excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The first send time in the window.
    pub start_ns: u64,
    /// The first send time after the window.
    pub end_ns: u64,
}

impl Window {
    /// Whether a message sent at `sent_ns` belongs to the window.
    pub fn contains(&self, sent_ns: u64) -> bool {
        (self.start_ns..self.end_ns).contains(&sent_ns)
    }
}

/// One delivery, decoded and timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Its sequence number.
    pub seq: u64,
    /// When it was sent, in nanoseconds since the UNIX epoch.
    pub sent_ns: u64,
    /// From its send time to its receipt, in nanoseconds (0 if the clocks disagree).
    pub latency_ns: u64,
}

/// One subscriber's bookkeeping: what arrived, what was skipped, what came out of order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The next sequence number expected; `None` until the first delivery sets the base.
    pub next_seq: Option<u64>,
    /// Deliveries received.
    pub received: u64,
    /// Sequence numbers skipped after the base (dropped by the server, or never sent to this
    /// subscriber).
    pub missed: u64,
    /// Deliveries with a sequence number below one already seen (reordered or duplicated).
    pub out_of_order: u64,
    /// Payloads that were not a stamped message.
    pub malformed: u64,
}

impl Subscription {
    /// A subscriber that is there from the first message on (client source): it expects
    /// sequence number 0 first.
    pub fn from_start() -> Subscription {
        Subscription {
            next_seq: Some(0),
            ..Subscription::joining()
        }
    }

    /// A subscriber joining a running stream (server source): its first delivery sets the base.
    pub fn joining() -> Subscription {
        Subscription {
            next_seq: None,
            received: 0,
            missed: 0,
            out_of_order: 0,
            malformed: 0,
        }
    }

    /// Takes one delivery received at `now_ns` (nanoseconds since the UNIX epoch); returns it
    /// decoded and timed when it is a stamped message.
    pub fn on_delivery(&mut self, payload: &[u8], now_ns: u64) -> Option<Delivery> {
        let Some((seq, sent_ns)) = decode(payload) else {
            self.malformed += 1;
            return None;
        };
        self.received += 1;
        let next = *self.next_seq.get_or_insert(seq);
        if seq < next {
            self.out_of_order += 1;
        } else {
            self.missed += seq - next;
            self.next_seq = Some(seq + 1);
        }
        Some(Delivery {
            seq,
            sent_ns,
            latency_ns: now_ns.saturating_sub(sent_ns),
        })
    }
}

/// The distinct sequence numbers seen (the server source's `published`). Deliveries of one
/// message to many subscribers come in runs, so a repeat of the last number costs no lookup.
#[derive(Debug, Clone, Default)]
pub struct SeenSeqs {
    seqs: HashSet<u64>,
    last: Option<u64>,
}

impl SeenSeqs {
    /// Notes `seq`.
    pub fn insert(&mut self, seq: u64) {
        if self.last != Some(seq) {
            self.seqs.insert(seq);
            self.last = Some(seq);
        }
    }

    /// How many distinct numbers were noted.
    pub fn len(&self) -> u64 {
        self.seqs.len() as u64
    }

    /// Whether none was.
    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }

    /// Adds another set's numbers.
    pub fn merge(&mut self, other: &SeenSeqs) {
        self.seqs.extend(&other.seqs);
        self.last = None;
    }
}

/// What a fanout run measured.
#[derive(Debug)]
pub struct FanoutResult {
    /// Messages published in the measured window: sent by lanes-load's publisher (client
    /// source), or the distinct sequence numbers received with a send time in the window
    /// (server source).
    pub published: u64,
    /// Deliveries in the measured window (by send time).
    pub deliveries: u64,
    /// Delivery latencies in the window, nanoseconds.
    pub latency_ns: Histogram<u64>,
    /// Sequence numbers skipped, over all subscribers (whole run, gaps only: messages still
    /// on their way at the end are not counted).
    pub missed: u64,
    /// Out-of-order deliveries (whole run).
    pub out_of_order: u64,
    /// Malformed deliveries and protocol errors (whole run).
    pub malformed: u64,
    /// Subscribers that lost their connection (or were sent a close).
    pub disconnected: u64,
    /// Subscribers that received nothing during the whole run.
    pub silent: u64,
    /// The sequence numbers seen in the window (server source).
    pub seen: SeenSeqs,
    /// How long connecting and upgrading every subscriber took.
    pub connect_time: Duration,
    /// CPU time of this process over the measured window.
    pub client_cpu: Duration,
    /// CPU time of the server over the measured window, when its PID was given.
    pub server_cpu: Option<Duration>,
    /// The server's resident memory (VmRSS) at the end of the window, in KiB, when its PID
    /// was given.
    pub server_rss_kib: Option<u64>,
}

impl FanoutResult {
    /// An empty result to count into.
    pub fn empty() -> FanoutResult {
        FanoutResult {
            published: 0,
            deliveries: 0,
            latency_ns: new_histogram(),
            missed: 0,
            out_of_order: 0,
            malformed: 0,
            disconnected: 0,
            silent: 0,
            seen: SeenSeqs::default(),
            connect_time: Duration::ZERO,
            client_cpu: Duration::ZERO,
            server_cpu: None,
            server_rss_kib: None,
        }
    }

    /// Counts `delivery` if its send time is in `window`: its latency, and (`note_seq`, the
    /// server source) its sequence number as published.
    pub fn count(&mut self, delivery: &Delivery, window: &Window, note_seq: bool) {
        if !window.contains(delivery.sent_ns) {
            return;
        }
        self.deliveries += 1;
        let _ = self.latency_ns.record(delivery.latency_ns.max(1));
        if note_seq {
            self.seen.insert(delivery.seq);
        }
    }

    /// Adds a subscriber's whole-run bookkeeping.
    pub fn add_subscription(&mut self, sub: &Subscription) {
        self.missed += sub.missed;
        self.out_of_order += sub.out_of_order;
        self.malformed += sub.malformed;
        self.silent += u64::from(sub.received == 0);
    }

    /// Adds another thread's counts (not its times).
    pub fn merge(&mut self, other: &FanoutResult) {
        self.published += other.published;
        self.deliveries += other.deliveries;
        let _ = self.latency_ns.add(&other.latency_ns);
        self.missed += other.missed;
        self.out_of_order += other.out_of_order;
        self.malformed += other.malformed;
        self.disconnected += other.disconnected;
        self.silent += other.silent;
        self.seen.merge(&other.seen);
    }
}

/// A fanout run.
#[derive(Debug, Clone)]
pub struct FanoutPlan {
    /// Server address.
    pub addr: SocketAddr,
    /// TLS (`wss://`), if any; each client thread's connections share one session cache.
    pub tls: Option<Tls>,
    /// Subscriber connections.
    pub subscribers: u32,
    /// `Some(rate)`: lanes-load publishes `rate` messages per second on its own connection
    /// (client source). `None`: the server produces the messages (server source).
    pub publish_rate: Option<u32>,
    /// Client threads the subscribers are spread over (at most one per subscriber).
    pub threads: u32,
    /// Cores to pin the client threads to, in order (none: no pinning).
    pub cores: Vec<usize>,
    /// Warm-up, not measured.
    pub warmup: Duration,
    /// Measured window.
    pub duration: Duration,
    /// The server's PID, to read its CPU time over the window.
    pub server_pid: Option<u32>,
    /// More servers the subscribers are spread over, round robin with `addr` (nodes sharing
    /// the topic through a broker); the publisher stays on `addr`.
    pub spread: Vec<SocketAddr>,
}

impl FanoutPlan {
    /// A plan over plain TCP with one unpinned thread and no server PID.
    pub fn new(
        addr: SocketAddr,
        subscribers: u32,
        publish_rate: Option<u32>,
        warmup: Duration,
        duration: Duration,
    ) -> FanoutPlan {
        FanoutPlan {
            addr,
            tls: None,
            subscribers,
            publish_rate,
            threads: 1,
            cores: Vec::new(),
            warmup,
            duration,
            server_pid: None,
            spread: Vec::new(),
        }
    }

    /// The server for subscriber `k` of client thread `thread` (of `threads`).
    fn subscriber_addr(&self, thread: u32, k: usize) -> SocketAddr {
        if self.spread.is_empty() {
            return self.addr;
        }
        let n = self.spread.len() + 1;
        let index = (k * self.threads.max(1) as usize + thread as usize) % n;
        if index == 0 {
            self.addr
        } else {
            self.spread[index - 1]
        }
    }
}

/// What the client threads share.
struct Meeting {
    /// Every thread and the coordinator meet here once the subscribers are connected.
    barrier: Barrier,
    /// Set by a thread that could not connect, before the barrier.
    failed: AtomicBool,
    /// The run's start (the publisher's first send), fixed by the first to pass the barrier.
    began: OnceLock<Instant>,
    /// How long after the barrier the run starts.
    settle: Duration,
}

impl Meeting {
    fn began(&self) -> Instant {
        *self.began.get_or_init(|| Instant::now() + self.settle)
    }
}

/// Runs a fanout load: connects the subscribers (and, with the client source, the publisher),
/// then measures for the plan's warm-up and duration. `progress` counts deliveries as they
/// arrive (for a live display).
pub fn run_fanout(plan: &FanoutPlan, progress: &AtomicU64) -> Result<FanoutResult, String> {
    let threads = plan.threads.clamp(1, plan.subscribers.max(1));
    run_fanout_metered(plan, progress, &LoadMetrics::new(threads as usize))
}

/// [`run_fanout`], counting into `metrics` as the run goes (thread `i` of the run into
/// `metrics.thread(i)`; it needs a slot for each of the plan's threads, at most one per
/// subscriber): the publisher's messages and bytes, the subscribers' deliveries, bytes and
/// delivery latencies, protocol errors and lost subscribers, the connections open.
pub fn run_fanout_metered(
    plan: &FanoutPlan,
    progress: &AtomicU64,
    metrics: &LoadMetrics,
) -> Result<FanoutResult, String> {
    let clock = Clock::new()?;
    let threads = plan.threads.clamp(1, plan.subscribers.max(1));
    if metrics.threads() < threads as usize {
        return Err(format!(
            "metrics for {} thread(s), the run has {threads}",
            metrics.threads()
        ));
    }
    let meeting = Meeting {
        barrier: Barrier::new(threads as usize + 1),
        failed: AtomicBool::new(false),
        began: OnceLock::new(),
        settle: if plan.publish_rate.is_some() {
            SETTLE
        } else {
            Duration::ZERO
        },
    };
    let connecting = Instant::now();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                // Spread the subscribers as evenly as possible; thread 0 publishes.
                let share =
                    plan.subscribers / threads + u32::from(thread < plan.subscribers % threads);
                let (meeting, clock) = (&meeting, &clock);
                let metrics = metrics.thread(thread as usize);
                scope.spawn(move || {
                    pin(&plan.cores, thread as usize);
                    let outcome =
                        run_thread(plan, thread, share, meeting, clock, progress, metrics);
                    // Whatever happened, this thread's connections are closed now.
                    metrics.set_connections_open(0);
                    outcome
                })
            })
            .collect();
        meeting.barrier.wait();
        let connect_time = connecting.elapsed();
        let cpu = if meeting.failed.load(Ordering::Acquire) {
            Ok((None, Duration::ZERO, None))
        } else {
            let start = meeting.began() + plan.warmup;
            sample_cpu(plan.server_pid, start, start + plan.duration)
        };
        let mut total = FanoutResult::empty();
        let mut first_error = None;
        for handle in handles {
            match handle.join() {
                Ok(Ok(result)) => total.merge(&result),
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    first_error.get_or_insert_with(|| "a client thread panicked".into());
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        let (server_cpu, client_cpu, server_rss_kib) = cpu?;
        if plan.publish_rate.is_none() {
            total.published = total.seen.len();
        }
        total.connect_time = connect_time;
        total.client_cpu = client_cpu;
        total.server_cpu = server_cpu;
        total.server_rss_kib = server_rss_kib;
        Ok(total)
    })
}

/// CPU time of the server (if given) and of this process between `from` and `until`, and the
/// server's resident memory in KiB at `until` (the subscribers stay connected a little longer).
fn sample_cpu(
    server: Option<u32>,
    from: Instant,
    until: Instant,
) -> Result<(Option<Duration>, Duration, Option<u64>), String> {
    let me = std::process::id();
    std::thread::sleep(from.saturating_duration_since(Instant::now()));
    let server_before = server.map(process_cpu_time).transpose()?;
    let me_before = process_cpu_time(me)?;
    std::thread::sleep(until.saturating_duration_since(Instant::now()));
    let server_after = server.map(process_cpu_time).transpose()?;
    let me_after = process_cpu_time(me)?;
    let server_rss_kib = server.map(process_rss_kib).transpose()?;
    let server_cpu = server_after
        .zip(server_before)
        .map(|(a, b)| a.saturating_sub(b));
    Ok((
        server_cpu,
        me_after.saturating_sub(me_before),
        server_rss_kib,
    ))
}

struct Sub {
    stream: Transport,
    /// The client session: frames in (whatever spans reads is kept there), pongs.
    session: Connection,
    /// Frames that came with the handshake response, read before the first readiness event.
    early: Vec<u8>,
    state: Subscription,
    alive: bool,
}

/// What the subscribers of one thread count into.
struct Tally<'a> {
    clock: &'a Clock,
    metrics: &'a ThreadMetrics,
    window: Window,
    /// Whether sequence numbers are noted as published (server source).
    note_seqs: bool,
    result: FanoutResult,
    rng: Rng,
}

/// One thread's subscribers and, for thread 0 with the client source, the publisher.
struct Connected {
    poll: Poll,
    subs: Vec<Sub>,
    publisher: Option<Stream>,
}

fn connect_share(
    plan: &FanoutPlan,
    thread: u32,
    share: u32,
    rng: &mut Rng,
    metrics: &ThreadMetrics,
) -> Result<Connected, String> {
    let poll = Poll::new().map_err(|e| e.to_string())?;
    let tls = plan.tls.as_ref().map(Tls::for_thread);
    let mut subs = Vec::with_capacity(share as usize);
    let mut pending = Vec::with_capacity(CONNECT_BATCH as usize);
    for batch_start in (0..share).step_by(CONNECT_BATCH as usize) {
        pending.clear();
        for k in batch_start..share.min(batch_start + CONNECT_BATCH) {
            let addr = plan.subscriber_addr(thread, k as usize);
            pending.push(start_upgrade(addr, tls.as_ref(), rng)?);
        }
        for upgrade in pending.drain(..) {
            let (blocking, mut early) = upgrade.finish()?;
            let (mut stream, buffered) = blocking.into_transport().map_err(|e| e.to_string())?;
            early.extend_from_slice(&buffered);
            poll.registry()
                .register(stream.source(), Token(subs.len()), Interest::READABLE)
                .map_err(|e| e.to_string())?;
            subs.push(Sub {
                stream,
                session: Connection::new(session_config(DEFAULT_MAX_MESSAGE_LEN), 0),
                early,
                state: if plan.publish_rate.is_some() {
                    Subscription::from_start()
                } else {
                    Subscription::joining()
                },
                alive: true,
            });
            metrics.connections_opened(1);
        }
    }
    let publisher = match plan.publish_rate {
        Some(_) if thread == 0 => Some(connect_and_upgrade(plan.addr, tls.as_ref(), rng)?),
        _ => None,
    };
    metrics.connections_opened(u64::from(publisher.is_some()));
    Ok(Connected {
        poll,
        subs,
        publisher,
    })
}

fn run_thread(
    plan: &FanoutPlan,
    thread: u32,
    share: u32,
    meeting: &Meeting,
    clock: &Clock,
    progress: &AtomicU64,
    metrics: &ThreadMetrics,
) -> Result<FanoutResult, String> {
    let mut rng = Rng::new(99 + u64::from(thread));
    let connected = connect_share(plan, thread, share, &mut rng, metrics);
    if connected.is_err() {
        meeting.failed.store(true, Ordering::Release);
    }
    // Every thread waits here, failed or not, so none is left waiting.
    meeting.barrier.wait();
    let Connected {
        mut poll,
        mut subs,
        mut publisher,
    } = connected?;
    if meeting.failed.load(Ordering::Acquire) {
        // Another thread's error is the one reported.
        return Ok(FanoutResult::empty());
    }
    let began = meeting.began();
    let window_start = began + plan.warmup;
    let window_end = window_start + plan.duration;
    let drain_until = window_end + DRAIN;
    let mut tally = Tally {
        clock,
        metrics,
        window: Window {
            start_ns: clock.unix_ns(window_start),
            end_ns: clock.unix_ns(window_end),
        },
        note_seqs: plan.publish_rate.is_none(),
        result: FanoutResult::empty(),
        rng,
    };
    // Frames that came with a handshake response.
    let mut inflate = InflateScratch::new(0);
    for sub in &mut subs {
        if !sub.early.is_empty() {
            let now_ns = clock.unix_ns(Instant::now());
            let mut early = std::mem::take(&mut sub.early);
            let open = sub.take_frames(&mut early, now_ns, &mut inflate, &mut tally);
            if !open {
                sub.alive = false;
                tally.result.disconnected += 1;
                metrics.add_errors(1);
                metrics.connections_closed(1);
            }
        }
    }
    let interval = Duration::from_secs_f64(1.0 / f64::from(plan.publish_rate.unwrap_or(1).max(1)));
    let mut next_send = began;
    let mut seq = 0u64;
    let mut out = Vec::with_capacity(1024);
    let mut scratch = vec![0u8; READ_CHUNK];
    let mut events = Events::with_capacity(1024);
    let mut reported = 0u64;
    loop {
        let now = Instant::now();
        if now >= drain_until {
            break;
        }
        // Publish what is due (never before its time, so the rate holds).
        if let Some(publisher) = publisher.as_mut() {
            out.clear();
            let mut batch = 0u64;
            while next_send <= now && next_send < window_end {
                let payload = encode(seq, clock.unix_ns(next_send));
                push_frame(
                    &mut out,
                    OpCode::Binary,
                    PAYLOAD_LEN,
                    tally.rng.key(),
                    |o| o.extend_from_slice(&payload),
                );
                if next_send >= window_start {
                    tally.result.published += 1;
                }
                seq += 1;
                batch += 1;
                next_send += interval;
            }
            if !out.is_empty() {
                if let Err(e) = publisher.write_all(&out) {
                    metrics.add_errors(1);
                    return Err(format!("publisher write failed: {e}"));
                }
                metrics.add_bytes_sent(out.len() as u64);
                metrics.add_messages_sent(batch);
            }
        }
        let mut wait = drain_until
            .saturating_duration_since(now)
            .min(Duration::from_millis(5));
        if publisher.is_some() && next_send < window_end {
            wait = wait.min(next_send.saturating_duration_since(now));
        }
        if let Err(e) = poll.poll(&mut events, Some(wait))
            && e.kind() != io::ErrorKind::Interrupted
        {
            return Err(format!("poll failed: {e}"));
        }
        for event in events.iter() {
            let Some(sub) = subs.get_mut(event.token().0) else {
                continue;
            };
            if sub.alive && !sub.on_readable(&mut scratch, &mut inflate, &mut tally) {
                sub.alive = false;
                tally.result.disconnected += 1;
                metrics.add_errors(1);
                metrics.connections_closed(1);
            }
        }
        let delta = tally.result.deliveries - reported;
        if delta > 0 {
            progress.fetch_add(delta, Ordering::Relaxed);
            reported = tally.result.deliveries;
        }
    }
    let mut result = tally.result;
    for sub in &subs {
        result.add_subscription(&sub.state);
    }
    Ok(result)
}

impl Sub {
    /// Reads until the socket would block, counting every message. False when the connection
    /// ended (end of stream, error, close frame, protocol error).
    fn on_readable(
        &mut self,
        scratch: &mut [u8],
        inflate: &mut InflateScratch,
        tally: &mut Tally<'_>,
    ) -> bool {
        loop {
            let n = match self.stream.read(scratch) {
                Ok(0) => return false,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            };
            tally.metrics.add_bytes_received(n as u64);
            let now_ns = tally.clock.unix_ns(Instant::now());
            // Whole frames are parsed where they were read; the session keeps what spans reads.
            if !self.take_frames(&mut scratch[..n], now_ns, inflate, tally) {
                return false;
            }
            // A short read emptied the socket: the next bytes bring a new readiness event.
            // (Not with TLS, whose reads end at records: there only WouldBlock says so.)
            if n < scratch.len() && self.stream.short_read_drains() {
                return true;
            }
        }
    }

    /// Counts the messages in `data`, received at `now_ns`; the session answers pings. Returns
    /// whether the connection is still open.
    fn take_frames(
        &mut self,
        data: &mut [u8],
        now_ns: u64,
        inflate: &mut InflateScratch,
        tally: &mut Tally<'_>,
    ) -> bool {
        let mut pongs = Vec::new();
        let mut wire = Wire::new(&mut pongs, &mut tally.rng);
        let mut at = 0;
        let mut open = true;
        while at < data.len() {
            let step =
                match self
                    .session
                    .handle_bytes(&mut data[at..], inflate, now_ns / 1000, &mut wire)
                {
                    Ok(step) => step,
                    Err(_) => {
                        self.state.malformed += 1;
                        tally.metrics.add_errors(1);
                        open = false;
                        break;
                    }
                };
            at += step.used;
            let payload = match step.event {
                Some(Event::Binary(bytes)) => bytes,
                Some(Event::Text(text)) => text.as_bytes(),
                Some(Event::Close(_)) => {
                    open = false;
                    break;
                }
                Some(Event::Ping(_) | Event::Pong(_)) | None => continue,
            };
            tally.metrics.add_messages_received(1);
            match self.state.on_delivery(payload, now_ns) {
                Some(delivery) => {
                    tally.metrics.record_latency_us(delivery.latency_ns / 1000);
                    tally
                        .result
                        .count(&delivery, &tally.window, tally.note_seqs);
                }
                None => tally.metrics.add_errors(1),
            }
        }
        self.session.receiver.release();
        // Pongs, or the echo of a close: small frames on a socket we only read from, so the
        // buffer has room.
        if !pongs.is_empty()
            && let Ok(n) = self.stream.write(&pongs)
        {
            tally.metrics.add_bytes_sent(n as u64);
        }
        // What TLS could not send at once goes with the next read's answers (or not at all: a
        // subscriber's socket is read, not written, and never fills).
        let _ = self.stream.send_pending();
        open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(sub: &mut Subscription, seq: u64, sent: u64, now: u64) -> Option<u64> {
        sub.on_delivery(&encode(seq, sent), now)
            .map(|d| d.latency_ns)
    }

    #[test]
    fn bookkeeping_counts_gaps_reorders_and_latency() {
        let mut sub = Subscription::from_start();
        assert_eq!(delivery(&mut sub, 0, 100, 150), Some(50));
        assert_eq!(delivery(&mut sub, 1, 200, 260), Some(60));
        // 2 and 3 never arrive.
        assert_eq!(delivery(&mut sub, 4, 400, 401), Some(1));
        // A late 3 is out of order.
        assert_eq!(delivery(&mut sub, 3, 300, 500), Some(200));
        assert_eq!(sub.on_delivery(b"short", 500), None);
        assert_eq!(
            sub,
            Subscription {
                next_seq: Some(5),
                received: 4,
                missed: 2,
                out_of_order: 1,
                malformed: 1,
            }
        );
    }

    #[test]
    fn from_the_start_a_missing_first_message_is_missed() {
        let mut sub = Subscription::from_start();
        assert!(delivery(&mut sub, 3, 0, 0).is_some());
        assert_eq!((sub.missed, sub.next_seq), (3, Some(4)));
    }

    #[test]
    fn a_joining_subscriber_takes_its_base_from_the_first_delivery() {
        let mut sub = Subscription::joining();
        assert_eq!(sub.next_seq, None);
        // Joins a stream at 1000: nothing before it is missed.
        assert_eq!(delivery(&mut sub, 1000, 10, 15), Some(5));
        assert_eq!(delivery(&mut sub, 1001, 20, 25), Some(5));
        assert_eq!((sub.missed, sub.out_of_order), (0, 0));
        // Gaps after the base count.
        assert!(delivery(&mut sub, 1005, 30, 35).is_some());
        assert_eq!(sub.missed, 3);
        // Below the base is out of order, not a new base.
        assert!(delivery(&mut sub, 999, 40, 45).is_some());
        assert_eq!(
            sub,
            Subscription {
                next_seq: Some(1006),
                received: 4,
                missed: 3,
                out_of_order: 1,
                malformed: 0,
            }
        );
    }

    #[test]
    fn padding_after_the_stamp_is_ignored_and_the_clock_may_disagree() {
        let mut payload = encode(7, 1_000).to_vec();
        payload.extend_from_slice(&[0xaa; 100]);
        assert_eq!(decode(&payload), Some((7, 1_000)));
        assert_eq!(decode(&payload[..15]), None);
        let mut sub = Subscription::joining();
        // Received "before" it was sent (another process's clock): latency 0, still counted.
        let d = sub.on_delivery(&payload, 900).unwrap();
        assert_eq!((d.seq, d.sent_ns, d.latency_ns), (7, 1_000, 0));
        assert_eq!(sub.received, 1);
    }

    #[test]
    fn the_window_counts_by_send_time_and_notes_distinct_seqs() {
        let window = Window {
            start_ns: 1_000,
            end_ns: 2_000,
        };
        let mut result = FanoutResult::empty();
        let at = |seq, sent_ns, latency_ns| Delivery {
            seq,
            sent_ns,
            latency_ns,
        };
        // Before the window (received inside it), at its start, inside, at its end.
        result.count(&at(1, 999, 5_000), &window, true);
        result.count(&at(2, 1_000, 10), &window, true);
        result.count(&at(3, 1_999, 20), &window, true);
        result.count(&at(4, 2_000, 30), &window, true);
        // Seq 3 again (another subscriber), then 2 again after it.
        result.count(&at(3, 1_999, 40), &window, true);
        result.count(&at(2, 1_000, 50), &window, true);
        assert_eq!(result.deliveries, 4);
        assert_eq!(result.latency_ns.len(), 4);
        assert_eq!(result.latency_ns.max(), 50);
        assert_eq!(result.seen.len(), 2);
        // Another thread saw 3 and 5.
        let mut other = FanoutResult::empty();
        other.count(&at(3, 1_999, 1), &window, true);
        other.count(&at(5, 1_500, 1), &window, true);
        result.merge(&other);
        assert_eq!((result.deliveries, result.seen.len()), (6, 3));
        // The client source does not note them.
        let mut client = FanoutResult::empty();
        client.count(&at(9, 1_500, 1), &window, false);
        assert_eq!((client.deliveries, client.seen.len()), (1, 0));
    }

    #[test]
    fn whole_run_bookkeeping_adds_up_and_silent_subscribers_are_counted() {
        let mut result = FanoutResult::empty();
        let mut a = Subscription::joining();
        a.on_delivery(&encode(10, 0), 0);
        a.on_delivery(&encode(12, 0), 0);
        result.add_subscription(&a);
        result.add_subscription(&Subscription::joining());
        assert_eq!((result.missed, result.silent), (1, 1));
    }

    #[test]
    fn the_clock_converts_monotonic_time_to_unix_time() {
        let start = Instant::now();
        let clock = Clock::starting_at(start, 1_700_000_000_000_000_000);
        assert_eq!(clock.unix_ns(start), 1_700_000_000_000_000_000);
        assert_eq!(
            clock.unix_ns(start + Duration::from_micros(1500)),
            1_700_000_000_001_500_000
        );
        let real = Clock::new().unwrap();
        let then = unix_now_ns().unwrap();
        let ours = real.unix_ns(Instant::now());
        // The same system clock, read twice within a moment.
        assert!(ours.abs_diff(then) < 50_000_000, "{ours} vs {then}");
    }
}
