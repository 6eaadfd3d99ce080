//! # lanes
//!
//! A thread-per-core WebSocket server runtime. Every worker thread is pinned to one core, runs
//! its own `mio` event loop and owns its own `SO_REUSEPORT` listener; the kernel spreads new
//! connections over the listeners and a connection stays on its worker for its whole life, so
//! the hot path takes no locks. The protocol itself (handshake, frames, close rules) is
//! `lanes-proto`'s; this crate does the I/O.
//!
//! - Implement [`Handler`]: `on_upgrade` decides, `on_message` gets [`Message::Text`] or
//!   [`Message::Binary`] borrowed straight from the receive buffer when it arrived whole,
//!   [`Ws`] sends. One handler per worker, built on the worker's thread: no `Send` needed.
//! - Start a [`Server`] with a handler factory; [`ServerHandle::shutdown`] stops it gracefully.
//! - Limits and timeouts live in [`Config`], each with its default and the reason for it.
//!
//! What it does not do (yet): permessage-deflate, sending from other threads, pub/sub, TLS.
//! Linux only (SO_REUSEPORT spreading, epoll).

pub mod config;
mod conn;
mod handler;
mod listener;
mod pool;
mod recv;
mod server;
mod timer;
mod worker;
mod ws;

pub use config::{BackpressurePolicy, Config};
pub use handler::{Accept, Handler, HttpResponse, Message, Request};
pub use server::{Cores, Error, Server, ServerHandle, WorkerInfo};
pub use ws::{ConnId, SendStatus, Ws};
