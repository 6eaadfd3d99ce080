//! SIGINT and SIGTERM: `ServerHandle::wait` (and so `Server::run`) stops gracefully on the
//! first, the process ends on the second, and `stop_on_signals(false)` leaves signals alone.
//!
//! Each test runs a server in a child process (this test binary again, running the ignored
//! `child_server` with `LANES_SIGNAL_CHILD` set) and signals it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lanes::{Accept, Config, Cores, Handler, Message, Request, Server, Upgrade, Ws};
use lanes_proto::OpCode;
use support::Client;

/// Bytes of the message the child queues on "big".
const BIG: usize = 4 << 20;

/// Echoes; answers "big" with [`BIG`] bytes.
struct BigEcho;

impl Handler for BigEcho {
    type State = ();
    fn on_upgrade(&mut self, _: &Request<'_>) -> Upgrade<()> {
        Upgrade::Accept(Accept::new(()))
    }
    fn on_message(&mut self, ws: &mut Ws<'_>, _: &mut (), message: Message<'_>) {
        match message {
            Message::Text("big") => ws.send_binary(&vec![7u8; BIG]),
            Message::Text(text) => ws.send_text(text),
            Message::Binary(bytes) => ws.send_binary(bytes),
        };
    }
}

/// The server the tests signal: runs only in the child (with `LANES_SIGNAL_CHILD` = `default`
/// or `off`), prints its port, waits, and prints "stopped" when `wait` returned Ok.
#[test]
#[ignore = "run by the other tests in a child process"]
fn child_server() {
    let Ok(mode) = std::env::var("LANES_SIGNAL_CHILD") else {
        return;
    };
    let mut config = Config::default();
    // Long enough that only the second signal can end a shutdown a peer does not answer.
    config.timeouts.shutdown = Duration::from_secs(30);
    config.timeouts.close = Duration::from_secs(30);
    let handle = Server::new("127.0.0.1:0".parse().unwrap(), |_| BigEcho)
        .cores(Cores::Count(1))
        .pin(false)
        .stop_on_signals(mode != "off")
        .config(config)
        .start()
        .unwrap();
    println!("port {}", handle.local_addr().port());
    handle.wait().unwrap();
    println!("stopped");
}

/// The child process and its output lines.
struct Served {
    child: Child,
    addr: SocketAddr,
    lines: mpsc::Receiver<String>,
}

fn spawn_child(mode: &str) -> Served {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_server",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("LANES_SIGNAL_CHILD", mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let port = loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the child printed no port");
        // The harness may have printed the test's name on the same line.
        if let Some((_, port)) = line.split_once("port ") {
            break port.trim().parse::<u16>().unwrap();
        }
    };
    if mode != "off" {
        // The port is printed before `wait` installs the handlers: a signal sent in between
        // would meet the default action. Wait until the kernel says both are caught.
        let caught = (1u64 << (libc::SIGINT - 1)) | (1u64 << (libc::SIGTERM - 1));
        while caught_signals(child.id()) & caught != caught {
            assert!(
                Instant::now() < deadline,
                "the child never caught SIGINT and SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Served {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        lines,
    }
}

/// The signals a process has handlers for (`SigCgt` of /proc/PID/status).
fn caught_signals(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .unwrap_or(0)
}

fn signal(child: &Child, signal: i32) {
    let pid = child.id() as libc::pid_t;
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let sent = unsafe { libc::kill(pid, signal) };
    assert_eq!(sent, 0);
}

/// Waits for the child to end, at most `limit`; its status and how long it took.
fn exit_within(child: &mut Child, limit: Duration) -> (ExitStatus, Duration) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, start.elapsed());
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("the child did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn sigterm_stops_gracefully_with_queued_output_delivered_then_1001() {
    let mut served = spawn_child("default");
    let mut client = Client::connect(served.addr);
    client.send(true, OpCode::Text, b"hello");
    assert_eq!(client.recv().payload, b"hello");
    // 4 MiB queued for a client that is not reading yet.
    client.send(true, OpCode::Text, b"big");
    std::thread::sleep(Duration::from_millis(300));
    signal(&served.child, libc::SIGTERM);
    let big = client.recv();
    assert_eq!((big.opcode, big.payload.len()), (OpCode::Binary, BIG));
    let close = client.recv();
    assert_eq!(close.opcode, OpCode::Close);
    assert_eq!(close.close_code(), Some(1001));
    // The client's echo of the close (written by its session) and its FIN end the shutdown.
    drop(client);
    let (status, _) = exit_within(&mut served.child, Duration::from_secs(20));
    assert!(status.success(), "the child ended with {status:?}");
    let said: Vec<String> = served.lines.try_iter().collect();
    assert!(
        said.iter().any(|l| l.contains("stopped")),
        "child said {said:?}"
    );
}

#[test]
fn sigint_stops_gracefully_too() {
    let mut served = spawn_child("default");
    let mut client = Client::connect(served.addr);
    signal(&served.child, libc::SIGINT);
    let close = client.recv();
    assert_eq!(close.close_code(), Some(1001));
    drop(client);
    let (status, _) = exit_within(&mut served.child, Duration::from_secs(20));
    assert!(status.success(), "the child ended with {status:?}");
}

#[test]
fn a_second_signal_ends_the_process_at_once() {
    let mut served = spawn_child("default");
    // A peer that never answers the close: the graceful shutdown would last 30 s.
    let _silent = Client::connect(served.addr);
    signal(&served.child, libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        served.child.try_wait().unwrap().is_none(),
        "the first signal must not end the process while a peer has not answered"
    );
    signal(&served.child, libc::SIGTERM);
    let (status, took) = exit_within(&mut served.child, Duration::from_secs(5));
    assert_eq!(status.code(), Some(128 + libc::SIGTERM), "{status:?}");
    assert!(took < Duration::from_secs(5));
}

#[test]
fn with_signals_off_the_default_action_applies() {
    let mut served = spawn_child("off");
    let _client = Client::connect(served.addr);
    signal(&served.child, libc::SIGTERM);
    let (status, _) = exit_within(&mut served.child, Duration::from_secs(10));
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
}
