//! The application's use cases, one file each: register, log in, refresh, log out, change a
//! password, a user's own sessions, and the admin's questions; and introspect and revoke a
//! token (RFC 7662, RFC 7009). Each takes typed input (parsed by `http` from Strapi's bodies),
//! works with the users table, the user's actor, the projection and the store, and returns a
//! typed outcome or a `Failure`; `http` shapes both into Strapi's answers. Time and ids come
//! from the injected `Clock` and `Ids`.

mod account_emails;
mod admin;
mod change_password;
mod introspect;
mod login;
mod logout;
mod refresh;
mod register;
mod revoke;
mod sessions;
mod start_session;

use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use chrono::TimeDelta;
use tokenledger_domain::{Client, Lifetimes};
use tokenledger_projections::ActiveSessions;

use crate::actors::{ExecuteError, Registry};
use crate::clock::Clock;
use crate::config::Config;
use crate::ids::Ids;
use crate::limits::{Limited, RateLimits};
use crate::password::{PasswordError, Passwords};
use crate::store::users::{User, UserError, UserStore};
use crate::store::{EventMetadata, EventStore, StoreError};
use crate::tokens::Tokens;

pub use account_emails::ResetPassword;
pub use admin::{Trail, TrailQuery};
pub use change_password::ChangePassword;
pub use introspect::{Introspected, ServiceCredential, TokenKind};
pub use login::Login;
pub use logout::{LogoutInput, LogoutWith};
pub use refresh::Refreshed;
pub use register::{Register, Registered};

/// Everything the use cases work with, built once by `app::Application`.
pub struct Services {
    pub config: Arc<Config>,
    pub users: UserStore,
    pub passwords: Passwords,
    pub tokens: Arc<Tokens>,
    pub registry: Registry,
    pub projection: Arc<RwLock<ActiveSessions>>,
    pub clock: Arc<Clock>,
    pub ids: Arc<Ids>,
    pub limits: RateLimits,
    pub store: Arc<dyn EventStore>,
    /// Derives the codes of account emails (`email_codes`).
    pub code_key: crate::email_codes::CodeKey,
    /// The data keys, for retention.
    pub personal: Arc<dyn crate::store::data_keys::PersonalData>,
    /// Other instances write to the same log (PostgreSQL): a session this instance has not
    /// seen yet may be another's newest, so the user's stream is read before "unknown" counts.
    pub shared_log: bool,
    /// Wakes the mailer after a request for an email is appended (`mailer::Wake`).
    pub mail: crate::mailer::Wake,
}

/// Who asks: where from, and what goes on record with the events the request causes.
#[derive(Clone, Debug)]
pub struct Caller {
    pub ip: Option<IpAddr>,
    pub client: Client,
    pub metadata: EventMetadata,
}

/// Whether the client is given the refresh token of a session being started: known before
/// the session is issued, because a session whose refresh token nobody holds lasts only as
/// long as its access token (`Lifetimes::without_refresh_token`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshDelivery {
    /// In the answer's body or its cookie.
    Delivered,
    /// Not asked for (a registration, a login without `requestRefresh`).
    Withheld,
}

/// A session begun (login, registration, password change).
pub struct Started {
    pub user: User,
    pub access_token: String,
    /// The session's refresh token and how long it lasts; `None` when it is withheld.
    pub refresh_token: Option<(String, TimeDelta)>,
}

