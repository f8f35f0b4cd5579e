//! Snapshots of the sessions projection (issue 20): a start from a snapshot and the log's tail
//! ends with the projection a full fold makes, and a corrupted, forged or out-of-log snapshot
//! is refused for the full fold. The real binary, on SQLite and on PostgreSQL: its log lines
//! say which snapshot was used and how many events were folded after it.

use serde_json::{Value, json};
use sqlx::Row as _;
use support::{Api, FreshSchema, Server};
use tempfile::TempDir;

use crate::insider::busy;

const BINARY: &str = env!("CARGO_BIN_EXE_tokenledger");

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

macro_rules! on_both_backends {
    ($test:ident) => {
        mod $test {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$test(super::Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$test(super::Backend::Postgres).await;
            }
        }
    };
}

/// One database of the service: a data folder, and on PostgreSQL a schema of its own.
struct Database {
    dir: TempDir,
    schema: Option<FreshSchema>,
}

impl Database {
    async fn create(backend: Backend) -> Option<Database> {
        let schema = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(FreshSchema::create().await?),
        };
        Some(Database {
            dir: tempfile::tempdir().expect("temp dir"),
            schema,
        })
    }

    /// The binary on this database, rotating refresh tokens, without rate limits.
    fn server(&self) -> Server {
        let server = Server::on(BINARY, self.dir.path()).envs(&[
            ("REFRESH_TOKEN_ROTATION", "true"),
            ("LOGIN_RATE_LIMIT", "off"),
            ("LOGIN_IP_RATE_LIMIT", "off"),
            ("REFRESH_RATE_LIMIT", "off"),
        ]);
        match &self.schema {
            Some(schema) => server.env("DATABASE_URL", &schema.url()),
            None => server,
        }
    }

    /// Runs `sql` with `bytes` bound (if any) straight on the database, as an insider would.
    async fn sql(&self, sql: &str, bytes: Option<Vec<u8>>) {
        match &self.schema {
            None => {
                let url = format!(
                    "sqlite://{}",
                    self.dir.path().join("tokenledger.db").display()
                );
                let pool = sqlx::SqlitePool::connect(&url).await.expect("SQLite");
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()));
                if let Some(bytes) = bytes {
                    query = query.bind(bytes);
                }
                query.execute(&pool).await.expect(sql);
                pool.close().await;
            }
            Some(schema) => {
                let pool = sqlx::PgPool::connect_with(schema.options())
                    .await
                    .expect("PostgreSQL");
                let sql = sql.replace('?', "$1");
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
                if let Some(bytes) = bytes {
                    query = query.bind(bytes);
                }
                query.execute(&pool).await.expect(&sql);
                pool.close().await;
            }
        }
    }

    /// The stored snapshot's body (the one snapshot there is).
    async fn body(&self) -> Vec<u8> {
        let sql = "SELECT body FROM snapshots ORDER BY position DESC LIMIT 1";
        match &self.schema {
            None => {
                let url = format!(
                    "sqlite://{}",
                    self.dir.path().join("tokenledger.db").display()
                );
                let pool = sqlx::SqlitePool::connect(&url).await.expect("SQLite");
                let row = sqlx::query(sql).fetch_one(&pool).await.expect(sql);
                pool.close().await;
                row.get(0)
            }
            Some(schema) => {
                let pool = sqlx::PgPool::connect_with(schema.options())
                    .await
                    .expect("PostgreSQL");
                let row = sqlx::query(sql).fetch_one(&pool).await.expect(sql);
                pool.close().await;
                row.get(0)
            }
        }
    }

    async fn drop(self) {
        if let Some(schema) = self.schema {
            schema.drop().await;
        }
    }
}

/// The last line logged whose message starts with `start`.
fn last_line(server: &Server, start: &str) -> Value {
    server
        .entries()
        .into_iter()
        .rev()
        .find(|e| {
            e["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(start))
        })
        .unwrap_or_else(|| panic!("no line {start:?} in:\n{}", server.log_text()))
}

/// How many lines were logged whose message starts with `start`.
fn count_lines(server: &Server, start: &str) -> usize {
    server
        .entries()
        .iter()
        .filter(|e| {
            e["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(start))
        })
        .count()
}

/// The digest of the projection the start after `before` digest lines logged (once ready,
/// off the start-up's path).
async fn started_digest(server: &Server, before: usize) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while count_lines(server, "projection digest") <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "no digest logged:\n{}",
            server.log_text()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    last_line(server, "projection digest")["fields"]["digest"].clone()
}

/// What the command line printed after `label: ` (`digest: …`).
fn printed(output: &std::process::Output, label: &str) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{label}: ")))
        .unwrap_or_else(|| panic!("no {label} in {stdout}"))
        .to_owned()
}

