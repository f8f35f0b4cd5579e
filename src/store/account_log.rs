//! Appending the account event a change of the users table writes in its own transaction:
//! the row and the event that explains it commit together or not at all, so the table stays
//! the fold of the log (`users_explained`). The events are planned, chained and inserted by
//! the appender's own helpers, at each stream's head as read inside that transaction.

use sqlx::{Database, Executor, IntoArguments};
use tokenledger_domain::{Event, UserId};

use super::appender::{AppendRequest, Heads, plan, recording_time};
use super::chain::ChainKey;
use super::dialect::Conn;
use super::events::EventTable;
use super::{EventMetadata, NewEvent, stream_of};

/// How often the events are planned again after another instance's appender won a stream's
/// next version (PostgreSQL); each attempt reads the new head.
const MAX_ATTEMPTS: usize = 5;

/// Appends each user's event at the head of its stream, on `conn`, inside the caller's
/// transaction (one entry a user). On SQLite the transaction is `BEGIN IMMEDIATE`: nobody
/// writes between the read of the heads and the insert. On PostgreSQL another instance's
/// appender may take a stream's next version first; the insert then fails on the unique key
/// under a savepoint and is planned again from the new heads, as `EventTable::write_on` does:
/// the change the caller makes is decided already and must not fail for that.
pub(crate) async fn append_in<D>(
    conn: &mut Conn<D>,
    chain: &ChainKey,
    appends: &[(UserId, Event)],
    metadata: &EventMetadata,
) -> Result<(), sqlx::Error>
where
    D: EventTable,
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
{
    let metadata = serde_json::to_string(metadata).expect("metadata is plain strings");
    let recorded = recording_time();
    let recorded_at = D::stored_time(&recorded);
    let streams: Vec<String> = appends.iter().map(|(id, _)| stream_of(*id)).collect();
    let names: Vec<&str> = streams.iter().map(String::as_str).collect();
    let mut attempt = 1;
    loop {
        let heads = D::read_heads(conn, &names).await?;
        let batch = requests(&streams, appends, &heads, &metadata);
        let planned = plan(chain, &batch, heads, &recorded);
        if planned.iter().any(Result::is_err) {
            return Err(sqlx::Error::Protocol(
                "two account events of one user in one append".into(),
            ));
        }
        if D::RACING_WRITERS {
            sqlx::query("SAVEPOINT account_event")
                .execute(&mut *conn)
                .await?;
        }
        match D::insert(conn, &planned, &recorded_at).await {
            Ok(_) => return Ok(()),
            Err(sqlx::Error::Database(e))
                if D::RACING_WRITERS && e.is_unique_violation() && attempt < MAX_ATTEMPTS =>
            {
                sqlx::query("ROLLBACK TO SAVEPOINT account_event")
                    .execute(&mut *conn)
                    .await?;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// One append a user, expecting the head just read (0: a new stream).
fn requests(
    streams: &[String],
    appends: &[(UserId, Event)],
    heads: &Heads,
    metadata: &str,
) -> Vec<AppendRequest> {
    streams
        .iter()
        .zip(appends)
        .map(|(stream, (_, event))| {
            let head = heads.get(stream).map_or(0, |(version, _)| *version);
            AppendRequest::unanswered(
                stream.clone(),
                head,
                vec![NewEvent::from(event)],
                metadata.to_owned(),
            )
        })
        .collect()
}
