//! Out of file descriptors: the worker keeps serving its connections and does not spin on the
//! listener, also while shutting down; it accepts again once descriptors come back, without a
//! new connection to wake it; and clients cannot make it flood the log. In its own test binary
//! because it lowers the process's RLIMIT_NOFILE (and its tests take turns) and captures the
//! log.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use lanes::{Accept, Config, Cores, Handler, Message, Request, Server, ServerHandle, Upgrade, Ws};
use lanes_proto::OpCode;
use support::{Client, cpu_time, open_fds, set_nofile};

/// The tests here change the process-wide descriptor limit: one at a time.
static LIMIT: Mutex<()> = Mutex::new(());

/// Every line logged in this process (INFO and above, as a production log at the usual level
/// would have them), from the first call on.
fn log() -> &'static Mutex<Vec<u8>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let writer = Captured(Arc::clone(&log));
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        log
    })
}

/// Where the subscriber writes.
#[derive(Clone)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Echo;

impl Handler for Echo {
    type State = ();
    fn on_upgrade(&mut self, _: &Request<'_>) -> Upgrade<()> {
        Upgrade::Accept(Accept::new(()))
    }
    fn on_message(&mut self, ws: &mut Ws<'_>, _: &mut (), message: Message<'_>) {
        if let Message::Text(text) = message {
            ws.send_text(text);
        }
    }
}

/// One echo worker on a loopback port.
fn start_echo(config: Config) -> ServerHandle {
    Server::new("127.0.0.1:0".parse().unwrap(), |_| Echo)
        .cores(Cores::Count(1))
        .pin(false)
        .config(config)
        .start()
        .unwrap()
}

/// Lowers the descriptor limit to `spare` above what is open, then connects until connecting
/// fails (at most `max`); returns the old limit and the connections.
fn exhaust_descriptors(addr: SocketAddr, spare: u64, max: usize) -> (u64, Vec<TcpStream>) {
    let old = set_nofile(open_fds() + spare);
    let mut pending = Vec::new();
    for _ in 0..max {
        match TcpStream::connect(addr) {
            Ok(stream) => pending.push(stream),
            Err(_) => break,
        }
    }
    (old, pending)
}

#[test]
fn out_of_descriptors_keeps_serving_and_does_not_spin() {
    let _one_at_a_time = LIMIT.lock().unwrap_or_else(|e| e.into_inner());
    let mut config = Config::default();
    config.socket.accept_backoff = Duration::from_millis(100);
    let handle = start_echo(config);
    let addr = handle.local_addr();
    let mut served = Client::connect(addr);

    let (old, pending) = exhaust_descriptors(addr, 12, 40);
    // Let the worker run into EMFILE with connections still waiting in the backlog.
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_time();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_time() - before;
    let wall = start.elapsed();
    assert!(
        used < wall / 5,
        "the process used {used:?} of CPU in {wall:?} while out of descriptors"
    );
    // The connection accepted before keeps being served.
    served.send(true, OpCode::Text, b"still here");
    assert_eq!(served.recv().payload, b"still here");

    // Descriptors come back: new connections are accepted and served again.
    set_nofile(old);
    drop(pending);
    let mut fresh = Client::connect(addr);
    fresh.send(true, OpCode::Text, b"new");
    assert_eq!(fresh.recv().payload, b"new");
    handle.shutdown().unwrap();
}

/// Connections waiting in the backlog while the process is out of descriptors: makes `count`
/// sockets, lowers the descriptor limit to what is open and fills any room left below it (so
/// the worker has no descriptor to accept with), then connects the sockets (connecting takes
/// no descriptor). Returns the old limit, the fillers and the connected streams.
fn waiting_at_the_limit(addr: SocketAddr, count: usize) -> (u64, Vec<File>, Vec<TcpStream>) {
    let sockets: Vec<socket2::Socket> = (0..count)
        .map(|_| socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap())
        .collect();
    let old = set_nofile(open_fds());
    let mut fillers = Vec::new();
    while let Ok(file) = File::open("/dev/null") {
        fillers.push(file);
    }
    let streams = sockets
        .into_iter()
        .map(|socket| {
            socket.connect(&addr.into()).unwrap();
            TcpStream::from(socket)
        })
        .collect();
    (old, fillers, streams)
}

