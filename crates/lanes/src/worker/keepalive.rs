//! Deadlines: each connection's protocol timer (the handshake, the session's keepalive, pong
//! and close deadlines, and the closing phases), the application's timers, and the worker's
//! tick. When a connection's timer is due is a pure function of its phase, times and the
//! configuration ([`deadline_us`]); an open connection's deadlines are its session's.

use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use lanes_proto::CloseCode;
use lanes_proto::session::{Session, SessionConfig, Timeout};

use super::Worker;
use super::dispatch;
use crate::config::{BackpressurePolicy, Config};
use crate::conn::{Conn, Phase, PhaseKind, mark_dirty};
use crate::context::WorkerContext;
use crate::dials::Dials;
use crate::handler::Handler;
use crate::outbox::ControlSink;
use crate::stats::{self, CloseCause};
use crate::table::Table;
use crate::timer::{TimerEntry, TimerKind};

/// When a connection's timer must look at it next, in microseconds since the worker's epoch:
/// the handshake timeout after the connection was accepted; the session's next deadline
/// (keepalive ping, pong, close answer) while open; the close timeout after the protocol ended
/// (writing out, then draining). `None`: nothing is pending. `session_config`: the timeouts
/// the session's deadlines are reckoned with.
pub(super) fn deadline_us(
    kind: PhaseKind,
    phase_since_ms: u64,
    session: Option<&Session>,
    config: &Config,
    session_config: &SessionConfig,
) -> Option<u64> {
    let after = |d: Duration| {
        let since_us = phase_since_ms.saturating_mul(1000);
        Some(since_us.saturating_add(d.as_micros().min(u128::from(u64::MAX)) as u64))
    };
    match kind {
        PhaseKind::Unarmed => None,
        PhaseKind::Handshake => after(config.timeouts.handshake),
        // The dial's timeouts (see `Worker::deadline_of`).
        PhaseKind::Connecting | PhaseKind::Upgrading => None,
        PhaseKind::Deferred => after(config.timeouts.deferred_upgrade),
        PhaseKind::Open | PhaseKind::Unfinished | PhaseKind::PongWait | PhaseKind::CloseSent => {
            session.and_then(|s| s.poll_timeout(session_config))
        }
        PhaseKind::Closing | PhaseKind::Draining => after(config.timeouts.close),
    }
}

/// Whether the connection's timer must be re-armed: its phase changed since it was armed
/// (see [`Worker::sync_timer`]).
#[inline]
pub(super) fn timer_outdated<S>(conn: &Conn<S>, kind: PhaseKind) -> bool {
    kind != conn.armed_phase
        && !(conn.armed_phase == PhaseKind::Unfinished && kind == PhaseKind::Open)
}

/// Whether a timer entry still means something: the tick always; a connection's entry while
/// that connection (same slot and generation) is in the table, and for its protocol deadline
/// only while it is the connection's latest entry.
fn entry_is_live<S>(conns: &Table<Conn<S>>, dials: &Dials, entry: &TimerEntry) -> bool {
    if let TimerKind::Dial { seq } = entry.kind {
        return dials
            .get(entry.slot)
            .is_some_and(|d| d.generation == entry.generation && d.timer_seq == seq);
    }
    let conn = conns
        .get(entry.slot)
        .filter(|c| c.generation == entry.generation);
    match entry.kind {
        TimerKind::Tick | TimerKind::Reclaim => true,
        TimerKind::User(_) => conn.is_some(),
        // At most one per connection (Outbox::age_check), put back while it is behind.
        TimerKind::Backlog => conn.is_some_and(|c| c.outbox.age_check),
        TimerKind::Conn { seq } => conn.is_some_and(|c| c.timer_seq == seq),
        TimerKind::Dial { .. } => false, // answered above
    }
}

