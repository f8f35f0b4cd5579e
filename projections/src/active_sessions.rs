//! `ActiveSessions`: every user's live sessions.
//!
//! It folds each user's stream with the aggregate's own `evolve`, so the projection can never
//! disagree with what the actors decide. Every lookup names the user (both kinds of token
//! carry it), so sessions are found through their user: no index by session id to pay for.
//! It holds a million sessions, so it shares equal user agents between them.
//!
//! Every change here runs under the service's one projection lock, so each costs at most a
//! pass over the one user it touches: an actor that has folded a user's whole stream hands
//! over a copy of its state (`catch_up_user`) instead of folding the stream here again, and a
//! listing sorts only the page it returns.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokenledger_domain::{
    Event, Session, SessionId, Sessions, Timestamp, UserId, UserSessions, evolve_all,
};

/// One live session as the read side sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionView {
    pub user_id: UserId,
    pub session: Session,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct UserEntry {
    /// The last stream version folded in; older or repeated events are skipped, so the
    /// appender and a catch-up reader may both deliver the same event.
    pub(crate) version: i64,
    pub(crate) sessions: UserSessions,
}

#[derive(Clone, Debug, Default)]
pub struct ActiveSessions {
    pub(crate) users: HashMap<UserId, UserEntry>,
    /// How many sessions are live, over all users.
    pub(crate) live: usize,
    pub(crate) texts: Texts,
}

