//! Deadlines: each connection's protocol timer (handshake, keepalive, pong, close), the
//! application's timers, and the worker's tick. What to do at a deadline is a pure function of
//! the connection's times, the configuration and `now` ([`decide`]); the worker acts on it.

use std::time::{Duration, Instant};

use lanes_proto::{CloseCode, OpCode};

use super::Worker;
use super::dispatch;
use crate::config::Config;
use crate::conn::{PhaseKind, mark_dirty};
use crate::context::WorkerContext;
use crate::handler::Handler;
use crate::stats::{self, CloseCause};
use crate::timer::{TimerEntry, TimerKind};

/// A connection's times, in milliseconds since the worker's epoch (the ping in microseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Times {
    pub(super) phase: PhaseKind,
    pub(super) phase_since_ms: u64,
    pub(super) last_activity_ms: u64,
    pub(super) ping_sent_us: Option<u64>,
}

/// What a connection's timer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    /// Nothing is due before this time (milliseconds since the epoch); `None`: never.
    Wait(Option<u64>),
    /// Keepalive: send a ping now.
    Ping,
    /// The deadline of the phase passed: drop the connection.
    Expire,
}

/// The next deadline of a connection in the current phase, in milliseconds since the epoch.
pub(super) fn deadline_ms(times: &Times, config: &Config) -> Option<u64> {
    let after = |ms: u64, d: Duration| Some(ms.saturating_add(d.as_millis() as u64));
    match times.phase {
        PhaseKind::Handshake => after(times.phase_since_ms, config.timeouts.handshake),
        PhaseKind::Open => match (times.ping_sent_us, config.timeouts.ping_interval) {
            // Waiting for a sign of life since the keepalive ping.
            (Some(sent_us), _) if times.last_activity_ms < sent_us / 1000 => {
                after(sent_us / 1000, config.timeouts.pong)
            }
            (_, Some(interval)) => after(times.last_activity_ms, interval),
            (_, None) => None,
        },
        PhaseKind::CloseSent | PhaseKind::Closing | PhaseKind::Draining => {
            after(times.phase_since_ms, config.timeouts.close)
        }
    }
}

/// What to do when the connection's timer fires at `now_ms`.
pub(super) fn decide(times: &Times, config: &Config, now_ms: u64) -> Decision {
    let deadline = deadline_ms(times, config);
    match deadline {
        Some(at) if now_ms >= at => {}
        other => return Decision::Wait(other),
    }
    match times.phase {
        PhaseKind::Open => match times.ping_sent_us {
            // No sign of life since the keepalive ping.
            Some(sent_us) if times.last_activity_ms < sent_us / 1000 => Decision::Expire,
            _ => Decision::Ping,
        },
        _ => Decision::Expire,
    }
}

impl<H: Handler> Worker<H> {
    fn times(&self, key: usize) -> Option<Times> {
        let conn = self.conns.get(key)?;
        Some(Times {
            phase: conn.phase.kind(),
            phase_since_ms: conn.phase_since_ms,
            last_activity_ms: conn.last_activity_ms,
            ping_sent_us: conn.ping_sent_us,
        })
    }

    /// Replaces the connection's timer entry with one for its next deadline.
    pub(super) fn arm(&mut self, key: usize) {
        let Some(times) = self.times(key) else {
            return;
        };
        let deadline = deadline_ms(&times, &self.local.config);
        let epoch = self.epoch;
        let conn = &mut self.conns[key];
        conn.timer_seq = conn.timer_seq.wrapping_add(1);
        conn.armed_phase = times.phase;
        if let Some(ms) = deadline {
            let at = epoch + Duration::from_millis(ms);
            let kind = TimerKind::Conn {
                seq: conn.timer_seq,
            };
            self.local.wheel.schedule(key, conn.generation, kind, at);
        }
    }

    /// Re-arms the timer when the connection changed phase since it was armed.
    pub(super) fn sync_timer(&mut self, key: usize, _now: Instant) {
        if self
            .conns
            .get(key)
            .is_some_and(|c| c.phase.kind() != c.armed_phase)
        {
            self.arm(key);
        }
    }

    pub(super) fn on_timer(&mut self, entry: TimerEntry, now: Instant) {
        match entry.kind {
            TimerKind::Conn { seq } => self.on_conn_timer(entry, seq, now),
            TimerKind::User(token) => self.on_user_timer(entry, token, now),
            TimerKind::Tick => self.on_tick(now),
        }
    }

    /// The worker's tick: the application's callback, then the next tick on the cadence.
    fn on_tick(&mut self, now: Instant) {
        let (Some(interval), Some(deadline)) =
            (self.local.config.timers.tick_interval, self.tick_deadline)
        else {
            return;
        };
        let mut ctx = WorkerContext {
            conns: &mut self.conns,
            local: &mut self.local,
        };
        self.handler.on_tick(&mut ctx);
        let mut next = deadline + interval;
        if next <= now {
            // Fell behind (a long callback, a stalled machine): skip, do not bunch.
            next = now + interval;
        }
        self.tick_deadline = Some(next);
        self.local
            .wheel
            .schedule(usize::MAX, 0, TimerKind::Tick, next);
    }

