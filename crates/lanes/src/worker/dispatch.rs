//! Dispatching: what a connection received, run through its protocol session and turned into
//! handler callbacks, and the connection moved along by what the session and the callbacks did.

use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};

use lanes_proto::CloseCode;
use lanes_proto::ProtocolError;
use lanes_proto::deflate::InflateScratch;
use lanes_proto::session::{Closed as SessionClosed, Event, Initiator};

use super::Worker;
use crate::closed::Closed;
use crate::conn::{Conn, Phase};
use crate::dials::NO_DIAL;
use crate::handler::{Handler, Message};
use crate::id::ConnId;
use crate::input::Input;
use crate::local::Local;
use crate::outbox::ControlSink;
use crate::stats::{self, CloseCause};
use crate::ws::Ws;

impl<H: Handler> Worker<H> {
    /// New bytes for connection `key` are in the scratch buffer, at `bytes`.
    pub(super) fn on_bytes(&mut self, key: usize, bytes: Range<usize>) {
        let now_us = self.local.now_us;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        match conn.phase {
            Phase::Handshake { .. } => self.on_head_bytes(key, bytes),
            Phase::Upgrading(_) => self.on_answer_bytes(key, bytes),
            Phase::Open { .. } => {
                let id = self.conn_id(key);
                let conn = &mut self.conns[key];
                on_frames(
                    conn,
                    &mut self.scratch[bytes],
                    &mut self.handler,
                    &mut self.local,
                    &mut self.inflate,
                    id,
                    now_us,
                );
            }
            // Discarded (a deferred connection reads nothing, so none comes).
            Phase::Deferred(_) | Phase::Connecting | Phase::Closing | Phase::Draining => {}
        }
    }
}

impl<H: Handler> Worker<H> {
    /// Takes connection `key` out of the table; its backlog and partial input are no longer
    /// counted (in the gauge and the memory budget).
    pub(super) fn take_out(&mut self, key: usize) -> Option<Conn<H::State>> {
        let conn = self.conns.remove(key)?;
        stats::sub(
            &self.local.counters.buffered_bytes,
            u64::from(conn.backlog_reported),
        );
        self.held -= conn.backlog_reported as usize + conn.partial_reported as usize;
        Some(conn)
    }

    /// Removes a connection; fires `on_close` if it has not fired yet. An outbound connection
    /// that had not opened ends its attempt (`on_connect_failed`); a reconnecting one that was
    /// open is made again after its back-off.
    pub(super) fn remove(&mut self, key: usize, cause: CloseCause, code: CloseCode, reason: &str) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let dial = conn.dial;
        if dial == NO_DIAL {
            self.remove_conn(key, cause, code, reason);
            return;
        }
        if matches!(conn.phase, Phase::Connecting | Phase::Upgrading(_)) {
            self.attempt_ended(key, cause);
            return;
        }
        self.remove_conn(key, cause, code, reason);
        self.after_removal(dial, key);
    }

    /// Takes connection `key` out of the table for good (see [`remove`](Self::remove)).
    pub(super) fn remove_conn(
        &mut self,
        key: usize,
        cause: CloseCause,
        code: CloseCode,
        reason: &str,
    ) {
        let id = self.conn_id(key);
        let Some(mut conn) = self.take_out(key) else {
            return;
        };
        if !conn.subs.is_empty() {
            self.local.topics.unsubscribe_all(&mut conn.subs);
            self.local.note_subscriptions();
        }
        if !self.local.latest.is_empty() {
            self.local.latest.forget(key);
        }
        let state = conn.take_state(0);
        let local = &mut self.local;
        fire_close(
            state,
            &mut self.handler,
            local,
            id,
            conn.dial,
            cause,
            code,
            reason,
        );
        conn.outbox.release(&mut self.local.pool);
        #[cfg(feature = "tls")]
        if let Some(tls) = conn.tls.as_deref_mut() {
            if tls.is_handshaking() && !tls.failure_counted && cause != CloseCause::Shutdown {
                let reason = if cause == CloseCause::Timeout {
                    crate::stats::TlsFailure::Timeout
                } else {
                    crate::stats::TlsFailure::Closed
                };
                self.local.counters.note_tls_failure(reason);
            }
            tls.release(&mut self.local.pool);
        }
        conn.release_stash(&mut self.local.pool);
        if let Phase::Deferred(deferral) = &conn.phase {
            // The application's answer will find the connection gone.
            deferral.cell.peer_left();
        }
        let _ = super::deferral::end_deferral(&mut conn, &self.local.counters);
        match conn.phase {
            Phase::Handshake { head: Some(head) } => self.local.pool.put(*head),
            Phase::Upgrading(upgrading) => {
                if let Some(head) = upgrading.head {
                    self.local.pool.put(head);
                }
            }
            _ => {}
        }
        // No deregistering: dropping `conn` below closes the socket, which takes it out of
        // the epoll set (no other descriptor refers to it): one `epoll_ctl` less per
        // connection.
        // A descriptor was freed: accepting may work again.
        self.accept.descriptor_freed();
        // Its timer entries are stale now, and after a spike the table may be far larger
        // than what is left in it.
        self.note_stale_timer();
        self.shrink_conns();
    }
}

