//! # lanes
//!
//! A thread-per-core WebSocket server runtime. Every worker thread is pinned to one core, runs
//! its own `mio` event loop and owns its own `SO_REUSEPORT` listener; the kernel spreads new
//! connections over the listeners and a connection stays on its worker for its whole life, so
//! the hot path takes no locks. The protocol itself (handshake, frames, close rules) is
//! `lanes-proto`'s; this crate does the I/O.
//!
//! - Implement [`Handler`]: `on_upgrade` decides, `on_message` gets [`Message::Text`] or
//!   [`Message::Binary`] borrowed straight from the receive buffer when it arrived whole,
//!   [`Ws`] sends. One handler per worker, built on the worker's thread: no `Send` needed.
//! - Start a [`Server`] with a handler factory; [`ServerHandle::shutdown`], [`Remote::shutdown`]
//!   or SIGINT/SIGTERM (under [`Server::run`]) stop it gracefully. A port another socket
//!   already listens on is refused at start, unless
//!   [`SocketTuning::share_port`](config::SocketTuning::share_port) asks to share it.
//! - Limits and timeouts live in [`Config`], each with its default and the reason for it.
//!
//! - Reach connections from anywhere with a [`Remote`] (from [`ServerHandle::remote`] or
//!   [`WorkerInfo::remote`]): send to a connection by [`ConnId`], close it, publish to a topic
//!   ([`Ws::subscribe`]), broadcast. Commands cross cores through one bounded queue and one
//!   waker per worker; a handler's publish to its own worker's subscribers takes no queue.
//! - Shard the application's state by worker, with no lock: [`worker_for`] names the worker that
//!   owns a key, [`Remote::send_to_worker`] sends it a value of the application's
//!   ([`WorkerMessage`]), handled on that worker's thread by [`Handler::on_worker_message`].
//! - Timers: [`Ws::set_timer`] for one-shot timers per connection, [`Handler::on_tick`] for a
//!   per-worker tick ([`Timers::tick_interval`](config::Timers::tick_interval)).
//!
//! - permessage-deflate (RFC 7692) when [`Config::deflate`] turns it on, with context takeover
//!   or with compressor state shared by a worker's connections.
//! - `wss://` when `Config::tls` holds a [`TlsConfig`]: TLS 1.2 and 1.3 with rustls on each
//!   worker's own loop, certificates by SNI, session tickets, reload at run time
//!   ([`ServerHandle::reload_tls`]).
//!
//! Features (all on by default):
//! - `deflate`: permessage-deflate (RFC 7692), with zlib-rs. Without it nothing is negotiated,
//!   and a [`Config`] with `deflate.enabled` is refused at start.
//! - `metrics`: the exporters (`config::MetricsConfig`: `/metrics` on the WebSocket port or an
//!   admin address, the InfluxDB reporter and its HTTP client). The counters,
//!   [`ServerHandle::stats`] and [`ServerHandle::metrics`] are there either way.
//! - `tls`: `wss://` (rustls with the ring provider; `Config::tls`, [`TlsConfig`]).
//!
//! Off by default:
//! - `nats`, `redis`: the broker bridge (`Config::broker`, the `bridge` module): topics shared
//!   by every node that uses the same NATS or Redis server, on a thread of the bridge's own.
//!
//! Every accepted socket gets `TCP_NODELAY`: each write is a whole batch of frames (one `write`
//! per connection per loop iteration), so Nagle's algorithm would only add latency.
//!
//! Also: outbound connections on the same loops ([`Remote::connect`], [`Connect`]), and
//! connections placed on, or moved to, a chosen worker ([`Accept::on_worker`],
//! [`Ws::move_to`]).
//!
//! What it does not do: WebSockets over HTTP/2 (RFC 8441); replay of what a node missed while
//! its broker was away (core pub/sub keeps nothing). Linux only (SO_REUSEPORT spreading,
//! epoll).

mod answer;
#[cfg(feature = "bridge")]
pub mod bridge;
mod closed;
mod compress;
pub mod config;
mod conn;
mod connect;
mod context;
mod deferred;
mod dials;
mod error;
#[cfg(feature = "metrics")]
mod exporters;
mod exposition;
mod handler;
mod handoff;
mod hub;
mod id;
mod input;
mod latest;
mod listener;
mod live;
mod local;
mod memory;
mod message;
mod outbox;
mod peer;
mod placement;
mod pool;
mod published;
mod remote;
mod request;
mod resolver;
mod rng;
mod server;
mod socket_io;
mod stats;
mod supervisor;
mod table;
mod throttle;
mod timer;
#[cfg(feature = "tls")]
mod tls;
mod topic;
mod worker;
mod ws;

#[cfg(feature = "bridge")]
pub use bridge::BridgeStats;
pub use closed::Closed;
pub use config::{BackpressurePolicy, Config, ConfigError, DeflateConfig};
#[cfg(feature = "bridge")]
pub use config::{BrokerConfig, BrokerKind};
#[cfg(feature = "tls")]
pub use config::{ClientTls, TlsConfig, TlsConfigBuilder, TlsError, TlsVersions};
pub use connect::{Connect, ConnectError, ConnectFailure, Reconnect};

pub use answer::{Accept, HttpResponse, Upgrade};
pub use context::WorkerContext;
pub use deferred::{DeferError, PendingUpgrade};
pub use error::{Error, SendError};
pub use handler::{Handler, Message};
pub use id::ConnId;
pub use lanes_proto::CloseCode;
pub use message::WorkerMessage;
pub use outbox::SendStatus;
pub use placement::worker_for;
pub use remote::Remote;
pub use request::Request;
pub use server::{Cores, Server, ServerHandle, WorkerInfo};
pub use stats::{
    CloseCause, OPCODES, PROTOCOL_ERROR_CODES, REJECT_STATUSES, Stats, TlsFailure, WorkerStats,
};

/// The metrics crate: snapshots, the Prometheus and InfluxDB encoders, the registry.
#[doc(inline)]
pub use lanes_metrics as metrics;
pub use ws::{SubscribeStatus, Ws};

/// The README's Rust examples, compiled with the doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
