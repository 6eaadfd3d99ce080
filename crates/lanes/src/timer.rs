//! A hashed timer wheel for a worker: each connection's next protocol deadline, the
//! application's one-shot timers, and the worker's tick.
//!
//! Activity on a connection does not touch the wheel (it only updates the connection's own
//! timestamps); when an entry comes due, the connection computes its real deadline and is
//! either acted on or put back. So the wheel costs nothing per message. The worker sleeps
//! until the first slot that holds an entry, not tick by tick, and not at all when the wheel
//! is empty.

use std::time::{Duration, Instant};

/// What an entry is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimerKind {
    /// The connection's protocol deadline (handshake, keepalive, close). `seq` is the
    /// connection's timer sequence number when the entry was made; an entry whose number is no
    /// longer the connection's was replaced and is ignored.
    Conn { seq: u32 },
    /// An application timer on the connection, with its token.
    User(u64),
    /// The worker's tick (the slot and generation are unused).
    Tick,
    /// The age check of the connection's unwritten output
    /// ([`Backpressure::max_age`](crate::config::Backpressure::max_age)).
    Backlog,
}

/// One scheduled entry: a connection slot and generation, and what it is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimerEntry {
    pub(crate) slot: usize,
    pub(crate) generation: u32,
    pub(crate) kind: TimerKind,
    /// Absolute tick at which the entry is due.
    due_tick: u64,
}

/// The wheel.
#[derive(Debug)]
pub(crate) struct TimerWheel {
    start: Instant,
    tick: Duration,
    slots: Vec<Vec<TimerEntry>>,
    /// The next tick to process.
    next_tick: u64,
    /// Entries in all slots.
    len: usize,
    /// A tick at or before which nothing is due: the first tick whose slot holds an entry,
    /// when known.
    wake_tick: Option<u64>,
}

impl TimerWheel {
    /// A wheel of `slot_count` slots of `tick` each, starting now.
    pub(crate) fn new(now: Instant, tick: Duration, slot_count: usize) -> TimerWheel {
        TimerWheel {
            start: now,
            tick: tick.max(Duration::from_micros(100)),
            slots: (0..slot_count.max(1)).map(|_| Vec::new()).collect(),
            next_tick: 0,
            len: 0,
            wake_tick: None,
        }
    }

