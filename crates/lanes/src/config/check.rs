//! Checking a [`Config`] against the documented ranges.

use std::fmt;
use std::time::Duration;

use super::Config;

impl Config {
    /// A configuration with every default (the same as `Config::default()`).
    pub fn new() -> Config {
        Config::default()
    }

    /// Checks every field against its documented range; the first one outside it is the
    /// error. [`Server::start`](crate::Server::start) calls this.
    pub fn validate(&self) -> Result<(), ConfigError> {
        const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
        const MS: Duration = Duration::from_millis(1);
        let l = &self.limits;
        check(
            "limits.max_head_len",
            l.max_head_len,
            1024,
            1 << 20,
            "1 KiB to 1 MiB",
        )?;
        check("limits.max_headers", l.max_headers, 1, 1024, "1 to 1,024")?;
        check(
            "limits.max_frame_len",
            l.max_frame_len,
            125,
            1 << 31,
            "125 bytes to 2 GiB",
        )?;
        check(
            "limits.max_message_len",
            l.max_message_len,
            1,
            1 << 31,
            "1 byte to 2 GiB",
        )?;
        let connections = l.max_connections_per_worker;
        check(
            "limits.max_connections_per_worker",
            connections,
            1,
            1 << 24,
            "1 to 16,777,216",
        )?;
        let subscriptions = l.max_subscriptions_per_connection;
        let range = "0 to 1,048,576";
        check(
            "limits.max_subscriptions_per_connection",
            subscriptions,
            0,
            1 << 20,
            range,
        )?;
        check(
            "limits.remote_queue_len",
            l.remote_queue_len,
            1,
            1 << 24,
            "1 to 16,777,216",
        )?;
        let t = &self.timeouts;
        check(
            "timeouts.handshake",
            t.handshake,
            MS,
            YEAR,
            "1 ms to a year",
        )?;
        // The session keeps these in 32-bit microseconds: at most about 71 minutes.
        const HOUR: Duration = Duration::from_secs(3600);
        if let Some(interval) = t.ping_interval {
            check(
                "timeouts.ping_interval",
                interval,
                MS,
                HOUR,
                "1 ms to an hour, or None",
            )?;
        }
        check("timeouts.pong", t.pong, MS, HOUR, "1 ms to an hour")?;
        check("timeouts.message", t.message, MS, HOUR, "1 ms to an hour")?;
        check(
            "timeouts.close",
            t.close,
            Duration::ZERO,
            HOUR,
            "0 to an hour",
        )?;
        check(
            "timeouts.shutdown",
            t.shutdown,
            Duration::ZERO,
            YEAR,
            "0 to a year",
        )?;
        check(
            "timeouts.deferred_upgrade",
            t.deferred_upgrade,
            MS,
            HOUR,
            "1 ms to an hour",
        )?;
        let b = &self.backpressure;
        check(
            "backpressure.max_len",
            b.max_len,
            1,
            1 << 40,
            "1 byte to 1 TiB",
        )?;
        check(
            "backpressure.pause_len",
            b.pause_len,
            1,
            b.max_len,
            "1 byte to max_len",
        )?;
        if let Some(age) = b.max_age {
            check(
                "backpressure.max_age",
                age,
                MS,
                HOUR,
                "1 ms to an hour, or None",
            )?;
        }
        let m = &self.memory;
        check(
            "memory.worker_budget",
            m.worker_budget,
            1 << 20,
            1 << 40,
            "1 MiB to 1 TiB",
        )?;
        if let Some(threshold) = m.malloc_mmap_threshold {
            check(
                "memory.malloc_mmap_threshold",
                threshold,
                4096,
                32 << 20,
                "4 KiB to 32 MiB, or None",
            )?;
        }
        let s = &self.socket;
        check("socket.backlog", s.backlog, 1, 65_535, "1 to 65,535")?;
        if let Some(len) = s.send_buffer_len {
            check(
                "socket.send_buffer_len",
                len,
                4096,
                64 << 20,
                "4 KiB to 64 MiB, or None",
            )?;
        }
        check(
            "socket.read_buffer_len",
            s.read_buffer_len,
            1024,
            16 << 20,
            "1 KiB to 16 MiB",
        )?;
        check(
            "socket.accepts_per_wakeup",
            s.accepts_per_wakeup,
            1,
            65_536,
            "1 to 65,536",
        )?;
        check(
            "socket.reads_per_wakeup",
            s.reads_per_wakeup,
            1,
            65_536,
            "1 to 65,536",
        )?;
        let hour = Duration::from_secs(3600);
        check(
            "socket.accept_backoff",
            s.accept_backoff,
            MS,
            hour,
            "1 ms to an hour",
        )?;
        if let Some(window) = s.busy_poll {
            let range = "1 µs to 1 s, or None";
            let second = Duration::from_secs(1);
            check(
                "socket.busy_poll",
                window,
                Duration::from_micros(1),
                second,
                range,
            )?;
        }
        let resolution = self.timers.resolution;
        check(
            "timers.resolution",
            resolution,
            MS,
            Duration::from_secs(1),
            "1 ms to 1 s",
        )?;
        if let Some(interval) = self.timers.tick_interval {
            let range = "timers.resolution to a year, or None";
            check("timers.tick_interval", interval, resolution, YEAR, range)?;
        }
        if cfg!(not(feature = "deflate")) && self.deflate.enabled {
            return Err(ConfigError {
                field: "deflate.enabled",
                value: "true".into(),
                allowed: "false (lanes was built without its deflate feature)",
            });
        }
        #[cfg(feature = "metrics")]
        if let Some(path) = &self.metrics.path
            && !path.starts_with('/')
        {
            return Err(ConfigError {
                field: "metrics.path",
                value: format!("{path:?}"),
                allowed: "a path starting with /",
            });
        }
        #[cfg(feature = "bridge")]
        if let Some(broker) = &self.broker {
            check_broker(broker)?;
        }
        Ok(())
    }
}

