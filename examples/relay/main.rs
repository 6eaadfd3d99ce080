//! A relay: one outbound connection to an upstream feed (examples/ticker by default, or any
//! `ws://` or `wss://` URL), and every message it receives republished, as it came (text or
//! binary), to the relay's own subscribers on a topic. A connection to the relay is subscribed
//! when it opens; what subscribers send is ignored.
//!
//! ```text
//! cargo run --release --example ticker -- --addr 127.0.0.1:9001 --rate 1000
//! cargo run --release --example relay -- --addr 127.0.0.1:9002 --upstream ws://127.0.0.1:9001/
//! cargo run --release -p lanes-load -- --addr 127.0.0.1:9002 fanout --source server -n 1000
//! ```
//!
//! The upstream connection lives on worker 0 with the subscribers' connections, served by the
//! same handler (its state says which is which). A published message is framed once and
//! shared by every worker; each subscriber's outgoing buffer gets one copy of the frame.
//!
//! The upstream connection reconnects with exponential back-off and jitter (`--backoff-ms`,
//! `--backoff-max-ms`): every loss and every failed attempt is logged with the wait before the
//! next, and subscribers stay connected meanwhile (they simply get nothing until it is back).
//! Nothing needs redoing on reconnection: the relay subscribes nobody upstream.

#![allow(clippy::print_stderr)] // an example program reports to its terminal

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use lanes::{Config, Connect, Reconnect};

#[path = "../cli.rs"]
mod cli;
mod handler;
use cli::ServerArgs;
use handler::{Peer, Relay};

#[derive(Debug, Parser)]
#[command(about = "Republishes an upstream WebSocket feed to the relay's own subscribers")]
struct Args {
    #[command(flatten)]
    server: ServerArgs,
    /// The upstream feed.
    #[arg(long, default_value = "ws://127.0.0.1:9001/")]
    upstream: String,
    /// The topic subscribers get the feed on.
    #[arg(long, default_value = "ticks")]
    topic: String,
    /// The first wait before reconnecting, in milliseconds (doubling up to --backoff-max-ms).
    #[arg(long, default_value_t = 100)]
    backoff_ms: u64,
    /// The longest wait before reconnecting, in milliseconds.
    #[arg(long, default_value_t = 5_000)]
    backoff_max_ms: u64,
    /// A PEM file of CA certificates to trust for a wss:// upstream (default: the Mozilla
    /// roots).
    #[arg(long)]
    upstream_ca: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::init_logging();
    let mut upstream = match Connect::new(&args.upstream, Peer::Upstream) {
        Ok(connect) => connect,
        Err(error) => {
            eprintln!("relay: {error}");
            return ExitCode::from(2);
        }
    };
    upstream = upstream.reconnect(Reconnect {
        initial: Duration::from_millis(args.backoff_ms),
        max: Duration::from_millis(args.backoff_max_ms.max(args.backoff_ms)),
        ..Reconnect::default()
    });
    if let Some(path) = &args.upstream_ca {
        let tls = std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|pem| lanes::ClientTls::with_ca_pem(&pem).map_err(|e| e.to_string()));
        match tls {
            Ok(tls) => upstream = upstream.tls(tls),
            Err(error) => {
                eprintln!("relay: --upstream-ca {}: {error}", path.display());
                return ExitCode::from(2);
            }
        }
    }
    let topic = args.topic.clone();
    let handle = match args
        .server
        .server(
            move |_worker| Relay::new(topic.clone(), None),
            Config::default(),
        )
        .start()
    {
        Ok(handle) => handle,
        Err(error) => {
            eprintln!("relay: {error}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "relay: listening on {}, {} worker(s); republishing {} to \"{}\"",
        handle.local_addr(),
        handle.worker_count(),
        args.upstream,
        args.topic
    );
    if let Err(error) = handle.remote().connect(0, upstream) {
        eprintln!("relay: {error}");
        return ExitCode::FAILURE;
    }
    // Serves until SIGINT or SIGTERM.
    match handle.wait() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("relay: {error}");
            ExitCode::FAILURE
        }
    }
}
