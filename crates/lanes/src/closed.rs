//! What `on_close` is told about the connection that ended, and how it reaches the others.

use lanes_proto::{CloseCode, OpCode};

use crate::error::SendError;
use crate::hub::Command;
use crate::id::ConnId;
use crate::local::Local;
use crate::published::encode;
use crate::remote::Remote;
use crate::stats::CloseCause;

/// The connection that ended, as [`Handler::on_close`](crate::Handler::on_close) sees it: its
/// id, why and how it ended, and sends to other connections and topics (the connection itself
/// can no longer be written to).
///
/// Sends and publishes from here follow the same rules as from a [`Ws`](crate::Ws): this
/// worker's connections get them when the callback returns, other workers' through their
/// queues.
///
/// ```
/// use lanes::{Accept, Closed, Handler, Message, Request, Upgrade, Ws};
///
/// struct Chat;
///
/// impl Handler for Chat {
///     type State = String; // the member's name
///     fn on_upgrade(&mut self, _: &Request<'_>) -> Upgrade<String> {
///         Upgrade::Accept(Accept::new("anonymous".into()))
///     }
///     fn on_open(&mut self, ws: &mut Ws<'_>, _: &mut String) {
///         ws.subscribe("room");
///     }
///     fn on_message(&mut self, _: &mut Ws<'_>, _: &mut String, _: Message<'_>) {}
///     fn on_close(&mut self, name: String, closed: &mut Closed<'_>) {
///         let _ = closed.publish_text("room", &format!("{name} left ({:?})", closed.cause()));
///     }
/// }
/// ```
pub struct Closed<'a> {
    pub(crate) id: ConnId,
    pub(crate) cause: CloseCause,
    pub(crate) code: CloseCode,
    pub(crate) reason: &'a str,
    pub(crate) reconnect_in: Option<std::time::Duration>,
    pub(crate) local: &'a mut Local,
}

impl Closed<'_> {
    /// For an outbound connection with a [`Reconnect`](crate::Reconnect) policy: when the next
    /// attempt to connect is made (its `on_open`, or `on_connect_failed`, follows). `None` for
    /// accepted connections, outbound ones that do not reconnect, and during shutdown.
    pub fn reconnect_in(&self) -> Option<std::time::Duration> {
        self.reconnect_in
    }

    /// The id the connection had.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Why it ended.
    pub fn cause(&self) -> CloseCause {
        self.cause
    }

    /// The close code: the peer's (1005 when its close frame had none), ours when we closed or
    /// failed the connection, or 1006 when it ended without a close handshake.
    pub fn code(&self) -> CloseCode {
        self.code
    }

    /// The close reason that went with [`code`](Self::code) (empty when there was none).
    pub fn reason(&self) -> &str {
        self.reason
    }

    /// The handle to every worker.
    pub fn remote(&self) -> &Remote {
        &self.local.remote
    }

    /// Sends a text message to the connection `id` (see [`Remote::send_text`]).
    pub fn send_text(&mut self, id: ConnId, text: &str) -> Result<(), SendError> {
        self.send(id, OpCode::Text, text.as_bytes())
    }

    /// Sends a binary message to the connection `id` (see [`Remote::send_binary`]).
    pub fn send_binary(&mut self, id: ConnId, bytes: &[u8]) -> Result<(), SendError> {
        self.send(id, OpCode::Binary, bytes)
    }

    /// Starts the close handshake on the connection `id` (see [`Remote::close`]).
    pub fn close(&mut self, id: ConnId, code: CloseCode, reason: &str) -> Result<(), SendError> {
        if id.worker != self.local.index {
            return self.local.remote.close(id, code, reason);
        }
        self.local.check_open(id)?;
        self.local.deferred_commands.push(Command::Close {
            id,
            code,
            reason: reason.into(),
        });
        Ok(())
    }

    /// Publishes a text message to every subscriber of `topic` on every worker.
    pub fn publish_text(&mut self, topic: &str, text: &str) -> Result<(), SendError> {
        self.local
            .publish_message(topic, OpCode::Text, text.as_bytes(), None)
    }

    /// Publishes a binary message to every subscriber of `topic` on every worker.
    pub fn publish_binary(&mut self, topic: &str, bytes: &[u8]) -> Result<(), SendError> {
        self.local
            .publish_message(topic, OpCode::Binary, bytes, None)
    }

    fn send(&mut self, id: ConnId, opcode: OpCode, payload: &[u8]) -> Result<(), SendError> {
        let message = encode(opcode, payload);
        if id.worker != self.local.index {
            return self.local.remote.send_frame(id, message);
        }
        self.local.check_open(id)?;
        self.local
            .deferred_commands
            .push(Command::Send { id, message });
        Ok(())
    }
}
