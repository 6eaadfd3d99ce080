//! TLS on one connection: rustls' unbuffered server connection, kept in the connection's slot,
//! between the socket and the WebSocket code.
//!
//! Incoming: the worker reads into its one receive buffer; [`TlsLayer::receive`] has rustls
//! decrypt the records there and appends their plaintext to the worker's plaintext buffer,
//! which then goes through the same in-place frame parsing as a plain connection's bytes (so a
//! message still reaches `on_message` borrowed). Outgoing: frames are queued in the
//! connection's outbox during the iteration and encrypted right before its one `write`.
//!
//! Records: rustls does the handshake. Once a TLS 1.3 handshake is over, lanes' own record
//! layer ([`records`]) takes over with the traffic secrets rustls hands over: records are
//! opened in place in the receive buffer and sealed in place in the outbox, where the frames
//! were queued laid out as records ([`framing`]), with no buffer of rustls' in between
//! (rustls 0.23's unbuffered API copies each record's plaintext into a buffer of its own both
//! ways). TLS 1.2 connections, and configurations that do not allow extracting secrets
//! ([`TlsConfig::from_rustls`]), keep rustls' record layer: [`TlsLayer::seal`] encrypts a
//! batch of the outbox's plaintext into the worker's sealing buffer.
//!
//! Memory: an idle connection holds its TLS state (after a TLS 1.3 handshake: two AEAD keys and
//! rustls' key schedule) and no buffer: the carried part of an incomplete record and the
//! outgoing bytes are taken from the worker's pool only while there are some.

mod framing;
mod records;

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rustls::client::UnbufferedClientConnection;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};
use rustls::{AlertDescription, Error, PeerIncompatible, ProtocolVersion};

pub(crate) use framing::RecordFraming;
pub(crate) use records::RecordLayer;

use crate::config::TlsConfig;
use crate::pool::BufferPool;
use crate::stats::TlsFailure;

/// The TLS configuration new connections get, replaced at run time by
/// [`ServerHandle::reload_tls`](crate::ServerHandle::reload_tls). A worker reads the version
/// (one atomic load) when it accepts, and takes the lock only when it changed.
#[derive(Default)]
pub(crate) struct TlsCell {
    version: AtomicU64,
    current: Mutex<Option<TlsConfig>>,
}

impl TlsCell {
    /// Makes `config` the one for new handshakes (keeping the running ticket keys, see
    /// [`TlsConfig::succeeding`]).
    pub(crate) fn set(&self, config: TlsConfig) {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let config = match current.as_ref() {
            Some(running) => config.succeeding(running),
            None => config,
        };
        *current = Some(config);
        self.version.fetch_add(1, Ordering::Release);
    }

    /// Whether a configuration was ever set (the port speaks TLS).
    pub(crate) fn is_on(&self) -> bool {
        self.version.load(Ordering::Acquire) != 0
    }

    /// The configuration of `version`'s successor, when `version` is not the latest.
    pub(crate) fn newer_than(&self, version: u64) -> Option<(u64, Arc<rustls::ServerConfig>)> {
        if self.version.load(Ordering::Acquire) == version {
            return None;
        }
        let current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let config = current.as_ref()?;
        Some((
            self.version.load(Ordering::Acquire),
            Arc::clone(config.rustls_config()),
        ))
    }
}

/// The reason for a rustls error on `first` (the first bytes the connection received).
fn failure_of(error: &Error, first: &[u8]) -> TlsFailure {
    if looks_like_http(first) {
        return TlsFailure::PlainHttp;
    }
    if offers_only_old_versions(first) {
        // rustls refuses such a hello for what it lacks (the signature_algorithms extension of
        // TLS 1.2) before it looks at the version.
        return TlsFailure::ProtocolVersion;
    }
    match error {
        Error::PeerIncompatible(
            PeerIncompatible::Tls12NotOffered
            | PeerIncompatible::Tls12NotOfferedOrEnabled
            | PeerIncompatible::SupportedVersionsExtensionRequired,
        ) => TlsFailure::ProtocolVersion,
        Error::InvalidMessage(_) => TlsFailure::Malformed,
        _ => TlsFailure::Handshake,
    }
}

