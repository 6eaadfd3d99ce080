//! One connection's state, kept in its worker's table (`table.rs`).

use std::net::SocketAddr;

use lanes_proto::CloseCode;
use lanes_proto::session::{Receiver, Session, SessionState};
use mio::net::TcpStream;

use crate::dials::NO_DIAL;
use crate::id::ConnId;
use crate::input::Input;
use crate::local::Local;
use crate::outbox::{ControlSink, Outbox};
use crate::peer::PeerAddr;
use crate::table::Table;
use crate::topic::Subscriptions;
use crate::ws::Ws;

/// Where a connection is in its life. The application's state and the protocol session live in
/// the phase that has them, so "open implies state present" holds by construction: `on_close`
/// takes the state by moving the connection to [`Phase::Closing`].
///
/// Every connection's slot holds a phase, so what only the rarer phases hold is boxed (a
/// partial request head, a deferred upgrade, an outbound handshake): the phase is no larger
/// than an open connection's state and session.
#[derive(Debug)]
#[allow(clippy::box_collection)]
pub(crate) enum Phase<S> {
    /// Reading the HTTP request head: the bytes so far (from the worker's pool) once a read
    /// ended before the head did.
    Handshake { head: Option<Box<Vec<u8>>> },
    /// `on_upgrade` deferred its answer: reading nothing, holding the request head (and any
    /// bytes read behind it) in a buffer of its own length, until the application answers
    /// through its [`PendingUpgrade`](crate::PendingUpgrade) or the deadline passes.
    Deferred(Box<Deferral>),
    /// An outbound connection's TCP connect is under way.
    Connecting,
    /// An outbound connection's request is sent (after the TLS handshake, on `wss://`):
    /// reading the server's answer (the bytes so far, from the worker's pool).
    Upgrading(Box<Upgrading>),
    /// A WebSocket: messages flow both ways until the close handshake begins; the session
    /// says how far that is (after our close frame nothing is delivered any more).
    Open { state: S, session: Session },
    /// Done with the protocol (`on_close` has run, or there never was a WebSocket): write out
    /// what is queued, then shut down our side.
    Closing,
    /// Our side is shut down; read and discard until the peer closes (so unread input cannot
    /// turn our close into a reset), or until the close timeout.
    Draining,
}

/// What a connection whose `on_upgrade` deferred its answer holds ([`Phase::Deferred`]).
#[derive(Debug)]
pub(crate) struct Deferral {
    /// The request head and any bytes read behind it, in a buffer of its own length.
    pub(crate) head: Vec<u8>,
    /// Where the application's answer arrives.
    pub(crate) cell: std::sync::Arc<crate::deferred::DeferredCell>,
}

/// What an outbound connection holds while its request is out ([`Phase::Upgrading`]).
#[derive(Debug)]
pub(crate) struct Upgrading {
    /// What the server's answer must say.
    pub(crate) expect: lanes_proto::handshake::ClientHandshake,
    /// The answer's bytes so far (from the worker's pool), once a read ended before its head
    /// did.
    pub(crate) head: Option<Vec<u8>>,
}

/// A phase without its contents: what the connection's timer was armed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PhaseKind {
    /// No timer entry was made for the connection yet (it was just taken in).
    Unarmed,
    Handshake,
    Connecting,
    Upgrading,
    Deferred,
    Open,
    /// Open, with a frame or message the peer began and has not finished: its deadline (the
    /// message timeout) can come before the keepalive deadline the timer was armed for.
    Unfinished,
    /// Open, with our keepalive ping out and nothing heard since: the deadline is the pong
    /// timeout's; a sign of life brings back the keepalive deadline, which can be sooner.
    PongWait,
    CloseSent,
    Closing,
    Draining,
}

impl<S> Phase<S> {
    /// Takes the application's state out, leaving [`Phase::Closing`]; `None` (and no change)
    /// in the phases without one.
    pub(crate) fn take_state(&mut self) -> Option<S> {
        if !matches!(self, Phase::Open { .. }) {
            return None;
        }
        match std::mem::replace(self, Phase::Closing) {
            Phase::Open { state, .. } => Some(state),
            _ => None,
        }
    }

