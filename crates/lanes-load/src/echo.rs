//! The echo mode: connections keeping a fixed number of messages in flight.
//!
//! The end of a run is clean: after the measured window (and the hold for the server's memory
//! reading), every connection writes what it still has queued, then a close frame, and reads
//! the echoes still on their way until the server's close frame. So every message counted in
//! [`EchoResult::sent_total`] (counted when its frame is written to the socket in full) was
//! read by the server before lanes-load exits: on a run without errors it equals the number of
//! messages the server received.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use lanes_proto::deflate::{DeflateParams, InflateScratch};
use lanes_proto::session::{Connection, Event};
use lanes_proto::{CloseCode, OpCode};
use mio::{Events, Interest, Poll, Token};

use crate::args::{Deflate, Kind};
use crate::client::{Wire, connect_and_upgrade_offering, push_frame, session_config};
use crate::deflate::{Codec, ConnCodec, Sent, offer, params_from_answer};
use crate::metrics::ThreadMetrics;
use crate::rng::Rng;
use crate::schedule::Schedule;
use crate::tls::Tls;
use crate::tracker::EchoTracker;
use crate::transport::Transport;

/// The longest a thread keeps its connections open after the window, waiting for the server's
/// memory to be read.
const HOLD_MAX: Duration = Duration::from_secs(2);

/// The longest the end of a run may take: writing what is still queued, then the close
/// handshake.
pub const CLOSE_MAX: Duration = Duration::from_secs(5);

/// The echo load of one thread.
#[derive(Debug, Clone)]
pub struct EchoPlan {
    /// Server address.
    pub addr: SocketAddr,
    /// TLS (`wss://`), if any; the thread's connections share one session cache.
    pub tls: Option<Tls>,
    /// Connections this thread opens.
    pub connections: u32,
    /// Messages in flight per connection.
    pub depth: u32,
    /// Payload bytes.
    pub size: usize,
    /// Text or binary.
    pub kind: Kind,
    /// Whether and how to offer permessage-deflate.
    pub deflate: Deflate,
    /// Warm-up, not measured.
    pub warmup: Duration,
    /// Measured window.
    pub duration: Duration,
    /// This thread's index (varies patterns and keys).
    pub thread: usize,
    /// Open loop: this thread's messages per second, sent on a fixed schedule round robin
    /// over its connections whatever the echoes ([`crate::schedule`]); `depth` is then not
    /// used. `None`: the closed loop, `depth` messages in flight per connection.
    pub rate: Option<f64>,
}

/// What one thread measured.
#[derive(Debug)]
pub struct EchoResult {
    /// Echoes received and checked inside the measured window.
    pub messages: u64,
    /// Payload bytes of those echoes (inflated, where they came compressed).
    pub bytes: u64,
    /// Frame payload bytes of those echoes as they came (compressed or not; headers not
    /// counted).
    pub wire_bytes_received: u64,
    /// Those echoes that came compressed (RSV1).
    pub compressed_received: u64,
    /// Messages queued inside the measured window.
    pub sent: u64,
    /// Messages written to the socket in full over the whole run, warm-up and the end of the
    /// run included (a message is counted once the last byte of its frame is written). On a
    /// run without errors every one of them was read by the server before its close frame
    /// came back, so this is what the server received.
    pub sent_total: u64,
    /// Payload bytes of those messages, before compression.
    pub payload_bytes_sent: u64,
    /// Frame payload bytes of those messages as sent (compressed or not; headers not counted).
    pub wire_bytes_sent: u64,
    /// Those messages sent compressed (RSV1).
    pub compressed_sent: u64,
    /// The permessage-deflate parameters agreed with the server, if any.
    pub deflate_params: Option<DeflateParams>,
    /// Round-trip times of those echoes, in nanoseconds.
    pub latency_ns: Histogram<u64>,
    /// Open loop: the latest any message of the window went out after it was due (0 in the
    /// closed loop).
    pub max_send_lag: Duration,
    /// Failed checks, closed connections and I/O errors.
    pub errors: u64,
    /// The first error, described.
    pub first_error: Option<String>,
}

