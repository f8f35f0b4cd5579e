//! The per-user aggregate: a user's live sessions, and the two pure functions over them.
//!
//! `decide` looks at the state and a command and answers with the events to record (or a
//! refusal that records nothing); `evolve` folds one event into the state. Replaying a stream
//! is a fold of `evolve`, so the state an actor holds, the projection the HTTP handlers read
//! and a forensic replay all agree by construction.

use std::sync::Arc;

use chrono::TimeDelta;
use serde::{Deserialize, Serialize};

use crate::commands::{
    ClearSessions, Client, Command, ImportSession, IssueToken, Lifetimes, Logout, LogoutScope,
    PresentedToken, RecordLoginFailure, RevokeSession, RotateToken,
};
use crate::events::{
    ClearReason, Event, IssueReason, LoginFailed, RefreshTokenReused, RevokeReason, SessionRevoked,
    SessionsCleared, TokenIssued, TokenRefreshed, TokenRotated,
};
use crate::types::{RefreshGrant, SessionId, Timestamp, TokenHash, TokenId, UserId};

mod held;
mod sessions;
#[cfg(test)]
mod tests;

pub use held::{DeviceId, UnixNanos};
pub use sessions::Sessions;

/// Turns the claims of a refresh token into the hash of the signed token. Signing is
/// deterministic (HS256 over fixed claims), so this is a pure function of the grant; the
/// service implements it with its secret, tests with anything deterministic.
pub trait TokenSealer {
    fn seal(&self, grant: &RefreshGrant) -> TokenHash;
}

/// A refusal that records nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("no such live session")]
    UnknownSession,
    #[error("the token does not belong to this user")]
    WrongUser,
    #[error("the token does not match its session")]
    TokenMismatch,
    #[error("a session with this id exists already")]
    SessionExists,
    #[error("the token has expired")]
    Expired,
}

/// The token a session replaced last, kept for the grace window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousToken {
    pub generation: u32,
    pub hash: TokenHash,
    pub replaced_at: UnixNanos,
}

/// One live session (token family).
///
/// Serialized (field by field, instants as `types::instant` writes them) for the
/// projection's snapshots. Its instants and device id are held smaller than its events
/// carry them (`held`): the projection holds a million of these.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: SessionId,
    pub device_id: DeviceId,
    pub generation: u32,
    pub token_id: TokenId,
    pub token_hash: TokenHash,
    pub token_issued_at: UnixNanos,
    pub token_expires_at: UnixNanos,
    pub previous: Option<PreviousToken>,
    pub created_at: UnixNanos,
    pub last_used_at: UnixNanos,
    pub idle_expires_at: UnixNanos,
    pub absolute_expires_at: UnixNanos,
    /// Shared, not copied: the last IP and user agent are most often the login's, and the
    /// projection shares equal texts across sessions too (millions of sessions, few agents).
    #[serde(with = "crate::types::shared_text")]
    pub login_ip: Option<Arc<str>>,
    #[serde(with = "crate::types::shared_text")]
    pub login_user_agent: Option<Arc<str>>,
    #[serde(with = "crate::types::shared_text")]
    pub last_ip: Option<Arc<str>>,
    #[serde(with = "crate::types::shared_text")]
    pub last_user_agent: Option<Arc<str>>,
}

impl Session {
    /// The claims of this session's current refresh token. JWT times are whole seconds of the
    /// recorded instants, so the same session state always re-signs identically.
    pub fn grant(&self, user_id: UserId) -> RefreshGrant {
        RefreshGrant {
            user_id,
            session_id: self.id,
            token_id: self.token_id,
            generation: self.generation,
            issued_at: self.token_issued_at.to_timestamp().timestamp(),
            expires_at: self.token_expires_at.to_timestamp().timestamp(),
        }
    }

    /// When the session ends by itself unless it is used again.
    pub fn expires_at(&self) -> Timestamp {
        self.idle_expires_at
            .min(self.absolute_expires_at)
            .to_timestamp()
    }

    pub fn is_expired(&self, now: Timestamp) -> bool {
        now >= self.expires_at()
    }

    /// Records where the session was last used from, sharing the texts it holds already.
    fn seen_from(&mut self, ip: &Option<String>, user_agent: &Option<String>) {
        fn keep(slot: &mut Option<Arc<str>>, login: &Option<Arc<str>>, new: &Option<String>) {
            if slot.as_deref() == new.as_deref() {
                return;
            }
            *slot = if login.as_deref() == new.as_deref() {
                login.clone()
            } else {
                new.as_deref().map(Arc::from)
            };
        }
        keep(&mut self.last_ip, &self.login_ip, ip);
        keep(
            &mut self.last_user_agent,
            &self.login_user_agent,
            user_agent,
        );
    }
}

