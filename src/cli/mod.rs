//! The command line: `serve` (the default), `migrate`, `user add`.
//! Stored text it prints (names, user agents, device ids) came from clients: it goes out
//! through `crate::terminal::printable`, never raw to the operator's terminal.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context;
use chrono::Utc;
use clap::{Parser, Subcommand};

/// `println!` that ends the program quietly when the reader of stdout has gone away
/// (`tokenledger audit … | head`), instead of panicking on the broken pipe.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(error) = writeln!(std::io::stdout(), $($arg)*) {
            if error.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

mod forensics;
mod import;
mod keys;
mod ledger;
mod probe;
mod seed;
mod snapshot;

use std::sync::{Arc, RwLock};

use tokenledger_domain::{ClearReason, ClearSessions, Command as DomainCommand};
use tokenledger_projections::ActiveSessions;

use crate::actors::{Core, Execute, execute_once};
use crate::app::Application;
use crate::clock::Clock;
use crate::config::{Config, LogFormat};
use crate::password::Passwords;
use crate::rules::rule_violations;
use crate::secrets;
use crate::store::ledger::Upgrading;
use crate::store::users::User;
use crate::store::users::{NewUser, strapi_time};
use crate::store::{self, Actor, EventMetadata};
use crate::store::{Opened, StoreKeys};
use crate::terminal::printable;
use crate::tokens::Tokens;
use tokenledger_domain::UserId;

