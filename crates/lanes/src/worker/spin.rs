//! Busy polling ([`SocketTuning::busy_poll`](crate::config::SocketTuning::busy_poll)): for a
//! window after the last iteration that handled events, the loop polls without blocking.
//! Time is an argument, so the rule is tested without a clock.

use std::time::{Duration, Instant};

/// When the loop last had work, and how long it keeps spinning after it.
#[derive(Debug)]
pub(super) struct Spin {
    window: Option<Duration>,
    last_work: Option<Instant>,
}

impl Spin {
    /// A spin of `window` after each iteration with work; `None` never spins.
    pub(super) fn new(window: Option<Duration>) -> Spin {
        Spin {
            window,
            last_work: None,
        }
    }

    /// Notes an iteration that handled events at `now`.
    #[inline]
    pub(super) fn worked(&mut self, now: Instant) {
        if self.window.is_some() {
            self.last_work = Some(now);
        }
    }

    /// The poll timeout to use at `now`, given the one the loop would block for otherwise
    /// (`None`: no timer, block until an event): zero while inside the window, else `blocking`.
    #[inline]
    pub(super) fn timeout(&self, now: Instant, blocking: Option<Duration>) -> Option<Duration> {
        match (self.window, self.last_work) {
            (Some(window), Some(last)) if now.saturating_duration_since(last) < window => {
                Some(Duration::ZERO)
            }
            _ => blocking,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Duration = Duration::from_micros(1);

    #[test]
    fn off_never_spins() {
        let t0 = Instant::now();
        let mut spin = Spin::new(None);
        spin.worked(t0);
        assert_eq!(spin.timeout(t0, None), None);
        assert_eq!(spin.timeout(t0, Some(5 * US)), Some(5 * US));
    }

    #[test]
    fn spins_for_the_window_after_work_then_blocks() {
        let t0 = Instant::now();
        let mut spin = Spin::new(Some(50 * US));
        // Nothing handled yet: a fresh worker blocks.
        assert_eq!(spin.timeout(t0, None), None);
        spin.worked(t0);
        assert_eq!(spin.timeout(t0, None), Some(Duration::ZERO));
        assert_eq!(spin.timeout(t0 + 49 * US, None), Some(Duration::ZERO));
        assert_eq!(
            spin.timeout(t0 + 49 * US, Some(Duration::from_millis(3))),
            Some(Duration::ZERO)
        );
        // The window has passed: back to the timer (or no timeout at all).
        assert_eq!(spin.timeout(t0 + 50 * US, None), None);
        let timer = Some(Duration::from_millis(3));
        assert_eq!(spin.timeout(t0 + 80 * US, timer), timer);
        // New work opens a new window.
        spin.worked(t0 + 100 * US);
        assert_eq!(spin.timeout(t0 + 120 * US, None), Some(Duration::ZERO));
        assert_eq!(spin.timeout(t0 + 150 * US, None), None);
    }
}