/// A user's live sessions: the state of stream `user-<id>`. Serialized for the projection's
/// snapshots: every field, so a field added here is in them too.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSessions {
    pub user_id: UserId,
    pub sessions: Sessions,
}

impl UserSessions {
    pub fn new(user_id: UserId) -> Self {
        UserSessions {
            user_id,
            sessions: Sessions::default(),
        }
    }

    pub fn session(&self, id: &SessionId) -> Option<&Session> {
        self.sessions.get(id)
    }
}

/// Decides what a command records. `now` is the only clock.
pub fn decide(
    state: &UserSessions,
    command: &Command,
    now: Timestamp,
    sealer: &impl TokenSealer,
) -> Result<Vec<Event>, DomainError> {
    match command {
        Command::IssueToken(cmd) => issue(state, cmd, now, sealer),
        Command::ImportSession(cmd) => import(state, cmd, now),
        Command::RotateToken(cmd) => rotate(state, cmd, now, sealer),
        Command::RevokeSession(cmd) => revoke(state, cmd, now),
        Command::ClearSessions(cmd) => Ok(clear(state, cmd, now)),
        Command::Logout(cmd) => logout(state, cmd, now),
        Command::RecordLoginFailure(RecordLoginFailure { client, failed_at }) => {
            Ok(vec![Event::LoginFailed(LoginFailed {
                failed_at: *failed_at,
                ip: client.ip.clone(),
                user_agent: client.user_agent.clone(),
            })])
        }
    }
}

fn later(now: Timestamp, by: TimeDelta) -> Timestamp {
    now.checked_add_signed(by)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
}

fn issue(
    state: &UserSessions,
    cmd: &IssueToken,
    now: Timestamp,
    sealer: &impl TokenSealer,
) -> Result<Vec<Event>, DomainError> {
    if state.sessions.contains_key(&cmd.session_id) {
        return Err(DomainError::SessionExists);
    }
    let Lifetimes {
        refresh_token,
        idle_timeout,
        absolute,
    } = cmd.lifetimes;
    let issued_at = now;
    let absolute_expires_at = later(issued_at, absolute);
    let token_expires_at = later(issued_at, refresh_token).min(absolute_expires_at);
    let grant = RefreshGrant {
        user_id: state.user_id,
        session_id: cmd.session_id,
        token_id: cmd.token_id,
        generation: 0,
        issued_at: issued_at.timestamp(),
        expires_at: token_expires_at.timestamp(),
    };
    // The evictions come first, so that at no version of the stream does the user hold more
    // sessions than the limit allowed when this login was decided.
    let mut events: Vec<Event> = evicted_by_login(state, cmd.max_sessions)
        .into_iter()
        .map(|id| revoked(id, RevokeReason::Evicted, now))
        .collect();
    events.push(Event::TokenIssued(TokenIssued {
        session_id: cmd.session_id,
        device_id: cmd.device_id.clone(),
        token_id: cmd.token_id,
        token_hash: sealer.seal(&grant),
        reason: cmd.reason,
        issued_at,
        token_expires_at,
        idle_expires_at: later(issued_at, idle_timeout).min(absolute_expires_at),
        absolute_expires_at,
        ip: cmd.client.ip.clone(),
        user_agent: cmd.client.user_agent.clone(),
    }));
    Ok(events)
}

/// An imported session starts where the other system left it: its token and absolute
/// lifetime count from when that system issued it, its idle timeout from now (that system
/// kept no last use). One whose token has expired already is refused, as is a session that
/// is here already: importing twice changes nothing.
fn import(
    state: &UserSessions,
    cmd: &ImportSession,
    now: Timestamp,
) -> Result<Vec<Event>, DomainError> {
    if state.sessions.contains_key(&cmd.session_id) {
        return Err(DomainError::SessionExists);
    }
    let absolute_expires_at = later(cmd.created_at, cmd.lifetimes.absolute);
    let token_expires_at =
        later(cmd.created_at, cmd.lifetimes.refresh_token).min(absolute_expires_at);
    if token_expires_at <= now {
        return Err(DomainError::Expired);
    }
    Ok(vec![Event::TokenIssued(TokenIssued {
        session_id: cmd.session_id,
        device_id: cmd.device_id.clone(),
        token_id: cmd.token_id,
        token_hash: cmd.token_hash,
        reason: IssueReason::Imported,
        issued_at: now,
        token_expires_at,
        idle_expires_at: later(now, cmd.lifetimes.idle_timeout).min(absolute_expires_at),
        absolute_expires_at,
        ip: cmd.client.ip.clone(),
        user_agent: cmd.client.user_agent.clone(),
    })])
}

