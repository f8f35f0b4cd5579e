//! Criterion benches for `ActiveSessions`: folding one login or one rotation into a
//! projection that holds 100,000 live sessions, the lookups the refresh handler makes on it,
//! and folding 10,000 events into an empty one (start-up replay).
//!
//! The data: 25,000 users with four live sessions each (UUID v7 ids, real microsecond
//! timestamps, IPs and browser user agents), every session already rotated once so it
//! carries a previous token, as a warm server's projection does.

use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use tokenledger_domain::{
    Event, IssueReason, LoginFailed, RevokeReason, SessionId, SessionRevoked, Timestamp, TokenHash,
    TokenIssued, TokenRefreshed, TokenRotated, UserId,
};
use tokenledger_projections::ActiveSessions;
use uuid::Uuid;

const USERS: usize = 25_000;
const SESSIONS_PER_USER: usize = 4;
/// Logins measured between two unmeasured clean-ups, so the projection never grows by more.
const CHUNK: u64 = 1_000;

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Deterministic ids, hashes and choices. (This crate's `uuid` has no `v7` feature; the
/// builder makes the same layout.)
struct Source(u64);

impl Source {
    fn next(&mut self) -> u64 {
        splitmix(&mut self.0)
    }

    fn id_at(&mut self, time: Timestamp) -> Uuid {
        let mut random = [0u8; 10];
        random[..8].copy_from_slice(&self.next().to_le_bytes());
        random[8..].copy_from_slice(&self.next().to_le_bytes()[..2]);
        uuid::Builder::from_unix_timestamp_millis(time.timestamp_millis() as u64, &random)
            .into_uuid()
    }

    fn hash(&mut self) -> TokenHash {
        let mut bytes = [0u8; 32];
        for chunk in bytes.chunks_exact_mut(8) {
            chunk.copy_from_slice(&self.next().to_le_bytes());
        }
        TokenHash(bytes)
    }

    fn ip(&mut self) -> String {
        let n = self.next();
        format!("198.51.{}.{}", (n >> 8) as u8, n as u8)
    }
}

const AGENTS: [&str; 3] = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.3 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/133.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 15; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/133.0.6943.137 Safari/537.36",
];

/// 2026-03-02T08:14:07.412305Z: a real instant with the microseconds the store keeps.
fn start() -> Timestamp {
    DateTime::<Utc>::from_timestamp(1_772_439_247, 412_305_000).expect("a valid instant")
}

fn issued(source: &mut Source, now: Timestamp, device: usize) -> TokenIssued {
    TokenIssued {
        session_id: source.id_at(now),
        device_id: format!("device-{:08x}", source.next() as u32),
        token_id: source.id_at(now),
        token_hash: source.hash(),
        reason: IssueReason::Login,
        issued_at: now,
        token_expires_at: now + TimeDelta::days(30),
        idle_expires_at: now + TimeDelta::days(30),
        absolute_expires_at: now + TimeDelta::days(90),
        ip: Some(source.ip()),
        user_agent: Some(AGENTS[device % AGENTS.len()].to_owned()),
    }
}

fn rotated(source: &mut Source, session_id: SessionId, generation: u32, now: Timestamp) -> Event {
    Event::TokenRotated(TokenRotated {
        session_id,
        generation,
        token_id: source.id_at(now),
        token_hash: source.hash(),
        rotated_at: now,
        token_expires_at: now + TimeDelta::days(30),
        idle_expires_at: now + TimeDelta::days(30),
        ip: Some(source.ip()),
        user_agent: Some(AGENTS[generation as usize % AGENTS.len()].to_owned()),
        same_client: false,
    })
}

/// One live session of the warm projection, and where its stream stands.
#[derive(Clone, Copy)]
struct Live {
    user_id: UserId,
    session_id: SessionId,
    generation: u32,
}

/// The warm projection: 100,000 sessions of 25,000 users, each rotated once.
struct Warm {
    projection: ActiveSessions,
    sessions: Vec<Live>,
    /// Stream version of each user, indexed by `user_id - 1`.
    versions: Vec<i64>,
    now: Timestamp,
}

