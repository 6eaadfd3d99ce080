//! Dispatching: what a connection received, turned into handler callbacks, and the
//! connection's phase moved along by what the callbacks did.

use std::time::Instant;

use lanes_proto::{CloseCode, OpCode};

use super::Worker;
use crate::closed::Closed;
use crate::compress::InflateScratch;
use crate::conn::{Conn, Input, Phase};
use crate::handler::{Handler, Message};
use crate::id::ConnId;
use crate::local::Local;
use crate::outbox::SendPhase;
use crate::recv::Inbound;
use crate::stats::{self, CloseCause};
use crate::ws::Ws;

impl<H: Handler> Worker<H> {
    /// `n` new bytes are in the scratch buffer for connection `key`.
    pub(super) fn on_bytes(&mut self, key: usize, n: usize, now: Instant) {
        let now_us = self.now_us(now);
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.last_activity_ms = now_us / 1000;
        match conn.phase {
            Phase::Handshake { .. } => self.on_head_bytes(key, n, now),
            Phase::Open { .. } | Phase::CloseSent { .. } => {
                let id = self.conn_id(key);
                let conn = &mut self.conns[key];
                on_frames(
                    conn,
                    &mut self.scratch[..n],
                    &mut self.handler,
                    &mut self.local,
                    &mut self.inflate,
                    id,
                    now_us,
                );
            }
            Phase::Closing | Phase::Draining => {} // discarded
        }
    }
}

/// Runs the frames in `data` through the connection's receiver and the handler.
pub(super) fn on_frames<H: Handler>(
    conn: &mut Conn<H::State>,
    data: &mut [u8],
    handler: &mut H,
    local: &mut Local,
    inflate: &mut InflateScratch,
    id: ConnId,
    now_us: u64,
) {
    let now_ms = now_us / 1000;
    let slot = id.slot as usize;
    let mut offset = 0;
    while offset < data.len() {
        let open = match conn.phase {
            Phase::Open { .. } => true,
            Phase::CloseSent { .. } => false,
            _ => return,
        };
        let (used, event) = match conn
            .receiver
            .next(&mut data[offset..], inflate, &local.counters)
        {
            Ok(step) => step,
            Err(error) => {
                let code = error.close_code();
                let reason = error.to_string();
                tracing::debug!(peer = %conn.peer, code = code.as_u16(), %reason, "protocol error: closing");
                local.counters.note_protocol_error(code.as_u16());
                conn.outbox.close(code, &reason, local);
                let state = conn.take_state(now_ms);
                let cause = CloseCause::ProtocolError;
                fire_close(state, handler, local, id, cause, code, &reason);
                return;
            }
        };
        offset += used;
        let Some(event) = event else {
            continue;
        };
        let mut ws = Ws::new(&mut conn.outbox, &mut conn.subs, local, id, conn.peer);
        let state = match &mut conn.phase {
            Phase::Open { state } => Some(state),
            _ => None,
        };
        match event {
            Inbound::Text(text) => {
                if let Some(state) = state {
                    handler.on_message(&mut ws, state, Message::Text(text));
                }
            }
            Inbound::Binary(bytes) => {
                if let Some(state) = state {
                    handler.on_message(&mut ws, state, Message::Binary(bytes));
                }
            }
            Inbound::Ping(payload) => {
                if let Some(state) = state {
                    if ws.local.config.auto_pong {
                        ws.outbox.send(OpCode::Pong, payload, ws.local);
                    }
                    handler.on_ping(&mut ws, state, payload);
                }
            }
            Inbound::Pong(payload) => {
                stats::add(&ws.local.counters.pongs_received, 1);
                if let Some(sent_us) = conn.ping_sent_us.take() {
                    let rtt_us = now_us.saturating_sub(sent_us);
                    ws.local.counters.ping_rtt_us.record(rtt_us);
                }
                if let Some(state) = state {
                    handler.on_pong(&mut ws, state, payload);
                }
            }
            Inbound::Close(code, reason) => {
                if open {
                    ws.outbox.echo_close(code, ws.local);
                    let code = code.unwrap_or(CloseCode::NO_STATUS);
                    let state = conn.phase.take_state();
                    conn.phase_since_ms = now_ms;
                    fire_close(state, handler, local, id, CloseCause::Clean, code, reason);
                } else {
                    let ours = conn.outbox.sent_close.unwrap_or(CloseCode::NO_STATUS);
                    let cause = if local.remote.shutting_down() {
                        CloseCause::Shutdown
                    } else {
                        CloseCause::Clean
                    };
                    let state = conn.phase.take_state();
                    conn.phase_since_ms = now_ms;
                    fire_close(state, handler, local, id, cause, ours, "");
                }
                conn.receiver.after_delivery();
                return;
            }
        }
        conn.receiver.after_delivery();
        after_callbacks(conn, handler, local, slot, now_ms);
        if conn.outbox.buffered_len() > local.config.backpressure.pause_len && offset < data.len() {
            // Stop here: the rest waits until the backlog drains.
            let mut stash = local.pool.take();
            stash.extend_from_slice(&data[offset..]);
            conn.input = Input::Paused { stash: Some(stash) };
            return;
        }
    }
}

/// After a callback: if the handler closed the connection, or a send passed the hard cap,
/// move the connection's phase along.
pub(super) fn after_callbacks<H: Handler>(
    conn: &mut Conn<H::State>,
    handler: &mut H,
    local: &mut Local,
    slot: usize,
    now_ms: u64,
) {
    if !matches!(conn.phase, Phase::Open { .. }) || conn.outbox.phase != SendPhase::Closed {
        return;
    }
    if conn.outbox.overflowed {
        let state = conn.take_state(now_ms);
        let id = ConnId {
            worker: local.index,
            slot: slot as u32,
            generation: conn.generation,
        };
        let code = CloseCode::POLICY_VIOLATION;
        let reason = "send backlog over the limit";
        fire_close(
            state,
            handler,
            local,
            id,
            CloseCause::SlowConsumer,
            code,
            reason,
        );
    } else {
        conn.close_sent(now_ms);
    }
}

/// Hands a connection's state to `on_close` (when it has not been yet) and marks its id as
/// gone, so a [`Remote`](crate::Remote) send to it fails from now on.
pub(super) fn fire_close<H: Handler>(
    state: Option<H::State>,
    handler: &mut H,
    local: &mut Local,
    id: ConnId,
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
    let mut closed = Closed {
        id,
        cause,
        code,
        reason,
        local,
    };
    handler.on_close(state, &mut closed);
}
