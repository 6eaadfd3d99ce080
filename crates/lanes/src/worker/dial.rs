//! Outbound connections on the worker's loop: a request taken in, its host resolved (off the
//! loop, `resolver.rs`) or taken as an address, each address tried with a non-blocking
//! connect, then the TLS handshake (on `wss://`), the opening request and the check of the
//! server's answer; then the connection opens like an accepted one, in the client role. A
//! failure at any step ends the attempt: the connection (if any) is dropped, the handler's
//! `on_connect_failed` runs with the attempt's state, and a reconnecting dial waits out its
//! back-off and tries again. A reconnecting dial's open connection that is lost is made again
//! the same way once it is removed.

use std::any::Any;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use lanes_proto::Role;
use lanes_proto::handshake::{ClientHandshake, ClientRequest, Parsed};
use lanes_proto::session::{Receiver, Session, SessionConfig};
use mio::net::TcpStream;

use super::Worker;
use super::io;
use crate::conn::{Phase, Upgrading, mark_dirty};
use crate::connect::{ConnectError, ConnectFailure, DialRequest};
use crate::dials::{NO_DIAL, Stage};
use crate::handler::Handler;
use crate::outbox::Outbox;
use crate::resolver::Lookup;
use crate::stats::{self, CloseCause};
use crate::timer::TimerKind;

impl<H: Handler> Worker<H> {
    /// The session settings of an outbound connection: the worker's, in the client role.
    fn client_session_config(&self) -> SessionConfig {
        SessionConfig {
            role: Role::Client,
            ..self.local.session
        }
    }

    /// A [`Remote::connect`](crate::Remote::connect) request: taken into the dials and its
    /// first attempt started.
    pub(super) fn on_connect_request(&mut self, request: Box<DialRequest>) {
        if !(request.state.as_ref() as &dyn Any).is::<H::State>() {
            tracing::error!(
                url = %request.target.url,
                "Remote::connect with a state type that is not the handler's: request dropped"
            );
            return;
        }
        let slot = self.local.dials.insert(*request);
        self.start_attempt(slot);
    }

    /// Starts an attempt: resolves the host (or takes it as an address) and connects.
    fn start_attempt(&mut self, slot: usize) {
        let now_us = self.local.now_us;
        let Some(dial) = self.local.dials.get_mut(slot) else {
            return;
        };
        dial.fresh_state();
        dial.last_error = None;
        dial.addrs.clear();
        let timeout = dial
            .options
            .connect_timeout
            .as_micros()
            .min(u128::from(u64::MAX)) as u64;
        dial.connect_deadline_us = now_us.saturating_add(timeout);
        if dial.target.secure && cfg!(not(feature = "tls")) {
            self.attempt_failed(slot, ConnectError::TlsUnavailable);
            return;
        }
        if let Ok(ip) = dial.target.host.parse::<IpAddr>() {
            dial.addrs.push(SocketAddr::new(ip, dial.target.port));
            self.connect_next(slot);
            return;
        }
        dial.stage = Stage::Resolving;
        let lookup = Lookup {
            host: dial.target.host.clone(),
            port: dial.target.port,
            dial: (slot as u32, dial.generation),
            worker: usize::from(self.local.index),
            remote: self.local.remote.clone(),
        };
        let deadline_us = dial.connect_deadline_us;
        self.schedule_dial(slot, deadline_us);
        if !self.resolver.resolve(lookup) {
            self.attempt_failed(slot, ConnectError::Resolve("no resolver thread".into()));
        }
    }

    /// Puts dial `slot`'s timer (its only one) on the wheel for `at_us`.
    fn schedule_dial(&mut self, slot: usize, at_us: u64) {
        let Some(dial) = self.local.dials.get_mut(slot) else {
            return;
        };
        dial.timer_seq = dial.timer_seq.wrapping_add(1);
        let kind = TimerKind::Dial {
            seq: dial.timer_seq,
        };
        let at = self.epoch + Duration::from_micros(at_us);
        self.local.wheel.schedule(slot, dial.generation, kind, at);
    }