/// The broker's settings: a URL of a backend this build has, a prefix NATS reads as meant, and
/// the sizes in range.
#[cfg(feature = "bridge")]
fn check_broker(broker: &super::BrokerConfig) -> Result<(), ConfigError> {
    match broker.kind() {
        Some(kind) if kind.is_built() => {}
        Some(_) => {
            return Err(ConfigError {
                field: "broker.url",
                value: format!("{:?}", broker.url),
                allowed: "a broker whose feature (nats, redis) lanes was built with",
            });
        }
        None => {
            return Err(ConfigError {
                field: "broker.url",
                value: format!("{:?}", broker.url),
                allowed: "nats://host:port or redis://host:port[/db]",
            });
        }
    }
    if !super::BrokerConfig::prefix_is_valid(&broker.prefix) {
        return Err(ConfigError {
            field: "broker.prefix",
            value: format!("{:?}", broker.prefix),
            allowed: "letters, digits and _ - . : only, no leading dot, no two dots in a row",
        });
    }
    let range = "1 to 16,777,216";
    check("broker.queue_len", broker.queue_len, 1, 1 << 24, range)?;
    check(
        "broker.max_batch",
        broker.max_batch,
        1,
        65_536,
        "1 to 65,536",
    )?;
    let (ms, minute) = (Duration::from_millis(10), Duration::from_secs(60));
    check(
        "broker.timeout",
        broker.timeout,
        ms,
        minute,
        "10 ms to 1 minute",
    )?;
    let r = &broker.reconnect;
    check(
        "broker.reconnect.initial",
        r.initial,
        ms,
        minute,
        "10 ms to 1 minute",
    )?;
    check(
        "broker.reconnect.max",
        r.max,
        r.initial,
        Duration::from_secs(3600),
        "initial to 1 hour",
    )
}

/// `Ok` when `min <= value <= max`, else the error naming `field` and `allowed`.
fn check<T: PartialOrd + fmt::Debug>(
    field: &'static str,
    value: T,
    min: T,
    max: T,
    allowed: &'static str,
) -> Result<(), ConfigError> {
    if value >= min && value <= max {
        return Ok(());
    }
    Err(ConfigError {
        field,
        value: format!("{value:?}"),
        allowed,
    })
}

