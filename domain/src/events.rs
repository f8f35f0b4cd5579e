//! The events of a user's stream `user-<id>`. Names are stable; each payload carries its own
//! `schema_version` in the store so that later versions can upcast older ones (`schema`).
//!
//! Two kinds share the stream: session events, which the aggregate decides, and account
//! events (`UserRegistered`, `PasswordChanged`, `UserBlocked`, `UserUnblocked`), written in the
//! same transaction as the users row they explain, so that `verify` can tell a row the log
//! does not account for. A password is never in the log, nor its hash: only a digest of the
//! hash, which proves which hash is current without being one an attacker could crack.

use serde::{Deserialize, Serialize};

use crate::types::{SessionId, Timestamp, TokenHash, TokenId};

/// Why a session started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueReason {
    Login,
    Register,
    PasswordChange,
    /// A live refresh token of another system (the Strapi plugin's), brought in by
    /// `tokenledger import`: the session's one accepted token is that system's.
    Imported,
    /// The session a password reset starts, as Strapi answers a reset with a login.
    PasswordReset,
}

/// Why one session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokeReason {
    Logout,
    UserRevoked,
    Admin,
    ReuseDetected,
    Expired,
    /// Started by a login that raced a block: the block wins.
    Blocked,
    /// Started by a login that raced a password change: the change wins.
    PasswordChanged,
    /// The least recently used session, ended by a login beyond the sessions a user may hold.
    Evicted,
}

/// Why many sessions ended at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClearReason {
    Logout,
    PasswordChanged,
    Admin,
    Blocked,
    /// The user was forgotten (erased): every session ends before its data key is deleted.
    Forgotten,
    /// The password was reset with an emailed code: whoever held a session may be the reason.
    PasswordReset,
}

/// A session starts with its generation-0 refresh token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenIssued {
    pub session_id: SessionId,
    pub device_id: String,
    pub token_id: TokenId,
    pub token_hash: TokenHash,
    pub reason: IssueReason,
    #[serde(with = "crate::types::instant")]
    pub issued_at: Timestamp,
    #[serde(with = "crate::types::instant")]
    pub token_expires_at: Timestamp,
    #[serde(with = "crate::types::instant")]
    pub idle_expires_at: Timestamp,
    #[serde(with = "crate::types::instant")]
    pub absolute_expires_at: Timestamp,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// A refresh with rotation on: generation `generation - 1` gave way to `generation`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRotated {
    pub session_id: SessionId,
    pub generation: u32,
    pub token_id: TokenId,
    pub token_hash: TokenHash,
    #[serde(with = "crate::types::instant")]
    pub rotated_at: Timestamp,
    #[serde(with = "crate::types::instant")]
    pub token_expires_at: Timestamp,
    #[serde(with = "crate::types::instant")]
    pub idle_expires_at: Timestamp,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The client is the one the session was last used from: `ip` and `user_agent` are not
    /// repeated (absent in events written before this field: each then names its client).
    #[serde(default)]
    pub same_client: bool,
}

/// A refresh with rotation off: a new access token from the same refresh token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRefreshed {
    pub session_id: SessionId,
    pub generation: u32,
    #[serde(with = "crate::types::instant")]
    pub refreshed_at: Timestamp,
    #[serde(with = "crate::types::instant")]
    pub idle_expires_at: Timestamp,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// As `TokenRotated::same_client`.
    #[serde(default)]
    pub same_client: bool,
}

/// A genuine token of an older generation came back outside the grace window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshTokenReused {
    pub session_id: SessionId,
    pub token_id: TokenId,
    pub presented_generation: u32,
    pub current_generation: u32,
    #[serde(with = "crate::types::instant")]
    pub detected_at: Timestamp,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRevoked {
    pub session_id: SessionId,
    pub reason: RevokeReason,
    #[serde(with = "crate::types::instant")]
    pub revoked_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionsCleared {
    pub reason: ClearReason,
    /// The sessions that ended, so a reader of the log needs no state to know.
    pub session_ids: Vec<SessionId>,
    /// The one session left alive ("log out everywhere else"), if any.
    pub kept: Option<SessionId>,
    #[serde(with = "crate::types::instant")]
    pub cleared_at: Timestamp,
}

/// A wrong password for an existing user, for brute-force forensics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginFailed {
    #[serde(with = "crate::types::instant")]
    pub failed_at: Timestamp,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// A user came to be, with the users row's facts as they were then.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRegistered {
    pub document_id: String,
    pub username: String,
    pub email: String,
    pub provider: String,
    pub confirmed: bool,
    pub blocked: bool,
    /// Lowercase hex SHA-256 of the stored PHC hash string; `None` for a user without a
    /// password (another provider's). Argon2 hashes are salted, so the digest names one hash.
    pub password_digest: Option<String>,
    #[serde(with = "crate::types::instant")]
    pub registered_at: Timestamp,
}

