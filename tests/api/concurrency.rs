//! Concurrent refreshes of one token never fork a session, concurrent appends share group
//! commits, and one user's sessions rotating at once survive a failed append among theirs.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::Api;
use tokenledger::store::stream_of;
use tokenledger::tokens::hash;
use tokenledger_domain::{Event, SessionId};

use crate::helpers::{TestApp, server, spawn_app_with};

#[actix_web::test]
async fn fifty_concurrent_rotations_of_one_token_yield_one_successor() {
    let app = spawn_app_with(&[
        ("REFRESH_TOKEN_ROTATION", "true"),
        ("REFRESH_RATE_LIMIT", "off"),
    ])
    .await;
    let id = app.register("nina").await["user"]["id"].as_i64().unwrap();
    let token = app.login("nina").await["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();

    let answers = futures::future::join_all((0..50).map(|_| app.refresh(&token))).await;

    let successors: HashSet<String> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 200, "{body}");
            body["refreshToken"]
                .as_str()
                .expect("a successor")
                .to_owned()
        })
        .collect();
    assert_eq!(
        successors.len(),
        1,
        "every 200 carries the identical successor"
    );
    let events = app.store().read_stream(&stream_of(id), 0).await.unwrap();
    let rotations: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == "TokenRotated")
        .collect();
    assert_eq!(
        rotations.len(),
        1,
        "exactly one TokenRotated for generation 1"
    );
    assert!(rotations[0].payload.contains("\"generation\":1"));
    // Registration and login each started a session; the login's did not fork.
    let sessions = app
        .state()
        .projection
        .read()
        .unwrap()
        .sessions_of(id, chrono::Utc::now());
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions.iter().filter(|s| s.generation == 1).count(), 1);
    // And the successor works.
    let successor = successors.into_iter().next().unwrap();
    assert_eq!(app.refresh(&successor).await.0, 200);
}

