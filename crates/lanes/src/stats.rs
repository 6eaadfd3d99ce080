//! Per-worker counters that the application can read from any thread.
//!
//! Each counter has one writer, its worker (except `queue_full`, counted by senders), so an
//! update is a plain load and store on a word the worker already owns: no locked instruction,
//! no contention on the hot path. Readers on other threads see each word whole.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use lanes_metrics::{Histogram, HistogramSnapshot};
use lanes_proto::OpCode;

/// Why an open WebSocket connection ended (each connection counts once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseCause {
    /// The close handshake completed, whichever side began it.
    Clean,
    /// The peer broke the protocol; we closed with the error's code (1002, 1007, 1009, ...).
    ProtocolError,
    /// A handshake, pong, message or close deadline passed.
    Timeout,
    /// The peer went away without a close handshake (end of stream, reset, write error).
    Reset,
    /// The server shut down.
    Shutdown,
    /// The send backlog passed [`Backpressure::max_len`](crate::config::Backpressure::max_len) under
    /// [`BackpressurePolicy::Close`](crate::BackpressurePolicy).
    SlowConsumer,
    /// A handler callback panicked while it ran for this connection; we closed with 1011.
    HandlerPanic,
    /// The worker was over its memory budget
    /// ([`MemoryConfig::worker_budget`](crate::config::MemoryConfig::worker_budget)) and this
    /// connection held the most (a partial message: 1009; a backlog: 1008).
    MemoryBudget,
}

impl CloseCause {
    /// Every cause, in the order of [`WorkerStats::closed`].
    pub const ALL: [CloseCause; 8] = [
        CloseCause::Clean,
        CloseCause::ProtocolError,
        CloseCause::Timeout,
        CloseCause::Reset,
        CloseCause::Shutdown,
        CloseCause::SlowConsumer,
        CloseCause::HandlerPanic,
        CloseCause::MemoryBudget,
    ];

    /// The label value: `clean`, `protocol_error`, `timeout`, `reset`, `shutdown`,
    /// `slow_consumer`, `handler_panic`, `memory_budget`.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseCause::Clean => "clean",
            CloseCause::ProtocolError => "protocol_error",
            CloseCause::Timeout => "timeout",
            CloseCause::Reset => "reset",
            CloseCause::Shutdown => "shutdown",
            CloseCause::SlowConsumer => "slow_consumer",
            CloseCause::HandlerPanic => "handler_panic",
            CloseCause::MemoryBudget => "memory_budget",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// Why a TLS handshake failed (the label of `lanes_tls_handshake_failures_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsFailure {
    /// The client spoke plain HTTP to the TLS port.
    PlainHttp,
    /// The client offered only protocol versions the server does not accept (TLS 1.1 and
    /// older, or TLS 1.2 where only 1.3 is on).
    ProtocolVersion,
    /// Bytes that are not TLS records, or a record over the size limit.
    Malformed,
    /// Any other handshake failure (no cipher suite or key exchange in common, a bad
    /// signature, an unexpected message, ...).
    Handshake,
    /// The handshake did not finish within [`Timeouts::handshake`](crate::config::Timeouts::handshake).
    Timeout,
    /// The client closed the connection before the handshake finished.
    Closed,
}

impl TlsFailure {
    /// Every reason, in the order of [`WorkerStats::tls_handshake_failures`](crate::WorkerStats::tls_handshake_failures).
    pub const ALL: [TlsFailure; 6] = [
        TlsFailure::PlainHttp,
        TlsFailure::ProtocolVersion,
        TlsFailure::Malformed,
        TlsFailure::Handshake,
        TlsFailure::Timeout,
        TlsFailure::Closed,
    ];

    /// The label value: `plain_http`, `protocol_version`, `malformed`, `handshake`, `timeout`,
    /// `closed`.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsFailure::PlainHttp => "plain_http",
            TlsFailure::ProtocolVersion => "protocol_version",
            TlsFailure::Malformed => "malformed",
            TlsFailure::Handshake => "handshake",
            TlsFailure::Timeout => "timeout",
            TlsFailure::Closed => "closed",
        }
    }

    pub(crate) fn slot(self) -> usize {
        self as usize
    }
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The close codes [`WorkerStats::protocol_errors`] counts, in order; a last slot counts any
/// other code.
pub const PROTOCOL_ERROR_CODES: [u16; 5] = [1002, 1007, 1008, 1009, 1011];

