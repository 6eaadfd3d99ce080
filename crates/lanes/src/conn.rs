//! One connection's state, kept in its worker's slab.

use std::net::SocketAddr;

use mio::net::TcpStream;
use slab::Slab;

use crate::local::Local;
use crate::recv::Receiver;
use crate::topic::Subscription;
use crate::ws::Outbox;
use crate::ws::{ConnId, Ws};

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Reading the HTTP request head.
    Handshake,
    /// Open: messages flow both ways.
    Open,
    /// We sent a close frame and wait for the peer's (nothing is delivered any more).
    CloseSent,
    /// Done with the protocol: write out what is queued, then shut down our side.
    Closing,
    /// Our side is shut down; read and discard until the peer closes (so unread input cannot
    /// turn our close into a reset), or until the close timeout.
    Draining,
}

/// A connection in a worker's table.
pub(crate) struct Conn<C> {
    pub(crate) stream: TcpStream,
    pub(crate) peer: SocketAddr,
    pub(crate) generation: u32,
    pub(crate) phase: Phase,
    /// Milliseconds since the worker's epoch when the current phase began.
    pub(crate) phase_since_ms: u64,
    /// Milliseconds since the worker's epoch when the peer last sent anything.
    pub(crate) last_activity_ms: u64,
    /// When our keepalive ping went out (microseconds since the worker's epoch), until a pong
    /// arrives (for the round-trip time) or the next ping replaces it.
    pub(crate) ping_sent_us: Option<u64>,
    /// The request head received so far (handshake phase only).
    pub(crate) head: Option<Vec<u8>>,
    pub(crate) receiver: Receiver,
    pub(crate) outbox: Outbox,
    /// The application's state; taken when `on_close` fires (exactly once).
    pub(crate) user: Option<C>,
    /// Reading stopped because the outgoing backlog is over the backpressure limit.
    pub(crate) read_paused: bool,
    /// Bytes already read but not processed when reading paused (handled on resume).
    pub(crate) stash: Option<Vec<u8>>,
    /// Sequence number of the connection's live timer entry.
    pub(crate) timer_seq: u32,
    /// The phase the live timer entry was made for.
    pub(crate) armed_phase: Phase,
    /// The topics the connection is subscribed to.
    pub(crate) subs: Vec<Subscription>,
    /// Already in the worker's list of connections to write at the end of the iteration.
    pub(crate) flush_queued: bool,
    /// The backlog counted in the worker's `buffered_bytes` gauge for this connection (as of
    /// its last write).
    pub(crate) backlog_reported: u32,
}

impl<C> Conn<C> {
    pub(crate) fn set_phase(&mut self, phase: Phase, now_ms: u64) {
        self.phase = phase;
        self.phase_since_ms = now_ms;
    }

    /// The handle a callback gets for this connection, with the application's state; `None`
    /// once `on_close` has taken the state.
    pub(crate) fn callback<'a>(
        &'a mut self,
        local: &'a mut Local,
        id: ConnId,
    ) -> Option<(Ws<'a>, &'a mut C)> {
        let user = self.user.as_mut()?;
        let ws = Ws::new(&mut self.outbox, &mut self.subs, local, id, self.peer);
        Some((ws, user))
    }
}

/// The open connection `id` names, if it is still there (an open connection whose state has
/// not been handed to `on_close`).
pub(crate) fn open_conn<C>(conns: &mut Slab<Conn<C>>, id: ConnId) -> Option<&mut Conn<C>> {
    conns
        .get_mut(id.slot as usize)
        .filter(|c| c.generation == id.generation && c.phase == Phase::Open && c.user.is_some())
}
