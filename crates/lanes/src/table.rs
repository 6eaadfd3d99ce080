//! A worker's connection table: a slab (a key stays the same for as long as its entry is
//! occupied, so it can be the connection's token and id) that gives its memory back after a
//! spike of connections.
//!
//! It works like `slab::Slab` (vacant entries form a free list, the most recently freed
//! first), with one difference: [`Table::shrink`] shrinks the allocation but never frees it.
//! That matters with glibc: freeing a block above malloc's mmap threshold raises the threshold
//! to that block's size, so the next spike's table comes from the worker's malloc arena, whose
//! free pages stay resident; a block that stays mapped and is shrunk by `realloc` gives its
//! pages back to the system at once (`mremap`). Measured with `scripts/spike_memory.py` (5,000
//! connections, 3 spikes, echo server at 7.2 MiB): with a `Slab` that `shrink_to_fit` emptied
//! after each spike, RSS stayed 2.1 MiB up from the second spike on; with one connection held
//! throughout (so the `Slab` was never emptied, only shrunk), 0.7 MiB.

use std::ops::{Index, IndexMut};

#[derive(Debug)]
enum Entry<T> {
    /// Vacant; the next vacant entry's key (or the length of `entries`: none).
    Vacant(usize),
    Occupied(T),
}

/// The table.
#[derive(Debug)]
pub(crate) struct Table<T> {
    entries: Vec<Entry<T>>,
    /// Occupied entries.
    len: usize,
    /// The first vacant entry's key (`entries.len()` when there is none).
    next: usize,
}

/// A vacant entry whose key is known before the value is made.
pub(crate) struct VacantEntry<'a, T> {
    table: &'a mut Table<T>,
    key: usize,
}

impl<T> VacantEntry<'_, T> {
    /// The key the value will have.
    pub(crate) fn key(&self) -> usize {
        self.key
    }

    /// Puts `value` in the entry.
    pub(crate) fn insert(self, value: T) {
        let table = self.table;
        let key = self.key;
        table.len += 1;
        if key == table.entries.len() {
            table.entries.push(Entry::Occupied(value));
            table.next = key + 1;
            return;
        }
        match table.entries.get_mut(key) {
            Some(entry) if matches!(entry, Entry::Vacant(_)) => {
                if let Entry::Vacant(next) = *entry {
                    table.next = next;
                }
                *entry = Entry::Occupied(value);
            }
            _ => unreachable!("the free list holds key {key}, which is not vacant"),
        }
    }
}

impl<T> Table<T> {
    /// An empty table with room for `capacity` entries before it grows.
    pub(crate) fn with_capacity(capacity: usize) -> Table<T> {
        Table {
            entries: Vec::with_capacity(capacity),
            len: 0,
            next: 0,
        }
    }

    /// Occupied entries.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Entries the allocation has room for.
    pub(crate) fn capacity(&self) -> usize {
        self.entries.capacity()
    }

    /// Whether `key` names an occupied entry.
    #[cfg(test)]
    pub(crate) fn contains(&self, key: usize) -> bool {
        self.get(key).is_some()
    }

    /// The value at `key`, when occupied.
    #[inline]
    pub(crate) fn get(&self, key: usize) -> Option<&T> {
        match self.entries.get(key) {
            Some(Entry::Occupied(value)) => Some(value),
            _ => None,
        }
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        match self.entries.get_mut(key) {
            Some(Entry::Occupied(value)) => Some(value),
            _ => None,
        }
    }

    /// The entry the next value will go to.
    pub(crate) fn vacant_entry(&mut self) -> VacantEntry<'_, T> {
        let key = self.next;
        VacantEntry { table: self, key }
    }

    /// Takes the value out of `key`'s entry, if it has one.
    pub(crate) fn remove(&mut self, key: usize) -> Option<T> {
        let entry = self.entries.get_mut(key)?;
        if matches!(entry, Entry::Vacant(_)) {
            return None;
        }
        match std::mem::replace(entry, Entry::Vacant(self.next)) {
            Entry::Occupied(value) => {
                self.len -= 1;
                self.next = key;
                Some(value)
            }
            Entry::Vacant(_) => None,
        }
    }

    /// The occupied entries, by key.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &T)> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(key, entry)| match entry {
                Entry::Occupied(value) => Some((key, value)),
                Entry::Vacant(_) => None,
            })
    }

    /// The occupied entries, by key.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (usize, &mut T)> {
        self.entries
            .iter_mut()
            .enumerate()
            .filter_map(|(key, entry)| match entry {
                Entry::Occupied(value) => Some((key, value)),
                Entry::Vacant(_) => None,
            })
    }

    /// Drops the vacant entries past the last occupied one and shrinks the allocation to what
    /// is left, but to no less than `keep` entries (and never frees it: see the module
    /// documentation). Keys of occupied entries do not change. O(entries).
    pub(crate) fn shrink(&mut self, keep: usize) {
        let before = self.entries.len();
        while matches!(self.entries.last(), Some(Entry::Vacant(_))) {
            self.entries.pop();
        }
        if self.entries.len() != before {
            // Rebuild the free list, lowest key first, so that new entries fill the low keys
            // and a later shrink finds more to drop.
            self.next = self.entries.len();
            for (key, entry) in self.entries.iter_mut().enumerate().rev() {
                if let Entry::Vacant(next) = entry {
                    *next = self.next;
                    self.next = key;
                }
            }
        }
        self.entries.shrink_to(keep.max(1));
    }
}

