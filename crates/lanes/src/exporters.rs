//! The metrics exporters a server runs beside its workers (the `metrics` feature): the admin
//! `/metrics` server and the InfluxDB reporter, each on a thread of its own.

use std::net::SocketAddr;
use std::sync::Arc;

use lanes_metrics::{InfluxReporter, MetricsServer};

use crate::config::Config;
use crate::error::Error;
use crate::hub::Shared;
use crate::remote::Remote;

/// The exporters of one server.
#[derive(Default)]
pub(crate) struct Exporters {
    /// `GET /metrics` on [`MetricsConfig::addr`](crate::config::MetricsConfig::addr).
    metrics_server: Option<MetricsServer>,
    /// The InfluxDB reporter ([`MetricsConfig::influx`](crate::config::MetricsConfig::influx)).
    reporter: Option<InfluxReporter>,
}

impl Exporters {
    /// Starts what the configuration asks for.
    pub(crate) fn start(
        config: &Config,
        remote: &Remote,
        shared: &Arc<Shared>,
    ) -> Result<Exporters, Error> {
        let mut exporters = Exporters::default();
        if let Some(addr) = config.metrics.addr {
            let remote = remote.clone();
            let server = MetricsServer::start(addr, "/metrics", move || remote.metrics())
                .map_err(|source| Error::Bind { addr, source })?;
            tracing::info!(addr = %server.local_addr(), "serving /metrics");
            exporters.metrics_server = Some(server);
        }
        if let Some(influx) = &config.metrics.influx {
            let remote = remote.clone();
            let reporter = InfluxReporter::start(influx.clone(), move || remote.metrics())
                .map_err(Error::Io)?;
            let stats = reporter.stats_source();
            let _ = shared.reporter_stats.set(Box::new(stats));
            tracing::info!(url = %influx.write_url(), interval = ?influx.interval, "writing metrics to InfluxDB");
            exporters.reporter = Some(reporter);
        }
        Ok(exporters)
    }

    /// The admin server's address, if one runs.
    pub(crate) fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_server.as_ref().map(MetricsServer::local_addr)
    }

    /// Whether anything runs.
    pub(crate) fn is_running(&self) -> bool {
        self.metrics_server.is_some() || self.reporter.is_some()
    }

    /// Stops them (after the workers: the last report holds their final counts).
    pub(crate) fn stop(&mut self) {
        if let Some(reporter) = self.reporter.take() {
            reporter.stop();
        }
        self.metrics_server = None;
    }
}
