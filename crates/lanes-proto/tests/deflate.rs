//! permessage-deflate (RFC 7692): the negotiation examples and rules of §5 and §7.1, the
//! message examples of §7.2.3 byte-exact, round trips over every window, level and context
//! setting with input split at every byte, the size limit against a deflate bomb, corrupt data,
//! and the frame rules for RSV1.

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::borrow::Cow;

use proptest::strategy::Strategy;

use lanes_proto::assembler::{FrameKind, MessageAssembler, MessageKind};
use lanes_proto::deflate::{DeflateConfig, DeflateParams, Deflater, Inflater, SendAs, negotiate};
use lanes_proto::frame::{FrameConfig, HeaderDecode, RSV1, Role, decode_header};
use lanes_proto::handshake::{
    AcceptOptions, ExtensionOffer, ExtensionParam, HeadLimits, Parsed, RequestHead, UpgradeOffer,
    write_accept,
};
use lanes_proto::{CloseCode, ProtocolError};

const HELLO_COMPRESSED: &[u8] = &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
const HELLO_AGAIN_COMPRESSED: &[u8] = &[0xf2, 0x00, 0x11, 0x00, 0x00];
/// The second "Hello" at level 1: another valid encoding of the same back-reference.
const HELLO_AGAIN_COMPRESSED_L1: &[u8] = &[0x02, 0x13, 0x00, 0x00];

fn enabled() -> DeflateConfig {
    DeflateConfig {
        enabled: true,
        ..DeflateConfig::default()
    }
}

/// Every message compressed, whatever its length.
fn always() -> DeflateConfig {
    DeflateConfig {
        min_compress_len: 0,
        ..enabled()
    }
}

