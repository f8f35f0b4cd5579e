//! Users live in an ordinary table, as Strapi's `up_users`, which is what the account
//! events of each user's stream fold to: every change of a row appends the event that
//! explains it in the same transaction (`account_log`), and `verify` checks the table
//! against the log (`users_explained`). `Users` is that table, written once over `Dialect`;
//! `UserStore` is the one of whichever database was opened.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rand::Rng;
use sha2::{Digest, Sha256};
use sqlx::{ColumnIndex, Database, Encode, Executor, IntoArguments, Type};
use tokenledger_domain::{
    EmailConfirmationRequested, EmailConfirmed, EmailKind, Event, PasswordChanged,
    PasswordRehashed, PasswordReset, PasswordResetRequested, PendingCode, Timestamp, UserBlocked,
    UserForgotten, UserId, UserImported, UserRegistered, UserUnblocked,
};

use super::EventMetadata;
use super::account_log::{append_in, of_user};
use super::dialect::{Conn, Dialect, Row, Value, query, rfc3339};
use super::events::EventTable;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub document_id: String,
    pub username: String,
    pub email: String,
    pub password_hash: Option<String>,
    pub provider: String,
    pub confirmed: bool,
    pub blocked: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Set for an imported user (Strapi's own); `None`: the same as `created_at`.
    pub published_at: Option<DateTime<Utc>>,
    /// The live reset-password code (its digest and expiry), if any.
    pub reset_code: Option<PendingCode>,
    /// The live email-confirmation code, if any.
    pub confirmation_code: Option<PendingCode>,
}

impl User {
    /// Strapi's `publishedAt`: a user is published when it is created.
    pub fn published_at(&self) -> DateTime<Utc> {
        self.published_at.unwrap_or(self.created_at)
    }
}

/// A user about to be created; the email is lower-cased here, as Strapi stores it.
pub struct NewUser {
    pub username: String,
    pub email: String,
    pub password_hash: String,
}

/// A new code for an email (a password reset's or an email confirmation's): its id, from
/// which the mailer derives it, and its SHA-256, all that is stored of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCode {
    pub code_id: uuid::Uuid,
    pub digest: String,
    pub expires_at: DateTime<Utc>,
}

/// A users row of another system, to be brought in as it is there (`tokenledger import`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportedUser {
    pub id: UserId,
    pub document_id: String,
    pub username: String,
    pub email: String,
    pub provider: String,
    /// The other system's hash (Strapi's bcrypt), verified at login and replaced then.
    pub password_hash: Option<String>,
    pub confirmed: bool,
    pub blocked: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub published_at: Option<DateTime<Utc>>,
}

/// What an import of one row did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Import {
    Added,
    /// The row is here already, with the same id and `documentId`: an earlier import.
    AlreadyThere,
    /// Something here is in its way; nothing was written.
    Conflict(String),
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("email or username already taken")]
    Taken,
    #[error("no such user")]
    NotFound,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

pub(crate) const COLUMNS: &str = "id, document_id, username, email, password_hash, provider, confirmed, blocked, created_at, updated_at, published_at, reset_code_digest, reset_code_expires_at, confirmation_code_digest, confirmation_code_expires_at";

/// Strapi's document ids: 24 characters, a letter then letters and digits.
fn document_id() -> String {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
    const ALPHANUMERIC: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let mut id = String::with_capacity(24);
    id.push(LETTERS[rng.random_range(0..LETTERS.len())] as char);
    for _ in 1..24 {
        id.push(ALPHANUMERIC[rng.random_range(0..ALPHANUMERIC.len())] as char);
    }
    id
}

/// Strapi's timestamp form: ISO 8601 with milliseconds.
pub fn strapi_time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Lowercase hex SHA-256 of a stored password hash (its PHC string): what the log keeps of a
/// password. Argon2 hashes are salted, so it names one hash without being one to crack.
pub fn password_digest(hash: &str) -> String {
    hex::encode(Sha256::digest(hash.as_bytes()))
}

/// A `UserRegistered` describing the users row `user` as it is, recorded as of `at`: what a
/// registration writes, and what an upgrade appends for a row older than these events.
pub fn registration_of(user: &User, at: Timestamp) -> Event {
    Event::UserRegistered(UserRegistered {
        document_id: user.document_id.clone(),
        username: user.username.clone(),
        email: user.email.clone(),
        provider: user.provider.clone(),
        confirmed: user.confirmed,
        blocked: user.blocked,
        password_digest: user.password_hash.as_deref().map(password_digest),
        registered_at: at,
    })
}

/// The `PasswordChanged` of a row whose hash became `hash`.
pub fn password_changed(hash: &str, at: Timestamp) -> Event {
    Event::PasswordChanged(PasswordChanged {
        password_digest: password_digest(hash),
        changed_at: at,
    })
}

