//! The server side of the opening handshake: parse the client's request head and check it
//! against RFC 6455 §4.2.1.

use base64::Engine as _;

use super::extension::{ExtensionOffer, parse_extensions};
use super::token::{is_token, list_contains_token, list_items, trim_ows};
use super::{HeadLimits, Header, MAX_HEADERS_CAP, Parsed};
use crate::error::HandshakeError;

/// A parsed HTTP/1.x request head, every part borrowed from the input.
///
/// This is any request, not yet checked to be a WebSocket upgrade, so that a server can also
/// answer plain HTTP requests on the same port. [`UpgradeOffer::validate`] checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead<'b> {
    method: &'b str,
    target: &'b str,
    minor_version: u8,
    headers: Vec<Header<'b>>,
    head_len: usize,
}

impl<'b> RequestHead<'b> {
    /// Parses a request head from the start of `buf`.
    ///
    /// Returns [`Parsed::Partial`] while the head's end (`\r\n\r\n`) has not arrived, and an
    /// error when the bytes cannot be an HTTP/1.x request head, the head outgrows
    /// [`HeadLimits::max_head_len`], or it has more than [`HeadLimits::max_headers`] fields.
    /// Bytes after the head (for example the first frames of an eager client) are left alone;
    /// [`head_len`](Self::head_len) says where they start.
    ///
    /// ```
    /// use lanes_proto::handshake::{HeadLimits, Parsed, RequestHead};
    /// let bytes = b"GET /chat?room=1 HTTP/1.1\r\nHost: example.com\r\n\r\n";
    /// assert!(matches!(
    ///     RequestHead::parse(&bytes[..20], &HeadLimits::default()),
    ///     Ok(Parsed::Partial)
    /// ));
    /// let Ok(Parsed::Complete(head)) = RequestHead::parse(bytes, &HeadLimits::default()) else {
    ///     panic!()
    /// };
    /// assert_eq!(head.path(), "/chat");
    /// assert_eq!(head.query(), Some("room=1"));
    /// assert_eq!(head.header("host"), Some(&b"example.com"[..]));
    /// assert_eq!(head.head_len(), bytes.len());
    /// ```
    pub fn parse(buf: &'b [u8], limits: &HeadLimits) -> Result<Parsed<Self>, HandshakeError> {
        let window = &buf[..buf.len().min(limits.max_head_len)];
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS_CAP];
        let max_headers = limits.max_headers.min(MAX_HEADERS_CAP);
        let mut request = httparse::Request::new(&mut storage[..max_headers]);
        let head_len = match request.parse(window) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() >= limits.max_head_len => {
                return Err(HandshakeError::HeadTooLarge);
            }
            Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
            Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::TooManyHeaders),
            Err(_) => return Err(HandshakeError::MalformedHead),
        };
        let (Some(method), Some(target), Some(minor_version)) =
            (request.method, request.path, request.version)
        else {
            return Err(HandshakeError::MalformedHead);
        };
        let headers = Header::collect(request.headers);
        Ok(Parsed::Complete(RequestHead {
            method,
            target,
            minor_version,
            headers,
            head_len,
        }))
    }

    /// The method, such as `GET`.
    pub fn method(&self) -> &'b str {
        self.method
    }

    /// The request target as sent: path and query, such as `/chat?room=1`.
    pub fn target(&self) -> &'b str {
        self.target
    }

    /// The path part of the target (before any `?`), not percent-decoded. For an absolute-form
    /// target (`GET http://host/chat HTTP/1.1`, RFC 9112 §3.2.2) the scheme and authority are
    /// left out, and an empty path is `/`.
    pub fn path(&self) -> &'b str {
        let without_query = self
            .target
            .split_once('?')
            .map_or(self.target, |(path, _)| path);
        match without_query.find("://") {
            Some(scheme_end) if !without_query.starts_with('/') => {
                let after_scheme = &without_query[scheme_end + 3..];
                after_scheme.find('/').map_or("/", |at| &after_scheme[at..])
            }
            _ => without_query,
        }
    }

    /// The query part of the target (after the first `?`), if any, not percent-decoded.
    pub fn query(&self) -> Option<&'b str> {
        self.target.split_once('?').map(|(_, query)| query)
    }

    /// The minor HTTP version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub fn minor_version(&self) -> u8 {
        self.minor_version
    }

    /// Every header field in the order received.
    pub fn headers(&self) -> &[Header<'b>] {
        &self.headers
    }

    /// The value of the first header field named `name` (case-insensitive), if any.
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        self.headers_named(name).next()
    }

    /// The values of every header field named `name` (case-insensitive), in order.
    pub fn headers_named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'b [u8]> + 's {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// Whether the request asks to upgrade to WebSocket at all (it has an `Upgrade` field naming
    /// `websocket`). A server that also serves plain HTTP answers requests without one itself.
    pub fn is_websocket_upgrade(&self) -> bool {
        self.headers_named("upgrade")
            .any(|v| list_contains_token(v, "websocket"))
    }

    /// The length of the head in bytes, including the final blank line.
    pub fn head_len(&self) -> usize {
        self.head_len
    }
}

