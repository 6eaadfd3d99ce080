//! The cross-thread hub: what every worker exposes to other threads (its command queue, waker,
//! live-id table and counters), the commands they queue, and the state the handle and the
//! workers share.
//!
//! Each worker has one bounded crossbeam channel and one `mio::Waker`. A sender queues its
//! command and wakes the worker only if nobody has since the worker last looked (one flag per
//! worker), so a burst of sends costs one wake-up; the worker drains its whole queue per
//! wake-up.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use lanes_metrics::{Registry, Snapshot};
use lanes_proto::CloseCode;
use mio::Waker;

use crate::connect::DialRequest;
use crate::error::SendError;
use crate::handoff::{DeferredAnswer, Handoff, MovedConn};
use crate::id::ConnId;
use crate::live::LiveTable;
use crate::message::WorkerMessage;
use crate::published::Published;
use crate::stats::Counters;

/// A command for a worker from elsewhere.
#[derive(Debug)]
pub(crate) enum Command {
    /// Queue an encoded frame on one connection.
    Send { id: ConnId, message: Published },
    /// Start the close handshake on one connection.
    Close {
        id: ConnId,
        code: CloseCode,
        reason: Box<str>,
    },
    /// Queue an encoded frame on every subscriber of a topic.
    Publish { topic: Arc<str>, message: Published },
    /// Queue an encoded frame on every open connection.
    Broadcast { message: Published },
    /// An application value for the worker's handler.
    Message(WorkerMessage),
    /// A connection placed on this worker by the worker that accepted it.
    Adopt(Box<Handoff>),
    /// An open connection a callback on another worker moved here.
    Arrive(Box<MovedConn>),
    /// The application's answer to an upgrade deferred on this worker.
    Answer {
        id: ConnId,
        answer: Box<DeferredAnswer>,
    },
    /// An outbound connection to make ([`Remote::connect`](crate::Remote::connect)).
    Connect(Box<DialRequest>),
    /// The resolver's answer for the dial in this slot and generation.
    Resolved {
        dial: (u32, u32),
        resolved: Result<Vec<std::net::SocketAddr>, String>,
    },
}

/// One worker as others see it.
pub(crate) struct Link {
    tx: Sender<Command>,
    waker: Waker,
    /// Set by the first sender after the worker last drained its queue; that sender wakes it.
    notified: AtomicBool,
    /// The worker's thread ended while the server was running (a bug): nothing is served.
    dead: AtomicBool,
    pub(crate) live: Arc<LiveTable>,
    pub(crate) counters: Arc<Counters>,
}

impl Link {
    /// A link and the receiving end of its queue.
    pub(crate) fn new(
        waker: Waker,
        queue_len: usize,
        max_connections: usize,
        core: Option<usize>,
    ) -> (Link, Receiver<Command>) {
        let (tx, rx) = crossbeam_channel::bounded(queue_len.max(1));
        let link = Link {
            tx,
            waker,
            notified: AtomicBool::new(false),
            dead: AtomicBool::new(false),
            live: Arc::new(LiveTable::new(max_connections)),
            counters: Arc::new(Counters::new(core)),
        };
        (link, rx)
    }

    /// Called by the worker before it drains its queue: the next sender must wake it again.
    pub(crate) fn rearm(&self) {
        self.notified.store(false, Ordering::Release);
    }

    /// Commands waiting in the queue.
    pub(crate) fn queue_len(&self) -> usize {
        self.tx.len()
    }

    /// The worker's thread has ended unasked (called by its exit guard, on that thread): its
    /// connections are gone with it, so none is reported open or counted any more.
    pub(crate) fn mark_dead(&self) {
        self.dead.store(true, Ordering::Release);
        self.live.clear();
        self.counters.connections.store(0, Ordering::Relaxed);
    }

    /// Whether the worker's thread ended while the server was running.
    pub(crate) fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }

    /// Wakes the worker (shutdown).
    pub(crate) fn wake(&self) {
        let _ = self.waker.wake();
    }

    pub(crate) fn push(&self, command: Command) -> Result<(), SendError> {
        self.push_or_return(command).map_err(|(error, _)| error)
    }

    /// [`push`](Self::push), giving the command back when it was not queued.
    pub(crate) fn push_or_return(&self, command: Command) -> Result<(), (SendError, Command)> {
        match self.tx.try_send(command) {
            Ok(()) => {
                if !self.notified.swap(true, Ordering::AcqRel) {
                    let _ = self.waker.wake();
                }
                Ok(())
            }
            Err(TrySendError::Full(command)) => {
                self.counters
                    .queue_full
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Err((SendError::QueueFull, command))
            }
            // The queue outlives a worker only after its thread ended.
            Err(TrySendError::Disconnected(command)) if self.is_dead() => {
                Err((SendError::WorkerDied, command))
            }
            Err(TrySendError::Disconnected(command)) => Err((SendError::ShutDown, command)),
        }
    }
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link").finish_non_exhaustive()
    }
}

/// State shared between the handle and the workers (not on the hot path).
#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) shutdown: AtomicBool,
    /// The application's own metrics.
    pub(crate) registry: Registry,
    /// The InfluxDB reporter's own figures, once one runs.
    pub(crate) reporter_stats: OnceLock<Box<dyn Fn() -> Snapshot + Send + Sync>>,
    /// The TLS configuration for new connections (never set on a plain port).
    #[cfg(feature = "tls")]
    pub(crate) tls: crate::tls::TlsCell,
    /// The broker bridge, when [`Config::broker`](crate::Config::broker) is set (before any
    /// worker starts).
    #[cfg(feature = "bridge")]
    pub(crate) bridge: OnceLock<crate::bridge::link::BridgeLink>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("shutdown", &self.shutdown)
            .finish_non_exhaustive()
    }
}
