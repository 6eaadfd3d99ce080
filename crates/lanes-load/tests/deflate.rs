//! The echo mode with `--deflate` against a compressing echo server made here from lanes-proto's
//! server role (negotiation, `Deflater`, `Inflater`): compressed echoes with and without context
//! takeover pass the echo check and are counted on the wire, and a server that declines
//! compression makes the run fail with a message.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;

use lanes_proto::OpCode;
use lanes_proto::deflate::{DeflateConfig, Negotiated, SendAs, negotiate};
use lanes_proto::frame::{
    FrameConfig, FrameHeader, HeaderDecode, MAX_HEADER_LEN, RSV1, Role, decode_header,
};
use lanes_proto::handshake::{
    AcceptOptions, HeadLimits, Parsed, RequestHead, UpgradeOffer, write_accept,
};
use lanes_proto::mask::apply_mask;
use serde_json::Value;

/// Starts an echo server on a free loopback port that negotiates permessage-deflate under
/// `config` (disabled: it never does); it runs until the test process ends.
fn echo_server(config: DeflateConfig) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            std::thread::spawn(move || serve(stream, &config));
        }
    });
    addr
}

fn serve(mut stream: TcpStream, config: &DeflateConfig) {
    stream.set_nodelay(true).unwrap();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let (head_len, agreed) = loop {
        let n = stream.read(&mut chunk).unwrap_or(0);
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Parsed::Complete(head) = RequestHead::parse(&buf, &HeadLimits::default()).unwrap() {
            let offer = UpgradeOffer::validate(&head).unwrap();
            let agreed: Option<Negotiated> = negotiate(offer.extensions(), config);
            let options = AcceptOptions {
                extensions: agreed.as_ref().map(|a| a.response.as_str()),
                ..AcceptOptions::default()
            };
            let mut response = Vec::new();
            write_accept(&offer, &options, &mut response).unwrap();
            stream.write_all(&response).unwrap();
            break (head.head_len(), agreed.map(|a| a.params));
        }
    };
    buf.drain(..head_len);
    let mut codec = agreed.map(|p| {
        (
            p.deflater(Role::Server, config),
            p.inflater(Role::Server, 1 << 20),
        )
    });
    let frames = FrameConfig {
        allowed_rsv: if codec.is_some() { RSV1 } else { 0 },
        ..FrameConfig::server()
    };
    let mut out = Vec::new();
    let mut closed = false;
    loop {
        // Every whole frame in the buffer, echoed as one message each; a close frame is
        // answered with one, after the echoes before it, and ends the connection.
        let mut at = 0;
        out.clear();
        while let HeaderDecode::Complete { header, header_len } =
            decode_header(&buf[at..], &frames).unwrap()
        {
            let start = at + header_len;
            let end = start + header.payload_len as usize;
            if end > buf.len() {
                break;
            }
            assert!(header.fin, "lanes-load sends whole messages");
            let mut payload = buf[start..end].to_vec();
            apply_mask(&mut payload, header.mask.unwrap(), 0);
            at = end;
            if header.opcode == OpCode::Close {
                let mut head = [0u8; MAX_HEADER_LEN];
                let n =
                    FrameHeader::new(true, OpCode::Close, payload.len() as u64).encode(&mut head);
                out.extend_from_slice(&head[..n]);
                out.extend_from_slice(&payload);
                closed = true;
                break;
            }
            if header.opcode.is_control() {
                continue;
            }
            if header.rsv & RSV1 != 0 {
                let (_, inflater) = codec.as_mut().unwrap();
                let mut inflated = Vec::new();
                inflater.handle_data(&payload, &mut inflated).unwrap();
                inflater.handle_message_end(&mut inflated).unwrap();
                payload = inflated;
            }
            let mut compressed = Vec::new();
            let rsv = match codec.as_mut() {
                Some((deflater, _)) => match deflater.compress(&payload, &mut compressed) {
                    SendAs::Compressed => {
                        payload = compressed;
                        RSV1
                    }
                    SendAs::Uncompressed => 0,
                },
                None => 0,
            };
            let mut head = [0u8; MAX_HEADER_LEN];
            let n = FrameHeader::new(true, header.opcode, payload.len() as u64)
                .with_rsv(rsv)
                .encode(&mut head);
            out.extend_from_slice(&head[..n]);
            out.extend_from_slice(&payload);
        }
        buf.drain(..at);
        let failed = !out.is_empty() && stream.write_all(&out).is_err();
        if failed || closed {
            return;
        }
        let n = stream.read(&mut chunk).unwrap_or(0);
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
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

fn number(summary: &Value, key: &str) -> u64 {
    summary[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} in {summary}"))
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
