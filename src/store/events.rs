//! The event store, written once for every dialect: `EventTable` is everything that touches
//! the `events` table (reads, catch-up pages, a batch's heads-plan-insert transaction,
//! decoding), implemented once over `Dialect`; `SqlEventStore` puts the group-commit
//! appender, the paging and the counts in front of it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use sqlx::pool::PoolConnection;
use sqlx::{ColumnIndex, Connection, Database, Encode, Executor, IntoArguments, Row as _, Type};

use super::appender::{
    AppendRequest, Appender, BatchWriter, Heads, Landing, Outcome, ROWS_PER_INSERT, Sealing,
    Submitted, insert_sql, place, plan, recording_time, slots, streams, to_insert,
};
use super::chain::ChainKey;
use super::data_keys::{KeyTable, Revealable, Wanted, every_type, reveal, session_types};
use super::dialect::{Conn, Dialect, Row, Value, query};
use super::keyring::Keyring;
use super::{
    Epoch, EventMetadata, EventPayload, EventStore, NewEvent, PAGE, RecordedEvent, StoreError,
    StoreStats, paged,
};

/// Reads a `T` from a row of dialect `D`'s database.
pub type Decoder<D, T> = fn(&Row<D>) -> Result<T, StoreError>;

/// How often a batch is planned again after another writer won a race for a version.
pub(super) const MAX_ATTEMPTS: usize = 5;

/// The `events` table of a dialect's database.
#[async_trait]
pub trait EventTable: KeyTable {
    /// The events of `stream` with a version above `after_version`, in order.
    async fn stream(
        &self,
        stream: &str,
        after_version: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// At most `limit` events of `stream` after the one at `after_position`, in order.
    async fn stream_page(
        &self,
        stream: &str,
        after_position: i64,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// A page: at most `PAGE` events after `after` that pass `filter` (the catch-up horizon,
    /// or none), as `columns` read by `decode`, their personal fields revealed.
    async fn page<T: Revealable + Send + 'static>(
        &self,
        after: i64,
        filter: &str,
        columns: &str,
        decode: Decoder<Self, T>,
    ) -> Result<Vec<T>, StoreError> {
        let mut events = self.rows(after, filter, columns, decode).await?;
        reveal(self, &mut events, every_type).await?;
        Ok(events)
    }

    /// `page`, not yet revealed.
    async fn rows<T: Revealable + Send + 'static>(
        &self,
        after: i64,
        filter: &str,
        columns: &str,
        decode: Decoder<Self, T>,
    ) -> Result<Vec<T>, StoreError>;

    async fn event_count(&self) -> Result<i64, StoreError>;

    /// The position of the newest event (0 for an empty log).
    async fn head(&self) -> Result<i64, StoreError>;

    /// Writes a batch in one transaction (see `BatchWriter`).
    async fn write_batch(&self, batch: &[AppendRequest]) -> Result<Vec<Outcome>, sqlx::Error>;

    /// `write_batch` on a writer connection: keys, heads, plan, insert, place, commit.
    async fn write_on(
        conn: &mut Conn<Self>,
        chain: &ChainKey,
        keyring: &Keyring,
        batch: &[AppendRequest],
    ) -> Result<Vec<Outcome>, sqlx::Error>;

    /// One attempt at `batch` on `heads`, on a writer transaction: planned, inserted (under a
    /// savepoint where other writers race: `RACING_WRITERS`), positions placed. `None` when
    /// another writer took one of the versions first and `retry` allows planning again from
    /// the new heads; the savepoint is then rolled back.
    async fn try_insert(
        conn: &mut Conn<Self>,
        sealing: &Sealing<'_>,
        batch: &[AppendRequest],
        heads: Heads,
        recorded: &(DateTime<Utc>, String),
        retry: bool,
    ) -> Result<Option<Vec<Outcome>>, sqlx::Error>;

    /// The head of each of `streams` that has events.
    async fn read_heads(conn: &mut Conn<Self>, streams: &[&str]) -> Result<Heads, sqlx::Error>;

