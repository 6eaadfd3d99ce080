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
/// or, when vacant, the next vacant node. 24 bytes, not the 48 of an entry beside a link: an
/// idle connection keeps one node on the wheel (its keepalive deadline), so this is memory
/// every connection pays.
#[derive(Debug, Clone, Copy)]
struct Node {
    /// `Conn` and `Dial`: the sequence number; `User`: the token.
    payload: u64,
    /// The turn of the wheel the entry is due in: its due tick divided by the number of
    /// slots (the slot the node is linked in gives the rest). Saturates at `u32::MAX`, more
    /// than 2,000 years of 5 ms ticks on a 512-slot wheel.
    turn: u32,
    /// The kind's variant (`KIND_*`, or `VACANT`) in the top [`TAG_BITS`] bits, the
    /// connection's slot below them, all ones for `usize::MAX` (the worker's own entries).
    tagged_slot: u32,
    generation: u32,
    next: u32,
}

const KIND_CONN: u32 = 0;
const KIND_USER: u32 = 1;
const KIND_TICK: u32 = 2;
const KIND_BACKLOG: u32 = 3;
const KIND_RECLAIM: u32 = 4;
const KIND_DIAL: u32 = 5;
const VACANT: u32 = 15;
/// Bits of [`Node::tagged_slot`] that hold the kind.
const TAG_BITS: u32 = 4;
/// The slot bits of [`Node::tagged_slot`]; all ones stands for `usize::MAX`. Slots are below
/// it: a worker holds at most 2^24 connections (`limits.max_connections_per_worker`).
const SLOT_MASK: u32 = u32::MAX >> TAG_BITS;

impl Node {
    /// `entry`, packed, linked before `next`, on a wheel of `slots` slots.
    fn occupied(entry: TimerEntry, next: u32, slots: u64) -> Node {
        let (tag, payload) = match entry.kind {
            TimerKind::Conn { seq } => (KIND_CONN, u64::from(seq)),
            TimerKind::User(token) => (KIND_USER, token),
            TimerKind::Tick => (KIND_TICK, 0),
            TimerKind::Backlog => (KIND_BACKLOG, 0),
            TimerKind::Reclaim => (KIND_RECLAIM, 0),
            TimerKind::Dial { seq } => (KIND_DIAL, u64::from(seq)),
        };
        debug_assert!(entry.slot < SLOT_MASK as usize || entry.slot == usize::MAX);
        let slot = u32::try_from(entry.slot).map_or(SLOT_MASK, |s| s.min(SLOT_MASK));
        Node {
            payload,
            turn: u32::try_from(entry.due_tick / slots).unwrap_or(u32::MAX),
            tagged_slot: tag << (32 - TAG_BITS) | slot,
            generation: entry.generation,
            next,
        }
    }

    fn tag(&self) -> u32 {
        self.tagged_slot >> (32 - TAG_BITS)
    }

    fn is_occupied(&self) -> bool {
        self.tag() != VACANT
    }

    fn vacate(&mut self, next: u32) {
        self.tagged_slot = VACANT << (32 - TAG_BITS);
        self.next = next;
    }

    /// The tick the entry is due at, the node being linked in slot `index` of `slots`.
    fn due_tick(&self, index: usize, slots: u64) -> u64 {
        u64::from(self.turn) * slots + index as u64
    }

    /// The entry the node holds (only called on occupied nodes), linked in slot `index` of
    /// `slots`.
    fn entry(&self, index: usize, slots: u64) -> TimerEntry {
        let kind = match self.tag() {
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
        let slot = self.tagged_slot & SLOT_MASK;
        let slot = if slot == SLOT_MASK {
            usize::MAX
        } else {
            slot as usize
        };
        TimerEntry {
            slot,
            generation: self.generation,
            kind,
            due_tick: self.due_tick(index, slots),
        }
    }
}

/// Nodes per chunk of storage: 1.5 MiB, past the mmap threshold lanes gives glibc
/// ([`MemoryConfig::malloc_mmap_threshold`](crate::config::MemoryConfig::malloc_mmap_threshold)),
/// so a full chunk is a mapping of its own whose pages are resident only once a node in them
/// is used, grown and shrunk with `mremap`.
const CHUNK: usize = 1 << 16;

/// The wheel's nodes, in chunks of [`CHUNK`] that never move once full. Only the last one
/// grows, and it is allocated at full capacity (it shrinks after a spike: see
/// [`truncate`](Self::truncate)), so growing copies nothing. A vector doubling to 16,384 nodes
/// for 10,000 connections left its earlier copies in the worker's malloc arena (26 of the 57
/// bytes per idle connection the wheel then cost, with `scripts/idle_memory.py`), and its
/// latest copy, allocated above memory the handshakes had just freed, could keep the arena
/// from trimming that memory.
#[derive(Debug, Default)]
struct Nodes {
    /// All full but the last.
    chunks: Vec<Vec<Node>>,
}

impl Nodes {
    fn get(&self, at: u32) -> &Node {
        let at = at as usize;
        &self.chunks[at / CHUNK][at % CHUNK]
    }

