//! The fanout mode: N subscriber connections and one publisher. The publisher sends
//! timestamped messages at a fixed rate; the server under test broadcasts each to every
//! subscriber; subscribers measure delivery latency and check that nothing was lost or
//! reordered.
//!
//! A published payload is 16 bytes: the sequence number and the send time (nanoseconds since
//! the run's start, on this process's monotonic clock), both little-endian.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use lanes_proto::OpCode;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::client::{connect_and_upgrade, next_frame, push_frame, read_available};
use crate::echo::new_histogram;
use crate::rng::Rng;

/// Length of a published payload.
pub const PAYLOAD_LEN: usize = 16;

/// Encodes a published message.
pub fn encode(seq: u64, sent_ns: u64) -> [u8; PAYLOAD_LEN] {
    let mut out = [0u8; PAYLOAD_LEN];
    out[..8].copy_from_slice(&seq.to_le_bytes());
    out[8..].copy_from_slice(&sent_ns.to_le_bytes());
    out
}

/// One subscriber's bookkeeping: what arrived, what was skipped, what came out of order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The next sequence number expected.
    pub next_seq: u64,
    /// Deliveries received.
    pub received: u64,
    /// Sequence numbers skipped (dropped by the server, or never sent to this subscriber).
    pub missed: u64,
    /// Deliveries with a sequence number below one already seen (reordered or duplicated).
    pub out_of_order: u64,
    /// Payloads that were not a published message.
    pub malformed: u64,
}

impl Subscription {
    /// Takes one delivery received at `now_ns`; returns its latency in nanoseconds when valid.
    pub fn on_delivery(&mut self, payload: &[u8], now_ns: u64) -> Option<u64> {
        let Ok(bytes) = <[u8; PAYLOAD_LEN]>::try_from(payload) else {
            self.malformed += 1;
            return None;
        };
        let seq = u64::from_le_bytes(bytes[..8].try_into().ok()?);
        let sent = u64::from_le_bytes(bytes[8..].try_into().ok()?);
        self.received += 1;
        if seq < self.next_seq {
            self.out_of_order += 1;
        } else {
            self.missed += seq - self.next_seq;
            self.next_seq = seq + 1;
        }
        Some(now_ns.saturating_sub(sent))
    }
}

/// What a fanout run measured.
#[derive(Debug)]
pub struct FanoutResult {
    /// Messages published in the measured window.
    pub published: u64,
    /// Deliveries in the measured window.
    pub deliveries: u64,
    /// Delivery latencies in the window, nanoseconds.
    pub latency_ns: Histogram<u64>,
    /// Totals over all subscribers (whole run).
    pub missed: u64,
    /// Out-of-order deliveries (whole run).
    pub out_of_order: u64,
    /// Malformed deliveries (whole run).
    pub malformed: u64,
    /// Subscribers that lost their connection.
    pub disconnected: u64,
}

struct Sub {
    stream: TcpStream,
    inbuf: Vec<u8>,
    state: Subscription,
    alive: bool,
}