/// Whether a connection's first bytes are a ClientHello whose highest version is below TLS 1.2
/// (record type 0x16, handshake type 1, client_version at offset 9). A TLS 1.3 hello says 1.2
/// there too (its real versions are in an extension), so this never mislabels one.
fn offers_only_old_versions(first: &[u8]) -> bool {
    first.len() >= 11 && first[0] == 0x16 && first[5] == 0x01 && first[9..11] < [0x03, 0x03][..]
}

/// Whether a connection's first bytes are an HTTP request line (a TLS record begins with a
/// content type byte, 20 to 24, never a letter).
fn looks_like_http(first: &[u8]) -> bool {
    let method_len = first.iter().take_while(|b| b.is_ascii_uppercase()).count();
    method_len >= 3 && first.get(method_len) == Some(&b' ')
}

/// A TLS error on a connection: a failed handshake (with its reason), or a failure after it
/// (the connection is dropped like one reset by the peer).
#[derive(Debug)]
pub(crate) struct TlsBroken {
    /// Set while the handshake was still going on.
    pub(crate) handshake: Option<TlsFailure>,
    pub(crate) error: Error,
}

/// What a [`TlsLayer::receive`] did besides the plaintext it appended to `plain`.
#[derive(Debug, Default, Clone)]
pub(crate) struct Received {
    /// The handshake completed in this call.
    pub(crate) handshake_done: bool,
    /// The peer sent close_notify: nothing more will come.
    pub(crate) peer_closed: bool,
    /// Plaintext left in place in the input (lanes' own record layer), in one piece; empty
    /// when the plaintext went to `plain` (rustls) or there was none.
    pub(crate) in_place: Range<usize>,
    /// lanes' own record layer took over in this call: from now on the connection's outgoing
    /// records are laid out and sealed in its outbox ([`RecordFraming`]).
    pub(crate) own_records: bool,
}

/// rustls' unbuffered connection in either role: the server's (accepted connections) or the
/// client's (outbound ones), driven by the same code.
trait Unbuffered {
    type Data;
    fn process<'c, 'i>(&'c mut self, input: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data>;
}

impl Unbuffered for UnbufferedServerConnection {
    type Data = rustls::server::ServerConnectionData;
    fn process<'c, 'i>(&'c mut self, input: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(input)
    }
}

impl Unbuffered for UnbufferedClientConnection {
    type Data = rustls::client::ClientConnectionData;
    fn process<'c, 'i>(&'c mut self, input: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(input)
    }
}

/// Who protects a connection's records.
enum Link {
    /// rustls: during the handshake, and for the life of a TLS 1.2 connection.
    Rustls(Box<UnbufferedServerConnection>),
    /// rustls' client, for the life of an outbound connection (lanes' own record layer takes
    /// over on accepted connections only).
    Client(Box<UnbufferedClientConnection>),
    /// lanes' own record layer, after a TLS 1.3 handshake.
    Own(Box<RecordLayer>),
    /// The take-over from rustls failed: the connection is being dropped.
    Gone,
}

/// TLS state of one connection.
pub(crate) struct TlsLayer {
    link: Link,
    /// Whether the configuration lets rustls hand the traffic secrets over.
    extractable: bool,
    /// Whether the handshake resumed a session; set when it completes.
    resumed: Option<bool>,
    /// The start of a record (or of a handshake message spread over records) that has not all
    /// arrived: put back in front of the next read.
    carry: Option<Vec<u8>>,
    /// Encrypted bytes to write: `wire[written..]`; `None` when there are none.
    wire: Option<Vec<u8>>,
    written: usize,
    /// Nothing has been received yet (a plain request is told by its first bytes).
    fresh: bool,
    /// The handshake's failure was counted (so that removing the connection does not count
    /// it again).
    pub(crate) failure_counted: bool,
}

impl fmt::Debug for TlsLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsLayer")
            .field("handshaking", &self.is_handshaking())
            .field("own_records", &matches!(self.link, Link::Own(_)))
            .field("carry", &self.carried_len())
            .field("wire", &self.wire_len())
            .finish()
    }
}

