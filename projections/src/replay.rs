//! Forensic replay: the sessions of a user that were alive at a past moment, folded from the
//! user's events up to that moment with the aggregate's own `evolve` (as `evolve_all`, which
//! ends a run of revocations in one pass).

use tokenledger_domain::{Event, Session, Timestamp, UserId, UserSessions, evolve_all};

/// Folds the events that happened at or before `at` (by the time each decision saw) and
/// returns the sessions alive then — ended ones and ones already past their expiry left out
/// — most recently used first.
pub fn sessions_alive_at<'e>(
    user_id: UserId,
    events: impl IntoIterator<Item = &'e Event>,
    at: Timestamp,
) -> Vec<Session> {
    let state = evolve_all(
        UserSessions::new(user_id),
        events
            .into_iter()
            .take_while(|event| event.occurred_at() <= at),
    );
    let mut alive: Vec<Session> = state
        .sessions
        .into_values()
        .filter(|session| !session.is_expired(at))
        .collect();
    alive.sort_by_key(|s| std::cmp::Reverse(s.last_used_at));
    alive
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeDelta};
    use tokenledger_domain::{IssueReason, RevokeReason, SessionRevoked, TokenHash, TokenIssued};
    use uuid::Uuid;

    use super::*;

    fn at(s: i64) -> Timestamp {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn issued(session: u128, t: i64, idle: i64) -> Event {
        Event::TokenIssued(TokenIssued {
            session_id: Uuid::from_u128(session),
            device_id: "d".into(),
            token_id: Uuid::from_u128(session + 1),
            token_hash: TokenHash([0; 32]),
            reason: IssueReason::Login,
            issued_at: at(t),
            token_expires_at: at(t + idle),
            idle_expires_at: at(t + idle),
            absolute_expires_at: at(t) + TimeDelta::days(90),
            ip: None,
            user_agent: None,
        })
    }

    #[test]
    fn given_a_history_then_each_moment_sees_its_own_sessions() {
        let events = [
            issued(1, 0, 1000),
            issued(2, 10, 50),
            Event::SessionRevoked(SessionRevoked {
                session_id: Uuid::from_u128(1),
                reason: RevokeReason::Logout,
                revoked_at: at(20),
            }),
        ];
        let ids = |t| {
            sessions_alive_at(7, &events, at(t))
                .iter()
                .map(|s| s.id.as_u128())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(-1), Vec::<u128>::new());
        assert_eq!(ids(5), [1]);
        assert_eq!(ids(15), [2, 1]);
        assert_eq!(ids(25), [2], "session 1 was revoked at 20");
        assert_eq!(ids(60), Vec::<u128>::new(), "session 2 idled out at 60");
    }
}
