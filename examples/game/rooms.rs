//! The game's rooms and its login service.
//!
//! A room lives on the worker that owns its name (`worker_for(room)`): every player of a room
//! is placed there at upgrade, so the room is plain data in that worker's handler, stepped by
//! the worker's tick at 20 Hz with no lock anywhere. A player's login token is checked by the
//! login service on a thread of its own (standing in for a call to another service): the
//! upgrade is deferred, and the service accepts it (placed on the room's worker) or refuses it
//! with 401.
//!
//! The protocol, in text messages:
//! - from a player: `move DX DY` (each -10 to 10);
//! - to a player: `welcome NAME ROOM WORKER` once, then every tick
//!   `state ROOM TICK NAME:X,Y NAME:X,Y ...` (players in the order they joined), and
//!   `joined NAME` / `left NAME` as players come and go.

use std::collections::HashMap;
use std::sync::mpsc;
use std::time::Duration;

use lanes::{
    Accept, Closed, ConnId, Handler, HttpResponse, Message, PendingUpgrade, Request, Upgrade,
    WorkerContext, Ws,
};

/// How often every room is stepped.
pub(crate) const TICK: Duration = Duration::from_millis(50);

/// A player: who, where, and in which room.
#[derive(Debug)]
pub(crate) struct Player {
    pub(crate) name: String,
    pub(crate) room: String,
    pub(crate) x: i32,
    pub(crate) y: i32,
}

/// One room, on the worker that owns it.
#[derive(Debug, Default)]
struct Room {
    tick: u64,
    players: Vec<ConnId>,
    /// `joined NAME` lines to send with the next state.
    news: Vec<String>,
}

/// One worker's rooms: its handler.
pub(crate) struct Rooms {
    index: usize,
    rooms: HashMap<String, Room>,
    logins: mpsc::Sender<PendingUpgrade>,
}

impl Rooms {
    /// Worker `index`'s rooms; upgrades are sent to the login service through `logins`.
    pub(crate) fn new(index: usize, logins: mpsc::Sender<PendingUpgrade>) -> Rooms {
        Rooms {
            index,
            rooms: HashMap::new(),
            logins,
        }
    }
}

/// The value of `key` in a query string (`a=1&b=2`), not percent-decoded.
pub(crate) fn query_value<'q>(query: &'q str, key: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

impl Handler for Rooms {
    type State = Player;

    fn on_upgrade(&mut self, request: &Request<'_>) -> Upgrade<Player> {
        let query = request.query().unwrap_or("");
        let valid = request.path() == "/play"
            && query_value(query, "room").is_some_and(|r| !r.is_empty())
            && query_value(query, "name").is_some_and(|n| !n.is_empty());
        if !valid {
            return Upgrade::Refuse(HttpResponse::new(
                400,
                "join at /play?room=ROOM&name=NAME&token=TOKEN\n",
            ));
        }
        // The token is checked by the login service, off this worker.
        if self.logins.send(request.defer()).is_err() {
            return Upgrade::Refuse(HttpResponse::new(503, "login service down\n"));
        }
        Upgrade::Defer
    }

    fn on_http(&mut self, request: &Request<'_>) -> HttpResponse {
        if request.path() == "/health" {
            return HttpResponse::new(200, format!("ok worker {}\n", self.index))
                .content_type("text/plain; charset=utf-8");
        }
        HttpResponse::new(404, "not found\n")
    }

    fn on_open(&mut self, ws: &mut Ws<'_>, player: &mut Player) {
        let room = self.rooms.entry(player.room.clone()).or_default();
        room.players.push(ws.id());
        room.news.push(format!("joined {}", player.name));
        ws.send_text(&format!(
            "welcome {} {} {}",
            player.name, player.room, self.index
        ));
    }

    fn on_message(&mut self, _ws: &mut Ws<'_>, player: &mut Player, message: Message<'_>) {
        let Message::Text(text) = message else {
            return;
        };
        let mut words = text.split(' ');
        if words.next() != Some("move") {
            return;
        }
        let mut step = || {
            words
                .next()
                .and_then(|w| w.parse::<i32>().ok())
                .unwrap_or(0)
                .clamp(-10, 10)
        };
        let (dx, dy) = (step(), step());
        player.x += dx;
        player.y += dy;
    }

    fn on_close(&mut self, player: Player, closed: &mut Closed<'_>) {
        let Some(room) = self.rooms.get_mut(&player.room) else {
            return;
        };
        room.players.retain(|id| *id != closed.id());
        let line = format!("left {}", player.name);
        for id in &room.players {
            let _ = closed.send_text(*id, &line);
        }
        if room.players.is_empty() {
            self.rooms.remove(&player.room);
        }
    }

    fn on_tick(&mut self, ctx: &mut WorkerContext<'_, Player>) {
        let mut state = String::new();
        for (name, room) in &mut self.rooms {
            room.tick += 1;
            state.clear();
            state.push_str(&format!("state {name} {}", room.tick));
            for id in &room.players {
                if let Some(player) = ctx.state(*id) {
                    state.push_str(&format!(" {}:{},{}", player.name, player.x, player.y));
                }
            }
            for line in room.news.drain(..) {
                for id in &room.players {
                    let _ = ctx.send_text(*id, &line);
                }
            }
            for id in &room.players {
                let _ = ctx.send_text(*id, &state);
            }
        }
    }
}

/// Whether `token` lets `name` play: the stand-in for a login service's answer.
pub(crate) fn token_is_valid(name: &str, token: &str) -> bool {
    token.strip_prefix("t-") == Some(name)
}

/// The login service: answers every deferred upgrade from its own thread, after a lookup of
/// `latency` (a call to another service, say): placed on the room's worker, or 401.
pub(crate) fn login_service(logins: mpsc::Receiver<PendingUpgrade>, latency: Duration) {
    for pending in logins {
        if !latency.is_zero() {
            std::thread::sleep(latency);
        }
        if !pending.is_waiting() {
            continue; // the player left, or the deadline passed
        }
        let query = pending.query().unwrap_or("").to_string();
        let room = query_value(&query, "room").unwrap_or("").to_string();
        let name = query_value(&query, "name").unwrap_or("").to_string();
        let token = query_value(&query, "token").unwrap_or("");
        let answer = if token_is_valid(&name, token) {
            let player = Player {
                name,
                room: room.clone(),
                x: 0,
                y: 0,
            };
            pending.accept(Accept::new(player).on_worker_for(&room))
        } else {
            pending.refuse(HttpResponse::new(401, "bad token\n"))
        };
        if let Err(error) = answer {
            tracing::debug!(%error, "login not answered");
        }
    }
}
