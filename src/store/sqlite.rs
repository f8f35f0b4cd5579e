//! The embedded event store on SQLite.
//!
//! SQLite allows one writer at a time, so every write goes through one connection: appends
//! through the group-commit appender task, which collects the appends of all actors that
//! arrive while the previous batch commits and writes them in one transaction (one fsync for
//! many requests), answering each only after its commit is durable (WAL, `synchronous=FULL`).
//! Reads use a separate pool; in WAL mode they never wait for the writer.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Connection, Row, SqliteConnection};

use crate::private_files;

use super::appender::{
    AppendRequest, Appender, BatchWriter, Heads, Outcome, ROWS_PER_INSERT, insert_sql, place, plan,
    recording_time, streams, to_insert,
};
use super::database_file::DatabaseFile;
use super::{
    EventMetadata, EventPayload, EventStore, NewEvent, PAGE, PAYLOAD_COLUMNS, RecordedEvent,
    StoreError, StoreStats, paged, payload_of,
};

/// The two pools of one SQLite database file.
#[derive(Clone, Debug)]
pub struct Database {
    /// One connection: the only writer.
    pub writer: SqlitePool,
    pub reader: SqlitePool,
    /// The file as the writer opened it, watched by the appender; `None` without one.
    file: Option<Arc<DatabaseFile>>,
}

impl Database {
    /// Opens an existing database, for commands that only read: pointed at the wrong folder
    /// they must say so, not report on a new, empty log.
    pub async fn open_existing(url: &str) -> Result<Database, sqlx::Error> {
        let options = SqliteConnectOptions::from_str(url)?;
        if !options.get_filename().exists() {
            return Err(sqlx::Error::Configuration(
                format!(
                    "no database at {} (check DATA_DIR or DATABASE_URL)",
                    options.get_filename().display()
                )
                .into(),
            ));
        }
        Self::open(url).await
    }

    /// Opens (creating if needed) the database at `url` and runs the migrations.
    pub async fn open(url: &str) -> Result<Database, sqlx::Error> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        // Before SQLite opens it, which would make it 0644: it holds password hashes. SQLite
        // gives the WAL files the same mode.
        private_files::create_empty(options.get_filename()).map_err(sqlx::Error::Io)?;
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&writer)
            .await?;
        let file =
            DatabaseFile::opened(options.get_filename(), journal.eq_ignore_ascii_case("wal"))
                .map(Arc::new);
        // A page of rows crosses from SQLite's thread in one go, not in handfuls of 50: the
        // replay at start-up reads millions.
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true).row_buffer_size(PAGE as usize))
            .await?;
        Ok(Database {
            writer,
            reader,
            file,
        })
    }

    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

