//! permessage-deflate over loopback: negotiation, compressed echoes with and without context
//! takeover, fragmented compressed messages, the inflated size limit, corrupt data, and
//! published messages to subscribers that compress differently.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;

use lanes::{Accept, Config, DeflateConfig, Handler, Message, Request, ServerHandle, Upgrade, Ws};
use lanes_proto::OpCode;
use lanes_proto::deflate::{DeflateParams, Deflater, SendAs};
use lanes_proto::frame::{RSV1, Role};
use support::{Client, Frame, start_server};

/// Echoes, and answers `sub:T` with a subscription.
struct EchoHub;

impl Handler for EchoHub {
    type State = ();

    fn on_upgrade(&mut self, _: &Request<'_>) -> Upgrade<()> {
        Upgrade::Accept(Accept::new(()))
    }

    fn on_message(&mut self, ws: &mut Ws<'_>, _: &mut (), message: Message<'_>) {
        match message {
            Message::Text(text) => {
                if let Some(topic) = text.strip_prefix("sub:") {
                    ws.subscribe(topic);
                    ws.send_text("subscribed");
                } else {
                    ws.send_text(text);
                }
            }
            Message::Binary(bytes) => {
                ws.send_binary(bytes);
            }
        }
    }
}

fn start(deflate: DeflateConfig, max_message_len: u64) -> (ServerHandle, SocketAddr) {
    let mut config = Config::default();
    config.deflate = deflate;
    config.limits.max_message_len = max_message_len;
    let handle = start_server(2, config, |_| EchoHub);
    let addr = handle.local_addr();
    (handle, addr)
}

fn on() -> DeflateConfig {
    DeflateConfig {
        enabled: true,
        ..DeflateConfig::default()
    }
}

/// The client's half of a negotiated extension (its session inflates what the server
/// compressed).
struct Peer {
    client: Client,
    deflater: Deflater,
}

impl Peer {
    fn connect(addr: SocketAddr, offer: &str, params: DeflateParams) -> (Peer, String) {
        let (mut client, answer) = Client::connect_with_extensions(addr, offer);
        if answer.starts_with("permessage-deflate") {
            client.enable_deflate(&params);
        }
        let every_message = DeflateConfig {
            min_compress_len: 0,
            ..on()
        };
        let peer = Peer {
            client,
            deflater: params.deflater(Role::Client, &every_message),
        };
        (peer, answer)
    }

    /// Sends a message compressed (RSV1 on its one frame).
    fn send_compressed(&mut self, opcode: OpCode, message: &[u8]) {
        let mut out = Vec::new();
        assert_eq!(
            self.deflater.compress(message, &mut out),
            SendAs::Compressed
        );
        self.client
            .send_raw(&Client::encode_rsv(opcode, RSV1, &out));
    }

    /// The next message (inflated when it came compressed), and how it came.
    fn recv(&mut self) -> (Vec<u8>, Frame) {
        let frame = self.client.recv();
        (frame.payload.clone(), frame)
    }
}

fn json(i: usize) -> Vec<u8> {
    format!(
        r#"{{"symbol":"LANES","seq":{i},"bid":101.25,"ask":101.5,"venue":"loopback","note":"{}"}}"#,
        "the same words again and again ".repeat(8)
    )
    .into_bytes()
}

#[test]
fn compressed_messages_round_trip_with_context_takeover() {
    let (_server, addr) = start(on(), 1 << 20);
    let (mut peer, answer) = Peer::connect(
        addr,
        "permessage-deflate; client_max_window_bits",
        DeflateParams::default(),
    );
    assert!(answer.starts_with("permessage-deflate"), "{answer:?}");
    let mut sizes = Vec::new();
    for i in 0..50 {
        let message = json(i);
        let opcode = if i % 2 == 0 {
            OpCode::Text
        } else {
            OpCode::Binary
        };
        peer.send_compressed(opcode, &message);
        let (echo, frame) = peer.recv();
        assert_eq!(frame.opcode, opcode);
        assert_eq!(
            frame.rsv,
            RSV1,
            "a {} byte message comes back compressed",
            message.len()
        );
        assert_eq!(echo, message);
        sizes.push(frame.wire_len);
    }
    // Context takeover: later messages refer back to earlier ones and shrink.
    assert!(sizes[10] * 2 < sizes[0], "{sizes:?}");

    // Short messages go back as they are; uncompressed input is fine too.
    peer.client.send(true, OpCode::Text, b"short");
    let (echo, frame) = peer.recv();
    assert_eq!((echo.as_slice(), frame.rsv), (&b"short"[..], 0));

    // A compressed message in three fragments: RSV1 on the first only.
    let message = json(99);
    let mut compressed = Vec::new();
    assert_eq!(
        peer.deflater.compress(&message, &mut compressed),
        SendAs::Compressed
    );
    let (a, rest) = compressed.split_at(compressed.len() / 3);
    let (b, c) = rest.split_at(rest.len() / 2);
    let mut first = Client::encode_rsv(OpCode::Text, RSV1, a);
    first[0] &= 0x7f; // not FIN
    peer.client.send_raw(&first);
    peer.client.send(false, OpCode::Continuation, b);
    peer.client.send(true, OpCode::Continuation, c);
    assert_eq!(peer.recv().0, message);
}

