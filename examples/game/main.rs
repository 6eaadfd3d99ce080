//! A small multiplayer game server on lanes: rooms placed on workers by key and stepped at
//! 20 Hz by their worker's tick, with no lock anywhere; logins checked by a deferred upgrade
//! answered from another thread (a bad token gets 401); `/health` on the same port.
//!
//! ```text
//! cargo run --release --example game -- [--addr 127.0.0.1:9002] [--cores N] [--login-latency-ms 2]
//! ```
//!
//! Players join at `ws://ADDR/play?room=ROOM&name=NAME&token=t-NAME`; see `rooms.rs` for the
//! protocol.

#![allow(clippy::print_stderr)] // an example program reports to its terminal

use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use clap::Parser;
use lanes::Config;

#[path = "../cli.rs"]
mod cli;
mod rooms;

use cli::ServerArgs;

/// The game server's options.
#[derive(Debug, Parser)]
#[command(about = "Multiplayer game server: rooms on workers by key, 20 Hz, deferred logins")]
struct Args {
    #[command(flatten)]
    server: ServerArgs,
    /// How long the login service takes to check a token.
    #[arg(long, default_value_t = 2)]
    login_latency_ms: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::init_logging();
    let (logins, pending) = mpsc::channel();
    let latency = Duration::from_millis(args.login_latency_ms);
    std::thread::spawn(move || rooms::login_service(pending, latency));
    let mut config = Config::default();
    config.timers.tick_interval = Some(rooms::TICK);
    let server = args.server.server(
        move |worker| rooms::Rooms::new(worker.index, logins.clone()),
        config,
    );
    eprintln!("game: listening on {}", args.server.addr);
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("game: {error}");
            ExitCode::FAILURE
        }
    }
}
