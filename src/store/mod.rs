//! The event store: an append-only log of every user's stream, with optimistic concurrency
//! per stream and a tamper-evident hash chain. `EventStore` is what actors and projections
//! use. It is written once (`events`, `users`) over a `dialect`, which `sqlite` (embedded)
//! and `postgres` (shared by several instances) implement.

pub(crate) mod account_log;
mod appender;
mod body;
mod chain;
pub mod data_keys;
mod database_file;
pub mod dialect;
pub mod events;
pub mod foreign_writes;
pub mod keyring;
pub mod ledger;
pub mod mail_log;
pub mod postgres;
pub mod sealed;
pub mod snapshots;
pub mod sqlite;
pub mod users;
pub mod users_explained;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use tokenledger_domain::{DecodeError, Event, Timestamp, UserId};

use crate::config::{DatabaseUrl, KeyBytes};
use crate::store::data_keys::{PageKeys, Revealable};
use crate::store::ledger::{LedgerStore, Upgrade, Upgrading};

pub use appender::{Landing, Submitted};
pub use chain::{
    Broken, ChainKey, ChainVerifier, GENESIS, Hashed, LEDGER_KEYED, LEDGER_STREAM, chain_hash,
    is_seal, with_hashed,
};
pub use foreign_writes::Epoch;
pub use users::{password_digest, registration_of};

/// Who caused an event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    #[default]
    User,
    Admin,
    System,
}

/// Recorded with every event of one append: the request that caused it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    /// Ours: a UUID v7 made for the request, the id its log lines carry.
    pub request_id: Option<String>,
    /// The `X-Request-Id` the client sent, when it was a printable one of at most 128 bytes:
    /// kept to correlate with the client's own logs, never taken for ours, since the client
    /// can write anything there. Absent in events written before it existed, and left out of
    /// the stored JSON when there is none, so those events' bytes (and hashes) are unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_request_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub actor: Actor,
    /// Set when read: why the event's personal fields show as `erased` (their data key was
    /// deleted: `forgotten`, `expired`). Never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erased: Option<String>,
}

/// An event on its way into the log: one of the domain's, stored as a body with its
/// personal fields sealed, or (the ledger's own `LedgerKeyed`) a JSON payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    pub event_type: &'static str,
    pub schema_version: i16,
    pub content: NewContent,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NewContent {
    Event(Event),
    Json(String),
}

impl From<&Event> for NewEvent {
    fn from(event: &Event) -> Self {
        NewEvent {
            event_type: event.event_type(),
            schema_version: event.schema_version(),
            content: NewContent::Event(event.clone()),
        }
    }
}

/// An event as the log holds it. Rows written since personal data is sealed keep it in
/// `body`, and their `payload` and `metadata` are empty as stored; a read fills them in, as
/// JSON, with the fields whose data key is gone as `erased` (see `body`). The hash covers
/// what is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedEvent {
    pub position: i64,
    pub stream_id: String,
    pub stream_version: i64,
    pub event_type: String,
    pub schema_version: i16,
    pub payload: String,
    pub metadata: String,
    pub body: Option<Vec<u8>>,
    pub recorded_at: Timestamp,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
    /// The event a read revealed from the body, so that it is not parsed again from JSON.
    pub revealed: Option<Event>,
}

impl RecordedEvent {
    pub fn decode(&self) -> Result<Event, DecodeError> {
        match &self.revealed {
            Some(event) => Ok(event.clone()),
            None => Event::decode(&self.event_type, self.schema_version, &self.payload),
        }
    }

    /// The user a `user-<id>` stream belongs to.
    pub fn user_id(&self) -> Option<UserId> {
        user_of_stream(&self.stream_id)
    }
}

/// What folding a projection needs of a logged event: no metadata, hashes or recording time,
/// which are most of a row. Replays at start-up read millions of these.
#[derive(Clone, Debug)]
pub struct EventPayload {
    pub position: i64,
    pub stream_id: String,
    pub stream_version: i64,
    pub event_type: String,
    pub schema_version: i16,
    /// JSON, for a row written before bodies (a row with a body leaves it empty).
    pub payload: String,
    pub body: Option<Vec<u8>>,
    /// The keys of its page, which open the body: the read only fetches them, so that the
    /// opening and decoding is done on the cores that fold (see `catch_up::fold_into`).
    pub keys: Option<Arc<PageKeys>>,
}