#[test]
fn without_context_takeover_each_message_stands_alone() {
    let deflate = DeflateConfig {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        ..on()
    };
    let (_server, addr) = start(deflate, 1 << 20);
    let params = DeflateParams {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        ..DeflateParams::default()
    };
    let (mut peer, answer) = Peer::connect(addr, "permessage-deflate", params);
    assert!(answer.contains("server_no_context_takeover"), "{answer:?}");
    assert!(answer.contains("client_no_context_takeover"), "{answer:?}");
    let mut sizes = Vec::new();
    for _ in 0..5 {
        let message = json(7);
        peer.send_compressed(OpCode::Text, &message);
        let (echo, frame) = peer.recv();
        assert_eq!(echo, message);
        sizes.push(frame.wire_len);
    }
    // The same message compresses to the same size every time: nothing carried over.
    assert!(sizes.iter().all(|&s| s == sizes[0]), "{sizes:?}");
}

#[test]
fn a_deflate_bomb_closes_with_1009_and_corrupt_data_with_1002() {
    let (_server, addr) = start(on(), 64 * 1024);
    let (mut bomb, _) = Peer::connect(addr, "permessage-deflate", DeflateParams::default());
    // 10 MiB of zeros compresses to about 10 KiB: under every frame limit, far over the
    // message limit once inflated.
    let zeros = vec![0u8; 10 << 20];
    bomb.send_compressed(OpCode::Binary, &zeros);
    let close = bomb.client.recv();
    assert_eq!(close.close_code(), Some(1009));

    let (mut corrupt, _) = Peer::connect(addr, "permessage-deflate", DeflateParams::default());
    corrupt
        .client
        .send_raw(&Client::encode_rsv(OpCode::Binary, RSV1, &[0xff; 32]));
    assert_eq!(corrupt.client.recv().close_code(), Some(1002));

    // Others are still served.
    let (mut fine, _) = Peer::connect(addr, "permessage-deflate", DeflateParams::default());
    fine.send_compressed(OpCode::Text, &json(1));
    assert_eq!(fine.recv().0, json(1));
}

#[test]
fn rsv1_needs_the_extension_and_an_off_config_declines_it() {
    let (_server, addr) = start(DeflateConfig::default(), 1 << 20);
    let (mut client, answer) = Client::connect_with_extensions(addr, "permessage-deflate");
    assert_eq!(answer, "", "the extension is off by default");
    client.send_raw(&Client::encode_rsv(
        OpCode::Text,
        RSV1,
        b"\xf2\x48\xcd\xc9\xc9\x07\x00",
    ));
    assert_eq!(client.recv().close_code(), Some(1002));

    // Malformed offers are declined, the connection still opens without the extension.
    let (_server, addr) = start(on(), 1 << 20);
    let (_client, answer) =
        Client::connect_with_extensions(addr, "permessage-deflate; server_max_window_bits=99");
    assert_eq!(answer, "");
}

#[test]
fn published_messages_reach_subscribers_that_compress_differently() {
    let (server, addr) = start(on(), 1 << 20);
    let mut plain = Client::connect(addr);
    let (mut takeover, _) = Peer::connect(addr, "permessage-deflate", DeflateParams::default());
    let shared_params = DeflateParams {
        server_no_context_takeover: true,
        ..DeflateParams::default()
    };
    let (mut shared, answer) = Peer::connect(
        addr,
        "permessage-deflate; server_no_context_takeover",
        shared_params,
    );
    assert!(answer.contains("server_no_context_takeover"));
    plain.send(true, OpCode::Text, b"sub:feed");
    assert_eq!(plain.recv().payload, b"subscribed");
    for peer in [&mut takeover, &mut shared] {
        peer.client.send(true, OpCode::Text, b"sub:feed");
        assert_eq!(peer.recv().0, b"subscribed");
    }
    let remote = server.remote();
    for i in 0..20 {
        remote
            .publish_text("feed", std::str::from_utf8(&json(i)).unwrap())
            .unwrap();
    }
    for i in 0..20 {
        let frame = plain.recv();
        assert_eq!((frame.rsv, frame.payload), (0, json(i)));
        let (message, frame) = takeover.recv();
        assert_eq!((frame.rsv, message), (RSV1, json(i)));
        let (message, frame) = shared.recv();
        assert_eq!((frame.rsv, message), (RSV1, json(i)));
    }
}
