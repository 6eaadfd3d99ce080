//! A hashed timer wheel: each connection has at most one entry, for its next deadline.
//!
//! Activity on a connection does not touch the wheel (it only updates the connection's own
//! timestamps); when an entry comes due, the connection computes its real deadline and is
//! either acted on or put back. So the wheel costs nothing per message.

use std::time::{Duration, Instant};

/// One scheduled check: a connection slot and its generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimerEntry {
    pub(crate) slot: usize,
    pub(crate) generation: u32,
    /// The connection's timer sequence number when this entry was made; an entry whose
    /// number is no longer the connection's was replaced and is ignored.
    pub(crate) seq: u32,
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
}

impl TimerWheel {
    /// A wheel of `slot_count` slots of `tick` each, starting now.
    pub(crate) fn new(now: Instant, tick: Duration, slot_count: usize) -> TimerWheel {
        TimerWheel {
            start: now,
            tick,
            slots: (0..slot_count).map(|_| Vec::new()).collect(),
            next_tick: 0,
        }
    }

    fn tick_of(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.start);
        (since.as_nanos() / self.tick.as_nanos().max(1)) as u64
    }

    /// Schedules `slot`/`generation` for `deadline` (rounded up to the next tick).
    pub(crate) fn schedule(&mut self, slot: usize, generation: u32, seq: u32, deadline: Instant) {
        let due_tick = (self.tick_of(deadline) + 1).max(self.next_tick);
        let index = (due_tick % self.slots.len() as u64) as usize;
        self.slots[index].push(TimerEntry {
            slot,
            generation,
            seq,
            due_tick,
        });
    }

    /// Moves every entry due at or before `now` into `due`.
    pub(crate) fn expire(&mut self, now: Instant, due: &mut Vec<TimerEntry>) {
        let now_tick = self.tick_of(now);
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
                } else {
                    i += 1;
                }
            }
            tick += 1;
        }
        self.next_tick = now_tick + 1;
    }

    /// How long until the next tick boundary (the poll timeout while entries exist).
    pub(crate) fn until_next_tick(&self, now: Instant) -> Duration {
        let next = self.start + self.tick.mul_f64(self.next_tick as f64);
        next.saturating_duration_since(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_fire_at_or_after_their_deadline_and_not_before() {
        let start = Instant::now();
        let tick = Duration::from_millis(10);
        let mut wheel = TimerWheel::new(start, tick, 8);
        wheel.schedule(1, 0, 0, start + Duration::from_millis(25));
        wheel.schedule(2, 0, 0, start + Duration::from_millis(200)); // more than a turn ahead
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
            wheel.schedule(slot, 0, 0, start + Duration::from_millis(10 * slot as u64));
        }
        let mut due = Vec::new();
        wheel.expire(start + Duration::from_secs(5), &mut due);
        assert_eq!(due.len(), 10);
    }
}
