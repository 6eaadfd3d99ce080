//! Loopback stand-ins for InfluxDB: one that records every write, one that never answers, and
//! a port nobody listens on; a small line-protocol reader; a bounded wait.

#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a fake server's connection waits for the next request before closing.
const IDLE: Duration = Duration::from_secs(5);

/// Polls `done` every millisecond until it holds or `limit` passes; whether it held.
pub(crate) fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A port on 127.0.0.1 that refuses connections (bound, noted, closed).
pub(crate) fn dead_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// One request the fake InfluxDB received, and the status it answered.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) method: String,
    /// The request target: path and query.
    pub(crate) target: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
    pub(crate) status: u16,
}

impl Request {
    /// The first header called `name` (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as line protocol.
    pub(crate) fn lines(&self) -> Vec<Line> {
        self.body
            .lines()
            .filter(|l| !l.is_empty())
            .map(parse_line)
            .collect()
    }
}

#[derive(Default)]
struct Log {
    requests: Mutex<Vec<Request>>,
    grew: Condvar,
}

/// A fake InfluxDB write endpoint on 127.0.0.1: parses every request (keep-alive included),
/// reads its `Content-Length` body, records it, and answers `status` (204 unless changed).
pub(crate) struct FakeInflux {
    addr: SocketAddr,
    log: Arc<Log>,
    status: Arc<AtomicU16>,
    delay_ms: Arc<AtomicU64>,
    stopped: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeInflux {
    /// On a port the system picks.
    pub(crate) fn start() -> FakeInflux {
        FakeInflux::on(TcpListener::bind("127.0.0.1:0").unwrap())
    }

    /// On `port` (a port that was closed a moment ago), trying for a second if it is taken.
    pub(crate) fn start_on(port: u16) -> FakeInflux {
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            match TcpListener::bind(("127.0.0.1", port)) {
                Ok(listener) => return FakeInflux::on(listener),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("bind 127.0.0.1:{port}: {e}"),
            }
        }
    }

