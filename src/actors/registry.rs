//! The registry maps user id → `SessionActor` address. Actors live on a fixed set of
//! arbiters (one per core), a user pinned to one by id; an idle actor leaves the registry and
//! stops, and the next command for that user starts a new one that reloads from the store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use tokenledger_domain::{Command, UserId};

use super::{Core, Execute, ExecuteError, Executed, SessionActor};
use crate::store::EventMetadata;

const SHARDS: usize = 64;

#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Vec<Mutex<HashMap<UserId, Addr<SessionActor>>>>,
    arbiters: Vec<ArbiterHandle>,
    core: Arc<Core>,
    idle_timeout: Duration,
    /// Commands submitted without waiting (`submit`) and not yet decided.
    submitted: AtomicUsize,
}

impl Registry {
    /// Must be called inside a running actix system.
    pub fn new(core: Arc<Core>, arbiters: Vec<ArbiterHandle>, idle_timeout: Duration) -> Registry {
        assert!(
            !arbiters.is_empty(),
            "the registry needs at least one arbiter"
        );
        Registry {
            inner: Arc::new(Inner {
                shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
                arbiters,
                core,
                idle_timeout,
                submitted: AtomicUsize::new(0),
            }),
        }
    }

    fn shard(&self, user_id: UserId) -> &Mutex<HashMap<UserId, Addr<SessionActor>>> {
        &self.inner.shards[user_id.rem_euclid(SHARDS as i64) as usize]
    }

    fn address(&self, user_id: UserId) -> Addr<SessionActor> {
        let mut shard = self
            .shard(user_id)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(addr) = shard.get(&user_id).filter(|addr| addr.connected()) {
            return addr.clone();
        }
        let arbiter =
            &self.inner.arbiters[user_id.rem_euclid(self.inner.arbiters.len() as i64) as usize];
        let (core, registry, idle) = (
            self.inner.core.clone(),
            self.clone(),
            self.inner.idle_timeout,
        );
        let addr = SessionActor::start_in_arbiter(arbiter, move |_| {
            SessionActor::new(user_id, core, registry, idle)
        });
        shard.insert(user_id, addr.clone());
        addr
    }

    /// Removes `addr` for `user_id`, unless a newer actor has taken its place.
    pub fn forget(&self, user_id: UserId, addr: &Addr<SessionActor>) {
        let mut shard = self
            .shard(user_id)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if shard.get(&user_id) == Some(addr) {
            shard.remove(&user_id);
        }
    }

    /// Has the user's actor decide and record `command`.
    pub async fn execute(
        &self,
        user_id: UserId,
        command: Command,
        metadata: EventMetadata,
    ) -> Result<Executed, ExecuteError> {
        // An actor may stop (idle) between lookup and delivery; then a fresh one takes over.
        for _ in 0..3 {
            let addr = self.address(user_id);
            let message = Execute {
                command: command.clone(),
                metadata: metadata.clone(),
            };
            match addr.send(message).await {
                Ok(result) => return result,
                Err(_) => self.forget(user_id, &addr),
            }
        }
        Err(ExecuteError::Unavailable)
    }

    /// Hands `command` to the user's actor now and lets it be recorded without waiting: for
    /// what the answer must not wait on (a failed login, see `auth::record_failure`). Queued
    /// now, it is decided before any later command of the same user.
    pub fn submit(&self, user_id: UserId, command: Command, metadata: EventMetadata) {
        let addr = self.address(user_id);
        let queued = addr.send(Execute {
            command: command.clone(),
            metadata: metadata.clone(),
        });
        let registry = self.clone();
        registry.inner.submitted.fetch_add(1, Ordering::SeqCst);
        actix_web::rt::spawn(async move {
            let outcome = match queued.await {
                Ok(outcome) => outcome,
                // The actor stopped (idle) before taking it: a fresh one will.
                Err(_) => {
                    registry.forget(user_id, &addr);
                    registry.execute(user_id, command, metadata).await
                }
            };
            if let Err(error) = outcome {
                tracing::warn!(user = user_id, %error, "a command answered before it was recorded failed");
            }
            registry.inner.submitted.fetch_sub(1, Ordering::SeqCst);
        });
    }

    /// How many submitted commands are still to be decided (tests wait for 0).
    pub fn unrecorded(&self) -> usize {
        self.inner.submitted.load(Ordering::SeqCst)
    }

    /// How many actors are alive.
    pub fn live_actors(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}
