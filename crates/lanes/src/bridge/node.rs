//! The bridge thread's state, the same for every broker: this node's id, its interest in
//! topics, the queue of publishes, and the hand-over of messages from the broker to the
//! workers. The backends (`nats.rs`, `redis.rs`) only move bytes between this and their
//! client.

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crossbeam_channel::Receiver;
use lanes_metrics::owned::add;

use super::counters::BridgeCounters;
use super::envelope;
use super::interest::Interest;
use super::link::{BridgeParts, CHANGES_LEN, Change, Outgoing, Wake, now_us};
use super::subject::Subjects;
use crate::hub::Command;
use crate::published::{encode, encode_latest};
use crate::remote::Remote;

/// A topic with its broker subject.
pub(crate) type Named = (Arc<str>, String);

/// What the bridge thread holds.
pub(crate) struct Node {
    pub(crate) id: u64,
    remote: Remote,
    subjects: Subjects,
    interest: Interest,
    /// The topic of each subject subscribed upstream (a Redis message names its channel).
    topics: HashMap<String, Arc<str>>,
    publishes: Receiver<Outgoing>,
    changes: Receiver<Change>,
    pub(crate) wake: Arc<Wake>,
    pub(crate) counters: Arc<BridgeCounters>,
    max_batch: usize,
    max_message_len: usize,
    /// Whether the broker connection was ever made (a later one is a reconnect).
    ever_connected: bool,
    /// Failed attempts since the connection was last up (for the one log line per streak).
    failures: u32,
}

impl Node {
    pub(crate) fn new(parts: BridgeParts, remote: Remote) -> Node {
        Node {
            id: parts.node_id,
            subjects: Subjects::new(&parts.config.prefix),
            interest: Interest::default(),
            topics: HashMap::new(),
            publishes: parts.publishes,
            changes: parts.changes,
            wake: parts.wake,
            counters: parts.counters,
            max_batch: parts.config.max_batch,
            max_message_len: parts.max_message_len,
            remote,
            ever_connected: false,
            failures: 0,
        }
    }

    pub(crate) fn stopping(&self) -> bool {
        self.wake.stopping()
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.counters.connected.load(Ordering::Relaxed)
    }

    /// The connection to the broker is up.
    pub(crate) fn connected(&mut self) {
        if self.is_connected() {
            return;
        }
        self.counters.connected.store(true, Ordering::Relaxed);
        if self.ever_connected {
            add(&self.counters.reconnects, 1);
            tracing::info!(
                attempts = self.failures,
                "broker bridge: connected again; publishes flow to the broker once more"
            );
        } else {
            tracing::info!("broker bridge: connected");
        }
        self.ever_connected = true;
        self.failures = 0;
    }

    /// The connection was lost, or an attempt to make it failed: logged once per streak.
    pub(crate) fn lost(&mut self, error: &dyn Display) {
        let was_up = self.is_connected();
        self.counters.connected.store(false, Ordering::Relaxed);
        if was_up || (self.failures == 0 && !self.ever_connected) {
            add(&self.counters.losses, 1);
            tracing::warn!(
                %error,
                "broker bridge: the broker is unreachable; reconnecting with back-off \
                 (publishes reach this node only once the queue is full)"
            );
        } else {
            tracing::debug!(%error, "broker bridge: still unreachable");
        }
        self.failures = self.failures.saturating_add(1);
    }

    /// Failed attempts since the connection was last up.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    /// Takes the workers' interest changes that wait (at most the queue's length, so a
    /// worker that keeps changing cannot hold the bridge here).
    pub(crate) fn take_changes(&mut self) {
        for _ in 0..CHANGES_LEN {
            let Ok(change) = self.changes.try_recv() else {
                break;
            };
            self.interest.apply(change.worker, change.topic, change.on);
        }
    }

    /// The upstream subscriptions to make and to drop to match local interest. Topics that
    /// cannot cross are counted and left out (they stay local).
    pub(crate) fn pending(&mut self) -> (Vec<Named>, Vec<Named>) {
        let pending = self.interest.pending();
        let mut subscribe = Vec::with_capacity(pending.subscribe.len());
        for topic in pending.subscribe {
            match self.subjects.of(&topic) {
                Some(subject) => subscribe.push((topic, subject)),
                None => add(&self.counters.refused_topics, 1),
            }
        }
        let unsubscribe = pending
            .unsubscribe
            .into_iter()
            .filter_map(|topic| {
                let subject = self.subjects.of(&topic)?;
                Some((topic, subject))
            })
            .collect();
        (subscribe, unsubscribe)
    }

