//! A worker: one thread, pinned to one core, with its own mio loop, listener, connection table,
//! buffer pool and timer wheel. A connection stays on the worker that accepted it, unless the
//! handler places its upgrade on another worker (it moves there before it opens) or a callback
//! moves it once open.
//!
//! One file per job: the loop itself (here), [`accept`] (the listener and its back-off),
//! [`upgrade`] (the answer to a request head), [`deferral`] (upgrades answered later),
//! [`handoff`] (connections placed on another worker, handed over and taken in), [`moving`]
//! (open connections moved to another worker), [`io`] (the only code that touches a
//! connection's socket), [`dispatch`] (received frames to handler callbacks), [`keepalive`]
//! (protocol deadlines and the application's timers), [`commands`] (work from other threads
//! and this worker's own publishes), [`spin`] (busy polling) and [`shutdown`].

mod accept;
mod budget;
mod commands;
mod deferral;
mod dial;
mod dispatch;
mod handoff;
mod io;
mod keepalive;
mod moving;
mod response;
mod shutdown;
mod spin;
mod upgrade;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver as CommandQueue;
use lanes_proto::deflate::InflateScratch;
use lanes_proto::handshake::HeadLimits;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};

use crate::compress::SharedDeflate;
use crate::config::Config;
use crate::conn::Conn;
use crate::handler::Handler;
use crate::hub::{Command, Shared};
use crate::id::ConnId;
use crate::listener::AcceptState;
use crate::live::LiveTable;
use crate::local::{Local, PANIC_LOG_BURST, PANIC_LOG_WINDOW};
use crate::pool::BufferPool;
use crate::remote::Remote;
use crate::stats;
use crate::table::Table;
use crate::throttle::Throttle;
use crate::timer::{TimerEntry, TimerKind, TimerWheel};
use crate::topic::Topics;

pub(crate) const LISTENER: Token = Token(usize::MAX - 1);
pub(crate) const WAKER: Token = Token(usize::MAX - 2);

/// The connection table is never shrunk below this capacity (entries).
const CONNS_KEEP_CAPACITY: usize = 64;

/// Lists the worker keeps from one iteration to the next (due timers, connections to write)
/// are shrunk to this capacity after a spike.
const VEC_KEEP_CAPACITY: usize = 64;

/// How long after the connection table last shrank the worker reclaims memory (see
/// [`Worker::reclaim`]): the rest of a spike's connections have gone by then.
const RECLAIM_DELAY: Duration = Duration::from_secs(1);

/// Slots in the timer wheel (a turn of 2.56 s at the default 5 ms tick; later deadlines go
/// round again).
const WHEEL_SLOTS: usize = 512;

/// The connection table's first capacity: enough entries to fill glibc's mmap threshold
/// ([`MemoryConfig::malloc_mmap_threshold`](crate::config::MemoryConfig::malloc_mmap_threshold)),
/// so that the table is a mapping of its own from the start, grown and shrunk by `mremap`,
/// whose pages are resident only once entries in them are used. Grown from empty, it passed
/// through the worker's malloc arena, and each copy it left there (up to 0.5 MiB) stayed
/// resident unless nothing was allocated above it. At most the worker's connection limit;
/// [`CONNS_KEEP_CAPACITY`] without a threshold.
fn first_table_capacity<T>(config: &Config) -> usize {
    let entries = config
        .memory
        .malloc_mmap_threshold
        .map_or(0, |bytes| bytes.div_ceil(crate::table::entry_size::<T>()));
    entries
        .min(config.limits.max_connections_per_worker)
        .max(CONNS_KEEP_CAPACITY)
}

/// The receive buffer's length: the configured one, and on a TLS port room for a whole
/// handshake message carried over between reads and more.
fn scratch_len(config: &Config, shared: &Shared) -> usize {
    #[cfg(feature = "tls")]
    if shared.tls.is_on() {
        return config.socket.read_buffer_len.max(TLS_SCRATCH_LEN);
    }
    let _ = shared;
    config.socket.read_buffer_len.max(1024)
}