    /// Dial `slot` waits `delay` (its back-off), then makes its next attempt.
    fn wait_to_retry(&mut self, slot: usize, delay: Duration) {
        if let Some(dial) = self.local.dials.get_mut(slot) {
            dial.stage = Stage::Waiting;
        }
        let at_us = self.local.now_us.saturating_add(delay.as_micros() as u64);
        self.schedule_dial(slot, at_us);
    }

    /// The resolver's answer for a dial.
    pub(super) fn on_resolved(
        &mut self,
        (slot, generation): (u32, u32),
        resolved: Result<Vec<SocketAddr>, String>,
    ) {
        let slot = slot as usize;
        let Some(dial) = self.local.dials.live(slot, generation) else {
            return;
        };
        if dial.stage != Stage::Resolving {
            return; // timed out meanwhile
        }
        match resolved {
            Ok(mut addrs) => {
                addrs.reverse(); // tried in the resolver's order, popped from the end
                dial.addrs = addrs;
                self.connect_next(slot);
            }
            Err(message) => self.attempt_failed(slot, ConnectError::Resolve(message)),
        }
    }

    /// A dial's timer: the resolution took too long, or the back-off is over.
    pub(super) fn on_dial_timer(&mut self, slot: usize, generation: u32, seq: u32) {
        let Some(dial) = self.local.dials.live(slot, generation) else {
            return;
        };
        if dial.timer_seq != seq {
            return;
        }
        match dial.stage {
            Stage::Resolving => self.attempt_failed(slot, ConnectError::ConnectTimedOut),
            Stage::Waiting => self.start_attempt(slot),
            Stage::Conn(_) | Stage::Lost(_) => {}
        }
    }

    /// Connects to the dial's next address; when none is left, the attempt failed.
    fn connect_next(&mut self, slot: usize) {
        let now_ms = self.local.now_us / 1000;
        loop {
            let Some(dial) = self.local.dials.get_mut(slot) else {
                return;
            };
            let Some(addr) = dial.addrs.pop() else {
                let error = dial
                    .last_error
                    .take()
                    .unwrap_or(ConnectError::Resolve("no address".into()));
                self.attempt_failed(slot, error);
                return;
            };
            if self.conns.len() >= self.local.config.limits.max_connections_per_worker {
                let why = "the worker is at max_connections_per_worker";
                self.attempt_failed(slot, ConnectError::Refused(why));
                return;
            }
            let stream = match TcpStream::connect(addr) {
                Ok(stream) => stream,
                Err(error) => {
                    dial.last_error = Some(ConnectError::Io(error.kind()));
                    continue;
                }
            };
            io::configure(&stream, &self.local.config.socket);
            let receiver = Receiver::new(&self.client_session_config());
            let mut outbox = Outbox::new();
            outbox.masked = true;
            let Some(key) = self.take_in(
                stream,
                addr,
                now_ms,
                receiver,
                outbox,
                #[cfg(feature = "tls")]
                None,
            ) else {
                if let Some(dial) = self.local.dials.get_mut(slot) {
                    dial.last_error = Some(ConnectError::Refused("could not register the socket"));
                }
                continue;
            };
            let conn = &mut self.conns[key];
            conn.set_phase(Phase::Connecting, now_ms);
            conn.dial = slot as u32;
            if let Some(dial) = self.local.dials.get_mut(slot) {
                dial.stage = Stage::Conn(key);
            }
            self.arm(key);
            return;
        }
    }

    /// When an outbound connection's timer is due before it opens: the end of its attempt's
    /// connect timeout while connecting, of its handshake timeout after.
    pub(super) fn dial_deadline_us(
        &self,
        dial: u32,
        kind_upgrading: bool,
        since_ms: u64,
    ) -> Option<u64> {
        let dial = self.local.dials.get(dial as usize)?;
        if kind_upgrading {
            let timeout = dial
                .options
                .handshake_timeout
                .as_micros()
                .min(u128::from(u64::MAX)) as u64;
            Some(since_ms.saturating_mul(1000).saturating_add(timeout))
        } else {
            Some(dial.connect_deadline_us)
        }
    }