/// The sessions a new login pushes out: the least recently used (ties by id, the older
/// login first) until, with the new one, the user holds `max_sessions`. More than one when
/// the user already held more than the limit (a lowered limit, or history from before it).
fn evicted_by_login(state: &UserSessions, max_sessions: Option<u32>) -> Vec<SessionId> {
    let Some(limit) = max_sessions else {
        return Vec::new();
    };
    let keep = usize::try_from(limit.max(1) - 1).unwrap_or(usize::MAX);
    let excess = state.sessions.len().saturating_sub(keep);
    if excess == 0 {
        return Vec::new();
    }
    let mut by_use: Vec<(UnixNanos, SessionId)> = state
        .sessions
        .values()
        .map(|s| (s.last_used_at, s.id))
        .collect();
    // Linear selection, then order only the evicted: old data may hold many thousands.
    if excess < by_use.len() {
        by_use.select_nth_unstable(excess);
        by_use.truncate(excess);
    }
    by_use.sort_unstable();
    by_use.into_iter().map(|(_, id)| id).collect()
}

/// What a presented refresh token is to its session.
enum Presentation {
    /// The session's current token.
    Current,
    /// The one it replaced last, again within the grace window.
    PreviousWithinGrace,
    /// An older one, or the previous one after the window: a replay.
    Reused,
    /// Not a token this session ever had (a forged hash, a generation from the future).
    Mismatch,
}

fn presentation(
    session: &Session,
    presented: &PresentedToken,
    now: Timestamp,
    reuse_grace: TimeDelta,
) -> Presentation {
    if presented.generation > session.generation {
        return Presentation::Mismatch;
    }
    if presented.generation == session.generation {
        let genuine =
            presented.token_id == session.token_id && presented.hash.matches(&session.token_hash);
        return if genuine {
            Presentation::Current
        } else {
            Presentation::Mismatch
        };
    }
    if let Some(previous) = &session.previous {
        let within_grace =
            now.signed_duration_since(previous.replaced_at.to_timestamp()) <= reuse_grace;
        if previous.generation == presented.generation && within_grace {
            return if presented.hash.matches(&previous.hash) {
                Presentation::PreviousWithinGrace
            } else {
                Presentation::Mismatch
            };
        }
    }
    Presentation::Reused
}

/// A replayed token: the reuse goes on record and the whole session (token family) ends.
fn reuse(
    session: &Session,
    presented: &PresentedToken,
    client: &Client,
    now: Timestamp,
) -> Vec<Event> {
    vec![
        Event::RefreshTokenReused(RefreshTokenReused {
            session_id: session.id,
            token_id: presented.token_id,
            presented_generation: presented.generation,
            current_generation: session.generation,
            detected_at: now,
            ip: client.ip.clone(),
            user_agent: client.user_agent.clone(),
        }),
        revoked(session.id, RevokeReason::ReuseDetected, now),
    ]
}

fn rotate(
    state: &UserSessions,
    cmd: &RotateToken,
    now: Timestamp,
    sealer: &impl TokenSealer,
) -> Result<Vec<Event>, DomainError> {
    let presented = &cmd.presented;
    if presented.user_id != state.user_id {
        return Err(DomainError::WrongUser);
    }
    let session = state
        .session(&presented.session_id)
        .ok_or(DomainError::UnknownSession)?;
    if session.is_expired(now) {
        return Ok(vec![revoked(session.id, RevokeReason::Expired, now)]);
    }
    match presentation(session, presented, now, cmd.reuse_grace) {
        Presentation::Current if cmd.rotation => {
            Ok(vec![successor(state.user_id, session, cmd, now, sealer)])
        }
        Presentation::Current => {
            let (ip, user_agent, same_client) = seen(session, &cmd.client);
            // A use that would tell an investigator nothing new costs no durable write: the
            // idle expiry then slides at this resolution, and the token stays the same.
            if same_client
                && now < later(session.last_used_at.to_timestamp(), cmd.activity_resolution)
            {
                return Ok(Vec::new());
            }
            Ok(vec![Event::TokenRefreshed(TokenRefreshed {
                session_id: session.id,
                generation: session.generation,
                refreshed_at: now,
                idle_expires_at: later(now, cmd.lifetimes.idle_timeout)
                    .min(session.absolute_expires_at.to_timestamp()),
                ip,
                user_agent,
                same_client,
            })])
        }
        // No event: the caller answers with the session's current grant, the same successor.
        Presentation::PreviousWithinGrace => Ok(Vec::new()),
        Presentation::Reused => Ok(reuse(session, presented, &cmd.client, now)),
        Presentation::Mismatch => Err(DomainError::TokenMismatch),
    }
}