/// A TLS port's minimum receive buffer: a handshake message may be up to 64 KiB, spread over
/// records that are carried between reads.
#[cfg(feature = "tls")]
const TLS_SCRATCH_LEN: usize = 96 * 1024;

/// A TLS worker's buffers (see `tls/mod.rs`).
#[cfg(feature = "tls")]
#[derive(Default)]
struct TlsBuffers {
    /// The configuration new connections get, and its version in [`Shared::tls`].
    config: Option<(u64, Arc<rustls::ServerConfig>)>,
    /// The plaintext rustls hands over from the records of one read (during the handshake,
    /// and on TLS 1.2 connections; lanes' own record layer leaves it in the read buffer).
    plain: Vec<u8>,
    /// One write's encrypted batch (its length is room already initialized).
    sealed: Vec<u8>,
}

/// Everything a worker owns.
pub(crate) struct Worker<H: Handler> {
    poll: Poll,
    listener: Option<TcpListener>,
    handler: H,
    shared: Arc<Shared>,
    /// What callbacks may touch: pool, limits, topics, timers, the other workers.
    local: Local,
    /// Sends, closes and publishes from other threads and workers.
    commands: CommandQueue<Command>,
    conns: Table<Conn<H::State>>,
    /// The connection table's length and capacity after it was last shrunk (see
    /// [`shrink_conns`](Self::shrink_conns)).
    conns_shrunk: (usize, usize),
    /// When the worker reclaims memory (microseconds since the epoch), while a
    /// [`TimerKind::Reclaim`] entry is on the wheel.
    reclaim_at_us: Option<u64>,
    /// Where every connection's bytes are read to (one buffer per worker).
    scratch: Vec<u8>,
    /// On a TLS port: where the plaintext rustls hands over is gathered, and the encrypted batch
    /// of one write is made (one of each per worker; see `tls/mod.rs`).
    #[cfg(feature = "tls")]
    tls: TlsBuffers,
    /// Resolves the host names of outbound connections, on a thread of its own.
    resolver: crate::resolver::Resolver,
    /// Where compressed messages are inflated (and the shared decompressor).
    inflate: InflateScratch,
    epoch: Instant,
    /// When the next tick callback is due (with a tick interval configured).
    tick_deadline: Option<Instant>,
    next_generation: u32,
    head_limits: HeadLimits,
    /// Connections to read from again in the next iteration (read bound hit, or resumed).
    pending_reads: Vec<(usize, u32)>,
    /// Bytes the connections hold for partial input and outgoing backlogs, all together (the
    /// memory budget's running total).
    held: usize,
    /// The timer entries that came due in this iteration.
    due: Vec<TimerEntry>,
    accept: AcceptState,
    /// Busy polling: whether the next poll may block.
    spin: spin::Spin,
    shutdown_deadline: Option<Instant>,
}