    /// Readiness on a connecting socket: connected (the request goes out), refused (the next
    /// address), or not yet.
    pub(super) fn on_connect_ready(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let failed = match conn.stream.take_error() {
            Ok(Some(error)) | Err(error) => Some(error.kind()),
            Ok(None) => match conn.stream.peer_addr() {
                Ok(_) => None,
                Err(error) if error.kind() == std::io::ErrorKind::NotConnected => return,
                Err(error) => Some(error.kind()),
            },
        };
        let slot = conn.dial as usize;
        if let Some(kind) = failed {
            // This address failed: drop its socket, try the next.
            self.remove_conn(key, CloseCause::Reset, lanes_proto::CloseCode::ABNORMAL, "");
            if let Some(dial) = self.local.dials.get_mut(slot) {
                dial.last_error = Some(ConnectError::Io(kind));
            }
            self.connect_next(slot);
            return;
        }
        if let Err(error) = self.begin_upgrade(key, slot) {
            if let Some(dial) = self.local.dials.get_mut(slot) {
                dial.last_error = Some(error);
            }
            self.remove(key, CloseCause::Reset, lanes_proto::CloseCode::ABNORMAL, "");
        }
    }

    /// Connected: starts TLS (on `wss://`) and queues the opening request (written once the
    /// TLS handshake is done).
    fn begin_upgrade(&mut self, key: usize, slot: usize) -> Result<(), ConnectError> {
        let now_ms = self.local.now_us / 1000;
        let Some(dial) = self.local.dials.get(slot) else {
            return Err(ConnectError::Closed);
        };
        #[cfg(feature = "tls")]
        if dial.target.secure {
            let tls = dial.options.tls.clone().unwrap_or_default();
            let name = rustls::pki_types::ServerName::try_from(dial.target.host.clone())
                .map_err(|e| ConnectError::Tls(e.to_string()))?;
            let mut layer = crate::tls::TlsLayer::client(Arc::clone(tls.rustls_config()), name)
                .map_err(|e| ConnectError::Tls(e.to_string()))?;
            layer
                .start(&mut self.local.pool)
                .map_err(|e| ConnectError::Tls(e.to_string()))?;
            self.conns[key].tls = Some(Box::new(layer));
        }
        let offer = deflate_offer(dial.options.deflate, &self.local.config);
        let offer_text = offer.map(|o| o.to_string());
        let protocols: Vec<&str> = dial
            .options
            .subprotocols
            .iter()
            .map(String::as_str)
            .collect();
        let headers: Vec<(&str, &str)> = dial
            .options
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let request = ClientRequest {
            host: &dial.target.authority,
            target: &dial.target.resource,
            subprotocols: &protocols,
            extensions: offer_text.as_deref(),
            extra_headers: &headers,
        };
        let mut nonce = [0u8; 16];
        for chunk in nonce.chunks_mut(4) {
            chunk.copy_from_slice(&self.local.rng.next_key());
        }
        let mut out = Vec::new();
        let expect = ClientHandshake::new(&request, nonce, &mut out)
            .map_err(|e| ConnectError::Handshake(e.to_string()))?
            .with_limits(self.head_limits);
        let conn = &mut self.conns[key];
        conn.outbox.push_raw(&out, &mut self.local.pool);
        conn.set_phase(
            Phase::Upgrading(Box::new(Upgrading { expect, head: None })),
            now_ms,
        );
        // Its timer is re-armed for the handshake by `settle_conn` after this I/O event (the
        // connect deadline's entry is noted stale then).
        mark_dirty(conn, key, &mut self.local.dirty);
        Ok(())
    }