fn warm(source: &mut Source) -> Warm {
    let mut projection = ActiveSessions::new();
    let mut sessions = Vec::with_capacity(USERS * SESSIONS_PER_USER);
    let mut versions = vec![0i64; USERS];
    let mut now = start();
    for (user, version) in versions.iter_mut().enumerate() {
        let user_id = user as UserId + 1;
        for device in 0..SESSIONS_PER_USER {
            now += TimeDelta::milliseconds(37);
            let login = issued(source, now, device);
            let session_id = login.session_id;
            *version += 1;
            assert!(projection.apply(user_id, *version, &Event::TokenIssued(login)));
            now += TimeDelta::milliseconds(11);
            *version += 1;
            let rotation = rotated(source, session_id, 1, now);
            assert!(projection.apply(user_id, *version, &rotation));
            sessions.push(Live {
                user_id,
                session_id,
                generation: 1,
            });
        }
    }
    assert_eq!(projection.len(), USERS * SESSIONS_PER_USER);
    Warm {
        projection,
        sessions,
        versions,
        now: now + TimeDelta::minutes(5),
    }
}

/// A deterministic shuffle, so lookups hop around the maps as real traffic does.
fn shuffled<T: Copy>(items: &[T], source: &mut Source) -> Vec<T> {
    let mut out = items.to_vec();
    for i in (1..out.len()).rev() {
        let j = (source.next() % (i as u64 + 1)) as usize;
        out.swap(i, j);
    }
    out
}

/// 10,000 events of 1,000 users, as a log reads at start-up: logins on two devices,
/// rotations, plain refreshes, a failed login, a logout, interleaved across users.
fn log(source: &mut Source) -> Vec<(UserId, i64, Event)> {
    const LOG_USERS: usize = 1_000;
    let mut per_user: Vec<Vec<Event>> = Vec::with_capacity(LOG_USERS);
    let mut now = start();
    for _ in 0..LOG_USERS {
        now += TimeDelta::milliseconds(250);
        let phone = issued(source, now, 0);
        let laptop = issued(source, now + TimeDelta::minutes(3), 1);
        let (p, l) = (phone.session_id, laptop.session_id);
        let refreshed = |generation, at: Timestamp, source: &mut Source| {
            Event::TokenRefreshed(TokenRefreshed {
                session_id: l,
                generation,
                refreshed_at: at,
                idle_expires_at: at + TimeDelta::days(30),
                ip: Some(source.ip()),
                user_agent: Some(AGENTS[1].to_owned()),
                same_client: false,
            })
        };
        let mut events = vec![
            Event::LoginFailed(LoginFailed {
                failed_at: now - TimeDelta::seconds(12),
                ip: Some(source.ip()),
                user_agent: Some(AGENTS[0].to_owned()),
            }),
            Event::TokenIssued(phone),
            Event::TokenIssued(laptop),
        ];
        // In time order: phone rotations every two hours, laptop refreshes in between.
        for generation in 1..=4 {
            let at = now + TimeDelta::hours(2 * i64::from(generation));
            events.push(rotated(source, p, generation, at));
            if generation <= 2 {
                events.push(refreshed(0, at + TimeDelta::hours(1), source));
            }
        }
        events.push(Event::SessionRevoked(SessionRevoked {
            session_id: l,
            reason: RevokeReason::Logout,
            revoked_at: now + TimeDelta::hours(9),
        }));
        per_user.push(events);
    }
    // Interleave: round by round, every user's next event.
    let mut out = Vec::with_capacity(10_000);
    for round in 0..10 {
        for (user, events) in per_user.iter().enumerate() {
            out.push((user as UserId + 1, round as i64 + 1, events[round].clone()));
        }
    }
    assert_eq!(out.len(), 10_000);
    out
}

