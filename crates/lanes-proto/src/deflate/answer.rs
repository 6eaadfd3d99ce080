//! The client's side of the negotiation (RFC 7692 §5, §7.1): what it offers, and the check of
//! the server's answer.

use core::fmt;

use super::negotiate::{
    CLIENT_MAX_WINDOW_BITS, CLIENT_NO_CONTEXT_TAKEOVER, SERVER_MAX_WINDOW_BITS,
    SERVER_NO_CONTEXT_TAKEOVER, parse_window_bits,
};
use super::{DeflateParams, EXTENSION_NAME};
use crate::handshake::ExtensionOffer;

/// A client's permessage-deflate offer: written as the `Sec-WebSocket-Extensions` value with
/// `Display`, and checked against the server's answer with [`accept_answer`].
///
/// ```
/// use lanes_proto::deflate::ClientOffer;
/// let browser = ClientOffer { client_max_window_bits: true, ..ClientOffer::default() };
/// assert_eq!(browser.to_string(), "permessage-deflate; client_max_window_bits");
/// let no_takeover = ClientOffer {
///     server_no_context_takeover: true,
///     client_no_context_takeover: true,
///     ..ClientOffer::default()
/// };
/// assert_eq!(
///     no_takeover.to_string(),
///     "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
/// );
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientOffer {
    /// Ask the server to compress each message on its own; the server must confirm it.
    pub server_no_context_takeover: bool,
    /// Announce that we compress each message on its own (it holds whether or not the server
    /// repeats it).
    pub client_no_context_takeover: bool,
    /// Ask the server to compress with at most this window (8..=15 bits).
    pub server_max_window_bits: Option<u8>,
    /// Say that we accept a `client_max_window_bits` limit from the server (without it, the
    /// server may not send one: RFC 7692 §7.1.2.2).
    pub client_max_window_bits: bool,
}

impl fmt::Display for ClientOffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EXTENSION_NAME)?;
        if self.server_no_context_takeover {
            write!(f, "; {SERVER_NO_CONTEXT_TAKEOVER}")?;
        }
        if self.client_no_context_takeover {
            write!(f, "; {CLIENT_NO_CONTEXT_TAKEOVER}")?;
        }
        if let Some(bits) = self.server_max_window_bits {
            write!(f, "; {SERVER_MAX_WINDOW_BITS}={bits}")?;
        }
        if self.client_max_window_bits {
            write!(f, "; {CLIENT_MAX_WINDOW_BITS}")?;
        }
        Ok(())
    }
}

