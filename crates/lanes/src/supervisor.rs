//! Watching the workers from the thread that holds the server's handle: each worker thread
//! reports its end (normal or not) through an [`ExitGuard`], and with signals on, SIGINT and
//! SIGTERM arrive in the same `mio` poll.
//!
//! A worker that ends while the server runs is a bug (handler panics are caught per
//! connection): its guard takes its connections out of the live-id table and the gauges at once,
//! so nothing reports them open, and the handle stops the other workers and reports the error.
//!
//! Signals: the first SIGINT or SIGTERM asks for a graceful shutdown; a second one terminates the
//! process at once (exit status 128 + the signal's number), from the signal handler itself, so
//! it works even when a worker is stuck in a callback.

use std::io;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::SigId;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use crate::remote::Remote;

const EXITED: Token = Token(0);
const SIGNALLED: Token = Token(1);

/// What woke the supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// This worker's thread has ended.
    Exited(usize),
    /// SIGINT or SIGTERM (the first one: the second ends the process).
    Signal(i32),
}

/// Where worker threads report their end.
#[derive(Debug)]
pub(crate) struct Exits {
    ended: Mutex<Vec<usize>>,
    waker: Waker,
}

impl Exits {
    fn push(&self, index: usize) {
        self.ended
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(index);
        let _ = self.waker.wake();
    }

    fn take(&self) -> Vec<usize> {
        std::mem::take(&mut *self.ended.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Held by a worker thread for its whole life; reports the thread's end when dropped, also
/// while unwinding from a panic.
pub(crate) struct ExitGuard {
    index: usize,
    exits: Arc<Exits>,
    remote: Remote,
    /// Set when the worker's loop returned after a shutdown: the end was asked for.
    pub(crate) clean: bool,
}

impl ExitGuard {
    pub(crate) fn new(index: usize, exits: Arc<Exits>, remote: Remote) -> ExitGuard {
        ExitGuard {
            index,
            exits,
            remote,
            clean: false,
        }
    }
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        if !self.clean
            && let Some(link) = self.remote.link(self.index)
        {
            // The worker and its connections are gone (their sockets closed with it).
            link.mark_dead();
        }
        self.exits.push(self.index);
    }
}

/// The supervisor's poll: worker exits, and signals when asked for.
pub(crate) struct Supervisor {
    poll: Poll,
    events: Events,
    exits: Arc<Exits>,
    signals: Option<SignalWatch>,
}

impl Supervisor {
    pub(crate) fn new() -> io::Result<Supervisor> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), EXITED)?;
        Ok(Supervisor {
            poll,
            events: Events::with_capacity(8),
            exits: Arc::new(Exits {
                ended: Mutex::new(Vec::new()),
                waker,
            }),
            signals: None,
        })
    }

    /// Where the workers report their end.
    pub(crate) fn exits(&self) -> Arc<Exits> {
        Arc::clone(&self.exits)
    }

    /// From now on, SIGINT and SIGTERM wake [`wait`](Self::wait) (the first of them) or end
    /// the process (any after the first).
    pub(crate) fn watch_signals(&mut self) -> io::Result<()> {
        if self.signals.is_none() {
            self.signals = Some(SignalWatch::install(&self.poll)?);
        }
        Ok(())
    }

    /// Blocks until a worker has ended or a signal came (or `timeout` passed); what happened.
    pub(crate) fn wait(&mut self, timeout: Option<Duration>) -> io::Result<Vec<Wake>> {
        loop {
            match self.poll.poll(&mut self.events, timeout) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        let mut wakes = Vec::new();
        if let Some(watch) = &mut self.signals {
            for signal in watch.signals.pending() {
                wakes.push(Wake::Signal(signal));
            }
        }
        wakes.extend(self.exits.take().into_iter().map(Wake::Exited));
        Ok(wakes)
    }
}

/// The signal handlers run() installs, removed again when it returns.
struct SignalWatch {
    signals: Signals,
    /// Set by the first signal; a signal that finds it set ends the process.
    _armed: Arc<AtomicBool>,
    ids: Vec<SigId>,
}

impl SignalWatch {
    fn install(poll: &Poll) -> io::Result<SignalWatch> {
        let armed = Arc::new(AtomicBool::new(false));
        let mut ids = Vec::new();
        // The order matters: the exit must see the flag before this signal sets it.
        for signal in [SIGINT, SIGTERM] {
            ids.push(signal_hook::flag::register_conditional_shutdown(
                signal,
                128 + signal,
                Arc::clone(&armed),
            )?);
        }
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        poll.registry()
            .register(&mut signals, SIGNALLED, Interest::READABLE)?;
        for signal in [SIGINT, SIGTERM] {
            ids.push(signal_hook::flag::register(signal, Arc::clone(&armed))?);
        }
        Ok(SignalWatch {
            signals,
            _armed: armed,
            ids,
        })
    }
}

impl Drop for SignalWatch {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}
