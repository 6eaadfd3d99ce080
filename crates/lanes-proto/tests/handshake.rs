//! The opening handshake: RFC 6455's example, every rejection rule with its HTTP status,
//! incremental parsing, limits, and a client and a server talking to each other in memory.

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use lanes_proto::HandshakeError;
use lanes_proto::ResponseError;
use lanes_proto::handshake::{
    AcceptOptions, ClientHandshake, ClientRequest, HeadLimits, Parsed, RequestHead,
    ResponseBuildError, UpgradeOffer, accept_key, write_accept, write_reject,
};

/// The client handshake of RFC 6455 §1.2 (with a version header, as §4.1 requires).
const RFC_REQUEST: &str = "GET /chat HTTP/1.1\r\n\
Host: server.example.com\r\n\
Upgrade: websocket\r\n\
Connection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Origin: http://example.com\r\n\
Sec-WebSocket-Protocol: chat, superchat\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";

fn parse(bytes: &[u8]) -> Result<RequestHead<'_>, HandshakeError> {
    match RequestHead::parse(bytes, &HeadLimits::default())? {
        Parsed::Complete(head) => Ok(head),
        Parsed::Partial => panic!("partial: {}", String::from_utf8_lossy(bytes)),
    }
}

fn validate(bytes: &[u8]) -> Result<(RequestHead<'_>, UpgradeOffer<'_>), HandshakeError> {
    let head = parse(bytes)?;
    let offer = UpgradeOffer::validate(&head)?;
    Ok((head, offer))
}

