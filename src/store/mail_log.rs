//! What the mailer reads and writes of the log. It reads only the events that bear on an
//! email (the requests, what became of each, a spent code, a forgotten user), found by type in
//! the database rather than by decoding every event; and it appends `EmailSent` or
//! `EmailFailed` at the head of the user's stream in a transaction of its own, as account
//! events are appended (`account_log`), since no actor sends email. The user's actor, if one
//! is alive, meets the new version at its next append and reloads.

use async_trait::async_trait;
use sqlx::{ColumnIndex, Database, Encode, Executor, IntoArguments, Type};
use tokenledger_domain::{Event, UserId};

use super::account_log::{append_in, of_user};
use super::dialect::{Conn, Row, Value};
use super::events::{EventTable, payload_columns};
use super::{EventMetadata, EventPayload, StoreError};

/// The event types the mailer folds (see `mailer::outbox`).
pub const MAIL_EVENTS: [&str; 7] = [
    "PasswordResetRequested",
    "EmailConfirmationRequested",
    "EmailSent",
    "EmailFailed",
    "PasswordReset",
    "EmailConfirmed",
    "UserForgotten",
];

#[async_trait]
pub trait MailLog: Send + Sync + 'static {
    /// The events of `MAIL_EVENTS` after `after_position`, in position order, below the
    /// catch-up horizon as `EventStore::read_payloads`; at most a page (`store::PAGE`). The
    /// newest event below the horizon comes too, whatever its type, so that the reader's
    /// position moves past a long run of other events once, instead of scanning it again at
    /// every pass: its position is where the next read starts.
    async fn mail_page(&self, after_position: i64) -> Result<Vec<EventPayload>, StoreError>;

    /// Appends `event` at the head of `user`'s stream, in a transaction of its own.
    async fn record(
        &self,
        user: UserId,
        event: &Event,
        metadata: &EventMetadata,
    ) -> Result<(), StoreError>;
}

#[async_trait]
impl<D: EventTable> MailLog for D
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    for<'a> &'a str: Encode<'a, D::Db> + Type<D::Db>,
    i64: Value<D::Db>,
    String: Value<D::Db>,
    usize: ColumnIndex<Row<D>>,
{
    async fn mail_page(&self, after_position: i64) -> Result<Vec<EventPayload>, StoreError> {
        let types = MAIL_EVENTS.map(|t| format!("'{t}'")).join(", ");
        let horizon = D::CATCH_UP;
        // One statement, so the newest event and the page see the same snapshot.
        let filter = format!(
            "{horizon} AND (event_type IN ({types}) OR position = \
             (SELECT MAX(position) FROM events WHERE position > 0{horizon}))"
        );
        self.page(after_position, &filter, &payload_columns::<D>(), D::payload)
            .await
    }

    async fn record(
        &self,
        user: UserId,
        event: &Event,
        metadata: &EventMetadata,
    ) -> Result<(), StoreError> {
        let mut tx = self.writer().begin_with(D::BEGIN).await?;
        let appends = [of_user(user, event)];
        append_in::<D>(&mut tx, self.chain(), self.keyring(), &appends, metadata).await?;
        tx.commit().await?;
        Ok(())
    }
}
