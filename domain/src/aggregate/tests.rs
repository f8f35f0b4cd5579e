//! Given/when/then tests for every rule of the aggregate (DESIGN §2).

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use super::*;
use crate::commands::PresentedToken;
use crate::events::{ClearReason, IssueReason};

/// Deterministic stand-in for signing: the hash spells out the grant's fields.
struct FieldSealer;

impl TokenSealer for FieldSealer {
    fn seal(&self, grant: &RefreshGrant) -> TokenHash {
        let mut bytes = [0u8; 32];
        bytes[..16].copy_from_slice(grant.token_id.as_bytes());
        bytes[16..20].copy_from_slice(&grant.generation.to_be_bytes());
        bytes[20..28].copy_from_slice(&grant.expires_at.to_be_bytes());
        TokenHash(bytes)
    }
}

const USER: UserId = 7;

fn at(seconds: i64) -> Timestamp {
    DateTime::<Utc>::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
}

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn lifetimes() -> Lifetimes {
    Lifetimes {
        refresh_token: TimeDelta::days(30),
        idle_timeout: TimeDelta::days(7),
        absolute: TimeDelta::days(90),
    }
}

fn client(ip: &str) -> Client {
    Client {
        ip: Some(ip.to_owned()),
        user_agent: Some("test-agent".to_owned()),
    }
}

const SESSION: u128 = 100;

fn login() -> Command {
    Command::IssueToken(IssueToken {
        session_id: id(SESSION),
        device_id: "phone".to_owned(),
        token_id: id(1),
        reason: IssueReason::Login,
        lifetimes: lifetimes(),
        max_sessions: None,
        client: client("10.0.0.1"),
    })
}

fn refresh(state: &UserSessions, generation: u32, rotation: bool, successor: u128) -> Command {
    let session = state.session(&id(SESSION)).expect("session in state");
    // Present the token of `generation`: the current one, or the previous one's hash.
    let (token_id, hash) = if generation == session.generation {
        (session.token_id, session.token_hash)
    } else if let Some(prev) = session
        .previous
        .as_ref()
        .filter(|p| p.generation == generation)
    {
        (id(u128::from(generation) + 1), prev.hash)
    } else {
        (
            id(u128::from(generation) + 1),
            TokenHash([generation as u8; 32]),
        )
    };
    Command::RotateToken(RotateToken {
        presented: PresentedToken {
            user_id: USER,
            session_id: id(SESSION),
            token_id,
            generation,
            hash,
        },
        rotation,
        successor_id: id(successor),
        reuse_grace: TimeDelta::seconds(10),
        lifetimes: lifetimes(),
        activity_resolution: TimeDelta::zero(),
        client: client("10.0.0.2"),
    })
}

/// given(events) → when(command at time) → then events or error.
struct Harness {
    state: UserSessions,
}

fn given(history: &[(Command, Timestamp)]) -> Harness {
    let mut state = UserSessions::new(USER);
    for (command, now) in history {
        let events = decide(&state, command, *now, &FieldSealer).expect("history decides");
        state = events.iter().fold(state, evolve);
    }
    Harness { state }
}

impl Harness {
    fn when(
        &self,
        command: Command,
        now: Timestamp,
    ) -> (Result<Vec<Event>, DomainError>, UserSessions) {
        let result = decide(&self.state, &command, now, &FieldSealer);
        let after = match &result {
            Ok(events) => events.iter().fold(self.state.clone(), evolve),
            Err(_) => self.state.clone(),
        };
        (result, after)
    }

    fn rotated(mut self, now: Timestamp, successor: u128) -> Self {
        let cmd = refresh(&self.state, self.session().generation, true, successor);
        let events = decide(&self.state, &cmd, now, &FieldSealer).expect("rotation decides");
        self.state = events.iter().fold(self.state, evolve);
        self
    }

    fn session(&self) -> &Session {
        self.state.session(&id(SESSION)).expect("live session")
    }
}

fn types(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(Event::event_type).collect()
}

#[test]
fn login_starts_a_session_at_generation_zero_with_the_sealed_token() {
    let (result, after) = given(&[]).when(login(), at(0));
    let events = result.unwrap();
    assert_eq!(types(&events), ["TokenIssued"]);
    let session = after.session(&id(SESSION)).unwrap();
    assert_eq!(session.generation, 0);
    assert_eq!(session.token_hash, FieldSealer.seal(&session.grant(USER)));
    assert_eq!(
        session.absolute_expires_at.to_timestamp(),
        at(0) + TimeDelta::days(90)
    );
    assert_eq!(
        session.idle_expires_at.to_timestamp(),
        at(0) + TimeDelta::days(7)
    );
    assert_eq!(
        session.token_expires_at.to_timestamp(),
        at(0) + TimeDelta::days(30)
    );
}

/// A login whose refresh token the client is not given: its lifetimes are the access
/// token's (2 hours here).
fn login_without_refresh_token(idle_timeout: TimeDelta) -> Command {
    let mut lifetimes = lifetimes();
    lifetimes.idle_timeout = idle_timeout;
    Command::IssueToken(IssueToken {
        lifetimes: lifetimes.without_refresh_token(TimeDelta::hours(2)),
        ..match login() {
            Command::IssueToken(issue) => issue,
            _ => unreachable!("login() issues a token"),
        }
    })
}

