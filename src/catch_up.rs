//! Keeping `ActiveSessions` current from the log: a full fold at start-up, then a catch-up
//! reader that folds whatever other writers appended (the CLI's `user block`, later other
//! instances). The events this process appends are folded by its actors at once; meeting
//! them again here is harmless, since the projection skips versions it has folded.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::TryStreamExt;
use tokenledger_domain::{Event, UserId};
use tokenledger_projections::ActiveSessions;

use crate::store::{EventPayload, EventStore, StoreError};

/// Events decoded together on a blocking thread.
const DECODE_CHUNK: usize = 4096;

/// Folds every event after `after_position` into `projection`; returns the last position
/// seen and how many events were read. Three stages overlap: the store reads the next page,
/// a blocking thread decodes the next chunk, and this task folds the current one in order.
/// `progress` hears how many events have been read so far.
pub async fn fold_into(
    store: &dyn EventStore,
    projection: &Arc<RwLock<ActiveSessions>>,
    after_position: i64,
    progress: &mut dyn FnMut(u64),
) -> Result<(i64, u64), StoreError> {
    let mut chunks = store
        .read_payloads(after_position)
        .try_chunks(DECODE_CHUNK)
        .map_err(|e| e.1)
        .map_ok(|chunk| {
            let projection = projection.clone();
            async move {
                tokio::task::spawn_blocking(move || decode_unfolded(chunk, &projection))
                    .await
                    .map_err(|_| StoreError::Closed)?
            }
        })
        .try_buffered(2);
    let (mut position, mut count) = (after_position, 0u64);
    while let Some(decoded) = chunks.try_next().await? {
        let mut folding = projection.write().unwrap_or_else(|p| p.into_inner());
        for (user_id, version, event) in &decoded.events {
            folding.apply(*user_id, *version, event);
        }
        drop(folding);
        position = decoded.last_position;
        count += decoded.read;
        progress(count);
    }
    Ok((position, count))
}

/// One chunk of the log, decoded: the events still to fold, in order.
struct Decoded {
    events: Vec<(UserId, i64, Event)>,
    last_position: i64,
    read: u64,
}

fn decode_unfolded(
    chunk: Vec<EventPayload>,
    projection: &RwLock<ActiveSessions>,
) -> Result<Decoded, StoreError> {
    let last_position = chunk.last().map_or(0, |e| e.position);
    let read = chunk.len() as u64;
    let mut events = Vec::with_capacity(chunk.len());
    let folded = projection.read().unwrap_or_else(|p| p.into_inner());
    for record in &chunk {
        let Some(user_id) = record.user_id() else {
            continue;
        };
        // Most events a running instance reads back, its own actors folded already: skip them
        // before paying for decoding.
        if record.stream_version <= folded.version(user_id) {
            continue;
        }
        events.push((user_id, record.stream_version, record.decode()?));
    }
    Ok(Decoded {
        events,
        last_position,
        read,
    })
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
        match fold_into(store.as_ref(), &projection, position, &mut |_| {}).await {
            Ok((last, _)) => position = last,
            Err(error) => tracing::warn!(%error, "catching up with the log failed; retrying"),
        }
    }
}
