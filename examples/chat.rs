//! A chat server: it serves its own page at `GET /` and relays every message to everyone in
//! the sender's room, across cores (each room is a topic).
//!
//! ```text
//! cargo run --release --example chat -- [--addr 127.0.0.1:9001] [--cores N] [--no-pin]
//! ```
//! then open <http://127.0.0.1:9001/> in two browser windows.
//!
//! Across nodes: start several, each with `--broker nats://127.0.0.1:4222` (or
//! `redis://127.0.0.1:6379`; build with `--features lanes/nats,lanes/redis`), and a room spans
//! them all (the README's deployment section puts HAProxy in front).
//!
//! Protocol: the page opens `/ws?room=ROOM&name=NAME`; each text message it sends is one
//! chat line; the server sends JSON text messages to everyone in the room (the sender too):
//! `{"type":"message","room":R,"name":N,"text":T}`, and `{"type":"join",...}` /
//! `{"type":"leave",...}` notices.

#![allow(clippy::print_stderr)] // an example program reports to its terminal

use std::process::ExitCode;

use clap::Parser;
use lanes::{
    Accept, CloseCode, Closed, Config, Handler, HttpResponse, Message, Request, Upgrade,
    WorkerInfo, Ws,
};
use serde_json::json;

mod cli;
use cli::ServerArgs;

/// The page, compiled in.
const PAGE: &str = include_str!("chat/index.html");
/// Longest name or room name, in characters.
const MAX_NAME_CHARS: usize = 32;
/// Longest chat line, in bytes.
const MAX_LINE_LEN: u64 = 4096;

/// Who a connection is.
struct Member {
    room: String,
    name: String,
}

/// One per worker.
struct Chat;

/// The topic of a room.
fn topic(room: &str) -> String {
    format!("room:{room}")
}

/// A query parameter, decoded, cut to `MAX_NAME_CHARS`, or `default` when missing or blank.
fn param(query: Option<&str>, key: &str, default: &str) -> String {
    let value = query
        .into_iter()
        .flat_map(|q| form_urlencoded::parse(q.as_bytes()))
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.trim().chars().take(MAX_NAME_CHARS).collect::<String>())
        .unwrap_or_default();
    if value.is_empty() {
        default.to_owned()
    } else {
        value
    }
}

fn notice(kind: &str, member: &Member) -> String {
    json!({"type": kind, "room": member.room, "name": member.name}).to_string()
}

impl Handler for Chat {
    type State = Member;

    fn on_upgrade(&mut self, request: &Request<'_>) -> Upgrade<Member> {
        if request.path() != "/ws" {
            return Upgrade::Refuse(HttpResponse::new(404, "chat sockets live at /ws\n"));
        }
        Upgrade::Accept(Accept::new(Member {
            room: param(request.query(), "room", "lobby"),
            name: param(request.query(), "name", "anon"),
        }))
    }

    fn on_open(&mut self, ws: &mut Ws<'_>, member: &mut Member) {
        let room = topic(&member.room);
        ws.subscribe(&room);
        let _ = ws.publish_text(&room, &notice("join", member));
    }

    fn on_message(&mut self, ws: &mut Ws<'_>, member: &mut Member, message: Message<'_>) {
        match message {
            Message::Text(text) => {
                let line = json!({
                    "type": "message",
                    "room": member.room,
                    "name": member.name,
                    "text": text,
                });
                let _ = ws.publish_text(&topic(&member.room), &line.to_string());
            }
            Message::Binary(_) => ws.close(CloseCode::UNSUPPORTED_DATA, "chat lines are text"),
        }
    }

    fn on_close(&mut self, member: Member, closed: &mut Closed<'_>) {
        let _ = closed.publish_text(&topic(&member.room), &notice("leave", &member));
    }

    fn on_http(&mut self, request: &Request<'_>) -> HttpResponse {
        match (request.method(), request.path()) {
            ("GET", "/" | "/index.html") => HttpResponse::new(200, PAGE)
                .content_type("text/html; charset=utf-8")
                .header("Cache-Control", "no-cache"),
            ("GET", "/ws") => HttpResponse::upgrade_required(),
            _ => HttpResponse::new(404, "not found\n"),
        }
    }
}

/// The chat server's options.
#[derive(Debug, Parser)]
#[command(about = "Chat server: serves its page at / and relays messages within rooms")]
struct Args {
    #[command(flatten)]
    server: ServerArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::init_logging();
    let mut config = Config::default();
    config.limits.max_message_len = MAX_LINE_LEN;
    config.limits.max_frame_len = MAX_LINE_LEN;
    let server = args.server.server(|_: WorkerInfo| Chat, config);
    eprintln!("chat: open http://{}/", args.server.addr);
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("chat: {error}");
            ExitCode::FAILURE
        }
    }
}
