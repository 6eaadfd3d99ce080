//! Limits, timeouts and tuning, in groups. Every field documents its default, its allowed range
//! and what it protects against; [`Server::start`](crate::Server::start) checks every range and
//! refuses a configuration outside them with [`ConfigError`], naming the field (nothing is
//! clamped silently).
//!
//! The structs are `#[non_exhaustive]`: start from `Default` and set fields.
//!
//! ```
//! use std::time::Duration;
//! let mut config = lanes::Config::default();
//! config.limits.max_message_len = 1 << 20;
//! config.timeouts.ping_interval = Some(Duration::from_secs(15));
//! config.backpressure.policy = lanes::BackpressurePolicy::Drop;
//! assert!(config.validate().is_ok());
//! config.socket.reads_per_wakeup = 0;
//! assert_eq!(config.validate().unwrap_err().field(), "socket.reads_per_wakeup");
//! ```

#[cfg(feature = "bridge")]
mod broker;
mod check;
#[cfg(feature = "tls")]
mod client_tls;
#[cfg(feature = "tls")]
mod tls;

#[cfg(feature = "bridge")]
pub use broker::{BrokerConfig, BrokerKind};
pub use check::ConfigError;
#[cfg(feature = "tls")]
pub use client_tls::ClientTls;
#[cfg(feature = "tls")]
pub use tls::{TlsConfig, TlsConfigBuilder, TlsError, TlsVersions};

#[cfg(feature = "metrics")]
use std::net::SocketAddr;
use std::time::Duration;

#[cfg(feature = "metrics")]
pub use lanes_metrics::InfluxConfig;

pub use lanes_proto::deflate::DeflateConfig;

/// What to do with a connection whose outgoing backlog passes [`Backpressure::max_len`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackpressurePolicy {
    /// Close the connection with 1008 (policy violation). Default: memory stays bounded. The
    /// close frame is queued behind the backlog, so a peer that reads again within
    /// [`Timeouts::close`] sees it; a peer still stalled then sees the connection dropped
    /// without it.
    Close,
    /// Drop the message that would pass the cap (the send reports
    /// [`SendStatus::Dropped`](crate::SendStatus::Dropped)) and keep the connection.
    Drop,
}

/// Limits and timeouts of a server. `Config::default()` gives the documented defaults.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Sizes and counts a peer or a producer could otherwise grow without bound.
    pub limits: Limits,
    /// Deadlines of the handshake, keepalive, close and shutdown.
    pub timeouts: Timeouts,
    /// The outgoing backlog of one connection: when reading pauses, and the hard cap.
    pub backpressure: Backpressure,
    /// Listening sockets and the fairness of each worker's loop.
    pub socket: SocketTuning,
    /// The timer wheel and the application's per-worker tick.
    pub timers: Timers,
    /// What a worker may hold for partial messages and backlogs, and how memory goes back to
    /// the system.
    pub memory: MemoryConfig,
    /// permessage-deflate (RFC 7692): whether it is accepted and with which parameters.
    /// Default: off ([`DeflateConfig::default`]), so memory and CPU per connection stay as
    /// they are unless the application asks for compression. With it on, a connection that
    /// negotiated context takeover holds its own compressor (about 312 KiB at 15 window bits)
    /// and decompressor (about 47 KiB); without context takeover in a direction, that state
    /// is the worker's, shared by its connections
    /// ([`DeflateConfig::server_no_context_takeover`] and
    /// [`DeflateConfig::client_no_context_takeover`] choose it for every connection).
    /// Without the `deflate` feature, compression is never negotiated.
    pub deflate: DeflateConfig,
    /// Exporting the metrics.
    #[cfg(feature = "metrics")]
    pub metrics: MetricsConfig,
    /// Whether pings are answered with a pong automatically. Default true.
    pub auto_pong: bool,
    /// TLS on the port (`wss://`): every connection speaks TLS, and a plain request is dropped
    /// (counted under [`TlsFailure::PlainHttp`](crate::TlsFailure::PlainHttp)). Default:
    /// `None`, plain `ws://`. The handshake timeout ([`Timeouts::handshake`]) covers the TLS
    /// handshake and the WebSocket one together.
    #[cfg(feature = "tls")]
    pub tls: Option<TlsConfig>,
    /// The broker (NATS or Redis) that shares this node's topics with other nodes' (features
    /// `nats` and `redis`; see [`crate::bridge`]). Default: `None`, topics are this node's
    /// alone.
    #[cfg(feature = "bridge")]
    pub broker: Option<BrokerConfig>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            limits: Limits::default(),
            timeouts: Timeouts::default(),
            backpressure: Backpressure::default(),
            socket: SocketTuning::default(),
            timers: Timers::default(),
            memory: MemoryConfig::default(),
            deflate: DeflateConfig::default(),
            #[cfg(feature = "metrics")]
            metrics: MetricsConfig::default(),
            auto_pong: true,
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "bridge")]
            broker: None,
        }
    }
}