#[test]
fn a_session_without_a_refresh_token_lasts_as_long_as_its_access_token() {
    let (result, after) = given(&[]).when(login_without_refresh_token(TimeDelta::days(7)), at(0));
    let issued = match &result.unwrap()[..] {
        [Event::TokenIssued(issued)] => issued.clone(),
        other => panic!("expected one TokenIssued, got {other:?}"),
    };
    let ends = at(0) + TimeDelta::hours(2);
    assert_eq!(issued.token_expires_at, ends);
    assert_eq!(issued.idle_expires_at, ends);
    assert_eq!(issued.absolute_expires_at, ends);
    let session = after.session(&id(SESSION)).unwrap();
    assert_eq!(session.expires_at(), ends);
    assert!(!session.is_expired(ends - TimeDelta::seconds(1)));
    assert!(session.is_expired(ends));
}

#[test]
fn a_session_without_a_refresh_token_keeps_a_shorter_idle_timeout() {
    let fifteen_minutes = TimeDelta::minutes(15);
    let (result, after) = given(&[]).when(login_without_refresh_token(fifteen_minutes), at(0));
    assert_eq!(types(&result.unwrap()), ["TokenIssued"]);
    let session = after.session(&id(SESSION)).unwrap();
    assert_eq!(session.expires_at(), at(0) + fifteen_minutes);
    assert_eq!(
        session.absolute_expires_at.to_timestamp(),
        at(0) + TimeDelta::hours(2)
    );
}

#[test]
fn a_session_without_a_refresh_token_is_recorded_as_expired_once_its_access_token_is() {
    let h = given(&[(login_without_refresh_token(TimeDelta::days(7)), at(0))]);
    let (result, after) = h.when(refresh(&h.state, 0, true, 2), at(2 * 3600));
    match &result.unwrap()[..] {
        [Event::SessionRevoked(e)] => assert_eq!(e.reason, RevokeReason::Expired),
        other => panic!("expected one SessionRevoked, got {other:?}"),
    }
    assert!(after.sessions.is_empty());
}

#[test]
fn rotation_on_mints_the_next_generation_and_remembers_the_previous() {
    let h = given(&[(login(), at(0))]);
    let (result, after) = h.when(refresh(&h.state, 0, true, 2), at(60));
    assert_eq!(types(&result.unwrap()), ["TokenRotated"]);
    let session = after.session(&id(SESSION)).unwrap();
    assert_eq!((session.generation, session.token_id), (1, id(2)));
    assert_eq!(session.previous.as_ref().unwrap().generation, 0);
    assert_eq!(session.token_hash, FieldSealer.seal(&session.grant(USER)));
}

#[test]
fn rotation_off_records_the_use_and_keeps_the_token() {
    let h = given(&[(login(), at(0))]);
    let before = h.session().clone();
    let (result, after) = h.when(refresh(&h.state, 0, false, 2), at(3600));
    assert_eq!(types(&result.unwrap()), ["TokenRefreshed"]);
    let session = after.session(&id(SESSION)).unwrap();
    assert_eq!(
        (session.generation, session.token_hash),
        (0, before.token_hash)
    );
    assert_eq!(session.last_used_at.to_timestamp(), at(3600));
    assert_eq!(
        session.idle_expires_at.to_timestamp(),
        at(3600) + TimeDelta::days(7)
    );
    assert_eq!(session.last_ip.as_deref(), Some("10.0.0.2"));
}

#[test]
fn a_refresh_from_the_sessions_last_client_records_no_address_and_a_change_records_it() {
    // Given: a session last used from 10.0.0.2 (its first refresh came from there).
    let h = given(&[(login(), at(0))]).rotated(at(100), 2);
    assert_eq!(h.session().last_ip.as_deref(), Some("10.0.0.2"));
    // When: the same client refreshes again.
    let (result, after) = h.when(refresh(&h.state, 1, true, 3), at(200));
    // Then: the event says so and repeats nothing; the session still knows where it was.
    let Event::TokenRotated(same) = &result.unwrap()[0] else {
        panic!("not a rotation")
    };
    assert_eq!(
        (&same.ip, &same.user_agent, same.same_client),
        (&None, &None, true)
    );
    let session = after.session(&id(SESSION)).unwrap();
    assert_eq!(session.last_ip.as_deref(), Some("10.0.0.2"));
    assert_eq!(session.last_user_agent.as_deref(), Some("test-agent"));

    // When: it comes from another address, with rotation off.
    let h = Harness { state: after };
    let mut cmd = refresh(&h.state, 2, false, 4);
    if let Command::RotateToken(r) = &mut cmd {
        r.client = client("192.0.2.99");
    }
    let (result, after) = h.when(cmd, at(300));
    let Event::TokenRefreshed(moved) = &result.unwrap()[0] else {
        panic!("not a refresh")
    };
    assert_eq!(moved.ip.as_deref(), Some("192.0.2.99"));
    assert!(!moved.same_client);
    let session = after.session(&id(SESSION)).unwrap();
    assert_eq!(session.last_ip.as_deref(), Some("192.0.2.99"));
}

#[test]
fn the_token_must_belong_to_the_streams_user() {
    let h = given(&[(login(), at(0))]);
    let mut cmd = refresh(&h.state, 0, true, 2);
    if let Command::RotateToken(r) = &mut cmd {
        r.presented.user_id = USER + 1;
    }
    assert_eq!(h.when(cmd, at(1)).0, Err(DomainError::WrongUser));
}

