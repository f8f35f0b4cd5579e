//! The `data_keys` table: one data key per owner (a stream, `user-<id>`) and period (see
//! `sealed`), stored wrapped by the master key. A deleted key keeps its row, with no key in it
//! and the reason (`forgotten`, `expired`), so that a reader can say why a field reads as
//! erased, and a writer never makes a new key for an owner who was forgotten. The keyring
//! (`keyring`) caches what is read here; revealing an event's body takes both.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{ColumnIndex, Database, Encode, Executor, IntoArguments, Row as _, Type};
use tokenledger_domain::Timestamp;

use super::body::{self, KeyState, Place};
use super::dialect::{Conn, Dialect, Value, query};
use super::keyring::{
    BatchKeys, CACHE_LIMIT, EXPIRED, FORGOTTEN, Keyring, Known, MISSING, Slot, undecryptable,
};
use super::sealed::ACCOUNT_PERIOD;
use super::{EventMetadata, EventPayload, RecordedEvent, StoreError};
use tokenledger_domain::{DecodeError, Event, SESSION_EVENTS};

impl Keyring {
    /// What the cache knows of `slots` once the ones it lacks are read from `db`'s table.
    pub async fn for_reading<D: KeyTable>(
        &self,
        db: &D,
        slots: HashSet<Slot>,
    ) -> Result<HashMap<Slot, Known>, StoreError> {
        let mut found = HashMap::with_capacity(slots.len());
        let mut owners = HashSet::new();
        {
            let cache = self.cache();
            for slot in slots.iter() {
                match cache.get(slot) {
                    Some(known) => drop(found.insert(slot.clone(), known.clone())),
                    None => drop(owners.insert(slot.0.clone())),
                }
            }
        }
        if owners.is_empty() {
            return Ok(found);
        }
        let owners: Vec<String> = owners.into_iter().collect();
        let rows = db.rows_of(&owners).await?;
        let mut read = HashMap::with_capacity(rows.len());
        for (owner, period, wrapped, erased) in rows {
            // An owner's other periods are read too, not unwrapped: a replay asks for most
            // keys once, and the unwrapping was a tenth of it.
            let slot = (owner, period);
            if slots.contains(&slot) {
                let known = self.known(&slot.0, period, wrapped, erased)?;
                read.insert(slot, known);
            }
        }
        let mut cache = self.cache();
        if cache.len() + read.len() > CACHE_LIMIT {
            cache.clear();
        }
        for slot in slots {
            if found.contains_key(&slot) {
                continue;
            }
            let known = read
                .remove(&slot)
                .unwrap_or_else(|| Known::Gone(MISSING.into()));
            if matches!(known, Known::Key(_)) {
                cache.insert(slot.clone(), known.clone());
            }
            found.insert(slot, known);
        }
        Ok(found)
    }

    /// The keys to seal `slots` with, inside the writer's transaction on `conn`: cached, read,
    /// or made and inserted. A slot whose key was deleted gets none: its fields are not
    /// stored.
    pub async fn for_writing<D: KeyTable>(
        &self,
        conn: &mut Conn<D>,
        slots: HashSet<Slot>,
    ) -> Result<BatchKeys, sqlx::Error>
    where
        for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
        <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    {
        let mut batch = BatchKeys::default();
        let mut wanted = Vec::new();
        {
            let cache = self.cache();
            for slot in slots {
                match cache.get(&slot) {
                    Some(Known::Key(key)) => drop(batch.keys.insert(slot, key.clone())),
                    _ => wanted.push(slot),
                }
            }
        }
        for (owner, period) in wanted {
            let key = match D::row_in(conn, &owner, period).await? {
                Some((Some(wrapped), _)) => Some(
                    self.0
                        .master
                        .unwrap(&owner, period, &wrapped)
                        .ok_or_else(|| {
                            sqlx::Error::Protocol(undecryptable(&owner, period).to_string())
                        })?,
                ),
                Some((None, _)) => None,
                None if forgotten::<D>(conn, &owner).await? => None,
                None => {
                    let (key, wrapped) = self.0.master.generate(&owner, period);
                    D::insert_in(conn, &owner, period, &wrapped).await?;
                    batch.made.push(((owner.clone(), period), key.clone()));
                    Some(key)
                }
            };
            if let Some(key) = key {
                batch.keys.insert((owner, period), key);
            }
        }
        Ok(batch)
    }

    /// Checks that the master key opens the database's keys (one of them): a server started
    /// with another `PERSONAL_DATA_KEY` would otherwise seal new events under new keys and
    /// read every older one as erased.
    pub async fn check<D: KeyTable>(&self, db: &D) -> Result<(), StoreError> {
        match db.any_row().await? {
            Some((owner, period, wrapped)) => self
                .0
                .master
                .unwrap(&owner, period, &wrapped)
                .map(drop)
                .ok_or_else(|| undecryptable(&owner, period)),
            None => Ok(()),
        }
    }
}

