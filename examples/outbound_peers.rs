//! lanes' outbound connections against third-party servers: the checks of
//! `scripts/outbound_test.sh`, which starts Python `websockets` and Node `ws` servers
//! (tests/outbound/peer_server.py, peer_server.mjs) and runs this program with their ports.
//!
//! ```text
//! outbound_peers --ca CA.pem --peer python:WS:WS_NCT:WSS --peer node:WS:WS_NCT:WSS \
//!     --silent PORT --drop PORT --bad-accept PORT
//! ```
//!
//! For each peer: messages of 0 B, 125 B, 64 KiB and 1 MiB, text and binary, echoed byte for
//! byte over ws:// and over wss:// (verified against the test CA); the subprotocol the server
//! chose; a request header the server saw; permessage-deflate with and without context
//! takeover (compressed both ways); a 403 refusal. Then a server that never answers, one that
//! drops the connection mid-handshake, and one with an invalid accept value: each a clear
//! error. At the end no connection is left. Prints a PASS or FAIL line per check and exits 1
//! on any failure.

#![allow(clippy::print_stdout, clippy::print_stderr)] // a test program reports to its terminal

use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Parser;
use lanes::{
    Accept, ClientTls, CloseCode, Closed, Config, ConnId, Connect, ConnectError, ConnectFailure,
    Cores, Handler, Message, Remote, Request, Server, Upgrade, WorkerContext, Ws,
};

#[derive(Debug, Parser)]
struct Args {
    /// The test CA the wss:// servers' certificates chain to.
    #[arg(long)]
    ca: std::path::PathBuf,
    /// NAME:WS:WS_NCT:WSS: a peer's ports (deflate with context takeover, without, TLS).
    #[arg(long)]
    peer: Vec<String>,
    /// A port that accepts and never answers.
    #[arg(long)]
    silent: u16,
    /// A port that drops the connection after the request.
    #[arg(long)]
    drop: u16,
    /// A port that answers 101 with a wrong accept value.
    #[arg(long)]
    bad_accept: u16,
}

/// What the handler saw, by check number.
#[derive(Debug)]
enum Event {
    Open(ConnId, Option<String>),
    Text(String),
    Binary(Vec<u8>),
    Closed,
    Failed(ConnectError),
}

struct Checker {
    events: mpsc::Sender<Event>,
}

impl Handler for Checker {
    type State = ();

    fn on_upgrade(&mut self, _: &Request<'_>) -> Upgrade<()> {
        Upgrade::Accept(Accept::new(()))
    }

    fn on_open(&mut self, ws: &mut Ws<'_>, _: &mut ()) {
        let protocol = ws.subprotocol().map(str::to_string);
        let _ = self.events.send(Event::Open(ws.id(), protocol));
    }

    fn on_message(&mut self, _: &mut Ws<'_>, _: &mut (), message: Message<'_>) {
        let _ = self.events.send(match message {
            Message::Text(text) => Event::Text(text.to_string()),
            Message::Binary(bytes) => Event::Binary(bytes.to_vec()),
        });
    }

    fn on_close(&mut self, _: (), _: &mut Closed<'_>) {
        let _ = self.events.send(Event::Closed);
    }

    fn on_connect_failed(&mut self, _: &mut WorkerContext<'_, ()>, _: (), f: &ConnectFailure) {
        let _ = self.events.send(Event::Failed(f.error().clone()));
    }
}

struct Run {
    remote: Remote,
    events: mpsc::Receiver<Event>,
    tls: ClientTls,
    failures: u32,
    passes: u32,
}

const WAIT: Duration = Duration::from_secs(10);

impl Run {
    fn report(&mut self, ok: bool, what: &str) {
        println!("{}: {what}", if ok { "PASS" } else { "FAIL" });
        if ok {
            self.passes += 1;
        } else {
            self.failures += 1;
        }
    }

    fn next(&self) -> Option<Event> {
        self.events.recv_timeout(WAIT).ok()
    }

