//! Work that reaches a worker from elsewhere (sends, closes, publishes and broadcasts queued by
//! other threads) and from its own callbacks (publishes to its own subscribers, output given
//! to connections outside their own I/O), settled once per loop iteration.

use std::time::Instant;

use lanes_proto::deflate::SendAs;

use super::Worker;
use super::dispatch;
use crate::conn::{Conn, mark_dirty, open_conn};
use crate::handler::Handler;
use crate::hub::Command;
use crate::local::Local;
use crate::outbox::{Outbox, SendStatus};
use crate::published::Published;
use crate::socket_io;
use crate::stats;
use crate::topic::Subscriber;

impl<H: Handler> Worker<H> {
    /// Runs every command queued for this worker.
    pub(super) fn run_commands(&mut self) {
        if let Some(link) = self.local.remote.link(usize::from(self.local.index)) {
            link.rearm();
        }
        while let Ok(command) = self.commands.try_recv() {
            // Nothing behind it in the queue: a message it carries may be written through.
            let alone = self.commands.is_empty();
            self.on_command(command, alone);
        }
    }

    /// Runs one command; `alone` when no other command waits behind it (see
    /// [`give_published`]).
    fn on_command(&mut self, command: Command, alone: bool) {
        match command {
            Command::Send { id, message } => {
                let local = &mut self.local;
                match open_conn(&mut self.conns, id) {
                    Some(conn) => {
                        let slot = id.slot as usize;
                        give_published(conn, slot, &message, local, &mut Vec::new(), alone);
                    }
                    None => stats::add(&local.counters.stale, 1),
                }
            }
            Command::Close { id, code, reason } => {
                let local = &mut self.local;
                match open_conn(&mut self.conns, id) {
                    Some(conn) => {
                        conn.close(code, &reason, local);
                        mark_dirty(conn, id.slot as usize, &mut local.dirty);
                    }
                    None => stats::add(&local.counters.stale, 1),
                }
            }
            Command::Publish { topic, message } => self.deliver(&topic, &message, None, alone),
            Command::Message(message) => {
                self.run_worker_callback("on_worker_message", |handler, ctx| {
                    handler.on_worker_message(ctx, message)
                });
            }
            Command::Adopt(handoff) => self.adopt(*handoff),
            Command::Arrive(moved) => self.arrive(*moved),
            Command::Answer { id, answer } => self.on_deferred_answer(id, *answer),
            Command::Connect(request) => self.on_connect_request(request),
            Command::Resolved { dial, resolved } => self.on_resolved(dial, resolved),
            Command::Broadcast { message } => {
                self.local.note_published();
                let local = &mut self.local;
                let mut compressed = Vec::new();
                for (key, conn) in self.conns.iter_mut() {
                    if conn.phase.can_send() {
                        let status =
                            give_published(conn, key, &message, local, &mut compressed, alone);
                        if status != SendStatus::Dropped {
                            stats::add(&local.counters.delivered, 1);
                        }
                    }
                }
            }
        }
    }

    /// Gives a published frame to every subscriber of `topic` on this worker but `except`.
    /// `alone` when no other message waits to be delivered in this iteration (see
    /// [`give_published`]).
    fn deliver(
        &mut self,
        topic: &str,
        message: &Published,
        except: Option<Subscriber>,
        alone: bool,
    ) {
        self.local.note_published();
        let mut compressed = Vec::new();
        // No callback runs during delivery, so the subscriber sets can be set aside while the
        // rest of `local` is lent to the sends.
        let topics = std::mem::take(&mut self.local.topics);
        for (key, generation) in topics.subscribers(topic) {
            if except == Some((key, generation)) {
                continue;
            }
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if conn.generation != generation || !conn.phase.can_send() {
                continue;
            }
            if conn.backlog_reported > 0
                && let Some(name) = &message.latest
            {
                // Behind: only the newest message per key waits, for when it catches up.
                if self.local.latest.keep(key, generation, name, message) {
                    stats::add(&self.local.counters.messages_conflated, 1);
                }
                continue;
            }
            let status =
                give_published(conn, key, message, &mut self.local, &mut compressed, alone);
            if status != SendStatus::Dropped {
                stats::add(&self.local.counters.delivered, 1);
            }
        }
        self.local.topics = topics;
    }