impl TlsLayer {
    /// The TLS side of a new connection.
    pub(crate) fn new(config: Arc<rustls::ServerConfig>) -> Result<TlsLayer, Error> {
        Ok(TlsLayer {
            extractable: config.enable_secret_extraction,
            link: Link::Rustls(Box::new(UnbufferedServerConnection::new(config)?)),
            resumed: None,
            carry: None,
            written: 0,
            wire: None,
            fresh: true,
            failure_counted: false,
        })
    }

    /// The TLS side of an outbound connection to `server_name` (its SNI and the name its
    /// certificate must carry).
    pub(crate) fn client(
        config: Arc<rustls::ClientConfig>,
        server_name: rustls::pki_types::ServerName<'static>,
    ) -> Result<TlsLayer, Error> {
        Ok(TlsLayer {
            extractable: false,
            link: Link::Client(Box::new(UnbufferedClientConnection::new(
                config,
                server_name,
            )?)),
            resumed: None,
            carry: None,
            written: 0,
            wire: None,
            fresh: false,
            failure_counted: false,
        })
    }

    /// Starts an outbound connection's handshake: its ClientHello is queued to be written.
    pub(crate) fn start(&mut self, pool: &mut BufferPool) -> Result<(), Error> {
        let mut plain = Vec::new();
        self.receive(&mut [], &mut plain, pool)
            .map(|_| ())
            .map_err(|broken| broken.error)
    }

    /// Whether the TLS handshake is still going on.
    pub(crate) fn is_handshaking(&self) -> bool {
        match &self.link {
            Link::Rustls(conn) => conn.is_handshaking(),
            Link::Client(conn) => conn.is_handshaking(),
            Link::Own(_) | Link::Gone => false,
        }
    }

    /// Whether the handshake resumed a session (`None` while it is going on).
    pub(crate) fn resumed(&self) -> Option<bool> {
        self.resumed
    }

    /// Whether the connection holds a buffer of the pool (an idle one must not).
    #[cfg(test)]
    fn holds_a_buffer(&self) -> bool {
        self.carry.is_some() || self.wire.is_some()
    }

    /// Lanes' own record layer, when it protects the records (TLS 1.3 after the handshake).
    /// lanes' own record layer, once it took over from rustls (TLS 1.3 after the handshake);
    /// its outgoing records are sealed in the connection's outbox.
    pub(crate) fn own_records(&mut self) -> Option<&mut RecordLayer> {
        match &mut self.link {
            Link::Own(records) => Some(records),
            _ => None,
        }
    }

    /// Bytes of an incomplete record held between reads.
    pub(crate) fn carried_len(&self) -> usize {
        self.carry.as_ref().map_or(0, Vec::len)
    }

    /// Encrypted bytes waiting to be written.
    pub(crate) fn wire_len(&self) -> usize {
        self.wire.as_ref().map_or(0, |w| w.len() - self.written)
    }

    /// The encrypted bytes to write next.
    pub(crate) fn wire(&self) -> &[u8] {
        match &self.wire {
            Some(wire) => &wire[self.written..],
            None => &[],
        }
    }

    /// Records that `n` encrypted bytes were written; the buffer goes back to the pool when
    /// all were.
    pub(crate) fn consume(&mut self, n: usize, pool: &mut BufferPool) {
        self.written += n;
        if let Some(wire) = &mut self.wire
            && self.written >= wire.len()
        {
            if let Some(wire) = self.wire.take() {
                pool.put(wire);
            }
            self.written = 0;
        }
    }

    /// Moves the carried bytes to the front of `buf` (the worker's receive buffer, at least as
    /// long as anything carried); returns how many there were.
    pub(crate) fn restore_carry(&mut self, buf: &mut [u8], pool: &mut BufferPool) -> usize {
        let Some(carry) = self.carry.take() else {
            return 0;
        };
        let n = carry.len();
        buf[..n].copy_from_slice(&carry);
        pool.put(carry);
        n
    }

