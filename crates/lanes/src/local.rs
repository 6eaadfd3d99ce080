//! The part of a worker that callbacks may touch besides their own connection: the buffer
//! pool, the limits, the topics, the timer wheel, the handle to the other workers, and the
//! work they leave for after the callback.

use std::sync::Arc;
use std::time::Duration;

use lanes_proto::session::SessionConfig;

use crate::compress::SharedDeflate;
use crate::config::Config;
use crate::dials::Dials;
use crate::error::SendError;
use crate::hub::Command;
use crate::id::ConnId;
use crate::latest::LatestValues;
use crate::live::LiveTable;
use crate::outbox::Sending;
use crate::pool::BufferPool;
use crate::published::{Published, encode, encode_latest};
use crate::remote::Remote;
use crate::rng::WorkerRng;
use crate::stats::{self, Counters};
use crate::throttle::Throttle;
use crate::timer::TimerWheel;
use crate::topic::{Subscriber, Topics};
use lanes_proto::OpCode;

/// A worker's own state, lent to callbacks.
pub(crate) struct Local {
    pub(crate) index: u16,
    /// Microseconds since the worker's epoch, read once per loop iteration: the time
    /// callbacks act at (a close they start times out from here).
    pub(crate) now_us: u64,
    pub(crate) pool: BufferPool,
    pub(crate) config: Arc<Config>,
    /// Every connection's session settings: limits, auto-pong, keepalive and close timeouts,
    /// made from `config` once. Sessions and receivers keep only their role; the calls that
    /// apply limits and timeouts are given these (the same for both roles: an outbound
    /// connection's session differs only in its role, see `worker/dial.rs`).
    pub(crate) session: SessionConfig,
    pub(crate) topics: Topics,
    pub(crate) wheel: TimerWheel,
    pub(crate) remote: Remote,
    pub(crate) counters: Arc<Counters>,
    pub(crate) live: Arc<LiveTable>,
    /// The worker's shared compressors (connections without context takeover) and scratch.
    pub(crate) deflate: SharedDeflate,
    /// Publishes made by callbacks on this worker, for this worker's own subscribers: delivered
    /// after the callback returns (the subscribers' buffers are not reachable during it).
    /// The subscriber a publish skips (its publisher), if any.
    pub(crate) deferred: Vec<(Arc<str>, Published, Option<Subscriber>)>,
    /// Sends and closes to this worker's connections from where their buffers are not
    /// reachable (`on_close`): run after the callback returns.
    pub(crate) deferred_commands: Vec<Command>,
    /// Connections given output outside their own I/O event (publishes, sends by id, timers):
    /// written once each at the end of the loop iteration.
    pub(crate) dirty: Vec<(usize, u32)>,
    /// Connections callbacks asked to move to another worker ([`Ws::move_to`](crate::Ws::move_to)),
    /// moved at the end of the iteration.
    pub(crate) moves: Vec<crate::handoff::MoveRequest>,
    /// The worker's random source: masking keys, reconnection jitter.
    pub(crate) rng: WorkerRng,
    /// The outbound connections being made or kept.
    pub(crate) dials: Dials,
    /// During an outbound connection's `on_open`: the subprotocol its server chose.
    pub(crate) opening_subprotocol: Option<String>,
    /// Keyed published messages waiting for subscribers that are behind.
    pub(crate) latest: LatestValues,
    /// The lines for handler panics: every panic is counted, the first
    /// [`PANIC_LOG_BURST`] of each [`PANIC_LOG_WINDOW`] are logged.
    pub(crate) panic_log: Throttle,
}

/// The session settings of a worker's connections under `config` (the server role; an
/// outbound connection's session and receiver are made in the client role, and apply the same
/// limits and timeouts).
pub(crate) fn session_config(config: &Config) -> SessionConfig {
    let micros = |d: Duration| d.as_micros().min(u128::from(u64::MAX)) as u64;
    SessionConfig {
        max_frame_len: config.limits.max_frame_len,
        max_message_len: config.limits.max_message_len,
        auto_pong: config.auto_pong,
        ping_interval_us: config.timeouts.ping_interval.map(micros),
        pong_timeout_us: micros(config.timeouts.pong),
        message_timeout_us: micros(config.timeouts.message),
        close_timeout_us: micros(config.timeouts.close),
        ..SessionConfig::server()
    }
}