/// Runs the bytes in `data` through the connection's session and the handler (see
/// [`run_frames`]). A panic in a callback costs this connection only: it is closed with 1011
/// and `on_close` runs (see [`handler_panicked`]).
pub(super) fn on_frames<H: Handler>(
    conn: &mut Conn<H::State>,
    data: &mut [u8],
    handler: &mut H,
    local: &mut Local,
    inflate: &mut InflateScratch,
    id: ConnId,
    now_us: u64,
) {
    // One catch per read, not per message. Unwinding from a callback leaves nothing of ours
    // half done: the callbacks run between the session's steps, and the connection is failed
    // at once.
    let run = || run_frames(conn, data, handler, local, inflate, id, now_us);
    if panic::catch_unwind(AssertUnwindSafe(run)).is_err() {
        handler_panicked(conn, handler, local, id, "on_message, on_ping or on_pong");
    }
}

/// A callback panicked while it ran for `conn`: the panic is counted and logged with the
/// connection's id (at most `PANIC_LOG_BURST` lines per `PANIC_LOG_WINDOW`), the connection is
/// closed with 1011 (internal error), and `on_close` runs for it (cause
/// [`CloseCause::HandlerPanic`]) so the application can clean up. The worker and its other
/// connections go on.
#[cold]
pub(super) fn handler_panicked<H: Handler>(
    conn: &mut Conn<H::State>,
    handler: &mut H,
    local: &mut Local,
    id: ConnId,
    callback: &'static str,
) {
    stats::add(&local.counters.handler_panics, 1);
    if let Some(suppressed) = local.panic_log.admit(local.now_us) {
        tracing::error!(connection = ?id, callback, suppressed, "a handler callback panicked: closing its connection with 1011");
    }
    let (code, reason) = (CloseCode::INTERNAL_ERROR, "internal error");
    conn.close(code, reason, local);
    let state = conn.take_state(local.now_us / 1000);
    fire_close(
        state,
        handler,
        local,
        id,
        conn.dial,
        CloseCause::HandlerPanic,
        code,
        reason,
    );
}