    /// Inserts the events of a plan; returns their positions by `(stream, version)`.
    async fn insert(
        conn: &mut Conn<Self>,
        plan: &[Outcome],
        recorded: &Self::Time,
    ) -> Result<HashMap<(String, i64), i64>, sqlx::Error>;

    /// A `RecordedEvent` from a row of `recorded_columns`.
    fn recorded(row: &Row<Self>) -> Result<RecordedEvent, StoreError>;

    /// An `EventPayload` from a row of `payload_columns`.
    fn payload(row: &Row<Self>) -> Result<EventPayload, StoreError>;
}

/// How many columns `recorded_columns` selects.
pub(crate) const RECORDED_COLUMNS: usize = 11;

/// Every column of an event, in the order `EventTable::recorded` reads them.
pub(crate) fn recorded_columns<D: Dialect>() -> String {
    format!(
        "{}, {} AS metadata, recorded_at, prev_hash, hash",
        payload_columns::<D>(),
        D::json_text("metadata")
    )
}

/// What folding needs of an event, in the order `EventTable::payload` reads them.
pub(crate) fn payload_columns<D: Dialect>() -> String {
    format!(
        "position, stream_id, stream_version, event_type, schema_version, \
         {} AS payload, body",
        D::json_text("payload")
    )
}

