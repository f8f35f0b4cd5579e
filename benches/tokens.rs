//! Criterion benches for the service's in-process hot paths around tokens and the log:
//! signing and verifying access and refresh JWTs, the SHA-256 of a token, a `TokenRotated`
//! encoded and decoded as the store keeps it, the chain hash of one stored event, and the
//! whole in-process part of a refresh (verify, decide with the real sealer, sign).

use std::hint::black_box;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use tokenledger::config::KeyBytes;
use tokenledger::store::{
    Actor, ChainKey, ChainVerifier, EventMetadata, Hashed, NewEvent, RecordedEvent, chain_hash,
    stream_of,
};
use tokenledger::tokens::{RecordingSealer, Tokens, hash};
use tokenledger_domain::{
    Client, Command, Event, IssueReason, IssueToken, Lifetimes, RotateToken, Timestamp,
    UserSessions, decide, evolve,
};
use uuid::Uuid;

const USER: i64 = 4_211;
const USER_AGENT: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/133.0.0.0 Safari/537.36";
const IP: &str = "198.51.100.7";

/// 2026-03-02T08:14:07.412305Z: a real instant with the microseconds the store keeps.
fn start() -> Timestamp {
    DateTime::<Utc>::from_timestamp(1_772_439_247, 412_305_000).expect("a valid instant")
}

fn v7(at: Timestamp) -> Uuid {
    Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        at.timestamp() as u64,
        at.timestamp_subsec_nanos(),
    ))
}

fn lifetimes() -> Lifetimes {
    Lifetimes {
        refresh_token: TimeDelta::days(30),
        idle_timeout: TimeDelta::days(30),
        absolute: TimeDelta::days(90),
    }
}

fn client() -> Client {
    Client {
        ip: Some(IP.to_owned()),
        user_agent: Some(USER_AGENT.to_owned()),
    }
}

fn metadata(at: Timestamp) -> EventMetadata {
    EventMetadata {
        request_id: Some(v7(at).to_string()),
        ip: Some(IP.to_owned()),
        user_agent: Some(USER_AGENT.to_owned()),
        actor: Actor::User,
        client_request_id: None,
        erased: None,
    }
}

/// A user with three sessions, the first rotated a few times; returns the state and the
/// refresh token the first session's client holds now.
fn user(tokens: &Tokens, mut now: Timestamp) -> (UserSessions, String, Timestamp) {
    let mut state = UserSessions::new(USER);
    let run = |state: &mut UserSessions, command: &Command, now: Timestamp| {
        let sealer = RecordingSealer::new(tokens);
        let events = decide(state, command, now, &sealer).expect("decides");
        for event in &events {
            *state = evolve(std::mem::take(state), event);
        }
    };
    let mut sessions = Vec::new();
    for device in ["ios-3f9c2a", "web-8d41e07b", "android-11ab"] {
        now += TimeDelta::hours(7);
        let session_id = v7(now);
        sessions.push(session_id);
        let login = Command::IssueToken(IssueToken {
            session_id,
            device_id: device.to_owned(),
            token_id: v7(now),
            reason: IssueReason::Login,
            lifetimes: lifetimes(),
            max_sessions: None,
            client: client(),
        });
        run(&mut state, &login, now);
    }
    let mut token = String::new();
    for _ in 0..4 {
        now += TimeDelta::minutes(117);
        let session = state.session(&sessions[0]).expect("live");
        let current = tokens.sign_refresh(&session.grant(USER));
        let presented = tokens.verify_refresh(&current, now).expect("genuine");
        let rotate = Command::RotateToken(RotateToken {
            presented,
            rotation: true,
            successor_id: v7(now),
            reuse_grace: TimeDelta::seconds(10),
            lifetimes: lifetimes(),
            activity_resolution: TimeDelta::zero(),
            client: client(),
        });
        run(&mut state, &rotate, now);
        token = tokens.sign_refresh(&state.session(&sessions[0]).expect("live").grant(USER));
    }
    (state, token, now)
}

