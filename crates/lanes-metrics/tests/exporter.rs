//! The `/metrics` HTTP server over loopback: the answer, the errors, a client that sends
//! nothing, and stopping.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use lanes_metrics::{MetricsServer, Registry, prometheus};

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }
}

/// Sends `request` as is and reads the answer to the end (the server closes).
fn exchange(addr: SocketAddr, request: &[u8]) -> io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(request)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let mut slots = [httparse::EMPTY_HEADER; 16];
    let mut response = httparse::Response::new(&mut slots);
    let head_len = match response.parse(&raw) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!("not an HTTP response ({other:?}): {raw:?}"),
    };
    let headers: Vec<(String, String)> = response
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_owned(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let response = Response {
        status: response.code.unwrap(),
        headers,
        body: raw[head_len..].to_vec(),
    };
    // A HEAD answer gives the GET answer's length without the body.
    if let Some(length) = response.header("Content-Length")
        && !response.body.is_empty()
    {
        assert_eq!(length.parse::<usize>().unwrap(), response.body.len());
    }
    Ok(response)
}

fn get(addr: SocketAddr, target: &str) -> Response {
    let request = format!("GET {target} HTTP/1.1\r\nHost: test\r\n\r\n");
    exchange(addr, request.as_bytes()).unwrap()
}

fn server_with_counter(value: u64) -> (MetricsServer, lanes_metrics::Counter) {
    let registry = Registry::new();
    let counter = registry
        .counter("test_requests_total", "Requests.", &[("core", "0")])
        .unwrap();
    counter.add(value);
    let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), "/metrics", move || {
        registry.snapshot()
    })
    .unwrap();
    (server, counter)
}

#[test]
fn get_metrics_answers_the_prometheus_text() {
    let (server, counter) = server_with_counter(7);
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);

    let response = get(addr, "/metrics");
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(
        response.header("Content-Type"),
        Some(prometheus::CONTENT_TYPE)
    );
    let text = response.text();
    assert!(
        text.contains("test_requests_total{core=\"0\"} 7\n"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE test_requests_total counter\n"),
        "{text}"
    );
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == "test_requests_total")
        .unwrap();
    assert_eq!(sample.labels.get("core"), Some("0"));
    assert!(matches!(sample.value, prometheus_parse::Value::Counter(v) if v == 7.0));

    // Each scrape reads the source afresh; a query string is ignored.
    counter.add(2);
    let response = get(addr, "/metrics?name[]=x");
    assert_eq!(response.status, 200);
    assert!(
        response
            .text()
            .contains("test_requests_total{core=\"0\"} 9\n")
    );

    // HEAD: the same status and type, no body.
    let response = exchange(addr, b"HEAD /metrics HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("Content-Type"),
        Some(prometheus::CONTENT_TYPE)
    );
    assert!(response.body.is_empty());
    let length: usize = response.header("Content-Length").unwrap().parse().unwrap();
    assert!(length > 0, "HEAD gives the GET answer's length");
}

#[test]
fn wrong_paths_methods_and_garbage_get_errors() {
    let (server, _counter) = server_with_counter(1);
    let addr = server.local_addr();
    assert_eq!(get(addr, "/other").status, 404);
    assert_eq!(get(addr, "/metrics/").status, 404);
    assert_eq!(get(addr, "/").status, 404);
    let post = b"POST /metrics HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(exchange(addr, post).unwrap().status, 405);
    assert_eq!(
        exchange(addr, b"not http at all\r\n\r\n").unwrap().status,
        400
    );
    assert_eq!(exchange(addr, b"\x00\x01\x02\r\n\r\n").unwrap().status, 400);
    // A head that never ends: refused at 8 KiB (sent exactly, so nothing is left unread).
    let mut endless = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
    endless.resize(8 * 1024, b'a');
    assert_eq!(exchange(addr, &endless).unwrap().status, 400);
    // And it still serves.
    assert_eq!(get(addr, "/metrics").status, 200);
}

#[test]
fn a_silent_client_holds_up_the_next_scrape_only_until_the_io_timeout() {
    let (server, _counter) = server_with_counter(3);
    let addr = server.local_addr();
    let silent = TcpStream::connect(addr).unwrap();
    // Let the server take the silent one first.
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    let response = get(addr, "/metrics");
    let took = started.elapsed();
    assert_eq!(response.status, 200);
    assert!(took < Duration::from_secs(3), "served after {took:?}");
    drop(silent);
}

#[test]
fn dropping_the_server_stops_it() {
    let (server, _counter) = server_with_counter(1);
    let addr = server.local_addr();
    assert_eq!(get(addr, "/metrics").status, 200);
    let started = Instant::now();
    drop(server);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "drop took {took:?}");
    // The thread ended and closed the listener.
    let refused = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
    assert!(refused.is_err(), "still listening on {addr}");
}
