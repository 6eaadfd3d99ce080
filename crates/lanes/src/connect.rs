//! Outbound connections, as an application asks for them: [`Connect`] (the URL, the initial
//! state, the request's options), [`Reconnect`] (how a lost connection is made again) and
//! [`ConnectError`] (why an attempt failed). The worker's side is `worker/dial.rs`.

use std::any::Any;
use std::fmt;
use std::time::Duration;

#[cfg(feature = "tls")]
use crate::config::ClientTls;

/// An outbound WebSocket connection to open on a worker: its URL, the application's initial
/// state for it, and the options of its opening handshake. Given to
/// [`Remote::connect`](crate::Remote::connect) (or
/// [`Remote::connect_for`](crate::Remote::connect_for)), from any thread or from a callback
/// (through [`Ws::remote`](crate::Ws::remote)).
///
/// Once open, the connection is served like an accepted one: the same handler gets
/// `on_open`, `on_message`, ... with a [`Ws`](crate::Ws) to send, close, subscribe and publish
/// (its frames are masked, as a client's must be), and `on_close` when it ends. A handler tells
/// its outbound connections from accepted ones by their state (an enum with a variant for
/// each, say) or by [`Ws::is_outbound`](crate::Ws::is_outbound). An attempt that fails (name
/// resolution, refused, timed out, TLS, a refusal from the server) goes to
/// [`Handler::on_connect_failed`](crate::Handler::on_connect_failed) with the state and a
/// [`ConnectError`].
///
/// ```
/// use std::time::Duration;
/// use lanes::{Connect, Reconnect};
///
/// # fn main() -> Result<(), lanes::ConnectError> {
/// let upstream = Connect::new("ws://127.0.0.1:9001/feed?symbols=all", "upstream".to_string())?
///     .subprotocol("feed.v2")
///     .header("Authorization", "Bearer 0123")
///     .deflate(true)
///     .connect_timeout(Duration::from_secs(3))
///     .reconnect(Reconnect::default());
/// // remote.connect(0, upstream)?;
/// # let _ = upstream;
/// # Ok(())
/// # }
/// ```
pub struct Connect<S> {
    pub(crate) target: Target,
    pub(crate) state: S,
    pub(crate) options: DialOptions,
    pub(crate) clone: Option<CloneState>,
}

/// The options of an outbound connection, without its state.
#[derive(Clone)]
pub(crate) struct DialOptions {
    pub(crate) subprotocols: Vec<String>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) deflate: bool,
    pub(crate) connect_timeout: Duration,
    pub(crate) handshake_timeout: Duration,
    pub(crate) reconnect: Option<Reconnect>,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<ClientTls>,
}

/// Makes a new attempt's state from the one given to `connect` (reconnecting connections).
pub(crate) type CloneState = fn(&(dyn Any + Send)) -> Box<dyn Any + Send>;

fn clone_state<S: Clone + Send + 'static>(state: &(dyn Any + Send)) -> Box<dyn Any + Send> {
    match (state as &dyn Any).downcast_ref::<S>() {
        Some(state) => Box::new(state.clone()),
        None => unreachable!("a dial's state has the type it was made with"),
    }
}

impl<S> fmt::Debug for Connect<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connect")
            .field("url", &self.target.url)
            .field("subprotocols", &self.options.subprotocols)
            .field("deflate", &self.options.deflate)
            .field("reconnect", &self.options.reconnect)
            .finish_non_exhaustive()
    }
}

