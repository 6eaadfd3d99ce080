//! The control half of a session: the close handshake, keepalive, and the control frames the
//! session owes the peer.

use core::fmt::{self, Write as _};

use super::{Closed, Event, Initiator, Output, SessionConfig};
use crate::close::{MAX_CLOSE_PAYLOAD_LEN, MAX_CLOSE_REASON_LEN, write_close_payload};
use crate::frame::{FrameHeader, MAX_CONTROL_PAYLOAD_LEN, MAX_HEADER_LEN, OpCode, Role};
use crate::mask::apply_mask;
use crate::{CloseCode, ProtocolError};

/// `flags`: we are the client (control frames are masked).
const CLIENT: u8 = 0x01;
/// `flags`: a keepalive ping is out and its pong has not arrived; `mark_us` is when it left.
const PING_OUT: u8 = 0x02;
/// `flags`: a keepalive ping's pong arrived; `mark_us` is its round trip, not yet taken.
const RTT_READY: u8 = 0x04;
/// `flags`: the receive half met a protocol error; every later byte is ignored.
const RECV_FAILED: u8 = 0x08;
/// `flags`: the peer has begun a frame or a fragmented message and not finished it;
/// `last_heard_us` is when it began.
const UNFINISHED: u8 = 0x10;

/// The reason of the close sent on [`Timeout::MessageIncomplete`].
const INCOMPLETE_REASON: &str = "message not finished in time";

/// Where a session is in the close handshake (RFC 6455 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionState {
    /// Both directions open: messages flow, pings are answered, keepalive runs.
    Open,
    /// Our close frame is out (we closed, or failed the connection on a protocol error); the
    /// peer's close is awaited for [`SessionConfig::close_timeout_us`]. Nothing received is
    /// delivered any more but the peer's close ([`Initiator::Us`]).
    CloseSent,
    /// Both close frames are exchanged (the peer's first and our echo, or ours and its answer).
    /// The session is over: a server closes the TCP connection now, a client waits for the
    /// server to (RFC 6455 §7.1.1). Every later byte is ignored.
    Closed,
    /// [`Session::handle_timeout`] reported a [`Timeout`]: the peer is gone. Drop the
    /// connection. Every later byte is ignored.
    TimedOut,
}

/// What [`Session::handle_timeout`] found: the peer is not answering, drop the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timeout {
    /// No message, ping, pong or close came from the peer within
    /// [`SessionConfig::pong_timeout_us`] of our keepalive ping (RFC 6455 close code 1006 is
    /// what to report: no close frame).
    PongMissed,
    /// A frame or fragmented message the peer began was not finished within
    /// [`SessionConfig::message_timeout_us`] of its first byte (a trickling or stalled peer).
    /// The session has given its output a close frame with 1008 (policy violation): write it,
    /// then drop the connection.
    MessageIncomplete,
    /// The peer did not answer our close frame within [`SessionConfig::close_timeout_us`].
    CloseUnanswered,
}

/// The control half of a connection's session: the close handshake, keepalive bookkeeping, and
/// the control frames the session owes the peer (auto-pong, close echo, our close, keepalive
/// ping), which it gives to an [`Output`] as they become due.
///
/// It is small (24 bytes, no heap) so that a table of idle connections stays small: two
/// timestamps, the code of the close we sent, the state and a few flags. The timeouts are not
/// copied into each session: the calls that need them ([`poll_timeout`](Self::poll_timeout),
/// [`handle_timeout`](Self::handle_timeout)) are given the [`SessionConfig`] the session was
/// made from, which an owner of many sessions keeps once. See the
/// [module documentation](super) for the calling contract.
///
/// ```
/// use lanes_proto::session::{Session, SessionConfig, SessionState, Output};
/// use lanes_proto::{CloseCode, OpCode};
///
/// #[derive(Default)]
/// struct Wire(Vec<u8>);
/// impl Output for Wire {
///     fn control(&mut self, _opcode: OpCode, frame: &[u8]) { self.0.extend_from_slice(frame) }
/// }
///
/// let config = SessionConfig::server();
/// let mut session = Session::new(config, 0);
/// let mut wire = Wire::default();
/// assert!(session.close(CloseCode::GOING_AWAY, "restart", 10, &mut wire));
/// assert_eq!(wire.0, b"\x88\x09\x03\xe9restart");
/// assert_eq!(session.state(), SessionState::CloseSent);
/// assert!(!session.can_send());
/// assert!(!session.close(CloseCode::NORMAL, "", 11, &mut wire)); // once only
/// // The peer has 2 s (the default close timeout) to answer.
/// assert_eq!(session.poll_timeout(&config), Some(10 + 2_000_000));
/// ```
#[derive(Debug, Clone)]
pub struct Session {
    /// When the peer last completed a message, ping, pong or close (microseconds, the caller's
    /// clock); with [`UNFINISHED`], when it began the frame or message it has not finished.
    last_heard_us: u64,
    /// [`PING_OUT`]: when the keepalive ping left; [`RTT_READY`]: its round trip;
    /// [`SessionState::CloseSent`]: when our close left.
    mark_us: u64,
    sent_close: Option<CloseCode>,
    state: SessionState,
    flags: u8,
}

