//! A small blocking WebSocket client on lanes-proto's session (client role), for tests over
//! loopback, and an echo server to run it against. What it sends is encoded here (valid or
//! not, as a test needs); what it receives goes through the session, which checks every rule
//! of the server's frames.

#![allow(dead_code, unreachable_pub, missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use lanes::{
    Accept, Config, Cores, Handler, HttpResponse, Message, Request, Server, ServerHandle, Upgrade,
    WorkerInfo, Ws,
};
use lanes_proto::deflate::{DeflateParams, InflateScratch};
use lanes_proto::frame::{FrameHeader, MAX_HEADER_LEN};
use lanes_proto::handshake::{ClientHandshake, ClientRequest, Parsed};
use lanes_proto::mask::apply_mask;
use lanes_proto::session::{Connection, Event, Output, SessionConfig};
use lanes_proto::{CloseFrame, OpCode};

/// A message or control frame as received (a message whole, inflated when it came
/// compressed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Always true: the session delivers whole messages.
    pub fin: bool,
    pub opcode: OpCode,
    /// The RSV bits of the message's first frame ([`lanes_proto::frame::RSV1`]: it came
    /// compressed).
    pub rsv: u8,
    /// The payload bytes of the message's frames on the wire (before inflating).
    pub wire_len: u64,
    pub payload: Vec<u8>,
}

/// What the client's session hands out: the close echo, to be written; the RSV bits of the
/// message now arriving.
struct Wire<'a> {
    out: Vec<u8>,
    /// The RSV bits and wire length of the message being received.
    message: &'a mut (u8, u64),
}

impl Output for Wire<'_> {
    fn control(&mut self, _opcode: OpCode, frame: &[u8]) {
        self.out.extend_from_slice(frame);
    }

    fn mask_key(&mut self) -> [u8; 4] {
        KEY
    }

    fn frame_received(&mut self, header: &FrameHeader) {
        match header.opcode {
            OpCode::Text | OpCode::Binary => *self.message = (header.rsv, header.payload_len),
            OpCode::Continuation => self.message.1 += header.payload_len,
            _ => {}
        }
    }
}

impl Frame {
    /// The close code of a close frame.
    pub fn close_code(&self) -> Option<u16> {
        assert_eq!(self.opcode, OpCode::Close);
        CloseFrame::parse(&self.payload)
            .ok()
            .and_then(|c| c.code.map(|c| c.as_u16()))
    }
}

pub struct Client<S = TcpStream> {
    pub stream: S,
    buf: Vec<u8>,
    session: Connection,
    scratch: InflateScratch,
    /// The RSV bits and wire length of the message being received.
    message: (u8, u64),
}

pub const KEY: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

impl Client {
    /// Connects and completes the handshake.
    pub fn connect(addr: SocketAddr) -> Client {
        Client::handshake(TcpStream::connect(addr).unwrap())
    }

    /// Completes the handshake on a connected stream.
    pub fn handshake(stream: TcpStream) -> Client {
        Client::handshake_with(stream, None).0
    }

    /// Connects offering `extensions`; returns the client and the server's
    /// `Sec-WebSocket-Extensions` answer (empty when it accepted none).
    pub fn connect_with_extensions(addr: SocketAddr, extensions: &str) -> (Client, String) {
        Client::handshake_with(TcpStream::connect(addr).unwrap(), Some(extensions))
    }

    /// Completes the handshake on a connected stream, asking for `path`.
    pub fn handshake_at(stream: TcpStream, path: &str) -> Client {
        Client::handshake_to(stream, path, None).0
    }

    fn handshake_with(stream: TcpStream, extensions: Option<&str>) -> (Client, String) {
        Client::handshake_to(stream, "/", extensions)
    }

    fn handshake_to(stream: TcpStream, path: &str, extensions: Option<&str>) -> (Client, String) {
        Client::wrap(stream).upgrade(path, extensions)
    }

    /// Encodes one masked, final frame with RSV bits.
    pub fn encode_rsv(opcode: OpCode, rsv: u8, payload: &[u8]) -> Vec<u8> {
        Client::encode_frame(
            FrameHeader::new(true, opcode, payload.len() as u64).with_rsv(rsv),
            payload,
        )
    }

