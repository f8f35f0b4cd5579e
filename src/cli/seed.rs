//! `tokenledger seed --users N --events M`: fills an empty database with a realistic log, fast,
//! for replay, start-up and memory benchmarks.
//!
//! Every event comes from the aggregate's own `decide` and `evolve`, so the log holds nothing
//! the service could not have written: users log in from a few devices, rotate and refresh
//! their tokens, sometimes fail a password, log out, get caught reusing a token, or log out
//! everywhere, over the last two weeks. Each step is its own append (its own request id and
//! client), written through the store's group commit with many users in flight. All users
//! share one password, so a load generator can log in as any of them. Each user's stream
//! starts with its `UserRegistered`, written with its row, a thousand users a transaction.

use std::io::IsTerminal;
use std::time::Instant;

use anyhow::Context;
use chrono::{TimeDelta, Utc};
use futures::{StreamExt, TryStreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use tokenledger_domain::{
    ClearReason, ClearSessions, Client, Command, Event, IssueReason, IssueToken, Lifetimes,
    PresentedToken, RecordLoginFailure, RefreshGrant, RevokeReason, RevokeSession, RotateToken,
    SessionId, Timestamp, TokenHash, TokenSealer, UserId, UserSessions, decide, evolve,
};
use uuid::Uuid;

use crate::config::Config;
use crate::password::Passwords;
use crate::store::ledger::Upgrading;
use crate::store::users::NewUser;
use crate::store::{self, EventMetadata, NewEvent, stream_of};

/// How far back the simulated activity starts.
const SPAN_DAYS: i64 = 14;
/// Bounds that keep a seed within memory: every user is listed up front, and each user's
/// history is built before it is appended.
const MAX_USERS: usize = 10_000_000;
const MAX_EVENTS_PER_USER: u64 = 100_000;
/// Users whose steps are being appended at once: enough to fill the group commit's batches.
const IN_FLIGHT: usize = 4096;

const USER_AGENTS: [&str; 6] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "okhttp/4.12.0",
];

/// What a seeded log looks like in numbers.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Seeded {
    pub users: usize,
    pub events: u64,
    pub live_sessions: u64,
}

/// `tokenledger seed`
pub async fn seed(
    config: &Config,
    users: usize,
    events: u64,
    password: String,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=MAX_USERS).contains(&users),
        "--users must be between 1 and {MAX_USERS}"
    );
    anyhow::ensure!(
        events / users as u64 <= MAX_EVENTS_PER_USER,
        "--events must be at most {MAX_EVENTS_PER_USER} a user (each user's history is built in memory)"
    );
    let database_url = &config.server.database_url;
    let opened = store::open(
        database_url,
        false,
        &store::StoreKeys::of(config)?,
        Upgrading::for_writing(&config.ledger),
    )
    .await
    .with_context(|| format!("opening {database_url}"))?;
    let store = opened.events.clone();
    let (existing, people) = (store.count().await?, opened.users.count().await?);
    anyhow::ensure!(
        existing == 0 && people == 0,
        "seed fills an empty database; {database_url} holds {people} users and {existing} events already"
    );
    let started = Instant::now();
    let ids = create_users(&opened, users, password).await?;
    eprintln!(
        "{} users in {:.1} s",
        ids.len(),
        started.elapsed().as_secs_f64()
    );

    let lifetimes = Lifetimes {
        refresh_token: config.lifetimes.refresh_token_expires_in,
        idle_timeout: config.lifetimes.session_idle_timeout,
        absolute: config.lifetimes.session_absolute_lifetime,
    };
    let appending = Instant::now();
    let seeded = append_histories(&store, ids, events, lifetimes).await?;
    let seconds = appending.elapsed().as_secs_f64();
    say!(
        "seeded {} users, {} events ({} registrations; {} sessions live now) in {:.1} s ({:.0} events/s appended)",
        seeded.users,
        seeded.events + seeded.users as u64,
        seeded.users,
        seeded.live_sessions,
        started.elapsed().as_secs_f64(),
        seeded.events as f64 / seconds.max(1e-9)
    );
    store.close().await;
    Ok(())
}

/// `users` users `seed-<i>`, all with the one password (hashed once), each registered.
async fn create_users(
    opened: &store::Opened,
    users: usize,
    password: String,
) -> anyhow::Result<Vec<UserId>> {
    let password_hash = Passwords::new(1)?.hash(password).await?;
    let new_users: Vec<NewUser> = (0..users)
        .map(|i| NewUser {
            username: format!("seed-{i}"),
            email: format!("seed-{i}@seed.test"),
            password_hash: password_hash.clone(),
        })
        .collect();
    let metadata = EventMetadata {
        actor: store::Actor::System,
        ..EventMetadata::default()
    };
    Ok(opened
        .users
        .create_many(&new_users, Utc::now(), &metadata)
        .await?)
}

