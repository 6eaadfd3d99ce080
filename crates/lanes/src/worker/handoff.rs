//! Connections moving between workers before they open: the accepting worker hands an upgrade
//! placed elsewhere over ([`Worker::hand_off`]), and the worker it was placed on takes it into
//! its table and answers it ([`Worker::adopt`]).

use super::Worker;
use super::io;
use super::response::error_response;
use crate::conn::{Phase, mark_dirty};
use crate::handler::Handler;
use crate::handoff::{Handoff, PlacedAccept};
use crate::hub::Command;
use crate::outbox::Outbox;
use crate::stats;

impl<H: Handler> Worker<H> {
    /// Moves connection `key`, whose upgrade the handler accepted on worker `target`, there:
    /// out of this worker's table and poll, with its socket, its TLS session and `bytes` (the
    /// request head and what followed it). When `target`'s queue does not take it, the
    /// connection is answered 503 (on a plain port) and closed.
    pub(super) fn hand_off(
        &mut self,
        key: usize,
        target: usize,
        bytes: Vec<u8>,
        accepted: PlacedAccept,
    ) {
        let Some(mut conn) = self.take_out(key) else {
            return;
        };
        conn.outbox.release(&mut self.local.pool);
        conn.release_stash(&mut self.local.pool);
        self.deregister(&mut conn.stream);
        self.note_stale_timer();
        self.shrink_conns();
        let handoff = Handoff {
            stream: conn.stream,
            peer: conn.peer.get(),
            bytes,
            #[cfg(feature = "tls")]
            tls: conn.tls,
            accepted: Some(accepted),
        };
        let Some(link) = self.local.remote.link(target) else {
            return;
        };
        match link.push_or_return(Command::Adopt(Box::new(handoff))) {
            Ok(()) => stats::add(&self.local.counters.handed_off, 1),
            Err((error, Command::Adopt(handoff))) => {
                tracing::debug!(peer = %handoff.peer, target, %error, "placed upgrade refused: its worker's queue did not take it");
                self.local.counters.note_rejected(503);
                refuse_placed(*handoff);
            }
            Err(_) => {}
        }
    }

    /// Takes in a connection another worker accepted and placed on this one, and answers its
    /// upgrade as the handler there accepted it: the 101, `on_open`, then the frames that
    /// followed the head, all on this worker. An adopted connection's request (what was read
    /// of it elsewhere, then the socket) is answered as if this worker had accepted it.
    /// Refused with 503 when this worker is full.
    pub(super) fn adopt(&mut self, handoff: Handoff) {
        if self.conns.len() >= self.local.config.limits.max_connections_per_worker {
            self.local.counters.note_rejected(503);
            tracing::debug!(peer = %handoff.peer, "placed connection refused: worker at max_connections_per_worker");
            refuse_placed(handoff);
            return;
        }
        if handoff.accepted.is_none() {
            io::configure(&handoff.stream, &self.local.config.socket);
        }
        let Handoff {
            stream,
            peer,
            bytes,
            #[cfg(feature = "tls")]
            tls,
            accepted,
        } = handoff;
        let now_ms = self.local.now_us / 1000;
        #[cfg(feature = "tls")]
        let (tls, outbox) = adopted_outbox(tls, &mut self.local.pool);
        #[cfg(not(feature = "tls"))]
        let outbox = Outbox::new();
        let receiver = lanes_proto::session::Receiver::new(&self.local.session);
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
        stats::add(&self.local.counters.adopted, 1);
        let Some(accepted) = accepted else {
            // Adopted: the bytes read elsewhere are the start of the request, answered here as
            // if this worker had read them (and the rest is read from the socket).
            self.conns[key].phase = Phase::Handshake {
                head: Some(Box::new(bytes)),
            };
            self.on_head_bytes(key, 0..0);
            if let Some(conn) = self.conns.get_mut(key) {
                mark_dirty(conn, key, &mut self.local.dirty);
            }
            self.arm(key);
            return;
        };
        self.open_placed(key, bytes, accepted);
        if let Some(conn) = self.conns.get_mut(key) {
            mark_dirty(conn, key, &mut self.local.dirty);
        }
        self.arm(key);
    }
}

/// The outbox of a TLS connection taken in: laid out as records when its own record layer
/// protects them (as it was on the worker that accepted it).
#[cfg(feature = "tls")]
fn adopted_outbox(
    mut tls: Option<Box<crate::tls::TlsLayer>>,
    pool: &mut crate::pool::BufferPool,
) -> (Option<Box<crate::tls::TlsLayer>>, Outbox) {
    let mut outbox = Outbox::new();
    if tls
        .as_deref_mut()
        .is_some_and(|tls| tls.own_records().is_some())
    {
        outbox.frame_records(pool);
    }
    (tls, outbox)
}

/// A placed connection that could not be taken in: a plain one is told 503 (a TLS one could
/// not read it) and closed.
fn refuse_placed(mut handoff: Handoff) {
    #[cfg(feature = "tls")]
    if handoff.tls.is_some() {
        return;
    }
    let response = error_response(503, b"the worker this connection was placed on is busy");
    let _ = std::io::Write::write(&mut handoff.stream, &response);
    let _ = handoff.stream.shutdown(std::net::Shutdown::Write);
}
