//! The embedded database, SQLite: its connection set-up and its dialect.
//!
//! SQLite allows one writer at a time, so every write goes through one connection: appends
//! through the group-commit appender task, which collects the appends of all actors that
//! arrive while the previous batch commits and writes them in one transaction (one fsync for
//! many requests), answering each only after its commit is durable (WAL, `synchronous=FULL`).
//! Reads use a separate pool; in WAL mode they never wait for the writer.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::private_files;

use super::PAGE;
use super::appender::ROWS_PER_INSERT;
use super::chain::ChainKey;
use super::database_file::DatabaseFile;
use super::dialect::{Dialect, Query, rfc3339};
use super::events::SqlEventStore;
use super::foreign_writes::{ForeignWrites, Look, Reading};
use super::keyring::Keyring;
use super::sealed::MasterKey;
use super::{StoreKeys, keys_error};

/// The two pools of one SQLite database file.
#[derive(Clone, Debug)]
pub struct Database {
    /// One connection: the only writer.
    pub writer: SqlitePool,
    pub reader: SqlitePool,
    /// The file as the writer opened it, watched by the appender; `None` without one.
    file: Option<Arc<DatabaseFile>>,
    /// Other processes' commits, seen on the writer connection.
    foreign_writes: Arc<ForeignWrites>,
    chain: ChainKey,
    keyring: Keyring,
}

impl Database {
    /// Opens an existing database, for commands that only read: pointed at the wrong folder
    /// they must say so, not report on a new, empty log.
    pub async fn open_existing(url: &str, keys: &StoreKeys) -> Result<Database, sqlx::Error> {
        Self::exists(url)?;
        Self::open(url, keys).await
    }

    /// Whether the file at `url` is there: an error saying so if not.
    pub fn exists(url: &str) -> Result<(), sqlx::Error> {
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
        Ok(())
    }

    /// Opens (creating if needed) the database at `url` and runs the migrations.
    pub async fn open(url: &str, keys: &StoreKeys) -> Result<Database, sqlx::Error> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // A deleted data key or users row is overwritten, not left in a free page for
            // anyone who reads the file (forgetting a user must leave nothing readable).
            .pragma("secure_delete", "ON");
        // Before SQLite opens it, which would make it 0644: it holds password hashes. SQLite
        // gives the WAL files the same mode.
        private_files::create_empty(options.get_filename()).map_err(sqlx::Error::Io)?;
        let connections = Arc::new(AtomicU64::new(0));
        let counted = connections.clone();
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            // A ping before each use is a round trip to the connection's thread for every
            // batch and every look (`look_on`), and tells nothing a local file's connection
            // does not tell by failing its statement (after which a batch closes it).
            .test_before_acquire(false)
            .after_connect(move |_, _| {
                counted.fetch_add(1, Ordering::AcqRel);
                Box::pin(async { Ok(()) })
            })
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
            // As the writer's: a read is two round trips to the connection's thread, not three.
            .test_before_acquire(false)
            .connect_with(options.read_only(true).row_buffer_size(PAGE as usize))
            .await?;
        let db = Database {
            foreign_writes: ForeignWrites::new(look_on(writer.clone(), connections)),
            writer,
            reader,
            file,
            chain: ChainKey::new(&keys.ledger),
            keyring: Keyring::new(MasterKey::new(&keys.personal)),
        };
        db.keyring.check(&db).await.map_err(keys_error)?;
        Ok(db)
    }
}

/// A look for other processes' commits: `PRAGMA data_version` on the writer connection,
/// which changes on no commit of this process, all of which go through it. `connections`
/// counts the writer connections opened: the pool holds one at most, so while a look holds
/// it, the count names it, and a new one (after a failed batch, or sqlx's recycling) is
/// never compared with the data version of the one before.
fn look_on(writer: SqlitePool, connections: Arc<AtomicU64>) -> Look {
    Box::new(move || {
        let (writer, connections) = (writer.clone(), connections.clone());
        Box::pin(async move {
            let mut conn = writer.acquire().await?;
            let connection = connections.load(Ordering::Acquire);
            let data_version = sqlx::query_scalar("PRAGMA data_version")
                .fetch_one(&mut *conn)
                .await?;
            Ok(Reading {
                connection,
                data_version,
            })
        })
    })
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

/// The event store on SQLite.
pub type SqliteEventStore = SqlEventStore<Database>;

impl Dialect for Database {
    type Db = sqlx::Sqlite;
    type Time = String;

    // IMMEDIATE takes the write lock up front, so that a check and the insert after it see
    // the same table (see `EventTable::write_on`).
    const BEGIN: &'static str = "BEGIN IMMEDIATE";
    const LOCK_USERS: Option<&'static str> = None;
    const LOCK_EVENTS: Option<&'static str> = None;
    const LEDGER_LOCK: Option<&'static str> = None;
    const RACING_WRITERS: bool = false;
    const FRESH_CONNECTION_AFTER_FAILURE: bool = true;
    // A local file: a stalled disk is waited for (its commit cannot be called back anyway).
    const DEADLINE: Option<std::time::Duration> = None;
    const JSON_PARAMETER: &'static str = "?";
    const GIVEN_ID: &'static str = "";
    const AFTER_GIVEN_IDS: Option<&'static str> = None;
    const SCRUB: &'static [&'static str] = &["PRAGMA wal_checkpoint(TRUNCATE)"];
    const CATCH_UP: &'static str = "";

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    fn chain(&self) -> &ChainKey {
        &self.chain
    }

    fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    fn json_text(column: &str) -> String {
        column.to_owned()
    }

    fn placeholders(sql: &str) -> String {
        sql.to_owned()
    }

    fn heads(streams: &[&str]) -> Vec<Query<Self>> {
        streams
            .chunks(ROWS_PER_INSERT)
            .map(|chunk| {
                // Two index seeks a stream, however long it is: its MAX version, then that row.
                let sql = format!(
                    "WITH wanted(id) AS (VALUES {}) \
                     SELECT e.stream_id, e.stream_version, e.hash FROM wanted JOIN events e \
                     ON e.stream_id = wanted.id AND e.stream_version = \
                     (SELECT MAX(stream_version) FROM events WHERE stream_id = wanted.id)",
                    vec!["(?)"; chunk.len()].join(", ")
                );
                chunk
                    .iter()
                    .fold(sqlx::query(sqlx::AssertSqlSafe(sql)), |query, stream| {
                        query.bind(*stream)
                    })
            })
            .collect()
    }

    fn stored_time(recorded: &(DateTime<Utc>, String)) -> String {
        recorded.1.clone()
    }

    fn read_time(stored: String) -> Result<DateTime<Utc>, sqlx::Error> {
        rfc3339(&stored)
    }

    fn refuse_writes(&self) -> Result<(), sqlx::Error> {
        match Dialect::detached(self) {
            Some(why) => Err(super::detached_error(why)),
            None => Ok(()),
        }
    }

    fn check_committed(&self) -> Result<(), sqlx::Error> {
        match &self.file {
            Some(file) => file.check().map_err(super::detached_error),
            None => Ok(()),
        }
    }

    fn detached(&self) -> Option<&str> {
        self.file.as_deref().and_then(DatabaseFile::detached)
    }

    fn foreign_writes(&self) -> Option<&Arc<ForeignWrites>> {
        Some(&self.foreign_writes)
    }
}
