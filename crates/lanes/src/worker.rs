//! A worker: one thread, pinned to one core, with its own mio loop, listener, connection table,
//! buffer pool and timer wheel. A connection never leaves the worker that accepted it.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crossbeam_channel::Receiver as CommandQueue;
use std::time::{Duration, Instant};

use lanes_proto::deflate::{SendAs, negotiate};
use lanes_proto::frame::FrameConfig;
use lanes_proto::handshake::{
    AcceptOptions, HeadLimits, Parsed, RequestHead, UpgradeOffer, write_accept,
    write_http_response, write_reject,
};
use lanes_proto::{CloseCode, OpCode};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::compress::{InflateScratch, RecvCompression, SendCompression, SharedDeflate};
use crate::config::Config;
use crate::conn::{Conn, Phase, open_conn};
use crate::context::WorkerContext;
use crate::handler::{Handler, HttpResponse, Message, Request};
use crate::live::LiveTable;
use crate::local::Local;
use crate::pool::BufferPool;
use crate::recv::{Inbound, Receiver};
use crate::remote::{Command, Published, Remote};
use crate::server::Shared;
use crate::stats::{self, CloseCause};
use crate::timer::{TimerEntry, TimerKind, TimerWheel};
use crate::topic::Topics;
use crate::ws::{ConnId, Outbox, SendPhase, SendStatus, Ws, mark_dirty};

pub(crate) const LISTENER: Token = Token(usize::MAX - 1);
pub(crate) const WAKER: Token = Token(usize::MAX - 2);

/// Slots in the timer wheel (a turn of 2.56 s at the default 5 ms tick; later deadlines go
/// round again).
const WHEEL_SLOTS: usize = 512;

const SERVICE_UNAVAILABLE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 21\r\n\r\ntoo many connections\n";

/// Everything a worker owns.
pub(crate) struct Worker<H: Handler> {
    pub(crate) poll: Poll,
    pub(crate) listener: Option<TcpListener>,
    pub(crate) handler: H,
    pub(crate) shared: Arc<Shared>,
    /// What callbacks may touch: pool, limits, topics, timers, the other workers.
    local: Local,
    /// Sends, closes and publishes from other threads and workers.
    commands: CommandQueue<Command>,
    conns: Slab<Conn<H::Conn>>,
    scratch: Vec<u8>,
    /// Where compressed messages are inflated (and the shared decompressor).
    inflate: InflateScratch,
    epoch: Instant,
    /// When the next tick callback is due (with a tick interval configured).
    tick_deadline: Option<Instant>,
    next_generation: u32,
    frame_config: FrameConfig,
    head_limits: HeadLimits,
    /// Connections to read from again in the next iteration (read bound hit, or resumed).
    pending_reads: Vec<(usize, u32)>,
    /// The listener still had connections when the accept bound was hit.
    accept_pending: bool,
    /// Accepting is paused (out of descriptors) until then.
    accept_paused_until: Option<Instant>,
    /// Accepting failed for want of descriptors and has not succeeded since (logged once).
    emfile_streak: bool,
    shutdown_deadline: Option<Instant>,
}

impl<H: Handler> Worker<H> {
    pub(crate) fn new(
        index: u16,
        poll: Poll,
        listener: TcpListener,
        handler: H,
        config: Arc<Config>,
        remote: Remote,
        commands: CommandQueue<Command>,
    ) -> Worker<H> {
        let shared = Arc::clone(remote.shared());
        let now = Instant::now();
        let config = Arc::new(sanitized(&config));
        let frame_config = FrameConfig {
            max_frame_len: config.max_frame_len,
            ..FrameConfig::server()
        };
        let head_limits = HeadLimits {
            max_head_len: config.max_head_len,
            max_headers: config.max_headers,
        };
        let (live, counters) = match remote.link(usize::from(index)) {
            Some(link) => (Arc::clone(&link.live), Arc::clone(&link.counters)),
            None => (Arc::new(LiveTable::new(0)), Arc::default()),
        };
        let tick_deadline = config.tick_interval.map(|interval| now + interval);
        let mut wheel = TimerWheel::new(now, config.timer_tick, WHEEL_SLOTS);
        if let Some(at) = tick_deadline {
            wheel.schedule(usize::MAX, 0, TimerKind::Tick, at);
        }
        let deflate = SharedDeflate::new(config.deflate);
        Worker {
            poll,
            listener: Some(listener),
            handler,
            scratch: vec![0; config.read_buffer_len.max(1024)],
            inflate: InflateScratch::new(config.max_message_len),
            local: Local {
                index,
                pool: BufferPool::new(),
                config,
                topics: Topics::default(),
                wheel,
                remote,
                counters,
                live,
                deflate,
                deferred: Vec::new(),
                dirty: Vec::new(),
            },
            commands,
            shared,
            conns: Slab::new(),
            epoch: now,
            tick_deadline,
            next_generation: 0,
            frame_config,
            head_limits,
            pending_reads: Vec::new(),
            accept_pending: false,
            accept_paused_until: None,
            emfile_streak: false,
            shutdown_deadline: None,
        }
    }

