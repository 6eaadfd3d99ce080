//! Open connections moving between workers ([`Ws::move_to`](crate::Ws::move_to)): at the end
//! of the iteration the worker takes a connection a callback asked to move out of its table,
//! poll and topics and sends all of it to the new worker, which takes it in under a new id,
//! joins its topics again and calls `on_arrive`.

use std::any::TypeId;

use super::Worker;
use super::dispatch;
use crate::conn::{Phase, mark_dirty};
use crate::handler::Handler;
use crate::handoff::{MoveRequest, MovedConn};
use crate::hub::Command;
use crate::stats;

impl<H: Handler> Worker<H> {
    /// Carries out the moves callbacks asked for in this iteration.
    pub(super) fn move_out_requested(&mut self) {
        for request in std::mem::take(&mut self.local.moves) {
            self.move_out(request);
        }
    }

    /// Sends the connection `request` names to its new worker; it stays when it is no longer
    /// open (closed, or closing) or the request named another state type.
    fn move_out(&mut self, request: MoveRequest) {
        let key = request.slot;
        let open = self.conns.get(key).is_some_and(|c| {
            c.generation == request.generation
                && matches!(&c.phase, Phase::Open { session, .. } if session.can_send())
        });
        if !open {
            return;
        }
        if request.state_type != TypeId::of::<H::State>() {
            tracing::error!(
                "Ws::move_to named a type other than the handler's State: the connection stays"
            );
            return;
        }
        let from = self.conn_id(key);
        let Some(mut conn) = self.take_out(key) else {
            return;
        };
        let topics = self.local.topics.names_of(&conn.subs);
        if !conn.subs.is_empty() {
            self.local.topics.unsubscribe_all(&mut conn.subs);
            self.local.note_subscriptions();
        }
        if !self.local.latest.is_empty() {
            self.local.latest.forget(key);
        }
        self.local.live.moved(key, conn.generation);
        stats::sub(&self.local.counters.connections, 1);
        self.deregister(&mut conn.stream);
        self.note_stale_timer();
        self.shrink_conns();
        let Phase::Open { state, session } = std::mem::replace(&mut conn.phase, Phase::Closing)
        else {
            return;
        };
        // The type was checked: this cannot fail.
        let Some(state) = (request.erase)(Box::new(state)) else {
            return;
        };
        let moved = MovedConn {
            stream: conn.stream,
            peer: conn.peer.get(),
            state,
            session,
            receiver: conn.receiver,
            outbox: conn.outbox,
            input: conn.input,
            #[cfg(feature = "tls")]
            tls: conn.tls,
            topics,
            from,
        };
        let Some(link) = self.local.remote.link(request.worker) else {
            return;
        };
        match link.push_or_return(Command::Arrive(Box::new(moved))) {
            Ok(()) => stats::add(&self.local.counters.moved_out, 1),
            Err((error, Command::Arrive(moved))) => {
                tracing::debug!(%error, worker = request.worker, "connection not moved: it stays");
                self.arrive(*moved);
            }
            Err(_) => {}
        }
    }

    /// Takes in an open connection moved here: a new slot and id, its topics joined again,
    /// `on_arrive`, then what it has to read and write.
    pub(super) fn arrive(&mut self, moved: MovedConn) {
        let MovedConn {
            stream,
            peer,
            state,
            session,
            receiver,
            outbox,
            input,
            #[cfg(feature = "tls")]
            tls,
            topics,
            from,
        } = moved;
        let Ok(state) = state.downcast::<H::State>() else {
            tracing::error!("a moved connection's state is of another type: dropped");
            return;
        };
        let now_ms = self.local.now_us / 1000;
        let Some(key) = self.take_in(
            stream,
            peer,
            now_ms,
            receiver,
            outbox,
            #[cfg(feature = "tls")]
            tls,
        ) else {
            return;
        };
        let conn = &mut self.conns[key];
        let generation = conn.generation;
        conn.phase = Phase::Open {
            state: *state,
            session,
        };
        conn.input = input;
        let limit = self.local.config.limits.max_subscriptions_per_connection;
        for topic in &topics {
            let _ = self
                .local
                .topics
                .subscribe(topic, (key, generation), &mut conn.subs, limit);
        }
        if !topics.is_empty() {
            self.local.note_subscriptions();
        }
        self.local.live.open(key, generation);
        stats::add(&self.local.counters.connections, 1);
        stats::add(&self.local.counters.moved_in, 1);
        let id = self.conn_id(key);
        let now_ms = self.local.now_us / 1000;
        let conn = &mut self.conns[key];
        let (handler, local) = (&mut self.handler, &mut self.local);
        if dispatch::guarded_callback(conn, handler, local, id, "on_arrive", |h, ws, s| {
            h.on_arrive(ws, s, from)
        }) {
            dispatch::after_callbacks(conn, &mut self.handler, &mut self.local, key, now_ms);
        }
        if let Some(conn) = self.conns.get_mut(key) {
            mark_dirty(conn, key, &mut self.local.dirty);
            // What arrived on the socket meanwhile (and a stash from a pause) is read now.
            self.pending_reads.push((key, generation));
        }
        self.arm(key);
    }
}
