//! permessage-deflate (RFC 7692) on the client side of the echo mode: the offer for each
//! `--deflate` setting, the parameters read from the server's answer, and the compressors and
//! decompressors of one thread's connections.
//!
//! Compression itself is lanes-proto's ([`Deflater`], [`Inflater`]); this module decides who
//! owns them and keeps the scratch buffers, so that a message costs no allocation once the
//! buffers have grown to the message size. Where no context carries over from one message
//! to the next (`client_no_context_takeover` for what we send, `server_no_context_takeover`
//! for what we receive), one compressor or decompressor serves all of a thread's connections;
//! otherwise each connection has its own.

use std::fmt::{self, Write as _};

use lanes_proto::deflate::{
    DeflateConfig, DeflateParams, Deflater, EXTENSION_NAME, Inflater, MAX_WINDOW_BITS,
    MIN_WINDOW_BITS, SendAs,
};
use lanes_proto::frame::Role;
use lanes_proto::handshake::ExtensionOffer;
use lanes_proto::{OpCode, ProtocolError};

use crate::args::Deflate;
use crate::client::{push_compressed_frame, push_frame};

const SERVER_NO_CONTEXT_TAKEOVER: &str = "server_no_context_takeover";
const CLIENT_NO_CONTEXT_TAKEOVER: &str = "client_no_context_takeover";
const SERVER_MAX_WINDOW_BITS: &str = "server_max_window_bits";
const CLIENT_MAX_WINDOW_BITS: &str = "client_max_window_bits";

/// The `Sec-WebSocket-Extensions` value offered for `mode`; `None` for [`Deflate::Off`].
pub fn offer(mode: Deflate) -> Option<&'static str> {
    match mode {
        Deflate::Off => None,
        Deflate::Takeover => Some("permessage-deflate; client_max_window_bits"),
        Deflate::NoTakeover => {
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        }
    }
}