/// Takes the server's exclusive lock on the database at `url`: one serving process per
/// SQLite file, since each keeps its projection from its own appends. The lock lasts as long
/// as the returned file is open. (The CLI's one-off commands do not take it.)
///
/// The lock file sits next to the file's canonical path, so that every name of the database
/// (a symlink to it, a path through a symlinked folder, `..`) meets the same lock. Only a
/// hard link, a second name with no link to follow, escapes it.
pub fn lock_for_serving(url: &str) -> std::io::Result<std::fs::File> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    private_files::create_empty(options.get_filename())?;
    let file = std::fs::canonicalize(options.get_filename()).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("{}: {e}", options.get_filename().display()),
        )
    })?;
    let mut path = file.into_os_string();
    path.push(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!(
                "another tokenledger is serving this database ({} is locked); run one server per SQLite file",
                Path::new(&path).display()
            ),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

impl SqliteEventStore {
    /// Fetches one page of `columns` after a position, mapped by `map`.
    fn page<T: Send + 'static>(
        &self,
        columns: &'static str,
        map: fn(&SqliteRow) -> Result<T, StoreError>,
    ) -> impl Fn(i64) -> futures::future::BoxFuture<'static, Result<Vec<T>, StoreError>>
    + Send
    + Sync
    + 'static {
        let pool = self.db.reader.clone();
        move |after| {
            let pool = pool.clone();
            Box::pin(async move {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {columns} FROM events WHERE position > ? ORDER BY position LIMIT ?"
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

pub struct SqliteEventStore {
    db: Database,
    appender: Appender,
    stats: Arc<StoreStats>,
}

impl SqliteEventStore {
    /// Starts the appender task on the current tokio runtime.
    pub fn start(db: Database) -> SqliteEventStore {
        let stats = Arc::new(StoreStats::default());
        let appender = Appender::start(
            Writer {
                pool: db.writer.clone(),
                file: db.file.clone(),
            },
            stats.clone(),
        );
        SqliteEventStore {
            db,
            appender,
            stats,
        }
    }
}

/// The one writer connection.
struct Writer {
    pool: SqlitePool,
    file: Option<Arc<DatabaseFile>>,
}

fn detached(why: &str) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        why.to_owned(),
    ))
}

#[async_trait]
impl BatchWriter for Writer {
    async fn write(&self, batch: &[AppendRequest]) -> Result<Vec<Outcome>, sqlx::Error> {
        // Nothing more goes into a file the next start will not open.
        if let Some(why) = self.file.as_deref().and_then(DatabaseFile::detached) {
            return Err(detached(why));
        }
        let mut conn = self.pool.acquire().await?;
        let written = write_batch(&mut conn, batch).await;
        if written.is_err() {
            // A COMMIT that failed on a full or read-only disk may leave SQLite's transaction
            // rolled back behind sqlx's bookkeeping, which then refuses every later BEGIN:
            // the next batch gets a fresh connection instead.
            conn.close_on_drop();
        }
        let outcomes = written?;
        // Committed, but durable only if the path still names this file: asked before the
        // appender answers, with the connection (and so the write-ahead log) still open.
        if let Some(file) = &self.file {
            file.check().map_err(detached)?;
        }
        Ok(outcomes)
    }
}

#[async_trait]
impl EventStore for SqliteEventStore {
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
        let rows = sqlx::query(
            "SELECT position, stream_id, stream_version, event_type, schema_version, payload, \
             metadata, recorded_at, prev_hash, hash FROM events \
             WHERE stream_id = ? AND stream_version > ? ORDER BY stream_version",
        )
        .bind(stream)
        .bind(after_version)
        .fetch_all(&self.db.reader)
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
        // A stream's positions grow with its versions, so the page starts after the version
        // of the event at `after_position` (a page's cursor, found by the primary key), or of
        // the stream's last event before it when a cursor names another stream's event.
        let rows = sqlx::query(
            "SELECT position, stream_id, stream_version, event_type, schema_version, payload, \
             metadata, recorded_at, prev_hash, hash FROM events \
             WHERE stream_id = ?1 AND stream_version > COALESCE( \
               (SELECT stream_version FROM events WHERE position = ?2 AND stream_id = ?1), \
               (SELECT MAX(stream_version) FROM events WHERE stream_id = ?1 AND position <= ?2), \
               0) \
             ORDER BY stream_version LIMIT ?3",
        )
        .bind(stream)
        .bind(after_position)
        .bind(limit)
        .fetch_all(&self.db.reader)
        .await?;
        rows.iter().map(recorded).collect()
    }

    fn read_all(
        &self,
        after_position: i64,
    ) -> BoxStream<'static, Result<RecordedEvent, StoreError>> {
        let page = self.page(
            "position, stream_id, stream_version, event_type, schema_version, payload, metadata, \
             recorded_at, prev_hash, hash",
            recorded,
        );
        paged(after_position, page, |e: &RecordedEvent| e.position)
    }

    fn read_payloads(
        &self,
        after_position: i64,
    ) -> BoxStream<'static, Result<EventPayload, StoreError>> {
        let page = self.page(PAYLOAD_COLUMNS, payload_of);
        paged(after_position, page, |e: &EventPayload| e.position)
    }

    async fn count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(&self.db.reader)
            .await?)
    }

    async fn head(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
                .fetch_one(&self.db.reader)
                .await?,
        )
    }

    fn stats(&self) -> &StoreStats {
        &self.stats
    }

    fn detached(&self) -> Option<&str> {
        self.db.file.as_deref().and_then(DatabaseFile::detached)
    }

    async fn close(&self) {
        self.appender.close().await;
        self.db.close().await;
    }
}

