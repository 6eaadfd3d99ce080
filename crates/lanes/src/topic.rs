//! A worker's topics: for each topic name, the set of this worker's connections subscribed to
//! it. Every worker keeps its own sets, so subscribing and delivering take no locks; a publish
//! reaches the other workers through their command queues.

use std::collections::HashMap;
use std::sync::Arc;

use slab::Slab;

/// One of a connection's subscriptions: the topic and its entry in the topic's subscriber set,
/// so unsubscribing is O(1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Subscription {
    topic: usize,
    entry: usize,
}

/// A connection's subscriptions: one pointer in its slot, and the list on the heap once it has
/// one (a `Vec` in every slot cost each connection 16 bytes more, subscribed or not).
#[derive(Debug, Default)]
#[allow(clippy::box_collection)]
pub(crate) struct Subscriptions(Option<Box<Vec<Subscription>>>);

impl Subscriptions {
    /// Whether there are none.
    pub(crate) fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn as_slice(&self) -> &[Subscription] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }

    fn push(&mut self, sub: Subscription) {
        self.0.get_or_insert_with(Box::default).push(sub);
    }

    /// Takes the subscription to `topic` out, if there is one (the list goes once empty).
    fn take(&mut self, topic: usize) -> Option<Subscription> {
        let list = self.0.as_mut()?;
        let at = list.iter().position(|s| s.topic == topic)?;
        let sub = list.swap_remove(at);
        if list.is_empty() {
            self.0 = None;
        }
        Some(sub)
    }

    /// Takes them all out.
    fn take_all(&mut self) -> Vec<Subscription> {
        self.0.take().map_or_else(Vec::new, |list| *list)
    }
}

/// A subscriber: the connection's slot and generation.
pub(crate) type Subscriber = (usize, u32);

#[derive(Debug)]
struct Topic {
    name: Box<str>,
    subscribers: Slab<Subscriber>,
}

/// The topics of one worker.
#[derive(Debug, Default)]
pub(crate) struct Topics {
    by_name: HashMap<Box<str>, usize>,
    topics: Slab<Topic>,
    /// Subscriptions in all topics.
    count: usize,
    /// With a broker bridge: the topics that got their first subscriber here (`true`) or lost
    /// their last one (`false`) since the worker last sent them on, in order.
    changes: Option<Vec<(Arc<str>, bool)>>,
}

/// What became of a subscribe or unsubscribe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// Done.
    Done,
    /// Nothing to do: already subscribed, or not subscribed.
    Unchanged,
    /// Refused: the connection is at its subscription limit.
    AtLimit,
}

impl Topics {
    /// Topics that note their first subscriber and their last one leaving, for a broker bridge
    /// ([`take_changes`](Self::take_changes)).
    #[cfg(feature = "bridge")]
    pub(crate) fn noting_changes() -> Topics {
        Topics {
            changes: Some(Vec::new()),
            ..Topics::default()
        }
    }

    /// The changes noted since the last call (empty without a bridge); the caller gives back
    /// what it could not send with [`keep_changes`](Self::keep_changes).
    #[cfg(feature = "bridge")]
    pub(crate) fn take_changes(&mut self) -> Option<Vec<(Arc<str>, bool)>> {
        let changes = self.changes.as_mut()?;
        if changes.is_empty() {
            return None;
        }
        Some(std::mem::take(changes))
    }

    /// Puts back changes not sent yet, before any noted since.
    #[cfg(feature = "bridge")]
    pub(crate) fn keep_changes(&mut self, mut unsent: Vec<(Arc<str>, bool)>) {
        if let Some(changes) = self.changes.as_mut() {
            unsent.append(changes);
            *changes = unsent;
        }
    }

    /// Subscriptions in all topics.
    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// Subscribes the connection `subscriber`, whose subscriptions are `subs`, to `name`.
    pub(crate) fn subscribe(
        &mut self,
        name: &str,
        subscriber: Subscriber,
        subs: &mut Subscriptions,
        limit: usize,
    ) -> Change {
        let topic = match self.by_name.get(name) {
            Some(&topic) => {
                if subs.as_slice().iter().any(|s| s.topic == topic) {
                    return Change::Unchanged;
                }
                topic
            }
            None => {
                if subs.len() >= limit {
                    return Change::AtLimit;
                }
                let topic = self.topics.insert(Topic {
                    name: name.into(),
                    subscribers: Slab::new(),
                });
                self.by_name.insert(name.into(), topic);
                if let Some(changes) = self.changes.as_mut() {
                    changes.push((name.into(), true));
                }
                topic
            }
        };
        if subs.len() >= limit {
            return Change::AtLimit;
        }
        let entry = self.topics[topic].subscribers.insert(subscriber);
        subs.push(Subscription { topic, entry });
        self.count += 1;
        Change::Done
    }

    /// Unsubscribes the connection whose subscriptions are `subs` from `name`.
    pub(crate) fn unsubscribe(&mut self, name: &str, subs: &mut Subscriptions) -> Change {
        let Some(&topic) = self.by_name.get(name) else {
            return Change::Unchanged;
        };
        let Some(sub) = subs.take(topic) else {
            return Change::Unchanged;
        };
        self.remove(sub);
        Change::Done
    }

