//! The echo server: every text or binary message is sent back as it came. It is the Autobahn
//! testee and the benchmark target. It accepts permessage-deflate offers (context takeover
//! both ways) unless `--no-deflate` is given. `--placement` places every upgrade on a worker
//! (to measure what placing and moving a connection costs, `scripts/placement_cost.sh`).
//!
//! ```text
//! cargo run --release --example echo -- [--addr 127.0.0.1:9001] [--cores N | --core-list 0,1] [--no-pin] [--no-deflate] [--placement kernel|own|next]
//! ```

#![allow(clippy::print_stderr)] // an example program reports to its terminal

use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use lanes::{Accept, Config, DeflateConfig, Handler, Message, Request, Upgrade, Ws};

mod cli;
use cli::ServerArgs;

/// Sends every message back.
struct Echo {
    /// The worker every upgrade is placed on, if any.
    place_on: Option<usize>,
}

impl Handler for Echo {
    type State = ();

    fn on_upgrade(&mut self, _request: &Request<'_>) -> Upgrade<()> {
        let accept = Accept::new(());
        Upgrade::Accept(match self.place_on {
            Some(worker) => accept.on_worker(worker),
            None => accept,
        })
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
    /// Where upgrades are served.
    #[arg(long, value_enum, default_value_t = Placement::Kernel)]
    placement: Placement,
}

/// Where the echo server serves an upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Placement {
    /// On the worker the kernel gave the connection to (no placement asked for).
    Kernel,
    /// Placed on that same worker (`Accept::on_worker`, nothing moves).
    Own,
    /// Placed on the next worker: every connection moves (with one worker, it stays).
    Next,
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::init_logging();
    let mut config = Config::default();
    config.deflate = DeflateConfig {
        enabled: !args.no_deflate,
        ..DeflateConfig::default()
    };
    let placement = args.placement;
    let server = args.server.server(
        move |worker| Echo {
            place_on: match placement {
                Placement::Kernel => None,
                Placement::Own => Some(worker.index),
                Placement::Next => Some((worker.index + 1) % worker.remote.worker_count()),
            },
        },
        config,
    );
    eprintln!("echo: listening on {}", args.server.addr);
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("echo: {error}");
            ExitCode::FAILURE
        }
    }
}