impl EventPayload {
    /// The event, for folding: its body opened with its page's keys, or its JSON.
    pub fn into_event(self) -> Result<Event, StoreError> {
        let position = self.position;
        let decoded = match self.body() {
            Some((place, body)) => self
                .keys
                .as_deref()
                .unwrap_or(&PageKeys::default())
                .open(&place, body)
                .map(|(event, _)| event),
            None => Event::decode(&self.event_type, self.schema_version, &self.payload),
        };
        decoded.map_err(|source| StoreError::Corrupt { position, source })
    }

    /// Whether the event changes a user's sessions: the others, a fold of the sessions
    /// counts without decoding them (and `read_payloads` does not open them).
    pub fn changes_sessions(&self) -> bool {
        data_keys::session_types(&self.event_type)
    }

    pub fn user_id(&self) -> Option<UserId> {
        user_of_stream(&self.stream_id)
    }
}

pub fn stream_of(user_id: UserId) -> String {
    format!("user-{user_id}")
}

pub fn user_of_stream(stream_id: &str) -> Option<UserId> {
    stream_id.strip_prefix("user-")?.parse().ok()
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer appended to the stream first; reload and decide again.
    #[error("stream {stream} is at version {actual}, not the expected {expected}")]
    Conflict {
        stream: String,
        expected: i64,
        actual: i64,
    },
    /// The append followed another of the same stream (`Appender::submit`'s `after`) that
    /// was not written, so it was not written either.
    #[error("stream {stream}: the append at version {expected} followed one that was not written")]
    Abandoned { stream: String, expected: i64 },
    #[error("the event store is shut down")]
    Closed,
    /// Shared: a failed group commit hands the one error to every append of its batch.
    #[error("database: {0}")]
    Database(#[source] Arc<sqlx::Error>),
    #[error("event at position {position}: {source}")]
    Corrupt { position: i64, source: DecodeError },
    /// A data key that does not open with the master key (see `data_keys`).
    #[error("{0}")]
    Keys(String),
}

/// Whether `store` takes writes: a SQLite file deleted or replaced under the server does not
/// (the same error its appends get), without a system call.
pub fn writable(store: &dyn EventStore) -> Result<(), StoreError> {
    match store.detached() {
        Some(why) => Err(detached_error(why).into()),
        None => Ok(()),
    }
}

/// The error of a write refused because the SQLite file was deleted or replaced (`why`).
pub(crate) fn detached_error(why: &str) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        why.to_owned(),
    ))
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        StoreError::Database(Arc::new(error))
    }
}

/// Counts of what reached the store, for tests and metrics: "rejected without touching the
/// store" is checked against these.
#[derive(Debug, Default)]
pub struct StoreStats {
    pub appends: AtomicU64,
    pub stream_reads: AtomicU64,
    /// How many appends shared each group commit.
    pub batches: BatchSizes,
    /// Events written, by type, in the order each type first appeared.
    appended_by_type: std::sync::Mutex<Vec<(&'static str, u64)>>,
}

/// A histogram of group-commit batch sizes in power-of-two buckets: 1, 2–3, 4–7, … 512.
#[derive(Debug, Default)]
pub struct BatchSizes {
    buckets: [AtomicU64; 10],
    appends: AtomicU64,
}

impl BatchSizes {
    pub fn record(&self, appends: usize) {
        let bucket = (usize::BITS - 1 - appends.max(1).leading_zeros()) as usize;
        self.buckets[bucket.min(9)].fetch_add(1, Ordering::Relaxed);
        self.appends.fetch_add(appends as u64, Ordering::Relaxed);
    }

