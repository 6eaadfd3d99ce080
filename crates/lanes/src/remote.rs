//! Reaching connections from anywhere: the [`Remote`] handle. Its commands travel through the
//! workers' queues ([`crate::hub`]). A published message is encoded into a frame once, shared
//! by every worker as an `Arc<[u8]>`, and copied only into each subscriber's outgoing buffer.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use lanes_proto::{CloseCode, OpCode};

use crate::connect::Connect;
use crate::error::SendError;
use crate::handoff::Handoff;
use crate::hub::{Command, Link, Shared};
use crate::id::ConnId;
use crate::message::WorkerMessage;
use crate::published::{Published, encode, encode_latest};
use crate::stats::Stats;

/// A handle to a running server that any thread can hold: send to a connection by id, close
/// it, publish to a topic, broadcast, read the counters. `Clone + Send + Sync`; cloning is
/// cheap.
///
/// Sends are queued for the connection's worker and written by it. A send to an id whose
/// connection has ended returns [`SendError::Gone`]; a connection that ends while a message to
/// it is queued simply does not get it (counted in [`WorkerStats::stale`](crate::WorkerStats)).
/// Messages from one thread to one connection (or one topic) arrive in the order sent.
///
/// ```no_run
/// # use lanes::{Accept, Handler, HttpResponse, Message, Request, Server, Upgrade, Ws};
/// # struct Feed;
/// # impl Handler for Feed {
/// #     type State = ();
/// #     fn on_upgrade(&mut self, _: &Request<'_>) -> Upgrade<()> {
/// #         Upgrade::Accept(Accept::new(()))
/// #     }
/// #     fn on_open(&mut self, ws: &mut Ws<'_>, _: &mut ()) { ws.subscribe("prices"); }
/// #     fn on_message(&mut self, _: &mut Ws<'_>, _: &mut (), _: Message<'_>) {}
/// # }
/// let server = Server::new("127.0.0.1:9001".parse().unwrap(), |_| Feed).start().unwrap();
/// let remote = server.remote();
/// std::thread::spawn(move || {
///     for price in 0..10 {
///         let _ = remote.publish_text("prices", &format!("{price}"));
///     }
/// });
/// ```
#[derive(Clone)]
pub struct Remote {
    inner: Arc<Inner>,
}

struct Inner {
    links: Box<[Link]>,
    shared: Arc<Shared>,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("workers", &self.inner.links.len())
            .finish()
    }
}

impl Remote {
    pub(crate) fn new(links: Vec<Link>, shared: Arc<Shared>) -> Remote {
        Remote {
            inner: Arc::new(Inner {
                links: links.into_boxed_slice(),
                shared,
            }),
        }
    }

