//! Command-line arguments.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Parser, Subcommand, ValueEnum};
use lanes_metrics::InfluxConfig;

use crate::tls::{TlsOptions, TlsVersion};

/// How often `--influx` pushes lanes-load's metrics.
pub const INFLUX_INTERVAL: Duration = Duration::from_secs(1);

/// WebSocket load generator for lanes and its peers. Connects only where it is told; every run
/// is bounded in time and count.
#[derive(Debug, Parser)]
#[command(name = "lanes-load", version)]
#[command(group = ArgGroup::new("tls_on").args(["tls", "ca", "insecure"]).multiple(true))]
pub struct Args {
    /// Server address (IP:PORT).
    #[arg(long, default_value = "127.0.0.1:9001")]
    pub addr: SocketAddr,
    /// Speak TLS (wss://), in every mode. Only the CAs of `--ca` are trusted (no system
    /// roots): `--tls` alone fails every handshake (UnknownIssuer); give `--ca` or `--insecure`.
    #[arg(long)]
    pub tls: bool,
    /// PEM file of the CA certificates to trust (implies `--tls`).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// TLS without certificate verification, for test certificates (implies `--tls`). The
    /// handshake's signatures are still checked.
    #[arg(long, conflicts_with = "ca")]
    pub insecure: bool,
    /// TLS server name: sent as SNI, and the name the certificate must be valid for.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "localhost",
        requires = "tls_on"
    )]
    pub server_name: String,
    /// Offer only this TLS version (default: 1.2 and 1.3).
    #[arg(long, value_name = "VERSION", requires = "tls_on")]
    pub tls_version: Option<TlsVersion>,
    /// Resumed TLS handshakes (the default): each client thread keeps one session cache that
    /// its connections share, so after a thread's first handshake the next ones resume. What
    /// the connect mode measures.
    #[arg(long, overrides_with = "no_tls_resume", requires = "tls_on")]
    pub tls_resume: bool,
    /// Full TLS handshakes only: no session is kept.
    #[arg(long, overrides_with = "tls_resume", requires = "tls_on")]
    pub no_tls_resume: bool,
    /// Client threads, one mio loop each.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: u16,
    /// Pin client threads to these cores (comma list), in order; default: no pinning.
    #[arg(long, value_delimiter = ',')]
    pub cores: Vec<usize>,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value = "5", value_parser = parse_seconds)]
    pub duration: Duration,
    /// Warm-up seconds, not measured.
    #[arg(long, default_value = "1", value_parser = parse_seconds)]
    pub warmup: Duration,
    /// Print one JSON object for the run instead of the readable summary.
    #[arg(long)]
    pub json: bool,
    /// No live progress line.
    #[arg(long)]
    pub quiet: bool,
    /// PID of the server under test: its CPU time over the measured window is read from /proc
    /// and reported as messages (or deliveries) per server CPU-second, and its resident memory
    /// (VmRSS) at the end of the window as `server_rss_kib` (echo, fanout and idle modes).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// InfluxDB base URL (plain HTTP, e.g. http://127.0.0.1:8086): push lanes-load's own
    /// metrics (lanes_load_*) there every second for the run, and once more at its end, before
    /// the summary is printed. InfluxDB 1.x with `--influx-db`, 2.x with `--influx-org`,
    /// `--influx-bucket` and `--influx-token`.
    #[arg(long, value_name = "URL", value_parser = parse_http_url)]
    pub influx: Option<String>,
    /// InfluxDB 1.x database (it must exist).
    #[arg(
        long,
        value_name = "NAME",
        default_value = "lanes",
        requires = "influx",
        conflicts_with = "influx_org"
    )]
    pub influx_db: String,
    /// InfluxDB 2.x organisation (with `--influx-bucket` and `--influx-token`).
    #[arg(long, value_name = "ORG", requires_all = ["influx", "influx_bucket", "influx_token"])]
    pub influx_org: Option<String>,
    /// InfluxDB 2.x bucket (with `--influx-org` and `--influx-token`).
    #[arg(long, value_name = "BUCKET", requires_all = ["influx", "influx_org", "influx_token"])]
    pub influx_bucket: Option<String>,
    /// InfluxDB 2.x API token (with `--influx-org` and `--influx-bucket`).
    #[arg(long, value_name = "TOKEN", requires_all = ["influx", "influx_org", "influx_bucket"])]
    pub influx_token: Option<String>,
    /// Serve lanes-load's own metrics (lanes_load_*) in the Prometheus text format at
    /// http://127.0.0.1:PORT/metrics while the run lasts.
    #[arg(long, value_name = "PORT")]
    pub prometheus_port: Option<u16>,
    /// What to do.
    #[command(subcommand)]
    pub mode: Mode,
}

