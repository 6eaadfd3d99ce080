//! A connection on its way to a worker before it is open: an upgrade the handler placed on
//! another worker ([`Accept::on_worker`](crate::Accept::on_worker)), or a connection another
//! server accepted and handed to lanes ([`Remote::adopt`](crate::Remote::adopt)). The socket
//! and everything read from it travel together, so the peer sees nothing of the move.

use std::any::Any;
use std::fmt;
use std::net::SocketAddr;

use mio::net::TcpStream;

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
