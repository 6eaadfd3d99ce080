//! A connection's byte stream, plain TCP or TLS over it: [`Stream`] while it is blocking (the
//! handshakes, the connect and idle modes, the fanout publisher), [`Transport`] once it is on a
//! mio loop (echo, fanout subscribers).
//!
//! Both are an enum, not a trait object: on the plain path every call is one match and then
//! exactly the socket call it was before (no copy, no dynamic dispatch). The TLS side goes
//! through rustls' buffered [`ClientConnection`].

use std::io::{self, Read, Write};
use std::net::TcpStream;

use rustls::{ClientConnection, StreamOwned};

/// A blocking connection: plain, or TLS once its handshake is done.
#[derive(Debug)]
pub enum Stream {
    /// `ws://`.
    Plain(TcpStream),
    /// `wss://`.
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    /// The TCP connection under it.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(stream) => stream,
            Stream::Tls(tls) => &tls.sock,
        }
    }

    /// The TLS session, if any.
    pub fn tls(&self) -> Option<&ClientConnection> {
        match self {
            Stream::Plain(_) => None,
            Stream::Tls(tls) => Some(&tls.conn),
        }
    }

    /// Makes the connection non-blocking for a mio loop. Returns it with whatever TLS had
    /// already decrypted and not handed out (bytes that no readiness event will announce).
    pub fn into_transport(self) -> io::Result<(Transport, Vec<u8>)> {
        self.tcp().set_nonblocking(true)?;
        match self {
            Stream::Plain(stream) => Ok((
                Transport::Plain(mio::net::TcpStream::from_std(stream)),
                Vec::new(),
            )),
            Stream::Tls(tls) => {
                let StreamOwned { mut conn, sock } = *tls;
                let mut buffered = Vec::new();
                let state = conn.process_new_packets().map_err(tls_error)?;
                take_plaintext(&mut conn, state.plaintext_bytes_to_read(), &mut buffered)?;
                Ok((
                    Transport::Tls(Box::new(TlsTransport {
                        conn,
                        sock: mio::net::TcpStream::from_std(sock),
                    })),
                    buffered,
                ))
            }
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(stream) => stream.read(buf),
            // A TCP end without TLS' close_notify is an end of stream here too: servers often
            // close so after the WebSocket close handshake.
            Stream::Tls(tls) => match tls.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                other => other,
            },
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(stream) => stream.write(buf),
            Stream::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(stream) => stream.flush(),
            Stream::Tls(tls) => tls.flush(),
        }
    }
}

/// A non-blocking connection on a mio loop.
#[derive(Debug)]
pub enum Transport {
    /// `ws://`.
    Plain(mio::net::TcpStream),
    /// `wss://`.
    Tls(Box<TlsTransport>),
}

/// A TLS session over a non-blocking socket.
#[derive(Debug)]
pub struct TlsTransport {
    conn: ClientConnection,
    sock: mio::net::TcpStream,
}

impl Transport {
    /// The socket, to register with mio.
    pub fn source(&mut self) -> &mut mio::net::TcpStream {
        match self {
            Transport::Plain(stream) => stream,
            Transport::Tls(tls) => &mut tls.sock,
        }
    }

    /// Appends what the connection has to `buf`, reading the socket until it would block.
    /// Returns false at the end of the stream (with TLS: close_notify, or the end of TCP).
    pub fn read_available(&mut self, buf: &mut Vec<u8>) -> io::Result<bool> {
        match self {
            Transport::Plain(stream) => read_available(stream, buf),
            Transport::Tls(tls) => tls.read_available(buf),
        }
    }

    /// Reads into `buf` as a non-blocking socket does: `WouldBlock` when nothing is there,
    /// `Ok(0)` at the end of the stream. With TLS a short read does not mean that the socket
    /// is drained (see [`short_read_drains`](Self::short_read_drains)).
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(stream) => stream.read(buf),
            Transport::Tls(tls) => tls.read(buf),
        }
    }

    /// Whether a read shorter than its buffer means that the socket had nothing more (plain
    /// TCP); with TLS, reads stop at record boundaries, so only `WouldBlock` says so.
    pub fn short_read_drains(&self) -> bool {
        matches!(self, Transport::Plain(_))
    }

    /// Writes from `data` as a non-blocking socket does: the bytes taken (with TLS: taken
    /// into rustls' buffer, encrypted and sent as far as the socket takes them; the rest goes
    /// with [`send_pending`](Self::send_pending)), or `WouldBlock`.
    pub fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(stream) => stream.write(data),
            Transport::Tls(tls) => tls.write(data),
        }
    }

    /// Whether encrypted bytes wait for the socket (never on the plain path): a writable event
    /// should call [`send_pending`](Self::send_pending).
    pub fn wants_write(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            Transport::Tls(tls) => tls.conn.wants_write(),
        }
    }

    /// Sends what TLS has encrypted and not sent, until the socket would block (`WouldBlock`
    /// is not an error here). Nothing to do on the plain path.
    pub fn send_pending(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(_) => Ok(()),
            Transport::Tls(tls) => tls.send_pending(),
        }
    }
}

impl TlsTransport {
    fn read_available(&mut self, buf: &mut Vec<u8>) -> io::Result<bool> {
        let mut open = true;
        // rustls reads at most a record's worth at once: read and decrypt until the socket
        // would block (edge-triggered readiness announces only new bytes).
        while open {
            match self.conn.read_tls(&mut self.sock) {
                Ok(0) => open = false,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let state = self.process()?;
            open &= !state.peer_has_closed();
            take_plaintext(&mut self.conn, state.plaintext_bytes_to_read(), buf)?;
        }
        // An answer rustls owes the server (a key update's, an alert).
        self.send_pending()?;
        Ok(open)
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            // Nothing decrypted is waiting: read and decrypt more (WouldBlock goes to the
            // caller; at the end of TCP the reader answers the end of the stream).
            match self.conn.read_tls(&mut self.sock) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            self.process()?;
            self.send_pending()?;
        }
    }

    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.send_pending()?;
        let taken = self.conn.writer().write(data)?;
        self.send_pending()?;
        if taken == 0 && !data.is_empty() {
            // rustls' send buffer is full, and the socket took none of it.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }

    fn send_pending(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Decrypts what was read; a TLS error (with its alert sent, as far as the socket takes
    /// it) is an `InvalidData` error whose text is rustls'.
    fn process(&mut self) -> io::Result<rustls::IoState> {
        match self.conn.process_new_packets() {
            Ok(state) => Ok(state),
            Err(e) => {
                let _ = self.conn.write_tls(&mut self.sock);
                Err(tls_error(e))
            }
        }
    }
}

/// Moves `len` decrypted bytes (what rustls has) from `conn` to the end of `buf`.
fn take_plaintext(conn: &mut ClientConnection, len: usize, buf: &mut Vec<u8>) -> io::Result<()> {
    let at = buf.len();
    buf.resize(at + len, 0);
    let mut filled = 0;
    while filled < len {
        match conn.reader().read(&mut buf[at + filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => {
                buf.truncate(at + filled);
                return Err(e);
            }
        }
    }
    buf.truncate(at + filled);
    Ok(())
}

/// A TLS error as an I/O error, its text rustls' own ("invalid peer certificate: ...").
fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}"))
}

/// Reads what is available into `buf` until the socket would block. Returns false at the end
/// of the stream.
fn read_available(stream: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<bool> {
    let mut chunk = [0u8; 64 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(false),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if n < chunk.len() {
                    return Ok(true);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
