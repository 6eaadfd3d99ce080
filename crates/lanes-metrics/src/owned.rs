//! Updates of a word that one thread owns: the thread that writes it is its only writer, any
//! thread may read it. A plain load and store (no locked instruction, no contention); two
//! writers at once would lose updates.

use std::sync::atomic::{AtomicU64, Ordering};

/// Adds `n` (wrapping) to a counter that only the calling thread writes.
#[inline]
pub fn add(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

/// Subtracts `n` (down to 0) from a gauge that only the calling thread writes.
#[inline]
pub fn sub(gauge: &AtomicU64, n: u64) {
    gauge.store(
        gauge.load(Ordering::Relaxed).saturating_sub(n),
        Ordering::Relaxed,
    );
}
