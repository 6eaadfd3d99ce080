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
pub(crate) mod link;
#[cfg(feature = "nats")]
mod nats;
mod node;
#[cfg(feature = "redis")]
mod redis;
mod subject;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

pub use counters::BridgeStats;

use crate::config::BrokerKind;
use crate::remote::Remote;
use link::{BridgeParts, Wake};
use node::Node;

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
