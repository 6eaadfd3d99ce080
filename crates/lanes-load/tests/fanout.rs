//! The fanout mode against a small broadcast server made here (the real one comes with
//! lanes' pub/sub): every message received is sent to every other connection.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lanes_load::fanout::run_fanout;
use lanes_proto::OpCode;
use lanes_proto::frame::{FrameConfig, FrameHeader, HeaderDecode, MAX_HEADER_LEN, decode_header};
use lanes_proto::handshake::{
    AcceptOptions, HeadLimits, Parsed, RequestHead, UpgradeOffer, write_accept,
};
use lanes_proto::mask::apply_mask;

type Peers = Arc<Mutex<Vec<(usize, TcpStream)>>>;

/// Starts the broadcast server on a free loopback port; it runs until the test process ends.
fn broadcast_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let peers: Peers = Arc::default();
    std::thread::spawn(move || {
        for (id, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { continue };
            let peers = Arc::clone(&peers);
            std::thread::spawn(move || serve(id, stream, &peers));
        }
    });
    addr
}

fn serve(id: usize, mut stream: TcpStream, peers: &Peers) {
    stream.set_nodelay(true).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let head_len = loop {
        let n = stream.read(&mut chunk).unwrap();
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Parsed::Complete(head) = RequestHead::parse(&buf, &HeadLimits::default()).unwrap() {
            let offer = UpgradeOffer::validate(&head).unwrap();
            let mut response = Vec::new();
            write_accept(&offer, &AcceptOptions::default(), &mut response).unwrap();
            stream.write_all(&response).unwrap();
            break head.head_len();
        }
    };
    buf.drain(..head_len);
    peers
        .lock()
        .unwrap()
        .push((id, stream.try_clone().unwrap()));
    loop {
        while let Ok(HeaderDecode::Complete { header, header_len }) =
            decode_header(&buf, &FrameConfig::server())
        {
            let end = header_len + header.payload_len as usize;
            if buf.len() < end {
                break;
            }
            let mut payload = buf[header_len..end].to_vec();
            apply_mask(&mut payload, header.mask.unwrap(), 0);
            buf.drain(..end);
            if matches!(header.opcode, OpCode::Binary | OpCode::Text) {
                let mut frame = [0u8; MAX_HEADER_LEN];
                let n =
                    FrameHeader::new(true, header.opcode, payload.len() as u64).encode(&mut frame);
                let mut bytes = frame[..n].to_vec();
                bytes.extend_from_slice(&payload);
                for (peer, out) in peers.lock().unwrap().iter_mut() {
                    if *peer != id {
                        let _ = out.write_all(&bytes);
                    }
                }
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[test]
fn every_subscriber_gets_every_message_in_order() {
    let addr = broadcast_server();
    let result = run_fanout(
        addr,
        20,
        200,
        Duration::from_millis(200),
        Duration::from_secs(1),
    )
    .unwrap();
    // 200 msg/s for 1 s, to 20 subscribers.
    assert!(
        (195..=205).contains(&result.published),
        "{}",
        result.published
    );
    assert_eq!(result.deliveries, result.published * 20);
    assert_eq!(
        (
            result.missed,
            result.out_of_order,
            result.malformed,
            result.disconnected
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(result.latency_ns.len(), result.deliveries);
    assert!(result.latency_ns.value_at_quantile(0.5) > 0);
}

#[test]
fn a_refused_connection_is_a_clear_error() {
    // A port that was just free: nothing listens there.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let error = run_fanout(addr, 1, 10, Duration::ZERO, Duration::from_millis(100)).unwrap_err();
    assert!(error.contains("cannot connect"), "{error}");
}