/// Each user's simulated history appended, many users at once, after its registration; what
/// was written (the registrations not counted).
async fn append_histories(
    store: &std::sync::Arc<dyn crate::store::EventStore>,
    ids: Vec<UserId>,
    events: u64,
    lifetimes: Lifetimes,
) -> anyhow::Result<Seeded> {
    let end = Utc::now();
    let users = ids.len() as u64;
    let (per_user, extra) = (events / users, events % users);
    let progress = std::io::stderr().is_terminal();
    let mut seeded = Seeded {
        users: ids.len(),
        ..Seeded::default()
    };
    let mut done = futures::stream::iter(ids.into_iter().enumerate().map(|(i, user_id)| {
        let quota = per_user + u64::from((i as u64) < extra);
        let store = store.clone();
        async move {
            let (steps, live) = simulate(user_id, quota, lifetimes, end);
            let stream = stream_of(user_id);
            // Version 1 is the user's `UserRegistered`.
            let mut version = 1;
            let mut written = 0u64;
            for (events, metadata) in steps {
                let new: Vec<NewEvent> = events.iter().map(NewEvent::from).collect();
                written += new.len() as u64;
                let recorded = store.append(&stream, version, new, &metadata).await?;
                version += recorded.len() as i64;
            }
            Ok::<_, anyhow::Error>((written, live))
        }
    }))
    .buffer_unordered(IN_FLIGHT);
    let mut next_report = 0.0;
    while let Some((written, live)) = done.try_next().await? {
        seeded.events += written;
        seeded.live_sessions += live;
        let share = seeded.events as f64 / events.max(1) as f64;
        if progress && share >= next_report {
            eprint!("\r{:>3.0}%  {} events", share * 100.0, seeded.events);
            next_report = share + 0.01;
        }
    }
    drop(done);
    if progress {
        eprintln!();
    }
    Ok(seeded)
}

/// Stands in for signing: seeded tokens are never handed to anyone, so their hashes need only
/// be distinct and fixed by the grant.
struct SeedSealer;

impl TokenSealer for SeedSealer {
    fn seal(&self, grant: &RefreshGrant) -> TokenHash {
        let mut hasher = Sha256::new();
        hasher.update(grant.user_id.to_be_bytes());
        hasher.update(grant.token_id.as_bytes());
        hasher.update(grant.generation.to_be_bytes());
        TokenHash(hasher.finalize().into())
    }
}

/// One device of a user: where its requests come from.
struct Device {
    id: String,
    client: Client,
}

/// A user's activity over the `SPAN_DAYS` before `end`: about `quota` events, as the steps
/// (one append each) that wrote them, and the sessions left alive.
fn simulate(
    user_id: UserId,
    quota: u64,
    lifetimes: Lifetimes,
    end: Timestamp,
) -> (Vec<(Vec<Event>, EventMetadata)>, u64) {
    let mut rng = StdRng::seed_from_u64(user_id as u64);
    let span = TimeDelta::days(SPAN_DAYS);
    let step = TimeDelta::microseconds(span.num_microseconds().unwrap_or(0) / quota.max(1) as i64);
    let mut now = end - span;
    let devices: Vec<Device> = (0..rng.random_range(1..=3))
        .map(|_| Device {
            id: uuid_at(now).to_string(),
            client: Client {
                ip: Some(format!(
                    "{}.{}.{}.{}",
                    rng.random_range(1..224),
                    rng.random::<u8>(),
                    rng.random::<u8>(),
                    rng.random_range(1..255)
                )),
                user_agent: Some(USER_AGENTS[rng.random_range(0..USER_AGENTS.len())].to_owned()),
            },
        })
        .collect();
    let mut state = UserSessions::new(user_id);
    let mut steps = Vec::new();
    let mut written = 0u64;
    while written < quota {
        let device = &devices[rng.random_range(0..devices.len())];
        let command = next_command(&state, device, &devices, &mut rng, now, lifetimes);
        if let Ok(events) = decide(&state, &command, now, &SeedSealer)
            && !events.is_empty()
        {
            for event in &events {
                state = evolve(state, event);
            }
            written += events.len() as u64;
            let metadata = EventMetadata {
                request_id: Some(uuid_at(now).to_string()),
                ip: device.client.ip.clone(),
                user_agent: device.client.user_agent.clone(),
                actor: store::Actor::User,
                client_request_id: None,
                erased: None,
            };
            steps.push((events, metadata));
        }
        now += step;
    }
    let live = state
        .sessions
        .values()
        .filter(|s| !s.is_expired(end))
        .count() as u64;
    (steps, live)
}