impl<H: Handler> Worker<H> {
    /// A connection was removed or its protocol deadline replaced, so an entry on the wheel
    /// may be stale: once stale entries may be half the wheel, the wheel drops them (and
    /// shrinks its storage once it is mostly empty). Amortised O(1) per call (see
    /// [`TimerWheel::note_stale`](crate::timer::TimerWheel::note_stale)).
    pub(super) fn note_stale_timer(&mut self) {
        if self.local.wheel.note_stale() {
            self.compact_timers();
        }
    }

    /// Drops every stale entry from the wheel. O(entries + slots).
    pub(super) fn compact_timers(&mut self) {
        let conns = &self.conns;
        let dials = &self.local.dials;
        self.local
            .wheel
            .compact(|entry| entry_is_live(conns, dials, entry));
    }

    /// The connection's next deadline, in microseconds since the epoch.
    fn deadline_of(&self, key: usize) -> Option<u64> {
        let conn = self.conns.get(key)?;
        let session = match &conn.phase {
            Phase::Open { session, .. } => Some(session),
            _ => None,
        };
        let kind = conn.phase.kind();
        if matches!(kind, PhaseKind::Connecting | PhaseKind::Upgrading) {
            let upgrading = kind == PhaseKind::Upgrading;
            return self.dial_deadline_us(conn.dial, upgrading, conn.phase_since_ms);
        }
        deadline_us(
            kind,
            conn.phase_since_ms,
            session,
            &self.local.config,
            &self.local.session,
        )
    }

    /// Replaces the connection's timer entry with one for its next deadline.
    pub(super) fn arm(&mut self, key: usize) {
        let deadline = self.deadline_of(key);
        let epoch = self.epoch;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.timer_seq = conn.timer_seq.wrapping_add(1);
        conn.armed_phase = conn.phase.kind();
        if let Some(us) = deadline {
            let at = epoch + Duration::from_micros(us);
            let kind = TimerKind::Conn {
                seq: conn.timer_seq,
            };
            self.local.wheel.schedule(key, conn.generation, kind, at);
        }
    }

    /// Re-arms the timer when the connection changed phase since it was armed: its deadline
    /// may have come nearer. Not when a frame or message was finished: the deadline only moved
    /// later, and the entry that comes due early is put back (so a message that spans reads
    /// costs no timer work).
    pub(super) fn sync_timer(&mut self, key: usize, _now: Instant) {
        if self
            .conns
            .get(key)
            .is_some_and(|c| timer_outdated(c, c.phase.kind()))
        {
            self.rearm(key);
        }
    }

    /// Arms the connection's timer for its phase now, in place of the entry armed for the
    /// previous one (which is stale from then on, if there was one).
    pub(super) fn rearm(&mut self, key: usize) {
        let had_entry = self
            .conns
            .get(key)
            .is_some_and(|c| c.armed_phase != PhaseKind::Unarmed);
        self.arm(key);
        if had_entry {
            self.note_stale_timer();
        }
    }

    pub(super) fn on_timer(&mut self, entry: TimerEntry, now: Instant) {
        match entry.kind {
            TimerKind::Conn { seq } => self.on_conn_timer(entry, seq),
            TimerKind::User(token) => self.on_user_timer(entry, token),
            TimerKind::Tick => self.on_tick(now),
            TimerKind::Backlog => self.on_backlog_age(entry),
            TimerKind::Reclaim => self.reclaim(),
            TimerKind::Dial { seq } => self.on_dial_timer(entry.slot, entry.generation, seq),
        }
    }