impl Session {
    /// A session that opened at `now_us` (the caller's clock, in microseconds: any monotonic
    /// origin, as long as every call uses the same one).
    pub fn new(config: SessionConfig, now_us: u64) -> Session {
        Session {
            last_heard_us: now_us,
            mark_us: 0,
            sent_close: None,
            state: SessionState::Open,
            flags: if config.role == Role::Client {
                CLIENT
            } else {
                0
            },
        }
    }

    /// Where the session is in the close handshake.
    pub const fn state(&self) -> SessionState {
        self.state
    }

    /// Whether the peer has begun a frame or fragmented message and not finished it: the
    /// session's deadline is then the message timeout from its first byte, which can come
    /// before the keepalive deadline it had (a caller that keeps one timer per connection
    /// re-arms it when this turns true).
    pub const fn is_unfinished(&self) -> bool {
        self.flags & UNFINISHED != 0
    }

    /// Whether our keepalive ping is out and nothing came from the peer since it left: the
    /// session's deadline is then the pong timeout. A sign of life ends this and brings back the
    /// keepalive deadline, which can be much sooner (a caller that keeps one timer per
    /// connection re-arms it when this turns false).
    pub fn is_awaiting_pong(&self) -> bool {
        self.state == SessionState::Open && self.awaiting_pong()
    }

    /// Whether messages may be sent: false once our close frame is out (RFC 6455 §5.5.1: no
    /// data frame after a close), and after a timeout.
    pub const fn can_send(&self) -> bool {
        matches!(self.state, SessionState::Open)
    }

    /// Our role.
    pub const fn role(&self) -> Role {
        if self.flags & CLIENT != 0 {
            Role::Client
        } else {
            Role::Server
        }
    }

    /// Starts the close handshake: gives `out` a close frame with `code` and `reason` (cut to
    /// 123 bytes at a character boundary; a code that may not be sent, such as 1005 or 1006,
    /// gives a close frame without a code or reason) and waits
    /// [`SessionConfig::close_timeout_us`] from `now_us` for the peer's answer. Returns false,
    /// and gives nothing, when a close frame was already sent (or the session timed out).
    pub fn close(
        &mut self,
        code: CloseCode,
        reason: &str,
        now_us: u64,
        out: &mut impl Output,
    ) -> bool {
        if self.state != SessionState::Open {
            return false;
        }
        let mut payload = [0u8; MAX_CLOSE_PAYLOAD_LEN];
        let len = write_close_payload(&mut payload, code, reason);
        self.send_control(OpCode::Close, &payload[..len], out);
        self.sent_close = Some(code);
        self.state = SessionState::CloseSent;
        self.mark_us = now_us;
        self.flags &= !(PING_OUT | RTT_READY);
        true
    }

    /// The code of the close frame we sent (as given to [`close`](Self::close), or echoed),
    /// if any. `None` when we sent none, or echoed a close that had no code.
    pub const fn sent_close(&self) -> Option<CloseCode> {
        self.sent_close
    }