    /// `(largest size of the bucket, batches)` for every bucket, smallest first.
    pub fn buckets(&self) -> Vec<(usize, u64)> {
        self.buckets
            .iter()
            .enumerate()
            .map(|(i, n)| ((2usize << i) - 1, n.load(Ordering::Relaxed)))
            .collect()
    }

    pub fn batches(&self) -> u64 {
        self.buckets.iter().map(|n| n.load(Ordering::Relaxed)).sum()
    }

    pub fn appends(&self) -> u64 {
        self.appends.load(Ordering::Relaxed)
    }
}

impl std::fmt::Display for BatchSizes {
    /// `1:12 3:40 7:3 …`, empty buckets left out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for (size, n) in self.buckets().into_iter().filter(|(_, n)| *n > 0) {
            write!(f, "{}≤{size}:{n}", if first { "" } else { " " })?;
            first = false;
        }
        Ok(())
    }
}

impl StoreStats {
    /// Counts events that are now durable; called once per group commit.
    pub fn record_written<'e>(&self, event_types: impl Iterator<Item = &'e NewEvent>) {
        let mut counts = self
            .appended_by_type
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for event in event_types {
            match counts.iter_mut().find(|(t, _)| *t == event.event_type) {
                Some((_, n)) => *n += 1,
                None => counts.push((event.event_type, 1)),
            }
        }
    }

    pub fn appended_by_type(&self) -> Vec<(&'static str, u64)> {
        self.appended_by_type
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn touches(&self) -> u64 {
        self.appends.load(Ordering::Relaxed) + self.stream_reads.load(Ordering::Relaxed)
    }
}

/// The keys a database is opened with, both kept outside it: `LEDGER_KEY` chains the events,
/// `PERSONAL_DATA_KEY` wraps the data keys their personal fields are sealed with.
#[derive(Clone, Debug)]
pub struct StoreKeys {
    pub ledger: KeyBytes,
    pub personal: KeyBytes,
}

impl StoreKeys {
    /// The keys of `config`, which `secrets::resolve` has filled in by now.
    pub fn of(config: &crate::config::Config) -> anyhow::Result<StoreKeys> {
        use anyhow::Context;
        let older = "(a database an older version made: run `tokenledger migrate` once)";
        Ok(StoreKeys {
            ledger: config.ledger.key.clone().with_context(|| {
                format!("LEDGER_KEY is not set, nor in DATA_DIR/secrets.json {older}")
            })?,
            personal: config.privacy.key.clone().with_context(|| {
                format!("PERSONAL_DATA_KEY is not set, nor in DATA_DIR/secrets.json {older}")
            })?,
        })
    }
}

/// A store error met while opening, as the opening's error.
fn keys_error(error: StoreError) -> sqlx::Error {
    match error {
        StoreError::Database(e) => {
            Arc::try_unwrap(e).unwrap_or_else(|e| sqlx::Error::Protocol(e.to_string()))
        }
        other => sqlx::Error::Configuration(other.to_string().into()),
    }
}

/// The event store and users table behind a `DATABASE_URL`.
pub struct Opened {
    pub events: Arc<dyn EventStore>,
    pub users: users::UserStore,
    pub ledger: Arc<dyn LedgerStore>,
    pub personal: Arc<dyn data_keys::PersonalData>,
    /// What the mailer reads and appends.
    pub mail: Arc<dyn mail_log::MailLog>,
    /// The projection's snapshots (see `crate::snapshots`).
    pub snapshots: Arc<dyn snapshots::SnapshotStore>,
    /// What opening did to a log written before the ledger key.
    pub upgrade: Upgrade,
    /// Set on PostgreSQL: the pool, for a `LISTEN` on new events.
    pub postgres: Option<sqlx::PgPool>,
}

