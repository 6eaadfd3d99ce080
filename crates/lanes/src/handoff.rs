//! A connection on its way to another worker: before it is open, an upgrade the handler placed
//! on another worker ([`Accept::on_worker`](crate::Accept::on_worker)) or a connection another
//! server accepted and handed to lanes ([`Remote::adopt`](crate::Remote::adopt)); once open, a
//! connection a callback moved ([`Ws::move_to`](crate::Ws::move_to)). The socket and
//! everything read from it or queued for it travel together, so the peer sees nothing of the
//! move.

use std::any::Any;
use std::fmt;
use std::net::SocketAddr;

use lanes_proto::session::{Receiver, Session};
use mio::net::TcpStream;

use crate::answer::HttpResponse;
use crate::id::ConnId;
use crate::input::Input;
use crate::outbox::Outbox;
use crate::placement::Placement;

/// What the accepting worker hands over.
pub(crate) struct Handoff {
    pub(crate) stream: TcpStream,
    pub(crate) peer: SocketAddr,
    /// Every byte read from the peer and not yet handled: the request head and whatever the
    /// peer sent right behind it (plaintext, on a TLS connection).
    pub(crate) bytes: Vec<u8>,
    /// The connection's TLS session, with any of its bytes not yet written or read.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<Box<crate::tls::TlsLayer>>,
    /// The handler's acceptance, to be answered by the new worker; `None` for an adopted
    /// connection, whose request the new worker answers as its own.
    pub(crate) accepted: Option<PlacedAccept>,
}

/// An acceptance on its way to the worker it places the connection on.
pub(crate) struct PlacedAccept {
    /// The application's state (a `Handler::State`).
    pub(crate) state: Box<dyn Any + Send>,
    pub(crate) subprotocol: Option<String>,
    pub(crate) headers: Vec<(String, String)>,
}

impl fmt::Debug for Handoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handoff")
            .field("peer", &self.peer)
            .field("bytes", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for PlacedAccept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlacedAccept")
            .field("subprotocol", &self.subprotocol)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

/// An open connection on its way to the worker a callback moved it to: everything the
/// connection is, but its slot.
pub(crate) struct MovedConn {
    pub(crate) stream: TcpStream,
    pub(crate) peer: SocketAddr,
    /// The application's state (a `Handler::State`).
    pub(crate) state: Box<dyn Any + Send>,
    pub(crate) session: Session,
    /// The receiving half, with any partial frame or message.
    pub(crate) receiver: Receiver,
    /// What is queued for the peer and not yet written, with the compression context.
    pub(crate) outbox: Outbox,
    /// Input read before a backpressure pause, not yet handled.
    pub(crate) input: Input,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<Box<crate::tls::TlsLayer>>,
    /// The topics it was subscribed to.
    pub(crate) topics: Vec<Box<str>>,
    /// Its id on the worker it left.
    pub(crate) from: ConnId,
}

impl fmt::Debug for MovedConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MovedConn")
            .field("peer", &self.peer)
            .field("from", &self.from)
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

/// A callback's request to move its connection, carried out once the callback returned.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MoveRequest {
    pub(crate) slot: usize,
    pub(crate) generation: u32,
    pub(crate) worker: usize,
    /// The state type the callback named, checked against the handler's.
    pub(crate) state_type: std::any::TypeId,
    /// Boxes the state for the journey (the named type is `Send`).
    pub(crate) erase: EraseMoved,
}

/// Boxes a moved connection's state as `Send` (`None` when it is not of the named type).
pub(crate) type EraseMoved = fn(Box<dyn Any>) -> Option<Box<dyn Any + Send>>;

/// [`MoveRequest::erase`] for state type `S`.
pub(crate) fn erase_moved<S: Send + 'static>(state: Box<dyn Any>) -> Option<Box<dyn Any + Send>> {
    state
        .downcast::<S>()
        .ok()
        .map(|state| state as Box<dyn Any + Send>)
}

/// The application's answer to a deferred upgrade, on its way to the connection's worker.
pub(crate) enum DeferredAnswer {
    Accept {
        accepted: PlacedAccept,
        placement: Option<Placement>,
    },
    Refuse(HttpResponse),
}

impl fmt::Debug for DeferredAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeferredAnswer::Accept { placement, .. } => f
                .debug_struct("Accept")
                .field("placement", placement)
                .finish_non_exhaustive(),
            DeferredAnswer::Refuse(response) => f.debug_tuple("Refuse").field(response).finish(),
        }
    }
}
