//! What callers ask of a user's sessions. Fresh ids and the lifetimes in force come in the
//! command, so deciding stays pure.

use chrono::TimeDelta;

use crate::events::{ClearReason, IssueReason, RevokeReason};
use crate::types::{SessionId, Timestamp, TokenHash, TokenId, UserId};

/// Where a request came from, recorded with the session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Client {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// The lifetimes configured when a command is decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetimes {
    /// How long one refresh token is valid (`refreshTokenExpiresIn`).
    pub refresh_token: TimeDelta,
    /// How long a session may go unused (`sessionIdleTimeout`).
    pub idle_timeout: TimeDelta,
    /// How long a session may live from login, whatever its use (`sessionAbsoluteLifetime`).
    pub absolute: TimeDelta,
}

impl Lifetimes {
    /// The lifetimes of a session whose refresh token the client is never given (a
    /// registration, a login without `requestRefresh`). Nothing can refresh it, so it is of
    /// use only while its first access token is valid (`access_token`, `jwt.expiresIn`): it
    /// ends when that token expires, rather than being listed, counted and held for the
    /// refresh token's lifetime. No lifetime is lengthened (a shorter idle timeout stays).
    pub fn without_refresh_token(self, access_token: TimeDelta) -> Lifetimes {
        Lifetimes {
            refresh_token: self.refresh_token.min(access_token),
            idle_timeout: self.idle_timeout.min(access_token),
            absolute: self.absolute.min(access_token),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssueToken {
    pub session_id: SessionId,
    pub device_id: String,
    pub token_id: TokenId,
    pub reason: IssueReason,
    pub lifetimes: Lifetimes,
    /// How many sessions the user may hold with this one (`MAX_SESSIONS_PER_USER`); the least
    /// recently used beyond it end. `None`: no limit. The new session always stays, so a
    /// limit of 0 acts as 1.
    pub max_sessions: Option<u32>,
    pub client: Client,
}

/// The verified claims of the refresh token a client presented, and its hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresentedToken {
    pub user_id: UserId,
    pub session_id: SessionId,
    pub token_id: TokenId,
    pub generation: u32,
    pub hash: TokenHash,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotateToken {
    pub presented: PresentedToken,
    /// Off: the same refresh token keeps working and its use is recorded as `TokenRefreshed`
    /// (see `activity_resolution`).
    pub rotation: bool,
    /// The id of the successor token, used only if a new generation is minted.
    pub successor_id: TokenId,
    /// How long the immediately previous token still yields the same successor.
    pub reuse_grace: TimeDelta,
    pub lifetimes: Lifetimes,
    /// Rotation off: a use from the client the session was last used from is recorded only
    /// if the last recorded use is at least this old (`SESSION_ACTIVITY_RESOLUTION`); zero
    /// records every use. A use from another client is always recorded.
    pub activity_resolution: TimeDelta,
    pub client: Client,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokeSession {
    pub session_id: SessionId,
    pub reason: RevokeReason,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClearSessions {
    pub reason: ClearReason,
    /// Only the sessions of this device (a device's "log out"); `None`: every session.
    pub device_id: Option<String>,
    /// A session to leave alive ("log out everywhere else").
    pub keep: Option<SessionId>,
}

/// Which sessions a logout ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogoutScope {
    Session(SessionId),
    Device(String),
    All,
}

/// A user's own logout. When a refresh token asks for it, the token is held to the rule a
/// refresh is held to: the current token, or the previous one within the grace window; an
/// older one is reuse, and ends its session instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logout {
    pub scope: LogoutScope,
    pub presented: Option<PresentedToken>,
    pub reuse_grace: TimeDelta,
    pub client: Client,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordLoginFailure {
    pub client: Client,
    /// When the password was checked: the failure is recorded a moment after it is answered
    /// (so an unknown user and a wrong password take the same time), and keeps its own time.
    pub failed_at: Timestamp,
}

/// A live session of another system, brought in with the one token it accepts (the Strapi
/// plugin's refresh token, known by the hash of its `secret`). The token keeps the expiry it
/// had there: its lifetime counts from `created_at`, as does the session's absolute one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportSession {
    pub session_id: SessionId,
    pub device_id: String,
    pub token_id: TokenId,
    pub token_hash: TokenHash,
    /// When the other system issued the token.
    pub created_at: Timestamp,
    pub lifetimes: Lifetimes,
    pub client: Client,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    IssueToken(IssueToken),
    ImportSession(ImportSession),
    RotateToken(RotateToken),
    RevokeSession(RevokeSession),
    ClearSessions(ClearSessions),
    Logout(Logout),
    RecordLoginFailure(RecordLoginFailure),
}
