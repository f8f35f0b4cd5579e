//! Appending, inside a transaction of its own, the event a change of the users table writes
//! (the row and the event that explains it commit together or not at all, so the table stays
//! the fold of the log: `users_explained`), or the ledger's seal. The events are planned,
//! chained and inserted by the appender's own steps (`EventTable::try_insert`), at each
//! stream's head as read inside that transaction.

use sqlx::{Database, Executor, IntoArguments};
use tokenledger_domain::{Event, UserId};

use super::appender::{AppendRequest, Heads, Sealing, recording_time, slots};
use super::chain::ChainKey;
use super::dialect::Conn;
use super::events::{EventTable, MAX_ATTEMPTS};
use super::keyring::Keyring;
use super::{EventMetadata, NewEvent, stream_of};

/// A user's event, as `append_in` takes it.
pub(crate) fn of_user(user: UserId, event: &Event) -> (String, NewEvent) {
    (stream_of(user), NewEvent::from(event))
}

/// Appends each event at the head of its stream (one event a stream), on `conn`, inside the
/// caller's transaction. On SQLite the transaction is `BEGIN IMMEDIATE`: nobody writes
/// between the read of the heads and the insert. On PostgreSQL another instance's appender
/// may take a stream's next version first; the events are then planned again from the new
/// heads: the change the caller makes is decided already and must not fail for that.
pub(crate) async fn append_in<D>(
    conn: &mut Conn<D>,
    chain: &ChainKey,
    keyring: &Keyring,
    appends: &[(String, NewEvent)],
    metadata: &EventMetadata,
) -> Result<(), sqlx::Error>
where
    D: EventTable,
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
{
    let names: Vec<&str> = appends.iter().map(|(stream, _)| stream.as_str()).collect();
    let mut distinct = names.clone();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() != names.len() {
        return Err(sqlx::Error::Protocol(
            "two events of one stream in one append".into(),
        ));
    }
    let recorded = recording_time();
    // Keys made here are not cached: the caller's transaction may still roll back.
    let everything = requests(appends, &Heads::new(), metadata);
    let keys = keyring.for_writing::<D>(conn, slots(&everything)).await?;
    let sealing = Sealing { chain, keys: &keys };
    for attempt in 1.. {
        let heads = D::read_heads(conn, &names).await?;
        let batch = requests(appends, &heads, metadata);
        let retry = attempt < MAX_ATTEMPTS;
        if D::try_insert(conn, &sealing, &batch, heads, &recorded, retry)
            .await?
            .is_some()
        {
            return Ok(());
        }
    }
    unreachable!("the last attempt answers or fails")
}

/// One append a stream, expecting the head just read (0: a new stream).
fn requests(
    appends: &[(String, NewEvent)],
    heads: &Heads,
    metadata: &EventMetadata,
) -> Vec<AppendRequest> {
    appends
        .iter()
        .map(|(stream, event)| {
            let head = heads.get(stream).map_or(0, |(version, _)| *version);
            AppendRequest::unanswered(stream.clone(), head, vec![event.clone()], metadata.clone())
        })
        .collect()
}