    /// Bytes of the server's answer: gathered until the head is complete, then checked; the
    /// connection opens, or the attempt fails.
    pub(super) fn on_answer_bytes(&mut self, key: usize, bytes: std::ops::Range<usize>) {
        let conn = &mut self.conns[key];
        let Phase::Upgrading(upgrading) = &mut conn.phase else {
            return;
        };
        let Upgrading { expect, head } = &mut **upgrading;
        let mut head_buf = head.take().unwrap_or_else(|| self.local.pool.take());
        head_buf.extend_from_slice(&self.scratch[bytes]);
        let slot = conn.dial as usize;
        let answer = match expect.handle_response(&head_buf) {
            Ok(Parsed::Partial) => {
                *head = Some(head_buf);
                return;
            }
            Ok(Parsed::Complete(response)) => {
                let deflate = match negotiated_deflate(
                    self.local
                        .dials
                        .get(slot)
                        .is_some_and(|d| d.options.deflate),
                    &self.local.config,
                    &response.extensions,
                ) {
                    Ok(deflate) => deflate,
                    Err(error) => {
                        self.local.pool.put(head_buf);
                        self.fail_upgrade(key, slot, error);
                        return;
                    }
                };
                Ok((
                    response.subprotocol.map(str::to_string),
                    deflate,
                    response.head_len,
                ))
            }
            Err(lanes_proto::ResponseError::Status(status)) => Err(ConnectError::Status(status)),
            Err(error) => Err(ConnectError::Handshake(error.to_string())),
        };
        match answer {
            Ok((subprotocol, deflate, head_len)) => {
                self.open_outbound(key, slot, subprotocol, deflate, head_buf, head_len);
            }
            Err(error) => {
                self.local.pool.put(head_buf);
                self.fail_upgrade(key, slot, error);
            }
        }
    }

    /// The attempt on connection `key` failed with `error` before it opened.
    fn fail_upgrade(&mut self, key: usize, slot: usize, error: ConnectError) {
        if let Some(dial) = self.local.dials.get_mut(slot) {
            dial.last_error = Some(error);
        }
        self.remove(key, CloseCause::Reset, lanes_proto::CloseCode::ABNORMAL, "");
    }

    /// The server accepted: the connection opens in the client role (`on_open`), and the
    /// frames that came behind the answer are handled.
    fn open_outbound(
        &mut self,
        key: usize,
        slot: usize,
        subprotocol: Option<String>,
        deflate: Option<lanes_proto::deflate::DeflateParams>,
        head_buf: Vec<u8>,
        head_len: usize,
    ) {
        let now_us = self.local.now_us;
        let now_ms = now_us / 1000;
        let Some(dial) = self.local.dials.get_mut(slot) else {
            self.local.pool.put(head_buf);
            return;
        };
        let Some(state) = dial
            .state
            .take()
            .and_then(|state| (state as Box<dyn Any>).downcast::<H::State>().ok())
        else {
            self.local.pool.put(head_buf);
            self.remove(key, CloseCause::Reset, lanes_proto::CloseCode::ABNORMAL, "");
            return;
        };
        let reconnects = dial.reconnects();
        if reconnects {
            dial.retries = 0;
        } else {
            self.local.dials.remove(slot);
        }
        let session = Session::new(self.client_session_config(), now_us);
        let conn = &mut self.conns[key];
        if !reconnects {
            conn.dial = NO_DIAL;
        }
        conn.set_phase(
            Phase::Open {
                state: *state,
                session,
            },
            now_ms,
        );
        #[cfg(feature = "deflate")]
        if let Some(params) = deflate {
            conn.outbox
                .set_compression(crate::compress::SendCompression::for_client(&params));
            conn.receiver.enable_deflate(&params, &self.local.session);
        }
        #[cfg(not(feature = "deflate"))]
        let _ = deflate;
        stats::add(&self.local.counters.outbound_opened, 1);
        self.opened(key, subprotocol, head_buf, head_len);
        // Written at the end of the iteration; its timer is re-armed for the open session by
        // `settle_conn` after this I/O event.
        if let Some(conn) = self.conns.get_mut(key) {
            mark_dirty(conn, key, &mut self.local.dirty);
        }
    }

