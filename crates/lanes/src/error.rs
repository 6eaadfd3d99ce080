//! The errors of the public API: starting a server, and sending to connections.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use crate::config::ConfigError;

/// A problem starting the server.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A listening socket could not be bound. An error of kind
    /// [`AddrInUse`](io::ErrorKind::AddrInUse) when another socket already listens on the
    /// port (see [`SocketTuning::share_port`](crate::config::SocketTuning::share_port)).
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// A requested core does not exist (or is not available to this process).
    CoreUnavailable {
        /// The core id.
        core: usize,
    },
    /// A worker thread could not be pinned to its core.
    Pin {
        /// The core id.
        core: usize,
    },
    /// No cores were chosen (an empty list or a count of 0).
    NoCores,
    /// An event loop or thread could not be created.
    Io(io::Error),
    /// A [`Config`](crate::Config) field is outside its allowed range.
    Config(ConfigError),
    /// A worker thread ended with a panic while the server was running. Handler panics are
    /// caught per connection, so this is a bug (in lanes, or a panic lanes could not contain,
    /// such as one in a panic's own drop or in a log subscriber). The other workers were shut
    /// down gracefully.
    WorkerPanicked {
        /// The worker's index.
        index: usize,
    },
    /// A worker's event loop failed (its `epoll_wait` returned an error); the other workers
    /// were shut down gracefully.
    WorkerFailed {
        /// The worker's index.
        index: usize,
        /// The error.
        source: io::Error,
    },
    /// [`ServerHandle::reload_tls`](crate::ServerHandle::reload_tls) on a server started
    /// without TLS (a port is plain or TLS for its whole life).
    NotTls,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            Error::CoreUnavailable { core } => write!(f, "core {core} is not available"),
            Error::Pin { core } => write!(f, "cannot pin a worker to core {core}"),
            Error::NoCores => f.write_str("no cores chosen"),
            Error::Io(e) => write!(f, "cannot start a worker: {e}"),
            Error::Config(e) => write!(f, "invalid configuration: {e}"),
            Error::WorkerPanicked { index } => write!(f, "worker {index} panicked"),
            Error::WorkerFailed { index, source } => write!(f, "worker {index} failed: {source}"),
            Error::NotTls => f.write_str("the server was started without TLS"),
        }
    }
}

impl std::error::Error for Error {}

/// Why a [`Remote`](crate::Remote) could not queue a send, close or publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// The connection has ended (or the id never named one): its slot is free or holds a
    /// later connection.
    Gone,
    /// The connection moved to another worker ([`Ws::move_to`](crate::Ws::move_to)): sends to
    /// its old id do not follow it. Its new id is the one `on_arrive` sees.
    Moved,
    /// The server is shutting down or has stopped.
    ShutDown,
    /// The worker's command queue is full ([`Limits::remote_queue_len`](crate::config::Limits::remote_queue_len)); the
    /// command was dropped and counted in [`WorkerStats::queue_full`](crate::WorkerStats).
    /// For a publish or broadcast, the workers with room got the message.
    QueueFull,
    /// The worker that owned the connection ended while the server was running (a bug, also
    /// reported by [`Server::run`](crate::Server::run) and
    /// [`ServerHandle::failed_workers`](crate::ServerHandle::failed_workers)); its connections
    /// are gone.
    WorkerDied,
    /// No worker has that index (see [`Remote::worker_count`](crate::Remote::worker_count)).
    NoSuchWorker,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::Gone => "the connection is gone",
            SendError::Moved => "the connection moved to another worker (it has a new id)",
            SendError::ShutDown => "the server is shutting down",
            SendError::QueueFull => "the worker's command queue is full",
            SendError::WorkerDied => "the connection's worker has died",
            SendError::NoSuchWorker => "no worker has that index",
        })
    }
}

impl std::error::Error for SendError {}
