//! TLS 1.3 record protection after the handshake (RFC 8446 §5), in place in the worker's
//! buffers.
//!
//! rustls 0.23's unbuffered API decrypts a record in place but then copies its plaintext into a
//! buffer of its own, and encrypts into a buffer of its own that must be copied again: one
//! allocation and one copy more per record each way than the protocol needs. Once a TLS 1.3
//! handshake is over, rustls hands its traffic secrets over
//! ([`UnbufferedServerConnection::dangerous_into_kernel_connection`], the API made for kernel
//! TLS) and keeps only what needs its key schedule: new secrets on a key update. This module
//! does the rest with ring's AEADs, the same code rustls' ring provider runs:
//! - a received record is opened where it was read, and its content goes straight to the
//!   worker's plaintext buffer;
//! - outgoing frames are queued in the connection's outbox laid out as records
//!   ([`framing`](super::framing)), and sealed there in place;
//! - `KeyUpdate` is answered (§4.6.3), and the sending key is updated before it has protected
//!   as many records as its cipher suite allows (`confidentiality_limit`, as rustls does);
//! - alerts: `close_notify` ends the input, `user_canceled` is ignored, any other is fatal;
//!   a record that fails to open, is too long, or is of a type not allowed after the handshake
//!   is answered by a fatal alert and the connection is dropped.
//!
//! TLS 1.2 connections keep rustls' record layer (their records have another nonce and
//! additional-data layout, and lanes' clients and browsers speak 1.3).

use std::ops::Range;

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use rustls::kernel::KernelConnection;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::{
    AlertDescription, ConnectionTrafficSecrets, ContentType, Error, HandshakeType, InvalidMessage,
    PeerMisbehaved, SupportedCipherSuite,
};

/// Record content types (RFC 8446 §5.1).
const ALERT: u8 = 0x15;
const HANDSHAKE: u8 = 0x16;
const APPLICATION_DATA: u8 = 0x17;
/// The legacy version every TLS 1.3 record carries.
const LEGACY_VERSION: [u8; 2] = [0x03, 0x03];
/// Record header: type, version, length.
pub(crate) const HEADER_LEN: usize = 5;
/// The AEAD tag of all three TLS 1.3 suites lanes speaks.
const TAG_LEN: usize = 16;
/// Most content bytes in a record (2^14, §5.1).
pub(crate) const MAX_FRAGMENT_LEN: usize = 0x4000;
/// Most bytes of a protected record's body (2^14 + 256, §5.2).
const MAX_CIPHERTEXT_LEN: usize = MAX_FRAGMENT_LEN + 0x100;
/// What follows a record's content once protected: the content type byte and the tag.
pub(crate) const TRAILER_LEN: usize = 1 + TAG_LEN;
/// What protecting adds to a record's content: header, content type byte, tag.
pub(crate) const RECORD_OVERHEAD: usize = HEADER_LEN + TRAILER_LEN;
/// The handshake message type of `KeyUpdate` (§4.6.3) and its request values.
const KEY_UPDATE: u8 = 0x18;
/// A whole `KeyUpdate` message: type, 3-byte length, request.
const KEY_UPDATE_LEN: usize = 5;
/// A protected record holding one `KeyUpdate`.
pub(crate) const KEY_UPDATE_RECORD_LEN: usize = RECORD_OVERHEAD + KEY_UPDATE_LEN;
const UPDATE_NOT_REQUESTED: u8 = 0x00;
const UPDATE_REQUESTED: u8 = 0x01;
/// Alert levels and the descriptions read here (§6).
const ALERT_WARNING: u8 = 0x01;
const ALERT_FATAL: u8 = 0x02;
const CLOSE_NOTIFY: u8 = 0x00;
const USER_CANCELED: u8 = 0x5a;

/// A record that broke the protocol: the error, and the alert owed to the peer (none when the
/// peer's own fatal alert ended the connection).
#[derive(Debug)]
pub(crate) struct RecordError {
    pub(crate) error: Error,
    pub(crate) alert: Option<AlertDescription>,
}

impl RecordError {
    fn new(error: Error, alert: AlertDescription) -> RecordError {
        RecordError {
            error,
            alert: Some(alert),
        }
    }
}

/// What [`RecordLayer::open`] found.
#[derive(Debug, Default, Clone)]
pub(crate) struct Opened {
    /// Bytes of `input` taken: every complete record (the rest is the start of the next one).
    pub(crate) consumed: usize,
    /// Where in `input` the application data of those records is, in one piece (empty when
    /// they held none).
    pub(crate) plain: Range<usize>,
    /// The peer sent close_notify: nothing more will come.
    pub(crate) peer_closed: bool,
}

