//! The echo mode: connections keeping a fixed number of messages in flight.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use lanes_proto::OpCode;
use lanes_proto::deflate::DeflateParams;
use lanes_proto::frame::RSV1;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::args::{Deflate, Kind};
use crate::client::{
    connect_and_upgrade_offering, next_frame_allowing, push_frame, read_available,
};
use crate::deflate::{Codec, ConnCodec, Sent, offer, params_from_answer};
use crate::rng::Rng;
use crate::tracker::EchoTracker;

/// The longest a thread keeps its connections open after the window, waiting for the server's
/// memory to be read.
const HOLD_MAX: Duration = Duration::from_secs(2);

/// The echo load of one thread.
#[derive(Debug, Clone)]
pub struct EchoPlan {
    /// Server address.
    pub addr: SocketAddr,
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
            payload_bytes_sent: 0,
            wire_bytes_sent: 0,
            compressed_sent: 0,
            deflate_params: None,
            latency_ns: new_histogram(),
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
        self.payload_bytes_sent += other.payload_bytes_sent;
        self.wire_bytes_sent += other.wire_bytes_sent;
        self.compressed_sent += other.compressed_sent;
        self.deflate_params = self.deflate_params.or(other.deflate_params);
        let _ = self.latency_ns.add(&other.latency_ns);
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
    stream: TcpStream,
    tracker: EchoTracker,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    written: usize,
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
        codec: conn_codec,
        ..
    } = conn;
    if let (Some(codec), Some(conn_codec)) = (codec, conn_codec.as_mut()) {
        return codec.push_message(conn_codec, outbuf, opcode, key, |out| {
            tracker.push_next(now, out)
        });
    }
    let size = tracker.size();
    push_frame(outbuf, opcode, size, key, |out| tracker.push_next(now, out));
    Sent {
        payload_len: size,
        wire_len: size,
        compressed: false,
    }
}

