//! lanes-load's own live metrics, readable while a run goes on: what it sent and received,
//! its errors, its open connections and the latency it measured.
//!
//! Every load thread has a [`ThreadMetrics`] of its own and is its only writer, so an update
//! is a plain load and store on a word no other thread writes (no locked instruction, no
//! contention), as [`lanes_metrics::Histogram::record`] is; a reader ([`LoadMetrics::snapshot`],
//! from the InfluxDB reporter or the `/metrics` server) sums the threads' values. The families,
//! none with labels:
//!
//! | family | kind | what |
//! |---|---|---|
//! | `lanes_load_messages_sent_total` | counter | data messages written to the socket in full |
//! | `lanes_load_messages_received_total` | counter | data messages received (echoes, deliveries) |
//! | `lanes_load_bytes_sent_total` | counter | bytes written to the sockets after the upgrade |
//! | `lanes_load_bytes_received_total` | counter | bytes read from the sockets after the upgrade |
//! | `lanes_load_errors_total` | counter | failed checks, lost connections, I/O errors |
//! | `lanes_load_connections_open` | gauge | upgraded connections open now |
//! | `lanes_load_latency_seconds` | histogram | round-trip (echo) or delivery (fanout) latency |
//!
//! The counters cover the whole run, warm-up and the end of the run included, not only the
//! measured window of the summary. The latency is recorded in microseconds and exported in
//! seconds (divisor 10^6), in lanes-metrics' power-of-two buckets (1 µs to 16.8 s).
//!
//! [`Exporters`] publishes a [`LoadMetrics`] for the length of a run, as `--influx` and
//! `--prometheus-port` ask.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use lanes_metrics::{
    Family, Histogram, HistogramSnapshot, InfluxConfig, InfluxReporter, Kind, MetricsServer,
    Snapshot, Value, owned,
};

/// Data messages written to the socket in full (counter).
pub const MESSAGES_SENT: &str = "lanes_load_messages_sent_total";
/// Data messages received (counter).
pub const MESSAGES_RECEIVED: &str = "lanes_load_messages_received_total";
/// Bytes written to the sockets after the upgrade, frame headers included (counter).
pub const BYTES_SENT: &str = "lanes_load_bytes_sent_total";
/// Bytes read from the sockets after the upgrade, frame headers included (counter).
pub const BYTES_RECEIVED: &str = "lanes_load_bytes_received_total";
/// Errors (counter).
pub const ERRORS: &str = "lanes_load_errors_total";
/// Upgraded connections open now (gauge).
pub const CONNECTIONS_OPEN: &str = "lanes_load_connections_open";
/// Round-trip or delivery latency, in seconds (histogram).
pub const LATENCY: &str = "lanes_load_latency_seconds";

/// Every family lanes-load exports, in export order.
pub const FAMILIES: [&str; 7] = [
    MESSAGES_SENT,
    MESSAGES_RECEIVED,
    BYTES_SENT,
    BYTES_RECEIVED,
    ERRORS,
    CONNECTIONS_OPEN,
    LATENCY,
];

/// Recorded latency units (microseconds) per exported unit (seconds).
pub const LATENCY_DIVISOR: f64 = 1e6;

/// The path the `/metrics` server answers on.
pub const METRICS_PATH: &str = "/metrics";

/// One load thread's metrics. Only that thread may update them (two writers would lose
/// counts); any thread may read them.
///
/// Aligned to 128 bytes so that two threads' counters never share a cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct ThreadMetrics {
    messages_sent: AtomicU64,
    messages_received: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    errors: AtomicU64,
    connections_open: AtomicI64,
    latency_us: Histogram,
}

impl ThreadMetrics {
    /// Counts `n` data messages written to the socket in full.
    #[inline]
    pub fn add_messages_sent(&self, n: u64) {
        owned::add(&self.messages_sent, n);
    }

    /// Counts `n` data messages received.
    #[inline]
    pub fn add_messages_received(&self, n: u64) {
        owned::add(&self.messages_received, n);
    }

    /// Counts `n` bytes written to a socket.
    #[inline]
    pub fn add_bytes_sent(&self, n: u64) {
        owned::add(&self.bytes_sent, n);
    }

    /// Counts `n` bytes read from a socket.
    #[inline]
    pub fn add_bytes_received(&self, n: u64) {
        owned::add(&self.bytes_received, n);
    }

    /// Counts `n` errors.
    #[inline]
    pub fn add_errors(&self, n: u64) {
        owned::add(&self.errors, n);
    }

    /// Notes `n` more connections open.
    #[inline]
    pub fn connections_opened(&self, n: u64) {
        self.add_connections_open(n as i64);
    }

