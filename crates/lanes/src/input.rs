//! Whether a connection reads from its socket: reading, paused by backpressure (with what was
//! read but not yet handled), or resuming.

/// Whether reading from the socket goes on.
#[derive(Debug, Default)]
pub(crate) enum Input {
    /// Reading.
    #[default]
    Reading,
    /// Paused because the outgoing backlog is over the backpressure limit; `stash` holds what
    /// was read but not yet processed when it paused (handled first on resume).
    Paused { stash: Option<Vec<u8>> },
    /// Reading resumed after a pause; `stash` is processed before the socket is read again.
    Resuming { stash: Vec<u8> },
}
