//! Pushes snapshots to InfluxDB over HTTP from a thread of its own.
//!
//! Every interval the reporter takes a snapshot (reading the workers' counters; a worker never
//! waits for it), encodes it as line protocol and queues the batch. Batches are written in
//! order; when a write fails (InfluxDB down, slow, or answering an error) the batch stays at
//! the head of the queue and the next try waits, doubling from `retry_min` up to `retry_max`.
//! The queue holds at most `max_pending_batches`; when full, the oldest batch is dropped and
//! counted, so an unreachable InfluxDB costs bounded memory.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::influx;
use crate::snapshot::{Family, Kind, Snapshot, Value};

/// Which InfluxDB write API to use.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InfluxTarget {
    /// InfluxDB 1.x: `POST /write?db=…`.
    V1 {
        /// The database (it must exist).
        database: String,
    },
    /// InfluxDB 2.x: `POST /api/v2/write?org=…&bucket=…` with `Authorization: Token …`.
    V2 {
        /// The organisation.
        org: String,
        /// The bucket.
        bucket: String,
        /// The API token.
        token: String,
    },
}

impl fmt::Debug for InfluxTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InfluxTarget::V1 { database } => {
                f.debug_struct("V1").field("database", database).finish()
            }
            InfluxTarget::V2 { org, bucket, .. } => f
                .debug_struct("V2")
                .field("org", org)
                .field("bucket", bucket)
                .field("token", &"…")
                .finish(),
        }
    }
}

/// Where and how often the reporter writes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct InfluxConfig {
    /// The server's base URL, e.g. `http://127.0.0.1:8086` (plain HTTP).
    pub url: String,
    /// The write API and its parameters.
    pub target: InfluxTarget,
    /// How often a snapshot is taken. Default 10 s.
    pub interval: Duration,
    /// Batches kept while InfluxDB cannot take them; the oldest is dropped past this. Default 60.
    pub max_pending_batches: usize,
    /// The limit on one write (connect, send, answer). Default 2 s.
    pub timeout: Duration,
    /// The first wait after a failed write. Default 500 ms.
    pub retry_min: Duration,
    /// The longest wait between tries. Default 30 s.
    pub retry_max: Duration,
}

impl InfluxConfig {
    /// InfluxDB 1.x at `url`, database `database`.
    pub fn v1(url: impl Into<String>, database: impl Into<String>) -> InfluxConfig {
        InfluxConfig::new(
            url.into(),
            InfluxTarget::V1 {
                database: database.into(),
            },
        )
    }

    /// InfluxDB 2.x at `url`, with organisation, bucket and token.
    pub fn v2(
        url: impl Into<String>,
        org: impl Into<String>,
        bucket: impl Into<String>,
        token: impl Into<String>,
    ) -> InfluxConfig {
        InfluxConfig::new(
            url.into(),
            InfluxTarget::V2 {
                org: org.into(),
                bucket: bucket.into(),
                token: token.into(),
            },
        )
    }

    fn new(url: String, target: InfluxTarget) -> InfluxConfig {
        InfluxConfig {
            url,
            target,
            interval: Duration::from_secs(10),
            max_pending_batches: 60,
            timeout: Duration::from_secs(2),
            retry_min: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
        }
    }

    /// Sets the interval (builder style).
    pub fn interval(mut self, interval: Duration) -> InfluxConfig {
        self.interval = interval;
        self
    }

    /// The write endpoint's URL, with the query string.
    pub fn write_url(&self) -> String {
        let base = self.url.trim_end_matches('/');
        match &self.target {
            InfluxTarget::V1 { database } => {
                format!("{base}/write?db={}&precision=ns", query_escape(database))
            }
            InfluxTarget::V2 { org, bucket, .. } => format!(
                "{base}/api/v2/write?org={}&bucket={}&precision=ns",
                query_escape(org),
                query_escape(bucket)
            ),
        }
    }
}

