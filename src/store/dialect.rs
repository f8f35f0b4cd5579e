//! What differs between the databases the store runs on, and nothing else: SQL text and
//! placeholders, how a moment is stored, the catch-up filter, how a batch's transaction starts
//! and whether another writer can race it, and the hooks of SQLite's watched file and of the
//! other processes' commits to it. The event and user stores are written once over this trait
//! (`events`, `users`); `sqlite` and `postgres` implement it, with each database's connection
//! set-up.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::{Database, Decode, Encode, Pool, Type};

use super::chain::ChainKey;
use super::foreign_writes::ForeignWrites;
use super::keyring::Keyring;

/// A Rust type the store both binds and reads on `DB`: one bound instead of four.
pub trait Value<DB: Database>:
    for<'q> Encode<'q, DB> + Type<DB> + for<'r> Decode<'r, DB> + Send + Sync
{
}

impl<DB: Database, T> Value<DB> for T where
    T: for<'q> Encode<'q, DB> + Type<DB> + for<'r> Decode<'r, DB> + Send + Sync
{
}

/// A statement of dialect `D` with its arguments bound (binding encodes at once, so the
/// query borrows nothing).
pub type Query<D> =
    sqlx::query::Query<'static, <D as Dialect>::Db, <<D as Dialect>::Db as Database>::Arguments>;

/// A row of dialect `D`'s database.
pub type Row<D> = <<D as Dialect>::Db as Database>::Row;
/// A connection of dialect `D`'s database.
pub type Conn<D> = <<D as Dialect>::Db as Database>::Connection;

