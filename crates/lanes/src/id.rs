//! A connection's identity within the server.

/// A connection's identity within the server: worker index and slot, plus a generation so an
/// id is never confused with a later connection that reuses the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId {
    /// The worker (core) that owns the connection.
    pub worker: u16,
    /// The connection's slot in that worker's table.
    pub slot: u32,
    /// Distinguishes successive connections in the same slot.
    pub generation: u32,
}
