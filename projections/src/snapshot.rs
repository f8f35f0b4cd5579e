//! `ActiveSessions` written down and read back: the body of a snapshot, and a digest of the
//! projection that does not depend on how it was reached (a full fold, or a snapshot and the
//! tail after it).
//!
//! A body is a list of chunks, each the postcard encoding of some users' entries (stream
//! version and `UserSessions`, derived from the domain's types, so a field added there is
//! written here too), after the table of the texts they name. Chunks are encoded in batches
//! of users under short read locks, and decoded in parallel.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::hash_map::Entry as HashEntry;
use std::sync::Arc;

use tokenledger_domain::{UserId, UserSessions, shared_text};

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
        let (written, table) = shared_text::write_with_table(|| postcard::to_allocvec(&entries));
        let texts: Vec<&str> = table.iter().map(|text| &**text).collect();
        let mut bytes = postcard::to_allocvec(&texts).expect("texts always encode");
        bytes.extend(written.expect("a projection always encodes"));
        (bytes, sessions)
    }

    /// SHA-256 over every user in id order, each with its stream version and sessions as a
    /// snapshot encodes them: equal for equal content, however it was reached.
    pub fn digest(&self) -> Digest {
        Self::digest_in_batches(|| self)
    }

    /// `digest` of the projection `read` gives, read again for each batch of users: behind
    /// a lock, held a batch at a time.
    pub fn digest_in_batches<P: std::ops::Deref<Target = ActiveSessions>>(
        read: impl Fn() -> P,
    ) -> Digest {
        let mut hasher = Sha256::new();
        hasher.update(b"tokenledger active sessions v1\n");
        for ids in read().user_ids().chunks(4096) {
            hasher.update(read().encode_users(ids).0);
        }
        hasher.finalize().into()
    }

    /// A projection of decoded entries (their texts shared already, a chunk's by all its
    /// sessions: see `decode_chunk`).
    fn from_entries(parts: Vec<Vec<Entry>>) -> Result<ActiveSessions, SnapshotError> {
        let mut projection = ActiveSessions::new();
        projection
            .users
            .reserve(parts.iter().map(Vec::len).sum::<usize>());
        for Entry { version, sessions } in parts.into_iter().flatten() {
            let user_id = sessions.user_id;
            projection.live += sessions.sessions.len();
            match projection.users.entry(user_id) {
                HashEntry::Occupied(_) => return Err(SnapshotError::Duplicate(user_id)),
                HashEntry::Vacant(vacant) => vacant.insert(UserEntry { version, sessions }),
            };
        }
        Ok(projection)
    }
}

