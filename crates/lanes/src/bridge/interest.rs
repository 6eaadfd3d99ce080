//! Which topics the node wants from the broker, and which it has: the workers report each
//! topic's first subscriber and its last one leaving ([`Interest::apply`]); the bridge
//! subscribes upstream while at least one worker has a subscriber and unsubscribes when none
//! has. One upstream subscription per topic per node, never one per connection.
//!
//! Changes are collected as "dirty" topics and settled in batches ([`Interest::pending`]), so
//! a topic that comes and goes between two settlements costs the broker nothing, and the
//! bridge's work per settlement is the number of topics that changed, not the number it has.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The node's interest in topics.
#[derive(Debug, Default)]
pub(crate) struct Interest {
    /// For each topic with local subscribers: the workers that have them (few; sorted).
    workers: HashMap<Arc<str>, Vec<u16>>,
    /// The topics subscribed at the broker now.
    upstream: HashSet<Arc<str>>,
    /// Topics whose wanted and upstream states may differ.
    dirty: HashSet<Arc<str>>,
}

/// What to tell the broker to settle the dirty topics.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Pending {
    pub(crate) subscribe: Vec<Arc<str>>,
    pub(crate) unsubscribe: Vec<Arc<str>>,
}

impl Interest {
    /// Worker `worker` now has (`on`) or no longer has subscribers of `topic`.
    pub(crate) fn apply(&mut self, worker: u16, topic: Arc<str>, on: bool) {
        if on {
            let workers = self.workers.entry(Arc::clone(&topic)).or_default();
            if let Err(at) = workers.binary_search(&worker) {
                workers.insert(at, worker);
            }
        } else if let Some(workers) = self.workers.get_mut(&topic) {
            if let Ok(at) = workers.binary_search(&worker) {
                workers.remove(at);
            }
            if workers.is_empty() {
                self.workers.remove(&topic);
            }
        }
        self.dirty.insert(topic);
    }

    /// The name held here for `topic` (to share rather than copy it) and the workers with
    /// subscribers of it; `None` when no worker has any.
    pub(crate) fn local(&self, topic: &str) -> Option<(&Arc<str>, &[u16])> {
        self.workers
            .get_key_value(topic)
            .map(|(name, workers)| (name, workers.as_slice()))
    }

    /// The workers with subscribers of `topic` (empty when none has).
    #[cfg(test)]
    fn workers(&self, topic: &str) -> &[u16] {
        self.local(topic).map_or(&[], |(_, workers)| workers)
    }

    /// The broker connection was lost (or made anew): nothing is subscribed there now, and every
    /// wanted topic must be subscribed again.
    pub(crate) fn lost_upstream(&mut self) {
        self.upstream.clear();
        self.dirty.extend(self.workers.keys().cloned());
    }

    /// Takes the dirty topics: those wanted but not subscribed upstream, and those subscribed
    /// but no longer wanted.
    pub(crate) fn pending(&mut self) -> Pending {
        let mut pending = Pending::default();
        for topic in self.dirty.drain() {
            let wanted = self.workers.contains_key(&topic);
            let subscribed = self.upstream.contains(&topic);
            if wanted && !subscribed {
                pending.subscribe.push(topic);
            } else if !wanted && subscribed {
                pending.unsubscribe.push(topic);
            }
        }
        pending
    }

    /// Whether some topics wait to be settled.
    #[cfg(test)]
    pub(crate) fn has_pending(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// The broker now has `topic` subscribed.
    pub(crate) fn subscribed(&mut self, topic: Arc<str>) {
        self.upstream.insert(topic);
    }

    /// The broker no longer has `topic` subscribed.
    pub(crate) fn unsubscribed(&mut self, topic: &str) {
        self.upstream.remove(topic);
    }

    /// A change to `topic` failed to reach the broker: settle it again next time.
    pub(crate) fn retry(&mut self, topic: Arc<str>) {
        self.dirty.insert(topic);
    }

    /// Topics subscribed at the broker.
    pub(crate) fn upstream_len(&self) -> usize {
        self.upstream.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settle(interest: &mut Interest) -> (Vec<String>, Vec<String>) {
        let pending = interest.pending();
        for t in &pending.subscribe {
            interest.subscribed(Arc::clone(t));
        }
        for t in &pending.unsubscribe {
            interest.unsubscribed(t);
        }
        let mut sub: Vec<String> = pending.subscribe.iter().map(|t| t.to_string()).collect();
        let mut unsub: Vec<String> = pending.unsubscribe.iter().map(|t| t.to_string()).collect();
        sub.sort();
        unsub.sort();
        (sub, unsub)
    }

    #[test]
    fn one_upstream_subscription_while_any_worker_has_subscribers() {
        let mut interest = Interest::default();
        interest.apply(0, "room".into(), true);
        interest.apply(1, "room".into(), true);
        assert_eq!(settle(&mut interest), (vec!["room".into()], vec![]));
        assert_eq!(interest.workers("room"), &[0, 1]);
        interest.apply(0, "room".into(), false);
        assert_eq!(settle(&mut interest), (vec![], vec![]));
        assert_eq!(interest.workers("room"), &[1]);
        interest.apply(1, "room".into(), false);
        assert_eq!(settle(&mut interest), (vec![], vec!["room".into()]));
        assert!(interest.workers("room").is_empty());
        assert_eq!(interest.upstream_len(), 0);
    }

    #[test]
    fn a_topic_that_comes_and_goes_between_settlements_costs_nothing() {
        let mut interest = Interest::default();
        interest.apply(3, "flash".into(), true);
        interest.apply(3, "flash".into(), false);
        assert_eq!(settle(&mut interest), (vec![], vec![]));
        assert!(!interest.has_pending());
    }

    #[test]
    fn after_a_lost_connection_every_wanted_topic_is_subscribed_again() {
        let mut interest = Interest::default();
        for (w, t) in [(0, "a"), (1, "b"), (1, "c")] {
            interest.apply(w, t.into(), true);
        }
        settle(&mut interest);
        interest.apply(1, "c".into(), false);
        interest.lost_upstream();
        assert_eq!(interest.upstream_len(), 0);
        assert_eq!(
            settle(&mut interest),
            (vec!["a".into(), "b".into()], vec![])
        );
        assert_eq!(interest.upstream_len(), 2);
    }

    #[test]
    fn a_failed_change_is_tried_again() {
        let mut interest = Interest::default();
        interest.apply(0, "a".into(), true);
        let pending = interest.pending();
        assert_eq!(pending.subscribe.len(), 1);
        interest.retry(Arc::clone(&pending.subscribe[0]));
        assert_eq!(settle(&mut interest), (vec!["a".into()], vec![]));
    }

    #[test]
    fn workers_are_kept_once_and_sorted() {
        let mut interest = Interest::default();
        for w in [5, 2, 9, 2, 5] {
            interest.apply(w, "t".into(), true);
        }
        assert_eq!(interest.workers("t"), &[2, 5, 9]);
        interest.apply(7, "t".into(), false);
        assert_eq!(interest.workers("t"), &[2, 5, 9]);
    }
}
