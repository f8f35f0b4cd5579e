//! Users live in an ordinary table, as Strapi's `up_users`: the event log is for sessions.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use rand::Rng;
use regex::Regex;
use sqlx::Row;
use sqlx::postgres::PgPool;
use tokenledger_domain::UserId;

use super::numbered;
use super::sqlite::Database;

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

/// Strapi's register rules (yup's email pattern, then the content-type's lengths).
pub const USERNAME_MIN: usize = 3;
pub const USERNAME_MAX: usize = 255;
pub const EMAIL_MIN: usize = 6;
pub const PASSWORD_MIN: usize = 6;
/// argon2 accepts more, but Strapi (bcrypt) refuses more than 72 bytes; so do we.
pub const PASSWORD_MAX_BYTES: usize = 72;

/// yup 0.32's email pattern, which Strapi's register validation uses.
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)^((([a-z]|[0-9]|[!#\$%&'\*\+\-\/=\?\^_`{\|}~]|[\x{00A0}-\x{D7FF}\x{F900}-\x{FDCF}\x{FDF0}-\x{FFEF}])+(\.([a-z]|[0-9]|[!#\$%&'\*\+\-\/=\?\^_`{\|}~]|[\x{00A0}-\x{D7FF}\x{F900}-\x{FDCF}\x{FDF0}-\x{FFEF}])+)*)|((\x22)((((\x20|\x09)*(\x0d\x0a))?(\x20|\x09)+)?(([\x01-\x08\x0b\x0c\x0e-\x1f\x7f]|\x21|[\x23-\x5b]|[\x5d-\x7e]|[\x{00A0}-\x{D7FF}\x{F900}-\x{FDCF}\x{FDF0}-\x{FFEF}])|(\\([\x01-\x09\x0b\x0c\x0d-\x7f]|[\x{00A0}-\x{D7FF}\x{F900}-\x{FDCF}\x{FDF0}-\x{FFEF}]))))*(((\x20|\x09)*(\x0d\x0a))?(\x20|\x09)+)?(\x22)))@((([a-z]|[0-9]|[\x{00A0}-\x{D7FF}\x{F900}-\x{FDCF}\x{FDF0}-\x{FFEF}])|(([a-z]|[0-9]|[\x{00A0}-\x{D7FF}\x{F900}-\x{FDCF}\x{FDF0}-\x{FFEF}])([a-z]|[0-9]|-|\.|_|~|[\x{00A0}-\x{D7FF}\x{F900}-\x{FDCF}\x{FDF0}-\x{FFEF}])*([a-z]|[0-9]|[\x{00A0}-\x{D7FF}\x{F900}-\x{FDCF}\x{FDF0}-\x{FFEF}])))\.)+(([a-z]|[\x{00A0}-\x{D7FF}\x{F900}-\x{FDCF}\x{FDF0}-\x{FFEF}])|(([a-z]|[\x{00A0}-\x{D7FF}\x{F900}-\x{FDCF}\x{FDF0}-\x{FFEF}])([a-z]|[0-9]|-|\.|_|~|[\x{00A0}-\x{D7FF}\x{F900}-\x{FDCF}\x{FDF0}-\x{FFEF}])*([a-z]|[\x{00A0}-\x{D7FF}\x{F900}-\x{FDCF}\x{FDF0}-\x{FFEF}])))$"#).expect("the email pattern compiles")
});

pub fn is_valid_email(email: &str) -> bool {
    EMAIL.is_match(email)
}

/// Every rule a new user breaks, as `(field, message)` in Strapi's words and order.
pub fn rule_violations(username: &str, email: &str, password: &str) -> Vec<(&'static str, String)> {
    let mut broken = Vec::new();
    let chars = |s: &str| s.chars().count();
    if !is_valid_email(email) {
        broken.push(("email", "email must be a valid email".to_owned()));
    }
    if password.len() > PASSWORD_MAX_BYTES {
        broken.push(("password", "Password must be less than 73 bytes".to_owned()));
    }
    // Control characters (C0 with NUL, DEL, C1) have no place in a name, and a terminal
    // obeys them when an operator lists users; PostgreSQL cannot even store a NUL. Strapi
    // takes them; we refuse them. yup's email pattern lets C0 through in a quoted local part.
    for (field, value) in [("username", username), ("email", email)] {
        if value.chars().any(char::is_control) {
            broken.push((
                field,
                format!("{field} must not contain control characters"),
            ));
        }
    }
    if chars(username) < USERNAME_MIN {
        broken.push((
            "username",
            format!("username must be at least {USERNAME_MIN} characters"),
        ));
    }
    if chars(username) > USERNAME_MAX {
        broken.push((
            "username",
            format!("username must be at most {USERNAME_MAX} characters"),
        ));
    }
    if chars(email) < EMAIL_MIN {
        broken.push((
            "email",
            format!("email must be at least {EMAIL_MIN} characters"),
        ));
    }
    if chars(password) < PASSWORD_MIN {
        broken.push((
            "password",
            format!("password must be at least {PASSWORD_MIN} characters"),
        ));
    }
    broken
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
    #[error("no such user")]
    NotFound,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// The users table on either backend. The SQL is written once, with `?` placeholders;
/// PostgreSQL gets them numbered (`$1`, `$2`, …).
#[derive(Clone, Debug)]
pub enum UserStore {
    Sqlite(Database),
    Postgres(PgPool),
}

/// Runs one statement on whichever backend, binding the same values, and maps the rows
/// with `user`: `$fetch` is `fetch_optional` or `fetch_all`; `$pool` picks SQLite's reader or
/// writer (PostgreSQL has one pool).
macro_rules! on_users {
    ($store:expr, $pool:ident, $sql:expr, $fetch:ident, [$($bind:expr),* $(,)?]) => {{
        let sql: String = $sql;
        match $store {
            UserStore::Sqlite(db) => {
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))$(.bind($bind))*.$fetch(&db.$pool).await?;
                on_users!(@map rows, $fetch)
            }
            UserStore::Postgres(pool) => {
                let rows = sqlx::query(sqlx::AssertSqlSafe(numbered(&sql)))$(.bind($bind))*.$fetch(pool).await?;
                on_users!(@map rows, $fetch)
            }
        }
    }};
    (@map $rows:ident, fetch_optional) => { $rows.as_ref().map(user).transpose()? };
    (@map $rows:ident, fetch_all) => { $rows.iter().map(user).collect::<Result<Vec<_>, _>>()? };
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

fn user<R: Row>(row: &R) -> Result<User, sqlx::Error>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database>,
{
    let time = |column: &str| -> Result<DateTime<Utc>, sqlx::Error> {
        let text: String = row.try_get(column)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))
    };
    Ok(User {
        id: row.try_get("id")?,
        document_id: row.try_get("document_id")?,
        username: row.try_get("username")?,
        email: row.try_get("email")?,
        password_hash: row.try_get("password_hash")?,
        provider: row.try_get("provider")?,
        confirmed: row.try_get("confirmed")?,
        blocked: row.try_get("blocked")?,
        created_at: time("created_at")?,
        updated_at: time("updated_at")?,
    })
}