#[test]
fn an_unknown_session_is_refused() {
    let h = given(&[(login(), at(0))]);
    let mut cmd = refresh(&h.state, 0, true, 2);
    if let Command::RotateToken(r) = &mut cmd {
        r.presented.session_id = id(999);
    }
    assert_eq!(h.when(cmd, at(1)).0, Err(DomainError::UnknownSession));
}

#[test]
fn a_current_generation_with_another_hash_or_id_is_refused() {
    let h = given(&[(login(), at(0))]);
    let mut wrong_hash = refresh(&h.state, 0, true, 2);
    if let Command::RotateToken(r) = &mut wrong_hash {
        r.presented.hash = TokenHash([9; 32]);
    }
    assert_eq!(h.when(wrong_hash, at(1)).0, Err(DomainError::TokenMismatch));
    let mut wrong_id = refresh(&h.state, 0, true, 2);
    if let Command::RotateToken(r) = &mut wrong_id {
        r.presented.token_id = id(12345);
    }
    assert_eq!(h.when(wrong_id, at(1)).0, Err(DomainError::TokenMismatch));
}

#[test]
fn a_generation_from_the_future_is_refused() {
    let h = given(&[(login(), at(0))]);
    let mut cmd = refresh(&h.state, 0, true, 2);
    if let Command::RotateToken(r) = &mut cmd {
        r.presented.generation = 5;
    }
    assert_eq!(h.when(cmd, at(1)).0, Err(DomainError::TokenMismatch));
}

#[test]
fn the_previous_token_within_the_grace_window_gets_the_same_successor() {
    let h = given(&[(login(), at(0))]).rotated(at(100), 2);
    let successor = h.session().grant(USER);
    let (result, after) = h.when(refresh(&h.state, 0, true, 3), at(109));
    assert_eq!(result.unwrap(), Vec::<Event>::new());
    assert_eq!(after.session(&id(SESSION)).unwrap().grant(USER), successor);
}

#[test]
fn the_grace_window_is_measured_from_the_exact_rotation_instant() {
    // Rotated at .9 s: 9.95 s later is still inside a 10 s window, although whole seconds
    // would say 10.95 s had passed since second 100.
    let rotation = at(100) + TimeDelta::milliseconds(900);
    let h = given(&[(login(), at(0))]).rotated(rotation, 2);
    let (inside, _) = h.when(
        refresh(&h.state, 0, true, 3),
        rotation + TimeDelta::milliseconds(9950),
    );
    assert_eq!(inside.unwrap(), Vec::<Event>::new());
    let (outside, _) = h.when(
        refresh(&h.state, 0, true, 3),
        rotation + TimeDelta::milliseconds(10_001),
    );
    assert_eq!(
        types(&outside.unwrap()),
        ["RefreshTokenReused", "SessionRevoked"]
    );
    // The token itself carries whole seconds.
    assert_eq!(h.session().grant(USER).issued_at, 1_800_000_100);
}

#[test]
fn the_grace_window_ends_at_the_nanosecond_the_rotation_was_recorded_with() {
    // The session holds its instants in its own form (`UnixNanos`): to the nanosecond.
    let rotation = at(100) + TimeDelta::nanoseconds(123_456_789);
    let h = given(&[(login(), at(0))]).rotated(rotation, 2);
    let window_end = rotation + TimeDelta::seconds(10);
    let (last, _) = h.when(refresh(&h.state, 0, true, 3), window_end);
    assert_eq!(last.unwrap(), Vec::<Event>::new());
    let (past, _) = h.when(
        refresh(&h.state, 0, true, 3),
        window_end + TimeDelta::nanoseconds(1),
    );
    assert_eq!(
        types(&past.unwrap()),
        ["RefreshTokenReused", "SessionRevoked"]
    );
}

#[test]
fn the_previous_token_after_the_grace_window_revokes_the_whole_session() {
    let h = given(&[(login(), at(0))]).rotated(at(100), 2);
    let (result, after) = h.when(refresh(&h.state, 0, true, 3), at(111));
    let events = result.unwrap();
    assert_eq!(types(&events), ["RefreshTokenReused", "SessionRevoked"]);
    match &events[1] {
        Event::SessionRevoked(e) => assert_eq!(e.reason, RevokeReason::ReuseDetected),
        other => panic!("expected SessionRevoked, got {other:?}"),
    }
    assert!(
        after.session(&id(SESSION)).is_none(),
        "the newer token dies with the family"
    );
}

#[test]
fn an_older_generation_is_reuse_even_inside_the_grace_window() {
    let h = given(&[(login(), at(0))])
        .rotated(at(100), 2)
        .rotated(at(101), 3);
    let (result, after) = h.when(refresh(&h.state, 0, true, 4), at(102));
    match &result.unwrap()[0] {
        Event::RefreshTokenReused(e) => {
            assert_eq!((e.presented_generation, e.current_generation), (0, 2));
            assert_eq!(e.ip.as_deref(), Some("10.0.0.2"));
        }
        other => panic!("expected RefreshTokenReused, got {other:?}"),
    }
    assert!(after.sessions.is_empty());
}

#[test]
fn idle_expiry_ends_the_session_on_its_next_refresh() {
    let h = given(&[(login(), at(0))]);
    let idle = 7 * 86_400;
    let (alive, _) = h.when(refresh(&h.state, 0, false, 2), at(idle - 1));
    assert_eq!(types(&alive.unwrap()), ["TokenRefreshed"]);
    let (result, after) = h.when(refresh(&h.state, 0, false, 2), at(idle));
    match &result.unwrap()[..] {
        [Event::SessionRevoked(e)] => assert_eq!(e.reason, RevokeReason::Expired),
        other => panic!("expected one SessionRevoked, got {other:?}"),
    }
    assert!(after.sessions.is_empty());
}