    /// Connects without a handshake.
    pub fn raw(addr: SocketAddr) -> Client {
        Client::wrap(TcpStream::connect(addr).unwrap())
    }

    fn wrap(stream: TcpStream) -> Client {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Client::over(stream)
    }

    /// Encodes one masked frame.
    pub fn encode(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        Client::encode_frame(FrameHeader::new(fin, opcode, payload.len() as u64), payload)
    }

    /// Masks `payload` with [`KEY`] under `header`.
    fn encode_frame(header: FrameHeader, payload: &[u8]) -> Vec<u8> {
        let mut bytes = [0u8; MAX_HEADER_LEN];
        let n = header.with_mask(KEY).encode(&mut bytes);
        let mut out = bytes[..n].to_vec();
        let mut body = payload.to_vec();
        apply_mask(&mut body, KEY, 0);
        out.extend_from_slice(&body);
        out
    }
}

impl<S: Read + Write> Client<S> {
    /// A client on any byte stream (a TLS one, say), before the handshake.
    pub fn over(stream: S) -> Client<S> {
        // Pongs are the tests' to send; keepalive is the server's to test.
        let config = SessionConfig {
            max_frame_len: 1 << 30,
            max_message_len: 1 << 30,
            auto_pong: false,
            ping_interval_us: None,
            ..SessionConfig::client()
        };
        Client {
            stream,
            buf: Vec::new(),
            session: Connection::new(config, 0),
            scratch: InflateScratch::new(1 << 30),
            message: (0, 0),
        }
    }

    /// Completes the handshake asking for `path`, offering `extensions`; returns the client
    /// and the server's `Sec-WebSocket-Extensions` answer.
    pub fn upgrade(self, path: &str, extensions: Option<&str>) -> (Client<S>, String) {
        let mut client = self;
        let mut request = Vec::new();
        let mut head = ClientRequest::new("localhost", path);
        head.extensions = extensions;
        let handshake = ClientHandshake::new(&head, [9; 16], &mut request).unwrap();
        client.stream.write_all(&request).unwrap();
        loop {
            client.fill();
            match handshake.handle_response(&client.buf).unwrap() {
                Parsed::Complete(response) => {
                    let answer = response
                        .headers
                        .iter()
                        .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-extensions"))
                        .map(|h| String::from_utf8_lossy(h.value).into_owned())
                        .collect::<Vec<_>>()
                        .join(", ");
                    let len = response.head_len;
                    client.buf.drain(..len);
                    return (client, answer);
                }
                Parsed::Partial => {}
            }
        }
    }

    /// Inflates compressed messages from now on, under the negotiated `params`.
    pub fn enable_deflate(&mut self, params: &DeflateParams) {
        self.session.enable_deflate(params);
    }

