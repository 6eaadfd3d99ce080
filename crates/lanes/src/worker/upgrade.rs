//! The answer to a request head: a pure function of the head, the configuration and the
//! handler ([`answer`]), and the worker's part: gathering the head and acting on the answer.

use std::cell::Cell;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;

use lanes_proto::deflate::DeflateParams;
#[cfg(feature = "deflate")]
use lanes_proto::deflate::negotiate;
use lanes_proto::handshake::{
    AcceptOptions, Parsed, RequestHead, UpgradeOffer, write_accept, write_reject,
};
use std::panic::{self, AssertUnwindSafe};

use lanes_proto::session::Session;

use super::Worker;
use super::dispatch::{self, on_frames};
use super::response::{error_response, header_pairs, write_plain, write_refusal};
use crate::answer::{HttpResponse, Upgrade};
#[cfg(feature = "deflate")]
use crate::compress::SendCompression;
use crate::config::Config;
use crate::conn::{Phase, mark_dirty};
use crate::deferred::{Deferrable, DeferredCell};
use crate::handler::Handler;
use crate::handoff::PlacedAccept;
use crate::id::ConnId;
use crate::remote::Remote;
use crate::request::Request;
use crate::stats;

/// What to do with a complete request head.
#[derive(Debug)]
pub(super) struct Answer<S> {
    /// The response to write (a 101, an error, or a plain HTTP answer).
    pub(super) response: Vec<u8>,
    /// The upgrade was accepted: the connection's state and its compression, if negotiated.
    pub(super) accepted: Option<(S, Option<DeflateParams>)>,
    /// The upgrade was accepted on another worker (its index): the connection moves there,
    /// nothing is answered here.
    pub(super) moving: Option<(usize, PlacedAccept)>,
    /// The status of a refusal to count (a bad request, a refused upgrade, a plain request
    /// answered with an error status).
    pub(super) rejected: Option<u16>,
    /// `on_upgrade` or `on_http` panicked (the answer is a 500).
    pub(super) panicked: Option<&'static str>,
    /// `on_upgrade` deferred its answer: the connection waits for it.
    pub(super) deferred: Option<Arc<DeferredCell>>,
}

impl<S> Answer<S> {
    /// `response` alone, counted as a refusal with `rejected`'s status when there is one.
    fn respond(response: Vec<u8>, rejected: Option<u16>) -> Answer<S> {
        Answer {
            response,
            accepted: None,
            moving: None,
            rejected,
            panicked: None,
            deferred: None,
        }
    }

    /// A 500: the handler panicked in `callback`.
    fn panicked(callback: &'static str) -> Answer<S> {
        let mut response = Vec::new();
        let _ = write_reject(&mut response, 500, &[], b"internal error");
        Answer {
            panicked: Some(callback),
            ..Answer::respond(response, Some(500))
        }
    }

    /// A 500 with `body`: the application's answer cannot be carried out.
    fn invalid(body: &str) -> Answer<S> {
        let mut response = Vec::new();
        write_plain(&mut response, &HttpResponse::new(500, body));
        Answer::respond(response, Some(500))
    }
}

/// The worker answering, how many there are (where a placement resolves), and for a
/// connection whose upgrade may be deferred, its id and the handle the answer comes through.
#[derive(Debug, Clone, Copy)]
pub(super) struct Workers<'r> {
    pub(super) index: usize,
    pub(super) count: usize,
    pub(super) deferrable: Option<(ConnId, &'r Remote)>,
}