/// When a key was deleted, as stored: RFC 3339 text, microseconds.
fn stored_time(at: Timestamp) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The keys that open the sealed sections of a page of read events, read once for the page,
/// by owner then period: looked up by the owner's text as it is, with no copy an event.
#[derive(Debug, Default)]
pub struct PageKeys(HashMap<String, Vec<(i64, Known)>>);

impl PageKeys {
    fn of(keys: HashMap<Slot, Known>) -> PageKeys {
        let mut by_owner: HashMap<String, Vec<(i64, Known)>> = HashMap::new();
        for ((owner, period), known) in keys {
            by_owner.entry(owner).or_default().push((period, known));
        }
        PageKeys(by_owner)
    }

    /// The event and metadata of `body`, stored at `place`; a field whose key is gone reads
    /// as `erased`.
    pub fn open(&self, place: &Place, body: &[u8]) -> Result<(Event, EventMetadata), DecodeError> {
        let periods = self.0.get(place.stream_id).map_or(&[][..], Vec::as_slice);
        body::decode(place, body, |period| {
            match periods.iter().find(|(p, _)| *p == period) {
                Some((_, Known::Key(key))) => KeyState::Open(key),
                Some((_, Known::Gone(why))) => KeyState::Gone(why),
                None => KeyState::Gone(MISSING),
            }
        })
    }
}

/// A read event whose body is revealed with its page's keys.
pub trait Revealable {
    /// Where it sits and its body, if it has one.
    fn body(&self) -> Option<(Place<'_>, &[u8])>;
    fn position(&self) -> i64;
    /// Whether the JSON columns are empty as stored, as a row with a body must have them.
    fn json_is_empty(&self) -> bool;
    /// Takes the page's keys: reveals the body at once, or keeps them to reveal it where the
    /// work is spread over the cores (`EventPayload::into_event`).
    fn take_keys(&mut self, keys: &Arc<PageKeys>);
}

/// A stored event's body with where it sits.
fn placed<'a>(
    stream_id: &'a str,
    stream_version: i64,
    event_type: &'a str,
    body: &'a Option<Vec<u8>>,
) -> Option<(Place<'a>, &'a [u8])> {
    let place = Place {
        stream_id,
        stream_version,
        event_type,
    };
    body.as_deref().map(|body| (place, body))
}

impl Revealable for RecordedEvent {
    fn body(&self) -> Option<(Place<'_>, &[u8])> {
        placed(
            &self.stream_id,
            self.stream_version,
            &self.event_type,
            &self.body,
        )
    }

    fn position(&self) -> i64 {
        self.position
    }

    fn json_is_empty(&self) -> bool {
        self.payload.is_empty() && self.metadata.is_empty()
    }

    fn take_keys(&mut self, keys: &Arc<PageKeys>) {
        // A body that does not decode (edited behind the service's back) stays unrevealed:
        // decoding the event then fails at its position, and `verify`'s chain names it.
        let Some(Ok((event, metadata))) = self.body().map(|(place, body)| keys.open(&place, body))
        else {
            return;
        };
        self.payload = event.payload();
        self.metadata = serde_json::to_string(&metadata).expect("metadata is plain strings");
        self.revealed = Some(event);
    }
}

impl Revealable for EventPayload {
    fn body(&self) -> Option<(Place<'_>, &[u8])> {
        placed(
            &self.stream_id,
            self.stream_version,
            &self.event_type,
            &self.body,
        )
    }

    fn position(&self) -> i64 {
        self.position
    }

    fn json_is_empty(&self) -> bool {
        self.payload.is_empty()
    }

    fn take_keys(&mut self, keys: &Arc<PageKeys>) {
        self.keys = Some(keys.clone());
    }
}

/// The slots whose keys open the sections of the events of `events` of the types `wanted`.
fn wanted_slots<D: KeyTable, T: Revealable>(db: &D, events: &[T], wanted: Wanted) -> HashSet<Slot> {
    // Another instance forgot a user: its cached keys go the moment a reader (the catch-up
    // reader, at the latest) passes the `UserForgotten`.
    for (place, _) in events.iter().filter_map(|e| e.body()) {
        if place.event_type == "UserForgotten" {
            db.keyring().evict(Some(place.stream_id), None);
        }
    }
    events
        .iter()
        .filter_map(|e| e.body())
        .filter(|(place, _)| wanted(place.event_type))
        .flat_map(|(place, body)| {
            let owner = place.stream_id.to_owned();
            body::sealed_periods(body)
                .into_iter()
                .map(move |period| (owner.clone(), period))
        })
        .collect()
}

