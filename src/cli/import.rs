//! `tokenledger import strapi --from <sqlite file | postgres URL>`: a running Strapi's users
//! and the refresh-token plugin's live tokens, brought in so that nobody has to log in again.
//!
//! Users keep their ids, `documentId`s, names, state and times; their bcrypt hashes verify at
//! login and are replaced by argon2id then (`PasswordRehashed`). Each plugin token row becomes
//! a session whose one accepted token is the plugin's JWT, known by the hash of its `secret`
//! (`tokens::plugin_session`); the secret itself is never stored or printed. Running the
//! import again adds only what is new: a user imported before, a session issued before (even
//! one ended since), a conflict with a user of this service, are each reported and left.

use std::collections::{HashMap, HashSet};

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::ColumnIndex;
use tokenledger_domain::{
    Client, Command as DomainCommand, DomainError, Event, ImportSession, Lifetimes, UserId,
};

use super::{core_for, operator};
use crate::actors::{Execute, ExecuteError, execute_once};
use crate::config::Config;
use crate::store::dialect::Value;
use crate::store::users::{Import, ImportedUser};
use crate::store::{self, Opened, StoreKeys, ledger::Upgrading, stream_of};
use crate::terminal::printable;
use crate::tokens::plugin_session;

/// A row of the plugin's `refresh-token_token`, with its user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginToken {
    pub row_id: i64,
    pub user_id: UserId,
    /// The row's `document_id`: the token's `secret` claim.
    pub secret: String,
    pub ip: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// What a Strapi database holds for the import.
pub struct Source {
    /// How the import names it in `UserImported`: kind and place, never a credential.
    pub name: String,
    pub users: Vec<ImportedUser>,
    /// `None`: the plugin is not installed there.
    pub tokens: Option<Vec<PluginToken>>,
}

/// Milliseconds since the epoch of a Strapi datetime column, whichever way it is stored.
fn millis(column: &str, postgres: bool) -> String {
    if postgres {
        format!("CAST(EXTRACT(EPOCH FROM {column}) * 1000 AS BIGINT)")
    } else {
        // Strapi on SQLite writes milliseconds; text is read as a date, just in case.
        format!(
            "CASE WHEN typeof({column}) IN ('integer', 'real') THEN CAST({column} AS INTEGER) \
             ELSE CAST(ROUND((julianday({column}) - 2440587.5) * 86400000) AS INTEGER) END"
        )
    }
}

fn flag(column: &str) -> String {
    format!("CAST(CASE WHEN {column} THEN 1 ELSE 0 END AS BIGINT)")
}

fn users_sql(postgres: bool) -> String {
    format!(
        "SELECT CAST(id AS BIGINT), document_id, username, email, provider, password, {}, {}, \
         {}, {}, {} FROM up_users ORDER BY id",
        flag("confirmed"),
        flag("blocked"),
        millis("created_at", postgres),
        millis("updated_at", postgres),
        millis("published_at", postgres),
    )
}

fn tokens_sql(postgres: bool) -> String {
    format!(
        "SELECT CAST(t.id AS BIGINT), CAST(l.user_id AS BIGINT), t.document_id, t.ip_address, {} \
         FROM \"refresh-token_token\" t JOIN refresh_token_token_user_lnk l ON l.token_id = t.id \
         ORDER BY t.id",
        millis("t.created_at", postgres)
    )
}

fn time(ms: Option<i64>, now: DateTime<Utc>) -> DateTime<Utc> {
    ms.and_then(DateTime::from_timestamp_millis).unwrap_or(now)
}

/// A users row; one without a username or email cannot log in here, and is reported.
fn user_of<R: sqlx::Row>(
    row: &R,
    now: DateTime<Utc>,
) -> Result<Result<ImportedUser, String>, sqlx::Error>
where
    usize: ColumnIndex<R>,
    i64: Value<R::Database>,
    Option<i64>: Value<R::Database>,
    Option<String>: Value<R::Database>,
{
    let id: i64 = row.try_get(0)?;
    let (Some(document_id), Some(username), Some(email)) = (
        row.try_get::<Option<String>, _>(1)?,
        row.try_get::<Option<String>, _>(2)?,
        row.try_get::<Option<String>, _>(3)?,
    ) else {
        return Ok(Err(format!(
            "Strapi user {id}: no documentId, username or email, left out"
        )));
    };
    Ok(Ok(ImportedUser {
        id,
        document_id,
        username,
        email,
        provider: row
            .try_get::<Option<String>, _>(4)?
            .unwrap_or_else(|| "local".to_owned()),
        password_hash: row.try_get(5)?,
        confirmed: row.try_get::<i64, _>(6)? != 0,
        blocked: row.try_get::<i64, _>(7)? != 0,
        created_at: time(row.try_get(8)?, now),
        updated_at: time(row.try_get(9)?, now),
        published_at: row
            .try_get::<Option<i64>, _>(10)?
            .and_then(DateTime::from_timestamp_millis),
    }))
}