/// Reads a timestamp column stored as RFC 3339 text.
pub(crate) fn timestamp(row: &SqliteRow, column: &str) -> Result<DateTime<Utc>, sqlx::Error> {
    let text: String = row.try_get(column)?;
    DateTime::parse_from_rfc3339(&text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

fn recorded(row: &SqliteRow) -> Result<RecordedEvent, StoreError> {
    Ok(RecordedEvent {
        position: row.try_get("position")?,
        stream_id: row.try_get("stream_id")?,
        stream_version: row.try_get("stream_version")?,
        event_type: row.try_get("event_type")?,
        schema_version: row.try_get("schema_version")?,
        payload: row.try_get("payload")?,
        metadata: row.try_get("metadata")?,
        recorded_at: timestamp(row, "recorded_at")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

/// Writes every append of the batch in one transaction (see `BatchWriter`) with two
/// statements: one reads the heads of the batch's streams, one inserts every accepted event.
async fn write_batch(
    conn: &mut SqliteConnection,
    batch: &[AppendRequest],
) -> Result<Vec<Outcome>, sqlx::Error> {
    // IMMEDIATE takes the write lock up front: a deferred transaction that reads first and
    // writes later fails at once (SQLITE_BUSY, no waiting) if another process — the CLI —
    // wrote in between. Holding the lock, nobody can write between our read and our insert.
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let recorded = recording_time();
    let heads = heads(&mut tx, &streams(batch)).await?;
    let mut plan = plan(batch, heads, &recorded);
    let mut positions = HashMap::new();
    {
        let events: Vec<&RecordedEvent> = to_insert(&plan).collect();
        for chunk in events.chunks(ROWS_PER_INSERT) {
            let mut insert = sqlx::query(sqlx::AssertSqlSafe(insert_sql(chunk.len(), "")));
            for event in chunk {
                insert = insert
                    .bind(&event.stream_id)
                    .bind(event.stream_version)
                    .bind(&event.event_type)
                    .bind(event.schema_version)
                    .bind(&event.payload)
                    .bind(&event.metadata)
                    .bind(&recorded.1)
                    .bind(&event.prev_hash)
                    .bind(&event.hash);
            }
            for row in insert.fetch_all(&mut *tx).await? {
                positions.insert((row.try_get(1)?, row.try_get(2)?), row.try_get(0)?);
            }
        }
    }
    place(&mut plan, &positions);
    tx.commit().await?;
    Ok(plan)
}

/// The head of each of `streams` that has events.
async fn heads(conn: &mut SqliteConnection, streams: &[&str]) -> Result<Heads, sqlx::Error> {
    let mut heads = Heads::with_capacity(streams.len());
    for chunk in streams.chunks(ROWS_PER_INSERT) {
        // Two index seeks a stream, however long it is: its MAX version, then that row.
        let sql = format!(
            "WITH wanted(id) AS (VALUES {}) \
             SELECT e.stream_id, e.stream_version, e.hash FROM wanted JOIN events e \
             ON e.stream_id = wanted.id AND e.stream_version = \
             (SELECT MAX(stream_version) FROM events WHERE stream_id = wanted.id)",
            vec!["(?)"; chunk.len()].join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for stream in chunk {
            query = query.bind(*stream);
        }
        for row in query.fetch_all(&mut *conn).await? {
            heads.insert(row.try_get(0)?, (row.try_get(1)?, row.try_get(2)?));
        }
    }
    Ok(heads)
}
