//! The insider of issue 16: someone who can write the database at will, but holds neither the
//! ledger key (`LEDGER_KEY`) nor the checkpoint key (`CHECKPOINT_KEY`), and knows every
//! algorithm. A checkpoint taken before the edit and kept outside the database catches every
//! edit: `verify --checkpoint` exits non-zero naming the position. `verify` alone catches every
//! edit the key makes impossible (a changed or inserted event); a deletion, a reordering across
//! streams or an older copy of the whole database only a kept checkpoint catches, once the
//! insider has also rewritten the ledger's own tables.
//!
//! Each test builds a realistic log through the API of the real binary, on SQLite and on
//! PostgreSQL, stops the server, takes a checkpoint to a file with `tokenledger ledger
//! checkpoint`, then edits a copy of the database with SQL, as the insider would.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::Row as _;
use support::{Api, FreshSchema, Server};
use tempfile::TempDir;
use tokenledger::store::{GENESIS, Hashed, chain_hash};

const BINARY: &str = env!("CARGO_BIN_EXE_tokenledger");

/// A checkpoint seed that is not the test servers' (`support::CHECKPOINT_KEY`).
const OTHER_CHECKPOINT_KEY: &str =
    "616e6f7468657220736565642c206e6f7420746865206c6f6727732074727565";

/// The ledger's own tables: the tree, its stored nodes, its position spans, the stored
/// checkpoints. A careful insider empties them after an edit they would give away (opening
/// the database then rebuilds an empty tree, which the edited log extends).
const FORGET_THE_LEDGER: [&str; 4] = [
    "DELETE FROM ledger_tree",
    "DELETE FROM ledger_nodes",
    "DELETE FROM ledger_spans",
    "DELETE FROM checkpoints",
];

/// The tables of a PostgreSQL schema of the service, for a copy.
const TABLES: [&str; 8] = [
    "_sqlx_migrations",
    "events",
    "users",
    "data_keys",
    "ledger_tree",
    "ledger_nodes",
    "ledger_spans",
    "checkpoints",
];

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

/// A busy stretch of a real service, interleaved as real traffic is: `users` users named
/// `<prefix>-<n>` register, log in from a phone and a laptop asking for refresh tokens, rotate
/// the phone's token `rotations` times, mistype their password once and log out of the laptop.
pub async fn busy(api: &Api, prefix: &str, users: usize, rotations: usize) {
    let names: Vec<String> = (0..users).map(|n| format!("{prefix}-{n}")).collect();
    for name in &names {
        api.register(name).await;
    }
    let mut phones = Vec::new();
    let mut laptops = Vec::new();
    for name in &names {
        let phone = api.login_with(name, json!({"deviceId": "phone"})).await;
        phones.push(phone["refreshToken"].as_str().expect("a token").to_owned());
        let laptop = api.login_with(name, json!({"deviceId": "laptop"})).await;
        laptops.push(laptop["jwt"].as_str().expect("a jwt").to_owned());
    }
    for _ in 0..rotations {
        for token in &mut phones {
            let (status, body) = api.refresh(token).await;
            assert_eq!(status, 200, "refresh: {body}");
            *token = body["refreshToken"].as_str().expect("rotation").to_owned();
        }
    }
    for (name, jwt) in names.iter().zip(&laptops) {
        let (status, body) = api
            .post(
                "/api/auth/local",
                json!({"identifier": name, "password": "not-the-password"}),
            )
            .await;
        assert_eq!(status, 400, "a mistyped password: {body}");
        let (status, body) = api
            .post_with_bearer("/api/auth/logout", jwt, json!({}))
            .await;
        assert_eq!(status, 200, "logout: {body}");
    }
}

/// One database of the log: the server's own, or a copy the insider edits.
struct Database {
    /// The data folder; on SQLite it holds `tokenledger.db`.
    dir: TempDir,
    /// On PostgreSQL: the schema that holds the tables.
    schema: Option<FreshSchema>,
}

impl Database {
    /// A new, empty database; `None` where PostgreSQL is unreachable (`FreshSchema` says why).
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

    fn file(&self) -> PathBuf {
        self.dir.path().join("tokenledger.db")
    }

    /// The binary on this database with the test servers' keys: a server to start, or
    /// `cli` to run its command line.
    fn binary(&self) -> Server {
        let server = Server::on(BINARY, self.dir.path());
        match &self.schema {
            Some(schema) => server.env("DATABASE_URL", &schema.url()),
            None => server,
        }
    }

    /// A connection of the insider's own, straight to the tables.
    async fn sql(&self) -> Sql {
        match &self.schema {
            None => Sql::Sqlite(
                sqlx::SqlitePool::connect(&format!("sqlite://{}", self.file().display()))
                    .await
                    .expect("the SQLite file"),
            ),
            Some(schema) => Sql::Postgres(
                sqlx::PgPool::connect_with(schema.options())
                    .await
                    .expect("PostgreSQL"),
            ),
        }
    }

    /// A copy of the whole database, as a backup is (consistent while the server writes).
    async fn copy(&self) -> Database {
        let copy = Database {
            dir: tempfile::tempdir().expect("temp dir"),
            schema: match &self.schema {
                None => None,
                Some(_) => Some(
                    FreshSchema::create()
                        .await
                        .expect("PostgreSQL is reachable"),
                ),
            },
        };
        let sql = self.sql().await;
        match (&sql, &self.schema, &copy.schema) {
            (Sql::Sqlite(pool), _, _) => {
                let into = format!("VACUUM INTO '{}'", copy.file().display());
                sqlx::query(sqlx::AssertSqlSafe(into))
                    .execute(pool)
                    .await
                    .expect("VACUUM INTO");
            }
            (Sql::Postgres(pool), Some(from), Some(to)) => {
                copy_schema(pool, &from.name, &to.name).await;
            }
            _ => unreachable!("a copy is on the backend of its original"),
        }
        sql.close().await;
        copy
    }

