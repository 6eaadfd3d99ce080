//! Connections another server accepted, handed to lanes with `Remote::adopt` together with what
//! that server already read from them: a worker answers the upgrade and serves them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use lanes::{Accept, Config, Handler, Message, Request, SendError, Upgrade, Ws};
use lanes_proto::OpCode;
use support::{Client, start_server};

/// Says which worker opened the connection and what path it asked for, then echoes.
struct Greeter {
    index: usize,
}

impl Handler for Greeter {
    type State = String;
    fn on_upgrade(&mut self, request: &Request<'_>) -> Upgrade<String> {
        Upgrade::Accept(Accept::new(request.path().to_string()))
    }
    fn on_open(&mut self, ws: &mut Ws<'_>, path: &mut String) {
        ws.send_text(&format!("worker {} {path}", self.index));
    }
    fn on_message(&mut self, ws: &mut Ws<'_>, _: &mut String, message: Message<'_>) {
        match message {
            Message::Text(text) => ws.send_text(text),
            Message::Binary(bytes) => ws.send_binary(bytes),
        };
    }
}

/// "Another server": accepts `count` connections and, for each, reads until it has `read_len`
/// bytes of the request (all of it when `None`: up to the end of the head), then hands it to
/// lanes' worker `worker`.
fn front(
    count: usize,
    read_len: Option<usize>,
    remote: lanes::Remote,
    worker: usize,
) -> (std::net::SocketAddr, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = thread::spawn(move || {
        for _ in 0..count {
            let (mut stream, _) = listener.accept().unwrap();
            let mut read = Vec::new();
            let mut byte = [0u8; 1];
            loop {
                let done = match read_len {
                    Some(len) => read.len() >= len,
                    None => read.ends_with(b"\r\n\r\n"),
                };
                if done {
                    break;
                }
                assert_eq!(stream.read(&mut byte).unwrap(), 1);
                read.push(byte[0]);
            }
            remote.adopt(stream, read, worker).unwrap();
        }
    });
    (addr, handle)
}

fn text(client: &mut Client) -> String {
    let frame = client.recv();
    assert_eq!(frame.opcode, OpCode::Text);
    String::from_utf8(frame.payload).unwrap()
}

#[test]
fn a_connection_read_elsewhere_is_upgraded_and_served_by_the_chosen_worker() {
    let server = start_server(2, Config::default(), |info| Greeter { index: info.index });
    for worker in [0, 1] {
        // The whole head read by the other server, or only its first 10 bytes, or nothing.
        for read_len in [None, Some(10), Some(0)] {
            let (addr, front) = front(1, read_len, server.remote(), worker);
            let mut client = Client::handshake_at(TcpStream::connect(addr).unwrap(), "/chat");
            front.join().unwrap();
            assert_eq!(text(&mut client), format!("worker {worker} /chat"));
            client.send(true, OpCode::Text, b"hello");
            assert_eq!(text(&mut client), "hello");
            let big = vec![7u8; 100_000];
            client.send(true, OpCode::Binary, &big);
            assert_eq!(client.recv().payload, big);
        }
    }
    let total = server.stats().total();
    assert_eq!(total.adopted, 6);
    assert_eq!(total.opened, 6);
    server.shutdown().unwrap();
}

#[test]
fn a_plain_request_handed_over_is_answered_by_on_http() {
    let server = start_server(1, Config::default(), |info| Greeter { index: info.index });
    let (addr, front) = front(1, None, server.remote(), 0);
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    std::io::Write::write_all(&mut stream, b"GET /page HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    front.join().unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 426"), "{response}");
    server.shutdown().unwrap();
}

#[test]
fn a_stream_for_a_worker_that_does_not_exist_is_given_back() {
    let server = start_server(1, Config::default(), |info| Greeter { index: info.index });
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (stream, _) = listener.accept().unwrap();
    let local = stream.local_addr().unwrap();
    let (error, back) = server.remote().adopt(stream, Vec::new(), 3).unwrap_err();
    assert_eq!(error, SendError::NoSuchWorker);
    assert_eq!(back.local_addr().unwrap(), local);
    assert_eq!(server.stats().total().adopted, 0);
    drop(client);
    server.shutdown().unwrap();
}