/// What the user does next on `device`: log in (always, without a live session), fail a
/// login, log out, log out everywhere, or refresh a session (now and then with a stolen,
/// older token).
fn next_command(
    state: &UserSessions,
    device: &Device,
    devices: &[Device],
    rng: &mut StdRng,
    now: Timestamp,
    lifetimes: Lifetimes,
) -> Command {
    let user_id = state.user_id;
    let live: Vec<SessionId> = state.sessions.keys().copied().collect();
    let pick = |rng: &mut StdRng| live[rng.random_range(0..live.len())];
    let roll: f64 = rng.random();
    if live.is_empty() || roll < 0.08 {
        Command::IssueToken(IssueToken {
            session_id: uuid_at(now),
            device_id: device.id.clone(),
            token_id: uuid_at(now),
            reason: IssueReason::Login,
            lifetimes,
            // Seeded users hold at most five sessions: below any limit.
            max_sessions: None,
            client: device.client.clone(),
        })
    } else if roll < 0.10 {
        Command::RecordLoginFailure(RecordLoginFailure {
            client: device.client.clone(),
            failed_at: now,
        })
    } else if roll < 0.13 || live.len() > 4 {
        Command::RevokeSession(RevokeSession {
            session_id: pick(rng),
            reason: RevokeReason::Logout,
        })
    } else if roll < 0.135 {
        Command::ClearSessions(ClearSessions {
            reason: ClearReason::Logout,
            device_id: None,
            keep: None,
        })
    } else {
        let session = &state.sessions[&pick(rng)];
        // Now and then a stolen, older token comes back: reuse detection ends the session.
        let replayed = session.generation > 1 && roll > 0.995;
        let generation = if replayed {
            session.generation - 2
        } else {
            session.generation
        };
        // A refresh token lives on the device that logged in, which now and then roams to
        // another network; a replayed one comes from wherever the thief is.
        let owner = devices.iter().find(|d| session.device_id == *d.id);
        let mut client = owner.map_or(&device.client, |d| &d.client).clone();
        if replayed {
            client = device.client.clone();
        } else if roll < 0.2 {
            client.ip = Some(format!(
                "10.{}.{}.{}",
                rng.random::<u8>(),
                rng.random::<u8>(),
                1
            ));
        }
        Command::RotateToken(RotateToken {
            presented: PresentedToken {
                user_id,
                session_id: session.id,
                token_id: session.token_id,
                generation,
                hash: session.token_hash,
            },
            rotation: roll < 0.9,
            successor_id: uuid_at(now),
            reuse_grace: TimeDelta::seconds(10),
            lifetimes,
            activity_resolution: TimeDelta::zero(),
            client,
        })
    }
}

/// A version 7 id for the moment `at`: ids of the simulated past sort as if made then.
fn uuid_at(at: Timestamp) -> Uuid {
    Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        at.timestamp() as u64,
        at.timestamp_subsec_nanos(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lifetimes() -> Lifetimes {
        Lifetimes {
            refresh_token: TimeDelta::days(30),
            idle_timeout: TimeDelta::days(30),
            absolute: TimeDelta::days(90),
        }
    }

    #[test]
    fn given_a_quota_when_simulated_then_about_that_many_events_of_every_kind_follow() {
        let end = Utc::now();
        let mut kinds = std::collections::BTreeSet::new();
        let mut total = 0;
        for user in 1..=50 {
            let (steps, _) = simulate(user, 200, lifetimes(), end);
            let events: Vec<&Event> = steps.iter().flat_map(|(e, _)| e).collect();
            assert!((200..=201).contains(&events.len()), "{}", events.len());
            // Replaying the steps from empty reproduces a valid stream: every step decides.
            let mut state = UserSessions::new(user);
            for event in &events {
                state = evolve(state, event);
                kinds.insert(event.event_type());
            }
            assert!(events.iter().all(|e| e.occurred_at() < end));
            total += events.len();
        }
        assert!(total >= 10_000);
        for kind in [
            "TokenIssued",
            "TokenRotated",
            "TokenRefreshed",
            "RefreshTokenReused",
            "SessionRevoked",
            "SessionsCleared",
            "LoginFailed",
        ] {
            assert!(kinds.contains(kind), "no {kind} in the seeded log");
        }
    }

    #[test]
    fn given_a_user_when_simulated_twice_then_the_same_steps_follow() {
        let end = Utc::now();
        let kinds = |steps: Vec<(Vec<Event>, EventMetadata)>| -> Vec<&'static str> {
            steps
                .iter()
                .flat_map(|(e, _)| e)
                .map(|e| e.event_type())
                .collect()
        };
        assert_eq!(
            kinds(simulate(3, 100, lifetimes(), end).0),
            kinds(simulate(3, 100, lifetimes(), end).0)
        );
    }
}
