//! examples/axum_handoff: an axum application on one port whose `/ws` connections are handed
//! to lanes (`Remote::adopt`) on the worker that owns their room, while `/` stays in axum.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

#[path = "../../../examples/axum_handoff/front.rs"]
mod front;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use lanes::{Config, worker_for};
use lanes_proto::OpCode;
use support::{Client, start_server};

#[test]
fn ws_connections_go_to_lanes_on_their_rooms_worker_and_the_rest_stays_in_axum() {
    let lanes = start_server(2, Config::default(), |info| front::Rooms::new(info.index));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let remote = lanes.remote();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            front::serve(listener, remote, front::router()).await;
        });
    });

    // axum answers its own routes.
    for _ in 0..3 {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with("hello from axum\n"), "{response}");
    }
    // lanes serves /ws, each connection on its room's worker.
    let mut clients = Vec::new();
    for room in 0..10 {
        let stream = TcpStream::connect(addr).unwrap();
        let mut client = Client::handshake_at(stream, &format!("/ws?room={room}"));
        let first = client.recv();
        assert_eq!(first.opcode, OpCode::Text);
        let owner = worker_for(room.to_string().as_bytes(), 2);
        assert_eq!(
            String::from_utf8(first.payload).unwrap(),
            format!("served by lanes worker {owner}")
        );
        client.send(true, OpCode::Text, b"through lanes");
        assert_eq!(client.recv().payload, b"through lanes");
        clients.push(client);
    }
    let total = lanes.stats().total();
    assert_eq!(total.adopted, 10);
    assert_eq!(total.opened, 10);
    drop(clients);
    lanes.shutdown().unwrap();
}