    /// On PostgreSQL, waits until every committed event is below the catch-up horizon, which
    /// every read of the log (`verify`'s too) stops at: other tests' transactions hold it back
    /// for a moment.
    async fn settled(&self) {
        if self.schema.is_none() {
            return;
        }
        let Sql::Postgres(pool) = self.sql().await else {
            unreachable!("a schema is PostgreSQL's")
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (all, below): (i64, i64) = sqlx::query_as(
                "SELECT count(*), count(*) FILTER \
                 (WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())) FROM events",
            )
            .fetch_one(&pool)
            .await
            .expect("count events");
            if all == below {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {all} events still above the horizon",
                all - below
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        pool.close().await;
    }

    /// Every event, in position order.
    async fn events(&self) -> Vec<Stored> {
        let sql = self.sql().await;
        let events = sql.events().await;
        sql.close().await;
        events
    }

    /// `tokenledger verify`, with a `--checkpoint` for each file.
    async fn verify(&self, checkpoints: &[&Path]) -> Verdict {
        self.settled().await;
        let mut args = vec!["verify".to_owned()];
        for file in checkpoints {
            args.extend(["--checkpoint".to_owned(), file.display().to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Verdict::of(&self.binary().cli(&args))
    }

    /// Drops the PostgreSQL schema (a failed test's stays for a look, until it is stale).
    async fn drop(self) {
        if let Some(schema) = self.schema {
            schema.drop().await;
        }
    }
}

/// Copies every table of schema `from` into the empty schema `to`, in one snapshot, as a dump
/// and restore would (the `NOTIFY` trigger aside, which no command line here needs).
async fn copy_schema(pool: &sqlx::PgPool, from: &str, to: &str) {
    let mut tx = pool.begin().await.expect("BEGIN");
    let mut statements =
        vec!["SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ WRITE".to_owned()];
    for table in TABLES {
        statements.push(format!(
            "CREATE TABLE {to}.{table} (LIKE {from}.{table} INCLUDING ALL)"
        ));
        statements.push(format!(
            "INSERT INTO {to}.{table} OVERRIDING SYSTEM VALUE SELECT * FROM {from}.{table}"
        ));
    }
    for (table, column) in [("events", "position"), ("users", "id")] {
        statements.push(format!(
            "SELECT setval(pg_get_serial_sequence('{to}.{table}', '{column}'), max({column})) \
             FROM {to}.{table} HAVING count(*) > 0"
        ));
    }
    for statement in statements {
        sqlx::query(sqlx::AssertSqlSafe(statement.clone()))
            .execute(&mut *tx)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    tx.commit().await.expect("COMMIT");
}

/// What `tokenledger verify` said.
#[derive(Debug)]
struct Verdict {
    ok: bool,
    said: String,
}

impl Verdict {
    fn of(output: &std::process::Output) -> Verdict {
        Verdict {
            ok: output.status.success(),
            said: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        }
    }

    fn assert_ok(&self, context: &str) {
        assert!(
            self.ok && self.said.starts_with("ok: "),
            "{context}: {}",
            self.said
        );
    }

    /// Exits non-zero, printing `broken: …`.
    fn assert_broken(&self, context: &str) {
        assert!(!self.ok, "{context}: verify passed: {}", self.said);
        assert!(
            self.said.starts_with("broken: "),
            "{context}: {}",
            self.said
        );
    }

    /// Exits non-zero, printing `broken: …` that names `position`.
    fn assert_broken_at(&self, position: i64, context: &str) {
        self.assert_broken(context);
        assert!(
            names_position(&self.said, position),
            "{context}: should name position {position}: {}",
            self.said
        );
    }
}

/// Whether `text` says `position <n>`, and not `position <n>0…`.
fn names_position(text: &str, position: i64) -> bool {
    let name = format!("position {position}");
    text.match_indices(&name)
        .any(|(at, _)| !text[at + name.len()..].starts_with(|c: char| c.is_ascii_digit()))
}

/// The insider's connection.
enum Sql {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// An event as stored: every column the chain covers, and the position.
#[derive(Clone, Debug)]
struct Stored {
    position: i64,
    stream_id: String,
    stream_version: i64,
    event_type: String,
    schema_version: i16,
    payload: String,
    metadata: String,
    body: Option<Vec<u8>>,
    recorded_at: DateTime<Utc>,
    prev_hash: Vec<u8>,
    hash: Vec<u8>,
}

impl Stored {
    fn recorded_at_text(&self) -> String {
        self.recorded_at
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string()
    }

    /// The hash the service wrote before it had a key: the algorithm is no secret.
    fn unkeyed_hash(&self) -> Vec<u8> {
        chain_hash(
            &self.prev_hash,
            &Hashed {
                stream_id: &self.stream_id,
                stream_version: self.stream_version,
                event_type: &self.event_type,
                schema_version: self.schema_version,
                payload: &self.payload,
                metadata: &self.metadata,
                recorded_at: &self.recorded_at_text(),
                body: self.body.as_deref(),
            },
        )
    }

    /// Whether the event records where its request came from (sealed, in its body, or in
    /// clear JSON in a row of an older version).
    fn records_an_address(&self) -> bool {
        match &self.body {
            Some(_) => matches!(self.event_type.as_str(), "TokenIssued" | "LoginFailed"),
            None => self.payload.contains("127.0.0.1"),
        }
    }

    /// What an insider changes: one byte of the body (the address in a JSON payload).
    fn edit(&mut self) {
        match &mut self.body {
            Some(body) => {
                let middle = body.len() / 2;
                body[middle] ^= 0x20;
            }
            None => self.payload = self.payload.replace("127.0.0.1", "10.6.6.6"),
        }
    }
}

const COLUMNS: &str = "stream_id, stream_version, event_type, schema_version, payload, \
                       metadata, recorded_at, prev_hash, hash, position, body";

impl Sql {
    /// Runs one statement; the rows it changed.
    async fn run(&self, statement: &str) -> u64 {
        let sql = || sqlx::AssertSqlSafe(statement.to_owned());
        match self {
            Sql::Sqlite(pool) => sqlx::query(sql())
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
            Sql::Postgres(pool) => sqlx::query(sql())
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
        }
        .unwrap_or_else(|e| panic!("{statement}: {e}"))
    }

    async fn count(&self, table: &str) -> i64 {
        let statement = format!("SELECT count(*) FROM {table}");
        let statement = sqlx::AssertSqlSafe(statement);
        match self {
            Sql::Sqlite(pool) => sqlx::query_scalar(statement).fetch_one(pool).await,
            Sql::Postgres(pool) => sqlx::query_scalar(statement).fetch_one(pool).await,
        }
        .expect("count")
    }

    /// Every event, in position order.
    async fn events(&self) -> Vec<Stored> {
        match self {
            Sql::Sqlite(pool) => {
                let rows = sqlx::query(
                    "SELECT position, stream_id, stream_version, event_type, schema_version, \
                     payload, metadata, recorded_at, prev_hash, hash, body FROM events \
                     ORDER BY position",
                )
                .fetch_all(pool)
                .await
                .expect("the events");
                rows.iter()
                    .map(|row| Stored {
                        position: row.get(0),
                        stream_id: row.get(1),
                        stream_version: row.get(2),
                        event_type: row.get(3),
                        schema_version: row.get::<i64, _>(4) as i16,
                        payload: row.get(5),
                        metadata: row.get(6),
                        recorded_at: DateTime::parse_from_rfc3339(row.get::<&str, _>(7))
                            .expect("RFC 3339")
                            .to_utc(),
                        prev_hash: row.get(8),
                        hash: row.get(9),
                        body: row.get(10),
                    })
                    .collect()
            }
            Sql::Postgres(pool) => {
                let rows = sqlx::query(
                    "SELECT position, stream_id, stream_version, event_type, schema_version, \
                     COALESCE(payload::text, ''), COALESCE(metadata::text, ''), recorded_at, \
                     prev_hash, hash, body FROM events ORDER BY position",
                )
                .fetch_all(pool)
                .await
                .expect("the events");
                rows.iter()
                    .map(|row| Stored {
                        position: row.get(0),
                        stream_id: row.get(1),
                        stream_version: row.get(2),
                        event_type: row.get(3),
                        schema_version: row.get(4),
                        payload: row.get(5),
                        metadata: row.get(6),
                        recorded_at: row.get(7),
                        prev_hash: row.get(8),
                        hash: row.get(9),
                        body: row.get(10),
                    })
                    .collect()
            }
        }
    }

    /// Writes `event` over whatever is at its position.
    async fn write(&self, event: &Stored) {
        let changed = match self {
            Sql::Sqlite(pool) => sqlx::query(
                "UPDATE events SET stream_id = ?, stream_version = ?, event_type = ?, \
                 schema_version = ?, payload = ?, metadata = ?, recorded_at = ?, prev_hash = ?, \
                 hash = ?, body = ? WHERE position = ?",
            )
            .bind(&event.stream_id)
            .bind(event.stream_version)
            .bind(&event.event_type)
            .bind(event.schema_version)
            .bind(&event.payload)
            .bind(&event.metadata)
            .bind(event.recorded_at_text())
            .bind(&event.prev_hash)
            .bind(&event.hash)
            .bind(&event.body)
            .bind(event.position)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
            Sql::Postgres(pool) => sqlx::query(
                "UPDATE events SET stream_id = $1, stream_version = $2, event_type = $3, \
                 schema_version = $4, payload = NULLIF($5, '')::json, \
                 metadata = NULLIF($6, '')::json, recorded_at = $7, prev_hash = $8, hash = $9, \
                 body = $11 WHERE position = $10",
            )
            .bind(&event.stream_id)
            .bind(event.stream_version)
            .bind(&event.event_type)
            .bind(event.schema_version)
            .bind(&event.payload)
            .bind(&event.metadata)
            .bind(event.recorded_at)
            .bind(&event.prev_hash)
            .bind(&event.hash)
            .bind(event.position)
            .bind(&event.body)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
        };
        assert_eq!(changed.expect("UPDATE events"), 1, "{event:?}");
    }

    /// Inserts `event` at its position.
    async fn insert(&self, event: &Stored) {
        match self {
            Sql::Sqlite(pool) => sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO events ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            )))
            .bind(&event.stream_id)
            .bind(event.stream_version)
            .bind(&event.event_type)
            .bind(event.schema_version)
            .bind(&event.payload)
            .bind(&event.metadata)
            .bind(event.recorded_at_text())
            .bind(&event.prev_hash)
            .bind(&event.hash)
            .bind(event.position)
            .bind(&event.body)
            .execute(pool)
            .await
            .map(drop),
            Sql::Postgres(pool) => sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO events ({COLUMNS}) OVERRIDING SYSTEM VALUE \
                 VALUES ($1, $2, $3, $4, NULLIF($5, '')::json, NULLIF($6, '')::json, $7, $8, $9, \
                 $10, $11)"
            )))
            .bind(&event.stream_id)
            .bind(event.stream_version)
            .bind(&event.event_type)
            .bind(event.schema_version)
            .bind(&event.payload)
            .bind(&event.metadata)
            .bind(event.recorded_at)
            .bind(&event.prev_hash)
            .bind(&event.hash)
            .bind(event.position)
            .bind(&event.body)
            .execute(pool)
            .await
            .map(drop),
        }
        .expect("INSERT INTO events");
    }

    async fn delete(&self, positions: &[i64]) {
        let list: Vec<String> = positions.iter().map(i64::to_string).collect();
        let deleted = self
            .run(&format!(
                "DELETE FROM events WHERE position IN ({})",
                list.join(", ")
            ))
            .await;
        assert_eq!(deleted, positions.len() as u64);
    }

    /// Empties the ledger's own tables (see `FORGET_THE_LEDGER`).
    async fn forget_the_ledger(&self) {
        for statement in FORGET_THE_LEDGER {
            self.run(statement).await;
        }
    }

    async fn close(self) {
        match self {
            Sql::Sqlite(pool) => pool.close().await,
            Sql::Postgres(pool) => pool.close().await,
        }
    }
}

/// Rehashes, unkeyed, every event of `stream` from `version` on (each one's `prev_hash` its
/// predecessor's new hash), as the chain was computed before the service had a key.
fn rechain_unkeyed(events: &mut [Stored], stream: &str, version: i64) -> Vec<Stored> {
    let mut prev: Option<Vec<u8>> = None;
    let mut changed = Vec::new();
    for event in events.iter_mut().filter(|e| e.stream_id == stream) {
        if event.stream_version >= version {
            if let Some(prev) = &prev {
                event.prev_hash = prev.clone();
            }
            event.hash = event.unkeyed_hash();
            changed.push(event.clone());
        }
        prev = Some(event.hash.clone());
    }
    changed
}

/// The streams of users, each with its events' positions in order.
fn streams(events: &[Stored]) -> Vec<(String, Vec<i64>)> {
    let mut order: Vec<String> = Vec::new();
    let mut positions: HashMap<String, Vec<i64>> = HashMap::new();
    for event in events.iter().filter(|e| e.stream_id.starts_with("user-")) {
        if !positions.contains_key(&event.stream_id) {
            order.push(event.stream_id.clone());
        }
        positions
            .entry(event.stream_id.clone())
            .or_default()
            .push(event.position);
    }
    order
        .into_iter()
        .map(|stream| {
            let positions = positions.remove(&stream).unwrap_or_default();
            (stream, positions)
        })
        .collect()
}

/// A stream in the middle of the log: one whose last event is neither early nor at the end.
fn a_stream_in_the_middle(events: &[Stored]) -> (String, Vec<i64>) {
    let last = events.last().expect("events").position;
    streams(events)
        .into_iter()
        .filter(|(_, positions)| positions.len() >= 6)
        .find(|(_, positions)| {
            let end = *positions.last().expect("events");
            end > last / 3 && end < last - 10
        })
        .expect("a stream whose last event is in the middle of the log")
}

/// A realistic log on one backend, a checkpoint of it kept in a file outside the database,
/// and a copy of the database taken halfway.
struct Log {
    database: Database,
    halfway: Database,
    /// What `tokenledger ledger checkpoint` printed at the end, as an operator hands it to a
    /// witness.
    checkpoint: PathBuf,
    /// Its tree size: every event.
    size: i64,
    files: TempDir,
}

impl Log {
    /// Builds the log through the API of the real binary (two busy stretches, a block by an
    /// operator), stops the server and takes the checkpoint; `None` where PostgreSQL is
    /// unreachable.
    async fn build(backend: Backend) -> Option<Log> {
        let database = Database::create(backend).await?;
        let mut server = database
            .binary()
            .envs(&[
                ("REFRESH_TOKEN_ROTATION", "true"),
                ("LOGIN_RATE_LIMIT", "off"),
                ("LOGIN_IP_RATE_LIMIT", "off"),
                ("REFRESH_RATE_LIMIT", "off"),
            ])
            .serving()
            .await;
        let api = server.api();
        busy(&api, "ann", 6, 4).await;
        let halfway = database.copy().await;
        busy(&api, "bob", 6, 4).await;
        server.stop_with("TERM").await;
        let blocked = database.binary().cli(&["user", "block", "bob-1"]);
        assert!(blocked.status.success(), "tokenledger user block");

        database.settled().await;
        let output = database.binary().cli(&["ledger", "checkpoint"]);
        assert!(output.status.success(), "tokenledger ledger checkpoint");
        let files = tempfile::tempdir().expect("temp dir");
        let checkpoint = files.path().join("checkpoint.txt");
        std::fs::write(&checkpoint, &output.stdout).expect("write the checkpoint");
        let note = String::from_utf8(output.stdout).expect("UTF-8");
        let size: i64 = note
            .lines()
            .nth(1)
            .and_then(|size| size.parse().ok())
            .unwrap_or_else(|| panic!("a checkpoint: {note}"));
        let sql = database.sql().await;
        assert_eq!(size, sql.count("events").await, "it covers every event");
        assert!(size >= 100, "a log of {size} events");
        sql.close().await;
        Some(Log {
            database,
            halfway,
            checkpoint,
            size,
            files,
        })
    }

