//! Concurrent refreshes of one token never fork a session, and concurrent appends share
//! group commits.

use std::collections::HashSet;

use support::Api;
use tokenledger::store::stream_of;

use crate::helpers::{server, spawn_app_with};

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
