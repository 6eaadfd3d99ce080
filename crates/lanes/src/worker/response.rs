//! The HTTP answers a worker writes before a connection is a WebSocket: an application's page
//! or refusal (a 500 in their place when they cannot be written as given), and lanes' own
//! error answers.

use lanes_proto::handshake::{write_http_response, write_reject};

use crate::answer::HttpResponse;

/// Header fields as the protocol crate's writers take them.
pub(super) fn header_pairs(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect()
}

/// Writes an application's plain HTTP answer, or a 500 if it cannot be sent as given.
pub(super) fn write_plain(out: &mut Vec<u8>, answer: &HttpResponse) {
    let headers = header_pairs(&answer.headers);
    if write_http_response(out, answer.status, &headers, &answer.body).is_err() {
        out.clear();
        let _ = write_reject(out, 500, &[], b"invalid response from the application");
    }
}

/// One of lanes' own error answers: `status` (400-599) with a plain-text `body`.
pub(super) fn error_response(status: u16, body: &[u8]) -> Vec<u8> {
    let mut response = Vec::new();
    let _ = write_reject(&mut response, status, &[], body);
    response
}

/// Writes an application's refusal of an upgrade, or a 500 if it cannot be sent as given.
pub(super) fn write_refusal(out: &mut Vec<u8>, refusal: &HttpResponse) {
    let headers = header_pairs(&refusal.headers);
    if write_reject(out, refusal.status, &headers, &refusal.body).is_err() {
        out.clear();
        let _ = write_reject(out, 500, &[], b"invalid refusal from the application");
    }
}