/// Why a client refuses a server's permessage-deflate answer (RFC 7692 §7.1). `Display` says
/// what the answer does wrong, to follow "the server's answer `...`".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AnswerError {
    /// The answer has no permessage-deflate: the server declined the offer.
    Declined,
    /// A parameter RFC 7692 does not define, at this index of the answer's parameters.
    UnknownParameter(usize),
    /// A `*_no_context_takeover` parameter with a value.
    UnexpectedValue(&'static str),
    /// A window size parameter without a value, outside 8..=15, not in the RFC's decimal
    /// form, or larger than the offer asked for.
    InvalidWindowBits(&'static str),
    /// `client_max_window_bits` in the answer when the offer did not have it (§7.1.2.2).
    NotOffered(&'static str),
    /// A parameter given twice.
    Repeated(&'static str),
    /// `server_no_context_takeover` was offered and the answer does not confirm it.
    Unconfirmed(&'static str),
}

impl fmt::Display for AnswerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnswerError::Declined => write!(f, "declines {EXTENSION_NAME}"),
            AnswerError::UnknownParameter(_) => {
                f.write_str("has a parameter RFC 7692 does not define")
            }
            AnswerError::UnexpectedValue(name) => write!(f, "gives {name} a value"),
            AnswerError::InvalidWindowBits(name) => {
                write!(f, "has a {name} that is not 8..=15 or not what was offered")
            }
            AnswerError::NotOffered(name) => write!(f, "has {name}, which was not offered"),
            AnswerError::Repeated(name) => write!(f, "repeats {name}"),
            AnswerError::Unconfirmed(name) => {
                write!(f, "does not confirm {name}, which was offered")
            }
        }
    }
}

impl std::error::Error for AnswerError {}

/// Checks the server's answer (`accepted`: the extensions of its checked 101 response, see
/// [`ServerResponse::extensions`](crate::handshake::ServerResponse)) against `offer`, and
/// gives the parameters both ends now use.
///
/// The answer may hold `server_no_context_takeover` and `client_no_context_takeover` without
/// a value, `server_max_window_bits=N` (at most the offer's, when it had one) and
/// `client_max_window_bits=N` only when offered, each at most once, N in 8..=15 written
/// without a leading zero. An offered `server_no_context_takeover` must be confirmed; an
/// offered `client_no_context_takeover` holds whether or not it is repeated. Names are
/// compared ignoring ASCII case.
///
/// ```
/// use lanes_proto::deflate::{accept_answer, AnswerError, ClientOffer};
/// use lanes_proto::handshake::{ExtensionOffer, ExtensionParam};
/// let offer = ClientOffer { client_max_window_bits: true, ..ClientOffer::default() };
/// let answer = [ExtensionOffer {
///     name: "permessage-deflate",
///     params: vec![ExtensionParam { name: "client_max_window_bits", value: Some("10".into()) }],
/// }];
/// let params = accept_answer(&offer, &answer).unwrap();
/// assert_eq!(params.client_max_window_bits, 10);
/// assert_eq!(accept_answer(&offer, &[]), Err(AnswerError::Declined));
/// ```
pub fn accept_answer(
    offer: &ClientOffer,
    accepted: &[ExtensionOffer<'_>],
) -> Result<DeflateParams, AnswerError> {
    let answer = accepted
        .iter()
        .find(|e| e.name.eq_ignore_ascii_case(EXTENSION_NAME))
        .ok_or(AnswerError::Declined)?;
    let mut params = DeflateParams {
        client_no_context_takeover: offer.client_no_context_takeover,
        ..DeflateParams::default()
    };
    let mut seen = [false; 4];
    for (index, param) in answer.params.iter().enumerate() {
        let value = param.value.as_deref();
        let (slot, name) = if param.name.eq_ignore_ascii_case(SERVER_NO_CONTEXT_TAKEOVER) {
            if value.is_some() {
                return Err(AnswerError::UnexpectedValue(SERVER_NO_CONTEXT_TAKEOVER));
            }
            params.server_no_context_takeover = true;
            (0, SERVER_NO_CONTEXT_TAKEOVER)
        } else if param.name.eq_ignore_ascii_case(CLIENT_NO_CONTEXT_TAKEOVER) {
            if value.is_some() {
                return Err(AnswerError::UnexpectedValue(CLIENT_NO_CONTEXT_TAKEOVER));
            }
            params.client_no_context_takeover = true;
            (1, CLIENT_NO_CONTEXT_TAKEOVER)
        } else if param.name.eq_ignore_ascii_case(SERVER_MAX_WINDOW_BITS) {
            let bits = value
                .and_then(parse_window_bits)
                .filter(|&bits| offer.server_max_window_bits.is_none_or(|max| bits <= max))
                .ok_or(AnswerError::InvalidWindowBits(SERVER_MAX_WINDOW_BITS))?;
            params.server_max_window_bits = bits;
            (2, SERVER_MAX_WINDOW_BITS)
        } else if param.name.eq_ignore_ascii_case(CLIENT_MAX_WINDOW_BITS) {
            if !offer.client_max_window_bits {
                return Err(AnswerError::NotOffered(CLIENT_MAX_WINDOW_BITS));
            }
            params.client_max_window_bits = value
                .and_then(parse_window_bits)
                .ok_or(AnswerError::InvalidWindowBits(CLIENT_MAX_WINDOW_BITS))?;
            (3, CLIENT_MAX_WINDOW_BITS)
        } else {
            return Err(AnswerError::UnknownParameter(index));
        };
        if core::mem::replace(&mut seen[slot], true) {
            return Err(AnswerError::Repeated(name));
        }
    }
    if offer.server_no_context_takeover && !params.server_no_context_takeover {
        return Err(AnswerError::Unconfirmed(SERVER_NO_CONTEXT_TAKEOVER));
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deflate::{DeflateConfig, negotiate};
    use crate::handshake::extension::parse_extensions;

    /// A `Sec-WebSocket-Extensions` value as the handshake parser gives it.
    fn parse(text: &str) -> Vec<ExtensionOffer<'_>> {
        let mut offers = Vec::new();
        parse_extensions(text.as_bytes(), &mut offers).unwrap();
        offers
    }

    #[test]
    fn every_offer_accepts_what_lanes_own_server_answers() {
        let offers = [
            ClientOffer::default(),
            ClientOffer {
                client_max_window_bits: true,
                ..ClientOffer::default()
            },
            ClientOffer {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                server_max_window_bits: Some(10),
                client_max_window_bits: true,
            },
        ];
        for offer in offers {
            for config in [
                DeflateConfig {
                    enabled: true,
                    ..DeflateConfig::default()
                },
                DeflateConfig {
                    enabled: true,
                    client_max_window_bits: 9,
                    server_max_window_bits: 12,
                    client_no_context_takeover: true,
                    ..DeflateConfig::default()
                },
            ] {
                let text = offer.to_string();
                let agreed = negotiate(&parse(&text), &config).unwrap();
                assert_eq!(
                    accept_answer(&offer, &parse(&agreed.response)),
                    Ok(agreed.params),
                    "{text} / {}",
                    agreed.response
                );
            }
        }
    }

    #[test]
    fn answers_against_the_rfc_are_refused() {
        let takeover = ClientOffer {
            client_max_window_bits: true,
            server_max_window_bits: Some(12),
            ..ClientOffer::default()
        };
        let no_takeover = ClientOffer {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            ..ClientOffer::default()
        };
        for (offer, answer, error) in [
            (takeover, "x-webkit-deflate-frame", AnswerError::Declined),
            (
                takeover,
                "permessage-deflate; foo",
                AnswerError::UnknownParameter(0),
            ),
            (
                takeover,
                "permessage-deflate; server_no_context_takeover=1",
                AnswerError::UnexpectedValue(SERVER_NO_CONTEXT_TAKEOVER),
            ),
            (
                takeover,
                "permessage-deflate; server_max_window_bits=13",
                AnswerError::InvalidWindowBits(SERVER_MAX_WINDOW_BITS),
            ),
            (
                takeover,
                "permessage-deflate; client_max_window_bits=08",
                AnswerError::InvalidWindowBits(CLIENT_MAX_WINDOW_BITS),
            ),
            (
                takeover,
                "permessage-deflate; client_max_window_bits",
                AnswerError::InvalidWindowBits(CLIENT_MAX_WINDOW_BITS),
            ),
            (
                no_takeover,
                "permessage-deflate; server_no_context_takeover; client_max_window_bits=9",
                AnswerError::NotOffered(CLIENT_MAX_WINDOW_BITS),
            ),
            (
                takeover,
                "permessage-deflate; client_no_context_takeover; Client_No_Context_Takeover",
                AnswerError::Repeated(CLIENT_NO_CONTEXT_TAKEOVER),
            ),
            (
                no_takeover,
                "permessage-deflate; client_no_context_takeover",
                AnswerError::Unconfirmed(SERVER_NO_CONTEXT_TAKEOVER),
            ),
        ] {
            assert_eq!(
                accept_answer(&offer, &parse(answer)),
                Err(error),
                "{answer}"
            );
        }
    }
}