/// `UserBlocked` or `UserUnblocked`.
pub fn block_changed(blocked: bool, at: Timestamp) -> Event {
    if blocked {
        Event::UserBlocked(UserBlocked { blocked_at: at })
    } else {
        Event::UserUnblocked(UserUnblocked { unblocked_at: at })
    }
}

/// The users table of whichever database was opened.
pub type UserStore = Arc<dyn Users>;

#[async_trait]
pub trait Users: Send + Sync + 'static {
    /// Creates a local user unless its email or username is taken — by either column, since
    /// login matches an identifier against both: a username equal to someone's email would
    /// otherwise capture that person's logins. The check and the insert are one step:
    /// SQLite's `BEGIN IMMEDIATE`, PostgreSQL's table lock (other instances register too).
    /// Its `UserRegistered` starts the user's stream in the same transaction.
    async fn create(
        &self,
        new: NewUser,
        now: DateTime<Utc>,
        metadata: &EventMetadata,
    ) -> Result<User, UserError>;

    /// Inserts many users, and their `UserRegistered`, in one transaction per thousand, with
    /// no check beyond the table's unique keys: for `tokenledger seed`, which fills an empty
    /// database. Returns their ids.
    async fn create_many(
        &self,
        users: &[NewUser],
        now: DateTime<Utc>,
        metadata: &EventMetadata,
    ) -> Result<Vec<UserId>, UserError>;

    /// The local user whose email matches `identifier` case-insensitively, or whose username
    /// matches it exactly (Strapi's rule).
    async fn find_by_identifier(&self, identifier: &str) -> Result<Option<User>, UserError>;

    /// A user by email (any case) or username, else by id: a username made of digits is
    /// that user's, not the user with that id.
    async fn find_any(&self, key: &str) -> Result<Option<User>, UserError> {
        if let Some(user) = self.find_by_identifier(key).await? {
            return Ok(Some(user));
        }
        match key.parse::<UserId>() {
            Ok(id) => self.find(id).await,
            Err(_) => Ok(None),
        }
    }

    /// Replaces the password hash if it is still `previous`, with its `PasswordChanged`;
    /// `NotFound` otherwise.
    async fn set_password(
        &self,
        id: UserId,
        previous: &str,
        hash: &str,
        now: DateTime<Utc>,
        metadata: &EventMetadata,
    ) -> Result<User, UserError>;

    /// Replaces a hash of another scheme by one of today's for the same password, if it is
    /// still `previous`, with its `PasswordRehashed` (the user changed nothing); `NotFound`
    /// otherwise.
    async fn rehash(
        &self,
        id: UserId,
        previous: &str,
        hash: &str,
        now: DateTime<Utc>,
        metadata: &EventMetadata,
    ) -> Result<User, UserError>;

    /// Brings in another system's users row with its id, `documentId` and times, and its
    /// `UserRegistered` then `UserImported` (from `source`), in one transaction; a row
    /// whose id, `documentId`, username or email is someone else's here is a conflict, and
    /// left out.
    async fn import(
        &self,
        imported: &ImportedUser,
        source: &str,
        now: DateTime<Utc>,
        metadata: &EventMetadata,
    ) -> Result<Import, UserError>;

    /// Registers a local user as `create` does, unconfirmed, with the code that confirms its
    /// email (`EmailConfirmationRequested` after its `UserRegistered`, one transaction).
    async fn create_unconfirmed(
        &self,
        new: NewUser,
        code: &NewCode,
        now: DateTime<Utc>,
        metadata: &EventMetadata,
    ) -> Result<User, UserError>;

    /// Gives the user a new code of `kind`, replacing any it held, with its
    /// `PasswordResetRequested` or `EmailConfirmationRequested`.
    async fn request_code(
        &self,
        id: UserId,
        kind: EmailKind,
        code: &NewCode,
        now: DateTime<Utc>,
        metadata: &EventMetadata,
    ) -> Result<(), UserError>;

    /// Spends the live reset code whose SHA-256 is `digest`: the password hash becomes
    /// `hash`, with `PasswordReset`. `NotFound` when no live code has it (unknown, spent,
    /// superseded or expired).
    async fn reset_password(
        &self,
        digest: &str,
        hash: &str,
        now: DateTime<Utc>,
        metadata: &EventMetadata,
    ) -> Result<User, UserError>;

    /// Spends the live confirmation code whose SHA-256 is `digest`: the user is confirmed,
    /// with `EmailConfirmed`. `NotFound` as `reset_password`.
    async fn confirm_email(
        &self,
        digest: &str,
        now: DateTime<Utc>,
        metadata: &EventMetadata,
    ) -> Result<User, UserError>;

    /// What `import` would do with `imported`, found as its transaction finds it, with
    /// nothing written (`import strapi --dry-run`).
    async fn import_check(&self, imported: &ImportedUser) -> Result<Import, UserError>;

    /// Blocks or unblocks a user, with its `UserBlocked` or `UserUnblocked`; a user already
    /// so is returned as it is, and nothing is written.
    async fn set_blocked(
        &self,
        id: UserId,
        blocked: bool,
        now: DateTime<Utc>,
        metadata: &EventMetadata,
    ) -> Result<User, UserError>;

    /// Forgets a user: the row goes, with its `UserForgotten`, and every data key of the
    /// user's stream is deleted in the same transaction, so that the personal fields of its
    /// events read as erased from then on. Returns the row as it was.
    async fn forget(
        &self,
        id: UserId,
        now: DateTime<Utc>,
        metadata: &EventMetadata,
    ) -> Result<User, UserError>;

    /// How many users there are.
    async fn count(&self) -> Result<i64, UserError>;

    /// Every user, by id.
    async fn all(&self) -> Result<Vec<User>, UserError>;

    /// Users whose username or email contains `text`, or whose id it is: the id first, then
    /// exact names, then the rest by id; at most `limit`. An empty `text` lists the newest
    /// users. LIKE's `%`, `_` and `\` in `text` match themselves. Case is ignored, but SQLite
    /// folds ASCII letters only: there `Émile` is found as `Émile` or `ÉMILE`, not as `émile`
    /// (PostgreSQL folds every letter).
    async fn search(&self, text: &str, limit: u32) -> Result<Vec<User>, UserError>;

    async fn find(&self, id: UserId) -> Result<Option<User>, UserError>;
}

