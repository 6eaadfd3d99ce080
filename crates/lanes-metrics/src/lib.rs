//! Metrics for lanes, shared by the server runtime and the load generator.
//!
//! - [`owned`]: counters with one writer (a worker thread) and any number of readers;
//! - [`Histogram`]: a histogram with one writer (a worker thread) and any number of readers,
//!   updated with plain loads and stores (no locked instruction, no contention);
//! - [`Snapshot`], [`Family`], [`Sample`]: a point-in-time copy of a set of metrics, the one
//!   shape both exporters read;
//! - [`Registry`]: counters and gauges an application registers beside lanes' own;
//! - [`prometheus`]: the Prometheus text exposition format (version 0.0.4);
//! - [`influx`]: InfluxDB line protocol;
//! - [`InfluxReporter`]: a thread that writes snapshots to an InfluxDB HTTP write endpoint, with
//!   a bounded queue and back-off;
//! - [`MetricsServer`]: a small HTTP server that answers `GET /metrics` on an admin address.
//!
//! ```
//! use lanes_metrics::{Registry, prometheus};
//!
//! let registry = Registry::new();
//! let moves = registry.counter("game_moves_total", "Moves played.", &[("core", "0")])?;
//! moves.add(3);
//! let text = prometheus::encode(&registry.snapshot());
//! assert!(text.contains("game_moves_total{core=\"0\"} 3\n"));
//! # Ok::<(), lanes_metrics::NameError>(())
//! ```

#[cfg(feature = "exporters")]
mod exporter;
mod histogram;
pub mod influx;
pub mod owned;
pub mod prometheus;
mod registry;
#[cfg(feature = "exporters")]
mod reporter;
mod snapshot;

#[cfg(feature = "exporters")]
pub use exporter::MetricsServer;
pub use histogram::{BUCKETS, Histogram, HistogramSnapshot};
pub use registry::{Counter, Gauge, NameError, Registry};
#[cfg(feature = "exporters")]
pub use reporter::{InfluxConfig, InfluxReporter, InfluxTarget, ReporterStats};
pub use snapshot::{Family, Kind, Sample, Snapshot, Value};
