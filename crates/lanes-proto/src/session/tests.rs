//! Unit tests of the session: sizes, and the rules that need its private state.

use super::*;
use crate::assembler::{FrameKind, MessageAssembler};
use crate::frame::FrameConfig;

#[derive(Default)]
struct Frames(Vec<(OpCode, Vec<u8>)>);

impl Output for Frames {
    fn control(&mut self, opcode: OpCode, frame: &[u8]) {
        self.0.push((opcode, frame.to_vec()));
    }
}

/// The runtime's receive state before this module (`crates/lanes/src/recv.rs`), field for
/// field, to hold the new one to its size.
#[allow(dead_code)]
struct RuntimeReceiver {
    frame_config: FrameConfig,
    assembler: MessageAssembler,
    header: [u8; MAX_HEADER_LEN],
    header_len: u8,
    partial: Option<(FrameHeader, FrameKind, u64)>,
    message: Option<Vec<u8>>,
    control: Option<Vec<u8>>,
    compression: Option<Box<crate::deflate::RecvCompression>>,
}

#[test]
fn sizes() {
    // The timeouts are given to the calls that apply them (40 bytes when each session held
    // them).
    assert!(
        size_of::<Session>() <= 24,
        "Session is {} bytes",
        size_of::<Session>()
    );
    assert!(
        size_of::<Receiver>() <= size_of::<RuntimeReceiver>(),
        "Receiver is {} bytes, the runtime's was {}",
        size_of::<Receiver>(),
        size_of::<RuntimeReceiver>()
    );
    // What spans reads is boxed, and the limits are given to each call: an idle connection's
    // receiver is its role, its assembler's state and two pointers (160 bytes when it held
    // the carried state inline, 80 with the limits, 56 before the assembly's flags shared a
    // byte).
    assert!(
        size_of::<Receiver>() <= 48,
        "Receiver is {} bytes",
        size_of::<Receiver>()
    );
}

#[test]
fn what_spans_reads_is_boxed_only_while_it_does() {
    let config = SessionConfig::client();
    let mut conn = Connection::new(config, 0);
    let mut scratch = InflateScratch::new(1 << 20);
    let mut out = Frames::default();
    // A whole message in one read: nothing carried.
    let mut bytes = vec![0x82, 0x02, b'a', b'b'];
    let step = conn
        .handle_bytes(&mut bytes, &mut scratch, 0, &mut out)
        .unwrap();
    assert_eq!(step.event, Some(Event::Binary(b"ab")));
    assert!(conn.receiver.carry.is_none());
    // A 126-byte binary frame split inside its 4-byte header, then inside its payload.
    let mut bytes = vec![0x82, 0x7E, 0x00, 0x7E];
    bytes.extend((0..126u8).map(|i| i.wrapping_mul(7)));
    let step = conn
        .handle_bytes(&mut bytes[..3], &mut scratch, 0, &mut out)
        .unwrap();
    assert_eq!((step.used, step.event), (3, None));
    assert_eq!(conn.receiver.carry.as_ref().map(|c| c.header_len), Some(3));
    assert_eq!(conn.receiver.buffered_len(), 3);
    let step = conn
        .handle_bytes(&mut bytes[3..50], &mut scratch, 0, &mut out)
        .unwrap();
    assert_eq!((step.used, step.event), (1, None));
    let step = conn
        .handle_bytes(&mut bytes[4..50], &mut scratch, 0, &mut out)
        .unwrap();
    assert_eq!((step.used, step.event), (46, None));
    assert_eq!(conn.receiver.buffered_len(), 46);
    let expected = bytes[4..].to_vec();
    let step = conn
        .handle_bytes(&mut bytes[50..], &mut scratch, 0, &mut out)
        .unwrap();
    assert_eq!(step.event, Some(Event::Binary(&expected[..])));
    conn.receiver.release();
    assert!(conn.receiver.carry.is_none(), "freed once delivered");
    assert!(conn.receiver.is_idle());
}

#[test]
fn a_new_receiver_holds_nothing_and_release_frees_a_delivered_message() {
    let config = SessionConfig::client();
    let mut conn = Connection::new(config, 0);
    assert!(conn.receiver.is_idle());
    let mut scratch = InflateScratch::new(1 << 20);
    let mut out = Frames::default();
    // A fragmented binary message, "ab" + "cd", unmasked (server to client).
    let mut bytes = vec![0x02, 0x02, b'a', b'b', 0x80, 0x02, b'c', b'd'];
    let step = conn
        .handle_bytes(&mut bytes, &mut scratch, 0, &mut out)
        .unwrap();
    assert_eq!((step.used, step.event), (4, None));
    assert!(!conn.receiver.is_idle());
    let step = conn
        .handle_bytes(&mut bytes[4..], &mut scratch, 0, &mut out)
        .unwrap();
    assert_eq!(step.event, Some(Event::Binary(b"abcd")));
    assert!(
        !conn.receiver.is_idle(),
        "the message is held until released"
    );
    conn.receiver.release();
    assert!(conn.receiver.is_idle());
    assert!(conn.receiver.carry.is_none());
}