    /// What the connection's timer is armed for.
    pub(crate) fn kind(&self) -> PhaseKind {
        match self {
            Phase::Handshake { .. } => PhaseKind::Handshake,
            Phase::Connecting => PhaseKind::Connecting,
            Phase::Upgrading(_) => PhaseKind::Upgrading,
            Phase::Deferred(_) => PhaseKind::Deferred,
            Phase::Open { session, .. } if session.state() == SessionState::Open => {
                if session.is_unfinished() {
                    PhaseKind::Unfinished
                } else if session.is_awaiting_pong() {
                    PhaseKind::PongWait
                } else {
                    PhaseKind::Open
                }
            }
            Phase::Open { .. } => PhaseKind::CloseSent,
            Phase::Closing => PhaseKind::Closing,
            Phase::Draining => PhaseKind::Draining,
        }
    }

    /// Whether messages may be sent: open, and no close frame sent yet.
    pub(crate) fn can_send(&self) -> bool {
        matches!(self, Phase::Open { session, .. } if session.can_send())
    }
}

/// A connection in a worker's table.
pub(crate) struct Conn<S> {
    pub(crate) stream: TcpStream,
    pub(crate) peer: PeerAddr,
    pub(crate) generation: u32,
    pub(crate) phase: Phase<S>,
    /// Milliseconds since the worker's epoch when the current phase began (the handshake and
    /// closing deadlines; an open connection's are its session's). While open: when a write
    /// last began to leave output unsent after the backlog was empty (the age of the backlog,
    /// for `backpressure.max_age`).
    pub(crate) phase_since_ms: u64,
    /// The receiving half of the session (kept beside the phase so that a message borrowed
    /// from it can be handled while the session sends).
    pub(crate) receiver: Receiver,
    pub(crate) outbox: Outbox,
    pub(crate) input: Input,
    /// Sequence number of the connection's live timer entry.
    pub(crate) timer_seq: u32,
    /// The phase the live timer entry was made for.
    pub(crate) armed_phase: PhaseKind,
    /// The topics the connection is subscribed to.
    pub(crate) subs: Subscriptions,
    /// Already in the worker's list of connections to write at the end of the iteration.
    pub(crate) flush_queued: bool,
    /// The close handshake is complete: the peer's close frame came (ours went before it, or
    /// answers it). Once our answer is written, an accepted connection is closed at once
    /// instead of drained: the peer sends nothing after its close frame.
    pub(crate) close_exchanged: bool,
    /// The backlog counted in the worker's `buffered_bytes` gauge for this connection (as of
    /// its last write).
    pub(crate) backlog_reported: u32,
    /// The partial input (receiver and stash) counted in the worker's memory-budget total for
    /// this connection (as of its last I/O).
    pub(crate) partial_reported: u32,
    /// An outbound connection's entry in the worker's dials ([`NO_DIAL`] for an accepted one,
    /// and for an outbound one that does not reconnect once it is open).
    pub(crate) dial: u32,
    /// TLS, on a TLS port (boxed: a plain connection pays one word for it).
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<Box<crate::tls::TlsLayer>>,
}

impl<S> Conn<S> {
    /// A connection taken into a worker's table, reading its request head from `now_ms`.
    pub(crate) fn handshaking(
        stream: TcpStream,
        peer: SocketAddr,
        generation: u32,
        now_ms: u64,
        receiver: Receiver,
        outbox: Outbox,
        #[cfg(feature = "tls")] tls: Option<Box<crate::tls::TlsLayer>>,
    ) -> Conn<S> {
        Conn {
            stream,
            peer: peer.into(),
            generation,
            phase: Phase::Handshake { head: None },
            phase_since_ms: now_ms,
            backlog_reported: 0,
            partial_reported: 0,
            dial: NO_DIAL,
            receiver,
            outbox,
            input: Input::READING,
            timer_seq: 0,
            armed_phase: PhaseKind::Unarmed,
            subs: Subscriptions::default(),
            flush_queued: false,
            close_exchanged: false,
            #[cfg(feature = "tls")]
            tls,
        }
    }

    /// Gives the input read before a pause back to `pool`, if any is held.
    pub(crate) fn release_stash(&mut self, pool: &mut crate::pool::BufferPool) {
        if let Some(stash) = self.input.take_stash() {
            pool.put(stash);
        }
    }

