//! The broker bridge: this node's topics shared with every other node's through NATS or Redis
//! ([`Config::broker`](crate::Config::broker), features `nats` and `redis`).
//!
//! # What it does
//! - **One thread of its own** runs the broker's client (async-nats or redis, on a
//!   current-thread tokio runtime); no worker ever waits for the broker. Workers and
//!   publishers reach it through bounded queues and a wake-up, as they reach each other; it
//!   reaches the workers through their command queues.
//! - **Interest.** The node subscribes upstream to a topic while at least one of its
//!   connections (on any worker) is subscribed to it, and unsubscribes when the last one
//!   leaves: one upstream subscription per topic per node, however many connections.
//! - **Publishing.** A publish ([`Ws::publish_text`](crate::Ws::publish_text),
//!   [`Remote::publish_text`](crate::Remote::publish_text), ...) reaches this node's
//!   subscribers as it always did, at once, and is queued for the broker; every other node
//!   with subscribers gets it from there, encodes its frame once and hands it to its workers
//!   that have subscribers. A node skips its own messages if the broker sends them back
//!   (each message carries its node's random id), so no subscriber gets a message twice.
//!   Broadcasts ([`Remote::broadcast_text`](crate::Remote::broadcast_text)) stay on their
//!   node.
//! - **Order.** Messages from one publisher (one connection, or one thread using a `Remote`)
//!   to one topic reach every subscriber on every node in the order published: one queue,
//!   one broker connection per node, and both brokers keep a connection's order.
//! - **Subjects.** A topic's subject (NATS) or channel (Redis) is
//!   [`BrokerConfig::prefix`](crate::BrokerConfig::prefix) then the name with every byte
//!   but letters, digits, `_` and `-` written `%XX`, so no name is misread as wildcards or
//!   several tokens. The empty name and names whose subject would pass 1,024 bytes stay on
//!   their node (counted as refused).
//! - **Latest-value publishes** keep their key across nodes.
//!
//! # When the broker goes away
//! The loss is noticed (the connection drops, or a request takes longer than
//! [`BrokerConfig::timeout`](crate::BrokerConfig::timeout)), logged once per streak and
//! counted. Publishes wait in the queue ([`BrokerConfig::queue_len`](crate::BrokerConfig));
//! past it they are dropped and counted (each still reached its own node's subscribers). The
//! bridge reconnects with back-off ([`BrokerConfig::reconnect`](crate::BrokerConfig)),
//! subscribes again to every topic with local subscribers, and sends what waited. Messages
//! other nodes published while this node was away are not replayed: core NATS and Redis
//! pub/sub keep nothing for absent subscribers.
//!
//! # Metrics
//! [`Remote::bridge_stats`](crate::Remote::bridge_stats) and the `lanes_bridge_*` metrics:
//! messages out and in, drops by reason, queue depth, reconnects, upstream subscriptions, and
//! the latency from the publish on its node to the hand-over here.

mod counters;
mod envelope;
mod interest;
#[cfg(feature = "nats")]
mod nats;
mod node;
#[cfg(feature = "redis")]
mod redis;
mod subject;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TrySendError};

pub use counters::BridgeStats;

use crate::config::{BrokerConfig, BrokerKind};
use crate::published::Published;
use crate::remote::Remote;
use counters::BridgeCounters;
use node::Node;

/// Interest changes that may wait for the bridge thread, at most; a worker keeps the rest and
/// tries again in its next loop iteration.
const CHANGES_LEN: usize = 65_536;

/// A publish on its way to the broker.
#[derive(Debug)]
pub(crate) struct Outgoing {
    topic: Arc<str>,
    message: Published,
    published_at_us: u64,
}

/// A worker's first subscriber of a topic (`on`), or its last one gone.
#[derive(Debug)]
pub(crate) struct Change {
    worker: u16,
    topic: Arc<str>,
    on: bool,
}

/// How the bridge thread is woken and told to stop.
#[derive(Debug, Default)]
pub(crate) struct Wake {
    notify: tokio::sync::Notify,
    /// Set by the first sender since the bridge last looked; that sender wakes it.
    notified: AtomicBool,
    stop: AtomicBool,
}

impl Wake {
    fn wake(&self) {
        if !self.notified.swap(true, Ordering::AcqRel) {
            self.notify.notify_one();
        }
    }

    /// Waits for a wake-up; the next sender must wake the bridge again.
    async fn notified(&self) {
        self.notify.notified().await;
        self.notified.store(false, Ordering::Release);
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

/// The bridge as the workers and publishers see it (in [`Shared`](crate::hub::Shared)).
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
    publishes: Receiver<Outgoing>,
    changes: Receiver<Change>,
    wake: Arc<Wake>,
    counters: Arc<BridgeCounters>,
    node_id: u64,
    config: BrokerConfig,
    /// Messages from the broker longer than this are refused ([`Limits::max_message_len`]).
    ///
    /// [`Limits::max_message_len`]: crate::config::Limits::max_message_len
    max_message_len: usize,
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

/// The running bridge thread.
#[derive(Debug)]
pub(crate) struct BridgeThread {
    wake: Arc<Wake>,
    thread: Option<JoinHandle<()>>,
}

impl BridgeThread {
    /// Starts the bridge thread, which reaches the workers through `remote`.
    pub(crate) fn start(parts: BridgeParts, remote: Remote) -> std::io::Result<BridgeThread> {
        let wake = Arc::clone(&parts.wake);
        let thread = std::thread::Builder::new()
            .name("lanes-bridge".into())
            .spawn(move || run(parts, remote))?;
        Ok(BridgeThread {
            wake,
            thread: Some(thread),
        })
    }

    /// Stops the bridge (its broker connection closes) and waits for its thread.
    pub(crate) fn stop(&mut self) {
        self.wake.stop.store(true, Ordering::Release);
        self.wake.notify.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for BridgeThread {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The bridge thread: the broker's client on a current-thread runtime.
fn run(parts: BridgeParts, remote: Remote) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "broker bridge: no runtime; topics stay on this node");
            return;
        }
    };
    let config = parts.config.clone();
    let node = Node::new(parts, remote);
    runtime.block_on(async move {
        match config.kind() {
            #[cfg(feature = "nats")]
            Some(BrokerKind::Nats) => nats::run(node, &config).await,
            #[cfg(feature = "redis")]
            Some(BrokerKind::Redis) => redis::run(node, &config).await,
            // Config::validate refuses the others.
            _ => drop(node),
        }
    });
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