/// Whether `new`'s email or username is someone's email or username already (see
/// `Users::create`), read in the registration's transaction.
async fn taken<D: Dialect>(conn: &mut Conn<D>, new: &NewUser) -> Result<bool, sqlx::Error>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    for<'a> &'a str: Encode<'a, D::Db> + Type<D::Db>,
    String: Value<D::Db>,
{
    let email = new.email.to_lowercase();
    let taken =
        query::<D>("SELECT 1 FROM users WHERE email IN (?, ?) OR username IN (?, ?, ?) LIMIT 1")
            .bind(&email)
            .bind(new.username.to_lowercase())
            .bind(&new.username)
            .bind(&new.email)
            .bind(&email)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(taken.is_some())
}

/// A `User` from a row of `COLUMNS`.
pub(crate) fn user<R: sqlx::Row>(row: &R) -> Result<User, sqlx::Error>
where
    usize: ColumnIndex<R>,
    i64: Value<R::Database>,
    bool: Value<R::Database>,
    String: Value<R::Database>,
    Option<String>: Value<R::Database>,
{
    Ok(User {
        id: row.try_get(0)?,
        document_id: row.try_get(1)?,
        username: row.try_get(2)?,
        email: row.try_get(3)?,
        password_hash: row.try_get(4)?,
        provider: row.try_get(5)?,
        confirmed: row.try_get(6)?,
        blocked: row.try_get(7)?,
        created_at: rfc3339(&row.try_get::<String, _>(8)?)?,
        updated_at: rfc3339(&row.try_get::<String, _>(9)?)?,
        published_at: (row.try_get::<Option<String>, _>(10)?)
            .as_deref()
            .map(rfc3339)
            .transpose()?,
        reset_code: pending_code(row, 11)?,
        confirmation_code: pending_code(row, 13)?,
    })
}

/// The code whose digest is column `at` and whose expiry the next, if there is one.
fn pending_code<R: sqlx::Row>(row: &R, at: usize) -> Result<Option<PendingCode>, sqlx::Error>
where
    usize: ColumnIndex<R>,
    Option<String>: Value<R::Database>,
{
    let digest: Option<String> = row.try_get(at)?;
    let expires: Option<String> = row.try_get(at + 1)?;
    Ok(match (digest, expires) {
        (Some(digest), Some(expires)) => Some(PendingCode {
            digest,
            expires_at: rfc3339(&expires)?,
        }),
        _ => None,
    })
}

