//! The InfluxDB reporter against loopback stand-ins: a recording InfluxDB (v1 and v2 write
//! APIs), a refused port, a server that never answers, one answering errors, and an InfluxDB
//! that comes up late.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lanes_metrics::{Counter, InfluxConfig, InfluxReporter, Registry, Snapshot, Value};
use support::{BlackHole, FakeInflux, Request, dead_port, wait_until};

const NAME: &str = "test_events_total";

fn counter() -> (Registry, Counter) {
    let registry = Registry::new();
    let counter = registry.counter(NAME, "Events.", &[("core", "0")]).unwrap();
    (registry, counter)
}

/// The reporter's figures after it stopped, read through `stats_source`:
/// (sent, failed, dropped, pending).
fn final_stats(snapshot: &Snapshot) -> (u64, u64, u64, u64) {
    let counter = |name| snapshot.counter(name, &[]).unwrap();
    let pending = match snapshot.value("lanes_influx_pending_batches", &[]) {
        Some(Value::Gauge(v)) => *v as u64,
        other => panic!("pending gauge: {other:?}"),
    };
    (
        counter("lanes_influx_batches_sent_total"),
        counter("lanes_influx_batches_failed_total"),
        counter("lanes_influx_batches_dropped_total"),
        pending,
    )
}

/// Each batch's (timestamp, counter value), checking that every batch is one well-formed line
/// of the test counter.
fn points(requests: &[Request]) -> Vec<(u64, u64)> {
    requests
        .iter()
        .map(|r| {
            let lines = r.lines();
            assert_eq!(lines.len(), 1, "one line per batch: {:?}", r.body);
            let line = &lines[0];
            assert_eq!(line.measurement, NAME);
            assert_eq!(line.tags, vec![("core".to_owned(), "0".to_owned())]);
            assert_eq!(line.fields.len(), 1, "{line:?}");
            (line.timestamp, line.int("value").expect("an integer value"))
        })
        .collect()
}

fn assert_timestamps_increase(points: &[(u64, u64)]) {
    for pair in points.windows(2) {
        assert!(pair[0].0 < pair[1].0, "timestamps out of order: {points:?}");
    }
}

/// Stops the reporter, asserting it takes less than `limit`.
fn stop_within(reporter: InfluxReporter, limit: Duration) -> Duration {
    let started = Instant::now();
    reporter.stop();
    let took = started.elapsed();
    assert!(took < limit, "stop() took {took:?}");
    took
}

#[test]
fn v1_writes_line_protocol_with_the_counter_as_it_rises() {
    let server = FakeInflux::start();
    let (registry, events) = counter();
    let config = InfluxConfig::v1(server.url(), "lanes").interval(Duration::from_millis(20));
    let reporter = InfluxReporter::start(config, move || registry.snapshot()).unwrap();
    let stats = reporter.stats_source();

    // Bump the counter between reports until a few have arrived.
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.requests().len() < 4 {
        assert!(Instant::now() < deadline, "no reports within 5 s");
        events.add(1);
        std::thread::sleep(Duration::from_millis(3));
    }
    events.add(10);
    let total = events.value();
    stop_within(reporter, Duration::from_secs(2));

    // stop() wrote a last snapshot, and returned after InfluxDB answered it.
    let requests = server.requests();
    assert!(requests.len() >= 5, "{} requests", requests.len());
    for r in &requests {
        assert_eq!(r.method, "POST");
        assert_eq!(r.target, "/write?db=lanes&precision=ns");
        assert_eq!(r.header("Content-Type"), Some("text/plain; charset=utf-8"));
        assert_eq!(r.header("Authorization"), None);
    }
    let points = points(&requests);
    assert_timestamps_increase(&points);
    for pair in points.windows(2) {
        assert!(pair[0].1 <= pair[1].1, "counter went down: {points:?}");
    }
    assert!(points[0].1 < total, "the counter never rose: {points:?}");
    assert_eq!(
        points.last().unwrap().1,
        total,
        "the last report is the final count"
    );
    assert_eq!(final_stats(&stats()), (requests.len() as u64, 0, 0, 0));
}