    pub(crate) fn link(&self, index: usize) -> Option<&Link> {
        self.inner.links.get(index)
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    pub(crate) fn links(&self) -> &[Link] {
        &self.inner.links
    }

    /// The number of workers.
    pub fn worker_count(&self) -> usize {
        self.inner.links.len()
    }

    /// The worker that owns `key` (a room, a symbol, a user): [`worker_for`](crate::worker_for)
    /// over this server's worker count, stable across runs and processes.
    pub fn worker_for(&self, key: impl AsRef<[u8]>) -> usize {
        crate::placement::worker_for(key.as_ref(), self.worker_count())
    }

    /// Sends `message` to worker `worker`, whose handler gets it in
    /// [`on_worker_message`](crate::Handler::on_worker_message) on that worker's thread, with
    /// the worker's connections at hand. Messages from one thread to one worker arrive in the
    /// order sent; a burst costs the worker one wake-up. The queue is the worker's command
    /// queue ([`Limits::remote_queue_len`](crate::config::Limits::remote_queue_len)): when it is
    /// full the message is dropped, counted, and [`SendError::QueueFull`] returned. A worker may
    /// send to itself (the message is handled in its next loop iteration).
    ///
    /// ```no_run
    /// # use lanes::{Accept, Handler, HttpResponse, Message, Request, Server, Upgrade, WorkerContext, WorkerMessage, Ws};
    /// struct Rooms;
    /// impl Handler for Rooms {
    ///     type State = ();
    ///     fn on_upgrade(&mut self, _: &Request<'_>) -> Upgrade<()> {
    ///         Upgrade::Accept(Accept::new(()))
    ///     }
    ///     fn on_message(&mut self, _: &mut Ws<'_>, _: &mut (), _: Message<'_>) {}
    ///     fn on_worker_message(&mut self, ctx: &mut WorkerContext<'_, ()>, message: WorkerMessage) {
    ///         if let Ok(line) = message.downcast::<String>() {
    ///             ctx.for_each(|ws, _| {
    ///                 ws.send_text(&line);
    ///             });
    ///         }
    ///     }
    /// }
    /// let server = Server::new("127.0.0.1:9001".parse().unwrap(), |_| Rooms).start().unwrap();
    /// let remote = server.remote();
    /// let worker = remote.worker_for("room-7");
    /// remote.send_to_worker(worker, "the room's news".to_string()).unwrap();
    /// ```
    pub fn send_to_worker<M: std::any::Any + Send>(
        &self,
        worker: usize,
        message: M,
    ) -> Result<(), SendError> {
        let link = self.link(worker).ok_or(SendError::NoSuchWorker)?;
        link.push(Command::Message(WorkerMessage::new(message)))
    }

    /// Opens an outbound WebSocket connection on worker `worker` (see [`Connect`]): the worker
    /// resolves the host (off its loop), connects, runs the TLS and opening handshakes on its
    /// own loop, and serves the connection with its handler from `on_open` on, like an accepted
    /// one. A failed attempt goes to
    /// [`Handler::on_connect_failed`](crate::Handler::on_connect_failed). `S` must be the
    /// handler's state type (a mismatch is logged and the request dropped).
    ///
    /// Fails when the request could not be queued (the worker's queue is full, no such
    /// worker, shutting down); the request is dropped then.
    ///
    /// ```no_run
    /// use lanes::{Connect, Handler, Message, Request, Server, Upgrade, Ws};
    ///
    /// struct Relay;
    /// impl Handler for Relay {
    ///     type State = ();
    ///     fn on_upgrade(&mut self, _: &Request<'_>) -> Upgrade<()> {
    ///         Upgrade::Accept(lanes::Accept::new(()))
    ///     }
    ///     fn on_message(&mut self, ws: &mut Ws<'_>, _: &mut (), message: Message<'_>) {
    ///         if ws.is_outbound() {
    ///             if let Message::Text(text) = message {
    ///                 ws.publish_text("feed", text);
    ///             }
    ///         }
    ///     }
    /// }
    /// let server = Server::new("127.0.0.1:9002".parse().unwrap(), |_| Relay).start().unwrap();
    /// let upstream = Connect::new("ws://127.0.0.1:9001/", ()).unwrap();
    /// server.remote().connect(0, upstream).unwrap();
    /// ```
    pub fn connect<S: Send + 'static>(
        &self,
        worker: usize,
        connect: Connect<S>,
    ) -> Result<(), SendError> {
        let link = self.link(worker).ok_or(SendError::NoSuchWorker)?;
        link.push(Command::Connect(Box::new(connect.erase())))
    }

