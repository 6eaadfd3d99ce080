//! One client connection: TCP, TLS when the target is `wss://`, the opening handshake, then
//! frames out of its own buffers and in through lanes-proto's client session.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use lanes_proto::frame::{FrameHeader, RSV1};
use lanes_proto::handshake::{ClientHandshake, ClientRequest, Parsed, ServerResponse};
use lanes_proto::session::{Output, SessionConfig, encode_frame, encode_frame_with};
use lanes_proto::{OpCode, Role};

use crate::rng::Rng;
use crate::tls::Tls;
use crate::transport::Stream;

/// The longest a blocking step of a connection's start may take: the TCP connect, the TLS
/// handshake, the upgrade response.
pub const START_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to `addr`, over TLS configured by `tls` if given, and completes the opening
/// handshake (blocking, with a timeout). A server that sends frames before it was spoken to is
/// an error here (an echo server must not).
pub fn connect_and_upgrade(
    addr: SocketAddr,
    tls: Option<&Tls>,
    rng: &mut Rng,
) -> Result<Stream, String> {
    connect_and_upgrade_offering(addr, tls, rng, None, |_| Ok(())).map(|(stream, ())| stream)
}

/// [`connect_and_upgrade`], offering the `Sec-WebSocket-Extensions` value `extensions` (if
/// any) and handing the server's checked response to `check`, whose value is returned with
/// the stream (or whose error is the connection's).
pub fn connect_and_upgrade_offering<T>(
    addr: SocketAddr,
    tls: Option<&Tls>,
    rng: &mut Rng,
    extensions: Option<&str>,
    check: impl FnOnce(&ServerResponse<'_>) -> Result<T, String>,
) -> Result<(Stream, T), String> {
    let (stream, early, checked) =
        start_upgrade_offering(addr, tls, rng, extensions)?.finish_with(check)?;
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
    stream: Stream,
    handshake: ClientHandshake,
}

/// Connects to `addr` (blocking, with a timeout), completes the TLS handshake when `tls` is
/// given, and sends the upgrade request.
pub fn start_upgrade(
    addr: SocketAddr,
    tls: Option<&Tls>,
    rng: &mut Rng,
) -> Result<PendingUpgrade, String> {
    start_upgrade_offering(addr, tls, rng, None)
}

/// [`start_upgrade`], offering the `Sec-WebSocket-Extensions` value `extensions` if any.
pub fn start_upgrade_offering(
    addr: SocketAddr,
    tls: Option<&Tls>,
    rng: &mut Rng,
    extensions: Option<&str>,
) -> Result<PendingUpgrade, String> {
    start_upgrade_to(addr, tls, rng, extensions, "/")
}

/// [`start_upgrade_offering`], asking for `path` (which may carry a query).
pub fn start_upgrade_to(
    addr: SocketAddr,
    tls: Option<&Tls>,
    rng: &mut Rng,
    extensions: Option<&str>,
    path: &str,
) -> Result<PendingUpgrade, String> {
    let tcp = TcpStream::connect_timeout(&addr, START_TIMEOUT)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut stream = match tls {
        None => Stream::Plain(tcp),
        Some(tls) => {
            tcp.set_read_timeout(Some(START_TIMEOUT))
                .map_err(|e| e.to_string())?;
            Stream::Tls(Box::new(tls.handshake(addr, tcp)?))
        }
    };
    let host = addr.to_string();
    let mut request = Vec::with_capacity(256);
    let offer = ClientRequest {
        extensions,
        ..ClientRequest::new(&host, path)
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
    pub fn finish(self) -> Result<(Stream, Vec<u8>), String> {
        self.finish_with(|_| Ok(()))
            .map(|(stream, early, ())| (stream, early))
    }

    /// [`finish`](Self::finish), handing the server's checked response (its accepted
    /// extensions, for one) to `check`, whose value is returned too or whose error is the
    /// connection's.
    pub fn finish_with<T>(
        self,
        check: impl FnOnce(&ServerResponse<'_>) -> Result<T, String>,
    ) -> Result<(Stream, Vec<u8>, T), String> {
        let PendingUpgrade {
            addr,
            mut stream,
            handshake,
        } = self;
        stream
            .tcp()
            .set_read_timeout(Some(START_TIMEOUT))
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
        stream
            .tcp()
            .set_read_timeout(None)
            .map_err(|e| e.to_string())?;
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
    let header = FrameHeader::new(true, opcode, payload_len as u64);
    encode_frame_with(out, Role::Client, header, key, fill);
}

/// Appends a masked client frame (one whole message) carrying `payload` with RSV1 set: a
/// message compressed with permessage-deflate (RFC 7692 §6).
pub fn push_compressed_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8], key: [u8; 4]) {
    let header = FrameHeader::new(true, opcode, 0).with_rsv(RSV1);
    encode_frame(out, Role::Client, header, payload, key);
}

/// The client session of a load connection: lanes-proto's client role with message and frame
/// limits of `max_message_len`, auto-pong, and no keepalive of its own (a load run is never
/// silent for long, and its end is bounded in time).
pub fn session_config(max_message_len: u64) -> SessionConfig {
    SessionConfig {
        max_frame_len: max_message_len,
        max_message_len,
        ping_interval_us: None,
        ..SessionConfig::client()
    }
}

/// Where a client session's control frames go (pongs, close echoes, our close), masked with
/// keys from `rng`; and what the frames received say about the wire: the payload bytes of the
/// data frames since the last [`take_wire`](Self::take_wire), whether one was compressed, and
/// how many data messages' last frames came.
#[derive(Debug)]
pub struct Wire<'a> {
    /// The connection's output buffer: control frames are queued behind what is there.
    pub out: &'a mut Vec<u8>,
    rng: &'a mut Rng,
    wire_len: u64,
    compressed: bool,
    /// Data frames with FIN set seen so far (messages, delivered or not).
    pub messages_seen: u64,
}

impl<'a> Wire<'a> {
    /// Control frames go to `out`, masked with keys from `rng`.
    pub fn new(out: &'a mut Vec<u8>, rng: &'a mut Rng) -> Wire<'a> {
        Wire {
            out,
            rng,
            wire_len: 0,
            compressed: false,
            messages_seen: 0,
        }
    }

    /// The payload bytes of the data frames received since the last call, as they came
    /// (compressed or not), and whether the message was compressed (RSV1).
    pub fn take_wire(&mut self) -> (u64, bool) {
        let taken = (self.wire_len, self.compressed);
        self.wire_len = 0;
        self.compressed = false;
        taken
    }
}

impl Output for Wire<'_> {
    fn control(&mut self, _opcode: OpCode, frame: &[u8]) {
        self.out.extend_from_slice(frame);
    }

    fn mask_key(&mut self) -> [u8; 4] {
        self.rng.key()
    }

    fn frame_received(&mut self, header: &FrameHeader) {
        if !header.opcode.is_control() {
            self.wire_len += header.payload_len;
            self.compressed |= header.rsv & RSV1 != 0;
            self.messages_seen += u64::from(header.fin);
        }
    }
}