/// Parses a `Sec-WebSocket-Extensions` value the way the handshake does, through a request.
fn with_offers<R>(value: &str, f: impl FnOnce(&[ExtensionOffer<'_>]) -> R) -> R {
    let request = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Extensions: {value}\r\n\r\n"
    );
    let Ok(Parsed::Complete(head)) = RequestHead::parse(request.as_bytes(), &HeadLimits::default())
    else {
        panic!("bad request for {value}")
    };
    let offer = UpgradeOffer::validate(&head).unwrap();
    f(offer.extensions())
}

/// The response to `value` under `config`, or `None` when nothing was accepted.
fn respond(value: &str, config: &DeflateConfig) -> Option<String> {
    with_offers(value, |offers| {
        negotiate(offers, config).map(|n| n.response)
    })
}

fn inflate_message(inflater: &mut Inflater, pieces: &[&[u8]]) -> Result<Vec<u8>, ProtocolError> {
    let mut out = Vec::new();
    for piece in pieces {
        inflater.handle_data(piece, &mut out)?;
    }
    inflater.handle_message_end(&mut out)?;
    Ok(out)
}

// ---- Negotiation (RFC 7692 §5, §7.1) -------------------------------------------------------

#[test]
fn plain_offer_is_accepted_with_defaults() {
    let negotiated =
        with_offers("permessage-deflate", |offers| negotiate(offers, &enabled())).unwrap();
    assert_eq!(negotiated.response, "permessage-deflate");
    assert_eq!(negotiated.params, DeflateParams::default());
    assert_eq!(negotiated.offer_index, 0);
}

#[test]
fn disabled_config_accepts_nothing() {
    assert_eq!(
        respond("permessage-deflate", &DeflateConfig::default()),
        None
    );
}

#[test]
fn browser_offer() {
    // Chrome and Firefox: `permessage-deflate; client_max_window_bits`.
    let offer = "permessage-deflate; client_max_window_bits";
    assert_eq!(respond(offer, &enabled()).unwrap(), "permessage-deflate");
    let config = DeflateConfig {
        client_max_window_bits: 10,
        client_no_context_takeover: true,
        ..enabled()
    };
    let negotiated = with_offers(offer, |offers| negotiate(offers, &config)).unwrap();
    assert_eq!(
        negotiated.response,
        "permessage-deflate; client_no_context_takeover; client_max_window_bits=10"
    );
    assert_eq!(negotiated.params.client_max_window_bits, 10);
    assert!(negotiated.params.client_no_context_takeover);
}

#[test]
fn rfc_7692_section_5_examples() {
    // §5: "permessage-deflate; client_max_window_bits=10" with a fallback offer.
    let offers = "permessage-deflate; client_max_window_bits; server_max_window_bits=10, \
                  permessage-deflate; client_max_window_bits";
    let negotiated = with_offers(offers, |o| negotiate(o, &enabled())).unwrap();
    assert_eq!(negotiated.offer_index, 0);
    assert_eq!(
        negotiated.response,
        "permessage-deflate; server_max_window_bits=10"
    );
    assert_eq!(negotiated.params.server_max_window_bits, 10);
    // §7.1.2.1: the server may answer with a smaller window than asked.
    let config = DeflateConfig {
        server_max_window_bits: 9,
        ..enabled()
    };
    assert_eq!(
        respond("permessage-deflate; server_max_window_bits=10", &config).unwrap(),
        "permessage-deflate; server_max_window_bits=9"
    );
    // ... and announce its own smaller window unasked.
    assert_eq!(
        respond("permessage-deflate", &config).unwrap(),
        "permessage-deflate; server_max_window_bits=9"
    );
    // The parameter is echoed even at 15 when the client sent it (the client expects it).
    assert_eq!(
        respond("permessage-deflate; server_max_window_bits=15", &enabled()).unwrap(),
        "permessage-deflate; server_max_window_bits=15"
    );
}

#[test]
fn rfc_7692_section_7_1_1_context_takeover() {
    // §7.1.1.1: a request for server_no_context_takeover is honoured and echoed.
    let negotiated = with_offers("permessage-deflate; server_no_context_takeover", |o| {
        negotiate(o, &enabled())
    })
    .unwrap();
    assert_eq!(
        negotiated.response,
        "permessage-deflate; server_no_context_takeover"
    );
    assert!(negotiated.params.server_no_context_takeover);
    // ... and may be included unasked.
    let config = DeflateConfig {
        server_no_context_takeover: true,
        ..enabled()
    };
    assert_eq!(
        respond("permessage-deflate", &config).unwrap(),
        "permessage-deflate; server_no_context_takeover"
    );
    // §7.1.1.2: client_no_context_takeover may be sent whether offered or not.
    let config = DeflateConfig {
        client_no_context_takeover: true,
        ..enabled()
    };
    assert_eq!(
        respond("permessage-deflate", &config).unwrap(),
        "permessage-deflate; client_no_context_takeover"
    );
    assert_eq!(
        respond("permessage-deflate; client_no_context_takeover", &enabled()).unwrap(),
        "permessage-deflate; client_no_context_takeover"
    );
}

#[test]
fn rfc_7692_section_7_1_2_2_client_window() {
    // Without the parameter in the offer, the response must not have it (and we inflate 15).
    let config = DeflateConfig {
        client_max_window_bits: 9,
        ..enabled()
    };
    let negotiated = with_offers("permessage-deflate", |o| negotiate(o, &config)).unwrap();
    assert_eq!(negotiated.response, "permessage-deflate");
    assert_eq!(negotiated.params.client_max_window_bits, 15);
    // With a value, the smaller one wins.
    assert_eq!(
        respond("permessage-deflate; client_max_window_bits=12", &config).unwrap(),
        "permessage-deflate; client_max_window_bits=9"
    );
    assert_eq!(
        respond("permessage-deflate; client_max_window_bits=8", &config).unwrap(),
        "permessage-deflate; client_max_window_bits=8"
    );
    // At 15 there is nothing to say.
    assert_eq!(
        respond("permessage-deflate; client_max_window_bits=15", &enabled()).unwrap(),
        "permessage-deflate"
    );
    // A quoted value is the same value (RFC 7692 §7: quoted-string syntax allowed).
    assert_eq!(
        respond(
            "permessage-deflate; client_max_window_bits=\"10\"",
            &enabled()
        )
        .unwrap(),
        "permessage-deflate; client_max_window_bits=10"
    );
}

#[test]
fn all_parameters_at_once() {
    let config = DeflateConfig {
        server_max_window_bits: 12,
        client_max_window_bits: 11,
        ..enabled()
    };
    let offer = "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=13; client_max_window_bits=14";
    let negotiated = with_offers(offer, |o| negotiate(o, &config)).unwrap();
    assert_eq!(
        negotiated.response,
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=12; client_max_window_bits=11"
    );
    assert_eq!(
        negotiated.params,
        DeflateParams {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 12,
            client_max_window_bits: 11,
        }
    );
}

#[test]
fn invalid_offers_are_declined_and_the_next_is_tried() {
    for bad in [
        "permessage-deflate; x-unknown",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
        "permessage-deflate; server_max_window_bits=10; SERVER_MAX_WINDOW_BITS=11",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover=true",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; client_max_window_bits=0",
        "permessage-deflate; client_max_window_bits=abc",
        "permessage-deflate; client_max_window_bits=\"9a\"",
    ] {
        assert_eq!(respond(bad, &enabled()), None, "{bad}");
        let with_fallback = format!("{bad}, permessage-deflate; client_max_window_bits=12");
        let negotiated = with_offers(&with_fallback, |o| negotiate(o, &enabled())).unwrap();
        assert_eq!(negotiated.offer_index, 1, "{bad}");
        assert_eq!(
            negotiated.response,
            "permessage-deflate; client_max_window_bits=12"
        );
    }
}

#[test]
fn other_extensions_are_skipped_and_names_ignore_case() {
    let negotiated = with_offers(
        "x-webkit-deflate-frame, Permessage-Deflate; Server_No_Context_Takeover",
        |o| negotiate(o, &enabled()),
    )
    .unwrap();
    assert_eq!(negotiated.offer_index, 1);
    assert!(negotiated.params.server_no_context_takeover);
    assert_eq!(respond("x-webkit-deflate-frame", &enabled()), None);
    assert_eq!(negotiate(&[], &enabled()), None);
}

#[test]
fn window_bits_8_is_agreed_and_compressed_with_9() {
    // The client asks for 8: we agree to 8 and compress with 9, as zlib does.
    let negotiated = with_offers("permessage-deflate; server_max_window_bits=8", |o| {
        negotiate(o, &always())
    })
    .unwrap();
    assert_eq!(
        negotiated.response,
        "permessage-deflate; server_max_window_bits=8"
    );
    let mut deflater = negotiated.params.deflater(Role::Server, &always());
    let mut inflater = negotiated.params.inflater(Role::Client, 1 << 20);
    let message: Vec<u8> = (0..4000u32).map(|i| (i % 700) as u8).collect();
    let mut out = Vec::new();
    assert_eq!(deflater.compress(&message, &mut out), SendAs::Compressed);
    assert_eq!(inflate_message(&mut inflater, &[&out]).unwrap(), message);
}

#[test]
fn negotiated_response_fits_write_accept() {
    let request = "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";
    let Ok(Parsed::Complete(head)) = RequestHead::parse(request.as_bytes(), &HeadLimits::default())
    else {
        panic!()
    };
    let offer = UpgradeOffer::validate(&head).unwrap();
    let config = DeflateConfig {
        client_max_window_bits: 12,
        ..enabled()
    };
    let negotiated = negotiate(offer.extensions(), &config).unwrap();
    let mut out = Vec::new();
    let options = AcceptOptions {
        extensions: Some(&negotiated.response),
        ..AcceptOptions::default()
    };
    write_accept(&offer, &options, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains(
        "\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=12\r\n"
    ));
}

#[test]
fn hand_built_offers_work_too() {
    let offers = [ExtensionOffer {
        name: "permessage-deflate",
        params: vec![ExtensionParam {
            name: "server_max_window_bits",
            value: Some(Cow::Borrowed("11")),
        }],
    }];
    let negotiated = negotiate(&offers, &enabled()).unwrap();
    assert_eq!(negotiated.params.server_max_window_bits, 11);
}

// ---- Messages (RFC 7692 §7.2.3) ------------------------------------------------------------

#[test]
fn rfc_7692_7_2_3_1_one_compressed_block() {
    let mut deflater = Deflater::new(15, false, &always());
    let mut out = Vec::new();
    assert_eq!(deflater.compress(b"Hello", &mut out), SendAs::Compressed);
    assert_eq!(out, HELLO_COMPRESSED);
    let mut inflater = Inflater::new(15, false, 1 << 20);
    assert_eq!(
        inflate_message(&mut inflater, &[HELLO_COMPRESSED]).unwrap(),
        b"Hello"
    );
}

#[test]
fn rfc_7692_7_2_3_1_fragmented_through_the_frame_decoder() {
    // 0x41 0x03 0xf2 0x48 0xcd, then 0x80 0x04 0xc9 0xc9 0x07 0x00 (unmasked: server to client).
    let wire = [
        0x41, 0x03, 0xf2, 0x48, 0xcd, 0x80, 0x04, 0xc9, 0xc9, 0x07, 0x00,
    ];
    let config = FrameConfig {
        allowed_rsv: RSV1,
        ..FrameConfig::client()
    };
    let mut assembler = MessageAssembler::default();
    let mut inflater = DeflateParams::default().inflater(Role::Client, 1 << 20);
    let mut message = Vec::new();
    let mut at = 0;
    let mut done = None;
    while at < wire.len() {
        let Ok(HeaderDecode::Complete { header, header_len }) = decode_header(&wire[at..], &config)
        else {
            panic!()
        };
        let kind = assembler.handle_header(&header).unwrap();
        assert!(matches!(kind, FrameKind::Data { .. }));
        assert!(assembler.is_compressed());
        let payload = &wire[at + header_len..at + header_len + header.payload_len as usize];
        let before = message.len();
        inflater.handle_data(payload, &mut message).unwrap();
        if header.fin {
            inflater.handle_message_end(&mut message).unwrap();
        }
        assembler.handle_data(&message[before..]).unwrap();
        done = assembler.handle_frame_end().unwrap();
        at += header_len + payload.len();
    }
    assert_eq!(done, Some(MessageKind::Text));
    assert_eq!(message, b"Hello");
}

#[test]
fn rfc_7692_7_2_3_2_sharing_the_window() {
    // The RFC's bytes are zlib's at its default level, 6. (Level 1 encodes the second message
    // as 02 13 00 00: another valid encoding of the same match, checked in the empty-message
    // test.)
    let level_6 = DeflateConfig {
        level: 6,
        ..always()
    };
    let mut deflater = Deflater::new(15, false, &level_6);
    let mut inflater = Inflater::new(15, false, 1 << 20);
    let mut out = Vec::new();
    assert_eq!(deflater.compress(b"Hello", &mut out), SendAs::Compressed);
    assert_eq!(out, HELLO_COMPRESSED);
    assert_eq!(inflate_message(&mut inflater, &[&out]).unwrap(), b"Hello");
    out.clear();
    assert_eq!(deflater.compress(b"Hello", &mut out), SendAs::Compressed);
    assert_eq!(out, HELLO_AGAIN_COMPRESSED);
    assert_eq!(inflate_message(&mut inflater, &[&out]).unwrap(), b"Hello");

    // Without context takeover, the second message is compressed on its own again.
    // ("Hello" alone would grow to 7 bytes, so it goes uncompressed: take a longer message.)
    let mut deflater = Deflater::new(15, true, &level_6);
    let message = b"Hello, Hello, Hello, Hello";
    let mut first = Vec::new();
    assert_eq!(deflater.compress(message, &mut first), SendAs::Compressed);
    out.clear();
    assert_eq!(deflater.compress(message, &mut out), SendAs::Compressed);
    assert_eq!(out, first);
    assert_eq!(deflater.compress(b"Hello", &mut out), SendAs::Uncompressed);
    // And an inflater with no window cannot read the shared-window form.
    let mut fresh = Inflater::new(15, false, 1 << 20);
    assert_eq!(
        inflate_message(&mut fresh, &[HELLO_AGAIN_COMPRESSED]),
        Err(ProtocolError::InvalidCompressedData)
    );
}

#[test]
fn rfc_7692_7_2_3_3_stored_block() {
    let stored = [
        0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
    ];
    let mut inflater = Inflater::new(15, false, 1 << 20);
    assert_eq!(
        inflate_message(&mut inflater, &[&stored]).unwrap(),
        b"Hello"
    );
    // Level 0 produces stored blocks; it still round-trips.
    let config = DeflateConfig {
        level: 0,
        ..always()
    };
    let mut deflater = Deflater::new(15, false, &config);
    let mut out = Vec::new();
    assert_eq!(deflater.compress(b"Hello", &mut out), SendAs::Compressed);
    assert_eq!(out, stored);
}

#[test]
fn rfc_7692_7_2_3_4_final_block() {
    let bfinal = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
    let mut inflater = Inflater::new(15, false, 1 << 20);
    assert_eq!(
        inflate_message(&mut inflater, &[&bfinal]).unwrap(),
        b"Hello"
    );
    // The next message starts a new stream.
    assert_eq!(
        inflate_message(&mut inflater, &[HELLO_COMPRESSED]).unwrap(),
        b"Hello"
    );
    // Split at every byte, too.
    for split in 0..=bfinal.len() {
        let (a, b) = bfinal.split_at(split);
        assert_eq!(inflate_message(&mut inflater, &[a, b]).unwrap(), b"Hello");
    }
}

#[test]
fn rfc_7692_7_2_3_5_two_blocks() {
    let two = [
        0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
    ];
    let mut inflater = Inflater::new(15, false, 1 << 20);
    assert_eq!(inflate_message(&mut inflater, &[&two]).unwrap(), b"Hello");
}

#[test]
fn rfc_7692_7_2_3_6_empty_message() {
    let mut deflater = Deflater::new(15, false, &always());
    let mut out = Vec::new();
    assert_eq!(deflater.compress(b"", &mut out), SendAs::Compressed);
    assert_eq!(out, [0x00]);
    let mut inflater = Inflater::new(15, false, 1 << 20);
    assert_eq!(inflate_message(&mut inflater, &[&[0x00]]).unwrap(), b"");
    // Also after other messages (zlib would refuse a second flush with no input between).
    let mut out = Vec::new();
    assert_eq!(deflater.compress(b"Hello", &mut out), SendAs::Compressed);
    assert_eq!(inflate_message(&mut inflater, &[&out]).unwrap(), b"Hello");
    for _ in 0..2 {
        out.clear();
        assert_eq!(deflater.compress(b"", &mut out), SendAs::Compressed);
        assert_eq!(out, [0x00]);
        assert_eq!(inflate_message(&mut inflater, &[&out]).unwrap(), b"");
    }
    out.clear();
    assert_eq!(deflater.compress(b"Hello", &mut out), SendAs::Compressed);
    assert_eq!(out, HELLO_AGAIN_COMPRESSED_L1);
    assert_eq!(inflate_message(&mut inflater, &[&out]).unwrap(), b"Hello");
    // A compressed message with no payload at all is the empty message too.
    assert_eq!(inflate_message(&mut inflater, &[]).unwrap(), b"");
}

#[test]
fn threshold_and_incompressible_messages_go_uncompressed() {
    let config = DeflateConfig {
        min_compress_len: 16,
        ..enabled()
    };
    let mut deflater = Deflater::new(15, false, &config);
    let mut out = vec![1, 2, 3];
    assert_eq!(deflater.compress(b"short", &mut out), SendAs::Uncompressed);
    assert_eq!(out, [1, 2, 3]);
    // Without context takeover, a message that would grow is sent as it is.
    let noise = noise(1000);
    let mut deflater = Deflater::new(15, true, &config);
    assert_eq!(deflater.compress(&noise, &mut out), SendAs::Uncompressed);
    assert_eq!(out, [1, 2, 3]);
    // Output is appended after what `out` held.
    assert_eq!(
        deflater.compress(&[b'a'; 100], &mut out),
        SendAs::Compressed
    );
    assert_eq!(&out[..3], [1, 2, 3]);
    let mut inflater = Inflater::new(15, true, 1 << 20);
    assert_eq!(
        inflate_message(&mut inflater, &[&out[3..]]).unwrap(),
        [b'a'; 100]
    );
}

/// Incompressible bytes (xorshift).
fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_u32;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 24) as u8
        })
        .collect()
}