/// The WebSocket part of a request that passed every check of RFC 6455 §4.2.1: the key, the
/// offered subprotocols and the offered extensions, borrowed from the same input as its
/// [`RequestHead`] (which stays with the caller, for path, query and headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeOffer<'b> {
    key: &'b [u8],
    subprotocols: Vec<&'b str>,
    extensions: Vec<ExtensionOffer<'b>>,
}

impl<'b> UpgradeOffer<'b> {
    /// Checks that `head` is a valid WebSocket opening handshake (RFC 6455 §4.2.1) and returns
    /// what the client offers.
    ///
    /// The checks, in order, and the error of each: the method is GET
    /// ([`HandshakeError::MethodNotGet`], 405); HTTP/1.1 or later ([`HandshakeError::HttpVersion`]);
    /// exactly one `Host`; no body (`Content-Length` other than 0 or any `Transfer-Encoding`);
    /// `Upgrade` contains `websocket`; `Connection` contains `upgrade` (comma lists,
    /// case-insensitive); `Sec-WebSocket-Version` is exactly 13
    /// ([`HandshakeError::UnsupportedVersion`], 426); `Sec-WebSocket-Key` appears once and
    /// base64-decodes to 16 bytes; `Sec-WebSocket-Protocol` is a list of tokens;
    /// `Sec-WebSocket-Extensions` follows RFC 6455 §9.1. All but the noted ones answer 400.
    ///
    /// ```
    /// use lanes_proto::handshake::{HeadLimits, Parsed, RequestHead, UpgradeOffer};
    /// let bytes = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
    ///     Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    ///     Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n";
    /// let Ok(Parsed::Complete(head)) = RequestHead::parse(bytes, &HeadLimits::default()) else {
    ///     panic!()
    /// };
    /// let offer = UpgradeOffer::validate(&head).unwrap();
    /// assert_eq!(offer.subprotocols(), ["chat", "superchat"]);
    /// assert_eq!(head.path(), "/chat");
    /// ```
    pub fn validate(head: &RequestHead<'b>) -> Result<Self, HandshakeError> {
        if head.method != "GET" {
            return Err(HandshakeError::MethodNotGet);
        }
        if head.minor_version < 1 {
            return Err(HandshakeError::HttpVersion);
        }
        match head.headers_named("host").count() {
            0 => return Err(HandshakeError::MissingHost),
            1 => {}
            _ => return Err(HandshakeError::DuplicateHost),
        }
        let has_body = head.header("transfer-encoding").is_some()
            || head
                .headers_named("content-length")
                .any(|v| trim_ows(v) != b"0");
        if has_body {
            return Err(HandshakeError::UnexpectedBody);
        }
        if !head.is_websocket_upgrade() {
            return Err(HandshakeError::NotWebSocketUpgrade);
        }
        if !head
            .headers_named("connection")
            .any(|v| list_contains_token(v, "upgrade"))
        {
            return Err(HandshakeError::ConnectionNotUpgrade);
        }
        let mut versions = head
            .headers_named("sec-websocket-version")
            .flat_map(list_items);
        if versions.next() != Some(b"13") || versions.next().is_some() {
            return Err(HandshakeError::UnsupportedVersion);
        }
        let key = single_key(head)?;
        let mut subprotocols = Vec::new();
        for value in head.headers_named("sec-websocket-protocol") {
            for item in list_items(value) {
                if !is_token(item) {
                    return Err(HandshakeError::MalformedSubprotocols);
                }
                // Tokens are ASCII.
                let item = core::str::from_utf8(item)
                    .map_err(|_| HandshakeError::MalformedSubprotocols)?;
                subprotocols.push(item);
            }
        }
        let mut extensions = Vec::new();
        for value in head.headers_named("sec-websocket-extensions") {
            parse_extensions(value, &mut extensions)
                .map_err(|_| HandshakeError::MalformedExtensions)?;
        }
        Ok(UpgradeOffer {
            key,
            subprotocols,
            extensions,
        })
    }

    /// The `Sec-WebSocket-Key` value, trimmed (24 base64 characters).
    pub fn key(&self) -> &'b [u8] {
        self.key
    }

    /// The offered subprotocols, in the client's order of preference.
    pub fn subprotocols(&self) -> &[&'b str] {
        &self.subprotocols
    }

    /// The offered extensions with their parameters, in the client's order of preference.
    pub fn extensions(&self) -> &[ExtensionOffer<'b>] {
        &self.extensions
    }
}

/// The one `Sec-WebSocket-Key`, checked to be base64 of exactly 16 bytes.
fn single_key<'b>(head: &RequestHead<'b>) -> Result<&'b [u8], HandshakeError> {
    let mut keys = head.headers_named("sec-websocket-key");
    let key = keys.next().ok_or(HandshakeError::MissingKey)?;
    if keys.next().is_some() {
        return Err(HandshakeError::InvalidKey);
    }
    let key = trim_ows(key);
    // 16 bytes encode to 22 characters plus "==" padding.
    if key.len() != 24 {
        return Err(HandshakeError::InvalidKey);
    }
    let mut decoded = [0u8; 18];
    match base64::engine::general_purpose::STANDARD.decode_slice(key, &mut decoded) {
        Ok(16) => Ok(key),
        _ => Err(HandshakeError::InvalidKey),
    }
}
