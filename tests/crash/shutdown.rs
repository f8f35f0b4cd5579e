//! Graceful shutdown: the same clients as the crash test, but the server is stopped with
//! `SIGTERM` (as an orchestrator stops it) and `SIGINT` (Ctrl-C), in turn, several times a run. A graceful stop must end
//! with exit status 0 and lose nothing: every request answered with a 200 is in the log, and
//! no request was committed without its answer reaching the client (what a `SIGKILL` may
//! do, and what the crash test allows).

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use support::{FreshSchema, on_fresh_schema};

use crate::client::Expect;
use crate::forensics::{check_log, verify};
use crate::server::{api, settle, start};
use crate::{USERS, collect, drive, with_clients};

const STOPS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_no_acknowledged_request_on_sqlite() {
    sigterm_test("sqlite", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_no_acknowledged_request_on_postgres() {
    on_fresh_schema(|schema| sigterm_test("postgres", Some(schema))).await;
}

async fn sigterm_test(backend: &str, postgres: Option<FreshSchema>) {
    let started = Instant::now();
    let seed = rand::random::<u64>();
    println!("[{backend}] seed={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut server, mut clients, mut tally) = with_clients(postgres.as_ref(), None, seed).await;

    let mut acked_before_stop = Vec::new();
    for stop in 0..STOPS {
        let signal = ["TERM", "INT"][stop % 2];
        let running = drive(&mut clients, &server);
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..=400))).await;
        let before = tally.requests_acked;
        server.stop_with(signal).await;
        settle(postgres.as_ref()).await;
        collect(running, &mut clients, &mut tally).await;
        acked_before_stop.push(tally.requests_acked - before);

        verify(&server);
        let expectations: Vec<Expect> = clients
            .iter_mut()
            .map(|client| client.resolve(&server, &mut tally))
            .collect();
        assert_eq!(
            (tally.lost_rotations, tally.orphan_logins),
            (0, 0),
            "a graceful stop committed requests whose answers never left (rotations, logins)"
        );
        start(&mut server, postgres.as_ref()).await;
        let api = api(&server);
        for (client, expect) in clients.iter_mut().zip(expectations) {
            client.check(&api, expect, &mut tally).await;
        }
    }

    let events = check_log(&server, &clients);
    assert_eq!(
        events,
        // Each registration is two: its `UserRegistered` and its session.
        2 * USERS + tally.logins_acked + tally.rotations_acked,
        "events in the log against the requests answered with a 200"
    );
    let log = server.log_text();
    assert_eq!(
        log.matches("stopped: the appender flushed and the store closed")
            .count(),
        STOPS,
        "each stop flushed the appender, closed the store and said so"
    );
    server.stop_with("TERM").await;
    println!(
        "[{backend}] SIGTERM and SIGINT stops: {STOPS}; requests acknowledged: {} ({} before each stop: \
         {acked_before_stop:?}); cut off before their commit: {}; events in the log: {events}; \
         wall time: {:.1} s",
        tally.requests_acked,
        tally.rotations_acked + tally.logins_acked,
        tally.uncommitted,
        started.elapsed().as_secs_f64(),
    );
}