impl EchoResult {
    fn new() -> EchoResult {
        EchoResult {
            messages: 0,
            bytes: 0,
            wire_bytes_received: 0,
            compressed_received: 0,
            sent: 0,
            sent_total: 0,
            payload_bytes_sent: 0,
            wire_bytes_sent: 0,
            compressed_sent: 0,
            deflate_params: None,
            latency_ns: new_histogram(),
            max_send_lag: Duration::ZERO,
            errors: 0,
            first_error: None,
        }
    }

    fn error(&mut self, what: String) {
        self.errors += 1;
        self.first_error.get_or_insert(what);
    }

    /// Adds another thread's result.
    pub fn merge(&mut self, other: &EchoResult) {
        self.messages += other.messages;
        self.bytes += other.bytes;
        self.wire_bytes_received += other.wire_bytes_received;
        self.compressed_received += other.compressed_received;
        self.sent += other.sent;
        self.sent_total += other.sent_total;
        self.payload_bytes_sent += other.payload_bytes_sent;
        self.wire_bytes_sent += other.wire_bytes_sent;
        self.compressed_sent += other.compressed_sent;
        self.deflate_params = self.deflate_params.or(other.deflate_params);
        let _ = self.latency_ns.add(&other.latency_ns);
        self.max_send_lag = self.max_send_lag.max(other.max_send_lag);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }

    /// An empty result to merge into.
    pub fn empty() -> EchoResult {
        EchoResult::new()
    }

    fn count_sent(&mut self, sent: Sent) {
        self.sent += 1;
        self.payload_bytes_sent += sent.payload_len as u64;
        self.wire_bytes_sent += sent.wire_len as u64;
        self.compressed_sent += u64::from(sent.compressed);
    }
}

/// A latency histogram from 1 ns to 60 s with 3 significant digits.
#[allow(clippy::expect_used)] // constant bounds that hdrhistogram accepts
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

struct Conn {
    stream: Transport,
    tracker: EchoTracker,
    /// The client session: frames in, the close handshake, pongs.
    session: Connection,
    /// What the last read brought (all of it is consumed by the session each time).
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    written: usize,
    /// Where each data frame queued in `outbuf` ends, in order; those from `frames_written`
    /// on are not written in full yet.
    frame_ends: Vec<usize>,
    frames_written: usize,
    /// Open and in use (during the close handshake: still waiting for the server's close).
    alive: bool,
    /// The connection's own compression state, when permessage-deflate was agreed.
    codec: Option<ConnCodec>,
}

/// Queues the connection's next message, compressed by `codec` when deflate was agreed.
fn queue_next(
    conn: &mut Conn,
    codec: Option<&mut Codec>,
    opcode: OpCode,
    key: [u8; 4],
    now: Instant,
) -> Sent {
    let Conn {
        tracker,
        outbuf,
        frame_ends,
        codec: conn_codec,
        ..
    } = conn;
    let sent = if let (Some(codec), Some(conn_codec)) = (codec, conn_codec.as_mut()) {
        codec.push_message(conn_codec, outbuf, opcode, key, |out| {
            tracker.push_next(now, out)
        })
    } else {
        let size = tracker.size();
        push_frame(outbuf, opcode, size, key, |out| tracker.push_next(now, out));
        Sent {
            payload_len: size,
            wire_len: size,
            compressed: false,
        }
    };
    frame_ends.push(outbuf.len());
    sent
}

/// Runs one thread's echo load: connect and upgrade all its connections, wait at `start` for
/// the other threads, then keep `depth` messages in flight on each until the window ends.
/// The connections stay open after the window until `released` is set (by whoever reads the
/// server's memory), for at most 2 s. Then every connection is closed cleanly: what is still
/// queued is written, then a close frame, and the echoes still on their way are read and
/// checked until the server's close frame (for at most 5 s; a connection that does not get
/// there is an error). `metrics` is this thread's own, updated as the run goes.
pub fn run_echo_thread(
    plan: &EchoPlan,
    start: &Barrier,
    progress: &AtomicU64,
    failed_start: &Arc<AtomicU64>,
    released: &AtomicBool,
    metrics: &ThreadMetrics,
) -> Result<EchoResult, String> {
    let outcome = echo_thread(plan, start, progress, failed_start, released, metrics);
    // Whatever happened, this thread's connections are closed now.
    metrics.set_connections_open(0);
    outcome
}