/// One direction's key, its static IV and the next record's sequence number.
struct DirectionKeys {
    key: LessSafeKey,
    iv: [u8; aead::NONCE_LEN],
    seq: u64,
}

impl DirectionKeys {
    fn new((seq, secrets): (u64, ConnectionTrafficSecrets)) -> Result<DirectionKeys, Error> {
        let (algorithm, key, iv) = match &secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (&aead::AES_128_GCM, key, iv),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (&aead::AES_256_GCM, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (&aead::CHACHA20_POLY1305, key, iv)
            }
            _ => {
                return Err(Error::General(
                    "TLS cipher suite without a record layer".into(),
                ));
            }
        };
        let key = UnboundKey::new(algorithm, key.as_ref())
            .map_err(|_| Error::General("TLS traffic key of the wrong length".into()))?;
        let iv: [u8; aead::NONCE_LEN] = iv
            .as_ref()
            .try_into()
            .map_err(|_| Error::General("TLS traffic IV of the wrong length".into()))?;
        Ok(DirectionKeys {
            key: LessSafeKey::new(key),
            iv,
            seq,
        })
    }

    /// The per-record nonce: the IV with the sequence number XORed into its last 8 bytes
    /// (§5.3); the sequence number moves on.
    fn next_nonce(&mut self) -> Result<Nonce, Error> {
        let mut nonce = self.iv;
        for (n, s) in nonce[aead::NONCE_LEN - 8..]
            .iter_mut()
            .zip(self.seq.to_be_bytes())
        {
            *n ^= s;
        }
        self.seq = self.seq.checked_add(1).ok_or(Error::EncryptError)?;
        Ok(Nonce::assume_unique_for_key(nonce))
    }

    /// Seals a record of `content_type` holding `content` into the front of `out` (at least
    /// `content.len() + RECORD_OVERHEAD` long); returns the record's length.
    fn seal(&mut self, content_type: u8, content: &[u8], out: &mut [u8]) -> Result<usize, Error> {
        let len = content.len() + RECORD_OVERHEAD;
        out[HEADER_LEN..HEADER_LEN + content.len()].copy_from_slice(content);
        self.seal_in_place(content_type, &mut out[..len])?;
        Ok(len)
    }

    /// Seals the record laid out in `record` in place: [`HEADER_LEN`] bytes of room for the
    /// header, the content (at most 16 KiB), then [`TRAILER_LEN`] bytes of room for the
    /// content type and the tag.
    fn seal_in_place(&mut self, content_type: u8, record: &mut [u8]) -> Result<(), Error> {
        debug_assert!(record.len() >= RECORD_OVERHEAD);
        debug_assert!(record.len() - RECORD_OVERHEAD <= MAX_FRAGMENT_LEN);
        let header = record_header(APPLICATION_DATA, record.len() - HEADER_LEN);
        record[..HEADER_LEN].copy_from_slice(&header);
        let inner_end = record.len() - TAG_LEN;
        record[inner_end - 1] = content_type;
        let nonce = self.next_nonce()?;
        let tag = self
            .key
            .seal_in_place_separate_tag(
                nonce,
                Aad::from(header),
                &mut record[HEADER_LEN..inner_end],
            )
            .map_err(|_| Error::EncryptError)?;
        record[inner_end..].copy_from_slice(tag.as_ref());
        Ok(())
    }
}

fn record_header(content_type: u8, body_len: usize) -> [u8; HEADER_LEN] {
    let len = (body_len as u16).to_be_bytes();
    [
        content_type,
        LEGACY_VERSION[0],
        LEGACY_VERSION[1],
        len[0],
        len[1],
    ]
}

/// The record protection of one TLS 1.3 connection after its handshake.
pub(crate) struct RecordLayer {
    /// rustls' key schedule, for key updates.
    kernel: KernelConnection<ServerConnectionData>,
    rx: DirectionKeys,
    tx: DirectionKeys,
    /// Records the sending key may protect before it is updated.
    tx_limit: u64,
    /// The peer asked for a key update that is not sent yet.
    update_owed: bool,
    /// close_notify came: later records are not read.
    peer_closed: bool,
}