    /// An outbound connection is being removed before it opened (`cause`): its attempt
    /// failed with what the dial noted, or with what `cause` says.
    pub(super) fn attempt_ended(&mut self, key: usize, cause: CloseCause) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let slot = conn.dial as usize;
        let upgrading = matches!(conn.phase, Phase::Upgrading(_));
        let noted = self
            .local
            .dials
            .get_mut(slot)
            .and_then(|dial| dial.last_error.take());
        let error = noted.unwrap_or(match (cause, upgrading) {
            (CloseCause::Timeout, false) => ConnectError::ConnectTimedOut,
            (CloseCause::Timeout, true) => ConnectError::HandshakeTimedOut,
            _ => ConnectError::Closed,
        });
        self.remove_conn(key, cause, lanes_proto::CloseCode::ABNORMAL, "");
        self.attempt_failed(slot, error);
    }

    /// An attempt of dial `slot` failed (its connection, if any, is gone): `on_connect_failed`
    /// runs with the attempt's state, and the dial waits for its next attempt or is dropped.
    fn attempt_failed(&mut self, slot: usize, error: ConnectError) {
        let shutting_down = self.local.remote.shutting_down();
        // This attempt's place in its run of retries, before the count moves on.
        let retry = self.local.dials.get(slot).map_or(0, |d| d.retries);
        let retry_in = self
            .local
            .dials
            .plan_retry(slot, shutting_down, &mut self.local.rng);
        let Some(dial) = self.local.dials.get_mut(slot) else {
            return;
        };
        stats::add(&self.local.counters.outbound_failed, 1);
        let failure = ConnectFailure {
            url: dial.target.url.clone(),
            error,
            retry,
            retry_in,
        };
        let state = dial.state.take();
        match retry_in {
            Some(delay) => self.wait_to_retry(slot, delay),
            None => {
                self.local.dials.remove(slot);
            }
        }
        let Some(state) = state.and_then(|s| (s as Box<dyn Any>).downcast::<H::State>().ok())
        else {
            return;
        };
        let state = *state;
        self.run_worker_callback("on_connect_failed", move |handler, ctx| {
            handler.on_connect_failed(ctx, state, &failure)
        });
    }

    /// A connection was removed: if it was a reconnecting dial's open one that was lost, the
    /// next attempt is put on the wheel; a dial whose connection ended for good is dropped.
    pub(super) fn after_removal(&mut self, slot: u32, key: usize) {
        let slot = slot as usize;
        let Some(dial) = self.local.dials.get_mut(slot) else {
            return;
        };
        match dial.stage {
            Stage::Lost(delay) => self.wait_to_retry(slot, delay),
            Stage::Conn(k) if k == key => {
                self.local.dials.remove(slot);
            }
            _ => {}
        }
    }

    /// Shutdown: dials without a connection are dropped (their state with them).
    pub(super) fn drop_dials(&mut self) {
        for slot in self.local.dials.slots() {
            if !matches!(
                self.local.dials.get(slot).map(|d| d.stage),
                Some(Stage::Conn(_))
            ) {
                self.local.dials.remove(slot);
            }
        }
    }
}

/// The permessage-deflate offer of an outbound connection: none unless asked for (and built
/// with the feature). The worker's [`Config::deflate`](crate::Config::deflate) read from our
/// side: we compress each message on its own when it says so for our messages
/// (`server_no_context_takeover`, ours as the sender), and ask the server to when it says so
/// for the peer's (`client_no_context_takeover`).
fn deflate_offer(asked: bool, config: &crate::Config) -> Option<lanes_proto::deflate::ClientOffer> {
    if !asked || cfg!(not(feature = "deflate")) {
        return None;
    }
    Some(lanes_proto::deflate::ClientOffer {
        server_no_context_takeover: config.deflate.client_no_context_takeover,
        client_no_context_takeover: config.deflate.server_no_context_takeover,
        server_max_window_bits: None,
        client_max_window_bits: true,
    })
}

/// The permessage-deflate parameters of the server's answer, checked against our offer.
fn negotiated_deflate(
    asked: bool,
    config: &crate::Config,
    accepted: &[lanes_proto::handshake::ExtensionOffer<'_>],
) -> Result<Option<lanes_proto::deflate::DeflateParams>, ConnectError> {
    let Some(offer) = deflate_offer(asked, config) else {
        return Ok(None);
    };
    match lanes_proto::deflate::accept_answer(&offer, accepted) {
        Ok(params) => Ok(Some(params)),
        Err(lanes_proto::deflate::AnswerError::Declined) => Ok(None),
        Err(error) => Err(ConnectError::Handshake(error.to_string())),
    }
}

#[cfg(feature = "tls")]
use std::sync::Arc;