/// Percent-encodes everything but unreserved characters.
fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What the reporter has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReporterStats {
    /// Batches InfluxDB accepted.
    pub sent: u64,
    /// Write attempts that failed (each retry counts).
    pub failed: u64,
    /// Batches dropped because the queue was full.
    pub dropped: u64,
    /// Batches waiting now.
    pub pending: u64,
}

#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    pending: AtomicU64,
}

impl Counts {
    fn stats(&self) -> ReporterStats {
        ReporterStats {
            sent: self.sent.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            pending: self.pending.load(Ordering::Relaxed),
        }
    }
}

/// The stop flag the reporter thread sleeps on.
#[derive(Default)]
struct Stop {
    stopped: Mutex<bool>,
    wake: Condvar,
}

/// A running reporter; stopping it (or dropping it) writes one last snapshot, tries the queue
/// once more, and joins the thread.
///
/// ```no_run
/// use std::time::Duration;
/// use lanes_metrics::{InfluxConfig, InfluxReporter, Registry};
///
/// let registry = Registry::new();
/// let config = InfluxConfig::v1("http://127.0.0.1:8086", "lanes").interval(Duration::from_secs(1));
/// let reporter = InfluxReporter::start(config, move || registry.snapshot())?;
/// // ...
/// reporter.stop();
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct InfluxReporter {
    thread: Option<JoinHandle<()>>,
    stop: Arc<Stop>,
    counts: Arc<Counts>,
}

impl fmt::Debug for InfluxReporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InfluxReporter")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl InfluxReporter {
    /// Starts the reporter thread; `source` is called on it once per interval.
    pub fn start<F>(config: InfluxConfig, source: F) -> io::Result<InfluxReporter>
    where
        F: FnMut() -> Snapshot + Send + 'static,
    {
        let stop = Arc::new(Stop::default());
        let counts = Arc::new(Counts::default());
        let thread = std::thread::Builder::new()
            .name("lanes-influx".into())
            .spawn({
                let stop = Arc::clone(&stop);
                let counts = Arc::clone(&counts);
                move || Pusher::new(config, counts).run(source, &stop)
            })?;
        Ok(InfluxReporter {
            thread: Some(thread),
            stop,
            counts,
        })
    }

    /// What the reporter has done so far.
    pub fn stats(&self) -> ReporterStats {
        self.counts.stats()
    }

    /// A handle that reads the same figures from elsewhere (to export them with the rest).
    pub fn stats_source(&self) -> impl Fn() -> Snapshot + Send + Sync + 'static {
        let counts = Arc::clone(&self.counts);
        move || stats_families(counts.stats())
    }

    /// Writes a last snapshot, tries the queue once more, and stops the thread.
    pub fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        *self
            .stop
            .stopped
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        self.stop.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for InfluxReporter {
    fn drop(&mut self) {
        self.shut();
    }
}

/// The reporter's own figures as metric families (`lanes_influx_*`).
fn stats_families(stats: ReporterStats) -> Snapshot {
    let counter = |name: &str, help: &str, n: u64| {
        Family::new(name, help, Kind::Counter).with(&[], Value::Counter(n))
    };
    Snapshot {
        families: vec![
            counter(
                "lanes_influx_batches_sent_total",
                "Metric batches InfluxDB accepted.",
                stats.sent,
            ),
            counter(
                "lanes_influx_batches_failed_total",
                "Writes to InfluxDB that failed (each retry counts).",
                stats.failed,
            ),
            counter(
                "lanes_influx_batches_dropped_total",
                "Metric batches dropped because InfluxDB was unreachable and the queue was full.",
                stats.dropped,
            ),
            Family::new(
                "lanes_influx_pending_batches",
                "Metric batches waiting to be written to InfluxDB.",
                Kind::Gauge,
            )
            .with(&[], Value::Gauge(stats.pending as f64)),
        ],
    }
}

/// The reporter thread's state.
struct Pusher {
    config: InfluxConfig,
    write_url: String,
    agent: ureq::Agent,
    queue: VecDeque<String>,
    counts: Arc<Counts>,
    previous: Option<Snapshot>,
    backoff: Duration,
    retry_at: Option<Instant>,
    /// Whether the last write failed (so only the first failure of a streak is a warning).
    failing: bool,
}