    /// An application timer on a connection.
    fn on_user_timer(&mut self, entry: TimerEntry, token: u64, now: Instant) {
        let now_ms = self.now_ms(now);
        let id = self.conn_id(entry.slot);
        let Some(conn) = self.conns.get_mut(entry.slot) else {
            return;
        };
        if conn.generation != entry.generation {
            return;
        }
        let Some((mut ws, state)) = conn.callback(&mut self.local, id) else {
            return;
        };
        self.handler.on_timer(&mut ws, state, token);
        dispatch::after_callbacks(conn, &mut self.handler, &mut self.local, entry.slot, now_ms);
        mark_dirty(conn, entry.slot, &mut self.local.dirty);
    }

    /// A connection's protocol deadline.
    fn on_conn_timer(&mut self, entry: TimerEntry, seq: u32, now: Instant) {
        let now_us = self.now_us(now);
        let now_ms = now_us / 1000;
        let key = entry.slot;
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        if conn.generation != entry.generation || conn.timer_seq != seq {
            return; // replaced by a newer entry, or a later connection in the slot
        }
        let Some(times) = self.times(key) else {
            return;
        };
        match decide(&times, &self.local.config, now_ms) {
            Decision::Wait(None) => {}
            Decision::Wait(Some(ms)) => {
                let at = self.epoch + Duration::from_millis(ms);
                self.local
                    .wheel
                    .schedule(key, entry.generation, entry.kind, at);
            }
            Decision::Expire => {
                let conn = &self.conns[key];
                let code = match times.phase {
                    PhaseKind::CloseSent => conn.outbox.sent_close.unwrap_or(CloseCode::ABNORMAL),
                    PhaseKind::Open => {
                        tracing::debug!(peer = %conn.peer, "no pong within pong_timeout: closing");
                        CloseCode::ABNORMAL
                    }
                    _ => CloseCode::ABNORMAL,
                };
                self.remove(key, CloseCause::Timeout, code, "");
            }
            Decision::Ping => {
                let conn = &mut self.conns[key];
                conn.outbox.send(OpCode::Ping, b"", &mut self.local);
                stats::add(&self.local.counters.pings_sent, 1);
                conn.ping_sent_us = Some(now_us.max(1000));
                // A ping past the hard cap closes the connection like any other send.
                dispatch::after_callbacks(conn, &mut self.handler, &mut self.local, key, now_ms);
                self.flush(key, now);
                self.arm(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let mut config = Config::default();
        config.timeouts.handshake = Duration::from_secs(10);
        config.timeouts.ping_interval = Some(Duration::from_secs(30));
        config.timeouts.pong = Duration::from_secs(5);
        config.timeouts.close = Duration::from_secs(2);
        config
    }

    fn open(last_activity_ms: u64, ping_sent_us: Option<u64>) -> Times {
        Times {
            phase: PhaseKind::Open,
            phase_since_ms: 0,
            last_activity_ms,
            ping_sent_us,
        }
    }

    #[test]
    fn handshake_expires_at_its_timeout_and_not_before() {
        let times = Times {
            phase: PhaseKind::Handshake,
            phase_since_ms: 1_000,
            last_activity_ms: 1_000,
            ping_sent_us: None,
        };
        let config = config();
        assert_eq!(
            decide(&times, &config, 10_999),
            Decision::Wait(Some(11_000))
        );
        assert_eq!(decide(&times, &config, 11_000), Decision::Expire);
    }

    #[test]
    fn keepalive_pings_after_the_interval_of_silence() {
        let config = config();
        // Heard from at 5 s: the ping is due at 35 s.
        assert_eq!(
            decide(&open(5_000, None), &config, 34_999),
            Decision::Wait(Some(35_000))
        );
        assert_eq!(decide(&open(5_000, None), &config, 35_000), Decision::Ping);
        // Activity moves the deadline.
        assert_eq!(
            decide(&open(20_000, None), &config, 35_000),
            Decision::Wait(Some(50_000))
        );
    }

    #[test]
    fn a_missing_pong_expires_at_ping_time_plus_pong_timeout() {
        let config = config();
        let pinged = open(5_000, Some(35_000_000));
        assert_eq!(
            decide(&pinged, &config, 39_999),
            Decision::Wait(Some(40_000))
        );
        assert_eq!(decide(&pinged, &config, 40_000), Decision::Expire);
        // Any sign of life after the ping: the next ping is an interval after it.
        let answered = open(36_000, Some(35_000_000));
        assert_eq!(
            decide(&answered, &config, 40_000),
            Decision::Wait(Some(66_000))
        );
    }

    #[test]
    fn no_keepalive_without_an_interval() {
        let mut config = config();
        config.timeouts.ping_interval = None;
        assert_eq!(
            decide(&open(0, None), &config, u64::MAX),
            Decision::Wait(None)
        );
    }

    #[test]
    fn closing_phases_expire_at_the_close_timeout() {
        let config = config();
        for phase in [
            PhaseKind::CloseSent,
            PhaseKind::Closing,
            PhaseKind::Draining,
        ] {
            let times = Times {
                phase,
                phase_since_ms: 7_000,
                last_activity_ms: 0,
                ping_sent_us: None,
            };
            assert_eq!(decide(&times, &config, 8_999), Decision::Wait(Some(9_000)));
            assert_eq!(decide(&times, &config, 9_000), Decision::Expire);
        }
    }
}
