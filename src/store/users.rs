//! Users live in an ordinary table, as Strapi's `up_users`: the event log is for sessions.

use chrono::{DateTime, Utc};
use rand::Rng;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use tokenledger_domain::UserId;

use super::sqlite::{Database, timestamp};

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
}

/// A user about to be created; the email is lower-cased here, as Strapi stores it.
pub struct NewUser {
    pub username: String,
    pub email: String,
    pub password_hash: String,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("email or username already taken")]
    Taken,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

#[derive(Clone, Debug)]
pub struct UserStore {
    db: Database,
}

const COLUMNS: &str = "id, document_id, username, email, password_hash, provider, confirmed, blocked, created_at, updated_at";

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

fn user(row: &SqliteRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: row.try_get("id")?,
        document_id: row.try_get("document_id")?,
        username: row.try_get("username")?,
        email: row.try_get("email")?,
        password_hash: row.try_get("password_hash")?,
        provider: row.try_get("provider")?,
        confirmed: row.try_get("confirmed")?,
        blocked: row.try_get("blocked")?,
        created_at: timestamp(row, "created_at")?,
        updated_at: timestamp(row, "updated_at")?,
    })
}

impl UserStore {
    pub fn new(db: Database) -> UserStore {
        UserStore { db }
    }

    pub async fn create(&self, new: NewUser, now: DateTime<Utc>) -> Result<User, UserError> {
        let stamp = strapi_time(&now);
        let inserted = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO users (document_id, username, email, password_hash, provider, confirmed, \
             blocked, created_at, updated_at) VALUES (?, ?, ?, ?, 'local', 1, 0, ?, ?) \
             RETURNING {COLUMNS}"
        )))
        .bind(document_id())
        .bind(&new.username)
        .bind(new.email.to_lowercase())
        .bind(&new.password_hash)
        .bind(&stamp)
        .bind(&stamp)
        .fetch_one(&self.db.writer)
        .await;
        match inserted {
            Ok(row) => Ok(user(&row)?),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(UserError::Taken),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether a user with this email (any case) or username (exactly) exists.
    pub async fn exists(&self, username: &str, email: &str) -> Result<bool, UserError> {
        let row = sqlx::query("SELECT 1 FROM users WHERE email = ? OR username = ? LIMIT 1")
            .bind(email.to_lowercase())
            .bind(username)
            .fetch_optional(&self.db.reader)
            .await?;
        Ok(row.is_some())
    }

    /// The local user whose email matches `identifier` case-insensitively, or whose username
    /// matches it exactly (Strapi's rule).
    pub async fn find_by_identifier(&self, identifier: &str) -> Result<Option<User>, UserError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM users WHERE provider = 'local' AND (email = ? OR username = ?) \
             ORDER BY (email = ?) DESC LIMIT 1"
        )))
        .bind(identifier.to_lowercase())
        .bind(identifier)
        .bind(identifier.to_lowercase())
        .fetch_optional(&self.db.reader)
        .await?;
        Ok(row.as_ref().map(user).transpose()?)
    }

    pub async fn find(&self, id: UserId) -> Result<Option<User>, UserError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM users WHERE id = ?"
        )))
        .bind(id)
        .fetch_optional(&self.db.reader)
        .await?;
        Ok(row.as_ref().map(user).transpose()?)
    }
}
