//! The connection handle given to callbacks.

use std::any::TypeId;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lanes_proto::session::Session;
use lanes_proto::{CloseCode, OpCode};

use crate::error::SendError;
use crate::handoff::{MoveRequest, erase_moved};
use crate::id::ConnId;
use crate::local::Local;
use crate::outbox::{ControlSink, Outbox, SendStatus};
use crate::peer::PeerAddr;
use crate::remote::Remote;
use crate::timer::TimerKind;
use crate::topic::{Change, Subscriptions};

/// What became of [`Ws::subscribe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscribeStatus {
    /// The connection is now subscribed.
    Subscribed,
    /// It already was: nothing changed.
    AlreadySubscribed,
    /// Refused: the connection is at
    /// [`Limits::max_subscriptions_per_connection`](crate::config::Limits).
    AtLimit,
}

/// The handle a callback gets for its connection: send, ping, close, subscribe and publish,
/// timers, and facts about it.
pub struct Ws<'a> {
    pub(crate) outbox: &'a mut Outbox,
    pub(crate) session: &'a mut Session,
    pub(crate) subs: &'a mut Subscriptions,
    pub(crate) local: &'a mut Local,
    pub(crate) id: ConnId,
    pub(crate) peer: &'a PeerAddr,
}

impl<'a> Ws<'a> {
    pub(crate) fn new(
        outbox: &'a mut Outbox,
        session: &'a mut Session,
        subs: &'a mut Subscriptions,
        local: &'a mut Local,
        id: ConnId,
        peer: &'a PeerAddr,
    ) -> Ws<'a> {
        Ws {
            outbox,
            session,
            subs,
            local,
            id,
            peer,
        }
    }

    /// Moves this connection to worker `worker` once the callback returns (a player who
    /// changes rooms, onto the worker that owns the new room). `S` is the handler's `State`
    /// type, named so that it can be checked to be `Send`: `ws.move_to::<Player>(worker)`.
    ///
    /// Everything moves with it: its state, its protocol session, a partial message, what is
    /// queued for the peer and not yet written (in order, ahead of what the new worker sends),
    /// its TLS session and its subscriptions (its topics are joined on the new worker). The
    /// new worker gives it a new [`ConnId`] and calls
    /// [`Handler::on_arrive`](crate::Handler::on_arrive) with it; `on_close` is not called for
    /// the old one. Sends to the old id do not follow: they fail with [`SendError::Moved`]
    /// (until the old slot is used again: then [`SendError::Gone`]), and sends already queued
    /// for the old worker when it moved are dropped (counted as stale). A message published to
    /// one of its topics while it is on its way may reach it twice (through both workers) or
    /// not at all; otherwise it receives its topics' messages in the order published. The
    /// connection's timers ([`set_timer`](Self::set_timer)) stay behind and do not fire.
    ///
    /// Moving to this worker does nothing. Fails at once with [`SendError::NoSuchWorker`]; if
    /// the new worker's queue is full when the move is made, the connection stays here (it is
    /// taken back in under a new id and `on_arrive` runs on this worker).
    ///
    /// ```no_run
    /// # use lanes::{Accept, Handler, Message, Request, Upgrade, Ws};
    /// struct Player { room: String }
    /// struct Rooms;
    /// impl Handler for Rooms {
    ///     type State = Player;
    ///     fn on_upgrade(&mut self, _: &Request<'_>) -> Upgrade<Player> {
    ///         Upgrade::Accept(Accept::new(Player { room: "lobby".into() }))
    ///     }
    ///     fn on_message(&mut self, ws: &mut Ws<'_>, player: &mut Player, message: Message<'_>) {
    ///         if let Message::Text(room) = message {
    ///             player.room = room.to_string();
    ///             let worker = ws.remote().worker_for(room);
    ///             let _ = ws.move_to::<Player>(worker);
    ///         }
    ///     }
    /// }
    /// ```
    pub fn move_to<S: Send + 'static>(&mut self, worker: usize) -> Result<(), SendError> {
        if worker >= self.local.remote.worker_count() {
            return Err(SendError::NoSuchWorker);
        }
        if worker == usize::from(self.local.index) {
            return Ok(());
        }
        self.local.moves.push(MoveRequest {
            slot: self.id.slot as usize,
            generation: self.id.generation,
            worker,
            state_type: TypeId::of::<S>(),
            erase: erase_moved::<S>,
        });
        Ok(())
    }

    /// Sends a text message.
    pub fn send_text(&mut self, text: &str) -> SendStatus {
        self.send(OpCode::Text, text.as_bytes())
    }

    /// Sends a binary message.
    pub fn send_binary(&mut self, bytes: &[u8]) -> SendStatus {
        self.send(OpCode::Binary, bytes)
    }

    /// Sends a ping; the payload is cut to 125 bytes.
    pub fn ping(&mut self, payload: &[u8]) -> SendStatus {
        let payload = &payload[..payload.len().min(125)];
        self.send(OpCode::Ping, payload)
    }

    /// Queues a frame unless the close handshake has begun (nothing may follow a close).
    fn send(&mut self, opcode: OpCode, payload: &[u8]) -> SendStatus {
        if !self.session.can_send() {
            return SendStatus::Dropped;
        }
        self.outbox.send(opcode, payload, &mut self.local.sending())
    }

    /// Starts the close handshake with `code` and `reason` (cut to 123 bytes at a character
    /// boundary). Nothing more is delivered to the handler; `on_close` follows when the peer
    /// answers or [`Timeouts::close`](crate::config::Timeouts::close) passes. A code that may
    /// not be sent (1005, 1006, 1015, ...) sends a close frame without a code. Codes of the
    /// application's own range are made with [`CloseCode::new`] (`CloseCode::new(4000)`).
    pub fn close(&mut self, code: CloseCode, reason: &str) {
        let now_us = self.local.now_us;
        let mut sink = ControlSink::new(self.outbox, self.local.sending());
        self.session.close(code, reason, now_us, &mut sink);
    }

    /// Subscribes this connection to `topic`; says whether it now is, already was, or is at
    /// [`Limits::max_subscriptions_per_connection`](crate::config::Limits) (and so is not).
    /// Subscriptions end with the connection.
    pub fn subscribe(&mut self, topic: &str) -> SubscribeStatus {
        let limit = self.local.config.limits.max_subscriptions_per_connection;
        let me = (self.id.slot as usize, self.id.generation);
        let change = self.local.topics.subscribe(topic, me, self.subs, limit);
        self.local.note_subscriptions();
        match change {
            Change::Done => SubscribeStatus::Subscribed,
            Change::Unchanged => SubscribeStatus::AlreadySubscribed,
            Change::AtLimit => SubscribeStatus::AtLimit,
        }
    }

    /// Unsubscribes this connection from `topic`. Returns false when it was not subscribed.
    pub fn unsubscribe(&mut self, topic: &str) -> bool {
        let change = self.local.topics.unsubscribe(topic, self.subs);
        self.local.note_subscriptions();
        change == Change::Done
    }

    /// Publishes a text message to every subscriber of `topic` on every worker (this
    /// connection included, if subscribed). The frame is encoded once; this worker's
    /// subscribers get it when the callback returns, without any queue, the other workers
    /// through theirs. Messages published by one connection arrive in the order published.
    pub fn publish_text(&mut self, topic: &str, text: &str) -> Result<(), SendError> {
        self.local
            .publish_message(topic, OpCode::Text, text.as_bytes(), None)
    }

    /// Publishes a binary message (see [`publish_text`](Self::publish_text)).
    pub fn publish_binary(&mut self, topic: &str, bytes: &[u8]) -> Result<(), SendError> {
        self.local
            .publish_message(topic, OpCode::Binary, bytes, None)
    }

    /// Publishes a text message under the latest-value policy: see
    /// [`Remote::publish_latest_text`](crate::Remote::publish_latest_text).
    pub fn publish_latest_text(
        &mut self,
        topic: &str,
        key: &str,
        text: &str,
    ) -> Result<(), SendError> {
        self.local
            .publish_latest(topic, key, OpCode::Text, text.as_bytes())
    }

    /// Publishes a binary message under the latest-value policy: see
    /// [`Remote::publish_latest_text`](crate::Remote::publish_latest_text).
    pub fn publish_latest_binary(
        &mut self,
        topic: &str,
        key: &str,
        bytes: &[u8],
    ) -> Result<(), SendError> {
        self.local.publish_latest(topic, key, OpCode::Binary, bytes)
    }

    /// Publishes a text message to every subscriber of `topic` but this connection: "everyone
    /// but me" (see [`publish_text`](Self::publish_text)).
    pub fn publish_text_except_self(&mut self, topic: &str, text: &str) -> Result<(), SendError> {
        let me = (self.id.slot as usize, self.id.generation);
        self.local
            .publish_message(topic, OpCode::Text, text.as_bytes(), Some(me))
    }

    /// Publishes a binary message to every subscriber of `topic` but this connection.
    pub fn publish_binary_except_self(
        &mut self,
        topic: &str,
        bytes: &[u8],
    ) -> Result<(), SendError> {
        let me = (self.id.slot as usize, self.id.generation);
        self.local
            .publish_message(topic, OpCode::Binary, bytes, Some(me))
    }

    /// Calls [`Handler::on_timer`](crate::Handler::on_timer) for this connection with `token`
    /// once `after` has passed (rounded up to [`Timers::resolution`](crate::config::Timers::resolution)), unless
    /// the connection has closed by then. Each call sets one more timer.
    pub fn set_timer(&mut self, after: Duration, token: u64) {
        let deadline = Instant::now() + after.min(Duration::from_secs(365 * 24 * 3600));
        self.local.wheel.schedule(
            self.id.slot as usize,
            self.id.generation,
            TimerKind::User(token),
            deadline,
        );
    }

    /// The handle to every worker, to send to connections by id from here or keep for later.
    pub fn remote(&self) -> &Remote {
        &self.local.remote
    }

    /// Bytes queued for this connection and not yet written to the socket.
    pub fn buffered_len(&self) -> usize {
        self.outbox.buffered_len()
    }

    /// This connection's id.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Whether this is an outbound connection (made with
    /// [`Remote::connect`](crate::Remote::connect)) rather than one the server accepted. Its
    /// frames are masked; everything else is the same.
    pub fn is_outbound(&self) -> bool {
        self.outbox.masked
    }

    /// In `on_open` of an outbound connection: the subprotocol the server chose, if any (keep
    /// it in the state if it is needed later). `None` elsewhere, and on accepted connections
    /// (whose subprotocol is the one their acceptance named).
    pub fn subprotocol(&self) -> Option<&str> {
        self.local.opening_subprotocol.as_deref()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer.get()
    }
}
