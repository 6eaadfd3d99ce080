//! Each worker's own listening socket: SO_REUSEADDR + SO_REUSEPORT, so every worker binds the
//! same address and the kernel spreads new connections over them; the check that no one else
//! listens on the port first (unless sharing it is asked for); and each listener's accept
//! state (what the last wake-up left, the back-off when out of file descriptors).

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::SocketTuning;
use crate::error::Error;
use crate::throttle::Throttle;

/// The listeners of `workers` workers on `addr`, and the address they listen on (with the
/// port the kernel chose when `addr` asks for port 0). Unless `tuning.share_port`, fails with
/// an [`io::ErrorKind::AddrInUse`] error when a socket already listens on the port (see
/// [`SocketTuning::share_port`] for what this check cannot see).
pub(crate) fn bind_workers(
    addr: SocketAddr,
    workers: usize,
    tuning: &SocketTuning,
) -> Result<(Vec<mio::net::TcpListener>, SocketAddr), Error> {
    // Port 0 needs no check: the kernel picks a port no socket is bound to.
    if addr.port() != 0 && !tuning.share_port {
        check_unshared(addr).map_err(|source| Error::Bind { addr, source })?;
    }
    // The first listener fixes the port (which matters for port 0); the others bind it too.
    let mut bound = addr;
    let mut listeners = Vec::with_capacity(workers);
    for _ in 0..workers {
        let listener = bind_reuseport(bound, tuning.backlog).map_err(|source| Error::Bind {
            addr: bound,
            source,
        })?;
        bound = listener.local_addr().map_err(|source| Error::Bind {
            addr: bound,
            source,
        })?;
        listeners.push(listener);
    }
    Ok((listeners, bound))
}

/// Fails with [`io::ErrorKind::AddrInUse`] when a socket listens on `addr`'s port, whether
/// with SO_REUSEPORT or not: binds a socket without SO_REUSEPORT (which no listener lets share
/// its port), and closes it at once. It sets SO_REUSEADDR, as the listeners do, so that
/// connections in TIME_WAIT on the port, and bound sockets that do not listen, do not count.
fn check_unshared(addr: SocketAddr) -> io::Result<()> {
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    probe.set_reuse_address(true)?;
    match probe.bind(&addr.into()) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "address in use: another socket listens on (or holds) this port \
             (config.socket.share_port shares it with other SO_REUSEPORT listeners)",
        )),
        result => result,
    }
}

/// A non-blocking listener on `addr` with SO_REUSEADDR and SO_REUSEPORT.
fn bind_reuseport(addr: SocketAddr, backlog: i32) -> io::Result<mio::net::TcpListener> {
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
