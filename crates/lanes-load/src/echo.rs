//! The echo mode: connections keeping a fixed number of messages in flight.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use lanes_proto::OpCode;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::args::Kind;
use crate::client::{connect_and_upgrade, next_frame, push_frame, read_available};
use crate::rng::Rng;
use crate::tracker::EchoTracker;

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
    /// Payload bytes of those echoes.
    pub bytes: u64,
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
}

/// Runs one thread's echo load: connect and upgrade all its connections, wait at `start` for
/// the other threads, then keep `depth` messages in flight on each until the window ends.
pub fn run_echo_thread(
    plan: &EchoPlan,
    start: &Barrier,
    progress: &AtomicU64,
    failed_start: &Arc<AtomicU64>,
) -> Result<EchoResult, String> {
    let mut rng = Rng::new(plan.thread as u64 + 1);
    let poll = Poll::new().map_err(|e| e.to_string());
    let mut conns = Vec::with_capacity(plan.connections as usize);
    let mut setup_error = None;
    let mut poll = match poll {
        Ok(poll) => Some(poll),
        Err(e) => {
            setup_error = Some(e);
            None
        }
    };
    if let Some(poll) = poll.as_mut() {
        for i in 0..plan.connections {
            match connect_and_upgrade(plan.addr, &mut rng).and_then(|s| {
                s.set_nonblocking(true).map_err(|e| e.to_string())?;
                Ok(TcpStream::from_std(s))
            }) {
                Ok(mut stream) => {
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
    let began = Instant::now();
    let window_start = began + plan.warmup;
    let window_end = window_start + plan.duration;
    let mut result = EchoResult::new();
    for conn in &mut conns {
        for _ in 0..plan.depth {
            let key = rng.key();
            let tracker = &mut conn.tracker;
            push_frame(&mut conn.outbuf, opcode, plan.size, key, |out| {
                tracker.push_next(began, out)
            });
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
                match next_frame(&conn.inbuf, at) {
                    Ok(Some(frame)) => {
                        at = frame.end;
                        let payload = &conn.inbuf[frame.payload.0..frame.payload.1];
                        match frame.opcode {
                            OpCode::Text | OpCode::Binary => {
                                let is_text = frame.opcode == OpCode::Text;
                                match conn.tracker.check(is_text, payload, now) {
                                    Ok(rtt) => {
                                        echoed += 1;
                                        if measuring {
                                            result.messages += 1;
                                            result.bytes += payload.len() as u64;
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
                    let tracker = &mut conn.tracker;
                    push_frame(&mut conn.outbuf, opcode, plan.size, key, |out| {
                        tracker.push_next(now, out)
                    });
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