    fn now_ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64
    }

    fn now_us(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_micros() as u64
    }

    /// The event loop. Returns when shutdown has completed.
    pub(crate) fn run(&mut self) -> io::Result<()> {
        if let Some(listener) = self.listener.as_mut() {
            self.poll
                .registry()
                .register(listener, LISTENER, Interest::READABLE)?;
        }
        let mut events = Events::with_capacity(1024);
        let mut due = Vec::new();
        // When the last poll with ready sockets returned (for the loop lag, recorded with the
        // next iteration's clock reading: one clock read per iteration, as before metrics).
        let mut handling_since: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if let Some(since) = handling_since.take() {
                let lag = now.saturating_duration_since(since).as_micros() as u64;
                self.local.counters.loop_lag_us.record(lag);
            }
            let busy = !self.pending_reads.is_empty()
                || (self.accept_pending && self.shutdown_deadline.is_none());
            let timeout = if busy {
                Some(Duration::ZERO)
            } else {
                self.local.wheel.until_next(now)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != io::ErrorKind::Interrupted
            {
                return Err(e);
            }
            let now = Instant::now();
            let mut ready = 0u64;
            let mut woken = false;
            for event in events.iter() {
                ready += 1;
                match event.token() {
                    LISTENER => self.accept(now),
                    WAKER => woken = true,
                    Token(key) => {
                        let writable = event.is_writable() || event.is_write_closed();
                        let read_closed = event.is_read_closed() || event.is_error();
                        let readable = event.is_readable() || read_closed;
                        self.on_io(key, readable, read_closed, writable, now);
                    }
                }
            }
            if self.accept_pending && self.shutdown_deadline.is_none() {
                self.accept(now);
            }
            if let Some(until) = self.accept_paused_until
                && now >= until
            {
                self.accept_paused_until = None;
                self.accept(now);
            }
            let pending = std::mem::take(&mut self.pending_reads);
            for (key, generation) in pending {
                if self
                    .conns
                    .get(key)
                    .is_some_and(|c| c.generation == generation)
                {
                    self.on_io(key, true, false, false, now);
                }
            }
            if woken {
                self.run_commands();
            }
            self.local.wheel.expire(now, &mut due);
            for entry in due.drain(..) {
                self.on_timer(entry, now);
            }
            if self.shared.shutdown.load(Ordering::Acquire) && self.shutdown_deadline.is_none() {
                self.begin_shutdown(now);
            }
            self.settle(now);
            let counters = &self.local.counters;
            stats::add(&counters.loop_iterations, 1);
            counters.loop_events.record(ready);
            if ready > 0 {
                handling_since = Some(now);
            }
            if let Some(deadline) = self.shutdown_deadline {
                if self.conns.is_empty() {
                    return Ok(());
                }
                if now >= deadline {
                    let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
                    for key in keys {
                        self.remove(key, CloseCause::Shutdown, CloseCode::ABNORMAL.as_u16(), "");
                    }
                    return Ok(());
                }
            }
        }
    }

    fn accept(&mut self, now: Instant) {
        self.accept_pending = false;
        if self.accept_paused_until.is_some() || self.shutdown_deadline.is_some() {
            return;
        }
        for _ in 0..self.local.config.accepts_per_wakeup {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => {
                    if self.emfile_streak {
                        self.emfile_streak = false;
                        tracing::info!(worker = self.local.index, "accepting again");
                    }
                    stats::add(&self.local.counters.accepted, 1);
                    self.admit(stream, peer, now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    // Out of descriptors: leave the listener alone for a while (or until a
                    // connection closes) rather than spin on it.
                    // One warning per streak (the pause repeats every accept_backoff).
                    if self.emfile_streak {
                        tracing::debug!(worker = self.local.index, error = %e, "still out of file descriptors");
                    } else {
                        self.emfile_streak = true;
                        tracing::warn!(worker = self.local.index, error = %e, "out of file descriptors: accepting paused");
                    }
                    self.accept_paused_until = Some(now + self.local.config.accept_backoff);
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {} // ECONNABORTED and the like: that connection is gone, go on.
            }
        }
        self.accept_pending = true;
    }

    fn admit(&mut self, mut stream: mio::net::TcpStream, peer: std::net::SocketAddr, now: Instant) {
        let _ = stream.set_nodelay(true);
        if self.conns.len() >= self.local.config.max_connections_per_worker {
            let _ = stream.write(SERVICE_UNAVAILABLE);
            let _ = stream.shutdown(Shutdown::Write);
            self.local.counters.note_rejected(503);
            tracing::debug!(%peer, "connection refused: worker at max_connections_per_worker");
            return;
        }
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if self
            .poll
            .registry()
            .register(
                &mut stream,
                Token(key),
                Interest::READABLE | Interest::WRITABLE,
            )
            .is_err()
        {
            return;
        }
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let now_ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
        entry.insert(Conn {
            stream,
            peer,
            generation,
            phase: Phase::Handshake,
            phase_since_ms: now_ms,
            last_activity_ms: now_ms,
            ping_sent_us: None,
            backlog_reported: 0,
            head: None,
            receiver: Receiver::new(self.frame_config, self.local.config.max_message_len),
            outbox: Outbox::new(),
            user: None,
            read_paused: false,
            stash: None,
            timer_seq: 0,
            armed_phase: Phase::Handshake,
            subs: Vec::new(),
            flush_queued: false,
        });
        self.local.wheel.schedule(
            key,
            generation,
            TimerKind::Conn { seq: 0 },
            now + self.local.config.handshake_timeout,
        );
    }

    /// Replaces the connection's timer entry with one for its next deadline.
    fn arm(&mut self, key: usize, now: Instant) {
        let deadline = self.next_deadline(key, now);
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.timer_seq = conn.timer_seq.wrapping_add(1);
        conn.armed_phase = conn.phase;
        if let Some(deadline) = deadline {
            self.local.wheel.schedule(
                key,
                conn.generation,
                TimerKind::Conn {
                    seq: conn.timer_seq,
                },
                deadline,
            );
        }
    }

    /// Re-arms the timer when the connection changed phase since it was armed.
    fn sync_timer(&mut self, key: usize, now: Instant) {
        if self
            .conns
            .get(key)
            .is_some_and(|c| c.phase != c.armed_phase)
        {
            self.arm(key, now);
        }
    }

    /// Readiness on a connection: write what is queued, read what arrived, act on the result.
    /// `read_closed` says the peer's end of stream came with the event, so reading goes on
    /// until it is seen even after a short read.
    fn on_io(
        &mut self,
        key: usize,
        readable: bool,
        read_closed: bool,
        writable: bool,
        now: Instant,
    ) {
        if writable {
            self.flush(key, now);
        }
        if readable {
            self.read(key, read_closed, now);
        }
        if self.conns.contains(key) {
            self.flush(key, now);
        }
        self.sync_timer(key, now);
    }

    fn read(&mut self, key: usize, read_closed: bool, now: Instant) {
        let reads = self.local.config.reads_per_wakeup;
        if let Some(conn) = self.conns.get_mut(key)
            && !conn.read_paused
            && let Some(mut stash) = conn.stash.take()
        {
            // Input read before a pause: process it before reading more.
            let now_us = self.now_us(now);
            let id = self.conn_id(key);
            let conn = &mut self.conns[key];
            on_frames(
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
        for _ in 0..reads {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if conn.read_paused || conn.stash.is_some() || conn.phase == Phase::Closing {
                return;
            }
            match conn.stream.read(&mut self.scratch) {
                Ok(0) => {
                    self.on_eof(key);
                    return;
                }
                Ok(n) => {
                    stats::add(&self.local.counters.bytes_received, n as u64);
                    self.on_bytes(key, n, now);
                    let Some(conn) = self.conns.get_mut(key) else {
                        return;
                    };
                    if conn.outbox.buffered_len() > self.local.config.backpressure_len {
                        // Over the limit: no more reading until the backlog drains.
                        conn.read_paused = true;
                        return;
                    }
                    // A short read emptied the socket: the next arrival brings a new edge.
                    // Unless the end of stream came with this event: then read on to see it.
                    if n < self.scratch.len() && !read_closed {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.remove(key, CloseCause::Reset, CloseCode::ABNORMAL.as_u16(), "");
                    return;
                }
            }
        }
        if let Some(conn) = self.conns.get(key) {
            self.pending_reads.push((key, conn.generation));
        }
    }

    fn on_eof(&mut self, key: usize) {
        // The peer closed its side: whatever the phase, the connection is over. A peer that
        // closed after the close handshake already had on_close fire with the right code.
        self.remove(key, CloseCause::Reset, CloseCode::ABNORMAL.as_u16(), "");
    }

    /// `n` new bytes are in the scratch buffer for connection `key`.
    fn on_bytes(&mut self, key: usize, n: usize, now: Instant) {
        let now_us = self.now_us(now);
        let now_ms = now_us / 1000;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.last_activity_ms = now_ms;
        match conn.phase {
            Phase::Handshake => self.on_head_bytes(key, n, now),
            Phase::Open | Phase::CloseSent => {
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

    fn conn_id(&self, key: usize) -> ConnId {
        ConnId {
            worker: self.local.index,
            slot: key as u32,
            generation: self.conns.get(key).map_or(0, |c| c.generation),
        }
    }

    /// Handshake bytes: gather the head, then upgrade, refuse, or answer plain HTTP.
    fn on_head_bytes(&mut self, key: usize, n: usize, now: Instant) {
        let now_us = self.now_us(now);
        let now_ms = now_us / 1000;
        let conn = &mut self.conns[key];
        let mut head_buf = conn.head.take().unwrap_or_else(|| self.local.pool.take());
        head_buf.extend_from_slice(&self.scratch[..n]);
        let parsed = RequestHead::parse(&head_buf, &self.head_limits);
        let head = match parsed {
            Ok(Parsed::Partial) => {
                conn.head = Some(head_buf);
                return;
            }
            Err(error) => {
                let mut response = Vec::new();
                error.write_response(&mut response);
                self.local.counters.note_rejected(error.status());
                tracing::debug!(peer = %conn.peer, %error, "bad request head");
                conn.outbox.push_raw(&response, &mut self.local.pool);
                conn.set_phase(Phase::Closing, now_ms);
                self.local.pool.put(head_buf);
                return;
            }
            Ok(Parsed::Complete(head)) => head,
        };
        let peer = conn.peer;
        let head_len = head.head_len();
        let mut response = Vec::new();
        let mut accepted = None;
        let mut compression = None;
        let metrics_path = self.local.config.metrics_path.as_deref();
        if !head.is_websocket_upgrade()
            && head.method() == "GET"
            && metrics_path.is_some_and(|p| p == head.path())
        {
            let text = lanes_metrics::prometheus::encode(&self.local.remote.metrics());
            let mut answer = HttpResponse::new(200, text);
            let content_type = lanes_metrics::prometheus::CONTENT_TYPE;
            answer.headers = vec![("Content-Type".into(), content_type.into())];
            write_plain(&mut response, &answer);
        } else if !head.is_websocket_upgrade() {
            let request = Request {
                head: &head,
                offer: None,
                peer,
            };
            let answer = self.handler.on_http(&request);
            if answer.status >= 400 {
                // Not an upgrade (426 by default): a refused handshake too.
                self.local.counters.note_rejected(answer.status);
            }
            write_plain(&mut response, &answer);
        } else {
            match UpgradeOffer::validate(&head) {
                Err(error) => {
                    self.local.counters.note_rejected(error.status());
                    tracing::debug!(%peer, %error, "bad upgrade request");
                    error.write_response(&mut response);
                }
                Ok(offer) => {
                    let request = Request {
                        head: &head,
                        offer: Some(&offer),
                        peer,
                    };
                    match self.handler.on_upgrade(&request) {
                        Err(refusal) => {
                            self.local.counters.note_rejected(refusal.status);
                            tracing::debug!(%peer, status = refusal.status, "upgrade refused by the handler");
                            write_refusal(&mut response, &refusal);
                        }
                        Ok(accept) => {
                            let headers = header_pairs(&accept.headers);
                            let deflate = negotiate(offer.extensions(), &self.local.config.deflate);
                            let options = AcceptOptions {
                                subprotocol: accept.subprotocol.as_deref(),
                                extensions: deflate.as_ref().map(|d| d.response.as_str()),
                                extra_headers: &headers,
                            };
                            match write_accept(&offer, &options, &mut response) {
                                Ok(()) => {
                                    accepted = Some(accept.state);
                                    compression = deflate.map(|d| d.params);
                                }
                                Err(_) => {
                                    self.local.counters.note_rejected(500);
                                    response.clear();
                                    write_plain(
                                        &mut response,
                                        &HttpResponse::new(500, "invalid upgrade answer"),
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
        drop(head);
        let conn = &mut self.conns[key];
        conn.outbox.push_raw(&response, &mut self.local.pool);
        let Some(state) = accepted else {
            conn.set_phase(Phase::Closing, now_ms);
            self.local.pool.put(head_buf);
            return;
        };
        conn.user = Some(state);
        conn.set_phase(Phase::Open, now_ms);
        if let Some(params) = compression {
            let config = &self.local.config;
            conn.outbox.compression = Some(Box::new(SendCompression::new(&params)));
            conn.receiver
                .enable_compression(RecvCompression::new(&params, config.max_message_len));
        }
        self.local.live.open(key, conn.generation);
        stats::add(&self.local.counters.connections, 1);
        stats::add(&self.local.counters.opened, 1);
        let id = self.conn_id(key);
        let conn = &mut self.conns[key];
        if let Some((mut ws, user)) = conn.callback(&mut self.local, id) {
            self.handler.on_open(&mut ws, user);
        }
        after_callbacks(conn, &mut self.handler, &self.local, key, now_ms);
        // Frames the client sent right behind its request.
        if head_buf.len() > head_len {
            on_frames(
                conn,
                &mut head_buf[head_len..],
                &mut self.handler,
                &mut self.local,
                &mut self.inflate,
                id,
                now_us,
            );
        }
        self.local.pool.put(head_buf);
    }

    /// Writes the connection's backlog with one `write`, and moves the connection along.
    fn flush(&mut self, key: usize, now: Instant) {
        let now_ms = self.now_ms(now);
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let before = conn.outbox.buffered_len();
        if before > 0 {
            match conn.stream.write(conn.outbox.pending()) {
                Ok(n) => {
                    stats::add(&self.local.counters.bytes_sent, n as u64);
                    conn.outbox.consume(n, &mut self.local.pool);
                }
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.remove(key, CloseCause::Reset, CloseCode::ABNORMAL.as_u16(), "");
                    return;
                }
            }
        }
        let after = conn.outbox.buffered_len();
        let backlog = after.min(u32::MAX as usize) as u32;
        if backlog != conn.backlog_reported {
            let gauge = &self.local.counters.buffered_bytes;
            stats::sub(gauge, u64::from(conn.backlog_reported));
            stats::add(gauge, u64::from(backlog));
            conn.backlog_reported = backlog;
        }
        let limit = self.local.config.backpressure_len;
        if after > limit {
            conn.read_paused = true;
        } else if conn.read_paused {
            conn.read_paused = false;
            let id = ConnId {
                worker: self.local.index,
                slot: key as u32,
                generation: conn.generation,
            };
            if conn.phase == Phase::Open
                && let Some((mut ws, user)) = conn.callback(&mut self.local, id)
            {
                self.handler.on_drain(&mut ws, user);
            }
            after_callbacks(conn, &mut self.handler, &self.local, key, now_ms);
            self.pending_reads.push((key, conn.generation));
        }
        if conn.phase == Phase::Closing && conn.outbox.buffered_len() == 0 {
            let _ = conn.stream.shutdown(Shutdown::Write);
            conn.set_phase(Phase::Draining, now_ms);
        }
    }

    /// The next time the connection's timer must look at it.
    fn next_deadline(&self, key: usize, _now: Instant) -> Option<Instant> {
        let conn = self.conns.get(key)?;
        let at = |ms: u64, after: Duration| Some(self.epoch + Duration::from_millis(ms) + after);
        match conn.phase {
            Phase::Handshake => at(conn.phase_since_ms, self.local.config.handshake_timeout),
            Phase::Open => match (conn.ping_sent_us, self.local.config.ping_interval) {
                // Waiting for a sign of life since the keepalive ping.
                (Some(sent_us), _) if conn.last_activity_ms < sent_us / 1000 => {
                    at(sent_us / 1000, self.local.config.pong_timeout)
                }
                (_, Some(interval)) => at(conn.last_activity_ms, interval),
                (_, None) => None,
            },
            Phase::CloseSent | Phase::Closing | Phase::Draining => {
                at(conn.phase_since_ms, self.local.config.close_timeout)
            }
        }
    }

    fn on_timer(&mut self, entry: TimerEntry, now: Instant) {
        match entry.kind {
            TimerKind::Conn { seq } => self.on_conn_timer(entry, seq, now),
            TimerKind::User(token) => self.on_user_timer(entry, token, now),
            TimerKind::Tick => self.on_tick(now),
        }
    }

    /// The worker's tick: the application's callback, then the next tick on the cadence.
    fn on_tick(&mut self, now: Instant) {
        let (Some(interval), Some(deadline)) =
            (self.local.config.tick_interval, self.tick_deadline)
        else {
            return;
        };
        let mut ctx = WorkerContext {
            conns: &mut self.conns,
            local: &mut self.local,
        };
        self.handler.on_tick(&mut ctx);
        let mut next = deadline + interval;
        if next <= now {
            // Fell behind (a long callback, a stalled machine): skip, do not bunch.
            next = now + interval;
        }
        self.tick_deadline = Some(next);
        self.local
            .wheel
            .schedule(usize::MAX, 0, TimerKind::Tick, next);
    }

    /// An application timer on a connection.
    fn on_user_timer(&mut self, entry: TimerEntry, token: u64, now: Instant) {
        let now_ms = self.now_ms(now);
        let id = self.conn_id(entry.slot);
        let Some(conn) = self.conns.get_mut(entry.slot) else {
            return;
        };
        if conn.generation != entry.generation || conn.phase != Phase::Open {
            return;
        }
        let Some((mut ws, user)) = conn.callback(&mut self.local, id) else {
            return;
        };
        self.handler.on_timer(&mut ws, user, token);
        after_callbacks(conn, &mut self.handler, &self.local, entry.slot, now_ms);
        mark_dirty(conn, entry.slot, &mut self.local.dirty);
    }

    /// A connection's protocol deadline.
    fn on_conn_timer(&mut self, entry: TimerEntry, seq: u32, now: Instant) {
        let now_us = self.now_us(now);
        let now_ms = now_us / 1000;
        let Some(conn) = self.conns.get(entry.slot) else {
            return;
        };
        if conn.generation != entry.generation || conn.timer_seq != seq {
            return; // replaced by a newer entry, or a later connection in the slot
        }
        let Some(deadline) = self.next_deadline(entry.slot, now) else {
            return;
        };
        if now < deadline {
            self.local
                .wheel
                .schedule(entry.slot, entry.generation, entry.kind, deadline);
            return;
        }
        let key = entry.slot;
        let conn = &mut self.conns[key];
        match conn.phase {
            Phase::Handshake | Phase::Closing | Phase::Draining => {
                self.remove(key, CloseCause::Timeout, CloseCode::ABNORMAL.as_u16(), "");
            }
            Phase::CloseSent => {
                let code = conn.outbox.sent_close.map_or(1006, CloseCode::as_u16);
                self.remove(key, CloseCause::Timeout, code, "");
            }
            Phase::Open => {
                if let Some(sent_us) = conn.ping_sent_us
                    && conn.last_activity_ms < sent_us / 1000
                {
                    // No sign of life since the keepalive ping.
                    tracing::debug!(peer = %conn.peer, "no pong within pong_timeout: closing");
                    self.remove(key, CloseCause::Timeout, CloseCode::ABNORMAL.as_u16(), "");
                    return;
                }
                conn.outbox.send(OpCode::Ping, b"", &mut self.local);
                stats::add(&self.local.counters.pings_sent, 1);
                conn.ping_sent_us = Some(now_us.max(1000));
                // A ping past the hard cap closes the connection like any other send.
                after_callbacks(conn, &mut self.handler, &self.local, key, now_ms);
                self.flush(key, now);
                self.arm(key, now);
            }
        }
    }

    /// Runs every command queued for this worker.
    fn run_commands(&mut self) {
        if let Some(link) = self.local.remote.link(usize::from(self.local.index)) {
            link.rearm();
        }
        while let Ok(command) = self.commands.try_recv() {
            self.on_command(command);
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Send { id, message } => {
                let local = &mut self.local;
                match open_conn(&mut self.conns, id) {
                    Some(conn) => {
                        send_published(&mut conn.outbox, &message, local, &mut Vec::new());
                        mark_dirty(conn, id.slot as usize, &mut local.dirty);
                    }
                    None => stats::add(&local.counters.stale, 1),
                }
            }
            Command::Close { id, code, reason } => {
                let local = &mut self.local;
                match open_conn(&mut self.conns, id) {
                    Some(conn) => {
                        conn.outbox.close(CloseCode::new(code), &reason, local);
                        mark_dirty(conn, id.slot as usize, &mut local.dirty);
                    }
                    None => stats::add(&local.counters.stale, 1),
                }
            }
            Command::Publish { topic, message } => self.deliver(&topic, &message),
            Command::Broadcast { message } => {
                self.local.note_published();
                let local = &mut self.local;
                let mut compressed = Vec::new();
                for (key, conn) in self.conns.iter_mut() {
                    if conn.phase == Phase::Open && conn.user.is_some() {
                        let status =
                            send_published(&mut conn.outbox, &message, local, &mut compressed);
                        if status != SendStatus::Dropped {
                            stats::add(&local.counters.delivered, 1);
                        }
                        mark_dirty(conn, key, &mut local.dirty);
                    }
                }
            }
        }
    }

    /// Queues a published frame on every subscriber of `topic` on this worker.
    fn deliver(&mut self, topic: &str, message: &Published) {
        self.local.note_published();
        let mut compressed = Vec::new();
        // No callback runs during delivery, so the subscriber sets can be set aside while the
        // rest of `local` is lent to the sends.
        let topics = std::mem::take(&mut self.local.topics);
        for (key, generation) in topics.subscribers(topic) {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if conn.generation != generation || conn.phase != Phase::Open {
                continue;
            }
            let status =
                send_published(&mut conn.outbox, message, &mut self.local, &mut compressed);
            if status != SendStatus::Dropped {
                stats::add(&self.local.counters.delivered, 1);
            }
            mark_dirty(conn, key, &mut self.local.dirty);
        }
        self.local.topics = topics;
    }

    /// End of a loop iteration: deliver this worker's own publishes, then write every
    /// connection that got output outside its own I/O, once.
    fn settle(&mut self, now: Instant) {
        while !self.local.deferred.is_empty() {
            let deferred = std::mem::take(&mut self.local.deferred);
            for (topic, message) in &deferred {
                self.deliver(topic, message);
            }
        }
        if self.local.dirty.is_empty() {
            return;
        }
        let now_ms = self.now_ms(now);
        let mut dirty = std::mem::take(&mut self.local.dirty);
        for &(key, generation) in &dirty {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if conn.generation != generation {
                continue;
            }
            conn.flush_queued = false;
            after_callbacks(conn, &mut self.handler, &self.local, key, now_ms);
            self.flush(key, now);
            self.sync_timer(key, now);
        }
        dirty.clear();
        if self.local.dirty.is_empty() {
            self.local.dirty = dirty; // keep the capacity
        }
    }

    fn begin_shutdown(&mut self, now: Instant) {
        // Sends queued before the shutdown go out before the close frames.
        self.run_commands();
        self.settle(now);
        self.shutdown_deadline = Some(now + self.local.config.shutdown_timeout);
        self.accept_pending = false;
        self.accept_paused_until = None;
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        let now_ms = self.now_ms(now);
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            let conn = &mut self.conns[key];
            match conn.phase {
                Phase::Handshake => {
                    self.remove(key, CloseCause::Shutdown, CloseCode::ABNORMAL.as_u16(), "")
                }
                Phase::Open => {
                    conn.outbox.close(
                        CloseCode::GOING_AWAY,
                        "server shutting down",
                        &mut self.local,
                    );
                    conn.set_phase(Phase::CloseSent, now_ms);
                    self.flush(key, now);
                    self.sync_timer(key, now);
                }
                _ => {}
            }
        }
    }

    /// Removes a connection; fires `on_close` if it has not fired yet.
    fn remove(&mut self, key: usize, cause: CloseCause, code: u16, reason: &str) {
        if !self.conns.contains(key) {
            return;
        }
        let mut conn = self.conns.remove(key);
        stats::sub(
            &self.local.counters.buffered_bytes,
            u64::from(conn.backlog_reported),
        );
        if !conn.subs.is_empty() {
            self.local.topics.unsubscribe_all(&mut conn.subs);
            self.local.note_subscriptions();
        }
        let user = conn.user.take();
        fire_close(
            user,
            &mut self.handler,
            &self.local,
            key,
            cause,
            code,
            reason,
        );
        conn.outbox.release(&mut self.local.pool);
        if let Some(head) = conn.head.take() {
            self.local.pool.put(head);
        }
        if let Some(stash) = conn.stash.take() {
            self.local.pool.put(stash);
        }
        let _ = self.poll.registry().deregister(&mut conn.stream);
        // A descriptor was freed: accepting may work again.
        if self.accept_paused_until.is_some() {
            self.accept_paused_until = None;
            self.accept_pending = true;
        }
    }
}

/// The configuration with values that would spin or overflow brought into range: at least one
/// accept and one read per wake-up, durations of at most a year.
fn sanitized(config: &Config) -> Config {
    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
    Config {
        accepts_per_wakeup: config.accepts_per_wakeup.max(1),
        reads_per_wakeup: config.reads_per_wakeup.max(1),
        handshake_timeout: config.handshake_timeout.min(YEAR),
        ping_interval: config.ping_interval.map(|d| d.min(YEAR)),
        pong_timeout: config.pong_timeout.min(YEAR),
        close_timeout: config.close_timeout.min(YEAR),
        accept_backoff: config.accept_backoff.min(YEAR),
        shutdown_timeout: config.shutdown_timeout.min(YEAR),
        ..config.clone()
    }
}

/// Runs the frames in `data` through the connection's receiver and the handler.
fn on_frames<H: Handler>(
    conn: &mut Conn<H::Conn>,
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
        if !matches!(conn.phase, Phase::Open | Phase::CloseSent) {
            return;
        }
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
                let user = conn.user.take();
                let cause = CloseCause::ProtocolError;
                fire_close(user, handler, local, slot, cause, code.as_u16(), &reason);
                conn.set_phase(Phase::Closing, now_ms);
                return;
            }
        };
        offset += used;
        let Some(event) = event else {
            continue;
        };
        let open = conn.phase == Phase::Open;
        let mut ws = Ws::new(&mut conn.outbox, &mut conn.subs, local, id, conn.peer);
        match event {
            Inbound::Text(text) if open => {
                if let Some(user) = conn.user.as_mut() {
                    handler.on_message(&mut ws, user, Message::Text(text));
                }
            }
            Inbound::Binary(bytes) if open => {
                if let Some(user) = conn.user.as_mut() {
                    handler.on_message(&mut ws, user, Message::Binary(bytes));
                }
            }
            Inbound::Text(_) | Inbound::Binary(_) => {}
            Inbound::Ping(payload) => {
                if open {
                    if ws.local.config.auto_pong {
                        ws.outbox.send(OpCode::Pong, payload, ws.local);
                    }
                    if let Some(user) = conn.user.as_mut() {
                        handler.on_ping(&mut ws, user, payload);
                    }
                }
            }
            Inbound::Pong(payload) => {
                stats::add(&ws.local.counters.pongs_received, 1);
                if let Some(sent_us) = conn.ping_sent_us.take() {
                    let rtt_us = now_us.saturating_sub(sent_us);
                    ws.local.counters.ping_rtt_us.record(rtt_us);
                }
                if open && let Some(user) = conn.user.as_mut() {
                    handler.on_pong(&mut ws, user, payload);
                }
            }
            Inbound::Close(code, reason) => {
                let user = conn.user.take();
                if open {
                    ws.outbox.echo_close(code, ws.local);
                    let code = code.unwrap_or(CloseCode::NO_STATUS).as_u16();
                    fire_close(user, handler, local, slot, CloseCause::Clean, code, reason);
                } else {
                    let ours = conn.outbox.sent_close.map_or(1005, CloseCode::as_u16);
                    let cause = if local.remote.shutting_down() {
                        CloseCause::Shutdown
                    } else {
                        CloseCause::Clean
                    };
                    fire_close(user, handler, local, slot, cause, ours, "");
                }
                conn.set_phase(Phase::Closing, now_ms);
                conn.receiver.after_delivery();
                return;
            }
        }
        conn.receiver.after_delivery();
        after_callbacks(conn, handler, local, slot, now_ms);
        if conn.outbox.buffered_len() > local.config.backpressure_len && offset < data.len() {
            // Stop here: the rest waits until the backlog drains.
            conn.read_paused = true;
            let mut stash = local.pool.take();
            stash.extend_from_slice(&data[offset..]);
            conn.stash = Some(stash);
            return;
        }
    }
}

/// After a callback: if the handler closed the connection, or a send passed the hard cap,
/// move the connection's phase along.
fn after_callbacks<H: Handler>(
    conn: &mut Conn<H::Conn>,
    handler: &mut H,
    local: &Local,
    slot: usize,
    now_ms: u64,
) {
    if conn.phase != Phase::Open || conn.outbox.phase != SendPhase::Closed {
        return;
    }
    if conn.outbox.overflowed {
        let user = conn.user.take();
        let code = CloseCode::POLICY_VIOLATION.as_u16();
        fire_close(
            user,
            handler,
            local,
            slot,
            CloseCause::SlowConsumer,
            code,
            "send backlog over the limit",
        );
        conn.set_phase(Phase::Closing, now_ms);
    } else {
        conn.set_phase(Phase::CloseSent, now_ms);
    }
}

/// Queues a message encoded once for many connections. A connection that compresses with its
/// own context compresses it itself; those without context takeover share one compressed copy
/// per window size, made on first use and kept in `compressed` for the rest of the delivery.
fn send_published(
    outbox: &mut Outbox,
    message: &Published,
    local: &mut Local,
    compressed: &mut Vec<(u8, Option<Vec<u8>>)>,
) -> SendStatus {
    let Some(side) = outbox.compression.as_deref() else {
        return outbox.send_encoded(message.opcode, &message.frame, local);
    };
    let Some(window_bits) = side.shared_window() else {
        return outbox.send(message.opcode, message.payload(), local);
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
        Some(bytes) => outbox.send_compressed(message.opcode, bytes, local),
        None => outbox.send_encoded(message.opcode, &message.frame, local),
    }
}

/// Hands a connection's state to `on_close` (when it has not been yet) and marks its id as
/// gone, so a [`Remote`] send to it fails from now on.
fn fire_close<H: Handler>(
    user: Option<H::Conn>,
    handler: &mut H,
    local: &Local,
    slot: usize,
    cause: CloseCause,
    code: u16,
    reason: &str,
) {
    let Some(user) = user else {
        return;
    };
    local.live.close(slot);
    stats::sub(&local.counters.connections, 1);
    local.counters.note_closed(cause);
    handler.on_close(user, code, reason);
}

/// Header fields as the protocol crate's writers take them.
fn header_pairs(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect()
}

/// Writes an application's plain HTTP answer, or a 500 if it cannot be sent as given.
fn write_plain(out: &mut Vec<u8>, answer: &HttpResponse) {
    let headers = header_pairs(&answer.headers);
    if write_http_response(out, answer.status, &headers, &answer.body).is_err() {
        out.clear();
        let _ = write_reject(out, 500, &[], b"invalid response from the application");
    }
}

/// Writes an application's refusal of an upgrade, or a 500 if it cannot be sent as given.
fn write_refusal(out: &mut Vec<u8>, refusal: &HttpResponse) {
    let headers = header_pairs(&refusal.headers);
    if write_reject(out, refusal.status, &headers, &refusal.body).is_err() {
        out.clear();
        let _ = write_reject(out, 500, &[], b"invalid refusal from the application");
    }
}