/// A chunk: the table of its texts, then its entries, each text an index into the table
/// (`shared_text`), so that every session of the chunk that names a text shares one copy, as
/// a fold shares user agents (and a session's login and last IP). A text in several chunks is
/// one copy a chunk: a few hundred copies of the few agents of a million sessions.
fn decode_chunk(index: usize, chunk: &[u8]) -> Result<Vec<Entry>, SnapshotError> {
    let refused = |e: postcard::Error| SnapshotError::Chunk {
        index,
        reason: e.to_string(),
    };
    let (texts, rest): (Vec<&str>, &[u8]) = postcard::take_from_bytes(chunk).map_err(refused)?;
    let table: Vec<Arc<str>> = texts.into_iter().map(Arc::from).collect();
    shared_text::read_with_table(table, || postcard::from_bytes(rest)).map_err(refused)
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

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeDelta};
    use tokenledger_domain::{
        Event, IssueReason, RevokeReason, SessionRevoked, Timestamp, TokenHash, TokenIssued,
        TokenRotated,
    };
    use uuid::Uuid;

    use tokenledger_domain::Session;

    use super::*;

    fn at(s: i64) -> Timestamp {
        DateTime::from_timestamp(1_800_000_000 + s, 123_456_789).unwrap()
    }

    fn login(session: u128, agent: &str, ip: &str) -> Event {
        Event::TokenIssued(TokenIssued {
            session_id: Uuid::from_u128(session),
            device_id: format!("device-{session}"),
            token_id: Uuid::from_u128(session + 1000),
            token_hash: TokenHash([7; 32]),
            reason: IssueReason::Login,
            issued_at: at(0),
            token_expires_at: at(0) + TimeDelta::days(30),
            idle_expires_at: at(0) + TimeDelta::days(30),
            absolute_expires_at: at(0) + TimeDelta::days(90),
            ip: Some(ip.to_owned()),
            user_agent: Some(agent.to_owned()),
        })
    }

    fn rotated(session: u128) -> Event {
        Event::TokenRotated(TokenRotated {
            session_id: Uuid::from_u128(session),
            generation: 1,
            token_id: Uuid::from_u128(session + 2000),
            token_hash: TokenHash([8; 32]),
            rotated_at: at(5),
            token_expires_at: at(5) + TimeDelta::days(30),
            idle_expires_at: at(5) + TimeDelta::days(30),
            ip: Some("10.0.0.9".to_owned()),
            user_agent: Some("Agent B".to_owned()),
            same_client: false,
        })
    }

    /// Three users: logins from two agents, a rotation from elsewhere, a logout.
    fn folded() -> ActiveSessions {
        let mut p = ActiveSessions::new();
        p.apply(1, 1, &login(10, "Agent A", "10.0.0.1"));
        p.apply(1, 2, &login(11, "Agent B", "10.0.0.2"));
        p.apply(1, 3, &rotated(11));
        p.apply(2, 1, &login(20, "Agent A", "10.0.0.3"));
        p.apply(3, 1, &login(30, "Agent A", "10.0.0.4"));
        let logout = Event::SessionRevoked(SessionRevoked {
            session_id: Uuid::from_u128(30),
            reason: RevokeReason::Logout,
            revoked_at: at(9),
        });
        p.apply(3, 2, &logout);
        p
    }

    fn encoded(p: &ActiveSessions, per_chunk: usize) -> Vec<Vec<u8>> {
        p.user_ids()
            .chunks(per_chunk)
            .map(|ids| p.encode_users(ids).0)
            .collect()
    }

    #[test]
    fn given_a_folded_projection_when_encoded_and_decoded_then_it_is_the_same() {
        let p = folded();
        let chunks = encoded(&p, 2);
        let slices: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();

        let back = decode_chunks(&slices, 2).unwrap();

        assert_eq!(back.digest(), p.digest());
        assert_eq!((back.len(), back.version(1), back.version(3)), (3, 3, 2));
        for (user, session) in [(1, 10), (1, 11), (2, 20)] {
            let id = Uuid::from_u128(session);
            assert_eq!(
                back.get(user, &id),
                p.get(user, &id),
                "user {user} session {session}"
            );
        }
        assert!(back.get(3, &Uuid::from_u128(30)).is_none());
    }

    #[test]
    fn given_a_decoded_projection_then_equal_texts_are_one_copy_again() {
        let chunks = encoded(&folded(), 3);
        let slices: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();

        let back = decode_chunks(&slices, 2).unwrap();

        let one = back.get(1, &Uuid::from_u128(10)).unwrap().session;
        let two = back.get(2, &Uuid::from_u128(20)).unwrap().session;
        let (a, b) = (one.login_user_agent.unwrap(), two.last_user_agent.unwrap());
        assert!(
            Arc::ptr_eq(&a, &b),
            "one copy of Agent A across the chunk's users"
        );
        assert!(Arc::ptr_eq(
            two.login_ip.as_ref().unwrap(),
            two.last_ip.as_ref().unwrap()
        ));
        let rotated = back.get(1, &Uuid::from_u128(11)).unwrap().session;
        assert_eq!(rotated.last_ip.as_deref(), Some("10.0.0.9"));
        assert_eq!(rotated.generation, 1);
    }

    /// The digest of `folded()` and a login from a device named by a UUID, as the builds
    /// before sessions held smaller values computed it: `tokenledger rebuild` prints this
    /// digest and a snapshot stores this encoding, so a change to either shows here first.
    #[test]
    fn given_the_same_events_then_the_digest_is_the_one_earlier_builds_computed() {
        let mut p = folded();
        let Event::TokenIssued(mut by_uuid) = login(40, "Agent C", "10.0.0.5") else {
            unreachable!()
        };
        by_uuid.device_id = "01a2259e-7247-769b-a2d4-4d3729a4b46e".to_owned();
        p.apply(4, 1, &Event::TokenIssued(by_uuid));

        let hex: String = p.digest().iter().map(|b| format!("{b:02x}")).collect();

        assert_eq!(
            hex,
            "f2d0f69f3b89a8e4d9ebc07abc468d3d90ea3eedff4ff714ad08458cbd4d8b13"
        );
    }

    #[test]
    fn given_two_projections_that_differ_in_one_version_then_their_digests_differ() {
        let mut other = folded();
        other.apply(2, 5, &login(21, "Agent A", "10.0.0.3"));
        let mut again = folded();
        assert_eq!(again.digest(), folded().digest(), "deterministic");
        again.apply(2, 5, &login(21, "Agent A", "10.0.0.3"));
        assert_eq!(again.digest(), other.digest());
        assert_ne!(other.digest(), folded().digest());
    }

    #[test]
    fn given_a_garbled_chunk_or_a_user_twice_then_decoding_refuses() {
        let p = folded();
        let mut chunks = encoded(&p, 3);
        let whole = chunks[0].clone();
        chunks[0].truncate(whole.len() / 2);
        let slices: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
        assert!(matches!(
            decode_chunks(&slices, 1),
            Err(SnapshotError::Chunk { index: 0, .. })
        ));

        let twice = [whole.as_slice(), whole.as_slice()];
        assert_eq!(
            decode_chunks(&twice, 2).unwrap_err(),
            SnapshotError::Duplicate(1)
        );
    }

    #[test]
    fn given_sessions_out_of_id_order_then_decoding_refuses() {
        let p = folded();
        let mut sessions: Vec<Session> = p.users[&1].sessions.sessions.values().cloned().collect();
        sessions.reverse();
        let chunk_of = |sessions: &[Session]| {
            let (entries, table) = shared_text::write_with_table(|| {
                postcard::to_allocvec(&(1u8, 3i64, 1i64, sessions)).unwrap()
            });
            let texts: Vec<&str> = table.iter().map(|text| &**text).collect();
            let mut chunk = postcard::to_allocvec(&texts).unwrap();
            chunk.extend(entries);
            chunk
        };
        let in_order = chunk_of(&sessions[..1]);
        assert_eq!(decode_chunks(&[in_order.as_slice()], 1).unwrap().len(), 1);

        let bytes = chunk_of(&sessions);
        assert!(matches!(
            decode_chunks(&[bytes.as_slice()], 1),
            Err(SnapshotError::Chunk { index: 0, .. })
        ));
    }
}
