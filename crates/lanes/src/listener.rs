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
        let listener = bind_reuseport(bound, tuning).map_err(|source| Error::Bind {
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

/// A non-blocking listener on `addr` with SO_REUSEADDR and SO_REUSEPORT, and the options every
/// accepted connection needs: `TCP_NODELAY` (each write is a whole batch of frames; waiting for
/// more would only add latency) and `SO_SNDBUF` when [`SocketTuning::send_buffer_len`] sets it.
/// Linux copies both to each socket `accept` returns, which saves a `setsockopt` per
/// connection (tested below).
fn bind_reuseport(addr: SocketAddr, tuning: &SocketTuning) -> io::Result<mio::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    if let Some(len) = tuning.send_buffer_len {
        socket.set_send_buffer_size(len)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(tuning.backlog)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What the accept path relies on instead of a `setsockopt` per connection: an accepted
    /// socket has the listener's `TCP_NODELAY` and `SO_SNDBUF`.
    #[test]
    fn accepted_sockets_inherit_the_listeners_options() {
        for send_buffer_len in [None, Some(64 * 1024)] {
            let tuning = SocketTuning {
                send_buffer_len,
                ..SocketTuning::default()
            };
            let listener = bind_reuseport("127.0.0.1:0".parse().unwrap(), &tuning).unwrap();
            let addr = listener.local_addr().unwrap();
            let _client = std::net::TcpStream::connect(addr).unwrap();
            let accepted = loop {
                match listener.accept() {
                    Ok((stream, _)) => break stream,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            };
            assert!(accepted.nodelay().unwrap());
            let sent = socket2::SockRef::from(&accepted)
                .send_buffer_size()
                .unwrap();
            match send_buffer_len {
                // The kernel doubles what is asked, for its bookkeeping.
                Some(len) => assert_eq!(sent, 2 * len),
                None => {
                    let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                    let _c = std::net::TcpStream::connect(plain.local_addr().unwrap()).unwrap();
                    let (other, _) = plain.accept().unwrap();
                    let default = socket2::SockRef::from(&other).send_buffer_size().unwrap();
                    assert_eq!(sent, default);
                    assert!(
                        !other.nodelay().unwrap(),
                        "a plain listener's socket lacks it"
                    );
                }
            }
        }
    }
}
