//! PostgreSQL, for several instances sharing one database: its connection set-up and its
//! dialect.
//!
//! Appends go through the same group-commit appender as on SQLite; a batch's insert runs
//! under a savepoint, so another instance winning a `(stream_id, stream_version)` race makes
//! the batch plan again and that append alone fail, as a typed conflict. Catch-up reads
//! (`read_all`) see only events below the oldest transaction still in flight, so an event
//! whose transaction commits after a higher position became visible is read later, never
//! skipped.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::chain::ChainKey;
use super::dialect::{Dialect, Query, numbered};
use super::events::SqlEventStore;
use super::keyring::Keyring;
use super::sealed::MasterKey;
use super::{StoreKeys, keys_error};

/// A pool on one PostgreSQL database (or one schema of it), migrated.
#[derive(Clone, Debug)]
pub struct PgDatabase {
    /// Reads' pool (and `LISTEN`'s).
    pub pool: PgPool,
    writes: PgPool,
    batches: PgPool,
    chain: ChainKey,
    keyring: Keyring,
}

impl PgDatabase {
    pub async fn open(url: &str, keys: &StoreKeys) -> Result<PgDatabase, sqlx::Error> {
        Self::open_with(PgConnectOptions::from_str(url)?, keys).await
    }

    pub async fn open_with(
        options: PgConnectOptions,
        keys: &StoreKeys,
    ) -> Result<PgDatabase, sqlx::Error> {
        // While the database is away a request fails within 2 s with a 503 (sqlx tries to
        // connect again until this runs out), instead of holding its client for sqlx's
        // default 30 s; a pool busy for this long is overloaded anyway. The group commit has
        // a pool of its own (one batch at a time; the second connection while an abandoned
        // batch's closes), and so have other writes, so that neither reads (catch-up, the
        // mailer, actors loading) nor registrations can keep it waiting for a connection when
        // the database is slow to answer.
        let pool = |size| {
            PgPoolOptions::new()
                .max_connections(size)
                .acquire_timeout(Duration::from_millis(1500))
                .after_connect(|conn, _| {
                    Box::pin(async move { limit_idle_transactions(conn).await })
                })
        };
        let batches = pool(2).connect_with(options.clone()).await?;
        let writes = pool(4).connect_with(options.clone()).await?;
        let pool = pool(16).connect_with(options).await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let db = PgDatabase {
            pool,
            writes,
            batches,
            chain: ChainKey::new(&keys.ledger),
            keyring: Keyring::new(MasterKey::new(&keys.personal)),
        };
        db.keyring.check(&db).await.map_err(keys_error)?;
        Ok(db)
    }
}

/// A transaction whose client went silent (a partition: no reset ever comes) holds its rows'
/// locks, and another instance writing the same stream waits on them, until PostgreSQL ends
/// the session: after 3 s, not after TCP keepalive's two hours. No transaction of ours waits
/// on its client for more than a round trip between two statements. A `SET` rather than a
/// startup option, which PgBouncer and some hosted poolers refuse.
async fn limit_idle_transactions(conn: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    sqlx::Executor::execute(conn, "SET idle_in_transaction_session_timeout = '3s'").await?;
    Ok(())
}

/// The event store on PostgreSQL.
pub type PostgresEventStore = SqlEventStore<PgDatabase>;

impl Dialect for PgDatabase {
    type Db = sqlx::Postgres;
    type Time = DateTime<Utc>;

    const BEGIN: &'static str = "BEGIN";
    // Other instances register too: the check for a taken name and the insert are one step
    // only while no one else can insert.
    const LOCK_USERS: Option<&'static str> = Some("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE");
    const LOCK_EVENTS: Option<&'static str> = Some("LOCK TABLE events IN EXCLUSIVE MODE");
    // Any number, the same for every instance: "tlg" and a ledger.
    const LEDGER_LOCK: Option<&'static str> = Some("SELECT pg_advisory_xact_lock(7628903)");
    const RACING_WRITERS: bool = true;
    const FRESH_CONNECTION_AFTER_FAILURE: bool = false;
    // A batch takes milliseconds, a couple of seconds over a link 200 ms slow (issue 22's
    // partition test); a request caught by a partition gets its 503 after this.
    const DEADLINE: Option<Duration> = Some(Duration::from_secs(5));
    const JSON_PARAMETER: &'static str = "NULLIF(?, '')::json";
    const GIVEN_ID: &'static str = "OVERRIDING SYSTEM VALUE";
    const AFTER_GIVEN_IDS: Option<&'static str> =
        Some("SELECT setval(pg_get_serial_sequence('users', 'id'), (SELECT MAX(id) FROM users))");
    const SCRUB: &'static [&'static str] = &["VACUUM data_keys, users, snapshots"];
    // Only below the oldest transaction in flight: one that took a lower position but has
    // not committed yet would otherwise be passed over for good.
    const CATCH_UP: &'static str = " AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())";

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    fn writer(&self) -> &PgPool {
        &self.writes
    }

    fn batch_writer(&self) -> &PgPool {
        &self.batches
    }

    fn chain(&self) -> &ChainKey {
        &self.chain
    }

    fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    // PostgreSQL hands JSON back as text only when asked; a row with a body has none.
    fn json_text(column: &str) -> String {
        format!("COALESCE({column}::text, '')")
    }

    fn placeholders(sql: &str) -> String {
        numbered(sql)
    }

    fn heads(streams: &[&str]) -> Vec<Query<Self>> {
        let heads = sqlx::query(
            "SELECT e.stream_id, e.stream_version, e.hash FROM unnest($1::text[]) AS wanted(id) \
             CROSS JOIN LATERAL (SELECT stream_id, stream_version, hash FROM events \
             WHERE stream_id = wanted.id ORDER BY stream_version DESC LIMIT 1) e",
        );
        vec![heads.bind(streams)]
    }

    fn stored_time(recorded: &(DateTime<Utc>, String)) -> DateTime<Utc> {
        recorded.0
    }

    fn read_time(stored: DateTime<Utc>) -> Result<DateTime<Utc>, sqlx::Error> {
        Ok(stored)
    }
}