impl Args {
    /// The TLS options asked for, if any of `--tls`, `--ca` and `--insecure` was given.
    pub fn tls_options(&self) -> Option<TlsOptions> {
        (self.tls || self.ca.is_some() || self.insecure).then(|| TlsOptions {
            ca: self.ca.clone(),
            insecure: self.insecure,
            server_name: self.server_name.clone(),
            version: self.tls_version,
            resume: !self.no_tls_resume,
        })
    }

    /// The InfluxDB reporter's configuration that `--influx` and its companions ask for
    /// (pushing every [`INFLUX_INTERVAL`]), if any.
    pub fn influx_config(&self) -> Option<InfluxConfig> {
        let url = self.influx.as_ref()?;
        let config = match (&self.influx_org, &self.influx_bucket, &self.influx_token) {
            (Some(org), Some(bucket), Some(token)) => {
                InfluxConfig::v2(url.as_str(), org.as_str(), bucket.as_str(), token.as_str())
            }
            // clap lets only all three through, or none.
            _ => InfluxConfig::v1(url.as_str(), self.influx_db.as_str()),
        };
        Some(config.interval(INFLUX_INTERVAL))
    }
}

/// The load to generate.
#[derive(Debug, Clone, Subcommand)]
pub enum Mode {
    /// C connections, each keeping D messages of S bytes in flight; every echo is checked.
    ///
    /// Payloads are a fixed per-connection pattern that repeats every 26 bytes (text) or 251
    /// bytes (binary), behind a sequence number: with `--deflate` they compress far better than
    /// real traffic (a best case for ratio and compression CPU).
    Echo {
        /// Connections.
        #[arg(short = 'c', long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        connections: u32,
        /// Messages in flight per connection (1 = request/response).
        #[arg(short = 'd', long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
        depth: u32,
        /// Payload bytes per message.
        #[arg(short = 's', long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=(64 << 20)))]
        size: u32,
        /// Text or binary messages.
        #[arg(long, value_enum, default_value_t = Kind::Binary)]
        kind: Kind,
        /// Offer permessage-deflate (RFC 7692) and compress every message sent (RSV1, even the
        /// shortest), inflate every compressed echo before checking it. `takeover` offers
        /// `permessage-deflate; client_max_window_bits` (context takeover both ways, as browsers
        /// do); `no-takeover` offers `permessage-deflate; server_no_context_takeover;
        /// client_no_context_takeover`. A server that declines is an error. Throughput counts
        /// uncompressed payload bytes; the bytes on the wire are reported beside them. The
        /// periodic payload (see above) compresses unrealistically well.
        #[arg(long, value_enum, default_value_t = Deflate::Off)]
        deflate: Deflate,
        /// Open loop: send this many messages per second in total, spread round robin over
        /// the connections, on a fixed schedule whatever the echoes, and measure each round
        /// trip from when its message was due (coordinated omission corrected). `--depth` is
        /// then not used. The client spins between sends less than 1 ms apart.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
        rate: Option<u32>,
    },
    /// Completed handshakes per second: connect, upgrade, close, again.
    Connect {
        /// Handshakes kept in progress at once.
        #[arg(short = 'c', long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        concurrency: u32,
    },
    /// N subscribers of timestamped messages; deliveries/s, delivery latency and losses. With
    /// `--source client` lanes-load also publishes, at `--rate`, to a server that relays every
    /// message to every other connection; with `--source server` the server produces the
    /// messages itself (examples/ticker) and lanes-load only subscribes.
    Fanout {
        /// Subscriber connections.
        #[arg(short = 'n', long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        subscribers: u32,
        /// Messages published per second by lanes-load's publisher (`--source client`;
        /// default 100). Refused with `--source server`, where the server sets the rate.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        rate: Option<u32>,
        /// Who publishes: `client` (lanes-load, one more connection) or `server` (the server
        /// produces the messages; each subscriber's first delivery sets its sequence base).
        #[arg(long, value_enum, default_value_t = Source::Client)]
        source: Source,
        /// More servers (IP:PORT,...) to spread the subscribers over, round robin with
        /// `--addr`: nodes that share the topic through a broker. The publisher (`--source
        /// client`) stays on `--addr`.
        #[arg(long, value_delimiter = ',')]
        spread: Vec<SocketAddr>,
    },
    /// Players of examples/game: P players in R rooms (player i joins room r{i % R} as p{i},
    /// token t-p{i}), each sending `move 1 0` I times a second; the time between two states a
    /// player receives (p50, p99, max), states per second, and the server's CPU.
    Game {
        /// Players.
        #[arg(short = 'n', long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        players: u32,
        /// Rooms.
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        rooms: u32,
        /// Inputs each player sends per second.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
        inputs_per_s: u32,
    },
    /// Open N connections and hold them, idle, for the duration.
    Idle {
        /// Connections.
        #[arg(short = 'n', long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        connections: u32,
    },
}

