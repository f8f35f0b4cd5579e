//! `SessionActor`: the single writer of one user's stream.
//!
//! It holds the folded state and the stream version, and handles each command as one atomic
//! step — decide, append, fold, update the projection, answer — with `AtomicResponse`, so no
//! second command of the same user is decided before the first one's append has returned. A
//! version conflict (another instance wrote first) reloads the stream tail and decides again.
//! Folding happens outside the projection's lock; the projection then takes only what it
//! lacks, so a user with many sessions never holds up the others' requests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokenledger_domain::{Command, Event, UserId, UserSessions, decide, evolve_all};

use super::{Core, ExecuteError, Executed, Registry};
use crate::store::{EventMetadata, NewEvent, RecordedEvent, StoreError, stream_of, writable};
use crate::tokens::RecordingSealer;

/// How often a conflicting append is decided again before giving up.
const MAX_ATTEMPTS: usize = 5;

pub struct Execute {
    pub command: Command,
    pub metadata: EventMetadata,
}

impl Message for Execute {
    type Result = Result<Executed, ExecuteError>;
}

/// The aggregate state and the stream version it was folded to.
#[derive(Default)]
struct Folded {
    state: UserSessions,
    version: i64,
    /// Loaded from the store just now, for the command at hand: nothing to look up again.
    fresh: bool,
}

/// Up to this many events the projection lacks, it folds them itself; beyond, it takes a
/// copy of the actor's state. Both are linear in the user's sessions, but a copy is one pass
/// however long the stream, where folding a whole stream again would evolve every event.
const FOLD_AT_MOST: usize = 16;

/// How many sessions folding `event` touches.
fn sessions_touched(event: &Event) -> usize {
    match event {
        Event::SessionsCleared(e) => e.session_ids.len().max(1),
        _ => 1,
    }
}

impl Folded {
    /// Folds recorded events of the stream into the state, outside any lock, then brings the
    /// projection up to the same version. Events decoded before a corrupt one stay folded.
    fn fold(&mut self, recorded: &[RecordedEvent], core: &Core) -> Result<(), StoreError> {
        let start = self.version;
        let mut events = Vec::with_capacity(recorded.len());
        let mut corrupt = None;
        for record in recorded {
            match record.decode() {
                Ok(event) => events.push((record.stream_version, event)),
                Err(source) => {
                    corrupt = Some(StoreError::Corrupt {
                        position: record.position,
                        source,
                    });
                    break;
                }
            }
        }
        if !events.is_empty() {
            self.evolve(&events);
            self.publish(start, &events, core);
        }
        corrupt.map_or(Ok(()), Err)
    }

    fn evolve(&mut self, events: &[(i64, Event)]) {
        self.state = evolve_all(
            std::mem::take(&mut self.state),
            events.iter().map(|(_, event)| event),
        );
        if let Some((version, _)) = events.last() {
            self.version = *version;
        }
    }

    /// Brings the projection's entry for this user up to `self.version`, which `events`
    /// (versions `start + 1 ..= self.version`) just reached. The projection is shared by every
    /// request, so its write lock is held only for the cheaper of two things: folding the few
    /// events it lacks, or swapping in a copy of the actor's state made before taking the lock
    /// — when it lacks many events (an actor that loaded a long stream the projection has not
    /// seen), or when they would touch more sessions than the copy holds (a clear of
    /// thousands, whose ended sessions are then freed after the lock is released). Either way
    /// it never skips a version another writer appended and this actor loaded.
    fn publish(&self, start: i64, events: &[(i64, Event)], core: &Core) {
        let user_id = self.state.user_id;
        let seen = core
            .projection
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .version(user_id);
        if seen >= self.version {
            return;
        }
        let lacking = || events.iter().filter(|(version, _)| *version > seen);
        let touched: usize = lacking().map(|(_, event)| sessions_touched(event)).sum();
        let swap =
            seen < start || lacking().count() > FOLD_AT_MOST || touched > self.state.sessions.len();
        let copy = swap.then(|| self.state.clone());
        let mut projection = core.projection.write().unwrap_or_else(|p| p.into_inner());
        let unused = match copy {
            Some(copy) => Some(projection.catch_up_user(self.version, copy)),
            None => {
                // `seen >= start` and versions only grow: whatever the projection lacks now
                // is among `events`.
                projection.apply_all(user_id, events.iter().map(|(v, event)| (*v, event)));
                None
            }
        };
        drop(projection);
        // The replaced sessions are freed here, after the lock is released.
        drop(unused);
    }
}

