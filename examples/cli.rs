//! Command-line options every example server shares: where to listen, which cores to use,
//! where metrics go; and the log output.

use std::net::SocketAddr;
use std::time::Duration;

use lanes::metrics::InfluxConfig;
use lanes::{Config, Cores, Handler, Server, WorkerInfo};

/// `--addr`, `--cores`, `--core-list`, `--no-pin`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServerArgs {
    /// Address to listen on (every worker binds it with SO_REUSEPORT).
    #[arg(long, default_value = "127.0.0.1:9001")]
    pub(crate) addr: SocketAddr,
    /// Number of workers, on the first cores (default: one per core).
    #[arg(long, conflicts_with = "core_list")]
    pub(crate) cores: Option<usize>,
    /// One worker on each of these cores, e.g. 0,1.
    #[arg(long, value_delimiter = ',')]
    pub(crate) core_list: Option<Vec<usize>>,
    /// Do not pin workers to their cores.
    #[arg(long)]
    pub(crate) no_pin: bool,
    /// Answer GET on this path of the WebSocket port with the metrics (Prometheus text), e.g.
    /// /metrics. Off by default.
    #[arg(long)]
    pub(crate) metrics_path: Option<String>,
    /// Serve GET /metrics on this separate admin address, e.g. 127.0.0.1:9464.
    #[arg(long)]
    pub(crate) metrics_addr: Option<SocketAddr>,
    /// Write the metrics to the InfluxDB at this base URL, e.g. http://127.0.0.1:8086.
    #[arg(long)]
    pub(crate) influx: Option<String>,
    /// InfluxDB 1.x database.
    #[arg(long, default_value = "lanes")]
    pub(crate) influx_db: String,
    /// InfluxDB 2.x organisation (with --influx-bucket and --influx-token: v2 API).
    #[arg(long, requires_all = ["influx_bucket", "influx_token"])]
    pub(crate) influx_org: Option<String>,
    /// InfluxDB 2.x bucket.
    #[arg(long, requires_all = ["influx_org", "influx_token"])]
    pub(crate) influx_bucket: Option<String>,
    /// InfluxDB 2.x API token.
    #[arg(long, requires_all = ["influx_org", "influx_bucket"])]
    pub(crate) influx_token: Option<String>,
    /// Seconds between InfluxDB writes.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) influx_interval: f64,
    /// Serve wss:// (TLS) with this PEM certificate chain (leaf first); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    pub(crate) tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub(crate) tls_key: Option<std::path::PathBuf>,
    /// Share topics with other nodes through this broker: nats://HOST:PORT or
    /// redis://HOST:PORT (needs lanes' `nats` or `redis` feature: `--features lanes/nats`).
    #[arg(long)]
    pub(crate) broker: Option<String>,
    /// Busy polling: after handling events, each worker polls without blocking for this many
    /// microseconds before it sleeps in epoll_wait (1 to 1,000,000; off by default). Burns
    /// its core for that long after every event; for cores reserved for the server.
    #[arg(long)]
    pub(crate) busy_poll_us: Option<u64>,
}

/// Log lines to standard error through `tracing`; `RUST_LOG` chooses the level (default
/// `info`; `RUST_LOG=lanes=debug` shows one line per refused handshake or protocol error).
pub(crate) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

impl ServerArgs {
    /// A server on these options, with `config` plus the metrics options.
    pub(crate) fn server<F, H>(&self, factory: F, mut config: Config) -> Server<F>
    where
        F: Fn(WorkerInfo) -> H + Send + Clone + 'static,
        H: Handler,
    {
        let cores = match (&self.core_list, self.cores) {
            (Some(list), _) => Cores::List(list.clone()),
            (None, Some(n)) => Cores::Count(n),
            (None, None) => Cores::All,
        };
        config.metrics.path = self.metrics_path.clone();
        config.metrics.addr = self.metrics_addr;
        config.metrics.influx = self.influx_config();
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            match lanes::TlsConfig::from_pem_files(cert, key) {
                Ok(tls) => config.tls = Some(tls),
                Err(error) => {
                    eprintln!("error: {error}");
                    std::process::exit(2);
                }
            }
        }
        if let Some(url) = &self.broker {
            broker(&mut config, url);
        }
        if let Some(us) = self.busy_poll_us {
            config.socket.busy_poll = Some(Duration::from_micros(us));
            if let Err(error) = config.validate() {
                eprintln!("error: {error}");
                std::process::exit(2);
            }
        }
        Server::new(self.addr, factory)
            .cores(cores)
            .pin(!self.no_pin)
            .config(config)
    }

    fn influx_config(&self) -> Option<InfluxConfig> {
        let url = self.influx.as_deref()?;
        let config = match (&self.influx_org, &self.influx_bucket, &self.influx_token) {
            (Some(org), Some(bucket), Some(token)) => {
                InfluxConfig::v2(url, org.as_str(), bucket.as_str(), token.as_str())
            }
            _ => InfluxConfig::v1(url, self.influx_db.as_str()),
        };
        Some(config.interval(Duration::from_secs_f64(self.influx_interval.max(0.01))))
    }
}

/// Sets `--broker` in `config`.
#[cfg(feature = "bridge")]
fn broker(config: &mut Config, url: &str) {
    config.broker = Some(lanes::BrokerConfig::new(url));
    if let Err(error) = config.validate() {
        eprintln!("error: {error}");
        std::process::exit(2);
    }
}

/// `--broker` without a bridge in this build.
#[cfg(not(feature = "bridge"))]
fn broker(_: &mut Config, url: &str) {
    eprintln!(
        "error: --broker {url}: this build has no broker bridge; build the example with \
         --features lanes/nats,lanes/redis"
    );
    std::process::exit(2);
}