    /// [`connect`](Self::connect) on the worker that owns `key`
    /// ([`worker_for`](Self::worker_for)).
    pub fn connect_for<S: Send + 'static>(
        &self,
        key: impl AsRef<[u8]>,
        connect: Connect<S>,
    ) -> Result<(), SendError> {
        self.connect(self.worker_for(key), connect)
    }

    /// Hands lanes a TCP connection another server accepted (the gorilla `Upgrade` pattern):
    /// worker `worker` takes it into its table and serves it from then on like one it accepted
    /// itself. `read` is what that server already read from it: the start of the request (a
    /// whole head, for example one an axum or hyper route parsed, and maybe frames behind it),
    /// or nothing. The worker answers the request (`on_upgrade` runs there, or `on_http` for a
    /// plain request), reading the rest of it from the socket, within the handshake timeout.
    /// `remote.worker_for(key)` names the worker that owns a key.
    ///
    /// The connection is served in plain WebSocket, also on a TLS port (a server that
    /// terminated TLS itself cannot hand its session over). The stream is set non-blocking.
    /// On error (no such worker, its queue full or the server shutting down) the stream is
    /// given back, untouched but for that.
    ///
    /// ```no_run
    /// # use lanes::{Accept, Handler, HttpResponse, Message, Request, Server, Upgrade, Ws};
    /// # struct Echo;
    /// # impl Handler for Echo {
    /// #     type State = ();
    /// #     fn on_upgrade(&mut self, _: &Request<'_>) -> Upgrade<()> { Upgrade::Accept(Accept::new(())) }
    /// #     fn on_message(&mut self, _: &mut Ws<'_>, _: &mut (), _: Message<'_>) {}
    /// # }
    /// use std::io::Read;
    /// let server = Server::new("127.0.0.1:9001".parse().unwrap(), |_| Echo).start().unwrap();
    /// let remote = server.remote();
    /// // Another server's listener: it reads the request line, sees a WebSocket route and
    /// // hands the connection over with what it read.
    /// let listener = std::net::TcpListener::bind("127.0.0.1:8080").unwrap();
    /// let (mut stream, _) = listener.accept().unwrap();
    /// let mut read = vec![0; 4096];
    /// let n = stream.read(&mut read).unwrap();
    /// read.truncate(n);
    /// let worker = remote.worker_for("room-7");
    /// if let Err((error, _stream)) = remote.adopt(stream, read, worker) {
    ///     eprintln!("not adopted: {error}");
    /// }
    /// ```
    pub fn adopt(
        &self,
        stream: std::net::TcpStream,
        read: Vec<u8>,
        worker: usize,
    ) -> Result<(), (SendError, std::net::TcpStream)> {
        let Some(link) = self.link(worker) else {
            return Err((SendError::NoSuchWorker, stream));
        };
        if let Err(error) = stream.set_nonblocking(true) {
            tracing::debug!(%error, "adopted stream could not be made non-blocking");
            return Err((SendError::ShutDown, stream));
        }
        let peer = match stream.peer_addr() {
            Ok(peer) => peer,
            Err(_) => return Err((SendError::Gone, stream)),
        };
        let handoff = Handoff {
            stream: mio::net::TcpStream::from_std(stream),
            peer,
            bytes: read,
            #[cfg(feature = "tls")]
            tls: None,
            accepted: None,
        };
        link.push_or_return(Command::Adopt(Box::new(handoff)))
            .map_err(|(error, command)| match command {
                Command::Adopt(handoff) => (error, std::net::TcpStream::from(handoff.stream)),
                _ => unreachable!("the command given back is the one sent"),
            })
    }

    /// Whether `id` names a connection that is open right now.
    pub fn is_open(&self, id: ConnId) -> bool {
        self.link(usize::from(id.worker))
            .is_some_and(|l| l.live.is_open(id.slot as usize, id.generation))
    }

    /// Sends a text message to the connection `id`.
    pub fn send_text(&self, id: ConnId, text: &str) -> Result<(), SendError> {
        self.send_frame(id, encode(OpCode::Text, text.as_bytes()))
    }

    /// Sends a binary message to the connection `id`.
    pub fn send_binary(&self, id: ConnId, bytes: &[u8]) -> Result<(), SendError> {
        self.send_frame(id, encode(OpCode::Binary, bytes))
    }

    /// Starts the close handshake on the connection `id` with `code` and `reason` (see
    /// [`Ws::close`](crate::Ws::close)).
    pub fn close(&self, id: ConnId, code: CloseCode, reason: &str) -> Result<(), SendError> {
        let link = self.open_link(id)?;
        link.push(Command::Close {
            id,
            code,
            reason: reason.into(),
        })
    }

    /// Publishes a text message to every subscriber of `topic`, on every worker.
    pub fn publish_text(&self, topic: &str, text: &str) -> Result<(), SendError> {
        self.publish_frame(topic, encode(OpCode::Text, text.as_bytes()), None)
    }

    /// Publishes a binary message to every subscriber of `topic`, on every worker.
    pub fn publish_binary(&self, topic: &str, bytes: &[u8]) -> Result<(), SendError> {
        self.publish_frame(topic, encode(OpCode::Binary, bytes), None)
    }

    /// Publishes a text message under the latest-value policy: a subscriber that is behind
    /// (a write to it left output unsent) does not queue it behind its backlog; it keeps only
    /// the newest message per `key` (an instrument, a player, a room: whatever the newer
    /// value makes obsolete) and gets those, in publish order, as soon as its backlog is
    /// written out. So a slow trading client sees current prices, not a queue of old ones.
    /// Subscribers that keep up get every message, in order, as with
    /// [`publish_text`](Self::publish_text). Messages replaced this way are counted
    /// (`messages_conflated`). Keys are the application's: messages with equal keys replace
    /// each other whatever their topic.
    ///
    /// ```no_run
    /// # fn demo(remote: &lanes::Remote) -> Result<(), lanes::SendError> {
    /// for (symbol, price) in [("BTC-USD", "97012.5"), ("ETH-USD", "3120.1")] {
    ///     remote.publish_latest_text("prices", symbol, &format!("{symbol} {price}"))?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn publish_latest_text(&self, topic: &str, key: &str, text: &str) -> Result<(), SendError> {
        self.publish_frame(
            topic,
            encode_latest(OpCode::Text, text.as_bytes(), key),
            None,
        )
    }

    /// Publishes a binary message under the latest-value policy (see
    /// [`publish_latest_text`](Self::publish_latest_text)).
    pub fn publish_latest_binary(
        &self,
        topic: &str,
        key: &str,
        bytes: &[u8],
    ) -> Result<(), SendError> {
        self.publish_frame(topic, encode_latest(OpCode::Binary, bytes, key), None)
    }

    /// Sends a text message to every open connection, on every worker.
    pub fn broadcast_text(&self, text: &str) -> Result<(), SendError> {
        self.broadcast_frame(encode(OpCode::Text, text.as_bytes()))
    }

    /// Sends a binary message to every open connection, on every worker.
    pub fn broadcast_binary(&self, bytes: &[u8]) -> Result<(), SendError> {
        self.broadcast_frame(encode(OpCode::Binary, bytes))
    }

    /// A snapshot of every worker's counters.
    pub fn stats(&self) -> Stats {
        Stats {
            workers: self
                .inner
                .links
                .iter()
                .enumerate()
                .map(|(i, l)| l.counters.snapshot(i, l.queue_len() as u64))
                .collect(),
        }
    }

    /// Every metric now (see [`ServerHandle::metrics`](crate::ServerHandle::metrics)).
    pub fn metrics(&self) -> lanes_metrics::Snapshot {
        let shared = &self.inner.shared;
        let extra = shared.reporter_stats.get().map(|source| source());
        #[allow(unused_mut)]
        let mut snapshot = crate::exposition::snapshot(&self.stats(), &shared.registry, extra);
        #[cfg(feature = "bridge")]
        if let Some(bridge) = self.bridge_stats() {
            snapshot.extend(crate::exposition::bridge(&bridge));
        }
        snapshot
    }

    /// The broker bridge's figures, when [`Config::broker`](crate::Config::broker) is set
    /// (see [`crate::bridge`]).
    #[cfg(feature = "bridge")]
    pub fn bridge_stats(&self) -> Option<crate::bridge::BridgeStats> {
        self.inner.shared.bridge.get().map(|bridge| bridge.stats())
    }

    /// The application's own metrics (see
    /// [`ServerHandle::registry`](crate::ServerHandle::registry)).
    pub fn registry(&self) -> lanes_metrics::Registry {
        self.inner.shared.registry.clone()
    }

    /// Asks the server to shut down gracefully, as [`ServerHandle::shutdown`] does, without
    /// waiting: the workers stop accepting, close every connection with 1001 and end, and
    /// [`Server::run`] (or the handle's shutdown) then returns. The way to stop a server
    /// started with `run()` on a condition of the application's own (a command, an admin
    /// message, a deadline), from any thread or callback.
    ///
    /// [`ServerHandle::shutdown`]: crate::ServerHandle::shutdown
    /// [`Server::run`]: crate::Server::run
    pub fn shutdown(&self) {
        self.inner.shared.shutdown.store(true, Ordering::Release);
        for link in self.links() {
            link.wake();
        }
    }

    pub(crate) fn shutting_down(&self) -> bool {
        self.inner.shared.shutdown.load(Ordering::Acquire)
    }

    fn open_link(&self, id: ConnId) -> Result<&Link, SendError> {
        if self.shutting_down() {
            return Err(SendError::ShutDown);
        }
        let link = self.link(usize::from(id.worker)).ok_or(SendError::Gone)?;
        if link.is_dead() {
            return Err(SendError::WorkerDied);
        }
        if !link.live.is_open(id.slot as usize, id.generation) {
            if link.live.was_moved(id.slot as usize, id.generation) {
                return Err(SendError::Moved);
            }
            return Err(SendError::Gone);
        }
        Ok(link)
    }

    pub(crate) fn send_frame(&self, id: ConnId, message: Published) -> Result<(), SendError> {
        self.open_link(id)?.push(Command::Send { id, message })
    }

    /// Queues a publish for every worker but `skip` (whose own subscribers the caller serves).
    pub(crate) fn publish_frame(
        &self,
        topic: &str,
        message: Published,
        skip: Option<usize>,
    ) -> Result<(), SendError> {
        if self.shutting_down() {
            return Err(SendError::ShutDown);
        }
        let topic: Arc<str> = topic.into();
        #[cfg(feature = "bridge")]
        if let Some(bridge) = self.inner.shared.bridge.get() {
            bridge.offer(&topic, &message);
        }
        self.each_link(skip, |link| {
            link.push(Command::Publish {
                topic: Arc::clone(&topic),
                message: message.clone(),
            })
        })
    }

    fn broadcast_frame(&self, message: Published) -> Result<(), SendError> {
        if self.shutting_down() {
            return Err(SendError::ShutDown);
        }
        self.each_link(None, |link| {
            link.push(Command::Broadcast {
                message: message.clone(),
            })
        })
    }

    /// Runs `push` for every link but `skip`; the first error, after trying them all.
    fn each_link(
        &self,
        skip: Option<usize>,
        push: impl Fn(&Link) -> Result<(), SendError>,
    ) -> Result<(), SendError> {
        let mut result = Ok(());
        for (index, link) in self.inner.links.iter().enumerate() {
            // A dead worker has no subscribers left to reach.
            if Some(index) == skip || link.is_dead() {
                continue;
            }
            if let Err(e) = push(link)
                && result.is_ok()
            {
                result = Err(e);
            }
        }
        result
    }
}