pub struct SessionActor {
    user_id: UserId,
    core: Arc<Core>,
    registry: Registry,
    folded: Folded,
    /// Set when loading the stream failed: the actor answers with it and stops, so the next
    /// command starts a fresh actor that loads again.
    failed: Option<Arc<StoreError>>,
    idle_timeout: Duration,
    last_active: Instant,
}

impl SessionActor {
    pub fn new(
        user_id: UserId,
        core: Arc<Core>,
        registry: Registry,
        idle_timeout: Duration,
    ) -> Self {
        SessionActor {
            user_id,
            core,
            registry,
            folded: Folded {
                state: UserSessions::new(user_id),
                version: 0,
                fresh: false,
            },
            failed: None,
            idle_timeout,
            last_active: Instant::now(),
        }
    }
}

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Load before any message is handled: `wait` holds the mailbox until it is done.
        let core = self.core.clone();
        let stream = stream_of(self.user_id);
        ctx.wait(
            async move { core.store.read_stream(&stream, 0).await }.into_actor(self).map(
                |loaded, actor, _| match loaded.and_then(|events| actor.folded.fold(&events, &actor.core)) {
                    Ok(()) => actor.folded.fresh = true,
                    Err(error) => {
                        tracing::error!(user = actor.user_id, %error, "loading the session stream failed");
                        actor.failed = Some(Arc::new(error));
                    }
                },
            ),
        );
        let check = (self.idle_timeout / 4).max(Duration::from_millis(50));
        ctx.run_interval(check, |actor, ctx| {
            if actor.last_active.elapsed() >= actor.idle_timeout {
                actor.passivate(ctx);
            }
        });
    }
}

impl SessionActor {
    /// Leaves the registry first, so no new command is sent here, then stops.
    fn passivate(&mut self, ctx: &mut Context<Self>) {
        self.registry.forget(self.user_id, &ctx.address());
        ctx.stop();
    }
}

impl Handler<Execute> for SessionActor {
    type Result = AtomicResponse<Self, Result<Executed, ExecuteError>>;

    fn handle(&mut self, msg: Execute, ctx: &mut Context<Self>) -> Self::Result {
        self.last_active = Instant::now();
        if let Some(error) = self.failed.clone() {
            self.passivate(ctx);
            return AtomicResponse::new(Box::pin(fut::ready(Err(ExecuteError::Load(error)))));
        }
        // The state moves into the future and back: no other message runs in between.
        let folded = std::mem::take(&mut self.folded);
        let core = self.core.clone();
        let user_id = self.user_id;
        AtomicResponse::new(Box::pin(
            execute(core, user_id, folded, msg).into_actor(self).map(
                |(folded, result), actor, _| {
                    actor.folded = folded;
                    result
                },
            ),
        ))
    }
}

/// Loads a user's stream and decides one command, outside any actor: for one-off tools such
/// as the CLI, which run while no actor of this process owns the stream. Another process's
/// actor that holds the stream meets the appended events as a version conflict and reloads.
pub async fn execute_once(
    core: Arc<Core>,
    user_id: UserId,
    msg: Execute,
) -> Result<Executed, ExecuteError> {
    let mut folded = Folded {
        state: UserSessions::new(user_id),
        version: 0,
        fresh: true,
    };
    let loaded = core.store.read_stream(&stream_of(user_id), 0).await?;
    folded.fold(&loaded, &core)?;
    execute(core, user_id, folded, msg).await.1
}

