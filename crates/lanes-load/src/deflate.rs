//! permessage-deflate (RFC 7692) on the client side of the echo mode: the offer for each
//! `--deflate` setting, the parameters read from the server's answer (checked by lanes-proto's
//! [`accept_answer`]), and the compressors of one thread's connections.
//!
//! Compression itself is lanes-proto's ([`Deflater`]); this module decides who owns the
//! compressors and keeps the scratch buffers, so that a message costs no allocation once the
//! buffers have grown to the message size. Where our context does not carry over from one
//! message to the next (`client_no_context_takeover`), one compressor serves all of a
//! thread's connections; otherwise each connection has its own. Received messages are
//! inflated by each connection's session (lanes-proto's `Receiver`), with the thread's
//! `InflateScratch`.

use std::fmt::{self, Write as _};

use lanes_proto::OpCode;
use lanes_proto::deflate::{
    AnswerError, ClientOffer, DeflateConfig, DeflateParams, Deflater, EXTENSION_NAME, SendAs,
    accept_answer,
};
use lanes_proto::frame::Role;
use lanes_proto::handshake::ExtensionOffer;

use crate::args::Deflate;
use crate::client::{push_compressed_frame, push_frame};

/// The offer for `mode`; `None` for [`Deflate::Off`]. Written as the
/// `Sec-WebSocket-Extensions` value with `to_string()`.
pub fn offer(mode: Deflate) -> Option<ClientOffer> {
    match mode {
        Deflate::Off => None,
        Deflate::Takeover => Some(ClientOffer {
            client_max_window_bits: true,
            ..ClientOffer::default()
        }),
        Deflate::NoTakeover => Some(ClientOffer {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            ..ClientOffer::default()
        }),
    }
}

/// The parameters agreed with a server that answered the offer of `mode` with the extensions
/// `accepted` (from its checked 101 response): `Ok(None)` for [`Deflate::Off`], an error when
/// the server declined permessage-deflate or answered against RFC 7692 §7.1 (checked by
/// lanes-proto's [`accept_answer`]).
pub fn params_from_answer(
    mode: Deflate,
    accepted: &[ExtensionOffer<'_>],
) -> Result<Option<DeflateParams>, String> {
    let Some(offer) = offer(mode) else {
        return Ok(None);
    };
    accept_answer(&offer, accepted).map(Some).map_err(|e| {
        let answer = accepted
            .iter()
            .find(|e| e.name.eq_ignore_ascii_case(EXTENSION_NAME));
        match (e, answer) {
            (AnswerError::Declined, _) | (_, None) => format!(
                "the server declined permessage-deflate (no {EXTENSION_NAME} in its \
                 Sec-WebSocket-Extensions answer): is compression enabled on it? Without \
                 --deflate the load goes uncompressed"
            ),
            (AnswerError::UnknownParameter(i), Some(answer)) => format!(
                "the server's answer `{}` {e}: {}",
                Answer(answer),
                answer.params.get(i).map_or("", |p| p.name)
            ),
            (e, Some(answer)) => format!("the server's answer `{}` {e}", Answer(answer)),
        }
    })
}

/// An accepted extension written back as a header value, for error messages.
struct Answer<'a, 'b>(&'a ExtensionOffer<'b>);

impl fmt::Display for Answer<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name)?;
        for param in &self.0.params {
            write!(f, "; {}", param.name)?;
            if let Some(value) = &param.value {
                write!(f, "={value}")?;
            }
        }
        Ok(())
    }
}

/// The agreed parameters in a few words, for the summary.
pub fn describe(params: &DeflateParams) -> String {
    let mut text = String::new();
    let takeover = |no: bool| {
        if no {
            "no context takeover"
        } else {
            "context takeover"
        }
    };
    let _ = write!(
        text,
        "server: {}, {}-bit window; client: {}, {}-bit window",
        takeover(params.server_no_context_takeover),
        params.server_max_window_bits,
        takeover(params.client_no_context_takeover),
        params.client_max_window_bits
    );
    text
}

