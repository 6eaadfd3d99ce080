//! Socket I/O: the only code that reads, writes, registers or shuts down a connection's socket.
//! One `read` loop per readiness event (bounded by `reads_per_wakeup`), one `write` per
//! connection per loop iteration. On a TLS port the bytes go through the connection's TLS layer
//! (`tls/`) on the way in and out.

use std::io::{self, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use lanes_proto::close::{MAX_CLOSE_PAYLOAD_LEN, write_close_payload};
use lanes_proto::session::encode_frame;
use lanes_proto::{CloseCode, FrameHeader, OpCode, Role};
use mio::net::TcpStream;
use mio::{Interest, Poll, Token};

use super::Worker;
use super::commands::send_published;
use super::dispatch;
use crate::config::SocketTuning;
use crate::conn::{Conn, Phase};
use crate::dials::NO_DIAL;
use crate::handler::Handler;
use crate::input::Input;
use crate::local::Local;
use crate::socket_io;
#[cfg(feature = "tls")]
use crate::stats::TlsFailure;
use crate::stats::{self, CloseCause};
use crate::timer::TimerKind;

/// The answer to a connection the worker has no room for.
const SERVICE_UNAVAILABLE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 21\r\n\r\ntoo many connections\n";

/// Socket options for every accepted connection: `TCP_NODELAY`, since every write is a whole
/// batch of frames and waiting for more would only add latency; `SO_SNDBUF` when
/// [`SocketTuning::send_buffer_len`] sets it.
pub(super) fn configure(stream: &TcpStream, tuning: &SocketTuning) {
    let _ = stream.set_nodelay(true);
    if let Some(len) = tuning.send_buffer_len {
        let _ = socket2::SockRef::from(stream).set_send_buffer_size(len);
    }
}

/// Writes a close frame straight to the socket, once, without waiting: for a connection being
/// dropped at once with nothing else queued before the close (what the socket does not take is
/// lost).
pub(super) fn write_close_now(stream: &mut TcpStream, code: CloseCode, reason: &str) {
    let mut payload = [0u8; MAX_CLOSE_PAYLOAD_LEN];
    let len = write_close_payload(&mut payload, code, reason);
    let mut frame = Vec::with_capacity(2 + len);
    let header = FrameHeader::new(true, OpCode::Close, 0);
    encode_frame(&mut frame, Role::Server, header, &payload[..len], [0; 4]);
    let _ = stream.write(&frame);
}

/// Answers 503 and shuts down our side (the worker is full).
pub(super) fn refuse_busy(stream: &mut TcpStream) {
    let _ = stream.write(SERVICE_UNAVAILABLE);
    let _ = stream.shutdown(Shutdown::Write);
}

/// Registers a new connection for reading and writing (edge-triggered).
pub(super) fn register(poll: &Poll, stream: &mut TcpStream, token: Token) -> io::Result<()> {
    poll.registry()
        .register(stream, token, Interest::READABLE | Interest::WRITABLE)
}

/// A write left part of an open connection's output unsent: note when (the age of its backlog
/// counts from here) and, with [`Backpressure::max_age`](crate::config::Backpressure::max_age)
/// set, put its age check on the wheel (one at a time).
#[cold]
fn fell_behind<S>(conn: &mut Conn<S>, key: usize, local: &mut Local, epoch: Instant) {
    if !matches!(conn.phase, Phase::Open { .. }) {
        return;
    }
    let now_ms = local.now_us / 1000;
    conn.phase_since_ms = now_ms;
    if let Some(age) = local.config.backpressure.max_age
        && !conn.outbox.age_check
    {
        conn.outbox.age_check = true;
        let at = epoch + Duration::from_millis(now_ms) + age;
        local
            .wheel
            .schedule(key, conn.generation, TimerKind::Backlog, at);
    }
}

/// A closing connection whose backlog is written: shut down our side (after a TLS
/// close_notify, written at once: what the socket does not take is lost), and drain.
fn shut_down_writing<S>(conn: &mut Conn<S>, now_ms: u64, pool: &mut crate::pool::BufferPool) {
    #[cfg(feature = "tls")]
    if let Some(tls) = conn.tls.as_deref_mut() {
        tls.close_notify(pool);
        let _ = conn.stream.write(tls.wire());
        tls.release(pool);
    }
    #[cfg(not(feature = "tls"))]
    let _ = pool;
    let _ = conn.stream.shutdown(Shutdown::Write);
    conn.set_phase(Phase::Draining, now_ms);
}

impl<H: Handler> Worker<H> {
    /// Deregisters a connection that is going away (its socket closes when dropped).
    pub(super) fn deregister(&self, stream: &mut TcpStream) {
        let _ = self.poll.registry().deregister(stream);
    }

    /// Readiness on a connection: write what is queued, read what arrived, act on the result.
    /// `read_closed` says the peer's end of stream came with the event, so reading goes on
    /// until it is seen even after a short read.
    pub(super) fn on_io(&mut self, key: usize, readable: bool, read_closed: bool, writable: bool) {
        // One look at the phase for the two that read differently (a flush changes neither).
        let (connecting, deferred) = match self.conns.get(key) {
            Some(c) => (
                matches!(c.phase, Phase::Connecting),
                matches!(c.phase, Phase::Deferred(_)),
            ),
            None => return,
        };
        if connecting {
            self.on_connect_ready(key);
            if !self
                .conns
                .get(key)
                .is_some_and(|c| matches!(c.phase, Phase::Upgrading(_)))
            {
                return; // not connected yet, or this address failed
            }
        }
        if writable {
            self.flush(key);
        }
        if readable && deferred {
            self.check_deferred(key, read_closed);
            return;
        }
        if readable {
            self.read(key, read_closed);
        }
        self.flush(key);
        self.settle_conn(key);
    }

    fn read(&mut self, key: usize, read_closed: bool) {
        let reads = self.local.config.socket.reads_per_wakeup;
        self.resume_stash(key);
        for _ in 0..reads {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if conn.is_paused() || matches!(conn.phase, Phase::Closing) {
                return;
            }
            // On TLS, the start of an incomplete record goes back in front of what is read.
            let carried = conn.tls_carried_len();
            if carried >= self.scratch.len() {
                self.tls_failed_oversized(key);
                return;
            }
            let room = self.scratch.len() - carried;
            match socket_io::recv(&conn.stream, &mut self.scratch[carried..]) {
                Ok(0) => {
                    // The peer closed its side: whatever the phase, the connection is over. A
                    // peer that closed after the close handshake already had on_close fire
                    // with the right code.
                    self.remove(key, CloseCause::Reset, CloseCode::ABNORMAL, "");
                    return;
                }
                Ok(n) => {
                    stats::add(&self.local.counters.bytes_received, n as u64);
                    #[cfg(feature = "tls")]
                    if conn.tls.is_some() {
                        self.on_tls_bytes(key, carried, n);
                    } else {
                        self.on_bytes(key, 0..n);
                    }
                    #[cfg(not(feature = "tls"))]
                    self.on_bytes(key, 0..n);
                    let Some(conn) = self.conns.get_mut(key) else {
                        return;
                    };
                    if conn.outbox.buffered_len() > self.local.config.backpressure.pause_len {
                        // Over the limit: no more reading until the backlog drains.
                        if !conn.is_paused() {
                            conn.input = Input::paused(Vec::new());
                        }
                        return;
                    }
                    // A short read emptied the socket: the next arrival brings a new edge.
                    // Unless the end of stream came with this event: then read on to see it.
                    if n < room && !read_closed {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.remove(key, CloseCause::Reset, CloseCode::ABNORMAL, "");
                    return;
                }
            }
        }
        if let Some(conn) = self.conns.get(key) {
            self.pending_reads.push((key, conn.generation));
        }
    }

    /// Input read before a pause: processed before reading more, once reading resumed.
    fn resume_stash(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let Some(mut stash) = conn.input.take_resuming() else {
            return;
        };
        let now_us = self.local.now_us;
        let id = self.conn_id(key);
        let conn = &mut self.conns[key];
        dispatch::on_frames(
            conn,
            &mut stash,
            &mut self.handler,
            &mut self.local,
            &mut self.inflate,
            id,
            now_us,
        );
        self.local.pool.put(stash);
    }

    /// Writes the connection's backlog with one `write`, and moves the connection along:
    /// reading pauses over the backpressure limit and resumes (with `on_drain`) under it; a
    /// closing connection whose backlog is out shuts down its side.
    pub(super) fn flush(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        #[cfg(feature = "tls")]
        if conn.tls.is_some() {
            if !self.write_tls(key) {
                return;
            }
            self.after_write(key);
            return;
        }
        if conn.outbox.buffered_len() > 0 {
            // The last write before `close` is held back (MSG_MORE) so that the FIN the close
            // sends rides on the same segment, one packet fewer for both sides. Should the
            // write be partial, the rest follows the same way; the close pushes whatever is
            // held.
            let more = closes_after_write(conn);
            let written = socket_io::send(&conn.stream, conn.outbox.pending(), more);
            match written {
                Ok(n) => {
                    stats::add(&self.local.counters.bytes_sent, n as u64);
                    conn.outbox.consume(n, &mut self.local.pool);
                }
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.remove(key, CloseCause::Reset, CloseCode::ABNORMAL, "");
                    return;
                }
            }
        } else if conn.backlog_reported == 0
            && !conn.is_paused()
            && !matches!(conn.phase, Phase::Closing)
        {
            // Nothing to write, nothing was behind, nothing to move along: `after_write`
            // would change nothing (the common case of a flush after a read with no answer,
            // or on a writable edge with the backlog already out).
            return;
        }
        self.after_write(key);
    }

    /// After a connection's write: the backlog gauge and budget brought up to date, and the
    /// connection moved along by what is left (see [`flush`](Self::flush)).
    fn after_write(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let after = conn.outbox.buffered_len();
        let backlog = after.min(u32::MAX as usize) as u32;
        if backlog != conn.backlog_reported {
            let was = conn.backlog_reported;
            let gauge = &self.local.counters.buffered_bytes;
            stats::sub(gauge, u64::from(was));
            stats::add(gauge, u64::from(backlog));
            self.held = self.held + backlog as usize - was as usize;
            conn.backlog_reported = backlog;
            if was == 0 {
                // A write left output unsent: the connection is behind from now.
                fell_behind(conn, key, &mut self.local, self.epoch);
            } else if backlog == 0 {
                conn.outbox.stale = false;
                if !self.local.latest.is_empty() {
                    // Caught up: what waited under the latest-value policy goes out now; the
                    // nested flush writes it and moves the connection along.
                    if !self.release_latest(key) {
                        self.flush(key);
                    }
                    return;
                }
            }
        }
        if after > self.local.config.backpressure.pause_len {
            if !conn.is_paused() {
                conn.input = Input::paused(Vec::new());
            }
        } else if conn.is_paused() {
            self.resume_reading(key);
            return;
        }
        if after == 0 && matches!(conn.phase, Phase::Closing) {
            if closes_after_write(conn) {
                // The close handshake is done and our close frame written: as the server, we
                // close the TCP connection first (RFC 6455 §7.1.1), at once. Nothing is left
                // to drain (the peer sends nothing after its close frame; what it sent behind
                // it in the same read was discarded), so this saves the shutdown, the wait for
                // the peer's FIN and the read that sees it. (On TLS the peer may still answer
                // our close_notify, which a closed socket would answer with a reset: drained.)
                self.remove(key, CloseCause::Reset, CloseCode::ABNORMAL, "");
                return;
            }
            shut_down_writing(conn, self.local.now_us / 1000, &mut self.local.pool);
        }
    }

    /// A connection that was behind has written out its backlog: the messages that waited
    /// for it under the latest-value policy are queued (newest per key, in publish order) and
    /// written (by a nested [`flush`](Self::flush)). False when nothing waited.
    #[cold]
    fn release_latest(&mut self, key: usize) -> bool {
        let Some(conn) = self.conns.get_mut(key) else {
            return false;
        };
        let waiting = self.local.latest.take(key, conn.generation);
        if waiting.is_empty() || !conn.phase.can_send() {
            return false;
        }
        let mut compressed = Vec::new();
        for message in &waiting {
            let status =
                send_published(&mut conn.outbox, message, &mut self.local, &mut compressed);
            if status != crate::outbox::SendStatus::Dropped {
                stats::add(&self.local.counters.delivered, 1);
            }
        }
        self.flush(key);
        true
    }

    /// The backlog fell under the backpressure limit: reading resumes (with what was stashed
    /// first, on the next iteration) and `on_drain` runs.
    #[cold]
    fn resume_reading(&mut self, key: usize) {
        let now_ms = self.local.now_us / 1000;
        let id = self.conn_id(key);
        let conn = &mut self.conns[key];
        conn.input.resume();
        let (handler, local) = (&mut self.handler, &mut self.local);
        dispatch::guarded_callback(conn, handler, local, id, "on_drain", |h, ws, state| {
            h.on_drain(ws, state)
        });
        dispatch::after_callbacks(conn, &mut self.handler, &mut self.local, key, now_ms);
        self.pending_reads.push((key, conn.generation));
        if conn.outbox.buffered_len() == 0 && matches!(conn.phase, Phase::Closing) {
            shut_down_writing(conn, now_ms, &mut self.local.pool);
        }
    }
}

/// Plaintext encrypted per batch on a TLS connection: what one write can well take, so that a
/// large backlog is not encrypted all at once (the worker's sealing buffer and a connection's
/// leftover ciphertext stay this size).
#[cfg(feature = "tls")]
const SEAL_BATCH: usize = 256 * 1024;

/// TLS connections: the records of a read decrypted and dispatched, a write's batch encrypted.
#[cfg(feature = "tls")]
impl<H: Handler> Worker<H> {
    /// `n` bytes were read for TLS connection `key` into the receive buffer after the
    /// `carried` bytes of an incomplete record (put back in front of them here). The records
    /// are decrypted in place there and, after a TLS 1.3 handshake, their plaintext is left
    /// there in one piece, where the frames are parsed in place as on a plain connection
    /// ([`on_bytes`](Self::on_bytes)). rustls (the handshake, TLS 1.2) hands the plaintext
    /// over in a buffer of its own: it is copied into the worker's plaintext buffer, which then
    /// takes the receive buffer's place.
    fn on_tls_bytes(&mut self, key: usize, carried: usize, n: usize) {
        let conn = &mut self.conns[key];
        if matches!(conn.phase, Phase::Draining) {
            return; // discarded, as on a plain connection
        }
        let Some(tls) = conn.tls.as_deref_mut() else {
            return;
        };
        let pool = &mut self.local.pool;
        tls.restore_carry(&mut self.scratch[..carried], pool);
        let plain = &mut self.tls.plain;
        plain.clear();
        let received = tls.receive(&mut self.scratch[..carried + n], plain, pool);
        conn.outbox.set_sealed_len(tls.wire_len());
        let received = match received {
            Ok(received) => received,
            Err(broken) => {
                // The alert rustls prepared (protocol_version, decode_error, ...), once.
                let _ = conn.stream.write(tls.wire());
                if conn.dial != crate::dials::NO_DIAL
                    && let Some(dial) = self.local.dials.get_mut(conn.dial as usize)
                {
                    dial.last_error =
                        Some(crate::connect::ConnectError::Tls(broken.error.to_string()));
                    tls.failure_counted = true;
                } else if let Some(reason) = broken.handshake {
                    self.local.counters.note_tls_failure(reason);
                    tracing::debug!(peer = %conn.peer, %reason, error = %broken.error, "TLS handshake failed");
                    tls.failure_counted = true;
                } else {
                    tracing::debug!(peer = %conn.peer, error = %broken.error, "TLS error");
                }
                self.remove(key, CloseCause::Reset, CloseCode::ABNORMAL, "");
                return;
            }
        };
        if received.handshake_done {
            self.local
                .counters
                .note_tls_handshake(tls.resumed().unwrap_or(false));
        }
        if received.own_records {
            conn.outbox.frame_records(pool);
        }
        if let Some(records) = tls.own_records()
            && records.owes_update()
            && let Err(error) = conn.outbox.seal_owed_update(records, pool)
        {
            tracing::debug!(peer = %conn.peer, %error, "TLS key update failed");
            self.remove(key, CloseCause::Reset, CloseCode::ABNORMAL, "");
            return;
        }
        let len = self.tls.plain.len();
        if len > 0 {
            std::mem::swap(&mut self.scratch, &mut self.tls.plain);
            self.on_bytes(key, 0..len);
            std::mem::swap(&mut self.scratch, &mut self.tls.plain);
        } else if !received.in_place.is_empty() {
            self.on_bytes(key, received.in_place);
        }
    }

    /// Writes the connection's pending TLS bytes (the end of its handshake, an alert), then
    /// encrypts its queued frames (once its handshake is done) in batches of at most
    /// [`SEAL_BATCH`] and writes them, until the socket takes no more or nothing is left: one
    /// `write` when a batch is all there is (the common case). With lanes' own record layer
    /// the frames are sealed in place in the outbox; with rustls' (TLS 1.2) a batch is
    /// encrypted into the worker's sealing buffer and only what the socket does not take is
    /// kept by the connection. False when the connection was removed.
    fn write_tls(&mut self, key: usize) -> bool {
        let Some(conn) = self.conns.get_mut(key) else {
            return false;
        };
        let Some(tls) = conn.tls.as_deref_mut() else {
            return true;
        };
        let pool = &mut self.local.pool;
        loop {
            // What is written next: the TLS layer's own bytes, else sealed records of the
            // outbox, else a new batch.
            enum Next {
                Wire,
                Outbox,
                Sealed(usize),
            }
            let next = if tls.wire_len() > 0 {
                Next::Wire
            } else if let Some(records) = tls.own_records() {
                if conn.outbox.sealed().is_empty() {
                    if let Err(error) = conn.outbox.seal(records, SEAL_BATCH) {
                        tracing::debug!(peer = %conn.peer, %error, "TLS encryption failed");
                        self.remove(key, CloseCause::Reset, CloseCode::ABNORMAL, "");
                        return false;
                    }
                    if conn.outbox.sealed().is_empty() {
                        break;
                    }
                }
                Next::Outbox
            } else {
                if !conn.outbox.has_plain() || tls.is_handshaking() {
                    break;
                }
                let plain = conn.outbox.pending();
                if plain.is_empty() {
                    break;
                }
                let batch = &plain[..plain.len().min(SEAL_BATCH)];
                let sealed = match tls.seal(batch, &mut self.tls.sealed) {
                    Ok(n) => n,
                    Err(error) => {
                        tracing::debug!(peer = %conn.peer, %error, "TLS encryption failed");
                        self.remove(key, CloseCause::Reset, CloseCode::ABNORMAL, "");
                        return false;
                    }
                };
                let batch_len = batch.len();
                conn.outbox.consume(batch_len, pool);
                Next::Sealed(sealed)
            };
            let out = match next {
                Next::Wire => tls.wire(),
                Next::Outbox => conn.outbox.sealed(),
                Next::Sealed(n) => &self.tls.sealed[..n],
            };
            let written = match socket_io::send(&conn.stream, out, false) {
                Ok(n) => n,
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::Interrupted =>
                {
                    0
                }
                Err(_) => {
                    self.remove(key, CloseCause::Reset, CloseCode::ABNORMAL, "");
                    return false;
                }
            };
            stats::add(&self.local.counters.bytes_sent, written as u64);
            let all = written == out.len();
            match next {
                Next::Wire => tls.consume(written, pool),
                Next::Outbox => conn.outbox.consume(written, pool),
                Next::Sealed(n) => tls.keep_wire(&self.tls.sealed[written..n], pool),
            }
            if !all {
                break; // the socket is full: the next writable edge resumes
            }
        }
        conn.outbox.set_sealed_len(tls.wire_len());
        true
    }

    /// A TLS connection carried more than the receive buffer holds without completing a
    /// record or handshake message (rustls bounds both below that): dropped as malformed.
    #[cold]
    fn tls_failed_oversized(&mut self, key: usize) {
        if let Some(tls) = self.conns.get_mut(key).and_then(|c| c.tls.as_deref_mut())
            && tls.is_handshaking()
        {
            tls.failure_counted = true;
            self.local.counters.note_tls_failure(TlsFailure::Malformed);
        }
        self.remove(key, CloseCause::Reset, CloseCode::ABNORMAL, "");
    }
}

#[cfg(not(feature = "tls"))]
impl<H: Handler> Worker<H> {
    /// Without TLS nothing is ever carried.
    fn tls_failed_oversized(&mut self, _key: usize) {}
}

/// Whether the connection is closed as soon as its backlog is written: an accepted plain
/// connection whose close handshake is complete (see [`Worker::after_write`]).
fn closes_after_write<S>(conn: &Conn<S>) -> bool {
    conn.close_exchanged
        && conn.dial == NO_DIAL
        && !conn.is_tls()
        && matches!(conn.phase, Phase::Closing)
}
