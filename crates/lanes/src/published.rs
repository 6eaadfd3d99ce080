//! A message encoded once for many connections: one unfragmented, unmasked frame, shared
//! between workers.

use std::sync::Arc;

use lanes_proto::OpCode;
use lanes_proto::frame::{FrameHeader, MAX_HEADER_LEN};

/// A message encoded once for every worker and connection: one unfragmented, unmasked frame
/// (header and payload), shared.
#[derive(Debug, Clone)]
pub(crate) struct Published {
    pub(crate) frame: Arc<[u8]>,
    pub(crate) opcode: OpCode,
    header_len: u8,
    /// The latest-value key: for a subscriber that is behind, this message replaces the one
    /// with the same key still waiting ([`crate::latest`]).
    pub(crate) latest: Option<Arc<str>>,
}

impl Published {
    /// The message itself, for connections that compress it.
    pub(crate) fn payload(&self) -> &[u8] {
        &self.frame[usize::from(self.header_len)..]
    }
}

/// Encodes a message into its frame.
pub(crate) fn encode(opcode: OpCode, payload: &[u8]) -> Published {
    let mut header = [0u8; MAX_HEADER_LEN];
    let n = FrameHeader::new(true, opcode, payload.len() as u64).encode(&mut header);
    let mut frame = Vec::with_capacity(n + payload.len());
    frame.extend_from_slice(&header[..n]);
    frame.extend_from_slice(payload);
    Published {
        frame: frame.into(),
        opcode,
        header_len: n as u8,
        latest: None,
    }
}

/// Encodes a message published under the latest-value policy with `key`.
pub(crate) fn encode_latest(opcode: OpCode, payload: &[u8], key: &str) -> Published {
    Published {
        latest: Some(key.into()),
        ..encode(opcode, payload)
    }
}