/// Replaces the password hash if it is still `previous`, with `event` (which says why). A
/// rehash leaves `updated_at` as it was: to the user and to Strapi nothing changed.
async fn replace_hash<D: EventTable>(
    store: &D,
    id: UserId,
    previous: &str,
    hash: &str,
    event: &Event,
    metadata: &EventMetadata,
) -> Result<User, UserError>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    for<'a> &'a str: Encode<'a, D::Db> + Type<D::Db>,
    i64: Value<D::Db>,
    Option<i64>: Value<D::Db>,
    bool: Value<D::Db>,
    String: Value<D::Db>,
    Option<String>: Value<D::Db>,
    usize: ColumnIndex<Row<D>>,
{
    let updated = match event {
        Event::PasswordRehashed(_) => "updated_at",
        _ => "?",
    };
    let sql = format!(
        "UPDATE users SET password_hash = ?, updated_at = {updated} WHERE id = ? \
         AND password_hash = ? RETURNING {COLUMNS}"
    );
    let stamp = strapi_time(&event.occurred_at());
    let mut tx = store.writer().begin_with(D::BEGIN).await?;
    let mut update = query::<D>(&sql).bind(hash);
    if updated == "?" {
        update = update.bind(stamp);
    }
    let row = update
        .bind(id)
        .bind(previous)
        .fetch_optional(&mut *tx)
        .await?;
    let changed = row.as_ref().map(user).transpose()?;
    let changed = changed.ok_or(UserError::NotFound)?;
    let event = [of_user(id, event)];
    append_in::<D>(&mut tx, store.chain(), store.keyring(), &event, metadata).await?;
    tx.commit().await?;
    Ok(changed)
}

/// What keeps `imported` out, read in the import's transaction: the same row imported before,
/// or a row here holding its id, `documentId`, username or email.
async fn in_the_way<D: EventTable>(
    conn: &mut Conn<D>,
    imported: &ImportedUser,
) -> Result<Option<Import>, sqlx::Error>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    for<'a> &'a str: Encode<'a, D::Db> + Type<D::Db>,
    i64: Value<D::Db>,
    Option<i64>: Value<D::Db>,
    bool: Value<D::Db>,
    String: Value<D::Db>,
    Option<String>: Value<D::Db>,
    usize: ColumnIndex<Row<D>>,
{
    let sql = format!(
        "SELECT {COLUMNS} FROM users WHERE id = ? OR document_id = ? OR email IN (?, ?) \
         OR username IN (?, ?, ?) ORDER BY id"
    );
    let email = imported.email.to_lowercase();
    let rows = query::<D>(&sql)
        .bind(imported.id)
        .bind(&imported.document_id)
        .bind(&email)
        .bind(imported.username.to_lowercase())
        .bind(&imported.username)
        .bind(&imported.email)
        .bind(&email)
        .fetch_all(&mut *conn)
        .await?;
    let here: Vec<User> = rows.iter().map(user).collect::<Result<_, _>>()?;
    Ok(conflict_with(imported, &here))
}

/// The pure half of `in_the_way`: given the rows that share something with `imported`.
fn conflict_with(imported: &ImportedUser, here: &[User]) -> Option<Import> {
    let same = |u: &User| u.id == imported.id && u.document_id == imported.document_id;
    match here {
        [] => None,
        [only] if same(only) => Some(Import::AlreadyThere),
        _ => {
            let other = here.iter().find(|u| !same(u)).unwrap_or(&here[0]);
            let what = if other.id == imported.id {
                format!(
                    "its id is user {} here (documentId {})",
                    other.id, other.document_id
                )
            } else if other.document_id == imported.document_id {
                format!("its documentId is user {}'s here", other.id)
            } else {
                format!("its username or email is user {}'s here", other.id)
            };
            Some(Import::Conflict(what))
        }
    }
}

/// The columns of a code of `kind`: `<prefix>_code_id`, `_digest`, `_expires_at`.
fn code_columns(kind: EmailKind) -> &'static str {
    match kind {
        EmailKind::ResetPassword => "reset",
        EmailKind::EmailConfirmation => "confirmation",
    }
}

/// The event of a new code of `kind`.
fn code_requested(kind: EmailKind, code: &NewCode, now: DateTime<Utc>) -> Event {
    match kind {
        EmailKind::ResetPassword => Event::PasswordResetRequested(PasswordResetRequested {
            code_id: code.code_id,
            code_digest: code.digest.clone(),
            expires_at: code.expires_at,
            requested_at: now,
        }),
        EmailKind::EmailConfirmation => {
            Event::EmailConfirmationRequested(EmailConfirmationRequested {
                code_id: code.code_id,
                code_digest: code.digest.clone(),
                expires_at: code.expires_at,
                requested_at: now,
            })
        }
    }
}