/// One message as it was queued: its size before and after compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Payload bytes before compression.
    pub payload_len: usize,
    /// Payload bytes in the frame (compressed, or as they were when sent uncompressed).
    pub wire_len: usize,
    /// Whether it went compressed (RSV1).
    pub compressed: bool,
}

/// One connection's own compression state: a compressor where our context carries over
/// (`None` where the thread's shared one serves). What is received is inflated by the
/// connection's session (lanes-proto's `Receiver::enable_deflate`).
#[derive(Debug)]
pub struct ConnCodec {
    deflater: Option<Deflater>,
}

/// permessage-deflate for what one thread's connections send: the agreed parameters, the
/// compressor they share where no context carries over, and the scratch buffers.
#[derive(Debug)]
pub struct Codec {
    params: DeflateParams,
    config: DeflateConfig,
    shared_deflater: Option<Deflater>,
    /// A message before compression.
    plain: Vec<u8>,
    /// A message after compression.
    compressed: Vec<u8>,
}

impl Codec {
    /// The state for connections that agreed on `params`, compressing every message (level
    /// and memLevel as lanes' defaults: 1 and 8; no size threshold).
    pub fn new(params: DeflateParams) -> Codec {
        let config = DeflateConfig {
            enabled: true,
            min_compress_len: 0,
            ..DeflateConfig::default()
        };
        Codec {
            shared_deflater: params
                .client_no_context_takeover
                .then(|| params.deflater(Role::Client, &config)),
            params,
            config,
            plain: Vec::new(),
            compressed: Vec::new(),
        }
    }

    /// The parameters agreed.
    pub fn params(&self) -> &DeflateParams {
        &self.params
    }

    /// The state of a new connection that agreed on the same parameters.
    pub fn conn(&self) -> ConnCodec {
        ConnCodec {
            deflater: (!self.params.client_no_context_takeover)
                .then(|| self.params.deflater(Role::Client, &self.config)),
        }
    }