    /// Notes `n` connections closed (or lost).
    #[inline]
    pub fn connections_closed(&self, n: u64) {
        self.add_connections_open(-(n as i64));
    }

    #[inline]
    fn add_connections_open(&self, delta: i64) {
        let open = &self.connections_open;
        open.store(
            open.load(Ordering::Relaxed).wrapping_add(delta),
            Ordering::Relaxed,
        );
    }

    /// Sets this thread's open connections (0 when it is done with them all).
    pub fn set_connections_open(&self, open: u64) {
        self.connections_open.store(open as i64, Ordering::Relaxed);
    }

    /// Records one latency (stored in whole microseconds).
    #[inline]
    pub fn record_latency(&self, latency: Duration) {
        self.record_latency_us(latency.as_micros().min(u128::from(u64::MAX)) as u64);
    }

    /// Records one latency given in microseconds.
    #[inline]
    pub fn record_latency_us(&self, latency_us: u64) {
        self.latency_us.record(latency_us);
    }
}

/// The metrics of one run: one [`ThreadMetrics`] per load thread, summed when read.
///
/// ```
/// use std::time::Duration;
/// use lanes_load::metrics::{LoadMetrics, MESSAGES_SENT};
///
/// let metrics = LoadMetrics::new(2);
/// metrics.thread(0).add_messages_sent(3);
/// metrics.thread(1).add_messages_sent(4);
/// metrics.thread(1).record_latency(Duration::from_micros(250));
/// let snapshot = metrics.snapshot();
/// assert_eq!(snapshot.counter(MESSAGES_SENT, &[]), Some(7));
/// assert_eq!(metrics.totals().messages_sent, 7);
/// ```
#[derive(Debug)]
pub struct LoadMetrics {
    threads: Box<[ThreadMetrics]>,
}

impl LoadMetrics {
    /// Empty metrics for `threads` load threads (at least one).
    pub fn new(threads: usize) -> LoadMetrics {
        LoadMetrics {
            threads: (0..threads.max(1))
                .map(|_| ThreadMetrics::default())
                .collect(),
        }
    }

    /// How many threads it has room for.
    pub fn threads(&self) -> usize {
        self.threads.len()
    }

    /// Thread `index`'s metrics, for that thread alone to update.
    ///
    /// # Panics
    ///
    /// When `index` is not below [`threads`](LoadMetrics::threads).
    pub fn thread(&self, index: usize) -> &ThreadMetrics {
        &self.threads[index]
    }

    /// The sums over the threads now.
    pub fn totals(&self) -> LoadTotals {
        let mut totals = LoadTotals::default();
        for t in self.threads.iter() {
            let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
            totals.messages_sent += read(&t.messages_sent);
            totals.messages_received += read(&t.messages_received);
            totals.bytes_sent += read(&t.bytes_sent);
            totals.bytes_received += read(&t.bytes_received);
            totals.errors += read(&t.errors);
            totals.connections_open += t.connections_open.load(Ordering::Relaxed);
            totals.latency_us.merge(&t.latency_us.snapshot());
        }
        totals
    }

    /// The families of [`FAMILIES`] with their values now, summed over the threads; one
    /// sample each, without labels. A fresh `LoadMetrics::new(1).snapshot()` lists every
    /// family lanes-load exports, at zero.
    pub fn snapshot(&self) -> Snapshot {
        let totals = self.totals();
        let counter = |name: &str, help: &str, n: u64| {
            Family::new(name, help, Kind::Counter).with(&[], Value::Counter(n))
        };
        Snapshot {
            families: vec![
                counter(
                    MESSAGES_SENT,
                    "Data messages lanes-load wrote to the socket in full.",
                    totals.messages_sent,
                ),
                counter(
                    MESSAGES_RECEIVED,
                    "Data messages lanes-load received (echoes, deliveries).",
                    totals.messages_received,
                ),
                counter(
                    BYTES_SENT,
                    "Bytes lanes-load wrote to its sockets after the upgrade.",
                    totals.bytes_sent,
                ),
                counter(
                    BYTES_RECEIVED,
                    "Bytes lanes-load read from its sockets after the upgrade.",
                    totals.bytes_received,
                ),
                counter(
                    ERRORS,
                    "Failed checks, lost connections and I/O errors.",
                    totals.errors,
                ),
                Family::new(
                    CONNECTIONS_OPEN,
                    "Upgraded connections lanes-load has open.",
                    Kind::Gauge,
                )
                .with(&[], Value::Gauge(totals.connections_open as f64)),
                Family::new(
                    LATENCY,
                    "Round-trip (echo) or delivery (fanout) latency in seconds.",
                    Kind::Histogram,
                )
                .with(
                    &[],
                    Value::Histogram {
                        counts: Box::new(totals.latency_us),
                        divisor: LATENCY_DIVISOR,
                    },
                ),
            ],
        }
    }
}

