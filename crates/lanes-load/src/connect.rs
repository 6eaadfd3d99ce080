//! The connect and idle modes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lanes_proto::OpCode;

use crate::client::{connect_and_upgrade, push_frame};
use crate::metrics::ThreadMetrics;
use crate::rng::Rng;
use crate::tls::{Tls, resumed};
use crate::transport::Stream;

/// What one thread's handshakes came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectResult {
    /// Handshakes completed (connect, TLS if any, upgrade, close).
    pub done: u64,
    /// Of those, the ones whose TLS handshake resumed a session.
    pub tls_resumed: u64,
    /// Attempts that failed.
    pub errors: u64,
    /// The first failure, described.
    pub first_error: Option<String>,
}

impl ConnectResult {
    /// Adds another thread's result.
    pub fn merge(&mut self, other: &ConnectResult) {
        self.done += other.done;
        self.tls_resumed += other.tls_resumed;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }
}

/// Handshakes per thread, one after another, until `end`: connect, TLS (with `tls`, whose
/// session cache, if any, the thread's handshakes share: pass the same one to the warm-up and
/// the measured run), upgrade, send a close frame, wait for the server to end the connection.
/// `metrics` (this thread's own) counts the errors and the connection open meanwhile.
pub fn run_connect_thread(
    addr: SocketAddr,
    tls: Option<&Tls>,
    thread: usize,
    end: Instant,
    progress: &AtomicU64,
    metrics: &ThreadMetrics,
) -> ConnectResult {
    let mut rng = Rng::new(thread as u64 + 100);
    let mut result = ConnectResult::default();
    while Instant::now() < end {
        match handshake_once(addr, tls, &mut rng, metrics) {
            Ok(was_resumed) => {
                result.done += 1;
                result.tls_resumed += u64::from(was_resumed);
                progress.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                result.errors += 1;
                metrics.add_errors(1);
                result.first_error.get_or_insert(e);
                if result.errors > 100 && result.done == 0 {
                    break;
                }
            }
        }
    }
    result
}

/// One handshake and close; returns whether TLS resumed a session.
fn handshake_once(
    addr: SocketAddr,
    tls: Option<&Tls>,
    rng: &mut Rng,
    metrics: &ThreadMetrics,
) -> Result<bool, String> {
    let mut stream = connect_and_upgrade(addr, tls, rng)?;
    metrics.connections_opened(1);
    let was_resumed = stream.tls().is_some_and(resumed);
    let closed = close(&mut stream, rng);
    metrics.connections_closed(1);
    closed.map(|()| was_resumed)
}

/// Sends a close frame and waits for the server to end the connection.
fn close(stream: &mut Stream, rng: &mut Rng) -> Result<(), String> {
    let mut close = Vec::with_capacity(16);
    let key = rng.key();
    push_frame(&mut close, OpCode::Close, 2, key, |out| {
        out.extend_from_slice(&1000u16.to_be_bytes())
    });
    std::io::Write::write_all(stream, &close).map_err(|e| e.to_string())?;
    stream
        .tcp()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    // Read the server's close and wait for it to end the TCP connection.
    let mut sink = [0u8; 256];
    loop {
        match std::io::Read::read(stream, &mut sink) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(()),
            Err(e) => return Err(format!("waiting for the server's close: {e}")),
        }
    }
}

/// Opens `count` upgraded connections and returns them (the caller holds them idle, and
/// notes in `metrics` when it closes them).
pub fn open_idle(
    addr: SocketAddr,
    tls: Option<&Tls>,
    count: u32,
    progress: &AtomicU64,
    metrics: &ThreadMetrics,
) -> Result<Vec<Stream>, String> {
    let mut rng = Rng::new(7);
    let tls = tls.map(Tls::for_thread);
    let mut conns = Vec::with_capacity(count as usize);
    for _ in 0..count {
        match connect_and_upgrade(addr, tls.as_ref(), &mut rng) {
            Ok(conn) => conns.push(conn),
            Err(e) => {
                metrics.add_errors(1);
                metrics.connections_closed(conns.len() as u64);
                return Err(e);
            }
        }
        metrics.connections_opened(1);
        progress.fetch_add(1, Ordering::Relaxed);
    }
    Ok(conns)
}