/// A logout asked for with a refresh token checks the token first, as a refresh would;
/// then (or without a token: an access token asked, already checked) it ends its sessions.
fn logout(state: &UserSessions, cmd: &Logout, now: Timestamp) -> Result<Vec<Event>, DomainError> {
    if let Some(presented) = &cmd.presented {
        if presented.user_id != state.user_id {
            return Err(DomainError::WrongUser);
        }
        let session = state
            .session(&presented.session_id)
            .ok_or(DomainError::UnknownSession)?;
        match presentation(session, presented, now, cmd.reuse_grace) {
            Presentation::Current | Presentation::PreviousWithinGrace => {}
            Presentation::Reused => return Ok(reuse(session, presented, &cmd.client, now)),
            Presentation::Mismatch => return Err(DomainError::TokenMismatch),
        }
    }
    let clear_of = |device_id| ClearSessions {
        reason: ClearReason::Logout,
        device_id,
        keep: None,
    };
    match &cmd.scope {
        LogoutScope::Session(session_id) => revoke(
            state,
            &RevokeSession {
                session_id: *session_id,
                reason: RevokeReason::Logout,
            },
            now,
        ),
        LogoutScope::Device(device) => Ok(clear(state, &clear_of(Some(device.clone())), now)),
        LogoutScope::All => Ok(clear(state, &clear_of(None), now)),
    }
}

fn successor(
    user_id: UserId,
    session: &Session,
    cmd: &RotateToken,
    now: Timestamp,
    sealer: &impl TokenSealer,
) -> Event {
    // The event keeps the exact instant (the grace window is measured from it); the token's
    // claims take its whole seconds, here and in `Session::grant` alike.
    let rotated_at = now;
    // Rotation slides the token's expiry with use but never past the absolute lifetime.
    let absolute_expires_at = session.absolute_expires_at.to_timestamp();
    let token_expires_at = later(rotated_at, cmd.lifetimes.refresh_token).min(absolute_expires_at);
    let grant = RefreshGrant {
        user_id,
        session_id: session.id,
        token_id: cmd.successor_id,
        generation: session.generation + 1,
        issued_at: rotated_at.timestamp(),
        expires_at: token_expires_at.timestamp(),
    };
    let (ip, user_agent, same_client) = seen(session, &cmd.client);
    Event::TokenRotated(TokenRotated {
        session_id: session.id,
        generation: grant.generation,
        token_id: grant.token_id,
        token_hash: sealer.seal(&grant),
        rotated_at,
        token_expires_at,
        idle_expires_at: later(rotated_at, cmd.lifetimes.idle_timeout).min(absolute_expires_at),
        ip,
        user_agent,
        same_client,
    })
}

/// Where a refresh came from, as its event records it: nothing, and `same_client`, when the
/// client is the one the session was last used from, as it is for most refreshes; what an
/// investigator looks for is a change, and that is always recorded.
fn seen(session: &Session, client: &Client) -> (Option<String>, Option<String>, bool) {
    let same = session.last_ip.as_deref() == client.ip.as_deref()
        && session.last_user_agent.as_deref() == client.user_agent.as_deref();
    if same {
        (None, None, true)
    } else {
        (client.ip.clone(), client.user_agent.clone(), false)
    }
}

fn revoked(session_id: SessionId, reason: RevokeReason, now: Timestamp) -> Event {
    Event::SessionRevoked(SessionRevoked {
        session_id,
        reason,
        revoked_at: now,
    })
}

fn revoke(
    state: &UserSessions,
    cmd: &RevokeSession,
    now: Timestamp,
) -> Result<Vec<Event>, DomainError> {
    let session = state
        .session(&cmd.session_id)
        .ok_or(DomainError::UnknownSession)?;
    Ok(vec![revoked(session.id, cmd.reason, now)])
}

fn clear(state: &UserSessions, cmd: &ClearSessions, now: Timestamp) -> Vec<Event> {
    // Recorded even when nothing is alive: who cleared what, and when, is the audit trail.
    let session_ids = state
        .sessions
        .values()
        .filter(|s| Some(s.id) != cmd.keep)
        .filter(|s| {
            cmd.device_id
                .as_ref()
                .is_none_or(|device| s.device_id == **device)
        })
        .map(|s| s.id)
        .collect();
    let kept = cmd.keep.filter(|id| state.sessions.contains_key(id));
    vec![Event::SessionsCleared(SessionsCleared {
        reason: cmd.reason,
        session_ids,
        kept,
        cleared_at: now,
    })]
}