/// The answer to `head` from `peer`: the metrics page on [`MetricsConfig::path`](crate::config::MetricsConfig::path), the
/// handler's `on_http` for other plain requests, an error for an invalid upgrade, and the
/// handler's `on_upgrade` decision (with permessage-deflate negotiated per `config`) for a
/// valid one, or the move to the worker it placed the upgrade on. `metrics` renders the
/// metrics page when it is asked for.
pub(super) fn answer<H: Handler>(
    head: &RequestHead<'_>,
    peer: SocketAddr,
    config: &Config,
    handler: &mut H,
    workers: Workers<'_>,
    metrics: impl FnOnce() -> String,
) -> Answer<H::State> {
    let mut response = Vec::new();
    if !head.is_websocket_upgrade() {
        #[cfg(feature = "metrics")]
        let metrics_path = config.metrics.path.as_deref();
        #[cfg(not(feature = "metrics"))]
        let metrics_path: Option<&str> = None;
        if head.method() == "GET" && metrics_path.is_some_and(|p| p == head.path()) {
            let content_type = lanes_metrics::prometheus::CONTENT_TYPE;
            let mut page = HttpResponse::new(200, metrics());
            page.headers = vec![("Content-Type".into(), content_type.into())];
            write_plain(&mut response, &page);
            return Answer::respond(response, None);
        }
        let request = Request {
            head,
            offer: None,
            peer,
            deferrable: None,
        };
        let Ok(plain) = panic::catch_unwind(AssertUnwindSafe(|| handler.on_http(&request))) else {
            return Answer::panicked("on_http");
        };
        write_plain(&mut response, &plain);
        // Not an upgrade (426 by default): a refused handshake too.
        let rejected = (plain.status >= 400).then_some(plain.status);
        return Answer::respond(response, rejected);
    }
    let offer = match validate(head, peer) {
        Ok(offer) => offer,
        Err(answer) => return answer,
    };
    let deferrable = workers.deferrable.map(|(id, remote)| Deferrable {
        id,
        remote,
        made: Cell::new(None),
    });
    let request = Request {
        head,
        offer: Some(&offer),
        peer,
        deferrable: deferrable.as_ref(),
    };
    let decision = panic::catch_unwind(AssertUnwindSafe(|| handler.on_upgrade(&request)));
    let deferral = deferrable.and_then(|d| d.made.take());
    if let Some(cell) = &deferral
        && !matches!(decision, Ok(Upgrade::Defer))
    {
        // Answered at once (or the callback panicked): a deferral made meanwhile is void.
        cell.answered_at_once();
    }
    let accept = match decision {
        Ok(Upgrade::Accept(accept)) => accept,
        Ok(Upgrade::Refuse(refusal)) => {
            tracing::debug!(%peer, status = refusal.status, "upgrade refused by the handler");
            write_refusal(&mut response, &refusal);
            return Answer::respond(response, Some(refusal.status));
        }
        Ok(Upgrade::Defer) => {
            return match deferral {
                Some(cell) => Answer {
                    deferred: Some(cell),
                    ..Answer::respond(Vec::new(), None)
                },
                None => {
                    tracing::debug!(%peer, "upgrade deferred without Request::defer");
                    Answer::invalid("upgrade deferred without Request::defer")
                }
            };
        }
        Err(_) => return Answer::panicked("on_upgrade"),
    };
    if let Some((placement, erase)) = accept.placement() {
        let target = placement.resolve(workers.count);
        if target >= workers.count {
            tracing::debug!(%peer, target, "upgrade placed on a worker that does not exist");
            return Answer::invalid("upgrade placed on a worker that does not exist");
        }
        if target != workers.index {
            let placed = PlacedAccept {
                state: erase(accept.state),
                subprotocol: accept.subprotocol,
                headers: accept.headers,
            };
            return Answer {
                moving: Some((target, placed)),
                ..Answer::respond(Vec::new(), None)
            };
        }
    }
    accepted(
        &offer,
        config,
        accept.state,
        accept.subprotocol.as_deref(),
        &accept.headers,
    )
}

/// The answer, on the worker it was placed on, to an upgrade another worker accepted: the
/// handler's acceptance carried out as if it had been given here.
fn answer_placed<S: 'static>(
    head: &RequestHead<'_>,
    peer: SocketAddr,
    config: &Config,
    placed: PlacedAccept,
) -> Answer<S> {
    let offer = match validate(head, peer) {
        Ok(offer) => offer,
        Err(answer) => return answer,
    };
    match placed.state.downcast::<S>() {
        Ok(state) => accepted(
            &offer,
            config,
            *state,
            placed.subprotocol.as_deref(),
            &placed.headers,
        ),
        Err(_) => Answer::invalid("upgrade placed with a state of another type"),
    }
}

/// The upgrade offer in `head`, or the error answer for an invalid one (large, but made once
/// per connection at most).
#[allow(clippy::result_large_err)]
fn validate<'h, S>(
    head: &'h RequestHead<'_>,
    peer: SocketAddr,
) -> Result<UpgradeOffer<'h>, Answer<S>> {
    UpgradeOffer::validate(head).map_err(|error| {
        tracing::debug!(%peer, %error, "bad upgrade request");
        let mut response = Vec::new();
        error.write_response(&mut response);
        Answer::respond(response, Some(error.status()))
    })
}