// ---- Limits and corrupt data ---------------------------------------------------------------

/// 10 MiB of zeros, compressed at level 9 (about 10 KiB).
fn bomb() -> Vec<u8> {
    let config = DeflateConfig {
        level: 9,
        ..always()
    };
    let mut deflater = Deflater::new(15, true, &config);
    let mut out = Vec::new();
    assert_eq!(
        deflater.compress(&vec![0u8; 10 << 20], &mut out),
        SendAs::Compressed
    );
    assert!(out.len() < 16 << 10, "{}", out.len());
    out
}

#[test]
fn a_bomb_is_refused_without_inflating_past_the_limit() {
    let bomb = bomb();
    let limit = 1u64 << 20;
    for piece_len in [bomb.len(), 1000, 1] {
        let mut inflater = Inflater::new(15, false, limit);
        let mut out = Vec::new();
        let result = bomb
            .chunks(piece_len)
            .try_for_each(|piece| inflater.handle_data(piece, &mut out).map(drop))
            .and_then(|()| inflater.handle_message_end(&mut out).map(drop));
        assert_eq!(result, Err(ProtocolError::MessageTooBig), "{piece_len}");
        assert_eq!(ProtocolError::MessageTooBig.close_code().as_u16(), 1009);
        assert!(out.len() as u64 <= limit + 1, "{}", out.len());
        assert!(out.capacity() as u64 <= limit + 1, "{}", out.capacity());
    }
}

