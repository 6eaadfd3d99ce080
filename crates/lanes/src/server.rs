//! The server builder and the handle that shuts it down.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use mio::{Poll, Waker};

use crate::config::Config;
use crate::error::Error;
#[cfg(feature = "metrics")]
use crate::exporters::Exporters;
use crate::handler::Handler;
use crate::hub::{Link, Shared};
use crate::listener::bind_workers;
use crate::remote::Remote;
use crate::stats::Stats;
use crate::supervisor::{ExitGuard, Supervisor, Wake};
use crate::worker::{WAKER, Worker};
use lanes_metrics::{Registry, Snapshot};

/// Which cores get a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cores {
    /// One worker per available core. The default.
    All,
    /// This many workers, on the first cores.
    Count(usize),
    /// One worker on each of these core ids.
    List(Vec<usize>),
}

/// Where a worker runs, and the handle to all workers; given to the handler factory.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkerInfo {
    /// The worker's index, from 0.
    pub index: usize,
    /// The core it is pinned to, if pinning is on.
    pub core: Option<usize>,
    /// The handle to every worker (to keep in the handler, or give to other threads).
    pub remote: Remote,
}

/// A WebSocket server: an address, the cores to run on, limits, and a handler factory.
///
/// ```no_run
/// use lanes::{Accept, Handler, Message, Request, Server, Upgrade, Ws};
///
/// struct Echo;
/// impl Handler for Echo {
///     type State = ();
///     fn on_upgrade(&mut self, _: &Request<'_>) -> Upgrade<()> {
///         Upgrade::Accept(Accept::new(()))
///     }
///     fn on_message(&mut self, ws: &mut Ws<'_>, _: &mut (), msg: Message<'_>) {
///         match msg {
///             Message::Text(t) => ws.send_text(t),
///             Message::Binary(b) => ws.send_binary(b),
///         };
///     }
/// }
///
/// let addr = "127.0.0.1:9001".parse().unwrap();
/// Server::new(addr, |_worker| Echo).run().unwrap();
/// ```
pub struct Server<F> {
    addr: SocketAddr,
    factory: F,
    cores: Cores,
    pin: bool,
    stop_on_signals: bool,
    config: Config,
}

