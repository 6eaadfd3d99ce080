//! The client side of the opening handshake: build the request, check the server's response.
//!
//! Used by lanes' load generator and tests. The caller supplies the 16 random bytes of the key
//! (this crate reads no clock and no random source); RFC 6455 §4.1 asks for a fresh random
//! nonce per connection.

use base64::Engine as _;

use super::accept_key::{ACCEPT_KEY_LEN, accept_key};
use super::extension::{ExtensionOffer, parse_extensions};
use super::token::{is_safe_field_value, is_token, list_contains_token, trim_ows};
use super::{HeadLimits, Header, MAX_HEADERS_CAP, Parsed};
use crate::error::ResponseError;

/// What to put in the opening request.
#[derive(Debug, Clone, Copy)]
pub struct ClientRequest<'a> {
    /// The `Host` value, such as `127.0.0.1:9001`.
    pub host: &'a str,
    /// The request target: path and optional query, such as `/chat?room=1` (must start with
    /// `/`).
    pub target: &'a str,
    /// Subprotocols to offer, in order of preference (each must be a token).
    pub subprotocols: &'a [&'a str],
    /// A `Sec-WebSocket-Extensions` value to offer, if any.
    pub extensions: Option<&'a str>,
    /// Extra header fields (name, value).
    pub extra_headers: &'a [(&'a str, &'a str)],
}

impl<'a> ClientRequest<'a> {
    /// A request for `target` on `host` with no subprotocols, extensions or extra headers.
    pub const fn new(host: &'a str, target: &'a str) -> ClientRequest<'a> {
        ClientRequest {
            host,
            target,
            subprotocols: &[],
            extensions: None,
            extra_headers: &[],
        }
    }
}

/// A handshake in progress on the client side: remembers what was offered and the accept value
/// to expect.
#[derive(Debug, Clone)]
pub struct ClientHandshake {
    expected_accept: [u8; ACCEPT_KEY_LEN],
    offered_subprotocols: Vec<String>,
    offered_extensions: Vec<String>,
    limits: HeadLimits,
}

/// A server's 101 response that passed every check.
#[derive(Debug, Clone)]
pub struct ServerResponse<'b> {
    /// The subprotocol the server chose, if any (always one that was offered).
    pub subprotocol: Option<&'b str>,
    /// The extensions the server accepted, with their parameters (all were offered).
    pub extensions: Vec<ExtensionOffer<'b>>,
    /// Every header field of the response.
    pub headers: Vec<Header<'b>>,
    /// The length of the response head; WebSocket frames start after it.
    pub head_len: usize,
}

