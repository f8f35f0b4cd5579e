//! The command line: `serve` (the default), `migrate`, `user add`.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context;
use chrono::Utc;
use clap::{Parser, Subcommand};

use crate::app::Application;
use crate::config::{Config, LogFormat};
use crate::password::Passwords;
use crate::secrets;
use crate::store::sqlite::Database;
use crate::store::users::{NewUser, UserStore, rule_violations};

#[derive(Debug, Parser)]
#[command(
    name = "tokenledger",
    version,
    about = "Event-sourced login, refresh tokens and sessions"
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
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
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
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let mut config = Config::load(cli.config.as_deref(), &env, cli.insecure_dev)?;
    init_logging(config.log_format);
    actix_web::rt::System::new().block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => {
                let resolved = secrets::resolve(&mut config)
                    .with_context(|| format!("signing secrets in {}", config.data_dir.display()))?;
                if let Some(said) = resolved {
                    tracing::info!("{said}");
                }
                for warning in config.warnings() {
                    tracing::warn!("{warning}");
                }
                let app = Application::build(config).await?;
                tracing::info!(port = app.port(), "tokenledger is serving");
                app.run_until_stopped().await?;
                Ok(())
            }
            Command::Migrate => {
                let db = Database::open(&config.database_url).await?;
                db.close().await;
                println!("migrated {}", config.database_url);
                Ok(())
            }
            Command::User(UserCommand::Add {
                username,
                email,
                password,
            }) => {
                let broken = rule_violations(&username, &email, &password);
                if !broken.is_empty() {
                    let reasons: Vec<String> =
                        broken.into_iter().map(|(_, message)| message).collect();
                    anyhow::bail!("cannot add this user: {}", reasons.join("; "));
                }
                let db = Database::open(&config.database_url).await?;
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                let password_hash = Passwords::new(cores)?.hash(password).await?;
                let user = UserStore::new(db.clone())
                    .create(
                        NewUser {
                            username,
                            email,
                            password_hash,
                        },
                        Utc::now(),
                    )
                    .await?;
                db.close().await;
                println!("added user {} ({}, {})", user.id, user.username, user.email);
                Ok(())
            }
        }
    })
}