fn echo_thread(
    plan: &EchoPlan,
    start: &Barrier,
    progress: &AtomicU64,
    failed_start: &Arc<AtomicU64>,
    released: &AtomicBool,
    metrics: &ThreadMetrics,
) -> Result<EchoResult, String> {
    let mut rng = Rng::new(plan.thread as u64 + 1);
    let poll = Poll::new().map_err(|e| e.to_string());
    let mut conns = Vec::with_capacity(plan.connections as usize);
    let mut setup_error = None;
    // Echoes longer than sent are caught by the echo check, not by the inflater's limit.
    let max_message_len = (plan.size as u64).saturating_mul(2).max(1024);
    let mut codec: Option<Codec> = None;
    let config = session_config(max_message_len);
    let epoch = Instant::now();
    let mut poll = match poll {
        Ok(poll) => Some(poll),
        Err(e) => {
            setup_error = Some(e);
            None
        }
    };
    let offered = offer(plan.deflate).map(|o| o.to_string());
    let tls = plan.tls.as_ref().map(Tls::for_thread);
    if let Some(poll) = poll.as_mut() {
        for i in 0..plan.connections {
            let upgraded = connect_and_upgrade_offering(
                plan.addr,
                tls.as_ref(),
                &mut rng,
                offered.as_deref(),
                |r| {
                    params_from_answer(plan.deflate, &r.extensions)
                        .map_err(|e| format!("{}: {e}", plan.addr))
                },
            )
            .and_then(|(s, params)| {
                let (transport, buffered) = s.into_transport().map_err(|e| e.to_string())?;
                if !buffered.is_empty() {
                    return Err(format!("{} sent frames before it was spoken to", plan.addr));
                }
                Ok((transport, params))
            });
            let conn_codec = match &upgraded {
                Ok((_, Some(params))) => match &codec {
                    None => {
                        let first = Codec::new(*params);
                        let conn_codec = first.conn();
                        codec = Some(first);
                        Some(conn_codec)
                    }
                    Some(codec) if codec.params() == params => Some(codec.conn()),
                    Some(_) => {
                        setup_error = Some(format!(
                            "{}: connections agreed on different permessage-deflate parameters",
                            plan.addr
                        ));
                        break;
                    }
                },
                _ => None,
            };
            match upgraded {
                Ok((mut stream, _)) => {
                    if let Err(e) = poll.registry().register(
                        stream.source(),
                        Token(conns.len()),
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        setup_error = Some(e.to_string());
                        break;
                    }
                    let salt = (plan.thread as u64) << 32 | u64::from(i);
                    let mut session = Connection::new(config, 0);
                    if let Some(params) = codec.as_ref().map(Codec::params) {
                        session.enable_deflate(params);
                    }
                    conns.push(Conn {
                        stream,
                        tracker: EchoTracker::new(plan.size, plan.kind, salt),
                        session,
                        inbuf: Vec::with_capacity(64 * 1024),
                        outbuf: Vec::with_capacity(64 * 1024),
                        written: 0,
                        frame_ends: Vec::with_capacity(plan.depth as usize),
                        frames_written: 0,
                        alive: true,
                        codec: conn_codec,
                    });
                    metrics.connections_opened(1);
                }
                Err(e) => {
                    setup_error = Some(e);
                    break;
                }
            }
        }
    }
    if setup_error.is_some() {
        failed_start.fetch_add(1, Ordering::Relaxed);
    }
    // Every thread waits here, failed or not, so none is left waiting.
    start.wait();
    if let Some(e) = setup_error {
        return Err(e);
    }
    if failed_start.load(Ordering::Relaxed) > 0 {
        return Err("another thread could not connect".into());
    }
    let Some(mut poll) = poll else {
        return Err("no event loop".into());
    };

    let opcode = match plan.kind {
        Kind::Text => OpCode::Text,
        Kind::Binary => OpCode::Binary,
    };
    let mut scratch = InflateScratch::new(max_message_len);
    let began = Instant::now();
    let window_start = began + plan.warmup;
    let window_end = window_start + plan.duration;
    let mut result = EchoResult::new();
    result.deflate_params = codec.as_ref().map(|c| *c.params());
    let measuring_from_start = plan.warmup.is_zero();
    let schedule = plan.rate.map(Schedule::new);
    // Open loop: the next message of the schedule (sent round robin over the connections).
    let mut next_due = 0u64;
    let depth = if schedule.is_some() { 0 } else { plan.depth };
    for conn in &mut conns {
        for _ in 0..depth {
            let key = rng.key();
            let sent = queue_next(conn, codec.as_mut(), opcode, key, began);
            if measuring_from_start {
                result.count_sent(sent);
            }
        }
    }
    let mut events = Events::with_capacity(1024);
    let mut dirty: Vec<usize> = (0..conns.len()).collect();
    let mut since_progress = 0u64;
    loop {
        if let Some(schedule) = &schedule {
            let now = Instant::now();
            let due = schedule.due_by(now.saturating_duration_since(began));
            while next_due < due && !conns.is_empty() {
                let intended = began + schedule.due_at(next_due);
                let index = (next_due % conns.len() as u64) as usize;
                next_due += 1;
                let conn = &mut conns[index];
                if !conn.alive {
                    continue;
                }
                // Measured from when it was due: a late send shows in its round trip.
                let sent = queue_next(conn, codec.as_mut(), opcode, rng.key(), intended);
                if intended >= window_start && intended < window_end {
                    result.count_sent(sent);
                    result.max_send_lag = result.max_send_lag.max(now - intended);
                }
                dirty.push(index);
            }
        }
        for &index in &dirty {
            flush(&mut conns[index], false, &mut result, metrics);
        }
        dirty.clear();
        let now = Instant::now();
        if now >= window_end {
            break;
        }
        let mut timeout = (window_end - now).min(Duration::from_millis(20));
        if let Some(schedule) = &schedule {
            let next = (began + schedule.due_at(next_due)).saturating_duration_since(now);
            // The poll sleeps in whole milliseconds: closer than that, it only looks (the
            // client spins on its core rather than send late).
            timeout = if next < Duration::from_millis(1) {
                Duration::ZERO
            } else {
                timeout.min(next - Duration::from_millis(1))
            };
        }
        if let Err(e) = poll.poll(&mut events, Some(timeout))
            && e.kind() != std::io::ErrorKind::Interrupted
        {
            return Err(format!("poll failed: {e}"));
        }
        let now = Instant::now();
        let measuring = now >= window_start && now < window_end;
        for event in events.iter() {
            let index = event.token().0;
            let conn = &mut conns[index];
            if !conn.alive {
                continue;
            }
            if event.is_writable()
                && (conn.written < conn.outbuf.len() || conn.stream.wants_write())
            {
                dirty.push(index);
            }
            if !(event.is_readable() || event.is_read_closed()) {
                continue;
            }
            let mut io = ReadIo {
                scratch: &mut scratch,
                rng: &mut rng,
                now_us: micros_since(epoch, now),
            };
            let read = read_echoes(conn, &mut io, now, measuring, &mut result, metrics);
            let echoed = match read {
                Ok(Incoming { echoed, end: None }) => echoed,
                Ok(Incoming { end: Some(end), .. }) => {
                    let what = match end {
                        End::CloseFrame => "server sent a close frame",
                        End::Eof => "server closed a connection",
                    };
                    kill(conn, &mut result, metrics, what.into());
                    continue;
                }
                Err(e) => {
                    kill(conn, &mut result, metrics, e);
                    continue;
                }
            };
            if echoed > 0 && schedule.is_some() {
                since_progress += echoed;
                if conn.written < conn.outbuf.len() {
                    dirty.push(index);
                }
            } else if echoed > 0 {
                for _ in 0..echoed {
                    let key = rng.key();
                    let sent = queue_next(conn, codec.as_mut(), opcode, key, now);
                    if measuring {
                        result.count_sent(sent);
                    }
                }
                dirty.push(index);
                since_progress += echoed;
            } else if conn.written < conn.outbuf.len() {
                // A pong (or a close echo) the session queued.
                dirty.push(index);
            }
        }
        if since_progress > 0 {
            progress.fetch_add(since_progress, Ordering::Relaxed);
            since_progress = 0;
        }
    }
    // Keep the connections open until the server's memory has been read.
    let hold_end = Instant::now() + HOLD_MAX;
    while !released.load(Ordering::Acquire) && Instant::now() < hold_end {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut ending = Ending {
        poll: &mut poll,
        events: &mut events,
        scratch: &mut scratch,
        epoch,
        result: &mut result,
        metrics,
    };
    ending.close_all(&mut conns, &mut rng)?;
    Ok(result)
}

/// How a server ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// It sent a close frame.
    CloseFrame,
    /// It ended the TCP stream.
    Eof,
}

