//! Which connection ids are live, readable from any thread: the check that lets a send from
//! another thread report a stale id at once.
//!
//! Each worker owns one table and is its only writer; other threads only read. A slot's word is
//! `generation << 1 | 1` while a connection is open in it, [`MOVED`]` | generation << 1` after
//! that connection moved to another worker (until the slot is used again), and 0 otherwise. The table is made of
//! chunks allocated the first time a slot in them is used, so a worker that never has many
//! connections never pays for a table sized for its maximum.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The flag of a slot whose connection moved to another worker.
const MOVED: u64 = 1 << 63;

/// Slots per chunk.
const CHUNK: usize = 256;

type Chunk = Box<[AtomicU64]>;

/// The live-id table of one worker.
#[derive(Debug)]
pub(crate) struct LiveTable {
    chunks: Box<[OnceLock<Chunk>]>,
}

impl LiveTable {
    /// A table for slots `0..slots`.
    pub(crate) fn new(slots: usize) -> LiveTable {
        LiveTable {
            chunks: (0..slots.div_ceil(CHUNK))
                .map(|_| OnceLock::new())
                .collect(),
        }
    }

    fn word(&self, slot: usize) -> Option<&AtomicU64> {
        self.chunks.get(slot / CHUNK)?.get()?.get(slot % CHUNK)
    }

    /// Marks `slot` as holding the open connection of `generation` (owner only).
    pub(crate) fn open(&self, slot: usize, generation: u32) {
        let Some(chunk) = self.chunks.get(slot / CHUNK) else {
            return;
        };
        let chunk = chunk.get_or_init(|| (0..CHUNK).map(|_| AtomicU64::new(0)).collect());
        chunk[slot % CHUNK].store(u64::from(generation) << 1 | 1, Ordering::Release);
    }

    /// Marks `slot` as holding no open connection (owner only).
    pub(crate) fn close(&self, slot: usize) {
        if let Some(word) = self.word(slot) {
            word.store(0, Ordering::Release);
        }
    }

    /// Marks `slot`'s connection of `generation` as moved to another worker (owner only).
    pub(crate) fn moved(&self, slot: usize, generation: u32) {
        if let Some(word) = self.word(slot) {
            word.store(MOVED | u64::from(generation) << 1, Ordering::Release);
        }
    }

    /// Whether `slot`'s connection of `generation` moved to another worker.
    pub(crate) fn was_moved(&self, slot: usize, generation: u32) -> bool {
        self.word(slot)
            .is_some_and(|w| w.load(Ordering::Acquire) == MOVED | u64::from(generation) << 1)
    }

    /// Marks every slot as holding no open connection (the worker is gone).
    pub(crate) fn clear(&self) {
        for chunk in self.chunks.iter().filter_map(OnceLock::get) {
            for word in chunk.iter() {
                word.store(0, Ordering::Release);
            }
        }
    }

    /// Whether `slot` holds the open connection of `generation` right now.
    pub(crate) fn is_open(&self, slot: usize, generation: u32) -> bool {
        self.word(slot)
            .is_some_and(|w| w.load(Ordering::Acquire) == u64::from(generation) << 1 | 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_close_and_generations() {
        let table = LiveTable::new(1000);
        assert!(!table.is_open(5, 0));
        table.open(5, 7);
        assert!(table.is_open(5, 7));
        assert!(!table.is_open(5, 6));
        assert!(!table.is_open(4, 7));
        table.close(5);
        assert!(!table.is_open(5, 7));
        table.open(5, 8);
        assert!(!table.is_open(5, 7));
        assert!(table.is_open(5, 8));
        // Out of range: never open, and opening is ignored.
        table.open(5000, 1);
        assert!(!table.is_open(5000, 1));
        assert!(!table.is_open(999, 0));
        // A dead worker's table: nothing open any more.
        table.open(300, 2);
        table.clear();
        assert!(!table.is_open(5, 8));
        assert!(!table.is_open(300, 2));
    }

    #[test]
    fn a_moved_connection_is_neither_open_nor_gone_until_its_slot_is_used_again() {
        let table = LiveTable::new(10);
        for generation in [0, 1, u32::MAX] {
            table.open(3, generation);
            table.moved(3, generation);
            assert!(!table.is_open(3, generation));
            assert!(table.was_moved(3, generation));
            assert!(!table.was_moved(3, generation.wrapping_add(1)));
            table.open(3, generation.wrapping_add(1));
            assert!(!table.was_moved(3, generation));
        }
        table.open(4, 0);
        table.close(4);
        assert!(!table.was_moved(4, 0), "closed is not moved");
    }
}
