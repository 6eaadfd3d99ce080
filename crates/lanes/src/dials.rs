//! The outbound connections a worker is making or keeping: one entry per [`Connect`] from its
//! arrival until it is open (or, with a [`Reconnect`] policy, until it gives up), with what
//! the next attempt needs. Kept beside the worker's other state callbacks reach ([`Local`]),
//! so that `on_close` can say when a lost connection will be made again. The worker's side is
//! `worker/dial.rs`.
//!
//! [`Connect`]: crate::Connect
//! [`Reconnect`]: crate::Reconnect
//! [`Local`]: crate::local::Local

use std::any::Any;
use std::net::SocketAddr;
use std::time::Duration;

use slab::Slab;

use crate::connect::{CloneState, ConnectError, DialOptions, DialRequest, Target};
use crate::rng::WorkerRng;

/// A connection's dial when it has none (an accepted connection, or an outbound one whose
/// entry was dropped when it opened).
pub(crate) const NO_DIAL: u32 = u32::MAX;

/// Where a dial is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Waiting for the resolver's answer.
    Resolving,
    /// Its connection (in this slot of the worker's table) is connecting, handshaking or open.
    Conn(usize),
    /// Its open connection was lost: the next attempt comes this long after it is removed.
    Lost(Duration),
    /// Waiting out the back-off before the next attempt.
    Waiting,
}

/// One outbound connection being made or kept.
pub(crate) struct Dial {
    pub(crate) generation: u32,
    /// The sequence number of the dial's live timer entry (resolution deadline or back-off).
    pub(crate) timer_seq: u32,
    pub(crate) target: Target,
    pub(crate) options: DialOptions,
    /// What each attempt's state is cloned from (reconnecting dials).
    template: Option<(Box<dyn Any + Send>, CloneState)>,
    /// The state of the attempt in progress, until its connection opens.
    pub(crate) state: Option<Box<dyn Any + Send>>,
    /// Failed attempts in a row.
    pub(crate) retries: u32,
    /// Addresses of this attempt not tried yet (the next one last).
    pub(crate) addrs: Vec<SocketAddr>,
    /// What the last address tried failed with.
    pub(crate) last_error: Option<ConnectError>,
    pub(crate) stage: Stage,
    /// When this attempt's connect timeout ends (microseconds since the worker's epoch).
    pub(crate) connect_deadline_us: u64,
}

impl Dial {
    /// Whether connections lost or attempts failed are made again.
    pub(crate) fn reconnects(&self) -> bool {
        self.options.reconnect.is_some()
    }

    /// Makes sure the attempt has a state: a clone of the template for a reconnecting dial.
    pub(crate) fn fresh_state(&mut self) {
        if self.state.is_none()
            && let Some((template, clone)) = &self.template
        {
            self.state = Some(clone(template.as_ref()));
        }
    }
}

/// A worker's dials.
#[derive(Default)]
pub(crate) struct Dials {
    table: Slab<Dial>,
    next_generation: u32,
}

impl Dials {
    /// Takes in a new request; its slot.
    pub(crate) fn insert(&mut self, request: DialRequest) -> usize {
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let (state, template) = match request.clone {
            // The request's state is the template; each attempt gets a clone.
            Some(clone) => (None, Some((request.state, clone))),
            None => (Some(request.state), None),
        };
        self.table.insert(Dial {
            generation,
            timer_seq: 0,
            target: request.target,
            options: request.options,
            template,
            state,
            retries: 0,
            addrs: Vec::new(),
            last_error: None,
            stage: Stage::Waiting,
            connect_deadline_us: 0,
        })
    }

    pub(crate) fn get(&self, slot: usize) -> Option<&Dial> {
        self.table.get(slot)
    }

    pub(crate) fn get_mut(&mut self, slot: usize) -> Option<&mut Dial> {
        self.table.get_mut(slot)
    }

    /// The dial in `slot` with `generation`, if it is still there.
    pub(crate) fn live(&mut self, slot: usize, generation: u32) -> Option<&mut Dial> {
        self.table
            .get_mut(slot)
            .filter(|d| d.generation == generation)
    }

    pub(crate) fn remove(&mut self, slot: usize) -> Option<Dial> {
        self.table.try_remove(slot)
    }

    /// Every dial's slot.
    pub(crate) fn slots(&self) -> Vec<usize> {
        self.table.iter().map(|(slot, _)| slot).collect()
    }

    /// The open connection of dial `slot` was lost: when it reconnects (and the worker is not
    /// shutting down), the wait before the next attempt, drawn now and kept until the
    /// connection is removed from the table.
    pub(crate) fn plan_loss(
        &mut self,
        slot: u32,
        shutting_down: bool,
        rng: &mut WorkerRng,
    ) -> Option<Duration> {
        let dial = self.table.get_mut(slot as usize)?;
        let policy = dial.options.reconnect.filter(|_| !shutting_down)?;
        let delay = policy.delay(0, rng.next_unit())?;
        dial.retries = 1;
        dial.stage = Stage::Lost(delay);
        Some(delay)
    }

    /// An attempt of dial `slot` failed: the wait before the next one, or `None` when it gives
    /// up (no policy, past its retries, or shutting down).
    pub(crate) fn plan_retry(
        &mut self,
        slot: usize,
        shutting_down: bool,
        rng: &mut WorkerRng,
    ) -> Option<Duration> {
        let dial = self.table.get_mut(slot)?;
        let policy = dial.options.reconnect.filter(|_| !shutting_down)?;
        let delay = policy.delay(dial.retries, rng.next_unit())?;
        dial.retries += 1;
        Some(delay)
    }
}
