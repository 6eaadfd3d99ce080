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
    /// The worker's reclaiming of memory after a spike of connections (the slot and
    /// generation are unused).
    Reclaim,
    /// An outbound connection's resolution deadline or back-off: the slot and generation are
    /// the dial's (see `dials.rs`), `seq` its timer sequence number.
    Dial { seq: u32 },
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

/// One entry's place in the wheel: the entry, packed, and the next node of its slot's list,
/// or, when vacant, the next vacant node. 32 bytes, not the 48 of an entry beside a link: an
/// idle connection keeps one node on the wheel (its keepalive deadline), so this is memory
/// every connection pays.
#[derive(Debug, Clone, Copy)]
struct Node {
    due_tick: u64,
    /// `Conn` and `Dial`: the sequence number; `User`: the token.
    payload: u64,
    /// The slot, with `u32::MAX` for `usize::MAX` (the worker's own entries).
    slot: u32,
    generation: u32,
    next: u32,
    /// The kind's variant (`KIND_*`), or `VACANT`.
    tag: u8,
}

const KIND_CONN: u8 = 0;
const KIND_USER: u8 = 1;
const KIND_TICK: u8 = 2;
const KIND_BACKLOG: u8 = 3;
const KIND_RECLAIM: u8 = 4;
const KIND_DIAL: u8 = 5;
const VACANT: u8 = u8::MAX;

impl Node {
    /// `entry`, packed, linked before `next`.
    fn occupied(entry: TimerEntry, next: u32) -> Node {
        let (tag, payload) = match entry.kind {
            TimerKind::Conn { seq } => (KIND_CONN, u64::from(seq)),
            TimerKind::User(token) => (KIND_USER, token),
            TimerKind::Tick => (KIND_TICK, 0),
            TimerKind::Backlog => (KIND_BACKLOG, 0),
            TimerKind::Reclaim => (KIND_RECLAIM, 0),
            TimerKind::Dial { seq } => (KIND_DIAL, u64::from(seq)),
        };
        Node {
            due_tick: entry.due_tick,
            payload,
            slot: u32::try_from(entry.slot).unwrap_or(u32::MAX),
            generation: entry.generation,
            next,
            tag,
        }
    }

    fn is_occupied(&self) -> bool {
        self.tag != VACANT
    }

    /// The entry the node holds (only called on occupied nodes).
    fn entry(&self) -> TimerEntry {
        let kind = match self.tag {
            KIND_CONN => TimerKind::Conn {
                seq: self.payload as u32,
            },
            KIND_USER => TimerKind::User(self.payload),
            KIND_TICK => TimerKind::Tick,
            KIND_BACKLOG => TimerKind::Backlog,
            KIND_RECLAIM => TimerKind::Reclaim,
            _ => TimerKind::Dial {
                seq: self.payload as u32,
            },
        };
        let slot = if self.slot == u32::MAX {
            usize::MAX
        } else {
            self.slot as usize
        };
        TimerEntry {
            slot,
            generation: self.generation,
            kind,
            due_tick: self.due_tick,
        }
    }
}

/// No node.
const NIL: u32 = u32::MAX;

/// The node storage is never shrunk below this many nodes.
const KEEP_NODES: usize = 64;

/// The wheel.
///
/// Every entry lives in one vector of nodes, each slot being a list through it, rather than in
/// one vector per slot: after a spike of connections the nodes are moved down and the vector
/// shrunk with `realloc`, never freed. Per-slot vectors, each grown by a spike and freed after
/// it, left the worker's malloc arena holding their pages (about 2 MiB after a spike of 19,900
/// connections, measured with `scripts/spike_memory.py`); one vector past malloc's mmap
/// threshold is mapped on its own and gives its pages back when it shrinks.
#[derive(Debug)]
pub(crate) struct TimerWheel {
    start: Instant,
    tick: Duration,
    /// The first node of each slot's list.
    heads: Box<[u32]>,
    nodes: Vec<Node>,
    /// The first vacant node.
    free: u32,
    /// The next tick to process.
    next_tick: u64,
    /// Entries in all slots.
    len: usize,
    /// A tick at or before which nothing is due: the first tick whose slot holds an entry,
    /// when known.
    wake_tick: Option<u64>,
    /// Entries that may have gone stale since the last compaction (see
    /// [`note_stale`](Self::note_stale)).
    stale: usize,
}