    /// The earliest time (microseconds, the caller's clock) at which
    /// [`handle_timeout`](Self::handle_timeout) must be called, or `None` when nothing is
    /// pending. Changes after every call that takes `now_us`: ask again after each. The
    /// timeouts are `config`'s: the [`SessionConfig`] the session was made from (its role and
    /// auto-pong rule are not looked at here).
    ///
    /// Open: `message_timeout_us` after the first byte of a frame or fragmented message the
    /// peer has not finished; otherwise `pong_timeout_us` after our keepalive ping when
    /// nothing came from the peer since, otherwise `ping_interval_us` after the peer last
    /// completed a message, ping, pong or close (none when keepalive is off). Close sent:
    /// `close_timeout_us` after it left.
    pub fn poll_timeout(&self, config: &SessionConfig) -> Option<u64> {
        match self.state {
            SessionState::Open if self.flags & UNFINISHED != 0 => {
                Some(self.last_heard_us.saturating_add(config.message_timeout_us))
            }
            SessionState::Open if self.awaiting_pong() => {
                Some(self.mark_us.saturating_add(config.pong_timeout_us))
            }
            SessionState::Open => config
                .ping_interval_us
                .map(|interval| self.last_heard_us.saturating_add(interval)),
            SessionState::CloseSent => Some(self.mark_us.saturating_add(config.close_timeout_us)),
            SessionState::Closed | SessionState::TimedOut => None,
        }
    }

    /// Acts on the deadline of [`poll_timeout`](Self::poll_timeout) when `now_us` has reached
    /// it (an early or spurious call does nothing and returns `None`):
    /// - a frame or message begun and not finished in time: gives `out` a close frame with
    ///   1008 (policy violation) and the reason "message not finished in time", and returns
    ///   [`Timeout::MessageIncomplete`] (write the close, then drop the connection: its answer
    ///   is not awaited);
    /// - keepalive due: gives `out` a ping (empty payload) and returns `None`;
    /// - no sign of life since that ping within the pong timeout: returns
    ///   [`Timeout::PongMissed`];
    /// - our close unanswered within the close timeout: returns [`Timeout::CloseUnanswered`].
    ///
    /// After a [`Timeout`] the state is [`SessionState::TimedOut`]: drop the connection.
    pub fn handle_timeout(
        &mut self,
        config: &SessionConfig,
        now_us: u64,
        out: &mut impl Output,
    ) -> Option<Timeout> {
        let deadline = self.poll_timeout(config)?;
        if now_us < deadline {
            return None;
        }
        match self.state {
            SessionState::Open if self.flags & UNFINISHED != 0 => {
                self.close(CloseCode::POLICY_VIOLATION, INCOMPLETE_REASON, now_us, out);
                self.state = SessionState::TimedOut;
                Some(Timeout::MessageIncomplete)
            }
            SessionState::Open if self.awaiting_pong() => {
                self.state = SessionState::TimedOut;
                Some(Timeout::PongMissed)
            }
            SessionState::Open => {
                self.send_control(OpCode::Ping, &[], out);
                self.mark_us = now_us;
                self.flags = (self.flags & !RTT_READY) | PING_OUT;
                None
            }
            SessionState::CloseSent => {
                self.state = SessionState::TimedOut;
                Some(Timeout::CloseUnanswered)
            }
            SessionState::Closed | SessionState::TimedOut => None,
        }
    }

    /// The round trip of our last keepalive ping, in microseconds, once its pong arrived
    /// (for an RTT histogram): from the ping leaving ([`handle_timeout`](Self::handle_timeout))
    /// to the [`Event::Pong`] that followed it. Taken once: `None` again until the next
    /// ping's pong.
    pub fn take_ping_rtt_us(&mut self) -> Option<u64> {
        if self.flags & RTT_READY == 0 {
            return None;
        }
        self.flags &= !RTT_READY;
        Some(self.mark_us)
    }

    /// Open: messages are delivered as they come. (A receive half that failed has closed the
    /// session, so it is not open either.)
    #[inline]
    pub(super) fn is_open(&self) -> bool {
        self.state == SessionState::Open
    }

