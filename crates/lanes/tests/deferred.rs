//! Upgrades answered later (`Request::defer`): accepted or refused from another thread, the
//! deadline's 503, a peer that leaves while it waits, and what a thousand waiting upgrades hold.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use lanes::{
    Accept, Config, DeferError, Handler, HttpResponse, Message, PendingUpgrade, Request, Upgrade,
    Ws,
};
use lanes_proto::OpCode;
use support::{Client, set_nofile, start_server, wait_until};

/// Defers every upgrade but `/now`'s to whoever holds the receiving end of `pending`.
struct Gatekeeper {
    index: usize,
    pending: mpsc::Sender<PendingUpgrade>,
}

impl Handler for Gatekeeper {
    type State = String;
    fn on_upgrade(&mut self, request: &Request<'_>) -> Upgrade<String> {
        if request.path() == "/now" {
            return Upgrade::Accept(Accept::new("now".to_string()));
        }
        self.pending.send(request.defer()).unwrap();
        Upgrade::Defer
    }
    fn on_open(&mut self, ws: &mut Ws<'_>, name: &mut String) {
        ws.send_text(&format!("worker {} {name}", self.index));
    }
    fn on_message(&mut self, ws: &mut Ws<'_>, name: &mut String, message: Message<'_>) {
        if let Message::Text(text) = message {
            ws.send_text(&format!("{name}: {text}"));
        }
    }
}

fn start(
    workers: usize,
    deadline: Duration,
) -> (lanes::ServerHandle, mpsc::Receiver<PendingUpgrade>) {
    let (tx, rx) = mpsc::channel();
    let mut config = Config::default();
    config.timeouts.deferred_upgrade = deadline;
    let server = start_server(workers, config, move |info| Gatekeeper {
        index: info.index,
        pending: tx.clone(),
    });
    (server, rx)
}

fn request(path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// Sends `bytes` on a new connection; returns it, reading with a 10 s timeout.
fn raw(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(bytes).unwrap();
    stream
}

/// Reads the response head, byte by byte (what follows stays in the socket).
fn response_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "closed in the head");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

fn text(client: &mut Client) -> String {
    let frame = client.recv();
    assert_eq!(frame.opcode, OpCode::Text);
    String::from_utf8(frame.payload).unwrap()
}

#[test]
fn an_upgrade_accepted_from_another_thread_opens_with_the_frames_sent_while_it_waited() {
    let (server, pending) = start(2, Duration::from_secs(10));
    // The login service: a thread of the application's.
    let login = thread::spawn(move || {
        for _ in 0..4 {
            let upgrade = pending.recv().unwrap();
            assert_eq!(upgrade.path(), "/play");
            assert_eq!(upgrade.header("host"), Some(&b"localhost"[..]));
            let name = upgrade
                .query()
                .unwrap()
                .strip_prefix("name=")
                .unwrap()
                .to_string();
            thread::sleep(Duration::from_millis(50)); // the service takes its time
            upgrade
                .accept(Accept::new(name).header("X-Checked", "yes"))
                .unwrap();
        }
    });
    for i in 0..4 {
        // The request and a frame behind it: the frame waits with the head.
        let mut bytes = request(&format!("/play?name=p{i}"));
        bytes.extend(Client::encode(true, OpCode::Text, b"early"));
        let mut stream = raw(server.local_addr(), &bytes);
        let head = response_head(&mut stream);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(head.contains("X-Checked: yes"), "{head}");
        let mut client = Client::over(stream);
        assert!(text(&mut client).ends_with(&format!(" p{i}")));
        assert_eq!(text(&mut client), format!("p{i}: early"));
        client.send(true, OpCode::Text, b"later");
        assert_eq!(text(&mut client), format!("p{i}: later"));
    }
    login.join().unwrap();
    assert_eq!(server.stats().total().deferred, 4);
    // Not deferred: answered at once.
    let mut now = Client::handshake_at(TcpStream::connect(server.local_addr()).unwrap(), "/now");
    assert!(text(&mut now).ends_with(" now"));
    server.shutdown().unwrap();
}

#[test]
fn an_upgrade_refused_from_another_thread_gets_its_status_and_body() {
    let (server, pending) = start(1, Duration::from_secs(10));
    let mut stream = raw(server.local_addr(), &request("/play?token=bad"));
    let upgrade = pending.recv_timeout(Duration::from_secs(10)).unwrap();
    thread::spawn(move || {
        upgrade.refuse(HttpResponse::new(401, "bad token")).unwrap();
    })
    .join()
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    assert!(response.ends_with("bad token"), "{response}");
    let total = server.stats().total();
    assert_eq!(total.opened, 0);
    server.shutdown().unwrap();
}

#[test]
fn the_deadline_answers_503_and_a_late_answer_is_told() {
    let (server, pending) = start(1, Duration::from_millis(300));
    let mut stream = raw(server.local_addr(), &request("/play?name=slow"));
    let upgrade = pending.recv_timeout(Duration::from_secs(10)).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert!(!upgrade.is_waiting());
    assert_eq!(
        upgrade.accept(Accept::new("late".to_string())),
        Err(DeferError::TimedOut)
    );
    server.shutdown().unwrap();
}

#[test]
fn a_peer_that_leaves_while_its_upgrade_waits_is_noticed() {
    let (server, pending) = start(1, Duration::from_secs(30));
    let stream = raw(server.local_addr(), &request("/play?name=gone"));
    let upgrade = pending.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(upgrade.is_waiting());
    drop(stream);
    // Noticed well before the 30 s deadline.
    wait_until("the peer's leaving noticed", || !upgrade.is_waiting());
    assert_eq!(
        upgrade.accept(Accept::new("gone".to_string())),
        Err(DeferError::PeerLeft)
    );
    // The worker goes on.
    let mut now = Client::handshake_at(TcpStream::connect(server.local_addr()).unwrap(), "/now");
    assert!(text(&mut now).ends_with(" now"));
    server.shutdown().unwrap();
}

#[test]
fn a_thousand_waiting_upgrades_hold_their_heads_and_no_more() {
    set_nofile(8192);
    let (server, pending) = start(1, Duration::from_secs(60));
    let addr = server.local_addr();
    let mut streams = Vec::new();
    let mut heads = 0;
    for i in 0..1000 {
        let bytes = request(&format!("/play?name=p{i}"));
        heads += bytes.len() as u64;
        streams.push(raw(addr, &bytes));
    }
    let upgrades: Vec<PendingUpgrade> = (0..1000)
        .map(|_| pending.recv_timeout(Duration::from_secs(10)).unwrap())
        .collect();
    // Each waiting connection holds its head, in a buffer of the head's length.
    wait_until("every head counted", || {
        server.stats().total().deferred_bytes == heads
    });
    // Answered, they open and hold nothing of it any more.
    for (i, upgrade) in upgrades.into_iter().enumerate() {
        upgrade.accept(Accept::new(format!("p{i}"))).unwrap();
    }
    for stream in &mut streams[..10] {
        assert!(response_head(stream).starts_with("HTTP/1.1 101"));
    }
    wait_until("every upgrade answered", || {
        server.stats().total().opened == 1000
    });
    assert_eq!(server.stats().total().deferred_bytes, 0);
    server.shutdown().unwrap();
}
