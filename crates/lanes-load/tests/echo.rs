//! The echo mode against a counting echo server made here: `sent_total` is exactly what the
//! server received (warm-up and the messages in flight at the end included, thanks to the
//! close handshake), and lanes-load's own metrics are served on `--prometheus-port` during the
//! run and pushed to InfluxDB (a fake one made here) with the final counts before it exits.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{accept_upgrade, number, serve_counting_echo, spawn_server};

/// What the echo server counted.
#[derive(Default)]
struct Counts {
    /// Data messages received.
    received: AtomicU64,
    /// Close frames received (and answered).
    closes: AtomicU64,
}

/// Starts an echo server on a free loopback port that counts the data messages it receives
/// and answers a close frame with one, after the echoes before it; it runs until the test
/// process ends.
fn echo_server() -> (SocketAddr, Arc<Counts>) {
    let counts = Arc::new(Counts::default());
    let shared = Arc::clone(&counts);
    let addr = spawn_server(move |stream| serve(stream, &shared));
    (addr, counts)
}

fn serve(mut stream: TcpStream, counts: &Counts) {
    let Some(buf) = accept_upgrade(&mut stream) else {
        return;
    };
    serve_counting_echo(&mut stream, buf, &counts.received, &counts.closes);
}

/// A fake InfluxDB: answers every request with 204 and keeps (request line, body).
type Writes = Arc<Mutex<Vec<(String, String)>>>;

fn fake_influx() -> (SocketAddr, Writes) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let writes: Writes = Arc::default();
    let shared = Arc::clone(&writes);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let writes = Arc::clone(&shared);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                // Requests one after another on a kept-alive connection.
                loop {
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        reader.read_line(&mut line).unwrap();
                        let line = line.trim_end();
                        if line.is_empty() {
                            break;
                        }
                        let (name, value) = line.split_once(':').unwrap();
                        if name.eq_ignore_ascii_case("content-length") {
                            length = value.trim().parse().unwrap();
                        }
                        assert!(!name.eq_ignore_ascii_case("transfer-encoding"), "{line}");
                    }
                    let mut body = vec![0u8; length];
                    reader.read_exact(&mut body).unwrap();
                    writes.lock().unwrap().push((
                        request_line.trim_end().to_owned(),
                        String::from_utf8(body).unwrap(),
                    ));
                    stream
                        .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                        .unwrap();
                }
            });
        }
    });
    (addr, writes)
}

fn lanes_load(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lanes-load"))
        .args(args)
        .output()
        .unwrap()
}

