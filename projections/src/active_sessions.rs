//! `ActiveSessions`: every live session by id, and each user's sessions.
//!
//! It folds each user's stream with the aggregate's own `evolve`, so the projection can never
//! disagree with what the actors decide; it only adds the index by session id that the HTTP
//! handlers need to turn away unknown or revoked sessions without waking an actor.

use std::collections::HashMap;

use tokenledger_domain::{Event, Session, SessionId, Timestamp, UserId, UserSessions, evolve};

/// One live session as the read side sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionView {
    pub user_id: UserId,
    pub session: Session,
}

#[derive(Clone, Debug, Default)]
struct UserEntry {
    /// The last stream version folded in; older or repeated events are skipped, so the
    /// appender and a catch-up reader may both deliver the same event.
    version: i64,
    sessions: UserSessions,
}

#[derive(Clone, Debug, Default)]
pub struct ActiveSessions {
    users: HashMap<UserId, UserEntry>,
    owners: HashMap<SessionId, UserId>,
}

impl ActiveSessions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds event `stream_version` of `user_id`'s stream. Returns false (and changes nothing)
    /// for a version already folded.
    pub fn apply(&mut self, user_id: UserId, stream_version: i64, event: &Event) -> bool {
        let entry = self.users.entry(user_id).or_insert_with(|| UserEntry {
            version: 0,
            sessions: UserSessions::new(user_id),
        });
        if stream_version <= entry.version {
            return false;
        }
        entry.version = stream_version;
        let sessions = std::mem::take(&mut entry.sessions);
        entry.sessions = evolve(sessions, event);
        match event {
            Event::TokenIssued(e) => {
                self.owners.insert(e.session_id, user_id);
            }
            Event::SessionRevoked(e) => {
                self.owners.remove(&e.session_id);
            }
            Event::SessionsCleared(e) => {
                for id in &e.session_ids {
                    self.owners.remove(id);
                }
            }
            _ => {}
        }
        true
    }

    /// The stream version folded so far for a user (0 for none).
    pub fn version(&self, user_id: UserId) -> i64 {
        self.users.get(&user_id).map_or(0, |entry| entry.version)
    }

    /// A live session and its owner. A session past its expiry is still returned until its
    /// expiry is recorded; callers that answer users check `is_expired` themselves.
    pub fn get(&self, session_id: &SessionId) -> Option<SessionView> {
        let user_id = *self.owners.get(session_id)?;
        let session = self
            .users
            .get(&user_id)?
            .sessions
            .session(session_id)?
            .clone();
        Some(SessionView { user_id, session })
    }

    /// The user a live session belongs to.
    pub fn owner(&self, session_id: &SessionId) -> Option<UserId> {
        self.owners.get(session_id).copied()
    }

    /// Whether `session_id` is a live, unexpired session of `user_id`.
    pub fn is_live(&self, user_id: UserId, session_id: &SessionId, now: Timestamp) -> bool {
        self.owners.get(session_id) == Some(&user_id)
            && self
                .users
                .get(&user_id)
                .and_then(|entry| entry.sessions.session(session_id))
                .is_some_and(|session| !session.is_expired(now))
    }

    /// A user's live, unexpired sessions, most recently used first.
    pub fn sessions_of(&self, user_id: UserId, now: Timestamp) -> Vec<Session> {
        let mut sessions: Vec<Session> = self
            .users
            .get(&user_id)
            .map(|entry| {
                entry
                    .sessions
                    .sessions
                    .values()
                    .filter(|s| !s.is_expired(now))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        sessions.sort_by_key(|s| std::cmp::Reverse(s.last_used_at));
        sessions
    }

    /// How many sessions are live (expired but unrecorded ones included).
    pub fn len(&self) -> usize {
        self.owners.len()
    }

    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeDelta};
    use tokenledger_domain::{
        ClearReason, IssueReason, RevokeReason, SessionRevoked, SessionsCleared, TokenHash,
        TokenIssued,
    };
    use uuid::Uuid;

    use super::*;

    fn at(s: i64) -> Timestamp {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn issued(session: u128, t: i64) -> Event {
        Event::TokenIssued(TokenIssued {
            session_id: Uuid::from_u128(session),
            device_id: format!("device-{session}"),
            token_id: Uuid::from_u128(session + 1000),
            token_hash: TokenHash([1; 32]),
            reason: IssueReason::Login,
            issued_at: at(t),
            token_expires_at: at(t) + TimeDelta::days(30),
            idle_expires_at: at(t) + TimeDelta::days(30),
            absolute_expires_at: at(t) + TimeDelta::days(90),
            ip: None,
            user_agent: None,
        })
    }

    #[test]
    fn given_two_logins_when_one_is_revoked_then_only_the_other_is_live() {
        let mut p = ActiveSessions::new();
        assert!(p.apply(1, 1, &issued(10, 0)));
        assert!(p.apply(1, 2, &issued(11, 5)));
        assert_eq!(p.get(&Uuid::from_u128(10)).unwrap().user_id, 1);
        let ids: Vec<_> = p.sessions_of(1, at(6)).iter().map(|s| s.id).collect();
        assert_eq!(
            ids,
            [Uuid::from_u128(11), Uuid::from_u128(10)],
            "most recent first"
        );

        let revoked = Event::SessionRevoked(SessionRevoked {
            session_id: Uuid::from_u128(10),
            reason: RevokeReason::Logout,
            revoked_at: at(7),
        });
        assert!(p.apply(1, 3, &revoked));
        assert!(p.get(&Uuid::from_u128(10)).is_none());
        assert!(p.is_live(1, &Uuid::from_u128(11), at(8)));
        assert!(
            !p.is_live(2, &Uuid::from_u128(11), at(8)),
            "another user's session"
        );
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn given_a_folded_version_when_it_arrives_again_then_it_is_skipped() {
        let mut p = ActiveSessions::new();
        assert!(p.apply(1, 1, &issued(10, 0)));
        let cleared = Event::SessionsCleared(SessionsCleared {
            reason: ClearReason::Admin,
            session_ids: vec![Uuid::from_u128(10)],
            kept: None,
            cleared_at: at(1),
        });
        assert!(!p.apply(1, 1, &cleared), "version 1 was folded already");
        assert!(p.get(&Uuid::from_u128(10)).is_some());
        assert!(p.apply(1, 2, &cleared));
        assert!(p.is_empty());
        assert_eq!(p.version(1), 2);
    }

    #[test]
    fn given_an_expired_session_then_it_is_not_listed_nor_live() {
        let mut p = ActiveSessions::new();
        p.apply(1, 1, &issued(10, 0));
        let after = at(0) + TimeDelta::days(30);
        assert!(p.sessions_of(1, after).is_empty());
        assert!(!p.is_live(1, &Uuid::from_u128(10), after));
        assert!(p.is_live(1, &Uuid::from_u128(10), after - TimeDelta::seconds(1)));
    }
}