#[test]
fn v2_writes_to_the_v2_api_with_the_token() {
    let server = FakeInflux::start();
    let (registry, events) = counter();
    events.add(42);
    // A trailing slash on the base URL, and names that need escaping in the query.
    let config = InfluxConfig::v2(format!("{}/", server.url()), "my org", "lanes/b", "s3cr3t")
        .interval(Duration::from_millis(20));
    assert!(
        !format!("{config:?}").contains("s3cr3t"),
        "Debug shows the token: {config:?}"
    );
    let reporter = InfluxReporter::start(config, move || registry.snapshot()).unwrap();
    let requests = server.wait_for(2, Duration::from_secs(5));
    stop_within(reporter, Duration::from_secs(2));
    assert!(requests.len() >= 2, "{} requests", requests.len());
    for r in &requests {
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.target,
            "/api/v2/write?org=my%20org&bucket=lanes%2Fb&precision=ns"
        );
        assert_eq!(r.header("Authorization"), Some("Token s3cr3t"));
    }
    let points = points(&requests);
    assert_timestamps_increase(&points);
    assert!(points.iter().all(|&(_, v)| v == 42), "{points:?}");
}

#[test]
fn a_refused_endpoint_costs_bounded_memory() {
    let port = dead_port();
    let calls = Arc::new(AtomicU64::new(0));
    let mut config = InfluxConfig::v1(format!("http://127.0.0.1:{port}"), "lanes")
        .interval(Duration::from_millis(10));
    config.max_pending_batches = 5;
    config.retry_min = Duration::from_millis(5);
    config.retry_max = Duration::from_millis(20);
    let reporter = InfluxReporter::start(config, {
        let calls = Arc::clone(&calls);
        move || {
            calls.fetch_add(1, Ordering::Relaxed);
            Snapshot::default()
        }
    })
    .unwrap();
    let stats_source = reporter.stats_source();

    // Sample the queue while it overflows: never past the cap.
    let until = Instant::now() + Duration::from_millis(300);
    let mut samples = 0;
    while Instant::now() < until {
        let stats = reporter.stats();
        assert!(stats.pending <= 5, "{stats:?}");
        assert_eq!(stats.sent, 0, "{stats:?}");
        samples += 1;
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(samples > 50, "only {samples} samples");
    let stats = reporter.stats();
    assert!(stats.dropped > 0, "{stats:?}");
    assert!(stats.failed > 0, "{stats:?}");
    assert!(stats.pending > 0, "{stats:?}");
    assert_eq!(stats.sent, 0);

    stop_within(reporter, Duration::from_secs(3));
    // Every snapshot taken is either still queued or was dropped.
    let (sent, failed, dropped, pending) = final_stats(&stats_source());
    assert_eq!((sent, pending), (0, 5));
    assert!(failed > stats.failed, "stop() tried once more");
    assert_eq!(dropped + pending, calls.load(Ordering::Relaxed));
}

#[test]
fn a_black_hole_endpoint_does_not_starve_collection() {
    let hole = BlackHole::start();
    let timeout = Duration::from_millis(200);
    let interval = Duration::from_millis(20);
    let calls = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let mut config = InfluxConfig::v1(hole.url(), "lanes").interval(interval);
    config.timeout = timeout;
    // Retry at once: the reporter spends nearly all its time in writes that hang.
    config.retry_min = Duration::from_millis(10);
    config.retry_max = Duration::from_millis(10);
    let started = Instant::now();
    let reporter = InfluxReporter::start(config, {
        let calls = Arc::clone(&calls);
        move || {
            calls.lock().unwrap().push(Instant::now());
            Snapshot::default()
        }
    })
    .unwrap();

    std::thread::sleep(Duration::from_millis(1200));
    let stats = reporter.stats();
    assert_eq!(stats.sent, 0, "{stats:?}");
    assert!(stats.failed >= 2, "{stats:?}");
    assert!(!hole.accepted().is_empty(), "the writes did connect");
    {
        // Snapshots kept coming while writes hung: no gap much past one write's time limit.
        let calls = calls.lock().unwrap();
        assert!(calls.len() >= 4, "{} snapshots in 1.2 s", calls.len());
        let mut gaps: Vec<Duration> = vec![calls[0] - started];
        gaps.extend(calls.windows(2).map(|w| w[1] - w[0]));
        let longest = gaps.iter().max().unwrap();
        assert!(
            *longest < timeout + interval + Duration::from_millis(300),
            "collection starved for {longest:?}: gaps {gaps:?}"
        );
        let last = *calls.last().unwrap();
        assert!(
            last.elapsed() < timeout + interval + Duration::from_millis(300),
            "no snapshot for {:?}",
            last.elapsed()
        );
    }
    // At most the write in flight and the last one, each cut off at `timeout`.
    stop_within(reporter, Duration::from_secs(1));
}

#[test]
fn error_statuses_count_as_failures_and_are_retried() {
    let server = FakeInflux::start();
    server.set_status(503);
    let (registry, events) = counter();
    let mut config = InfluxConfig::v1(server.url(), "lanes").interval(Duration::from_millis(20));
    config.retry_min = Duration::from_millis(10);
    config.retry_max = Duration::from_millis(40);
    // Every snapshot counts one more event, so batch k carries k.
    let reporter = InfluxReporter::start(config, move || {
        events.add(1);
        registry.snapshot()
    })
    .unwrap();
    assert!(wait_until(Duration::from_secs(5), || {
        let stats = reporter.stats();
        stats.failed >= 3 && stats.pending >= 2
    }));
    let refused = server.requests();
    assert!(refused.iter().all(|r| r.status == 503));
    assert!(refused.len() >= 3);
    assert_eq!(reporter.stats().sent, 0);

    server.set_status(204);
    assert!(
        wait_until(Duration::from_secs(5), || {
            let stats = reporter.stats();
            stats.pending == 0 && stats.sent >= 3
        }),
        "{:?}",
        reporter.stats()
    );
    let stats_source = reporter.stats_source();
    stop_within(reporter, Duration::from_secs(2));
    let (sent, failed, dropped, pending) = final_stats(&stats_source());
    let accepted: Vec<Request> = server
        .requests()
        .into_iter()
        .filter(|r| r.status == 204)
        .collect();
    assert_eq!(
        (sent, dropped, pending),
        (accepted.len() as u64, 0, 0),
        "failed {failed}"
    );
    assert!(failed >= 3);
    // Nothing lost, nothing twice, in order: 1, 2, 3, ...
    let points = points(&accepted);
    let values: Vec<u64> = points.iter().map(|p| p.1).collect();
    assert_eq!(values, (1..=values.len() as u64).collect::<Vec<_>>());
    assert_timestamps_increase(&points);
}

#[test]
fn queued_batches_arrive_in_order_once_the_endpoint_is_up() {
    let port = dead_port();
    let (registry, events) = counter();
    let mut config = InfluxConfig::v1(format!("http://127.0.0.1:{port}"), "lanes")
        .interval(Duration::from_millis(20));
    config.max_pending_batches = 100;
    config.retry_min = Duration::from_millis(10);
    config.retry_max = Duration::from_millis(40);
    let reporter = InfluxReporter::start(config, move || {
        events.add(1);
        registry.snapshot()
    })
    .unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || {
            let stats = reporter.stats();
            stats.failed >= 3 && stats.pending >= 5
        }),
        "{:?}",
        reporter.stats()
    );
    let queued = reporter.stats().pending;

    let server = FakeInflux::start_on(port);
    assert!(
        wait_until(Duration::from_secs(5), || {
            let stats = reporter.stats();
            stats.pending == 0 && stats.sent >= queued
        }),
        "{:?}",
        reporter.stats()
    );
    let stats = reporter.stats();
    assert_eq!(stats.dropped, 0);
    let stats_source = reporter.stats_source();
    stop_within(reporter, Duration::from_secs(2));

    let requests = server.requests();
    let (sent, _, dropped, pending) = final_stats(&stats_source());
    assert_eq!((sent, dropped, pending), (requests.len() as u64, 0, 0));
    // Every snapshot since the start, the queued ones first, in order.
    let points = points(&requests);
    let values: Vec<u64> = points.iter().map(|p| p.1).collect();
    assert_eq!(values, (1..=values.len() as u64).collect::<Vec<_>>());
    assert!(values.len() as u64 > queued);
    assert_timestamps_increase(&points);
}

