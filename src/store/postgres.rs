//! The event store on PostgreSQL, for several instances sharing one database.
//!
//! Appends go through the same group-commit appender as on SQLite; each append in a batch runs
//! under its own savepoint, so another instance winning a `(stream_id, stream_version)` race
//! fails that append alone, as a typed conflict. Catch-up reads (`read_all`) see only events
//! below the oldest transaction still in flight, so an event whose transaction commits after
//! a higher position became visible is read later, never skipped.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};

use super::appender::{
    AppendRequest, Appender, BatchWriter, Heads, Outcome, ROWS_PER_INSERT, insert_sql, place, plan,
    recording_time, streams, to_insert,
};
use super::numbered;
use super::{
    EventMetadata, EventPayload, EventStore, NewEvent, PAGE, RecordedEvent, StoreError, StoreStats,
    paged, payload_of,
};

const COLUMNS: &str = "position, stream_id, stream_version, event_type, schema_version, \
    payload::text AS payload, metadata::text AS metadata, recorded_at, prev_hash, hash";

/// A pool on one PostgreSQL database (or one schema of it), migrated.
#[derive(Clone, Debug)]
pub struct PgDatabase {
    pub pool: PgPool,
}

impl PgDatabase {
    pub async fn open(url: &str) -> Result<PgDatabase, sqlx::Error> {
        Self::open_with(PgConnectOptions::from_str(url)?).await
    }

    pub async fn open_with(options: PgConnectOptions) -> Result<PgDatabase, sqlx::Error> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            // While the database is away a request fails in seconds with a 503, instead of
            // holding its client for sqlx's default 30 s.
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PgDatabase { pool })
    }
}

pub struct PostgresEventStore {
    db: PgDatabase,
    appender: Appender,
    stats: Arc<StoreStats>,
}

impl PostgresEventStore {
    pub fn start(db: PgDatabase) -> PostgresEventStore {
        let stats = Arc::new(StoreStats::default());
        let appender = Appender::start(
            Writer {
                pool: db.pool.clone(),
            },
            stats.clone(),
        );
        PostgresEventStore {
            db,
            appender,
            stats,
        }
    }
}

/// PostgreSQL hands JSON back as text only when asked.
const PG_PAYLOAD_COLUMNS: &str =
    "position, stream_id, stream_version, event_type, schema_version, payload::text AS payload";

impl PostgresEventStore {
    /// Fetches one page of `columns` after a position, mapped by `map`. Only below the oldest
    /// transaction in flight: one that took a lower position but has not committed yet would
    /// otherwise be passed over for good.
    fn page<T: Send + 'static>(
        &self,
        columns: &'static str,
        map: fn(&PgRow) -> Result<T, StoreError>,
    ) -> impl Fn(i64) -> futures::future::BoxFuture<'static, Result<Vec<T>, StoreError>>
    + Send
    + Sync
    + 'static {
        let pool = self.db.pool.clone();
        move |after| {
            let pool = pool.clone();
            Box::pin(async move {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {columns} FROM events WHERE position > $1 \
                     AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
                     ORDER BY position LIMIT $2"
                )))
                .bind(after)
                .bind(PAGE)
                .fetch_all(&pool)
                .await?;
                rows.iter().map(map).collect()
            })
        }
    }
}

fn recorded(row: &PgRow) -> Result<RecordedEvent, StoreError> {
    Ok(RecordedEvent {
        position: row.try_get("position")?,
        stream_id: row.try_get("stream_id")?,
        stream_version: row.try_get("stream_version")?,
        event_type: row.try_get("event_type")?,
        schema_version: row.try_get("schema_version")?,
        payload: row.try_get("payload")?,
        metadata: row.try_get("metadata")?,
        recorded_at: row.try_get("recorded_at")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

struct Writer {
    pool: PgPool,
}

/// The head of each of `streams` that has events.
async fn heads(tx: &mut Transaction<'_, Postgres>, streams: &[&str]) -> Result<Heads, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT e.stream_id, e.stream_version, e.hash FROM unnest($1::text[]) AS wanted(id) \
         CROSS JOIN LATERAL (SELECT stream_id, stream_version, hash FROM events \
         WHERE stream_id = wanted.id ORDER BY stream_version DESC LIMIT 1) e",
    )
    .bind(streams)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, (row.try_get(1)?, row.try_get(2)?))))
        .collect()
}

