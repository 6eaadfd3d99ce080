//! The handler trait: what an application implements, and the values its callbacks see.

use std::any::Any;
use std::fmt;
use std::net::SocketAddr;

use lanes_proto::handshake::{ExtensionOffer, Header, RequestHead, UpgradeOffer};

use crate::closed::Closed;
use crate::context::WorkerContext;
use crate::deferred::{Deferrable, DeferredCell, PendingUpgrade};
use crate::message::WorkerMessage;
use crate::placement::Placement;
use crate::ws::Ws;

/// A complete message, borrowed for the duration of the callback.
///
/// A message that arrived in one frame is borrowed straight from the worker's receive buffer
/// (no copy); only fragmented messages and frames split across reads were assembled first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message, already checked to be valid UTF-8.
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

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
    /// [`PendingUpgrade::refuse`]); `on_upgrade` then returns [`Upgrade::Defer`].
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
        PendingUpgrade::new(self, deferrable, cell)
    }
}

/// `on_upgrade`'s answer: accept now, refuse now, or answer later.
#[derive(Debug)]
pub enum Upgrade<C> {
    /// Accept the upgrade, with the connection's initial state.
    Accept(Accept<C>),
    /// Refuse it with an HTTP response (status 300-599).
    Refuse(HttpResponse),
    /// Answer later: [`Request::defer`] was called, and the answer comes through the
    /// [`PendingUpgrade`] it returned. (Returned without `defer`, the upgrade is answered 500.)
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
    /// The subprotocol to confirm; must be one of [`Request::subprotocols`].
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

/// What an application implements. One value per worker, made on that worker's thread by the
/// factory given to [`Server`](crate::Server), so it needs neither `Send` nor `Sync` and
/// per-core state takes no locks.
///
/// A panic in a callback is caught (with `panic = "unwind"`, the default): it costs the
/// connection the callback ran for, which is closed with 1011 (internal error) and then given
/// to `on_close` with [`CloseCause::HandlerPanic`](crate::CloseCause::HandlerPanic); a panic in
/// `on_upgrade` or `on_http` answers 500; one in `on_tick` or `on_close` costs that call. Each
/// is counted (`lanes_handler_panics_total`) and logged at `error` with the connection's id, up
/// to 10 lines per minute per worker (the next line then says how many were left out); the
/// worker's other connections go on.
///
/// ```
/// use lanes::{Accept, Handler, HttpResponse, Message, Request, Upgrade, Ws};
///
/// struct Echo;
///
/// impl Handler for Echo {
///     type State = ();
///     fn on_upgrade(&mut self, _req: &Request<'_>) -> Upgrade<()> {
///         Upgrade::Accept(Accept::new(()))
///     }
///     fn on_message(&mut self, ws: &mut Ws<'_>, _state: &mut (), msg: Message<'_>) {
///         match msg {
///             Message::Text(text) => ws.send_text(text),
///             Message::Binary(bytes) => ws.send_binary(bytes),
///         };
///     }
/// }
/// ```
pub trait Handler: 'static {
    /// The application's per-connection state, stored in the connection's slot (no map
    /// lookups), handed to every callback, and to `on_close` by value.
    type State: 'static;

    /// A client asks to upgrade. Accept with the connection's initial state, refuse with an
    /// HTTP response (status 300-599), or defer the answer ([`Request::defer`]).
    fn on_upgrade(&mut self, request: &Request<'_>) -> Upgrade<Self::State>;

    /// The connection is open (the 101 response is queued).
    fn on_open(&mut self, ws: &mut Ws<'_>, state: &mut Self::State) {
        let _ = (ws, state);
    }

    /// A complete message arrived.
    fn on_message(&mut self, ws: &mut Ws<'_>, state: &mut Self::State, message: Message<'_>);

    /// A ping arrived (already answered with a pong when [`Config::auto_pong`](crate::Config::auto_pong)
    /// is on).
    fn on_ping(&mut self, ws: &mut Ws<'_>, state: &mut Self::State, payload: &[u8]) {
        let _ = (ws, state, payload);
    }

    /// A pong arrived.
    fn on_pong(&mut self, ws: &mut Ws<'_>, state: &mut Self::State, payload: &[u8]) {
        let _ = (ws, state, payload);
    }

    /// The outgoing backlog fell back below [`Backpressure::pause_len`](crate::config::Backpressure::pause_len) after
    /// having been above it; reading from the connection has resumed.
    fn on_drain(&mut self, ws: &mut Ws<'_>, state: &mut Self::State) {
        let _ = (ws, state);
    }

    /// The connection ended. Called exactly once per opened connection, whatever the cause,
    /// with the connection's state by value. `closed` says which connection, why
    /// ([`Closed::cause`]), with which code and reason ([`Closed::code`]: the peer's close code,
    /// 1005 when its close frame had none; ours when we closed or failed the connection; 1006
    /// when it ended without a close handshake: reset, end of stream, keepalive timeout), and
    /// sends to others from here (a chat announcing a leave needs no stored
    /// [`Remote`](crate::Remote)).
    fn on_close(&mut self, state: Self::State, closed: &mut Closed<'_>) {
        let _ = (state, closed);
    }

    /// A timer set with [`Ws::set_timer`] came due (the connection is still open).
    fn on_timer(&mut self, ws: &mut Ws<'_>, state: &mut Self::State, token: u64) {
        let _ = (ws, state, token);
    }

    /// The worker's tick, every [`Timers::tick_interval`](crate::config::Timers::tick_interval) (off by default):
    /// for game loops and periodic pushes. `ctx` reaches this worker's connections directly.
    fn on_tick(&mut self, ctx: &mut WorkerContext<'_, Self::State>) {
        let _ = ctx;
    }

    /// A connection moved here from another worker ([`Ws::move_to`]) is open on this worker
    /// now, under a new id (`ws.id()`); `from` is its id on the worker it left. Its state, its
    /// unwritten output and its subscriptions came with it. Default: nothing.
    fn on_arrive(&mut self, ws: &mut Ws<'_>, state: &mut Self::State, from: crate::ConnId) {
        let _ = (ws, state, from);
    }

    /// A value sent to this worker with [`Remote::send_to_worker`](crate::Remote::send_to_worker)
    /// (from any thread, or from a callback through [`Ws::remote`] or
    /// [`WorkerContext::remote`]), handled on this worker's thread with its connections at hand.
    /// Default: dropped. A panic here is logged and counted, and the worker goes on.
    fn on_worker_message(
        &mut self,
        ctx: &mut WorkerContext<'_, Self::State>,
        message: WorkerMessage,
    ) {
        let _ = (ctx, message);
    }

    /// A request that is not a WebSocket upgrade (a health check, a page). Default: 426
    /// Upgrade Required.
    fn on_http(&mut self, request: &Request<'_>) -> HttpResponse {
        let _ = request;
        HttpResponse::upgrade_required()
    }
}
