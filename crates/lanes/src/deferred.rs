//! Upgrades answered later: [`Request::defer`](crate::Request::defer) gives the application an
//! owned copy of the request and the right to answer it from any thread
//! ([`PendingUpgrade::accept`], [`PendingUpgrade::refuse`]); meanwhile the connection waits on
//! its worker, reading nothing, until the answer comes or its deadline passes.

use std::cell::Cell;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::answer::{Accept, HttpResponse};
use crate::error::SendError;
use crate::handoff::{DeferredAnswer, PlacedAccept};
use crate::hub::Command;
use crate::id::ConnId;
use crate::remote::Remote;

/// Where a deferred upgrade stands, shared by its [`PendingUpgrade`] and its worker.
#[derive(Debug, Default)]
pub(crate) struct DeferredCell(AtomicU8);

const PENDING: u8 = 0;
const ANSWERED: u8 = 1;
const PEER_LEFT: u8 = 2;
const TIMED_OUT: u8 = 3;

impl DeferredCell {
    /// The application answers: false (and the reason) when the upgrade is no longer waiting.
    fn answer(&self) -> Result<(), DeferError> {
        match self
            .0
            .compare_exchange(PENDING, ANSWERED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Ok(()),
            Err(PEER_LEFT) => Err(DeferError::PeerLeft),
            Err(TIMED_OUT) => Err(DeferError::TimedOut),
            Err(_) => Err(DeferError::Answered),
        }
    }

    /// Whether the upgrade still waits for an answer.
    fn is_waiting(&self) -> bool {
        self.0.load(Ordering::Acquire) == PENDING
    }

    /// An answer that could not be queued: the upgrade waits again (for its deadline).
    fn unanswer(&self) {
        let _ = self
            .0
            .compare_exchange(ANSWERED, PENDING, Ordering::AcqRel, Ordering::Acquire);
    }

    /// The worker saw the peer leave; false when the application's answer is already on its
    /// way (it will find the connection gone).
    pub(crate) fn peer_left(&self) -> bool {
        self.end(PEER_LEFT)
    }

    /// The worker's deadline passed; false when the application's answer is already on its
    /// way (it is then awaited, not refused).
    pub(crate) fn timed_out(&self) -> bool {
        self.end(TIMED_OUT)
    }

    /// The upgrade was answered at once after all (`on_upgrade` called `defer` but returned
    /// an answer): a later answer is refused.
    pub(crate) fn answered_at_once(&self) {
        self.end(ANSWERED);
    }

    fn end(&self, state: u8) -> bool {
        self.0
            .compare_exchange(PENDING, state, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// What a worker needs to let `on_upgrade` defer: the connection's id and the handle its
/// answer travels through. A deferral made in the callback is left here for the worker.
pub(crate) struct Deferrable<'a> {
    pub(crate) id: ConnId,
    pub(crate) remote: &'a Remote,
    pub(crate) made: Cell<Option<Arc<DeferredCell>>>,
}

/// Why an answer to a deferred upgrade was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeferError {
    /// The peer closed the connection while the upgrade waited.
    PeerLeft,
    /// The deadline ([`Timeouts::deferred_upgrade`](crate::config::Timeouts::deferred_upgrade))
    /// passed first: the peer was answered 503.
    TimedOut,
    /// The upgrade was answered already.
    Answered,
    /// The answer could not be queued for the connection's worker (its queue was full, or the
    /// server is shutting down); the deadline answers 503.
    NotQueued(SendError),
}

impl fmt::Display for DeferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeferError::PeerLeft => f.write_str("the peer left while the upgrade waited"),
            DeferError::TimedOut => f.write_str("the deferred upgrade's deadline passed"),
            DeferError::Answered => f.write_str("the upgrade was answered already"),
            DeferError::NotQueued(error) => write!(f, "the answer was not queued: {error}"),
        }
    }
}

impl std::error::Error for DeferError {}

/// An owned copy of a request (what a [`PendingUpgrade`] shows).
pub(crate) struct RequestCopy {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: Option<String>,
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    pub(crate) subprotocols: Vec<String>,
    pub(crate) peer: SocketAddr,
}