async fn execute(
    core: Arc<Core>,
    user_id: UserId,
    mut folded: Folded,
    msg: Execute,
) -> (Folded, Result<Executed, ExecuteError>) {
    let stream = stream_of(user_id);
    let fresh = std::mem::take(&mut folded.fresh);
    if core.shared_log {
        // A refusal or a no-op appends nothing, so no conflict would ever tell this actor
        // that another instance moved the stream on: look first.
        let tail = core.store.read_stream(&stream, folded.version).await;
        if let Err(error) = tail.and_then(|events| folded.fold(&events, &core)) {
            return (folded, Err(error.into()));
        }
    }
    for _ in 0..MAX_ATTEMPTS {
        let sealer = RecordingSealer::new(&core.tokens);
        let events = match decide(&folded.state, &msg.command, core.clock.now(), &sealer) {
            Ok(events) => events,
            Err(refusal) => return (folded, Err(refusal.into())),
        };
        if events.is_empty() && !core.shared_log && !fresh {
            // Nothing to write, so no conflict would tell this actor that another process
            // (the CLI, on the same SQLite file) moved the stream on: look before answering;
            // and a store that refuses writes answers nothing it would have recorded.
            if let Err(error) = writable(core.store.as_ref()) {
                return (folded, Err(error.into()));
            }
            match core.store.read_stream(&stream, folded.version).await {
                Ok(tail) if tail.is_empty() => {}
                Ok(tail) => match folded.fold(&tail, &core) {
                    Ok(()) => continue,
                    Err(error) => return (folded, Err(error.into())),
                },
                Err(error) => return (folded, Err(error.into())),
            }
        }
        let reuse_detected = events
            .iter()
            .any(|event| matches!(event, Event::RefreshTokenReused(_)));
        if !events.is_empty() {
            let new_events = events.iter().map(NewEvent::from).collect();
            match core
                .store
                .append(&stream, folded.version, new_events, &msg.metadata)
                .await
            {
                Ok(recorded) => {
                    let start = folded.version;
                    let events: Vec<(i64, Event)> = recorded
                        .iter()
                        .map(|record| record.stream_version)
                        .zip(events)
                        .collect();
                    folded.evolve(&events);
                    folded.publish(start, &events, &core);
                }
                Err(StoreError::Conflict { .. }) => {
                    let tail = core.store.read_stream(&stream, folded.version).await;
                    if let Err(error) = tail.and_then(|events| folded.fold(&events, &core)) {
                        return (folded, Err(error.into()));
                    }
                    continue;
                }
                Err(error) => return (folded, Err(error.into())),
            }
        }
        let mut reply = reply(user_id, &folded.state, &msg.command, &sealer);
        reply.reuse_detected = reuse_detected;
        return (folded, Ok(reply));
    }
    (folded, Err(ExecuteError::TooManyConflicts(MAX_ATTEMPTS)))
}

/// What the caller learns: the session the command was about, and its refresh token when the
/// command hands one out (a login, or a rotation — including the grace window's repeat).
fn reply(
    user_id: UserId,
    state: &UserSessions,
    command: &Command,
    sealer: &RecordingSealer,
) -> Executed {
    let (target, hands_out_token) = match command {
        Command::IssueToken(c) => (Some(c.session_id), true),
        Command::RotateToken(c) => (Some(c.presented.session_id), c.rotation),
        Command::RevokeSession(c) => (Some(c.session_id), false),
        // The imported session's token is the other system's, which its client holds.
        Command::ImportSession(c) => (Some(c.session_id), false),
        Command::ClearSessions(_) | Command::Logout(_) | Command::RecordLoginFailure(_) => {
            (None, false)
        }
    };
    let session = target.and_then(|id| state.session(&id).cloned());
    let refresh_token = session
        .as_ref()
        .filter(|_| hands_out_token)
        .map(|s| sealer.token_for(&s.grant(user_id)));
    Executed {
        session,
        refresh_token,
        reuse_detected: false,
    }
}
