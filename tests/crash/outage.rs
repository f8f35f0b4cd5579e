//! PostgreSQL stopped and started under load (issue 22 item 2), on a cluster the test owns
//! (`support::cluster`): two instances serve rotations while the database is stopped with
//! `-m fast` and then `-m immediate`. During each outage every answer is a 503
//! `ServiceUnavailableError` with `Retry-After` within 2 s (no hang, never a 401); after the
//! database is back both instances serve again by themselves; at the end every client's
//! newest acknowledged token works on both, both answer the same sessions, every token
//! answered is in the log, no session forked (one rotation a generation), and `verify`
//! passes (`rotating::both_agree`).

use std::time::{Duration, Instant};

use support::Server;
use support::cluster::OwnCluster;
use support::netns::Side;

use crate::rotating::{Held, Load, both_agree, wrong};
use crate::server::{PROBE, api, serves_again};

const CLIENTS: usize = 4;

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
    let mut clients = Vec::new();
    for index in 0..CLIENTS {
        clients.push(Held::register(&apis[0], format!("outage{index}")).await);
    }
    // The instances in turn, as a load balancer would send them.
    let sides = [(Side::A, apis[0].clone()), (Side::B, apis[1].clone())];

    for mode in ["fast", "immediate"] {
        let load = Load::start(&sides, clients);
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
        let answers;
        (clients, answers) = load.finish().await;
        let wrong = wrong(&answers);
        assert!(wrong.is_empty(), "{mode}: {wrong:?}");
        let acked = answers.iter().filter(|a| a.status == 200).count();
        let unavailable: Vec<Duration> = answers
            .iter()
            .filter(|a| a.status == 503)
            .map(|a| a.took)
            .collect();
        let slowest = unavailable.iter().copied().max().unwrap_or_default();
        println!(
            "[outage -m {mode}] acknowledged rotations: {acked}; 503s: {} (slowest {slowest:?}); both instances back {recovered:?} after the start",
            unavailable.len()
        );
        assert!(!unavailable.is_empty(), "{mode}: the outage was met");
        assert!(slowest < Duration::from_secs(2), "{mode}: {slowest:?}");
    }

    // Every client's newest token works on both instances with one successor, both answer the
    // same sessions, each session's rotations form one line in which every token answered is
    // found, and `verify` passes.
    both_agree("outage", [&apis[0], &apis[1]], &instances[0], clients).await;
    for server in &mut instances {
        server.kill();
    }
}
