//! Each worker's own listening socket: SO_REUSEADDR + SO_REUSEPORT, so every worker binds the
//! same address and the kernel spreads new connections over them; and its accept state (what
//! the last wake-up left, the back-off when out of file descriptors).

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::throttle::Throttle;

/// A non-blocking listener on `addr` with SO_REUSEADDR and SO_REUSEPORT.
pub(crate) fn bind_reuseport(addr: SocketAddr, backlog: i32) -> io::Result<mio::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(mio::net::TcpListener::from_std(socket.into()))
}

/// How often a worker may warn that it is out of file descriptors (and say it accepts again).
pub(crate) const EMFILE_LOG_WINDOW: Duration = Duration::from_secs(60);

/// The listener's state beyond the socket.
#[derive(Debug)]
pub(crate) struct AcceptState {
    /// The listener still had connections when the accept bound was hit.
    pub(crate) pending: bool,
    /// Accepting is paused (out of descriptors) until then.
    pub(crate) paused_until: Option<Instant>,
    /// Accepting failed for want of descriptors and has not succeeded since.
    pub(crate) emfile_streak: bool,
    /// The streak's warning was logged (so its end is logged too).
    pub(crate) emfile_logged: bool,
    /// At most one out-of-descriptors warning per [`EMFILE_LOG_WINDOW`].
    pub(crate) emfile_log: Throttle,
    /// Shutting down: the listener is gone.
    pub(crate) stopped: bool,
}

impl Default for AcceptState {
    fn default() -> AcceptState {
        AcceptState {
            pending: false,
            paused_until: None,
            emfile_streak: false,
            emfile_logged: false,
            emfile_log: Throttle::new(EMFILE_LOG_WINDOW, 1),
            stopped: false,
        }
    }
}

impl AcceptState {
    /// Whether the listener has connections waiting that the last wake-up left.
    pub(crate) fn has_pending(&self) -> bool {
        self.pending && !self.stopped
    }

    /// Until when accepting is paused, if it is.
    pub(crate) fn paused_until(&self) -> Option<Instant> {
        self.paused_until
    }

    /// A connection closed: accepting may work again at once.
    pub(crate) fn descriptor_freed(&mut self) {
        if self.paused_until.is_some() {
            self.paused_until = None;
            self.pending = true;
        }
    }

    /// Shutting down: accept nothing more.
    pub(crate) fn stop(&mut self) {
        self.stopped = true;
        self.pending = false;
        self.paused_until = None;
    }
}
