//! The connect and idle modes.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lanes_proto::OpCode;

use crate::client::{connect_and_upgrade, push_frame};
use crate::metrics::ThreadMetrics;
use crate::rng::Rng;

/// Handshakes per thread, one after another, until `end`: connect, upgrade, send a close
/// frame, wait for the server to end the connection. Returns (completed, errors, first error).
/// `metrics` (this thread's own) counts the errors and the connection open meanwhile.
pub fn run_connect_thread(
    addr: SocketAddr,
    thread: usize,
    end: Instant,
    progress: &AtomicU64,
    metrics: &ThreadMetrics,
) -> (u64, u64, Option<String>) {
    let mut rng = Rng::new(thread as u64 + 100);
    let (mut done, mut errors, mut first) = (0u64, 0u64, None);
    while Instant::now() < end {
        match handshake_once(addr, &mut rng, metrics) {
            Ok(()) => {
                done += 1;
                progress.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                errors += 1;
                metrics.add_errors(1);
                first.get_or_insert(e);
                if errors > 100 && done == 0 {
                    break;
                }
            }
        }
    }
    (done, errors, first)
}

fn handshake_once(addr: SocketAddr, rng: &mut Rng, metrics: &ThreadMetrics) -> Result<(), String> {
    let mut stream = connect_and_upgrade(addr, rng)?;
    metrics.connections_opened(1);
    let closed = close(&mut stream, rng);
    metrics.connections_closed(1);
    closed
}

/// Sends a close frame and waits for the server to end the connection.
fn close(stream: &mut TcpStream, rng: &mut Rng) -> Result<(), String> {
    let mut close = Vec::with_capacity(16);
    let key = rng.key();
    push_frame(&mut close, OpCode::Close, 2, key, |out| {
        out.extend_from_slice(&1000u16.to_be_bytes())
    });
    std::io::Write::write_all(stream, &close).map_err(|e| e.to_string())?;
    stream
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
    count: u32,
    progress: &AtomicU64,
    metrics: &ThreadMetrics,
) -> Result<Vec<TcpStream>, String> {
    let mut rng = Rng::new(7);
    let mut conns = Vec::with_capacity(count as usize);
    for _ in 0..count {
        match connect_and_upgrade(addr, &mut rng) {
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
