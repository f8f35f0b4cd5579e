//! Keeping `ActiveSessions` current from the log: a full fold at start-up, then a catch-up
//! reader that folds whatever other writers appended (the CLI's `user block`, later other
//! instances). The events this process appends are folded by its actors at once; meeting
//! them again here is harmless, since the projection skips versions it has folded.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::TryStreamExt;
use tokenledger_projections::ActiveSessions;

use crate::store::{EventStore, StoreError};

/// Folds every event after `after_position` into `projection`; returns the last position
/// seen and how many events were read.
pub async fn fold_into(
    store: &dyn EventStore,
    projection: &RwLock<ActiveSessions>,
    after_position: i64,
) -> Result<(i64, u64), StoreError> {
    let mut events = store.read_all(after_position);
    let (mut position, mut count) = (after_position, 0u64);
    while let Some(record) = events.try_next().await? {
        position = record.position;
        count += 1;
        let Some(user_id) = record.user_id() else {
            continue;
        };
        // Most events a running instance reads back, its own actors folded already: skip them
        // before paying for decoding or the write lock.
        let folded = projection
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .version(user_id);
        if record.stream_version <= folded {
            continue;
        }
        let event = record.decode().map_err(|source| StoreError::Corrupt {
            position: record.position,
            source,
        })?;
        projection.write().unwrap_or_else(|p| p.into_inner()).apply(
            user_id,
            record.stream_version,
            &event,
        );
    }
    Ok((position, count))
}

/// Follows the log, until the task is aborted: every `every`, and at once when PostgreSQL
/// announces new events (`LISTEN tokenledger_events`, sent by a trigger on every insert)
/// where a pool is given. A lost notification costs at most one `every`.
pub async fn follow(
    store: Arc<dyn EventStore>,
    projection: Arc<RwLock<ActiveSessions>>,
    mut position: i64,
    every: Duration,
    postgres: Option<sqlx::PgPool>,
) {
    let mut listener = match postgres {
        Some(pool) => match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(mut listener) => match listener.listen("tokenledger_events").await {
                Ok(()) => Some(listener),
                Err(error) => {
                    tracing::warn!(%error, "LISTEN failed; following the log by polling");
                    None
                }
            },
            Err(error) => {
                tracing::warn!(%error, "LISTEN failed; following the log by polling");
                None
            }
        },
        None => None,
    };
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        match listener.as_mut() {
            Some(listener) => {
                tokio::select! {
                    _ = ticks.tick() => {}
                    notified = listener.recv() => {
                        if let Err(error) = notified {
                            tracing::warn!(%error, "the event notification channel failed; it reconnects");
                        }
                    }
                }
            }
            None => {
                ticks.tick().await;
            }
        }
        match fold_into(store.as_ref(), &projection, position).await {
            Ok((last, _)) => position = last,
            Err(error) => tracing::warn!(%error, "catching up with the log failed; retrying"),
        }
    }
}
