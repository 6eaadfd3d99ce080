//! Whether a connection reads from its socket: reading, paused by backpressure (with what was
//! read but not yet handled), or resuming.

/// Whether reading from the socket goes on. A stash is boxed: every connection's slot holds an
/// `Input`, and a pointer costs it 16 bytes less than a `Vec` (the stash is rare: only under
/// backpressure), while the buffer itself still comes from and goes back to the pool.
#[derive(Debug, Default)]
#[allow(clippy::box_collection)]
pub(crate) enum Input {
    /// Reading.
    #[default]
    Reading,
    /// Paused because the outgoing backlog is over the backpressure limit; `stash` holds what
    /// was read but not yet processed when it paused (handled first on resume).
    Paused { stash: Option<Box<Vec<u8>>> },
    /// Reading resumed after a pause; `stash` is processed before the socket is read again.
    Resuming { stash: Box<Vec<u8>> },
}
