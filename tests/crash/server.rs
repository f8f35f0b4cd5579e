//! The server under test: the real binary (`support::Server`) with the crash test's settings,
//! on one data folder (and PostgreSQL schema) for its whole life, started again after each
//! kill or stop; and on PostgreSQL the killed server's backends, which must have ended before
//! the log is read.

use std::time::{Duration, Instant};

use support::{Api, FreshSchema, Server, postgres_url};

use crate::GRACE;

/// The server, not started yet: rotation on, a grace window no restart can use up, no rate
/// limit to hold the clients back.
pub fn server(postgres: Option<&FreshSchema>) -> Server {
    with_settings(Server::new(env!("CARGO_BIN_EXE_tokenledger")), postgres)
}

/// As `server`, on the data folder `data` (on a disk that loses power, say).
pub fn server_on(data: &std::path::Path) -> Server {
    with_settings(Server::on(env!("CARGO_BIN_EXE_tokenledger"), data), None)
}

fn with_settings(server: Server, postgres: Option<&FreshSchema>) -> Server {
    let server = server.envs(&[
        ("REFRESH_TOKEN_ROTATION", "true"),
        ("REFRESH_TOKEN_REUSE_GRACE", GRACE),
        ("LOGIN_RATE_LIMIT", "off"),
        ("LOGIN_IP_RATE_LIMIT", "off"),
        ("REFRESH_RATE_LIMIT", "off"),
    ]);
    match postgres {
        // Named, so that `settle` can tell the server's backends apart.
        Some(schema) => server.env(
            "DATABASE_URL",
            &format!(
                "{}&application_name={}",
                schema.url(),
                application_name(schema)
            ),
        ),
        None => server,
    }
}

/// Starts the server and waits until it is ready.
pub async fn start(server: &mut Server, postgres: Option<&FreshSchema>) {
    server.start();
    server.ready().await;
    if let Some(schema) = postgres {
        // Else `settle` would wait for nothing.
        assert!(
            backends(schema).await > 0,
            "the server's backends are named"
        );
    }
}

/// A client of the running server with a fresh connection pool (the old one's connections
/// died with the old server) and a timeout, so that a hung server fails the test.
pub fn api(server: &Server) -> Api {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");
    Api::with_client(server.address.clone(), http)
}

fn application_name(schema: &FreshSchema) -> String {
    format!("crash-{}", schema.name)
}

/// Waits until the log is what the killed server left. On SQLite it is at once; a PostgreSQL
/// backend that already holds the server's `COMMIT` carries it out after the server is gone,
/// so the log is fixed only once the server's backends have ended.
pub async fn settle(postgres: Option<&FreshSchema>) {
    let Some(schema) = postgres else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = backends(schema).await;
        if left == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{left} backends of the killed server still run after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// How many PostgreSQL backends serve the server's connections.
async fn backends(schema: &FreshSchema) -> i64 {
    let admin = sqlx::PgPool::connect(&postgres_url())
        .await
        .expect("PostgreSQL");
    let count =
        sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
            .bind(application_name(schema))
            .fetch_one(&admin)
            .await
            .expect("pg_stat_activity");
    admin.close().await;
    count
}

/// The user `serves_again` logs in as: registered before the database goes away.
pub const PROBE: &str = "probe";

/// Waits until `api` logs `PROBE` in (a read of the users table) with anything but a 503;
/// panics after 30 s. How long it waited.
pub async fn serves_again(api: &Api) -> Duration {
    let started = Instant::now();
    let body = serde_json::json!({ "identifier": PROBE, "password": support::PASSWORD });
    loop {
        let (status, answer) = api.post("/api/auth/local", body.clone()).await;
        if status != 503 {
            assert_eq!(status, 200, "the probe's login: {answer}");
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{} did not come back",
            api.address
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