    /// Runs the received bytes `input` through the record layer: handshake messages are
    /// answered (the answers queued to be written), application data is decrypted (in place
    /// and left there, [`Received::in_place`], by lanes' own record layer; appended to `plain`
    /// by rustls), and what is left of an incomplete record is carried to the next call.
    pub(crate) fn receive(
        &mut self,
        input: &mut [u8],
        plain: &mut Vec<u8>,
        pool: &mut BufferPool,
    ) -> Result<Received, TlsBroken> {
        let conn = match &mut self.link {
            Link::Rustls(conn) => conn,
            Link::Client(conn) => {
                let driven = drive(conn.as_mut(), input, plain, &mut self.wire, false, pool)?;
                if driven.received.handshake_done {
                    self.resumed = conn
                        .handshake_kind()
                        .map(|kind| kind == rustls::HandshakeKind::Resumed);
                }
                self.carry_from(&input[driven.offset..], pool);
                return Ok(driven.received);
            }
            Link::Own(records) => {
                return match records.open(input) {
                    Ok(opened) => {
                        self.carry_from(&input[opened.consumed..], pool);
                        Ok(Received {
                            peer_closed: opened.peer_closed,
                            in_place: opened.plain,
                            ..Received::default()
                        })
                    }
                    Err(broken) => {
                        if let Some(alert) = broken.alert {
                            records.seal_alert(alert, self.wire.get_or_insert_with(|| pool.take()));
                        }
                        Err(TlsBroken {
                            handshake: None,
                            error: broken.error,
                        })
                    }
                };
            }
            Link::Gone => {
                return Err(TlsBroken {
                    handshake: None,
                    error: Error::General("TLS connection without a record layer".into()),
                });
            }
        };
        let first = std::mem::take(&mut self.fresh);
        let driven = drive(conn.as_mut(), input, plain, &mut self.wire, first, pool)?;
        let (mut received, offset) = (driven.received, driven.offset);
        if received.handshake_done {
            self.resumed = conn
                .handshake_kind()
                .map(|kind| kind == rustls::HandshakeKind::Resumed);
        }
        // A TLS 1.3 connection with nothing of its handshake left to send goes over to lanes'
        // own record layer; an incomplete record carried from here is opened by it.
        let take_over = driven.writable
            && !received.peer_closed
            && self.extractable
            && conn.protocol_version() == Some(ProtocolVersion::TLSv1_3);
        self.carry_from(&input[offset..], pool);
        if take_over {
            let Link::Rustls(conn) = std::mem::replace(&mut self.link, Link::Gone) else {
                unreachable!("the link was rustls' a moment ago");
            };
            match RecordLayer::take_over(*conn) {
                Ok(records) => {
                    self.link = Link::Own(Box::new(records));
                    received.own_records = true;
                }
                Err(error) => {
                    return Err(TlsBroken {
                        handshake: None,
                        error,
                    });
                }
            }
        }
        Ok(received)
    }

    /// Keeps `rest`, the start of a record that has not all arrived, for the next read.
    fn carry_from(&mut self, rest: &[u8], pool: &mut BufferPool) {
        if !rest.is_empty() {
            self.carry
                .get_or_insert_with(|| pool.take())
                .extend_from_slice(rest);
        }
    }