    /// Connects; the connection's id and the server's subprotocol, or the failure.
    fn open(&self, connect: Connect<()>) -> Result<(ConnId, Option<String>), String> {
        self.remote
            .connect(0, connect.tls(self.tls.clone()))
            .map_err(|e| e.to_string())?;
        match self.next() {
            Some(Event::Open(id, protocol)) => Ok((id, protocol)),
            other => Err(format!("{other:?}")),
        }
    }

    fn close(&self, id: ConnId) -> bool {
        let _ = self.remote.close(id, CloseCode::NORMAL, "");
        let until = Instant::now() + WAIT;
        while Instant::now() < until {
            match self.next() {
                Some(Event::Closed) => return true,
                Some(_) => {}
                None => return false,
            }
        }
        false
    }

    /// Sends each message and waits for it back, intact.
    fn echo(&self, id: ConnId, messages: &[(bool, Vec<u8>)]) -> Result<(), String> {
        for (text, payload) in messages {
            let sent = if *text {
                let text = String::from_utf8(payload.clone()).map_err(|e| e.to_string())?;
                self.remote.send_text(id, &text)
            } else {
                self.remote.send_binary(id, payload)
            };
            sent.map_err(|e| e.to_string())?;
            let ok = match self.next() {
                Some(Event::Text(back)) => *text && back.as_bytes() == payload.as_slice(),
                Some(Event::Binary(back)) => !*text && back == *payload,
                other => return Err(format!("{} B: {other:?}", payload.len())),
            };
            if !ok {
                return Err(format!("{} B came back different", payload.len()));
            }
        }
        Ok(())
    }

    /// Bytes this client sent and received so far.
    fn bytes(&self) -> (u64, u64) {
        let total = self.remote.stats().total();
        (total.bytes_sent, total.bytes_received)
    }

    fn expect_failure(&mut self, what: &str, connect: Connect<()>, ok: fn(&ConnectError) -> bool) {
        let queued = self.remote.connect(0, connect.tls(self.tls.clone()));
        let outcome = match (queued, self.next()) {
            (Ok(()), Some(Event::Failed(error))) => (ok(&error), format!("{error}")),
            (queued, other) => (false, format!("{queued:?} {other:?}")),
        };
        self.report(outcome.0, &format!("{what}: {}", outcome.1));
    }