/// Sizes and counts. Each bounds memory that a peer, or a producer on another thread, could
/// otherwise make a worker hold.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Limits {
    /// Longest HTTP request head, in bytes. Default 8 KiB; 1 KiB to 1 MiB. Bounds what a
    /// client can make us buffer before the handshake completes; more gets 431.
    pub max_head_len: usize,
    /// Most header fields in a request head. Default 64; 1 to 1,024. More gets 431.
    pub max_headers: usize,
    /// Largest frame payload a peer may declare, in bytes. Default 16 MiB; 125 bytes to
    /// 2 GiB. Larger frames are refused from their header (close 1009) before any payload is
    /// buffered.
    pub max_frame_len: u64,
    /// Largest message (all fragments, and after inflating), in bytes. Default 16 MiB
    /// (Autobahn's largest case); 1 byte to 2 GiB. More closes with 1009.
    pub max_message_len: u64,
    /// Most connections per worker, handshakes included. Default 100,000; 1 to 16,777,216.
    /// Excess connections get `503 Service Unavailable` and are closed.
    pub max_connections_per_worker: usize,
    /// Most topics one connection may be subscribed to. Default 256; 0 to 1,048,576. Bounds
    /// what a client can make the server hold when the application subscribes on its request.
    pub max_subscriptions_per_connection: usize,
    /// Commands (sends, closes, publishes from a [`Remote`](crate::Remote)) that may wait in
    /// each worker's queue. Default 65,536; 1 to 16,777,216. Bounds the memory a fast producer
    /// can pin when a worker falls behind; past it, sends fail with
    /// [`SendError::QueueFull`](crate::SendError::QueueFull) and are counted.
    pub remote_queue_len: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_head_len: 8 * 1024,
            max_headers: 64,
            max_frame_len: 16 << 20,
            max_message_len: 16 << 20,
            max_connections_per_worker: 100_000,
            max_subscriptions_per_connection: 256,
            remote_queue_len: 65_536,
        }
    }
}