fn token_of<R: sqlx::Row>(row: &R, now: DateTime<Utc>) -> Result<Option<PluginToken>, sqlx::Error>
where
    usize: ColumnIndex<R>,
    i64: Value<R::Database>,
    Option<i64>: Value<R::Database>,
    Option<String>: Value<R::Database>,
{
    let Some(secret) = row.try_get::<Option<String>, _>(2)? else {
        return Ok(None);
    };
    Ok(Some(PluginToken {
        row_id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        secret,
        ip: row.try_get(3)?,
        created_at: time(row.try_get(4)?, now),
    }))
}

/// Whether the failed query means the plugin's tables are not there.
fn no_plugin(error: &sqlx::Error) -> bool {
    let text = error.to_string();
    text.contains("no such table") || text.contains("does not exist")
}

/// The users and plugin tokens of a Strapi database, whichever kind it is.
async fn rows_of<DB: sqlx::Database>(
    pool: &sqlx::Pool<DB>,
    postgres: bool,
    now: DateTime<Utc>,
) -> anyhow::Result<Rows>
where
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
    <DB as sqlx::Database>::Arguments: sqlx::IntoArguments<DB>,
    usize: ColumnIndex<DB::Row>,
    i64: Value<DB>,
    Option<i64>: Value<DB>,
    Option<String>: Value<DB>,
{
    let users = sqlx::query(sqlx::AssertSqlSafe(users_sql(postgres)))
        .fetch_all(pool)
        .await
        .context("reading up_users")?;
    let users = users
        .iter()
        .map(|r| user_of(r, now))
        .collect::<Result<_, _>>()?;
    let tokens = match sqlx::query(sqlx::AssertSqlSafe(tokens_sql(postgres)))
        .fetch_all(pool)
        .await
    {
        Ok(rows) => Some(
            rows.iter()
                .map(|r| token_of(r, now))
                .collect::<Result<_, _>>()?,
        ),
        Err(error) if no_plugin(&error) => None,
        Err(error) => return Err(error).context("reading refresh-token_token"),
    };
    Ok((users, tokens))
}

type Rows = (
    Vec<Result<ImportedUser, String>>,
    Option<Vec<Option<PluginToken>>>,
);

/// Reads a Strapi database: a SQLite file (opened read-only) or a PostgreSQL URL.
pub async fn read(
    from: &str,
    now: DateTime<Utc>,
    left_out: &mut Vec<String>,
) -> anyhow::Result<Source> {
    let postgres = from.starts_with("postgres://") || from.starts_with("postgresql://");
    let ((users, tokens), name) = if postgres {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(from)
            .await
            .context("connecting to the Strapi database")?;
        let rows = rows_of(&pool, true, now).await;
        pool.close().await;
        (
            rows?,
            format!("strapi postgres {}", without_credentials(from)),
        )
    } else {
        let path = from.strip_prefix("sqlite://").unwrap_or(from);
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(path)
            .read_only(true);
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .with_context(|| format!("opening the Strapi database {path}"))?;
        let rows = rows_of(&pool, false, now).await;
        pool.close().await;
        (rows?, format!("strapi sqlite {path}"))
    };
    let mut kept = Vec::with_capacity(users.len());
    for user in users {
        match user {
            Ok(user) => kept.push(user),
            Err(why) => left_out.push(why),
        }
    }
    Ok(Source {
        name,
        users: kept,
        tokens: tokens.map(|t| t.into_iter().flatten().collect()),
    })
}

/// `postgres://user:password@host:5432/db?x` → `host:5432/db`.
fn without_credentials(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    rest.split('?').next().unwrap_or(rest).to_owned()
}

/// What became of one plugin token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenOutcome {
    Imported,
    AlreadyThere,
    Expired,
    /// Its user was not imported (a conflict, or not in `up_users`), or is blocked.
    UserLeftOut(&'static str),
}

/// The pure part of a token's fate before any write: whose it is, and whether that user
/// takes sessions.
pub fn token_owner(token: &PluginToken, users: &Owners) -> Result<UserId, TokenOutcome> {
    match users.get(&token.user_id) {
        Some(Owner::TakesSessions) => Ok(token.user_id),
        Some(Owner::Blocked) => Err(TokenOutcome::UserLeftOut("its user is blocked")),
        Some(Owner::LeftOut) | None => Err(TokenOutcome::UserLeftOut("its user was not imported")),
    }
}

/// What an imported (or conflicting) user is to its plugin tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    TakesSessions,
    Blocked,
    /// A conflict: the user was not imported.
    LeftOut,
}