#[async_trait]
impl<D: Dialect> EventTable for D
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    for<'a> &'a str: Encode<'a, D::Db> + Type<D::Db>,
    i64: Value<D::Db>,
    i16: Value<D::Db>,
    String: Value<D::Db>,
    Vec<u8>: Value<D::Db>,
    Option<String>: Value<D::Db>,
    Option<Vec<u8>>: Value<D::Db>,
    usize: ColumnIndex<Row<D>>,
{
    async fn stream(
        &self,
        stream: &str,
        after_version: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = format!(
            "SELECT {} FROM events WHERE stream_id = ? AND stream_version > ? \
             ORDER BY stream_version",
            recorded_columns::<D>()
        );
        let mut conn = self.reader().acquire().await?;
        let fetching = query::<D>(&sql)
            .bind(stream)
            .bind(after_version)
            .fetch_all(&mut *conn);
        let rows = match within_deadline::<D, _>(fetching).await {
            Ok(rows) => rows?,
            Err(passed) => return Err(abandon(conn, passed).into()),
        };
        let mut events = rows
            .iter()
            .map(D::recorded)
            .collect::<Result<Vec<_>, _>>()?;
        reveal(self, &mut events, every_type).await?;
        Ok(events)
    }

    async fn stream_page(
        &self,
        stream: &str,
        after_position: i64,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        // A stream's positions grow with its versions, so the page starts after the version
        // of the event at `after_position` (a page's cursor, found by the primary key), or of
        // the stream's last event before it when a cursor names another stream's event.
        let sql = format!(
            "SELECT {} FROM events \
             WHERE stream_id = ?1 AND stream_version > COALESCE( \
               (SELECT stream_version FROM events WHERE position = ?2 AND stream_id = ?1), \
               (SELECT MAX(stream_version) FROM events WHERE stream_id = ?1 AND position <= ?2), \
               0) \
             ORDER BY stream_version LIMIT ?3",
            recorded_columns::<D>()
        );
        let mut conn = self.reader().acquire().await?;
        let fetching = query::<D>(&sql)
            .bind(stream)
            .bind(after_position)
            .bind(limit)
            .fetch_all(&mut *conn);
        let rows = match within_deadline::<D, _>(fetching).await {
            Ok(rows) => rows?,
            Err(passed) => return Err(abandon(conn, passed).into()),
        };
        let mut events = rows
            .iter()
            .map(D::recorded)
            .collect::<Result<Vec<_>, _>>()?;
        reveal(self, &mut events, every_type).await?;
        Ok(events)
    }

    async fn rows<T: Revealable + Send + 'static>(
        &self,
        after: i64,
        filter: &str,
        columns: &str,
        decode: Decoder<D, T>,
    ) -> Result<Vec<T>, StoreError> {
        let sql = format!(
            "SELECT {columns} FROM events WHERE position > ?{filter} ORDER BY position LIMIT ?"
        );
        let rows = query::<D>(&sql)
            .bind(after)
            .bind(PAGE)
            .fetch_all(self.reader())
            .await?;
        rows.iter().map(decode).collect()
    }

    async fn event_count(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) FROM events")
            .fetch_one(self.reader())
            .await?;
        Ok(row.try_get(0)?)
    }

    async fn head(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COALESCE(MAX(position), 0) FROM events")
            .fetch_one(self.reader())
            .await?;
        Ok(row.try_get(0)?)
    }

    async fn write_batch(&self, batch: &[AppendRequest]) -> Result<Vec<Outcome>, sqlx::Error> {
        // Nothing more goes into a file the next start will not open.
        self.refuse_writes()?;
        let mut conn = self.batch_writer().acquire().await?;
        let writing = D::write_on(&mut conn, self.chain(), self.keyring(), batch);
        let written = match within_deadline::<D, _>(writing).await {
            Ok(written) => written,
            Err(passed) => return Err(abandon(conn, passed)),
        };
        if written.is_err() && D::FRESH_CONNECTION_AFTER_FAILURE {
            // A COMMIT that failed on a full or read-only disk may leave SQLite's transaction
            // rolled back behind sqlx's bookkeeping, which then refuses every later BEGIN:
            // the next batch gets a fresh connection instead.
            conn.close_on_drop();
        }
        let outcomes = written?;
        // Committed, but on SQLite durable only if the path still names this file: asked
        // before the appender answers, with the connection (and so the log) still open.
        self.check_committed()?;
        Ok(outcomes)
    }

    /// Another writer may insert a version between our read of the heads and our insert
    /// (`RACING_WRITERS`); its commit makes our insert fail on the unique key, and the batch
    /// is planned again from the new heads, so that append alone ends as a conflict.
    async fn write_on(
        conn: &mut Conn<D>,
        chain: &ChainKey,
        keyring: &Keyring,
        batch: &[AppendRequest],
    ) -> Result<Vec<Outcome>, sqlx::Error> {
        // SQLite's IMMEDIATE takes the write lock up front: a deferred transaction that reads
        // first and writes later fails at once (SQLITE_BUSY, no waiting) if another process —
        // the CLI — wrote in between. Holding the lock, nobody can write between our read
        // and our insert.
        let mut tx = conn.begin_with(D::BEGIN).await?;
        let recorded = recording_time();
        let streams = streams(batch);
        let keys = keyring.for_writing::<D>(&mut tx, slots(batch)).await?;
        let sealing = Sealing { chain, keys: &keys };
        for attempt in 1.. {
            let heads = D::read_heads(&mut tx, &streams).await?;
            let retry = attempt < MAX_ATTEMPTS;
            if let Some(plan) =
                D::try_insert(&mut tx, &sealing, batch, heads, &recorded, retry).await?
            {
                tx.commit().await?;
                keyring.remember(keys.made);
                return Ok(plan);
            }
        }
        unreachable!("the last attempt answers or fails")
    }

    async fn try_insert(
        conn: &mut Conn<D>,
        sealing: &Sealing<'_>,
        batch: &[AppendRequest],
        heads: Heads,
        recorded: &(DateTime<Utc>, String),
        retry: bool,
    ) -> Result<Option<Vec<Outcome>>, sqlx::Error> {
        let mut plan = plan(sealing, batch, heads, recorded);
        if D::RACING_WRITERS {
            sqlx::query("SAVEPOINT append").execute(&mut *conn).await?;
        }
        match D::insert(conn, &plan, &D::stored_time(recorded)).await {
            Ok(positions) => {
                place(&mut plan, &positions);
                Ok(Some(plan))
            }
            Err(sqlx::Error::Database(e))
                if D::RACING_WRITERS && e.is_unique_violation() && retry =>
            {
                sqlx::query("ROLLBACK TO SAVEPOINT append")
                    .execute(&mut *conn)
                    .await?;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    async fn read_heads(conn: &mut Conn<D>, streams: &[&str]) -> Result<Heads, sqlx::Error> {
        let mut heads = Heads::with_capacity(streams.len());
        for query in D::heads(streams) {
            for row in query.fetch_all(&mut *conn).await? {
                heads.insert(row.try_get(0)?, (row.try_get(1)?, row.try_get(2)?));
            }
        }
        Ok(heads)
    }

    async fn insert(
        conn: &mut Conn<D>,
        plan: &[Outcome],
        recorded_at: &D::Time,
    ) -> Result<HashMap<(String, i64), i64>, sqlx::Error> {
        let events: Vec<&RecordedEvent> = to_insert(plan).collect();
        let mut positions = HashMap::with_capacity(events.len());
        for chunk in events.chunks(ROWS_PER_INSERT) {
            let mut insert = query::<D>(&insert_sql(chunk.len(), D::JSON_PARAMETER));
            for event in chunk {
                insert = insert
                    .bind(&event.stream_id)
                    .bind(event.stream_version)
                    .bind(&event.event_type)
                    .bind(event.schema_version)
                    .bind(&event.payload)
                    .bind(&event.metadata)
                    .bind(&event.body)
                    .bind(recorded_at)
                    .bind(&event.prev_hash)
                    .bind(&event.hash);
            }
            for row in insert.fetch_all(&mut *conn).await? {
                positions.insert((row.try_get(1)?, row.try_get(2)?), row.try_get(0)?);
            }
        }
        Ok(positions)
    }

    fn recorded(row: &Row<D>) -> Result<RecordedEvent, StoreError> {
        // The payload's columns come first (see `recorded_columns`).
        let payload = D::payload(row)?;
        Ok(RecordedEvent {
            position: payload.position,
            stream_id: payload.stream_id,
            stream_version: payload.stream_version,
            event_type: payload.event_type,
            schema_version: payload.schema_version,
            payload: payload.payload,
            metadata: row.try_get(7)?,
            body: payload.body,
            recorded_at: D::read_time(row.try_get(8)?)?,
            prev_hash: row.try_get(9)?,
            hash: row.try_get(10)?,
            revealed: None,
        })
    }

    fn payload(row: &Row<D>) -> Result<EventPayload, StoreError> {
        Ok(EventPayload {
            position: row.try_get(0)?,
            stream_id: row.try_get(1)?,
            stream_version: row.try_get(2)?,
            event_type: row.try_get(3)?,
            schema_version: row.try_get(4)?,
            payload: row.try_get(5)?,
            body: row.try_get(6)?,
            keys: None,
        })
    }
}

#[async_trait]
impl<D: EventTable> BatchWriter for D {
    async fn write(&self, batch: &[AppendRequest]) -> Result<Vec<Outcome>, sqlx::Error> {
        self.write_batch(batch).await
    }
}

/// Closes the connection of work abandoned at `Dialect::DEADLINE` (midway through a
/// statement: returned to the pool, sqlx would first ping it, with no limit, over the link
/// that went silent) and passes the deadline's error on.
fn abandon<DB: Database>(mut conn: PoolConnection<DB>, passed: sqlx::Error) -> sqlx::Error {
    conn.close_on_drop();
    passed
}

/// `work`'s own result, or the error of its abandonment at `Dialect::DEADLINE`.
async fn within_deadline<D: Dialect, T>(work: impl Future<Output = T>) -> Result<T, sqlx::Error> {
    let Some(deadline) = D::DEADLINE else {
        return Ok(work.await);
    };
    tokio::time::timeout(deadline, work).await.map_err(|_| {
        sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("the database did not answer within {deadline:?}"),
        ))
    })
}

