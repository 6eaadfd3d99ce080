//! Whether a connection reads from its socket: reading, paused by backpressure (with what was
//! read but not yet handled), or resuming.

/// Whether reading from the socket goes on: one word in every connection's slot, null while
/// reading (the common case). A pause is boxed with what was read and not yet handled (rare:
/// only under backpressure or while an upgrade is deferred); the stash's buffer still comes
/// from and goes back to the pool.
#[derive(Debug, Default)]
pub(crate) struct Input(Option<Box<Held>>);

/// A paused or resuming connection's input.
#[derive(Debug)]
struct Held {
    /// What was read but not yet processed when reading paused (empty and unallocated when
    /// nothing was), handled first on resume.
    stash: Vec<u8>,
    /// Reading resumed: the stash is processed before the socket is read again.
    resuming: bool,
}

impl Input {
    /// Reading.
    pub(crate) const READING: Input = Input(None);

    /// Paused because the outgoing backlog is over the backpressure limit (or the upgrade
    /// was deferred), holding `stash`, what was read but not yet processed.
    #[inline]
    pub(crate) fn paused(stash: Vec<u8>) -> Input {
        Input(Some(Box::new(Held {
            stash,
            resuming: false,
        })))
    }

    /// Whether the socket is read (no pause, nothing stashed).
    #[inline]
    pub(crate) fn is_reading(&self) -> bool {
        self.0.is_none()
    }

    /// Whether reading is paused.
    #[inline]
    pub(crate) fn is_paused(&self) -> bool {
        self.0.as_deref().is_some_and(|held| !held.resuming)
    }

    /// Whether reading resumed with a stash still to process.
    #[inline]
    pub(crate) fn is_resuming(&self) -> bool {
        self.0.as_deref().is_some_and(|held| held.resuming)
    }

    /// The bytes stashed.
    #[inline]
    pub(crate) fn stash_len(&self) -> usize {
        self.0.as_deref().map_or(0, |held| held.stash.len())
    }

    /// Ends a pause: resuming with the stash, or reading when there is none.
    #[inline]
    pub(crate) fn resume(&mut self) {
        match self.0.as_deref_mut() {
            Some(held) if held.stash.capacity() != 0 => held.resuming = true,
            _ => self.0 = None,
        }
    }

    /// A resuming connection's stash, to process now; reading from then on. `None` (and no
    /// change) otherwise.
    #[inline]
    pub(crate) fn take_resuming(&mut self) -> Option<Vec<u8>> {
        if !self.is_resuming() {
            return None;
        }
        self.take_stash()
    }

    /// Takes out whatever stash is held (for the pool), leaving the connection reading.
    #[inline]
    pub(crate) fn take_stash(&mut self) -> Option<Vec<u8>> {
        let held = self.0.take()?;
        (held.stash.capacity() != 0).then_some(held.stash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_one_word_and_moves_through_pause_and_resume() {
        assert_eq!(std::mem::size_of::<Input>(), 8);
        let mut input = Input::READING;
        assert!(input.is_reading() && !input.is_paused() && !input.is_resuming());
        // A pause with nothing stashed resumes straight to reading.
        input = Input::paused(Vec::new());
        assert!(input.is_paused() && !input.is_reading());
        assert_eq!(input.take_resuming(), None);
        input.resume();
        assert!(input.is_reading());
        // A pause with a stash resumes with it, handed over once.
        input = Input::paused(b"rest".to_vec());
        assert_eq!(input.stash_len(), 4);
        assert_eq!(input.take_resuming(), None);
        input.resume();
        assert!(input.is_resuming() && !input.is_paused());
        assert_eq!(input.take_resuming().as_deref(), Some(&b"rest"[..]));
        assert!(input.is_reading());
        assert_eq!(input.take_resuming(), None);
        // Taking the stash while paused (the connection is going away) leaves it reading.
        input = Input::paused(b"x".to_vec());
        assert_eq!(input.take_stash().as_deref(), Some(&b"x"[..]));
        assert!(input.is_reading());
    }
}
