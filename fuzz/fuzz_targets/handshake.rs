//! The server handshake parser and validator on arbitrary bytes.
//!
//! Oracles: parsing every prefix gives `Partial` until the complete head (and then the same
//! result as the whole input); a valid request yields a 101 response that a client-side HTTP
//! parser reads back with the right accept value; every error yields a well-formed response
//! with the error's status.
#![no_main]

use lanes_proto::handshake::{
    AcceptOptions, ClientHandshake, ClientRequest, HeadLimits, Parsed, RequestHead, UpgradeOffer, accept_key, write_accept,
};
use libfuzzer_sys::fuzz_target;

fn parse_response(bytes: &[u8]) -> (u16, Vec<(String, Vec<u8>)>) {
    let mut headers = [httparse_header(); 32];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        other => panic!("response does not parse: {other:?}"),
    }
    let fields = response
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
        .collect();
    (response.code.unwrap_or(0), fields)
}

fn httparse_header() -> httparse::Header<'static> {
    httparse::EMPTY_HEADER
}

fuzz_target!(|input: &[u8]| {
    let limits = HeadLimits { max_head_len: 2048, max_headers: 24 };
    // The client's response check on the same bytes: never panics, and a complete response
    // never claims more bytes than it was given.
    let mut request = Vec::new();
    let request_line = ClientRequest { subprotocols: &["chat"], extensions: Some("x-a"), ..ClientRequest::new("h", "/") };
    let client = ClientHandshake::new(&request_line, [7; 16], &mut request).expect("valid request").with_limits(limits);
    if let Ok(Parsed::Complete(response)) = client.handle_response(input) {
        assert!(response.head_len <= input.len());
        assert!(response.subprotocol.is_none_or(|p| p == "chat"));
    }
    let whole = RequestHead::parse(input, &limits);
    // Every prefix: Partial, or the same outcome as the whole once the head is complete.
    if let Ok(Parsed::Complete(head)) = &whole {
        let step = if head.head_len() <= 512 { 1 } else { 7 };
        for len in (0..head.head_len()).step_by(step) {
            match RequestHead::parse(&input[..len], &limits) {
                Ok(Parsed::Partial) => {}
                other => panic!("prefix of {len} bytes of a valid head gave {other:?}"),
            }
        }
    }
    match whole {
        Ok(Parsed::Partial) => assert!(input.len() < limits.max_head_len),
        Err(error) => {
            let mut out = Vec::new();
            error.write_response(&mut out);
            let (status, _) = parse_response(&out);
            assert_eq!(status, error.status());
        }
        Ok(Parsed::Complete(head)) => {
            assert!(head.head_len() <= input.len() && head.head_len() <= limits.max_head_len);
            match UpgradeOffer::validate(&head) {
                Err(error) => {
                    let mut out = Vec::new();
                    error.write_response(&mut out);
                    let (status, fields) = parse_response(&out);
                    assert_eq!(status, error.status());
                    if status == 426 {
                        assert!(fields.iter().any(|(n, v)| n == "sec-websocket-version" && v == b"13"));
                        assert!(fields.iter().any(|(n, v)| n == "upgrade" && v == b"websocket"));
                    }
                }
                Ok(request) => {
                    let subprotocol = request.subprotocols().first().copied();
                    let extension = request.extensions().first().map(|e| e.name);
                    let options = AcceptOptions {
                        subprotocol,
                        extensions: extension,
                        extra_headers: &[],
                    };
                    let mut out = Vec::new();
                    write_accept(&request, &options, &mut out).expect("offered choices accepted");
                    let (status, fields) = parse_response(&out);
                    assert_eq!(status, 101);
                    let accept = accept_key(request.key());
                    assert!(fields.iter().any(|(n, v)| n == "sec-websocket-accept" && v[..] == accept[..]));
                    if let Some(p) = subprotocol {
                        assert!(fields.iter().any(|(n, v)| n == "sec-websocket-protocol" && v == p.as_bytes()));
                    }
                }
            }
        }
    }
});