/// One database's side of the store. The handle that implements it is the database opened:
/// its pools and, on SQLite, the watched file.
pub trait Dialect: Clone + Send + Sync + 'static {
    type Db: Database;
    /// How `recorded_at` is stored: RFC 3339 text on SQLite, `timestamptz` on PostgreSQL.
    type Time: Value<Self::Db>;

    /// Opens the transaction of a batch or of a change of the users table (with its event).
    const BEGIN: &'static str;
    /// Run first in a registration's transaction where `BEGIN` alone does not keep other
    /// writers out between the check for a taken name and the insert.
    const LOCK_USERS: Option<&'static str>;
    /// Run first in the transaction of the ledger's one-time upgrade, to keep every other
    /// writer out of `events` while it is sealed (PostgreSQL; `BEGIN` does it on SQLite).
    const LOCK_EVENTS: Option<&'static str>;
    /// Run first in the transaction of a tree extension, so that one runs at a time.
    const LEDGER_LOCK: Option<&'static str>;
    /// Whether another writer can insert a stream's next version between our read of its
    /// head and our insert (other instances on PostgreSQL; SQLite's `BEGIN IMMEDIATE` locks
    /// them out). Then each attempt runs under a savepoint and a lost race is planned again.
    const RACING_WRITERS: bool;
    /// Whether the connection of a failed batch is closed rather than reused.
    const FRESH_CONNECTION_AFTER_FAILURE: bool;
    /// The longest a batch's transaction, or an actor's read of its stream, may take before
    /// it is abandoned and answered with an error: a database over a network may stop
    /// answering without the connection failing (a partition), and nothing else would end
    /// the wait — of the request, and of every command behind it in the actor. An abandoned
    /// batch may still have committed (its answer lost on the way back).
    const DEADLINE: Option<std::time::Duration>;
    /// The placeholder of a JSON value in an insert (empty text: no JSON, the row has a body).
    const JSON_PARAMETER: &'static str;
    /// Run after data keys or a users row were deleted, so that no copy of them stays in the
    /// database's files: SQLite empties its WAL (whose old frames a checkpoint leaves in
    /// place), PostgreSQL vacuums the two tables (a deleted row stays in its page until
    /// then). A statement answering a first column of 1 was kept from finishing (SQLite: a
    /// reader in the way) and is run again.
    const SCRUB: &'static [&'static str];
    /// The condition a catch-up page adds to `position > ?`.
    const CATCH_UP: &'static str;
    /// What an insert of a users row with its id given (an import) says between its columns
    /// and its values, where the database would otherwise refuse to take an id.
    const GIVEN_ID: &'static str;
    /// Run after such an insert, so that the next registration's id is above every id
    /// given (SQLite's `AUTOINCREMENT` does so by itself).
    const AFTER_GIVEN_IDS: Option<&'static str>;

    /// The pool reads go to.
    fn reader(&self) -> &Pool<Self::Db>;
    /// The pool writes go to.
    fn writer(&self) -> &Pool<Self::Db>;
    /// The pool the group commit's batches go to: `writer` unless the database takes
    /// writers side by side, when the batches' own, so that other writes (registrations
    /// waiting on the users table's lock) cannot keep them waiting for a connection.
    fn batch_writer(&self) -> &Pool<Self::Db> {
        self.writer()
    }

    /// The ledger key new events are chained with.
    fn chain(&self) -> &ChainKey;

    /// The data keys personal fields are sealed with.
    fn keyring(&self) -> &Keyring;

    /// A JSON column read back as text (empty for a row with a body).
    fn json_text(column: &str) -> String;

    /// `sql`, written with `?` and `?N` placeholders, in this dialect's.
    fn placeholders(sql: &str) -> String;

    /// The statements that read the heads of `streams`, each a row of `(stream_id,
    /// stream_version, hash)` for a stream that has events.
    fn heads(streams: &[&str]) -> Vec<Query<Self>>;

    /// A batch's recording time as stored (see `appender::recording_time`).
    fn stored_time(recorded: &(DateTime<Utc>, String)) -> Self::Time;
    fn read_time(stored: Self::Time) -> Result<DateTime<Utc>, sqlx::Error>;

    /// Refuses a batch before it starts, when writes are refused for good (`detached`).
    fn refuse_writes(&self) -> Result<(), sqlx::Error> {
        Ok(())
    }

    /// Checked after a batch commits, with its connection still held, before any append of
    /// it is answered.
    fn check_committed(&self) -> Result<(), sqlx::Error> {
        Ok(())
    }

    /// Why every write is refused until a restart, if it is (see `EventStore::detached`).
    fn detached(&self) -> Option<&str> {
        None
    }

    /// Where other processes' commits can be noticed without reading the events (SQLite's
    /// `data_version`); `None` where any read may meet another writer's events (PostgreSQL).
    fn foreign_writes(&self) -> Option<&Arc<ForeignWrites>> {
        None
    }
}

/// `sql`, written with `?` placeholders, as a statement of dialect `D`.
pub(crate) fn query<D: Dialect>(sql: &str) -> Query<D> {
    sqlx::query(sqlx::AssertSqlSafe(D::placeholders(sql)))
}

/// Reads a moment stored as RFC 3339 text (every user timestamp; events' on SQLite).
pub(crate) fn rfc3339(text: &str) -> Result<DateTime<Utc>, sqlx::Error> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// Placeholders as PostgreSQL writes them: `?` → `$1`, `$2`, … in order, and `?N` → `$N`
/// (no statement here has a `?` inside a literal).
pub(crate) fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '?' {
            out.push(c);
            continue;
        }
        out.push('$');
        if chars.peek().is_some_and(char::is_ascii_digit) {
            while let Some(digit) = chars.next_if(char::is_ascii_digit) {
                out.push(digit);
            }
        } else {
            n += 1;
            out.push_str(&n.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::numbered;

    #[test]
    fn placeholders_are_numbered_in_order_and_numbered_ones_kept() {
        assert_eq!(
            numbered("SELECT ? WHERE a = ? AND b IN (?)"),
            "SELECT $1 WHERE a = $2 AND b IN ($3)"
        );
        assert_eq!(
            numbered("WHERE s = ?1 AND p = ?2 OR s = ?1 LIMIT ?3"),
            "WHERE s = $1 AND p = $2 OR s = $1 LIMIT $3"
        );
    }
}
