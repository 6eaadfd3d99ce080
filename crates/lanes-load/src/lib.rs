//! # lanes-load
//!
//! A WebSocket load generator on lanes-proto's client role and mio: one pinned thread per
//! `--threads`, one event loop each, batched writes (one write per connection per loop
//! iteration), and no allocation per message once connections are up.
//!
//! Modes: `echo` (C connections × D messages in flight × S bytes; every echo checked in full;
//! throughput and round-trip latency percentiles; optionally with permessage-deflate, with or
//! without context takeover, counting uncompressed payload and the compressed bytes on the
//! wire), `connect` (completed handshakes per second),
//! `idle` (hold N connections open), `fanout` (N subscribers of timestamped messages, from
//! lanes-load's own publisher at a fixed rate relayed by the server, or produced by the server
//! itself as `examples/ticker` does; deliveries/s, delivery latency, losses), `game` (players
//! of examples/game sending inputs; the interval between the room states each receives). Every
//! mode
//! speaks `ws://` or, through rustls, `wss://` ([`tls`], [`transport`]). It connects only
//! to the address it is given, and every run is bounded in time. It raises its own soft
//! open-file limit to the hard limit, so thousands of connections need no `ulimit` first.
//! Given the server's PID, it reads the server's CPU time and resident memory from /proc; the
//! echo mode also reports what the rest of the machine used in the window (`other_cpu_s`), so
//! that a run disturbed by other work shows it.
//!
//! Its own live metrics ([`metrics`]: messages, bytes, errors, open connections, latency) can
//! be pushed to InfluxDB every second (`--influx`) and served for Prometheus
//! (`--prometheus-port`) while a run goes on.

pub mod args;
pub mod client;
pub mod connect;
pub mod cpu;
pub mod deflate;
pub mod echo;
pub mod fanout;
pub mod game;
pub mod memory;
pub mod metrics;
pub mod report;
pub mod rlimit;
pub mod rng;
pub mod schedule;
pub mod tls;
pub mod tracker;
pub mod transport;