/// The Strapi users by id, as their tokens find them.
pub type Owners = HashMap<UserId, Owner>;

fn owner(user: &ImportedUser, imported: bool) -> Owner {
    match (imported, user.blocked) {
        (false, _) => Owner::LeftOut,
        (true, true) => Owner::Blocked,
        (true, false) => Owner::TakesSessions,
    }
}

/// The command that brings `token` in as a session.
pub fn session_command(token: &PluginToken, lifetimes: Lifetimes) -> ImportSession {
    let derived = plugin_session(&token.secret);
    ImportSession {
        session_id: derived.session_id,
        device_id: derived.session_id.to_string(),
        token_id: derived.token_id,
        token_hash: derived.hash,
        created_at: token.created_at,
        lifetimes,
        client: Client {
            ip: token.ip.clone(),
            user_agent: None,
        },
    }
}

/// Every session `user_id`'s stream has ever issued: an imported one that ended since must
/// not come back with a second import.
async fn sessions_ever(opened: &Opened, user_id: UserId) -> anyhow::Result<HashSet<uuid::Uuid>> {
    let records = opened.events.read_stream(&stream_of(user_id), 0).await?;
    let mut ids = HashSet::new();
    for record in records {
        if record.event_type != "TokenIssued" {
            continue;
        }
        if let Event::TokenIssued(issued) = record.decode()? {
            ids.insert(issued.session_id);
        }
    }
    Ok(ids)
}

/// `import strapi`.
pub async fn strapi(config: &Config, from: &str, dry_run: bool) -> anyhow::Result<()> {
    let now = Utc::now();
    let mut left_out = Vec::new();
    let source = read(from, now, &mut left_out).await?;
    let opened = store::open(
        &config.server.database_url,
        false,
        &StoreKeys::of(config)?,
        if dry_run {
            Upgrading::Leave
        } else {
            Upgrading::for_writing(&config.ledger)
        },
    )
    .await?;
    let outcome = run(config, &opened, &source, now, dry_run).await;
    opened.events.close().await;
    let report = outcome?;
    for line in left_out {
        say!("{}", printable(&line));
    }
    report.print(&source.name, dry_run);
    Ok(())
}

/// What an import did (or, dry, would do).
#[derive(Default)]
struct Report {
    lines: Vec<String>,
    users: [usize; 3],
    sessions: [usize; 4],
}

impl Report {
    fn print(&self, source: &str, dry_run: bool) {
        for line in &self.lines {
            say!("{}", printable(line));
        }
        let verb = if dry_run { "would import" } else { "imported" };
        let [added, there, conflicts] = self.users;
        let [sessions, already, expired, left] = self.sessions;
        say!(
            "{verb} from {}: {added} users ({there} already here, {conflicts} conflicts); \
             {sessions} plugin sessions ({already} already here, {expired} expired, {left} \
             left out)",
            printable(source)
        );
    }
}

async fn run(
    config: &Config,
    opened: &Opened,
    source: &Source,
    now: DateTime<Utc>,
    dry_run: bool,
) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let imported = import_users(opened, source, now, dry_run, &mut report).await?;
    let Some(tokens) = &source.tokens else {
        report
            .lines
            .push("no refresh-token plugin tables: no sessions to import".to_owned());
        return Ok(report);
    };
    let core = if dry_run {
        None
    } else {
        Some(core_for(config, opened)?)
    };
    let lifetimes = Lifetimes {
        refresh_token: config.lifetimes.refresh_token_expires_in,
        idle_timeout: config.lifetimes.session_idle_timeout,
        absolute: config.lifetimes.session_absolute_lifetime,
    };
    // Each user's stream is read once, however many tokens the user had.
    let mut issued: HashMap<UserId, HashSet<uuid::Uuid>> = HashMap::new();
    for token in tokens {
        let outcome = match token_owner(token, &imported) {
            Err(outcome) => outcome,
            Ok(user_id) => {
                let command = session_command(token, lifetimes);
                if let std::collections::hash_map::Entry::Vacant(slot) = issued.entry(user_id) {
                    slot.insert(sessions_ever(opened, user_id).await?);
                }
                if issued[&user_id].contains(&command.session_id) {
                    TokenOutcome::AlreadyThere
                } else if let Some(core) = &core {
                    import_session(core.clone(), user_id, command, operator()).await?
                } else if command.created_at + lifetimes.refresh_token <= now {
                    TokenOutcome::Expired
                } else {
                    TokenOutcome::Imported
                }
            }
        };
        let (slot, what) = match outcome {
            TokenOutcome::Imported => (0, "imported".to_owned()),
            TokenOutcome::AlreadyThere => (1, "already imported".to_owned()),
            TokenOutcome::Expired => (2, "expired, left out".to_owned()),
            TokenOutcome::UserLeftOut(why) => (3, format!("left out: {why}")),
        };
        report.sessions[slot] += 1;
        report.lines.push(format!(
            "plugin token row {} of user {}: {what}",
            token.row_id, token.user_id
        ));
    }
    Ok(report)
}

