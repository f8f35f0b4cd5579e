//! Generated hostile input against the real server (issue 7): thousands of requests from a
//! seed, over raw TCP, to the `tokenledger` binary — mutated and mistyped bodies, deep
//! nesting, huge strings, invalid UTF-8, odd content types, bodies over the limit, slow
//! clients, thousands of headers, broken framing — on every route, with tokens real, forged
//! and junk. Every answer must be a 4xx in Strapi's error body (or a 2xx where the input
//! happened to be valid), never a 5xx; the server must not crash, must still log a user in
//! afterwards, and its memory must stay bounded.
//!
//! `HOSTILE_REQUESTS` (default 3000) sets the number of generated requests and `HOSTILE_SEED`
//! the seed, printed at the start: case `i` of a seed is always the same request, but for the
//! tokens and ids of that run's accounts. A failure prints its exact bytes. Outside CI:
//!
//! ```sh
//! HOSTILE_REQUESTS=100000 cargo test --release --test api hostile_input -- --nocapture
//! ```

mod framing;
mod generate;
mod json;
mod routes;
mod server;
mod slow;
mod verdict;
mod wire;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde_json::json;

use generate::Fixture;
use server::{ADMIN_TOKEN, Log, log_in, register};
use verdict::Tally;
use wire::Connection;

const ACCOUNTS: usize = 6;
const CONNECTIONS: usize = 4;
/// Longer than any honest answer takes, even behind a queue of password hashes.
const DEADLINE: Duration = Duration::from_secs(30);
/// The server's memory may grow this much over a run (its caches, the rate limiters' keys,
/// the users registered on the way); a leak per request grows past it.
const RSS_GROWTH_LIMIT_KIB: u64 = 200 * 1024;

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

async fn run(backend: &str, database_url: Option<&str>) {
    let requests = env_number("HOSTILE_REQUESTS").unwrap_or(3000);
    let seed = env_number("HOSTILE_SEED").unwrap_or_else(rand::random);
    println!(
        "hostile input ({backend}): {requests} generated requests, seed {seed} \
         (HOSTILE_SEED={seed} HOSTILE_REQUESTS={requests} replays them)"
    );
    let mut server = server::start(database_url).await;
    let address = server.socket_address();
    let api = server.api();
    let mut accounts = Vec::new();
    for i in 0..ACCOUNTS {
        let name = format!("hostile{i}");
        let id = register(&api, &name).await;
        let account = log_in(&api, &name, id, 0x0A00_0001 + i as u32).await;
        accounts.push(account.expect("fixture login"));
    }
    register(&api, "sentinel").await;
    let fixture = Arc::new(RwLock::new(Arc::new(Fixture {
        host: address.to_string(),
        accounts,
        admin_token: ADMIN_TOKEN.to_owned(),
    })));
    let (rss_before, _) = server.memory_kib();
    let started = Instant::now();

    // Logouts and admin clears end the fixture's sessions: a login now and then keeps one
    // account's tokens live, from an address of its own.
    let done = Arc::new(AtomicBool::new(false));
    let keeper = {
        let (fixture, done, api) = (fixture.clone(), done.clone(), api.clone());
        tokio::spawn(async move {
            for round in 0u32.. {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if done.load(Ordering::Relaxed) {
                    break;
                }
                let mut renewed = (**fixture.read().unwrap()).clone();
                let account = &mut renewed.accounts[round as usize % ACCOUNTS];
                let from = 0x0B00_0000 + round;
                if let Some(fresh) = log_in(&api, &account.username, account.id, from).await {
                    *account = fresh;
                    *fixture.write().unwrap() = Arc::new(renewed);
                }
            }
        })
    };

    let slow = tokio::spawn(slow::run(address));
    let mut tally = Tally::default();
    let mut pinned = Connection::new(address);
    let pinned_cases = generate::pinned(&fixture.read().unwrap());
    for case in pinned_cases {
        let sent = Instant::now();
        let outcome = pinned
            .exchange(&case.bytes, false, true, false, DEADLINE)
            .await;
        tally.record("pinned".into(), &case, &outcome, sent.elapsed(), None);
    }
    let next = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (next, fixture, address) = (next.clone(), fixture.clone(), address);
            tokio::spawn(async move {
                let mut connection = Connection::new(address);
                let mut tally = Tally::default();
                let mut last: Option<Vec<u8>> = None;
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= requests {
                        tally.retries = connection.retries;
                        break tally;
                    }
                    let fixture = fixture.read().unwrap().clone();
                    let case = generate::case(seed, index, &fixture);
                    let previous = (connection.is_open() && !case.fresh).then_some(last.take());
                    let sent = Instant::now();
                    let outcome = connection
                        .exchange(
                            &case.bytes,
                            case.head,
                            case.fresh,
                            case.half_close,
                            DEADLINE,
                        )
                        .await;
                    let took = sent.elapsed();
                    tally.record(
                        format!("#{index}"),
                        &case,
                        &outcome,
                        took,
                        previous.flatten().as_deref(),
                    );
                    last = Some(case.bytes);
                }
            })
        })
        .collect();
    for worker in workers {
        tally.merge(worker.await.expect("worker"));
    }
    tally.merge(slow.await.expect("slow clients"));
    done.store(true, Ordering::Relaxed);
    keeper.await.expect("keeper");
    let elapsed = started.elapsed();

    // Still up, still serving a normal login.
    let exited = server.exited();
    let health = api.client.get(api.url("/_health")).send().await;
    // From an address of its own: the generated logins from the test's own address may have
    // used up that address's login allowance (LOGIN_IP_RATE_LIMIT), which is not the server
    // failing.
    let login = api
        .client
        .post(api.url("/api/auth/local"))
        .header("x-forwarded-for", "203.0.113.250")
        .json(&json!({"identifier": "sentinel", "password": "password123"}))
        .send()
        .await;
    let (rss_after, peak) = server.memory_kib();
    println!(
        "hostile input ({backend}): {} requests ({requests} generated, the rest pinned and slow \
         clients) in {:.1} s, seed {seed}\n  server memory: RSS {} before, {} after, peak {}",
        tally.requests,
        elapsed.as_secs_f64(),
        mib(rss_before),
        mib(rss_after),
        mib(peak),
    );
    tally.print();
    let log = Log::of(&server);
    for line in log.panics.iter().chain(&log.errors) {
        println!("  server log: {line}");
    }
    assert!(
        exited.is_none(),
        "the server exited during the run: {exited:?}"
    );
    assert!(log.panics.is_empty(), "the server panicked");
    assert_eq!(
        tally.failure_count, 0,
        "{} of {} hostile requests were answered wrongly (seed {seed}); see above",
        tally.failure_count, tally.requests
    );
    assert!(
        health.is_ok_and(|r| r.status() == 204),
        "health after the run"
    );
    let login = login.map(|r| r.status().as_u16());
    assert_eq!(login.ok(), Some(200), "a normal login after the run");
    assert!(
        rss_after.saturating_sub(rss_before) < RSS_GROWTH_LIMIT_KIB,
        "the server grew from {} to {}",
        mib(rss_before),
        mib(rss_after)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_hostile_input_never_gets_a_5xx_on_sqlite() {
    run("sqlite", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_hostile_input_never_gets_a_5xx_on_postgres() {
    let Some(url) = support::fresh_postgres_url().await else {
        return;
    };
    run("postgres", Some(&url)).await;
}
