//! Choosing among a client's permessage-deflate offers (RFC 7692 §5, §7.1) and answering.

use core::fmt;

use super::EXTENSION_NAME;
use super::config::{DeflateConfig, MAX_WINDOW_BITS, MIN_WINDOW_BITS, clamp_window_bits};
#[cfg(feature = "deflate")]
use super::{Deflater, Inflater};
#[cfg(feature = "deflate")]
use crate::frame::Role;
use crate::handshake::ExtensionOffer;

pub(super) const SERVER_NO_CONTEXT_TAKEOVER: &str = "server_no_context_takeover";
pub(super) const CLIENT_NO_CONTEXT_TAKEOVER: &str = "client_no_context_takeover";
pub(super) const SERVER_MAX_WINDOW_BITS: &str = "server_max_window_bits";
pub(super) const CLIENT_MAX_WINDOW_BITS: &str = "client_max_window_bits";

/// The parameters both ends agreed on: who resets its compression context after each message,
/// and the largest window each may compress with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server compresses each message on its own.
    pub server_no_context_takeover: bool,
    /// The client compresses each message on its own.
    pub client_no_context_takeover: bool,
    /// The largest window the server compresses with, 8..=15 bits.
    pub server_max_window_bits: u8,
    /// The largest window the client compresses with, 8..=15 bits.
    pub client_max_window_bits: u8,
}

impl Default for DeflateParams {
    /// RFC 7692's defaults: context takeover both ways, 15-bit windows.
    fn default() -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: MAX_WINDOW_BITS,
        }
    }
}

impl DeflateParams {
    /// The compressor for the messages that `role` sends: the server's parameters for a server,
    /// the client's for a client; level, memLevel and threshold from `config`.
    #[cfg(feature = "deflate")]
    pub fn deflater(&self, role: Role, config: &DeflateConfig) -> Deflater {
        let (window_bits, no_context_takeover) = match role {
            Role::Server => (self.server_max_window_bits, self.server_no_context_takeover),
            Role::Client => (self.client_max_window_bits, self.client_no_context_takeover),
        };
        Deflater::new(window_bits, no_context_takeover, config)
    }

    /// The decompressor for the messages that `role` receives, refusing any message that
    /// inflates to more than `max_message_len` bytes.
    #[cfg(feature = "deflate")]
    pub fn inflater(&self, role: Role, max_message_len: u64) -> Inflater {
        let (window_bits, no_context_takeover) = match role {
            Role::Server => (self.client_max_window_bits, self.client_no_context_takeover),
            Role::Client => (self.server_max_window_bits, self.server_no_context_takeover),
        };
        Inflater::new(window_bits, no_context_takeover, max_message_len)
    }
}

/// The outcome of a successful negotiation: what was agreed, and how to say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The agreed parameters.
    pub params: DeflateParams,
    /// The `Sec-WebSocket-Extensions` value to answer with, such as
    /// `permessage-deflate; client_max_window_bits=12`; give it to
    /// [`AcceptOptions::extensions`](crate::handshake::AcceptOptions::extensions).
    pub response: String,
    /// Which of the offers (an index into the slice given to [`negotiate`]) was accepted.
    pub offer_index: usize,
}

/// Picks the first permessage-deflate offer in `offers` that is valid and that `config`
/// supports (RFC 7692 §5: the order is the client's preference) and answers it. `None` when
/// `config` is disabled or no offer is acceptable: then the connection simply goes without
/// compression.
///
/// An offer is declined (and the next one tried) when it has a parameter RFC 7692 does not
/// define, the same parameter twice, a value on a `*_no_context_takeover` parameter, no
/// value on `server_max_window_bits`, or a window outside 8..=15 written as decimal digits
/// without leading zeros (§7). Names are compared ignoring ASCII case. Offers of other
/// extensions are skipped.
///
/// What the answer says:
/// - `server_no_context_takeover` when the client asked or `config` wants it;
/// - `client_no_context_takeover` when `config` asks for it or the client announced it (it
///   will not take over context anyway; echoing it lets us reset our inflater);
/// - `server_max_window_bits=N` when the client limited our window (N is the smaller of its
///   value and ours; RFC 7692 §7.1.2.1 requires the parameter then) or ours is below 15;
/// - `client_max_window_bits=N` when the client said it supports the parameter and the
///   smaller of its value and `config`'s is below 15 (never otherwise: §7.1.2.2).
///
/// ```
/// use lanes_proto::deflate::{negotiate, DeflateConfig};
/// use lanes_proto::handshake::{ExtensionOffer, ExtensionParam};
/// // What browsers send: `permessage-deflate; client_max_window_bits`.
/// let offers = [ExtensionOffer {
///     name: "permessage-deflate",
///     params: vec![ExtensionParam { name: "client_max_window_bits", value: None }],
/// }];
/// let config = DeflateConfig { enabled: true, client_max_window_bits: 12, ..Default::default() };
/// let agreed = negotiate(&offers, &config).unwrap();
/// assert_eq!(agreed.response, "permessage-deflate; client_max_window_bits=12");
/// assert_eq!(agreed.params.client_max_window_bits, 12);
/// assert!(negotiate(&offers, &DeflateConfig::default()).is_none()); // disabled
/// ```
pub fn negotiate(offers: &[ExtensionOffer<'_>], config: &DeflateConfig) -> Option<Negotiated> {
    if !config.enabled {
        return None;
    }
    offers.iter().enumerate().find_map(|(index, offer)| {
        if !offer.name.eq_ignore_ascii_case(EXTENSION_NAME) {
            return None;
        }
        let parsed = ParsedOffer::parse(offer)?;
        Some(parsed.accept(config, index))
    })
}

/// A client's offer, checked against RFC 7692 §7.
#[derive(Debug, Default)]
struct ParsedOffer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    /// `server_max_window_bits=N`, which needs a value.
    server_max_window_bits: Option<u8>,
    /// `client_max_window_bits`: `Some(None)` without a value (the client supports the
    /// parameter), `Some(Some(N))` with one (it will use at most N bits).
    client_max_window_bits: Option<Option<u8>>,
}

