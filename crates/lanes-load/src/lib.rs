//! # lanes-load
//!
//! A WebSocket load generator on lanes-proto's client role and mio: one pinned thread per
//! `--threads`, one event loop each, batched writes (one write per connection per loop
//! iteration), and no allocation per message once connections are up.
//!
//! Modes: `echo` (C connections × D messages in flight × S bytes; every echo checked in full;
//! throughput and round-trip latency percentiles), `connect` (completed handshakes per second),
//! `idle` (hold N connections open), `fanout` (N subscribers and a publisher at a fixed rate;
//! deliveries/s and delivery latency, against a server that broadcasts what it receives). It connects only to the address it is given, and every run
//! is bounded in time.

pub mod args;
pub mod client;
pub mod connect;
pub mod cpu;
pub mod echo;
pub mod fanout;
pub mod report;
pub mod rng;
pub mod tracker;
