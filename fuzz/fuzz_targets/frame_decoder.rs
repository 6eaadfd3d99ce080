//! The frame decoder, unmasking and the message assembler fed a byte stream in chunks.
//!
//! The first input byte picks the configuration (role, allowed RSV bits, small or default size
//! limits) and the chunk size; the rest is the stream. A minimal reader (decode header, unmask
//! the payload as it arrives, feed the assembler, parse close payloads) runs over the stream
//! fed whole and fed in chunks. Oracle: both runs report the same frames, the same payload
//! bytes and the same error; and every decoded header re-encodes to the bytes it came from
//! when its length was minimally encoded.
#![no_main]

use lanes_proto::assembler::{FrameKind, MessageAssembler};
use lanes_proto::frame::{
    FrameConfig, FrameHeader, HeaderDecode, MAX_HEADER_LEN, OpCode, RSV1, Role, decode_header,
};
use lanes_proto::mask::apply_mask;
use lanes_proto::{CloseFrame, ProtocolError};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq)]
enum Event {
    Frame(FrameHeader, Vec<u8>),
    MessageEnd,
    Error(ProtocolError),
}

/// Reads frames from `stream` delivered in `chunks`-sized reads.
fn read(stream: &[u8], chunk: usize, config: &FrameConfig, max_message: u64) -> Vec<Event> {
    let mut events = Vec::new();
    let mut assembler = MessageAssembler::new(max_message);
    let mut buffered: Vec<u8> = Vec::new();
    // The frame whose payload is being received: header, payload so far, mask phase.
    let mut current: Option<(FrameHeader, Vec<u8>)> = None;
    for piece in stream.chunks(chunk.max(1)) {
        buffered.extend_from_slice(piece);
        loop {
            if let Some((header, payload)) = current.as_mut() {
                let want = (header.payload_len as usize) - payload.len();
                let take = want.min(buffered.len());
                let start = payload.len();
                payload.extend(buffered.drain(..take));
                if let Some(key) = header.mask {
                    apply_mask(&mut payload[start..], key, start);
                }
                if !header.opcode.is_control() {
                    if let Err(e) = assembler.handle_data(&payload[start..]) {
                        events.push(Event::Error(e));
                        return events;
                    }
                }
                if payload.len() < header.payload_len as usize {
                    break;
                }
                let (header, payload) = current.take().unwrap();
                if header.opcode == OpCode::Close {
                    if let Err(e) = CloseFrame::parse(&payload) {
                        events.push(Event::Frame(header, payload));
                        events.push(Event::Error(e));
                        return events;
                    }
                }
                events.push(Event::Frame(header, payload));
                match assembler.handle_frame_end() {
                    Ok(Some(_)) => events.push(Event::MessageEnd),
                    Ok(None) => {}
                    Err(e) => {
                        events.push(Event::Error(e));
                        return events;
                    }
                }
                continue;
            }
            match decode_header(&buffered, config) {
                Ok(HeaderDecode::NeedMore(n)) => {
                    assert!(n >= 1 && buffered.len() + n <= MAX_HEADER_LEN);
                    break;
                }
                Ok(HeaderDecode::Complete { header, header_len }) => {
                    assert!((2..=MAX_HEADER_LEN).contains(&header_len));
                    assert!(header.payload_len <= config.max_frame_len);
                    assert_eq!(header.mask.is_some(), config.role == Role::Server);
                    let mut encoded = [0u8; MAX_HEADER_LEN];
                    let len = header.encode(&mut encoded);
                    if len == header_len {
                        assert_eq!(&encoded[..len], &buffered[..header_len]);
                    }
                    buffered.drain(..header_len);
                    match assembler.handle_header(&header) {
                        Err(e) => {
                            events.push(Event::Error(e));
                            return events;
                        }
                        Ok(FrameKind::Control(op)) => assert_eq!(op, header.opcode),
                        Ok(FrameKind::Data { .. }) => assert!(!header.opcode.is_control()),
                    }
                    current = Some((header, Vec::new()));
                }
                Err(e) => {
                    events.push(Event::Error(e));
                    return events;
                }
            }
        }
    }
    events
}

fuzz_target!(|input: &[u8]| {
    let Some((&selector, stream)) = input.split_first() else {
        return;
    };
    let role = if selector & 1 == 0 { Role::Server } else { Role::Client };
    let allowed_rsv = if selector & 2 == 0 { 0 } else { RSV1 };
    let (max_frame_len, max_message) = if selector & 4 == 0 { (1 << 16, 1 << 17) } else { (100, 150) };
    let config = FrameConfig { role, allowed_rsv, max_frame_len };
    let chunk = usize::from(selector >> 3) + 1;
    let whole = read(stream, stream.len(), &config, max_message);
    let chunked = read(stream, chunk, &config, max_message);
    let bytewise = read(stream, 1, &config, max_message);
    assert_eq!(whole, chunked);
    assert_eq!(whole, bytewise);
});
