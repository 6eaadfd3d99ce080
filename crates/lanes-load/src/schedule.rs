//! The open-loop schedule of `echo --rate`: message k of a thread is due k / rate after the
//! thread's start, whatever the server answers, and its round trip is measured from that
//! intended time, not from when it was actually written. A stall (of the server, or of this
//! client) then shows in the latency of every message that should have gone out during it,
//! instead of quietly lowering the offered load: the coordinated-omission correction of wrk2
//! and HdrHistogram.

use std::time::Duration;

/// When each message of a fixed-rate stream is due.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Messages per second (of one thread).
    rate: f64,
}

impl Schedule {
    /// A schedule of `rate` messages per second (more than 0).
    pub fn new(rate: f64) -> Schedule {
        Schedule {
            rate: rate.max(f64::MIN_POSITIVE),
        }
    }

    /// Messages per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// When message `k` (from 0) is due, counted from the start: `k / rate`, to the
    /// nanosecond below.
    pub fn due_at(&self, k: u64) -> Duration {
        Duration::from_nanos((k as f64 * 1e9 / self.rate).floor() as u64)
    }

    /// How many messages are due once `elapsed` has passed since the start: those whose
    /// [`due_at`](Self::due_at) is at most `elapsed` (message 0 is due at once).
    pub fn due_by(&self, elapsed: Duration) -> u64 {
        let mut n = (elapsed.as_secs_f64() * self.rate).floor() as u64 + 1;
        // Float rounding either way: settle on the exact count.
        while n > 0 && self.due_at(n - 1) > elapsed {
            n -= 1;
        }
        while self.due_at(n) <= elapsed {
            n += 1;
        }
        n
    }

    /// The time between two messages.
    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.rate)
    }
}

/// Whether a run kept its schedule: no message went out later than `max(1 ms, 10 intervals)`
/// after it was due. A client that could not keep it offered less than asked, and its figures
/// say so.
pub fn kept(schedule: &Schedule, max_send_lag: Duration) -> bool {
    max_send_lag <= (schedule.interval() * 10).max(Duration::from_millis(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Kind;
    use crate::echo::new_histogram;
    use crate::tracker::EchoTracker;
    use std::time::Instant;

    #[test]
    fn messages_are_due_at_k_over_the_rate() {
        let s = Schedule::new(1000.0);
        assert_eq!(s.due_at(0), Duration::ZERO);
        assert_eq!(s.due_at(1), Duration::from_millis(1));
        assert_eq!(s.due_at(1500), Duration::from_millis(1500));
        // A rate no Duration step holds exactly: 3 per second.
        let third = Schedule::new(3.0);
        assert_eq!(third.due_at(1), Duration::from_nanos(333_333_333));
        assert_eq!(third.due_at(3), Duration::from_secs(1));
        assert_eq!(third.due_at(3000), Duration::from_secs(1000));
    }

    #[test]
    fn the_count_due_includes_the_message_due_at_that_instant() {
        let s = Schedule::new(1000.0);
        assert_eq!(s.due_by(Duration::ZERO), 1);
        assert_eq!(s.due_by(Duration::from_micros(999)), 1);
        assert_eq!(s.due_by(Duration::from_millis(1)), 2);
        assert_eq!(s.due_by(Duration::from_micros(10_500)), 11);
        let third = Schedule::new(3.0);
        assert_eq!(third.due_by(Duration::from_nanos(333_333_332)), 1);
        assert_eq!(third.due_by(Duration::from_nanos(333_333_333)), 2);
        assert_eq!(third.due_by(Duration::from_secs(1000)), 3001);
        // Against the definition, at every microsecond of a second at an awkward rate.
        let odd = Schedule::new(7_919.0);
        for us in (0..1_000_000).step_by(37) {
            let elapsed = Duration::from_micros(us);
            let n = odd.due_by(elapsed);
            assert!(
                odd.due_at(n - 1) <= elapsed && odd.due_at(n) > elapsed,
                "{us}"
            );
        }
    }

    #[test]
    fn a_run_keeps_its_schedule_within_ten_intervals_or_a_millisecond() {
        let fast = Schedule::new(100_000.0); // 10 µs apart: 1 ms is the bound
        assert!(kept(&fast, Duration::from_micros(1000)));
        assert!(!kept(&fast, Duration::from_micros(1001)));
        let slow = Schedule::new(100.0); // 10 ms apart: 100 ms is the bound
        assert!(kept(&slow, Duration::from_millis(100)));
        assert!(!kept(&slow, Duration::from_millis(101)));
    }

    /// A server that answers at once but stalls for 100 ms in the middle of a 1 s run at
    /// 1,000 messages/s. Measured from the intended send times (as the open loop does), the
    /// 100 messages due during the stall wait 100, 99, ..., 1 ms: p99 is 90 ms and the max
    /// 100 ms. Measured from when a closed loop would have sent (one message waits the whole
    /// stall, the others are not sent at all), the stall is one sample in 901 and p99 is 0.
    #[test]
    fn the_correction_puts_a_stall_in_the_tail_where_a_closed_loop_hides_it() {
        let start = Instant::now();
        let s = Schedule::new(1000.0);
        let (stall_from, stall_to) = (Duration::from_millis(500), Duration::from_millis(600));
        let mut tracker = EchoTracker::new(20, Kind::Binary, 1);
        let mut open = new_histogram();
        for k in 0..1000 {
            let intended = s.due_at(k);
            let mut payload = Vec::new();
            tracker.push_next(start + intended, &mut payload);
            let answered = if intended >= stall_from && intended < stall_to {
                stall_to
            } else {
                intended
            };
            let rtt = tracker.check(false, &payload, start + answered).unwrap();
            open.record(rtt.as_nanos() as u64).unwrap();
        }
        let ms = |q: f64| open.value_at_quantile(q) as f64 / 1e6;
        assert_eq!(open.len(), 1000);
        assert!((ms(0.99) - 90.0).abs() < 0.1, "p99 {}", ms(0.99));
        assert!((ms(0.95) - 50.0).abs() < 0.1, "p95 {}", ms(0.95));
        assert_eq!(ms(0.90), 0.0);
        assert!((open.max() as f64 / 1e6 - 100.0).abs() < 0.1);

        // The closed loop: the message in flight when the stall starts waits 100 ms; the next
        // one goes out only after it, so 99 are never sent.
        let mut closed = new_histogram();
        for k in 0..1000u64 {
            let rtt = if k == 500 {
                100_000_000
            } else if (501..600).contains(&k) {
                continue;
            } else {
                0
            };
            closed.record(rtt.max(1)).unwrap();
        }
        assert_eq!(closed.len(), 901);
        assert!(closed.value_at_quantile(0.99) < 1_000);
    }
}