/// Why a use case did not happen. Each one is one of Strapi's answers (`http::errors`).
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// An unknown identifier or a wrong password: one answer for both.
    #[error("invalid identifier or password")]
    InvalidLogin,
    #[error("the account is blocked")]
    Blocked,
    #[error("email or username already taken")]
    Taken,
    /// A refresh token that is forged, expired, superseded, or of an ended session.
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    /// No token at all (nor a refresh token where one would do): Strapi's public role asking
    /// for a route only the authenticated role may use.
    #[error("no credentials")]
    NoCredentials,
    /// A token that is not a usable access token (forged, expired, of an ended session), or
    /// a refresh token that cannot stand in for one.
    #[error("missing or invalid credentials")]
    MissingCredentials,
    /// A valid token whose user is blocked or gone.
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("the current password is wrong")]
    WrongCurrentPassword,
    #[error("the new password is the current one")]
    UnchangedPassword,
    /// The new password breaks Strapi's rules (each message says which).
    #[error("{}", .0.join("; "))]
    PasswordRules(Vec<String>),
    /// A reset-password code that is unknown, spent, superseded or expired.
    #[error("incorrect code")]
    IncorrectCode,
    /// An email-confirmation code that is unknown, spent, superseded or expired.
    #[error("invalid confirmation token")]
    InvalidConfirmation,
    /// `ALLOW_REGISTER=false`.
    #[error("registration is closed")]
    RegistrationClosed,
    /// `EMAIL_CONFIRMATION=true` and the user has not followed the link yet.
    #[error("the email is not confirmed")]
    EmailNotConfirmed,
    #[error("the email is confirmed already")]
    AlreadyConfirmed,
    /// A blocked user asked for a confirmation email (Strapi's wording differs from login's).
    #[error("the user is blocked")]
    UserBlocked,
    #[error("no such session")]
    SessionNotFound,
    #[error("no such user")]
    UserNotFound,
    #[error(transparent)]
    Limited(#[from] Limited),
    /// Too many password checks wait already.
    #[error("too many password checks at once")]
    Busy,
    /// The store, the actor or the hasher could not do its part; nothing was acknowledged.
    #[error("{what}: {source}")]
    Unavailable {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Failure {
    /// `what` could not do its part; the error itself stays the source.
    pub(super) fn unavailable(
        what: &'static str,
        error: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Failure::Unavailable {
            what,
            source: Box::new(error),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Failure::unavailable("event store", error)
    }
}

impl From<ExecuteError> for Failure {
    fn from(error: ExecuteError) -> Self {
        Failure::unavailable("session actor", error)
    }
}

impl From<UserError> for Failure {
    fn from(error: UserError) -> Self {
        match error {
            UserError::Taken => Failure::Taken,
            UserError::NotFound => Failure::InvalidCredentials,
            UserError::Database(e) => Failure::unavailable("users table", e),
        }
    }
}

impl From<PasswordError> for Failure {
    fn from(error: PasswordError) -> Self {
        match error {
            PasswordError::Busy => Failure::Busy,
            other => Failure::unavailable("password hashing", other),
        }
    }
}

/// Strapi's rules for a new password (its other fields' rules are for registration).
fn password_rules(username: &str, email: &str, password: &str) -> Result<(), Failure> {
    let broken: Vec<String> = crate::rules::rule_violations(username, email, password)
        .into_iter()
        .filter(|(field, _)| *field == "password")
        .map(|(_, message)| message)
        .collect();
    if broken.is_empty() {
        Ok(())
    } else {
        Err(Failure::PasswordRules(broken))
    }
}

impl Services {
    /// The projection every request shares. A panic while it was held leaves it as the
    /// last complete fold step left it, which is still the truth of the log.
    pub fn projection(&self) -> RwLockReadGuard<'_, ActiveSessions> {
        self.projection
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn projection_mut(&self) -> RwLockWriteGuard<'_, ActiveSessions> {
        self.projection
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// `MAX_SESSIONS_PER_USER`, for every command that starts a session.
    fn max_sessions(&self) -> Option<u32> {
        self.config.limits.max_sessions_per_user
    }

    fn lifetimes(&self) -> Lifetimes {
        Lifetimes {
            refresh_token: self.config.lifetimes.refresh_token_expires_in,
            idle_timeout: self.config.lifetimes.session_idle_timeout,
            absolute: self.config.lifetimes.session_absolute_lifetime,
        }
    }

    /// The lifetimes of a session being started, which depend on whether its refresh token
    /// reaches the client.
    fn lifetimes_of_new_session(&self, delivery: RefreshDelivery) -> Lifetimes {
        match delivery {
            RefreshDelivery::Delivered => self.lifetimes(),
            RefreshDelivery::Withheld => self
                .lifetimes()
                .without_refresh_token(self.config.tokens.jwt_expires_in),
        }
    }
}
