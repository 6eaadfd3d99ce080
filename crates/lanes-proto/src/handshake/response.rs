//! The server's answers: the 101 Switching Protocols response, and error responses.

use core::fmt;

use super::accept_key::{ACCEPT_KEY_LEN, accept_key};
use super::extension::parse_extensions;
use super::request::UpgradeOffer;
use super::token::{is_safe_field_value, is_token};
use crate::error::HandshakeError;

/// What the application chose when it accepted an upgrade.
#[derive(Debug, Clone, Copy, Default)]
pub struct AcceptOptions<'a> {
    /// The subprotocol to confirm; it must be one the client offered. Default: none.
    pub subprotocol: Option<&'a str>,
    /// The `Sec-WebSocket-Extensions` value to answer with, such as
    /// `permessage-deflate; server_no_context_takeover`; every extension named must have been
    /// offered. Default: none.
    pub extensions: Option<&'a str>,
    /// Extra header fields (name, value), for example `Set-Cookie`. Names must be tokens and
    /// values must not hold CR, LF or other control characters. Default: none.
    pub extra_headers: &'a [(&'a str, &'a str)],
}

/// Why a response could not be built: the application's choice does not fit the request, or a
/// value cannot be sent in an HTTP head.
///
/// This is a bug in the application, not the peer's fault; a server answers 500.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseBuildError {
    /// The chosen subprotocol was not offered by the client (RFC 6455 §4.2.2).
    SubprotocolNotOffered,
    /// An accepted extension was not offered by the client (RFC 6455 §9.1).
    ExtensionNotOffered,
    /// The extensions value does not follow RFC 6455 §9.1.
    MalformedExtensions,
    /// An extra header has a name that is not a token, or a value with forbidden bytes.
    InvalidHeader,
    /// A rejection status outside 300-599 (or 304, which has no body).
    InvalidStatus,
}

impl fmt::Display for ResponseBuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResponseBuildError::SubprotocolNotOffered => "chosen subprotocol was not offered",
            ResponseBuildError::ExtensionNotOffered => "accepted extension was not offered",
            ResponseBuildError::MalformedExtensions => "malformed extensions value",
            ResponseBuildError::InvalidHeader => "invalid extra header name or value",
            ResponseBuildError::InvalidStatus => "rejection status must be 300-599 and not 304",
        })
    }
}

impl std::error::Error for ResponseBuildError {}

/// The 101's fixed lines, up to the accept key.
const ACCEPT_HEAD: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Accept: ";