impl RecordLayer {
    /// Takes over from rustls once `conn`'s TLS 1.3 handshake is over and nothing of it is left
    /// to send. Fails when the configuration does not allow extracting secrets, or the
    /// connection is not TLS 1.3 (the caller checks both first: `conn` is consumed).
    pub(crate) fn take_over(conn: UnbufferedServerConnection) -> Result<RecordLayer, Error> {
        let (secrets, kernel) = conn.dangerous_into_kernel_connection()?;
        let tx_limit = match kernel.negotiated_cipher_suite() {
            SupportedCipherSuite::Tls13(suite) => suite.common.confidentiality_limit,
            _ => return Err(Error::General("own record layer is TLS 1.3 only".into())),
        };
        Ok(RecordLayer {
            kernel,
            rx: DirectionKeys::new(secrets.rx)?,
            tx: DirectionKeys::new(secrets.tx)?,
            tx_limit,
            update_owed: false,
            peer_closed: false,
        })
    }

    /// Opens the complete records at the front of `input` in place, and gathers the
    /// application data in them into one piece of `input` ([`Opened::plain`]): the first
    /// record's stays where it was decrypted, the next ones' are moved down behind it.
    /// Handshake messages (only `KeyUpdate` is allowed) and alerts are handled; a key update
    /// the peer asked for is owed until [`seal_owed`](Self::seal_owed).
    pub(crate) fn open(&mut self, input: &mut [u8]) -> Result<Opened, RecordError> {
        let mut opened = Opened::default();
        while !self.peer_closed {
            let rest = &mut input[opened.consumed..];
            if rest.len() < HEADER_LEN {
                break;
            }
            let header: [u8; HEADER_LEN] = [rest[0], rest[1], rest[2], rest[3], rest[4]];
            let body_len = usize::from(u16::from_be_bytes([header[3], header[4]]));
            if header[0] != APPLICATION_DATA {
                // Unprotected records (change_cipher_spec included) end with the handshake.
                let error = Error::InappropriateMessage {
                    expect_types: vec![ContentType::ApplicationData],
                    got_type: ContentType::from(header[0]),
                };
                return Err(RecordError::new(error, AlertDescription::UnexpectedMessage));
            }
            if body_len > MAX_CIPHERTEXT_LEN {
                return Err(RecordError::new(
                    Error::PeerSentOversizedRecord,
                    AlertDescription::RecordOverflow,
                ));
            }
            if rest.len() < HEADER_LEN + body_len {
                break;
            }
            let body = &mut rest[HEADER_LEN..HEADER_LEN + body_len];
            let nonce = self
                .rx
                .next_nonce()
                .map_err(|error| RecordError::new(error, AlertDescription::InternalError))?;
            let inner = self
                .rx
                .key
                .open_in_place(nonce, Aad::from(header), body)
                .map_err(|_| {
                    RecordError::new(Error::DecryptError, AlertDescription::BadRecordMac)
                })?;
            // The content type is the last non-zero byte; zeros after it are padding (§5.4).
            let Some(type_at) = inner.iter().rposition(|&b| b != 0) else {
                return Err(RecordError::new(
                    Error::PeerMisbehaved(PeerMisbehaved::IllegalTlsInnerPlaintext),
                    AlertDescription::UnexpectedMessage,
                ));
            };
            if type_at > MAX_FRAGMENT_LEN {
                return Err(RecordError::new(
                    Error::PeerSentOversizedRecord,
                    AlertDescription::RecordOverflow,
                ));
            }
            let content_type = inner[type_at];
            let start = opened.consumed + HEADER_LEN;
            let content = start..start + type_at;
            match content_type {
                // Kept where it is when it is the first, else moved down behind the ones before
                // (over their headers and tags): the plaintext ends up in one piece.
                APPLICATION_DATA if opened.plain.is_empty() => opened.plain = content,
                APPLICATION_DATA => {
                    input.copy_within(content.clone(), opened.plain.end);
                    opened.plain.end += content.len();
                }
                ALERT => self.on_alert(&input[content])?,
                HANDSHAKE => self.on_handshake(&input[content])?,
                _ => {
                    return Err(RecordError::new(
                        Error::InvalidMessage(InvalidMessage::InvalidContentType),
                        AlertDescription::UnexpectedMessage,
                    ));
                }
            }
            opened.consumed += HEADER_LEN + body_len;
        }
        opened.peer_closed = self.peer_closed;
        if self.peer_closed {
            opened.consumed = input.len();
        }
        Ok(opened)
    }

    fn on_alert(&mut self, content: &[u8]) -> Result<(), RecordError> {
        let &[level, description] = content else {
            return Err(RecordError::new(
                Error::InvalidMessage(InvalidMessage::MessageTooShort),
                AlertDescription::DecodeError,
            ));
        };
        match description {
            CLOSE_NOTIFY => self.peer_closed = true,
            // Followed by close_notify (§6.1).
            USER_CANCELED if level == ALERT_WARNING => {}
            _ => {
                return Err(RecordError {
                    error: Error::AlertReceived(AlertDescription::from(description)),
                    alert: None,
                });
            }
        }
        Ok(())
    }

