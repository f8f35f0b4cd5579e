//! Actors: one `SessionActor` per user with recent activity decides every change to that
//! user's sessions, one command at a time, and answers them in order once durable
//! (`pipeline`); the `Registry` finds or starts it.

mod pipeline;
mod registry;
mod session;

use std::sync::{Arc, RwLock};

use tokenledger_domain::{DomainError, Session};
use tokenledger_projections::ActiveSessions;

pub use registry::Registry;
pub use session::{Execute, SessionActor, execute_once};

use crate::clock::Clock;
use crate::store::{EventStore, StoreError};
use crate::tokens::Tokens;

/// What every actor shares.
pub struct Core {
    pub store: Arc<dyn EventStore>,
    pub tokens: Arc<Tokens>,
    pub projection: Arc<RwLock<ActiveSessions>>,
    pub clock: Arc<Clock>,
    /// Other instances append to the same log (PostgreSQL): an actor's state may be behind,
    /// so it reads its stream's tail before each decision, not only after a failed append.
    pub shared_log: bool,
}

/// The result of a command that was decided (and, if it recorded anything, is durable).
#[derive(Clone, Debug)]
pub struct Executed {
    /// The session the command was about, as it stands now; `None` if it has ended.
    pub session: Option<Session>,
    /// The session's current refresh token, for commands that hand one out.
    pub refresh_token: Option<String>,
    /// The command met a replayed refresh token and recorded its reuse (a logout with a
    /// superseded token): the caller refuses, though the events were recorded.
    pub reuse_detected: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    #[error(transparent)]
    Refused(#[from] DomainError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The actor could not load its stream: it answers with that error, kept whole, and stops.
    #[error("loading the session stream failed: {0}")]
    Load(#[source] Arc<StoreError>),
    /// The command's append, or an append it was decided after, failed: nothing of it was
    /// recorded. The failed append's error, shared by every command that followed it.
    #[error("not recorded: {0}")]
    NotRecorded(#[source] Arc<StoreError>),
    #[error("the stream kept changing under the actor ({0} attempts)")]
    TooManyConflicts(usize),
    #[error("the session actor is unavailable")]
    Unavailable,
}