/// An upgrade `on_upgrade` deferred ([`Request::defer`](crate::Request::defer)): an owned copy
/// of the request, and the right to answer it once, from any thread. `Send`; dropping it
/// without answering leaves the connection to its deadline (503).
///
/// ```no_run
/// # use lanes::{Accept, Handler, HttpResponse, Message, PendingUpgrade, Request, Upgrade, Ws};
/// struct Game {
///     logins: std::sync::mpsc::Sender<PendingUpgrade>,
/// }
/// impl Handler for Game {
///     type State = String;
///     fn on_upgrade(&mut self, request: &Request<'_>) -> Upgrade<String> {
///         // The token is checked by another service: answer later, from its thread.
///         let _ = self.logins.send(request.defer());
///         Upgrade::Defer
///     }
///     fn on_message(&mut self, _: &mut Ws<'_>, _: &mut String, _: Message<'_>) {}
/// }
/// // On the login thread:
/// fn check(pending: PendingUpgrade) {
///     let token = pending.query().unwrap_or("").to_string();
///     let answer = if token == "token=good" {
///         pending.accept(Accept::new("player".to_string()))
///     } else {
///         pending.refuse(HttpResponse::new(401, "bad token"))
///     };
///     if let Err(error) = answer {
///         eprintln!("not answered: {error}");
///     }
/// }
/// ```
pub struct PendingUpgrade {
    request: RequestCopy,
    id: ConnId,
    remote: Remote,
    cell: Arc<DeferredCell>,
}

impl fmt::Debug for PendingUpgrade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingUpgrade")
            .field("method", &self.request.method)
            .field("path", &self.request.path)
            .field("query", &self.request.query)
            .field("peer", &self.request.peer)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl PendingUpgrade {
    /// `request`, answerable through `deferrable`.
    pub(crate) fn new(
        request: RequestCopy,
        deferrable: &Deferrable<'_>,
        cell: Arc<DeferredCell>,
    ) -> PendingUpgrade {
        PendingUpgrade {
            request,
            id: deferrable.id,
            remote: deferrable.remote.clone(),
            cell,
        }
    }

    /// The request method (`GET`).
    pub fn method(&self) -> &str {
        &self.request.method
    }

    /// The request path, without the query.
    pub fn path(&self) -> &str {
        &self.request.path
    }

    /// The query string (after `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.request.query.as_deref()
    }

    /// The first header field named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.request
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// Every header field, in order.
    pub fn headers(&self) -> &[(String, Vec<u8>)] {
        &self.request.headers
    }

    /// The subprotocols the client offers, in its order of preference.
    pub fn subprotocols(&self) -> &[String] {
        &self.request.subprotocols
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.request.peer
    }

    /// Whether the upgrade still waits for an answer: false once the peer left, the deadline
    /// passed, or it was answered (an application can skip an expensive check then).
    pub fn is_waiting(&self) -> bool {
        self.cell.is_waiting()
    }

    /// The id the connection has while it waits (and keeps once accepted, unless the
    /// acceptance places it on another worker).
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Accepts the upgrade: the connection's worker writes the 101 (with the acceptance's
    /// subprotocol and headers, permessage-deflate negotiated as usual), runs `on_open` and
    /// serves the connection; a placement ([`Accept::on_worker`]) moves it first. Fails, and
    /// the state is dropped, when the peer left, the deadline passed, or it was answered
    /// already.
    pub fn accept<S: Send + 'static>(self, accept: Accept<S>) -> Result<(), DeferError> {
        let placement = accept.placement().map(|(placement, _)| placement);
        let answer = DeferredAnswer::Accept {
            accepted: PlacedAccept {
                state: Box::new(accept.state),
                subprotocol: accept.subprotocol,
                headers: accept.headers,
            },
            placement,
        };
        self.answer(answer)
    }

    /// Refuses the upgrade with `response` (status 300-599, with its body): written, then the
    /// connection is closed.
    pub fn refuse(self, response: HttpResponse) -> Result<(), DeferError> {
        self.answer(DeferredAnswer::Refuse(response))
    }

    fn answer(self, answer: DeferredAnswer) -> Result<(), DeferError> {
        self.cell.answer()?;
        let Some(link) = self.remote.link(usize::from(self.id.worker)) else {
            self.cell.unanswer();
            return Err(DeferError::NotQueued(SendError::NoSuchWorker));
        };
        let pushed = link.push(Command::Answer {
            id: self.id,
            answer: Box::new(answer),
        });
        if let Err(error) = pushed {
            self.cell.unanswer();
            return Err(DeferError::NotQueued(error));
        }
        Ok(())
    }
}
