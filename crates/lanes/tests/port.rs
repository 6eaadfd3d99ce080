//! Whose port it is: a server does not start on a port another socket listens on (a second
//! server would silently take about half of the new clients through SO_REUSEPORT), unless
//! both ask to share it; a port in TIME_WAIT does not stop a restart.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener};

use lanes::{Config, Cores, Error, Server, ServerHandle};
use lanes_proto::OpCode;
use support::{Client, TestEcho};

/// Starts [`TestEcho`] on `addr` with two workers.
fn start_on(addr: SocketAddr, share_port: bool) -> Result<ServerHandle, Error> {
    let mut config = Config::default();
    config.socket.share_port = share_port;
    Server::new(addr, |_| TestEcho)
        .cores(Cores::Count(2))
        .pin(false)
        .config(config)
        .start()
}

/// The start failed because the address is in use.
fn assert_in_use(result: Result<ServerHandle, Error>, addr: SocketAddr) {
    match result.err().expect("the second start fails") {
        Error::Bind { addr: a, source } => {
            assert_eq!(a, addr);
            assert_eq!(source.kind(), ErrorKind::AddrInUse, "{source}");
        }
        other => panic!("{other}"),
    }
}

/// Clients served by `handle` after each of `clients` new connections to `addr` is echoed.
fn accepted_by(handle: &ServerHandle, addr: SocketAddr, clients: usize) -> u64 {
    let before = handle.stats().total().accepted;
    for _ in 0..clients {
        let mut client = Client::connect(addr);
        client.send(true, OpCode::Text, b"whose?");
        assert_eq!(client.recv().payload, b"whose?");
    }
    handle.stats().total().accepted - before
}

#[test]
fn a_second_server_on_the_port_fails_with_address_in_use() {
    let first = start_on("127.0.0.1:0".parse().unwrap(), false).unwrap();
    let addr = first.local_addr();
    assert_in_use(start_on(addr, false), addr);
    // The first server still has every client.
    assert_eq!(accepted_by(&first, addr, 20), 20);
    // On the wildcard address too (it overlaps the first server's).
    let wildcard = SocketAddr::from(([0, 0, 0, 0], addr.port()));
    assert_in_use(start_on(wildcard, false), wildcard);
    first.shutdown().unwrap();
}

#[test]
fn another_programs_reuseport_listener_stops_the_start() {
    // A listener as another process would open it, SO_REUSEPORT and all.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_reuse_address(true).unwrap();
    socket.set_reuse_port(true).unwrap();
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    socket.listen(16).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    assert_in_use(start_on(addr, false), addr);
    // Shared on purpose, the port is the two programs'.
    let sharing = start_on(addr, true).unwrap();
    sharing.shutdown().unwrap();
}

#[test]
fn servers_that_ask_to_share_the_port_share_it() {
    let first = start_on("127.0.0.1:0".parse().unwrap(), true).unwrap();
    let addr = first.local_addr();
    let second = start_on(addr, true).unwrap();
    assert_eq!(second.local_addr(), addr);
    // The kernel spreads new clients over the four listeners (a hash of the client's port):
    // both servers get some.
    let by_first = accepted_by(&first, addr, 64);
    let by_second = second.stats().total().accepted;
    assert_eq!(by_first + by_second, 64);
    assert!(by_first > 0 && by_second > 0, "{by_first} and {by_second}");
    first.shutdown().unwrap();
    second.shutdown().unwrap();
}

#[test]
fn a_plain_listener_on_the_port_stops_the_start() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    assert_in_use(start_on(addr, false), addr);
    // A listener without SO_REUSEPORT shares with no one, asked or not.
    assert_in_use(start_on(addr, true), addr);
}

/// Whether a socket without SO_REUSEADDR can bind `addr`: not while a connection on the port
/// lingers in TIME_WAIT (or anything else is bound there).
fn plain_bind_works(addr: SocketAddr) -> bool {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&addr.into()).is_ok()
}

#[test]
fn a_port_in_time_wait_does_not_stop_a_restart() {
    let first = start_on("127.0.0.1:0".parse().unwrap(), false).unwrap();
    let addr = first.local_addr();
    // A request the server refuses (400): the server closes first, so its end of the
    // connection, on the listening port, goes through TIME_WAIT.
    let mut client = Client::raw(addr);
    client.send_raw(b"not http\r\n\r\n");
    client.read_to_end();
    drop(client);
    first.shutdown().unwrap();
    // Nothing listens on the port now, yet it is not free: the connection is in TIME_WAIT.
    assert!(!plain_bind_works(addr), "no connection in TIME_WAIT");
    let again = start_on(addr, false).unwrap();
    assert_eq!(accepted_by(&again, addr, 4), 4);
    again.shutdown().unwrap();
}