#[test]
fn a_message_of_exactly_the_limit_passes() {
    let message = vec![7u8; 100_000];
    let mut deflater = Deflater::new(15, false, &always());
    let mut compressed = Vec::new();
    assert_eq!(
        deflater.compress(&message, &mut compressed),
        SendAs::Compressed
    );
    let mut inflater = Inflater::new(15, false, 100_000);
    assert_eq!(
        inflate_message(&mut inflater, &[&compressed]).unwrap(),
        message
    );
    let mut deflater = Deflater::new(15, false, &always());
    compressed.clear();
    let _ = deflater.compress(&message, &mut compressed);
    let mut inflater = Inflater::new(15, false, 99_999);
    assert_eq!(
        inflate_message(&mut inflater, &[&compressed]),
        Err(ProtocolError::MessageTooBig)
    );
    // The limit is per message: many messages add up to more, and pass.
    let mut deflater = Deflater::new(15, false, &always());
    let mut inflater = Inflater::new(15, false, 100_000);
    for _ in 0..5 {
        compressed.clear();
        let _ = deflater.compress(&message, &mut compressed);
        assert_eq!(
            inflate_message(&mut inflater, &[&compressed]).unwrap(),
            message
        );
    }
}

#[test]
fn corrupt_data_fails_with_1002() {
    for corrupt in [
        &[0xff, 0xff, 0xff, 0xff][..], // BFINAL 1, BTYPE 11: reserved block type
        &[0x00, 0x05, 0x00, 0x00, 0x00], // stored block whose NLEN is not ~LEN
        HELLO_AGAIN_COMPRESSED,        // refers to a window that is not there
    ] {
        let mut inflater = Inflater::new(15, false, 1 << 20);
        let error = inflate_message(&mut inflater, &[corrupt]).unwrap_err();
        assert_eq!(
            error,
            ProtocolError::InvalidCompressedData,
            "{corrupt:02x?}"
        );
        assert_eq!(error.close_code(), CloseCode::PROTOCOL_ERROR);
        // After a reset the inflater works again.
        inflater.reset();
        assert_eq!(
            inflate_message(&mut inflater, &[HELLO_COMPRESSED]).unwrap(),
            b"Hello"
        );
    }
}