/// A local user's row and its `UserRegistered`, unless its email or username is taken (see
/// `Users::create`); with `confirmation`, unconfirmed and holding that code, whose
/// `EmailConfirmationRequested` follows in the same transaction.
async fn register<D: EventTable>(
    store: &D,
    new: NewUser,
    confirmation: Option<&NewCode>,
    now: DateTime<Utc>,
    metadata: &EventMetadata,
) -> Result<User, UserError>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    for<'a> &'a str: Encode<'a, D::Db> + Type<D::Db>,
    i64: Value<D::Db>,
    Option<i64>: Value<D::Db>,
    bool: Value<D::Db>,
    String: Value<D::Db>,
    Option<String>: Value<D::Db>,
    usize: ColumnIndex<Row<D>>,
{
    let mut tx = store.writer().begin_with(D::BEGIN).await?;
    if let Some(lock) = D::LOCK_USERS {
        sqlx::query(lock).execute(&mut *tx).await?;
    }
    if taken::<D>(&mut tx, &new).await? {
        return Err(UserError::Taken);
    }
    let insert = format!(
        "INSERT INTO users (document_id, username, email, password_hash, provider, confirmed, \
         blocked, created_at, updated_at, confirmation_code_id, confirmation_code_digest, \
         confirmation_code_expires_at) VALUES (?, ?, ?, ?, 'local', ?, FALSE, ?, ?, ?, ?, ?) \
         RETURNING {COLUMNS}"
    );
    let stamp = strapi_time(&now);
    let row = query::<D>(&insert)
        .bind(document_id())
        .bind(&new.username)
        .bind(new.email.to_lowercase())
        .bind(&new.password_hash)
        .bind(confirmation.is_none())
        .bind(&stamp)
        .bind(&stamp)
        .bind(confirmation.map(|code| code.code_id.to_string()))
        .bind(confirmation.map(|code| code.digest.clone()))
        .bind(confirmation.map(|code| strapi_time(&code.expires_at)))
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(d) if d.is_unique_violation() => UserError::Taken,
            other => other.into(),
        })?;
    let created = user(&row)?;
    let registered = [of_user(created.id, &registration_of(&created, now))];
    append_in::<D>(
        &mut tx,
        store.chain(),
        store.keyring(),
        &registered,
        metadata,
    )
    .await?;
    if let Some(code) = confirmation {
        let requested = code_requested(EmailKind::EmailConfirmation, code, now);
        let requested = [of_user(created.id, &requested)];
        append_in::<D>(
            &mut tx,
            store.chain(),
            store.keyring(),
            &requested,
            metadata,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(created)
}

/// Clears the live code of `kind` whose digest is `digest` (and sets the password hash to
/// `hash`, or confirms the user), with the event `event` makes of the code's id, in one
/// transaction. The update's own condition makes the code single-use: of two uses, one
/// clears it.
async fn spend_code<D: EventTable>(
    store: &D,
    kind: EmailKind,
    digest: &str,
    hash: Option<&str>,
    now: DateTime<Utc>,
    event: impl FnOnce(uuid::Uuid) -> Event + Send,
    metadata: &EventMetadata,
) -> Result<User, UserError>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    for<'a> &'a str: Encode<'a, D::Db> + Type<D::Db>,
    i64: Value<D::Db>,
    Option<i64>: Value<D::Db>,
    bool: Value<D::Db>,
    String: Value<D::Db>,
    Option<String>: Value<D::Db>,
    usize: ColumnIndex<Row<D>>,
{
    let prefix = code_columns(kind);
    let stamp = strapi_time(&now);
    let mut tx = store.writer().begin_with(D::BEGIN).await?;
    let find = format!(
        "SELECT {prefix}_code_id FROM users WHERE {prefix}_code_digest = ? \
         AND {prefix}_code_expires_at > ?"
    );
    let found = query::<D>(&find)
        .bind(digest)
        .bind(&stamp)
        .fetch_optional(&mut *tx)
        .await?;
    let code_id: Option<String> = match &found {
        Some(row) => sqlx::Row::try_get(row, 0)?,
        None => None,
    };
    let code_id = code_id
        .and_then(|id| id.parse::<uuid::Uuid>().ok())
        .ok_or(UserError::NotFound)?;
    let change = match hash {
        Some(_) => "password_hash = ?, updated_at = ?",
        None => "confirmed = TRUE, updated_at = ?",
    };
    let update = format!(
        "UPDATE users SET {change}, {prefix}_code_id = NULL, {prefix}_code_digest = NULL, \
         {prefix}_code_expires_at = NULL WHERE {prefix}_code_digest = ? RETURNING {COLUMNS}"
    );
    let mut spend = query::<D>(&update);
    if let Some(hash) = hash {
        spend = spend.bind(hash);
    }
    let row = spend
        .bind(&stamp)
        .bind(digest)
        .fetch_optional(&mut *tx)
        .await?;
    let changed = row
        .as_ref()
        .map(user)
        .transpose()?
        .ok_or(UserError::NotFound)?;
    let spent = [of_user(changed.id, &event(code_id))];
    append_in::<D>(&mut tx, store.chain(), store.keyring(), &spent, metadata).await?;
    tx.commit().await?;
    Ok(changed)
}

#[async_trait]
impl<D: EventTable> Users for D
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    for<'a> &'a str: Encode<'a, D::Db> + Type<D::Db>,
    i64: Value<D::Db>,
    Option<i64>: Value<D::Db>,
    bool: Value<D::Db>,
    String: Value<D::Db>,
    Option<String>: Value<D::Db>,
    usize: ColumnIndex<Row<D>>,
{
    async fn create(
        &self,
        new: NewUser,
        now: DateTime<Utc>,
        metadata: &EventMetadata,
    ) -> Result<User, UserError> {
        register::<D>(self, new, None, now, metadata).await
    }

    async fn create_many(
        &self,
        users: &[NewUser],
        now: DateTime<Utc>,
        metadata: &EventMetadata,
    ) -> Result<Vec<UserId>, UserError> {
        let stamp = strapi_time(&now);
        let mut ids = Vec::with_capacity(users.len());
        for chunk in users.chunks(1000) {
            let rows = vec!["(?, ?, ?, ?, 'local', TRUE, FALSE, ?, ?)"; chunk.len()].join(", ");
            let sql = format!(
                "INSERT INTO users (document_id, username, email, password_hash, provider, \
                 confirmed, blocked, created_at, updated_at) VALUES {rows} RETURNING {COLUMNS}"
            );
            let mut insert = query::<D>(&sql);
            for user in chunk {
                insert = insert
                    .bind(document_id())
                    .bind(&user.username)
                    .bind(user.email.to_lowercase())
                    .bind(&user.password_hash)
                    .bind(&stamp)
                    .bind(&stamp);
            }
            let mut tx = self.writer().begin_with(D::BEGIN).await?;
            let created: Vec<User> = (insert.fetch_all(&mut *tx).await?.iter())
                .map(user)
                .collect::<Result<_, _>>()?;
            let registered: Vec<_> = created
                .iter()
                .map(|user| of_user(user.id, &registration_of(user, now)))
                .collect();
            append_in::<D>(&mut tx, self.chain(), self.keyring(), &registered, metadata).await?;
            tx.commit().await?;
            ids.extend(created.iter().map(|user| user.id));
        }
        Ok(ids)
    }

    async fn find_by_identifier(&self, identifier: &str) -> Result<Option<User>, UserError> {
        // No name or email holds a NUL (registration refuses one), and PostgreSQL would fail
        // the query instead of finding nothing.
        if identifier.contains('\0') {
            return Ok(None);
        }
        let lower = identifier.to_lowercase();
        let sql = format!(
            "SELECT {COLUMNS} FROM users WHERE provider = 'local' AND (email = ? OR username = ?) \
             ORDER BY (email = ?) DESC LIMIT 1"
        );
        let row = query::<D>(&sql)
            .bind(&lower)
            .bind(identifier)
            .bind(&lower)
            .fetch_optional(self.reader())
            .await?;
        Ok(row.as_ref().map(user).transpose()?)
    }

    async fn set_password(
        &self,
        id: UserId,
        previous: &str,
        hash: &str,
        now: DateTime<Utc>,
        metadata: &EventMetadata,
    ) -> Result<User, UserError> {
        let event = password_changed(hash, now);
        replace_hash(self, id, previous, hash, &event, metadata).await
    }

    async fn rehash(
        &self,
        id: UserId,
        previous: &str,
        hash: &str,
        now: DateTime<Utc>,
        metadata: &EventMetadata,
    ) -> Result<User, UserError> {
        let event = Event::PasswordRehashed(PasswordRehashed {
            password_digest: password_digest(hash),
            from: crate::password::Scheme::of(previous).name().to_owned(),
            rehashed_at: now,
        });
        replace_hash(self, id, previous, hash, &event, metadata).await
    }

    async fn import(
        &self,
        imported: &ImportedUser,
        source: &str,
        now: DateTime<Utc>,
        metadata: &EventMetadata,
    ) -> Result<Import, UserError> {
        let mut tx = self.writer().begin_with(D::BEGIN).await?;
        if let Some(lock) = D::LOCK_USERS {
            sqlx::query(lock).execute(&mut *tx).await?;
        }
        if let Some(found) = in_the_way::<D>(&mut tx, imported).await? {
            return Ok(found);
        }
        let insert = format!(
            "INSERT INTO users (id, document_id, username, email, password_hash, provider, \
             confirmed, blocked, created_at, updated_at, published_at) {} \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {COLUMNS}",
            D::GIVEN_ID
        );
        let row = query::<D>(&insert)
            .bind(imported.id)
            .bind(&imported.document_id)
            .bind(&imported.username)
            .bind(imported.email.to_lowercase())
            .bind(&imported.password_hash)
            .bind(&imported.provider)
            .bind(imported.confirmed)
            .bind(imported.blocked)
            .bind(strapi_time(&imported.created_at))
            .bind(strapi_time(&imported.updated_at))
            .bind(imported.published_at.as_ref().map(strapi_time))
            .fetch_one(&mut *tx)
            .await?;
        if let Some(after) = D::AFTER_GIVEN_IDS {
            sqlx::query(after).execute(&mut *tx).await?;
        }
        let added = user(&row)?;
        let registered = [of_user(added.id, &registration_of(&added, now))];
        append_in::<D>(&mut tx, self.chain(), self.keyring(), &registered, metadata).await?;
        let from = Event::UserImported(UserImported {
            source: source.to_owned(),
            created_at: imported.created_at,
            imported_at: now,
        });
        let from = [of_user(added.id, &from)];
        append_in::<D>(&mut tx, self.chain(), self.keyring(), &from, metadata).await?;
        tx.commit().await?;
        Ok(Import::Added)
    }

    async fn create_unconfirmed(
        &self,
        new: NewUser,
        code: &NewCode,
        now: DateTime<Utc>,
        metadata: &EventMetadata,
    ) -> Result<User, UserError> {
        register::<D>(self, new, Some(code), now, metadata).await
    }

    async fn import_check(&self, imported: &ImportedUser) -> Result<Import, UserError> {
        let mut conn = self.reader().acquire().await?;
        let found = in_the_way::<D>(&mut conn, imported).await?;
        Ok(found.unwrap_or(Import::Added))
    }

    async fn request_code(
        &self,
        id: UserId,
        kind: EmailKind,
        code: &NewCode,
        now: DateTime<Utc>,
        metadata: &EventMetadata,
    ) -> Result<(), UserError> {
        let prefix = code_columns(kind);
        let sql = format!(
            "UPDATE users SET {prefix}_code_id = ?, {prefix}_code_digest = ?, \
             {prefix}_code_expires_at = ? WHERE id = ? RETURNING id"
        );
        let mut tx = self.writer().begin_with(D::BEGIN).await?;
        let row = query::<D>(&sql)
            .bind(code.code_id.to_string())
            .bind(&code.digest)
            .bind(strapi_time(&code.expires_at))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if row.is_none() {
            return Err(UserError::NotFound);
        }
        let event = [of_user(id, &code_requested(kind, code, now))];
        append_in::<D>(&mut tx, self.chain(), self.keyring(), &event, metadata).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn reset_password(
        &self,
        digest: &str,
        hash: &str,
        now: DateTime<Utc>,
        metadata: &EventMetadata,
    ) -> Result<User, UserError> {
        let event = |code_id| {
            Event::PasswordReset(PasswordReset {
                code_id,
                password_digest: password_digest(hash),
                reset_at: now,
            })
        };
        spend_code::<D>(
            self,
            EmailKind::ResetPassword,
            digest,
            Some(hash),
            now,
            event,
            metadata,
        )
        .await
    }

    async fn confirm_email(
        &self,
        digest: &str,
        now: DateTime<Utc>,
        metadata: &EventMetadata,
    ) -> Result<User, UserError> {
        let event = |code_id| {
            Event::EmailConfirmed(EmailConfirmed {
                code_id,
                confirmed_at: now,
            })
        };
        spend_code::<D>(
            self,
            EmailKind::EmailConfirmation,
            digest,
            None,
            now,
            event,
            metadata,
        )
        .await
    }

    async fn set_blocked(
        &self,
        id: UserId,
        blocked: bool,
        now: DateTime<Utc>,
        metadata: &EventMetadata,
    ) -> Result<User, UserError> {
        // Only a change is written: a second block would be an event that explains nothing.
        let sql = format!(
            "UPDATE users SET blocked = ?, updated_at = ? WHERE id = ? AND blocked <> ? \
             RETURNING {COLUMNS}"
        );
        let mut tx = self.writer().begin_with(D::BEGIN).await?;
        let row = query::<D>(&sql)
            .bind(blocked)
            .bind(strapi_time(&now))
            .bind(id)
            .bind(blocked)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(changed) = row.as_ref().map(user).transpose()? else {
            // Nothing changed: the transaction ends before the read, which needs no writer.
            drop(tx);
            return self.find(id).await?.ok_or(UserError::NotFound);
        };
        let event = [of_user(id, &block_changed(blocked, now))];
        append_in::<D>(&mut tx, self.chain(), self.keyring(), &event, metadata).await?;
        tx.commit().await?;
        Ok(changed)
    }

    async fn forget(
        &self,
        id: UserId,
        now: DateTime<Utc>,
        metadata: &EventMetadata,
    ) -> Result<User, UserError> {
        let sql = format!("DELETE FROM users WHERE id = ? RETURNING {COLUMNS}");
        let mut tx = self.writer().begin_with(D::BEGIN).await?;
        let row = query::<D>(&sql).bind(id).fetch_optional(&mut *tx).await?;
        let forgotten = row
            .as_ref()
            .map(user)
            .transpose()?
            .ok_or(UserError::NotFound)?;
        let event = Event::UserForgotten(UserForgotten { forgotten_at: now });
        // Where the request came from is the operator's, and would be sealed under the very
        // key deleted next.
        let metadata = EventMetadata {
            ip: None,
            user_agent: None,
            ..metadata.clone()
        };
        let owner = super::stream_of(id);
        append_in::<D>(
            &mut tx,
            self.chain(),
            self.keyring(),
            &[of_user(id, &event)],
            &metadata,
        )
        .await?;
        D::forget_in(&mut tx, &owner, now).await?;
        tx.commit().await?;
        self.keyring().evict(Some(&owner), None);
        self.scrub().await;
        Ok(forgotten)
    }

    async fn count(&self) -> Result<i64, UserError> {
        let row = sqlx::query("SELECT COUNT(*) FROM users")
            .fetch_one(self.reader())
            .await?;
        Ok(sqlx::Row::try_get(&row, 0)?)
    }

    async fn all(&self) -> Result<Vec<User>, UserError> {
        let sql = format!("SELECT {COLUMNS} FROM users ORDER BY id");
        let rows = query::<D>(&sql).fetch_all(self.reader()).await?;
        Ok(rows.iter().map(user).collect::<Result<_, _>>()?)
    }

    async fn search(&self, text: &str, limit: u32) -> Result<Vec<User>, UserError> {
        let like = |text: &str| {
            let escaped = text
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%{escaped}%")
        };
        // Usernames are kept as given and folded by the database's own LOWER on both sides
        // (Rust's and PostgreSQL's disagree on a final sigma; SQLite's folds ASCII only, so a
        // name is still found as typed); emails are stored folded by Rust, as `text` is here.
        let lower = text.to_lowercase();
        let (typed, folded) = (like(text), like(&lower));
        let id: Option<UserId> = text.parse().ok();
        let newest_first = if text.is_empty() { "id DESC" } else { "id" };
        let sql = format!(
            "SELECT {COLUMNS} FROM users \
             WHERE LOWER(username) LIKE LOWER(?) ESCAPE '\\' OR email LIKE ? ESCAPE '\\' \
             OR id = ? \
             ORDER BY CASE WHEN id = ? THEN 0 \
             WHEN LOWER(username) = LOWER(?) OR email = ? THEN 1 \
             ELSE 2 END, {newest_first} LIMIT ?"
        );
        let rows = query::<D>(&sql)
            .bind(&typed)
            .bind(&folded)
            .bind(id)
            .bind(id)
            .bind(text)
            .bind(&lower)
            .bind(i64::from(limit))
            .fetch_all(self.reader())
            .await?;
        Ok(rows.iter().map(user).collect::<Result<_, _>>()?)
    }

    async fn find(&self, id: UserId) -> Result<Option<User>, UserError> {
        let sql = format!("SELECT {COLUMNS} FROM users WHERE id = ?");
        let row = query::<D>(&sql)
            .bind(id)
            .fetch_optional(self.reader())
            .await?;
        Ok(row.as_ref().map(user).transpose()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ada() -> ImportedUser {
        let at = DateTime::from_timestamp_millis(1_796_237_765_143).unwrap();
        ImportedUser {
            id: 1,
            document_id: "k8j7ju2dajihatvv8j0nrfho".into(),
            username: "ada".into(),
            email: "ada@example.com".into(),
            provider: "local".into(),
            password_hash: None,
            confirmed: true,
            blocked: false,
            created_at: at,
            updated_at: at,
            published_at: None,
        }
    }

    fn row_of(imported: &ImportedUser) -> User {
        User {
            id: imported.id,
            document_id: imported.document_id.clone(),
            username: imported.username.clone(),
            email: imported.email.clone(),
            password_hash: None,
            provider: imported.provider.clone(),
            confirmed: true,
            blocked: false,
            created_at: imported.created_at,
            updated_at: imported.updated_at,
            published_at: None,
            reset_code: None,
            confirmation_code: None,
        }
    }

    #[test]
    fn given_the_rows_sharing_something_with_an_import_then_it_is_new_there_or_in_conflict() {
        assert_eq!(conflict_with(&ada(), &[]), None);
        let mut here = row_of(&ada());
        assert_eq!(
            conflict_with(&ada(), std::slice::from_ref(&here)),
            Some(Import::AlreadyThere)
        );
        here.id = 9;
        assert!(matches!(
            conflict_with(&ada(), &[here]),
            Some(Import::Conflict(_))
        ));
    }
}
