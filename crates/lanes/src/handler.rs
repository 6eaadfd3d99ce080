//! The handler trait: what an application implements, and the values its callbacks see.

use crate::answer::{HttpResponse, Upgrade};
use crate::closed::Closed;
use crate::connect::ConnectFailure;
use crate::context::WorkerContext;
use crate::message::WorkerMessage;
use crate::request::Request;
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

    /// An outbound connection attempt ([`Remote::connect`](crate::Remote::connect)) failed:
    /// `state` is the state it was asked with (with a [`Reconnect`](crate::Reconnect) policy,
    /// that attempt's clone), `failure` says why and whether another attempt follows
    /// ([`ConnectFailure::retry_in`]). Nothing of the attempt is left on the worker. Default:
    /// logged at `debug`. A panic here is logged and counted, and the worker goes on.
    fn on_connect_failed(
        &mut self,
        ctx: &mut WorkerContext<'_, Self::State>,
        state: Self::State,
        failure: &ConnectFailure,
    ) {
        let _ = (ctx, state);
        tracing::debug!(%failure, "outbound connection failed");
    }

    /// A request that is not a WebSocket upgrade (a health check, a page). Default: 426
    /// Upgrade Required.
    fn on_http(&mut self, request: &Request<'_>) -> HttpResponse {
        let _ = request;
        HttpResponse::upgrade_required()
    }
}