/// How many handler panics a worker logs per [`PANIC_LOG_WINDOW`] (a client that can make a
/// callback panic can make it panic on every connection).
pub(crate) const PANIC_LOG_BURST: usize = 10;

/// See [`PANIC_LOG_BURST`].
pub(crate) const PANIC_LOG_WINDOW: Duration = Duration::from_secs(60);

impl Local {
    /// What an outbox needs to queue a message: the pool, the counters, the backlog caps and
    /// the shared compressors.
    #[inline(always)]
    pub(crate) fn sending(&mut self) -> Sending<'_> {
        Sending {
            pool: &mut self.pool,
            counters: &self.counters,
            backpressure: &self.config.backpressure,
            deflate: &mut self.deflate,
            rng: &mut self.rng,
        }
    }

    /// Records the number of subscriptions after a change.
    pub(crate) fn note_subscriptions(&self) {
        self.counters.subscriptions.store(
            self.topics.count() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Sends the topics' interest changes to the broker bridge; what its queue has no room
    /// for waits for the next loop iteration.
    #[cfg(feature = "bridge")]
    pub(crate) fn send_interest(&mut self) {
        let Some(mut changes) = self.topics.take_changes() else {
            return;
        };
        if let Some(bridge) = self.remote.shared().bridge.get() {
            bridge.send_changes(self.index, &mut changes);
        }
        if !changes.is_empty() {
            self.topics.keep_changes(changes);
        }
    }

    /// Counts one publish handled here.
    pub(crate) fn note_published(&self) {
        stats::add(&self.counters.published, 1);
    }

    /// Publishes an encoded frame: to this worker's subscribers (but `except`) after the
    /// callback, to the other workers through their queues now.
    pub(crate) fn publish(
        &mut self,
        topic: &str,
        message: Published,
        except: Option<Subscriber>,
    ) -> Result<(), SendError> {
        let me = Some(usize::from(self.index));
        let result = self.remote.publish_frame(topic, message.clone(), me);
        if !matches!(result, Err(SendError::ShutDown)) {
            self.deferred.push((topic.into(), message, except));
        }
        result
    }

    /// Encodes a message and publishes it (see [`publish`](Self::publish)).
    pub(crate) fn publish_message(
        &mut self,
        topic: &str,
        opcode: OpCode,
        payload: &[u8],
        except: Option<Subscriber>,
    ) -> Result<(), SendError> {
        self.publish(topic, encode(opcode, payload), except)
    }

    /// Encodes a message under the latest-value policy with `key` and publishes it (see
    /// [`publish`](Self::publish)).
    pub(crate) fn publish_latest(
        &mut self,
        topic: &str,
        key: &str,
        opcode: OpCode,
        payload: &[u8],
    ) -> Result<(), SendError> {
        self.publish(topic, encode_latest(opcode, payload, key), None)
    }

    /// `Ok` when `id` names an open connection of this worker.
    pub(crate) fn check_open(&self, id: ConnId) -> Result<(), SendError> {
        if self.remote.shutting_down() {
            return Err(SendError::ShutDown);
        }
        if self.live.is_open(id.slot as usize, id.generation) {
            Ok(())
        } else {
            Err(SendError::Gone)
        }
    }

    /// A worker's state with no server around it (unit tests).
    #[cfg(test)]
    pub(crate) fn detached(config: Config) -> Local {
        use std::time::Instant;
        let shared = Arc::new(crate::hub::Shared::default());
        Local {
            index: 0,
            now_us: 0,
            pool: BufferPool::new(),
            session: session_config(&config),
            config: Arc::new(config),
            topics: Topics::default(),
            wheel: TimerWheel::new(Instant::now(), Duration::from_millis(5), 64),
            remote: Remote::new(Vec::new(), shared),
            counters: Arc::new(Counters::default()),
            live: Arc::new(LiveTable::new(0)),
            deflate: SharedDeflate::new(Default::default()),
            deferred: Vec::new(),
            deferred_commands: Vec::new(),
            dirty: Vec::new(),
            moves: Vec::new(),
            latest: LatestValues::default(),
            rng: WorkerRng::new(),
            dials: Dials::default(),
            opening_subprotocol: None,
            panic_log: Throttle::new(PANIC_LOG_WINDOW, PANIC_LOG_BURST),
        }
    }
}