impl<S: Send + 'static> Connect<S> {
    /// A connection to `url` (`ws://host[:port][/path][?query]` or `wss://...`; the port
    /// defaults to 80 and 443) with `state` as the connection's initial state. The defaults:
    /// no subprotocol, no extra header, no permessage-deflate offer, 10 s to resolve the name
    /// and connect, 10 s for the TLS and WebSocket handshakes, no reconnection; `wss://`
    /// trusts the Mozilla roots ([`ClientTls::webpki_roots`]).
    pub fn new(url: &str, state: S) -> Result<Connect<S>, ConnectError> {
        Ok(Connect {
            target: Target::parse(url)?,
            state,
            options: DialOptions {
                subprotocols: Vec::new(),
                headers: Vec::new(),
                deflate: false,
                connect_timeout: Duration::from_secs(10),
                handshake_timeout: Duration::from_secs(10),
                reconnect: None,
                #[cfg(feature = "tls")]
                tls: None,
            },
            clone: None,
        })
    }

    /// Offers `subprotocol` (in the order of the calls: the first is preferred). The server's
    /// choice is [`Ws::subprotocol`](crate::Ws::subprotocol) once open.
    pub fn subprotocol(mut self, subprotocol: impl Into<String>) -> Connect<S> {
        self.options.subprotocols.push(subprotocol.into());
        self
    }

    /// Adds a header field to the request (authentication, say).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Connect<S> {
        self.options.headers.push((name.into(), value.into()));
        self
    }

    /// Offers permessage-deflate (RFC 7692), used if the server accepts; off by default. The
    /// worker's [`Config::deflate`](crate::Config::deflate) is read from our side as the
    /// sender: with `server_no_context_takeover` we compress each message on its own (and say
    /// so), with `client_no_context_takeover` we ask the server to. Needs the `deflate` feature
    /// (without it, nothing is offered).
    pub fn deflate(mut self, offer: bool) -> Connect<S> {
        self.options.deflate = offer;
        self
    }

    /// How long resolving the host name and the TCP connect may take together.
    pub fn connect_timeout(mut self, timeout: Duration) -> Connect<S> {
        self.options.connect_timeout = timeout;
        self
    }

    /// How long the TLS handshake and the WebSocket opening handshake may take together, from
    /// the TCP connection.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Connect<S> {
        self.options.handshake_timeout = timeout;
        self
    }

    /// Connects again after each failed attempt and each loss, after the back-off `policy`
    /// says. Each attempt starts from a clone of the state given to [`Connect::new`].
    ///
    /// The application is told of each loss (`on_close`, with
    /// [`Closed::reconnect_in`](crate::Closed::reconnect_in) set), each failed attempt
    /// (`on_connect_failed`, with [`ConnectFailure::retry_in`] set) and each new connection
    /// (`on_open`). What a connection set up (subscriptions, timers) ends with it: `on_open`
    /// sets it up again on the new one.
    pub fn reconnect(mut self, policy: Reconnect) -> Connect<S>
    where
        S: Clone,
    {
        self.options.reconnect = Some(policy);
        self.clone = Some(clone_state::<S>);
        self
    }

    /// The TLS a `wss://` URL is connected with (default: [`ClientTls::webpki_roots`]).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: ClientTls) -> Connect<S> {
        self.options.tls = Some(tls);
        self
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.target.url
    }

    /// The request with its state erased, to travel to a worker.
    pub(crate) fn erase(self) -> DialRequest {
        DialRequest {
            target: self.target,
            state: Box::new(self.state),
            options: self.options,
            clone: self.clone,
        }
    }
}

/// A [`Connect`] on its way to a worker (its state erased: the worker takes it back as its
/// handler's state type).
pub(crate) struct DialRequest {
    pub(crate) target: Target,
    pub(crate) state: Box<dyn Any + Send>,
    pub(crate) options: DialOptions,
    pub(crate) clone: Option<CloneState>,
}

impl fmt::Debug for DialRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DialRequest")
            .field("url", &self.target.url)
            .finish_non_exhaustive()
    }
}

/// Where an outbound connection goes, from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) url: String,
    pub(crate) secure: bool,
    /// The host as written, without the brackets of an IPv6 literal.
    pub(crate) host: String,
    pub(crate) port: u16,
    /// The `Host` header's value (the authority, without user info).
    pub(crate) authority: String,
    /// The request target: path and query.
    pub(crate) resource: String,
}