impl<H: Handler> Worker<H> {
    pub(crate) fn new(
        index: u16,
        poll: Poll,
        listener: TcpListener,
        handler: H,
        config: Arc<Config>,
        remote: Remote,
        commands: CommandQueue<Command>,
    ) -> Worker<H> {
        let shared = Arc::clone(remote.shared());
        let now = Instant::now();
        let spin = spin::Spin::new(config.socket.busy_poll);
        let session_config = crate::local::session_config(&config);
        let table_capacity = first_table_capacity::<Conn<H::State>>(&config);
        let head_limits = HeadLimits {
            max_head_len: config.limits.max_head_len,
            max_headers: config.limits.max_headers,
        };
        let (live, counters) = match remote.link(usize::from(index)) {
            Some(link) => (Arc::clone(&link.live), Arc::clone(&link.counters)),
            None => (Arc::new(LiveTable::new(0)), Arc::default()),
        };
        let tick_deadline = config.timers.tick_interval.map(|interval| now + interval);
        let mut wheel = TimerWheel::new(now, config.timers.resolution, WHEEL_SLOTS);
        if let Some(at) = tick_deadline {
            wheel.schedule(usize::MAX, 0, TimerKind::Tick, at);
        }
        let deflate = SharedDeflate::new(config.deflate);
        Worker {
            poll,
            listener: Some(listener),
            handler,
            scratch: vec![0; scratch_len(&config, &shared)],
            #[cfg(feature = "tls")]
            tls: TlsBuffers::default(),
            inflate: InflateScratch::new(config.limits.max_message_len),
            resolver: Default::default(),
            local: Local {
                index,
                now_us: 0,
                pool: BufferPool::new(),
                config,
                session: session_config,
                topics: topics_for(&shared),
                wheel,
                remote,
                counters,
                live,
                deflate,
                deferred: Vec::new(),
                deferred_commands: Vec::new(),
                dirty: Vec::new(),
                moves: Vec::new(),
                latest: Default::default(),
                rng: crate::rng::WorkerRng::new(),
                dials: Default::default(),
                opening_subprotocol: None,
                panic_log: Throttle::new(PANIC_LOG_WINDOW, PANIC_LOG_BURST),
            },
            commands,
            shared,
            conns: Table::with_capacity(table_capacity),
            conns_shrunk: (0, 0),
            reclaim_at_us: None,
            epoch: now,
            tick_deadline,
            next_generation: 0,
            head_limits,
            pending_reads: Vec::new(),
            held: 0,
            due: Vec::new(),
            accept: AcceptState::default(),
            spin,
            shutdown_deadline: None,
        }
    }

    /// Microseconds since the epoch at `now` (read once per loop iteration into
    /// `local.now_us`, which the rest of the worker uses).
    fn now_us(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_micros() as u64
    }

    fn conn_id(&self, key: usize) -> ConnId {
        ConnId {
            worker: self.local.index,
            slot: key as u32,
            generation: self.conns.get(key).map_or(0, |c| c.generation),
        }
    }

    /// After a removal: gives back the connection table's memory once it is less than a
    /// quarter full, as after a spike of connections, and has the worker reclaim the rest a
    /// little later. Keys stay, so only the vacant entries past the last connection go; the
    /// attempt (O(capacity)) is repeated only once the table has grown since, or half of what
    /// was left has gone, so it costs O(log n) per connection at most, and nothing per
    /// message.
    fn shrink_conns(&mut self) {
        let (len, capacity) = (self.conns.len(), self.conns.capacity());
        if capacity <= CONNS_KEEP_CAPACITY || len >= capacity / 4 {
            return;
        }
        let (last_len, last_capacity) = self.conns_shrunk;
        if capacity == last_capacity && len > last_len / 2 {
            return;
        }
        self.conns.shrink(CONNS_KEEP_CAPACITY);
        self.conns_shrunk = (len, self.conns.capacity());
        let at_us = self.local.now_us + RECLAIM_DELAY.as_micros() as u64;
        if self.reclaim_at_us.replace(at_us).is_none() {
            self.schedule_reclaim(at_us);
        }
    }

    fn schedule_reclaim(&mut self, at_us: u64) {
        let at = self.epoch + Duration::from_micros(at_us);
        self.local
            .wheel
            .schedule(usize::MAX, 0, TimerKind::Reclaim, at);
    }

    /// [`RECLAIM_DELAY`] after the connection table last shrank (so at most once per delay):
    /// drops every stale timer entry and shrinks the wheel's storage, the table and the lists
    /// to what is left. O(timer entries + wheel slots + table capacity).
    fn reclaim(&mut self) {
        match self.reclaim_at_us {
            Some(at_us) if at_us > self.local.now_us => {
                // The table shrank again since this was scheduled: later.
                self.schedule_reclaim(at_us);
                return;
            }
            _ => self.reclaim_at_us = None,
        }
        self.compact_timers();
        if self.conns.len() < self.conns.capacity() / 4 {
            self.conns.shrink(CONNS_KEEP_CAPACITY);
            self.conns_shrunk = (self.conns.len(), self.conns.capacity());
        }
        // Lists a spike's connections may have filled (`due`: their deadlines, all at once;
        // `dirty`: a broadcast to all of them). Shrunk, not freed (see `table`).
        self.due.shrink_to(VEC_KEEP_CAPACITY);
        self.local.dirty.shrink_to(VEC_KEEP_CAPACITY);
    }