    /// Drops the databases of a passing test.
    async fn drop(self, copies: Vec<Database>) {
        for database in copies.into_iter().chain([self.database, self.halfway]) {
            database.drop().await;
        }
    }
}

on_both_backends!(the_untouched_log_verifies_with_and_without_its_checkpoint);
async fn the_untouched_log_verifies_with_and_without_its_checkpoint(backend: Backend) {
    // Given
    let Some(log) = Log::build(backend).await else {
        return;
    };
    let copy = log.database.copy().await;

    // When
    let alone = log.database.verify(&[]).await;
    let kept = log.database.verify(&[&log.checkpoint]).await;
    let copied = copy.verify(&[&log.checkpoint]).await;

    // Then
    let size = format!("tree size {}", log.size);
    alone.assert_ok("verify");
    assert!(alone.said.contains(&size), "{}", alone.said);
    kept.assert_ok("verify --checkpoint");
    assert!(kept.said.contains(&size), "{}", kept.said);
    copied.assert_ok("a faithful copy, verify --checkpoint");
    log.drop(vec![copy]).await;
}

on_both_backends!(an_edited_payload_rechained_without_the_key_is_named_at_its_position);
async fn an_edited_payload_rechained_without_the_key_is_named_at_its_position(backend: Backend) {
    // Given: a stream with events after the one the insider changes.
    let Some(log) = Log::build(backend).await else {
        return;
    };
    let copy = log.database.copy().await;
    let mut events = copy.events().await;
    let (stream, positions) = a_stream_in_the_middle(&events);
    let target = events
        .iter_mut()
        .filter(|e| positions[2..].contains(&e.position))
        .find(|e| e.records_an_address())
        .expect("an event of the stream that records an address, after its second");
    let position = target.position;

    // When: the event is changed, and the stream's chain from there on is recomputed as it
    // was before the key (the attacker knows the algorithm, not the key), and the ledger's
    // tables are emptied too.
    target.edit();
    let version = target.stream_version;
    let sql = copy.sql().await;
    for event in rechain_unkeyed(&mut events, &stream, version) {
        sql.write(&event).await;
    }
    sql.forget_the_ledger().await;
    sql.close().await;

    // Then: the key makes the edit impossible, so `verify` alone catches it.
    let alone = copy.verify(&[]).await;
    alone.assert_broken_at(position, "verify");
    let kept = copy.verify(&[&log.checkpoint]).await;
    kept.assert_broken_at(position, "verify --checkpoint");
    log.drop(vec![copy]).await;
}

on_both_backends!(a_forged_event_is_named_at_its_position);
async fn a_forged_event_is_named_at_its_position(backend: Backend) {
    // Given
    let Some(log) = Log::build(backend).await else {
        return;
    };
    let chained = log.database.copy().await;
    let random = log.database.copy().await;
    let events = log.database.events().await;
    let (stream, positions) = a_stream_in_the_middle(&events);
    let head = events
        .iter()
        .find(|e| e.position == *positions.last().expect("events"))
        .expect("the stream's last event");
    let last = events.last().expect("events").position;

    // When: a login the user never made, appended to their stream; chained without the key as
    // well as an insider can (the stream's head as `prev_hash`, the unkeyed hash); and a
    // first event of a stream nobody wrote, with a random hash.
    let mut login = events
        .iter()
        .find(|e| e.stream_id == stream && e.event_type == "TokenIssued")
        .expect("a login of the stream")
        .clone();
    login.edit();
    let mut forged = Stored {
        position: last + 1,
        stream_version: head.stream_version + 1,
        event_type: "TokenIssued".to_owned(),
        payload: login.payload,
        metadata: login.metadata,
        body: login.body,
        recorded_at: Utc::now(),
        prev_hash: head.hash.clone(),
        ..head.clone()
    };
    forged.hash = forged.unkeyed_hash();
    let sql = chained.sql().await;
    sql.insert(&forged).await;
    sql.close().await;
    let stranger = Stored {
        stream_id: "user-999999".to_owned(),
        stream_version: 1,
        prev_hash: GENESIS.to_vec(),
        hash: (0..32).map(|_| rand::random::<u8>()).collect(),
        ..forged.clone()
    };
    let sql = random.sql().await;
    sql.insert(&stranger).await;
    sql.close().await;

    // Then
    for (copy, what) in [(&chained, "chained unkeyed"), (&random, "random hash")] {
        let alone = copy.verify(&[]).await;
        alone.assert_broken_at(last + 1, &format!("{what}: verify"));
        let kept = copy.verify(&[&log.checkpoint]).await;
        kept.assert_broken_at(last + 1, &format!("{what}: verify --checkpoint"));
    }
    log.drop(vec![chained, random]).await;
}

/// Deletes `positions` from two copies: one where the insider leaves the ledger's tables as
/// they are, and one where they empty them too. The first `verify` alone catches (the tree's
/// own head no longer matches); only the kept checkpoint catches the second. Returns them.
async fn delete_both_ways(log: &Log, positions: &[i64]) -> (Database, Database) {
    let naive = log.database.copy().await;
    let careful = log.database.copy().await;
    let sql = naive.sql().await;
    sql.delete(positions).await;
    sql.close().await;
    let sql = careful.sql().await;
    sql.delete(positions).await;
    sql.forget_the_ledger().await;
    sql.close().await;
    (naive, careful)
}

/// What `verify` says of the copies `delete_both_ways` made: both broken. Of the careful
/// insider's, with the checkpoint alone to go by: how many events it covers and how many are
/// left, naming a position, the log's last one (a tree size and root cannot tell where events
/// went, only that they did).
async fn assert_deletion_caught(log: &Log, naive: &Database, careful: &Database, deleted: i64) {
    let last_left = careful.events().await.last().expect("events").position;
    let covers = format!(
        "covers {} events, the log has {}",
        log.size,
        log.size - deleted
    );

    // The tables left: the tree's persisted head, or a stored checkpoint, no longer matches.
    naive
        .verify(&[])
        .await
        .assert_broken("the tables left: verify");
    let kept = naive.verify(&[&log.checkpoint]).await;
    kept.assert_broken("the tables left: verify --checkpoint");
    // The tables emptied: `careful.verify(&[])` may pass, for nothing in the database
    // remembers how long the log was; only a checkpoint kept elsewhere catches a deletion.
    let kept = careful.verify(&[&log.checkpoint]).await;
    kept.assert_broken_at(last_left, "the tables emptied: verify --checkpoint");
    assert!(kept.said.contains(&covers), "{}", kept.said);
}

on_both_backends!(a_streams_last_three_events_deleted_are_caught_by_the_checkpoint);
async fn a_streams_last_three_events_deleted_are_caught_by_the_checkpoint(backend: Backend) {
    // Given
    let Some(log) = Log::build(backend).await else {
        return;
    };
    let events = log.database.events().await;
    let (_, positions) = a_stream_in_the_middle(&events);

    // When
    let (naive, careful) = delete_both_ways(&log, &positions[positions.len() - 3..]).await;

    // Then
    assert_deletion_caught(&log, &naive, &careful, 3).await;
    log.drop(vec![naive, careful]).await;
}

on_both_backends!(a_whole_stream_deleted_is_caught_by_the_checkpoint);
async fn a_whole_stream_deleted_is_caught_by_the_checkpoint(backend: Backend) {
    // Given
    let Some(log) = Log::build(backend).await else {
        return;
    };
    let events = log.database.events().await;
    let (_, positions) = a_stream_in_the_middle(&events);

    // When
    let (naive, careful) = delete_both_ways(&log, &positions).await;

    // Then
    assert_deletion_caught(&log, &naive, &careful, positions.len() as i64).await;
    log.drop(vec![naive, careful]).await;
}

on_both_backends!(the_logs_last_ten_events_deleted_are_caught_by_the_checkpoint);
async fn the_logs_last_ten_events_deleted_are_caught_by_the_checkpoint(backend: Backend) {
    // Given
    let Some(log) = Log::build(backend).await else {
        return;
    };
    let events = log.database.events().await;
    let tail: Vec<i64> = events[events.len() - 10..]
        .iter()
        .map(|e| e.position)
        .collect();

    // When
    let (naive, careful) = delete_both_ways(&log, &tail).await;

    // Then: here the position named is exactly the one after which events went missing.
    assert_deletion_caught(&log, &naive, &careful, 10).await;
    let kept = careful.verify(&[&log.checkpoint]).await;
    let before = events[events.len() - 11].position;
    assert!(
        kept.said.contains(&format!(
            "(the last at position {before}): events were deleted"
        )),
        "{}",
        kept.said
    );
    log.drop(vec![naive, careful]).await;
}

/// Swaps the events at `a` and `b` (every column but the position: PostgreSQL's positions
/// are an identity column an insider cannot simply update).
async fn swap(sql: &Sql, events: &[Stored], a: i64, b: i64) {
    let at = |position| {
        events
            .iter()
            .find(|e| e.position == position)
            .expect("an event")
            .clone()
    };
    let (first, second) = (at(a), at(b));
    // The second out of the way of the unique (stream, version) first.
    sql.write(&Stored {
        stream_version: -second.stream_version,
        ..second.clone()
    })
    .await;
    sql.write(&Stored {
        position: a,
        ..second.clone()
    })
    .await;
    sql.write(&Stored {
        position: b,
        ..first
    })
    .await;
}

on_both_backends!(two_events_swapped_are_named);
async fn two_events_swapped_are_named(backend: Backend) {
    // Given
    let Some(log) = Log::build(backend).await else {
        return;
    };
    let events = log.database.events().await;
    let (_, mine) = a_stream_in_the_middle(&events);
    // Two neighbours of different streams, each the other stream's only event between them.
    let (p, q) = events
        .windows(2)
        .skip(events.len() / 2)
        .find(|pair| pair[0].stream_id != pair[1].stream_id)
        .map(|pair| (pair[0].position, pair[1].position))
        .expect("neighbours of two streams");
    let last = events.last().expect("events").position;

    // When: two events of one stream swapped; and two neighbours of two streams swapped, by
    // an insider who leaves the tables, and by one who empties them.
    let within = log.database.copy().await;
    let sql = within.sql().await;
    swap(&sql, &events, mine[1], mine[2]).await;
    sql.forget_the_ledger().await;
    sql.close().await;
    let across = log.database.copy().await;
    let sql = across.sql().await;
    swap(&sql, &events, p, q).await;
    sql.close().await;
    let across_careful = log.database.copy().await;
    let sql = across_careful.sql().await;
    swap(&sql, &events, p, q).await;
    sql.forget_the_ledger().await;
    sql.close().await;

    // Then: within a stream the versions are out of order, which the chain catches.
    within
        .verify(&[])
        .await
        .assert_broken_at(mine[1], "one stream: verify");
    within
        .verify(&[&log.checkpoint])
        .await
        .assert_broken_at(mine[1], "one stream: verify --checkpoint");
    // Across streams each stream's chain is intact: the key covers every field but the
    // position. The tree orders the log: its persisted head catches the swap where the tables
    // were left, only a kept checkpoint where they were emptied. A tree head cannot say
    // which event moved: it names the last position it covers, "at or before" which the
    // log differs.
    across
        .verify(&[])
        .await
        .assert_broken("across, tables left: verify");
    across
        .verify(&[&log.checkpoint])
        .await
        .assert_broken("across, tables left: verify --checkpoint");
    let kept = across_careful.verify(&[&log.checkpoint]).await;
    kept.assert_broken_at(last, "across, tables emptied: verify --checkpoint");
    assert!(kept.said.contains("at or before"), "{}", kept.said);
    log.drop(vec![within, across, across_careful]).await;
}

on_both_backends!(an_older_copy_restored_is_caught_by_the_checkpoint);
async fn an_older_copy_restored_is_caught_by_the_checkpoint(backend: Backend) {
    // Given: the copy taken halfway, a genuine older state, restored by the insider.
    let Some(log) = Log::build(backend).await else {
        return;
    };
    let older = log.halfway.events().await;
    let last_then = older.last().expect("events").position;
    assert!((older.len() as i64) < log.size);

    // When
    let alone = log.halfway.verify(&[]).await;
    let kept = log.halfway.verify(&[&log.checkpoint]).await;

    // Then: the older copy is consistent in itself; only the checkpoint remembers more.
    alone.assert_ok("an older copy, verify");
    kept.assert_broken_at(last_then, "an older copy, verify --checkpoint");
    assert!(
        kept.said.contains(&format!(
            "covers {} events, the log has {}",
            log.size,
            older.len()
        )) && kept.said.contains("older copy"),
        "{}",
        kept.said
    );
    log.drop(Vec::new()).await;
}

/// Another byte at the same place: a neighbour for letters and digits (so the text stays
/// plausible), `A` for other ASCII, and a flipped bit elsewhere.
fn another_byte(byte: u8) -> u8 {
    match byte {
        b'9' => b'0',
        b'z' => b'a',
        b'Z' => b'A',
        b'0'..=b'8' | b'a'..=b'y' | b'A'..=b'Y' => byte + 1,
        _ if byte.is_ascii() => b'A',
        _ => byte ^ 1,
    }
}

on_both_backends!(a_checkpoint_with_any_one_byte_altered_is_refused);
async fn a_checkpoint_with_any_one_byte_altered_is_refused(backend: Backend) {
    // Given
    let Some(log) = Log::build(backend).await else {
        return;
    };
    let original = std::fs::read(&log.checkpoint).expect("the checkpoint");
    let altered_file = log.files.path().join("altered.txt");
    // Reading the file does not depend on the backend: every byte on SQLite; on PostgreSQL
    // (a process and a connection each) the first and last byte of each line, and the
    // newlines.
    let places: Vec<usize> = match backend {
        Backend::Sqlite => (0..original.len()).collect(),
        Backend::Postgres => (0..original.len())
            .filter(|&at| {
                at == 0
                    || original[at] == b'\n'
                    || original[at - 1] == b'\n'
                    || original.get(at + 1) == Some(&b'\n')
            })
            .collect(),
    };

    for at in places {
        // When
        let mut altered = original.clone();
        altered[at] = another_byte(original[at]);
        std::fs::write(&altered_file, &altered).expect("write");
        let verdict = log.database.verify(&[&altered_file]).await;

        // Then: refused, naming the checkpoint (a byte that leaves the file no UTF-8 is
        // refused as unreadable).
        let context = format!(
            "byte {at} ({:?} → {:?}) altered in\n{}",
            original[at] as char,
            altered[at] as char,
            String::from_utf8_lossy(&original)
        );
        assert!(!verdict.ok, "{context}\nverify passed: {}", verdict.said);
        if std::str::from_utf8(&altered).is_ok() {
            verdict.assert_broken(&context);
            assert!(
                verdict
                    .said
                    .contains(&format!("checkpoint {}", altered_file.display())),
                "{context}\n{}",
                verdict.said
            );
        }
    }
    log.drop(Vec::new()).await;
}

on_both_backends!(a_checkpoint_signed_by_another_key_is_refused);
async fn a_checkpoint_signed_by_another_key_is_refused(backend: Backend) {
    // Given: checkpoints of this very log signed by another key, under its own name and
    // under ours (the insider runs the binary on a copy; the copy's stored checkpoints go
    // first, or the command would hand back the stored one).
    let Some(log) = Log::build(backend).await else {
        return;
    };
    let key = log.database.binary().cli(&["ledger", "key"]);
    let key = String::from_utf8(key.stdout).expect("UTF-8");
    let our_name = key.split('+').next().expect("a name").to_owned();
    let copy = log.database.copy().await;
    let mut forged = Vec::new();
    for origin in [None, Some(our_name.as_str())] {
        let sql = copy.sql().await;
        sql.run("DELETE FROM checkpoints").await;
        sql.close().await;
        let mut insider = copy.binary().env("CHECKPOINT_KEY", OTHER_CHECKPOINT_KEY);
        if let Some(origin) = origin {
            insider = insider.env("LEDGER_ORIGIN", origin);
        }
        let output = insider.cli(&["ledger", "checkpoint"]);
        assert!(
            output.status.success(),
            "ledger checkpoint with another key"
        );
        let note = String::from_utf8(output.stdout).expect("UTF-8");
        assert!(
            note.starts_with(origin.unwrap_or("tokenledger/"))
                && note.lines().nth(1) == Some(log.size.to_string().as_str()),
            "{note}"
        );
        let file = log
            .files
            .path()
            .join(format!("forged-{}.txt", forged.len()));
        std::fs::write(&file, note).expect("write");
        forged.push(file);
    }

    for file in &forged {
        // When
        let verdict = log.database.verify(&[file]).await;
        let with_ours = log.database.verify(&[&log.checkpoint, file]).await;

        // Then
        for verdict in [verdict, with_ours] {
            verdict.assert_broken("another key");
            assert!(
                verdict
                    .said
                    .contains(&format!("checkpoint {}", file.display()))
                    && verdict
                        .said
                        .contains(&format!("no signature by key {our_name}+")),
                "{}",
                verdict.said
            );
        }
    }
    log.drop(vec![copy]).await;
}

on_both_backends!(a_log_rewritten_without_the_key_is_not_sealed_by_verify);
async fn a_log_rewritten_without_the_key_is_not_sealed_by_verify(backend: Backend) {
    // Given: one payload edited, and then every event of every stream rehashed as the
    // service hashed before it had a key; the ledger's tables emptied, as after the edits
    // above.
    let Some(log) = Log::build(backend).await else {
        return;
    };
    let copy = log.database.copy().await;
    let mut events = copy.events().await;
    let first = events[0].position;
    let target = events
        .iter_mut()
        .find(|e| e.records_an_address())
        .expect("an event with an address");
    target.edit();
    let mut heads: HashMap<String, Vec<u8>> = HashMap::new();
    for event in &mut events {
        event.prev_hash = heads
            .get(&event.stream_id)
            .cloned()
            .unwrap_or_else(|| GENESIS.to_vec());
        event.hash = event.unkeyed_hash();
        heads.insert(event.stream_id.clone(), event.hash.clone());
    }
    let sql = copy.sql().await;
    for event in &events {
        sql.write(event).await;
    }
    sql.forget_the_ledger().await;
    sql.close().await;

    // When
    let alone = copy.verify(&[]).await;
    let kept = copy.verify(&[&log.checkpoint]).await;

    // Then: no event of this log was ever written without the key; `verify` must not take
    // the rewrite for a log of an older version and seal it.
    let sql = copy.sql().await;
    let after = sql.count("events").await;
    sql.close().await;
    assert_eq!(after, log.size, "verify appended to the log it checks");
    alone.assert_broken_at(first, "verify");
    kept.assert_broken("verify --checkpoint");
    log.drop(vec![copy]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_edited_event_hidden_above_the_horizon_is_still_verified() {
    // Given: the last event of a stream edited (the address it was made from), rehashed
    // unkeyed, and given a transaction id far in the future, so that every read below the
    // catch-up horizon (`verify`'s, the tree's) skips it; the ledger's tables emptied.
    let Some(log) = Log::build(Backend::Postgres).await else {
        return;
    };
    let copy = log.database.copy().await;
    let events = copy.events().await;
    let (_, positions) = a_stream_in_the_middle(&events);
    let edited_at = *positions.last().expect("events");
    let mut edited = events
        .iter()
        .find(|e| e.position == edited_at)
        .expect("the stream's last event")
        .clone();
    edited.edit();
    edited.hash = edited.unkeyed_hash();
    let before = copy.binary().cli(&["audit", "ann-0", "--json"]);
    let sql = copy.sql().await;
    sql.write(&edited).await;
    sql.run(&format!(
        "UPDATE events SET transaction_id = \
         (pg_current_xact_id()::text::bigint + 1000000000)::text::xid8 WHERE position = {edited_at}"
    ))
    .await;
    sql.forget_the_ledger().await;
    sql.close().await;

    // When (not `copy.verify`: its wait for the horizon would never end)
    let alone = Verdict::of(&copy.binary().cli(&["verify"]));
    let audit = copy.binary().cli(&["audit", "ann-0", "--json"]);

    // Then: the edit is live (a stream read, as the user's actor and `audit` do, has no
    // horizon: the trail changed, or no longer reads), so `verify` must see it too.
    assert!(before.status.success());
    assert!(!audit.status.success() || audit.stdout != before.stdout);
    alone.assert_broken_at(edited_at, "verify");
    log.drop(vec![copy]).await;
}

/// Whether `said` names the user: by username, or as `user <id>` / `user-<id>`.
fn names_user(said: &str, username: &str, id: i64) -> bool {
    said.contains(username)
        || said.contains(&format!("user {id}"))
        || said.contains(&format!("user-{id}"))
        || said.contains(&format!("users row {id}:"))
}

async fn user_id(sql: &Sql, username: &str) -> i64 {
    let statement = sqlx::AssertSqlSafe(format!(
        "SELECT id FROM users WHERE username = '{username}'"
    ));
    match sql {
        Sql::Sqlite(pool) => sqlx::query_scalar(statement).fetch_one(pool).await,
        Sql::Postgres(pool) => sqlx::query_scalar(statement).fetch_one(pool).await,
    }
    .expect("the user")
}

/// Changes a users row of a copy with `statement` (one row), and expects `verify`, alone and
/// with the checkpoint, to name the user the log does not explain.
async fn assert_users_row_edit_caught(log: &Log, username: &str, statement: &str) -> Database {
    let copy = log.database.copy().await;
    let sql = copy.sql().await;
    let id = user_id(&sql, username).await;
    assert_eq!(sql.run(statement).await, 1, "{statement}");
    sql.close().await;
    for checkpoints in [&[][..], &[log.checkpoint.as_path()][..]] {
        let verdict = copy.verify(checkpoints).await;
        let context = format!("{statement}; verify {checkpoints:?}");
        verdict.assert_broken(&context);
        assert!(
            names_user(&verdict.said, username, id),
            "{context}: should name {username} (id {id}): {}",
            verdict.said
        );
    }
    copy
}

on_both_backends!(a_users_password_hash_changed_behind_the_log_is_named);
async fn a_users_password_hash_changed_behind_the_log_is_named(backend: Backend) {
    // Given
    let Some(log) = Log::build(backend).await else {
        return;
    };

    // When: the insider gives a victim the password hash of an account whose password they
    // know (their own), to log in as the victim; then puts a hash of their own making.
    let borrowed = assert_users_row_edit_caught(
        &log,
        "ann-0",
        "UPDATE users SET password_hash = \
         (SELECT password_hash FROM users WHERE username = 'bob-5') WHERE username = 'ann-0'",
    )
    .await;
    let made = assert_users_row_edit_caught(
        &log,
        "ann-1",
        "UPDATE users SET password_hash = \
         '$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$ZmFrZWhhc2hmYWtlaGFzaGZha2VoYXNoZmFrZWhhcw' \
         WHERE username = 'ann-1'",
    )
    .await;

    // Then (in `assert_users_row_edit_caught`)
    log.drop(vec![borrowed, made]).await;
}

on_both_backends!(a_users_blocked_flag_changed_behind_the_log_is_named);
async fn a_users_blocked_flag_changed_behind_the_log_is_named(backend: Backend) {
    // Given: bob-1 was blocked by an operator (`tokenledger user block`, in `Log::build`).
    let Some(log) = Log::build(backend).await else {
        return;
    };

    // When: the insider unblocks bob-1, and blocks ann-2, neither through the service.
    let unblocked = assert_users_row_edit_caught(
        &log,
        "bob-1",
        "UPDATE users SET blocked = false WHERE username = 'bob-1'",
    )
    .await;
    let blocked = assert_users_row_edit_caught(
        &log,
        "ann-2",
        "UPDATE users SET blocked = true WHERE username = 'ann-2'",
    )
    .await;

    // Then (in `assert_users_row_edit_caught`)
    log.drop(vec![unblocked, blocked]).await;
}