#[test]
fn rotation_slides_idle_expiry_but_never_the_absolute_one() {
    // Rotate every 6 days: idle (7 days) never strikes, the absolute lifetime (90 days) does.
    let mut h = given(&[(login(), at(0))]);
    let day = 86_400;
    let mut t = 0;
    while t + 6 * day < 90 * day {
        t += 6 * day;
        h = h.rotated(at(t), 1000 + t as u128);
        let s = h.session();
        assert!(
            s.token_expires_at.to_timestamp() <= at(90 * day),
            "token exp passes the absolute lifetime"
        );
        assert!(s.idle_expires_at.to_timestamp() <= at(90 * day));
        assert_eq!(s.absolute_expires_at.to_timestamp(), at(90 * day));
    }
    let (result, _) = h.when(
        refresh(&h.state, h.session().generation, true, 1),
        at(90 * day),
    );
    match &result.unwrap()[..] {
        [Event::SessionRevoked(e)] => assert_eq!(e.reason, RevokeReason::Expired),
        other => panic!("expected expiry, got {other:?}"),
    }
}

#[test]
fn revoking_ends_one_session_and_an_unknown_one_is_refused() {
    let h = given(&[(login(), at(0))]);
    let cmd = Command::RevokeSession(RevokeSession {
        session_id: id(SESSION),
        reason: RevokeReason::Logout,
    });
    let (result, after) = h.when(cmd.clone(), at(5));
    assert_eq!(types(&result.unwrap()), ["SessionRevoked"]);
    assert!(after.sessions.is_empty());
    let h = Harness { state: after };
    assert_eq!(h.when(cmd, at(6)).0, Err(DomainError::UnknownSession));
}

#[test]
fn clearing_ends_every_session_but_the_kept_one() {
    let second = Command::IssueToken(IssueToken {
        session_id: id(200),
        device_id: "laptop".to_owned(),
        token_id: id(201),
        reason: IssueReason::Login,
        lifetimes: lifetimes(),
        max_sessions: None,
        client: client("10.0.0.3"),
    });
    let h = given(&[(login(), at(0)), (second, at(1))]);
    let cmd = Command::ClearSessions(ClearSessions {
        reason: ClearReason::Logout,
        device_id: None,
        keep: Some(id(200)),
    });
    let (result, after) = h.when(cmd, at(2));
    match &result.unwrap()[..] {
        [Event::SessionsCleared(e)] => {
            assert_eq!(e.session_ids, vec![id(SESSION)]);
            assert_eq!(e.kept, Some(id(200)));
        }
        other => panic!("expected SessionsCleared, got {other:?}"),
    }
    assert_eq!(
        after.sessions.keys().copied().collect::<Vec<_>>(),
        vec![id(200)]
    );
}

#[test]
fn clearing_a_device_ends_only_that_devices_sessions() {
    let laptop = |session: u128| {
        Command::IssueToken(IssueToken {
            session_id: id(session),
            device_id: "laptop".to_owned(),
            token_id: id(session + 1),
            reason: IssueReason::Login,
            lifetimes: lifetimes(),
            max_sessions: None,
            client: client("10.0.0.3"),
        })
    };
    let h = given(&[(login(), at(0)), (laptop(200), at(1)), (laptop(300), at(2))]);
    let cmd = Command::ClearSessions(ClearSessions {
        reason: ClearReason::Logout,
        device_id: Some("laptop".to_owned()),
        keep: None,
    });
    let (result, after) = h.when(cmd, at(3));
    match &result.unwrap()[..] {
        [Event::SessionsCleared(e)] => assert_eq!(e.session_ids, vec![id(200), id(300)]),
        other => panic!("expected SessionsCleared, got {other:?}"),
    }
    assert_eq!(
        after.sessions.keys().copied().collect::<Vec<_>>(),
        vec![id(SESSION)]
    );
}

#[test]
fn clearing_a_device_named_by_a_uuid_matches_its_text_exactly() {
    let on = |session: u128, device: &str| {
        Command::IssueToken(IssueToken {
            session_id: id(session),
            device_id: device.to_owned(),
            token_id: id(session + 1),
            reason: IssueReason::Login,
            lifetimes: lifetimes(),
            max_sessions: None,
            client: client("10.0.0.3"),
        })
    };
    let device = "01a2259e-7247-769b-a2d4-4d3729a4b46e";
    let h = given(&[
        (on(200, device), at(0)),
        (on(300, &device.to_uppercase()), at(1)),
    ]);
    assert_eq!(h.state.sessions[&id(200)].device_id.to_string(), device);
    let clear = |device: &str| {
        Command::ClearSessions(ClearSessions {
            reason: ClearReason::Logout,
            device_id: Some(device.to_owned()),
            keep: None,
        })
    };
    for (named, ended) in [
        (device.to_owned(), id(200)),
        (device.to_uppercase(), id(300)),
    ] {
        match &h.when(clear(&named), at(2)).0.unwrap()[..] {
            [Event::SessionsCleared(e)] => assert_eq!(e.session_ids, vec![ended], "{named}"),
            other => panic!("expected SessionsCleared, got {other:?}"),
        }
    }
}

