//! The worker's memory budget ([`MemoryConfig::worker_budget`](crate::config::MemoryConfig::worker_budget)):
//! what its connections hold for partial messages and outgoing backlogs, kept as a running
//! total as it changes (after reads and writes, no scan), and when the total passes the budget,
//! the connections holding the most are closed until it is back under.

use lanes_proto::CloseCode;

use super::Worker;
use crate::conn::{Conn, PhaseKind};
use crate::handler::Handler;
use crate::stats::CloseCause;

/// What a connection holds for input not yet delivered: the partial frame or message in its
/// receiver, what was read before reading paused, and an incomplete TLS record.
fn partial_len<S>(conn: &Conn<S>) -> u32 {
    let stash = conn.input.stash_len();
    (conn.receiver.buffered_len() + stash + conn.tls_carried_len()).min(u32::MAX as usize) as u32
}

impl<H: Handler> Worker<H> {
    /// After a connection's I/O: brings its partial input in the running total up to date,
    /// and re-arms its timer when its phase changed (one lookup for both).
    #[inline]
    pub(super) fn settle_conn(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let kind = conn.phase.kind();
        // An open connection with no frame or message begun and reading holds no partial
        // input (its receiver releases what it delivered): no need to look.
        let idle =
            kind == PhaseKind::Open && conn.input.is_reading() && conn.tls_carried_len() == 0;
        if !idle || conn.partial_reported != 0 {
            let now = partial_len(conn);
            if now != conn.partial_reported {
                self.held = self.held + now as usize - conn.partial_reported as usize;
                conn.partial_reported = now;
            }
        }
        if super::keepalive::timer_outdated(conn, kind) {
            self.rearm(key);
        }
    }

    /// Over the budget: closes the connections that hold the most until the worker is back
    /// under it. A connection whose partial input is the larger part is told 1009 (its
    /// message cannot be taken now) when nothing else is queued before the close; one whose
    /// backlog is the larger part is dropped without a frame (it is not reading).
    #[cold]
    pub(super) fn shed_memory(&mut self) {
        let budget = self.local.config.memory.worker_budget;
        if self.held <= budget {
            return;
        }
        let mut holders: Vec<(usize, usize)> = self
            .conns
            .iter()
            .map(|(key, c)| {
                (
                    c.partial_reported as usize + c.backlog_reported as usize,
                    key,
                )
            })
            .filter(|&(held, _)| held > 0)
            .collect();
        holders.sort_unstable_by(|a, b| b.cmp(a));
        let before = self.held;
        let mut closed = 0usize;
        for (_, key) in holders {
            if self.held <= budget {
                break;
            }
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            let (code, reason) = if conn.partial_reported >= conn.backlog_reported {
                (
                    CloseCode::MESSAGE_TOO_BIG,
                    "over the server's memory budget",
                )
            } else {
                (
                    CloseCode::POLICY_VIOLATION,
                    "backlog over the server's memory budget",
                )
            };
            // (On TLS the frame would have to be encrypted: the connection is only dropped.)
            if code == CloseCode::MESSAGE_TOO_BIG
                && conn.outbox.buffered_len() == 0
                && !conn.is_tls()
            {
                super::io::write_close_now(&mut conn.stream, code, reason);
            }
            self.remove(key, CloseCause::MemoryBudget, code, reason);
            closed += 1;
        }
        tracing::warn!(
            worker = self.local.index,
            budget,
            held_before = before,
            held_after = self.held,
            closed,
            "over the memory budget: closed the connections holding the most"
        );
    }
}