    /// Reads more bytes; panics on end of stream.
    fn fill(&mut self) {
        let mut chunk = [0u8; 65536];
        let n = self.stream.read(&mut chunk).expect("read");
        assert!(n > 0, "connection closed");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    pub fn send(&mut self, fin: bool, opcode: OpCode, payload: &[u8]) {
        let bytes = Client::<TcpStream>::encode(fin, opcode, payload);
        self.stream.write_all(&bytes).unwrap();
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads the next message or control frame.
    pub fn recv(&mut self) -> Frame {
        loop {
            if let Some(frame) = self.take_frame() {
                return frame;
            }
            self.fill();
        }
    }

    /// Reads the next message or control frame, or `None` when nothing arrives within the read
    /// timeout.
    pub fn try_recv(&mut self) -> Option<Frame> {
        loop {
            if let Some(frame) = self.take_frame() {
                return Some(frame);
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The next event the bytes received so far complete, if any (a server frame that breaks
    /// the protocol panics). Writes what the session owes the server (a close echo).
    fn take_frame(&mut self) -> Option<Frame> {
        let mut frame = None;
        let mut wire = Wire {
            out: Vec::new(),
            message: &mut self.message,
        };
        let mut used = 0;
        while frame.is_none() && used < self.buf.len() {
            let step = self
                .session
                .handle_bytes(&mut self.buf[used..], &mut self.scratch, 0, &mut wire)
                .expect("the server broke the protocol");
            used += step.used;
            frame = step.event.map(|event| owned(event, *wire.message));
            self.session.receiver.release();
        }
        self.buf.drain(..used);
        if !wire.out.is_empty() {
            let _ = self.stream.write_all(&wire.out);
        }
        frame
    }

    /// Reads everything until the server closes the connection; returns the bytes.
    pub fn read_to_end(&mut self) -> Vec<u8> {
        let mut rest = std::mem::take(&mut self.buf);
        let mut chunk = [0u8; 65536];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return rest,
                Ok(n) => rest.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return rest,
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// Whether the server closed the TCP connection (end of stream or reset) within the read
    /// timeout.
    pub fn is_closed_by_server(&mut self) -> bool {
        let mut chunk = [0u8; 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}

/// An event as an owned frame.
fn owned(event: Event<'_>, (rsv, wire_len): (u8, u64)) -> Frame {
    let (opcode, payload) = match event {
        Event::Text(text) => (OpCode::Text, text.as_bytes().to_vec()),
        Event::Binary(bytes) => (OpCode::Binary, bytes.to_vec()),
        Event::Ping(payload) => (OpCode::Ping, payload.to_vec()),
        Event::Pong(payload) => (OpCode::Pong, payload.to_vec()),
        Event::Close(close) => {
            let mut payload = Vec::new();
            if let Some(code) = close.code {
                payload.extend_from_slice(&code.as_u16().to_be_bytes());
            }
            payload.extend_from_slice(close.reason.as_bytes());
            (OpCode::Close, payload)
        }
    };
    let (rsv, wire_len) = if matches!(opcode, OpCode::Text | OpCode::Binary) {
        (rsv, wire_len)
    } else {
        (0, payload.len() as u64)
    };
    Frame {
        fin: true,
        opcode,
        rsv,
        wire_len,
        payload,
    }
}

/// Descriptors open in this process.
pub fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").unwrap().count() as u64
}

/// Sets the soft RLIMIT_NOFILE; returns the old one.
pub fn set_nofile(soft: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        let old = limit.rlim_cur;
        limit.rlim_cur = soft;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        old
    }
}

/// User plus system CPU time of the whole process.
pub fn cpu_time() -> Duration {
    // SAFETY: rusage is plain data (integers and timevals); all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct passed to it.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) }, 0);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Echoes text and binary messages; refuses the upgrade with 403 on the path `/forbidden`.
pub struct TestEcho;

impl Handler for TestEcho {
    type State = ();
    fn on_upgrade(&mut self, request: &Request<'_>) -> Upgrade<()> {
        if request.path() == "/forbidden" {
            return Upgrade::Refuse(HttpResponse::new(403, "no"));
        }
        Upgrade::Accept(Accept::new(()))
    }
    fn on_message(&mut self, ws: &mut Ws<'_>, _: &mut (), msg: Message<'_>) {
        match msg {
            Message::Text(t) => ws.send_text(t),
            Message::Binary(b) => ws.send_binary(b),
        };
    }
}

/// Starts a server with `workers` unpinned workers on a free loopback port, each running the
/// handler `factory` makes for it.
pub fn start_server<F, H>(workers: usize, config: Config, factory: F) -> ServerHandle
where
    F: Fn(WorkerInfo) -> H + Send + Clone + 'static,
    H: Handler,
{
    Server::new("127.0.0.1:0".parse().unwrap(), factory)
        .cores(Cores::Count(workers))
        .pin(false)
        .config(config)
        .start()
        .unwrap()
}

/// Starts [`TestEcho`] on `workers` workers (see [`start_server`]).
pub fn start_echo(workers: usize, config: Config) -> ServerHandle {
    start_server(workers, config, |_| TestEcho)
}

/// Polls `done` every 5 ms until it holds; panics naming `what` after 10 s. For what the
/// server does just after the client sees its effect (a count after a close frame).
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            std::time::Instant::now() < until,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