    /// The age check of a connection's unwritten output: past
    /// [`Backpressure::max_age`](crate::config::Backpressure::max_age), the policy applies
    /// (close at once, or drop data messages until the backlog is out); before it, the check
    /// is put back for when the age is reached.
    fn on_backlog_age(&mut self, entry: TimerEntry) {
        let Some(max_age) = self.local.config.backpressure.max_age else {
            return;
        };
        let now_ms = self.local.now_us / 1000;
        let key = entry.slot;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.generation != entry.generation {
            return;
        }
        conn.outbox.age_check = false;
        if conn.backlog_reported == 0 || !matches!(conn.phase, Phase::Open { .. }) {
            return; // caught up (or closing) since
        }
        let due_ms = conn.phase_since_ms + max_age.as_millis() as u64;
        if now_ms < due_ms {
            // Caught up and fell behind again since the check was set: check then.
            conn.outbox.age_check = true;
            let at = self.epoch + Duration::from_millis(due_ms);
            self.local
                .wheel
                .schedule(key, entry.generation, TimerKind::Backlog, at);
            return;
        }
        match self.local.config.backpressure.policy {
            BackpressurePolicy::Close => {
                tracing::debug!(peer = %conn.peer, "output waited past max_age: dropping the connection");
                stats::add(&self.local.counters.closed_slow, 1);
                let reason = "output waited too long";
                self.remove(
                    key,
                    CloseCause::SlowConsumer,
                    CloseCode::POLICY_VIOLATION,
                    reason,
                );
            }
            BackpressurePolicy::Drop => conn.outbox.stale = true,
        }
    }