/// A [`Config`] field outside its allowed range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    field: &'static str,
    value: String,
    allowed: &'static str,
}

impl ConfigError {
    /// The field, as a path from [`Config`] (`"limits.max_frame_len"`).
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// What the field may be.
    pub fn allowed(&self) -> &'static str {
        self.allowed
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "config.{} is {}: allowed {}",
            self.field, self.value, self.allowed
        )
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    #[test]
    fn timeouts_the_session_cannot_hold_are_refused() {
        let mut config = Config::default();
        config.timeouts.pong = Duration::from_secs(3601);
        assert_eq!(config.validate().unwrap_err().field(), "timeouts.pong");
        config.timeouts.pong = Duration::from_secs(3600);
        config.timeouts.close = Duration::from_secs(3601);
        assert_eq!(config.validate().unwrap_err().field(), "timeouts.close");
    }

    #[test]
    fn each_range_is_enforced_at_both_ends() {
        let mut config = Config::default();
        config.limits.max_head_len = 1023;
        assert_eq!(
            config.validate().unwrap_err().field(),
            "limits.max_head_len"
        );
        config.limits.max_head_len = 1 << 20;
        assert_eq!(config.validate(), Ok(()));
        config.limits.max_head_len = (1 << 20) + 1;
        assert_eq!(
            config.validate().unwrap_err().field(),
            "limits.max_head_len"
        );

        let mut config = Config::default();
        config.backpressure.pause_len = config.backpressure.max_len + 1;
        let error = config.validate().unwrap_err();
        assert_eq!(error.field(), "backpressure.pause_len");
        assert_eq!(error.allowed(), "1 byte to max_len");

        let mut config = Config::default();
        config.timeouts.ping_interval = Some(Duration::ZERO);
        assert_eq!(
            config.validate().unwrap_err().field(),
            "timeouts.ping_interval"
        );
        config.timeouts.ping_interval = None;
        assert_eq!(config.validate(), Ok(()));
        config.timeouts.message = Duration::from_secs(3601);
        assert_eq!(config.validate().unwrap_err().field(), "timeouts.message");
        config.timeouts.message = Duration::ZERO;
        assert_eq!(config.validate().unwrap_err().field(), "timeouts.message");

        let mut config = Config::default();
        config.backpressure.max_age = Some(Duration::from_secs(3601));
        assert_eq!(
            config.validate().unwrap_err().field(),
            "backpressure.max_age"
        );
        config.backpressure.max_age = Some(Duration::from_millis(1));
        config.socket.send_buffer_len = Some(1024);
        assert_eq!(
            config.validate().unwrap_err().field(),
            "socket.send_buffer_len"
        );
        config.socket.send_buffer_len = Some(65536);
        assert_eq!(config.validate(), Ok(()));
        config.socket.busy_poll = Some(Duration::ZERO);
        assert_eq!(config.validate().unwrap_err().field(), "socket.busy_poll");
        config.socket.busy_poll = Some(Duration::from_secs(2));
        assert_eq!(config.validate().unwrap_err().field(), "socket.busy_poll");
        config.socket.busy_poll = Some(Duration::from_micros(50));
        assert_eq!(config.validate(), Ok(()));

        let mut config = Config::default();
        config.timers.tick_interval = Some(Duration::from_micros(100));
        let error = config.validate().unwrap_err();
        assert_eq!(error.field(), "timers.tick_interval");
        assert!(
            error
                .to_string()
                .contains("config.timers.tick_interval is 100µs"),
            "{error}"
        );

        let mut config = Config::default();
        config.socket.accepts_per_wakeup = 0;
        assert_eq!(
            config.validate().unwrap_err().field(),
            "socket.accepts_per_wakeup"
        );
    }

    #[cfg(feature = "metrics")]
    #[test]
    fn a_metrics_path_must_be_a_path() {
        let mut config = Config::default();
        config.metrics.path = Some("metrics".into());
        assert_eq!(config.validate().unwrap_err().field(), "metrics.path");
        config.metrics.path = Some("/metrics".into());
        assert_eq!(config.validate(), Ok(()));
    }
}