/// A user's sessions as the API lists them, with the access token of one of them.
async fn listed(api: &Api, jwt: &str) -> Value {
    let (status, body) = api.get_with_bearer("/api/auth/sessions", jwt).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Logs `name` in from a tablet and returns its access token.
async fn tablet(api: &Api, name: &str) -> String {
    let login = api.login_with(name, json!({"deviceId": "tablet"})).await;
    login["jwt"].as_str().expect("a jwt").to_owned()
}

/// Stops the server with `SIGTERM` and returns the position of the snapshot it stored.
async fn stop_with_snapshot(server: &mut Server) -> i64 {
    let before = count_lines(server, "snapshot of the projections stored");
    server.stop_with("TERM").await;
    assert_eq!(
        count_lines(server, "snapshot of the projections stored"),
        before + 1,
        "a graceful stop stores a snapshot:\n{}",
        server.log_text()
    );
    let stored = last_line(server, "snapshot of the projections stored");
    assert_eq!(stored["fields"]["why"], "stop");
    stored["fields"]["position"].as_i64().expect("a position")
}

async fn snapshot_and_tail_equal_a_full_fold(backend: Backend) {
    let Some(database) = Database::create(backend).await else {
        return;
    };
    let mut server = database.server().serving().await;
    let api = server.api();
    busy(&api, "a", 3, 2).await;
    let jwt = tablet(&api, "a-1").await;
    // A session a generation on: its actor, after the restart, starts from the snapshot.
    let phone = api.login("a-2").await["refreshToken"]
        .as_str()
        .expect("a refresh token")
        .to_owned();
    let (status, rotated) = api.refresh(&phone).await;
    assert_eq!(status, 200, "{rotated}");
    let current = rotated["refreshToken"]
        .as_str()
        .expect("rotated")
        .to_owned();
    let before = listed(&api, &jwt).await;
    let first = stop_with_snapshot(&mut server).await;

    // The tail: a block, from the command line, while no server runs.
    let blocked = server.cli(&["user", "block", "a-0"]);
    assert!(blocked.status.success(), "tokenledger user block");
    server.start();
    server.ready().await;
    let rebuilt = last_line(&server, "projections rebuilt");
    assert_eq!(rebuilt["fields"]["snapshot"], first, "{rebuilt}");
    let tail = rebuilt["fields"]["events"].as_u64().expect("events");
    assert!(
        (1..=4).contains(&tail),
        "only the block's events: {rebuilt}"
    );
    assert_eq!(listed(&server.api(), &jwt).await, before);
    // The actor of a-2, loaded from the snapshot and the tail, rotates the current token and
    // still knows the one before it for what it is: a reuse, which ends the session.
    let (status, next) = server.api().refresh(&current).await;
    assert_eq!(status, 200, "{next}");
    let (status, body) = server.api().refresh(&phone).await;
    support::assert_invalid_refresh_token(status, &body);
    let (status, body) = server
        .api()
        .refresh(next["refreshToken"].as_str().expect("rotated"))
        .await;
    support::assert_invalid_refresh_token(status, &body);

    // More events, a snapshot from the command line, and a longer tail after it.
    busy(&server.api(), "b", 2, 1).await;
    let made = server.cli(&["snapshot"]);
    let digest_then = printed(&made, "digest");
    let second = stop_with_snapshot(&mut server).await;
    assert!(second > first);
    assert!(server.cli(&["user", "block", "b-0"]).status.success());
    let digests = count_lines(&server, "projection digest");
    server.start();
    server.ready().await;
    let rebuilt = last_line(&server, "projections rebuilt");
    let loaded = last_line(&server, "snapshot loaded");
    assert_eq!(rebuilt["fields"]["snapshot"], second, "{rebuilt}");
    assert_eq!(loaded["fields"]["snapshot"], second, "{loaded}");
    let tail = rebuilt["fields"]["events"].as_u64().expect("events");
    assert!((1..=4).contains(&tail), "{rebuilt}");
    let started = started_digest(&server, digests).await;
    assert_ne!(started, json!(digest_then), "b-0 was blocked since");

    let full = printed(&server.cli(&["rebuild"]), "digest");
    assert_eq!(started, json!(full), "{rebuilt}");
    assert_eq!(listed(&server.api(), &jwt).await, before);
    let verified = server.cli(&["verify"]);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );

    // Forgetting a user drops the snapshots, which hold its sessions' personal fields under
    // the master key rather than the user's: the next start folds the whole log.
    stop_with_snapshot(&mut server).await;
    let forgot = server.cli(&["user", "forget", "b-1"]);
    assert!(
        forgot.status.success(),
        "{}",
        String::from_utf8_lossy(&forgot.stderr)
    );
    server.start();
    server.ready().await;
    let rebuilt = last_line(&server, "projections rebuilt");
    assert_eq!(rebuilt["fields"]["snapshot"], 0, "{rebuilt}");
    assert_eq!(
        last_line(&server, "no snapshot")["fields"]["message"],
        "no snapshot to start from: folding the whole log"
    );
    server.stop_with("TERM").await;
    database.drop().await;
}
on_both_backends!(snapshot_and_tail_equal_a_full_fold);