fn benches(c: &mut Criterion) {
    let mut source = Source(0x5eed);
    let Warm {
        mut projection,
        sessions,
        mut versions,
        now,
    } = warm(&mut source);

    let mut group = c.benchmark_group("apply_100k");

    // A login grows the projection, and a fresh 100,000-session clone per iteration would cost
    // far more than what is measured, so: apply CHUNK logins (timed), then revoke them again
    // (not timed), keeping the projection at 100,000 sessions, four per user.
    let users = shuffled(
        &(1..=USERS as UserId).collect::<Vec<_>>(),
        &mut Source(0xab),
    );
    let mut next_user = 0usize;
    let mut login_time = now;
    group.bench_function("token_issued", |b| {
        b.iter_custom(|iters| {
            let mut measured = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(CHUNK);
                left -= n;
                let logins: Vec<(UserId, i64, Event)> = (0..n)
                    .map(|i| {
                        let user_id = users[next_user % users.len()];
                        next_user += 1;
                        login_time += TimeDelta::microseconds(173);
                        let version = &mut versions[user_id as usize - 1];
                        *version += 1;
                        let login = issued(&mut source, login_time, i as usize);
                        (user_id, *version, Event::TokenIssued(login))
                    })
                    .collect();
                // A benchmark times itself; the crate's code never reads the clock.
                #[allow(clippy::disallowed_methods)]
                let began = Instant::now();
                for (user_id, version, event) in &logins {
                    black_box(projection.apply(*user_id, *version, black_box(event)));
                }
                measured += began.elapsed();
                for (user_id, _, event) in &logins {
                    let Event::TokenIssued(login) = event else {
                        unreachable!("only logins are built above")
                    };
                    let version = &mut versions[*user_id as usize - 1];
                    *version += 1;
                    let logout = Event::SessionRevoked(SessionRevoked {
                        session_id: login.session_id,
                        reason: RevokeReason::Logout,
                        revoked_at: login_time,
                    });
                    assert!(projection.apply(*user_id, *version, &logout));
                }
            }
            measured
        })
    });
    assert_eq!(projection.len(), USERS * SESSIONS_PER_USER);

    // A rotation replaces a session's token in place: the projection does not grow, so the
    // same one takes every rotation. Each event is built (and dropped) outside the timing.
    let mut order = shuffled(&sessions, &mut Source(0xcd));
    let mut next_session = 0usize;
    let mut rotation_time = login_time;
    group.bench_function("token_rotated", |b| {
        b.iter_batched_ref(
            || {
                let slot = next_session % order.len();
                let live = &mut order[slot];
                next_session += 1;
                live.generation += 1;
                rotation_time += TimeDelta::microseconds(173);
                let version = &mut versions[live.user_id as usize - 1];
                *version += 1;
                let event = rotated(&mut source, live.session_id, live.generation, rotation_time);
                (live.user_id, *version, event)
            },
            |(user_id, version, event)| {
                assert!(projection.apply(*user_id, *version, black_box(event)));
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let mut group = c.benchmark_group("lookup_100k");
    let probes = shuffled(&sessions, &mut Source(0xef));
    let lookup_time = rotation_time;
    let mut i = 0usize;
    group.bench_function("is_live", |b| {
        b.iter(|| {
            let live = &probes[i % probes.len()];
            i += 1;
            projection.is_live(
                black_box(live.user_id),
                black_box(&live.session_id),
                lookup_time,
            )
        })
    });
    group.bench_function("owns", |b| {
        b.iter(|| {
            let live = &probes[i % probes.len()];
            i += 1;
            projection.owns(black_box(live.user_id), black_box(&live.session_id))
        })
    });
    let unknown: Vec<SessionId> = (0..1024).map(|_| source.id_at(lookup_time)).collect();
    group.bench_function("owns_unknown_session", |b| {
        b.iter(|| {
            let id = &unknown[i % unknown.len()];
            let user = probes[i % probes.len()].user_id;
            i += 1;
            projection.owns(black_box(user), black_box(id))
        })
    });
    group.bench_function("sessions_of", |b| {
        b.iter_with_large_drop(|| {
            let live = &probes[i % probes.len()];
            i += 1;
            projection.sessions_of(black_box(live.user_id), lookup_time)
        })
    });
    group.finish();

    let mut group = c.benchmark_group("fold");
    let events = log(&mut source);
    group.bench_function("10k_events_from_empty", |b| {
        // The finished projection is dropped outside the timing.
        b.iter_with_large_drop(|| {
            let mut folded = ActiveSessions::new();
            for (user_id, version, event) in black_box(&events) {
                folded.apply(*user_id, *version, event);
            }
            folded
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
    name = apply;
    config = config();
    targets = benches
}
criterion_main!(apply);
