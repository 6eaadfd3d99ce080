//! The opening handshake request as `on_upgrade` and `on_http` see it, and its deferral.

use std::fmt;
use std::net::SocketAddr;

use lanes_proto::handshake::{ExtensionOffer, Header, RequestHead, UpgradeOffer};

use crate::deferred::{Deferrable, DeferredCell, PendingUpgrade, RequestCopy};

/// An opening handshake request, as an application sees it when deciding to accept it.
pub struct Request<'a> {
    pub(crate) head: &'a RequestHead<'a>,
    pub(crate) offer: Option<&'a UpgradeOffer<'a>>,
    pub(crate) peer: SocketAddr,
    /// Set for an upgrade `on_upgrade` may defer.
    pub(crate) deferrable: Option<&'a Deferrable<'a>>,
}

impl fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method())
            .field("path", &self.path())
            .field("query", &self.query())
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl<'a> Request<'a> {
    /// The method (`GET` for every upgrade).
    pub fn method(&self) -> &'a str {
        self.head.method()
    }

    /// The path, without the query, not percent-decoded.
    pub fn path(&self) -> &'a str {
        self.head.path()
    }

    /// The query (after `?`), if any, not percent-decoded.
    pub fn query(&self) -> Option<&'a str> {
        self.head.query()
    }

    /// The value of the first header field named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.head.header(name)
    }

    /// Every header field, in order.
    pub fn headers(&self) -> &'a [Header<'a>] {
        self.head.headers()
    }

    /// The subprotocols the client offers, in its order of preference (empty for plain HTTP).
    pub fn subprotocols(&self) -> &'a [&'a str] {
        self.offer.map_or(&[], |o| o.subprotocols())
    }

    /// The extensions the client offers, with their parameters.
    pub fn extensions(&self) -> &'a [ExtensionOffer<'a>] {
        self.offer.map_or(&[], |o| o.extensions())
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Defers the answer to this upgrade: returns an owned copy of the request with the
    /// right to answer it later, once, from any thread ([`PendingUpgrade::accept`],
    /// [`PendingUpgrade::refuse`]); `on_upgrade` then returns [`Upgrade::Defer`](crate::Upgrade::Defer).
    ///
    /// Meanwhile the connection reads nothing more and holds only its request head. If no
    /// answer comes within [`Timeouts::deferred_upgrade`](crate::config::Timeouts::deferred_upgrade)
    /// (5 s by default), the peer is answered 503 and the late answer fails with
    /// [`DeferError::TimedOut`](crate::DeferError::TimedOut); a peer that closes meanwhile is
    /// dropped at once and the answer fails with
    /// [`DeferError::PeerLeft`](crate::DeferError::PeerLeft).
    ///
    /// # Panics
    ///
    /// When the request cannot be deferred: in `on_http`, or called twice.
    #[allow(clippy::panic)] // misuse of the API, said above
    pub fn defer(&self) -> PendingUpgrade {
        let Some(deferrable) = self.deferrable else {
            panic!("Request::defer: only an upgrade request can be deferred, from on_upgrade");
        };
        let cell = std::sync::Arc::new(DeferredCell::default());
        if deferrable
            .made
            .replace(Some(std::sync::Arc::clone(&cell)))
            .is_some()
        {
            panic!("Request::defer: called twice for one request");
        }
        let copy = RequestCopy {
            method: self.method().to_string(),
            path: self.path().to_string(),
            query: self.query().map(str::to_string),
            headers: self
                .headers()
                .iter()
                .map(|h| (h.name.to_string(), h.value.to_vec()))
                .collect(),
            subprotocols: self.subprotocols().iter().map(|s| s.to_string()).collect(),
            peer: self.peer,
        };
        PendingUpgrade::new(copy, deferrable, cell)
    }
}