impl Target {
    /// Parses a `ws://` or `wss://` URL (RFC 6455 §3): no user info, no fragment.
    pub(crate) fn parse(url: &str) -> Result<Target, ConnectError> {
        let invalid = |why: &str| ConnectError::InvalidUrl(format!("{url}: {why}"));
        if url.contains('#') {
            return Err(invalid("a WebSocket URL has no fragment"));
        }
        let uri: http::Uri = url.parse().map_err(|e| invalid(&format!("{e}")))?;
        let secure = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("ws") => false,
            Some(s) if s.eq_ignore_ascii_case("wss") => true,
            _ => return Err(invalid("the scheme must be ws or wss")),
        };
        let authority = uri.authority().ok_or_else(|| invalid("no host"))?;
        if authority.as_str().contains('@') {
            return Err(invalid("user info is not allowed"));
        }
        let host = authority.host();
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        // A port that is written must be one (http's parser lets 99999 through as none).
        let after_host = authority.as_str().rsplit(']').next().unwrap_or("");
        let port = match (after_host.rsplit_once(':'), authority.port_u16()) {
            (_, Some(port)) => port,
            (Some((_, written)), None) if !written.is_empty() => {
                return Err(invalid("the port must be 1 to 65535"));
            }
            _ => {
                if secure {
                    443
                } else {
                    80
                }
            }
        };
        let resource = match uri.path_and_query() {
            Some(pq) if !pq.as_str().is_empty() && pq.as_str().starts_with('/') => {
                pq.as_str().to_string()
            }
            Some(pq) if pq.as_str().starts_with('?') => format!("/{}", pq.as_str()),
            _ => "/".to_string(),
        };
        Ok(Target {
            url: url.to_string(),
            secure,
            host: host.to_string(),
            port,
            authority: authority.as_str().to_string(),
            resource,
        })
    }
}

/// How an outbound connection is made again after a failed attempt or a loss: exponential
/// back-off with jitter, capped.
///
/// The `n`-th retry in a row (from 0) waits `min(max, initial × multiplier^n)`, less a random
/// part of up to `jitter` of it (so that many clients that lost the same server do not all
/// come back at once). The count starts over once a connection opens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reconnect {
    /// The first wait (default 100 ms).
    pub initial: Duration,
    /// The longest wait (default 30 s).
    pub max: Duration,
    /// The growth per retry (default 2).
    pub multiplier: f64,
    /// The part of each wait that is random, 0 to 1 (default 0.5: a wait is between half and
    /// all of its back-off).
    pub jitter: f64,
    /// Gives up after this many retries in a row (default: never).
    pub max_retries: Option<u32>,
}

impl Default for Reconnect {
    fn default() -> Reconnect {
        Reconnect {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.5,
            max_retries: None,
        }
    }
}

impl Reconnect {
    /// The back-off before retry `n` (from 0), without its jitter.
    pub fn backoff(&self, n: u32) -> Duration {
        let grown = self.initial.as_secs_f64() * self.multiplier.max(1.0).powf(f64::from(n));
        let max = self.max.as_secs_f64().max(0.0);
        Duration::from_secs_f64(grown.min(max).max(0.0))
    }

    /// The wait before retry `n` given a uniform random `unit` in [0, 1): the back-off less
    /// `unit × jitter` of it. `None` past [`max_retries`](Self::max_retries).
    pub fn delay(&self, n: u32, unit: f64) -> Option<Duration> {
        if self.max_retries.is_some_and(|max| n >= max) {
            return None;
        }
        let backoff = self.backoff(n);
        let jitter = self.jitter.clamp(0.0, 1.0) * unit.clamp(0.0, 1.0);
        Some(backoff.mul_f64(1.0 - jitter))
    }
}