/// Runs a fanout load on one thread: `subscribers` connections plus a publisher sending
/// `rate` messages per second.
pub fn run_fanout(
    addr: SocketAddr,
    subscribers: u32,
    rate: u32,
    warmup: Duration,
    duration: Duration,
) -> Result<FanoutResult, String> {
    let mut rng = Rng::new(99);
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let mut subs = Vec::with_capacity(subscribers as usize);
    for i in 0..subscribers {
        let std_stream = connect_and_upgrade(addr, &mut rng)?;
        std_stream
            .set_nonblocking(true)
            .map_err(|e| e.to_string())?;
        let mut stream = TcpStream::from_std(std_stream);
        poll.registry()
            .register(&mut stream, Token(i as usize), Interest::READABLE)
            .map_err(|e| e.to_string())?;
        subs.push(Sub {
            stream,
            inbuf: Vec::with_capacity(4096),
            state: Subscription::default(),
            alive: true,
        });
    }
    let mut publisher = connect_and_upgrade(addr, &mut rng)?;
    // Let the server see every subscription before the first message.
    std::thread::sleep(Duration::from_millis(100));

    let began = Instant::now();
    let window_start = began + warmup;
    let window_end = window_start + duration;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let mut next_send = began;
    let mut seq = 0u64;
    let mut out = Vec::with_capacity(1024);
    let mut result = FanoutResult {
        published: 0,
        deliveries: 0,
        latency_ns: new_histogram(),
        missed: 0,
        out_of_order: 0,
        malformed: 0,
        disconnected: 0,
    };
    let mut events = Events::with_capacity(1024);
    let drain_until = window_end + Duration::from_millis(200);
    loop {
        let now = Instant::now();
        if now >= drain_until {
            break;
        }
        // Publish what is due (never before its time, so the rate holds).
        out.clear();
        while next_send <= now && now < window_end {
            let sent_ns = next_send.saturating_duration_since(began).as_nanos() as u64;
            let payload = encode(seq, sent_ns);
            push_frame(&mut out, OpCode::Binary, PAYLOAD_LEN, rng.key(), |o| {
                o.extend_from_slice(&payload)
            });
            if next_send >= window_start {
                result.published += 1;
            }
            seq += 1;
            next_send += interval;
        }
        if !out.is_empty() {
            std::io::Write::write_all(&mut publisher, &out)
                .map_err(|e| format!("publisher write failed: {e}"))?;
        }
        let wait = next_send
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(5));
        if let Err(e) = poll.poll(&mut events, Some(wait))
            && e.kind() != std::io::ErrorKind::Interrupted
        {
            return Err(format!("poll failed: {e}"));
        }
        let now = Instant::now();
        let now_ns = now.saturating_duration_since(began).as_nanos() as u64;
        let window_start_ns = warmup.as_nanos() as u64;
        let window_end_ns = (warmup + duration).as_nanos() as u64;
        for event in events.iter() {
            let sub = &mut subs[event.token().0];
            if !sub.alive {
                continue;
            }
            match read_available(&mut sub.stream, &mut sub.inbuf) {
                Ok(true) => {}
                Ok(false) | Err(_) => {
                    sub.alive = false;
                    result.disconnected += 1;
                    continue;
                }
            }
            let mut at = 0;
            while let Ok(Some(frame)) = next_frame(&sub.inbuf, at) {
                at = frame.end;
                if !matches!(frame.opcode, OpCode::Binary | OpCode::Text) {
                    continue;
                }
                let payload = &sub.inbuf[frame.payload.0..frame.payload.1];
                if let Some(latency) = sub.state.on_delivery(payload, now_ns) {
                    let sent_ns = now_ns.saturating_sub(latency);
                    if sent_ns >= window_start_ns && sent_ns < window_end_ns {
                        result.deliveries += 1;
                        let _ = result.latency_ns.record(latency.max(1));
                    }
                }
            }
            sub.inbuf.drain(..at);
        }
    }
    for sub in &subs {
        // Messages published at the very end may still be on their way: count only gaps.
        result.missed += sub.state.missed;
        result.out_of_order += sub.state.out_of_order;
        result.malformed += sub.state.malformed;
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bookkeeping_counts_gaps_reorders_and_latency() {
        let mut sub = Subscription::default();
        assert_eq!(sub.on_delivery(&encode(0, 100), 150), Some(50));
        assert_eq!(sub.on_delivery(&encode(1, 200), 260), Some(60));
        // 2 and 3 never arrive.
        assert_eq!(sub.on_delivery(&encode(4, 400), 401), Some(1));
        // A late 3 is out of order.
        assert_eq!(sub.on_delivery(&encode(3, 300), 500), Some(200));
        assert_eq!(sub.on_delivery(b"short", 500), None);
        assert_eq!(
            sub,
            Subscription {
                next_seq: 5,
                received: 4,
                missed: 2,
                out_of_order: 1,
                malformed: 1,
            }
        );
    }
}