/// The 101 for an accepted `offer` (permessage-deflate negotiated per `config`), or a 500 when
/// the acceptance cannot be written (a subprotocol the client did not offer, a bad header).
fn accepted<S>(
    offer: &UpgradeOffer<'_>,
    config: &Config,
    state: S,
    subprotocol: Option<&str>,
    headers: &[(String, String)],
) -> Answer<S> {
    let headers = header_pairs(headers);
    #[cfg(feature = "deflate")]
    let deflate = negotiate(offer.extensions(), &config.deflate);
    #[cfg(not(feature = "deflate"))]
    let deflate: Option<lanes_proto::deflate::Negotiated> = {
        let _ = &config.deflate; // never negotiated without the feature
        None
    };
    let options = AcceptOptions {
        subprotocol,
        extensions: deflate.as_ref().map(|d| d.response.as_str()),
        extra_headers: &headers,
    };
    let mut response = Vec::new();
    match write_accept(offer, &options, &mut response) {
        Ok(()) => Answer {
            accepted: Some((state, deflate.map(|d| d.params))),
            ..Answer::respond(response, None)
        },
        Err(_) => Answer::invalid("invalid upgrade answer"),
    }
}

impl<H: Handler> Worker<H> {
    /// Handshake bytes: gather the head, then upgrade, refuse, answer plain HTTP, or move the
    /// connection to the worker its upgrade was placed on.
    pub(super) fn on_head_bytes(&mut self, key: usize, bytes: Range<usize>) {
        let now_ms = self.local.now_us / 1000;
        let conn = &mut self.conns[key];
        let head = match &mut conn.phase {
            Phase::Handshake { head } => head.take().map(|head| *head),
            _ => return,
        };
        let mut head_buf = head.unwrap_or_else(|| self.local.pool.take());
        head_buf.extend_from_slice(&self.scratch[bytes]);
        let head = match RequestHead::parse(&head_buf, &self.head_limits) {
            Ok(Parsed::Partial) => {
                conn.phase = Phase::Handshake {
                    head: Some(Box::new(head_buf)),
                };
                return;
            }
            Err(error) => {
                let mut response = Vec::new();
                error.write_response(&mut response);
                self.local.counters.note_rejected(error.status());
                tracing::debug!(peer = %conn.peer, %error, "bad request head");
                conn.outbox.push_raw(&response, &mut self.local.pool);
                conn.set_phase(Phase::Closing, now_ms);
                self.local.pool.put(head_buf);
                return;
            }
            Ok(Parsed::Complete(head)) => head,
        };
        let head_len = head.head_len();
        let remote = &self.local.remote;
        let metrics = || lanes_metrics::prometheus::encode(&remote.metrics());
        let id = ConnId {
            worker: self.local.index,
            slot: key as u32,
            generation: conn.generation,
        };
        let workers = Workers {
            index: usize::from(self.local.index),
            count: remote.worker_count(),
            deferrable: Some((id, remote)),
        };
        let answer = answer(
            &head,
            conn.peer.get(),
            &self.local.config,
            &mut self.handler,
            workers,
            metrics,
        );
        drop(head);
        if let Some((target, placed)) = answer.moving {
            self.hand_off(key, target, head_buf, placed);
            return;
        }
        if let Some(cell) = answer.deferred {
            self.defer_upgrade(key, head_buf, cell);
            return;
        }
        self.act_on_answer(key, answer, head_buf, head_len);
    }

    /// Writes `answer` on connection `key` and, when it accepted the upgrade, opens the
    /// connection (`on_open`) and handles the frames the client sent behind its head (in
    /// `head_buf`, from `head_len`).
    pub(super) fn act_on_answer(
        &mut self,
        key: usize,
        answer: Answer<H::State>,
        head_buf: Vec<u8>,
        head_len: usize,
    ) {
        let now_us = self.local.now_us;
        let now_ms = now_us / 1000;
        let conn = &mut self.conns[key];
        if let Some(status) = answer.rejected {
            self.local.counters.note_rejected(status);
        }
        if let Some(callback) = answer.panicked {
            stats::add(&self.local.counters.handler_panics, 1);
            if let Some(suppressed) = self.local.panic_log.admit(self.local.now_us) {
                tracing::error!(peer = %conn.peer, callback, suppressed, "a handler callback panicked: answered 500");
            }
        }
        conn.outbox.push_raw(&answer.response, &mut self.local.pool);
        let Some((state, compression)) = answer.accepted else {
            conn.set_phase(Phase::Closing, now_ms);
            self.local.pool.put(head_buf);
            return;
        };
        let session = Session::new(self.local.session, now_us);
        conn.set_phase(Phase::Open { state, session }, now_ms);
        #[cfg(feature = "deflate")]
        if let Some(params) = compression {
            conn.outbox.set_compression(SendCompression::new(&params));
            conn.receiver.enable_deflate(&params, &self.local.session);
        }
        #[cfg(not(feature = "deflate"))]
        let _ = compression;
        self.opened(key, None, head_buf, head_len);
    }

