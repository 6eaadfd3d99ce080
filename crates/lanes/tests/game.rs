//! examples/game driven by a scripted client: players placed on their room's worker after a
//! login checked on another thread, 20 Hz room states in order with every player's moves, a
//! bad token refused with 401, a leave announced, `/health` on the same port.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

#[path = "../../../examples/game/rooms.rs"]
#[allow(dead_code)]
mod rooms;

use std::io::Read;
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lanes::{Config, worker_for};
use lanes_proto::OpCode;
use support::{Client, start_server};

const WORKERS: usize = 2;

fn start() -> lanes::ServerHandle {
    let (logins, pending) = mpsc::channel();
    std::thread::spawn(move || rooms::login_service(pending, Duration::from_millis(2)));
    let mut config = Config::default();
    config.timers.tick_interval = Some(rooms::TICK);
    start_server(WORKERS, config, move |info| {
        rooms::Rooms::new(info.index, logins.clone())
    })
}

fn text(client: &mut Client) -> String {
    let frame = client.recv();
    assert_eq!(frame.opcode, OpCode::Text);
    String::from_utf8(frame.payload).unwrap()
}

fn join(addr: std::net::SocketAddr, room: &str, name: &str) -> Client {
    let path = format!("/play?room={room}&name={name}&token=t-{name}");
    let mut client = Client::handshake_at(TcpStream::connect(addr).unwrap(), &path);
    assert_eq!(
        text(&mut client),
        format!(
            "welcome {name} {room} {}",
            worker_for(room.as_bytes(), WORKERS)
        )
    );
    client
}

/// The next state of `room` the client receives (other lines are collected in `other`):
/// its tick, and each player's name and position.
fn next_state(
    client: &mut Client,
    room: &str,
    other: &mut Vec<String>,
) -> (u64, Vec<(String, i32, i32)>) {
    loop {
        let line = text(client);
        let Some(rest) = line.strip_prefix(&format!("state {room} ")) else {
            other.push(line);
            continue;
        };
        let mut words = rest.split(' ');
        let tick = words.next().unwrap().parse().unwrap();
        let players = words
            .map(|w| {
                let (name, at) = w.split_once(':').unwrap();
                let (x, y) = at.split_once(',').unwrap();
                (name.to_string(), x.parse().unwrap(), y.parse().unwrap())
            })
            .collect();
        return (tick, players);
    }
}

#[test]
fn players_join_their_rooms_worker_and_see_every_state_move_and_leave() {
    let server = start();
    let addr = server.local_addr();
    let rooms = ["alpha", "beta", "gamma"];
    let mut players: Vec<(Client, &str, String)> = Vec::new();
    for i in 0..9 {
        let room = rooms[i % rooms.len()];
        let name = format!("p{i}");
        players.push((join(addr, room, &name), room, name));
    }
    // Every player sees its room's states at every tick, in order, with the room's players.
    let started = Instant::now();
    let mut other = Vec::new();
    for (client, room, _) in &mut players {
        let (first, _) = next_state(client, room, &mut other);
        let mut last = first;
        for _ in 0..10 {
            let (tick, members) = next_state(client, room, &mut other);
            assert_eq!(tick, last + 1, "{room}");
            last = tick;
            assert_eq!(members.len(), 3, "{room}: {members:?}");
        }
    }
    // About 20 states a second (each client read 11 in a row; they ran concurrently).
    assert!(started.elapsed() >= Duration::from_millis(450));
    // Moves show in the next states.
    let (mover, room, name) = &mut players[0];
    mover.send(true, OpCode::Text, b"move 3 -2");
    mover.send(true, OpCode::Text, b"move 50 0"); // clamped to 10
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, members) = next_state(mover, room, &mut other);
        let me = members.iter().find(|(n, _, _)| n == name).unwrap();
        if (me.1, me.2) == (13, -2) {
            break;
        }
        assert!(Instant::now() < deadline, "the move never showed: {me:?}");
    }
    // A leave is announced to the rest of the room.
    let (leaver, room, name) = players.remove(0);
    drop(leaver);
    let announce = format!("left {name}");
    for (client, other_room, _) in players.iter_mut().filter(|(_, r, _)| *r == room) {
        let mut seen = Vec::new();
        while !seen.contains(&announce) {
            let _ = next_state(client, other_room, &mut seen);
        }
    }
    server.shutdown().unwrap();
}

#[test]
fn a_bad_token_gets_401_and_health_answers_on_the_same_port() {
    let server = start();
    let addr = server.local_addr();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    std::io::Write::write_all(
        &mut stream,
        b"GET /play?room=alpha&name=eve&token=t-bob HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
          Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          Sec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    assert!(response.ends_with("bad token\n"), "{response}");

    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    std::io::Write::write_all(&mut stream, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("ok worker "), "{response}");
    assert_eq!(server.stats().total().opened, 0);
    server.shutdown().unwrap();
}
