//! The broker bridge's settings ([`BrokerConfig`]): which NATS or Redis server carries the
//! topics between nodes, under which prefix, and how much waits for it while it is away.

use std::time::Duration;

use crate::connect::Reconnect;

/// The broker that shares topics between nodes, when [`Config::broker`](crate::Config::broker)
/// is set: every node runs one bridge thread with one client of the broker, subscribes upstream
/// to a topic while at least one of its connections is subscribed to it, and sends the
/// node's publishes to the broker, so that every node's subscribers get them. See
/// [the bridge's documentation](crate::bridge) for what is guaranteed.
///
/// ```
/// let mut config = lanes::Config::default();
/// # #[cfg(feature = "nats")]
/// # {
/// config.broker = Some(lanes::BrokerConfig::new("nats://127.0.0.1:4222"));
/// assert!(config.validate().is_ok());
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BrokerConfig {
    /// The broker's URL: `nats://host:port` (feature `nats`) or `redis://host:port[/db]`
    /// (feature `redis`). User and password in the URL are passed to the broker. No default.
    pub url: String,
    /// What each topic's broker subject (NATS) or channel (Redis) begins with. Default
    /// `"lanes."`. Letters, digits and `_ - . :` only, not starting with a dot and without two
    /// dots in a row (so that the subject is valid for NATS); nodes that share topics must use
    /// the same prefix, and nodes with different prefixes share nothing.
    pub prefix: String,
    /// Publishes that wait for the broker, at most (while it is away, or slower than the
    /// publishers). Past this a publish still reaches this node's subscribers, but not the
    /// other nodes': it is dropped and counted (`lanes_bridge_dropped_total{reason="queue_full"}`).
    /// Default 65,536; 1 to 16,777,216. Bounds the memory the bridge holds for an absent broker
    /// at about `queue_len` × (64 bytes + the message, shared with the local subscribers).
    pub queue_len: usize,
    /// Publishes sent to the broker in one write, at most. Default 256; 1 to 65,536.
    pub max_batch: usize,
    /// The wait between attempts to reach the broker after it went away (or was not there at
    /// start). Default: 100 ms doubling to 5 s, with half of each wait random. The bridge
    /// never gives up: `max_retries` is not used.
    pub reconnect: Reconnect,
    /// How long connecting to the broker and each request to it may take before the broker
    /// counts as gone. Default 2 s; 10 ms to 1 minute.
    pub timeout: Duration,
}

impl BrokerConfig {
    /// Settings for the broker at `url` with the defaults for everything else.
    pub fn new(url: impl Into<String>) -> BrokerConfig {
        BrokerConfig {
            url: url.into(),
            prefix: "lanes.".into(),
            queue_len: 65_536,
            max_batch: 256,
            reconnect: Reconnect {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(5),
                multiplier: 2.0,
                jitter: 0.5,
                max_retries: None,
            },
            timeout: Duration::from_secs(2),
        }
    }

    /// Sets [`prefix`](Self::prefix).
    pub fn prefix(mut self, prefix: impl Into<String>) -> BrokerConfig {
        self.prefix = prefix.into();
        self
    }

    /// Sets [`queue_len`](Self::queue_len).
    pub fn queue_len(mut self, queue_len: usize) -> BrokerConfig {
        self.queue_len = queue_len;
        self
    }

    /// Sets [`reconnect`](Self::reconnect).
    pub fn reconnect(mut self, reconnect: Reconnect) -> BrokerConfig {
        self.reconnect = reconnect;
        self
    }

    /// Which broker the URL names, from its scheme; `None` for any other scheme.
    pub fn kind(&self) -> Option<BrokerKind> {
        let scheme = self.url.split_once("://")?.0;
        match scheme.to_ascii_lowercase().as_str() {
            "nats" => Some(BrokerKind::Nats),
            "redis" => Some(BrokerKind::Redis),
            _ => None,
        }
    }

    /// Whether `prefix` may begin subjects: see [`prefix`](Self::prefix).
    pub(crate) fn prefix_is_valid(prefix: &str) -> bool {
        prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
            && !prefix.starts_with('.')
            && !prefix.contains("..")
    }
}

/// The brokers the bridge speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BrokerKind {
    /// NATS core pub/sub (`nats://`), through the async-nats client.
    Nats,
    /// Redis pub/sub (`redis://`), through the redis client.
    Redis,
}

impl BrokerKind {
    /// Whether this build has the backend (its cargo feature).
    pub fn is_built(self) -> bool {
        match self {
            BrokerKind::Nats => cfg!(feature = "nats"),
            BrokerKind::Redis => cfg!(feature = "redis"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_names_the_broker() {
        assert_eq!(
            BrokerConfig::new("nats://127.0.0.1:4222").kind(),
            Some(BrokerKind::Nats)
        );
        assert_eq!(
            BrokerConfig::new("REDIS://localhost/2").kind(),
            Some(BrokerKind::Redis)
        );
        assert_eq!(BrokerConfig::new("rediss://x").kind(), None);
        assert_eq!(BrokerConfig::new("127.0.0.1:4222").kind(), None);
    }

    #[test]
    fn prefixes_that_nats_would_misread_are_refused() {
        for good in ["", "lanes.", "app:ws-1.", "a_b"] {
            assert!(BrokerConfig::prefix_is_valid(good), "{good:?}");
        }
        for bad in [".lanes", "a..b", "a b", "a*", "a>", "é", "a\r\n"] {
            assert!(!BrokerConfig::prefix_is_valid(bad), "{bad:?}");
        }
    }
}
