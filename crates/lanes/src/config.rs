//! Limits and timeouts. Every field documents its default and what it protects against.

use std::net::SocketAddr;
use std::time::Duration;

pub use lanes_metrics::InfluxConfig;

pub use lanes_proto::deflate::DeflateConfig;

/// What to do with a connection whose outgoing backlog passes [`Config::max_buffered_len`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackpressurePolicy {
    /// Close the connection with 1008 (policy violation). Default: memory stays bounded and the
    /// peer learns why.
    Close,
    /// Drop the message that would pass the cap (the send reports
    /// [`SendStatus::Dropped`](crate::SendStatus::Dropped)) and keep the connection.
    Drop,
}

/// Limits and timeouts of a server. `Config::default()` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// Longest HTTP request head, in bytes. Default 8 KiB. Bounds what a client can make us
    /// buffer before the handshake completes; more gets 431.
    pub max_head_len: usize,
    /// Most header fields in a request head. Default 64; more gets 431.
    pub max_headers: usize,
    /// Largest frame payload a peer may declare, in bytes. Default 16 MiB. Larger frames are
    /// refused from their header (close 1009) before any payload is buffered.
    pub max_frame_len: u64,
    /// Largest message (all fragments), in bytes. Default 16 MiB (Autobahn's largest case).
    /// Bounds the assembly buffer of a fragmented message; more closes with 1009.
    pub max_message_len: u64,
    /// How long a client has to complete its opening handshake. Default 10 s. A client that
    /// trickles its request (slowloris) is dropped when it passes.
    pub handshake_timeout: Duration,
    /// After this long without hearing from a peer, the server pings it. Default 30 s; `None`
    /// turns keepalive off. Finds dead peers behind NATs and load balancers.
    pub ping_interval: Option<Duration>,
    /// How long after a keepalive ping the peer has to show any sign of life (any frame) before
    /// the connection is closed (code 1006 reported). Default 30 s.
    pub pong_timeout: Duration,
    /// After the server sends a close frame, how long it waits for the peer's close before
    /// dropping the TCP connection. Default 2 s.
    pub close_timeout: Duration,
    /// Outgoing backlog, in bytes, above which the server stops reading from the connection
    /// (so a peer that does not read cannot make it buffer more replies) and after which
    /// `on_drain` fires once it is written out. Default 1 MiB.
    pub backpressure_len: usize,
    /// Hard cap on a connection's outgoing backlog, in bytes. Default 40 MiB (two largest
    /// messages and their headers). A send past it follows [`Config::backpressure_policy`].
    pub max_buffered_len: usize,
    /// What happens past [`Config::max_buffered_len`]. Default [`BackpressurePolicy::Close`].
    pub backpressure_policy: BackpressurePolicy,
    /// Most connections per worker, handshakes included. Default 100,000. Excess connections
    /// get `503 Service Unavailable` and are closed.
    pub max_connections_per_worker: usize,
    /// Listen backlog of each worker's socket. Default 1024.
    pub backlog: i32,
    /// Size of each worker's receive buffer, in bytes, shared by all its connections (only
    /// leftovers of partial frames are kept per connection). Default 64 KiB.
    pub read_buffer_len: usize,
    /// Most connections accepted per listener wake-up, so a connection storm cannot starve the
    /// open connections. Default 64.
    pub accepts_per_wakeup: usize,
    /// Most `read` calls per connection per loop iteration (fairness between connections).
    /// Default 16.
    pub reads_per_wakeup: usize,
    /// After accept fails with EMFILE/ENFILE (out of file descriptors), how long the listener
    /// is left alone before accepting again (sooner if a connection closes). Default 100 ms.
    /// Keeps the worker from spinning on a listener it cannot serve.
    pub accept_backoff: Duration,
    /// Whether pings are answered with a pong automatically. Default true.
    pub auto_pong: bool,
    /// How long `shutdown` waits for closing connections to finish before dropping them.
    /// Default 5 s.
    pub shutdown_timeout: Duration,
    /// Resolution of each worker's timer wheel: protocol deadlines, application timers
    /// ([`Ws::set_timer`](crate::Ws::set_timer)) and the tick are rounded up to it. Default
    /// 5 ms (between 1 ms and 1 s). A worker with no timers due does not wake up for them.
    pub timer_tick: Duration,
    /// How often [`Handler::on_tick`](crate::Handler::on_tick) runs on every worker (game
    /// loops, periodic state pushes). Default `None` (never). Missed ticks are skipped, not
    /// bunched; the cadence does not drift.
    pub tick_interval: Option<Duration>,
    /// Commands (sends, closes, publishes from a [`Remote`](crate::Remote)) that may wait in
    /// each worker's queue. Default 65,536. Bounds the memory a fast producer can pin when a
    /// worker falls behind; past it, sends fail with
    /// [`SendError::QueueFull`](crate::SendError::QueueFull) and are counted.
    pub remote_queue_len: usize,
    /// permessage-deflate (RFC 7692): whether it is accepted and with which parameters.
    /// Default: off ([`DeflateConfig::default`]), so memory and CPU per connection stay as
    /// they are unless the application asks for compression. With it on, a connection that
    /// negotiated context takeover holds its own compressor (about 312 KiB at 15 window bits)
    /// and decompressor (about 47 KiB); without context takeover in a direction, that state
    /// is the worker's, shared by its connections
    /// ([`DeflateConfig::server_no_context_takeover`] and
    /// [`DeflateConfig::client_no_context_takeover`] choose it for every connection).
    pub deflate: DeflateConfig,
    /// Most topics one connection may be subscribed to. Default 256. Bounds what a client can
    /// make the server hold when the application subscribes on its request.
    pub max_subscriptions_per_connection: usize,
    /// Answer `GET` on this path, on the WebSocket port itself, with every metric in the
    /// Prometheus text format (a request without `Upgrade`). Default `None`: off, because the
    /// figures (connection counts, traffic, error causes) are nobody's business on a public
    /// port; turn it on for a port only operators reach, or use [`Config::metrics_addr`].
    /// The answer is built from counters the workers keep anyway; serving it costs the worker
    /// that accepted the scrape a few tens of microseconds.
    pub metrics_path: Option<String>,
    /// Serve `GET /metrics` on this separate admin address, from a thread of its own (no
    /// worker is involved). Default `None`: off.
    pub metrics_addr: Option<SocketAddr>,
    /// Write every metric to InfluxDB every [`InfluxConfig::interval`], from a thread of its
    /// own with a bounded queue and back-off: an unreachable InfluxDB costs bounded memory and
    /// never stalls a worker. Default `None`: off.
    pub influx: Option<InfluxConfig>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_head_len: 8 * 1024,
            max_headers: 64,
            max_frame_len: 16 << 20,
            max_message_len: 16 << 20,
            handshake_timeout: Duration::from_secs(10),
            ping_interval: Some(Duration::from_secs(30)),
            pong_timeout: Duration::from_secs(30),
            close_timeout: Duration::from_secs(2),
            backpressure_len: 1 << 20,
            max_buffered_len: 40 << 20,
            backpressure_policy: BackpressurePolicy::Close,
            max_connections_per_worker: 100_000,
            backlog: 1024,
            read_buffer_len: 64 * 1024,
            accepts_per_wakeup: 64,
            reads_per_wakeup: 16,
            accept_backoff: Duration::from_millis(100),
            auto_pong: true,
            shutdown_timeout: Duration::from_secs(5),
            timer_tick: Duration::from_millis(5),
            tick_interval: None,
            remote_queue_len: 65_536,
            max_subscriptions_per_connection: 256,
            deflate: DeflateConfig::default(),
            metrics_path: None,
            metrics_addr: None,
            influx: None,
        }
    }
}
