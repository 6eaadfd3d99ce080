//! The per-worker pool of byte buffers. A connection holds a buffer only while it has bytes in
//! flight; an idle connection holds none.

/// Buffers handed out to connections and taken back when they empty.
#[derive(Debug)]
pub(crate) struct BufferPool {
    free: Vec<Vec<u8>>,
    /// Capacity of a new buffer.
    initial_capacity: usize,
    /// Buffers that grew beyond this are freed instead of pooled, so one large message does not
    /// pin its memory for ever.
    max_pooled_capacity: usize,
    /// Most buffers kept: 32 (128 KiB of 4 KiB buffers, at most 2 MiB), enough for the
    /// buffers a busy iteration hands out and gets back; more only held memory after a spike
    /// (256 kept 0.9 MiB that `scripts/spike_memory.py` saw after every spike).
    max_free: usize,
}

impl BufferPool {
    pub(crate) fn new() -> BufferPool {
        BufferPool {
            free: Vec::new(),
            initial_capacity: 4096,
            max_pooled_capacity: 64 * 1024,
            max_free: 32,
        }
    }

    /// An empty buffer.
    pub(crate) fn take(&mut self) -> Vec<u8> {
        self.free
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.initial_capacity))
    }

    /// Returns a buffer.
    pub(crate) fn put(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() <= self.max_pooled_capacity && self.free.len() < self.max_free {
            buf.clear();
            self.free.push(buf);
        }
    }
}