    /// End of a loop iteration: deliver this worker's own publishes, then write every
    /// connection that got output outside its own I/O, once.
    pub(super) fn settle(&mut self, now: Instant) {
        if !self.local.moves.is_empty() {
            self.move_out_requested();
        }
        while !self.local.deferred.is_empty() || !self.local.deferred_commands.is_empty() {
            let deferred = std::mem::take(&mut self.local.deferred);
            let alone = deferred.len() == 1 && self.local.deferred_commands.is_empty();
            for (topic, message, except) in &deferred {
                self.deliver(topic, message, *except, alone);
            }
            let commands = std::mem::take(&mut self.local.deferred_commands);
            for command in commands {
                self.on_command(command, false);
            }
        }
        if self.local.dirty.is_empty() {
            return;
        }
        let now_ms = self.local.now_us / 1000;
        let mut dirty = std::mem::take(&mut self.local.dirty);
        for &(key, generation) in &dirty {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if conn.generation != generation {
                continue;
            }
            conn.flush_queued = false;
            dispatch::after_callbacks(conn, &mut self.handler, &mut self.local, key, now_ms);
            self.flush(key);
            self.sync_timer(key, now);
        }
        dirty.clear();
        if self.local.dirty.is_empty() {
            self.local.dirty = dirty; // keep the capacity
        }
    }
}

/// Gives a message encoded once for many connections to the connection in `slot`: written at
/// once when it is `alone` (no other message waits to be delivered in this iteration) and
/// [`write_through`] can, queued otherwise ([`send_published`]). Either way the connection is
/// marked for the end-of-iteration write, so that whatever it is given next in this iteration
/// is queued behind this message and goes out with that one write.
///
/// Why `alone`: a frame written through costs a subscriber one write, and what follows it in
/// the same iteration one more. When messages come one at a time (a feed slower than the
/// sweep over its subscribers) that is one write each, without the copy; when they come in
/// bursts (a worker behind its publishers), queuing them all gives one write per subscriber
/// for the whole burst, as before.
fn give_published<S>(
    conn: &mut Conn<S>,
    slot: usize,
    message: &Published,
    local: &mut Local,
    compressed: &mut Vec<(u8, Option<Vec<u8>>)>,
    alone: bool,
) -> SendStatus {
    let written = if alone {
        write_through(conn, message, local)
    } else {
        None
    };
    let status =
        written.unwrap_or_else(|| send_published(&mut conn.outbox, message, local, compressed));
    mark_dirty(conn, slot, &mut local.dirty);
    status
}

/// Writes a published frame to a connection's socket at once, instead of copying it into a
/// pooled buffer to be written at the end of the iteration, when that is safe: nothing else
/// was given to the connection in this iteration, nothing is queued, and the frame goes out as
/// it is (a plain connection without compression). The backlog caps apply as to a queued
/// frame. What the socket does not take is queued; a write that fails leaves the frame
/// queued, and the end-of-iteration write meets the error and closes the connection there,
/// as for any other output. `None` when the frame is to be queued as usual.
#[inline]
fn write_through<S>(
    conn: &mut Conn<S>,
    message: &Published,
    local: &mut Local,
) -> Option<SendStatus> {
    #[cfg(feature = "tls")]
    if conn.tls.is_some() {
        return None;
    }
    if conn.flush_queued || !conn.outbox.writes_through() {
        return None;
    }
    let mut sending = local.sending();
    if let Err(status) = conn.outbox.admit(message.frame.len(), &mut sending) {
        return Some(status);
    }
    let written = socket_io::send(&conn.stream, &message.frame, false).ok()?;
    Some(
        conn.outbox
            .wrote_through(message.opcode, &message.frame, written, &mut sending),
    )
}

/// Queues a message encoded once for many connections. A connection that compresses with its
/// own context compresses it itself; those without context takeover share one compressed copy
/// per window size, made on first use and kept in `compressed` for the rest of the delivery.
pub(super) fn send_published(
    outbox: &mut Outbox,
    message: &Published,
    local: &mut Local,
    compressed: &mut Vec<(u8, Option<Vec<u8>>)>,
) -> SendStatus {
    if outbox.masked {
        // An outbound connection masks each frame with its own key: encoded here.
        return outbox.send(message.opcode, message.payload(), &mut local.sending());
    }
    let Some(side) = outbox.compression() else {
        return outbox.send_encoded(message.opcode, &message.frame, &mut local.sending());
    };
    let Some(window_bits) = side.shared_window() else {
        return outbox.send(message.opcode, message.payload(), &mut local.sending());
    };
    let at = match compressed.iter().position(|(bits, _)| *bits == window_bits) {
        Some(at) => at,
        None => {
            let payload = message.payload();
            let copy = (payload.len() >= local.deflate.config().min_compress_len
                && local.deflate.compress_shared(window_bits, payload) == SendAs::Compressed)
                .then(|| local.deflate.out.clone());
            compressed.push((window_bits, copy));
            compressed.len() - 1
        }
    };
    match &compressed[at].1 {
        Some(bytes) => outbox.send_compressed(message.opcode, bytes, &mut local.sending()),
        None => outbox.send_encoded(message.opcode, &message.frame, &mut local.sending()),
    }
}
