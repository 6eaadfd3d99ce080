//! A histogram with power-of-two buckets, written by one thread and read by any.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::owned;

/// Buckets per histogram: upper bounds 2^0, 2^1, ..., 2^24 in the histogram's unit, then +Inf.
///
/// For times recorded in microseconds that is 1 µs to 16.8 s.
pub const BUCKETS: usize = 26;

/// A histogram of `u64` values in some unit (microseconds for times).
///
/// One thread records ([`Histogram::record`] is a load and a store per word it changes, so two
/// threads recording at once would lose counts); any thread may take a [`snapshot`]. A reader
/// sees each word whole; the count and the sum may be one value apart while a record is under
/// way.
///
/// [`snapshot`]: Histogram::snapshot
#[derive(Debug)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS],
    sum: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Histogram {
        Histogram {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum: AtomicU64::new(0),
        }
    }

    /// Records one value. Only one thread may record into a histogram.
    #[inline]
    pub fn record(&self, value: u64) {
        owned::add(&self.counts[bucket_of(value)], 1);
        owned::add(&self.sum, value);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            counts: std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed)),
            sum: self.sum.load(Ordering::Relaxed),
        }
    }
}

/// The bucket that holds `value`: the first whose upper bound 2^i is at least `value`.
#[inline]
fn bucket_of(value: u64) -> usize {
    if value <= 1 {
        return 0;
    }
    let ceil_log2 = (64 - (value - 1).leading_zeros()) as usize;
    ceil_log2.min(BUCKETS - 1)
}

/// The counts of a [`Histogram`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Values per bucket (not cumulative); bucket `i < BUCKETS - 1` holds values in
    /// (2^(i-1), 2^i], the last one everything above 2^(BUCKETS - 2).
    pub counts: [u64; BUCKETS],
    /// The sum of the recorded values.
    pub sum: u64,
}

impl Default for HistogramSnapshot {
    fn default() -> HistogramSnapshot {
        HistogramSnapshot {
            counts: [0; BUCKETS],
            sum: 0,
        }
    }
}

impl HistogramSnapshot {
    /// The upper bound of bucket `i` (`None` for the last, +Inf).
    pub fn upper_bound(i: usize) -> Option<u64> {
        (i < BUCKETS - 1).then(|| 1u64 << i)
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Adds another snapshot's counts to this one (totals over workers).
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.sum = self.sum.wrapping_add(other.sum);
    }

    /// What was recorded after `earlier` (a snapshot of the same histogram).
    pub fn since(&self, earlier: &HistogramSnapshot) -> HistogramSnapshot {
        HistogramSnapshot {
            counts: std::array::from_fn(|i| self.counts[i].saturating_sub(earlier.counts[i])),
            sum: self.sum.wrapping_sub(earlier.sum),
        }
    }

    /// The `q`-quantile (0 ≤ q ≤ 1), interpolated linearly inside its bucket the way
    /// Prometheus' `histogram_quantile` does; `None` when nothing was recorded. A quantile in
    /// the last (+Inf) bucket is reported as that bucket's lower bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * count as f64;
        let mut below = 0u64;
        for (i, &n) in self.counts.iter().enumerate() {
            if n > 0 && (below + n) as f64 >= rank {
                let lower = if i == 0 {
                    0.0
                } else {
                    (1u64 << (i - 1)) as f64
                };
                let Some(upper) = HistogramSnapshot::upper_bound(i) else {
                    return Some(lower);
                };
                let within = ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
                return Some(lower + (upper as f64 - lower) * within);
            }
            below += n;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bucket by a plain search over the bounds.
    fn reference_bucket(value: u64) -> usize {
        (0..BUCKETS - 1)
            .find(|&i| value <= 1u64 << i)
            .unwrap_or(BUCKETS - 1)
    }

    #[test]
    fn buckets_match_a_linear_search_at_every_boundary() {
        let mut values = vec![0, 1, 2, 3, u64::MAX, u64::MAX - 1];
        for i in 0..64 {
            let p = 1u64 << i;
            values.extend([p.saturating_sub(1), p, p.saturating_add(1)]);
        }
        for v in values {
            assert_eq!(bucket_of(v), reference_bucket(v), "value {v}");
        }
    }

    #[test]
    fn records_counts_and_sum() {
        let h = Histogram::new();
        for v in [1, 2, 3, 4, 5, 1000, 1 << 30] {
            h.record(v);
        }
        let s = h.snapshot();
        assert_eq!(s.count(), 7);
        assert_eq!(s.sum, 1 + 2 + 3 + 4 + 5 + 1000 + (1 << 30));
        assert_eq!(s.counts[0], 1); // 1
        assert_eq!(s.counts[1], 1); // 2
        assert_eq!(s.counts[2], 2); // 3, 4
        assert_eq!(s.counts[3], 1); // 5
        assert_eq!(s.counts[10], 1); // 1000 <= 1024
        assert_eq!(s.counts[BUCKETS - 1], 1); // 2^30 > 2^24
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        let h = Histogram::new();
        // 100 values in (512, 1024]: bucket 10.
        for _ in 0..100 {
            h.record(1000);
        }
        let s = h.snapshot();
        assert_eq!(s.quantile(0.5), Some(512.0 + 512.0 * 0.5));
        assert_eq!(s.quantile(1.0), Some(1024.0));
        assert_eq!(HistogramSnapshot::default().quantile(0.5), None);
        let later = {
            h.record(3);
            h.snapshot()
        };
        let delta = later.since(&s);
        assert_eq!(delta.count(), 1);
        assert_eq!(delta.sum, 3);
        assert_eq!(
            delta.quantile(0.99).map(|q| q > 2.0 && q <= 4.0),
            Some(true)
        );
    }
}