fn logout_with(state: &UserSessions, generation: u32, scope: LogoutScope) -> Command {
    let Command::RotateToken(rotate) = refresh(state, generation, true, 0) else {
        unreachable!()
    };
    Command::Logout(Logout {
        scope,
        presented: Some(rotate.presented),
        reuse_grace: rotate.reuse_grace,
        client: client("10.0.0.9"),
    })
}

#[test]
fn a_logout_with_the_current_refresh_token_ends_every_session() {
    let h = given(&[(login(), at(0))]).rotated(at(5), 2);
    let scope = LogoutScope::All;
    let (result, after) = h.when(logout_with(&h.state, 1, scope), at(60));
    assert_eq!(types(&result.unwrap()), ["SessionsCleared"]);
    assert!(after.sessions.is_empty());
}

#[test]
fn a_logout_with_the_previous_token_within_the_grace_window_is_honoured() {
    let h = given(&[(login(), at(0))]).rotated(at(5), 2);
    let scope = LogoutScope::Session(id(SESSION));
    let (result, after) = h.when(logout_with(&h.state, 0, scope), at(10));
    assert_eq!(types(&result.unwrap()), ["SessionRevoked"]);
    assert!(after.sessions.is_empty());
}

#[test]
fn a_logout_with_a_superseded_token_is_reuse_and_ends_only_its_session() {
    let mut h = given(&[(login(), at(0))]).rotated(at(5), 2);
    // A second session, which a replayed token of the first must not end.
    let Command::IssueToken(mut other) = login() else {
        unreachable!()
    };
    other.session_id = id(SESSION + 1);
    let events = decide(&h.state, &Command::IssueToken(other), at(6), &FieldSealer).unwrap();
    h.state = events.iter().fold(h.state, evolve);

    let (result, after) = h.when(logout_with(&h.state, 0, LogoutScope::All), at(60));
    let events = result.unwrap();
    assert_eq!(types(&events), ["RefreshTokenReused", "SessionRevoked"]);
    let Event::SessionRevoked(revoked) = &events[1] else {
        unreachable!()
    };
    assert_eq!(revoked.reason, RevokeReason::ReuseDetected);
    assert_eq!(
        after.sessions.keys().copied().collect::<Vec<_>>(),
        [id(SESSION + 1)]
    );
}

#[test]
fn a_logout_with_a_forged_or_unknown_token_is_refused() {
    let h = given(&[(login(), at(0))]);
    let mut forged = logout_with(&h.state, 0, LogoutScope::All);
    if let Command::Logout(logout) = &mut forged {
        logout.presented.as_mut().unwrap().hash = TokenHash([9; 32]);
    }
    assert_eq!(h.when(forged, at(1)).0, Err(DomainError::TokenMismatch));
    let mut ended = logout_with(&h.state, 0, LogoutScope::All);
    if let Command::Logout(logout) = &mut ended {
        logout.presented.as_mut().unwrap().session_id = id(SESSION + 5);
    }
    assert_eq!(h.when(ended, at(1)).0, Err(DomainError::UnknownSession));
}

/// A login of session `n` (token `n + 1`) on its own device, under `limit`.
fn login_as(n: u128, limit: Option<u32>) -> Command {
    Command::IssueToken(IssueToken {
        session_id: id(n),
        device_id: format!("device-{n}"),
        token_id: id(n + 1),
        reason: IssueReason::Login,
        lifetimes: lifetimes(),
        max_sessions: limit,
        client: client("10.0.0.4"),
    })
}