    fn get_mut(&mut self, at: u32) -> &mut Node {
        let at = at as usize;
        &mut self.chunks[at / CHUNK][at % CHUNK]
    }

    /// Nodes in use or vacant in the free list.
    fn len(&self) -> usize {
        self.chunks
            .last()
            .map_or(0, |last| (self.chunks.len() - 1) * CHUNK + last.len())
    }

    /// Appends `node`, allocating a chunk when the last is full, or growing the last to a
    /// full chunk when it was shrunk.
    fn push(&mut self, node: Node) -> u32 {
        let at = self.len() as u32;
        match self.chunks.last_mut() {
            Some(last) if last.len() < CHUNK => {
                if last.len() == last.capacity() {
                    last.reserve_exact(CHUNK - last.len());
                }
                last.push(node);
            }
            _ => {
                let mut chunk = Vec::with_capacity(CHUNK);
                chunk.push(node);
                self.chunks.push(chunk);
            }
        }
        at
    }

    /// Drops the nodes from `len` on and frees the chunks that leaves empty (one stays), and
    /// shrinks the last to `room` nodes or what it holds, whichever is more.
    fn truncate(&mut self, len: usize, room: usize) {
        self.chunks.truncate(len.div_ceil(CHUNK).max(1));
        self.chunks.shrink_to_fit();
        let full = self.chunks.len().saturating_sub(1) * CHUNK;
        if let Some(last) = self.chunks.last_mut() {
            last.truncate(len.saturating_sub(full));
            last.shrink_to(room.saturating_sub(full).clamp(last.len(), CHUNK));
        }
    }

    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.chunks.iter().map(Vec::capacity).sum()
    }
}

/// No node.
const NIL: u32 = u32::MAX;

/// The node storage is never shrunk below this many nodes.
const KEEP_NODES: usize = 64;

/// The wheel.
///
/// Every entry lives in one store of nodes, each slot being a list through it, rather than in
/// one vector per slot: after a spike of connections the nodes are moved down and the chunks
/// past them freed. Per-slot vectors, each grown by a spike and freed after it, left the
/// worker's malloc arena holding their pages (about 2 MiB after a spike of 19,900
/// connections, measured with `scripts/spike_memory.py`).
#[derive(Debug)]
pub(crate) struct TimerWheel {
    start: Instant,
    tick: Duration,
    /// The first node of each slot's list.
    heads: Box<[u32]>,
    nodes: Nodes,
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
            nodes: Nodes::default(),
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

    /// The number of slots, as a divisor of ticks.
    fn slots(&self) -> u64 {
        self.heads.len() as u64
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
        let slots = self.slots();
        for index in 0..self.heads.len() {
            self.unlink_where(index, |node| !keep(&node.entry(index, slots)), |_| {});
        }
        self.stale = 0;
        self.shrink();
        // `wake_tick` stays a tick at or before which nothing is due: dropping entries cannot
        // make one due sooner.
    }

    /// Unlinks from slot `index` every node `drop` selects, handing each one's entry to
    /// `take` (unpacked only then: expiring looks at the due turn alone).
    fn unlink_where(
        &mut self,
        index: usize,
        mut drop: impl FnMut(&Node) -> bool,
        mut take: impl FnMut(TimerEntry),
    ) {
        let slots = self.slots();
        let mut prev = NIL;
        let mut cur = self.heads[index];
        while cur != NIL {
            let node = *self.nodes.get(cur);
            if drop(&node) {
                if prev == NIL {
                    self.heads[index] = node.next;
                } else {
                    self.nodes.get_mut(prev).next = node.next;
                }
                self.nodes.get_mut(cur).vacate(self.free);
                self.free = cur;
                self.len -= 1;
                take(node.entry(index, slots));
            } else {
                prev = cur;
            }
            cur = node.next;
        }
    }