// ---- Frame rules (RFC 7692 §6.1) -----------------------------------------------------------

#[test]
fn rsv1_only_on_the_first_frame_of_a_data_message() {
    let deflate = FrameConfig {
        allowed_rsv: RSV1,
        ..FrameConfig::server()
    };
    let masked = |first: u8| [first, 0x80, 1, 2, 3, 4];
    // Text and binary with RSV1: fine when deflate was negotiated, refused otherwise.
    for first in [0xc1, 0xc2, 0x41] {
        assert!(matches!(
            decode_header(&masked(first), &deflate),
            Ok(HeaderDecode::Complete { .. })
        ));
        assert_eq!(
            decode_header(&masked(first), &FrameConfig::server()),
            Err(ProtocolError::ReservedBits(RSV1))
        );
    }
    // Continuation, close, ping and pong with RSV1: always a protocol error (1002).
    for first in [0xc0, 0x40, 0xc8, 0xc9, 0xca] {
        let error = decode_header(&masked(first), &deflate).unwrap_err();
        assert_eq!(error, ProtocolError::ReservedBits(RSV1), "{first:#x}");
        assert_eq!(error.close_code(), CloseCode::PROTOCOL_ERROR);
    }
}

// ---- Round trips ---------------------------------------------------------------------------

/// Text-like bytes: words from a small vocabulary, so that it compresses as JSON does.
fn text(seed: u32, len: usize) -> Vec<u8> {
    const WORDS: [&str; 8] = [
        "{\"id\":",
        "\"price\":",
        "123.45",
        ",",
        "\"symbol\":\"ABC\"",
        "}",
        " ",
        "\"qty\":7",
    ];
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        out.extend_from_slice(WORDS[(state % 8) as usize].as_bytes());
    }
    out.truncate(len);
    out
}