impl ClientHandshake {
    /// Appends the opening request to `out`, with `nonce` as the key's 16 random bytes.
    ///
    /// Fails with [`ResponseError::InvalidRequestValue`] when a value could not be sent as given
    /// (CR or LF in a value, a subprotocol that is not a token).
    ///
    /// ```
    /// use lanes_proto::handshake::{ClientHandshake, ClientRequest};
    /// let mut out = Vec::new();
    /// let nonce = *b"the sample nonce"; // use 16 fresh random bytes per connection
    /// ClientHandshake::new(&ClientRequest::new("localhost:9001", "/"), nonce, &mut out).unwrap();
    /// let text = String::from_utf8(out).unwrap();
    /// assert!(text.starts_with("GET / HTTP/1.1\r\nHost: localhost:9001\r\n"));
    /// assert!(text.contains("\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"));
    /// ```
    pub fn new(
        request: &ClientRequest<'_>,
        nonce: [u8; 16],
        out: &mut Vec<u8>,
    ) -> Result<ClientHandshake, ResponseError> {
        let target_ok =
            request.target.starts_with('/') && request.target.bytes().all(|b| b.is_ascii_graphic());
        let host_ok =
            !request.host.is_empty() && request.host.bytes().all(|b| b.is_ascii_graphic());
        let protocols_ok = request.subprotocols.iter().all(|p| is_token(p.as_bytes()));
        let extensions_ok = request
            .extensions
            .is_none_or(|e| is_safe_field_value(e.as_bytes()));
        let headers_ok = request
            .extra_headers
            .iter()
            .all(|(n, v)| is_token(n.as_bytes()) && is_safe_field_value(v.as_bytes()));
        if !(target_ok && host_ok && protocols_ok && extensions_ok && headers_ok) {
            return Err(ResponseError::InvalidRequestValue);
        }
        let mut offered_extensions = Vec::new();
        if let Some(value) = request.extensions {
            let mut offers = Vec::new();
            parse_extensions(value.as_bytes(), &mut offers)
                .map_err(|_| ResponseError::InvalidRequestValue)?;
            offered_extensions = offers.iter().map(|o| o.name.to_ascii_lowercase()).collect();
        }

        let mut key = [0u8; 24];
        let written = base64::engine::general_purpose::STANDARD
            .encode_slice(nonce, &mut key)
            .unwrap_or(0);
        debug_assert_eq!(written, key.len());

        out.extend_from_slice(b"GET ");
        out.extend_from_slice(request.target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        out.extend_from_slice(request.host.as_bytes());
        out.extend_from_slice(b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n");
        out.extend_from_slice(b"Sec-WebSocket-Key: ");
        out.extend_from_slice(&key);
        out.extend_from_slice(b"\r\nSec-WebSocket-Version: 13\r\n");
        if !request.subprotocols.is_empty() {
            out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
            out.extend_from_slice(request.subprotocols.join(", ").as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if let Some(value) = request.extensions {
            out.extend_from_slice(b"Sec-WebSocket-Extensions: ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        for (name, value) in request.extra_headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");

        Ok(ClientHandshake {
            expected_accept: accept_key(&key),
            offered_subprotocols: request.subprotocols.iter().map(|p| p.to_string()).collect(),
            offered_extensions,
            limits: HeadLimits::default(),
        })
    }

    /// The same handshake with other limits on the response head.
    pub fn with_limits(mut self, limits: HeadLimits) -> ClientHandshake {
        self.limits = limits;
        self
    }

    /// Parses and checks the server's response at the start of `buf`.
    ///
    /// Returns [`Parsed::Partial`] until the head is complete. Checks: status 101, `Upgrade`
    /// names websocket, `Connection` contains upgrade, `Sec-WebSocket-Accept` matches the key,
    /// the subprotocol (if any) was offered, and every accepted extension was offered
    /// (RFC 6455 §4.1, items 1-6 of the client's checks).
    pub fn handle_response<'b>(
        &self,
        buf: &'b [u8],
    ) -> Result<Parsed<ServerResponse<'b>>, ResponseError> {
        let window = &buf[..buf.len().min(self.limits.max_head_len)];
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS_CAP];
        let max_headers = self.limits.max_headers.min(MAX_HEADERS_CAP);
        let mut response = httparse::Response::new(&mut storage[..max_headers]);
        let head_len = match response.parse(window) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() >= self.limits.max_head_len => {
                return Err(ResponseError::HeadTooLarge);
            }
            Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
            Err(httparse::Error::TooManyHeaders) => return Err(ResponseError::TooManyHeaders),
            Err(_) => return Err(ResponseError::MalformedHead),
        };
        if response.version != Some(1) {
            return Err(ResponseError::MalformedHead);
        }
        let status = response.code.ok_or(ResponseError::MalformedHead)?;
        if status != 101 {
            return Err(ResponseError::Status(status));
        }
        let headers = Header::collect(response.headers);
        let named = |name: &'static str| {
            headers
                .iter()
                .filter(move |h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value)
        };
        if !named("upgrade").any(|v| list_contains_token(v, "websocket")) {
            return Err(ResponseError::NotWebSocketUpgrade);
        }
        if !named("connection").any(|v| list_contains_token(v, "upgrade")) {
            return Err(ResponseError::ConnectionNotUpgrade);
        }
        let mut accepts = named("sec-websocket-accept");
        let accept_ok = accepts
            .next()
            .is_some_and(|v| trim_ows(v) == self.expected_accept)
            && accepts.next().is_none();
        if !accept_ok {
            return Err(ResponseError::AcceptMismatch);
        }

        let mut protocols = named("sec-websocket-protocol");
        let subprotocol = match (protocols.next(), protocols.next()) {
            (None, _) => None,
            (Some(value), None) => {
                let value = core::str::from_utf8(trim_ows(value))
                    .map_err(|_| ResponseError::UnrequestedSubprotocol)?;
                if !self.offered_subprotocols.iter().any(|p| p == value) {
                    return Err(ResponseError::UnrequestedSubprotocol);
                }
                Some(value)
            }
            (Some(_), Some(_)) => return Err(ResponseError::UnrequestedSubprotocol),
        };

        let mut extensions = Vec::new();
        for value in named("sec-websocket-extensions") {
            parse_extensions(value, &mut extensions)
                .map_err(|_| ResponseError::MalformedExtensions)?;
        }
        for (i, accepted) in extensions.iter().enumerate() {
            if extensions[..i]
                .iter()
                .any(|earlier| earlier.name.eq_ignore_ascii_case(accepted.name))
            {
                return Err(ResponseError::DuplicateExtension);
            }
        }
        if !extensions.iter().all(|e| {
            self.offered_extensions
                .iter()
                .any(|o| o.eq_ignore_ascii_case(e.name))
        }) {
            return Err(ResponseError::UnrequestedExtension);
        }

        Ok(Parsed::Complete(ServerResponse {
            subprotocol,
            extensions,
            headers,
            head_len,
        }))
    }
}