#[test]
fn rfc_accept_value() {
    assert_eq!(
        &accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
        b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

#[test]
fn rfc_request_is_accepted_and_answered() {
    let (head, request) = validate(RFC_REQUEST.as_bytes()).unwrap();
    assert_eq!(head.method(), "GET");
    assert_eq!(head.path(), "/chat");
    assert_eq!(head.query(), None);
    assert_eq!(head.header("ORIGIN"), Some(&b"http://example.com"[..]));
    assert_eq!(head.headers().len(), 7);
    assert_eq!(request.subprotocols(), ["chat", "superchat"]);
    assert!(request.extensions().is_empty());
    assert_eq!(request.key(), b"dGhlIHNhbXBsZSBub25jZQ==");

    let mut out = Vec::new();
    let options = AcceptOptions {
        subprotocol: Some("chat"),
        extensions: None,
        extra_headers: &[("Set-Cookie", "id=1")],
    };
    write_accept(&request, &options, &mut out).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "HTTP/1.1 101 Switching Protocols\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
         Sec-WebSocket-Protocol: chat\r\n\
         Set-Cookie: id=1\r\n\r\n"
    );
}

#[test]
fn accept_refuses_choices_the_client_did_not_offer() {
    let (_, request) = validate(RFC_REQUEST.as_bytes()).unwrap();
    let mut out = Vec::new();
    let cases = [
        (
            AcceptOptions {
                subprotocol: Some("Chat"),
                ..Default::default()
            },
            ResponseBuildError::SubprotocolNotOffered,
        ),
        (
            AcceptOptions {
                extensions: Some("permessage-deflate"),
                ..Default::default()
            },
            ResponseBuildError::ExtensionNotOffered,
        ),
        (
            AcceptOptions {
                extensions: Some("x;"),
                ..Default::default()
            },
            ResponseBuildError::MalformedExtensions,
        ),
        (
            AcceptOptions {
                extra_headers: &[("X-Bad", "a\r\nInjected: 1")],
                ..Default::default()
            },
            ResponseBuildError::InvalidHeader,
        ),
        (
            AcceptOptions {
                extra_headers: &[("Bad Name", "v")],
                ..Default::default()
            },
            ResponseBuildError::InvalidHeader,
        ),
    ];
    for (options, error) in cases {
        assert_eq!(write_accept(&request, &options, &mut out), Err(error));
        assert!(out.is_empty(), "nothing written on error");
    }
}

/// The RFC request with one line replaced (or removed when `to` is empty).
fn with_line(from: &str, to: &str) -> String {
    assert!(RFC_REQUEST.contains(from), "{from}");
    let replaced = RFC_REQUEST.replacen(from, to, 1);
    replaced.replace("\r\n\r\n\r\n", "\r\n\r\n")
}

#[test]
fn every_rejection_rule_with_its_status() {
    let cases: Vec<(String, HandshakeError, u16)> = vec![
        (with_line("GET", "POST"), HandshakeError::MethodNotGet, 405),
        (
            with_line("HTTP/1.1", "HTTP/1.0"),
            HandshakeError::HttpVersion,
            400,
        ),
        (
            with_line("Host: server.example.com\r\n", ""),
            HandshakeError::MissingHost,
            400,
        ),
        (
            with_line("Upgrade: websocket\r\n", ""),
            HandshakeError::NotWebSocketUpgrade,
            400,
        ),
        (
            with_line("Upgrade: websocket", "Upgrade: h2c"),
            HandshakeError::NotWebSocketUpgrade,
            400,
        ),
        (
            with_line("Connection: Upgrade\r\n", ""),
            HandshakeError::ConnectionNotUpgrade,
            400,
        ),
        (
            with_line("Connection: Upgrade", "Connection: keep-alive"),
            HandshakeError::ConnectionNotUpgrade,
            400,
        ),
        (
            with_line("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
            HandshakeError::MissingKey,
            400,
        ),
        (
            with_line("Origin:", "Host: evil.example.com\r\nOrigin:"),
            HandshakeError::DuplicateHost,
            400,
        ),
        (
            with_line("Origin:", "Content-Length: 5\r\nOrigin:"),
            HandshakeError::UnexpectedBody,
            400,
        ),
        (
            with_line("Origin:", "Transfer-Encoding: chunked\r\nOrigin:"),
            HandshakeError::UnexpectedBody,
            400,
        ),
        (
            with_line("Version: 13", "Version: 8, 13"),
            HandshakeError::UnsupportedVersion,
            426,
        ),
        (
            with_line(
                "Sec-WebSocket-Version: 13",
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 8",
            ),
            HandshakeError::UnsupportedVersion,
            426,
        ),
        // 15 bytes, 17 bytes, not base64, non-canonical padding bits.
        (
            with_line("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25j"),
            HandshakeError::InvalidKey,
            400,
        ),
        (
            with_line("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQAA"),
            HandshakeError::InvalidKey,
            400,
        ),
        (
            with_line("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZ!=="),
            HandshakeError::InvalidKey,
            400,
        ),
        (
            with_line("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZR=="),
            HandshakeError::InvalidKey,
            400,
        ),
        (
            with_line(
                "Origin:",
                "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\nOrigin:",
            ),
            HandshakeError::InvalidKey,
            400,
        ),
        (
            with_line("Sec-WebSocket-Version: 13\r\n", ""),
            HandshakeError::UnsupportedVersion,
            426,
        ),
        (
            with_line("Version: 13", "Version: 8"),
            HandshakeError::UnsupportedVersion,
            426,
        ),
        (
            with_line("Version: 13", "Version: 130"),
            HandshakeError::UnsupportedVersion,
            426,
        ),
        (
            with_line("chat, superchat", "chat, super chat"),
            HandshakeError::MalformedSubprotocols,
            400,
        ),
        (
            with_line(
                "Origin:",
                "Sec-WebSocket-Extensions: permessage-deflate;\r\nOrigin:",
            ),
            HandshakeError::MalformedExtensions,
            400,
        ),
        (
            "GET / HTTP/1.1\r\nHost\r\n\r\n".to_string(),
            HandshakeError::MalformedHead,
            400,
        ),
    ];
    for (request, error, status) in cases {
        assert_eq!(validate(request.as_bytes()).err(), Some(error), "{request}");
        assert_eq!(error.status(), status);
        let mut out = Vec::new();
        error.write_response(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(&format!("HTTP/1.1 {status} ")), "{text}");
        assert!(text.contains("\r\nConnection: close\r\n"));
        let body = error.reason();
        assert!(text.ends_with(&format!("\r\nContent-Length: {}\r\n\r\n{body}", body.len())));
        assert_eq!(
            text.contains("\r\nSec-WebSocket-Version: 13\r\n"),
            status == 426
        );
        assert_eq!(text.contains("\r\nAllow: GET\r\n"), status == 405);
        assert_eq!(text.contains("\r\nUpgrade: websocket\r\n"), status == 426);
    }
}

#[test]
fn zero_content_length_and_absolute_form_targets_are_accepted() {
    let zero = with_line("Origin:", "Content-Length: 0\r\nOrigin:");
    assert!(validate(zero.as_bytes()).is_ok());
    for (target, path, query) in [
        ("http://server.example.com/chat?x=1", "/chat", Some("x=1")),
        ("ws://server.example.com", "/", None),
        ("/plain", "/plain", None),
        ("/odd://path", "/odd://path", None),
    ] {
        let request = RFC_REQUEST.replacen("/chat", target, 1);
        let (head, _) = validate(request.as_bytes()).unwrap();
        assert_eq!((head.path(), head.query()), (path, query), "{target}");
    }
}

#[test]
fn reject_responses() {
    let mut out = Vec::new();
    write_reject(
        &mut out,
        401,
        &[("WWW-Authenticate", "Bearer")],
        b"token expired",
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\nConnection: close\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Length: 13\r\n\r\ntoken expired"
    );
    let mut out = Vec::new();
    for status in [0, 101, 200, 204, 304, 600, 65535] {
        assert_eq!(
            write_reject(&mut out, status, &[], b""),
            Err(ResponseBuildError::InvalidStatus),
            "{status}"
        );
    }
    assert_eq!(
        write_reject(&mut out, 503, &[("Retry-After", "1\r\nX: y")], b""),
        Err(ResponseBuildError::InvalidHeader)
    );
    assert!(out.is_empty());
    write_reject(&mut out, 599, &[], b"").unwrap();
    assert!(out.starts_with(b"HTTP/1.1 599 Error\r\n"));
}

#[test]
fn tls_client_hello_is_a_malformed_head() {
    // The first bytes of a TLS ClientHello sent to a plain-text port.
    let hello = [
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, b'\r', b'\n',
    ];
    assert_eq!(
        RequestHead::parse(&hello, &HeadLimits::default()),
        Err(HandshakeError::MalformedHead)
    );
}

#[test]
fn tokens_are_matched_case_insensitively_inside_lists() {
    let request = RFC_REQUEST
        .replace("Upgrade: websocket", "upgrade: foo/2, WebSocket")
        .replace("Connection: Upgrade", "connection: keep-alive, UPGRADE")
        .replace("Sec-WebSocket-Key", "sec-websocket-key");
    let (_, request) = validate(request.as_bytes()).unwrap();
    assert_eq!(request.key(), b"dGhlIHNhbXBsZSBub25jZQ==");
    // Connection split over two header fields.
    let split = RFC_REQUEST.replace(
        "Connection: Upgrade",
        "Connection: keep-alive\r\nConnection: Upgrade",
    );
    assert!(validate(split.as_bytes()).is_ok());
}

#[test]
fn query_subprotocols_and_extensions_are_exposed_in_order() {
    let request = RFC_REQUEST
        .replace("GET /chat ", "GET /chat?room=7&token=abc ")
        .replace(
            "Origin:",
            "Sec-WebSocket-Protocol: v3.json\r\n\
             Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, \
             permessage-deflate; server_no_context_takeover; server_max_window_bits=\"10\"\r\n\
             Origin:",
        );
    let (head, request) = validate(request.as_bytes()).unwrap();
    assert_eq!(head.path(), "/chat");
    assert_eq!(head.query(), Some("room=7&token=abc"));
    assert_eq!(head.target(), "/chat?room=7&token=abc");
    assert_eq!(request.subprotocols(), ["v3.json", "chat", "superchat"]);
    let offers = request.extensions();
    assert_eq!(offers.len(), 2);
    assert_eq!(offers[0].name, "permessage-deflate");
    assert_eq!(offers[0].params[0].name, "client_max_window_bits");
    assert_eq!(offers[0].params[0].value, None);
    assert_eq!(offers[1].params.len(), 2);
    assert_eq!(
        offers[1]
            .param("server_max_window_bits")
            .and_then(|p| p.value.as_deref()),
        Some("10")
    );
    let mut out = Vec::new();
    let options = AcceptOptions {
        extensions: Some("permessage-deflate; server_no_context_takeover"),
        ..Default::default()
    };
    write_accept(&request, &options, &mut out).unwrap();
    assert!(String::from_utf8(out).unwrap().contains(
        "\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n"
    ));
}

#[test]
fn parse_whole_split_and_bytewise_agree() {
    let mut bytes = RFC_REQUEST.as_bytes().to_vec();
    bytes.extend_from_slice(&[0x81, 0x85]); // the client's first frame, already here
    let limits = HeadLimits::default();
    let Parsed::Complete(whole) = RequestHead::parse(&bytes, &limits).unwrap() else {
        panic!()
    };
    assert_eq!(whole.head_len(), RFC_REQUEST.len());
    for len in 0..RFC_REQUEST.len() {
        assert_eq!(
            RequestHead::parse(&bytes[..len], &limits),
            Ok(Parsed::Partial),
            "{len}"
        );
    }
    for len in RFC_REQUEST.len()..=bytes.len() {
        let Parsed::Complete(head) = RequestHead::parse(&bytes[..len], &limits).unwrap() else {
            panic!()
        };
        assert_eq!(head, whole);
    }
}

#[test]
fn head_limits_answer_431() {
    let limits = HeadLimits {
        max_head_len: 256,
        max_headers: 8,
    };
    // Longer than the limit without an end: refused as soon as the limit is reached.
    let long = format!("GET / HTTP/1.1\r\nX-Pad: {}", "a".repeat(300));
    assert_eq!(
        RequestHead::parse(&long.as_bytes()[..255], &limits),
        Ok(Parsed::Partial)
    );
    assert_eq!(
        RequestHead::parse(&long.as_bytes()[..256], &limits),
        Err(HandshakeError::HeadTooLarge)
    );
    assert_eq!(HandshakeError::HeadTooLarge.status(), 431);
    // A complete head longer than the limit is refused too.
    let complete = format!("{long}\r\n\r\n");
    assert_eq!(
        RequestHead::parse(complete.as_bytes(), &limits),
        Err(HandshakeError::HeadTooLarge)
    );
    // Too many fields.
    let many = format!("GET / HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(9));
    assert_eq!(
        RequestHead::parse(many.as_bytes(), &limits),
        Err(HandshakeError::TooManyHeaders)
    );
    let eight = format!("GET / HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(8));
    assert!(matches!(
        RequestHead::parse(eight.as_bytes(), &limits),
        Ok(Parsed::Complete(_))
    ));
    // The default limit is 8 KiB.
    assert_eq!(HeadLimits::default().max_head_len, 8192);
}

#[test]
fn plain_http_requests_are_told_apart() {
    let head = parse(b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(!head.is_websocket_upgrade());
    assert!(
        parse(RFC_REQUEST.as_bytes())
            .unwrap()
            .is_websocket_upgrade()
    );
}

/// A deterministic nonce source for the in-memory pair (the load generator uses a real RNG).
fn nonce(seed: u8) -> [u8; 16] {
    std::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8 * 17))
}

/// A client and a server in memory: request → validate → accept → response check.
fn pair(
    request: &ClientRequest<'_>,
    choose: impl Fn(&RequestHead<'_>, &UpgradeOffer<'_>) -> (Option<String>, Option<String>),
) -> Result<(Option<String>, Vec<String>), ResponseError> {
    let mut wire = Vec::new();
    let client = ClientHandshake::new(request, nonce(7), &mut wire)?;
    let (head, server_side) = validate(&wire).expect("server accepts the client's request");
    let (protocol, extensions) = choose(&head, &server_side);
    let options = AcceptOptions {
        subprotocol: protocol.as_deref(),
        extensions: extensions.as_deref(),
        extra_headers: &[],
    };
    let mut response = Vec::new();
    write_accept(&server_side, &options, &mut response).expect("valid choice");
    response.extend_from_slice(&[0x81, 0x00]); // a frame right after the head
    for len in 0..response.len() - 2 {
        assert!(matches!(
            client.handle_response(&response[..len]),
            Ok(Parsed::Partial)
        ));
    }
    match client.handle_response(&response)? {
        Parsed::Complete(accepted) => {
            assert_eq!(accepted.head_len, response.len() - 2);
            Ok((
                accepted.subprotocol.map(str::to_string),
                accepted
                    .extensions
                    .iter()
                    .map(|e| e.name.to_string())
                    .collect(),
            ))
        }
        Parsed::Partial => panic!("partial"),
    }
}

#[test]
fn client_and_server_agree() {
    let request = ClientRequest {
        host: "127.0.0.1:9001",
        target: "/feed?symbols=AAPL",
        subprotocols: &["v2.feed", "v1.feed"],
        extensions: Some("permessage-deflate; client_max_window_bits"),
        extra_headers: &[("Authorization", "Bearer t0k3n")],
    };
    let result = pair(&request, |head, server| {
        assert_eq!(head.query(), Some("symbols=AAPL"));
        assert_eq!(head.header("authorization"), Some(&b"Bearer t0k3n"[..]));
        assert_eq!(server.subprotocols(), ["v2.feed", "v1.feed"]);
        (
            Some(server.subprotocols()[1].to_string()),
            Some("permessage-deflate; server_no_context_takeover".to_string()),
        )
    });
    assert_eq!(
        result,
        Ok((
            Some("v1.feed".to_string()),
            vec!["permessage-deflate".to_string()]
        ))
    );
    // No choice at all is fine too.
    assert_eq!(pair(&request, |_, _| (None, None)), Ok((None, vec![])));
}

/// Feeds the client a hand-written response.
fn client_check(response: &str) -> Result<(), ResponseError> {
    let mut wire = Vec::new();
    let request = ClientRequest {
        subprotocols: &["chat"],
        extensions: Some("x-a"),
        ..ClientRequest::new("localhost", "/")
    };
    let client = ClientHandshake::new(&request, *b"the sample nonce", &mut wire)?;
    match client.handle_response(response.as_bytes())? {
        Parsed::Complete(_) => Ok(()),
        Parsed::Partial => panic!("partial"),
    }
}

#[test]
fn client_refuses_bad_responses() {
    let good = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    assert_eq!(client_check(good), Ok(()));
    let with = |from: &str, to: &str| good.replacen(from, to, 1);
    let cases = [
        (
            with("101 Switching Protocols", "400 Bad Request"),
            ResponseError::Status(400),
        ),
        (
            with("Upgrade: websocket", "Upgrade: h2c"),
            ResponseError::NotWebSocketUpgrade,
        ),
        (
            with("Connection: Upgrade", "Connection: close"),
            ResponseError::ConnectionNotUpgrade,
        ),
        (
            with(
                "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
                "s3pPLMBiTxaQ9kYGzzhZRbK+xOA=",
            ),
            ResponseError::AcceptMismatch,
        ),
        (
            with("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", ""),
            ResponseError::AcceptMismatch,
        ),
        (
            with("\r\n\r\n", "\r\nSec-WebSocket-Protocol: superchat\r\n\r\n"),
            ResponseError::UnrequestedSubprotocol,
        ),
        (
            with(
                "\r\n\r\n",
                "\r\nSec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: chat\r\n\r\n",
            ),
            ResponseError::UnrequestedSubprotocol,
        ),
        (
            with("\r\n\r\n", "\r\nSec-WebSocket-Extensions: x-b\r\n\r\n"),
            ResponseError::UnrequestedExtension,
        ),
        (
            with("\r\n\r\n", "\r\nSec-WebSocket-Extensions: x-a;\r\n\r\n"),
            ResponseError::MalformedExtensions,
        ),
        (
            "HTTP/1.1 101\r\nBad Header\r\n\r\n".to_string(),
            ResponseError::MalformedHead,
        ),
        (with("HTTP/1.1", "HTTP/1.0"), ResponseError::MalformedHead),
        (
            with("\r\n\r\n", "\r\nSec-WebSocket-Extensions: x-a, X-A\r\n\r\n"),
            ResponseError::DuplicateExtension,
        ),
    ];
    for (response, error) in cases {
        assert_eq!(client_check(&response), Err(error), "{response}");
    }
    assert_eq!(
        client_check(&with(
            "\r\n\r\n",
            "\r\nSec-WebSocket-Protocol: chat\r\nSec-WebSocket-Extensions: x-a\r\n\r\n"
        )),
        Ok(())
    );
}

#[test]
fn client_refuses_values_that_would_break_the_request() {
    let mut out = Vec::new();
    for request in [
        ClientRequest::new("host\r\nX: y", "/"),
        ClientRequest::new("host", "/a b"),
        ClientRequest::new("host", ""),
        ClientRequest::new("host", "chat"),
        ClientRequest {
            subprotocols: &["a,b"],
            ..ClientRequest::new("h", "/")
        },
        ClientRequest {
            extra_headers: &[("X", "1\n2")],
            ..ClientRequest::new("h", "/")
        },
    ] {
        assert_eq!(
            ClientHandshake::new(&request, [0; 16], &mut out).err(),
            Some(ResponseError::InvalidRequestValue),
            "{request:?}"
        );
    }
}