/// Deadlines.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Timeouts {
    /// How long a client has to complete its opening handshake. Default 10 s; 1 ms to a
    /// year. A client that trickles its request (slowloris) is dropped when it passes.
    pub handshake: Duration,
    /// After this long in which a peer completed no message, ping, pong or close, the server
    /// pings it (stray bytes do not count). Default 30 s (1 ms to an hour); `None` turns
    /// keepalive off. Finds dead peers behind NATs and load balancers.
    pub ping_interval: Option<Duration>,
    /// How long after a keepalive ping the peer has to complete a message, ping, pong or close
    /// before the connection is closed (code 1006 reported). Default 30 s; 1 ms to an hour.
    pub pong: Duration,
    /// How long a peer has to finish a frame, or a fragmented message, once its first byte
    /// arrived; past it the connection is closed with 1008 (policy violation) and counted as
    /// a timeout. Bounds how long a peer that trickles (a header byte at a time, or most of a
    /// large frame and then a byte now and then) can hold a connection and its partial
    /// message's buffer; keepalive waits meanwhile. Default 30 s (a 16 MiB message at
    /// 4.5 Mbit/s); 1 ms to an hour.
    pub message: Duration,
    /// After the server sends a close frame, how long it waits for the peer's close before
    /// dropping the TCP connection. Default 2 s; 0 to an hour.
    pub close: Duration,
    /// How long `shutdown` waits for closing connections to finish before dropping them.
    /// Default 5 s; 0 to a year.
    pub shutdown: Duration,
    /// How long an upgrade `on_upgrade` deferred ([`Request::defer`](crate::Request::defer))
    /// waits for the application's answer; past it the peer is answered 503 and the
    /// connection closed. Default 5 s; 1 ms to an hour.
    pub deferred_upgrade: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            handshake: Duration::from_secs(10),
            ping_interval: Some(Duration::from_secs(30)),
            pong: Duration::from_secs(30),
            message: Duration::from_secs(30),
            close: Duration::from_secs(2),
            shutdown: Duration::from_secs(5),
            deferred_upgrade: Duration::from_secs(5),
        }
    }
}

/// One connection's outgoing backlog.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Backpressure {
    /// Outgoing backlog, in bytes, above which the server stops reading from the connection
    /// (so a peer that does not read cannot make it buffer more replies) and after which
    /// `on_drain` fires once it is written out. Default 1 MiB; 1 byte to `max_len`.
    pub pause_len: usize,
    /// Hard cap on a connection's outgoing backlog, in bytes. Default 40 MiB (two largest
    /// messages and their headers); `pause_len` to 1 TiB. A send past it follows `policy`.
    pub max_len: usize,
    /// What happens past `max_len`, and past `max_age`. Default [`BackpressurePolicy::Close`].
    pub policy: BackpressurePolicy,
    /// The longest a connection's output may wait unwritten: measured from the moment a write
    /// last left part of its backlog unsent (the socket's send buffer was full), checked on
    /// the timer wheel. Past it, `policy` applies: [`BackpressurePolicy::Close`] drops the
    /// connection at once (counted as a slow consumer: a peer that does not read cannot be
    /// sent a close frame); [`BackpressurePolicy::Drop`] drops every data message sent or
    /// published to it until its backlog is written out (counted in `messages_dropped`).
    /// A market-data server uses it so that a stalled client is cut off (or skipped) within a
    /// known time, instead of getting old prices once it reads again; pair it with a small
    /// [`SocketTuning::send_buffer_len`], since the kernel's buffer fills before lanes' own
    /// backlog starts to age. Default `None` (no age limit); 1 ms to an hour.
    pub max_age: Option<Duration>,
}

impl Default for Backpressure {
    fn default() -> Backpressure {
        Backpressure {
            pause_len: 1 << 20,
            max_len: 40 << 20,
            policy: BackpressurePolicy::Close,
            max_age: None,
        }
    }
}