/// Which events' sealed sections a read opens, by type: every one, or only those a fold of
/// the sessions decodes (`SESSION_EVENTS`); the others' personal fields read as erased.
pub type Wanted = fn(&str) -> bool;

pub fn every_type(_: &str) -> bool {
    true
}

pub fn session_types(event_type: &str) -> bool {
    SESSION_EVENTS.contains(&event_type)
}

/// Reveals every event of `events` that has a body with the keys of `db`'s keyring (see
/// `Revealable::take_keys`), opening the sections of the types `wanted`. A row with JSON
/// beside its body is no event the service wrote, and an error.
pub async fn reveal<D: KeyTable, T: Revealable>(
    db: &D,
    events: &mut [T],
    wanted: Wanted,
) -> Result<(), StoreError> {
    if let Some(stray) = events
        .iter()
        .find(|e| e.body().is_some() && !e.json_is_empty())
    {
        let event_type = stray.body().map(|(place, _)| place.event_type.to_owned());
        return Err(StoreError::Corrupt {
            position: stray.position(),
            source: DecodeError::Compact {
                event_type: event_type.unwrap_or_default(),
                reason: "a row with a body has JSON in its payload or metadata too".into(),
            },
        });
    }
    let slots = wanted_slots(db, events, wanted);
    let keys = match slots.is_empty() {
        true => Arc::default(),
        false => Arc::new(PageKeys::of(db.keyring().for_reading(db, slots).await?)),
    };
    let none = Arc::default();
    for event in events.iter_mut() {
        let wanted = event
            .body()
            .is_some_and(|(place, _)| wanted(place.event_type));
        event.take_keys(if wanted { &keys } else { &none });
    }
    Ok(())
}

/// Whether `owner` was forgotten: its account's key row says so (`forget_in` makes one).
async fn forgotten<D: KeyTable>(conn: &mut Conn<D>, owner: &str) -> Result<bool, sqlx::Error>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
{
    let account = D::row_in(conn, owner, ACCOUNT_PERIOD).await?;
    Ok(matches!(account, Some((None, Some(why))) if why == FORGOTTEN))
}

/// A row of `data_keys` as read: owner, period, the wrapped key (none once deleted) and why
/// it was deleted.
type KeyRow = (String, i64, Option<Vec<u8>>, Option<String>);

/// The `data_keys` table of a dialect's database.
#[async_trait]
pub trait KeyTable: Dialect {
    /// Every row of these owners.
    async fn rows_of(&self, owners: &[String]) -> Result<Vec<KeyRow>, StoreError>;
    async fn any_row(&self) -> Result<Option<(String, i64, Vec<u8>)>, StoreError>;

    /// The row of one slot, in the writer's transaction.
    async fn row_in(
        conn: &mut Conn<Self>,
        owner: &str,
        period: i64,
    ) -> Result<Option<(Option<Vec<u8>>, Option<String>)>, sqlx::Error>;
    async fn insert_in(
        conn: &mut Conn<Self>,
        owner: &str,
        period: i64,
        wrapped: &[u8],
    ) -> Result<(), sqlx::Error>;

    /// Deletes every key of `owner`, in the caller's transaction.
    async fn forget_in(
        conn: &mut Conn<Self>,
        owner: &str,
        at: Timestamp,
    ) -> Result<u64, sqlx::Error>;

    /// Deletes the keys of every period up to `through` (never an account's own key).
    async fn expire_through(&self, through: i64, at: Timestamp) -> Result<u64, StoreError>;

    /// Leaves no copy of what was deleted in the files (`Dialect::SCRUB`): tried for about a
    /// second, then logged and left to the database's own next checkpoint or vacuum.
    async fn scrub(&self);
}

