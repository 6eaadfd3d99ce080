//! Each worker's own listening socket: SO_REUSEADDR + SO_REUSEPORT, so every worker binds the
//! same address and the kernel spreads new connections over them.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

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