fn summary(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "no JSON: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[test]
fn sent_total_is_exactly_what_the_server_received() {
    for (threads, extra) in [
        ("1", &["-c", "3", "-d", "16", "-s", "200"][..]),
        (
            "2",
            &["-c", "5", "-d", "64", "-s", "3000", "--kind", "text"],
        ),
        // More in flight than the socket buffers hold: a backlog to write at the end.
        ("1", &["-c", "2", "-d", "512", "-s", "16384"]),
    ] {
        let (addr, counts) = echo_server();
        let addr = addr.to_string();
        let mut args = vec![
            "--addr",
            &addr,
            "--threads",
            threads,
            "--json",
            "--quiet",
            "--duration",
            "0.5",
            "--warmup",
            "0.2",
            "echo",
        ];
        args.extend_from_slice(extra);
        let output = lanes_load(&args);
        let summary = summary(&output);
        assert_eq!(output.status.code(), Some(0), "{summary}");
        assert_eq!(summary["errors"], 0, "{summary}");
        let sent_total = number(&summary, "sent_total");
        // Warm-up included: more than the window's.
        assert!(sent_total > number(&summary, "sent"), "{summary}");
        assert_eq!(
            counts.received.load(Ordering::SeqCst),
            sent_total,
            "{summary}"
        );
        // Every connection closed with the handshake, after its last message.
        let connections = number(&summary, "connections");
        assert_eq!(counts.closes.load(Ordering::SeqCst), connections);
    }
}

/// The open loop: 200 messages/s over 3 connections, whatever the echoes. The window (1 s
/// from 0.2 s) holds exactly the 200 messages due in it (k / 200 s for k = 40..240), the
/// rate sent is the rate asked, the schedule is kept (the bound is 10 intervals, 50 ms), and
/// the server got every message sent.
#[test]
fn the_open_loop_sends_on_its_schedule_whatever_the_echoes() {
    let (addr, counts) = echo_server();
    let addr = addr.to_string();
    let output = lanes_load(&[
        "--addr",
        &addr,
        "--json",
        "--quiet",
        "--duration",
        "1",
        "--warmup",
        "0.2",
        "echo",
        "-c",
        "3",
        "-s",
        "32",
        "--rate",
        "200",
    ]);
    let summary = summary(&output);
    assert_eq!(output.status.code(), Some(0), "{summary}");
    assert_eq!(summary["errors"], 0, "{summary}");
    assert_eq!(number(&summary, "sent"), 200, "{summary}");
    let open = &summary["open_loop"];
    assert_eq!(open["offered_per_s"], 200, "{summary}");
    assert_eq!(open["sent_per_s"].as_f64(), Some(200.0), "{summary}");
    assert_eq!(open["schedule_kept"], true, "{summary}");
    assert!(summary["latency_us"]["p99_99"].as_f64().unwrap() > 0.0);
    assert_eq!(
        counts.received.load(Ordering::SeqCst),
        number(&summary, "sent_total"),
        "{summary}"
    );
}

#[test]
fn metrics_are_served_during_the_run_and_pushed_to_influxdb_before_the_exit() {
    let (addr, counts) = echo_server();
    let (influx, writes) = fake_influx();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (addr, influx, port) = (
        addr.to_string(),
        format!("http://{influx}"),
        port.to_string(),
    );
    let child = Command::new(env!("CARGO_BIN_EXE_lanes-load"))
        .args([
            "--addr",
            &addr,
            "--json",
            "--quiet",
            "--duration",
            "1.5",
            "--warmup",
            "0.2",
            "--influx",
            &influx,
            "--influx-db",
            "loadtest",
            "--prometheus-port",
            &port,
            "echo",
            "-c",
            "2",
            "-d",
            "4",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Scrape until messages show up.
    let deadline = Instant::now() + Duration::from_secs(10);
    let scraped = loop {
        assert!(Instant::now() < deadline, "no metrics on port {port}");
        let answer = TcpStream::connect(format!("127.0.0.1:{port}")).and_then(|mut s| {
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")?;
            let mut text = String::new();
            s.read_to_string(&mut text)?;
            Ok(text)
        });
        if let Ok(text) = answer
            && text.contains("lanes_load_connections_open 2\n")
            && !text.contains("lanes_load_messages_sent_total 0\n")
        {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(scraped.starts_with("HTTP/1.1 200"), "{scraped}");
    for family in lanes_load::metrics::FAMILIES {
        assert!(
            scraped.contains(&format!("# TYPE {family} ")),
            "{family}: {scraped}"
        );
    }
    let output = child.wait_with_output().unwrap();
    let summary = summary(&output);
    assert_eq!(output.status.code(), Some(0), "{summary}");
    let sent_total = number(&summary, "sent_total");
    assert_eq!(counts.received.load(Ordering::SeqCst), sent_total);
    // The server is gone with the run.
    assert!(TcpStream::connect(format!("127.0.0.1:{port}")).is_err());
    // One write a second, and a last one with the final counts before the exit.
    let writes = writes.lock().unwrap();
    assert!(writes.len() >= 2, "{writes:?}");
    for (request, _) in writes.iter() {
        assert!(
            request.starts_with("POST /write?db=loadtest&precision=ns "),
            "{request}"
        );
    }
    let (_, last) = writes.last().unwrap();
    assert!(
        last.contains(&format!(
            "lanes_load_messages_sent_total value={sent_total}i "
        )),
        "{last}"
    );
    assert!(
        last.contains("lanes_load_connections_open value=0.0 "),
        "{last}"
    );
    assert!(last.contains("lanes_load_errors_total value=0i "), "{last}");
    assert!(last.contains("lanes_load_latency_seconds count="), "{last}");
}
