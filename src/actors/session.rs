//! `SessionActor`: the single writer of one user's stream.
//!
//! It decides each command on the state its earlier commands will leave — their appends
//! submitted but perhaps not durable yet — and submits the command's append at once, with
//! the version that follows theirs, so one user's many sessions share group commits instead
//! of each waiting for the previous write. It answers in order, each command only once its
//! own append (if any) and every earlier one are durable (`pipeline`), and only durable events
//! reach the projection. An append that fails takes along every append submitted after it
//! (the appender writes none whose predecessor did not land, see `Landing`): the actor drops
//! its state, reloads it from the projection (which holds exactly what is durable) and the
//! stream's tail, and fails those commands — or, when another writer took the version (a
//! conflict), decides them again, a bounded number of times.
//!
//! Folding happens outside the projection's lock; the projection then takes only what it
//! lacks, so a user with many sessions never holds up the others' requests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokenledger_domain::{Command, Event, UserId, UserSessions, decide, evolve_all};
use tokio::sync::oneshot;

use super::pipeline::{InOrder, Next};
use super::{Core, ExecuteError, Executed, Registry};
use crate::store::{
    Epoch, EventMetadata, Landing, NewEvent, RecordedEvent, StoreError, Submitted, stream_of,
    writable,
};
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
    /// Read from the store just now, for the command at hand: nothing to look up again.
    fresh: bool,
    /// The store's epoch when the stream was last read (`EventStore::epoch`): unless another
    /// process has written since, `version` is still the stream's tail.
    epoch: Epoch,
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
    /// Folds durable events of the stream into the state, outside any lock, then brings the
    /// projection up to the same version. Events decoded before a corrupt one stay folded.
    fn fold(&mut self, recorded: &[RecordedEvent], core: &Core) -> Result<(), StoreError> {
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
            publish(core, self.state.user_id, &events, Some(&self.state));
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
}

/// Where an actor starts, and starts again after a failed append: a copy of the
/// projection's entry for the user — every durable event this process has seen, and only
/// those — and the stream's tail after it, folded (and handed on to the projection).
async fn load(core: &Core, user_id: UserId) -> Result<Folded, StoreError> {
    let copy = core
        .projection
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .user(user_id);
    let (version, state) = copy.unwrap_or_else(|| (0, UserSessions::new(user_id)));
    let mut folded = Folded {
        state,
        version,
        fresh: true,
        epoch: core.store.epoch(),
    };
    let tail = core
        .store
        .read_stream(&stream_of(user_id), folded.version)
        .await?;
    folded.fold(&tail, core)?;
    Ok(folded)
}

