//! The bridge as the rest of the runtime sees it: the queues from publishers and workers to
//! the bridge thread, its wake-up, and its figures.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::counters::{BridgeCounters, BridgeStats};
use crate::config::BrokerConfig;
use crate::published::Published;

/// Interest changes that may wait for the bridge thread, at most; a worker keeps the rest and
/// tries again in its next loop iteration.
pub(crate) const CHANGES_LEN: usize = 65_536;

/// A publish on its way to the broker.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) topic: Arc<str>,
    pub(crate) message: Published,
    pub(crate) published_at_us: u64,
}

/// A worker's first subscriber of a topic (`on`), or its last one gone.
#[derive(Debug)]
pub(crate) struct Change {
    pub(crate) worker: u16,
    pub(crate) topic: Arc<str>,
    pub(crate) on: bool,
}

/// How the bridge thread is woken and told to stop.
#[derive(Debug, Default)]
pub(crate) struct Wake {
    pub(crate) notify: tokio::sync::Notify,
    /// Set by the first sender since the bridge last looked; that sender wakes it.
    notified: AtomicBool,
    pub(crate) stop: AtomicBool,
}

impl Wake {
    pub(crate) fn wake(&self) {
        if !self.notified.swap(true, Ordering::AcqRel) {
            self.notify.notify_one();
        }
    }

    /// Waits for a wake-up; the next sender must wake the bridge again.
    pub(crate) async fn notified(&self) {
        self.notify.notified().await;
        self.notified.store(false, Ordering::Release);
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

/// The bridge as the workers and publishers see it (in [`Shared`](`crate::hub::Shared`)).
#[derive(Debug)]
pub(crate) struct BridgeLink {
    publishes: Sender<Outgoing>,
    changes: Sender<Change>,
    wake: Arc<Wake>,
    counters: Arc<BridgeCounters>,
    node_id: u64,
}

impl BridgeLink {
    /// Queues a publish for the broker; a full queue drops it (counted).
    pub(crate) fn offer(&self, topic: &Arc<str>, message: &Published) {
        let outgoing = Outgoing {
            topic: Arc::clone(topic),
            message: message.clone(),
            published_at_us: now_us(),
        };
        match self.publishes.try_send(outgoing) {
            Ok(()) => self.wake.wake(),
            Err(TrySendError::Full(_)) => {
                self.counters
                    .dropped_queue_full
                    .fetch_add(1, Ordering::Relaxed);
            }
            // The bridge has stopped: the server is shutting down.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Sends worker `worker`'s interest changes, in order, as far as the queue has room; the
    /// rest stay in `changes` for the next call.
    pub(crate) fn send_changes(&self, worker: u16, changes: &mut Vec<(Arc<str>, bool)>) {
        let mut sent = 0;
        for (topic, on) in changes.iter() {
            let change = Change {
                worker,
                topic: Arc::clone(topic),
                on: *on,
            };
            match self.changes.try_send(change) {
                Ok(()) => sent += 1,
                Err(TrySendError::Full(_)) => break,
                Err(TrySendError::Disconnected(_)) => {
                    sent = changes.len();
                    break;
                }
            }
        }
        changes.drain(..sent);
        if sent > 0 {
            self.wake.wake();
        }
    }

    /// The bridge's figures now.
    pub(crate) fn stats(&self) -> BridgeStats {
        self.counters.stats(self.node_id, self.publishes.len())
    }
}

/// The bridge thread's ends of the queues, until it starts.
pub(crate) struct BridgeParts {
    pub(crate) publishes: Receiver<Outgoing>,
    pub(crate) changes: Receiver<Change>,
    pub(crate) wake: Arc<Wake>,
    pub(crate) counters: Arc<BridgeCounters>,
    pub(crate) node_id: u64,
    pub(crate) config: BrokerConfig,
    /// Messages from the broker longer than this are refused ([`Limits::max_message_len`]).
    ///
    /// [`Limits::max_message_len`]: crate::config::Limits::max_message_len
    pub(crate) max_message_len: usize,
}

/// The link for the workers and the parts for the bridge thread, for `config`.
pub(crate) fn channels(config: &BrokerConfig, max_message_len: usize) -> (BridgeLink, BridgeParts) {
    let (publishes_tx, publishes) = crossbeam_channel::bounded(config.queue_len.max(1));
    let (changes_tx, changes) = crossbeam_channel::bounded(CHANGES_LEN);
    let wake = Arc::new(Wake::default());
    let counters = Arc::new(BridgeCounters::default());
    let node_id = random_node_id();
    let link = BridgeLink {
        publishes: publishes_tx,
        changes: changes_tx,
        wake: Arc::clone(&wake),
        counters: Arc::clone(&counters),
        node_id,
    };
    let parts = BridgeParts {
        publishes,
        changes,
        wake,
        counters,
        node_id,
        config: config.clone(),
        max_message_len,
    };
    (link, parts)
}

/// Microseconds since the Unix epoch (the wall clock: it is compared across nodes).
pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A uniform number in [0, 1) from `seed` (splitmix64): the jitter of a back-off, different
/// per node and per attempt without a shared generator.
pub(crate) fn unit_from(seed: u64) -> f64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// A node id from the operating system's random source.
fn random_node_id() -> u64 {
    let mut rng = crate::rng::WorkerRng::new();
    let [a, b, c, d] = rng.next_key();
    let [e, f, g, h] = rng.next_key();
    u64::from_le_bytes([a, b, c, d, e, f, g, h])
}
