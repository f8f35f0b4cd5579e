//! The event store on PostgreSQL, for several instances sharing one database.
//!
//! Appends go through the same group-commit appender as on SQLite; each append in a batch runs
//! under its own savepoint, so another instance winning a `(stream_id, stream_version)` race
//! fails that append alone, as a typed conflict. Catch-up reads (`read_all`) see only events
//! below the oldest transaction still in flight, so an event whose transaction commits after
//! a higher position became visible is read later, never skipped.

use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};

use super::appender::{AppendRequest, Appender, BatchWriter, Outcome, chained, recording_time};
use super::chain::GENESIS;
use super::{
    EventMetadata, EventStore, NewEvent, PAGE, RecordedEvent, StoreError, StoreStats, paged,
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
        let appender = Appender::start(Writer {
            pool: db.pool.clone(),
        });
        PostgresEventStore {
            db,
            appender,
            stats: Arc::new(StoreStats::default()),
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

async fn head(
    tx: &mut Transaction<'_, Postgres>,
    stream: &str,
) -> Result<(i64, Vec<u8>), sqlx::Error> {
    let row = sqlx::query(
        "SELECT stream_version, hash FROM events WHERE stream_id = $1 \
         ORDER BY stream_version DESC LIMIT 1",
    )
    .bind(stream)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(match row {
        Some(row) => (row.try_get(0)?, row.try_get(1)?),
        None => (0, GENESIS.to_vec()),
    })
}

#[async_trait]
impl BatchWriter for Writer {
    async fn write(&self, batch: &[AppendRequest]) -> Result<Vec<Outcome>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let recorded = recording_time();
        let mut outcomes = Vec::with_capacity(batch.len());
        for request in batch {
            let conflict = |actual| {
                Err(StoreError::Conflict {
                    stream: request.stream.clone(),
                    expected: request.expected_version,
                    actual,
                })
            };
            let (version, hash) = head(&mut tx, &request.stream).await?;
            if version != request.expected_version {
                outcomes.push(conflict(version));
                continue;
            }
            sqlx::query("SAVEPOINT append").execute(&mut *tx).await?;
            let mut written = chained(request, version, hash, &recorded);
            let mut clash = false;
            for event in &mut written {
                let inserted = sqlx::query(
                    "INSERT INTO events (stream_id, stream_version, event_type, schema_version, \
                     payload, metadata, recorded_at, prev_hash, hash) \
                     VALUES ($1, $2, $3, $4, $5::json, $6::json, $7, $8, $9) RETURNING position",
                )
                .bind(&event.stream_id)
                .bind(event.stream_version)
                .bind(&event.event_type)
                .bind(event.schema_version)
                .bind(&event.payload)
                .bind(&event.metadata)
                .bind(recorded.0)
                .bind(&event.prev_hash)
                .bind(&event.hash)
                .fetch_one(&mut *tx)
                .await;
                match inserted {
                    Ok(row) => event.position = row.try_get(0)?,
                    // Another instance wrote this version first (its transaction committed
                    // while ours ran): this append alone fails, as a conflict.
                    Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                        clash = true;
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            if clash {
                sqlx::query("ROLLBACK TO SAVEPOINT append")
                    .execute(&mut *tx)
                    .await?;
                let (actual, _) = head(&mut tx, &request.stream).await?;
                outcomes.push(conflict(actual));
            } else {
                sqlx::query("RELEASE SAVEPOINT append")
                    .execute(&mut *tx)
                    .await?;
                outcomes.push(Ok(written));
            }
        }
        tx.commit().await?;
        Ok(outcomes)
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

    fn read_all(
        &self,
        after_position: i64,
    ) -> BoxStream<'static, Result<RecordedEvent, StoreError>> {
        let pool = self.db.pool.clone();
        paged(after_position, move |after| {
            let pool = pool.clone();
            async move {
                // Only below the oldest transaction in flight: one that took a lower position
                // but has not committed yet would otherwise be passed over for good.
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM events WHERE position > $1 \
                     AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
                     ORDER BY position LIMIT $2"
                )))
                .bind(after)
                .bind(PAGE)
                .fetch_all(&pool)
                .await?;
                rows.iter().map(recorded).collect()
            }
        })
    }

    async fn count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(&self.db.pool)
            .await?)
    }

    fn stats(&self) -> &StoreStats {
        &self.stats
    }

    async fn close(&self) {
        self.appender.close().await;
        self.db.pool.close().await;
    }
}