impl UserStore {
    pub fn new(db: Database) -> UserStore {
        UserStore::Sqlite(db)
    }

    /// Creates a local user unless its email or username is taken — by either column, since
    /// login matches an identifier against both: a username equal to someone's email would
    /// otherwise capture that person's logins. The check and the insert are one step:
    /// SQLite's `BEGIN IMMEDIATE`, PostgreSQL's table lock (other instances register too).
    pub async fn create(&self, new: NewUser, now: DateTime<Utc>) -> Result<User, UserError> {
        let email = new.email.to_lowercase();
        let stamp = strapi_time(&now);
        let check = "SELECT 1 FROM users WHERE email IN (?, ?) OR username IN (?, ?, ?) LIMIT 1";
        let insert = format!(
            "INSERT INTO users (document_id, username, email, password_hash, provider, confirmed, \
             blocked, created_at, updated_at) VALUES (?, ?, ?, ?, 'local', TRUE, FALSE, ?, ?) \
             RETURNING {COLUMNS}"
        );
        let taken_error = |e: sqlx::Error| match e {
            sqlx::Error::Database(d) if d.is_unique_violation() => UserError::Taken,
            other => other.into(),
        };
        macro_rules! create_in {
            ($tx:ident, $check:expr, $insert:expr) => {{
                let taken = sqlx::query(sqlx::AssertSqlSafe($check))
                    .bind(&email)
                    .bind(new.username.to_lowercase())
                    .bind(&new.username)
                    .bind(&new.email)
                    .bind(&email)
                    .fetch_optional(&mut *$tx)
                    .await?;
                if taken.is_some() {
                    return Err(UserError::Taken);
                }
                let row = sqlx::query(sqlx::AssertSqlSafe($insert))
                    .bind(document_id())
                    .bind(&new.username)
                    .bind(&email)
                    .bind(&new.password_hash)
                    .bind(&stamp)
                    .bind(&stamp)
                    .fetch_one(&mut *$tx)
                    .await
                    .map_err(taken_error)?;
                let created = user(&row)?;
                $tx.commit().await?;
                Ok(created)
            }};
        }
        match self {
            UserStore::Sqlite(db) => {
                let mut tx = db.writer.begin_with("BEGIN IMMEDIATE").await?;
                create_in!(tx, check.to_owned(), insert)
            }
            UserStore::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
                    .execute(&mut *tx)
                    .await?;
                create_in!(tx, numbered(check), numbered(&insert))
            }
        }
    }

    /// Inserts many users in one transaction per thousand, with no check beyond the table's
    /// unique keys: for `tokenledger seed`, which fills an empty database. Returns their ids.
    pub async fn create_many(
        &self,
        users: &[NewUser],
        now: DateTime<Utc>,
    ) -> Result<Vec<UserId>, UserError> {
        let stamp = strapi_time(&now);
        let mut ids = Vec::with_capacity(users.len());
        for chunk in users.chunks(1000) {
            let rows = vec!["(?, ?, ?, ?, 'local', TRUE, FALSE, ?, ?)"; chunk.len()].join(", ");
            let sql = format!(
                "INSERT INTO users (document_id, username, email, password_hash, provider, \
                 confirmed, blocked, created_at, updated_at) VALUES {rows} RETURNING id"
            );
            macro_rules! insert {
                ($sql:expr, $pool:expr) => {{
                    let mut query = sqlx::query(sqlx::AssertSqlSafe($sql));
                    for user in chunk {
                        query = query
                            .bind(document_id())
                            .bind(&user.username)
                            .bind(user.email.to_lowercase())
                            .bind(&user.password_hash)
                            .bind(&stamp)
                            .bind(&stamp);
                    }
                    let rows = query.fetch_all($pool).await?;
                    for row in rows {
                        ids.push(row.try_get::<i64, _>(0)?);
                    }
                }};
            }
            match self {
                UserStore::Sqlite(db) => insert!(sql, &db.writer),
                UserStore::Postgres(pool) => insert!(numbered(&sql), pool),
            }
        }
        Ok(ids)
    }

    /// The local user whose email matches `identifier` case-insensitively, or whose username
    /// matches it exactly (Strapi's rule).
    pub async fn find_by_identifier(&self, identifier: &str) -> Result<Option<User>, UserError> {
        // No name or email holds a NUL (registration refuses one), and PostgreSQL would fail
        // the query instead of finding nothing.
        if identifier.contains('\0') {
            return Ok(None);
        }
        let lower = identifier.to_lowercase();
        Ok(on_users!(
            self,
            reader,
            format!(
                "SELECT {COLUMNS} FROM users WHERE provider = 'local' AND (email = ? OR username = ?) \
                 ORDER BY (email = ?) DESC LIMIT 1"
            ),
            fetch_optional,
            [&lower, identifier, &lower]
        ))
    }

    /// A user by email (any case) or username, else by id: a username made of digits is
    /// that user's, not the user with that id.
    pub async fn find_any(&self, key: &str) -> Result<Option<User>, UserError> {
        if let Some(user) = self.find_by_identifier(key).await? {
            return Ok(Some(user));
        }
        match key.parse::<UserId>() {
            Ok(id) => self.find(id).await,
            Err(_) => Ok(None),
        }
    }

    /// Replaces the password hash if it is still `previous`; `NotFound` otherwise.
    pub async fn set_password(
        &self,
        id: UserId,
        previous: &str,
        hash: &str,
        now: DateTime<Utc>,
    ) -> Result<User, UserError> {
        let updated = on_users!(
            self,
            writer,
            format!(
                "UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ? AND password_hash = ? \
                 RETURNING {COLUMNS}"
            ),
            fetch_optional,
            [hash, strapi_time(&now), id, previous]
        );
        updated.ok_or(UserError::NotFound)
    }

    pub async fn set_blocked(
        &self,
        id: UserId,
        blocked: bool,
        now: DateTime<Utc>,
    ) -> Result<User, UserError> {
        let updated = on_users!(
            self,
            writer,
            format!(
                "UPDATE users SET blocked = ?, updated_at = ? WHERE id = ? RETURNING {COLUMNS}"
            ),
            fetch_optional,
            [blocked, strapi_time(&now), id]
        );
        updated.ok_or(UserError::NotFound)
    }

    /// How many users there are.
    pub async fn count(&self) -> Result<i64, UserError> {
        let sql = "SELECT COUNT(*) FROM users";
        Ok(match self {
            UserStore::Sqlite(db) => sqlx::query_scalar(sql).fetch_one(&db.reader).await?,
            UserStore::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await?,
        })
    }

    /// Every user, by id.
    pub async fn all(&self) -> Result<Vec<User>, UserError> {
        Ok(on_users!(
            self,
            reader,
            format!("SELECT {COLUMNS} FROM users ORDER BY id"),
            fetch_all,
            []
        ))
    }

    /// Users whose username or email contains `text`, or whose id it is: the id first, then
    /// exact names, then the rest by id; at most `limit`. An empty `text` lists the newest
    /// users. LIKE's `%`, `_` and `\` in `text` match themselves. Case is ignored, but SQLite
    /// folds ASCII letters only: there `Émile` is found as `Émile` or `ÉMILE`, not as `émile`
    /// (PostgreSQL folds every letter).
    pub async fn search(&self, text: &str, limit: u32) -> Result<Vec<User>, UserError> {
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
        Ok(on_users!(
            self,
            reader,
            format!(
                "SELECT {COLUMNS} FROM users \
                 WHERE LOWER(username) LIKE LOWER(?) ESCAPE '\\' OR email LIKE ? ESCAPE '\\' \
                 OR id = ? \
                 ORDER BY CASE WHEN id = ? THEN 0 \
                 WHEN LOWER(username) = LOWER(?) OR email = ? THEN 1 \
                 ELSE 2 END, {newest_first} LIMIT ?"
            ),
            fetch_all,
            [&typed, &folded, id, id, text, &lower, i64::from(limit)]
        ))
    }

    pub async fn find(&self, id: UserId) -> Result<Option<User>, UserError> {
        Ok(on_users!(
            self,
            reader,
            format!("SELECT {COLUMNS} FROM users WHERE id = ?"),
            fetch_optional,
            [id]
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_follow_yups_pattern() {
        for good in [
            "a@b.co",
            "a+b@ex.com",
            "üser@ex.com",
            "user@ëx.com",
            "\"quo ted\"@ex.com",
            "user@ex_ample.com",
        ] {
            assert!(is_valid_email(good), "{good}");
        }
        for bad in [
            "a",
            "a@b",
            "user@1.2.3.4",
            "user@[127.0.0.1]",
            ".user@ex.com",
            "user.@ex.com",
            "user@-ex.com",
            "user@ex.c1",
            "a@b@ex.com",
            "a b@ex.com",
        ] {
            assert!(!is_valid_email(bad), "{bad}");
        }
    }

    #[test]
    fn control_characters_in_a_username_or_email_are_refused() {
        for name in [
            "a\0b",
            "a\u{1b}[2Jb",
            "a\nb",
            "a\u{7f}b",
            "a\u{9b}b",
            "a\u{85}b",
        ] {
            assert_eq!(
                rule_violations(name, "nul@example.com", "password123"),
                [(
                    "username",
                    "username must not contain control characters".to_owned()
                )],
                "{name:?}"
            );
        }
        assert_eq!(
            rule_violations("alice", "\"\u{1b}[2J\"@example.com", "password123"),
            [(
                "email",
                "email must not contain control characters".to_owned()
            )]
        );
        // Letters beyond ASCII are not controls.
        assert!(rule_violations("Émile 😀", "émile@example.com", "password123").is_empty());
    }

    #[test]
    fn rules_are_reported_in_strapis_order() {
        assert!(rule_violations("alice", "alice@example.com", "password123").is_empty());
        let broken: Vec<_> = rule_violations("ab", "bad", "1")
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(broken, ["email", "username", "email", "password"]);
        assert_eq!(
            rule_violations("alice", "alice@example.com", &"x".repeat(73))[0].1,
            "Password must be less than 73 bytes"
        );
    }
}