impl<T> Index<usize> for Table<T> {
    type Output = T;

    /// The value at `key`, which the caller knows is occupied.
    fn index(&self, key: usize) -> &T {
        match self.entries.get(key) {
            Some(Entry::Occupied(value)) => value,
            _ => unreachable!("table key {key} is vacant"),
        }
    }
}

impl<T> IndexMut<usize> for Table<T> {
    /// The value at `key`, which the caller knows is occupied.
    fn index_mut(&mut self, key: usize) -> &mut T {
        match self.entries.get_mut(key) {
            Some(Entry::Occupied(value)) => value,
            _ => unreachable!("table key {key} is vacant"),
        }
    }
}

/// The size of one entry of a table of `T` (the slot and, unless `T` has a niche for it, a
/// tag).
pub(crate) fn entry_size<T>() -> usize {
    std::mem::size_of::<Entry<T>>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insert<T>(table: &mut Table<T>, value: T) -> usize {
        let entry = table.vacant_entry();
        let key = entry.key();
        entry.insert(value);
        key
    }

    #[test]
    fn keys_are_reused_most_recently_freed_first_and_stay_valid() {
        let mut table = Table::with_capacity(0);
        let keys: Vec<usize> = (0..5).map(|i| insert(&mut table, i * 10)).collect();
        assert_eq!(keys, [0, 1, 2, 3, 4]);
        assert_eq!(table.remove(1), Some(10));
        assert_eq!(table.remove(3), Some(30));
        assert_eq!(table.remove(3), None);
        assert_eq!(table.remove(99), None);
        assert_eq!(table.len(), 3);
        assert!(!table.contains(1) && table.contains(2));
        assert_eq!(insert(&mut table, 31), 3);
        assert_eq!(insert(&mut table, 11), 1);
        assert_eq!(insert(&mut table, 50), 5);
        assert_eq!(table[3], 31);
        table[3] += 1;
        assert_eq!(table.get(3), Some(&32));
        let all: Vec<(usize, i32)> = table.iter().map(|(k, v)| (k, *v)).collect();
        assert_eq!(all, [(0, 0), (1, 11), (2, 20), (3, 32), (4, 40), (5, 50)]);
        for (_, v) in table.iter_mut() {
            *v += 1;
        }
        assert_eq!(table[5], 51);
    }

    #[test]
    fn shrinking_after_a_spike_keeps_the_keys_of_what_is_left() {
        let mut table = Table::with_capacity(0);
        let keys: Vec<usize> = (0..10_000).map(|i| insert(&mut table, i)).collect();
        assert!(table.capacity() >= 10_000);
        // The spike goes; 0, 7 and 500 stay.
        for &key in &keys {
            if ![0, 7, 500].contains(&key) {
                assert!(table.remove(key).is_some());
            }
        }
        table.shrink(64);
        assert!(table.capacity() < 1_000, "{}", table.capacity());
        assert_eq!((table[0], table[7], table[500]), (0, 7, 500));
        assert_eq!(table.len(), 3);
        // Vacant keys are reused lowest first, then the table grows again.
        let mut new: Vec<usize> = (0..600).map(|i| insert(&mut table, i)).collect();
        new.sort_unstable();
        let expected: Vec<usize> = (0..603).filter(|k| ![0, 7, 500].contains(k)).collect();
        assert_eq!(new, expected);
        // Empty, the table keeps a small allocation.
        for key in 0..603 {
            table.remove(key);
        }
        assert!(table.is_empty());
        table.shrink(64);
        assert!(
            (64..1_000).contains(&table.capacity()),
            "{}",
            table.capacity()
        );
        assert_eq!(insert(&mut table, 1), 0);
    }
}