/// [`LoadMetrics`] summed over its threads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadTotals {
    /// Data messages written to the socket in full.
    pub messages_sent: u64,
    /// Data messages received.
    pub messages_received: u64,
    /// Bytes written to the sockets.
    pub bytes_sent: u64,
    /// Bytes read from the sockets.
    pub bytes_received: u64,
    /// Errors.
    pub errors: u64,
    /// Connections open.
    pub connections_open: i64,
    /// Latencies, in microseconds.
    pub latency_us: HistogramSnapshot,
}

/// Where a run's metrics go while it lasts: the InfluxDB reporter (`--influx`) and the
/// `/metrics` server (`--prometheus-port`), either, both or neither.
pub struct Exporters {
    influx: Option<Influx>,
    server: Option<MetricsServer>,
}

/// A running reporter, and what reads its figures after it stopped.
struct Influx {
    url: String,
    reporter: InfluxReporter,
    stats: Box<dyn Fn() -> Snapshot + Send + Sync>,
}

impl fmt::Debug for Exporters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exporters")
            .field("influx", &self.influx.as_ref().map(|i| &i.reporter))
            .field("server", &self.server)
            .finish()
    }
}

impl Exporters {
    /// Starts what is asked for: a reporter writing `metrics` to InfluxDB under `influx`, a
    /// server answering `GET /metrics` on 127.0.0.1:`prometheus_port`.
    pub fn start(
        metrics: &Arc<LoadMetrics>,
        influx: Option<InfluxConfig>,
        prometheus_port: Option<u16>,
    ) -> Result<Exporters, String> {
        let server = prometheus_port
            .map(|port| {
                let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
                let metrics = Arc::clone(metrics);
                MetricsServer::start(addr, METRICS_PATH, move || metrics.snapshot())
                    .map_err(|e| format!("cannot serve {METRICS_PATH} on {addr}: {e}"))
            })
            .transpose()?;
        let influx = influx
            .map(|config| {
                let url = config.url.clone();
                let metrics = Arc::clone(metrics);
                let reporter = InfluxReporter::start(config, move || metrics.snapshot())
                    .map_err(|e| format!("cannot start the InfluxDB reporter: {e}"))?;
                let stats = Box::new(reporter.stats_source());
                Ok::<_, String>(Influx {
                    url,
                    reporter,
                    stats,
                })
            })
            .transpose()?;
        Ok(Exporters { influx, server })
    }

    /// Nothing to export.
    pub fn none() -> Exporters {
        Exporters {
            influx: None,
            server: None,
        }
    }