/// Why an outbound connection attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL is not a `ws://` or `wss://` URL lanes can connect to.
    InvalidUrl(String),
    /// The host name did not resolve (the resolver's message), or to no address.
    Resolve(String),
    /// The TCP connection failed (refused, unreachable, ...), on every address the name
    /// resolved to.
    Io(std::io::ErrorKind),
    /// Resolving and connecting took longer than the connect timeout.
    ConnectTimedOut,
    /// The TLS and WebSocket handshakes took longer than the handshake timeout.
    HandshakeTimedOut,
    /// The TLS handshake failed (rustls' message: an untrusted certificate, a name mismatch,
    /// ...).
    Tls(String),
    /// `wss://` without the `tls` feature.
    TlsUnavailable,
    /// The server answered the upgrade with this status, not 101 (401, 403, 404, 503, ...).
    Status(u16),
    /// The server's answer was not a valid WebSocket acceptance (a wrong
    /// `Sec-WebSocket-Accept`, a subprotocol or extension that was not offered, ...).
    Handshake(String),
    /// The server closed the connection before its answer was complete.
    Closed,
    /// The worker has no room for another connection
    /// ([`Limits::max_connections_per_worker`](crate::config::Limits)), or its socket could not
    /// be registered.
    Refused(&'static str),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::InvalidUrl(why) => write!(f, "invalid WebSocket URL {why}"),
            ConnectError::Resolve(why) => write!(f, "name resolution failed: {why}"),
            ConnectError::Io(kind) => write!(f, "TCP connect failed: {kind}"),
            ConnectError::ConnectTimedOut => f.write_str("connect timed out"),
            ConnectError::HandshakeTimedOut => f.write_str("handshake timed out"),
            ConnectError::Tls(why) => write!(f, "TLS handshake failed: {why}"),
            ConnectError::TlsUnavailable => f.write_str("wss:// needs lanes' tls feature"),
            ConnectError::Status(status) => write!(f, "the server answered {status}, not 101"),
            ConnectError::Handshake(why) => write!(f, "invalid handshake answer: {why}"),
            ConnectError::Closed => {
                f.write_str("the server closed the connection during the handshake")
            }
            ConnectError::Refused(why) => write!(f, "not connected: {why}"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// A failed outbound connection attempt, as
/// [`Handler::on_connect_failed`](crate::Handler::on_connect_failed) sees it.
#[derive(Debug, Clone)]
pub struct ConnectFailure {
    pub(crate) url: String,
    pub(crate) error: ConnectError,
    pub(crate) retry: u32,
    pub(crate) retry_in: Option<Duration>,
}

impl ConnectFailure {
    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Why it failed.
    pub fn error(&self) -> &ConnectError {
        &self.error
    }

    /// This attempt's place in its run of retries: 0 for a first attempt, `n` for the `n`-th
    /// retry in a row (after a loss, the first attempt to reconnect is 1). Its
    /// [`retry_in`](Self::retry_in) is back-off `n` ([`Reconnect::delay`]).
    pub fn retries(&self) -> u32 {
        self.retry
    }

    /// When the next attempt is made, with a [`Reconnect`] policy that has not given up;
    /// `None`: this was the last.
    pub fn retry_in(&self) -> Option<Duration> {
        self.retry_in
    }
}

impl fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.url, self.error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_host_port_and_resource() {
        let t = Target::parse("ws://127.0.0.1:9001/feed?x=1").unwrap();
        assert_eq!(
            (
                t.secure,
                t.host.as_str(),
                t.port,
                t.resource.as_str(),
                t.authority.as_str()
            ),
            (false, "127.0.0.1", 9001, "/feed?x=1", "127.0.0.1:9001")
        );
        let t = Target::parse("wss://example.com").unwrap();
        assert_eq!((t.secure, t.port, t.resource.as_str()), (true, 443, "/"));
        let t = Target::parse("ws://[::1]:8080/").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.authority.as_str()),
            ("::1", 8080, "[::1]:8080")
        );
        let t = Target::parse("WS://localhost?q").unwrap();
        assert_eq!((t.port, t.resource.as_str()), (80, "/?q"));
        for bad in [
            "http://x/",
            "ws://",
            "ws://user@host/",
            "ws://host/#frag",
            "host:80",
            "ws://host:99999/",
            "",
        ] {
            assert!(
                matches!(Target::parse(bad), Err(ConnectError::InvalidUrl(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn back_off_grows_to_its_cap_and_jitter_only_shortens_it() {
        let policy = Reconnect {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            multiplier: 2.0,
            jitter: 0.5,
            max_retries: Some(6),
        };
        let expected = [100, 200, 400, 800, 1000, 1000];
        for (n, ms) in expected.iter().enumerate() {
            let n = n as u32;
            assert_eq!(policy.backoff(n), Duration::from_millis(*ms));
            assert_eq!(policy.delay(n, 0.0), Some(Duration::from_millis(*ms)));
            assert_eq!(
                policy.delay(n, 0.999_999).map(|d| d.as_millis() as u64),
                Some(ms / 2)
            );
        }
        assert_eq!(policy.delay(6, 0.5), None);
        let huge = Reconnect::default().backoff(10_000);
        assert_eq!(huge, Duration::from_secs(30));
    }
}
