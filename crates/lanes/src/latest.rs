//! The latest-value policy (conflation): for a subscriber that is behind, a message published
//! with a key replaces the one with the same key still waiting, so once the subscriber reads
//! again it gets, per key, only the newest value instead of the backlog.
//!
//! A subscriber is behind while a write has left part of its backlog unsent (the socket's send
//! buffer is full). Keyed messages for it wait here, one per key, and are queued (in the order
//! of their publishes) as soon as its backlog is written out. Messages without a key are never
//! held back.

use std::collections::HashMap;
use std::sync::Arc;

use crate::published::Published;

/// One connection's waiting messages.
#[derive(Debug)]
struct Waiting {
    generation: u32,
    /// Publish order of the next message kept.
    next: u64,
    by_key: HashMap<Arc<str>, (u64, Published)>,
}

/// Every behind subscriber's newest keyed messages on one worker, by connection slot.
#[derive(Debug, Default)]
pub(crate) struct LatestValues {
    by_slot: HashMap<usize, Waiting>,
}

impl LatestValues {
    /// Whether nothing waits (the common case: checked before any lookup).
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.by_slot.is_empty()
    }

    /// Keeps `message` as the newest for `key` on the connection (`slot`, `generation`);
    /// returns true when it replaced an older one (which is then never sent).
    pub(crate) fn keep(
        &mut self,
        slot: usize,
        generation: u32,
        key: &Arc<str>,
        message: &Published,
    ) -> bool {
        let waiting = self.by_slot.entry(slot).or_insert_with(|| Waiting {
            generation,
            next: 0,
            by_key: HashMap::new(),
        });
        if waiting.generation != generation {
            // Left by an earlier connection in the slot.
            waiting.generation = generation;
            waiting.by_key.clear();
        }
        let order = waiting.next;
        waiting.next += 1;
        waiting
            .by_key
            .insert(Arc::clone(key), (order, message.clone()))
            .is_some()
    }

    /// Takes what waits for the connection, in the order the messages were published.
    pub(crate) fn take(&mut self, slot: usize, generation: u32) -> Vec<Published> {
        let Some(waiting) = self.by_slot.remove(&slot) else {
            return Vec::new();
        };
        if waiting.generation != generation {
            return Vec::new();
        }
        let mut messages: Vec<(u64, Published)> = waiting.by_key.into_values().collect();
        messages.sort_unstable_by_key(|(order, _)| *order);
        messages.into_iter().map(|(_, message)| message).collect()
    }

    /// Drops what waits for a connection that is gone.
    pub(crate) fn forget(&mut self, slot: usize) {
        if !self.by_slot.is_empty() {
            self.by_slot.remove(&slot);
        }
        if self.by_slot.is_empty() && self.by_slot.capacity() > 64 {
            // A burst of behind subscribers must not keep its table.
            self.by_slot = HashMap::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::published::encode;
    use lanes_proto::OpCode;

    fn payloads(messages: &[Published]) -> Vec<&[u8]> {
        messages.iter().map(Published::payload).collect()
    }

    #[test]
    fn the_newest_per_key_in_the_order_of_the_newest_publishes() {
        let mut latest = LatestValues::default();
        assert!(latest.is_empty());
        let (a, b): (Arc<str>, Arc<str>) = ("A".into(), "B".into());
        assert!(!latest.keep(3, 7, &a, &encode(OpCode::Text, b"a1")));
        assert!(!latest.keep(3, 7, &b, &encode(OpCode::Text, b"b1")));
        assert!(latest.keep(3, 7, &a, &encode(OpCode::Text, b"a2")));
        assert!(!latest.keep(4, 1, &a, &encode(OpCode::Text, b"other")));
        assert_eq!(payloads(&latest.take(3, 7)), [&b"b1"[..], b"a2"]);
        assert!(latest.take(3, 7).is_empty(), "taken once");
        assert_eq!(payloads(&latest.take(4, 1)), [&b"other"[..]]);
        assert!(latest.is_empty());
    }

    #[test]
    fn a_later_connection_in_the_slot_gets_nothing_of_the_earlier_ones() {
        let mut latest = LatestValues::default();
        let a: Arc<str> = "A".into();
        latest.keep(3, 7, &a, &encode(OpCode::Text, b"old"));
        assert!(latest.take(3, 8).is_empty());
        latest.keep(3, 7, &a, &encode(OpCode::Text, b"old"));
        assert!(!latest.keep(3, 8, &a, &encode(OpCode::Text, b"new")));
        assert_eq!(payloads(&latest.take(3, 8)), [&b"new"[..]]);
        latest.keep(5, 1, &a, &encode(OpCode::Text, b"gone"));
        latest.forget(5);
        assert!(latest.is_empty());
    }
}
