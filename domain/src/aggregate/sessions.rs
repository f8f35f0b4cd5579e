//! `Sessions`: a user's live sessions by id.

use std::ops::Index;

use serde::{Deserialize, Serialize};

use super::Session;
use crate::types::SessionId;

/// A user's live sessions, sorted by id in a vector sized closely to them. A user has a
/// handful, so a binary search is as fast as a tree; and the projection holds one of these for
/// every user, where a `BTreeMap` would allocate a node for eleven sessions even for one.
///
/// Every change costs at most one pass over the vector, however many sessions it ends: a
/// user with (old data, or no limit) tens of thousands of sessions must not make one clear, or
/// a fold of the stream, quadratic.
///
/// Serialized as its vector; reading one back checks the ids ascend, which every lookup's
/// binary search relies on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<Session>")]
pub struct Sessions(Vec<Session>);

impl TryFrom<Vec<Session>> for Sessions {
    type Error = &'static str;

    fn try_from(sessions: Vec<Session>) -> Result<Sessions, &'static str> {
        if sessions.windows(2).all(|pair| pair[0].id < pair[1].id) {
            Ok(Sessions(sessions))
        } else {
            Err("sessions out of id order")
        }
    }
}

/// Up to this many sessions the vector grows one slot at a time (no slack for the common
/// handful); beyond, it grows as a `Vec` does, so a long run of logins reallocates only
/// logarithmically often.
const EXACT_UP_TO: usize = 16;

impl Sessions {
    fn find(&self, id: &SessionId) -> Result<usize, usize> {
        self.0.binary_search_by(|s| s.id.cmp(id))
    }

    pub fn get(&self, id: &SessionId) -> Option<&Session> {
        self.find(id).ok().map(|i| &self.0[i])
    }

    pub fn get_mut(&mut self, id: &SessionId) -> Option<&mut Session> {
        self.find(id).ok().map(|i| &mut self.0[i])
    }

    pub fn contains_key(&self, id: &SessionId) -> bool {
        self.find(id).is_ok()
    }

    /// Adds `session`, or replaces the one with its id.
    pub fn insert(&mut self, session: Session) {
        match self.find(&session.id) {
            Ok(i) => self.0[i] = session,
            Err(i) => {
                if self.0.len() < EXACT_UP_TO {
                    self.0.reserve_exact(1);
                } else {
                    self.0.reserve(1);
                }
                self.0.insert(i, session);
            }
        }
    }

    pub fn remove(&mut self, id: &SessionId) -> Option<Session> {
        let removed = self.find(id).ok().map(|i| self.0.remove(i));
        self.shrink();
        removed
    }

    /// Removes every session whose id is in `ids`, in one pass over both. `ids` come from a
    /// `SessionsCleared`, which lists them in id order; any other order is sorted first.
    pub fn remove_all(&mut self, ids: &[SessionId]) {
        if ids.is_empty() {
            return;
        }
        let sorted;
        let ids = if ids.is_sorted() {
            ids
        } else {
            let mut copy = ids.to_vec();
            copy.sort_unstable();
            sorted = copy;
            &sorted[..]
        };
        // Both sides ascend, so a cursor into `ids` walks forward only.
        let mut next = 0;
        self.0.retain(|session| {
            while next < ids.len() && ids[next] < session.id {
                next += 1;
            }
            !(next < ids.len() && ids[next] == session.id)
        });
        self.shrink();
    }

    /// Gives memory back once the vector is less than half full; growth leaves slack, and
    /// the projection keeps one of these per user for as long as the process runs.
    fn shrink(&mut self) {
        if self.0.capacity() > self.0.len() * 2 {
            self.0.shrink_to_fit();
        }
    }

    /// In id order (which for UUID v7 ids is the order of login).
    pub fn values(&self) -> std::slice::Iter<'_, Session> {
        self.0.iter()
    }

    pub fn into_values(self) -> std::vec::IntoIter<Session> {
        self.0.into_iter()
    }

    pub fn keys(&self) -> impl Iterator<Item = &SessionId> {
        self.0.iter().map(|s| &s.id)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Index<&SessionId> for Sessions {
    type Output = Session;

    fn index(&self, id: &SessionId) -> &Session {
        self.get(id).expect("no session with this id")
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use uuid::Uuid;

    use super::*;
    use crate::aggregate::{DeviceId, UnixNanos};
    use crate::types::TokenHash;

    fn session(n: u128) -> Session {
        let at = UnixNanos::from(DateTime::from_timestamp(1_800_000_000, 0).unwrap());
        Session {
            id: Uuid::from_u128(n),
            device_id: DeviceId::from(format!("device-{n}").as_str()),
            generation: 0,
            token_id: Uuid::from_u128(n + 100),
            token_hash: TokenHash([0; 32]),
            token_issued_at: at,
            token_expires_at: at,
            previous: None,
            created_at: at,
            last_used_at: at,
            idle_expires_at: at,
            absolute_expires_at: at,
            login_ip: None,
            login_user_agent: None,
            last_ip: None,
            last_user_agent: None,
        }
    }

    #[test]
    fn given_sessions_inserted_out_of_order_then_they_are_found_and_listed_by_id() {
        let mut sessions = Sessions::default();
        for n in [5, 1, 3] {
            sessions.insert(session(n));
        }
        assert_eq!(
            sessions.keys().map(|id| id.as_u128()).collect::<Vec<_>>(),
            [1, 3, 5]
        );
        assert_eq!(
            sessions[&Uuid::from_u128(3)].device_id.to_string(),
            "device-3"
        );
        assert!(!sessions.contains_key(&Uuid::from_u128(2)));

        let mut again = session(3);
        again.generation = 7;
        sessions.insert(again);
        assert_eq!(sessions.len(), 3, "the same id replaces, not adds");
        assert_eq!(sessions.get(&Uuid::from_u128(3)).unwrap().generation, 7);

        assert_eq!(
            sessions.remove(&Uuid::from_u128(1)).unwrap().id.as_u128(),
            1
        );
        assert!(sessions.remove(&Uuid::from_u128(1)).is_none());
        assert_eq!(sessions.len(), 2);
    }

    #[test]
    fn given_many_sessions_when_some_are_removed_at_once_then_exactly_those_leave() {
        let mut sessions = Sessions::default();
        for n in 0..1000 {
            sessions.insert(session(n));
        }
        let gone: Vec<SessionId> = (0..1000)
            .filter(|n| n % 3 == 0)
            .map(Uuid::from_u128)
            .chain([Uuid::from_u128(5000)])
            .collect();
        sessions.remove_all(&gone);
        assert_eq!(sessions.len(), 1000 - 334);
        assert!(sessions.keys().all(|id| id.as_u128() % 3 != 0));
        assert!(sessions.contains_key(&Uuid::from_u128(998)));

        // Out of order (not what `SessionsCleared` writes, but not trusted either).
        sessions.remove_all(&[Uuid::from_u128(998), Uuid::from_u128(1)]);
        assert_eq!(sessions.len(), 1000 - 336);
        assert!(!sessions.contains_key(&Uuid::from_u128(998)));
        assert!(!sessions.contains_key(&Uuid::from_u128(1)));
        assert!(sessions.contains_key(&Uuid::from_u128(2)));

        let rest: Vec<SessionId> = sessions.keys().copied().collect();
        sessions.remove_all(&rest);
        assert!(sessions.is_empty());
    }
}
