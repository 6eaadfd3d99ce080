//! Which worker owns a key: the stable mapping applications shard their state by (a room, a
//! symbol, a user), so that everything about one key lives on one worker and needs no lock.
//!
//! The mapping is fixed and documented, so that another process (a load balancer, a service in
//! another language) can compute it too: the key's bytes are hashed with 64-bit FNV-1a, and the
//! hash picks a worker with the jump consistent hash of Lamping and Veach ("A Fast, Minimal
//! Memory, Consistent Hash Algorithm", 2014). It depends on nothing but the key and the worker
//! count: not on the process, the machine or the run. When the worker count grows from `n` to
//! `n + 1`, a key either stays on its worker or moves to the new one (about one key in `n + 1`
//! moves).

/// The worker, of `workers`, that owns `key`. `workers` of 0 is taken as 1.
///
/// The mapping is fixed, so that another process (a load balancer, a service in another
/// language) can compute it too: the key's bytes are hashed with 64-bit FNV-1a, and the hash
/// picks a worker with Lamping and Veach's jump consistent hash. It depends on the key and the
/// worker count only: not on the process, the machine or the run. When the worker count grows
/// from `n` to `n + 1`, a key stays on its worker or moves to the new one (about one key in
/// `n + 1` moves).
///
/// ```
/// let worker = lanes::worker_for(b"room-42", 4);
/// assert!(worker < 4);
/// assert_eq!(worker, lanes::worker_for(b"room-42", 4)); // the same key, the same worker
/// ```
pub fn worker_for(key: &[u8], workers: usize) -> usize {
    jump_consistent_hash(fnv1a_64(key), workers.max(1))
}

/// Where an accepted upgrade is to be served: a worker by its index, or the worker that owns a
/// key (resolved against the worker count by the accepting worker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    Worker(usize),
    /// The FNV-1a hash of the key.
    Key(u64),
}

impl Placement {
    /// The placement on the worker that owns `key`.
    pub(crate) fn for_key(key: &[u8]) -> Placement {
        Placement::Key(fnv1a_64(key))
    }

    /// The worker's index among `workers` (may be out of range for [`Placement::Worker`]).
    pub(crate) fn resolve(self, workers: usize) -> usize {
        match self {
            Placement::Worker(index) => index,
            Placement::Key(hash) => jump_consistent_hash(hash, workers.max(1)),
        }
    }
}

/// 64-bit FNV-1a.
fn fnv1a_64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(PRIME)
    })
}

/// Lamping and Veach's jump consistent hash: a bucket in `0..buckets` for `key`.
fn jump_consistent_hash(mut key: u64, buckets: usize) -> usize {
    const LCG_MULTIPLIER: u64 = 2_862_933_555_777_941_757;
    let buckets = buckets as i64;
    let mut bucket: i64 = -1;
    let mut next: i64 = 0;
    while next < buckets {
        bucket = next;
        key = key.wrapping_mul(LCG_MULTIPLIER).wrapping_add(1);
        next = ((bucket + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    bucket as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_64_matches_its_published_test_vectors() {
        // From the FNV reference test suite (draft-eastlake-fnv).
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn a_key_only_ever_moves_to_the_new_worker_and_about_one_in_n_does() {
        let keys = 20_000u64;
        for workers in 1..64usize {
            let mut moved = 0;
            for k in 0..keys {
                let key = fnv1a_64(&k.to_le_bytes());
                let before = jump_consistent_hash(key, workers);
                let after = jump_consistent_hash(key, workers + 1);
                assert!(before < workers && after <= workers);
                if after != before {
                    assert_eq!(after, workers, "a key moved between two old workers");
                    moved += 1;
                }
            }
            let expected = keys as f64 / (workers + 1) as f64;
            let off = (moved as f64 - expected).abs() / expected;
            assert!(
                off < 0.15,
                "{workers} -> {}: {moved} keys moved, expected about {expected}",
                workers + 1
            );
        }
    }

    #[test]
    fn keys_spread_evenly() {
        for workers in [1, 2, 3, 7, 16] {
            let mut counts = vec![0usize; workers];
            let keys = 20_000;
            for k in 0..keys {
                counts[worker_for(format!("room-{k}").as_bytes(), workers)] += 1;
            }
            let expected = keys / workers;
            for (worker, &count) in counts.iter().enumerate() {
                let off = count.abs_diff(expected) as f64 / expected as f64;
                assert!(
                    off < 0.05,
                    "worker {worker} of {workers}: {count} keys, expected about {expected}"
                );
            }
        }
    }

    #[test]
    fn a_key_placement_resolves_to_the_keys_worker() {
        for workers in 1..9 {
            for room in ["lobby", "room-1", "room-2", ""] {
                assert_eq!(
                    Placement::for_key(room.as_bytes()).resolve(workers),
                    worker_for(room.as_bytes(), workers)
                );
            }
        }
        assert_eq!(Placement::Worker(7).resolve(2), 7);
    }

    #[test]
    fn zero_workers_is_one() {
        assert_eq!(worker_for(b"x", 0), 0);
        assert_eq!(worker_for(b"x", 1), 0);
    }
}