    fn on(listener: TcpListener) -> FakeInflux {
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Log::default());
        let status = Arc::new(AtomicU16::new(204));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let stopped = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let log = Arc::clone(&log);
            let status = Arc::clone(&status);
            let delay_ms = Arc::clone(&delay_ms);
            let stopped = Arc::clone(&stopped);
            move || {
                for stream in listener.incoming() {
                    if stopped.load(Ordering::Acquire) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let log = Arc::clone(&log);
                    let status = Arc::clone(&status);
                    let delay_ms = Arc::clone(&delay_ms);
                    // Detached: it ends when the client closes or after `IDLE`.
                    std::thread::spawn(move || {
                        let _ = serve_connection(stream, &log, &status, &delay_ms);
                    });
                }
            }
        });
        FakeInflux {
            addr,
            log,
            status,
            delay_ms,
            stopped,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The status later requests get.
    pub(crate) fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::Relaxed);
    }

    /// How long later requests wait before their answer.
    pub(crate) fn set_delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// The requests so far, in the order they were read.
    pub(crate) fn requests(&self) -> Vec<Request> {
        self.log
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits up to `limit` for at least `n` requests; the requests so far.
    pub(crate) fn wait_for(&self, n: usize, limit: Duration) -> Vec<Request> {
        let deadline = Instant::now() + limit;
        let mut requests = self
            .log
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while requests.len() < n {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            requests = self
                .log
                .grew
                .wait_timeout(requests, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        requests.clone()
    }
}

impl Drop for FakeInflux {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::Release);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Serves requests on one connection until the client closes it.
fn serve_connection(
    mut stream: TcpStream,
    log: &Log,
    status: &AtomicU16,
    delay_ms: &AtomicU64,
) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // The head.
        let (head_len, method, target, headers) = loop {
            let mut slots = [httparse::EMPTY_HEADER; 32];
            let mut request = httparse::Request::new(&mut slots);
            match request.parse(&buf) {
                Ok(httparse::Status::Complete(head_len)) => {
                    let headers: Vec<(String, String)> = request
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_owned(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    break (
                        head_len,
                        request.method.unwrap_or("").to_owned(),
                        request.path.unwrap_or("").to_owned(),
                        headers,
                    );
                }
                Ok(httparse::Status::Partial) => {
                    let n = stream.read(&mut chunk)?;
                    if n == 0 {
                        return Ok(());
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                Err(e) => {
                    stream.write_all(
                        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    )?;
                    return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{e:?}")));
                }
            }
        };
        // The body: `Content-Length` bytes (the reporter knows its batch's length).
        let length: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.trim().parse().unwrap())
            .unwrap_or(0);
        assert!(
            !headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding")),
            "expected a Content-Length body, got {headers:?}"
        );
        while buf.len() < head_len + length {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = String::from_utf8(buf[head_len..head_len + length].to_vec()).unwrap();
        buf.drain(..head_len + length);
        let status = status.load(Ordering::Relaxed);
        {
            let mut requests = log.requests.lock().unwrap_or_else(PoisonError::into_inner);
            requests.push(Request {
                method,
                target,
                headers,
                body,
                status,
            });
            log.grew.notify_all();
        }
        std::thread::sleep(Duration::from_millis(delay_ms.load(Ordering::Relaxed)));
        let answer = if status == 204 {
            "HTTP/1.1 204 No Content\r\n\r\n".to_owned()
        } else {
            format!("HTTP/1.1 {status} Nope\r\nContent-Length: 0\r\n\r\n")
        };
        stream.write_all(answer.as_bytes())?;
    }
}

/// A listener on 127.0.0.1 that accepts connections and never reads from or answers them.
pub(crate) struct BlackHole {
    addr: SocketAddr,
    accepted: Arc<Mutex<Vec<Instant>>>,
    stopped: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl BlackHole {
    pub(crate) fn start() -> BlackHole {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let stopped = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let accepted = Arc::clone(&accepted);
            let stopped = Arc::clone(&stopped);
            move || {
                let mut held = Vec::new();
                for stream in listener.incoming() {
                    if stopped.load(Ordering::Acquire) {
                        return;
                    }
                    if let Ok(stream) = stream {
                        held.push(stream);
                        accepted
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(Instant::now());
                    }
                }
            }
        });
        BlackHole {
            addr,
            accepted,
            stopped,
            thread: Some(thread),
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// When each connection so far was accepted.
    pub(crate) fn accepted(&self) -> Vec<Instant> {
        self.accepted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::Release);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One line of line protocol.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Line {
    pub(crate) measurement: String,
    pub(crate) tags: Vec<(String, String)>,
    /// Field names and their values as written (`42i`, `1.5`).
    pub(crate) fields: Vec<(String, String)>,
    pub(crate) timestamp: u64,
}

impl Line {
    /// An integer field (`42i`).
    pub(crate) fn int(&self, field: &str) -> Option<u64> {
        let (_, raw) = self.fields.iter().find(|(n, _)| n == field)?;
        raw.strip_suffix('i')?.parse().ok()
    }
}

/// Parses `measurement[,tag=value...] field=value[,...] timestamp`, panicking on anything
/// else (string field values are not needed here).
pub(crate) fn parse_line(line: &str) -> Line {
    let parts = split_unescaped(line, ' ');
    assert_eq!(parts.len(), 3, "not a line with a timestamp: {line:?}");
    let mut series = split_unescaped(parts[0], ',').into_iter();
    let measurement = unescape(series.next().unwrap());
    assert!(!measurement.is_empty(), "no measurement: {line:?}");
    let pairs = |text: &str| -> Vec<(String, String)> {
        split_unescaped(text, ',')
            .into_iter()
            .map(|pair| {
                let kv = split_unescaped(pair, '=');
                assert_eq!(kv.len(), 2, "not key=value: {pair:?} in {line:?}");
                assert!(!kv[0].is_empty() && !kv[1].is_empty(), "empty in {line:?}");
                (unescape(kv[0]), unescape(kv[1]))
            })
            .collect()
    };
    let tags = series.flat_map(pairs).collect();
    let fields = pairs(parts[1]);
    let timestamp = parts[2]
        .parse()
        .unwrap_or_else(|_| panic!("bad timestamp in {line:?}"));
    Line {
        measurement,
        tags,
        fields,
        timestamp,
    }
}

/// Splits at `delim` where it is not escaped with a backslash; the parts keep their escapes.
fn split_unescaped(text: &str, delim: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == delim {
            parts.push(&text[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&text[start..]);
    parts
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut escaped = false;
    for c in text.chars() {
        if !escaped && c == '\\' {
            escaped = true;
        } else {
            escaped = false;
            out.push(c);
        }
    }
    out
}