/// Where the fanout mode's messages come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Source {
    /// lanes-load publishes on its own connection; the server relays.
    Client,
    /// The server publishes (for example examples/ticker).
    Server,
}

impl Source {
    /// The name used on the command line and in the JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Source::Client => "client",
            Source::Server => "server",
        }
    }
}

/// The client publisher's rate when `--rate` is not given.
pub const DEFAULT_FANOUT_RATE: u32 = 100;

/// Message type for the echo mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// Text frames (ASCII payload).
    Text,
    /// Binary frames.
    Binary,
}

/// Whether and how the echo mode offers permessage-deflate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Deflate {
    /// No offer: every message goes uncompressed.
    Off,
    /// `permessage-deflate; client_max_window_bits`: each end keeps its compression context
    /// from one message to the next.
    Takeover,
    /// `permessage-deflate; server_no_context_takeover; client_no_context_takeover`: every
    /// message is compressed on its own, both ways.
    NoTakeover,
}

impl Deflate {
    /// The name used on the command line and in the JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Deflate::Off => "off",
            Deflate::Takeover => "takeover",
            Deflate::NoTakeover => "no-takeover",
        }
    }
}

/// A plain-HTTP base URL (the reporter has no TLS).
fn parse_http_url(text: &str) -> Result<String, String> {
    match text.strip_prefix("http://") {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(text.to_owned()),
        _ => Err(format!(
            "{text:?} is not a plain HTTP base URL such as http://127.0.0.1:8086"
        )),
    }
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(0.0..=3600.0).contains(&seconds) {
        return Err(format!("{seconds} s is outside 0..=3600"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_arguments_are_refused_with_a_message() {
        for bad in [
            vec!["lanes-load", "--addr", "localhost", "echo"],
            vec!["lanes-load", "echo", "-c", "0"],
            vec!["lanes-load", "echo", "-d", "0"],
            vec!["lanes-load", "--duration", "forever", "echo"],
            vec!["lanes-load", "--duration", "-1", "echo"],
            vec!["lanes-load", "--threads", "0", "echo"],
            vec!["lanes-load", "bogus"],
            vec!["lanes-load"],
        ] {
            let error = Args::try_parse_from(&bad).expect_err(&format!("{bad:?}"));
            assert!(!error.to_string().is_empty());
        }
    }

    #[test]
    fn defaults_and_values() {
        let args = Args::try_parse_from([
            "lanes-load",
            "--threads",
            "2",
            "--cores",
            "1,0",
            "--duration",
            "2.5",
            "echo",
            "-c",
            "10",
            "-d",
            "16",
            "-s",
            "1024",
            "--kind",
            "text",
        ])
        .unwrap();
        assert_eq!(args.threads, 2);
        assert_eq!(args.cores, vec![1, 0]);
        assert_eq!(args.duration, Duration::from_millis(2500));
        assert_eq!(args.warmup, Duration::from_secs(1));
        match args.mode {
            Mode::Echo {
                connections,
                depth,
                size,
                kind,
                deflate,
                ..
            } => assert_eq!(
                (connections, depth, size, kind, deflate),
                (10, 16, 1024, Kind::Text, Deflate::Off)
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn deflate_modes() {
        let parse =
            |value: &str| match Args::try_parse_from(["lanes-load", "echo", "--deflate", value])
                .map(|args| args.mode)
            {
                Ok(Mode::Echo { deflate, .. }) => Some(deflate),
                _ => None,
            };
        for mode in [Deflate::Off, Deflate::Takeover, Deflate::NoTakeover] {
            assert_eq!(parse(mode.name()), Some(mode));
        }
        assert_eq!(parse("on"), None);
    }

    #[test]
    fn influx_and_prometheus_options() {
        use lanes_metrics::InfluxTarget;
        let parse = |global: &[&str]| {
            let mut argv = vec!["lanes-load"];
            argv.extend_from_slice(global);
            argv.push("echo");
            Args::try_parse_from(argv)
        };
        let plain = parse(&[]).unwrap();
        assert!(plain.influx_config().is_none());
        assert_eq!(plain.prometheus_port, None);

        let v1 = parse(&[
            "--influx",
            "http://127.0.0.1:8086",
            "--prometheus-port",
            "9100",
        ])
        .unwrap();
        assert_eq!(v1.prometheus_port, Some(9100));
        let config = v1.influx_config().unwrap();
        assert_eq!(
            config.target,
            InfluxTarget::V1 {
                database: "lanes".into()
            }
        );
        assert_eq!(config.interval, INFLUX_INTERVAL);
        assert_eq!(
            config.write_url(),
            "http://127.0.0.1:8086/write?db=lanes&precision=ns"
        );
        let db = parse(&["--influx", "http://h:1", "--influx-db", "load"]).unwrap();
        assert_eq!(
            db.influx_config().unwrap().write_url(),
            "http://h:1/write?db=load&precision=ns"
        );

        let v2 = parse(&[
            "--influx",
            "http://h:8086/",
            "--influx-org",
            "o",
            "--influx-bucket",
            "b",
            "--influx-token",
            "t",
        ])
        .unwrap();
        let config = v2.influx_config().unwrap();
        assert_eq!(
            config.target,
            InfluxTarget::V2 {
                org: "o".into(),
                bucket: "b".into(),
                token: "t".into()
            }
        );
        assert_eq!(
            config.write_url(),
            "http://h:8086/api/v2/write?org=o&bucket=b&precision=ns"
        );

        for bad in [
            &["--influx", "http://h:1", "--influx-org", "o"][..],
            &[
                "--influx",
                "http://h:1",
                "--influx-org",
                "o",
                "--influx-bucket",
                "b",
            ],
            &["--influx", "http://h:1", "--influx-token", "t"],
            &[
                "--influx-org",
                "o",
                "--influx-bucket",
                "b",
                "--influx-token",
                "t",
            ],
            &[
                "--influx",
                "http://h:1",
                "--influx-db",
                "d",
                "--influx-org",
                "o",
                "--influx-bucket",
                "b",
                "--influx-token",
                "t",
            ],
            &["--influx-db", "d"],
            &["--influx", "https://h:8086"],
            &["--influx", "h:8086"],
            &["--prometheus-port", "65536"],
        ] {
            let error = parse(bad).expect_err(&format!("{bad:?}"));
            assert_eq!(error.exit_code(), 2, "{bad:?}: {error}");
        }
    }

    #[test]
    fn tls_options() {
        let parse = |global: &[&str]| {
            let mut argv = vec!["lanes-load"];
            argv.extend_from_slice(global);
            argv.push("connect");
            Args::try_parse_from(argv)
        };
        assert_eq!(parse(&[]).unwrap().tls_options(), None);
        let tls = |global: &[&str]| parse(global).unwrap().tls_options().unwrap();
        let plain_tls = tls(&["--tls"]);
        assert_eq!(
            plain_tls,
            TlsOptions {
                ca: None,
                insecure: false,
                server_name: "localhost".into(),
                version: None,
                resume: true,
            }
        );
        // --ca and --insecure imply --tls.
        let ca = tls(&["--ca", "ca.pem", "--server-name", "example.test"]);
        assert_eq!(ca.ca, Some(PathBuf::from("ca.pem")));
        assert_eq!(ca.server_name, "example.test");
        let insecure = tls(&["--insecure", "--tls-version", "1.2", "--no-tls-resume"]);
        assert!(insecure.insecure && !insecure.resume);
        assert_eq!(insecure.version, Some(TlsVersion::Tls12));
        assert_eq!(
            tls(&["--tls", "--tls-version", "1.3"]).version,
            Some(TlsVersion::Tls13)
        );
        // The last of --tls-resume and --no-tls-resume wins.
        assert!(tls(&["--tls", "--no-tls-resume", "--tls-resume"]).resume);
        assert!(!tls(&["--tls", "--tls-resume", "--no-tls-resume"]).resume);
        for bad in [
            &["--server-name", "x"][..],
            &["--tls-version", "1.3"],
            &["--no-tls-resume"],
            &["--tls", "--tls-version", "1.1"],
            &["--ca", "ca.pem", "--insecure"],
        ] {
            let error = parse(bad).expect_err(&format!("{bad:?}"));
            assert_eq!(error.exit_code(), 2, "{bad:?}: {error}");
        }
    }

    #[test]
    fn fanout_source_and_rate() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["lanes-load", "fanout"];
            argv.extend_from_slice(extra);
            match Args::try_parse_from(argv).unwrap().mode {
                Mode::Fanout {
                    subscribers,
                    rate,
                    source,
                    ..
                } => (subscribers, rate, source),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(parse(&[]), (1000, None, Source::Client));
        assert_eq!(
            parse(&["-n", "10000", "--source", "server"]),
            (10_000, None, Source::Server)
        );
        assert_eq!(parse(&["--rate", "500"]), (1000, Some(500), Source::Client));
        assert!(Args::try_parse_from(["lanes-load", "fanout", "--source", "both"]).is_err());
        assert!(Args::try_parse_from(["lanes-load", "fanout", "--rate", "0"]).is_err());
    }
}