    /// Removes every subscription in `subs` (the connection is going away).
    /// The names of the topics `subs` are subscriptions to.
    pub(crate) fn names_of(&self, subs: &Subscriptions) -> Vec<Box<str>> {
        subs.as_slice()
            .iter()
            .filter_map(|s| self.topics.get(s.topic))
            .map(|t| t.name.clone())
            .collect()
    }

    pub(crate) fn unsubscribe_all(&mut self, subs: &mut Subscriptions) {
        for sub in subs.take_all() {
            self.remove(sub);
        }
    }

    fn remove(&mut self, sub: Subscription) {
        let Some(topic) = self.topics.get_mut(sub.topic) else {
            return;
        };
        if topic.subscribers.try_remove(sub.entry).is_some() {
            self.count -= 1;
        }
        if topic.subscribers.is_empty() {
            // The last subscriber left: forget the topic, so names cannot pile up.
            let topic = self.topics.remove(sub.topic);
            self.by_name.remove(&topic.name);
            if let Some(changes) = self.changes.as_mut() {
                changes.push((Arc::from(topic.name), false));
            }
        }
    }

    /// The subscribers of `name`, if it has any.
    pub(crate) fn subscribers(&self, name: &str) -> impl Iterator<Item = Subscriber> + '_ {
        self.by_name
            .get(name)
            .and_then(|&t| self.topics.get(t))
            .into_iter()
            .flat_map(|t| t.subscribers.iter().map(|(_, &s)| s))
    }

    /// How many of this worker's connections are subscribed to `name`.
    pub(crate) fn subscriber_count(&self, name: &str) -> usize {
        self.by_name
            .get(name)
            .and_then(|&t| self.topics.get(t))
            .map_or(0, |t| t.subscribers.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_unsubscribe_and_cleanup() {
        let mut topics = Topics::default();
        let mut a = Subscriptions::default();
        let mut b = Subscriptions::default();
        assert_eq!(topics.subscribe("t", (1, 0), &mut a, 8), Change::Done);
        assert_eq!(topics.subscribe("t", (1, 0), &mut a, 8), Change::Unchanged);
        assert_eq!(topics.subscribe("t", (2, 5), &mut b, 8), Change::Done);
        assert_eq!(topics.subscribe("u", (2, 5), &mut b, 8), Change::Done);
        let mut subs: Vec<_> = topics.subscribers("t").collect();
        subs.sort();
        assert_eq!(subs, vec![(1, 0), (2, 5)]);
        assert_eq!(topics.count(), 3);
        assert_eq!(topics.unsubscribe("t", &mut a), Change::Done);
        assert_eq!(topics.unsubscribe("t", &mut a), Change::Unchanged);
        assert_eq!(topics.subscribers("t").collect::<Vec<_>>(), vec![(2, 5)]);
        topics.unsubscribe_all(&mut b);
        assert_eq!(topics.count(), 0);
        assert_eq!(topics.subscribers("t").count(), 0);
        assert!(topics.by_name.is_empty() && topics.topics.is_empty());
    }

    #[test]
    #[cfg(feature = "bridge")]
    fn first_and_last_subscribers_are_noted_in_order() {
        let mut plain = Topics::default();
        plain.subscribe("t", (1, 0), &mut Subscriptions::default(), 8);
        assert_eq!(plain.take_changes(), None);

        let mut topics = Topics::noting_changes();
        let (mut a, mut b) = (Subscriptions::default(), Subscriptions::default());
        topics.subscribe("t", (1, 0), &mut a, 8);
        topics.subscribe("t", (2, 0), &mut b, 8);
        topics.subscribe("u", (2, 0), &mut b, 8);
        topics.unsubscribe("t", &mut a);
        let changes = topics.take_changes().unwrap();
        let plain: Vec<(&str, bool)> = changes.iter().map(|(t, on)| (&**t, *on)).collect();
        assert_eq!(plain, [("t", true), ("u", true)]);
        topics.unsubscribe_all(&mut b);
        topics.keep_changes(vec![("x".into(), true)]);
        let changes = topics.take_changes().unwrap();
        let mut plain: Vec<(&str, bool)> = changes.iter().map(|(t, on)| (&**t, *on)).collect();
        // The kept change first; the two removals in either order.
        assert_eq!(plain.remove(0), ("x", true));
        plain.sort();
        assert_eq!(plain, [("t", false), ("u", false)]);
        assert_eq!(topics.take_changes(), None);
    }

    #[test]
    fn the_limit_bounds_subscriptions_per_connection() {
        let mut topics = Topics::default();
        let mut a = Subscriptions::default();
        let mut other = Subscriptions::default();
        assert_eq!(topics.subscribe("x", (9, 0), &mut other, 2), Change::Done);
        assert_eq!(topics.subscribe("t1", (1, 0), &mut a, 2), Change::Done);
        assert_eq!(topics.subscribe("t2", (1, 0), &mut a, 2), Change::Done);
        assert_eq!(topics.subscribe("t3", (1, 0), &mut a, 2), Change::AtLimit);
        assert_eq!(topics.subscribe("x", (1, 0), &mut a, 2), Change::AtLimit);
        assert_eq!(topics.subscriber_count("x"), 1);
        assert_eq!(topics.subscriber_count("t3"), 0);
    }
}