fn benches(c: &mut Criterion) {
    let tokens = Tokens::new(
        b"4f1c0d6e9a27b8355e0c2f71a96d3b48c5e07f2a",
        b"b93e27d04c6a15f8e2d7093c4a6b1f5e8d20c7a9",
        TimeDelta::hours(2),
    )
    .expect("non-empty secrets");
    let (state, refresh_token, last_use) = user(&tokens, start());
    let now = last_use + TimeDelta::minutes(95);
    let session = state.sessions.values().next().expect("a session");
    let session_id = session.id;

    let mut group = c.benchmark_group("jwt");
    group.bench_function("sign_access", |b| {
        b.iter(|| tokens.sign_access(black_box(USER), black_box(session_id), now))
    });
    let access = tokens.sign_access(USER, session_id, now);
    assert!(tokens.verify_access(&access, now).is_ok());
    group.bench_function("verify_access", |b| {
        b.iter(|| tokens.verify_access(black_box(&access), now))
    });
    let grant = session.grant(USER);
    group.bench_function("sign_refresh", |b| {
        b.iter(|| tokens.sign_refresh(black_box(&grant)))
    });
    assert!(tokens.verify_refresh(&refresh_token, now).is_ok());
    group.bench_function("verify_refresh", |b| {
        b.iter(|| tokens.verify_refresh(black_box(&refresh_token), now))
    });
    group.bench_function("hash_sha256", |b| {
        b.iter(|| hash(black_box(&refresh_token)))
    });
    group.finish();

    // A refresh with rotation on, everything but the actor hop and the store: verify the
    // presented token, decide with the real sealer (HS256 + SHA-256), hand out the successor
    // token the sealer kept, and sign the access token.
    let mut group = c.benchmark_group("refresh_path");
    group.bench_function("verify_decide_sign", |b| {
        b.iter(|| {
            let presented = tokens
                .verify_refresh(black_box(&refresh_token), now)
                .expect("genuine");
            let sealer = RecordingSealer::new(&tokens);
            let rotate = Command::RotateToken(RotateToken {
                presented,
                rotation: true,
                successor_id: v7(now),
                reuse_grace: TimeDelta::seconds(10),
                lifetimes: lifetimes(),
                activity_resolution: TimeDelta::zero(),
                client: client(),
            });
            let events = decide(black_box(&state), &rotate, now, &sealer).expect("decides");
            let Some(Event::TokenRotated(rotated)) = events.first() else {
                unreachable!("a current token with rotation on rotates")
            };
            let mut successor = grant.clone();
            successor.token_id = rotated.token_id;
            successor.generation = rotated.generation;
            successor.issued_at = rotated.rotated_at.timestamp();
            successor.expires_at = rotated.token_expires_at.timestamp();
            let refresh = sealer.token_for(&successor);
            let access = tokens.sign_access(USER, session_id, now);
            (refresh, access)
        })
    });
    group.finish();

    // The store's form of an event. The payload and the type come from the public
    // `NewEvent::from`; the metadata is serialised in the store's private appender
    // (`serde_json::to_string(&EventMetadata)`), reproduced here the same way.
    let presented = tokens.verify_refresh(&refresh_token, now).expect("genuine");
    let rotate = Command::RotateToken(RotateToken {
        presented,
        rotation: true,
        successor_id: v7(now),
        reuse_grace: TimeDelta::seconds(10),
        lifetimes: lifetimes(),
        activity_resolution: TimeDelta::zero(),
        client: client(),
    });
    let rotated = decide(&state, &rotate, now, &RecordingSealer::new(&tokens))
        .expect("decides")
        .remove(0);
    assert_eq!(rotated.event_type(), "TokenRotated");
    let meta = metadata(now);
    let mut group = c.benchmark_group("store");
    group.bench_function("encode_token_rotated", |b| {
        b.iter(|| {
            let new_event = NewEvent::from(black_box(&rotated));
            let metadata = serde_json::to_string(black_box(&meta)).expect("plain strings");
            (new_event, metadata)
        })
    });
    let new_event = NewEvent::from(&rotated);
    // A row as versions before sealed personal data wrote it: JSON payload and metadata.
    let payload = rotated.payload();
    let recorded_at_text = now.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    let stream_id = stream_of(USER);
    let metadata_json = serde_json::to_string(&meta).expect("plain strings");
    let prev_hash = vec![0u8; 32];
    let hashed = Hashed {
        stream_id: &stream_id,
        stream_version: 1,
        event_type: new_event.event_type,
        schema_version: new_event.schema_version,
        payload: &payload,
        metadata: &metadata_json,
        recorded_at: &recorded_at_text,
        body: None,
    };
    let key = ChainKey::new(&KeyBytes::new([7; 32]));
    let event_hash = key.hash(&prev_hash, &hashed);
    let recorded = RecordedEvent {
        position: 1_804_233,
        stream_id: stream_id.clone(),
        stream_version: 1,
        event_type: new_event.event_type.to_owned(),
        schema_version: new_event.schema_version,
        payload: payload.clone(),
        metadata: metadata_json.clone(),
        body: None,
        recorded_at: DateTime::parse_from_rfc3339(&recorded_at_text)
            .expect("RFC 3339")
            .with_timezone(&Utc),
        prev_hash: prev_hash.clone(),
        hash: event_hash,
        revealed: None,
    };
    assert_eq!(recorded.decode().expect("decodes"), rotated);
    group.bench_function("decode_token_rotated", |b| {
        b.iter(|| {
            let event = black_box(&recorded).decode().expect("decodes");
            let metadata: EventMetadata =
                serde_json::from_str(&recorded.metadata).expect("stored metadata");
            (event, metadata)
        })
    });
    group.bench_function("chain_hash_unkeyed", |b| {
        b.iter(|| chain_hash(black_box(&prev_hash), black_box(&hashed)))
    });
    group.bench_function("chain_hash", |b| {
        b.iter(|| key.hash(black_box(&prev_hash), black_box(&hashed)))
    });
    // What `tokenledger verify` does per event: format the time, rehash, compare, advance.
    group.bench_function("chain_verify_one_event", |b| {
        b.iter_batched_ref(
            || ChainVerifier::new(key.clone()),
            |verifier| verifier.check(black_box(&recorded)).expect("intact"),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
}

criterion_group! {
    name = tokens;
    config = config();
    targets = benches
}
criterion_main!(tokens);