/// Inserts the events of a plan; returns their positions by `(stream, version)`.
async fn insert(
    tx: &mut Transaction<'_, Postgres>,
    plan: &[Outcome],
    recorded_at: DateTime<Utc>,
) -> Result<HashMap<(String, i64), i64>, sqlx::Error> {
    let events: Vec<&RecordedEvent> = to_insert(plan).collect();
    let mut positions = HashMap::with_capacity(events.len());
    for chunk in events.chunks(ROWS_PER_INSERT) {
        let sql = numbered(&insert_sql(chunk.len(), "::json"));
        let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
        for event in chunk {
            insert = insert
                .bind(&event.stream_id)
                .bind(event.stream_version)
                .bind(&event.event_type)
                .bind(event.schema_version)
                .bind(&event.payload)
                .bind(&event.metadata)
                .bind(recorded_at)
                .bind(&event.prev_hash)
                .bind(&event.hash);
        }
        for row in insert.fetch_all(&mut **tx).await? {
            positions.insert((row.try_get(1)?, row.try_get(2)?), row.try_get(0)?);
        }
    }
    Ok(positions)
}

/// How often a batch is planned again after another instance won a race for a version.
const MAX_ATTEMPTS: usize = 5;

#[async_trait]
impl BatchWriter for Writer {
    /// Reads the heads, plans, inserts. Another instance may insert a version between our read
    /// and our insert; its commit makes our insert fail on the unique key, and the batch is
    /// planned again from the new heads, so that append alone ends as a conflict.
    async fn write(&self, batch: &[AppendRequest]) -> Result<Vec<Outcome>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let recorded = recording_time();
        let streams = streams(batch);
        let mut attempt = 1;
        loop {
            let heads = heads(&mut tx, &streams).await?;
            let mut plan = plan(batch, heads, &recorded);
            sqlx::query("SAVEPOINT append").execute(&mut *tx).await?;
            match insert(&mut tx, &plan, recorded.0).await {
                Ok(positions) => {
                    place(&mut plan, &positions);
                    tx.commit().await?;
                    return Ok(plan);
                }
                Err(sqlx::Error::Database(e))
                    if e.is_unique_violation() && attempt < MAX_ATTEMPTS =>
                {
                    sqlx::query("ROLLBACK TO SAVEPOINT append")
                        .execute(&mut *tx)
                        .await?;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[async_trait]
impl EventStore for PostgresEventStore {
    async fn append(
        &self,
        stream: &str,
        expected_version: i64,
        events: Vec<NewEvent>,
        metadata: &EventMetadata,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.stats
            .appends
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.appender
            .append(stream, expected_version, events, metadata)
            .await
    }

    async fn read_stream(
        &self,
        stream: &str,
        after_version: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.stats
            .stream_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM events WHERE stream_id = $1 AND stream_version > $2 \
             ORDER BY stream_version"
        )))
        .bind(stream)
        .bind(after_version)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(recorded).collect()
    }

    async fn read_stream_page(
        &self,
        stream: &str,
        after_position: i64,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.stats
            .stream_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // As on SQLite: the page starts after the version of the cursor's event.
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM events WHERE stream_id = $1 AND stream_version > COALESCE( \
               (SELECT stream_version FROM events WHERE position = $2 AND stream_id = $1), \
               (SELECT MAX(stream_version) FROM events WHERE stream_id = $1 AND position <= $2), \
               0) \
             ORDER BY stream_version LIMIT $3"
        )))
        .bind(stream)
        .bind(after_position)
        .bind(limit)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(recorded).collect()
    }

    fn read_all(
        &self,
        after_position: i64,
    ) -> BoxStream<'static, Result<RecordedEvent, StoreError>> {
        let page = self.page(COLUMNS, recorded);
        paged(after_position, page, |e: &RecordedEvent| e.position)
    }

    fn read_payloads(
        &self,
        after_position: i64,
    ) -> BoxStream<'static, Result<EventPayload, StoreError>> {
        let page = self.page(PG_PAYLOAD_COLUMNS, payload_of);
        paged(after_position, page, |e: &EventPayload| e.position)
    }

    async fn count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(&self.db.pool)
            .await?)
    }

    async fn head(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
                .fetch_one(&self.db.pool)
                .await?,
        )
    }

    fn stats(&self) -> &StoreStats {
        &self.stats
    }

    async fn close(&self) {
        self.appender.close().await;
        self.db.pool.close().await;
    }
}