#[derive(Debug, Parser)]
#[command(
    name = "tokenledger",
    version,
    about = "Event-sourced login, refresh tokens and sessions",
    after_long_help = crate::config::help()
)]
pub struct Cli {
    /// Configuration file (TOML); environment variables override it.
    #[arg(long, env = "TOKENLEDGER_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Accept weak secrets such as `SomethingSecret`: for local experiments only.
    #[arg(long, global = true)]
    pub insecure_dev: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Create or upgrade the database schema and build the ledger's tree, then exit.
    Migrate {
        /// Seal the events of a log an older version wrote (unkeyed), which a start with an
        /// existing ledger key refuses to do by itself: see README, "The ledger".
        #[arg(long)]
        seal_legacy: bool,
    },
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Bring in users (and live sessions) from another system.
    #[command(subcommand)]
    Import(ImportCommand),
    /// A user's event trail (id, email or username): time, event, session, generation, IP,
    /// user agent, actor.
    Audit {
        user: String,
        /// One JSON object a line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The sessions that were alive at a moment, folded from the log.
    Replay {
        /// An RFC 3339 time, like 2026-11-29T10:42:00Z (default: now).
        #[arg(long)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        /// Only this user (id, email or username).
        #[arg(long)]
        user: Option<String>,
    },
    /// Ask the instance serving on this machine (HOST, PORT) whether it is ready (`/_ready`):
    /// exit 0 when it is, 1 when not, with the reason. For container health checks.
    Probe {
        /// The port to ask instead of PORT.
        #[arg(long)]
        port: Option<u16>,
    },
    /// Check the log: the keyed hash chain, the Merkle tree against every stored checkpoint
    /// and each given checkpoint file; exit 0 printing `ok` and the tree size, else non-zero
    /// naming the first bad position or checkpoint.
    Verify {
        /// A checkpoint file kept outside the database (several notes, as CHECKPOINT_FILE
        /// collects them, are each checked). Repeatable.
        #[arg(long)]
        checkpoint: Vec<PathBuf>,
    },
    /// The ledger: its verifier key, checkpoints and proofs.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// The keys that sign access tokens: list them, or rotate (without logging anyone out).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Refold every projection from the first event, timed (snapshots are not used), and
    /// print the projection's digest.
    Rebuild,
    /// Store a snapshot of the sessions projection (from the newest snapshot that verifies
    /// and the log after it), which the next start loads instead of folding the whole log.
    Snapshot,
    /// How long one password verification takes on this machine (argon2id with the service's
    /// parameters): the bound on logins a second is cores ÷ this.
    PasswordCost {
        /// Verifications to time; the median is printed.
        #[arg(long, default_value_t = 21)]
        count: usize,
    },
    /// Fill an empty database with a realistic log (users `seed-0`, `seed-1`, … logging in,
    /// rotating, logging out), for benchmarks.
    Seed {
        /// How many users.
        #[arg(long, default_value_t = 1000)]
        users: usize,
        /// About how many events, spread evenly over the users.
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        /// The password every seeded user logs in with.
        #[arg(long, default_value = "seed-password-1")]
        password: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Print the checkpoints' verifier key: `<name>+<key id>+<base64 key>`.
    Key,
    /// Print the latest signed checkpoint, making one first if the log grew.
    Checkpoint,
    /// Print an event's inclusion proof as JSON.
    Prove {
        #[arg(long)]
        position: i64,
        /// The tree size to prove against (default: the whole tree), e.g. a checkpoint's.
        #[arg(long)]
        size: Option<u64>,
    },
    /// Check an inclusion proof against a signed checkpoint, without any database.
    VerifyProof {
        /// The verifier key (`tokenledger ledger key`).
        #[arg(long)]
        key: String,
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long)]
        proof: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make the next key of ACCESS_TOKEN_ALG the one that signs; the one before still
    /// verifies the tokens it signed until they expire. Run it with the server's
    /// configuration; a running server takes the new key within a second.
    Rotate,
    /// The keys: generation, algorithm, kid, since when, and what each does now.
    List {
        /// Also print the secrets of rotated HS256 keys, which the services that check
        /// HS256 tokens need.
        #[arg(long)]
        secrets: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// A Strapi 5 database's users (ids, documentIds, bcrypt hashes, blocked, confirmed) and
    /// the refresh-token plugin's live tokens, as sessions that keep working with the plugin's
    /// JWT (REFRESH_JWT_SECRET must be the Strapi deployment's). Run it before `serve`, or
    /// restart after it; running it again adds only what is new.
    Strapi {
        /// The Strapi database: a SQLite file (read-only) or a `postgres://` URL.
        #[arg(long)]
        from: String,
        /// Say what would be imported, and write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a local user.
    Add {
        #[arg(long)]
        username: String,
        #[arg(long)]
        email: String,
        /// The password; prefer TOKENLEDGER_PASSWORD so it stays out of the shell history.
        #[arg(long, env = "TOKENLEDGER_PASSWORD", hide_env_values = true)]
        password: String,
    },
    /// List the users: id, username, email, blocked, created.
    List,
    /// Block a user: every session ends (`SessionsCleared{blocked}`) and login is refused.
    Block {
        /// User id, email or username.
        user: String,
    },
    /// Lift a block: the user may log in again.
    Unblock {
        /// User id, email or username.
        user: String,
    },
    /// Forget a user (erasure): the row and the user's data keys are deleted and every
    /// session ends; the events stay, with their personal fields erased.
    Forget {
        /// User id, email or username.
        user: String,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours are for a terminal; in a file or a collector they are noise.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let env: HashMap<String, String> = std::env::vars().collect();
    // A health check needs HOST and PORT, not secrets strong enough to serve with: the
    // container's check must not fail where the instance was started with --insecure-dev.
    let probing = matches!(cli.command, Some(Command::Probe { .. }));
    let mut config = Config::load(cli.config.as_deref(), &env, cli.insecure_dev || probing)?;
    resolve_secrets(cli.command.as_ref(), &mut config)?;
    let format = config.logging.format;
    init_logging(format);
    let outcome = actix_web::rt::System::new().block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(config).await,
            Command::Audit { user, json } => forensics::audit(&config, &user, json).await,
            Command::Replay { until, user } => {
                forensics::replay(&config, until, user.as_deref()).await
            }
            Command::Probe { port } => {
                let address =
                    probe::address(&config.server.host, port.unwrap_or(config.server.port))?;
                probe::probe(address)?;
                say!("ready: {address}");
                Ok(())
            }
            Command::Verify { checkpoint } => {
                if forensics::verify(&config, &checkpoint).await? {
                    Ok(())
                } else {
                    anyhow::bail!("the event log has been altered")
                }
            }
            Command::Ledger(command) => ledger::run(&config, command).await,
            Command::Keys(command) => keys::run(config, command).await,
            Command::Import(ImportCommand::Strapi { from, dry_run }) => {
                import::strapi(&config, &from, dry_run).await
            }
            Command::Rebuild => forensics::rebuild(&config).await,
            Command::Snapshot => snapshot::snapshot(&config).await,
            Command::PasswordCost { count } => password_cost(count).await,
            Command::Seed {
                users,
                events,
                password,
            } => seed::seed(&config, users, events, password).await,
            Command::Migrate { seal_legacy } => {
                config.ledger.seal_legacy |= seal_legacy;
                migrate(&config).await
            }
            Command::User(UserCommand::List) => list_users(&config).await,
            Command::User(UserCommand::Block { user }) => set_blocked(config, &user, true).await,
            Command::User(UserCommand::Unblock { user }) => set_blocked(config, &user, false).await,
            Command::User(UserCommand::Forget { user }) => forget(config, &user).await,
            Command::User(UserCommand::Add {
                username,
                email,
                password,
            }) => add_user(&config, username, email, password).await,
        }
    });
    match outcome {
        // A collector reading one JSON object a line must get the reason the process ended
        // as one too, with its level.
        Err(error) if format == LogFormat::Json => {
            tracing::error!(error = format!("{error:#}"), "tokenledger stopped");
            Err(Logged.into())
        }
        other => other,
    }
}

/// Every command that opens the database needs the ledger key; those that only read take it
/// from secrets.json without making one (or a folder). `serve` resolves (and reports) the
/// secrets itself.
fn resolve_secrets(command: Option<&Command>, config: &mut Config) -> anyhow::Result<()> {
    let (writes, reads) = match command {
        None | Some(Command::Serve | Command::Probe { .. } | Command::PasswordCost { .. }) => {
            (false, false)
        }
        Some(Command::Ledger(LedgerCommand::VerifyProof { .. })) => (false, false),
        Some(
            Command::Audit { .. }
            | Command::Replay { .. }
            | Command::Verify { .. }
            | Command::Rebuild
            | Command::User(UserCommand::List)
            | Command::Ledger(LedgerCommand::Key | LedgerCommand::Prove { .. }),
        ) => (false, true),
        Some(_) => (true, false),
    };
    let resolved = if writes {
        secrets::resolve(config).map(drop)
    } else if reads {
        secrets::read_existing(config)
    } else {
        Ok(())
    };
    resolved.with_context(|| format!("secrets and keys in {}", config.server.data_dir.display()))
}

/// `serve`: the secrets resolved (made on first start), the warnings said, then the server
/// until a signal stops it.
async fn serve(mut config: Config) -> anyhow::Result<()> {
    let resolved = secrets::resolve(&mut config)
        .with_context(|| format!("signing secrets in {}", config.server.data_dir.display()))?;
    if let Some(said) = resolved {
        tracing::info!("{said}");
    }
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    let app = Application::build(config).await?;
    app.stop_on_signals()
        .context("listening for SIGTERM and SIGINT")?;
    tracing::info!(port = app.port(), "tokenledger is serving");
    app.run_until_stopped().await?;
    Ok(())
}

/// `password-cost`: the median time of one password check here, and the logins a second
/// the cores could check at most.
async fn password_cost(count: usize) -> anyhow::Result<()> {
    let passwords = Passwords::new(1)?;
    let hash = passwords.hash("password-cost".to_owned()).await?;
    let mut times = Vec::with_capacity(count.max(1));
    for _ in 0..count.max(1) {
        let started = std::time::Instant::now();
        passwords
            .verify("password-cost".to_owned(), Some(hash.clone()))
            .await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let median = times[times.len() / 2];
    say!(
        "{{\"verify_ms_median\":{median:.2},\"cores\":{cores},\"logins_per_sec_bound\":{:.1}}}",
        cores as f64 * 1000.0 / median
    );
    Ok(())
}

/// `migrate`: the schema, the seal of a log written before the ledger key, and the ledger's
/// tree built over the whole log (once; later starts extend it), with a progress bar.
async fn migrate(config: &Config) -> anyhow::Result<()> {
    let opened = store::open(
        &config.server.database_url,
        false,
        &StoreKeys::of(config)?,
        Upgrading::for_writing(&config.ledger),
    )
    .await?;
    let total = opened.events.count().await?.max(0) as u64;
    let bar = forensics::progress_bar(total, "events in the ledger's tree");
    let tree = opened
        .ledger
        .extend(&mut |size| match &bar {
            Some(bar) => bar.set_position(size),
            None => eprintln!("{size}/{total} events in the ledger's tree"),
        })
        .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    opened.events.close().await;
    let tree = tree?;
    say!(
        "migrated {}; the ledger's tree covers {} events, root {}",
        config.server.database_url,
        tree.size,
        hex::encode(tree.root)
    );
    Ok(())
}

async fn list_users(config: &Config) -> anyhow::Result<()> {
    let opened = store::open(
        &config.server.database_url,
        true,
        &StoreKeys::of(config)?,
        Upgrading::Leave,
    )
    .await?;
    let users = opened.users.all().await?;
    opened.events.close().await;
    say!(
        "{:>6}  {:<24}  {:<32}  {:<7}  created",
        "id",
        "username",
        "email",
        "blocked"
    );
    for u in users {
        let blocked = if u.blocked { "yes" } else { "no" };
        let created = strapi_time(&u.created_at);
        say!(
            "{:>6}  {:<24}  {:<32}  {:<7}  {created}",
            u.id,
            printable(&u.username),
            printable(&u.email),
            blocked
        );
    }
    Ok(())
}

/// `user add`: Strapi's rules checked first, as registration checks them.
async fn add_user(
    config: &Config,
    username: String,
    email: String,
    password: String,
) -> anyhow::Result<()> {
    let broken = rule_violations(&username, &email, &password);
    if !broken.is_empty() {
        let reasons: Vec<String> = broken.into_iter().map(|(_, message)| message).collect();
        anyhow::bail!("cannot add this user: {}", reasons.join("; "));
    }
    let opened = store::open(
        &config.server.database_url,
        false,
        &StoreKeys::of(config)?,
        Upgrading::for_writing(&config.ledger),
    )
    .await?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let password_hash = Passwords::new(cores)?.hash(password).await?;
    let user = opened
        .users
        .create(
            NewUser {
                username,
                email,
                password_hash,
            },
            Utc::now(),
            &operator(),
        )
        .await?;
    opened.events.close().await;
    say!(
        "added user {} ({}, {})",
        user.id,
        printable(&user.username),
        printable(&user.email)
    );
    Ok(())
}

/// What the events of an operator's command record: a request id of its own, the admin as
/// the actor.
fn operator() -> EventMetadata {
    EventMetadata {
        request_id: Some(uuid::Uuid::now_v7().to_string()),
        actor: Actor::Admin,
        ..EventMetadata::default()
    }
}

/// The error has been written to the log already: `main` need not print it again.
#[derive(Debug, thiserror::Error)]
#[error("the error is in the log")]
pub struct Logged;

/// Opens the database for an operator's change of a user, and finds the user by id, email or
/// username.
async fn open_for_user(config: &Config, key: &str) -> anyhow::Result<(Opened, User)> {
    let opened = store::open(
        &config.server.database_url,
        true,
        &StoreKeys::of(config)?,
        Upgrading::for_writing(&config.ledger),
    )
    .await?;
    let user = opened
        .users
        .find_any(key)
        .await?
        .with_context(|| format!("no user {key:?}"))?;
    Ok((opened, user))
}

/// Ends every session of `user_id` through the same decision an actor makes, appended to
/// the log, so a running server refuses the old tokens too; the actor a running server holds
/// for the user meets the append as a version conflict and reloads.
async fn clear_sessions(
    config: &Config,
    opened: &Opened,
    user_id: UserId,
    reason: ClearReason,
    metadata: EventMetadata,
) -> anyhow::Result<()> {
    let core = core_for(config, opened)?;
    let command = DomainCommand::ClearSessions(ClearSessions {
        reason,
        device_id: None,
        keep: None,
    });
    execute_once(core, user_id, Execute { command, metadata }).await?;
    Ok(())
}

/// What an operator's command decides with, as an actor would: the store, the signing keys
/// and the clock (`execute_once` loads the whole stream itself).
fn core_for(config: &Config, opened: &Opened) -> anyhow::Result<Arc<Core>> {
    let (jwt, refresh) = (
        config.tokens.jwt_secret.clone().context("JWT_SECRET")?,
        config
            .tokens
            .refresh_secret
            .clone()
            .context("REFRESH_JWT_SECRET")?,
    );
    Ok(Arc::new(Core {
        store: opened.events.clone(),
        tokens: Arc::new(Tokens::new(
            jwt.expose().as_bytes(),
            refresh.expose().as_bytes(),
            config.tokens.jwt_expires_in,
        )?),
        projection: Arc::new(RwLock::new(ActiveSessions::new())),
        clock: Arc::new(Clock::system()),
        shared_log: false,
    }))
}

/// Blocks or unblocks a user (its row and its `UserBlocked` or `UserUnblocked`, one
/// transaction). Blocking also clears every session (`clear_sessions`).
async fn set_blocked(config: Config, key: &str, blocked: bool) -> anyhow::Result<()> {
    let (opened, user) = open_for_user(&config, key).await?;
    let was_blocked = user.blocked;
    let metadata = operator();
    let user = opened
        .users
        .set_blocked(user.id, blocked, Utc::now(), &metadata)
        .await?;
    if blocked && !was_blocked {
        clear_sessions(&config, &opened, user.id, ClearReason::Blocked, metadata).await?;
    }
    opened.events.close().await;
    say!(
        "{} user {} ({}, {})",
        if blocked { "blocked" } else { "unblocked" },
        user.id,
        printable(&user.username),
        printable(&user.email)
    );
    Ok(())
}

/// Forgets a user, as `DELETE /api/admin/users/:id` does: the row, with its `UserForgotten`
/// and every data key of the user in one transaction, then every session
/// (`SessionsCleared{forgotten}`). The events stay; their personal fields read as `erased`.
async fn forget(config: Config, key: &str) -> anyhow::Result<()> {
    let (opened, user) = open_for_user(&config, key).await?;
    let metadata = operator();
    let user = opened.users.forget(user.id, Utc::now(), &metadata).await?;
    clear_sessions(&config, &opened, user.id, ClearReason::Forgotten, metadata).await?;
    opened.events.close().await;
    say!(
        "forgot user {}: its row and data keys are deleted; its events remain, their personal fields erased",
        user.id
    );
    Ok(())
}
