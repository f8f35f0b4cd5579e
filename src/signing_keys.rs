//! The `signing-keys` stream: the rotations of the access-token keys (see
//! `tokens::keys`). Read at start, made by `tokenledger keys rotate`, by
//! `SIGNING_KEY_ROTATION` and by a change of `ACCESS_TOKEN_ALG`, and learned from other
//! processes by the catch-up reader, so that every instance signs with the newest key and
//! verifies with every key still live.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::TimeDelta;

use crate::clock::Clock;
use crate::store::{
    Actor, EventMetadata, EventPayload, EventStore, NewContent, NewEvent, StoreError,
};
use crate::tokens::Tokens;
use crate::tokens::keys::{KEY_ROTATED, KEYS_STREAM, KeyError, KeyRotated, KeySet, RotationReason};

/// Reads the whole `signing-keys` stream and folds it into `tokens`.
pub async fn load(store: &dyn EventStore, tokens: &Tokens) -> anyhow::Result<()> {
    let recorded = store
        .read_stream(KEYS_STREAM, 0)
        .await
        .context("reading the signing-keys stream")?;
    let rotations = recorded
        .iter()
        .map(|record| {
            serde_json::from_str::<KeyRotated>(&record.payload).with_context(|| {
                format!("the signing-key rotation at position {}", record.position)
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    tokens.fold_rotations(1, &rotations)?;
    Ok(())
}

/// At start: the log's keys, then the first key of `ACCESS_TOKEN_ALG` if another
/// algorithm signs now.
pub async fn start(store: &dyn EventStore, tokens: &Tokens, clock: &Clock) -> anyhow::Result<()> {
    load(store, tokens).await?;
    let now = clock.now().timestamp();
    let switched = record(store, tokens, Actor::System, |keys| {
        Ok(keys.switch_to(&tokens.key_source(), now)?)
    })
    .await?;
    if let Some(rotation) = switched {
        tracing::info!(
            generation = rotation.generation,
            kid = rotation.kid,
            alg = ?rotation.alg,
            "access tokens are signed with a key of ACCESS_TOKEN_ALG from now on"
        );
    }
    Ok(())
}

/// Makes the next key of `ACCESS_TOKEN_ALG` the one that signs.
pub async fn rotate(
    store: &dyn EventStore,
    tokens: &Tokens,
    reason: RotationReason,
    actor: Actor,
    now: i64,
) -> anyhow::Result<KeyRotated> {
    let made = record(store, tokens, actor, |keys| {
        next_key(tokens, keys, reason, now)
    })
    .await?;
    made.context("a rotation is always made")
}

/// The rotation to the next key of `ACCESS_TOKEN_ALG`.
fn next_key(
    tokens: &Tokens,
    keys: &KeySet,
    reason: RotationReason,
    now: i64,
) -> anyhow::Result<Option<KeyRotated>> {
    let source = tokens.key_source();
    Ok(Some(keys.rotation(&source, source.alg, reason, now)?))
}

/// Appends the rotation `decide` makes of the keys now (none: nothing to do), deciding again
/// on the newer keys when another process rotated first.
async fn record(
    store: &dyn EventStore,
    tokens: &Tokens,
    actor: Actor,
    decide: impl Fn(&KeySet) -> anyhow::Result<Option<KeyRotated>>,
) -> anyhow::Result<Option<KeyRotated>> {
    let metadata = EventMetadata {
        actor,
        ..EventMetadata::default()
    };
    for _ in 0..5 {
        let keys = tokens.keys();
        let Some(rotation) = decide(&keys)? else {
            return Ok(None);
        };
        let event = NewEvent {
            event_type: KEY_ROTATED,
            schema_version: 1,
            content: NewContent::Json(serde_json::to_string(&rotation)?),
        };
        match store
            .append(KEYS_STREAM, keys.version, vec![event], &metadata)
            .await
        {
            Ok(_) => {
                tokens.fold_rotations(keys.version + 1, std::slice::from_ref(&rotation))?;
                return Ok(Some(rotation));
            }
            Err(StoreError::Conflict { .. }) => load(store, tokens).await?,
            Err(other) => return Err(other).context("recording the signing-key rotation"),
        }
    }
    anyhow::bail!("the signing-keys stream kept changing under five rotations in a row")
}

/// Folds the rotations the catch-up reader met (another process made them); the whole
/// stream again when one came before the reader's start (`KeyError::Behind`).
pub async fn learn(store: &dyn EventStore, tokens: &Tokens, records: Vec<EventPayload>) {
    for record in records {
        let folded = match serde_json::from_str::<KeyRotated>(&record.payload) {
            Ok(rotation) => match tokens.fold_rotations(record.stream_version, &[rotation]) {
                Err(KeyError::Behind { .. }) => load(store, tokens).await.map(|()| true),
                other => other.map_err(anyhow::Error::from),
            },
            Err(error) => Err(error.into()),
        };
        match folded {
            Ok(true) => tracing::info!(
                kid = tokens.keys().current().key.kid,
                "a new access-token signing key, rotated by another process, signs from now on"
            ),
            Ok(false) => {}
            Err(error) => tracing::error!(
                position = record.position,
                error = format!("{error:#}"),
                "a signing-key rotation in the log cannot be followed"
            ),
        }
    }
}

/// `SIGNING_KEY_ROTATION`: a rotation whenever the key that signs is `every` old, looked at
/// every second against the service clock (no read of the store unless one is due).
pub fn schedule(
    store: Arc<dyn EventStore>,
    tokens: Arc<Tokens>,
    clock: Arc<Clock>,
    every: TimeDelta,
) -> tokio::task::JoinHandle<()> {
    actix_web::rt::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let now = clock.now().timestamp();
            // Decided on the keys in memory: the store is written only when one is due.
            let due = |keys: &KeySet| match keys.rotation_due(every, now) {
                true => next_key(&tokens, keys, RotationReason::Scheduled, now),
                false => Ok(None),
            };
            match record(store.as_ref(), &tokens, Actor::System, due).await {
                Ok(Some(rotation)) => tracing::info!(
                    generation = rotation.generation,
                    kid = rotation.kid,
                    "SIGNING_KEY_ROTATION: a new access-token signing key signs from now on"
                ),
                Ok(None) => {}
                Err(error) => tracing::warn!(
                    error = format!("{error:#}"),
                    "the scheduled signing-key rotation failed; retrying"
                ),
            }
        }
    })
}