    /// Appends to `out` one masked frame with the message that `fill` writes, compressed by
    /// `conn`'s compressor (or the thread's) and sent with RSV1, or as it is should the
    /// compressor decline (it does only without context takeover, when compressing would not
    /// make the message shorter).
    pub fn push_message(
        &mut self,
        conn: &mut ConnCodec,
        out: &mut Vec<u8>,
        opcode: OpCode,
        key: [u8; 4],
        fill: impl FnOnce(&mut Vec<u8>),
    ) -> Sent {
        self.plain.clear();
        fill(&mut self.plain);
        self.compressed.clear();
        let send_as = match conn.deflater.as_mut().or(self.shared_deflater.as_mut()) {
            Some(deflater) => deflater.compress(&self.plain, &mut self.compressed),
            None => SendAs::Uncompressed,
        };
        let payload_len = self.plain.len();
        match send_as {
            SendAs::Compressed => {
                push_compressed_frame(out, opcode, &self.compressed, key);
                Sent {
                    payload_len,
                    wire_len: self.compressed.len(),
                    compressed: true,
                }
            }
            SendAs::Uncompressed => {
                let plain = &self.plain;
                push_frame(out, opcode, payload_len, key, |o| {
                    o.extend_from_slice(plain)
                });
                Sent {
                    payload_len,
                    wire_len: payload_len,
                    compressed: false,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use lanes_proto::deflate::InflateScratch;
    use lanes_proto::frame::{FrameHeader, RSV1};
    use lanes_proto::handshake::ExtensionParam;
    use lanes_proto::session::{Connection, Event, Output, SessionConfig, encode_frame};

    use super::*;

    /// `permessage-deflate; a; b=1` as the handshake parser gives it (no quoting needed here).
    fn answer(text: &str) -> Vec<ExtensionOffer<'_>> {
        let mut parts = text.split(';').map(str::trim);
        let name = parts.next().unwrap_or_default();
        let params = parts
            .map(|p| match p.split_once('=') {
                Some((name, value)) => ExtensionParam {
                    name,
                    value: Some(Cow::Borrowed(value)),
                },
                None => ExtensionParam {
                    name: p,
                    value: None,
                },
            })
            .collect();
        vec![ExtensionOffer { name, params }]
    }

    fn params(server_no: bool, client_no: bool, server_bits: u8, client_bits: u8) -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: server_no,
            client_no_context_takeover: client_no,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
        }
    }

    #[test]
    fn answers_give_the_agreed_parameters() {
        use Deflate::{NoTakeover, Takeover};
        for (mode, text, expected) in [
            (Takeover, "permessage-deflate", params(false, false, 15, 15)),
            (
                Takeover,
                "permessage-deflate; client_max_window_bits=10",
                params(false, false, 15, 10),
            ),
            (
                Takeover,
                "Permessage-Deflate; SERVER_MAX_WINDOW_BITS=9; server_no_context_takeover",
                params(true, false, 9, 15),
            ),
            (
                Takeover,
                "permessage-deflate; client_no_context_takeover; client_max_window_bits=8",
                params(false, true, 15, 8),
            ),
            (
                NoTakeover,
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
                params(true, true, 15, 15),
            ),
            // We offered client_no_context_takeover: it holds even if not repeated.
            (
                NoTakeover,
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=12",
                params(true, true, 12, 15),
            ),
        ] {
            assert_eq!(
                params_from_answer(mode, &answer(text)),
                Ok(Some(expected)),
                "{text}"
            );
        }
        assert_eq!(params_from_answer(Deflate::Off, &[]), Ok(None));
    }

    #[test]
    fn a_declined_offer_is_a_clear_error() {
        for mode in [Deflate::Takeover, Deflate::NoTakeover] {
            let error = params_from_answer(mode, &[]).unwrap_err();
            assert!(error.contains("declined permessage-deflate"), "{error}");
            let other = answer("x-webkit-deflate-frame");
            let error = params_from_answer(mode, &other).unwrap_err();
            assert!(error.contains("declined permessage-deflate"), "{error}");
        }
    }

    #[test]
    fn answers_against_rfc_7692_are_refused() {
        use Deflate::{NoTakeover, Takeover};
        for (mode, text, why) in [
            (Takeover, "permessage-deflate; foo", "does not define: foo"),
            (
                Takeover,
                "permessage-deflate; server_no_context_takeover=1",
                "a value",
            ),
            (
                Takeover,
                "permessage-deflate; client_no_context_takeover=x",
                "a value",
            ),
            (
                Takeover,
                "permessage-deflate; server_max_window_bits",
                "not 8..=15",
            ),
            (
                Takeover,
                "permessage-deflate; server_max_window_bits=16",
                "not 8..=15",
            ),
            (
                Takeover,
                "permessage-deflate; server_max_window_bits=09",
                "not 8..=15",
            ),
            (
                Takeover,
                "permessage-deflate; client_max_window_bits",
                "not 8..=15",
            ),
            (
                Takeover,
                "permessage-deflate; client_max_window_bits=7",
                "not 8..=15",
            ),
            (
                Takeover,
                "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
                "repeats",
            ),
            (
                NoTakeover,
                "permessage-deflate; server_no_context_takeover; client_max_window_bits=10",
                "not offered",
            ),
            (
                NoTakeover,
                "permessage-deflate; client_no_context_takeover",
                "does not confirm server_no_context_takeover",
            ),
        ] {
            let error = params_from_answer(mode, &answer(text)).unwrap_err();
            assert!(error.contains(why), "{text}: {error}");
            assert!(error.contains("permessage-deflate"), "{text}: {error}");
        }
    }

    #[test]
    fn offers_are_valid_headers_the_negotiation_accepts() {
        for mode in [Deflate::Takeover, Deflate::NoTakeover] {
            let text = offer(mode).unwrap().to_string();
            let offers = answer(&text);
            let config = DeflateConfig {
                enabled: true,
                ..DeflateConfig::default()
            };
            let agreed = lanes_proto::deflate::negotiate(&offers, &config).unwrap();
            // The server's answer, read back, gives what the server agreed to.
            assert_eq!(
                params_from_answer(mode, &answer(&agreed.response)),
                Ok(Some(agreed.params)),
                "{text}"
            );
        }
        assert_eq!(offer(Deflate::Off), None);
    }

    /// Reads the frames in `wire` (client to server) as a server session would.
    fn server_reads(
        wire: &[u8],
        server: &mut Connection,
        scratch: &mut InflateScratch,
    ) -> Vec<Vec<u8>> {
        let mut data = wire.to_vec();
        let (mut at, mut messages) = (0, Vec::new());
        while at < data.len() {
            let step = server
                .handle_bytes(&mut data[at..], scratch, 0, &mut NoControl)
                .unwrap();
            at += step.used;
            match step.event {
                Some(Event::Text(text)) => messages.push(text.as_bytes().to_vec()),
                Some(Event::Binary(bytes)) => messages.push(bytes.to_vec()),
                _ => {}
            }
        }
        messages
    }

    struct NoControl;

    impl Output for NoControl {
        fn control(&mut self, opcode: OpCode, _frame: &[u8]) {
            panic!("unexpected {opcode:?}");
        }
    }

    #[test]
    fn messages_round_trip_with_a_server() {
        let server_config = DeflateConfig {
            enabled: true,
            min_compress_len: 0,
            ..DeflateConfig::default()
        };
        for agreed in [params(false, false, 15, 15), params(true, true, 15, 15)] {
            let mut codec = Codec::new(agreed);
            let mut conns = [codec.conn(), codec.conn()];
            let session = |role| {
                let mut conn = Connection::new(SessionConfig::new(role), 0);
                conn.enable_deflate(&agreed);
                conn
            };
            let mut servers = [session(Role::Server), session(Role::Server)];
            let mut clients = [session(Role::Client), session(Role::Client)];
            let mut scratch = InflateScratch::new(1 << 20);
            let mut server_deflaters = [
                agreed.deflater(Role::Server, &server_config),
                agreed.deflater(Role::Server, &server_config),
            ];
            // Interleaved connections, so a shared state that kept context would show.
            for round in 0..5u8 {
                for (i, conn) in conns.iter_mut().enumerate() {
                    let message: Vec<u8> = (0..1000u32)
                        .map(|j| b'a' + ((j + u32::from(round) + i as u32) % 26) as u8)
                        .collect();
                    let mut wire = Vec::new();
                    let sent =
                        codec.push_message(conn, &mut wire, OpCode::Text, [1, 2, 3, 4], |o| {
                            o.extend_from_slice(&message)
                        });
                    assert!(sent.compressed);
                    assert_eq!(sent.payload_len, message.len());
                    assert!(sent.wire_len < message.len() / 4, "{sent:?}");
                    assert_eq!(
                        server_reads(&wire, &mut servers[i], &mut scratch),
                        vec![message.clone()]
                    );
                    let mut echo = Vec::new();
                    assert_eq!(
                        server_deflaters[i].compress(&message, &mut echo),
                        SendAs::Compressed
                    );
                    let mut frame = Vec::new();
                    let header = FrameHeader::new(true, OpCode::Text, 0).with_rsv(RSV1);
                    encode_frame(&mut frame, Role::Server, header, &echo, [0; 4]);
                    let frame_len = frame.len();
                    let step = clients[i]
                        .handle_bytes(&mut frame, &mut scratch, 0, &mut NoControl)
                        .unwrap();
                    assert_eq!(step.used, frame_len);
                    assert_eq!(
                        step.event,
                        Some(Event::Text(std::str::from_utf8(&message).unwrap()))
                    );
                }
            }
        }
    }

    #[test]
    fn describe_says_who_takes_context_over() {
        assert_eq!(
            describe(&params(true, false, 15, 10)),
            "server: no context takeover, 15-bit window; client: context takeover, 10-bit window"
        );
    }
}