/// The parameters agreed with a server that answered the offer of `mode` with the extensions
/// `accepted` (from its checked 101 response): `Ok(None)` for [`Deflate::Off`], an error when
/// the server declined permessage-deflate or answered against RFC 7692 §7.1.
///
/// What the answer may hold: `server_no_context_takeover` and `client_no_context_takeover`
/// without a value, `server_max_window_bits=N`, and `client_max_window_bits=N` only when it
/// was offered (`takeover`), each at most once, N in 8..=15 without a leading zero. Answering
/// the `no-takeover` offer without `server_no_context_takeover` is an error (§7.1.1.1: the
/// server must confirm it); `client_no_context_takeover` applies to our messages whether or
/// not the server repeats it, since we offered it.
pub fn params_from_answer(
    mode: Deflate,
    accepted: &[ExtensionOffer<'_>],
) -> Result<Option<DeflateParams>, String> {
    if mode == Deflate::Off {
        return Ok(None);
    }
    let Some(answer) = accepted
        .iter()
        .find(|e| e.name.eq_ignore_ascii_case(EXTENSION_NAME))
    else {
        return Err(format!(
            "the server declined permessage-deflate (no {EXTENSION_NAME} in its \
             Sec-WebSocket-Extensions answer): is compression enabled on it? Without \
             --deflate the load goes uncompressed"
        ));
    };
    let bad = |why: &str| format!("the server's answer `{}` {why}", Answer(answer));
    let mut params = DeflateParams {
        client_no_context_takeover: mode == Deflate::NoTakeover,
        ..DeflateParams::default()
    };
    let mut seen = [false; 4];
    for param in &answer.params {
        let value = param.value.as_deref();
        let name = param.name;
        let slot = if name.eq_ignore_ascii_case(SERVER_NO_CONTEXT_TAKEOVER) {
            if value.is_some() {
                return Err(bad("gives server_no_context_takeover a value"));
            }
            params.server_no_context_takeover = true;
            0
        } else if name.eq_ignore_ascii_case(CLIENT_NO_CONTEXT_TAKEOVER) {
            if value.is_some() {
                return Err(bad("gives client_no_context_takeover a value"));
            }
            params.client_no_context_takeover = true;
            1
        } else if name.eq_ignore_ascii_case(SERVER_MAX_WINDOW_BITS) {
            params.server_max_window_bits = value
                .and_then(window_bits)
                .ok_or_else(|| bad("has a server_max_window_bits that is not 8..=15"))?;
            2
        } else if name.eq_ignore_ascii_case(CLIENT_MAX_WINDOW_BITS) {
            if mode != Deflate::Takeover {
                return Err(bad("has client_max_window_bits, which was not offered"));
            }
            params.client_max_window_bits = value
                .and_then(window_bits)
                .ok_or_else(|| bad("has a client_max_window_bits that is not 8..=15"))?;
            3
        } else {
            return Err(bad(&format!(
                "has a parameter RFC 7692 does not define: {name}"
            )));
        };
        if std::mem::replace(&mut seen[slot], true) {
            return Err(bad(&format!("repeats {name}")));
        }
    }
    if mode == Deflate::NoTakeover && !params.server_no_context_takeover {
        return Err(bad(
            "does not confirm server_no_context_takeover, which was offered (RFC 7692 §7.1.1.1)",
        ));
    }
    Ok(Some(params))
}

/// A window size as RFC 7692 §7.1.2 writes it: decimal digits, no leading zero, 8..=15.
fn window_bits(value: &str) -> Option<u8> {
    if value.starts_with('0') || value.len() > 2 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bits = value.parse().ok()?;
    (MIN_WINDOW_BITS..=MAX_WINDOW_BITS)
        .contains(&bits)
        .then_some(bits)
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

/// One connection's own compression state: a compressor where our context carries over, a
/// decompressor where the server's does (`None` where the thread's shared one serves).
#[derive(Debug)]
pub struct ConnCodec {
    deflater: Option<Deflater>,
    inflater: Option<Inflater>,
}

/// permessage-deflate for one thread's connections: the agreed parameters, the compressor
/// and decompressor they share where no context carries over, and the scratch buffers.
#[derive(Debug)]
pub struct Codec {
    params: DeflateParams,
    config: DeflateConfig,
    max_message_len: u64,
    shared_deflater: Option<Deflater>,
    shared_inflater: Option<Inflater>,
    /// A message before compression.
    plain: Vec<u8>,
    /// A message after compression.
    compressed: Vec<u8>,
    /// A received message, inflated.
    inflated: Vec<u8>,
}

impl Codec {
    /// The state for connections that agreed on `params`, compressing every message (level
    /// and memLevel as lanes' defaults: 1 and 8; no size threshold) and refusing any received
    /// message that inflates past `max_message_len` bytes.
    pub fn new(params: DeflateParams, max_message_len: u64) -> Codec {
        let config = DeflateConfig {
            enabled: true,
            min_compress_len: 0,
            ..DeflateConfig::default()
        };
        Codec {
            shared_deflater: params
                .client_no_context_takeover
                .then(|| params.deflater(Role::Client, &config)),
            shared_inflater: params
                .server_no_context_takeover
                .then(|| params.inflater(Role::Client, max_message_len)),
            params,
            config,
            max_message_len,
            plain: Vec::new(),
            compressed: Vec::new(),
            inflated: Vec::new(),
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
            inflater: (!self.params.server_no_context_takeover)
                .then(|| self.params.inflater(Role::Client, self.max_message_len)),
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

    /// Inflates the (unmasked) payload of a whole compressed message received on `conn`; the
    /// message is valid until the next call.
    pub fn inflate(
        &mut self,
        conn: &mut ConnCodec,
        payload: &[u8],
    ) -> Result<&[u8], ProtocolError> {
        self.inflated.clear();
        let Some(inflater) = conn.inflater.as_mut().or(self.shared_inflater.as_mut()) else {
            return Err(ProtocolError::InvalidCompressedData);
        };
        let inflated = inflater
            .handle_data(payload, &mut self.inflated)
            .and_then(|_| inflater.handle_message_end(&mut self.inflated));
        if let Err(e) = inflated {
            // Ready for the next connection (a shared inflater) after this one is dropped.
            inflater.reset();
            return Err(e);
        }
        Ok(&self.inflated)
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use lanes_proto::frame::{FrameConfig, HeaderDecode, RSV1, decode_header};
    use lanes_proto::handshake::ExtensionParam;
    use lanes_proto::mask::apply_mask;

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
            let text = offer(mode).unwrap();
            let offers = answer(text);
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

    /// Unmasks the frames in `wire` (client to server) and inflates them as the server would.
    fn server_reads(wire: &[u8], inflater: &mut Inflater) -> Vec<Vec<u8>> {
        let config = FrameConfig {
            allowed_rsv: RSV1,
            ..FrameConfig::server()
        };
        let (mut at, mut messages) = (0, Vec::new());
        while at < wire.len() {
            let HeaderDecode::Complete { header, header_len } =
                decode_header(&wire[at..], &config).unwrap()
            else {
                panic!("partial frame");
            };
            let start = at + header_len;
            let end = start + header.payload_len as usize;
            let mut payload = wire[start..end].to_vec();
            apply_mask(&mut payload, header.mask.unwrap(), 0);
            if header.rsv & RSV1 != 0 {
                let mut out = Vec::new();
                inflater.handle_data(&payload, &mut out).unwrap();
                inflater.handle_message_end(&mut out).unwrap();
                payload = out;
            }
            messages.push(payload);
            at = end;
        }
        messages
    }

    #[test]
    fn messages_round_trip_with_a_server() {
        let server_config = DeflateConfig {
            enabled: true,
            min_compress_len: 0,
            ..DeflateConfig::default()
        };
        for agreed in [params(false, false, 15, 15), params(true, true, 15, 15)] {
            let mut codec = Codec::new(agreed, 1 << 20);
            let mut conns = [codec.conn(), codec.conn()];
            let mut server_inflaters = [
                agreed.inflater(Role::Server, 1 << 20),
                agreed.inflater(Role::Server, 1 << 20),
            ];
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
                        server_reads(&wire, &mut server_inflaters[i]),
                        vec![message.clone()]
                    );
                    let mut echo = Vec::new();
                    assert_eq!(
                        server_deflaters[i].compress(&message, &mut echo),
                        SendAs::Compressed
                    );
                    assert_eq!(codec.inflate(conn, &echo).unwrap(), &message[..]);
                }
            }
        }
    }

    #[test]
    fn corrupt_data_is_an_error_and_the_shared_inflater_recovers() {
        let mut codec = Codec::new(params(true, true, 15, 15), 1 << 20);
        let mut conn = codec.conn();
        assert_eq!(
            codec.inflate(&mut conn, &[0xff, 0xff, 0xff]),
            Err(ProtocolError::InvalidCompressedData)
        );
        // RFC 7692 §7.2.3.1: "Hello".
        assert_eq!(
            codec
                .inflate(&mut conn, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00])
                .unwrap(),
            b"Hello"
        );
    }

    #[test]
    fn describe_says_who_takes_context_over() {
        assert_eq!(
            describe(&params(true, false, 15, 10)),
            "server: no context takeover, 15-bit window; client: context takeover, 10-bit window"
        );
    }
}