/// Opens (and migrates) the database at `url`.
/// With `existing`, a SQLite file that is not there is an error, not a new, empty log.
pub async fn open(
    url: &DatabaseUrl,
    existing: bool,
    keys: &StoreKeys,
    upgrading: Upgrading,
) -> Result<Opened, sqlx::Error> {
    let url = match url {
        DatabaseUrl::Postgres(url) => {
            let db = postgres::PgDatabase::open(url, keys).await?;
            return Ok(Opened {
                upgrade: upgrade(&db, upgrading).await?,
                events: Arc::new(postgres::PostgresEventStore::start(db.clone())),
                users: Arc::new(db.clone()),
                ledger: Arc::new(db.clone()),
                personal: Arc::new(db.clone()),
                mail: Arc::new(db.clone()),
                snapshots: Arc::new(db.clone()),
                postgres: Some(db.pool),
            });
        }
        DatabaseUrl::Sqlite(url) => url,
    };
    let db = if existing {
        sqlite::Database::open_existing(url, keys).await?
    } else {
        sqlite::Database::open(url, keys).await?
    };
    Ok(Opened {
        upgrade: upgrade(&db, upgrading).await?,
        events: Arc::new(sqlite::SqliteEventStore::start(db.clone())),
        users: Arc::new(db.clone()),
        ledger: Arc::new(db.clone()),
        personal: Arc::new(db.clone()),
        mail: Arc::new(db.clone()),
        snapshots: Arc::new(db),
        postgres: None,
    })
}

/// Seals a log written before the ledger key, once; see `store::ledger::Upgrade`.
async fn upgrade(ledger: &dyn LedgerStore, upgrading: Upgrading) -> Result<Upgrade, sqlx::Error> {
    let upgrade = ledger.upgrade(upgrading).await.map_err(|e| match e {
        StoreError::Database(e) => {
            Arc::try_unwrap(e).unwrap_or_else(|e| sqlx::Error::Protocol(e.to_string()))
        }
        other => sqlx::Error::Protocol(other.to_string()),
    })?;
    match &upgrade {
        Upgrade::Sealed {
            legacy_events,
            users,
        } => tracing::warn!(
            legacy_events,
            users,
            "sealed the {legacy_events} events written before the ledger key with a LedgerKeyed event, and recorded the {users} users rows with a UserRegistered each; new events are keyed"
        ),
        Upgrade::Rebuilt => tracing::warn!(
            "the ledger's tree was missing from a keyed log; it is rebuilt from the events"
        ),
        Upgrade::None | Upgrade::Started => {}
    }
    Ok(upgrade)
}

/// How many events `read_all` fetches per page.
pub(crate) const PAGE: i64 = 10_000;

