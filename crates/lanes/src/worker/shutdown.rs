//! Graceful shutdown: stop accepting, write what was queued, send 1001 to every open
//! connection, and stop once every connection has gone or the shutdown timeout has passed.

use std::time::Instant;

use lanes_proto::CloseCode;

use super::Worker;
use crate::conn::Phase;
use crate::handler::Handler;
use crate::stats::CloseCause;

impl<H: Handler> Worker<H> {
    /// Begins shutting down (once).
    pub(super) fn begin_shutdown(&mut self, now: Instant) {
        // Sends queued before the shutdown go out before the close frames.
        self.run_commands();
        self.settle(now);
        self.shutdown_deadline = Some(now + self.local.config.timeouts.shutdown);
        self.accept.stop();
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            let conn = &mut self.conns[key];
            match conn.phase {
                Phase::Handshake { .. }
                | Phase::Deferred(_)
                | Phase::Connecting
                | Phase::Upgrading(_) => {
                    self.remove(key, CloseCause::Shutdown, CloseCode::ABNORMAL, "")
                }
                Phase::Open { .. } => {
                    conn.close(
                        CloseCode::GOING_AWAY,
                        "server shutting down",
                        &mut self.local,
                    );
                    self.flush(key);
                    self.sync_timer(key, now);
                }
                _ => {}
            }
        }
        self.drop_dials();
    }

    /// Whether the worker is done: shutting down, and every connection gone (or dropped at
    /// the shutdown deadline).
    pub(super) fn shutdown_done(&mut self, now: Instant) -> bool {
        let Some(deadline) = self.shutdown_deadline else {
            return false;
        };
        if self.conns.is_empty() {
            return true;
        }
        if now >= deadline {
            let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
            for key in keys {
                self.remove(key, CloseCause::Shutdown, CloseCode::ABNORMAL, "");
            }
            return true;
        }
        false
    }
}