    /// Handshake messages after the handshake: only `KeyUpdate` comes from a client (lanes
    /// asks for no post-handshake authentication), each whole in its record.
    fn on_handshake(&mut self, mut content: &[u8]) -> Result<(), RecordError> {
        if content.is_empty() {
            return Err(RecordError::new(
                Error::InvalidMessage(InvalidMessage::MessageTooShort),
                AlertDescription::DecodeError,
            ));
        }
        while let [kind, a, b, c, rest @ ..] = content {
            let len = u32::from_be_bytes([0, *a, *b, *c]) as usize;
            if *kind != KEY_UPDATE {
                let error = Error::InappropriateHandshakeMessage {
                    expect_types: vec![HandshakeType::KeyUpdate],
                    got_type: HandshakeType::from(*kind),
                };
                return Err(RecordError::new(error, AlertDescription::UnexpectedMessage));
            }
            if len != 1 || rest.is_empty() {
                return Err(RecordError::new(
                    Error::InvalidMessage(InvalidMessage::InvalidKeyUpdate),
                    AlertDescription::DecodeError,
                ));
            }
            match rest[0] {
                UPDATE_NOT_REQUESTED => {}
                UPDATE_REQUESTED => self.update_owed = true,
                _ => {
                    return Err(RecordError::new(
                        Error::InvalidMessage(InvalidMessage::InvalidKeyUpdate),
                        AlertDescription::IllegalParameter,
                    ));
                }
            }
            // Records after this one are protected with the peer's next key.
            let next = self
                .kernel
                .update_rx_secret()
                .map_err(|error| RecordError {
                    error,
                    alert: Some(AlertDescription::InternalError),
                })?;
            self.rx = DirectionKeys::new(next).map_err(|error| RecordError {
                error,
                alert: Some(AlertDescription::InternalError),
            })?;
            content = &rest[1..];
        }
        if !content.is_empty() {
            // A handshake message split over records: legal, but no client does it for the
            // five bytes of a KeyUpdate.
            return Err(RecordError::new(
                Error::InvalidMessage(InvalidMessage::MessageTooShort),
                AlertDescription::DecodeError,
            ));
        }
        Ok(())
    }

    /// Seals the application data record laid out in `record` in place (see
    /// [`RecordFraming`](super::framing::RecordFraming)): header room, content, trailer room.
    /// The caller updates the sending key first when [`tx_update_due`](Self::tx_update_due).
    pub(crate) fn seal_record(&mut self, record: &mut [u8]) -> Result<(), Error> {
        self.tx.seal_in_place(APPLICATION_DATA, record)
    }

    /// Whether the sending key has protected as many records as its cipher suite allows: the
    /// next record must follow a [`key_update_record`](Self::key_update_record).
    pub(crate) fn tx_update_due(&self) -> bool {
        self.tx.seq >= self.tx_limit
    }

    /// A `KeyUpdate` (not asking for the peer's) sealed with the current sending key, which
    /// then moves on: records sealed after it must follow it on the wire.
    pub(crate) fn key_update_record(&mut self) -> Result<[u8; KEY_UPDATE_RECORD_LEN], Error> {
        let mut record = [0; KEY_UPDATE_RECORD_LEN];
        self.update_tx(UPDATE_NOT_REQUESTED, &mut record)?;
        Ok(record)
    }

    /// Whether the peer asked for a key update that [`seal_owed`](Self::seal_owed) has not
    /// sent yet.
    pub(crate) fn owes_update(&self) -> bool {
        self.update_owed
    }

    /// Appends the key update the peer asked for, if one is owed, to `out`, behind the records
    /// sealed with the current key (those sealed after it must follow it on the wire).
    pub(crate) fn seal_owed(&mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        if std::mem::take(&mut self.update_owed) {
            out.extend_from_slice(&self.key_update_record()?);
        }
        Ok(())
    }

    /// Seals a `KeyUpdate` with the current key into `out`, then moves to the next sending
    /// key (§4.6.3); returns the record's length.
    fn update_tx(&mut self, request: u8, out: &mut [u8]) -> Result<usize, Error> {
        let n = self
            .tx
            .seal(HANDSHAKE, &[KEY_UPDATE, 0, 0, 1, request], out)?;
        self.tx = DirectionKeys::new(self.kernel.update_tx_secret()?)?;
        Ok(n)
    }