/// Runs `callback` with the handle and state of `conn` when it is open (`on_open`, `on_drain`,
/// `on_timer`); a panic in it fails the connection as [`handler_panicked`] says. Returns false
/// when it panicked.
pub(super) fn guarded_callback<H: Handler>(
    conn: &mut Conn<H::State>,
    handler: &mut H,
    local: &mut Local,
    id: ConnId,
    name: &'static str,
    callback: impl FnOnce(&mut H, &mut Ws<'_>, &mut H::State),
) -> bool {
    let run = || {
        if let Some((mut ws, state)) = conn.callback(local, id) {
            callback(handler, &mut ws, state);
        }
    };
    if panic::catch_unwind(AssertUnwindSafe(run)).is_ok() {
        return true;
    }
    handler_panicked(conn, handler, local, id, name);
    false
}

/// Runs the bytes in `data` through the connection's session and the handler: each message,
/// ping and pong to its callback, the close handshake to `on_close`, a protocol error to a
/// close with its code. Stops early, stashing the rest, when the outgoing backlog passes the
/// backpressure limit. Messages are the hot path; everything else is out of line.
fn run_frames<H: Handler>(
    conn: &mut Conn<H::State>,
    data: &mut [u8],
    handler: &mut H,
    local: &mut Local,
    inflate: &mut InflateScratch,
    id: ConnId,
    now_us: u64,
) {
    let mut offset = 0;
    while offset < data.len() {
        let Phase::Open { state, session } = &mut conn.phase else {
            return;
        };
        let config = local.session;
        let mut sink = ControlSink::new(&mut conn.outbox, local.sending());
        let step = conn.receiver.handle_bytes(
            session,
            &config,
            &mut data[offset..],
            inflate,
            now_us,
            &mut sink,
        );
        let step = match step {
            Ok(step) => step,
            Err(error) => {
                fail(conn, handler, local, id, &error);
                return;
            }
        };
        offset += step.used;
        let Some(event) = step.event else {
            continue;
        };
        // Each arm makes its own handle: one shared by the arms that call out of line would
        // have to be built in memory for the messages too.
        match event {
            Event::Text(text) => {
                let mut ws = Ws::new(
                    &mut conn.outbox,
                    session,
                    &mut conn.subs,
                    local,
                    id,
                    &conn.peer,
                );
                handler.on_message(&mut ws, state, Message::Text(text));
            }
            Event::Binary(bytes) => {
                let mut ws = Ws::new(
                    &mut conn.outbox,
                    session,
                    &mut conn.subs,
                    local,
                    id,
                    &conn.peer,
                );
                handler.on_message(&mut ws, state, Message::Binary(bytes));
            }
            Event::Ping(payload) | Event::Pong(payload) => {
                let pong = matches!(event, Event::Pong(_));
                let mut ws = Ws::new(
                    &mut conn.outbox,
                    session,
                    &mut conn.subs,
                    local,
                    id,
                    &conn.peer,
                );
                on_ping_or_pong(handler, &mut ws, state, payload, pong);
            }
            Event::Close(close) => {
                on_peer_close(&mut conn.phase, handler, local, id, conn.dial, close);
                conn.close_exchanged = true;
                conn.phase_since_ms = now_us / 1000;
                conn.receiver.release();
                return;
            }
        }
        conn.receiver.release();
        after_callbacks(conn, handler, local, id.slot as usize, now_us / 1000);
        if conn.outbox.buffered_len() > local.config.backpressure.pause_len && offset < data.len() {
            stash(conn, local, &data[offset..]);
            return;
        }
    }
}

/// A ping (already answered when auto-pong is on), or a pong: counted, its round trip
/// recorded when it answers our keepalive ping.
#[inline(never)]
fn on_ping_or_pong<H: Handler>(
    handler: &mut H,
    ws: &mut Ws<'_>,
    state: &mut H::State,
    payload: &[u8],
    pong: bool,
) {
    if !pong {
        handler.on_ping(ws, state, payload);
        return;
    }
    stats::add(&ws.local.counters.pongs_received, 1);
    if let Some(rtt_us) = ws.session.take_ping_rtt_us() {
        ws.local.counters.ping_rtt_us.record(rtt_us);
    }
    handler.on_pong(ws, state, payload);
}

/// The peer's close frame: both close frames are exchanged (the session echoed the peer's, or
/// this answers ours), so `on_close` runs and the server ends the TCP connection.
#[cold]
fn on_peer_close<H: Handler>(
    phase: &mut Phase<H::State>,
    handler: &mut H,
    local: &mut Local,
    id: ConnId,
    dial: u32,
    close: SessionClosed<'_>,
) {
    let (cause, code, reason) = match close.initiator {
        Initiator::Peer => {
            let code = close.code.unwrap_or(CloseCode::NO_STATUS);
            (CloseCause::Clean, code, close.reason)
        }
        Initiator::Us => {
            let cause = if local.remote.shutting_down() {
                CloseCause::Shutdown
            } else {
                CloseCause::Clean
            };
            let ours = match phase {
                Phase::Open { session, .. } => session.sent_close(),
                _ => None,
            };
            (cause, ours.unwrap_or(CloseCode::NO_STATUS), "")
        }
    };
    let state = phase.take_state();
    fire_close(state, handler, local, id, dial, cause, code, reason);
}

/// A protocol error: the session has queued its close frame with the error's code; `on_close`
/// runs with it.
#[cold]
fn fail<H: Handler>(
    conn: &mut Conn<H::State>,
    handler: &mut H,
    local: &mut Local,
    id: ConnId,
    error: &ProtocolError,
) {
    let code = error.close_code();
    let reason = error.to_string();
    tracing::debug!(peer = %conn.peer, code = code.as_u16(), %reason, "protocol error: closing");
    local.counters.note_protocol_error(code.as_u16());
    let state = conn.take_state(local.now_us / 1000);
    fire_close(
        state,
        handler,
        local,
        id,
        conn.dial,
        CloseCause::ProtocolError,
        code,
        &reason,
    );
    conn.receiver.release();
}

/// Over the backpressure limit with input left: keep the rest until the backlog drains.
#[cold]
fn stash<S>(conn: &mut Conn<S>, local: &mut Local, rest: &[u8]) {
    let mut stash = local.pool.take();
    stash.extend_from_slice(rest);
    conn.input = Input::paused(stash);
}

/// After callbacks or sends: a connection whose backlog passed the hard cap under
/// [`BackpressurePolicy::Close`](crate::BackpressurePolicy::Close) is closed with 1008 and
/// `on_close` runs (cause: slow consumer).
#[inline]
pub(super) fn after_callbacks<H: Handler>(
    conn: &mut Conn<H::State>,
    handler: &mut H,
    local: &mut Local,
    slot: usize,
    now_ms: u64,
) {
    if conn.outbox.overflowed {
        close_slow_consumer(conn, handler, local, slot, now_ms);
    }
}

/// Closes a connection whose backlog passed the hard cap (once).
#[cold]
fn close_slow_consumer<H: Handler>(
    conn: &mut Conn<H::State>,
    handler: &mut H,
    local: &mut Local,
    slot: usize,
    now_ms: u64,
) {
    if !matches!(conn.phase, Phase::Open { .. }) {
        return;
    }
    let code = CloseCode::POLICY_VIOLATION;
    let reason = "send backlog over the limit";
    conn.close(code, reason, local);
    let state = conn.take_state(now_ms);
    let id = ConnId {
        worker: local.index,
        slot: slot as u32,
        generation: conn.generation,
    };
    fire_close(
        state,
        handler,
        local,
        id,
        conn.dial,
        CloseCause::SlowConsumer,
        code,
        reason,
    );
}

/// Hands a connection's state to `on_close` (when it has not been yet) and marks its id as
/// gone, so a [`Remote`](crate::Remote) send to it fails from now on.
#[allow(clippy::too_many_arguments)]
pub(super) fn fire_close<H: Handler>(
    state: Option<H::State>,
    handler: &mut H,
    local: &mut Local,
    id: ConnId,
    dial: u32,
    cause: CloseCause,
    code: CloseCode,
    reason: &str,
) {
    let Some(state) = state else {
        return;
    };
    local.live.close(id.slot as usize);
    stats::sub(&local.counters.connections, 1);
    local.counters.note_closed(cause);
    let reconnect_in = if dial == NO_DIAL {
        None
    } else {
        let shutting_down = local.remote.shutting_down();
        local.dials.plan_loss(dial, shutting_down, &mut local.rng)
    };
    let mut closed = Closed {
        id,
        cause,
        code,
        reason,
        reconnect_in,
        local: &mut *local,
    };
    let caught = panic::catch_unwind(AssertUnwindSafe(|| handler.on_close(state, &mut closed)));
    if caught.is_err() {
        // The state went with the unwinding; there is nothing left to clean up.
        stats::add(&local.counters.handler_panics, 1);
        if let Some(suppressed) = local.panic_log.admit(local.now_us) {
            tracing::error!(connection = ?id, callback = "on_close", suppressed, "a handler callback panicked");
        }
    }
}
