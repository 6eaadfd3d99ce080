//! Application values sent to a worker ([`Remote::send_to_worker`](crate::Remote::send_to_worker))
//! and handled on its thread ([`Handler::on_worker_message`](crate::Handler::on_worker_message)).

use std::any::Any;
use std::fmt;

/// A value of the application's, sent to one worker and handed to its handler's
/// [`on_worker_message`](crate::Handler::on_worker_message) on that worker's thread.
///
/// Any `Send + 'static` type can be sent; the handler takes it back out by its type with
/// [`downcast`](Self::downcast) (or looks with [`downcast_ref`](Self::downcast_ref)). An
/// application with several kinds of message usually sends one enum of its own.
///
/// ```
/// let message = lanes::WorkerMessage::new(42u32);
/// assert!(message.is::<u32>());
/// let message = message.downcast::<String>().unwrap_err(); // not a String: given back
/// assert_eq!(message.downcast::<u32>().unwrap(), 42);
/// ```
pub struct WorkerMessage(Box<dyn Any + Send>);

impl WorkerMessage {
    /// Wraps `value` (one allocation).
    pub fn new<T: Any + Send>(value: T) -> WorkerMessage {
        WorkerMessage(Box::new(value))
    }

    /// Whether the value is a `T`.
    pub fn is<T: Any>(&self) -> bool {
        self.0.is::<T>()
    }

    /// The value, if it is a `T`; else the message itself, unchanged.
    pub fn downcast<T: Any>(self) -> Result<T, WorkerMessage> {
        match self.0.downcast::<T>() {
            Ok(value) => Ok(*value),
            Err(other) => Err(WorkerMessage(other)),
        }
    }

    /// A reference to the value, if it is a `T`.
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        self.0.downcast_ref::<T>()
    }

    /// A mutable reference to the value, if it is a `T`.
    pub fn downcast_mut<T: Any>(&mut self) -> Option<&mut T> {
        self.0.downcast_mut::<T>()
    }
}

impl fmt::Debug for WorkerMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerMessage").finish_non_exhaustive()
    }
}