/// The HTTP statuses [`WorkerStats::handshakes_rejected`] counts, in order; a last slot counts
/// any other status.
pub const REJECT_STATUSES: [u16; 8] = [400, 403, 404, 405, 426, 431, 500, 503];

/// The opcodes [`WorkerStats::frames_received`] and [`WorkerStats::frames_sent`] count, in
/// order.
pub const OPCODES: [OpCode; 6] = [
    OpCode::Continuation,
    OpCode::Text,
    OpCode::Binary,
    OpCode::Close,
    OpCode::Ping,
    OpCode::Pong,
];

/// The slot of `opcode` in [`OPCODES`].
#[inline]
pub(crate) fn opcode_slot(opcode: OpCode) -> usize {
    match opcode {
        OpCode::Continuation => 0,
        OpCode::Text => 1,
        OpCode::Binary => 2,
        OpCode::Close => 3,
        OpCode::Ping => 4,
        OpCode::Pong => 5,
    }
}

/// The slot of a close code in [`PROTOCOL_ERROR_CODES`] (or the last one).
fn code_slot(code: u16) -> usize {
    PROTOCOL_ERROR_CODES
        .iter()
        .position(|c| *c == code)
        .unwrap_or(PROTOCOL_ERROR_CODES.len())
}

/// The slot of an HTTP status in [`REJECT_STATUSES`] (or the last one).
fn status_slot(status: u16) -> usize {
    REJECT_STATUSES
        .iter()
        .position(|s| *s == status)
        .unwrap_or(REJECT_STATUSES.len())
}

/// The live counters of one worker.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// The core the worker is pinned to.
    pub(crate) core: Option<usize>,
    pub(crate) connections: AtomicU64,
    pub(crate) subscriptions: AtomicU64,
    pub(crate) published: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) messages_dropped: AtomicU64,
    pub(crate) messages_conflated: AtomicU64,
    pub(crate) closed_slow: AtomicU64,
    pub(crate) stale: AtomicU64,
    pub(crate) queue_full: AtomicU64,
    /// Upgrades this worker accepted and handed to the worker they were placed on.
    pub(crate) handed_off: AtomicU64,
    /// Connections another worker (or `Remote::adopt`) handed to this one.
    pub(crate) adopted: AtomicU64,
    /// Upgrades `on_upgrade` deferred.
    pub(crate) deferred: AtomicU64,
    /// Open connections moved from this worker to another.
    pub(crate) moved_out: AtomicU64,
    /// Open connections moved here from another worker.
    pub(crate) moved_in: AtomicU64,
    /// Outbound connections opened.
    pub(crate) outbound_opened: AtomicU64,
    /// Outbound connection attempts that failed.
    pub(crate) outbound_failed: AtomicU64,
    /// Bytes held by upgrades waiting for their answer (a gauge).
    pub(crate) deferred_bytes: AtomicU64,
    pub(crate) accepted: AtomicU64,
    pub(crate) opened: AtomicU64,
    pub(crate) closed: [AtomicU64; CloseCause::ALL.len()],
    /// Handler callbacks that panicked (each contained to its connection, or its tick).
    pub(crate) handler_panics: AtomicU64,
    pub(crate) protocol_errors: [AtomicU64; PROTOCOL_ERROR_CODES.len() + 1],
    pub(crate) rejected: [AtomicU64; REJECT_STATUSES.len() + 1],
    pub(crate) bytes_received: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) tls_handshakes: AtomicU64,
    pub(crate) tls_resumed: AtomicU64,
    pub(crate) tls_failures: [AtomicU64; TlsFailure::ALL.len()],
    pub(crate) frames_received: [AtomicU64; 6],
    pub(crate) frames_sent: [AtomicU64; 6],
    pub(crate) pings_sent: AtomicU64,
    pub(crate) pongs_received: AtomicU64,
    pub(crate) buffered_bytes: AtomicU64,
    pub(crate) loop_iterations: AtomicU64,
    /// Keepalive ping to pong, in microseconds.
    pub(crate) ping_rtt_us: Histogram,
    /// From the poll returning to the end of handling what it returned, in microseconds.
    pub(crate) loop_lag_us: Histogram,
    /// Readiness events per poll.
    pub(crate) loop_events: Histogram,
}

