//! What the per-worker tick callback gets: the worker's connections, to send to, close, and
//! publish, without going through any queue.

use lanes_proto::{CloseCode, OpCode};

use crate::conn::{Conn, mark_dirty, open_conn};
use crate::error::SendError;
use crate::id::ConnId;
use crate::local::Local;
use crate::outbox::SendStatus;
use crate::published::encode;
use crate::remote::Remote;
use crate::table::Table;
use crate::ws::Ws;

/// The worker as [`Handler::on_tick`](crate::Handler::on_tick) sees it: its open
/// connections, their states, and sending to them directly. Ids of connections on other
/// workers go through the [`Remote`]. Nothing here allocates per connection or per tick.
///
/// ```
/// use lanes::{Accept, Handler, Message, Request, Upgrade, WorkerContext, Ws};
///
/// /// Pushes each player's score every tick.
/// struct Game;
///
/// impl Handler for Game {
///     type State = u64; // the player's score
///     fn on_upgrade(&mut self, _: &Request<'_>) -> Upgrade<u64> {
///         Upgrade::Accept(Accept::new(0))
///     }
///     fn on_message(&mut self, _: &mut Ws<'_>, score: &mut u64, _: Message<'_>) {
///         *score += 1;
///     }
///     fn on_tick(&mut self, ctx: &mut WorkerContext<'_, u64>) {
///         ctx.for_each(|ws, score| {
///             ws.send_text(&format!("score {score}"));
///         });
///     }
/// }
/// ```
pub struct WorkerContext<'a, C> {
    pub(crate) conns: &'a mut Table<Conn<C>>,
    pub(crate) local: &'a mut Local,
}

impl<C> WorkerContext<'_, C> {
    /// The worker's index.
    pub fn worker_index(&self) -> usize {
        usize::from(self.local.index)
    }

    /// The handle to every worker.
    pub fn remote(&self) -> &Remote {
        &self.local.remote
    }

    /// The ids of this worker's open connections (borrowed from its table: no allocation).
    pub fn ids(&self) -> impl Iterator<Item = ConnId> + '_ {
        let worker = self.local.index;
        self.conns
            .iter()
            .filter(|(_, c)| c.phase.can_send())
            .map(move |(slot, c)| ConnId {
                worker,
                slot: slot as u32,
                generation: c.generation,
            })
    }

    /// Calls `f` with the handle and state of each of this worker's open connections, in
    /// table order: send, close, subscribe or publish as in any callback.
    pub fn for_each(&mut self, mut f: impl FnMut(&mut Ws<'_>, &mut C)) {
        let local = &mut *self.local;
        for (slot, conn) in self.conns.iter_mut() {
            let id = ConnId {
                worker: local.index,
                slot: slot as u32,
                generation: conn.generation,
            };
            if let Some((mut ws, state)) = conn.callback(local, id) {
                f(&mut ws, state);
                mark_dirty(conn, slot, &mut local.dirty);
            }
        }
    }

    /// The state of this worker's open connection `id`.
    pub fn state(&mut self, id: ConnId) -> Option<&mut C> {
        self.open_conn(id)?.state_mut()
    }

    /// How many of this worker's connections are subscribed to `topic`.
    pub fn subscriber_count(&self, topic: &str) -> usize {
        self.local.topics.subscriber_count(topic)
    }

    /// Sends a text message to `id` (directly when it is this worker's, else through the
    /// [`Remote`], reported as [`SendStatus::Sent`] once queued).
    pub fn send_text(&mut self, id: ConnId, text: &str) -> Result<SendStatus, SendError> {
        self.send(id, OpCode::Text, text.as_bytes())
    }

    /// Sends a binary message to `id` (see [`send_text`](Self::send_text)).
    pub fn send_binary(&mut self, id: ConnId, bytes: &[u8]) -> Result<SendStatus, SendError> {
        self.send(id, OpCode::Binary, bytes)
    }

    /// Starts the close handshake on `id` (see [`Ws::close`](crate::Ws::close)).
    pub fn close(&mut self, id: ConnId, code: CloseCode, reason: &str) -> Result<(), SendError> {
        if id.worker != self.local.index {
            return self.local.remote.close(id, code, reason);
        }
        let slot = id.slot as usize;
        let local = &mut *self.local;
        let conn = open_conn(self.conns, id).ok_or_else(|| gone(local, id))?;
        conn.close(code, reason, local);
        mark_dirty(conn, slot, &mut local.dirty);
        Ok(())
    }

    /// Publishes a text message to `topic` on every worker.
    pub fn publish_text(&mut self, topic: &str, text: &str) -> Result<(), SendError> {
        self.local
            .publish_message(topic, OpCode::Text, text.as_bytes(), None)
    }

    /// Publishes a binary message to `topic` on every worker.
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

    fn open_conn(&mut self, id: ConnId) -> Option<&mut Conn<C>> {
        if id.worker != self.local.index {
            return None;
        }
        open_conn(self.conns, id)
    }

    fn send(
        &mut self,
        id: ConnId,
        opcode: OpCode,
        payload: &[u8],
    ) -> Result<SendStatus, SendError> {
        if id.worker != self.local.index {
            let frame = encode(opcode, payload);
            return self
                .local
                .remote
                .send_frame(id, frame)
                .map(|()| SendStatus::Sent);
        }
        let slot = id.slot as usize;
        let local = &mut *self.local;
        let conn = open_conn(self.conns, id).ok_or_else(|| gone(local, id))?;
        let status = conn.outbox.send(opcode, payload, &mut local.sending());
        mark_dirty(conn, slot, &mut local.dirty);
        Ok(status)
    }
}

/// Why a connection of this worker is not open: it moved to another worker, or it is gone.
fn gone(local: &Local, id: ConnId) -> SendError {
    if local.live.was_moved(id.slot as usize, id.generation) {
        SendError::Moved
    } else {
        SendError::Gone
    }
}