/// Fails today: `Pusher::drain` sets `retry_at = now + backoff` with `now` taken before the
/// write, so a write that hangs for its whole `timeout` eats the back-off.
#[test]
fn the_back_off_is_counted_from_the_end_of_the_failed_write() {
    let hole = BlackHole::start();
    let timeout = Duration::from_millis(200);
    let backoff = Duration::from_millis(300);
    let mut config = InfluxConfig::v1(hole.url(), "lanes").interval(Duration::from_millis(20));
    config.timeout = timeout;
    config.retry_min = backoff;
    config.retry_max = backoff;
    let reporter = InfluxReporter::start(config, Snapshot::default).unwrap();
    std::thread::sleep(Duration::from_millis(1600));
    stop_within(reporter, Duration::from_secs(1));
    let attempts = hole.accepted();
    assert!(attempts.len() >= 3, "{} attempts", attempts.len());
    // The attempts before stop(): each starts once the previous one timed out and the
    // back-off passed (stop() makes one more, unpaced).
    let gaps: Vec<Duration> = attempts[..attempts.len() - 1]
        .windows(2)
        .map(|w| w[1] - w[0])
        .collect();
    for gap in &gaps {
        assert!(
            *gap >= timeout + backoff - Duration::from_millis(30),
            "retried after {gap:?}: gaps {gaps:?}"
        );
    }
}

