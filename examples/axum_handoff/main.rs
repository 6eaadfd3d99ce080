//! An axum application whose `/ws` route hands its connections to lanes, while its other
//! routes (`/`, `/health`) stay in axum: one port, one process. lanes serves the WebSockets on
//! its per-core workers, each connection on the worker that owns its `room`.
//!
//! ```text
//! cargo run --release -p lanes --example axum_handoff -- [--addr 127.0.0.1:8080]
//! curl http://127.0.0.1:8080/            # axum
//! websocat ws://127.0.0.1:8080/ws?room=7 # lanes: an echo that says which worker serves it
//! ```

#![allow(clippy::print_stderr)] // an example program reports to its terminal

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use lanes::{Config, Server};

mod front;

/// The options.
#[derive(Debug, Parser)]
#[command(about = "axum on one port, its /ws connections handed to lanes")]
struct Args {
    /// The application's address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // lanes' own port is not used here: connections come through the front.
    let lanes = match Server::new(SocketAddr::from(([127, 0, 0, 1], 0)), |info| {
        front::Rooms::new(info.index)
    })
    .config(Config::default())
    .start()
    {
        Ok(lanes) => lanes,
        Err(error) => {
            eprintln!("axum_handoff: {error}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("axum_handoff: {error}");
            return ExitCode::FAILURE;
        }
    };
    let remote = lanes.remote();
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(args.addr).await {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!("axum_handoff: {error}");
                return;
            }
        };
        eprintln!("axum_handoff: listening on {}", args.addr);
        front::serve(listener, remote, front::router()).await;
    });
    ExitCode::SUCCESS
}