impl<F, H> Server<F>
where
    F: Fn(WorkerInfo) -> H + Send + Clone + 'static,
    H: Handler,
{
    /// A server on `addr` whose workers each get a handler from `factory`, called on the
    /// worker's own thread. Defaults: every core, pinned, [`Config::default`].
    pub fn new(addr: SocketAddr, factory: F) -> Server<F> {
        Server {
            addr,
            factory,
            cores: Cores::All,
            pin: true,
            stop_on_signals: true,
            config: Config::default(),
        }
    }

    /// Which cores get a worker.
    pub fn cores(mut self, cores: Cores) -> Server<F> {
        self.cores = cores;
        self
    }

    /// Whether each worker is pinned to its core (default true).
    pub fn pin(mut self, pin: bool) -> Server<F> {
        self.pin = pin;
        self
    }

    /// Limits and timeouts.
    pub fn config(mut self, config: Config) -> Server<F> {
        self.config = config;
        self
    }

    /// Whether [`run`](Self::run) stops on SIGINT and SIGTERM (default true): the first one
    /// starts a graceful shutdown (as [`ServerHandle::shutdown`]: close 1001 to every
    /// connection, queued output written, `on_close` for each), a second one ends the process
    /// at once with exit status 128 + the signal's number. Turn it off when the application
    /// handles signals itself, and stop the server with [`Remote::shutdown`]. [`start`](Self::start)
    /// never installs signal handlers.
    pub fn stop_on_signals(mut self, on: bool) -> Server<F> {
        self.stop_on_signals = on;
        self
    }

    /// Starts the workers and blocks until they stop: after SIGINT or SIGTERM (see
    /// [`stop_on_signals`](Self::stop_on_signals)), after [`Remote::shutdown`] from any thread or
    /// callback, or when a worker dies. A worker that dies while the server runs (a bug:
    /// handler panics are caught per connection) is reported at once as
    /// [`Error::WorkerPanicked`] or [`Error::WorkerFailed`] naming it, after the other workers
    /// have been shut down gracefully.
    ///
    /// The signal handlers are removed again when `run` returns (the signals are then ignored
    /// rather than given back their default action).
    pub fn run(self) -> Result<(), Error> {
        self.start()?.wait()
    }

    /// Starts the workers and returns a handle to stop them. Binding problems, a core that
    /// does not exist or cannot be pinned, are errors here, naming the address or core, and so
    /// is a handler factory that panics ([`Error::WorkerPanicked`]). Signal handlers are
    /// installed only by [`ServerHandle::wait`] (and so by `run`).
    pub fn start(self) -> Result<ServerHandle, Error> {
        self.config.validate().map_err(Error::Config)?;
        if let Some(threshold) = self.config.memory.malloc_mmap_threshold {
            crate::memory::set_mmap_threshold(threshold);
        }
        let placements = self.placements()?;
        let (listeners, addr) = bind_workers(self.addr, placements.len(), &self.config.socket)?;
        let shared = Arc::new(Shared::default());
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.config.tls {
            shared.tls.set(tls.clone());
        }
        #[cfg(feature = "bridge")]
        let bridge_parts = self.config.broker.as_ref().map(|broker| {
            let (link, parts) =
                crate::bridge::link::channels(broker, self.config.limits.max_message_len as usize);
            let _ = shared.bridge.set(link);
            parts
        });
        let config = Arc::new(self.config);
        let (ready_tx, ready_rx) = mpsc::channel();
        // Every worker's loop, waker and queue exist before any thread starts, so each
        // handler can be given the handle to all of them.
        let mut polls = Vec::new();
        let mut links = Vec::new();
        let mut queues = Vec::new();
        for core in &placements {
            let poll = Poll::new().map_err(Error::Io)?;
            let waker = Waker::new(poll.registry(), WAKER).map_err(Error::Io)?;
            let (link, queue) = Link::new(
                waker,
                config.limits.remote_queue_len,
                config.limits.max_connections_per_worker,
                *core,
            );
            polls.push(poll);
            links.push(link);
            queues.push(queue);
        }
        let remote = Remote::new(links, Arc::clone(&shared));
        let supervisor = Supervisor::new().map_err(Error::Io)?;
        let mut threads = Vec::new();
        let workers = placements.into_iter().zip(listeners).zip(polls).zip(queues);
        for (index, (((core, listener), poll), queue)) in workers.enumerate() {
            let factory = self.factory.clone();
            let config = Arc::clone(&config);
            let remote = remote.clone();
            let ready = ready_tx.clone();
            let exits = supervisor.exits();
            let thread = std::thread::Builder::new()
                .name(format!("lanes-worker-{index}"))
                .spawn(move || {
                    let mut exit = ExitGuard::new(index, exits, remote.clone());
                    if let Some(core) = core
                        && !core_affinity::set_for_current(core_affinity::CoreId { id: core })
                    {
                        let _ = ready.send(Err(Error::Pin { core }));
                        exit.clean = true;
                        return Ok(());
                    }
                    let info = WorkerInfo {
                        index,
                        core,
                        remote: remote.clone(),
                    };
                    let made =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| factory(info)));
                    let Ok(handler) = made else {
                        let _ = ready.send(Err(Error::WorkerPanicked { index }));
                        exit.clean = true;
                        return Ok(());
                    };
                    let mut worker =
                        Worker::new(index as u16, poll, listener, handler, config, remote, queue);
                    let _ = ready.send(Ok(()));
                    drop(ready);
                    let result = worker.run();
                    exit.clean = result.is_ok();
                    result
                })
                .map_err(Error::Io)?;
            threads.push(Some(thread));
        }
        drop(ready_tx);
        #[cfg_attr(not(feature = "metrics"), allow(unused_mut))]
        let mut handle = ServerHandle {
            local_addr: addr,
            remote,
            threads,
            supervisor,
            stop_on_signals: self.stop_on_signals,
            #[cfg(feature = "metrics")]
            exporters: Default::default(),
            #[cfg(feature = "bridge")]
            bridge: None,
        };
        for _ in 0..handle.threads.len() {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    let _ = handle.shutdown();
                    return Err(error);
                }
                Err(_) => break,
            }
        }
        #[cfg(feature = "bridge")]
        if let Some(parts) = bridge_parts {
            match crate::bridge::BridgeThread::start(parts, handle.remote.clone()) {
                Ok(bridge) => handle.bridge = Some(bridge),
                Err(error) => {
                    let _ = handle.stop();
                    return Err(Error::Io(error));
                }
            }
        }
        #[cfg(feature = "metrics")]
        match Exporters::start(&config, &handle.remote, handle.remote.shared()) {
            Ok(exporters) => handle.exporters = exporters,
            Err(error) => {
                let _ = handle.stop();
                return Err(error);
            }
        }
        tracing::info!(addr = %addr, workers = handle.threads.len(), "listening");
        Ok(handle)
    }

    /// The core (if pinned) of each worker.
    fn placements(&self) -> Result<Vec<Option<usize>>, Error> {
        let available: Vec<usize> = core_affinity::get_core_ids()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.id)
            .collect();
        let cores: Vec<usize> = match &self.cores {
            Cores::All => {
                if available.is_empty() {
                    vec![0]
                } else {
                    available.clone()
                }
            }
            Cores::Count(n) => {
                if available.is_empty() {
                    (0..*n).collect()
                } else {
                    available.iter().copied().cycle().take(*n).collect()
                }
            }
            Cores::List(list) => {
                for core in list {
                    if !available.contains(core) {
                        return Err(Error::CoreUnavailable { core: *core });
                    }
                }
                list.clone()
            }
        };
        if cores.is_empty() {
            return Err(Error::NoCores);
        }
        Ok(cores
            .into_iter()
            .map(|core| (self.pin && !available.is_empty()).then_some(core))
            .collect())
    }
}