/// Imports (or, dry, checks) each user; returns them with whether each may take sessions
/// (not a conflict).
async fn import_users(
    opened: &Opened,
    source: &Source,
    now: DateTime<Utc>,
    dry_run: bool,
    report: &mut Report,
) -> anyhow::Result<Owners> {
    let metadata = operator();
    let mut imported = Owners::with_capacity(source.users.len());
    for user in &source.users {
        let outcome = if dry_run {
            opened.users.import_check(user).await?
        } else {
            opened
                .users
                .import(user, &source.name, now, &metadata)
                .await?
        };
        let (slot, what) = match &outcome {
            Import::Added => (0, "imported".to_owned()),
            Import::AlreadyThere => (1, "already imported".to_owned()),
            Import::Conflict(why) => (2, format!("conflict, left out: {why}")),
        };
        report.users[slot] += 1;
        report
            .lines
            .push(format!("user {} ({}): {what}", user.id, user.username));
        imported.insert(
            user.id,
            owner(user, !matches!(outcome, Import::Conflict(_))),
        );
    }
    Ok(imported)
}

async fn import_session(
    core: std::sync::Arc<crate::actors::Core>,
    user_id: UserId,
    command: ImportSession,
    metadata: crate::store::EventMetadata,
) -> anyhow::Result<TokenOutcome> {
    let execute = Execute {
        command: DomainCommand::ImportSession(command),
        metadata,
    };
    match execute_once(core, user_id, execute).await {
        Ok(_) => Ok(TokenOutcome::Imported),
        Err(ExecuteError::Refused(DomainError::SessionExists)) => Ok(TokenOutcome::AlreadyThere),
        Err(ExecuteError::Refused(DomainError::Expired)) => Ok(TokenOutcome::Expired),
        Err(other) => Err(other.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postgres_source_is_named_without_its_credentials() {
        assert_eq!(
            without_credentials("postgres://strapi:s3cret@db.internal:5432/strapi?sslmode=require"),
            "db.internal:5432/strapi"
        );
        assert_eq!(without_credentials("postgresql://db/strapi"), "db/strapi");
    }

    fn ada(blocked: bool) -> ImportedUser {
        let at = DateTime::from_timestamp_millis(1_796_237_765_143).unwrap();
        ImportedUser {
            id: 1,
            document_id: "k8j7ju2dajihatvv8j0nrfho".into(),
            username: "ada".into(),
            email: "ada@example.com".into(),
            provider: "local".into(),
            password_hash: None,
            confirmed: true,
            blocked,
            created_at: at,
            updated_at: at,
            published_at: None,
        }
    }

    fn token(user_id: UserId) -> PluginToken {
        PluginToken {
            row_id: 1,
            user_id,
            secret: "bga7xt3ue0781ubp1v5go3bh".into(),
            ip: Some("127.0.0.1".into()),
            created_at: DateTime::from_timestamp_millis(1_796_237_765_551).unwrap(),
        }
    }

    #[test]
    fn given_tokens_when_their_users_were_left_out_or_blocked_then_they_are_not_imported() {
        let users =
            |user: ImportedUser, imported| Owners::from([(user.id, owner(&user, imported))]);
        assert_eq!(token_owner(&token(1), &users(ada(false), true)), Ok(1));
        assert!(token_owner(&token(2), &users(ada(false), true)).is_err());
        assert!(token_owner(&token(1), &users(ada(false), false)).is_err());
        assert_eq!(
            token_owner(&token(1), &users(ada(true), true)),
            Err(TokenOutcome::UserLeftOut("its user is blocked"))
        );
    }

    #[test]
    fn given_a_plugin_token_then_its_session_holds_the_secret_only_as_a_hash() {
        let lifetimes = Lifetimes {
            refresh_token: chrono::TimeDelta::days(30),
            idle_timeout: chrono::TimeDelta::days(30),
            absolute: chrono::TimeDelta::days(90),
        };
        let command = session_command(&token(1), lifetimes);
        assert_eq!(
            command.token_hash,
            crate::tokens::hash("bga7xt3ue0781ubp1v5go3bh")
        );
        assert_eq!(
            command.session_id,
            plugin_session("bga7xt3ue0781ubp1v5go3bh").session_id
        );
        // Another secret, another session.
        assert_ne!(
            command.session_id,
            plugin_session("rxgaqo3wz0s8ghv7mphn2op4").session_id
        );
        assert_eq!(command.created_at, token(1).created_at);
    }
}