/// Updates of counters and gauges that only the calling worker writes.
pub(crate) use lanes_metrics::owned::{add, sub};

impl Counters {
    pub(crate) fn new(core: Option<usize>) -> Counters {
        Counters {
            core,
            ..Counters::default()
        }
    }

    /// Counts an open connection's end.
    pub(crate) fn note_closed(&self, cause: CloseCause) {
        add(&self.closed[cause.slot()], 1);
    }

    /// Counts a protocol error closed with `code`.
    pub(crate) fn note_protocol_error(&self, code: u16) {
        add(&self.protocol_errors[code_slot(code)], 1);
    }

    /// Counts a completed TLS handshake.
    #[cfg(feature = "tls")]
    pub(crate) fn note_tls_handshake(&self, resumed: bool) {
        add(&self.tls_handshakes, 1);
        if resumed {
            add(&self.tls_resumed, 1);
        }
    }

    /// Counts a failed TLS handshake.
    #[cfg(feature = "tls")]
    pub(crate) fn note_tls_failure(&self, reason: TlsFailure) {
        add(&self.tls_failures[reason.slot()], 1);
    }

    /// Counts a handshake answered with `status` instead of an upgrade.
    pub(crate) fn note_rejected(&self, status: u16) {
        add(&self.rejected[status_slot(status)], 1);
    }

    pub(crate) fn snapshot(&self, index: usize, queue_depth: u64) -> WorkerStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        fn array<const N: usize>(cs: &[AtomicU64; N]) -> [u64; N] {
            std::array::from_fn(|i| cs[i].load(Ordering::Relaxed))
        }
        let frames_sent = array(&self.frames_sent);
        let frames_received = array(&self.frames_received);
        WorkerStats {
            index,
            core: self.core,
            connections: get(&self.connections),
            subscriptions: get(&self.subscriptions),
            published: get(&self.published),
            delivered: get(&self.delivered),
            messages_dropped: get(&self.messages_dropped),
            messages_conflated: get(&self.messages_conflated),
            closed_slow: get(&self.closed_slow),
            stale: get(&self.stale),
            queue_full: get(&self.queue_full),
            queue_depth,
            handed_off: get(&self.handed_off),
            adopted: get(&self.adopted),
            deferred: get(&self.deferred),
            moved_out: get(&self.moved_out),
            moved_in: get(&self.moved_in),
            outbound_opened: get(&self.outbound_opened),
            outbound_failed: get(&self.outbound_failed),
            deferred_bytes: get(&self.deferred_bytes),
            accepted: get(&self.accepted),
            opened: get(&self.opened),
            closed: array(&self.closed),
            handler_panics: get(&self.handler_panics),
            protocol_errors: array(&self.protocol_errors),
            handshakes_rejected: array(&self.rejected),
            messages_received: frames_received[1] + frames_received[2],
            messages_sent: frames_sent[1] + frames_sent[2],
            bytes_received: get(&self.bytes_received),
            bytes_sent: get(&self.bytes_sent),
            tls_handshakes: get(&self.tls_handshakes),
            tls_resumed: get(&self.tls_resumed),
            tls_handshake_failures: array(&self.tls_failures),
            frames_received,
            frames_sent,
            pings_sent: get(&self.pings_sent),
            pongs_received: get(&self.pongs_received),
            buffered_bytes: get(&self.buffered_bytes),
            loop_iterations: get(&self.loop_iterations),
            ping_rtt_us: self.ping_rtt_us.snapshot(),
            loop_lag_us: self.loop_lag_us.snapshot(),
            loop_events: self.loop_events.snapshot(),
        }
    }
}