    /// Once fewer than a quarter of the nodes hold entries (after a spike), moves the entries
    /// into the lowest nodes and frees the chunks past twice their number. O(nodes);
    /// amortised O(1) per entry, since the storage must grow again, or lose three quarters of
    /// its entries again, before the next time.
    fn shrink(&mut self) {
        let count = self.nodes.len();
        if count <= KEEP_NODES || self.len * 4 >= count {
            return;
        }
        let target = self.len;
        // The vacant nodes below `target`, lowest first, to move the entries above it into.
        let mut vacant = NIL;
        for at in (0..target as u32).rev() {
            let node = self.nodes.get_mut(at);
            if !node.is_occupied() {
                node.next = vacant;
                vacant = at;
            }
        }
        for index in 0..self.heads.len() {
            let mut prev = NIL;
            let mut cur = self.heads[index];
            while cur != NIL {
                if cur as usize >= target {
                    let to = vacant;
                    vacant = self.nodes.get(to).next;
                    *self.nodes.get_mut(to) = *self.nodes.get(cur);
                    self.nodes.get_mut(cur).vacate(NIL);
                    if prev == NIL {
                        self.heads[index] = to;
                    } else {
                        self.nodes.get_mut(prev).next = to;
                    }
                    cur = to;
                }
                prev = cur;
                cur = self.nodes.get(cur).next;
            }
        }
        self.free = NIL;
        self.nodes.truncate(target, (target * 2).max(KEEP_NODES));
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
        let slots = self.slots();
        let index = (due_tick % slots) as usize;
        let entry = TimerEntry {
            slot,
            generation,
            kind,
            due_tick,
        };
        let node = Node::occupied(entry, self.heads[index], slots);
        let at = if self.free != NIL {
            let at = self.free;
            self.free = self.nodes.get(at).next;
            *self.nodes.get_mut(at) = node;
            at
        } else {
            self.nodes.push(node)
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
            // Due by now: `turn * len + index <= now_tick` (and `index <= tick <= now_tick`).
            let turn = (now_tick - index as u64) / len;
            self.unlink_where(index, |n| u64::from(n.turn) <= turn, |e| due.push(e));
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
    fn a_node_is_24_bytes_and_gives_back_every_entry_it_packs() {
        assert_eq!(std::mem::size_of::<Node>(), 24);
        let kinds = [
            TimerKind::Conn { seq: u32::MAX },
            TimerKind::User(u64::MAX),
            TimerKind::User(0),
            TimerKind::Tick,
            TimerKind::Backlog,
            TimerKind::Reclaim,
            TimerKind::Dial { seq: 7 },
        ];
        let slots = 512;
        for kind in kinds {
            // The largest slot of a worker (2^24 connections), and the worker's own.
            for slot in [0, 12_345, (1 << 24) - 1, SLOT_MASK as usize - 1, usize::MAX] {
                // Due ticks in every slot of the wheel, up to the last turn a node holds.
                for due_tick in [0, 1, 511, 512, 1_000_003, u64::from(u32::MAX) * slots + 511] {
                    let entry = TimerEntry {
                        slot,
                        generation: 0xdead_beef,
                        kind,
                        due_tick,
                    };
                    let node = Node::occupied(entry, 9, slots);
                    assert!(node.is_occupied());
                    let index = (due_tick % slots) as usize;
                    assert_eq!(node.entry(index, slots), entry);
                    assert_eq!(node.next, 9);
                }
            }
        }
    }

    #[test]
    fn nodes_span_chunks_and_shrink_back_to_one() {
        let node = |i: u32| Node {
            payload: 0,
            turn: 0,
            tagged_slot: 0,
            generation: i,
            next: NIL,
        };
        let mut nodes = Nodes::default();
        let count = 2 * CHUNK as u32 + 10;
        for i in 0..count {
            assert_eq!(nodes.push(node(i)), i);
        }
        assert_eq!(nodes.len(), count as usize);
        assert_eq!(nodes.capacity(), 3 * CHUNK);
        assert!((0..count).all(|i| nodes.get(i).generation == i));
        nodes.truncate(CHUNK + 3, CHUNK + 100);
        assert_eq!((nodes.len(), nodes.capacity()), (CHUNK + 3, CHUNK + 100));
        nodes.truncate(5, 64);
        assert_eq!((nodes.len(), nodes.capacity()), (5, 64));
        // The shrunk chunk grows back to a full one, keeping its nodes.
        for i in 5..CHUNK as u32 + 1 {
            assert_eq!(nodes.push(node(i)), i);
        }
        assert_eq!(nodes.capacity(), 2 * CHUNK);
        assert!((0..CHUNK as u32 + 1).all(|i| nodes.get(i).generation == i));
        nodes.truncate(0, 0);
        assert_eq!((nodes.len(), nodes.capacity()), (0, 0));
        assert_eq!(nodes.push(node(7)), 0);
        // Truncating storage that never had a chunk leaves it empty.
        let mut empty = Nodes::default();
        empty.truncate(0, 64);
        assert_eq!((empty.len(), empty.capacity()), (0, 0));
    }

    #[test]
    fn an_entry_past_the_last_turn_a_node_holds_waits_in_that_turn() {
        let slots = 512;
        let far = u64::from(u32::MAX) * slots + 5 * slots + 7;
        let entry = TimerEntry {
            slot: 3,
            generation: 1,
            kind: K,
            due_tick: far,
        };
        let node = Node::occupied(entry, NIL, slots);
        assert_eq!(node.due_tick(7, slots), u64::from(u32::MAX) * slots + 7);
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
            // The nodes in use follow the entries down (within the shrink's slack).
            assert!(
                wheel.nodes.len() <= (8 * wheel.len()).max(4 * KEEP_NODES),
                "round {round}: {} nodes for {} entries",
                wheel.nodes.len(),
                wheel.len()
            );
        }
    }
}