/// A running server. [`shutdown`](Self::shutdown) stops it gracefully; dropping the handle
/// does the same.
pub struct ServerHandle {
    local_addr: SocketAddr,
    remote: Remote,
    /// Each worker's thread, until it has been joined.
    threads: Vec<Option<JoinHandle<io::Result<()>>>>,
    /// Where the threads report their end (and signals arrive, under `run`).
    supervisor: Supervisor,
    /// Whether [`wait`](ServerHandle::wait) stops on SIGINT and SIGTERM.
    stop_on_signals: bool,
    /// The metrics exporters the configuration asked for.
    #[cfg(feature = "metrics")]
    exporters: Exporters,
    /// The broker bridge's thread, when [`Config::broker`](crate::Config::broker) is set.
    #[cfg(feature = "bridge")]
    bridge: Option<crate::bridge::BridgeThread>,
}

impl ServerHandle {
    /// The address the workers listen on (with the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The number of workers.
    pub fn worker_count(&self) -> usize {
        self.threads.len()
    }

    /// Replaces the TLS certificates (and the rest of the TLS configuration) without a restart:
    /// every handshake that begins after this returns uses `tls`; open connections keep the
    /// configuration they began with. The running session-ticket keys are kept when both
    /// configurations were made by [`TlsConfig::builder`](crate::TlsConfig::builder) (or its
    /// shortcuts) with tickets on, so clients can still resume. [`Error::NotTls`] on a server
    /// started without TLS.
    #[cfg(feature = "tls")]
    pub fn reload_tls(&self, tls: crate::TlsConfig) -> Result<(), Error> {
        let shared = self.remote.shared();
        if !shared.tls.is_on() {
            return Err(Error::NotTls);
        }
        shared.tls.set(tls);
        Ok(())
    }

    /// The workers whose thread has ended while the server was running, by index. Each is a
    /// bug (handler panics are caught per connection); its connections are gone (no longer
    /// [`Remote::is_open`], not in [`stats`](Self::stats)), sends to them fail with
    /// [`SendError::WorkerDied`](crate::SendError::WorkerDied), and [`shutdown`](Self::shutdown) reports
    /// the first as an error. The other workers go on serving until the handle shuts them down.
    pub fn failed_workers(&self) -> Vec<usize> {
        (0..self.remote.worker_count())
            .filter(|&index| self.remote.link(index).is_some_and(|l| l.is_dead()))
            .collect()
    }

    /// A handle for sending to connections, publishing and reading counters from any thread.
    pub fn remote(&self) -> Remote {
        self.remote.clone()
    }

    /// A snapshot of every worker's counters.
    pub fn stats(&self) -> Stats {
        self.remote.stats()
    }

    /// Every metric now, as `/metrics` and the InfluxDB reporter export them: lanes' own per
    /// worker (label `core`) and in total (`core="all"`), then the application's
    /// ([`registry`](Self::registry)).
    ///
    /// ```no_run
    /// # fn demo(handle: &lanes::ServerHandle) {
    /// let snapshot = handle.metrics();
    /// let received = snapshot.counter("lanes_messages_received_total", &[("core", "all")]);
    /// let text = lanes::metrics::prometheus::encode(&snapshot);
    /// # }
    /// ```
    pub fn metrics(&self) -> Snapshot {
        self.remote.metrics()
    }

