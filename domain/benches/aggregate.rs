//! Criterion benches for the aggregate's hot paths: `decide` for a refresh (rotation on and
//! off) and a login, `evolve` of one rotation, and the replay of a user's whole stream.
//!
//! The data is one realistic user: a history of 20 events (logins on three devices, rotations,
//! plain refreshes, failed logins, a logout) leaving three live sessions, UUID v7 ids and
//! microsecond timestamps as the service records them. The sealer is a cheap deterministic
//! stand-in: the cost of real HS256 signing and SHA-256 lives in `benches/tokens.rs` of the
//! root crate, so these numbers are the aggregate's own.

use std::hint::black_box;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use tokenledger_domain::{
    Client, Command, Event, IssueReason, IssueToken, Lifetimes, PresentedToken, RecordLoginFailure,
    RefreshGrant, RevokeReason, RevokeSession, RotateToken, SessionId, Timestamp, TokenHash,
    TokenSealer, UserId, UserSessions, decide, evolve,
};
use uuid::Uuid;

const USER: UserId = 4_211;

/// Deterministic stand-in for HS256 + SHA-256: mixes the grant's fields into 32 bytes.
struct MixSealer;

impl TokenSealer for MixSealer {
    fn seal(&self, grant: &RefreshGrant) -> TokenHash {
        let mut state = grant.token_id.as_u128() as u64
            ^ (grant.session_id.as_u128() >> 64) as u64
            ^ u64::from(grant.generation).rotate_left(32)
            ^ grant.expires_at as u64;
        let mut bytes = [0u8; 32];
        for chunk in bytes.chunks_exact_mut(8) {
            chunk.copy_from_slice(&splitmix(&mut state).to_le_bytes());
        }
        TokenHash(bytes)
    }
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// UUID v7 ids minted at given instants, with deterministic "random" bits. (This crate's
/// `uuid` has no `v7` feature; the builder makes the same layout.)
struct Ids(u64);

impl Ids {
    fn at(&mut self, time: Timestamp) -> Uuid {
        let mut random = [0u8; 10];
        random[..8].copy_from_slice(&splitmix(&mut self.0).to_le_bytes());
        random[8..].copy_from_slice(&splitmix(&mut self.0).to_le_bytes()[..2]);
        uuid::Builder::from_unix_timestamp_millis(time.timestamp_millis() as u64, &random)
            .into_uuid()
    }
}

/// 2026-03-02T08:14:07.412305Z: a real instant with the microseconds the store keeps.
fn start() -> Timestamp {
    DateTime::<Utc>::from_timestamp(1_772_439_247, 412_305_000).expect("a valid instant")
}

fn lifetimes() -> Lifetimes {
    Lifetimes {
        refresh_token: TimeDelta::days(30),
        idle_timeout: TimeDelta::days(30),
        absolute: TimeDelta::days(90),
    }
}

fn client(ip: &str, user_agent: &str) -> Client {
    Client {
        ip: Some(ip.to_owned()),
        user_agent: Some(user_agent.to_owned()),
    }
}

const PHONE_UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.3 Mobile/15E148 Safari/604.1";
const LAPTOP_UA: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/133.0.0.0 Safari/537.36";
const TABLET_UA: &str = "Mozilla/5.0 (Linux; Android 15; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/133.0.6943.137 Safari/537.36";

/// The user's history, decided command by command as the actor would.
struct History {
    state: UserSessions,
    events: Vec<Event>,
    now: Timestamp,
    ids: Ids,
}

impl History {
    fn run(&mut self, command: Command) {
        let events = decide(&self.state, &command, self.now, &MixSealer).expect("history decides");
        for event in &events {
            self.state = evolve(std::mem::take(&mut self.state), event);
        }
        self.events.extend(events);
    }

    fn wait(&mut self, by: TimeDelta) {
        self.now += by;
    }

    fn login(&mut self, device: &str, client: Client) -> SessionId {
        let session_id = self.ids.at(self.now);
        let token_id = self.ids.at(self.now);
        self.run(Command::IssueToken(IssueToken {
            session_id,
            device_id: device.to_owned(),
            token_id,
            reason: IssueReason::Login,
            lifetimes: lifetimes(),
            max_sessions: None,
            client,
        }));
        session_id
    }