#[test]
fn accepting_resumes_when_descriptors_come_back_without_a_new_connection() {
    let _one_at_a_time = LIMIT.lock().unwrap_or_else(|e| e.into_inner());
    let mut config = Config::default();
    config.socket.accept_backoff = Duration::from_millis(100);
    // Nothing else may wake the worker within the test's 5 s: no keepalive pings, and the
    // connection below leaves its handshake deadline on the timer wheel (cancelled, but it
    // still wakes the worker when its slot comes round, every 2.56 s at the default
    // resolution): a minute away, on a wheel that turns once in 512 s.
    config.timeouts.ping_interval = None;
    config.timeouts.handshake = Duration::from_secs(60);
    config.timers.resolution = Duration::from_secs(1);
    let handle = start_echo(config);
    let addr = handle.local_addr();
    let mut served = Client::connect(addr);
    served.send(true, OpCode::Text, b"first");
    assert_eq!(served.recv().payload, b"first");

    const WAITING: usize = 5;
    let (old, fillers, waiting) = waiting_at_the_limit(addr, WAITING);
    // Let the worker run into EMFILE, and back off a few times.
    std::thread::sleep(Duration::from_millis(350));
    assert_eq!(handle.stats().total().accepted, 1, "accepted at the limit");
    // Descriptors come back, but no connection closes and no new one arrives: the end of the
    // back-off alone must bring the worker back to the listener.
    set_nofile(old);
    let start = Instant::now();
    while handle.stats().total().accepted < 1 + WAITING as u64 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{} of {WAITING} waiting clients accepted in 5 s after the limit was raised",
            handle.stats().total().accepted - 1
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!(
        "{WAITING} waiting clients accepted {:?} after the limit was raised",
        start.elapsed()
    );
    for (i, stream) in waiting.into_iter().enumerate() {
        let mut client = Client::handshake(stream);
        let text = format!("waited {i}");
        client.send(true, OpCode::Text, text.as_bytes());
        assert_eq!(client.recv().payload, text.as_bytes());
    }
    served.send(true, OpCode::Text, b"still here");
    assert_eq!(served.recv().payload, b"still here");
    drop((served, fillers));
    handle.shutdown().unwrap();
}

#[test]
fn clients_at_the_limit_cannot_flood_the_log() {
    let _one_at_a_time = LIMIT.lock().unwrap_or_else(|e| e.into_inner());
    let log = log();
    let handle = start_echo(Config::default());
    let addr = handle.local_addr();
    let from = log.lock().unwrap().len();
    // Clients connect and leave as fast as they can, more of them than descriptors allow. Each
    // one that leaves frees a descriptor, so the worker's next accept works and the one after
    // fails again: every client can end a streak of EMFILE and start another.
    let old = set_nofile(open_fds() + 16);
    let mut clients = VecDeque::new();
    let (mut connected, mut refused) = (0u64, 0u64);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        match TcpStream::connect(addr) {
            Ok(stream) => {
                connected += 1;
                clients.push_back(stream);
                if clients.len() > 16 {
                    clients.pop_front();
                }
            }
            Err(_) => {
                // Out of descriptors here too: the oldest client leaves.
                refused += 1;
                clients.pop_front();
            }
        }
    }
    drop(clients);
    set_nofile(old);
    let wall = start.elapsed();
    let text = String::from_utf8(log.lock().unwrap()[from..].to_vec()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let at = |level: &str| lines.iter().filter(|l| l.contains(level)).count();
    let warnings = lines
        .iter()
        .filter(|l| l.contains("out of file descriptors"))
        .count();
    eprintln!(
        "{} lines ({} WARN, {} INFO, {} bytes) logged in {wall:?}: {connected} clients \
         connected, {refused} connects refused for want of descriptors",
        lines.len(),
        at(" WARN "),
        at(" INFO "),
        text.len()
    );
    assert!(
        warnings >= 1,
        "the worker never ran out of descriptors:\n{text}"
    );
    assert!(lines.len() <= 4, "{} lines:\n{text}", lines.len());
    handle.shutdown().unwrap();
}

#[test]
fn shutdown_while_accepting_is_paused_does_not_spin() {
    let _one_at_a_time = LIMIT.lock().unwrap_or_else(|e| e.into_inner());
    let handle = start_echo(Config::default());
    let addr = handle.local_addr();
    // An open client that will not answer the shutdown's close: shutdown lasts close_timeout.
    let _silent = Client::connect(addr);
    // A client still in its handshake: shutdown removes it while accepting is paused.
    let _half = TcpStream::connect(addr).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let (old, _pending) = exhaust_descriptors(addr, 6, 20);
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_time();
    let start = Instant::now();
    handle.shutdown().unwrap();
    let wall = start.elapsed();
    let used = cpu_time() - before;
    set_nofile(old);
    assert!(used < wall / 5, "shutdown used {used:?} of CPU in {wall:?}");
}
