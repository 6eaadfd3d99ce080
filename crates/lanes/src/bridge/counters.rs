//! The bridge's figures: counted by the bridge thread (and, for drops at the queue, by the
//! publishers), read by anyone as a [`BridgeStats`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use lanes_metrics::{Histogram, HistogramSnapshot};

/// The bridge's counters.
#[derive(Debug, Default)]
pub(crate) struct BridgeCounters {
    pub(crate) connected: AtomicBool,
    pub(crate) sent: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) own: AtomicU64,
    pub(crate) malformed: AtomicU64,
    /// Publishes that found the queue full (any publishing thread adds: `fetch_add`).
    pub(crate) dropped_queue_full: AtomicU64,
    pub(crate) dropped_send_failed: AtomicU64,
    pub(crate) dropped_delivery: AtomicU64,
    pub(crate) refused_topics: AtomicU64,
    pub(crate) losses: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) upstream: AtomicU64,
    /// Microseconds from the publish on its node to the hand-over to this node's workers.
    pub(crate) latency_us: Histogram,
}

impl BridgeCounters {
    /// The figures now, with the queue's depth and the node's id.
    pub(crate) fn stats(&self, node_id: u64, queue_depth: usize) -> BridgeStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        BridgeStats {
            node_id,
            connected: self.connected.load(Ordering::Relaxed),
            sent: get(&self.sent),
            received: get(&self.received),
            own_echoes: get(&self.own),
            malformed: get(&self.malformed),
            dropped_queue_full: get(&self.dropped_queue_full),
            dropped_send_failed: get(&self.dropped_send_failed),
            dropped_delivery: get(&self.dropped_delivery),
            refused_topics: get(&self.refused_topics),
            losses: get(&self.losses),
            reconnects: get(&self.reconnects),
            upstream_subscriptions: get(&self.upstream),
            queue_depth: queue_depth as u64,
            latency_us: self.latency_us.snapshot(),
        }
    }
}

/// The broker bridge's figures ([`Remote::bridge_stats`](crate::Remote::bridge_stats)); the
/// same figures are exported as `lanes_bridge_*` metrics.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BridgeStats {
    /// This node's id on the broker (random per start): messages carry it, and a node skips
    /// its own when the broker echoes them.
    pub node_id: u64,
    /// Whether the bridge is connected to the broker now.
    pub connected: bool,
    /// Messages sent to the broker (this node's publishes).
    pub sent: u64,
    /// Messages from other nodes handed to this node's workers.
    pub received: u64,
    /// This node's own messages that the broker sent back (Redis does; NATS is asked not to),
    /// skipped.
    pub own_echoes: u64,
    /// Messages on the bridge's subjects that were not a lanes message (or text that was not
    /// UTF-8), skipped.
    pub malformed: u64,
    /// Publishes that found the queue to the broker full, and so reached this node only.
    pub dropped_queue_full: u64,
    /// Publishes lost in a write to the broker that failed (the broker went away meanwhile).
    pub dropped_send_failed: u64,
    /// Messages from the broker that a worker's queue had no room for (counted per worker).
    pub dropped_delivery: u64,
    /// Publishes and subscriptions to topics that cannot cross ([`crate::bridge`]: the empty
    /// name, names too long), kept on this node.
    pub refused_topics: u64,
    /// Times the connection to the broker was lost (or could not be made at start).
    pub losses: u64,
    /// Times the bridge connected again after a loss.
    pub reconnects: u64,
    /// Topics subscribed at the broker now.
    pub upstream_subscriptions: u64,
    /// Publishes waiting for the broker now.
    pub queue_depth: u64,
    /// Microseconds from a message's publish on its node to its hand-over to this node's
    /// workers (the nodes' clocks must agree: it reads the wall clock on both).
    pub latency_us: HistogramSnapshot,
}