/// A snapshot of one worker's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerStats {
    /// The worker's index.
    pub index: usize,
    /// The core it is pinned to, if pinning is on.
    pub core: Option<usize>,
    /// Open WebSocket connections now.
    pub connections: u64,
    /// Topic subscriptions now (a connection subscribed to three topics counts three).
    pub subscriptions: u64,
    /// Messages published to a topic or broadcast that this worker handled (each publish counts
    /// once per worker).
    pub published: u64,
    /// Published or broadcast messages queued to this worker's connections (one per subscriber).
    pub delivered: u64,
    /// Messages not queued because the connection's backlog would pass
    /// [`Backpressure::max_len`](crate::config::Backpressure::max_len) under
    /// [`BackpressurePolicy::Drop`](crate::BackpressurePolicy).
    pub messages_dropped: u64,
    /// Messages published with a latest-value key that were never sent: a newer one with the
    /// same key replaced them while their subscriber was behind.
    pub messages_conflated: u64,
    /// Connections closed as slow consumers: with 1008 because their backlog would pass the
    /// cap, or dropped because it waited past
    /// [`Backpressure::max_age`](crate::config::Backpressure::max_age), under
    /// [`BackpressurePolicy::Close`](crate::BackpressurePolicy).
    pub closed_slow: u64,
    /// Sends and closes from a [`Remote`](crate::Remote) that arrived after their connection
    /// had ended.
    pub stale: u64,
    /// Commands for this worker that a [`Remote`](crate::Remote) could not queue because its
    /// queue was full ([`Limits::remote_queue_len`](crate::config::Limits::remote_queue_len)).
    pub queue_full: u64,
    /// Commands waiting in this worker's queue now.
    pub queue_depth: u64,
    /// Upgrades this worker accepted and handed to the worker the handler placed them on
    /// ([`Accept::on_worker`](crate::Accept::on_worker)).
    pub handed_off: u64,
    /// Connections another worker accepted and handed to this one, and those handed to it
    /// with [`Remote::adopt`](crate::Remote::adopt).
    pub adopted: u64,
    /// Upgrades `on_upgrade` deferred ([`Request::defer`](crate::Request::defer)).
    pub deferred: u64,
    /// Open connections moved from this worker to another ([`Ws::move_to`](crate::Ws::move_to)).
    pub moved_out: u64,
    /// Open connections moved here from another worker.
    pub moved_in: u64,
    /// Outbound connections opened ([`Remote::connect`](crate::Remote::connect)), reconnections
    /// included.
    pub outbound_opened: u64,
    /// Outbound connection attempts that failed (each goes to `on_connect_failed`).
    pub outbound_failed: u64,
    /// Bytes held now by upgrades waiting for their answer: each holds its request head (and
    /// any bytes read behind it), in a buffer of that length.
    pub deferred_bytes: u64,
    /// TCP connections accepted.
    pub accepted: u64,
    /// WebSocket upgrades completed (`on_open` calls).
    pub opened: u64,
    /// Open connections that ended, by cause, in the order of [`CloseCause::ALL`]. Every
    /// opened connection ends once: `opened == connections + closed.iter().sum()`.
    pub closed: [u64; CloseCause::ALL.len()],
    /// Handler callbacks that panicked. A panic costs the connection the callback ran for
    /// (closed with 1011, cause [`CloseCause::HandlerPanic`]), a 500 for `on_upgrade` and
    /// `on_http`, nothing more for `on_tick` and `on_close`.
    pub handler_panics: u64,
    /// Connections closed for a protocol error, by the close code we sent, in the order of
    /// [`PROTOCOL_ERROR_CODES`], then any other code.
    pub protocol_errors: [u64; PROTOCOL_ERROR_CODES.len() + 1],
    /// Handshakes answered with an HTTP error instead of an upgrade, by status, in the order
    /// of [`REJECT_STATUSES`], then any other status.
    pub handshakes_rejected: [u64; REJECT_STATUSES.len() + 1],
    /// Data messages received: the text and binary frames that begin a message (a fragmented
    /// message counts once; the one message a protocol error cuts short counts too).
    pub messages_received: u64,
    /// Data messages queued to be sent (echoes, sends, deliveries).
    pub messages_sent: u64,
    /// Bytes read from sockets.
    pub bytes_received: u64,
    /// Bytes written to sockets.
    pub bytes_sent: u64,
    /// TLS handshakes completed (on a TLS port), resumed ones included.
    pub tls_handshakes: u64,
    /// TLS handshakes that resumed a session (by ticket or from the session cache).
    pub tls_resumed: u64,
    /// TLS handshakes that failed (each such connection dropped), by reason, in the order of
    /// [`TlsFailure::ALL`].
    pub tls_handshake_failures: [u64; TlsFailure::ALL.len()],
    /// Frames received, by opcode, in the order of [`OPCODES`].
    pub frames_received: [u64; 6],
    /// Frames queued to be sent, by opcode, in the order of [`OPCODES`].
    pub frames_sent: [u64; 6],
    /// Keepalive pings sent ([`Timeouts::ping_interval`](crate::config::Timeouts::ping_interval)).
    pub pings_sent: u64,
    /// Pongs received.
    pub pongs_received: u64,
    /// Bytes waiting in connections' send backlogs after their last write, now.
    pub buffered_bytes: u64,
    /// Event loop iterations.
    pub loop_iterations: u64,
    /// Keepalive ping round trips, in microseconds.
    pub ping_rtt_us: HistogramSnapshot,
    /// Loop lag, in microseconds: per iteration, the time from the poll returning with ready
    /// sockets to the end of handling them (what the last ready socket of the batch waited).
    pub loop_lag_us: HistogramSnapshot,
    /// Readiness events per loop iteration.
    pub loop_events: HistogramSnapshot,
}

