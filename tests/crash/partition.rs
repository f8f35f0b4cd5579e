//! Partitions (issue 22 item 3): two instances and their PostgreSQL, each in a network
//! namespace of its own (`support::netns`), the test reaching both over HTTP. Each instance
//! reaches the database through a `LatencyProxy` in the database's namespace, so that its link
//! can also be made slow (this kernel has no `netem`).
//!
//! - **Cut**: instance A's link to the database goes down while clients rotate on both. A
//!   hears nothing back (no reset, no error): it must answer 503 with `Retry-After` quickly,
//!   never hang and never a 401, while B goes on serving, though A's transaction may have held
//!   the events table's lock when the link went. After healing both serve again by
//!   themselves, and both answer the same sessions for every user; every client's newest
//!   token works on both with one successor; `verify` passes.
//!   The cut comes right after A sent an insert of a rotation (the link made slow, so that
//!   the insert arrives but its answer cannot): A's batch waits for an answer that never comes,
//!   and its transaction stays open in PostgreSQL, holding rows B's writes of the same
//!   streams must wait for.
//! - **Slow link**: what A sends the database is delayed 200 ms (each round trip 200 ms longer)
//!   under steady load on A: it still answers, and its memory stays bounded (no queue grows
//!   without end).

use std::time::{Duration, Instant};

use support::cluster::{OwnCluster, cluster_unavailable};
use support::latency::LatencyProxy;
use support::netns::{Network, Side, namespaces_unavailable};
use support::{Api, Server, runs_here};

use crate::rotating::{Answer, Held, Load, both_agree, wrong};
use crate::server::{PROBE, api, server_on, serves_again};

const CLIENTS: usize = 6;
/// How long A stays cut off.
const CUT: Duration = Duration::from_secs(10);
/// The longest an answer may take while the database is out of reach.
const QUICKLY: Duration = Duration::from_secs(2);
/// The longest after the cut for the answer of a request whose transaction or read was on its
/// way when the link went: the store abandons those after 5 s (`DEADLINE` on PostgreSQL), a
/// wait for a connection after 1.5 s. Also the longest any answer takes over a slow link.
const CAUGHT: Duration = Duration::from_millis(8000);
const SLOW_LINK: Duration = Duration::from_millis(200);
const SLOW_CLIENTS: usize = 48;
const SLOW_FOR: Duration = Duration::from_secs(12);

/// The whole set-up: namespaces, a cluster in the database's, a proxy for each instance, the
/// two instances. Fields are dropped in order: instances, proxies, cluster, namespaces.
struct Partitioned {
    instances: Vec<Server>,
    proxies: [LatencyProxy; 2],
    _data: tempfile::TempDir,
    cluster: OwnCluster,
    network: Network,
}

impl Partitioned {
    async fn start() -> Partitioned {
        let network = Network::create();
        let cluster = OwnCluster::start_in(&network.database_namespace());
        let database = std::net::SocketAddr::from(([127, 0, 0, 1], cluster.port));
        let proxies = [Side::A, Side::B]
            .map(|side| LatencyProxy::start(&network, &network.database_address(side), database));
        let data = tempfile::tempdir().expect("a data folder");
        let mut instances = Vec::new();
        for (side, proxy) in [Side::A, Side::B].into_iter().zip(&proxies) {
            let url = format!("postgres://postgres@{}/test", proxy.address);
            let mut server = server_on(data.path())
                .in_namespace(&network.namespace(side), &network.web_address(side))
                .env("DATABASE_URL", &url);
            server.start();
            server.ready().await;
            instances.push(server);
        }
        Partitioned {
            instances,
            proxies,
            _data: data,
            cluster,
            network,
        }
    }

    fn api(&self, side: Side) -> Api {
        api(&self.instances[index(side)])
    }

    async fn both_agree(&self, clients: Vec<Held>) {
        let [a, b] = [Side::A, Side::B].map(|side| self.api(side));
        both_agree("partition", [&a, &b], &self.instances[1], clients).await;
    }

    fn apis(&self) -> [(Side, Api); 2] {
        [Side::A, Side::B].map(|side| (side, self.api(side)))
    }
}

fn index(side: Side) -> usize {
    match side {
        Side::A => 0,
        Side::B => 1,
    }
}