    fn tick_of(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.start);
        (since.as_nanos() / self.tick.as_nanos().max(1)) as u64
    }

    /// The first tick at or after `next_tick` that visits slot `index`.
    fn visit_tick(&self, index: usize) -> u64 {
        let len = self.slots.len() as u64;
        let ahead = (index as u64 + len - self.next_tick % len) % len;
        self.next_tick + ahead
    }

    /// Schedules an entry for `deadline` (rounded up to the next tick).
    pub(crate) fn schedule(
        &mut self,
        slot: usize,
        generation: u32,
        kind: TimerKind,
        deadline: Instant,
    ) {
        let due_tick = (self.tick_of(deadline) + 1).max(self.next_tick);
        let index = (due_tick % self.slots.len() as u64) as usize;
        self.slots[index].push(TimerEntry {
            slot,
            generation,
            kind,
            due_tick,
        });
        self.len += 1;
        let visit = self.visit_tick(index);
        if let Some(wake) = self.wake_tick {
            self.wake_tick = Some(wake.min(visit));
        }
    }

    /// Moves every entry due at or before `now` into `due`.
    pub(crate) fn expire(&mut self, now: Instant, due: &mut Vec<TimerEntry>) {
        let now_tick = self.tick_of(now);
        if now_tick < self.next_tick {
            return;
        }
        if self.len == 0 || self.wake_tick.is_some_and(|w| w > now_tick) {
            // Nothing can be due yet: skip the walk.
            self.next_tick = now_tick + 1;
            return;
        }
        let len = self.slots.len() as u64;
        // Never walk more than one full turn: every slot is looked at once.
        let first = self.next_tick.max(now_tick.saturating_sub(len - 1));
        let mut tick = first;
        while tick <= now_tick {
            let index = (tick % len) as usize;
            let slot = &mut self.slots[index];
            let mut i = 0;
            while i < slot.len() {
                if slot[i].due_tick <= now_tick {
                    due.push(slot.swap_remove(i));
                    self.len -= 1;
                } else {
                    i += 1;
                }
            }
            tick += 1;
        }
        self.next_tick = now_tick + 1;
        self.wake_tick = None;
    }

    /// How long the worker may sleep before an entry can be due: `None` when the wheel is
    /// empty.
    pub(crate) fn until_next(&mut self, now: Instant) -> Option<Duration> {
        if self.len == 0 {
            return None;
        }
        let wake = match self.wake_tick {
            Some(wake) => wake,
            None => {
                let len = self.slots.len();
                let first = (0..len as u64)
                    .map(|ahead| self.next_tick + ahead)
                    .find(|t| !self.slots[(t % len as u64) as usize].is_empty())
                    .unwrap_or(self.next_tick);
                self.wake_tick = Some(first);
                first
            }
        };
        let at = self.start + self.tick.mul_f64(wake as f64);
        Some(at.saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: TimerKind = TimerKind::Conn { seq: 0 };

    #[test]
    fn entries_fire_at_or_after_their_deadline_and_not_before() {
        let start = Instant::now();
        let tick = Duration::from_millis(10);
        let mut wheel = TimerWheel::new(start, tick, 8);
        wheel.schedule(1, 0, K, start + Duration::from_millis(25));
        wheel.schedule(2, 0, K, start + Duration::from_millis(200)); // more than a turn ahead
        let mut due = Vec::new();
        wheel.expire(start + Duration::from_millis(20), &mut due);
        assert!(due.is_empty());
        wheel.expire(start + Duration::from_millis(40), &mut due);
        assert_eq!(due.iter().map(|e| e.slot).collect::<Vec<_>>(), vec![1]);
        due.clear();
        wheel.expire(start + Duration::from_millis(150), &mut due);
        assert!(due.is_empty());
        wheel.expire(start + Duration::from_millis(215), &mut due);
        assert_eq!(due.iter().map(|e| e.slot).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn a_long_pause_expires_everything_due() {
        let start = Instant::now();
        let mut wheel = TimerWheel::new(start, Duration::from_millis(10), 4);
        for slot in 0..10 {
            wheel.schedule(slot, 0, K, start + Duration::from_millis(10 * slot as u64));
        }
        let mut due = Vec::new();
        wheel.expire(start + Duration::from_secs(5), &mut due);
        assert_eq!(due.len(), 10);
    }

    #[test]
    fn against_a_reference_entries_fire_exactly_when_due_and_sleeps_never_overshoot() {
        let start = Instant::now();
        let tick = Duration::from_millis(5);
        let mut wheel = TimerWheel::new(start, tick, 16);
        assert_eq!(wheel.until_next(start), None);
        // Reference: entry id -> the instant at which it becomes due (the tick boundary after
        // its deadline).
        let mut pending: Vec<(usize, Instant)> = Vec::new();
        let mut state = 12345u64;
        let mut rand = |n: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % n
        };
        let mut now = start;
        for id in 0..3000 {
            if rand(3) != 0 {
                let at = now + Duration::from_micros(rand(300_000));
                wheel.schedule(id, 0, K, at);
                let due_tick = wheel.tick_of(at) + 1;
                pending.push((id, start + tick * due_tick as u32));
            }
            let earliest = pending.iter().map(|p| p.1).min();
            match (wheel.until_next(now), earliest) {
                (None, None) => {}
                (Some(sleep), Some(first)) => assert!(now + sleep <= first, "id {id}"),
                other => panic!("id {id}: {other:?}"),
            }
            now += Duration::from_micros(rand(20_000));
            let mut due = Vec::new();
            wheel.expire(now, &mut due);
            let mut fired: Vec<usize> = due.iter().map(|e| e.slot).collect();
            fired.sort_unstable();
            let mut expected: Vec<usize> =
                pending.iter().filter(|p| p.1 <= now).map(|p| p.0).collect();
            expected.sort_unstable();
            assert_eq!(fired, expected, "id {id}");
            pending.retain(|p| p.1 > now);
            assert_eq!(pending.len(), wheel.len);
        }
    }
}