/// Appends the 101 Switching Protocols response for a validated `offer` to `out`.
///
/// On error nothing is appended.
///
/// ```
/// use lanes_proto::handshake::{
///     write_accept, AcceptOptions, HeadLimits, Parsed, RequestHead, UpgradeOffer,
/// };
/// let bytes = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
///     Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
///     Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n";
/// let Ok(Parsed::Complete(head)) = RequestHead::parse(bytes, &HeadLimits::default()) else {
///     panic!()
/// };
/// let offer = UpgradeOffer::validate(&head).unwrap();
/// let mut out = Vec::new();
/// let options = AcceptOptions { subprotocol: Some("chat"), ..AcceptOptions::default() };
/// write_accept(&offer, &options, &mut out).unwrap();
/// assert_eq!(
///     out,
///     b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
///       Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n"
/// );
/// ```
pub fn write_accept(
    offer: &UpgradeOffer<'_>,
    options: &AcceptOptions<'_>,
    out: &mut Vec<u8>,
) -> Result<(), ResponseBuildError> {
    if let Some(chosen) = options.subprotocol
        && !offer.subprotocols().contains(&chosen)
    {
        return Err(ResponseBuildError::SubprotocolNotOffered);
    }
    if let Some(value) = options.extensions {
        if !is_safe_field_value(value.as_bytes()) {
            return Err(ResponseBuildError::MalformedExtensions);
        }
        let mut accepted = Vec::new();
        parse_extensions(value.as_bytes(), &mut accepted)
            .map_err(|_| ResponseBuildError::MalformedExtensions)?;
        let offered = offer.extensions();
        if !accepted
            .iter()
            .all(|a| offered.iter().any(|o| o.name.eq_ignore_ascii_case(a.name)))
        {
            return Err(ResponseBuildError::ExtensionNotOffered);
        }
    }
    check_headers(options.extra_headers)?;

    // The whole length up front: one allocation instead of the doublings of a growing `out`.
    out.reserve(accept_len(options));
    out.extend_from_slice(ACCEPT_HEAD);
    out.extend_from_slice(&accept_key(offer.key()));
    out.extend_from_slice(b"\r\n");
    if let Some(chosen) = options.subprotocol {
        push_header(out, "Sec-WebSocket-Protocol", chosen);
    }
    if let Some(value) = options.extensions {
        push_header(out, "Sec-WebSocket-Extensions", value);
    }
    for (name, value) in options.extra_headers {
        push_header(out, name, value);
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// The length of the 101 [`write_accept`] writes with `options`.
fn accept_len(options: &AcceptOptions<'_>) -> usize {
    let header_len = |name: &str, value: &str| name.len() + value.len() + 4;
    ACCEPT_HEAD.len()
        + ACCEPT_KEY_LEN
        + 4
        + options
            .subprotocol
            .map_or(0, |p| header_len("Sec-WebSocket-Protocol", p))
        + options
            .extensions
            .map_or(0, |e| header_len("Sec-WebSocket-Extensions", e))
        + options
            .extra_headers
            .iter()
            .map(|(name, value)| header_len(name, value))
            .sum::<usize>()
}

/// The answer to each refused handshake (beside the writers, so that errors need not know them).
impl HandshakeError {
    /// Appends the complete HTTP response for this error to `out`: status line, headers that
    /// RFC 6455 and RFC 9110 ask for (`Sec-WebSocket-Version: 13` with 426, `Allow: GET` with
    /// 405), `Connection: close`, and the reason as a `text/plain` body.
    ///
    /// ```
    /// use lanes_proto::HandshakeError;
    /// let mut out = Vec::new();
    /// HandshakeError::UnsupportedVersion.write_response(&mut out);
    /// let text = String::from_utf8(out).unwrap();
    /// assert!(text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
    /// assert!(text.contains("\r\nSec-WebSocket-Version: 13\r\n"));
    /// ```
    pub fn write_response(&self, out: &mut Vec<u8>) {
        let extra: &[(&str, &str)] = match self {
            // RFC 6455 §4.4 asks for the supported version; RFC 9110 §15.5.22 for Upgrade.
            HandshakeError::UnsupportedVersion => {
                &[("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")]
            }
            HandshakeError::MethodNotGet => &[("Allow", "GET")],
            _ => &[],
        };
        write_error_response(out, self.status(), extra, self.reason().as_bytes());
    }
}

/// Appends a complete response: status line, `headers`, `Connection: close`, a plain-text
/// content type unless `headers` names one, the content length and `body`. The caller checked
/// the values.
pub(crate) fn write_error_response(
    out: &mut Vec<u8>,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        push_header(out, name, value);
    }
    out.extend_from_slice(b"Connection: close\r\n");
    let has_type = headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
    if !has_type {
        out.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\n");
    }
    out.extend_from_slice(b"Content-Length: ");
    push_decimal(out, body.len() as u64);
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn push_decimal(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// The reason phrase for the statuses a handshake answers with.
const fn reason_phrase(status: u16) -> &'static str {
    match status {
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Appends an error response, for an application that refuses an upgrade (authentication
/// failed, unknown path, too many connections, a redirect): the status, `extra_headers` (such
/// as `WWW-Authenticate`, `Retry-After`, `Location`), `Connection: close`, and `body` as
/// `text/plain`. The status must be 300-599 and not 304. On error nothing is appended.
///
/// ```
/// let mut out = Vec::new();
/// lanes_proto::handshake::write_reject(&mut out, 403, &[], b"no entry").unwrap();
/// assert!(out.starts_with(b"HTTP/1.1 403 Forbidden\r\n"));
/// assert!(out.ends_with(b"Content-Length: 8\r\n\r\nno entry"));
/// assert!(lanes_proto::handshake::write_reject(&mut Vec::new(), 101, &[], b"").is_err());
/// ```
pub fn write_reject(
    out: &mut Vec<u8>,
    status: u16,
    extra_headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(), ResponseBuildError> {
    if !(300..=599).contains(&status) || status == 304 {
        return Err(ResponseBuildError::InvalidStatus);
    }
    check_headers(extra_headers)?;
    write_error_response(out, status, extra_headers, body);
    Ok(())
}

/// Appends a plain HTTP response with any final status from 200 to 599 (for a server that also
/// answers requests that are not upgrades: a health check, a page): the status, `headers`,
/// `Connection: close`, and `body` with its `Content-Length`. Give a `Content-Type` in
/// `headers`; without one the body is sent as `text/plain; charset=utf-8`. On error nothing is
/// appended.
///
/// ```
/// let mut out = Vec::new();
/// lanes_proto::handshake::write_http_response(
///     &mut out, 200, &[("Content-Type", "text/html")], b"<p>hi</p>",
/// ).unwrap();
/// assert!(out.starts_with(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"));
/// ```
pub fn write_http_response(
    out: &mut Vec<u8>,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(), ResponseBuildError> {
    if !(200..=599).contains(&status) || status == 204 || status == 304 {
        return Err(ResponseBuildError::InvalidStatus);
    }
    check_headers(headers)?;
    write_error_response(out, status, headers, body);
    Ok(())
}

/// Every extra header has a token for a name and a value without CR, LF or other controls.
fn check_headers(headers: &[(&str, &str)]) -> Result<(), ResponseBuildError> {
    for (name, value) in headers {
        if !is_token(name.as_bytes()) || !is_safe_field_value(value.as_bytes()) {
            return Err(ResponseBuildError::InvalidHeader);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::{HeadLimits, Parsed, RequestHead};

    /// The length reserved up front is the length written, with and without each optional
    /// part (too short would grow `out` again, too long would waste the allocation).
    #[test]
    fn the_reserved_length_is_the_written_length() {
        let request = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
            Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
            Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n";
        let Ok(Parsed::Complete(head)) = RequestHead::parse(request, &HeadLimits::default()) else {
            panic!("the request parses")
        };
        let offer = UpgradeOffer::validate(&head).unwrap();
        let headers = [("Set-Cookie", "id=1"), ("X-Node", "a7")];
        for subprotocol in [None, Some("chat")] {
            for extensions in [None, Some("permessage-deflate")] {
                for extra_headers in [&headers[..0], &headers[..1], &headers[..]] {
                    let options = AcceptOptions {
                        subprotocol,
                        extensions,
                        extra_headers,
                    };
                    let mut out = Vec::new();
                    write_accept(&offer, &options, &mut out).unwrap();
                    assert_eq!(accept_len(&options), out.len(), "{options:?}");
                }
            }
        }
    }
}