/// Starts the server on a snapshot the test has spoiled: it must be refused for `why`, the
/// whole log folded, and the same sessions answered.
async fn refused_then_full_fold(server: &mut Server, why: &str, jwt: &str, before: &Value) {
    let refusals = count_lines(server, "snapshot refused");
    let digests = count_lines(server, "projection digest");
    server.start();
    server.ready().await;
    assert_eq!(count_lines(server, "snapshot refused"), refusals + 1);
    let refused = last_line(server, "snapshot refused");
    assert_eq!(refused["level"], "WARN");
    let reason = refused["fields"]["reason"].as_str().expect("a reason");
    assert!(reason.contains(why), "{reason} is not about {why}");
    let rebuilt = last_line(server, "projections rebuilt");
    assert_eq!(rebuilt["fields"]["snapshot"], 0, "{rebuilt}");
    assert!(
        rebuilt["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("the whole log")
    );
    let full = printed(&server.cli(&["rebuild"]), "digest");
    assert_eq!(started_digest(server, digests).await, json!(full));
    let events = rebuilt["fields"]["events"].as_u64().unwrap();
    assert!(events > 20, "the whole log was folded: {rebuilt}");
    assert_eq!(&listed(&server.api(), jwt).await, before);
}

async fn spoiled_snapshots_are_refused_for_a_full_fold(backend: Backend) {
    let Some(database) = Database::create(backend).await else {
        return;
    };
    let mut server = database.server().serving().await;
    let api = server.api();
    busy(&api, "c", 3, 2).await;
    let jwt = tablet(&api, "c-2").await;
    let before = listed(&api, &jwt).await;
    stop_with_snapshot(&mut server).await;

    // Corrupted: one byte of the body flipped.
    let mut body = database.body().await;
    let middle = body.len() / 2;
    body[middle] ^= 0x01;
    database
        .sql("UPDATE snapshots SET body = ?", Some(body))
        .await;
    refused_then_full_fold(&mut server, "digest", &jwt, &before).await;
    // The full fold's stop stores a good snapshot in its place.
    stop_with_snapshot(&mut server).await;

    // Forged: other content, well framed and with its own digest, but no key to sign it.
    let forged_body = tokenledger::snapshots::frame(&[]);
    let digest = tokenledger::snapshots::body_digest(&forged_body);
    database
        .sql("UPDATE snapshots SET body = ?", Some(forged_body))
        .await;
    database
        .sql("UPDATE snapshots SET body_digest = ?", Some(digest))
        .await;
    database
        .sql("UPDATE snapshots SET users = 0, sessions = 0", None)
        .await;
    refused_then_full_fold(&mut server, "authenticator", &jwt, &before).await;
    stop_with_snapshot(&mut server).await;

    // Beyond the log: a position the log never reached.
    database
        .sql("UPDATE snapshots SET position = position + 1000000", None)
        .await;
    refused_then_full_fold(&mut server, "beyond the log", &jwt, &before).await;
    server.stop_with("TERM").await;
    database.drop().await;
}
on_both_backends!(spoiled_snapshots_are_refused_for_a_full_fold);