    /// Appends an alert record to `wire`: close_notify (a warning) or a fatal one.
    pub(crate) fn seal_alert(&mut self, description: AlertDescription, wire: &mut Vec<u8>) {
        let code = u8::from(description);
        let level = if code == CLOSE_NOTIFY {
            ALERT_WARNING
        } else {
            ALERT_FATAL
        };
        let at = wire.len();
        wire.resize(at + RECORD_OVERHEAD + 2, 0);
        match self.tx.seal(ALERT, &[level, code], &mut wire[at..]) {
            Ok(n) => wire.truncate(at + n),
            Err(_) => wire.truncate(at),
        }
    }

    #[cfg(test)]
    pub(crate) fn set_tx_limit(&mut self, limit: u64) {
        self.tx_limit = limit;
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::sync::Arc;

    use rustls::{ClientConfig, ClientConnection, RootCertStore};

    use super::*;
    use crate::config::TlsConfig;
    use crate::outbox::Outbox;
    use crate::pool::BufferPool;
    use crate::tls::{Received, RecordFraming, TlsBroken, TlsLayer};

    /// A rustls client (the reference) and a server-side [`TlsLayer`], joined in memory.
    struct Pair {
        client: ClientConnection,
        server: TlsLayer,
        pool: BufferPool,
        /// Plaintext the server received.
        received: Vec<u8>,
        /// The server's backlog laid out as records (lanes' own record layer), and its framing.
        backlog: Vec<u8>,
        framing: RecordFraming,
    }

    impl Pair {
        fn new(versions: &[&'static rustls::SupportedProtocolVersion]) -> Pair {
            let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
            let server = TlsConfig::from_pem(
                made.cert.pem().as_bytes(),
                made.signing_key.serialize_pem().as_bytes(),
            )
            .unwrap();
            let mut roots = RootCertStore::empty();
            roots.add(made.cert.der().clone()).unwrap();
            let client = ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
            let mut client =
                ClientConnection::new(Arc::new(client), "localhost".try_into().unwrap()).unwrap();
            client.set_buffer_limit(None);
            let mut pair = Pair {
                client,
                server: TlsLayer::new(Arc::clone(server.rustls_config())).unwrap(),
                pool: BufferPool::new(),
                received: Vec::new(),
                backlog: Vec::new(),
                framing: RecordFraming::new(),
            };
            while pair.client.is_handshaking() || pair.server.is_handshaking() {
                pair.send_to_server(usize::MAX).unwrap();
                pair.send_to_client(&[]).unwrap();
            }
            // The client's Finished (and the tickets it is answered with) settle the server.
            pair.send_to_server(usize::MAX).unwrap();
            pair.send_to_client(&[]).unwrap();
            pair
        }

        /// Hands what the client has to send to the server, `step` bytes a read (each read put
        /// behind the carried start of a record, as the worker does).
        fn send_to_server(&mut self, step: usize) -> Result<Received, TlsBroken> {
            let mut bytes = Vec::new();
            while self.client.wants_write() {
                self.client.write_tls(&mut bytes).unwrap();
            }
            self.server_reads(&bytes, step)
        }

        fn server_reads(&mut self, bytes: &[u8], step: usize) -> Result<Received, TlsBroken> {
            let mut received = Received::default();
            for read in bytes.chunks(step.max(1)) {
                let carried = self.server.carried_len();
                let mut buf = vec![0; carried + read.len()];
                self.server.restore_carry(&mut buf, &mut self.pool);
                buf[carried..].copy_from_slice(read);
                let got = self
                    .server
                    .receive(&mut buf, &mut self.received, &mut self.pool)?;
                self.received.extend_from_slice(&buf[got.in_place.clone()]);
                if let Some(records) = self.server.own_records()
                    && records.owes_update()
                {
                    self.framing
                        .seal_owed_update(&mut self.backlog, records)
                        .unwrap();
                }
                received.handshake_done |= got.handshake_done;
                received.peer_closed |= got.peer_closed;
            }
            Ok(received)
        }

        /// Queues `plain` on the server in pieces of `piece` bytes (own record layer).
        fn queue(&mut self, plain: &[u8], piece: usize) {
            for piece in plain.chunks(piece.max(1)) {
                self.framing.append(&mut self.backlog, piece);
            }
        }

        /// Sends the server's queued records, then `plain` sealed, to the client; returns the
        /// plaintext the client read.
        fn send_to_client(&mut self, plain: &[u8]) -> Result<Vec<u8>, rustls::Error> {
            self.send_to_client_in(plain, usize::MAX)
        }

        /// [`send_to_client`](Self::send_to_client), `plain` queued in pieces of `piece`.
        fn send_to_client_in(
            &mut self,
            plain: &[u8],
            piece: usize,
        ) -> Result<Vec<u8>, rustls::Error> {
            let mut wire = self.server.wire().to_vec();
            self.server.consume(wire.len(), &mut self.pool);
            if self.server.own_records().is_some() {
                self.queue(plain, piece);
                let records = self.server.own_records().unwrap();
                self.framing.seal(&mut self.backlog, records, usize::MAX)?;
                assert_eq!(self.framing.sealed_end(), self.backlog.len());
                wire.extend_from_slice(&self.backlog);
                self.backlog.clear();
                self.framing.reset();
            } else if !plain.is_empty() {
                let mut sealed = Vec::new();
                let n = self.server.seal(plain, &mut sealed)?;
                wire.extend_from_slice(&sealed[..n]);
            }
            self.client_reads(&wire)
        }

        /// The client reads `wire`; returns the plaintext it got.
        fn client_reads(&mut self, wire: &[u8]) -> Result<Vec<u8>, rustls::Error> {
            let mut from = wire;
            let mut read = Vec::new();
            while !from.is_empty() {
                self.client.read_tls(&mut from).unwrap();
                self.client.process_new_packets()?;
                match self.client.reader().read_to_end(&mut read) {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("{e}"),
                }
            }
            Ok(read)
        }

        /// A round trip of `len` bytes each way, the client's records cut into reads of `step`.
        fn round_trip(&mut self, len: usize, step: usize) {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            self.client.writer().write_all(&data).unwrap();
            self.received.clear();
            self.send_to_server(step).unwrap();
            assert_eq!(self.received, data, "client to server, {len} B");
            // Whole records read: no buffer held between reads but one with bytes to send (the
            // answer to a key update).
            assert!(
                !self.server.holds_a_buffer() || self.server.wire_len() > 0,
                "an empty buffer held after a read"
            );
            assert_eq!(
                self.send_to_client(&data).unwrap(),
                data,
                "server to client, {len} B"
            );
            assert!(
                !self.server.holds_a_buffer(),
                "idle again, it holds no buffer"
            );
        }
    }

    const TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

    #[test]
    fn tls13_records_are_lanes_own_after_the_handshake_and_round_trip_at_every_size() {
        let mut pair = Pair::new(TLS13);
        assert!(pair.server.own_records().is_some());
        for len in [0, 1, 125, 16_383, 16_384, 16_385, 70_000] {
            for step in [usize::MAX, 4096, 7, 1] {
                if step == 1 && len > 20_000 {
                    continue;
                }
                pair.round_trip(len, step);
            }
        }
    }

    #[test]
    fn application_data_stays_where_it_was_decrypted() {
        let mut pair = Pair::new(TLS13);
        // Three records in one read: the first's plaintext stays in place, right after its
        // header; the others' join it there.
        let data: Vec<u8> = (0..2 * MAX_FRAGMENT_LEN + 10)
            .map(|i| (i % 253) as u8)
            .collect();
        pair.client.writer().write_all(&data).unwrap();
        let mut bytes = Vec::new();
        while pair.client.wants_write() {
            pair.client.write_tls(&mut bytes).unwrap();
        }
        let mut plain = Vec::new();
        let got = pair
            .server
            .receive(&mut bytes, &mut plain, &mut pair.pool)
            .unwrap();
        assert!(plain.is_empty(), "nothing copied out");
        assert_eq!(got.in_place, HEADER_LEN..HEADER_LEN + data.len());
        assert_eq!(&bytes[got.in_place], &data[..]);
    }

    #[test]
    fn tls12_keeps_rustls_records() {
        let mut pair = Pair::new(&[&rustls::version::TLS12]);
        assert!(pair.server.own_records().is_none());
        pair.round_trip(70_000, 1000);
    }

    #[test]
    fn a_key_update_the_client_asks_for_moves_both_keys() {
        let mut pair = Pair::new(TLS13);
        pair.round_trip(100, usize::MAX);
        for _ in 0..3 {
            // rustls asks for the server's update too (update_requested).
            pair.client.refresh_traffic_keys().unwrap();
            pair.round_trip(100, 3);
        }
    }

    #[test]
    fn the_sending_key_is_updated_before_its_limit() {
        let mut pair = Pair::new(TLS13);
        let records = pair.server.own_records().unwrap();
        records.set_tx_limit(2);
        // Five full records and an open one: the key updates go in between, the records after
        // them move along.
        let data: Vec<u8> = (0..5 * MAX_FRAGMENT_LEN + 10).map(|i| i as u8).collect();
        assert_eq!(pair.send_to_client(&data).unwrap(), data);
        assert_eq!(pair.send_to_client(b"after").unwrap(), b"after");
        pair.round_trip(10, usize::MAX);
    }

    #[test]
    fn frames_are_sealed_where_they_were_queued() {
        let mut pair = Pair::new(TLS13);
        for len in [1usize, 125, 16_383, 16_384, 16_385, 40_000] {
            let data: Vec<u8> = (0..len).map(|i| (i % 249) as u8).collect();
            for piece in [1, 7, 1000, 16_383, 16_384, usize::MAX] {
                if piece == 1 && len > 20_000 {
                    continue;
                }
                pair.queue(&data, piece);
                // Room for the header of every record and the trailer of every full one: the
                // content lies where it will be sealed.
                let records = len.div_ceil(MAX_FRAGMENT_LEN);
                assert_eq!(
                    pair.backlog.len(),
                    len + records * HEADER_LEN + (records - 1) * TRAILER_LEN
                );
                for (i, chunk) in data.chunks(MAX_FRAGMENT_LEN).enumerate() {
                    let at = i * (MAX_FRAGMENT_LEN + RECORD_OVERHEAD) + HEADER_LEN;
                    assert_eq!(&pair.backlog[at..at + chunk.len()], chunk);
                }
                let layer = pair.server.own_records().unwrap();
                pair.framing
                    .seal(&mut pair.backlog, layer, usize::MAX)
                    .unwrap();
                assert_eq!(pair.backlog.len(), len + records * RECORD_OVERHEAD);
                let wire = std::mem::take(&mut pair.backlog);
                pair.framing.reset();
                assert_eq!(
                    pair.client_reads(&wire).unwrap(),
                    data,
                    "{len} B in {piece}"
                );
            }
        }
    }

    #[test]
    fn sealing_in_batches_keeps_the_order() {
        let mut pair = Pair::new(TLS13);
        let data: Vec<u8> = (0..100_000).map(|i| (i % 241) as u8).collect();
        pair.queue(&data, 3000);
        let mut wire = Vec::new();
        let layer = pair.server.own_records().unwrap();
        // A budget of one byte seals one record a call.
        for sealed in 1..=7 {
            pair.framing.seal(&mut pair.backlog, layer, 1).unwrap();
            assert_eq!(
                pair.framing.sealed_end(),
                (sealed * (MAX_FRAGMENT_LEN + RECORD_OVERHEAD)).min(pair.backlog.len())
            );
        }
        wire.extend_from_slice(&pair.backlog);
        assert_eq!(pair.client_reads(&wire).unwrap(), data);
    }

    #[test]
    fn a_key_update_asked_for_goes_between_the_records_queued_before_and_after() {
        let mut pair = Pair::new(TLS13);
        let before: Vec<u8> = (0..20_000).map(|i| i as u8).collect();
        pair.queue(&before, usize::MAX);
        // The client's KeyUpdate (asking for ours) arrives while those are queued, unsealed.
        pair.client.refresh_traffic_keys().unwrap();
        pair.client.writer().write_all(b"ping").unwrap();
        pair.received.clear();
        pair.send_to_server(usize::MAX).unwrap();
        assert_eq!(pair.received, b"ping");
        assert!(!pair.server.own_records().unwrap().owes_update());
        assert_eq!(
            pair.send_to_client(b"after the update").unwrap(),
            [&before[..], b"after the update"].concat()
        );
        pair.round_trip(100, usize::MAX);
    }

    #[test]
    fn an_outbox_written_in_parts_seals_in_place_and_compacts() {
        let mut pair = Pair::new(TLS13);
        let mut outbox = Outbox::new();
        let mut pool = BufferPool::new();
        outbox.frame_records(&mut pool);
        let data: Vec<u8> = (0..300_000).map(|i| (i % 239) as u8).collect();
        let mut expected = Vec::new();
        let mut got = Vec::new();
        for (round, part) in data.chunks(60_000).enumerate() {
            outbox.push_raw(part, &mut pool);
            expected.extend_from_slice(part);
            // The socket takes 50,000 bytes of what is sealed each time (the written part is
            // dropped from the front once it is most of the buffer).
            let layer = pair.server.own_records().unwrap();
            outbox.seal(layer, 64 * 1024).unwrap();
            let sealed = outbox.sealed();
            let n = sealed.len().min(50_000);
            let wire = sealed[..n].to_vec();
            outbox.consume(n, &mut pool);
            got.extend(pair.client_reads(&wire).unwrap());
            assert!(outbox.buffered_len() > 0, "round {round}");
        }
        loop {
            let layer = pair.server.own_records().unwrap();
            outbox.seal(layer, 64 * 1024).unwrap();
            let wire = outbox.sealed().to_vec();
            if wire.is_empty() {
                break;
            }
            outbox.consume(wire.len(), &mut pool);
            got.extend(pair.client_reads(&wire).unwrap());
        }
        assert_eq!(outbox.buffered_len(), 0);
        assert_eq!(got, expected);
        // Empty again: its buffer went back, and the next frames start a new record.
        outbox.push_raw(b"again", &mut pool);
        let layer = pair.server.own_records().unwrap();
        outbox.seal(layer, 64 * 1024).unwrap();
        let wire = outbox.sealed().to_vec();
        assert_eq!(wire.len(), 5 + RECORD_OVERHEAD);
        assert_eq!(pair.client_reads(&wire).unwrap(), b"again");
    }

    /// The server refuses `bytes` as a record, with `alert` (which the client reads).
    fn refused(bytes: &[u8], alert: AlertDescription) {
        let mut pair = Pair::new(TLS13);
        let broken = pair.server_reads(bytes, usize::MAX).unwrap_err();
        assert!(broken.handshake.is_none());
        let mut from = pair.server.wire();
        pair.client.read_tls(&mut from).unwrap();
        assert_eq!(
            pair.client.process_new_packets().unwrap_err(),
            Error::AlertReceived(alert),
            "after {:?}",
            broken.error
        );
    }

    #[test]
    fn a_tampered_record_is_answered_with_bad_record_mac() {
        let mut pair = Pair::new(TLS13);
        pair.client.writer().write_all(b"hello").unwrap();
        let mut record = Vec::new();
        pair.client.write_tls(&mut record).unwrap();
        record[HEADER_LEN + 2] ^= 0x80;
        let broken = pair.server_reads(&record, usize::MAX).unwrap_err();
        assert_eq!(broken.error, Error::DecryptError);
        let mut from = pair.server.wire();
        pair.client.read_tls(&mut from).unwrap();
        assert_eq!(
            pair.client.process_new_packets().unwrap_err(),
            Error::AlertReceived(AlertDescription::BadRecordMac)
        );
        assert!(pair.received.is_empty());
    }

    #[test]
    fn an_oversized_record_is_refused_before_it_arrives() {
        let len = (MAX_CIPHERTEXT_LEN + 1) as u16;
        let [hi, lo] = len.to_be_bytes();
        refused(
            &[APPLICATION_DATA, 3, 3, hi, lo],
            AlertDescription::RecordOverflow,
        );
    }

    #[test]
    fn an_unprotected_record_after_the_handshake_is_unexpected() {
        refused(&[0x14, 3, 3, 0, 1, 1], AlertDescription::UnexpectedMessage);
        refused(
            &[ALERT, 3, 3, 0, 2, 2, 10],
            AlertDescription::UnexpectedMessage,
        );
    }

    #[test]
    fn close_notify_ends_the_input_and_is_answered_in_kind() {
        let mut pair = Pair::new(TLS13);
        pair.client.writer().write_all(b"last").unwrap();
        pair.client.send_close_notify();
        let received = pair.send_to_server(usize::MAX).unwrap();
        assert!(received.peer_closed);
        assert_eq!(pair.received, b"last");
        pair.server.close_notify(&mut pair.pool);
        let mut from = pair.server.wire();
        pair.client.read_tls(&mut from).unwrap();
        let state = pair.client.process_new_packets().unwrap();
        assert!(state.peer_has_closed());
    }

    #[test]
    fn the_nonce_is_the_iv_xor_the_sequence_number() {
        let iv = [0xa5; 12];
        let secrets = ConnectionTrafficSecrets::Aes256Gcm {
            key: [7; 32].into(),
            iv: iv.into(),
        };
        let mut keys = DirectionKeys::new((0x0102_0304_0506_0708, secrets)).unwrap();
        let nonce = keys.next_nonce().unwrap();
        let mut expected = iv;
        for (i, b) in [1u8, 2, 3, 4, 5, 6, 7, 8].iter().enumerate() {
            expected[4 + i] ^= b;
        }
        assert_eq!(nonce.as_ref(), &expected);
        assert_eq!(keys.seq, 0x0102_0304_0506_0709);
        keys.seq = u64::MAX;
        assert!(
            keys.next_nonce().is_err(),
            "the sequence number never wraps"
        );
    }
}
