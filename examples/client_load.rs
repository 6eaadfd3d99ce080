//! Echo load from lanes' outbound connections, for scripts/client_cost.sh (beside the same load
//! from tokio-tungstenite's client): CONNS connections from one worker, each keeping DEPTH
//! binary messages of SIZE bytes in flight against an echo server, for SECONDS. Prints
//! `messages=N cpu_s=X`: the messages echoed back, and this process's CPU time (from
//! /proc/self/stat), both from before the first connection to the end.
//!
//! ```text
//! client_load ws://127.0.0.1:9001/ 100 20 16 5
//! ```

#![allow(clippy::print_stdout, clippy::print_stderr)] // a measuring program reports to its terminal

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use lanes::{
    Connect, ConnectFailure, Cores, Handler, HttpResponse, Message, Request, Server, Upgrade,
    WorkerContext, Ws,
};

/// Keeps `depth` messages in flight on each outbound connection; counts the echoes.
struct Load {
    payload: Vec<u8>,
    depth: usize,
    echoed: Arc<AtomicU64>,
    failed: Arc<AtomicBool>,
}

impl Handler for Load {
    type State = ();

    fn on_upgrade(&mut self, _: &Request<'_>) -> Upgrade<()> {
        Upgrade::Refuse(HttpResponse::new(404, ""))
    }

    fn on_open(&mut self, ws: &mut Ws<'_>, _: &mut ()) {
        for _ in 0..self.depth {
            ws.send_binary(&self.payload);
        }
    }

    fn on_message(&mut self, ws: &mut Ws<'_>, _: &mut (), _: Message<'_>) {
        // One uncontended atomic add per echo, as the tokio-tungstenite client counts.
        self.echoed.fetch_add(1, Ordering::Relaxed);
        ws.send_binary(&self.payload);
    }

    fn on_connect_failed(&mut self, _: &mut WorkerContext<'_, ()>, _: (), f: &ConnectFailure) {
        eprintln!("client_load: {f}");
        self.failed.store(true, Ordering::Relaxed);
    }
}

/// This process's CPU time (user and system), from /proc/self/stat (clock ticks of 100 Hz).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    // utime and stime, fields 14 and 15 of stat: the 12th and 13th after the ")".
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let numbers: Vec<usize> = args.iter().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (Some(url), &[conns, size, depth, seconds]) = (args.first(), &numbers[..]) else {
        eprintln!("usage: client_load URL CONNS SIZE DEPTH SECONDS");
        return ExitCode::from(2);
    };
    let echoed = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let (e, f) = (Arc::clone(&echoed), Arc::clone(&failed));
    let mut config = lanes::Config::default();
    // 10 x 16 KiB at depth 1 and 100 x 20 B at depth 16 stay far below the default caps.
    config.limits.max_message_len = 1 << 20;
    let any_port = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let start_cpu = cpu_seconds();
    let server = Server::new(any_port, move |_| Load {
        payload: vec![0x5a; size],
        depth,
        echoed: Arc::clone(&e),
        failed: Arc::clone(&f),
    })
    .cores(Cores::Count(1))
    .pin(false)
    .config(config)
    .start();
    let server = match server {
        Ok(server) => server,
        Err(error) => {
            eprintln!("client_load: {error}");
            return ExitCode::FAILURE;
        }
    };
    for _ in 0..conns {
        let queued = Connect::new(url, ())
            .map_err(|e| e.to_string())
            .and_then(|c| server.remote().connect(0, c).map_err(|e| e.to_string()));
        if let Err(error) = queued {
            eprintln!("client_load: {error}");
            return ExitCode::FAILURE;
        }
    }
    std::thread::sleep(Duration::from_secs(seconds as u64));
    let messages = echoed.load(Ordering::Relaxed);
    let cpu = cpu_seconds() - start_cpu;
    println!("messages={messages} cpu_s={cpu:.3}");
    if failed.load(Ordering::Relaxed) {
        return ExitCode::FAILURE;
    }
    std::process::exit(0);
}