    fn refresh(&mut self, session: SessionId, rotation: bool, client: Client) {
        let command = refresh_command(
            &self.state,
            session,
            rotation,
            self.ids.at(self.now),
            client,
        );
        self.run(command);
    }
}

/// The refresh of `session`'s current token, as the HTTP handler builds it.
fn refresh_command(
    state: &UserSessions,
    session: SessionId,
    rotation: bool,
    successor_id: Uuid,
    client: Client,
) -> Command {
    let current = state.session(&session).expect("a live session");
    Command::RotateToken(RotateToken {
        presented: PresentedToken {
            user_id: state.user_id,
            session_id: current.id,
            token_id: current.token_id,
            generation: current.generation,
            hash: current.token_hash,
        },
        rotation,
        successor_id,
        reuse_grace: TimeDelta::seconds(10),
        lifetimes: lifetimes(),
        activity_resolution: TimeDelta::zero(),
        client,
    })
}

/// 20 events over three weeks; the phone, laptop and tablet sessions stay alive.
fn history() -> (History, [SessionId; 3]) {
    let mut h = History {
        state: UserSessions::new(USER),
        events: Vec::new(),
        now: start(),
        ids: Ids(0x5eed),
    };
    let phone = h.login("ios-3f9c2a", client("203.0.113.24", PHONE_UA));
    for _ in 0..4 {
        h.wait(TimeDelta::minutes(117));
        h.refresh(phone, true, client("203.0.113.24", PHONE_UA));
    }
    h.wait(TimeDelta::hours(5));
    h.run(Command::RecordLoginFailure(RecordLoginFailure {
        client: client("198.51.100.7", LAPTOP_UA),
        failed_at: h.now,
    }));
    h.wait(TimeDelta::seconds(14));
    let laptop = h.login("web-8d41e07b", client("198.51.100.7", LAPTOP_UA));
    for _ in 0..3 {
        h.wait(TimeDelta::hours(2));
        h.refresh(laptop, false, client("198.51.100.7", LAPTOP_UA));
    }
    h.wait(TimeDelta::days(2));
    let old_tablet = h.login("android-11ab", client("192.0.2.61", TABLET_UA));
    h.wait(TimeDelta::hours(1));
    h.refresh(old_tablet, true, client("192.0.2.61", TABLET_UA));
    h.wait(TimeDelta::hours(3));
    h.run(Command::RevokeSession(RevokeSession {
        session_id: old_tablet,
        reason: RevokeReason::Logout,
    }));
    h.wait(TimeDelta::days(5));
    h.run(Command::RecordLoginFailure(RecordLoginFailure {
        client: client("192.0.2.61", TABLET_UA),
        failed_at: h.now,
    }));
    h.wait(TimeDelta::seconds(9));
    let tablet = h.login("android-11ab", client("192.0.2.61", TABLET_UA));
    for _ in 0..3 {
        h.wait(TimeDelta::hours(4));
        h.refresh(phone, true, client("203.0.113.80", PHONE_UA));
    }
    h.wait(TimeDelta::days(3));
    h.refresh(laptop, false, client("198.51.100.7", LAPTOP_UA));
    h.wait(TimeDelta::minutes(30));
    h.refresh(tablet, true, client("192.0.2.61", TABLET_UA));
    assert_eq!(h.events.len(), 20, "the history is 20 events");
    assert_eq!(h.state.sessions.len(), 3, "three sessions stay alive");
    (h, [phone, laptop, tablet])
}

fn benches(c: &mut Criterion) {
    let (mut h, [phone, laptop, _tablet]) = history();
    h.wait(TimeDelta::minutes(95));
    let now = h.now;
    let state = h.state.clone();

    let mut group = c.benchmark_group("decide");
    let rotate = refresh_command(
        &state,
        phone,
        true,
        h.ids.at(now),
        client("203.0.113.80", PHONE_UA),
    );
    let refresh = refresh_command(
        &state,
        laptop,
        false,
        h.ids.at(now),
        client("198.51.100.7", LAPTOP_UA),
    );
    let login = Command::IssueToken(IssueToken {
        session_id: h.ids.at(now),
        device_id: "web-c07e5512".to_owned(),
        token_id: h.ids.at(now),
        reason: IssueReason::Login,
        lifetimes: lifetimes(),
        max_sessions: None,
        client: client("198.51.100.90", LAPTOP_UA),
    });
    for (name, command, event_type) in [
        ("rotate_token_rotation_on", &rotate, "TokenRotated"),
        ("rotate_token_rotation_off", &refresh, "TokenRefreshed"),
        ("issue_token_login", &login, "TokenIssued"),
    ] {
        let events = decide(&state, command, now, &MixSealer).expect("decides");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event_type(), event_type);
        group.bench_function(name, |b| {
            b.iter(|| decide(black_box(&state), black_box(command), now, &MixSealer))
        });
    }
    group.finish();

    let rotated = decide(&state, &rotate, now, &MixSealer)
        .expect("decides")
        .remove(0);
    let mut group = c.benchmark_group("evolve");
    // `evolve` takes the state by value: each iteration gets a fresh clone, made and dropped
    // outside the measurement.
    group.bench_function("token_rotated", |b| {
        b.iter_batched(
            || state.clone(),
            |state| evolve(state, black_box(&rotated)),
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let mut group = c.benchmark_group("replay");
    group.bench_function("fold_20_events", |b| {
        b.iter(|| {
            black_box(&h.events)
                .iter()
                .fold(UserSessions::new(USER), evolve)
        })
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
}

criterion_group! {
    name = aggregate;
    config = config();
    targets = benches
}
criterion_main!(aggregate);