fn evicted(events: &[Event]) -> Vec<u128> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::SessionRevoked(r) if r.reason == RevokeReason::Evicted => {
                Some(r.session_id.as_u128())
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_login_beyond_the_limit_evicts_the_least_recently_used_session() {
    // Session 100 logged in first but was refreshed last: 200 is the least recently used.
    let h = given(&[
        (login(), at(0)),
        (login_as(200, Some(3)), at(1)),
        (login_as(300, Some(3)), at(2)),
    ]);
    let h = Harness {
        state: h.when(refresh(&h.state, 0, false, 2), at(3)).1,
    };
    let (result, after) = h.when(login_as(400, Some(3)), at(4));
    let events = result.unwrap();
    assert_eq!(types(&events), ["SessionRevoked", "TokenIssued"]);
    assert_eq!(evicted(&events), [200]);
    assert_eq!(
        after
            .sessions
            .keys()
            .map(|k| k.as_u128())
            .collect::<Vec<_>>(),
        [SESSION, 300, 400]
    );
}

#[test]
fn sessions_last_used_at_the_same_moment_are_evicted_older_id_first() {
    let h = given(&[
        (login_as(300, None), at(0)),
        (login_as(200, None), at(0)),
        (login_as(500, None), at(0)),
    ]);
    let (result, after) = h.when(login_as(600, Some(2)), at(1));
    assert_eq!(evicted(&result.unwrap()), [200, 300]);
    assert_eq!(after.sessions.len(), 2);
}

#[test]
fn a_user_far_over_the_limit_is_brought_down_to_it_by_one_login() {
    // History from before the limit: ten sessions, used in the reverse order of their ids.
    let history: Vec<(Command, Timestamp)> = (1..=10)
        .map(|n| (login_as(n * 10, None), at(100 - n as i64)))
        .collect();
    let (result, after) = given(&history).when(login_as(1000, Some(4)), at(200));
    let events = result.unwrap();
    assert_eq!(evicted(&events), [100, 90, 80, 70, 60, 50, 40]);
    assert_eq!(types(&events).last(), Some(&"TokenIssued"));
    assert_eq!(
        after
            .sessions
            .keys()
            .map(|k| k.as_u128())
            .collect::<Vec<_>>(),
        [10, 20, 30, 1000]
    );
}

#[test]
fn a_login_within_the_limit_or_without_one_evicts_nothing() {
    let h = given(&[(login(), at(0)), (login_as(200, None), at(1))]);
    for limit in [Some(3), Some(100), None] {
        let (result, after) = h.when(login_as(300, limit), at(2));
        assert_eq!(types(&result.unwrap()), ["TokenIssued"], "{limit:?}");
        assert_eq!(after.sessions.len(), 3);
    }
    // A limit of 0 keeps the new session, as 1 does.
    let (result, after) = h.when(login_as(300, Some(0)), at(2));
    assert_eq!(evicted(&result.unwrap()), [SESSION, 200]);
    assert_eq!(after.sessions.len(), 1);
}

#[test]
fn a_refused_login_evicts_nothing() {
    let h = given(&[(login(), at(0)), (login_as(200, None), at(1))]);
    let (result, after) = h.when(login_as(200, Some(1)), at(2));
    assert_eq!(result, Err(DomainError::SessionExists));
    assert_eq!(after.sessions.len(), 2);
}

#[test]
fn evicted_is_stored_as_snake_case() {
    let event = revoked(id(1), RevokeReason::Evicted, at(0));
    assert!(event.payload().contains(r#""reason":"evicted""#));
    assert_eq!(
        Event::decode("SessionRevoked", 1, &event.payload()).unwrap(),
        event
    );
}

#[test]
fn folding_a_run_of_endings_at_once_gives_what_folding_one_by_one_gives() {
    let history: Vec<(Command, Timestamp)> = (1..=40)
        .map(|n| (login_as(n * 10, None), at(n as i64)))
        .collect();
    let mut events = Vec::new();
    let mut state = UserSessions::new(USER);
    for (command, now) in &history {
        let decided = decide(&state, command, *now, &FieldSealer).unwrap();
        state = decided.iter().fold(state, evolve);
        events.extend(decided);
    }
    // A login far over the limit: 36 evictions in a run, then the login itself; then a
    // revocation, a clear of some, and another login.
    let over = decide(&state, &login_as(1000, Some(5)), at(50), &FieldSealer).unwrap();
    assert_eq!(evicted(&over).len(), 36);
    events.extend(over);
    events.push(revoked(id(400), RevokeReason::Logout, at(51)));
    events.push(Event::SessionsCleared(SessionsCleared {
        reason: ClearReason::Logout,
        session_ids: vec![id(380), id(390)],
        kept: None,
        cleared_at: at(52),
    }));
    let after = decide(
        &events.iter().fold(UserSessions::new(USER), evolve),
        &login_as(2000, None),
        at(53),
        &FieldSealer,
    )
    .unwrap();
    events.extend(after);

    let one_by_one = events.iter().fold(UserSessions::new(USER), evolve);
    assert_eq!(evolve_all(UserSessions::new(USER), &events), one_by_one);
    assert_eq!(
        one_by_one
            .sessions
            .keys()
            .map(|k| k.as_u128())
            .collect::<Vec<_>>(),
        [370, 1000, 2000]
    );
    // And from any point in between.
    for split in [1, 40, 41, 60, 77, events.len() - 1] {
        let first = evolve_all(UserSessions::new(USER), &events[..split]);
        assert_eq!(evolve_all(first, &events[split..]), one_by_one, "{split}");
    }
}

#[test]
fn a_session_id_is_never_issued_twice() {
    let h = given(&[(login(), at(0))]);
    assert_eq!(h.when(login(), at(1)).0, Err(DomainError::SessionExists));
}

#[test]
fn a_failed_login_is_recorded_and_changes_no_session() {
    let h = given(&[(login(), at(0))]);
    let cmd = Command::RecordLoginFailure(RecordLoginFailure {
        client: client("6.6.6.6"),
        failed_at: at(2),
    });
    let (result, after) = h.when(cmd, at(3));
    let events = result.unwrap();
    assert_eq!(types(&events), ["LoginFailed"]);
    let Event::LoginFailed(failed) = &events[0] else {
        unreachable!()
    };
    assert_eq!(
        failed.failed_at,
        at(2),
        "the time of the attempt, not of the record"
    );
    assert_eq!(after, h.state);
}

/// A login's events, then those of a rotating refresh presenting the token of `generation`
/// and of a refresh with rotation off, both decided on `h`.
fn login_and_refreshes(h: &Harness, generation: u32) -> Vec<Event> {
    let mut events = decide(&given(&[]).state, &login(), at(0), &FieldSealer).unwrap();
    for rotation in [true, false] {
        let presented = if rotation { generation } else { 1 };
        let command = refresh(&h.state, presented, rotation, 3);
        events.extend(decide(&h.state, &command, at(200), &FieldSealer).unwrap());
    }
    events
}

#[test]
fn every_event_round_trips_through_its_stored_payload() {
    let h = given(&[(login(), at(0))]).rotated(at(100), 2);
    let events = login_and_refreshes(&h, 0);
    for event in events {
        let decoded =
            Event::decode(event.event_type(), event.schema_version(), &event.payload()).unwrap();
        assert_eq!(decoded, event);
    }
    assert!(matches!(
        Event::decode("Nope", 1, "{}"),
        Err(crate::DecodeError::UnknownType(_))
    ));
    assert!(matches!(
        Event::decode("LoginFailed", 1, "[]"),
        Err(crate::DecodeError::Payload { .. })
    ));
}

#[test]
fn account_events_leave_the_sessions_as_they_are() {
    use crate::events::{PasswordChanged, UserBlocked, UserRegistered, UserUnblocked};
    let h = given(&[(login(), at(0))]);
    let account = [
        Event::UserRegistered(UserRegistered {
            document_id: "k1x9d0q2m3n4b5v6c7x8z9l0".into(),
            username: "alice".into(),
            email: "alice@example.com".into(),
            provider: "local".into(),
            confirmed: true,
            blocked: false,
            password_digest: Some("aa".repeat(32)),
            registered_at: at(1),
        }),
        Event::PasswordChanged(PasswordChanged {
            password_digest: "bb".repeat(32),
            changed_at: at(2),
        }),
        Event::UserBlocked(UserBlocked { blocked_at: at(3) }),
        Event::UserUnblocked(UserUnblocked {
            unblocked_at: at(4),
        }),
    ];
    // A block ends sessions through its own `SessionsCleared`, not through `UserBlocked`.
    assert_eq!(evolve_all(h.state.clone(), &account), h.state);
    assert_eq!(account.iter().fold(h.state.clone(), evolve), h.state);
    // So a fold of the sessions may pass over them undecoded.
    for event in &account {
        assert!(!SESSION_EVENTS.contains(&event.event_type()));
    }
}

#[test]
fn given_sessions_when_an_event_of_each_session_type_comes_then_the_sessions_change() {
    let h = given(&[(login(), at(0))]).rotated(at(100), 2);
    let session = h.state.sessions.values().next().unwrap().id;
    let mut events = login_and_refreshes(&h, 1);
    events.push(Event::SessionRevoked(SessionRevoked {
        session_id: session,
        reason: RevokeReason::Logout,
        revoked_at: at(300),
    }));
    events.push(Event::SessionsCleared(SessionsCleared {
        reason: ClearReason::Blocked,
        session_ids: vec![session],
        kept: None,
        cleared_at: at(300),
    }));
    let mut seen = std::collections::BTreeSet::new();
    for event in &events {
        let base = if matches!(event, Event::TokenIssued(_)) {
            given(&[]).state
        } else {
            h.state.clone()
        };
        assert_ne!(
            evolve(base.clone(), event),
            base,
            "{} changes the sessions",
            event.event_type()
        );
        seen.insert(event.event_type());
    }
    assert_eq!(seen, SESSION_EVENTS.into_iter().collect());
}

mod imported {
    use super::*;

    const PLUGIN_HASH: TokenHash = TokenHash([0xAB; 32]);

    /// A Strapi plugin session issued 10 days before `at(0)`.
    fn import() -> Command {
        Command::ImportSession(ImportSession {
            session_id: id(SESSION),
            device_id: "strapi-plugin".to_owned(),
            token_id: id(1),
            token_hash: PLUGIN_HASH,
            created_at: at(0) - TimeDelta::days(10),
            lifetimes: lifetimes(),
            client: client("10.0.0.9"),
        })
    }

    fn presented_plugin_token() -> PresentedToken {
        PresentedToken {
            user_id: USER,
            session_id: id(SESSION),
            token_id: id(1),
            generation: 0,
            hash: PLUGIN_HASH,
        }
    }

    #[test]
    fn given_a_live_plugin_token_when_imported_then_its_expiry_counts_from_when_it_was_issued() {
        let (result, after) = given(&[]).when(import(), at(0));
        let events = result.unwrap();
        let [Event::TokenIssued(issued)] = events.as_slice() else {
            panic!("{events:?}");
        };
        assert_eq!(issued.reason, IssueReason::Imported);
        assert_eq!(issued.token_hash, PLUGIN_HASH);
        assert_eq!(issued.token_expires_at, at(0) + TimeDelta::days(20));
        assert_eq!(issued.absolute_expires_at, at(0) + TimeDelta::days(80));
        assert_eq!(issued.idle_expires_at, at(0) + TimeDelta::days(7));
        assert_eq!(after.session(&id(SESSION)).unwrap().generation, 0);
    }

    #[test]
    fn given_an_imported_session_when_imported_again_then_nothing_is_recorded() {
        let (result, _) = given(&[(import(), at(0))]).when(import(), at(5));
        assert_eq!(result, Err(DomainError::SessionExists));
    }

    #[test]
    fn given_a_plugin_token_past_its_lifetime_when_imported_then_it_is_refused() {
        let (result, after) = given(&[]).when(import(), at(0) + TimeDelta::days(20));
        assert_eq!(result, Err(DomainError::Expired));
        assert!(after.sessions.is_empty());
    }

    #[test]
    fn given_an_imported_session_when_its_plugin_token_refreshes_with_rotation_then_it_moves_to_generation_one()
     {
        let h = given(&[(import(), at(0))]);
        let rotate = |rotation| {
            Command::RotateToken(RotateToken {
                presented: presented_plugin_token(),
                rotation,
                successor_id: id(2),
                reuse_grace: TimeDelta::seconds(10),
                lifetimes: lifetimes(),
                activity_resolution: TimeDelta::zero(),
                client: client("10.0.0.9"),
            })
        };
        let (result, after) = h.when(rotate(true), at(60));
        assert_eq!(types(&result.unwrap()), ["TokenRotated"]);
        let session = after.session(&id(SESSION)).unwrap();
        assert_eq!(session.generation, 1);
        assert_eq!(session.token_hash, FieldSealer.seal(&session.grant(USER)));
        // Rotation off: the plugin's token keeps serving, as the plugin itself did.
        let (result, after) = h.when(rotate(false), at(60));
        assert_eq!(types(&result.unwrap()), ["TokenRefreshed"]);
        assert_eq!(after.session(&id(SESSION)).unwrap().token_hash, PLUGIN_HASH);
    }

    #[test]
    fn given_an_imported_session_rotated_when_the_plugin_token_comes_back_late_then_reuse_ends_it()
    {
        let h = given(&[(import(), at(0))]).rotated(at(60), 2);
        let (result, after) = h.when(
            Command::RotateToken(RotateToken {
                presented: presented_plugin_token(),
                rotation: true,
                successor_id: id(3),
                reuse_grace: TimeDelta::seconds(10),
                lifetimes: lifetimes(),
                activity_resolution: TimeDelta::zero(),
                client: client("10.6.6.6"),
            }),
            at(600),
        );
        assert_eq!(
            types(&result.unwrap()),
            ["RefreshTokenReused", "SessionRevoked"]
        );
        assert!(after.sessions.is_empty());
    }
}

/// Rotation off: a use from the session's last client is recorded at most once per
/// `activity_resolution`; one from another client always is.
mod recorded_use {
    use super::*;

    fn refresh_within(state: &UserSessions, resolution: TimeDelta, ip: &str) -> Command {
        match refresh(state, 0, false, 2) {
            Command::RotateToken(rotate) => Command::RotateToken(RotateToken {
                activity_resolution: resolution,
                client: client(ip),
                ..rotate
            }),
            _ => unreachable!("refresh() rotates"),
        }
    }

    #[test]
    fn given_a_recent_use_from_the_same_client_when_refreshed_then_nothing_is_recorded() {
        // Given: logged in from 10.0.0.1 at 0.
        let h = given(&[(login(), at(0))]);
        // When: refreshed from the same client 59 s later, with a resolution of 60 s.
        let (result, after) = h.when(
            refresh_within(&h.state, TimeDelta::seconds(60), "10.0.0.1"),
            at(59),
        );
        // Then: no event, and the session is as it was.
        assert_eq!(result, Ok(Vec::new()));
        assert_eq!(after, h.state);
    }

    #[test]
    fn given_a_use_a_resolution_ago_when_refreshed_then_it_is_recorded_and_the_idle_expiry_slides()
    {
        let h = given(&[(login(), at(0))]);
        let (result, after) = h.when(
            refresh_within(&h.state, TimeDelta::seconds(60), "10.0.0.1"),
            at(60),
        );
        assert_eq!(types(&result.unwrap()), ["TokenRefreshed"]);
        let session = after.session(&id(SESSION)).unwrap();
        assert_eq!(session.last_used_at.to_timestamp(), at(60));
        assert_eq!(
            session.idle_expires_at.to_timestamp(),
            at(60) + TimeDelta::days(7)
        );
    }

    #[test]
    fn given_a_recent_use_when_refreshed_from_another_client_then_it_is_recorded_at_once() {
        let h = given(&[(login(), at(0))]);
        let (result, after) = h.when(
            refresh_within(&h.state, TimeDelta::seconds(60), "10.0.0.9"),
            at(1),
        );
        match &result.unwrap()[..] {
            [Event::TokenRefreshed(refreshed)] => {
                assert!(!refreshed.same_client);
                assert_eq!(refreshed.ip.as_deref(), Some("10.0.0.9"));
            }
            other => panic!("expected one TokenRefreshed, got {other:?}"),
        }
        let session = after.session(&id(SESSION)).unwrap();
        assert_eq!(session.last_ip.as_deref(), Some("10.0.0.9"));
    }

    #[test]
    fn given_a_resolution_of_zero_when_refreshed_at_once_then_every_use_is_recorded() {
        let h = given(&[(login(), at(0))]);
        let (result, _) = h.when(
            refresh_within(&h.state, TimeDelta::zero(), "10.0.0.1"),
            at(0),
        );
        assert_eq!(types(&result.unwrap()), ["TokenRefreshed"]);
    }

    #[test]
    fn given_rotation_on_when_refreshed_within_the_resolution_then_it_still_rotates() {
        let h = given(&[(login(), at(0))]);
        let rotate = match refresh_within(&h.state, TimeDelta::seconds(60), "10.0.0.1") {
            Command::RotateToken(r) => Command::RotateToken(RotateToken {
                rotation: true,
                ..r
            }),
            _ => unreachable!(),
        };
        let (result, _) = h.when(rotate, at(1));
        assert_eq!(types(&result.unwrap()), ["TokenRotated"]);
    }
}

/// The projection holds a million sessions, one vector of them per user (issue 20): 256
/// bytes is one of mimalloc's size classes, and so is every multiple of it up to eight, where
/// 264 (an 8-byte-aligned `Option<PreviousToken>`) rounds a user's one session up to 320.
/// Growing a `Session` shows here first.
#[test]
fn a_session_fits_256_bytes() {
    use std::mem::size_of;
    assert_eq!(size_of::<UnixNanos>(), 8);
    assert_eq!(size_of::<DeviceId>(), 24);
    assert_eq!(size_of::<Option<PreviousToken>>(), 48);
    assert_eq!(size_of::<Session>(), 256);
}