/// What a read brought on a connection.
struct Incoming {
    /// Echoes received and checked.
    echoed: u64,
    /// How the server ended the connection, if it did (after those echoes).
    end: Option<End>,
}

/// What reading a connection needs from its thread.
struct ReadIo<'a> {
    scratch: &'a mut InflateScratch,
    rng: &'a mut Rng,
    /// The read's time on the thread's session clock.
    now_us: u64,
}

/// Microseconds from `epoch` to `now`: the sessions' clock.
fn micros_since(epoch: Instant, now: Instant) -> u64 {
    now.saturating_duration_since(epoch).as_micros() as u64
}

/// Reads what the connection has and checks every echo in it (the connection's session parses,
/// inflates and validates them, and queues any pong or close echo in `outbuf`), counting in the
/// window's figures those of a read at `now` inside the window (`measuring`) and in `metrics`
/// all of them. Stops at the server's close frame. An error (a failed check, a bad frame, a
/// failed read) is the connection's end. Once our close is out, the session delivers nothing
/// but the server's close: echoes still on their way are counted in `metrics` from their
/// frames, unchecked.
fn read_echoes(
    conn: &mut Conn,
    io: &mut ReadIo<'_>,
    now: Instant,
    measuring: bool,
    result: &mut EchoResult,
    metrics: &ThreadMetrics,
) -> Result<Incoming, String> {
    conn.inbuf.clear();
    let open = conn.stream.read_available(&mut conn.inbuf);
    metrics.add_bytes_received(conn.inbuf.len() as u64);
    let open = open.map_err(|e| format!("read failed: {e}"))?;
    let mut end = (!open).then_some(End::Eof);
    let mut at = 0;
    let mut echoed = 0u64;
    let mut wire = Wire::new(&mut conn.outbuf, io.rng);
    let outcome = loop {
        if at == conn.inbuf.len() {
            break Ok(());
        }
        let step =
            match conn
                .session
                .handle_bytes(&mut conn.inbuf[at..], io.scratch, io.now_us, &mut wire)
            {
                Ok(step) => step,
                Err(e) => break Err(format!("bad frame from the server: {e}")),
            };
        at += step.used;
        let (is_text, payload) = match step.event {
            Some(Event::Text(text)) => (true, text.as_bytes()),
            Some(Event::Binary(bytes)) => (false, bytes),
            Some(Event::Close(_)) => {
                end = Some(End::CloseFrame);
                break Ok(());
            }
            // Pings (answered by the session) and pongs: the server's keepalive.
            Some(Event::Ping(_) | Event::Pong(_)) | None => continue,
        };
        let (wire_len, compressed) = wire.take_wire();
        match conn.tracker.check(is_text, payload, now) {
            Ok(rtt) => {
                echoed += 1;
                metrics.record_latency(rtt);
                if measuring {
                    result.messages += 1;
                    result.bytes += payload.len() as u64;
                    result.wire_bytes_received += wire_len;
                    result.compressed_received += u64::from(compressed);
                    let _ = result.latency_ns.record(rtt.as_nanos().max(1) as u64);
                }
            }
            Err(e) => break Err(e.to_string()),
        }
    };
    conn.session.receiver.release();
    conn.inbuf.clear();
    metrics.add_messages_received(wire.messages_seen);
    outcome.map(|()| Incoming { echoed, end })
}