#[actix_web::test]
async fn many_users_refreshing_at_once_all_succeed_through_group_commit() {
    let app = spawn_app_with(&[("REFRESH_TOKEN_ROTATION", "true")]).await;
    let mut tokens = Vec::new();
    for n in 0..8 {
        let name = format!("user{n}");
        app.register(&name).await;
        tokens.push(
            app.login(&name).await["refreshToken"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    for _round in 0..5 {
        tokens = rotate_all(&app, &tokens).await;
    }
    let distinct: HashSet<&String> = tokens.iter().collect();
    assert_eq!(distinct.len(), 8);
}

/// Group commit, seen from outside: many users rotating their tokens at once against the real
/// binary on SQLite, and `/metrics` says their appends shared transactions. Were each append
/// its own transaction (and fsync), batches would equal appends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_group_commits() {
    const USERS: usize = 32;
    const ROUNDS: usize = 4;
    let server = server()
        .envs(&[
            ("REFRESH_TOKEN_ROTATION", "true"),
            ("REFRESH_RATE_LIMIT", "off"),
            ("LOGIN_RATE_LIMIT", "off"),
            ("LOGIN_IP_RATE_LIMIT", "off"),
        ])
        .serving()
        .await;
    let api = server.api();
    // One at a time: the password hashes' queue is bounded, and refuses a crowd of logins.
    let mut tokens = Vec::new();
    for n in 0..USERS {
        tokens.push(api.user_with_token(&format!("batch{n}")).await.1);
    }

    let before = api.metrics().await;
    for _ in 0..ROUNDS {
        tokens = rotate_all(&api, &tokens).await;
    }
    let after = api.metrics().await;

    let grown = |key: &str| after.get(key) - before.get(key);
    let appends = grown("tokenledger_group_commit_batch_size_sum");
    let batches = grown("tokenledger_group_commit_batch_size_count");
    assert!(
        appends >= (USERS * ROUNDS) as f64,
        "each rotation is an append: {appends}"
    );
    assert!(
        batches < appends,
        "{appends} concurrent appends took {batches} group commits: none was shared"
    );
    println!(
        "{appends} concurrent appends in {batches} group commits ({:.1} appends a commit)",
        appends / batches
    );
}

/// Refreshes every token at once; their successors, each answered with a 200.
async fn rotate_all(api: &Api, tokens: &[String]) -> Vec<String> {
    futures::future::join_all(tokens.iter().map(|t| api.refresh(t)))
        .await
        .into_iter()
        .map(|(status, body)| {
            assert_eq!(status, 200, "{body}");
            body["refreshToken"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// One user's sessions all rotating at once go through one actor, which decides each on the
/// appends still in flight before it. An append failure injected in the middle (a trigger on
/// the app's own database file, for as long as it takes to fail some) takes the commands that
/// were decided on it along: each is a 503 that wrote nothing, its token still the session's
/// current one, and every 200 hands out a token that is in the log and works. Each session's
/// chain of tokens in the log is then exactly the one its client saw: no fork, nothing extra.
#[actix_web::test]
async fn one_users_sessions_rotating_at_once_survive_an_injected_append_failure() {
    const SESSIONS: usize = 40;
    const ROUNDS: usize = 8;
    let app = spawn_app_with(&[
        ("REFRESH_TOKEN_ROTATION", "true"),
        ("REFRESH_RATE_LIMIT", "off"),
        ("LOGIN_RATE_LIMIT", "off"),
        ("LOGIN_IP_RATE_LIMIT", "off"),
    ])
    .await;
    let id = app.register("pia").await["user"]["id"].as_i64().unwrap();
    let mut tokens = Vec::new();
    for _ in 0..SESSIONS {
        tokens.push(
            app.login("pia").await["refreshToken"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let db = app.dir.path().join("tokenledger.db");
    let injector = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let progress = Progress::default();

    let (chains, ()) = futures::future::join(
        futures::future::join_all(
            tokens
                .into_iter()
                .map(|token| rotate_session(&app, id, token, ROUNDS, &progress)),
        ),
        inject_failures(&injector, &progress, SESSIONS),
    )
    .await;

    let refused = progress.refused.load(Ordering::SeqCst);
    assert!(refused > 0, "the injected failure refused no rotation");
    let logged = token_chains(&app, id).await;
    assert_eq!(
        logged.len(),
        SESSIONS + 1,
        "the registration's session and the logins'"
    );
    for chain in &chains {
        let hashes: Vec<[u8; 32]> = chain.iter().map(|t| hash(t).0).collect();
        let in_log = logged
            .values()
            .find(|c| c.first() == hashes.first())
            .expect("the login's token is in the log");
        assert_eq!(
            in_log, &hashes,
            "the session's tokens in the log are exactly those its client was given"
        );
        let (status, body) = app.refresh(chain.last().unwrap()).await;
        assert_eq!(status, 200, "the last token handed out works: {body}");
    }
    let output = app.cli(&["verify"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{refused} rotations refused while appends failed");
}

#[derive(Default)]
struct Progress {
    rotated: AtomicUsize,
    refused: AtomicUsize,
}

/// Once every session has rotated once, makes every insert into the log fail until at least
/// one rotation has been refused (or ten seconds passed), then lets them through again.
async fn inject_failures(db: &sqlx::SqlitePool, progress: &Progress, sessions: usize) {
    while progress.rotated.load(Ordering::SeqCst) < sessions {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    sqlx::query(
        "CREATE TRIGGER injected BEFORE INSERT ON events \
         BEGIN SELECT RAISE(ABORT, 'injected'); END",
    )
    .execute(db)
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while progress.refused.load(Ordering::SeqCst) < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    sqlx::query("DROP TRIGGER injected")
        .execute(db)
        .await
        .unwrap();
}

/// Rotates one session's token `rounds` times, presenting the same token again after a 503;
/// its chain of tokens, the login's first. A refusal must have written nothing: the token
/// presented is still the session's newest in the log.
async fn rotate_session(
    app: &TestApp,
    user: i64,
    token: String,
    rounds: usize,
    progress: &Progress,
) -> Vec<String> {
    let mut chain = vec![token];
    while chain.len() <= rounds {
        let presented = chain.last().unwrap().clone();
        let (status, body) = app.refresh(&presented).await;
        match status {
            200 => {
                chain.push(body["refreshToken"].as_str().expect("a token").to_owned());
                progress.rotated.fetch_add(1, Ordering::SeqCst);
            }
            503 => {
                let newest = token_chains(app, user)
                    .await
                    .into_values()
                    .find_map(|c| c.contains(&hash(&presented).0).then(|| *c.last().unwrap()));
                assert_eq!(
                    newest,
                    Some(hash(&presented).0),
                    "a refused rotation wrote nothing"
                );
                progress.refused.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            _ => panic!("a rotation answered {status} {body}"),
        }
    }
    chain
}

/// Each session's token hashes in the log, in order: its login's, then each rotation's.
async fn token_chains(app: &TestApp, user: i64) -> HashMap<SessionId, Vec<[u8; 32]>> {
    let mut chains: HashMap<SessionId, Vec<[u8; 32]>> = HashMap::new();
    let events = app.store().read_stream(&stream_of(user), 0).await.unwrap();
    for event in events {
        match event.decode().expect("a readable event") {
            Event::TokenIssued(e) => chains.entry(e.session_id).or_default().push(e.token_hash.0),
            Event::TokenRotated(e) => {
                let chain = chains.entry(e.session_id).or_default();
                assert_eq!(
                    e.generation as usize,
                    chain.len(),
                    "each rotation follows the previous generation"
                );
                chain.push(e.token_hash.0);
            }
            _ => {}
        }
    }
    chains
}
