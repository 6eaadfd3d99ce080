//! Accepting: the listener drained up to a bound per wake-up, and left alone for a while when
//! the process runs out of file descriptors.

use std::io::ErrorKind;
#[cfg(feature = "tls")]
use std::sync::Arc;
use std::time::Instant;

use mio::Token;

use super::Worker;
use crate::conn::Conn;
use crate::handler::Handler;
use crate::outbox::Outbox;
use crate::stats;
use lanes_proto::session::Receiver;

use super::io;

impl<H: Handler> Worker<H> {
    /// Accepts what the listener has, up to `accepts_per_wakeup`.
    pub(super) fn accept(&mut self, now: Instant) {
        self.accept.pending = false;
        if self.accept.paused_until.is_some() || self.accept.stopped {
            return;
        }
        for _ in 0..self.local.config.socket.accepts_per_wakeup {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => {
                    if self.accept.emfile_streak {
                        self.accept.emfile_streak = false;
                        // Only after a warning that was logged: the pair stays a pair.
                        if std::mem::take(&mut self.accept.emfile_logged) {
                            tracing::info!(worker = self.local.index, "accepting again");
                        }
                    }
                    stats::add(&self.local.counters.accepted, 1);
                    self.admit(stream, peer, now);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    // Out of descriptors: leave the listener alone for a while (or until a
                    // connection closes) rather than spin on it. A streak ends with the next
                    // accept, which clients can make happen at will (each connection that
                    // closes frees a descriptor): one warning per streak, and at most one per
                    // EMFILE_LOG_WINDOW, saying how many streaks went unlogged since the last.
                    if self.accept.emfile_streak {
                        tracing::debug!(worker = self.local.index, error = %e, "still out of file descriptors");
                    } else {
                        self.accept.emfile_streak = true;
                        if let Some(suppressed) = self.accept.emfile_log.admit(self.local.now_us) {
                            self.accept.emfile_logged = true;
                            tracing::warn!(
                                worker = self.local.index,
                                error = %e,
                                suppressed,
                                "out of file descriptors: accepting paused"
                            );
                        }
                    }
                    self.accept.paused_until = Some(now + self.local.config.socket.accept_backoff);
                    return;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {} // ECONNABORTED and the like: that connection is gone, go on.
            }
        }
        self.accept.pending = true;
    }

    /// After the ready events: accept on when the last wake-up left connections waiting, or
    /// when the back-off has passed.
    pub(super) fn accept_more(&mut self, now: Instant) {
        if self.accept.has_pending() {
            self.accept(now);
        }
        if let Some(until) = self.accept.paused_until
            && now >= until
        {
            self.accept.paused_until = None;
            self.accept(now);
        }
    }

    /// A new connection's TLS layer on a TLS port (with the latest configuration), `None` on a
    /// plain one.
    #[cfg(feature = "tls")]
    fn tls_layer(&mut self) -> Result<Option<Box<crate::tls::TlsLayer>>, rustls::Error> {
        let version = self.tls.config.as_ref().map_or(0, |(v, _)| *v);
        if let Some(newer) = self.shared.tls.newer_than(version) {
            self.tls.config = Some(newer);
        }
        match &self.tls.config {
            Some((_, config)) => {
                let layer = crate::tls::TlsLayer::new(Arc::clone(config))?;
                Ok(Some(Box::new(layer)))
            }
            None => Ok(None),
        }
    }

    /// Takes a connection into the table in its handshake phase (registered with this worker's
    /// poll, under the next generation); its key, or `None` when it could not be registered.
    pub(super) fn take_in(
        &mut self,
        mut stream: mio::net::TcpStream,
        peer: std::net::SocketAddr,
        now_ms: u64,
        receiver: Receiver,
        outbox: Outbox,
        #[cfg(feature = "tls")] tls: Option<Box<crate::tls::TlsLayer>>,
    ) -> Option<usize> {
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        io::register(&self.poll, &mut stream, Token(key)).ok()?;
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        entry.insert(Conn::handshaking(
            stream,
            peer,
            generation,
            now_ms,
            receiver,
            outbox,
            #[cfg(feature = "tls")]
            tls,
        ));
        Some(key)
    }

    /// Takes a new TCP connection into the table (or refuses it with 503 when the worker is
    /// full), reads what it sent, and arms its handshake timeout if the head is still awaited.
    fn admit(&mut self, mut stream: mio::net::TcpStream, peer: std::net::SocketAddr, now: Instant) {
        // TCP_NODELAY and SO_SNDBUF come from the listener (see `listener::bind_reuseport`).
        #[cfg(feature = "tls")]
        let is_tls = self.shared.tls.is_on();
        #[cfg(not(feature = "tls"))]
        let is_tls = false;
        if self.conns.len() >= self.local.config.limits.max_connections_per_worker {
            // A TLS client could not read a plain 503: it is only disconnected.
            if !is_tls {
                io::refuse_busy(&mut stream);
            }
            self.local.counters.note_rejected(503);
            tracing::debug!(%peer, "connection refused: worker at max_connections_per_worker");
            return;
        }
        #[cfg(feature = "tls")]
        let tls = match self.tls_layer() {
            Ok(tls) => tls,
            Err(error) => {
                tracing::warn!(%peer, %error, "TLS connection refused: rustls would not start it");
                return;
            }
        };
        let now_ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
        let receiver = Receiver::new(&self.local.session);
        let Some(key) = self.take_in(
            stream,
            peer,
            now_ms,
            receiver,
            Outbox::new(),
            #[cfg(feature = "tls")]
            tls,
        ) else {
            return;
        };
        // The request head usually came with the connection (a client sends it right after
        // connecting): read it now instead of in the next iteration, which saves an epoll
        // round per handshake, and a timer entry when it completes the upgrade. The I/O arms
        // the connection's timer for the phase it is left in: the handshake deadline while
        // the head is awaited (`PhaseKind::Unarmed` until then).
        self.on_io(key, true, false, false);
    }
}