    /// The application's own counters and gauges, exported with lanes' metrics.
    ///
    /// ```no_run
    /// # fn demo(handle: &lanes::ServerHandle) -> Result<(), lanes::metrics::NameError> {
    /// let logins = handle.registry().counter("game_logins_total", "Logins.", &[])?;
    /// logins.add(1);
    /// # Ok(()) }
    /// ```
    pub fn registry(&self) -> Registry {
        self.remote.registry()
    }

    /// The address of the admin `/metrics` server, when
    /// [`MetricsConfig::addr`](crate::config::MetricsConfig::addr) is set (with the real port for 0).
    #[cfg(feature = "metrics")]
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.exporters.metrics_addr()
    }

    /// Graceful shutdown: stops accepting, sends close 1001 to every open connection, lets
    /// queued writes drain and close handshakes finish within
    /// [`Timeouts::shutdown`](crate::config::Timeouts::shutdown), fires `on_close` for every connection, and
    /// joins every worker thread.
    ///
    /// Messages in flight: whatever a [`Remote`] or a handler queued before this call is
    /// written before the 1001 close frame (peers that read within the shutdown timeout get
    /// it); sends and publishes from a [`Remote`] after this call fail with
    /// [`SendError::ShutDown`](crate::SendError::ShutDown).
    ///
    /// Returns the error of the first worker that died while the server ran, if one did.
    pub fn shutdown(mut self) -> Result<(), Error> {
        self.stop()
    }

    /// Blocks until the server stops, as [`Server::run`] does: after SIGINT or SIGTERM (unless
    /// [`Server::stop_on_signals`] turned that off; a second signal ends the process), after
    /// [`Remote::shutdown`], or when a worker dies (its error, naming it, after the others
    /// were shut down gracefully). For applications that start the server, start their own
    /// threads with its [`remote`](Self::remote), then wait.
    pub fn wait(mut self) -> Result<(), Error> {
        if self.stop_on_signals {
            self.supervisor.watch_signals().map_err(Error::Io)?;
        }
        let result = self.join_all();
        self.stop_helpers();
        result
    }

    /// Stops the threads beside the workers: the broker bridge and the metrics exporters.
    fn stop_helpers(&mut self) {
        #[cfg(feature = "bridge")]
        if let Some(mut bridge) = self.bridge.take() {
            bridge.stop();
        }
        #[cfg(feature = "metrics")]
        self.exporters.stop();
    }

    fn stop(&mut self) -> Result<(), Error> {
        self.remote.shutdown();
        let result = self.join_all();
        self.stop_helpers();
        result
    }

    /// Waits until every worker has ended, whichever ends first: a worker that dies makes the
    /// others shut down, and a (first) signal starts a graceful shutdown. The first worker's
    /// error, if any.
    fn join_all(&mut self) -> Result<(), Error> {
        let mut result = Ok(());
        while self.threads.iter().any(Option::is_some) {
            // The timeout is a safety net only: every end is reported through the guard.
            let wakes = self
                .supervisor
                .wait(Some(Duration::from_secs(1)))
                .map_err(Error::Io)?;
            for wake in wakes {
                match wake {
                    Wake::Signal(signal) => {
                        tracing::info!(
                            signal,
                            "signal: shutting down gracefully (a second one ends the process)"
                        );
                        self.remote.shutdown();
                    }
                    Wake::Exited(index) => {
                        let Some(thread) = self.threads.get_mut(index).and_then(Option::take)
                        else {
                            continue;
                        };
                        let error = match thread.join() {
                            Ok(Ok(())) => continue,
                            Ok(Err(source)) => Error::WorkerFailed { index, source },
                            Err(_) => Error::WorkerPanicked { index },
                        };
                        tracing::error!(worker = index, %error, "a worker died: shutting the others down");
                        self.remote.shutdown();
                        if result.is_ok() {
                            result = Err(error);
                        }
                    }
                }
            }
        }
        result
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        #[cfg(feature = "metrics")]
        let exporting = self.exporters.is_running();
        #[cfg(not(feature = "metrics"))]
        let exporting = false;
        #[cfg(feature = "bridge")]
        let exporting = exporting || self.bridge.is_some();
        if self.threads.iter().any(Option::is_some) || exporting {
            let _ = self.stop();
        }
    }
}