#[test]
fn split_at_every_byte_and_one_byte_at_a_time() {
    let messages = [text(1, 3000), text(2, 700), vec![0u8; 5000], text(3, 40)];
    for no_context_takeover in [false, true] {
        let mut compressed = Vec::new();
        let mut deflater = Deflater::new(15, no_context_takeover, &always());
        for message in &messages {
            let mut out = Vec::new();
            assert_eq!(deflater.compress(message, &mut out), SendAs::Compressed);
            compressed.push(out);
        }
        // Every split point of every message, with the window carried from message to message.
        let longest = compressed.iter().map(Vec::len).max().unwrap();
        for split in 0..=longest {
            let mut inflater = Inflater::new(15, no_context_takeover, 1 << 20);
            for (message, bytes) in messages.iter().zip(&compressed) {
                let (a, b) = bytes.split_at(split.min(bytes.len()));
                assert_eq!(&inflate_message(&mut inflater, &[a, b]).unwrap(), message);
            }
        }
        let mut inflater = Inflater::new(15, no_context_takeover, 1 << 20);
        for (message, bytes) in messages.iter().zip(&compressed) {
            let pieces: Vec<&[u8]> = bytes.chunks(1).collect();
            assert_eq!(&inflate_message(&mut inflater, &pieces).unwrap(), message);
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Any sequence of messages survives compression and inflation, for every window size,
    /// level, memLevel and context setting, with the compressed bytes cut anywhere.
    #[test]
    fn round_trip(
        messages in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000),
                (proptest::prelude::any::<u32>(), 0usize..20_000).prop_map(|(s, n)| text(s, n)),
                (0usize..70_000).prop_map(|n| vec![b'x'; n]),
            ],
            1..6,
        ),
        window_bits in 8u8..=15,
        level in 0u8..=9,
        mem_level in 1u8..=9,
        no_context_takeover in proptest::bool::ANY,
        min_compress_len in proptest::sample::select(vec![0usize, 128]),
        cut in proptest::prelude::any::<proptest::sample::Index>(),
    ) {
        let config = DeflateConfig { level, mem_level, min_compress_len, ..enabled() };
        let params = DeflateParams {
            server_no_context_takeover: no_context_takeover,
            server_max_window_bits: window_bits,
            ..DeflateParams::default()
        };
        let mut deflater = params.deflater(Role::Server, &config);
        let mut inflater = params.inflater(Role::Client, 1 << 20);
        for message in &messages {
            let mut out = Vec::new();
            match deflater.compress(message, &mut out) {
                SendAs::Uncompressed => {
                    proptest::prop_assert!(out.is_empty());
                    proptest::prop_assert!(message.len() < min_compress_len || no_context_takeover);
                }
                SendAs::Compressed => {
                    let (a, b) = out.split_at(cut.index(out.len() + 1));
                    let inflated = inflate_message(&mut inflater, &[a, b]);
                    proptest::prop_assert_eq!(inflated, Ok(message.clone()));
                }
            }
        }
    }
}
