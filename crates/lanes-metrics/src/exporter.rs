//! A small HTTP server for `GET /metrics` on an admin address, apart from the WebSocket port.
//!
//! It serves one request at a time from a thread of its own, with a 2 s limit on reading a
//! request and writing the answer, so a slow or hostile client delays only other scrapes, never
//! a worker.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::prometheus;
use crate::snapshot::Snapshot;

/// The longest request head read.
const MAX_HEAD_LEN: usize = 8 * 1024;
/// The limit on reading a request and on writing its answer.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// A running `/metrics` server; dropping it stops the thread.
///
/// ```no_run
/// use lanes_metrics::{MetricsServer, Registry};
///
/// let registry = Registry::new();
/// let server = MetricsServer::start("127.0.0.1:9464".parse()?, "/metrics", move || registry.snapshot())?;
/// println!("scrape http://{}/metrics", server.local_addr());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stopped: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `addr` and answers `GET <path>` with `source()` in the Prometheus text format;
    /// other paths get 404, other methods 405.
    pub fn start<F>(addr: SocketAddr, path: &str, source: F) -> io::Result<MetricsServer>
    where
        F: Fn() -> Snapshot + Send + 'static,
    {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stopped = Arc::new(AtomicBool::new(false));
        let path = path.to_owned();
        let thread = std::thread::Builder::new()
            .name("lanes-metrics-http".into())
            .spawn({
                let stopped = Arc::clone(&stopped);
                move || {
                    for stream in listener.incoming() {
                        if stopped.load(Ordering::Acquire) {
                            return;
                        }
                        let Ok(stream) = stream else { continue };
                        if let Err(error) = serve(stream, &path, &source) {
                            tracing::debug!(%error, "metrics request failed");
                        }
                    }
                }
            })?;
        Ok(MetricsServer {
            addr,
            stopped,
            thread: Some(thread),
        })
    }

    /// The address it listens on (with the port the system chose, for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::Release);
        // Wake the blocking accept (through loopback when bound to a wildcard address).
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let _ = TcpStream::connect_timeout(&wake, IO_TIMEOUT);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request head and answers it.
fn serve<F: Fn() -> Snapshot>(mut stream: TcpStream, path: &str, source: &F) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let (method, target) = loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {
                break (
                    request.method.unwrap_or("").to_owned(),
                    request.path.unwrap_or("").to_owned(),
                );
            }
            Ok(httparse::Status::Partial) if head.len() < MAX_HEAD_LEN => {}
            _ => {
                return respond(&mut stream, "400 Bad Request", "", b"bad request\n", false);
            }
        }
    };
    let request_path = target.split('?').next().unwrap_or("");
    if request_path != path {
        return respond(&mut stream, "404 Not Found", "", b"not found\n", false);
    }
    if method != "GET" && method != "HEAD" {
        let allow = "Allow: GET, HEAD\r\n";
        return respond(
            &mut stream,
            "405 Method Not Allowed",
            allow,
            b"GET only\n",
            false,
        );
    }
    let body = prometheus::encode(&source());
    let content_type = format!("Content-Type: {}\r\n", prometheus::CONTENT_TYPE);
    respond(
        &mut stream,
        "200 OK",
        &content_type,
        body.as_bytes(),
        method == "HEAD",
    )
}

/// Writes an answer: `headers` are extra header lines (each ending in CRLF; plain text when
/// they name no `Content-Type`); a HEAD answer has the GET answer's length and no body.
fn respond(
    stream: &mut TcpStream,
    status: &str,
    headers: &str,
    body: &[u8],
    head_only: bool,
) -> io::Result<()> {
    let content_type = if headers.contains("Content-Type:") {
        ""
    } else {
        "Content-Type: text/plain; charset=utf-8\r\n"
    };
    let head = format!(
        "HTTP/1.1 {status}\r\n{headers}{content_type}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if !head_only {
        stream.write_all(body)?;
    }
    stream.flush()
}