/// Runs one thread's echo load: connect and upgrade all its connections, wait at `start` for
/// the other threads, then keep `depth` messages in flight on each until the window ends.
/// The connections stay open after the window until `released` is set (by whoever reads the
/// server's memory), for at most 2 s.
pub fn run_echo_thread(
    plan: &EchoPlan,
    start: &Barrier,
    progress: &AtomicU64,
    failed_start: &Arc<AtomicU64>,
    released: &AtomicBool,
) -> Result<EchoResult, String> {
    let mut rng = Rng::new(plan.thread as u64 + 1);
    let poll = Poll::new().map_err(|e| e.to_string());
    let mut conns = Vec::with_capacity(plan.connections as usize);
    let mut setup_error = None;
    // Echoes longer than sent are caught by the echo check, not by the inflater's limit.
    let max_message_len = (plan.size as u64).saturating_mul(2).max(1024);
    let mut codec: Option<Codec> = None;
    let mut poll = match poll {
        Ok(poll) => Some(poll),
        Err(e) => {
            setup_error = Some(e);
            None
        }
    };
    if let Some(poll) = poll.as_mut() {
        for i in 0..plan.connections {
            let upgraded =
                connect_and_upgrade_offering(plan.addr, &mut rng, offer(plan.deflate), |r| {
                    params_from_answer(plan.deflate, &r.extensions)
                        .map_err(|e| format!("{}: {e}", plan.addr))
                })
                .and_then(|(s, params)| {
                    s.set_nonblocking(true).map_err(|e| e.to_string())?;
                    Ok((TcpStream::from_std(s), params))
                });
            let conn_codec = match &upgraded {
                Ok((_, Some(params))) => match &codec {
                    None => {
                        let first = Codec::new(*params, max_message_len);
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
                        &mut stream,
                        Token(conns.len()),
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        setup_error = Some(e.to_string());
                        break;
                    }
                    let salt = (plan.thread as u64) << 32 | u64::from(i);
                    conns.push(Conn {
                        stream,
                        tracker: EchoTracker::new(plan.size, plan.kind, salt),
                        inbuf: Vec::with_capacity(64 * 1024),
                        outbuf: Vec::with_capacity(64 * 1024),
                        written: 0,
                        alive: true,
                        codec: conn_codec,
                    });
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
    let allowed_rsv = if codec.is_some() { RSV1 } else { 0 };
    let began = Instant::now();
    let window_start = began + plan.warmup;
    let window_end = window_start + plan.duration;
    let mut result = EchoResult::new();
    result.deflate_params = codec.as_ref().map(|c| *c.params());
    let measuring_from_start = plan.warmup.is_zero();
    for conn in &mut conns {
        for _ in 0..plan.depth {
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
        for &index in &dirty {
            flush(&mut conns[index], &mut result);
        }
        dirty.clear();
        let now = Instant::now();
        if now >= window_end {
            break;
        }
        let timeout = (window_end - now).min(Duration::from_millis(20));
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
            if event.is_writable() && conn.written < conn.outbuf.len() {
                dirty.push(index);
            }
            if !(event.is_readable() || event.is_read_closed()) {
                continue;
            }
            match read_available(&mut conn.stream, &mut conn.inbuf) {
                Ok(true) => {}
                Ok(false) => {
                    conn.alive = false;
                    result.error("server closed a connection".into());
                    continue;
                }
                Err(e) => {
                    conn.alive = false;
                    result.error(format!("read failed: {e}"));
                    continue;
                }
            }
            let mut at = 0;
            let mut echoed = 0u64;
            loop {
                match next_frame_allowing(&conn.inbuf, at, allowed_rsv) {
                    Ok(Some(frame)) => {
                        at = frame.end;
                        let wire = &conn.inbuf[frame.payload.0..frame.payload.1];
                        match frame.opcode {
                            OpCode::Text | OpCode::Binary if frame.fin => {
                                let payload = if frame.compressed {
                                    // RSV1 passes the decoder only once deflate is agreed.
                                    let (Some(codec), Some(conn_codec)) =
                                        (codec.as_mut(), conn.codec.as_mut())
                                    else {
                                        result.error("compressed echo without deflate".into());
                                        conn.alive = false;
                                        break;
                                    };
                                    match codec.inflate(conn_codec, wire) {
                                        Ok(payload) => payload,
                                        Err(e) => {
                                            result.error(format!("bad compressed echo: {e}"));
                                            conn.alive = false;
                                            break;
                                        }
                                    }
                                } else {
                                    wire
                                };
                                let is_text = frame.opcode == OpCode::Text;
                                match conn.tracker.check(is_text, payload, now) {
                                    Ok(rtt) => {
                                        echoed += 1;
                                        if measuring {
                                            result.messages += 1;
                                            result.bytes += payload.len() as u64;
                                            result.wire_bytes_received += wire.len() as u64;
                                            result.compressed_received +=
                                                u64::from(frame.compressed);
                                            let _ = result
                                                .latency_ns
                                                .record(rtt.as_nanos().max(1) as u64);
                                        }
                                    }
                                    Err(e) => {
                                        result.error(e.to_string());
                                        conn.alive = false;
                                        break;
                                    }
                                }
                            }
                            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                                result.error(
                                    "fragmented echo: the echo check needs one frame per message"
                                        .into(),
                                );
                                conn.alive = false;
                                break;
                            }
                            OpCode::Close => {
                                result.error("server sent a close frame".into());
                                conn.alive = false;
                                break;
                            }
                            _ => {} // pings and pongs: the server's keepalive
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        result.error(format!("bad frame from the server: {e}"));
                        conn.alive = false;
                        break;
                    }
                }
            }
            conn.inbuf.drain(..at);
            if conn.alive && echoed > 0 {
                for _ in 0..echoed {
                    let key = rng.key();
                    let sent = queue_next(conn, codec.as_mut(), opcode, key, now);
                    if measuring {
                        result.count_sent(sent);
                    }
                }
                dirty.push(index);
                since_progress += echoed;
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
    Ok(result)
}

/// Writes what the connection has queued, once.
fn flush(conn: &mut Conn, result: &mut EchoResult) {
    if !conn.alive || conn.written >= conn.outbuf.len() {
        return;
    }
    match std::io::Write::write(&mut conn.stream, &conn.outbuf[conn.written..]) {
        Ok(n) => {
            conn.written += n;
            if conn.written == conn.outbuf.len() {
                conn.outbuf.clear();
                conn.written = 0;
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
        Err(e) => {
            conn.alive = false;
            result.error(format!("write failed: {e}"));
        }
    }
}
