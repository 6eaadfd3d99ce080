//! Per-worker counters that the application can read from any thread.
//!
//! Each counter has one writer, its worker (except `queue_full`, counted by senders), so an
//! update is a plain load and store on a word the worker already owns: no locked instruction,
//! no contention on the hot path.

use std::sync::atomic::{AtomicU64, Ordering};

/// The live counters of one worker.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) connections: AtomicU64,
    pub(crate) subscriptions: AtomicU64,
    pub(crate) published: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) messages_dropped: AtomicU64,
    pub(crate) closed_slow: AtomicU64,
    pub(crate) stale: AtomicU64,
    pub(crate) queue_full: AtomicU64,
}

/// Adds `n` to a counter that only the calling worker writes.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

/// Subtracts `n` from a gauge that only the calling worker writes.
pub(crate) fn sub(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).saturating_sub(n),
        Ordering::Relaxed,
    );
}

impl Counters {
    pub(crate) fn snapshot(&self, index: usize) -> WorkerStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        WorkerStats {
            index,
            connections: get(&self.connections),
            subscriptions: get(&self.subscriptions),
            published: get(&self.published),
            delivered: get(&self.delivered),
            messages_dropped: get(&self.messages_dropped),
            closed_slow: get(&self.closed_slow),
            stale: get(&self.stale),
            queue_full: get(&self.queue_full),
        }
    }
}

/// A snapshot of one worker's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerStats {
    /// The worker's index.
    pub index: usize,
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
    /// [`Config::max_buffered_len`](crate::Config) under
    /// [`BackpressurePolicy::Drop`](crate::BackpressurePolicy).
    pub messages_dropped: u64,
    /// Connections closed with 1008 because their backlog would pass the cap under
    /// [`BackpressurePolicy::Close`](crate::BackpressurePolicy).
    pub closed_slow: u64,
    /// Sends and closes from a [`Remote`](crate::Remote) that arrived after their connection
    /// had ended.
    pub stale: u64,
    /// Commands for this worker that a [`Remote`](crate::Remote) could not queue because its
    /// queue was full ([`Config::remote_queue_len`](crate::Config)).
    pub queue_full: u64,
}

/// A snapshot of every worker's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// One entry per worker, by index.
    pub workers: Vec<WorkerStats>,
}

impl Stats {
    /// The sum over all workers (`index` is 0).
    pub fn total(&self) -> WorkerStats {
        let mut total = WorkerStats::default();
        for w in &self.workers {
            total.connections += w.connections;
            total.subscriptions += w.subscriptions;
            total.published += w.published;
            total.delivered += w.delivered;
            total.messages_dropped += w.messages_dropped;
            total.closed_slow += w.closed_slow;
            total.stale += w.stale;
            total.queue_full += w.queue_full;
        }
        total
    }
}