    /// Encrypts `plain` (a batch of frames) with rustls' record layer into `out` from its
    /// start, in records of at most 16 KiB; returns the encrypted length. `out` is the worker's
    /// sealing buffer: its length is room already initialized, grown (once) when a batch needs
    /// more. Once lanes' own record layer took over, records are sealed in the outbox instead
    /// ([`RecordFraming`]) and this fails.
    pub(crate) fn seal(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<usize, Error> {
        if plain.is_empty() {
            return Ok(0);
        }
        match &mut self.link {
            Link::Rustls(conn) => encrypt(conn.as_mut(), plain, out),
            Link::Client(conn) => encrypt(conn.as_mut(), plain, out),
            Link::Own(_) | Link::Gone => Err(Error::EncryptError),
        }
    }

    /// Keeps encrypted bytes the socket did not take (or that follow ones still waiting), to
    /// be written first next time.
    pub(crate) fn keep_wire(&mut self, bytes: &[u8], pool: &mut BufferPool) {
        if !bytes.is_empty() {
            self.wire
                .get_or_insert_with(|| pool.take())
                .extend_from_slice(bytes);
        }
    }

    /// Queues a close_notify alert (once the handshake is done; before it, nothing).
    pub(crate) fn close_notify(&mut self, pool: &mut BufferPool) {
        match &mut self.link {
            Link::Rustls(conn) => queue_close_notify(conn.as_mut(), &mut self.wire, pool),
            Link::Client(conn) => queue_close_notify(conn.as_mut(), &mut self.wire, pool),
            Link::Own(records) => {
                let wire = self.wire.get_or_insert_with(|| pool.take());
                records.seal_alert(AlertDescription::CloseNotify, wire);
            }
            Link::Gone => {}
        }
    }

    /// Gives the buffers back (the connection is going away).
    pub(crate) fn release(&mut self, pool: &mut BufferPool) {
        if let Some(carry) = self.carry.take() {
            pool.put(carry);
        }
        if let Some(wire) = self.wire.take() {
            pool.put(wire);
        }
        self.written = 0;
    }
}

/// What [`drive`] made of one input.
struct Driven {
    received: Received,
    /// How much of the input the records processed took.
    offset: usize,
    /// rustls is ready to send application data (its handshake has nothing left to send).
    writable: bool,
}

/// Runs `input` through rustls' records (either role): handshake messages answered (queued in
/// `wire`), application data appended to `plain`. `first`: these are the connection's first
/// bytes (a failed handshake is told by them).
fn drive<C>(
    conn: &mut C,
    input: &mut [u8],
    plain: &mut Vec<u8>,
    wire: &mut Option<Vec<u8>>,
    first: bool,
    pool: &mut BufferPool,
) -> Result<Driven, TlsBroken>
where
    C: Unbuffered
        + std::ops::Deref<
            Target = rustls::unbuffered::UnbufferedConnectionCommon<<C as Unbuffered>::Data>,
        >,
{
    let was_handshaking = conn.is_handshaking();
    let fail = |error: Error, input: &[u8]| TlsBroken {
        handshake: was_handshaking.then(|| {
            let head = if first {
                &input[..input.len().min(16)]
            } else {
                &[]
            };
            failure_of(&error, head)
        }),
        error,
    };
    let mut received = Received::default();
    let mut offset = 0;
    let mut writable = false;
    loop {
        let status = conn.process(&mut input[offset..]);
        let discard = status.discard;
        let state = match status.state {
            Ok(state) => state,
            Err(error) => {
                let broken = fail(error, input);
                queue_alert(conn, wire, pool);
                return Err(broken);
            }
        };
        let more = match state {
            ConnectionState::ReadTraffic(mut traffic) => {
                while let Some(record) = traffic.next_record() {
                    match record {
                        Ok(record) => plain.extend_from_slice(record.payload),
                        Err(error) => return Err(fail(error, input)),
                    }
                }
                true
            }
            ConnectionState::EncodeTlsData(mut data) => {
                let wire = wire.get_or_insert_with(|| pool.take());
                let encoded = append_with(wire, |out| data.encode(out).map_err(encode_room));
                debug_assert!(encoded, "a handshake record encoded twice");
                true
            }
            // What was encoded is queued; it goes out with the connection's next write.
            ConnectionState::TransmitTlsData(data) => {
                data.done();
                true
            }
            ConnectionState::PeerClosed => {
                received.peer_closed = true;
                true
            }
            // Everything complete in `input` is processed.
            ConnectionState::WriteTraffic(_) => {
                writable = true;
                false
            }
            ConnectionState::BlockedHandshake | ConnectionState::Closed => false,
            // Early data is never accepted (the configuration's max_early_data_size is 0).
            _ => false,
        };
        offset += discard;
        if !more {
            break;
        }
    }
    received.handshake_done = was_handshaking && !conn.is_handshaking();
    Ok(Driven {
        received,
        offset,
        writable,
    })
}

/// Encrypts `plain` with rustls' record layer into `out` from its start; the encrypted length.
fn encrypt<C: Unbuffered>(conn: &mut C, plain: &[u8], out: &mut Vec<u8>) -> Result<usize, Error> {
    let status = conn.process(&mut []);
    let mut traffic = match status.state {
        Ok(ConnectionState::WriteTraffic(traffic)) => traffic,
        Ok(_) => return Err(Error::General("TLS output while not ready to send".into())),
        Err(error) => return Err(error),
    };
    loop {
        match traffic.encrypt(plain, out).map_err(encrypt_room) {
            Ok(n) => return Ok(n),
            Err(Some(required)) => out.resize(required, 0),
            Err(None) => return Err(Error::EncryptError),
        }
    }
}

/// Queues a close_notify through rustls' record layer (once the handshake is done).
fn queue_close_notify<C: Unbuffered>(
    conn: &mut C,
    wire: &mut Option<Vec<u8>>,
    pool: &mut BufferPool,
) {
    let status = conn.process(&mut []);
    if let Ok(ConnectionState::WriteTraffic(mut traffic)) = status.state {
        let wire = wire.get_or_insert_with(|| pool.take());
        append_with(wire, |out| {
            traffic.queue_close_notify(out).map_err(encrypt_room)
        });
    }
}

/// After a rustls error: queues the alert rustls prepared for the peer, if any, in `wire` (the
/// caller writes it once before dropping the connection).
fn queue_alert<C: Unbuffered>(conn: &mut C, wire: &mut Option<Vec<u8>>, pool: &mut BufferPool) {
    let status = conn.process(&mut []);
    if let Ok(ConnectionState::EncodeTlsData(mut data)) = status.state {
        let wire = wire.get_or_insert_with(|| pool.take());
        append_with(wire, |out| data.encode(out).map_err(encode_room));
    }
}

/// The room an encode asked for (`None`: it failed otherwise).
fn encode_room(error: EncodeError) -> Option<usize> {
    match error {
        EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Some(required_size)
        }
        EncodeError::AlreadyEncoded => None,
    }
}

