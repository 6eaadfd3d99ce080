//! One client connection: the opening handshake, then frames in and out of its own buffers.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use lanes_proto::frame::{
    FrameConfig, FrameHeader, HeaderDecode, MAX_HEADER_LEN, RSV1, decode_header,
};
use lanes_proto::handshake::{ClientHandshake, ClientRequest, Parsed, ServerResponse};
use lanes_proto::mask::apply_mask;
use lanes_proto::{OpCode, ProtocolError};

use crate::rng::Rng;

/// Connects to `addr` and completes the opening handshake (blocking, with a timeout). A server
/// that sends frames before it was spoken to is an error here (an echo server must not).
pub fn connect_and_upgrade(addr: SocketAddr, rng: &mut Rng) -> Result<TcpStream, String> {
    connect_and_upgrade_offering(addr, rng, None, |_| Ok(())).map(|(stream, ())| stream)
}

/// [`connect_and_upgrade`], offering the `Sec-WebSocket-Extensions` value `extensions` (if
/// any) and handing the server's checked response to `check`, whose value is returned with
/// the stream (or whose error is the connection's).
pub fn connect_and_upgrade_offering<T>(
    addr: SocketAddr,
    rng: &mut Rng,
    extensions: Option<&str>,
    check: impl FnOnce(&ServerResponse<'_>) -> Result<T, String>,
) -> Result<(TcpStream, T), String> {
    let (stream, early, checked) =
        start_upgrade_offering(addr, rng, extensions)?.finish_with(check)?;
    if !early.is_empty() {
        return Err(format!("{addr} sent frames before it was spoken to"));
    }
    Ok((stream, checked))
}

/// A connection whose upgrade request is sent and whose response is still to be read. Many
/// can be started before the first is finished, so a busy server answers them together.
#[derive(Debug)]
pub struct PendingUpgrade {
    addr: SocketAddr,
    stream: TcpStream,
    handshake: ClientHandshake,
}

/// Connects to `addr` (blocking, with a timeout) and sends the upgrade request.
pub fn start_upgrade(addr: SocketAddr, rng: &mut Rng) -> Result<PendingUpgrade, String> {
    start_upgrade_offering(addr, rng, None)
}

/// [`start_upgrade`], offering the `Sec-WebSocket-Extensions` value `extensions` if any.
pub fn start_upgrade_offering(
    addr: SocketAddr,
    rng: &mut Rng,
    extensions: Option<&str>,
) -> Result<PendingUpgrade, String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let host = addr.to_string();
    let mut request = Vec::with_capacity(256);
    let offer = ClientRequest {
        extensions,
        ..ClientRequest::new(&host, "/")
    };
    let handshake =
        ClientHandshake::new(&offer, rng.nonce(), &mut request).map_err(|e| e.to_string())?;
    stream
        .write_all(&request)
        .map_err(|e| format!("cannot send the handshake to {addr}: {e}"))?;
    Ok(PendingUpgrade {
        addr,
        stream,
        handshake,
    })
}

impl PendingUpgrade {
    /// Reads the server's response (blocking, with a timeout); returns the stream and whatever
    /// the server sent after the response head.
    pub fn finish(self) -> Result<(TcpStream, Vec<u8>), String> {
        self.finish_with(|_| Ok(()))
            .map(|(stream, early, ())| (stream, early))
    }

    /// [`finish`](Self::finish), handing the server's checked response (its accepted
    /// extensions, for one) to `check`, whose value is returned too or whose error is the
    /// connection's.
    pub fn finish_with<T>(
        self,
        check: impl FnOnce(&ServerResponse<'_>) -> Result<T, String>,
    ) -> Result<(TcpStream, Vec<u8>, T), String> {
        let PendingUpgrade {
            addr,
            mut stream,
            handshake,
        } = self;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let mut response = Vec::with_capacity(256);
        let mut chunk = [0u8; 1024];
        let (head_len, checked) = loop {
            let n = stream
                .read(&mut chunk)
                .map_err(|e| format!("no handshake response from {addr}: {e}"))?;
            if n == 0 {
                return Err(format!("{addr} closed the connection during the handshake"));
            }
            response.extend_from_slice(&chunk[..n]);
            match handshake.handle_response(&response) {
                Ok(Parsed::Complete(done)) => break (done.head_len, check(&done)?),
                Ok(Parsed::Partial) => {}
                Err(e) => return Err(format!("{addr} refused the upgrade: {e}")),
            }
        };
        stream.set_read_timeout(None).map_err(|e| e.to_string())?;
        response.drain(..head_len);
        Ok((stream, response, checked))
    }
}

/// Appends a masked client frame carrying `payload_len` bytes that `fill` appends.
pub fn push_frame(
    out: &mut Vec<u8>,
    opcode: OpCode,
    payload_len: usize,
    key: [u8; 4],
    fill: impl FnOnce(&mut Vec<u8>),
) {
    let mut header = [0u8; MAX_HEADER_LEN];
    let n = FrameHeader::new(true, opcode, payload_len as u64)
        .with_mask(key)
        .encode(&mut header);
    out.extend_from_slice(&header[..n]);
    let start = out.len();
    fill(out);
    debug_assert_eq!(out.len() - start, payload_len);
    apply_mask(&mut out[start..], key, 0);
}

/// Appends a masked client frame (one whole message) carrying `payload` with RSV1 set: a
/// message compressed with permessage-deflate (RFC 7692 §6).
pub fn push_compressed_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8], key: [u8; 4]) {
    let mut header = [0u8; MAX_HEADER_LEN];
    let n = FrameHeader::new(true, opcode, payload.len() as u64)
        .with_rsv(RSV1)
        .with_mask(key)
        .encode(&mut header);
    out.extend_from_slice(&header[..n]);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], key, 0);
}

/// A frame found in a receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFrame {
    /// Its opcode.
    pub opcode: OpCode,
    /// Whether it is the last frame of its message.
    pub fin: bool,
    /// Whether RSV1 is set: the first frame of a compressed message (permessage-deflate).
    pub compressed: bool,
    /// Where its payload lies in the buffer.
    pub payload: (usize, usize),
    /// Where the next frame starts.
    pub end: usize,
}

/// The next complete server frame at `buf[from..]`, if it is all there. Any RSV bit is an
/// error.
pub fn next_frame(buf: &[u8], from: usize) -> Result<Option<InFrame>, ProtocolError> {
    next_frame_allowing(buf, from, 0)
}

/// [`next_frame`], accepting the RSV bits in `allowed_rsv` on the first frame of a data
/// message ([`RSV1`] once permessage-deflate is agreed).
pub fn next_frame_allowing(
    buf: &[u8],
    from: usize,
    allowed_rsv: u8,
) -> Result<Option<InFrame>, ProtocolError> {
    let config = FrameConfig {
        max_frame_len: 1 << 30,
        allowed_rsv,
        ..FrameConfig::client()
    };
    match decode_header(&buf[from..], &config)? {
        HeaderDecode::NeedMore(_) => Ok(None),
        HeaderDecode::Complete { header, header_len } => {
            let start = from + header_len;
            let end = start + header.payload_len as usize;
            if end > buf.len() {
                return Ok(None);
            }
            Ok(Some(InFrame {
                opcode: header.opcode,
                fin: header.fin,
                compressed: header.rsv & RSV1 != 0,
                payload: (start, end),
                end,
            }))
        }
    }
}

/// Reads what is available into `buf` until the socket would block. Returns false at the end
/// of the stream.
pub fn read_available(stream: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<bool> {
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
