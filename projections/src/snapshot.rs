//! `ActiveSessions` written down and read back: the body of a snapshot, and a digest of the
//! projection that does not depend on how it was reached (a full fold, or a snapshot and the
//! tail after it).
//!
//! A body is a list of chunks, each the postcard encoding of some users' entries (stream
//! version and `UserSessions`, derived from the domain's types, so a field added there is
//! written here too). Chunks are encoded in batches of users under short read locks, and
//! decoded in parallel; the texts are shared again as they are loaded, as a fold shares them.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokenledger_domain::{Session, Sessions, UserId, UserSessions};

use crate::ActiveSessions;
use crate::active_sessions::UserEntry;

/// SHA-256 of a projection's content (see `ActiveSessions::digest`).
pub type Digest = [u8; 32];

/// One user's entry, as written.
#[derive(Serialize)]
struct EntryRef<'a> {
    version: i64,
    sessions: &'a UserSessions,
}

/// One user's entry, as read: the same fields as `EntryRef`.
#[derive(Deserialize)]
struct Entry {
    version: i64,
    sessions: UserSessions,
}

/// Why a snapshot's body could not be read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotError {
    /// A chunk that is not a list of entries.
    Chunk { index: usize, reason: String },
    /// A user in two entries.
    Duplicate(UserId),
}

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotError::Chunk { index, reason } => {
                write!(f, "chunk {index} does not decode: {reason}")
            }
            SnapshotError::Duplicate(user) => write!(f, "user {user} is in two entries"),
        }
    }
}

impl std::error::Error for SnapshotError {}

impl ActiveSessions {
    /// Every user with an entry, in id order: what a snapshot writes, a batch at a time
    /// (`encode_users`), each under a short read lock.
    pub fn user_ids(&self) -> Vec<UserId> {
        let mut ids: Vec<UserId> = self.users.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// One chunk of a snapshot's body: the entries of those of `ids` that have one; and how
    /// many sessions they hold.
    pub fn encode_users(&self, ids: &[UserId]) -> (Vec<u8>, usize) {
        let entries: Vec<EntryRef> = ids
            .iter()
            .filter_map(|id| self.users.get(id))
            .map(|entry| EntryRef {
                version: entry.version,
                sessions: &entry.sessions,
            })
            .collect();
        let sessions = entries.iter().map(|e| e.sessions.sessions.len()).sum();
        let bytes = postcard::to_allocvec(&entries).expect("a projection always encodes");
        (bytes, sessions)
    }

    /// SHA-256 over every user in id order, each with its stream version and sessions as a
    /// snapshot encodes them: equal for equal content, however it was reached.
    pub fn digest(&self) -> Digest {
        let mut hasher = Sha256::new();
        hasher.update(b"tokenledger active sessions v1\n");
        for ids in self.user_ids().chunks(4096) {
            hasher.update(self.encode_users(ids).0);
        }
        hasher.finalize().into()
    }

    /// A projection of decoded entries, their texts shared as a fold shares them.
    fn from_entries(parts: Vec<Vec<Entry>>) -> Result<ActiveSessions, SnapshotError> {
        let mut projection = ActiveSessions::new();
        projection
            .users
            .reserve(parts.iter().map(Vec::len).sum::<usize>());
        for entry in parts.into_iter().flatten() {
            let Entry {
                version,
                mut sessions,
            } = entry;
            let user_id = sessions.user_id;
            if projection.users.contains_key(&user_id) {
                return Err(SnapshotError::Duplicate(user_id));
            }
            let texts = &mut projection.texts;
            each_session(&mut sessions, |session| texts.share(session));
            projection.live += sessions.sessions.len();
            projection
                .users
                .insert(user_id, UserEntry { version, sessions });
        }
        Ok(projection)
    }
}

/// `change` applied to each of a user's sessions, in place: their order (by id) is unchanged.
fn each_session(user: &mut UserSessions, mut change: impl FnMut(&mut Session)) {
    let sessions: Vec<Session> = std::mem::take(&mut user.sessions)
        .into_values()
        .map(|mut session| {
            change(&mut session);
            session
        })
        .collect();
    user.sessions = Sessions::try_from(sessions).expect("the ids keep their order");
}

/// A session's last IP and agent share the login's copy when equal, as `evolve` leaves them.
fn share_within(session: &mut Session) {
    if session.last_ip.is_some() && session.last_ip == session.login_ip {
        session.last_ip.clone_from(&session.login_ip);
    }
    if session.last_user_agent.is_some() && session.last_user_agent == session.login_user_agent {
        session
            .last_user_agent
            .clone_from(&session.login_user_agent);
    }
}

fn decode_chunk(index: usize, chunk: &[u8]) -> Result<Vec<Entry>, SnapshotError> {
    let mut entries: Vec<Entry> =
        postcard::from_bytes(chunk).map_err(|e| SnapshotError::Chunk {
            index,
            reason: e.to_string(),
        })?;
    for entry in &mut entries {
        each_session(&mut entry.sessions, share_within);
    }
    Ok(entries)
}

/// The projection a snapshot's chunks hold, decoded on up to `threads` threads.
pub fn decode_chunks(chunks: &[&[u8]], threads: usize) -> Result<ActiveSessions, SnapshotError> {
    let threads = threads.clamp(1, chunks.len().max(1));
    let per_thread = chunks.len().div_ceil(threads).max(1);
    let decoded: Vec<Result<Vec<Vec<Entry>>, SnapshotError>> = std::thread::scope(|scope| {
        let running: Vec<_> = chunks
            .chunks(per_thread)
            .enumerate()
            .map(|(t, mine)| {
                scope.spawn(move || {
                    mine.iter()
                        .enumerate()
                        .map(|(i, chunk)| decode_chunk(t * per_thread + i, chunk))
                        .collect()
                })
            })
            .collect();
        running
            .into_iter()
            .map(|thread| thread.join().expect("decoding does not panic"))
            .collect()
    });
    let mut parts = Vec::with_capacity(chunks.len());
    for part in decoded {
        parts.extend(part?);
    }
    ActiveSessions::from_entries(parts)
}
