//! The Autobahn TestSuite's client cases, with lanes' outbound connections as the client under
//! test: against `wstest -m fuzzingserver`, it asks for the number of cases, connects to each
//! case in turn and echoes every message back (text as text, binary as binary, offering
//! permessage-deflate), then asks the fuzzingserver to write its report.
//!
//! ```text
//! cargo run --release --example autobahn_client -- ws://127.0.0.1:9001 lanes-client
//! ```
//!
//! `scripts/autobahn_client.sh` installs wstest, runs the fuzzingserver(s) and this program, and
//! checks the report. The connections are made one after the other from the handler's
//! `on_close` (and `on_connect_failed` ends the run), all on one worker.

#![allow(clippy::print_stderr)] // an example program reports to its terminal

use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use lanes::{
    Closed, Config, Connect, ConnectFailure, Handler, HttpResponse, Message, Remote, Request,
    Server, Upgrade, WorkerContext, Ws,
};

/// Which of the fuzzingserver's URLs a connection is for.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// `/getCaseCount`: one text message, the number of cases.
    Count,
    /// `/runCase?case=N`: echo everything.
    Case(u32),
    /// `/updateReports`: the fuzzingserver writes its report and closes.
    Report,
}

/// The client: one value on the one worker.
struct Client {
    base: String,
    agent: String,
    cases: u32,
    done: mpsc::Sender<Result<u32, String>>,
}

impl Client {
    fn url(&self, step: Step) -> String {
        match step {
            Step::Count => format!("{}/getCaseCount", self.base),
            Step::Case(n) => format!("{}/runCase?case={n}&agent={}", self.base, self.agent),
            Step::Report => format!("{}/updateReports?agent={}", self.base, self.agent),
        }
    }

    fn connect(&self, remote: &Remote, step: Step) {
        let connect = match Connect::new(&self.url(step), step) {
            Ok(connect) => connect.deflate(true),
            Err(error) => {
                let _ = self.done.send(Err(error.to_string()));
                return;
            }
        };
        if let Err(error) = remote.connect(0, connect) {
            let _ = self.done.send(Err(format!("connect not queued: {error}")));
        }
    }
}

impl Handler for Client {
    type State = Step;

    fn on_upgrade(&mut self, _: &Request<'_>) -> Upgrade<Step> {
        Upgrade::Refuse(HttpResponse::new(404, "a client only"))
    }

    fn on_message(&mut self, ws: &mut Ws<'_>, step: &mut Step, message: Message<'_>) {
        match (step, message) {
            (Step::Count, Message::Text(text)) => {
                self.cases = text.trim().parse().unwrap_or(0);
            }
            (Step::Case(_), Message::Text(text)) => {
                ws.send_text(text);
            }
            (Step::Case(_), Message::Binary(bytes)) => {
                ws.send_binary(bytes);
            }
            _ => {}
        }
    }

    fn on_close(&mut self, step: Step, closed: &mut Closed<'_>) {
        let next = match step {
            Step::Count if self.cases == 0 => {
                let _ = self.done.send(Err("the fuzzingserver has no cases".into()));
                return;
            }
            Step::Count => Step::Case(1),
            Step::Case(n) if n < self.cases => Step::Case(n + 1),
            Step::Case(_) => Step::Report,
            Step::Report => {
                let _ = self.done.send(Ok(self.cases));
                return;
            }
        };
        let remote = closed.remote().clone();
        self.connect(&remote, next);
    }

    fn on_connect_failed(
        &mut self,
        _: &mut WorkerContext<'_, Step>,
        step: Step,
        failure: &ConnectFailure,
    ) {
        let _ = self.done.send(Err(format!("{step:?}: {failure}")));
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(base), Some(agent)) = (args.next(), args.next()) else {
        eprintln!("usage: autobahn_client WS_URL AGENT   (the URL of wstest -m fuzzingserver)");
        return ExitCode::from(2);
    };
    let mut config = Config::default();
    // Case 9.* sends messages of up to 16 MiB (and frames as large).
    config.limits.max_message_len = 64 << 20;
    config.limits.max_frame_len = 64 << 20;
    config.backpressure.max_len = 256 << 20;
    config.backpressure.pause_len = 64 << 20;
    // Cases 5.* and 6.* stall mid-message on purpose; the default timeout is far longer.
    config.timeouts.message = Duration::from_secs(60);
    let (done_tx, done_rx) = mpsc::channel();
    let base = base.trim_end_matches('/').to_string();
    let handler_base = base.clone();
    let handler_agent = agent.clone();
    let any_port = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let server = Server::new(any_port, move |_| Client {
        base: handler_base.clone(),
        agent: handler_agent.clone(),
        cases: 0,
        done: done_tx.clone(),
    })
    .cores(lanes::Cores::Count(1))
    .pin(false)
    .config(config)
    .start();
    let server = match server {
        Ok(server) => server,
        Err(error) => {
            eprintln!("autobahn_client: {error}");
            return ExitCode::FAILURE;
        }
    };
    let first = Connect::new(&format!("{base}/getCaseCount"), Step::Count);
    match first.map(|c| server.remote().connect(0, c.deflate(true))) {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            eprintln!("autobahn_client: {error}");
            return ExitCode::FAILURE;
        }
        Err(error) => {
            eprintln!("autobahn_client: {error}");
            return ExitCode::FAILURE;
        }
    }
    let outcome = done_rx.recv();
    let _ = server.shutdown();
    match outcome {
        Ok(Ok(cases)) => {
            eprintln!("autobahn_client: {cases} cases run as agent {agent}, report written");
            ExitCode::SUCCESS
        }
        Ok(Err(error)) => {
            eprintln!("autobahn_client: {error}");
            ExitCode::FAILURE
        }
        Err(_) => ExitCode::FAILURE,
    }
}