impl ActiveSessions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds event `stream_version` of `user_id`'s stream. Returns false (and changes nothing)
    /// for a version already folded.
    pub fn apply(&mut self, user_id: UserId, stream_version: i64, event: &Event) -> bool {
        self.apply_all(user_id, [(stream_version, event)]) == 1
    }

    /// Folds events of `user_id`'s stream, in stream order, skipping versions already folded;
    /// returns how many were folded. A run of revocations (a login that evicts thousands)
    /// ends its sessions in one pass (`evolve_all`).
    pub fn apply_all<'e>(
        &mut self,
        user_id: UserId,
        events: impl IntoIterator<Item = (i64, &'e Event)>,
    ) -> usize {
        let entry = self.users.entry(user_id).or_insert_with(|| UserEntry {
            version: 0,
            sessions: UserSessions::new(user_id),
        });
        let mut version = entry.version;
        let fresh: Vec<&Event> = events
            .into_iter()
            .filter(|(stream_version, _)| {
                let new = *stream_version > version;
                version = version.max(*stream_version);
                new
            })
            .map(|(_, event)| event)
            .collect();
        if fresh.is_empty() {
            return 0;
        }
        entry.version = version;
        let before = entry.sessions.sessions.len();
        let sessions = std::mem::take(&mut entry.sessions);
        entry.sessions = evolve_all(sessions, fresh.iter().copied());
        self.live = self.live + entry.sessions.sessions.len() - before;
        for id in fresh.iter().filter_map(|event| touched(event)) {
            if let Some(session) = entry.sessions.sessions.get_mut(&id) {
                self.texts.share(session);
            }
        }
        fresh.len()
    }

    /// Counts event `stream_version` of `user_id`'s stream as folded, undecoded: an event
    /// that changes no session (`SESSION_EVENTS`), which a replay passes over.
    pub fn pass_over(&mut self, user_id: UserId, stream_version: i64) {
        let entry = self.users.entry(user_id).or_insert_with(|| UserEntry {
            version: 0,
            sessions: UserSessions::new(user_id),
        });
        entry.version = entry.version.max(stream_version);
    }

    /// Takes `sessions`, the fold of `user_id`'s stream through `stream_version`, in place of
    /// the user's entry if the entry is behind it: what an actor that loaded the stream
    /// holds, handed over without folding the stream a second time under the lock. Returns
    /// what is left to drop (the replaced sessions, or `sessions` when the entry was not
    /// behind), so the caller can free it after letting go of the lock.
    pub fn catch_up_user(
        &mut self,
        stream_version: i64,
        mut sessions: UserSessions,
    ) -> UserSessions {
        let user_id = sessions.user_id;
        let entry = self.users.entry(user_id).or_insert_with(|| UserEntry {
            version: 0,
            sessions: UserSessions::new(user_id),
        });
        if stream_version <= entry.version {
            return sessions;
        }
        // Shared one by one, as `apply` shares each session it touches: the user's copy
        // comes from the actor, whose texts are its own.
        let mut shared = Sessions::default();
        for mut session in std::mem::take(&mut sessions.sessions).into_values() {
            self.texts.share(&mut session);
            shared.insert(session);
        }
        sessions.sessions = shared;
        self.live = self.live + sessions.sessions.len() - entry.sessions.sessions.len();
        entry.version = stream_version;
        std::mem::replace(&mut entry.sessions, sessions)
    }

    /// A copy of a user's entry: the fold of their stream and the version it reached, or
    /// `None` for a user not seen. Where a starting actor begins, reading only the tail.
    pub fn user(&self, user_id: UserId) -> Option<(i64, UserSessions)> {
        let entry = self.users.get(&user_id)?;
        Some((entry.version, entry.sessions.clone()))
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

    /// One page of a user's live, unexpired sessions — `current` first, then the most
    /// recently used, equal times in login (id) order — skipping `skip` and returning at most
    /// `take`; and how many there are in all. Only the page is sorted and copied: this runs
    /// under the lock, and a user may hold thousands of sessions.
    pub fn page_of(
        &self,
        user_id: UserId,
        now: Timestamp,
        current: Option<SessionId>,
        skip: usize,
        take: usize,
    ) -> (Vec<Session>, usize) {
        let Some(entry) = self.users.get(&user_id) else {
            return (Vec::new(), 0);
        };
        let order = |s: &Session| {
            (
                Some(s.id) != current,
                std::cmp::Reverse(s.last_used_at),
                s.id,
            )
        };
        let mut live: Vec<&Session> = entry
            .sessions
            .sessions
            .values()
            .filter(|s| !s.is_expired(now))
            .collect();
        let total = live.len();
        let end = skip.saturating_add(take).min(total);
        if skip >= end {
            return (Vec::new(), total);
        }
        if end < total {
            live.select_nth_unstable_by_key(end, |s| order(s));
            live.truncate(end);
        }
        live.sort_unstable_by_key(|s| order(s));
        (live[skip..].iter().map(|s| (*s).clone()).collect(), total)
    }

    /// All of a user's live, unexpired sessions, most recently used first: for tools and
    /// tests. A user may hold thousands, so the service lists them with `page_of`.
    pub fn sessions_of(&self, user_id: UserId, now: Timestamp) -> Vec<Session> {
        let total = self.count_of(user_id, now);
        self.page_of(user_id, now, None, 0, total).0
    }

    /// How many live, unexpired sessions a user holds.
    pub fn count_of(&self, user_id: UserId, now: Timestamp) -> usize {
        self.users.get(&user_id).map_or(0, |entry| {
            entry
                .sessions
                .sessions
                .values()
                .filter(|s| !s.is_expired(now))
                .count()
        })
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
pub(crate) struct Texts {
    set: HashSet<Arc<str>>,
    swept_at: usize,
}

impl Texts {
    pub(crate) fn share(&mut self, session: &mut Session) {
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
    fn given_events_passed_over_then_the_fold_equals_folding_them() {
        use tokenledger_domain::{LoginFailed, SESSION_EVENTS};
        let failed = Event::LoginFailed(LoginFailed {
            failed_at: at(1),
            ip: None,
            user_agent: None,
        });
        let run = [(1, issued(10, 0)), (2, failed.clone()), (3, issued(11, 2))];
        let mut folded = ActiveSessions::new();
        folded.apply_all(1, run.iter().map(|(v, e)| (*v, e)));
        folded.apply_all(2, [(1, &failed)]);

        let mut passed = ActiveSessions::new();
        for (version, event) in &run {
            match SESSION_EVENTS.contains(&event.event_type()) {
                true => drop(passed.apply(1, *version, event)),
                false => passed.pass_over(1, *version),
            }
        }
        passed.pass_over(2, 1);

        assert_eq!(passed.version(1), 3);
        assert_eq!(
            passed.version(2),
            1,
            "a user with no session yet has an entry"
        );
        assert_eq!(passed.digest(), folded.digest());
        passed.pass_over(1, 2);
        assert_eq!(
            passed.version(1),
            3,
            "passing over an older version goes back nowhere"
        );
    }

    #[test]
    fn given_two_logins_when_one_is_revoked_then_only_the_other_is_live() {
        let mut p = ActiveSessions::new();
        assert!(p.apply(1, 1, &issued(10, 0)));
        assert!(p.apply(1, 2, &issued(11, 5)));
        assert_eq!(p.get(1, &Uuid::from_u128(10)).unwrap().user_id, 1);
        let ids: Vec<_> = p
            .page_of(1, at(6), None, 0, 25)
            .0
            .iter()
            .map(|s| s.id)
            .collect();
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
    fn given_a_folded_user_then_a_copy_of_the_entry_is_the_fold_and_its_version() {
        let mut p = ActiveSessions::new();
        assert!(p.user(1).is_none(), "a user not seen has no entry");
        let events = [issued(10, 0), issued(11, 1)];
        p.apply_all(1, events.iter().enumerate().map(|(i, e)| (i as i64 + 1, e)));

        let (version, sessions) = p.user(1).expect("an entry");

        assert_eq!(version, 2);
        assert_eq!(sessions, folded(1, &events));
    }

    #[test]
    fn given_an_expired_session_then_it_is_not_listed_nor_live() {
        let mut p = ActiveSessions::new();
        p.apply(1, 1, &issued(10, 0));
        let after = at(0) + TimeDelta::days(30);
        assert_eq!(p.page_of(1, after, None, 0, 25), (Vec::new(), 0));
        assert_eq!(p.count_of(1, after), 0);
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

    fn folded(user: UserId, events: &[Event]) -> UserSessions {
        evolve_all(UserSessions::new(user), events)
    }

    #[test]
    fn given_a_run_of_events_with_some_folded_already_then_only_the_new_ones_fold() {
        let mut p = ActiveSessions::new();
        let logins: Vec<Event> = (10..20).map(|n| issued(n, n as i64)).collect();
        assert_eq!(
            p.apply_all(1, logins.iter().enumerate().map(|(i, e)| (i as i64 + 1, e))),
            10
        );
        let ends: Vec<Event> = (10..18)
            .map(|n| {
                Event::SessionRevoked(SessionRevoked {
                    session_id: Uuid::from_u128(n),
                    reason: RevokeReason::Evicted,
                    revoked_at: at(30),
                })
            })
            .collect();
        // Versions 9 and 10 again, then eight revocations as 11..=18.
        let run = logins[8..]
            .iter()
            .enumerate()
            .map(|(i, e)| (i as i64 + 9, e))
            .chain(ends.iter().enumerate().map(|(i, e)| (i as i64 + 11, e)));
        assert_eq!(p.apply_all(1, run), 8);
        assert_eq!((p.version(1), p.len()), (18, 2));
        assert!(p.owns(1, &Uuid::from_u128(19)) && !p.owns(1, &Uuid::from_u128(17)));
        assert_eq!(p.apply_all(1, ends.iter().map(|e| (18, e))), 0);
    }

    #[test]
    fn given_a_user_behind_when_an_actor_hands_over_its_fold_then_the_entry_is_replaced() {
        let mut p = ActiveSessions::new();
        p.apply(1, 1, &issued(10, 0));
        p.apply(2, 1, &issued(20, 0));
        let mut history: Vec<Event> = (10..15).map(|n| issued(n, n as i64)).collect();
        for event in &mut history {
            if let Event::TokenIssued(login) = event {
                login.user_agent = Some("agent".to_owned());
            }
        }
        let left = p.catch_up_user(5, folded(1, &history));
        assert!(
            left.sessions.len() == 1,
            "the replaced entry comes back to drop"
        );
        assert_eq!((p.version(1), p.len()), (5, 6));
        let ids: Vec<u128> = p
            .page_of(1, at(20), None, 0, 25)
            .0
            .iter()
            .map(|s| s.id.as_u128())
            .collect();
        assert_eq!(ids, [14, 13, 12, 11, 10]);
        let (a, b) = (
            p.get(1, &Uuid::from_u128(10)).unwrap().session,
            p.get(1, &Uuid::from_u128(14)).unwrap().session,
        );
        assert!(Arc::ptr_eq(
            a.login_user_agent.as_ref().unwrap(),
            b.last_user_agent.as_ref().unwrap()
        ));

        // A fold the entry has passed already changes nothing.
        let stale = p.catch_up_user(3, folded(1, &history[..3]));
        assert_eq!(stale.sessions.len(), 3, "the stale fold comes back unused");
        assert_eq!((p.version(1), p.len(), p.count_of(1, at(20))), (5, 6, 5));
        // And the next event still folds on top of the handed-over state.
        let cleared = Event::SessionsCleared(SessionsCleared {
            reason: ClearReason::Logout,
            session_ids: (10..14).map(Uuid::from_u128).collect(),
            kept: None,
            cleared_at: at(30),
        });
        assert!(p.apply(1, 6, &cleared));
        assert_eq!((p.len(), p.count_of(1, at(31))), (2, 1));
    }

    #[test]
    fn given_many_sessions_then_a_page_holds_the_current_first_and_the_rest_by_last_use() {
        let mut p = ActiveSessions::new();
        // Ids ascend with login time; 3 and 4 were used at the same moment.
        for (n, t) in [(1, 1), (2, 2), (3, 5), (4, 5), (5, 4), (6, 6)] {
            p.apply(1, n as i64, &issued(n, t));
        }
        let page = |current, skip, take| {
            let (sessions, total) = p.page_of(1, at(10), current, skip, take);
            let ids: Vec<u128> = sessions.iter().map(|s| s.id.as_u128()).collect();
            (ids, total)
        };
        assert_eq!(page(None, 0, 25), (vec![6, 3, 4, 5, 2, 1], 6));
        assert_eq!(page(Some(Uuid::from_u128(2)), 0, 2), (vec![2, 6], 6));
        assert_eq!(page(Some(Uuid::from_u128(2)), 2, 2), (vec![3, 4], 6));
        assert_eq!(page(Some(Uuid::from_u128(2)), 4, 2), (vec![5, 1], 6));
        assert_eq!(page(None, 6, 2), (vec![], 6));
        assert_eq!(page(None, usize::MAX, 100), (vec![], 6));
        assert_eq!(p.page_of(9, at(10), None, 0, 25), (Vec::new(), 0));
    }

    #[test]
    fn given_a_stream_that_starts_with_its_registration_then_its_versions_fold_on() {
        use tokenledger_domain::{UserBlocked, UserRegistered};
        let mut p = ActiveSessions::new();
        let registered = Event::UserRegistered(UserRegistered {
            document_id: "k1x9d0q2m3n4b5v6c7x8z9l0".into(),
            username: "alice".into(),
            email: "alice@example.com".into(),
            provider: "local".into(),
            confirmed: true,
            blocked: false,
            password_digest: None,
            registered_at: at(0),
        });
        let blocked = Event::UserBlocked(UserBlocked { blocked_at: at(2) });
        let stream = [(1, &registered), (2, &issued(10, 1)), (3, &blocked)];
        assert_eq!(p.apply_all(1, stream), 3);
        assert_eq!(p.version(1), 3);
        // Blocking ends the sessions through its own `SessionsCleared`, not by itself.
        assert!(p.is_live(1, &Uuid::from_u128(10), at(3)));
        assert_eq!(p.len(), 1);
    }
}
