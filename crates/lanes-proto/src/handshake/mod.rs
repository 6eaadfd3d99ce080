//! The opening handshake (RFC 6455 §4): parsing and validating the client's request, building
//! the server's response, and the client's side of both.
//!
//! Server side, in order: [`RequestHead::parse`] (incremental, bounded by [`HeadLimits`]) →
//! [`RequestHead::is_websocket_upgrade`] (or serve it as plain HTTP) →
//! [`UpgradeOffer::validate`] (RFC 6455 §4.2.1) → the application looks at path, query, headers
//! (on the head), subprotocols and extensions (on the offer) → [`write_accept`] or, on refusal,
//! [`write_reject`] / [`HandshakeError::write_response`](crate::HandshakeError::write_response).
//!
//! Client side: [`ClientHandshake::new`] writes the request; [`ClientHandshake::handle_response`]
//! checks the answer.

mod accept_key;
mod client;
pub(crate) mod extension;
mod request;
pub(crate) mod response;
mod token;

pub use accept_key::{ACCEPT_KEY_LEN, WEBSOCKET_GUID, accept_key};
pub use client::{ClientHandshake, ClientRequest, ServerResponse};
pub use extension::{ExtensionOffer, ExtensionParam};
pub use request::{RequestHead, UpgradeOffer};
pub use response::{
    AcceptOptions, ResponseBuildError, write_accept, write_http_response, write_reject,
};

/// The most header fields a head may have, whatever [`HeadLimits::max_headers`] says.
pub const MAX_HEADERS_CAP: usize = 128;

/// The outcome of parsing a head from the bytes available so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<T> {
    /// The head is complete.
    Complete(T),
    /// The head's end has not arrived yet: read more and parse again from the start.
    Partial,
}

/// Bounds on an HTTP head, so a peer cannot make us buffer or scan without end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// The longest head, in bytes, including the request line and the final blank line.
    /// Default: 8 KiB, which fits every browser's handshake with cookies. A longer head is
    /// refused with 431 as soon as that many bytes arrived without its end.
    pub max_head_len: usize,
    /// The most header fields. Default: 64. Values above [`MAX_HEADERS_CAP`] act as the cap.
    /// More fields are refused with 431.
    pub max_headers: usize,
}

impl Default for HeadLimits {
    fn default() -> HeadLimits {
        HeadLimits {
            max_head_len: 8 * 1024,
            max_headers: 64,
        }
    }
}

/// One header field, borrowed from the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'b> {
    /// The field name as sent (compare case-insensitively).
    pub name: &'b str,
    /// The field value as sent, without surrounding white space; not necessarily UTF-8.
    pub value: &'b [u8],
}

impl<'b> Header<'b> {
    /// Copies httparse's parsed fields (references into the input) into our own type.
    fn collect(parsed: &[httparse::Header<'b>]) -> Vec<Header<'b>> {
        parsed
            .iter()
            .map(|h| Header {
                name: h.name,
                value: h.value,
            })
            .collect()
    }
}