impl TimerWheel {
    /// A wheel of `slot_count` slots of `tick` each, starting now.
    pub(crate) fn new(now: Instant, tick: Duration, slot_count: usize) -> TimerWheel {
        TimerWheel {
            start: now,
            tick: tick.max(Duration::from_micros(100)),
            heads: vec![NIL; slot_count.max(1)].into_boxed_slice(),
            nodes: Vec::new(),
            free: NIL,
            next_tick: 0,
            len: 0,
            wake_tick: None,
            stale: 0,
        }
    }

    /// Entries in the wheel, live and stale.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.len
    }

    /// Nodes the wheel's storage has room for (a spike's high-water mark until it shrinks).
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.nodes.capacity()
    }

    /// Notes that an entry may have gone stale before it was due: its connection was removed,
    /// or its deadline replaced by a new entry. Such an entry is dropped when it comes due, at
    /// the latest; returns true when enough notes have been taken since the last compaction
    /// (half as many as there are entries, or as slots when there are fewer entries) that the
    /// caller should [`compact`](Self::compact) the wheel now. A compaction walks every slot
    /// and node, so it costs at most a few checks per note: amortised O(1) per removed
    /// connection or replaced deadline, nothing per message.
    pub(crate) fn note_stale(&mut self) -> bool {
        self.stale += 1;
        self.stale * 2 >= self.len.max(self.heads.len())
    }

    /// Drops every entry `keep` rejects (stale ones: see [`note_stale`](Self::note_stale)),
    /// and gives back the storage of what was dropped once it is most of it.
    pub(crate) fn compact(&mut self, mut keep: impl FnMut(&TimerEntry) -> bool) {
        for index in 0..self.heads.len() {
            self.unlink_where(index, |node| !keep(&node.entry()), |_| {});
        }
        self.stale = 0;
        self.shrink();
        // `wake_tick` stays a tick at or before which nothing is due: dropping entries cannot
        // make one due sooner.
    }

    /// Unlinks from slot `index` every node `drop` selects, handing each one's entry to
    /// `take` (unpacked only then: expiring looks at the due tick alone).
    fn unlink_where(
        &mut self,
        index: usize,
        mut drop: impl FnMut(&Node) -> bool,
        mut take: impl FnMut(TimerEntry),
    ) {
        let mut prev = NIL;
        let mut cur = self.heads[index];
        while cur != NIL {
            let node = self.nodes[cur as usize];
            if drop(&node) {
                if prev == NIL {
                    self.heads[index] = node.next;
                } else {
                    self.nodes[prev as usize].next = node.next;
                }
                let vacated = &mut self.nodes[cur as usize];
                vacated.tag = VACANT;
                vacated.next = self.free;
                self.free = cur;
                self.len -= 1;
                take(node.entry());
            } else {
                prev = cur;
            }
            cur = node.next;
        }
    }

    /// Once fewer than a quarter of the nodes hold entries (after a spike), moves the entries
    /// into the lowest nodes and shrinks the storage to twice their number (never freeing it).
    /// O(nodes); amortised O(1) per entry, since the storage must grow again, or lose three
    /// quarters of its entries again, before the next time.
    fn shrink(&mut self) {
        let count = self.nodes.len();
        if count <= KEEP_NODES || self.len * 4 >= count {
            return;
        }
        let target = self.len;
        // The vacant nodes below `target`, lowest first, to move the entries above it into.
        let mut vacant = NIL;
        for at in (0..target).rev() {
            if !self.nodes[at].is_occupied() {
                self.nodes[at].next = vacant;
                vacant = at as u32;
            }
        }
        for index in 0..self.heads.len() {
            let mut prev = NIL;
            let mut cur = self.heads[index];
            while cur != NIL {
                if cur as usize >= target {
                    let to = vacant;
                    vacant = self.nodes[to as usize].next;
                    self.nodes[to as usize] = self.nodes[cur as usize];
                    self.nodes[cur as usize].tag = VACANT;
                    if prev == NIL {
                        self.heads[index] = to;
                    } else {
                        self.nodes[prev as usize].next = to;
                    }
                    cur = to;
                }
                prev = cur;
                cur = self.nodes[cur as usize].next;
            }
        }
        self.nodes.truncate(target);
        self.free = NIL;
        self.nodes.shrink_to((target * 2).max(KEEP_NODES));
    }

    fn tick_of(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.start);
        (since.as_nanos() / self.tick.as_nanos().max(1)) as u64
    }

    /// The first tick at or after `next_tick` that visits slot `index`.
    fn visit_tick(&self, index: usize) -> u64 {
        let len = self.heads.len() as u64;
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
        let index = (due_tick % self.heads.len() as u64) as usize;
        let entry = TimerEntry {
            slot,
            generation,
            kind,
            due_tick,
        };
        let node = Node::occupied(entry, self.heads[index]);
        let at = if self.free != NIL {
            let at = self.free;
            self.free = self.nodes[at as usize].next;
            self.nodes[at as usize] = node;
            at
        } else {
            self.nodes.push(node);
            (self.nodes.len() - 1) as u32
        };
        self.heads[index] = at;
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
        let len = self.heads.len() as u64;
        // Never walk more than one full turn: every slot is looked at once.
        let first = self.next_tick.max(now_tick.saturating_sub(len - 1));
        for tick in first..=now_tick {
            let index = (tick % len) as usize;
            self.unlink_where(index, |n| n.due_tick <= now_tick, |e| due.push(e));
        }
        self.next_tick = now_tick + 1;
        self.wake_tick = None;
        self.shrink();
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
                let len = self.heads.len();
                let first = (0..len as u64)
                    .map(|ahead| self.next_tick + ahead)
                    .find(|t| self.heads[(t % len as u64) as usize] != NIL)
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

    #[test]
    fn a_node_is_32_bytes_and_gives_back_every_entry_it_packs() {
        assert_eq!(std::mem::size_of::<Node>(), 32);
        let kinds = [
            TimerKind::Conn { seq: u32::MAX },
            TimerKind::User(u64::MAX),
            TimerKind::User(0),
            TimerKind::Tick,
            TimerKind::Backlog,
            TimerKind::Reclaim,
            TimerKind::Dial { seq: 7 },
        ];
        for kind in kinds {
            for slot in [0, 12_345, u32::MAX as usize - 1, usize::MAX] {
                let entry = TimerEntry {
                    slot,
                    generation: 0xdead_beef,
                    kind,
                    due_tick: u64::MAX - 3,
                };
                let node = Node::occupied(entry, 9);
                assert!(node.is_occupied());
                assert_eq!(node.entry(), entry);
                assert_eq!(node.next, 9);
            }
        }
    }

    /// Expires the wheel at `now` and checks that exactly the model's entries due by then
    /// fired (by slot), then drops them from the model.
    fn expire_and_compare(
        wheel: &mut TimerWheel,
        now: Instant,
        pending: &mut Vec<(usize, Instant)>,
        context: &str,
    ) {
        let mut due = Vec::new();
        wheel.expire(now, &mut due);
        let mut fired: Vec<usize> = due.iter().map(|e| e.slot).collect();
        fired.sort_unstable();
        let mut expected: Vec<usize> = pending.iter().filter(|p| p.1 <= now).map(|p| p.0).collect();
        expected.sort_unstable();
        assert_eq!(fired, expected, "{context}");
        pending.retain(|p| p.1 > now);
    }

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
            expire_and_compare(&mut wheel, now, &mut pending, &format!("id {id}"));
            assert_eq!(pending.len(), wheel.len);
        }
    }
    /// Schedules like a worker during a spike: every connection's handshake entry (seq 0),
    /// then, once upgraded, its keepalive entry (seq 1), which makes the first one stale.
    fn spike(wheel: &mut TimerWheel, start: Instant, live: &mut [bool]) {
        let live_entry = |live: &[bool], e: &TimerEntry| match e.kind {
            TimerKind::Conn { seq } => live.get(e.slot).copied().unwrap_or(false) && seq == 1,
            _ => true,
        };
        let conns = live.len();
        for (id, live) in live.iter_mut().enumerate() {
            wheel.schedule(id, 0, K, start + Duration::from_secs(10));
            *live = true;
        }
        for id in 0..conns {
            wheel.schedule(
                id,
                0,
                TimerKind::Conn { seq: 1 },
                start + Duration::from_secs(30),
            );
            if wheel.note_stale() {
                wheel.compact(|e| live_entry(live, e));
            }
            // Stale entries never outnumber the live ones by much.
            assert!(wheel.len() <= 2 * conns + 512, "{}", wheel.len());
        }
    }

    #[test]
    fn compaction_drops_the_entries_of_removed_connections_and_gives_the_storage_back() {
        let start = Instant::now();
        let mut wheel = TimerWheel::new(start, Duration::from_millis(5), 512);
        let conns = 20_000;
        let mut live = vec![false; conns];
        spike(&mut wheel, start, &mut live);
        let high_water = wheel.capacity();
        assert!(high_water >= conns);
        // All but every 1000th connection goes; each removal is noted.
        for id in (0..conns).filter(|id| id % 1000 != 0) {
            live[id] = false;
            if wheel.note_stale() {
                let live = &live;
                wheel.compact(|e| match e.kind {
                    TimerKind::Conn { seq } => live[e.slot] && seq == 1,
                    _ => true,
                });
            }
        }
        // What the worker's reclaiming does after the spike.
        wheel.compact(|e| matches!(e.kind, TimerKind::Conn { seq: 1 }) && live[e.slot]);
        assert_eq!(wheel.len(), 20);
        // From the spike's high-water mark down to a little slack over what is left.
        assert!(wheel.capacity() <= 2 * KEEP_NODES, "{}", wheel.capacity());
        // The survivors' entries were moved, not lost: each fires once, when due.
        let mut due = Vec::new();
        wheel.expire(start + Duration::from_secs(29), &mut due);
        assert!(due.is_empty());
        wheel.expire(start + Duration::from_millis(30_010), &mut due);
        let mut fired: Vec<usize> = due.iter().map(|e| e.slot).collect();
        fired.sort_unstable();
        assert_eq!(fired, (0..conns).step_by(1000).collect::<Vec<_>>());
        assert_eq!(wheel.len(), 0);
        assert_eq!(wheel.until_next(start), None);
    }

    #[test]
    fn a_burst_of_entries_leaves_no_storage_behind_once_they_have_fired() {
        // Only `schedule` and `expire`, as before compaction existed: 20,000 deadlines within
        // 2 s (four turns of the wheel), all fired by 3 s.
        let start = Instant::now();
        let mut wheel = TimerWheel::new(start, Duration::from_millis(5), 100);
        for id in 0..20_000 {
            let at = start + Duration::from_micros(id as u64 * 100);
            wheel.schedule(id, 0, K, at);
        }
        assert!(wheel.capacity() >= 20_000);
        let mut due = Vec::new();
        wheel.expire(start + Duration::from_secs(3), &mut due);
        assert_eq!(due.len(), 20_000);
        assert!(wheel.capacity() <= KEEP_NODES, "{}", wheel.capacity());
        // And the wheel still works.
        wheel.schedule(7, 0, K, start + Duration::from_secs(4));
        due.clear();
        wheel.expire(start + Duration::from_millis(4_010), &mut due);
        assert_eq!(due.iter().map(|e| e.slot).collect::<Vec<_>>(), vec![7]);
    }

    #[test]
    fn against_a_reference_compaction_and_shrinking_lose_no_live_entry() {
        let start = Instant::now();
        let tick = Duration::from_millis(5);
        let mut wheel = TimerWheel::new(start, tick, 16);
        let mut pending: Vec<(usize, Instant)> = Vec::new();
        let mut state = 777u64;
        let mut rand = |n: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % n
        };
        let mut now = start;
        let mut id = 0;
        for round in 0..400 {
            // Bursts of entries (some rounds many), then random removals, then time passes.
            let burst = if round % 50 == 0 { 2_000 } else { rand(20) };
            for _ in 0..burst {
                let at = now + Duration::from_micros(rand(2_000_000));
                wheel.schedule(id, 0, K, at);
                let due_tick = wheel.tick_of(at) + 1;
                pending.push((id, start + tick * due_tick as u32));
                id += 1;
            }
            let cut = rand(4);
            pending.retain(|p| p.0 as u64 % 4 != cut || rand(3) != 0);
            let keep: std::collections::HashSet<usize> = pending.iter().map(|p| p.0).collect();
            wheel.compact(|e| keep.contains(&e.slot));
            assert_eq!(wheel.len(), pending.len(), "round {round}");
            if let (Some(sleep), Some(first)) =
                (wheel.until_next(now), pending.iter().map(|p| p.1).min())
            {
                assert!(now + sleep <= first, "round {round}");
            }
            now += Duration::from_micros(rand(100_000));
            expire_and_compare(&mut wheel, now, &mut pending, &format!("round {round}"));
            // The storage follows the entries down (within the shrink's slack).
            assert!(
                wheel.capacity() <= (8 * wheel.len()).max(4 * KEEP_NODES),
                "round {round}: {} nodes for {} entries",
                wheel.capacity(),
                wheel.len()
            );
        }
    }
}