/// The event store on one database: appends through the group-commit appender (one writer
/// task, many appends a transaction), reads straight from the reader pool.
pub struct SqlEventStore<D: EventTable> {
    db: D,
    appender: Appender,
    stats: Arc<StoreStats>,
}

impl<D: EventTable> SqlEventStore<D> {
    /// Starts the appender task on the current tokio runtime.
    pub fn start(db: D) -> SqlEventStore<D> {
        let stats = Arc::new(StoreStats::default());
        let appender = Appender::start(db.clone(), stats.clone());
        SqlEventStore {
            db,
            appender,
            stats,
        }
    }

    /// `read_all` with rows of `columns` read by `decode`, the sections of the types `wanted`
    /// opened.
    fn read_pages<T: Revealable + Send + 'static>(
        &self,
        after_position: i64,
        filter: &'static str,
        (columns, decode): (String, Decoder<D, T>),
        position: fn(&T) -> i64,
        wanted: Wanted,
    ) -> BoxStream<'static, Result<T, StoreError>> {
        let (db, revealing) = (self.db.clone(), self.db.clone());
        let columns: Arc<str> = columns.into();
        let read = move |after| {
            let (db, columns) = (db.clone(), columns.clone());
            async move { db.rows(after, filter, &columns, decode).await }
        };
        let finish = move |mut events: Vec<T>| {
            let db = revealing.clone();
            async move {
                reveal(&db, &mut events, wanted).await?;
                Ok(events)
            }
        };
        paged(after_position, read, finish, position)
    }
}

