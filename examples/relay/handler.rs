//! The relay's handler: subscribers get the topic, the upstream connection's messages are
//! republished to it. Driven by `main.rs` and by `crates/lanes/tests/relay.rs`.

#![allow(clippy::print_stderr)] // the relay logs its upstream's events to its terminal

use std::sync::mpsc;
use std::time::Duration;

use lanes::{
    Accept, Closed, ConnectFailure, Handler, Message, Request, Upgrade, WorkerContext, Ws,
};

/// Who a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    /// The upstream feed (outbound).
    Upstream,
    /// A client of the relay.
    Subscriber,
}

pub(crate) struct Relay {
    topic: String,
    /// Where the upstream connection's events are reported besides the log (tests).
    events: Option<mpsc::Sender<UpstreamEvent>>,
}

/// What happened to the upstream connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UpstreamEvent {
    Connected,
    /// Lost, and made again after this wait (none: not again).
    Lost(Option<Duration>),
    /// An attempt failed; the next comes after this wait (none: given up), as back-off
    /// `retry` of the policy.
    Failed {
        retry: u32,
        wait: Option<Duration>,
    },
}

impl Relay {
    /// A worker's relay: republishes upstream messages to `topic`, reports upstream events to
    /// `events` (if any).
    pub(crate) fn new(topic: String, events: Option<mpsc::Sender<UpstreamEvent>>) -> Relay {
        Relay { topic, events }
    }

    fn report(&self, event: UpstreamEvent) {
        if let Some(events) = &self.events {
            let _ = events.send(event);
        }
    }
}

impl Handler for Relay {
    type State = Peer;

    fn on_upgrade(&mut self, _request: &Request<'_>) -> Upgrade<Peer> {
        Upgrade::Accept(Accept::new(Peer::Subscriber))
    }

    fn on_open(&mut self, ws: &mut Ws<'_>, peer: &mut Peer) {
        match peer {
            Peer::Subscriber => {
                ws.subscribe(&self.topic);
            }
            Peer::Upstream => {
                eprintln!("relay: upstream connected ({})", ws.peer_addr());
                self.report(UpstreamEvent::Connected);
            }
        }
    }

    fn on_message(&mut self, ws: &mut Ws<'_>, peer: &mut Peer, message: Message<'_>) {
        if *peer != Peer::Upstream {
            return;
        }
        // Borrowed from the receive buffer; framed once for every subscriber of every worker.
        let _ = match message {
            Message::Text(text) => ws.publish_text(&self.topic, text),
            Message::Binary(bytes) => ws.publish_binary(&self.topic, bytes),
        };
    }

    fn on_close(&mut self, peer: Peer, closed: &mut Closed<'_>) {
        if peer == Peer::Upstream {
            self.report(UpstreamEvent::Lost(closed.reconnect_in()));
            match closed.reconnect_in() {
                Some(wait) => eprintln!(
                    "relay: upstream lost ({:?}, code {}); reconnecting in {} ms",
                    closed.cause(),
                    closed.code().as_u16(),
                    wait.as_millis()
                ),
                None => eprintln!("relay: upstream closed"),
            }
        }
    }

    fn on_connect_failed(
        &mut self,
        _ctx: &mut WorkerContext<'_, Peer>,
        _peer: Peer,
        failure: &ConnectFailure,
    ) {
        self.report(UpstreamEvent::Failed {
            retry: failure.retries(),
            wait: failure.retry_in(),
        });
        match failure.retry_in() {
            Some(wait) => eprintln!("relay: {failure}; retrying in {} ms", wait.as_millis()),
            None => eprintln!("relay: {failure}; giving up"),
        }
    }
}