/// Listening sockets and the fairness of each worker's loop.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SocketTuning {
    /// Listen backlog of each worker's socket. Default 1024; 1 to 65,535.
    pub backlog: i32,
    /// Size of each worker's receive buffer, in bytes, shared by all its connections (only
    /// leftovers of partial frames are kept per connection). Default 64 KiB; 1 KiB to 16 MiB.
    pub read_buffer_len: usize,
    /// Most connections accepted per listener wake-up, so a connection storm cannot starve the
    /// open connections. Default 64; 1 to 65,536.
    pub accepts_per_wakeup: usize,
    /// Most `read` calls per connection per loop iteration (fairness between connections).
    /// Default 16; 1 to 65,536.
    pub reads_per_wakeup: usize,
    /// After accept fails with EMFILE/ENFILE (out of file descriptors), how long the listener
    /// is left alone before accepting again (sooner if a connection closes). Default 100 ms;
    /// 1 ms to an hour. Keeps the worker from spinning on a listener it cannot serve. The
    /// warning that accepting is paused, and the line that it works again, come at most once a
    /// minute per worker (the next warning says how many pauses went unlogged), however often
    /// clients make it happen.
    pub accept_backoff: Duration,
    /// `SO_SNDBUF` of every accepted socket, in bytes (the kernel doubles it for its own
    /// bookkeeping). Default `None`: the kernel's autotuning, which grows a busy socket's
    /// buffer up to `net.ipv4.tcp_wmem`'s maximum (4 MiB on most systems), where output to a
    /// stalled client piles up unseen by lanes' backpressure for a long time (2.8 MB: 31 s of
    /// 1,000 quotes/s, measured). A latency-sensitive fan-out sets it small (e.g. 64 KiB), so
    /// backpressure and [`Backpressure::max_age`] see a stalled client within a known time;
    /// throughput to a fast client on a long path needs it large. 4 KiB to 64 MiB.
    pub send_buffer_len: Option<usize>,
    /// Whether the server may share its port with other listening sockets that have
    /// `SO_REUSEPORT` set: other processes of the same user, or other [`Server`]s in this
    /// process. Default false: [`Server::start`] fails with [`Error::Bind`] (an
    /// [`io::ErrorKind::AddrInUse`] error) when a socket already listens on the port, whether
    /// it set `SO_REUSEPORT` or not. A port in `TIME_WAIT` (connections of a server that just
    /// stopped) does not count. Port 0 always gets a port of its own.
    ///
    /// Sharing means the kernel spreads new connections over every listener on the port, ours
    /// and theirs, by a hash of the client's address and port: with two servers, each gets
    /// about half of the new clients. It is what a restart without downtime needs (start the
    /// new server, then shut the old one down). The risks: any process of the same user can
    /// then take a share of the clients just by listening on the port, a forgotten instance
    /// (an old build, a test) quietly serves its share, and connections waiting in a
    /// listener's backlog when it closes are reset, not moved to the others.
    ///
    /// The check is the starting server's, made once, before its workers' listeners are
    /// bound; a server cannot refuse company that comes later. A socket that starts listening
    /// on the port with `SO_REUSEPORT` in the moment between the check and the binding
    /// (another program starting at the same instant), or at any time afterwards without a
    /// check of its own (another program, or a lanes server with `share_port` set), shares
    /// the port. A lanes server without `share_port` started later makes the check and fails.
    ///
    /// [`Server`]: crate::Server
    /// [`Server::start`]: crate::Server::start
    /// [`Error::Bind`]: crate::Error::Bind
    /// [`io::ErrorKind::AddrInUse`]: std::io::ErrorKind::AddrInUse
    pub share_port: bool,
    /// Busy polling: after a loop iteration that handled events, how long a worker keeps
    /// polling without blocking (non-blocking `epoll_wait`, then the reads it reports) before
    /// it blocks in `epoll_wait` again. Default `None`: the worker blocks as soon as it has
    /// nothing to do. 1 µs to 1 s.
    ///
    /// What it buys: a message that arrives within the window is picked up without the
    /// kernel waking a sleeping thread (a scheduler wake-up and, on an idle core, the exit
    /// from a sleep state), which takes tens of microseconds off each round trip at moderate
    /// rates. What it costs: the worker's core runs at 100% for the window after every event,
    /// so under steady traffic spaced closer than the window the core never sleeps, and a
    /// core shared with other work (another worker, the load generator, the application)
    /// loses that time to the spin. Use it only on cores reserved for the server. See the
    /// README's latency table (`scripts/latency.sh`) for measured figures.
    pub busy_poll: Option<Duration>,
}

impl Default for SocketTuning {
    fn default() -> SocketTuning {
        SocketTuning {
            backlog: 1024,
            read_buffer_len: 64 * 1024,
            accepts_per_wakeup: 64,
            reads_per_wakeup: 16,
            accept_backoff: Duration::from_millis(100),
            send_buffer_len: None,
            share_port: false,
            busy_poll: None,
        }
    }
}