    /// Whether workers' interest changes wait to be taken. (A change that failed to reach the
    /// broker waits for the next turn of the loop instead, so a broker that keeps refusing it
    /// does not keep the bridge busy.)
    pub(crate) fn has_pending(&self) -> bool {
        !self.changes.is_empty()
    }

    /// The broker has `subject` subscribed for `topic`.
    pub(crate) fn subscribed(&mut self, (topic, subject): Named) {
        self.topics.insert(subject, Arc::clone(&topic));
        self.interest.subscribed(topic);
        self.note_upstream();
    }

    /// The broker no longer has `subject` subscribed.
    pub(crate) fn unsubscribed(&mut self, (topic, subject): &Named) {
        self.topics.remove(subject);
        self.interest.unsubscribed(topic);
        self.note_upstream();
    }

    /// A change to `topic` did not reach the broker: settled again next time.
    pub(crate) fn retry(&mut self, (topic, _): Named) {
        self.interest.retry(topic);
    }

    /// A new connection has no subscriptions: every wanted topic is subscribed again.
    pub(crate) fn resubscribe_all(&mut self) {
        self.interest.lost_upstream();
        self.topics.clear();
        self.note_upstream();
    }

    fn note_upstream(&self) {
        self.counters
            .upstream
            .store(self.interest.upstream_len() as u64, Ordering::Relaxed);
    }

    /// Takes up to `max_batch` publishes from the queue, as (subject, envelope) pairs in
    /// `out`; returns how many were taken (refused topics included).
    pub(crate) fn next_batch(&mut self, out: &mut Vec<(String, Vec<u8>)>) -> usize {
        out.clear();
        let mut taken = 0;
        while taken < self.max_batch {
            let Ok(outgoing) = self.publishes.try_recv() else {
                break;
            };
            taken += 1;
            let Some(subject) = self.subjects.of(&outgoing.topic) else {
                add(&self.counters.refused_topics, 1);
                continue;
            };
            let message = &outgoing.message;
            let mut bytes = Vec::new();
            envelope::encode(
                &mut bytes,
                self.id,
                outgoing.published_at_us,
                message.opcode,
                message.latest.as_deref(),
                message.payload(),
            );
            out.push((subject, bytes));
        }
        taken
    }

    /// Counts publishes the broker took, or lost in a failed write.
    pub(crate) fn sent(&self, n: usize, ok: bool) {
        let counter = if ok {
            &self.counters.sent
        } else {
            &self.counters.dropped_send_failed
        };
        add(counter, n as u64);
    }

    /// Hands a message from the broker on `subject` to the workers subscribed to its topic.
    pub(crate) fn deliver_on(&mut self, subject: &str, bytes: &[u8]) {
        if let Some(topic) = self.topics.get(subject).cloned() {
            self.deliver(&topic, bytes);
        }
    }

    /// Hands a message from the broker to the workers subscribed to `topic`: decoded, checked,
    /// encoded into its frame once for all of them.
    pub(crate) fn deliver(&mut self, topic: &str, bytes: &[u8]) {
        let envelope = match envelope::decode(bytes) {
            Ok(envelope) if envelope.payload.len() <= self.max_message_len => envelope,
            _ => {
                add(&self.counters.malformed, 1);
                return;
            }
        };
        if envelope.origin == self.id {
            add(&self.counters.own, 1);
            return;
        }
        let Some((name, workers)) = self.interest.local(topic) else {
            // The last local subscriber left while the message was on its way.
            return;
        };
        let message = match envelope.latest {
            Some(key) => encode_latest(envelope.opcode, envelope.payload, key),
            None => encode(envelope.opcode, envelope.payload),
        };
        let latency = now_us().saturating_sub(envelope.published_at_us);
        self.counters.latency_us.record(latency);
        for &worker in workers {
            let Some(link) = self.remote.link(usize::from(worker)) else {
                continue;
            };
            let command = Command::Publish {
                topic: Arc::clone(name),
                message: message.clone(),
            };
            if link.push(command).is_err() {
                add(&self.counters.dropped_delivery, 1);
            }
        }
        add(&self.counters.received, 1);
    }
}