    pub(crate) fn set_phase(&mut self, phase: Phase<S>, now_ms: u64) {
        self.phase = phase;
        self.phase_since_ms = now_ms;
    }

    /// Takes the application's state out (for `on_close`), leaving the connection
    /// [`Phase::Closing`]; `None` when it has none (any more).
    pub(crate) fn take_state(&mut self, now_ms: u64) -> Option<S> {
        let state = self.phase.take_state()?;
        self.phase_since_ms = now_ms;
        Some(state)
    }

    /// Starts the close handshake (once; false when it had begun, or there is no WebSocket).
    pub(crate) fn close(&mut self, code: CloseCode, reason: &str, local: &mut Local) -> bool {
        let Phase::Open { session, .. } = &mut self.phase else {
            return false;
        };
        let now_us = local.now_us;
        session.close(
            code,
            reason,
            now_us,
            &mut ControlSink::new(&mut self.outbox, local.sending()),
        )
    }

    /// Bytes of an incomplete TLS record held between reads.
    #[inline]
    pub(crate) fn tls_carried_len(&self) -> usize {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return tls.carried_len();
        }
        0
    }

    /// Whether the connection speaks TLS.
    #[inline]
    pub(crate) fn is_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }

    /// Whether reading is paused for backpressure.
    pub(crate) fn is_paused(&self) -> bool {
        self.input.is_paused()
    }

    /// The application's state, while the connection has one.
    pub(crate) fn state_mut(&mut self) -> Option<&mut S> {
        match &mut self.phase {
            Phase::Open { state, .. } => Some(state),
            _ => None,
        }
    }

    /// The handle a callback gets for this connection, with the application's state; `None`
    /// unless the connection is open and has not begun closing.
    pub(crate) fn callback<'a>(
        &'a mut self,
        local: &'a mut Local,
        id: ConnId,
    ) -> Option<(Ws<'a>, &'a mut S)> {
        let Phase::Open { state, session } = &mut self.phase else {
            return None;
        };
        if !session.can_send() {
            return None;
        }
        let ws = Ws::new(
            &mut self.outbox,
            session,
            &mut self.subs,
            local,
            id,
            &self.peer,
        );
        Some((ws, state))
    }
}

/// The open connection `id` names, if it is still there and has not begun closing.
pub(crate) fn open_conn<S>(conns: &mut Table<Conn<S>>, id: ConnId) -> Option<&mut Conn<S>> {
    conns
        .get_mut(id.slot as usize)
        .filter(|c| c.generation == id.generation && c.phase.can_send())
}

/// Queues `conn` (in `slot`) to be written at the end of the loop iteration, once.
pub(crate) fn mark_dirty<S>(conn: &mut Conn<S>, slot: usize, dirty: &mut Vec<(usize, u32)>) {
    if !conn.flush_queued {
        conn.flush_queued = true;
        dirty.push((slot, conn.generation));
    }
}

#[cfg(test)]
mod tests {
    /// Every connection pays for its slot, idle or not (`scripts/idle_memory.py`): a new field
    /// here is a decision, not an accident. 408 bytes before the receiver boxed what spans
    /// reads (328), the input stash and subscription list became one pointer each (296), and
    /// the session's limits and timeouts left it and the rarer phases' contents were boxed
    /// (256), then the peer address was packed, the input became one word, the outbox's
    /// compression and TLS parts one pointer and the receiver's assembly flags one byte
    /// (208).
    #[test]
    fn an_idle_connections_slot_stays_small() {
        let size = std::mem::size_of::<super::Conn<()>>();
        // mio's socket is 4 bytes, and 16 in a debug build (where it carries a selector id).
        let socket = std::mem::size_of::<super::TcpStream>();
        assert!(size <= 204 + socket, "Conn<()> is {size} bytes");
        // No larger than an open connection's state and session (24 bytes for `()`).
        let phase = std::mem::size_of::<super::Phase<()>>();
        assert!(phase <= 24, "Phase<()> is {phase} bytes");
        // The table needs no tag of its own beside a connection: it uses a niche of the slot.
        assert_eq!(crate::table::entry_size::<super::Conn<()>>(), size);
    }
}