fn available() -> bool {
    runs_here(
        "the partition tests",
        cluster_unavailable().or_else(namespaces_unavailable),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_cut_off_from_postgres_answers_503_while_the_other_serves() {
    if !available() {
        return;
    }
    let set = Partitioned::start().await;
    set.api(Side::B).register(PROBE).await;
    let mut clients = Vec::new();
    for index in 0..CLIENTS {
        clients.push(Held::register(&set.api(Side::B), format!("cut{index}")).await);
    }

    let load = Load::start(&set.apis(), clients);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The cut comes while A's batch waits for the answer to its insert: the insert reaches
    // the database (the proxy holds it 200 ms, longer than a cut takes), its answer never
    // comes back, and the transaction stays open there, holding its rows.
    let proxy = &set.proxies[index(Side::A)];
    proxy.set_delay(SLOW_LINK);
    // Every insert of a rotation binds its type (the statement's text goes only with its
    // first preparation on a connection).
    tokio::time::timeout(Duration::from_secs(10), proxy.sent(b"TokenRotated"))
        .await
        .expect("A sends a rotation within 10 s");
    let cut = Instant::now();
    set.network.cut(Side::A);
    tokio::time::sleep(CUT).await;
    // PostgreSQL ended the transaction A left open (no reset came for its connection), so
    // that B, writing the same streams, is not held by its locks.
    let open = set.cluster.psql(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction' \
             AND state_change < now() - interval '1 second'",
    );
    set.network.heal(Side::A);
    set.proxies[index(Side::A)].set_delay(Duration::ZERO);
    let healed = Instant::now();
    let back = serves_again(&set.api(Side::A)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (clients, answers) = load.finish().await;

    let wrong = wrong(&answers);
    assert!(wrong.is_empty(), "answers but 200 or 503: {wrong:?}");
    let during = |a: &&Answer| a.sent >= cut && a.sent + a.took <= healed;
    let a_cut: Vec<_> = answers
        .iter()
        .filter(|a| a.side == Side::A && during(a))
        .collect();
    let b_cut: Vec<_> = answers
        .iter()
        .filter(|a| a.side == Side::B && during(a))
        .collect();
    let slowest = |answers: &[&Answer]| answers.iter().map(|a| a.took).max().unwrap_or_default();
    let caught: Vec<_> = answers
        .iter()
        .filter(|a| a.side == Side::A && a.sent < cut && a.sent + a.took > cut)
        .collect();
    let b_acked = b_cut.iter().filter(|a| a.status == 200).count();
    let b_unavailable = b_cut.iter().filter(|a| a.status == 503).count();
    println!(
        "[partition: A cut off {CUT:?}] A answered {} (all 503: {}), slowest {:?}; in flight at the cut {} ({} × 503), the last answered {:?} after the cut; \
         B acknowledged {b_acked} rotations, {b_unavailable} × 503, slowest {:?} (of the whole run {:?}); A back {back:?} after the heal",
        a_cut.len(),
        a_cut.iter().all(|a| a.status == 503),
        slowest(&a_cut),
        caught.len(),
        caught.iter().filter(|a| a.status == 503).count(),
        answered_after(&caught, cut),
        slowest(&b_cut),
        answers
            .iter()
            .filter(|a| a.side == Side::B)
            .map(|a| a.took)
            .max()
            .unwrap_or_default(),
    );
    assert!(
        answered_after(&caught, cut) < CAUGHT,
        "no request hangs at the cut"
    );
    assert_eq!(open, "0", "transactions left open by the cut");
    assert!(
        a_cut.iter().all(|a| a.status == 503),
        "A cannot reach the database"
    );
    assert!(!a_cut.is_empty(), "A was asked while cut off");
    assert!(slowest(&a_cut) < QUICKLY, "A's 503s are quick");
    assert!(b_acked > CLIENTS, "B serves while A is cut off");

    set.both_agree(clients).await;
}

/// How long after `moment` the last of `answers` came.
fn answered_after(answers: &[&Answer], moment: Instant) -> Duration {
    answers
        .iter()
        .map(|a| (a.sent + a.took).saturating_duration_since(moment))
        .max()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_link_to_postgres_keeps_memory_bounded() {
    if !available() {
        return;
    }
    let set = Partitioned::start().await;
    let a = set.api(Side::A);
    let mut clients = Vec::new();
    for index in 0..SLOW_CLIENTS {
        clients.push(Held::register(&a, format!("slow{index}")).await);
    }
    set.proxies[index(Side::A)].set_delay(SLOW_LINK);
    let load = Load::start(&[(Side::A, a.clone())], clients);
    let started = Instant::now();
    let mut memory = Vec::new();
    while started.elapsed() < SLOW_FOR {
        memory.push(set.instances[index(Side::A)].memory_kib().0);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (clients, answers) = load.finish().await;
    set.proxies[index(Side::A)].set_delay(Duration::ZERO);

    let (first, second) = memory.split_at(memory.len() / 2);
    let peak = |half: &[u64]| half.iter().copied().max().unwrap_or_default();
    let mut took: Vec<Duration> = answers.iter().map(|a| a.took).collect();
    took.sort();
    let acked = answers.iter().filter(|a| a.status == 200).count();
    let unavailable = answers.iter().filter(|a| a.status == 503).count();
    println!(
        "[slow link +{SLOW_LINK:?} a round trip, {SLOW_CLIENTS} clients, {SLOW_FOR:?}] {acked} rotations, {unavailable} × 503, \
         p50 {:?}, p99 {:?}, slowest {:?}; RSS peak first half {} KiB, second half {} KiB",
        took[took.len() / 2],
        took[took.len() * 99 / 100],
        took.last().copied().unwrap_or_default(),
        peak(first),
        peak(second),
    );
    let wrong = wrong(&answers);
    assert!(wrong.is_empty(), "answers but 200 or 503: {wrong:?}");
    assert!(acked > SLOW_CLIENTS, "it still serves over a slow link");
    assert!(
        took.last().copied().unwrap_or_default() < CAUGHT,
        "no request waits longer than the store's deadline and a connection's"
    );
    assert!(
        peak(second) <= peak(first) + 8 * 1024,
        "memory grew: {memory:?}"
    );
    set.both_agree(clients).await;
}
