//! A connection's reads and writes, as system calls of their own.
//!
//! `std`'s and mio's `read` and `write` on a socket call glibc's `recv` and `send`, which are
//! thread cancellation points: each call enables and disables asynchronous cancellation around
//! the system call (about 30 instructions a call, 5% of an echoed message's user-space cost).
//! lanes never cancels threads, so a worker's reads and writes go through rustix, whose Linux
//! backend makes the system call directly. The semantics are the sockets' own: the same
//! errors (`WouldBlock`, `Interrupted`, ...), and `MSG_NOSIGNAL` on every send, as `std` sets
//! it (a write to a reset connection fails with `EPIPE` instead of raising `SIGPIPE`).

use std::io;
use std::os::fd::AsFd;

use rustix::net::{RecvFlags, SendFlags};

/// Reads what the socket has into `buf`: the bytes read, 0 at the end of stream.
#[inline]
pub(crate) fn recv(socket: impl AsFd, buf: &mut [u8]) -> io::Result<usize> {
    let (n, _) = rustix::net::recv(socket, buf, RecvFlags::empty())?;
    Ok(n)
}

/// Writes what the socket takes of `buf`; with `more`, the kernel holds a partial segment
/// back for what follows (`MSG_MORE`: the FIN of a `close` right after).
#[inline]
pub(crate) fn send(socket: impl AsFd, buf: &[u8], more: bool) -> io::Result<usize> {
    let flags = if more {
        SendFlags::NOSIGNAL | SendFlags::MORE
    } else {
        SendFlags::NOSIGNAL
    };
    Ok(rustix::net::send(socket, buf, flags)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};

    #[test]
    fn reads_and_writes_behave_as_the_sockets_own() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (ours, _) = listener.accept().unwrap();
        ours.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64];
        // Nothing to read yet: would block, as a non-blocking read does.
        let error = recv(&ours, &mut buf).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::WouldBlock);
        peer.write_all(b"hello").unwrap();
        let mut got = Vec::new();
        while got.len() < 5 {
            match recv(&ours, &mut buf) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, b"hello");
        assert_eq!(send(&ours, b"abc", false).unwrap(), 3);
        assert_eq!(send(&ours, b"de", true).unwrap(), 2);
        ours.shutdown(Shutdown::Write).unwrap();
        let mut answer = Vec::new();
        peer.read_to_end(&mut answer).unwrap();
        assert_eq!(answer, b"abcde");
        // The end of stream reads as 0.
        peer.shutdown(Shutdown::Write).unwrap();
        ours.set_nonblocking(false).unwrap();
        assert_eq!(recv(&ours, &mut buf).unwrap(), 0);
        // Once the peer is gone, a send fails (EPIPE or a reset), with no SIGPIPE.
        drop(peer);
        let error = loop {
            match send(&ours, &[0; 1024], false) {
                Ok(_) => std::thread::sleep(std::time::Duration::from_millis(1)),
                Err(e) => break e,
            }
        };
        assert!(
            matches!(
                error.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ),
            "{error}"
        );
    }
}