impl WorkerStats {
    /// Connections that ended for `cause`.
    pub fn closed_by(&self, cause: CloseCause) -> u64 {
        self.closed[cause.slot()]
    }

    /// Frames of `opcode` received.
    pub fn frames_received_of(&self, opcode: OpCode) -> u64 {
        self.frames_received[opcode_slot(opcode)]
    }

    /// Handshakes rejected with `status` (any status not in [`REJECT_STATUSES`] counts under
    /// the last slot).
    pub fn rejected_with(&self, status: u16) -> u64 {
        self.handshakes_rejected[status_slot(status)]
    }

    /// TLS handshakes that failed for `reason`.
    pub fn tls_failed_with(&self, reason: TlsFailure) -> u64 {
        self.tls_handshake_failures[reason.slot()]
    }

    /// Connections closed for a protocol error with `code`.
    pub fn protocol_errors_with(&self, code: u16) -> u64 {
        self.protocol_errors[code_slot(code)]
    }

    /// Adds another worker's figures (for totals).
    fn merge(&mut self, w: &WorkerStats) {
        let sum = |a: &mut [u64], b: &[u64]| {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        };
        self.connections += w.connections;
        self.subscriptions += w.subscriptions;
        self.published += w.published;
        self.delivered += w.delivered;
        self.messages_dropped += w.messages_dropped;
        self.messages_conflated += w.messages_conflated;
        self.closed_slow += w.closed_slow;
        self.stale += w.stale;
        self.queue_full += w.queue_full;
        self.queue_depth += w.queue_depth;
        self.handed_off += w.handed_off;
        self.adopted += w.adopted;
        self.deferred += w.deferred;
        self.moved_out += w.moved_out;
        self.moved_in += w.moved_in;
        self.outbound_opened += w.outbound_opened;
        self.outbound_failed += w.outbound_failed;
        self.deferred_bytes += w.deferred_bytes;
        self.accepted += w.accepted;
        self.opened += w.opened;
        sum(&mut self.closed, &w.closed);
        self.handler_panics += w.handler_panics;
        sum(&mut self.protocol_errors, &w.protocol_errors);
        sum(&mut self.handshakes_rejected, &w.handshakes_rejected);
        self.messages_received += w.messages_received;
        self.messages_sent += w.messages_sent;
        self.bytes_received += w.bytes_received;
        self.bytes_sent += w.bytes_sent;
        self.tls_handshakes += w.tls_handshakes;
        self.tls_resumed += w.tls_resumed;
        sum(&mut self.tls_handshake_failures, &w.tls_handshake_failures);
        sum(&mut self.frames_received, &w.frames_received);
        sum(&mut self.frames_sent, &w.frames_sent);
        self.pings_sent += w.pings_sent;
        self.pongs_received += w.pongs_received;
        self.buffered_bytes += w.buffered_bytes;
        self.loop_iterations += w.loop_iterations;
        self.ping_rtt_us.merge(&w.ping_rtt_us);
        self.loop_lag_us.merge(&w.loop_lag_us);
        self.loop_events.merge(&w.loop_events);
    }
}

/// A snapshot of every worker's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// One entry per worker, by index.
    pub workers: Vec<WorkerStats>,
}

impl Stats {
    /// The sum over all workers (`index` is 0, `core` is `None`).
    pub fn total(&self) -> WorkerStats {
        let mut total = WorkerStats::default();
        for w in &self.workers {
            total.merge(w);
        }
        total
    }
}