/// `read_all` for every backend: the events after `after_position`, read a page of `PAGE`
/// at a time by `read` and finished (their bodies revealed) by `finish`, flattened into one
/// stream that ends after the first short page. A task reads ahead while the pages before
/// are finished and consumed, so that a replay reads rows, reads their keys and folds at
/// once; it stops when the stream is dropped.
fn paged<T, F, Fut, G, Gut>(
    after_position: i64,
    read: F,
    finish: G,
    position: fn(&T) -> i64,
) -> BoxStream<'static, Result<T, StoreError>>
where
    T: Send + 'static,
    F: Fn(i64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Vec<T>, StoreError>> + Send + 'static,
    G: Fn(Vec<T>) -> Gut + Send + Sync + 'static,
    Gut: std::future::Future<Output = Result<Vec<T>, StoreError>> + Send + 'static,
{
    use futures::stream::{self, StreamExt};
    let (pages, received) = tokio::sync::mpsc::channel(2);
    tokio::spawn(async move {
        let mut after = after_position;
        loop {
            let (finishing, last) = match read(after).await {
                Ok(events) => {
                    let last = match events.len() as i64 == PAGE {
                        true => events.last().map(position),
                        false => None,
                    };
                    (tokio::spawn(finish(events)), last)
                }
                Err(error) => (tokio::spawn(async { Err(error) }), None),
            };
            if pages.send(finishing).await.is_err() {
                return;
            }
            match last {
                Some(position) => after = position,
                None => return,
            }
        }
    });
    stream::unfold(received, |mut received| async move {
        let finishing = received.recv().await?;
        let page = finishing.await.unwrap_or(Err(StoreError::Closed));
        Some((page, received))
    })
    .flat_map(|page| match page {
        Ok(events) => stream::iter(events.into_iter().map(Ok)).left_stream(),
        Err(error) => stream::iter(vec![Err(error)]).right_stream(),
    })
    .boxed()
}

#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` to `stream` if its last version is `expected_version` (0: the stream
    /// is new). Answers after the events are durable, with their positions.
    async fn append(
        &self,
        stream: &str,
        expected_version: i64,
        events: Vec<NewEvent>,
        metadata: &EventMetadata,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Queues an append as `append` does, at once and behind every append queued before this
    /// call, and returns without waiting for its answer (`Submitted::outcome`). With `after`
    /// (the landing of an earlier append of the same stream, still in flight, whose events
    /// this one was decided on), it is written only if that one is; otherwise it fails as
    /// `Abandoned`.
    fn submit(
        &self,
        stream: &str,
        expected_version: i64,
        events: Vec<NewEvent>,
        metadata: &EventMetadata,
        after: Option<Arc<Landing>>,
    ) -> Submitted;

    /// The events of `stream` with a version above `after_version`, in order.
    async fn read_stream(
        &self,
        stream: &str,
        after_version: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// At most `limit` events of `stream` with a position above `after_position`, in order:
    /// a page of a long trail, found through the index rather than by reading the stream
    /// from its start.
    async fn read_stream_page(
        &self,
        stream: &str,
        after_position: i64,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Every event with a position above `after_position`, in position order, read in pages.
    fn read_all(
        &self,
        after_position: i64,
    ) -> BoxStream<'static, Result<RecordedEvent, StoreError>>;

    /// `read_all` without the catch-up horizon: every event committed when its page is read.
    /// For `verify`, which must see an event an insider moved above PostgreSQL's horizon by
    /// editing its transaction id; on SQLite the same as `read_all`.
    fn read_committed(
        &self,
        after_position: i64,
    ) -> BoxStream<'static, Result<RecordedEvent, StoreError>>;

    /// `read_all` with only what folding needs (see `EventPayload`): the sealed sections of
    /// the events that change no session (`EventPayload::changes_sessions`) are not opened.
    fn read_payloads(
        &self,
        after_position: i64,
    ) -> BoxStream<'static, Result<EventPayload, StoreError>>;

    /// How many events the log holds.
    async fn count(&self) -> Result<i64, StoreError>;

    /// The position of the newest event (0 for an empty log).
    async fn head(&self) -> Result<i64, StoreError>;

    fn stats(&self) -> &StoreStats;

    /// Why every write is refused until a restart, if it is: the SQLite file was deleted or
    /// replaced under the server (see `database_file`).
    fn detached(&self) -> Option<&str> {
        None
    }

    /// The count of other processes' writes seen so far (see `foreign_writes`): noted just
    /// before a read of a stream's tail, the epoch that tail is current at.
    fn epoch(&self) -> Epoch;

    /// Whether another process may have written to the log since `epoch`, by a look that
    /// starts after this call: if not, a stream read at `epoch` is still its tail. Always
    /// true on PostgreSQL, where other instances write all the time and the only look is a
    /// read of the stream.
    async fn written_elsewhere_since(&self, epoch: Epoch) -> bool;

    /// Flushes pending appends and closes the connections.
    async fn close(&self);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_batches_of_several_sizes_then_each_lands_in_its_power_of_two_bucket() {
        let sizes = BatchSizes::default();
        for n in [1, 2, 3, 4, 64, 512, 600] {
            sizes.record(n);
        }
        let buckets = sizes.buckets();
        assert_eq!(buckets[0], (1, 1));
        assert_eq!(buckets[1], (3, 2), "2 and 3");
        assert_eq!(buckets[2], (7, 1));
        assert_eq!(buckets[6], (127, 1), "64");
        assert_eq!(buckets[9], (1023, 2), "512, and more in the last bucket");
        assert_eq!((sizes.batches(), sizes.appends()), (7, 1186));
        assert_eq!(sizes.to_string(), "≤1:1 ≤3:2 ≤7:1 ≤127:1 ≤1023:2");
    }
}