impl Pusher {
    fn new(config: InfluxConfig, counts: Arc<Counts>) -> Pusher {
        let agent_config = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout))
            .http_status_as_error(true)
            .build();
        Pusher {
            write_url: config.write_url(),
            agent: agent_config.into(),
            queue: VecDeque::new(),
            counts,
            previous: None,
            backoff: config.retry_min,
            retry_at: None,
            failing: false,
            config,
        }
    }

    fn run<F: FnMut() -> Snapshot>(mut self, mut source: F, stop: &Stop) {
        let interval = self.config.interval.max(Duration::from_millis(10));
        let mut next_report = Instant::now() + interval;
        loop {
            let wake_at = match self.retry_at {
                Some(retry) if !self.queue.is_empty() => retry.min(next_report),
                _ => next_report,
            };
            let stopped = {
                let mut stopped = stop.stopped.lock().unwrap_or_else(PoisonError::into_inner);
                while !*stopped {
                    let now = Instant::now();
                    if now >= wake_at {
                        break;
                    }
                    stopped = stop
                        .wake
                        .wait_timeout(stopped, wake_at - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                *stopped
            };
            let now = Instant::now();
            if stopped {
                self.collect(&mut source);
                self.retry_at = None;
                self.drain(now + self.config.timeout);
                return;
            }
            if now >= next_report {
                self.collect(&mut source);
                next_report += interval;
                if next_report <= now {
                    next_report = now + interval; // fell behind: skip, do not bunch
                }
            }
            if self.retry_at.is_none_or(|at| now >= at) {
                self.drain(next_report);
            }
        }
    }

    /// Takes a snapshot and queues it as one batch.
    fn collect<F: FnMut() -> Snapshot>(&mut self, source: &mut F) {
        let snapshot = source();
        let timestamp_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let batch = influx::encode(&snapshot, self.previous.as_ref(), timestamp_ns);
        self.previous = Some(snapshot);
        if self.queue.len() >= self.config.max_pending_batches.max(1) {
            self.queue.pop_front();
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("InfluxDB queue full: dropped the oldest batch");
        }
        self.queue.push_back(batch);
        self.note_pending();
    }

    /// Writes queued batches in order until one fails or `until` passes (so that a backlog
    /// on a slow InfluxDB does not hold up the next snapshot); at least one is tried.
    fn drain(&mut self, until: Instant) {
        let mut first = true;
        while let Some(batch) = self.queue.front() {
            if !first && Instant::now() >= until {
                break;
            }
            first = false;
            match self.write(batch) {
                Ok(()) => {
                    self.queue.pop_front();
                    self.counts.sent.fetch_add(1, Ordering::Relaxed);
                    self.backoff = self.config.retry_min;
                    self.retry_at = None;
                    if self.failing {
                        self.failing = false;
                        tracing::info!(url = %self.write_url, "InfluxDB writes work again");
                    }
                }
                Err(error) => {
                    self.counts.failed.fetch_add(1, Ordering::Relaxed);
                    if self.failing {
                        tracing::debug!(url = %self.write_url, %error, "InfluxDB write failed again");
                    } else {
                        self.failing = true;
                        tracing::warn!(url = %self.write_url, %error, "InfluxDB write failed; retrying with back-off");
                    }
                    self.retry_at = Some(Instant::now() + self.backoff);
                    self.backoff = (self.backoff * 2).min(self.config.retry_max);
                    break;
                }
            }
        }
        self.note_pending();
    }

    fn write(&self, batch: &str) -> Result<(), ureq::Error> {
        let mut request = self
            .agent
            .post(&self.write_url)
            .header("Content-Type", "text/plain; charset=utf-8");
        if let InfluxTarget::V2 { token, .. } = &self.config.target {
            request = request.header("Authorization", &format!("Token {token}"));
        }
        request.send(batch).map(drop)
    }

    fn note_pending(&self) {
        self.counts
            .pending
            .store(self.queue.len() as u64, Ordering::Relaxed);
    }
}