/// Brings the projection's entry for the user up to the end of `events`, durable events
/// of versions `start + 1 ..`, where `durable` is the actor's state at that end if it holds
/// no later (pending) events. The projection is shared by every request, so its write lock
/// is held only for the cheaper of two things: folding the few events it lacks, or swapping
/// in a copy of the actor's state made before taking the lock — when it lacks many events (an
/// actor that loaded a long stream the projection has not seen), or when they would touch
/// more sessions than the copy holds (a clear of thousands, whose ended sessions are then
/// freed after the lock is released). A copy is taken only of a durable state; a projection
/// that lacks events before `start` while the actor's state runs ahead is left behind until
/// the actor's appends are all durable. Either way it never skips a version another writer
/// appended and this actor loaded.
fn publish(core: &Core, user_id: UserId, events: &[(i64, Event)], durable: Option<&UserSessions>) {
    let (Some((first, _)), Some((end, _))) = (events.first(), events.last()) else {
        return;
    };
    let (start, end) = (first - 1, *end);
    let seen = core
        .projection
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .version(user_id);
    if seen >= end {
        return;
    }
    let lacking = || events.iter().filter(|(version, _)| *version > seen);
    let touched: usize = lacking().map(|(_, event)| sessions_touched(event)).sum();
    let swap = seen < start
        || lacking().count() > FOLD_AT_MOST
        || durable.is_some_and(|state| touched > state.sessions.len());
    let copy = durable.filter(|_| swap).cloned();
    if copy.is_none() && seen < start {
        // Events before `start` are missing and the actor's state runs ahead of `end`: the
        // projection takes a copy once the actor's appends are all durable.
        return;
    }
    let mut projection = core.projection.write().unwrap_or_else(|p| p.into_inner());
    let unused = match copy {
        Some(copy) => Some(projection.catch_up_user(end, copy)),
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

/// A command not decided yet (or to decide again), and where its answer goes.
struct Queued {
    msg: Execute,
    /// How many times it was decided before, each undone by a conflict.
    attempts: usize,
    reply: oneshot::Sender<Result<Executed, ExecuteError>>,
}

impl Queued {
    fn answer(self, answer: Result<Executed, ExecuteError>) {
        // The requester may have gone away; the command stands either way.
        let _ = self.reply.send(answer);
    }
}

/// A command decided: its answer, given once it is its turn and what it appended is durable.
struct Decided {
    queued: Queued,
    answer: Result<Executed, ExecuteError>,
    append: Option<Appended>,
}

/// What a command appends: its events, with the versions they take, and whether they landed.
struct Appended {
    events: Vec<(i64, Event)>,
    landing: Arc<Landing>,
}

pub struct SessionActor {
    user_id: UserId,
    core: Arc<Core>,
    registry: Registry,
    /// The state after every decided command's events, durable or not: durable when no
    /// queued command appends.
    folded: Folded,
    /// Decided commands not answered yet, in order.
    pending: InOrder<Decided, Vec<RecordedEvent>, StoreError>,
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
                epoch: 0,
            },
            pending: InOrder::default(),
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
        let user_id = self.user_id;
        ctx.wait(
            async move { load(&core, user_id).await }.into_actor(self).map(
                |loaded, actor, _| match loaded {
                    Ok(folded) => actor.folded = folded,
                    Err(error) => {
                        tracing::error!(user = actor.user_id, %error, "loading the session stream failed");
                        actor.failed = Some(Arc::new(error));
                    }
                },
            ),
        );
        let check = (self.idle_timeout / 4).max(Duration::from_millis(50));
        ctx.run_interval(check, |actor, ctx| {
            if actor.last_active.elapsed() >= actor.idle_timeout && actor.pending.is_empty() {
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
    type Result = ResponseFuture<Result<Executed, ExecuteError>>;

    fn handle(&mut self, msg: Execute, ctx: &mut Context<Self>) -> Self::Result {
        self.last_active = Instant::now();
        if let Some(error) = self.failed.clone() {
            self.passivate(ctx);
            return Box::pin(async move { Err(ExecuteError::Load(error)) });
        }
        let (reply, answer) = oneshot::channel();
        let queued = Queued {
            msg,
            attempts: 0,
            reply,
        };
        if self.core.shared_log && self.pending.is_empty() {
            self.catch_up_then_decide(queued, ctx);
        } else {
            self.decide(queued, ctx);
        }
        Box::pin(async move { answer.await.unwrap_or(Err(ExecuteError::Unavailable)) })
    }
}

impl SessionActor {
    /// Other writers append to the stream too (other instances; on SQLite, the CLI): a refusal
    /// or a no-op appends nothing, so no conflict would ever tell this actor that one moved
    /// the stream on. With appends of its own in flight there is no need — the first of them
    /// to meet another writer's events fails as a conflict, and every command behind it is
    /// decided again.
    fn catch_up_then_decide(&mut self, queued: Queued, ctx: &mut Context<Self>) {
        let core = self.core.clone();
        let (stream, after) = (stream_of(self.user_id), self.folded.version);
        let epoch = core.store.epoch();
        ctx.wait(
            async move { core.store.read_stream(&stream, after).await }
                .into_actor(self)
                .map(move |tail, actor, ctx| {
                    match tail.and_then(|events| actor.folded.fold(&events, &actor.core)) {
                        Ok(()) => {
                            actor.folded.fresh = true;
                            actor.folded.epoch = epoch;
                            actor.decide(queued, ctx)
                        }
                        Err(error) => queued.answer(Err(error.into())),
                    }
                }),
        );
    }

    /// Asks the store whether another process wrote since the stream was last read (one look
    /// shared by every actor asking at once, see `store::foreign_writes`), and decides at once
    /// if not, or after reading the stream's tail.
    fn look_then_decide(&mut self, queued: Queued, ctx: &mut Context<Self>) {
        let (core, epoch) = (self.core.clone(), self.folded.epoch);
        ctx.wait(
            async move { core.store.written_elsewhere_since(epoch).await }
                .into_actor(self)
                .map(|written, actor, ctx| {
                    if written {
                        return actor.catch_up_then_decide(queued, ctx);
                    }
                    actor.folded.fresh = true;
                    actor.decide(queued, ctx)
                }),
        );
    }

    /// Decides `queued` on the state every earlier command leaves, submits its append (if
    /// any) behind theirs, and queues its answer.
    fn decide(&mut self, queued: Queued, ctx: &mut Context<Self>) {
        let fresh = std::mem::take(&mut self.folded.fresh);
        let sealer = RecordingSealer::new(&self.core.tokens);
        let decided = decide(
            &self.folded.state,
            &queued.msg.command,
            self.core.clock.now(),
            &sealer,
        );
        let events = match decided {
            Ok(events) => events,
            Err(refusal) => return self.answer_in_turn(queued, Err(refusal.into()), ctx),
        };
        if events.is_empty() && self.pending.last_append().is_none() {
            if let Err(error) = writable(self.core.store.as_ref()) {
                // A store that refuses writes answers nothing it would have recorded.
                return self.answer_in_turn(queued, Err(error.into()), ctx);
            }
            if !fresh {
                // No conflict would tell this actor that another writer (another instance;
                // on SQLite, the CLI) moved the stream on: it looks before answering.
                return self.look_then_decide(queued, ctx);
            }
        }
        let reuse_detected = events
            .iter()
            .any(|event| matches!(event, Event::RefreshTokenReused(_)));
        let submitted = (!events.is_empty()).then(|| self.submit(&events, &queued.msg.metadata));
        let events: Vec<(i64, Event)> = (self.folded.version + 1..).zip(events).collect();
        self.folded.evolve(&events);
        let mut answer = reply(
            self.user_id,
            &self.folded.state,
            &queued.msg.command,
            &sealer,
        );
        answer.reuse_detected = reuse_detected;
        let Some(submitted) = submitted else {
            return self.answer_in_turn(queued, Ok(answer), ctx);
        };
        let seq = self.pending.push_append(Decided {
            queued,
            answer: Ok(answer),
            append: Some(Appended {
                events,
                landing: submitted.landing.clone(),
            }),
        });
        ctx.spawn(
            submitted
                .outcome()
                .into_actor(self)
                .map(move |outcome, actor, ctx| {
                    if actor.pending.landed(seq, outcome) {
                        actor.answer_ready(ctx);
                    }
                }),
        );
    }

    /// Queues the answer of a command that writes nothing, given once every command before
    /// it is answered.
    fn answer_in_turn(
        &mut self,
        queued: Queued,
        answer: Result<Executed, ExecuteError>,
        ctx: &mut Context<Self>,
    ) {
        self.pending.push(Decided {
            queued,
            answer,
            append: None,
        });
        self.answer_ready(ctx);
    }

    /// Submits `events` at the version the state has reached, after the newest append still
    /// queued: written only if that one is.
    fn submit(&self, events: &[Event], metadata: &EventMetadata) -> Submitted {
        let after = self
            .pending
            .last_append()
            .and_then(|decided| decided.append.as_ref())
            .map(|append| append.landing.clone());
        self.core.store.submit(
            &stream_of(self.user_id),
            self.folded.version,
            events.iter().map(NewEvent::from).collect(),
            metadata,
            after,
        )
    }

    /// Answers every command whose turn has come, handing what they wrote to the projection.
    fn answer_ready(&mut self, ctx: &mut Context<Self>) {
        while let Some(next) = self.pending.next() {
            match next {
                Next::Answer(decided) => decided.queued.answer(decided.answer),
                Next::Written(decided, recorded) => {
                    if let Some(append) = &decided.append {
                        // Written at the versions it was decided for: the store checked the
                        // expected version.
                        debug_assert!(
                            recorded
                                .iter()
                                .map(|record| record.stream_version)
                                .eq(append.events.iter().map(|(version, _)| *version))
                        );
                        let durable = self.pending.last_append().is_none();
                        let state = durable.then_some(&self.folded.state);
                        publish(&self.core, self.user_id, &append.events, state);
                    }
                    decided.queued.answer(decided.answer);
                }
                Next::Failed { error, items } => return self.recover(error, items, ctx),
            }
        }
    }

    /// An append failed: the state held its events and every later command's, none of which
    /// will be written. Fails those commands at once, unless another writer took the version
    /// (a conflict): then reloads what is durable and decides them again. It reloads either way.
    fn recover(&mut self, error: StoreError, mut items: Vec<Decided>, ctx: &mut Context<Self>) {
        let conflict = matches!(error, StoreError::Conflict { .. });
        let error = Arc::new(error);
        if !conflict {
            // Failed whatever the reload finds: answered now, not after it (with the database
            // away, the reload waits for a connection as long again).
            for decided in items.drain(..) {
                decided
                    .queued
                    .answer(Err(ExecuteError::NotRecorded(error.clone())));
            }
        }
        let core = self.core.clone();
        let user_id = self.user_id;
        ctx.wait(async move { load(&core, user_id).await }.into_actor(self).map(
            move |loaded, actor, ctx| {
                match loaded {
                    Ok(folded) => actor.folded = folded,
                    Err(load_error) => {
                        tracing::error!(user = user_id, %load_error, "reloading the session stream failed");
                        actor.failed = Some(Arc::new(load_error));
                    }
                }
                for (i, decided) in items.into_iter().enumerate() {
                    let mut queued = decided.queued;
                    // Only the command whose own append met the other writer spends an
                    // attempt: the ones behind it were never tried, and with another instance
                    // busy on the same user, charging them too ran every queued command out
                    // of attempts at once. Each still ends: the head runs out after
                    // MAX_ATTEMPTS rounds and the next becomes the head.
                    let tried = usize::from(i == 0);
                    if actor.failed.is_some() {
                        queued.answer(Err(ExecuteError::NotRecorded(error.clone())));
                    } else if queued.attempts + tried >= MAX_ATTEMPTS {
                        queued.answer(Err(ExecuteError::TooManyConflicts(MAX_ATTEMPTS)));
                    } else {
                        queued.attempts += tried;
                        actor.decide(queued, ctx);
                    }
                }
            },
        ));
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
        fresh: false,
        epoch: 0,
    };
    let stream = stream_of(user_id);
    for _ in 0..MAX_ATTEMPTS {
        let tail = core.store.read_stream(&stream, folded.version).await?;
        folded.fold(&tail, &core)?;
        let sealer = RecordingSealer::new(&core.tokens);
        let events = decide(&folded.state, &msg.command, core.clock.now(), &sealer)?;
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
                    let events: Vec<(i64, Event)> = recorded
                        .iter()
                        .map(|record| record.stream_version)
                        .zip(events)
                        .collect();
                    folded.evolve(&events);
                    publish(&core, user_id, &events, Some(&folded.state));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        let mut reply = reply(user_id, &folded.state, &msg.command, &sealer);
        reply.reuse_detected = reuse_detected;
        return Ok(reply);
    }
    Err(ExecuteError::TooManyConflicts(MAX_ATTEMPTS))
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