/// A worker's memory for what peers send and what they do not read, and the allocator setting
/// that gives it back to the system.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MemoryConfig {
    /// Most bytes one worker holds, all its connections together, for partial messages (a
    /// frame or fragmented message still arriving, what was read before reading paused) and
    /// outgoing backlogs. Each connection is bounded on its own (`limits.max_message_len`,
    /// `backpressure.max_len`), but many peers that each stay just under their bounds could
    /// still grow the process without bound; past this budget the worker closes the
    /// connections holding the most until it is back under it: a partial message's sender
    /// with 1009 (message too big), a backlog's reader with 1008 (policy violation, without a
    /// close frame: it is not reading), counted as cause `memory_budget`. Default 256 MiB (16
    /// messages of the default 16 MiB limit in flight per worker); 1 MiB to 1 TiB.
    pub worker_budget: usize,
    /// glibc's `M_MMAP_THRESHOLD`, set once at start (process-wide): allocations at least
    /// this large are served by `mmap` and go back to the system as soon as they are freed.
    /// Without it glibc raises the threshold to the size of the largest block freed (up to
    /// 32 MiB), so after one burst of 16 MiB messages, later ones come from the heap and stay
    /// there: measured with `scripts/hostile_memory.py` (20 clients that send 2 × 16 MiB and
    /// never read, 2 workers, 3 rounds), the server kept 402 MiB 10 s after the second round
    /// left, against 14 MiB with 1 MiB here (peak 520 against 364 MiB). Default 1 MiB;
    /// 4 KiB to 32 MiB, or `None` to leave malloc alone (no effect with another allocator,
    /// or off glibc).
    pub malloc_mmap_threshold: Option<usize>,
}

impl Default for MemoryConfig {
    fn default() -> MemoryConfig {
        MemoryConfig {
            worker_budget: 256 << 20,
            malloc_mmap_threshold: Some(1 << 20),
        }
    }
}

/// The timer wheel and the per-worker tick.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Timers {
    /// Resolution of each worker's timer wheel: protocol deadlines, application timers
    /// ([`Ws::set_timer`](crate::Ws::set_timer)) and the tick are rounded up to it. Default
    /// 5 ms; 1 ms to 1 s. A worker with no timers due does not wake up for them.
    pub resolution: Duration,
    /// How often [`Handler::on_tick`](crate::Handler::on_tick) runs on every worker (game
    /// loops, periodic state pushes). Default `None` (never); `resolution` to a year. Missed
    /// ticks are skipped, not bunched; the cadence does not drift.
    pub tick_interval: Option<Duration>,
}

impl Default for Timers {
    fn default() -> Timers {
        Timers {
            resolution: Duration::from_millis(5),
            tick_interval: None,
        }
    }
}

/// Exporting the metrics (the `metrics` feature). All off by default.
#[cfg(feature = "metrics")]
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct MetricsConfig {
    /// Answer `GET` on this path, on the WebSocket port itself, with every metric in the
    /// Prometheus text format (a request without `Upgrade`). Default `None`: off, because the
    /// figures (connection counts, traffic, error causes) are nobody's business on a public
    /// port; turn it on for a port only operators reach, or use [`MetricsConfig::addr`].
    /// The answer is built from counters the workers keep anyway; serving it costs the worker
    /// that accepted the scrape a few tens of microseconds. Must start with `/`.
    pub path: Option<String>,
    /// Serve `GET /metrics` on this separate admin address, from a thread of its own (no
    /// worker is involved). Default `None`: off.
    pub addr: Option<SocketAddr>,
    /// Write every metric to InfluxDB every [`InfluxConfig::interval`], from a thread of its
    /// own with a bounded queue and back-off: an unreachable InfluxDB costs bounded memory and
    /// never stalls a worker. Default `None`: off.
    pub influx: Option<InfluxConfig>,
}