/// The users row's password hash was replaced by the one with this digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordChanged {
    /// Lowercase hex SHA-256 of the new PHC hash string (see `UserRegistered`).
    pub password_digest: String,
    #[serde(with = "crate::types::instant")]
    pub changed_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserBlocked {
    #[serde(with = "crate::types::instant")]
    pub blocked_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserUnblocked {
    #[serde(with = "crate::types::instant")]
    pub unblocked_at: Timestamp,
}

/// The users row was brought in from another system (`tokenledger import strapi`), with the
/// ids it had there; the `UserRegistered` just before it states the row's facts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserImported {
    /// Where from: the system and its database, never a credential (`strapi sqlite
    /// /srv/strapi/.tmp/data.db`, `strapi postgres db.internal:5432/strapi`).
    pub source: String,
    /// When the other system created the row.
    #[serde(with = "crate::types::instant")]
    pub created_at: Timestamp,
    #[serde(with = "crate::types::instant")]
    pub imported_at: Timestamp,
}

/// The password hash was replaced by a hash of the same password with today's algorithm
/// (an imported bcrypt hash by argon2id, at the first login that proved the password): the
/// user changed nothing. The digest is of the new hash, as in `PasswordChanged`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordRehashed {
    pub password_digest: String,
    /// The scheme of the hash replaced (`bcrypt`).
    pub from: String,
    #[serde(with = "crate::types::instant")]
    pub rehashed_at: Timestamp,
}

/// Which email a code goes out in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailKind {
    /// "Forgot password?": a link to the front end's reset page with the code.
    ResetPassword,
    /// The sign-up confirmation: a link to `/api/auth/email-confirmation` with the code.
    EmailConfirmation,
}

/// A password reset was asked for. The code itself is never stored: the mailer derives it
/// from `code_id` with a key the database never sees, and the log keeps its SHA-256, which a
/// reset must match before `expires_at`. A later request supersedes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordResetRequested {
    pub code_id: uuid::Uuid,
    /// Lowercase hex SHA-256 of the code.
    pub code_digest: String,
    #[serde(with = "crate::types::instant")]
    pub expires_at: Timestamp,
    #[serde(with = "crate::types::instant")]
    pub requested_at: Timestamp,
}

/// The password was replaced through the reset code `code_id`, which is spent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordReset {
    pub code_id: uuid::Uuid,
    /// Lowercase hex SHA-256 of the new password hash (see `UserRegistered`).
    pub password_digest: String,
    #[serde(with = "crate::types::instant")]
    pub reset_at: Timestamp,
}

/// A confirmation of the account's email was asked for (at registration, or again); the code
/// as in `PasswordResetRequested`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailConfirmationRequested {
    pub code_id: uuid::Uuid,
    pub code_digest: String,
    #[serde(with = "crate::types::instant")]
    pub expires_at: Timestamp,
    #[serde(with = "crate::types::instant")]
    pub requested_at: Timestamp,
}

/// The email was confirmed with the code `code_id`, which is spent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailConfirmed {
    pub code_id: uuid::Uuid,
    #[serde(with = "crate::types::instant")]
    pub confirmed_at: Timestamp,
}

/// The mailer handed the email of code `code_id` to the SMTP server, which accepted it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailSent {
    pub code_id: uuid::Uuid,
    pub kind: EmailKind,
    /// Derived from the code's id: a resend carries the same one, so that it is recognised.
    pub message_id: String,
    pub attempt: u32,
    #[serde(with = "crate::types::instant")]
    pub sent_at: Timestamp,
}

/// An attempt to send the email of code `code_id` failed; `retry_at` when the mailer tries
/// again, `None` when it gave up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailFailed {
    pub code_id: uuid::Uuid,
    pub kind: EmailKind,
    pub attempt: u32,
    pub error: String,
    #[serde(default, with = "crate::types::optional_instant")]
    pub retry_at: Option<Timestamp>,
    #[serde(with = "crate::types::instant")]
    pub failed_at: Timestamp,
}

/// The user was erased: their users row and data keys are deleted, so every personal field of
/// their stream reads as erased from then on. The events themselves stay, and the ledger
/// still covers them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserForgotten {
    #[serde(with = "crate::types::instant")]
    pub forgotten_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    TokenIssued(TokenIssued),
    TokenRotated(TokenRotated),
    TokenRefreshed(TokenRefreshed),
    RefreshTokenReused(RefreshTokenReused),
    SessionRevoked(SessionRevoked),
    SessionsCleared(SessionsCleared),
    LoginFailed(LoginFailed),
    UserRegistered(UserRegistered),
    PasswordChanged(PasswordChanged),
    UserBlocked(UserBlocked),
    UserUnblocked(UserUnblocked),
    UserForgotten(UserForgotten),
    UserImported(UserImported),
    PasswordRehashed(PasswordRehashed),
    PasswordResetRequested(PasswordResetRequested),
    PasswordReset(PasswordReset),
    EmailConfirmationRequested(EmailConfirmationRequested),
    EmailConfirmed(EmailConfirmed),
    EmailSent(EmailSent),
    EmailFailed(EmailFailed),
}