#[async_trait]
impl<D: EventTable> EventStore for SqlEventStore<D> {
    async fn append(
        &self,
        stream: &str,
        expected_version: i64,
        events: Vec<NewEvent>,
        metadata: &EventMetadata,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.stats.appends.fetch_add(1, Ordering::Relaxed);
        self.appender
            .append(stream, expected_version, events, metadata)
            .await
    }

    fn submit(
        &self,
        stream: &str,
        expected_version: i64,
        events: Vec<NewEvent>,
        metadata: &EventMetadata,
        after: Option<Arc<Landing>>,
    ) -> Submitted {
        self.stats.appends.fetch_add(1, Ordering::Relaxed);
        self.appender
            .submit(stream, expected_version, events, metadata, after)
    }

    async fn read_stream(
        &self,
        stream: &str,
        after_version: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.stats.stream_reads.fetch_add(1, Ordering::Relaxed);
        self.db.stream(stream, after_version).await
    }

    async fn read_stream_page(
        &self,
        stream: &str,
        after_position: i64,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.stats.stream_reads.fetch_add(1, Ordering::Relaxed);
        self.db.stream_page(stream, after_position, limit).await
    }

    fn read_all(
        &self,
        after_position: i64,
    ) -> BoxStream<'static, Result<RecordedEvent, StoreError>> {
        let columns = recorded_columns::<D>();
        let read = (columns, D::recorded as Decoder<D, RecordedEvent>);
        self.read_pages(
            after_position,
            D::CATCH_UP,
            read,
            |e| e.position,
            every_type,
        )
    }

    fn read_committed(
        &self,
        after_position: i64,
    ) -> BoxStream<'static, Result<RecordedEvent, StoreError>> {
        let columns = recorded_columns::<D>();
        let read = (columns, D::recorded as Decoder<D, RecordedEvent>);
        self.read_pages(after_position, "", read, |e| e.position, every_type)
    }

    fn read_payloads(
        &self,
        after_position: i64,
    ) -> BoxStream<'static, Result<EventPayload, StoreError>> {
        let columns = payload_columns::<D>();
        let read = (columns, D::payload as Decoder<D, EventPayload>);
        self.read_pages(
            after_position,
            D::CATCH_UP,
            read,
            |e| e.position,
            session_types,
        )
    }

    async fn count(&self) -> Result<i64, StoreError> {
        self.db.event_count().await
    }

    async fn head(&self) -> Result<i64, StoreError> {
        EventTable::head(&self.db).await
    }

    fn stats(&self) -> &StoreStats {
        &self.stats
    }

    fn detached(&self) -> Option<&str> {
        Dialect::detached(&self.db)
    }

    fn epoch(&self) -> Epoch {
        self.db.foreign_writes().map_or(0, |looks| looks.epoch())
    }

    async fn written_elsewhere_since(&self, epoch: Epoch) -> bool {
        match self.db.foreign_writes() {
            Some(looks) => looks.since(epoch).await,
            None => true,
        }
    }

    async fn close(&self) {
        self.appender.close().await;
        self.db.reader().close().await;
        self.db.writer().close().await;
        self.db.batch_writer().close().await;
    }
}