/// Fails today: `Pusher::drain` writes the whole queue in one go, so a backlog on a slow (but
/// working) InfluxDB stops collection for backlog x write time (up to
/// `max_pending_batches x timeout`), and `stop()` waits as long.
#[test]
fn draining_a_backlog_on_a_slow_endpoint_does_not_starve_collection() {
    let port = dead_port();
    let calls = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let interval = Duration::from_millis(20);
    let timeout = Duration::from_millis(500);
    let mut config =
        InfluxConfig::v1(format!("http://127.0.0.1:{port}"), "lanes").interval(interval);
    config.max_pending_batches = 100;
    config.timeout = timeout;
    config.retry_min = Duration::from_millis(10);
    config.retry_max = Duration::from_millis(40);
    let reporter = InfluxReporter::start(config, {
        let calls = Arc::clone(&calls);
        move || {
            calls.lock().unwrap().push(Instant::now());
            Snapshot::default()
        }
    })
    .unwrap();
    assert!(wait_until(Duration::from_secs(5), || reporter
        .stats()
        .pending
        >= 30));
    // Each write now takes 100 ms: well within `timeout`, and it succeeds.
    let server = FakeInflux::start_on(port);
    server.set_delay(Duration::from_millis(100));
    assert!(
        wait_until(Duration::from_secs(10), || reporter.stats().sent >= 30),
        "{:?}",
        reporter.stats()
    );
    stop_within(reporter, Duration::from_secs(2));
    let calls = calls.lock().unwrap();
    let longest = calls.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(
        longest < timeout + interval + Duration::from_millis(300),
        "no snapshot for {longest:?} while the backlog drained"
    );
}

/// Fails today, for the same reason: `stop()` drains the whole backlog, one slow write after
/// another, so shutting down can take `max_pending_batches x timeout` (2 min by default).
#[test]
fn stop_is_bounded_while_a_backlog_drains_slowly() {
    let port = dead_port();
    let mut config = InfluxConfig::v1(format!("http://127.0.0.1:{port}"), "lanes")
        .interval(Duration::from_millis(20));
    config.max_pending_batches = 100;
    config.timeout = Duration::from_millis(500);
    config.retry_min = Duration::from_millis(10);
    config.retry_max = Duration::from_millis(40);
    let reporter = InfluxReporter::start(config, Snapshot::default).unwrap();
    assert!(wait_until(Duration::from_secs(5), || reporter
        .stats()
        .pending
        >= 30));
    let server = FakeInflux::start_on(port);
    server.set_delay(Duration::from_millis(100));
    assert!(wait_until(Duration::from_secs(5), || reporter.stats().sent >= 1));
    // The write in flight, then at most about one `timeout` more.
    stop_within(reporter, Duration::from_millis(1500));
}