#[async_trait]
impl<D: Dialect> KeyTable for D
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    for<'a> &'a str: Encode<'a, D::Db> + Type<D::Db>,
    i64: Value<D::Db>,
    String: Value<D::Db>,
    Vec<u8>: Value<D::Db>,
    Option<String>: Value<D::Db>,
    Option<Vec<u8>>: Value<D::Db>,
    usize: ColumnIndex<super::dialect::Row<D>>,
{
    async fn rows_of(&self, owners: &[String]) -> Result<Vec<KeyRow>, StoreError> {
        let mut rows = Vec::new();
        for chunk in owners.chunks(500) {
            let sql = format!(
                "SELECT owner, period, wrapped, erased FROM data_keys WHERE owner IN ({})",
                vec!["?"; chunk.len()].join(", ")
            );
            let query = chunk
                .iter()
                .fold(query::<D>(&sql), |query, owner| query.bind(owner.as_str()));
            for row in query.fetch_all(self.reader()).await? {
                rows.push((
                    row.try_get(0)?,
                    row.try_get(1)?,
                    row.try_get(2)?,
                    row.try_get(3)?,
                ));
            }
        }
        Ok(rows)
    }

    async fn any_row(&self) -> Result<Option<(String, i64, Vec<u8>)>, StoreError> {
        let row = query::<D>(
            "SELECT owner, period, wrapped FROM data_keys WHERE wrapped IS NOT NULL LIMIT 1",
        )
        .fetch_optional(self.reader())
        .await?;
        Ok(match row {
            Some(row) => Some((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)),
            None => None,
        })
    }

    async fn row_in(
        conn: &mut Conn<Self>,
        owner: &str,
        period: i64,
    ) -> Result<Option<(Option<Vec<u8>>, Option<String>)>, sqlx::Error> {
        let row =
            query::<D>("SELECT wrapped, erased FROM data_keys WHERE owner = ? AND period = ?")
                .bind(owner)
                .bind(period)
                .fetch_optional(&mut *conn)
                .await?;
        Ok(match row {
            Some(row) => Some((row.try_get(0)?, row.try_get(1)?)),
            None => None,
        })
    }

    async fn insert_in(
        conn: &mut Conn<Self>,
        owner: &str,
        period: i64,
        wrapped: &[u8],
    ) -> Result<(), sqlx::Error> {
        query::<D>("INSERT INTO data_keys (owner, period, wrapped) VALUES (?, ?, ?)")
            .bind(owner)
            .bind(period)
            .bind(wrapped.to_vec())
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    async fn forget_in(
        conn: &mut Conn<Self>,
        owner: &str,
        at: Timestamp,
    ) -> Result<u64, sqlx::Error> {
        // Periods of the owner that never had a key get a row too, for the account's: a
        // writer racing the forgetting must not make one.
        query::<D>(
            "INSERT INTO data_keys (owner, period, wrapped) VALUES (?, ?, NULL) \
             ON CONFLICT (owner, period) DO NOTHING",
        )
        .bind(owner)
        .bind(ACCOUNT_PERIOD)
        .execute(&mut *conn)
        .await?;
        let done = query::<D>(
            "UPDATE data_keys SET wrapped = NULL, erased = ?, erased_at = ? \
             WHERE owner = ? AND (wrapped IS NOT NULL OR erased IS NULL) RETURNING period",
        )
        .bind(FORGOTTEN)
        .bind(stored_time(at))
        .bind(owner)
        .fetch_all(&mut *conn)
        .await?;
        // The projection's snapshots hold the owner's sessions under the master key, not the
        // owner's: they go with the keys (the next start folds the whole log).
        query::<D>("DELETE FROM snapshots")
            .execute(&mut *conn)
            .await?;
        Ok(done.len() as u64)
    }

    async fn scrub(&self) {
        for statement in D::SCRUB {
            let mut tries = 0;
            loop {
                tries += 1;
                let done = query::<D>(statement).fetch_all(self.writer()).await;
                let busy = match &done {
                    Ok(rows) => rows
                        .first()
                        .and_then(|row| row.try_get::<i64, _>(0).ok())
                        .is_some_and(|first| first == 1),
                    Err(_) => true,
                };
                if !busy {
                    break;
                }
                if tries == 20 {
                    tracing::warn!(statement, error = ?done.err(), "could not scrub the deleted data keys from the files yet; the next checkpoint or vacuum will");
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }

    async fn expire_through(&self, through: i64, at: Timestamp) -> Result<u64, StoreError> {
        let done = query::<D>(
            "UPDATE data_keys SET wrapped = NULL, erased = ?, erased_at = ? \
             WHERE period <> ? AND period <= ? AND wrapped IS NOT NULL RETURNING period",
        )
        .bind(EXPIRED)
        .bind(stored_time(at))
        .bind(ACCOUNT_PERIOD)
        .bind(through)
        .fetch_all(self.writer())
        .await?;
        if !done.is_empty() {
            // As when a user is forgotten: snapshots may hold what the keys sealed.
            query::<D>("DELETE FROM snapshots")
                .execute(self.writer())
                .await?;
        }
        Ok(done.len() as u64)
    }
}

/// What the service does with data keys besides sealing and reading: retention.
#[async_trait]
pub trait PersonalData: Send + Sync + 'static {
    /// Deletes the keys of every period up to `through` (never an account's own), at `at`,
    /// and forgets them from the cache; how many were deleted.
    async fn expire(&self, through: i64, at: Timestamp) -> Result<u64, StoreError>;
}

#[async_trait]
impl<D: KeyTable> PersonalData for D {
    async fn expire(&self, through: i64, at: Timestamp) -> Result<u64, StoreError> {
        let expired = self.expire_through(through, at).await?;
        self.keyring().evict(None, Some(through));
        if expired > 0 {
            self.scrub().await;
        }
        Ok(expired)
    }
}
