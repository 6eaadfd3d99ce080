//! The echo server: every text or binary message is sent back as it came. It is the Autobahn
//! testee and the benchmark target.
//!
//! ```text
//! cargo run --release --example echo -- [--addr 127.0.0.1:9001] [--cores N | --core-list 0,1] [--no-pin]
//! ```

#![allow(clippy::print_stderr)] // an example program reports to its terminal

use std::net::SocketAddr;
use std::process::ExitCode;

use lanes::{Accept, Cores, Handler, HttpResponse, Message, Request, Server, Ws};

/// Sends every message back.
struct Echo;

impl Handler for Echo {
    type Conn = ();

    fn on_upgrade(&mut self, _request: &Request<'_>) -> Result<Accept<()>, HttpResponse> {
        Ok(Accept::new(()))
    }

    fn on_message(&mut self, ws: &mut Ws<'_>, _conn: &mut (), message: Message<'_>) {
        match message {
            Message::Text(text) => ws.send_text(text),
            Message::Binary(bytes) => ws.send_binary(bytes),
        };
    }
}

struct Args {
    addr: SocketAddr,
    cores: Cores,
    pin: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: SocketAddr::from(([127, 0, 0, 1], 9001)),
        cores: Cores::All,
        pin: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--addr" => {
                let v = value("--addr")?;
                args.addr = v.parse().map_err(|e| format!("bad --addr {v:?}: {e}"))?;
            }
            "--cores" => {
                let v = value("--cores")?;
                let n = v.parse().map_err(|e| format!("bad --cores {v:?}: {e}"))?;
                args.cores = Cores::Count(n);
            }
            "--core-list" => {
                let v = value("--core-list")?;
                let list = v
                    .split(',')
                    .map(|c| c.trim().parse::<usize>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("bad --core-list {v:?}: {e}"))?;
                args.cores = Cores::List(list);
            }
            "--no-pin" => args.pin = false,
            "-h" | "--help" => {
                return Err(
                    "usage: echo [--addr IP:PORT] [--cores N | --core-list A,B] [--no-pin]".into(),
                );
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let server = Server::new(args.addr, |_worker| Echo)
        .cores(args.cores)
        .pin(args.pin);
    eprintln!("echo: listening on {}", args.addr);
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("echo: {error}");
            ExitCode::FAILURE
        }
    }
}
