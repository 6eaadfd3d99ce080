//! Rate limits for log lines that clients, or the machine, could otherwise repeat without
//! bound: at most `burst` lines of a kind per window; the lines left out are counted, and the
//! next line logged says how many. A pure function of the time it is given, so it is tested
//! with a fake clock.

use std::time::Duration;

/// One kind of log line's limit: at most `burst` lines in any stretch of one window (a line
/// is logged when the `burst`-th line before it was logged a window ago or more).
#[derive(Debug, Clone)]
pub(crate) struct Throttle {
    window_us: u64,
    burst: usize,
    /// When the last `burst` lines were logged, as a ring: `logged_us[next]` is the oldest
    /// once the ring is full.
    logged_us: Vec<u64>,
    next: usize,
    /// Lines left out since the last one logged.
    suppressed: u64,
}

impl Throttle {
    /// At most `burst` lines per `window` (and at least one).
    pub(crate) fn new(window: Duration, burst: usize) -> Throttle {
        let burst = burst.max(1);
        Throttle {
            window_us: window.as_micros().min(u128::from(u64::MAX)) as u64,
            burst,
            logged_us: Vec::with_capacity(burst),
            next: 0,
            suppressed: 0,
        }
    }

    /// A line of this kind is due at `now_us` (any clock in microseconds that does not go
    /// back). `Some(n)`: log it, and say that `n` lines were left out since the last one
    /// logged. `None`: leave it out (it is counted for the next line).
    pub(crate) fn admit(&mut self, now_us: u64) -> Option<u64> {
        if self.logged_us.len() < self.burst {
            self.logged_us.push(now_us);
        } else {
            let oldest = &mut self.logged_us[self.next];
            if now_us.saturating_sub(*oldest) < self.window_us {
                self.suppressed += 1;
                return None;
            }
            *oldest = now_us;
            self.next = (self.next + 1) % self.burst;
        }
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000;

    #[test]
    fn one_line_per_window_and_the_next_counts_the_rest() {
        let mut throttle = Throttle::new(Duration::from_secs(60), 1);
        assert_eq!(throttle.admit(5 * SECOND), Some(0));
        // A flood within the window: nothing logged, everything counted.
        for t in 0..1000 {
            assert_eq!(throttle.admit(5 * SECOND + t * 50_000), None);
        }
        assert_eq!(throttle.admit(65 * SECOND - 1), None);
        // The window has passed: one line, saying how many were left out.
        assert_eq!(throttle.admit(65 * SECOND), Some(1001));
        assert_eq!(throttle.admit(66 * SECOND), None);
        // After a quiet spell the next line reports the one left out at 66 s.
        assert_eq!(throttle.admit(500 * SECOND), Some(1));
        assert_eq!(throttle.admit(600 * SECOND), Some(0));
    }

    #[test]
    fn a_burst_then_a_line_as_each_ages_out_of_the_window() {
        let mut throttle = Throttle::new(Duration::from_secs(10), 3);
        assert_eq!(throttle.admit(0), Some(0));
        assert_eq!(throttle.admit(1), Some(0));
        assert_eq!(throttle.admit(2), Some(0));
        assert_eq!(throttle.admit(3), None);
        assert_eq!(throttle.admit(9 * SECOND), None);
        assert_eq!(throttle.admit(10 * SECOND), Some(2));
        assert_eq!(throttle.admit(10 * SECOND + 1), Some(0));
        assert_eq!(throttle.admit(10 * SECOND + 2), Some(0));
        assert_eq!(throttle.admit(10 * SECOND + 3), None);
        // Spread out: a line is due when the third before it is 10 s old.
        assert_eq!(throttle.admit(25 * SECOND), Some(1));
        assert_eq!(throttle.admit(30 * SECOND), Some(0));
        assert_eq!(throttle.admit(34 * SECOND), Some(0));
        assert_eq!(throttle.admit(34 * SECOND + 1), None);
        assert_eq!(throttle.admit(35 * SECOND), Some(1));
        assert_eq!(throttle.admit(39 * SECOND), None);
        assert_eq!(throttle.admit(40 * SECOND), Some(1));
    }

    /// Lines due at pseudo-random times (xorshift): none is lost from the counts, and no
    /// stretch of one window holds more lines than it may.
    fn check_random_timing(burst: usize) {
        let window = 1_000u64;
        let mut throttle = Throttle::new(Duration::from_micros(window), burst);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut now = 0;
        let mut logged_at = Vec::new();
        let mut reported = 0;
        let due = 100_000;
        for _ in 0..due {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            now += state % 40;
            if let Some(left_out) = throttle.admit(now) {
                logged_at.push(now);
                reported += left_out;
            }
        }
        assert_eq!(logged_at.len() as u64 + reported + throttle.suppressed, due);
        // Lines are due every 40 µs at most (about 50 per window): each line is logged
        // within 40 µs of the moment the one `burst` lines before it is a window old.
        let windows = now / (window + 40);
        assert!(logged_at.len() >= windows as usize * burst);
        for (i, &at) in logged_at.iter().enumerate() {
            let in_stretch = logged_at[i..]
                .iter()
                .take_while(|&&t| t < at + window)
                .count();
            assert!(in_stretch <= burst, "{in_stretch} lines from {at}");
        }
    }

    #[test]
    fn never_more_than_allowed_in_any_stretch_whatever_the_timing() {
        check_random_timing(1);
        check_random_timing(4);
    }

    #[test]
    fn a_clock_that_stalls_or_a_zero_window() {
        let mut stalled = Throttle::new(Duration::from_secs(1), 1);
        assert_eq!(stalled.admit(7), Some(0));
        assert_eq!(stalled.admit(7), None);
        let mut every = Throttle::new(Duration::ZERO, 1);
        assert_eq!(every.admit(7), Some(0));
        assert_eq!(every.admit(7), Some(0));
    }
}
