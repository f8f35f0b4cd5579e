//! Read models folded from the event log. Pure: they take events in and answer questions,
//! knowing nothing of where the events came from.

#![forbid(unsafe_code)]

mod active_sessions;
mod replay;
mod snapshot;

pub use active_sessions::{ActiveSessions, SessionView};
pub use replay::sessions_alive_at;
pub use snapshot::{Digest, SnapshotError, decode_chunks};
