//! What `on_upgrade` and `on_http` answer: an acceptance (with its state, subprotocol, headers
//! and placement), an HTTP response, or a deferral.

use std::any::Any;
use std::fmt;

use crate::placement::Placement;

/// `on_upgrade`'s answer: accept now, refuse now, or answer later.
#[derive(Debug)]
pub enum Upgrade<C> {
    /// Accept the upgrade, with the connection's initial state.
    Accept(Accept<C>),
    /// Refuse it with an HTTP response (status 300-599).
    Refuse(HttpResponse),
    /// Answer later: [`Request::defer`](crate::Request::defer) was called, and the answer comes through the
    /// [`PendingUpgrade`](crate::PendingUpgrade) it returned. (Returned without `defer`, the upgrade is answered 500.)
    Defer,
}

impl<C> From<Accept<C>> for Upgrade<C> {
    fn from(accept: Accept<C>) -> Upgrade<C> {
        Upgrade::Accept(accept)
    }
}

impl<C> From<HttpResponse> for Upgrade<C> {
    fn from(refusal: HttpResponse) -> Upgrade<C> {
        Upgrade::Refuse(refusal)
    }
}

impl<C> From<Result<Accept<C>, HttpResponse>> for Upgrade<C> {
    fn from(answer: Result<Accept<C>, HttpResponse>) -> Upgrade<C> {
        match answer {
            Ok(accept) => Upgrade::Accept(accept),
            Err(refusal) => Upgrade::Refuse(refusal),
        }
    }
}

/// An accepted upgrade: the connection's initial state, what to answer, and (optionally) the
/// worker to serve the connection on.
///
/// ```
/// # use lanes::Accept;
/// let accept = Accept::new(42u64)
///     .with_subprotocol("chat.v1")
///     .header("Set-Cookie", "session=abc");
/// assert_eq!(accept.headers, [("Set-Cookie".to_string(), "session=abc".to_string())]);
/// // Served by the worker that owns "room-7", whichever worker the kernel gave it to.
/// let placed = Accept::new(42u64).on_worker_for("room-7");
/// ```
pub struct Accept<C> {
    /// The per-connection state, stored in the connection's slot and handed to every callback.
    pub state: C,
    /// The subprotocol to confirm; must be one of [`Request::subprotocols`](crate::Request::subprotocols).
    pub subprotocol: Option<String>,
    /// Extra response header fields (for example `Set-Cookie`).
    pub headers: Vec<(String, String)>,
    /// The worker to serve on, and how to send the state there ([`on_worker`](Self::on_worker)).
    placement: Option<(Placement, Erase<C>)>,
}

/// Boxes a state to send it to the worker an upgrade is placed on.
pub(crate) type Erase<C> = fn(C) -> Box<dyn Any + Send>;

impl<C: fmt::Debug> fmt::Debug for Accept<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Accept")
            .field("state", &self.state)
            .field("subprotocol", &self.subprotocol)
            .field("headers", &self.headers)
            .field("placement", &self.placement.map(|(p, _)| p))
            .finish()
    }
}

impl<C> Accept<C> {
    /// Accepts with `state`, no subprotocol and no extra headers, on the worker that accepted
    /// the connection.
    pub fn new(state: C) -> Accept<C> {
        Accept {
            state,
            subprotocol: None,
            headers: Vec::new(),
            placement: None,
        }
    }

    /// The same acceptance, confirming `subprotocol`.
    pub fn with_subprotocol(mut self, subprotocol: impl Into<String>) -> Accept<C> {
        self.subprotocol = Some(subprotocol.into());
        self
    }

    /// The same acceptance, with one more response header field.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Accept<C> {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The same acceptance, served by worker `worker` (an index below
    /// [`Remote::worker_count`](crate::Remote::worker_count)) rather than the one the kernel
    /// gave the connection to.
    ///
    /// When that is another worker, the connection moves there before anything is answered:
    /// its socket, its TLS session and every byte read from it so far (the request head and
    /// any frames sent right behind it) are handed over with the state through the worker's
    /// command queue, and the 101 is written, `on_open` called and every later callback run
    /// by the new worker: the connection's [`ConnId`](crate::ConnId) names it. The peer sees
    /// nothing of the move. When the new worker's queue is full, or the index names no worker,
    /// the upgrade is answered 503 or 500 instead (and counted).
    pub fn on_worker(mut self, worker: usize) -> Accept<C>
    where
        C: Send + 'static,
    {
        self.placement = Some((Placement::Worker(worker), erase::<C>));
        self
    }

    /// The same acceptance, served by the worker that owns `key`: the one
    /// [`worker_for`](crate::worker_for)`(key, workers)` names, so that every connection with
    /// the same key (a room, a symbol) ends on one worker. See [`on_worker`](Self::on_worker).
    pub fn on_worker_for(mut self, key: impl AsRef<[u8]>) -> Accept<C>
    where
        C: Send + 'static,
    {
        self.placement = Some((Placement::for_key(key.as_ref()), erase::<C>));
        self
    }

    /// The placement asked for, with the state's eraser.
    pub(crate) fn placement(&self) -> Option<(Placement, Erase<C>)> {
        self.placement
    }
}

/// The state of an upgrade placed on another worker, on its way there.
fn erase<C: Send + 'static>(state: C) -> Box<dyn Any + Send> {
    Box::new(state)
}

/// A plain HTTP response: for a refused upgrade, or for a request that is not an upgrade. It is
/// sent with `Content-Length` and `Connection: close`, and the connection is closed once it is
/// written (no keep-alive: a WebSocket port answers one plain request per connection).
///
/// ```
/// # use lanes::HttpResponse;
/// let page = HttpResponse::new(200, "<h1>hello</h1>")
///     .content_type("text/html; charset=utf-8")
///     .header("Cache-Control", "no-store");
/// assert_eq!(page.headers.len(), 2);
/// let refusal = HttpResponse::new(403, "").body("no token");
/// assert_eq!(refusal.body, b"no token");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code (a refusal must use 300-599, not 304).
    pub status: u16,
    /// Extra header fields.
    pub headers: Vec<(String, String)>,
    /// The body (sent with `Content-Length`).
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A response with `status` and a text body.
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> HttpResponse {
        HttpResponse {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// The same response with one more header field.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> HttpResponse {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The same response with a `Content-Type` header field.
    pub fn content_type(self, content_type: impl Into<String>) -> HttpResponse {
        self.header("Content-Type", content_type)
    }

    /// The same response with `body` instead of its body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> HttpResponse {
        self.body = body.into();
        self
    }

    /// The default answer to a request that is not a WebSocket upgrade: 426 Upgrade Required
    /// with `Upgrade: websocket` and `Sec-WebSocket-Version: 13`.
    pub fn upgrade_required() -> HttpResponse {
        HttpResponse {
            status: 426,
            headers: vec![
                ("Upgrade".into(), "websocket".into()),
                ("Sec-WebSocket-Version".into(), "13".into()),
            ],
            body: b"this is a WebSocket endpoint".to_vec(),
        }
    }
}
