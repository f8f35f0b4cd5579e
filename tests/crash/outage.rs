//! PostgreSQL stopped and started under load (issue 22 item 2), on a cluster the test owns
//! (`support::cluster`): two instances serve rotations while the database is stopped with
//! `-m fast` and then `-m immediate`. During each outage every answer is a 503
//! `ServiceUnavailableError` with `Retry-After` within 2 s (no hang, never a 401); after the
//! database is back both instances serve again by themselves; at the end every client's
//! newest acknowledged token works on both, no session forked (one rotation a generation),
//! and `verify` passes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::cluster::OwnCluster;
use support::{Api, Server, claims};

use crate::client::Token;
use crate::forensics::check_trail;
use crate::server::{PROBE, api, serves_again};

const CLIENTS: usize = 4;

/// What one client saw.
#[derive(Default)]
struct Seen {
    acked: usize,
    unavailable: usize,
    /// The slowest 503.
    slowest: Duration,
    /// Any answer but a 200 or a 503 with `Retry-After`.
    wrong: Vec<String>,
    /// Every token answered.
    tokens: Vec<Token>,
}

/// Rotates `token` against the two instances in turn until `stop`; returns the newest token
/// answered and what was seen. A 503 keeps the token: nothing was acknowledged.
async fn rotate(apis: [Api; 2], mut token: String, stop: Arc<AtomicBool>) -> (String, Seen) {
    let mut seen = Seen::default();
    let mut turn = 0;
    while !stop.load(Ordering::Relaxed) {
        let api = &apis[turn % 2];
        turn += 1;
        let started = Instant::now();
        let answer = api
            .client
            .post(api.url("/api/auth/local/refresh"))
            .json(&json!({ "refreshToken": token }))
            .send()
            .await;
        let took = started.elapsed();
        let Ok(answer) = answer else {
            seen.wrong.push(format!("no answer after {took:?}"));
            continue;
        };
        let status = answer.status().as_u16();
        let retry_after = answer.headers().contains_key("retry-after");
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        match status {
            200 => {
                seen.tokens.push(Token::of(&body));
                token = body["refreshToken"].as_str().expect("checked").to_owned();
                seen.acked += 1;
            }
            503 if retry_after => {
                seen.unavailable += 1;
                seen.slowest = seen.slowest.max(took);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            _ => seen.wrong.push(format!("{status} after {took:?}: {body}")),
        }
    }
    (token, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_under_load_is_503s_then_both_instances_serve_again() {
    let Some(cluster) = OwnCluster::start_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().expect("a data folder");
    let mut instances: Vec<Server> = Vec::new();
    for _ in 0..2 {
        let mut server = crate::server::server_on(dir.path()).env("DATABASE_URL", &cluster.url());
        server.start();
        server.ready().await;
        instances.push(server);
    }
    let apis = [api(&instances[0]), api(&instances[1])];
    apis[0].register(PROBE).await;
    let mut tokens = Vec::new();
    let mut answered: Vec<Vec<Token>> = Vec::new();
    for index in 0..CLIENTS {
        let token = apis[0].user_with_token(&format!("outage{index}")).await.1;
        answered.push(vec![Token::of(&json!({ "refreshToken": token }))]);
        tokens.push(token);
    }

    for mode in ["fast", "immediate"] {
        let stop = Arc::new(AtomicBool::new(false));
        let running: Vec<_> = tokens
            .drain(..)
            .map(|token| tokio::spawn(rotate(apis.clone(), token, stop.clone())))
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        cluster.stop(mode);
        tokio::time::sleep(Duration::from_secs(3)).await;
        cluster.start();
        let back = Instant::now();
        // Both instances serve again by themselves.
        for api in &apis {
            serves_again(api).await;
        }
        let recovered = back.elapsed();
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, Ordering::Relaxed);
        let mut totals = Seen::default();
        for (task, answered) in running.into_iter().zip(&mut answered) {
            let (token, mut seen) = task.await.expect("a client");
            answered.append(&mut seen.tokens);
            assert!(seen.wrong.is_empty(), "{mode}: {:?}", seen.wrong);
            totals.acked += seen.acked;
            totals.unavailable += seen.unavailable;
            totals.slowest = totals.slowest.max(seen.slowest);
            tokens.push(token);
        }
        println!(
            "[outage -m {mode}] acknowledged rotations: {}; 503s: {} (slowest {:?}); both instances back {:?} after the start",
            totals.acked, totals.unavailable, totals.slowest, recovered
        );
        assert!(totals.unavailable > 0, "{mode}: the outage was met");
        assert!(
            totals.slowest < Duration::from_secs(2),
            "{mode}: {:?}",
            totals.slowest
        );
    }

    // Every client's newest token works on both instances (the second gets the same successor
    // through the grace window), and each session's rotations form one line, in which every
    // token answered is found.
    let mut checked = 0;
    for (index, (token, answered)) in tokens.iter().zip(&mut answered).enumerate() {
        let (status, first) = apis[0].refresh(token).await;
        assert_eq!(status, 200, "{first}");
        let (status, again) = apis[1].refresh(token).await;
        assert_eq!(status, 200, "{again}");
        assert_eq!(
            first["refreshToken"], again["refreshToken"],
            "one successor"
        );
        let generation = claims(token)["gen"].as_u64().expect("gen");
        assert_eq!(
            claims(first["refreshToken"].as_str().unwrap())["gen"],
            generation + 1
        );
        answered.push(Token::of(&first));
        check_trail(&instances[0], &format!("outage{index}"), answered);
        checked += answered.len();
    }
    println!("[outage] acknowledged tokens found in the log: {checked}");
    let verified = instances[0].cli(&["verify"]);
    assert!(
        verified.status.success(),
        "verify: {}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
    for server in &mut instances {
        server.kill();
    }
}
