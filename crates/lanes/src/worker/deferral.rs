//! Upgrades answered later: the connection waits on its worker, reading nothing and holding
//! only its request head, until the application's answer arrives (accept, possibly on another
//! worker, or refuse), its peer leaves, or the deadline answers 503.

use std::io::ErrorKind;
use std::sync::Arc;

use lanes_proto::CloseCode;

use super::Worker;
use super::response::write_refusal;
use crate::conn::{Conn, Deferral, Phase, mark_dirty};
use crate::deferred::DeferredCell;
use crate::handler::Handler;
use crate::handoff::DeferredAnswer;
use crate::id::ConnId;
use crate::input::Input;
use crate::stats::{self, CloseCause, Counters};

/// Takes a deferred connection's head out of its phase (leaving it closing), and stops
/// counting it as held; `None` when the connection is not deferred.
pub(super) fn end_deferral<S>(conn: &mut Conn<S>, counters: &Counters) -> Option<Vec<u8>> {
    if !matches!(conn.phase, Phase::Deferred(_)) {
        return None;
    }
    let Phase::Deferred(deferral) = std::mem::replace(&mut conn.phase, Phase::Closing) else {
        return None;
    };
    let head = deferral.head;
    stats::sub(&counters.deferred_bytes, head.capacity() as u64);
    conn.input = Input::READING;
    Some(head)
}

impl<H: Handler> Worker<H> {
    /// `on_upgrade` deferred connection `key`'s answer: keep its head (and what followed it)
    /// in a buffer of its own length, give the pool's back, stop reading, arm the deadline.
    pub(super) fn defer_upgrade(&mut self, key: usize, head_buf: Vec<u8>, cell: Arc<DeferredCell>) {
        let now_ms = self.local.now_us / 1000;
        let head = head_buf.as_slice().to_vec();
        stats::add(&self.local.counters.deferred, 1);
        stats::add(&self.local.counters.deferred_bytes, head.capacity() as u64);
        self.local.pool.put(head_buf);
        let conn = &mut self.conns[key];
        conn.set_phase(Phase::Deferred(Box::new(Deferral { head, cell })), now_ms);
        conn.input = Input::paused(Vec::new());
        self.arm(key);
    }

    /// Readiness on a deferred connection: nothing is read, but a peer that closed (or reset)
    /// is noticed: the connection goes, and the application's answer will say so.
    pub(super) fn check_deferred(&mut self, key: usize, read_closed: bool) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let mut byte = [0u8; 1];
        let left = read_closed
            || match conn.stream.peek(&mut byte) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted),
            };
        if left {
            tracing::debug!(peer = %conn.peer, "the peer left while its upgrade was deferred");
            self.remove(key, CloseCause::Reset, CloseCode::ABNORMAL, "");
        }
    }

    /// A deferred connection's deadline passed: 503, then the connection closes. Unless the
    /// application's answer is already on its way: then it is awaited (a deadline more).
    pub(super) fn deferred_timed_out(&mut self, key: usize) {
        let now_ms = self.local.now_us / 1000;
        let conn = &mut self.conns[key];
        let Phase::Deferred(deferral) = &conn.phase else {
            return;
        };
        if !deferral.cell.timed_out() {
            conn.phase_since_ms = now_ms;
            self.arm(key);
            return;
        }
        tracing::debug!(peer = %conn.peer, "deferred upgrade not answered in time: 503");
        let _ = end_deferral(conn, &self.local.counters);
        self.close_with(key, 503, b"the upgrade was not answered in time");
    }

    /// The application answered deferred upgrade `id`: refuse, accept here, or accept on the
    /// worker the acceptance places it on (the connection moves there).
    pub(super) fn on_deferred_answer(&mut self, id: ConnId, answer: DeferredAnswer) {
        let key = id.slot as usize;
        let head = match self.conns.get_mut(key) {
            Some(conn) if conn.generation == id.generation => {
                end_deferral(conn, &self.local.counters)
            }
            _ => None,
        };
        let Some(head) = head else {
            // The peer left, or the deadline answered, while the answer was queued.
            stats::add(&self.local.counters.stale, 1);
            return;
        };
        let (accepted, placement) = match answer {
            DeferredAnswer::Refuse(refusal) => {
                let mut response = Vec::new();
                write_refusal(&mut response, &refusal);
                self.answer_and_close(key, &response, refusal.status);
                return;
            }
            DeferredAnswer::Accept {
                accepted,
                placement,
            } => (accepted, placement),
        };
        let own = usize::from(self.local.index);
        let count = self.local.remote.worker_count();
        let target = placement.map_or(own, |p| p.resolve(count));
        if target >= count {
            self.close_with(key, 500, b"upgrade placed on a worker that does not exist");
            return;
        }
        if target != own {
            self.hand_off(key, target, head, accepted);
            return;
        }
        let generation = self.conns[key].generation;
        self.open_placed(key, head, accepted);
        // What the peer sent while it waited is read now.
        self.pending_reads.push((key, generation));
        if let Some(conn) = self.conns.get_mut(key) {
            mark_dirty(conn, key, &mut self.local.dirty);
        }
        self.arm(key);
    }
}
