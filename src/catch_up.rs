//! Keeping `ActiveSessions` current from the log: a full fold at start-up, then a catch-up
//! reader that folds whatever other writers appended (the CLI's `user block`, later other
//! instances). The events this process appends are folded by its actors at once; meeting
//! them again here is harmless, since the projection skips versions it has folded.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::TryStreamExt;
use tokenledger_domain::{Event, UserId};
use tokenledger_projections::ActiveSessions;

use crate::signing_keys;
use crate::store::{EventPayload, EventStore, StoreError};
use crate::tokens::Tokens;
use crate::tokens::keys::KEYS_STREAM;

/// Where the projections stand against the log: the position the catch-up reader has folded
/// through, and whether the start-up rebuild has finished (`/_ready`).
#[derive(Debug, Default)]
pub struct Progress {
    position: AtomicI64,
    ready: AtomicBool,
}

impl Progress {
    pub fn position(&self) -> i64 {
        self.position.load(Ordering::Acquire)
    }

    pub fn advance(&self, position: i64) {
        self.position.fetch_max(position, Ordering::AcqRel);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }
}

/// Events decoded together on a blocking thread.
const DECODE_CHUNK: usize = 4096;

/// Folds every event after `after_position` into `projection`; returns the last position
/// seen and how many events were read. Three stages overlap: the store reads the next page
/// with its data keys, blocking threads open and decode the next chunks (one a core), and
/// this task folds the current one in order. An event that changes no session is passed
/// over undecoded (`SESSION_EVENTS`). `progress` hears how many events have been read so
/// far, and the last position read. `rebuild`, the start-up and the catch-up reader share it.
pub async fn fold_into(
    store: &dyn EventStore,
    projection: &Arc<RwLock<ActiveSessions>>,
    after_position: i64,
    progress: &mut dyn FnMut(u64, i64),
) -> Result<(i64, u64), StoreError> {
    fold_with_keys(store, projection, after_position, progress, &mut |_| {}).await
}

/// `fold_into`, handing the events of the `signing-keys` stream to `keys` as they pass.
pub async fn fold_with_keys(
    store: &dyn EventStore,
    projection: &Arc<RwLock<ActiveSessions>>,
    after_position: i64,
    progress: &mut dyn FnMut(u64, i64),
    keys: &mut dyn FnMut(EventPayload),
) -> Result<(i64, u64), StoreError> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
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
        .try_buffered(cores);
    let (mut position, mut count) = (after_position, 0u64);
    while let Some(decoded) = chunks.try_next().await? {
        // The lock is taken per run of one user's events, not per chunk: while the server
        // runs, requests wait for one user's run at a time; and a run folds in one pass
        // however many sessions it ends.
        for run in decoded.events.chunk_by(|a, b| a.0 == b.0) {
            let mut folding = projection.write().unwrap_or_else(|p| p.into_inner());
            let user = run[0].0;
            folding.apply_all(
                user,
                run.iter()
                    .filter_map(|(_, version, event)| Some((*version, event.as_ref()?))),
            );
            if let Some(last) = run.iter().map(|(_, version, _)| *version).max() {
                folding.pass_over(user, last);
            }
        }
        decoded.keys.into_iter().for_each(&mut *keys);
        position = decoded.last_position;
        count += decoded.read;
        progress(count, position);
    }
    Ok((position, count))
}

/// One chunk of the log, decoded: the events still to fold, in order (`None`: one that
/// changes no session, only its version counts).
struct Decoded {
    events: Vec<(UserId, i64, Option<Event>)>,
    /// The events of the `signing-keys` stream (rare: a rotation).
    keys: Vec<EventPayload>,
    last_position: i64,
    read: u64,
}

fn decode_unfolded(
    chunk: Vec<EventPayload>,
    projection: &RwLock<ActiveSessions>,
) -> Result<Decoded, StoreError> {
    let last_position = chunk.last().map_or(0, |e| e.position);
    let read = chunk.len() as u64;
    // Most events a running instance reads back, its own actors folded already: they are
    // skipped before paying for decoding. The versions are read under the lock in one quick
    // pass, and the lock let go before decoding, which the fold waits for otherwise.
    let unfolded: Vec<Option<UserId>> = {
        let folded = projection.read().unwrap_or_else(|p| p.into_inner());
        chunk
            .iter()
            .map(|record| {
                let user_id = record.user_id()?;
                (record.stream_version > folded.version(user_id)).then_some(user_id)
            })
            .collect()
    };
    let mut events = Vec::with_capacity(chunk.len());
    let mut keys = Vec::new();
    for (record, user_id) in chunk.into_iter().zip(unfolded) {
        let Some(user_id) = user_id else {
            if record.stream_id == KEYS_STREAM {
                keys.push(record);
            }
            continue;
        };
        let version = record.stream_version;
        let event = match record.changes_sessions() {
            true => Some(record.into_event()?),
            false => None,
        };
        events.push((user_id, version, event));
    }
    Ok(Decoded {
        events,
        keys,
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
    progress: Arc<Progress>,
    tokens: Arc<Tokens>,
) {
    let mut listener = listen(postgres).await;
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
        let mut rotations = Vec::new();
        let folded = fold_with_keys(
            store.as_ref(),
            &projection,
            position,
            &mut |_, _| {},
            &mut |record| rotations.push(record),
        )
        .await;
        signing_keys::learn(store.as_ref(), &tokens, rotations).await;
        match folded {
            Ok((last, _)) => {
                position = last;
                progress.advance(last);
            }
            Err(error) => tracing::warn!(%error, "catching up with the log failed; retrying"),
        }
    }
}

/// A listener of PostgreSQL's announcements of new events (`LISTEN tokenledger_events`, sent
/// by a trigger on every insert), where a pool is given and the `LISTEN` works.
pub async fn listen(postgres: Option<sqlx::PgPool>) -> Option<sqlx::postgres::PgListener> {
    let pool = postgres?;
    let listening = match sqlx::postgres::PgListener::connect_with(&pool).await {
        Ok(mut listener) => listener
            .listen("tokenledger_events")
            .await
            .map(|()| listener),
        Err(error) => Err(error),
    };
    listening
        .inspect_err(|error| tracing::warn!(%error, "LISTEN failed; following the log by polling"))
        .ok()
}

/// How many events after `after_position` the projection has not folded: the lag of a running
/// instance. Its own events are folded as they are appended, so only what other writers
/// appended since the catch-up reader's last pass counts; that pass is at most `every` ago,
/// which bounds what this reads.
pub async fn unfolded(
    store: &dyn EventStore,
    projection: &RwLock<ActiveSessions>,
    after_position: i64,
) -> Result<u64, StoreError> {
    let mut tail = store.read_payloads(after_position);
    let mut behind = 0;
    while let Some(record) = tail.try_next().await? {
        let Some(user_id) = record.user_id() else {
            continue;
        };
        let folded = projection
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .version(user_id);
        if record.stream_version > folded {
            behind += 1;
        }
    }
    Ok(behind)
}