    /// The worker's tick: the application's callback, then the next tick on the cadence.
    fn on_tick(&mut self, now: Instant) {
        let (Some(interval), Some(deadline)) =
            (self.local.config.timers.tick_interval, self.tick_deadline)
        else {
            return;
        };
        // A panic in the tick costs that tick: logged, counted, and the next one comes.
        self.run_worker_callback("on_tick", |handler, ctx| handler.on_tick(ctx));
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

    /// Runs a callback of the whole worker (`on_tick`, `on_worker_message`) with the worker's
    /// connections at hand. A panic in it costs that call only: it is logged (within the
    /// worker's log budget) and counted, and the worker goes on.
    pub(super) fn run_worker_callback(
        &mut self,
        callback: &'static str,
        run: impl FnOnce(&mut H, &mut WorkerContext<'_, H::State>),
    ) {
        let mut ctx = WorkerContext {
            conns: &mut self.conns,
            local: &mut self.local,
        };
        let handler = &mut self.handler;
        let panicked = panic::catch_unwind(AssertUnwindSafe(|| run(handler, &mut ctx))).is_err();
        if panicked {
            stats::add(&self.local.counters.handler_panics, 1);
            if let Some(suppressed) = self.local.panic_log.admit(self.local.now_us) {
                tracing::error!(
                    worker = self.local.index,
                    callback,
                    suppressed,
                    "a handler callback panicked"
                );
            }
        }
    }

    /// An application timer on a connection.
    fn on_user_timer(&mut self, entry: TimerEntry, token: u64) {
        let now_ms = self.local.now_us / 1000;
        let id = self.conn_id(entry.slot);
        let Some(conn) = self.conns.get_mut(entry.slot) else {
            return;
        };
        if conn.generation != entry.generation {
            return;
        }
        let (handler, local) = (&mut self.handler, &mut self.local);
        dispatch::guarded_callback(conn, handler, local, id, "on_timer", |h, ws, state| {
            h.on_timer(ws, state, token)
        });
        dispatch::after_callbacks(conn, &mut self.handler, &mut self.local, entry.slot, now_ms);
        mark_dirty(conn, entry.slot, &mut self.local.dirty);
    }

    /// A connection's protocol deadline.
    fn on_conn_timer(&mut self, entry: TimerEntry, seq: u32) {
        let now_us = self.local.now_us;
        let key = entry.slot;
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        if conn.generation != entry.generation || conn.timer_seq != seq {
            return; // replaced by a newer entry, or a later connection in the slot
        }
        // This entry is used up: whatever is armed next is for the phase as it is now.
        let kind = conn.phase.kind();
        self.conns[key].armed_phase = kind;
        match self.deadline_of(key) {
            None => return,
            Some(due) if now_us < due => {
                // Activity moved the deadline on: look again then.
                let at = self.epoch + Duration::from_micros(due);
                self.local
                    .wheel
                    .schedule(key, entry.generation, entry.kind, at);
                return;
            }
            Some(_) => {}
        }
        let conn = &mut self.conns[key];
        if matches!(conn.phase, Phase::Deferred(_)) {
            self.deferred_timed_out(key);
            return;
        }
        let Phase::Open { session, .. } = &mut conn.phase else {
            // The handshake, or the close after the protocol ended, took too long.
            self.remove(key, CloseCause::Timeout, CloseCode::ABNORMAL, "");
            return;
        };
        let config = self.local.session;
        let mut sink = ControlSink::new(&mut conn.outbox, self.local.sending());
        match session.handle_timeout(&config, now_us, &mut sink) {
            None => {
                // The keepalive ping is queued.
                self.flush(key);
                self.arm(key);
            }
            Some(Timeout::PongMissed) => {
                tracing::debug!(peer = %conn.peer, "no pong within the pong timeout: closing");
                self.remove(key, CloseCause::Timeout, CloseCode::ABNORMAL, "");
            }
            Some(Timeout::MessageIncomplete) => {
                // The session queued a 1008 close: written once, its answer not awaited.
                tracing::debug!(peer = %conn.peer, "a frame or message not finished in time: closing");
                self.flush(key);
                let reason = "message not finished in time";
                self.remove(
                    key,
                    CloseCause::Timeout,
                    CloseCode::POLICY_VIOLATION,
                    reason,
                );
            }
            Some(Timeout::CloseUnanswered) => {
                let code = session.sent_close().unwrap_or(CloseCode::ABNORMAL);
                self.remove(key, CloseCause::Timeout, code, "");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lanes_proto::session::{Output, SessionConfig};
    use lanes_proto::{OpCode, Role};

    fn config() -> Config {
        let mut config = Config::default();
        config.timeouts.handshake = Duration::from_secs(10);
        config.timeouts.close = Duration::from_secs(2);
        config
    }

    #[test]
    fn the_handshake_deadline_is_the_handshake_timeout_after_accepting() {
        let due = deadline_us(
            PhaseKind::Handshake,
            1_000,
            None,
            &config(),
            &SessionConfig::server(),
        );
        assert_eq!(due, Some(11_000_000));
    }

    #[test]
    fn the_closing_phases_end_at_the_close_timeout() {
        for kind in [PhaseKind::Closing, PhaseKind::Draining] {
            assert_eq!(
                deadline_us(kind, 7_000, None, &config(), &SessionConfig::server()),
                Some(9_000_000)
            );
        }
    }

    struct Discard;
    impl Output for Discard {
        fn control(&mut self, _: OpCode, _: &[u8]) {}
    }

    #[test]
    fn an_open_connection_follows_its_sessions_deadlines_on_a_fake_clock() {
        let config = config();
        let session_config = SessionConfig {
            ping_interval_us: Some(30_000_000),
            pong_timeout_us: 5_000_000,
            close_timeout_us: 2_000_000,
            ..SessionConfig::new(Role::Server)
        };
        let mut session = Session::new(session_config, 1_000_000);
        let due = |s: &Session, kind| deadline_us(kind, 0, Some(s), &config, &session_config);
        // Keepalive: 30 s of silence after opening at 1 s.
        assert_eq!(due(&session, PhaseKind::Open), Some(31_000_000));
        assert_eq!(
            session.handle_timeout(&session_config, 30_999_999, &mut Discard),
            None
        );
        assert_eq!(
            session.handle_timeout(&session_config, 31_000_000, &mut Discard),
            None
        ); // the ping
        // Then the pong deadline, 5 s after the ping.
        assert_eq!(due(&session, PhaseKind::Open), Some(36_000_000));
        assert_eq!(
            session.handle_timeout(&session_config, 36_000_000, &mut Discard),
            Some(Timeout::PongMissed)
        );
        // Our close: answered within the close timeout, or not.
        let mut session = Session::new(session_config, 0);
        session.close(CloseCode::NORMAL, "", 4_000_000, &mut Discard);
        assert_eq!(due(&session, PhaseKind::CloseSent), Some(6_000_000));
        assert_eq!(
            session.handle_timeout(&session_config, 6_000_000, &mut Discard),
            Some(Timeout::CloseUnanswered)
        );
    }
}