/// The room an encryption asked for (`None`: it failed otherwise, e.g. the keys are used up).
fn encrypt_room(error: EncryptError) -> Option<usize> {
    match error {
        EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Some(required_size)
        }
        _ => None,
    }
}

/// Appends to `buf` what `write` puts in the spare room it is given, growing the room to the
/// size `write` asks for (`Err(Some(size))`) and trying again. False when `write` failed for
/// another reason (`Err(None)`).
fn append_with(
    buf: &mut Vec<u8>,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, Option<usize>>,
) -> bool {
    let start = buf.len();
    let mut room = 0;
    loop {
        buf.resize(start + room, 0);
        match write(&mut buf[start..]) {
            Ok(n) => {
                buf.truncate(start + n);
                return true;
            }
            Err(Some(required)) if required > room => room = required,
            Err(_) => {
                buf.truncate(start);
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_line_is_told_from_a_record() {
        assert!(looks_like_http(b"GET / HTTP/1.1\r\n"));
        assert!(looks_like_http(b"OPTIONS * HTTP/1.1\r\n"));
        assert!(!looks_like_http(&[0x16, 0x03, 0x01, 0x02, 0x00]));
        assert!(!looks_like_http(b"GE"));
        assert!(!looks_like_http(b"get / HTTP/1.1"));
    }

    #[test]
    fn an_old_client_hello_is_told_by_its_version() {
        let hello = |major, minor| {
            [
                0x16, 0x03, 0x01, 0x00, 0x50, 0x01, 0x00, 0x00, 0x4c, major, minor,
            ]
        };
        assert!(offers_only_old_versions(&hello(0x03, 0x02))); // TLS 1.1
        assert!(offers_only_old_versions(&hello(0x03, 0x01))); // TLS 1.0
        assert!(!offers_only_old_versions(&hello(0x03, 0x03))); // 1.2, and every 1.3 hello
        assert!(!offers_only_old_versions(&hello(0x03, 0x02)[..10]));
    }

    #[test]
    fn append_with_grows_to_the_size_asked_for() {
        let mut buf = b"ab".to_vec();
        let ok = append_with(&mut buf, |out| {
            if out.len() < 5 {
                return Err(Some(5));
            }
            out[..3].copy_from_slice(b"cde");
            Ok(3)
        });
        assert!(ok);
        assert_eq!(buf, b"abcde");
        assert!(!append_with(&mut buf, |_| Err(None)));
        assert_eq!(buf, b"abcde");
    }
}
