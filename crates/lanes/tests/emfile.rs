//! Out of file descriptors: the worker keeps serving its connections and does not spin on the
//! listener. In its own test binary because it lowers the process's RLIMIT_NOFILE.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use lanes::{Accept, Config, Cores, Handler, HttpResponse, Message, Request, Server, Ws};
use lanes_proto::OpCode;
use support::Client;

struct Echo;

impl Handler for Echo {
    type Conn = ();
    fn on_upgrade(&mut self, _: &Request<'_>) -> Result<Accept<()>, HttpResponse> {
        Ok(Accept::new(()))
    }
    fn on_message(&mut self, ws: &mut Ws<'_>, _: &mut (), message: Message<'_>) {
        if let Message::Text(text) = message {
            ws.send_text(text);
        }
    }
}

fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").unwrap().count() as u64
}

fn set_nofile(soft: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        let old = limit.rlim_cur;
        limit.rlim_cur = soft;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        old
    }
}

/// User plus system CPU time of the whole process.
fn cpu_time() -> Duration {
    let mut usage: libc::rusage = unsafe_zeroed();
    // SAFETY: getrusage writes into the struct passed to it.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) }, 0);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn unsafe_zeroed() -> libc::rusage {
    // SAFETY: rusage is plain data (integers and timevals); all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

#[test]
fn out_of_descriptors_keeps_serving_and_does_not_spin() {
    let config = Config {
        accept_backoff: Duration::from_millis(100),
        ..Config::default()
    };
    let handle = Server::new("127.0.0.1:0".parse().unwrap(), |_| Echo)
        .cores(Cores::Count(1))
        .pin(false)
        .config(config)
        .start()
        .unwrap();
    let addr = handle.local_addr();
    let mut served = Client::connect(addr);

    let old = set_nofile(open_fds() + 12);
    let mut pending = Vec::new();
    for _ in 0..40 {
        match TcpStream::connect(addr) {
            Ok(stream) => pending.push(stream),
            Err(_) => break,
        }
    }
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