    /// The event loop. Returns when shutdown has completed.
    ///
    /// Each iteration: wait for readiness (no longer than the next timer, the accept back-off,
    /// or not at all when work is pending); handle ready sockets (accept, read and write);
    /// accept on; read again from connections that hit the per-iteration read bound; run the
    /// commands other threads queued; fire due timers; begin shutdown when asked; deliver this
    /// worker's own publishes and write every connection that got output outside its own I/O.
    pub(crate) fn run(&mut self) -> std::io::Result<()> {
        if let Some(listener) = self.listener.as_mut() {
            self.poll
                .registry()
                .register(listener, LISTENER, Interest::READABLE)?;
        }
        let mut events = Events::with_capacity(1024);
        // When the last poll with ready sockets returned (for the loop lag, recorded with the
        // next iteration's clock reading: one clock read per iteration, as before metrics).
        let mut handling_since: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if let Some(since) = handling_since.take() {
                let lag = now.saturating_duration_since(since).as_micros() as u64;
                self.local.counters.loop_lag_us.record(lag);
            }
            let blocking = self.poll_timeout(now);
            let timeout = self.spin.timeout(now, blocking);
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                return Err(e);
            }
            let now = Instant::now();
            self.local.now_us = self.now_us(now);
            let mut ready = 0u64;
            let mut woken = false;
            for event in events.iter() {
                ready += 1;
                match event.token() {
                    LISTENER => self.accept(now),
                    WAKER => woken = true,
                    Token(key) => {
                        let writable = event.is_writable() || event.is_write_closed();
                        let read_closed = event.is_read_closed() || event.is_error();
                        let readable = event.is_readable() || read_closed;
                        self.on_io(key, readable, read_closed, writable);
                    }
                }
            }
            self.accept_more(now);
            let pending = std::mem::take(&mut self.pending_reads);
            for (key, generation) in pending {
                if self
                    .conns
                    .get(key)
                    .is_some_and(|c| c.generation == generation)
                {
                    self.on_io(key, true, false, false);
                }
            }
            if woken {
                self.run_commands();
            }
            self.local.wheel.expire(now, &mut self.due);
            // By index: a timer callback may shrink `due` (never below its length).
            for i in 0..self.due.len() {
                let entry = self.due[i];
                self.on_timer(entry, now);
            }
            self.due.clear();
            if self.shared.shutdown.load(Ordering::Acquire) && self.shutdown_deadline.is_none() {
                self.begin_shutdown(now);
            }
            self.settle(now);
            #[cfg(feature = "bridge")]
            self.local.send_interest();
            if self.held > self.local.config.memory.worker_budget {
                self.shed_memory();
            }
            let counters = &self.local.counters;
            stats::add(&counters.loop_iterations, 1);
            counters.loop_events.record(ready);
            if ready > 0 {
                handling_since = Some(now);
                self.spin.worked(now);
            }
            if self.shutdown_done(now) {
                return Ok(());
            }
        }
    }

    /// How long the next poll may wait: not at all with reads or accepts pending, else until
    /// the next timer or the end of the accept back-off, whichever is first.
    fn poll_timeout(&mut self, now: Instant) -> Option<Duration> {
        let busy = !self.pending_reads.is_empty() || self.accept.has_pending();
        if busy {
            return Some(Duration::ZERO);
        }
        let timer = self.local.wheel.until_next(now);
        let backoff = self
            .accept
            .paused_until()
            .map(|until| until.saturating_duration_since(now));
        match (timer, backoff) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A worker's topics: noting interest changes when a broker bridge runs.
fn topics_for(shared: &crate::hub::Shared) -> Topics {
    #[cfg(feature = "bridge")]
    if shared.bridge.get().is_some() {
        return Topics::noting_changes();
    }
    let _ = shared;
    Topics::default()
}
