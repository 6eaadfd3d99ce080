//! The echo mode with `--deflate` against a compressing echo server made here from lanes-proto's
//! server role (negotiation, `Deflater`, and the server session inflating): compressed echoes with and without context
//! takeover pass the echo check and are counted on the wire, and a server that declines
//! compression makes the run fail with a message.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::{SocketAddr, TcpStream};
use std::ops::ControlFlow;
use std::process::Command;

use lanes_proto::OpCode;
use lanes_proto::deflate::{DeflateConfig, SendAs, negotiate};
use lanes_proto::frame::{RSV1, Role};
use lanes_proto::session::{Event, SessionConfig};
use serde_json::Value;
use support::{accept_upgrade_with, number, push_frame, serve_session, spawn_server};

/// Starts an echo server on a free loopback port that negotiates permessage-deflate under
/// `config` (disabled: it never does); it runs until the test process ends.
fn echo_server(config: DeflateConfig) -> SocketAddr {
    spawn_server(move |stream| serve(stream, &config))
}

fn serve(mut stream: TcpStream, config: &DeflateConfig) {
    let Some((buf, agreed)) = accept_upgrade_with(&mut stream, |offer| {
        let agreed = negotiate(offer.extensions(), config);
        (
            agreed.as_ref().map(|a| a.response.clone()),
            agreed.map(|a| a.params),
        )
    }) else {
        return;
    };
    let mut deflater = agreed.map(|p| p.deflater(Role::Server, config));
    // Every message echoed as one message each, compressed when agreed; the session inflates
    // what comes compressed, and answers a close frame after the echoes before it.
    serve_session(
        &mut stream,
        buf,
        SessionConfig::server(),
        agreed.as_ref(),
        |event, out| {
            let (opcode, message) = match event {
                Event::Text(text) => (OpCode::Text, text.as_bytes()),
                Event::Binary(bytes) => (OpCode::Binary, bytes),
                _ => return ControlFlow::Continue(()),
            };
            let mut compressed = Vec::new();
            let (rsv, payload) = match deflater.as_mut() {
                Some(deflater) => match deflater.compress(message, &mut compressed) {
                    SendAs::Compressed => (RSV1, &compressed[..]),
                    SendAs::Uncompressed => (0, message),
                },
                None => (0, message),
            };
            push_frame(out, opcode, rsv, payload);
            ControlFlow::Continue(())
        },
    );
}

fn enabled() -> DeflateConfig {
    DeflateConfig {
        enabled: true,
        ..DeflateConfig::default()
    }
}

/// Runs a short echo load with `--deflate mode`; returns the exit code, the JSON summary (when
/// there is one) and stderr.
fn run(addr: SocketAddr, mode: &str, extra: &[&str]) -> (i32, Option<Value>, String) {
    let addr = addr.to_string();
    let mut args = vec![
        "--addr",
        &addr,
        "--json",
        "--quiet",
        "--duration",
        "0.5",
        "--warmup",
        "0.1",
        "echo",
        "--deflate",
        mode,
    ];
    args.extend_from_slice(extra);
    let output = Command::new(env!("CARGO_BIN_EXE_lanes-load"))
        .args(&args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    (
        output.status.code().unwrap_or(-1),
        serde_json::from_str(stdout.trim()).ok(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn compressed_echoes_pass_with_and_without_context_takeover() {
    let addr = echo_server(enabled());
    for (mode, no_takeover) in [("takeover", false), ("no-takeover", true)] {
        for extra in [
            &["-c", "4", "-d", "2", "-s", "1024", "--kind", "text"][..],
            &["-c", "2", "-d", "1", "-s", "16384"][..],
        ] {
            let (code, summary, stderr) = run(addr, mode, extra);
            let summary = summary.unwrap_or_else(|| panic!("{mode} {extra:?}: {stderr}"));
            assert_eq!(code, 0, "{mode} {extra:?}: {summary} {stderr}");
            assert_eq!(summary["errors"], 0, "{summary}");
            assert_eq!(summary["deflate"], mode);
            let params = &summary["deflate_params"];
            assert_eq!(
                params["server_no_context_takeover"], no_takeover,
                "{summary}"
            );
            assert_eq!(
                params["client_no_context_takeover"], no_takeover,
                "{summary}"
            );
            let messages = number(&summary, "messages");
            assert!(messages > 0, "{summary}");
            // Every message both ways went compressed, and smaller.
            assert_eq!(
                number(&summary, "compressed_received"),
                messages,
                "{summary}"
            );
            assert_eq!(
                number(&summary, "compressed_sent"),
                number(&summary, "sent"),
                "{summary}"
            );
            let payload_received = number(&summary, "payload_bytes_received");
            assert_eq!(
                payload_received,
                messages * number(&summary, "size"),
                "{summary}"
            );
            assert!(
                number(&summary, "wire_bytes_received") < payload_received,
                "{summary}"
            );
            assert!(
                number(&summary, "wire_bytes_sent") < number(&summary, "payload_bytes_sent"),
                "{summary}"
            );
        }
    }
}

#[test]
fn off_sends_no_offer_and_counts_the_payload_as_the_wire() {
    let addr = echo_server(enabled());
    let (code, summary, stderr) = run(addr, "off", &["-c", "2", "-s", "1024"]);
    let summary = summary.unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(code, 0, "{summary} {stderr}");
    assert_eq!(summary["errors"], 0);
    assert!(summary["deflate_params"].is_null(), "{summary}");
    assert_eq!(number(&summary, "compressed_received"), 0);
    assert_eq!(
        number(&summary, "wire_bytes_received"),
        number(&summary, "payload_bytes_received")
    );
}

#[test]
fn a_server_that_declines_compression_fails_the_run_with_a_message() {
    let addr = echo_server(DeflateConfig::default());
    for mode in ["takeover", "no-takeover"] {
        let (code, summary, stderr) = run(addr, mode, &["-c", "2"]);
        assert_eq!(code, 1, "{mode}: {stderr}");
        assert!(summary.is_none(), "{mode}: {summary:?}");
        assert!(
            stderr.contains("declined permessage-deflate"),
            "{mode}: {stderr}"
        );
    }
}
