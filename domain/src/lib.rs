//! tokenledger's domain: the events of a user's stream, the commands that ask for changes to
//! its sessions, the aggregate that decides them, and the account facts its account events
//! fold to.
//!
//! Everything here is pure: no async, no IO, no clock reads and no randomness. Time and fresh
//! ids come in as arguments, so a stream replays to the same state on any machine and every
//! rule is testable with plain given/when/then tests.

#![forbid(unsafe_code)]

mod account;
mod aggregate;
mod commands;
mod events;
mod personal;
mod schema;
mod types;

pub use account::{ACCOUNT_EVENTS, Account, PendingCode};
pub use aggregate::{
    DeviceId, DomainError, SESSION_EVENTS, Session, Sessions, TokenSealer, UnixNanos, UserSessions,
    decide, evolve, evolve_all,
};
pub use commands::{
    ClearSessions, Client, Command, ImportSession, IssueToken, Lifetimes, Logout, LogoutScope,
    PresentedToken, RecordLoginFailure, RevokeSession, RotateToken,
};
pub use events::{
    ClearReason, EmailConfirmationRequested, EmailConfirmed, EmailFailed, EmailKind, EmailSent,
    Event, IssueReason, LoginFailed, PasswordChanged, PasswordRehashed, PasswordReset,
    PasswordResetRequested, RefreshTokenReused, RevokeReason, SessionRevoked, SessionsCleared,
    TokenIssued, TokenRefreshed, TokenRotated, UserBlocked, UserForgotten, UserImported,
    UserRegistered, UserUnblocked,
};
pub use personal::{AccountNames, ERASED, Personal};
pub use schema::{DecodeError, current_version};
pub use types::{RefreshGrant, SessionId, Timestamp, TokenHash, TokenId, UserId, shared_text};