    /// Connection `key` was just set open: it is counted and marked live, `on_open` runs
    /// (with `subprotocol` for [`Ws::subprotocol`](crate::Ws::subprotocol): an outbound
    /// connection's server's choice), then the frames the peer sent right behind its
    /// handshake (in `head_buf`, from `head_len`) are handled.
    pub(super) fn opened(
        &mut self,
        key: usize,
        subprotocol: Option<String>,
        mut head_buf: Vec<u8>,
        head_len: usize,
    ) {
        let now_us = self.local.now_us;
        let now_ms = now_us / 1000;
        let generation = self.conns[key].generation;
        self.local.live.open(key, generation);
        stats::add(&self.local.counters.connections, 1);
        stats::add(&self.local.counters.opened, 1);
        let id = self.conn_id(key);
        let conn = &mut self.conns[key];
        self.local.opening_subprotocol = subprotocol;
        let (handler, local) = (&mut self.handler, &mut self.local);
        let opened = dispatch::guarded_callback(conn, handler, local, id, "on_open", |h, ws, s| {
            h.on_open(ws, s)
        });
        self.local.opening_subprotocol = None;
        if opened {
            dispatch::after_callbacks(conn, &mut self.handler, &mut self.local, key, now_ms);
            // Frames the peer sent right behind its side of the handshake.
            if head_buf.len() > head_len {
                on_frames(
                    conn,
                    &mut head_buf[head_len..],
                    &mut self.handler,
                    &mut self.local,
                    &mut self.inflate,
                    id,
                    now_us,
                );
            }
        }
        self.local.pool.put(head_buf);
    }
}

impl<H: Handler> Worker<H> {
    /// Answers connection `key`'s request `head` (and handles what followed it) as the handler
    /// of another worker, or a deferred answer, accepted it; the worker that took it in parsed
    /// the head before, so a head that does not parse is an internal error.
    pub(super) fn open_placed(&mut self, key: usize, head: Vec<u8>, accepted: PlacedAccept) {
        let peer = self.conns[key].peer.get();
        let answer = match RequestHead::parse(&head, &self.head_limits) {
            Ok(Parsed::Complete(request)) => {
                let head_len = request.head_len();
                let answer = answer_placed(&request, peer, &self.local.config, accepted);
                Some((answer, head_len))
            }
            _ => None,
        };
        match answer {
            Some((answer, head_len)) => self.act_on_answer(key, answer, head, head_len),
            None => {
                self.local.pool.put(head);
                self.close_with(key, 500, b"internal error");
            }
        }
    }

    /// Answers connection `key` with lanes' own `status` and `body`, and closes it once
    /// written.
    pub(super) fn close_with(&mut self, key: usize, status: u16, body: &[u8]) {
        self.answer_and_close(key, &error_response(status, body), status);
    }