/// Folds `events` in order, as repeated `evolve` does, except that a run of consecutive
/// `SessionRevoked` and `SessionsCleared` ends its sessions in one pass: a login that brings a
/// user down from thousands of sessions to the limit records thousands of revocations, and
/// ending them one at a time would shift the sorted sessions once for each.
pub fn evolve_all<'e>(
    mut state: UserSessions,
    events: impl IntoIterator<Item = &'e Event>,
) -> UserSessions {
    let mut ending: Vec<SessionId> = Vec::new();
    for event in events {
        match event {
            Event::SessionRevoked(e) => ending.push(e.session_id),
            Event::SessionsCleared(e) => ending.extend_from_slice(&e.session_ids),
            other => {
                // Ends before the event that follows them, as the log orders them.
                state.sessions.remove_all(&ending);
                ending.clear();
                state = evolve(state, other);
            }
        }
    }
    state.sessions.remove_all(&ending);
    state
}

/// The types of the events that change a user's sessions (`evolve`): a fold of the sessions
/// can count every other event's version without decoding it.
pub const SESSION_EVENTS: [&str; 5] = [
    "TokenIssued",
    "TokenRotated",
    "TokenRefreshed",
    "SessionRevoked",
    "SessionsCleared",
];

/// Folds one event into the state. Ended sessions leave the state: a token of one is then
/// simply unknown.
pub fn evolve(mut state: UserSessions, event: &Event) -> UserSessions {
    match event {
        Event::TokenIssued(e) => {
            let ip: Option<Arc<str>> = e.ip.as_deref().map(Arc::from);
            let user_agent: Option<Arc<str>> = e.user_agent.as_deref().map(Arc::from);
            state.sessions.insert(Session {
                id: e.session_id,
                device_id: DeviceId::from(e.device_id.as_str()),
                generation: 0,
                token_id: e.token_id,
                token_hash: e.token_hash,
                token_issued_at: e.issued_at.into(),
                token_expires_at: e.token_expires_at.into(),
                previous: None,
                created_at: e.issued_at.into(),
                last_used_at: e.issued_at.into(),
                idle_expires_at: e.idle_expires_at.into(),
                absolute_expires_at: e.absolute_expires_at.into(),
                login_ip: ip.clone(),
                login_user_agent: user_agent.clone(),
                last_ip: ip,
                last_user_agent: user_agent,
            });
        }
        Event::TokenRotated(e) => {
            if let Some(s) = state.sessions.get_mut(&e.session_id) {
                s.previous = Some(PreviousToken {
                    generation: s.generation,
                    hash: s.token_hash,
                    replaced_at: e.rotated_at.into(),
                });
                s.generation = e.generation;
                s.token_id = e.token_id;
                s.token_hash = e.token_hash;
                s.token_issued_at = e.rotated_at.into();
                s.token_expires_at = e.token_expires_at.into();
                s.last_used_at = e.rotated_at.into();
                s.idle_expires_at = e.idle_expires_at.into();
                if !e.same_client {
                    s.seen_from(&e.ip, &e.user_agent);
                }
            }
        }
        Event::TokenRefreshed(e) => {
            if let Some(s) = state.sessions.get_mut(&e.session_id) {
                s.last_used_at = e.refreshed_at.into();
                s.idle_expires_at = e.idle_expires_at.into();
                if !e.same_client {
                    s.seen_from(&e.ip, &e.user_agent);
                }
            }
        }
        Event::SessionRevoked(e) => {
            state.sessions.remove(&e.session_id);
        }
        Event::SessionsCleared(e) => state.sessions.remove_all(&e.session_ids),
        // Account events: the users row's, not the sessions' (blocking ends the sessions
        // through its own `SessionsCleared`).
        Event::RefreshTokenReused(_)
        | Event::LoginFailed(_)
        | Event::UserRegistered(_)
        | Event::PasswordChanged(_)
        | Event::UserBlocked(_)
        | Event::UserUnblocked(_)
        | Event::UserForgotten(_)
        | Event::UserImported(_)
        | Event::PasswordRehashed(_)
        | Event::PasswordResetRequested(_)
        | Event::PasswordReset(_)
        | Event::EmailConfirmationRequested(_)
        | Event::EmailConfirmed(_)
        | Event::EmailSent(_)
        | Event::EmailFailed(_) => {}
    }
    state
}
