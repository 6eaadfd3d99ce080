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
    assert!(
        size_of::<Session>() <= 40,
        "Session is {} bytes",
        size_of::<Session>()
    );
    assert!(
        size_of::<Receiver>() <= size_of::<RuntimeReceiver>(),
        "Receiver is {} bytes, the runtime's was {}",
        size_of::<Receiver>(),
        size_of::<RuntimeReceiver>()
    );
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
}
