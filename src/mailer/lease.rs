//! Exactly one sender among the instances on one PostgreSQL database: the one that holds a
//! session-level advisory lock, on a connection of its own. The others stand by and try
//! again now and then; when the holder's process or connection goes, PostgreSQL releases the
//! lock and another instance takes over, from the log. On SQLite there is one instance, and
//! no lease.
//!
//! The lock's number is made from the schema's name, so that deployments (and tests) in
//! different schemas of one database do not wait on each other.

use std::time::Duration;

use sqlx::{Connection, PgConnection, PgPool};

const TRY_LOCK: &str =
    "SELECT pg_try_advisory_lock(hashtextextended('tokenledger mailer ' || current_schema(), 0))";

pub enum Lease {
    /// SQLite: this instance is the only one.
    Sole,
    Shared {
        pool: PgPool,
        /// The connection holding the lock, while it is held.
        held: Option<PgConnection>,
        every: Duration,
    },
}

impl Lease {
    pub fn new(postgres: Option<PgPool>, every: Duration) -> Lease {
        match postgres {
            None => Lease::Sole,
            Some(pool) => Lease::Shared {
                pool,
                held: None,
                every,
            },
        }
    }

    /// Waits until this instance holds the lease.
    pub async fn acquire(&mut self) {
        let Lease::Shared { pool, held, every } = self else {
            return;
        };
        let mut waiting = false;
        while held.is_none() {
            match try_lock(pool).await {
                Ok(Some(connection)) => {
                    *held = Some(connection);
                    tracing::info!(
                        "this instance sends the emails now (it holds the mailer's lock)"
                    );
                }
                Ok(None) if !waiting => {
                    waiting = true;
                    tracing::info!("another instance sends the emails; this one stands by");
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "could not ask for the mailer's lock"),
            }
            if held.is_none() {
                tokio::time::sleep(*every).await;
            }
        }
    }

    /// Whether the lease is still this instance's: its connection answers. A lost
    /// connection has lost the lock with it.
    pub async fn still_held(&mut self) -> bool {
        let Lease::Shared { held, .. } = self else {
            return true;
        };
        let Some(connection) = held else {
            return false;
        };
        if let Err(error) = connection.ping().await {
            tracing::warn!(%error, "the mailer's lock is lost with its connection; standing by");
            *held = None;
            return false;
        }
        true
    }
}

/// A connection holding the lock, or `None` when another holds it.
async fn try_lock(pool: &PgPool) -> Result<Option<PgConnection>, sqlx::Error> {
    // Out of the pool for good: the lock lives as long as this connection, which must not
    // go back to serve queries that know nothing of it.
    let mut connection = pool.acquire().await?.detach();
    let locked: bool = sqlx::query_scalar(TRY_LOCK)
        .fetch_one(&mut connection)
        .await?;
    Ok(locked.then_some(connection))
}