    fn peer(&mut self, spec: &str) {
        let parts: Vec<&str> = spec.split(':').collect();
        let [name, ws, nct, wss] = parts[..] else {
            self.report(false, &format!("--peer {spec}: NAME:WS:WS_NCT:WSS"));
            return;
        };
        let sizes = [0usize, 125, 64 << 10, 1 << 20];
        let mut messages = Vec::new();
        for size in sizes {
            messages.push((true, "é".repeat(size / 2).into_bytes()));
            messages.push((false, (0..size).map(|i| (i * 31 % 251) as u8).collect()));
        }
        for (scheme, port) in [("ws", ws), ("wss", wss)] {
            // wss:// by name: the certificate is for localhost and 127.0.0.1.
            let url = format!("{scheme}://localhost:{port}/echo");
            let outcome = Connect::new(&url, ())
                .map_err(|e| e.to_string())
                .and_then(|c| self.open(c))
                .and_then(|(id, _)| {
                    self.echo(id, &messages)?;
                    self.close(id).then_some(()).ok_or("no close".to_string())
                });
            let what = format!("{name} {scheme}://: text and binary of 0 B to 1 MiB echoed intact");
            self.report(outcome.is_ok(), &format!("{what} {outcome:?}"));
        }
        let url = format!("ws://127.0.0.1:{ws}/proto");
        let connect = Connect::new(&url, ()).map(|c| c.subprotocol("v2").subprotocol("v1"));
        let outcome = connect
            .map_err(|e| e.to_string())
            .and_then(|c| self.open(c));
        let ok = matches!(&outcome, Ok((_, Some(p))) if p == "v1");
        if let Ok((id, _)) = outcome {
            self.close(id);
        }
        self.report(
            ok,
            &format!("{name}: offered v2, v1; the server chose v1 ({outcome:?})"),
        );
        let url = format!("ws://127.0.0.1:{ws}/headers");
        let connect = Connect::new(&url, ()).map(|c| c.header("Authorization", "Bearer t0ken"));
        let outcome = connect
            .map_err(|e| e.to_string())
            .and_then(|c| self.open(c));
        let seen = match &outcome {
            Ok((id, _)) => {
                let seen = self.next();
                self.close(*id);
                matches!(seen, Some(Event::Text(t)) if t == "Bearer t0ken")
            }
            Err(_) => false,
        };
        self.report(
            seen,
            &format!("{name}: the server saw the Authorization header"),
        );
        for (what, port) in [("with", ws), ("without", nct)] {
            let text = "lanes compresses this line; ".repeat(2400);
            let messages = vec![(true, text.clone().into_bytes()); 3];
            let before = self.bytes();
            let url = format!("ws://127.0.0.1:{port}/echo");
            let outcome = Connect::new(&url, ())
                .map(|c| c.deflate(true))
                .map_err(|e| e.to_string())
                .and_then(|c| self.open(c))
                .and_then(|(id, _)| {
                    self.echo(id, &messages)?;
                    self.close(id).then_some(()).ok_or("no close".to_string())
                });
            let after = self.bytes();
            let (sent, received) = (after.0 - before.0, after.1 - before.1);
            let plain = 3 * text.len() as u64;
            let ok = outcome.is_ok() && sent < plain / 4 && received < plain / 4;
            self.report(
                ok,
                &format!(
                    "{name}: permessage-deflate {what} context takeover: {plain} B of text each \
                     way took {sent} B out, {received} B in ({outcome:?})"
                ),
            );
        }
        if let Ok(connect) = Connect::new(&format!("ws://127.0.0.1:{ws}/forbidden"), ()) {
            self.expect_failure(&format!("{name}: refused with 403"), connect, |e| {
                *e == ConnectError::Status(403)
            });
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let tls = match std::fs::read(&args.ca).map(|pem| ClientTls::with_ca_pem(&pem)) {
        Ok(Ok(tls)) => tls,
        other => {
            eprintln!("outbound_peers: --ca {}: {other:?}", args.ca.display());
            return ExitCode::from(2);
        }
    };
    let (tx, events) = mpsc::channel();
    let any_port = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let server = Server::new(any_port, move |_| Checker { events: tx.clone() })
        .cores(Cores::Count(1))
        .pin(false)
        .config(Config::default())
        .start();
    let server = match server {
        Ok(server) => server,
        Err(error) => {
            eprintln!("outbound_peers: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut run = Run {
        remote: server.remote(),
        events,
        tls,
        failures: 0,
        passes: 0,
    };
    for peer in &args.peer {
        run.peer(peer);
    }
    let short = |port: u16| {
        Connect::new(&format!("ws://127.0.0.1:{port}/"), ())
            .map(|c| c.handshake_timeout(Duration::from_millis(500)))
    };
    if let Ok(connect) = short(args.silent) {
        run.expect_failure("a server that never answers: timed out", connect, |e| {
            *e == ConnectError::HandshakeTimedOut
        });
    }
    if let Ok(connect) = short(args.drop) {
        run.expect_failure("a server that drops mid-handshake", connect, |e| {
            *e == ConnectError::Closed
        });
    }
    if let Ok(connect) = short(args.bad_accept) {
        run.expect_failure(
            "an invalid Sec-WebSocket-Accept",
            connect,
            |e| matches!(e, ConnectError::Handshake(why) if why.contains("Accept")),
        );
    }
    let total = run.remote.stats().total();
    let left = (total.connections, total.buffered_bytes);
    run.report(
        left == (0, 0),
        &format!(
            "nothing left: {} connections, {} bytes buffered",
            left.0, left.1
        ),
    );
    let _ = server.shutdown();
    println!(
        "outbound peers: {} passed, {} failed",
        run.passes, run.failures
    );
    if run.failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