    /// Answers connection `key` with `response` (counted as a refusal with `status`) and
    /// closes it once written.
    pub(super) fn answer_and_close(&mut self, key: usize, response: &[u8], status: u16) {
        let now_ms = self.local.now_us / 1000;
        self.local.counters.note_rejected(status);
        let conn = &mut self.conns[key];
        conn.outbox.push_raw(response, &mut self.local.pool);
        conn.set_phase(Phase::Closing, now_ms);
        mark_dirty(conn, key, &mut self.local.dirty);
        self.arm(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::Accept;
    use crate::handler::Message;
    use crate::ws::Ws;
    use lanes_proto::handshake::HeadLimits;

    /// Accepts with the request's path as state, or refuses `/private` with 403; confirms the
    /// subprotocol `?proto=` names (even one not offered, to provoke a 500).
    struct Gate;

    impl Handler for Gate {
        type State = String;

        fn on_upgrade(&mut self, request: &Request<'_>) -> Upgrade<String> {
            if request.path() == "/private" {
                return Upgrade::Refuse(HttpResponse::new(403, "no"));
            }
            let accept = Accept::new(request.path().to_string()).header("X-Seen", "1");
            Upgrade::Accept(
                match request.query().and_then(|q| q.strip_prefix("proto=")) {
                    Some(proto) => accept.with_subprotocol(proto),
                    None => accept,
                },
            )
        }

        fn on_message(&mut self, _: &mut Ws<'_>, _: &mut String, _: Message<'_>) {}
    }

    const KEY_HEADERS: &str = "Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

    fn answer_to(request: &str, config: &Config) -> (String, Answer<String>) {
        let head = match RequestHead::parse(request.as_bytes(), &HeadLimits::default()) {
            Ok(Parsed::Complete(head)) => head,
            other => panic!("{other:?}"),
        };
        let peer = "127.0.0.1:1".parse().unwrap();
        let workers = Workers {
            index: 0,
            count: 1,
            deferrable: None,
        };
        let answer = answer(&head, peer, config, &mut Gate, workers, || {
            "page\n".to_string()
        });
        (
            String::from_utf8_lossy(&answer.response).into_owned(),
            answer,
        )
    }

    fn upgrade(target: &str, extra: &str) -> String {
        format!("GET {target} HTTP/1.1\r\n{KEY_HEADERS}{extra}\r\n")
    }

    #[test]
    fn a_valid_upgrade_is_accepted_with_the_handlers_state_and_headers() {
        let (text, answer) = answer_to(&upgrade("/game", ""), &Config::default());
        // RFC 6455 §1.3: the accept value for the sample nonce.
        assert!(
            text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
            "{text}"
        );
        assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(text.contains("X-Seen: 1\r\n"));
        let (state, deflate) = answer.accepted.unwrap();
        assert_eq!(state, "/game");
        assert!(deflate.is_none(), "deflate is off by default");
        assert_eq!(answer.rejected, None);
    }

    #[cfg(feature = "deflate")]
    #[test]
    fn deflate_is_negotiated_only_when_configured_and_offered() {
        let offer = "Sec-WebSocket-Extensions: permessage-deflate\r\n";
        let mut config = Config::default();
        let (text, answer) = answer_to(&upgrade("/", offer), &config);
        assert!(!text.contains("permessage-deflate"));
        assert!(answer.accepted.unwrap().1.is_none());
        config.deflate.enabled = true;
        let (text, answer) = answer_to(&upgrade("/", offer), &config);
        assert!(
            text.contains("Sec-WebSocket-Extensions: permessage-deflate"),
            "{text}"
        );
        assert!(answer.accepted.unwrap().1.is_some());
    }

    #[test]
    fn refusals_and_bad_requests_answer_with_their_status() {
        let config = Config::default();
        let (text, answer) = answer_to(&upgrade("/private", ""), &config);
        assert!(text.starts_with("HTTP/1.1 403 "), "{text}");
        assert_eq!(
            (answer.accepted.is_none(), answer.rejected),
            (true, Some(403))
        );

        let bad = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
            Sec-WebSocket-Version: 13\r\n\r\n";
        let (text, answer) = answer_to(bad, &config);
        assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
        assert_eq!(answer.rejected, Some(400));

        let old = upgrade("/", "").replace("Version: 13", "Version: 8");
        let (text, answer) = answer_to(&old, &config);
        assert!(text.starts_with("HTTP/1.1 426 "), "{text}");
        assert!(text.contains("Sec-WebSocket-Version: 13\r\n"));
        assert_eq!(answer.rejected, Some(426));
    }

    #[test]
    fn a_subprotocol_the_client_did_not_offer_is_a_500() {
        let (text, answer) = answer_to(&upgrade("/?proto=chat", ""), &Config::default());
        assert!(text.starts_with("HTTP/1.1 500 "), "{text}");
        assert_eq!(
            (answer.accepted.is_none(), answer.rejected),
            (true, Some(500))
        );
        let offered = upgrade("/?proto=chat", "Sec-WebSocket-Protocol: chat\r\n");
        let (text, _) = answer_to(&offered, &Config::default());
        assert!(text.contains("Sec-WebSocket-Protocol: chat\r\n"), "{text}");
    }

    #[test]
    fn plain_requests_get_on_http_and_the_metrics_page_when_configured() {
        let plain = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut config = Config::default();
        let (text, answer) = answer_to(plain, &config);
        assert!(text.starts_with("HTTP/1.1 426 "), "{text}");
        assert!(text.contains("Connection: close\r\n"));
        assert_eq!(answer.rejected, Some(426));
        #[cfg(feature = "metrics")]
        {
            config.metrics.path = Some("/metrics".into());
            let (text, answer) = answer_to(plain, &config);
            assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
            assert!(text.ends_with("\r\n\r\npage\n"), "{text}");
            assert_eq!(answer.rejected, None);
        }
        let _ = &mut config;
    }
}
