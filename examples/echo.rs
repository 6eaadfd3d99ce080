//! The echo server: every text or binary message is sent back as it came. It is the Autobahn
//! testee and the benchmark target. It accepts permessage-deflate offers (context takeover
//! both ways) unless `--no-deflate` is given.
//!
//! ```text
//! cargo run --release --example echo -- [--addr 127.0.0.1:9001] [--cores N | --core-list 0,1] [--no-pin] [--no-deflate]
//! ```

#![allow(clippy::print_stderr)] // an example program reports to its terminal

use std::process::ExitCode;

use clap::Parser;
use lanes::{Accept, Config, DeflateConfig, Handler, HttpResponse, Message, Request, Ws};

mod cli;
use cli::ServerArgs;

/// Sends every message back.
struct Echo;

impl Handler for Echo {
    type State = ();

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

/// The echo server's options.
#[derive(Debug, Parser)]
#[command(about = "WebSocket echo server: every text or binary message is sent back as it came")]
struct Args {
    #[command(flatten)]
    server: ServerArgs,
    /// Refuse permessage-deflate offers (accepted by default, with context takeover).
    #[arg(long)]
    no_deflate: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::init_logging();
    let mut config = Config::default();
    config.deflate = DeflateConfig {
        enabled: !args.no_deflate,
        ..DeflateConfig::default()
    };
    let server = args.server.server(|_worker| Echo, config);
    eprintln!("echo: listening on {}", args.server.addr);
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("echo: {error}");
            ExitCode::FAILURE
        }
    }
}
