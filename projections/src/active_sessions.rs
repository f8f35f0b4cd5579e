//! `ActiveSessions`: every user's live sessions.
//!
//! It folds each user's stream with the aggregate's own `evolve`, so the projection can never
//! disagree with what the actors decide. Every lookup names the user (both kinds of token
//! carry it), so sessions are found through their user: no index by session id to pay for.
//! It holds a million sessions, so it shares equal user agents between them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

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
    /// How many sessions are live, over all users.
    live: usize,
    texts: Texts,
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
        let before = entry.sessions.sessions.len();
        let sessions = std::mem::take(&mut entry.sessions);
        entry.sessions = evolve(sessions, event);
        self.live = self.live + entry.sessions.sessions.len() - before;
        if let Some(session) = touched(event).and_then(|id| entry.sessions.sessions.get_mut(&id)) {
            self.texts.share(session);
        }
        true
    }

    /// The stream version folded so far for a user (0 for none).
    pub fn version(&self, user_id: UserId) -> i64 {
        self.users.get(&user_id).map_or(0, |entry| entry.version)
    }

    fn session(&self, user_id: UserId, session_id: &SessionId) -> Option<&Session> {
        self.users.get(&user_id)?.sessions.session(session_id)
    }

    /// A live session of `user_id`. A session past its expiry is still returned until its
    /// expiry is recorded; callers that answer users check `is_expired` themselves.
    pub fn get(&self, user_id: UserId, session_id: &SessionId) -> Option<SessionView> {
        let session = self.session(user_id, session_id)?.clone();
        Some(SessionView { user_id, session })
    }

    /// Whether `session_id` is a live session of `user_id`, expired but unrecorded included.
    pub fn owns(&self, user_id: UserId, session_id: &SessionId) -> bool {
        self.session(user_id, session_id).is_some()
    }

    /// Whether `session_id` is a live, unexpired session of `user_id`.
    pub fn is_live(&self, user_id: UserId, session_id: &SessionId, now: Timestamp) -> bool {
        self.session(user_id, session_id)
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
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }
}

/// The session whose texts an event may have set.
fn touched(event: &Event) -> Option<SessionId> {
    match event {
        Event::TokenIssued(e) => Some(e.session_id),
        Event::TokenRotated(e) => Some(e.session_id),
        Event::TokenRefreshed(e) => Some(e.session_id),
        _ => None,
    }
}

/// One copy of each user agent, shared by every session that names it. Texts no
/// session names any more are dropped whenever the set has doubled since the last sweep.
#[derive(Clone, Debug, Default)]
struct Texts {
    set: HashSet<Arc<str>>,
    swept_at: usize,
}

impl Texts {
    fn share(&mut self, session: &mut Session) {
        // User agents repeat across millions of sessions; IPs mostly do not (a session's
        // login and last IP already share one copy), and keeping each in the set would cost
        // more than it saves.
        for text in [&mut session.login_user_agent, &mut session.last_user_agent]
            .into_iter()
            .flatten()
        {
            match self.set.get(text) {
                Some(shared) => *text = shared.clone(),
                None => {
                    self.set.insert(text.clone());
                }
            }
        }
        if self.set.len() > 1024 && self.set.len() > 2 * self.swept_at {
            // Held by the set alone: no session uses it.
            self.set.retain(|text| Arc::strong_count(text) > 1);
            self.swept_at = self.set.len();
        }
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
        assert_eq!(p.get(1, &Uuid::from_u128(10)).unwrap().user_id, 1);
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
        assert!(p.get(1, &Uuid::from_u128(10)).is_none());
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
        assert!(p.get(1, &Uuid::from_u128(10)).is_some());
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

    #[test]
    fn given_two_users_logging_in_from_the_same_agent_then_they_share_one_copy_of_it() {
        let mut p = ActiveSessions::new();
        for (user, session) in [(1, 10), (2, 20)] {
            let Event::TokenIssued(mut login) = issued(session, 0) else {
                unreachable!()
            };
            login.user_agent = Some("Mozilla/5.0 (X11; Linux x86_64)".to_owned());
            login.ip = Some(format!("10.0.0.{user}"));
            p.apply(user, 1, &Event::TokenIssued(login));
        }
        let one = p.get(1, &Uuid::from_u128(10)).unwrap().session;
        let two = p.get(2, &Uuid::from_u128(20)).unwrap().session;
        let (a, b) = (one.last_user_agent.unwrap(), two.login_user_agent.unwrap());
        assert!(Arc::ptr_eq(&a, &b), "one copy of the agent");
        assert_eq!(p.len(), 2);
        assert!(!p.owns(2, &Uuid::from_u128(10)), "another user's session");
    }
}