impl Event {
    pub fn event_type(&self) -> &'static str {
        match self {
            Event::TokenIssued(_) => "TokenIssued",
            Event::TokenRotated(_) => "TokenRotated",
            Event::TokenRefreshed(_) => "TokenRefreshed",
            Event::RefreshTokenReused(_) => "RefreshTokenReused",
            Event::SessionRevoked(_) => "SessionRevoked",
            Event::SessionsCleared(_) => "SessionsCleared",
            Event::LoginFailed(_) => "LoginFailed",
            Event::UserRegistered(_) => "UserRegistered",
            Event::PasswordChanged(_) => "PasswordChanged",
            Event::UserBlocked(_) => "UserBlocked",
            Event::UserUnblocked(_) => "UserUnblocked",
            Event::UserForgotten(_) => "UserForgotten",
            Event::UserImported(_) => "UserImported",
            Event::PasswordRehashed(_) => "PasswordRehashed",
            Event::PasswordResetRequested(_) => "PasswordResetRequested",
            Event::PasswordReset(_) => "PasswordReset",
            Event::EmailConfirmationRequested(_) => "EmailConfirmationRequested",
            Event::EmailConfirmed(_) => "EmailConfirmed",
            Event::EmailSent(_) => "EmailSent",
            Event::EmailFailed(_) => "EmailFailed",
        }
    }

    /// The payload as stored: the variant's fields, without the type, which has a column.
    pub fn payload(&self) -> String {
        // Serialising these plain structs cannot fail: every field is a string, number, bool,
        // uuid, timestamp or enum, none of them a map with non-string keys.
        let encoded = match self {
            Event::TokenIssued(e) => serde_json::to_string(e),
            Event::TokenRotated(e) => serde_json::to_string(e),
            Event::TokenRefreshed(e) => serde_json::to_string(e),
            Event::RefreshTokenReused(e) => serde_json::to_string(e),
            Event::SessionRevoked(e) => serde_json::to_string(e),
            Event::SessionsCleared(e) => serde_json::to_string(e),
            Event::LoginFailed(e) => serde_json::to_string(e),
            Event::UserRegistered(e) => serde_json::to_string(e),
            Event::PasswordChanged(e) => serde_json::to_string(e),
            Event::UserBlocked(e) => serde_json::to_string(e),
            Event::UserUnblocked(e) => serde_json::to_string(e),
            Event::UserForgotten(e) => serde_json::to_string(e),
            Event::UserImported(e) => serde_json::to_string(e),
            Event::PasswordRehashed(e) => serde_json::to_string(e),
            Event::PasswordResetRequested(e) => serde_json::to_string(e),
            Event::PasswordReset(e) => serde_json::to_string(e),
            Event::EmailConfirmationRequested(e) => serde_json::to_string(e),
            Event::EmailConfirmed(e) => serde_json::to_string(e),
            Event::EmailSent(e) => serde_json::to_string(e),
            Event::EmailFailed(e) => serde_json::to_string(e),
        };
        encoded.expect("event payloads always serialise")
    }

    /// When the event happened, as the decision that made it saw the clock.
    pub fn occurred_at(&self) -> Timestamp {
        match self {
            Event::TokenIssued(e) => e.issued_at,
            Event::TokenRotated(e) => e.rotated_at,
            Event::TokenRefreshed(e) => e.refreshed_at,
            Event::RefreshTokenReused(e) => e.detected_at,
            Event::SessionRevoked(e) => e.revoked_at,
            Event::SessionsCleared(e) => e.cleared_at,
            Event::LoginFailed(e) => e.failed_at,
            Event::UserRegistered(e) => e.registered_at,
            Event::PasswordChanged(e) => e.changed_at,
            Event::UserBlocked(e) => e.blocked_at,
            Event::UserUnblocked(e) => e.unblocked_at,
            Event::UserForgotten(e) => e.forgotten_at,
            Event::UserImported(e) => e.imported_at,
            Event::PasswordRehashed(e) => e.rehashed_at,
            Event::PasswordResetRequested(e) => e.requested_at,
            Event::PasswordReset(e) => e.reset_at,
            Event::EmailConfirmationRequested(e) => e.requested_at,
            Event::EmailConfirmed(e) => e.confirmed_at,
            Event::EmailSent(e) => e.sent_at,
            Event::EmailFailed(e) => e.failed_at,
        }
    }
}