/// Records `what` as an error and gives up on the connection.
fn kill(conn: &mut Conn, result: &mut EchoResult, metrics: &ThreadMetrics, what: String) {
    conn.alive = false;
    result.error(what);
    metrics.add_errors(1);
    metrics.connections_closed(1);
}

/// Writes what the connection has queued: once (`all` false: one write per connection per
/// loop iteration), or until all is written or the socket would block (`all`). The data
/// frames written in full are counted as sent (with TLS: taken by rustls, which sends them
/// as the socket takes them; what it still holds goes out here first).
fn flush(conn: &mut Conn, all: bool, result: &mut EchoResult, metrics: &ThreadMetrics) {
    if conn.alive
        && let Err(e) = conn.stream.send_pending()
    {
        kill(conn, result, metrics, format!("write failed: {e}"));
    }
    while conn.alive && conn.written < conn.outbuf.len() {
        match conn.stream.write(&conn.outbuf[conn.written..]) {
            Ok(0) => kill(conn, result, metrics, "write failed: no byte taken".into()),
            Ok(n) => {
                conn.written += n;
                metrics.add_bytes_sent(n as u64);
                let done = conn.frame_ends[conn.frames_written..]
                    .iter()
                    .take_while(|&&end| end <= conn.written)
                    .count();
                if done > 0 {
                    conn.frames_written += done;
                    result.sent_total += done as u64;
                    metrics.add_messages_sent(done as u64);
                }
                if conn.written == conn.outbuf.len() {
                    conn.outbuf.clear();
                    conn.written = 0;
                    conn.frame_ends.clear();
                    conn.frames_written = 0;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => kill(conn, result, metrics, format!("write failed: {e}")),
        }
        if !all {
            return;
        }
    }
}

/// What the end of a thread's run works with.
struct Ending<'a> {
    poll: &'a mut Poll,
    events: &'a mut Events,
    scratch: &'a mut InflateScratch,
    /// The sessions' clock.
    epoch: Instant,
    result: &'a mut EchoResult,
    metrics: &'a ThreadMetrics,
}

impl Ending<'_> {
    /// Ends the run on every connection still open: no new message is queued; what is still
    /// queued is written, then a close frame (1000); the echoes still on their way are read
    /// and checked (counted in `metrics`, not in the window's figures) until the server's
    /// close frame or the end of its stream. A server answers a close frame only after it has
    /// read every frame before it, so on a clean end every message counted in `sent_total`
    /// was received by the server. A connection that does not get there within
    /// [`CLOSE_MAX`] is an error.
    fn close_all(&mut self, conns: &mut [Conn], rng: &mut Rng) -> Result<(), String> {
        let deadline = Instant::now() + CLOSE_MAX;
        let mut closing = 0usize;
        let now_us = micros_since(self.epoch, Instant::now());
        for conn in conns.iter_mut().filter(|c| c.alive) {
            let mut wire = Wire::new(&mut conn.outbuf, rng);
            conn.session
                .session
                .close(CloseCode::NORMAL, "", now_us, &mut wire);
            flush(conn, true, self.result, self.metrics);
            closing += usize::from(conn.alive);
        }
        while closing > 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if let Err(e) = self.poll.poll(self.events, Some(deadline - now))
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                return Err(format!("poll failed: {e}"));
            }
            let now = Instant::now();
            for event in self.events.iter() {
                let Some(conn) = conns.get_mut(event.token().0) else {
                    continue;
                };
                if !conn.alive {
                    continue;
                }
                if event.is_writable() {
                    flush(conn, true, self.result, self.metrics);
                    if !conn.alive {
                        closing -= 1;
                        continue;
                    }
                }
                if !(event.is_readable() || event.is_read_closed()) {
                    continue;
                }
                let mut io = ReadIo {
                    scratch: self.scratch,
                    rng,
                    now_us: micros_since(self.epoch, now),
                };
                let read = read_echoes(conn, &mut io, now, false, self.result, self.metrics);
                match read {
                    Ok(Incoming { end: None, .. }) => {}
                    Ok(Incoming { end: Some(_), .. }) if conn.written < conn.outbuf.len() => {
                        closing -= 1;
                        let what = "the server ended a connection before lanes-load had \
                                    written all its messages";
                        kill(conn, self.result, self.metrics, what.into());
                    }
                    Ok(Incoming { end: Some(_), .. }) => {
                        // Closed cleanly: the server has read everything before our close.
                        closing -= 1;
                        conn.alive = false;
                        self.metrics.connections_closed(1);
                    }
                    Err(e) => {
                        closing -= 1;
                        kill(conn, self.result, self.metrics, e);
                    }
                }
            }
        }
        for conn in conns.iter_mut().filter(|c| c.alive) {
            let what = format!(
                "no close frame from the server within {} s of lanes-load's",
                CLOSE_MAX.as_secs()
            );
            kill(conn, self.result, self.metrics, what);
        }
        Ok(())
    }
}
