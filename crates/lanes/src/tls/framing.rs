//! A TLS 1.3 connection's outbox laid out as records, so that its frames are sealed where they
//! were queued: zero copies between the frame encoder and the socket.
//!
//! Frames are appended with room left for each record's header before its content and for its
//! trailer (content type and tag) after: records of 16 KiB of content, the last one open until
//! it is sealed. [`RecordFraming::seal`] seals the records in place, in order, and everything
//! before [`RecordFraming::sealed_end`] is ciphertext ready to write. A key update (ours at the
//! cipher suite's limit, or the one the peer asked for) is a record of the same stream, placed
//! between the records sealed with the old key and those sealed with the new one.

use rustls::Error;

use super::records::{HEADER_LEN, MAX_FRAGMENT_LEN, RecordLayer, TRAILER_LEN};

/// Length of a full record laid out in the outbox.
const FULL_RECORD_LEN: usize = HEADER_LEN + MAX_FRAGMENT_LEN + TRAILER_LEN;

/// Where the records of a backlog buffer stand: `buf[..sealed_end]` is sealed, then come full
/// records waiting to be sealed (trailer room included), and last the open record, at
/// `open_at`, without its trailer room yet.
#[derive(Debug, Default)]
pub(crate) struct RecordFraming {
    open_at: Option<usize>,
    sealed_end: usize,
}

impl RecordFraming {
    /// Framing for an empty buffer.
    pub(crate) const fn new() -> RecordFraming {
        RecordFraming {
            open_at: None,
            sealed_end: 0,
        }
    }

    /// Where the sealed bytes of the buffer end.
    #[inline]
    pub(crate) fn sealed_end(&self) -> usize {
        self.sealed_end
    }

    /// Appends `bytes` to the open record, opening new records (with room for their header)
    /// as each fills up.
    #[inline(always)]
    pub(crate) fn append(&mut self, buf: &mut Vec<u8>, bytes: &[u8]) {
        match self.open_at {
            // The common case: the open record has room.
            Some(at) if buf.len() + bytes.len() <= at + HEADER_LEN + MAX_FRAGMENT_LEN => {
                buf.extend_from_slice(bytes)
            }
            _ => self.append_across(buf, bytes),
        }
    }

    /// Appends a frame's header and payload ([`append`](Self::append) of each).
    #[inline(always)]
    pub(crate) fn append_frame(&mut self, buf: &mut Vec<u8>, header: &[u8], payload: &[u8]) {
        let len = header.len() + payload.len();
        match self.open_at {
            // The open record has room, or a new one is opened in an empty backlog (the common
            // cases: a write went out, the next frames start a record).
            Some(at) if buf.len() + len <= at + HEADER_LEN + MAX_FRAGMENT_LEN => {}
            None if len <= MAX_FRAGMENT_LEN => {
                buf.reserve(HEADER_LEN + len);
                self.open(buf);
            }
            _ => {
                self.append_across(buf, header);
                self.append_across(buf, payload);
                return;
            }
        }
        buf.reserve(len);
        buf.extend_from_slice(header);
        buf.extend_from_slice(payload);
    }

    /// [`append`](Self::append) when a record must be opened.
    #[inline(never)]
    fn append_across(&mut self, buf: &mut Vec<u8>, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let at = match self.open_at {
                Some(at) if buf.len() - at < HEADER_LEN + MAX_FRAGMENT_LEN => at,
                Some(_) => {
                    // The open record is full: room for its trailer, then the next one.
                    buf.extend_from_slice(&[0; TRAILER_LEN]);
                    self.open(buf)
                }
                None => self.open(buf),
            };
            let room = HEADER_LEN + MAX_FRAGMENT_LEN - (buf.len() - at);
            let (now, rest) = bytes.split_at(room.min(bytes.len()));
            buf.extend_from_slice(now);
            bytes = rest;
        }
    }

    /// Opens a record at the end of `buf` (room for its header); returns where it starts.
    #[inline(always)]
    fn open(&mut self, buf: &mut Vec<u8>) -> usize {
        let at = buf.len();
        buf.extend_from_slice(&[0; HEADER_LEN]);
        self.open_at = Some(at);
        at
    }

    /// Seals the records waiting in `buf`, in order, until at least `budget` bytes are sealed
    /// or none is left. The sending key is updated on the way when it reaches its limit: the
    /// `KeyUpdate` record is put between the records before and after it.
    pub(crate) fn seal(
        &mut self,
        buf: &mut Vec<u8>,
        records: &mut RecordLayer,
        budget: usize,
    ) -> Result<(), Error> {
        let start = self.sealed_end;
        let mut at = start;
        while at < buf.len() && at - start < budget {
            if records.tx_update_due() {
                // Rare (once per confidentiality limit): the records after it move along.
                let update = records.key_update_record()?;
                buf.splice(at..at, update);
                if let Some(open) = self.open_at.as_mut() {
                    *open += update.len();
                }
                at += update.len();
            }
            let end = if self.open_at == Some(at) {
                self.open_at = None;
                buf.resize(buf.len() + TRAILER_LEN, 0);
                buf.len()
            } else {
                at + FULL_RECORD_LEN
            };
            records.seal_record(&mut buf[at..end])?;
            at = end;
            self.sealed_end = at;
        }
        Ok(())
    }

    /// Seals every record waiting in `buf`, then appends the key update the peer asked for
    /// (if one is owed): the records queued later are sealed with the new key, after it.
    pub(crate) fn seal_owed_update(
        &mut self,
        buf: &mut Vec<u8>,
        records: &mut RecordLayer,
    ) -> Result<(), Error> {
        self.seal(buf, records, usize::MAX)?;
        records.seal_owed(buf)?;
        self.sealed_end = buf.len();
        Ok(())
    }

    /// The first `n` bytes of the buffer (written ones, all sealed) were removed.
    pub(crate) fn shift(&mut self, n: usize) {
        debug_assert!(n <= self.sealed_end);
        self.sealed_end -= n;
        if let Some(open) = self.open_at.as_mut() {
            *open -= n;
        }
    }

    /// The buffer went back to the pool, empty.
    pub(crate) fn reset(&mut self) {
        *self = RecordFraming::new();
    }
}