    /// Whether received bytes are still to be looked at.
    pub(super) fn is_receiving(&self) -> bool {
        self.flags & RECV_FAILED == 0
            && matches!(self.state, SessionState::Open | SessionState::CloseSent)
    }

    /// The receive half took bytes at `now_us`: `completed` whether they completed a message,
    /// ping, pong or close (a sign of life), `unfinished` whether a frame or fragmented
    /// message is left begun (its deadline runs from its first byte).
    #[inline]
    pub(super) fn progress(&mut self, unfinished: bool, completed: bool, now_us: u64) {
        if unfinished {
            if self.flags & UNFINISHED == 0 {
                self.flags |= UNFINISHED;
                self.last_heard_us = now_us;
            }
        } else {
            self.flags &= !UNFINISHED;
            if completed {
                self.last_heard_us = now_us;
            }
        }
    }

    /// A keepalive ping is out and nothing came from the peer since it left.
    fn awaiting_pong(&self) -> bool {
        self.flags & PING_OUT != 0 && self.last_heard_us < self.mark_us
    }

    /// The receive half met `error`: close with its code and text (when not closed already);
    /// every later byte is ignored.
    pub(super) fn fail(&mut self, error: &ProtocolError, now_us: u64, out: &mut impl Output) {
        self.flags |= RECV_FAILED;
        let mut reason = Reason::default();
        // `Reason` never fails; it cuts the text at 123 bytes.
        let _ = write!(reason, "{error}");
        self.close(error.close_code(), reason.as_str(), now_us, out);
    }

    /// Applies the close and ping rules to an event the receive half completed; returns what
    /// is to be delivered.
    #[inline(never)]
    pub(super) fn on_event<'a>(
        &mut self,
        event: Event<'a>,
        auto_pong: bool,
        now_us: u64,
        out: &mut impl Output,
    ) -> Option<Event<'a>> {
        let open = self.state == SessionState::Open;
        match event {
            Event::Text(_) | Event::Binary(_) => open.then_some(event),
            Event::Ping(payload) => {
                if open && auto_pong {
                    self.send_control(OpCode::Pong, payload, out);
                }
                open.then_some(event)
            }
            Event::Pong(_) => {
                if open && self.flags & PING_OUT != 0 {
                    self.mark_us = now_us.saturating_sub(self.mark_us);
                    self.flags = (self.flags & !PING_OUT) | RTT_READY;
                }
                open.then_some(event)
            }
            Event::Close(closed) => {
                let initiator = if open {
                    self.echo_close(closed.code, out);
                    Initiator::Peer
                } else {
                    Initiator::Us
                };
                self.state = SessionState::Closed;
                Some(Event::Close(Closed {
                    initiator,
                    ..closed
                }))
            }
        }
    }

    /// Echoes a peer's close: the same code and no reason, or an empty payload when it had no
    /// code (RFC 6455 §5.5.1).
    fn echo_close(&mut self, code: Option<CloseCode>, out: &mut impl Output) {
        let mut payload = [0u8; 2];
        let len = match code {
            Some(code) => write_close_payload_short(&mut payload, code),
            None => 0,
        };
        self.send_control(OpCode::Close, &payload[..len], out);
        self.sent_close = code;
    }

    /// Encodes a control frame (masked with a fresh key in the client role) and gives it to
    /// `out`. `payload` is at most 125 bytes (received pings and close payloads are).
    fn send_control(&self, opcode: OpCode, payload: &[u8], out: &mut impl Output) {
        const MAX: usize = MAX_HEADER_LEN + MAX_CONTROL_PAYLOAD_LEN as usize;
        let payload = &payload[..payload.len().min(MAX_CONTROL_PAYLOAD_LEN as usize)];
        let mut header = FrameHeader::new(true, opcode, payload.len() as u64);
        if self.flags & CLIENT != 0 {
            header = header.with_mask(out.mask_key());
        }
        let mut head = [0u8; MAX_HEADER_LEN];
        let head_len = header.encode(&mut head);
        let mut frame = [0u8; MAX];
        frame[..head_len].copy_from_slice(&head[..head_len]);
        let end = head_len + payload.len();
        frame[head_len..end].copy_from_slice(payload);
        if let Some(key) = header.mask {
            apply_mask(&mut frame[head_len..end], key, 0);
        }
        out.control(opcode, &frame[..end]);
    }
}