impl ParsedOffer {
    /// The offer's parameters, or `None` when it must be declined.
    fn parse(offer: &ExtensionOffer<'_>) -> Option<ParsedOffer> {
        let mut parsed = ParsedOffer::default();
        let mut seen = [false; 4];
        for param in &offer.params {
            let value = param.value.as_deref();
            let slot = if param.name.eq_ignore_ascii_case(SERVER_NO_CONTEXT_TAKEOVER) {
                if value.is_some() {
                    return None;
                }
                parsed.server_no_context_takeover = true;
                0
            } else if param.name.eq_ignore_ascii_case(CLIENT_NO_CONTEXT_TAKEOVER) {
                if value.is_some() {
                    return None;
                }
                parsed.client_no_context_takeover = true;
                1
            } else if param.name.eq_ignore_ascii_case(SERVER_MAX_WINDOW_BITS) {
                parsed.server_max_window_bits = Some(parse_window_bits(value?)?);
                2
            } else if param.name.eq_ignore_ascii_case(CLIENT_MAX_WINDOW_BITS) {
                parsed.client_max_window_bits = Some(match value {
                    None => None,
                    Some(value) => Some(parse_window_bits(value)?),
                });
                3
            } else {
                return None;
            };
            if core::mem::replace(&mut seen[slot], true) {
                return None;
            }
        }
        Some(parsed)
    }

    /// The agreement and the response for this (valid) offer.
    fn accept(&self, config: &DeflateConfig, offer_index: usize) -> Negotiated {
        let ours_server = clamp_window_bits(config.server_max_window_bits);
        let ours_client = clamp_window_bits(config.client_max_window_bits);
        let server_max_window_bits = self
            .server_max_window_bits
            .map_or(ours_server, |theirs| theirs.min(ours_server));
        let client_max_window_bits = match self.client_max_window_bits {
            None => MAX_WINDOW_BITS,
            Some(theirs) => theirs.unwrap_or(MAX_WINDOW_BITS).min(ours_client),
        };
        let params = DeflateParams {
            server_no_context_takeover: self.server_no_context_takeover
                || config.server_no_context_takeover,
            client_no_context_takeover: self.client_no_context_takeover
                || config.client_no_context_takeover,
            server_max_window_bits,
            client_max_window_bits,
        };
        let response = Response {
            params: &params,
            announce_server_window: self.server_max_window_bits.is_some()
                || server_max_window_bits < MAX_WINDOW_BITS,
            announce_client_window: self.client_max_window_bits.is_some()
                && client_max_window_bits < MAX_WINDOW_BITS,
        }
        .to_string();
        Negotiated {
            params,
            response,
            offer_index,
        }
    }
}

/// A window size as RFC 7692 §7.1.2 writes it: decimal digits, no leading zero, 8..=15.
pub(super) fn parse_window_bits(value: &str) -> Option<u8> {
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > 2 || bytes[0] == b'0' {
        return None;
    }
    if !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let bits = value.parse::<u8>().ok()?;
    (MIN_WINDOW_BITS..=MAX_WINDOW_BITS)
        .contains(&bits)
        .then_some(bits)
}

/// The response extension value for agreed parameters.
struct Response<'p> {
    params: &'p DeflateParams,
    announce_server_window: bool,
    announce_client_window: bool,
}

impl fmt::Display for Response<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EXTENSION_NAME)?;
        if self.params.server_no_context_takeover {
            write!(f, "; {SERVER_NO_CONTEXT_TAKEOVER}")?;
        }
        if self.params.client_no_context_takeover {
            write!(f, "; {CLIENT_NO_CONTEXT_TAKEOVER}")?;
        }
        if self.announce_server_window {
            write!(
                f,
                "; {SERVER_MAX_WINDOW_BITS}={}",
                self.params.server_max_window_bits
            )?;
        }
        if self.announce_client_window {
            write!(
                f,
                "; {CLIENT_MAX_WINDOW_BITS}={}",
                self.params.client_max_window_bits
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_bits_syntax() {
        for (text, bits) in [("8", Some(8)), ("15", Some(15)), ("10", Some(10))] {
            assert_eq!(parse_window_bits(text), bits, "{text}");
        }
        for bad in ["", "7", "16", "08", "010", "+9", "9a", "255", "1000", " 9"] {
            assert_eq!(parse_window_bits(bad), None, "{bad}");
        }
    }
}
