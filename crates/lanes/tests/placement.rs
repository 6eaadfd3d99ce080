//! Upgrades placed on a chosen worker (`Accept::on_worker`, `Accept::on_worker_for`): the
//! connection moves there before `on_open`, with every byte read from it, whatever worker the
//! kernel gave it to.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;

use lanes::{
    Accept, Closed, Config, ConnId, Handler, Message, Request, Upgrade, WorkerContext, Ws,
    worker_for,
};
use lanes_proto::OpCode;
use support::{Client, start_server};

const WORKERS: usize = 2;

/// A player: the room it is in.
struct Player {
    room: String,
}

/// Rooms kept by the worker that owns them, with no lock: each tick sends every room's next
/// state ("state ROOM N") to its players.
struct Rooms {
    index: usize,
    rooms: HashMap<String, (u64, Vec<ConnId>)>,
    /// (the worker that accepted the connection, its room), for every upgrade.
    accepted: mpsc::Sender<(usize, String)>,
}

impl Handler for Rooms {
    type State = Player;

    fn on_upgrade(&mut self, request: &Request<'_>) -> Upgrade<Player> {
        let room = request
            .query()
            .and_then(|q| q.strip_prefix("room="))
            .unwrap_or("lobby")
            .to_string();
        let _ = self.accepted.send((self.index, room.clone()));
        if room == "nowhere" {
            return Upgrade::Accept(Accept::new(Player { room }).on_worker(WORKERS + 5));
        }
        Upgrade::Accept(Accept::new(Player { room: room.clone() }).on_worker_for(&room))
    }

    fn on_open(&mut self, ws: &mut Ws<'_>, player: &mut Player) {
        assert_eq!(usize::from(ws.id().worker), self.index);
        let entry = self.rooms.entry(player.room.clone()).or_default();
        entry.1.push(ws.id());
        ws.send_text(&format!("worker {}", self.index));
    }

    fn on_message(&mut self, ws: &mut Ws<'_>, player: &mut Player, message: Message<'_>) {
        if let Message::Text(text) = message {
            ws.send_text(&format!("{} heard {text}", player.room));
        }
    }

    fn on_close(&mut self, player: Player, closed: &mut Closed<'_>) {
        if let Some((_, ids)) = self.rooms.get_mut(&player.room) {
            ids.retain(|id| *id != closed.id());
        }
    }

    fn on_tick(&mut self, ctx: &mut WorkerContext<'_, Player>) {
        for (room, (seq, ids)) in &mut self.rooms {
            *seq += 1;
            for id in ids.iter() {
                let _ = ctx.send_text(*id, &format!("state {room} {seq}"));
            }
        }
    }
}

fn start() -> (lanes::ServerHandle, mpsc::Receiver<(usize, String)>) {
    let (tx, rx) = mpsc::channel();
    let mut config = Config::default();
    config.timers.tick_interval = Some(Duration::from_millis(10));
    let server = start_server(WORKERS, config, move |info| Rooms {
        index: info.index,
        rooms: HashMap::new(),
        accepted: tx.clone(),
    });
    (server, rx)
}

fn text(client: &mut Client) -> String {
    let frame = client.recv();
    assert_eq!(frame.opcode, OpCode::Text);
    String::from_utf8(frame.payload).unwrap()
}

/// The room state numbers `client` receives next, `count` of them, after any other messages.
fn states(client: &mut Client, room: &str, count: usize) -> Vec<u64> {
    let prefix = format!("state {room} ");
    (0..count)
        .map(|_| {
            let message = text(client);
            message
                .strip_prefix(&prefix)
                .unwrap_or_else(|| panic!("not a state of {room}: {message}"))
                .parse()
                .unwrap()
        })
        .collect()
}

#[test]
fn players_end_on_the_worker_that_owns_their_room_and_get_every_state_in_order() {
    let (server, accepted) = start();
    let addr = server.local_addr();
    let rooms: Vec<String> = (0..5).map(|r| format!("room-{r}")).collect();
    let mut players = Vec::new();
    for i in 0..50 {
        let room = &rooms[i % rooms.len()];
        let stream = TcpStream::connect(addr).unwrap();
        let mut client = Client::handshake_at(stream, &format!("/play?room={room}"));
        // The first message names the worker that opened the connection.
        assert_eq!(
            text(&mut client),
            format!("worker {}", worker_for(room.as_bytes(), WORKERS)),
            "{room}"
        );
        players.push((client, room.clone()));
    }
    // Every player gets its room's states one after another: none lost, none twice.
    for (client, room) in &mut players {
        let seen = states(client, room, 20);
        for pair in seen.windows(2) {
            assert_eq!(pair[1], pair[0] + 1, "{room}: {seen:?}");
        }
    }
    // The kernel spread the connections over both workers, so some moved.
    let accepted: Vec<(usize, String)> = accepted.try_iter().collect();
    assert_eq!(accepted.len(), 50);
    let moved = accepted
        .iter()
        .filter(|(worker, room)| *worker != worker_for(room.as_bytes(), WORKERS))
        .count();
    assert!(moved > 0, "no connection landed on the other worker");
    let stats = server.stats();
    assert_eq!(stats.total().handed_off, moved as u64);
    assert_eq!(stats.total().adopted, moved as u64);
    assert_eq!(stats.total().connections, 50);
    drop(players);
    server.shutdown().unwrap();
}

#[test]
fn frames_sent_right_behind_the_request_move_with_it() {
    let (server, accepted) = start();
    let addr = server.local_addr();
    for i in 0..20 {
        let room = format!("r{i}");
        // The request and two frames in one write: the worker that accepts reads them all.
        let mut bytes = format!(
            "GET /play?room={room} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        )
        .into_bytes();
        bytes.extend(Client::encode(true, OpCode::Text, b"one"));
        bytes.extend(Client::encode(true, OpCode::Text, b"two"));
        let mut client = Client::raw(addr);
        client.send_raw(&bytes);
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            assert_eq!(client.stream.read(&mut byte).unwrap(), 1);
            head.push(byte[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101"), "{room}");
        let owner = worker_for(room.as_bytes(), WORKERS);
        assert_eq!(text(&mut client), format!("worker {owner}"));
        // Both frames were answered by the owner, in order (states may come between).
        let mut heard = Vec::new();
        while heard.len() < 2 {
            let message = text(&mut client);
            if !message.starts_with("state ") {
                heard.push(message);
            }
        }
        assert_eq!(
            heard,
            [format!("{room} heard one"), format!("{room} heard two")]
        );
    }
    let moved = accepted
        .try_iter()
        .filter(|(worker, room)| *worker != worker_for(room.as_bytes(), WORKERS))
        .count();
    assert!(moved > 0, "no connection landed on the other worker");
    server.shutdown().unwrap();
}

#[test]
fn a_placement_on_a_worker_that_does_not_exist_is_answered_500() {
    let (server, _accepted) = start();
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(
            b"GET /play?room=nowhere HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 500"), "{response}");
    assert!(response.contains("does not exist"), "{response}");
    assert_eq!(server.stats().total().handed_off, 0);
    server.shutdown().unwrap();
}