/// A received code (already checked as valid on the wire) as a 2-byte close payload.
fn write_close_payload_short(out: &mut [u8; 2], code: CloseCode) -> usize {
    *out = code.as_u16().to_be_bytes();
    2
}

/// A close reason written with `fmt`, cut at [`MAX_CLOSE_REASON_LEN`] bytes on a character
/// boundary, without allocating.
struct Reason {
    buf: [u8; MAX_CLOSE_REASON_LEN],
    len: usize,
}

impl Default for Reason {
    fn default() -> Reason {
        Reason {
            buf: [0; MAX_CLOSE_REASON_LEN],
            len: 0,
        }
    }
}

impl Reason {
    fn as_str(&self) -> &str {
        // Only whole characters are ever copied in.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl fmt::Write for Reason {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let room = MAX_CLOSE_REASON_LEN - self.len;
        let mut take = text.len().min(room);
        while !text.is_char_boundary(take) {
            take -= 1;
        }
        self.buf[self.len..self.len + take].copy_from_slice(&text.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Frames(Vec<(OpCode, Vec<u8>)>);

    impl Output for Frames {
        fn control(&mut self, opcode: OpCode, frame: &[u8]) {
            self.0.push((opcode, frame.to_vec()));
        }
        fn mask_key(&mut self) -> [u8; 4] {
            [1, 2, 3, 4]
        }
    }

    #[test]
    fn reasons_are_cut_at_a_character_boundary() {
        let mut reason = Reason::default();
        write!(reason, "{}", "é".repeat(70)).unwrap();
        assert_eq!(reason.as_str(), "é".repeat(61));
        let mut reason = Reason::default();
        write!(reason, "{}", ProtocolError::InvalidUtf8).unwrap();
        assert_eq!(reason.as_str(), "text message is not valid UTF-8");
    }

    #[test]
    fn the_client_masks_its_control_frames() {
        let mut session = Session::new(SessionConfig::client(), 0);
        let mut out = Frames::default();
        assert!(session.close(CloseCode::NORMAL, "", 0, &mut out));
        // 0x88, MASK | 2, key, then 03 e8 XOR 01 02.
        assert_eq!(
            out.0,
            vec![(OpCode::Close, vec![0x88, 0x82, 1, 2, 3, 4, 0x02, 0xea])]
        );
    }

    #[test]
    fn invalid_codes_close_without_a_code() {
        for code in [
            CloseCode::NO_STATUS,
            CloseCode::ABNORMAL,
            CloseCode::new(999),
        ] {
            let mut session = Session::new(SessionConfig::server(), 0);
            let mut out = Frames::default();
            assert!(session.close(code, "dropped too", 0, &mut out));
            assert_eq!(out.0, vec![(OpCode::Close, vec![0x88, 0x00])]);
            assert_eq!(session.sent_close(), Some(code));
        }
    }

    #[test]
    fn deadlines_saturate_instead_of_wrapping() {
        let config = SessionConfig {
            close_timeout_us: u64::MAX,
            ping_interval_us: Some(u64::MAX - 1),
            ..SessionConfig::server()
        };
        let mut session = Session::new(config, 5);
        assert_eq!(session.poll_timeout(&config), Some(u64::MAX));
        session.close(CloseCode::NORMAL, "", 5, &mut Frames::default());
        assert_eq!(session.poll_timeout(&config), Some(u64::MAX));
        // Timeouts past u32 microseconds (71 minutes) are kept whole.
        let config = SessionConfig {
            close_timeout_us: 3 * 3_600_000_000,
            ..SessionConfig::server()
        };
        let mut session = Session::new(config, 5);
        session.close(CloseCode::NORMAL, "", 5, &mut Frames::default());
        assert_eq!(session.poll_timeout(&config), Some(5 + 3 * 3_600_000_000));
    }
}