    /// The address the `/metrics` server listens on, if it runs.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.server.as_ref().map(MetricsServer::local_addr)
    }

    /// Ends the export at the end of a run: stops the `/metrics` server, and stops the
    /// reporter, which first writes a last snapshot (call it once the load threads are done,
    /// so that the final counts are in InfluxDB when lanes-load exits). Returns a warning
    /// when some batches could not be written.
    pub fn finish(self) -> Option<String> {
        let Exporters { influx, server } = self;
        drop(server);
        let Influx {
            url,
            reporter,
            stats,
        } = influx?;
        reporter.stop();
        let stats = stats();
        let count = |name: &str| stats.counter(name, &[]).unwrap_or(0);
        let sent = count("lanes_influx_batches_sent_total");
        let failed = count("lanes_influx_batches_failed_total");
        let dropped = count("lanes_influx_batches_dropped_total");
        let pending = match stats.value("lanes_influx_pending_batches", &[]) {
            Some(Value::Gauge(v)) => *v as u64,
            _ => 0,
        };
        (failed > 0 || dropped > 0 || pending > 0).then(|| {
            format!(
                "InfluxDB at {url}: {sent} batch(es) written, {} not written, {failed} failed \
                 write(s)",
                dropped + pending
            )
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use lanes_metrics::prometheus;

    #[test]
    fn a_fresh_set_lists_every_family_at_zero() {
        let snapshot = LoadMetrics::new(3).snapshot();
        let names: Vec<&str> = snapshot.families.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, FAMILIES);
        for family in &snapshot.families {
            assert_eq!(family.samples.len(), 1, "{}", family.name);
            assert!(family.samples[0].labels.is_empty(), "{}", family.name);
            let kind = match family.name.as_str() {
                CONNECTIONS_OPEN => Kind::Gauge,
                LATENCY => Kind::Histogram,
                _ => Kind::Counter,
            };
            assert_eq!(family.kind, kind, "{}", family.name);
        }
        assert_eq!(snapshot.counter(MESSAGES_SENT, &[]), Some(0));
        assert_eq!(
            snapshot.value(CONNECTIONS_OPEN, &[]),
            Some(&Value::Gauge(0.0))
        );
        // No thread is no slot: there is always one.
        assert_eq!(LoadMetrics::new(0).threads(), 1);
    }

    #[test]
    fn the_snapshot_sums_the_threads() {
        let metrics = LoadMetrics::new(3);
        for (i, n) in [(0, 5u64), (1, 7), (2, 11)] {
            let t = metrics.thread(i);
            t.add_messages_sent(n);
            t.add_messages_received(n + 1);
            t.add_bytes_sent(100 * n);
            t.add_bytes_received(200 * n);
            t.add_errors(u64::from(i == 2));
            t.connections_opened(n);
        }
        metrics.thread(1).connections_closed(2);
        let s = metrics.snapshot();
        assert_eq!(s.counter(MESSAGES_SENT, &[]), Some(23));
        assert_eq!(s.counter(MESSAGES_RECEIVED, &[]), Some(26));
        assert_eq!(s.counter(BYTES_SENT, &[]), Some(2300));
        assert_eq!(s.counter(BYTES_RECEIVED, &[]), Some(4600));
        assert_eq!(s.counter(ERRORS, &[]), Some(1));
        assert_eq!(s.value(CONNECTIONS_OPEN, &[]), Some(&Value::Gauge(21.0)));
        metrics.thread(0).set_connections_open(0);
        assert_eq!(metrics.totals().connections_open, 16);
        // Read from another thread while this one writes.
        let metrics = Arc::new(metrics);
        let reader = {
            let metrics = Arc::clone(&metrics);
            std::thread::spawn(move || {
                let mut last = 0;
                for _ in 0..1000 {
                    let now = metrics.totals().messages_sent;
                    assert!(now >= last, "{now} < {last}");
                    last = now;
                }
            })
        };
        for _ in 0..10_000 {
            metrics.thread(0).add_messages_sent(1);
        }
        reader.join().unwrap();
        assert_eq!(metrics.totals().messages_sent, 23 + 10_000);
    }

    #[test]
    fn latency_is_recorded_in_microseconds_and_exported_in_seconds() {
        let metrics = LoadMetrics::new(2);
        metrics
            .thread(0)
            .record_latency(Duration::from_micros(1000));
        metrics.thread(1).record_latency(Duration::from_millis(3));
        metrics.thread(1).record_latency_us(500);
        let s = metrics.snapshot();
        let Some(Value::Histogram { counts, divisor }) = s.value(LATENCY, &[]) else {
            panic!("{s:?}");
        };
        assert_eq!(*divisor, 1e6);
        assert_eq!(counts.count(), 3);
        assert_eq!(counts.sum, 1000 + 3000 + 500);
        // 500 µs and 1000 µs in (512, 1024] and (256, 512]; 3 ms in (2048, 4096].
        assert_eq!(
            (counts.counts[9], counts.counts[10], counts.counts[12]),
            (1, 1, 1)
        );
        let text = prometheus::encode(&s);
        assert!(
            text.contains("lanes_load_latency_seconds_sum 0.0045\n"),
            "{text}"
        );
        assert!(
            text.contains("lanes_load_latency_seconds_count 3\n"),
            "{text}"
        );
        assert!(
            text.contains("lanes_load_latency_seconds_bucket{le=\"0.001024\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE lanes_load_connections_open gauge\n"),
            "{text}"
        );
        assert!(
            text.contains("lanes_load_messages_sent_total 0\n"),
            "{text}"
        );
    }

    #[test]
    fn the_metrics_server_serves_the_families_for_as_long_as_it_runs() {
        use std::io::{Read, Write};
        let metrics = Arc::new(LoadMetrics::new(1));
        metrics.thread(0).add_messages_sent(42);
        let exporters = Exporters::start(&metrics, None, Some(0)).unwrap();
        let addr = exporters.metrics_addr().unwrap();
        assert!(addr.ip().is_loopback());
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            answer.contains("lanes_load_messages_sent_total 42\n"),
            "{answer}"
        );
        assert_eq!(exporters.finish(), None);
        assert!(std::net::TcpStream::connect(addr).is_err());
    }

    #[test]
    fn an_unreachable_influxdb_is_reported_at_the_end() {
        // A port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let metrics = Arc::new(LoadMetrics::new(1));
        let mut config = InfluxConfig::v1(format!("http://127.0.0.1:{port}"), "lanes")
            .interval(Duration::from_secs(1));
        config.timeout = Duration::from_millis(500);
        let exporters = Exporters::start(&metrics, Some(config), None).unwrap();
        let warning = exporters.finish().unwrap();
        assert!(warning.contains("1 not written"), "{warning}");
    }
}
