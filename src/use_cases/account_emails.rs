//! Strapi's forgot-password, reset-password, send-email-confirmation and email-confirmation.
//! A request only records a code (its digest, on the users row and in the log); the mailer
//! follows the log and sends the email. Codes are random (a fresh UUID v7 id, from which the
//! code is derived with a key the database never sees: 256 bits), single use, expiring, and a
//! new request of the same kind supersedes the last.

use std::sync::Arc;

use chrono::{SubsecRound, TimeDelta};
use tokenledger_domain::{ClearReason, ClearSessions, Command, EmailKind, IssueReason};

use super::{Caller, Failure, RefreshDelivery, Services, Started};
use crate::clock::Clock;
use crate::email_codes::{CodeKey, digest};
use crate::ids::Ids;
use crate::mailer::Wake;
use crate::store::users::{NewCode, User, UserError, UserStore};

/// A reset-password request whose fields passed Strapi's checks (the confirmation matched).
pub struct ResetPassword {
    pub code: String,
    pub password: String,
}

/// What makes and records codes, apart from the rest of the services: forgot-password hands
/// it to a task of its own.
struct Codes {
    users: UserStore,
    clock: Arc<Clock>,
    ids: Arc<Ids>,
    key: CodeKey,
    mail: Wake,
}

impl Codes {
    /// A new code, lasting `lifetime`; its expiry in whole milliseconds, as the users row
    /// keeps times, so that the row and the log say the same (`verify`).
    fn new_code(&self, lifetime: TimeDelta) -> NewCode {
        let code_id = self.ids.new_id();
        NewCode {
            code_id,
            digest: digest(&self.key.code(code_id)),
            expires_at: (self.clock.now() + lifetime).trunc_subsecs(3),
        }
    }

    /// The local user whose email is `email` (any case); not a username that looks like one.
    async fn by_email(&self, email: &str) -> Result<Option<User>, Failure> {
        let lower = email.to_lowercase();
        let user = self.users.find_by_identifier(&lower).await?;
        Ok(user.filter(|u| u.email == lower))
    }

    /// A reset code for `email`'s user, unless there is none or it is blocked.
    async fn record_reset(
        &self,
        email: &str,
        lifetime: TimeDelta,
        caller: Caller,
    ) -> Result<(), Failure> {
        let Some(user) = self.by_email(email).await?.filter(|u| !u.blocked) else {
            return Ok(());
        };
        let code = self.new_code(lifetime);
        let now = self.clock.now();
        self.users
            .request_code(
                user.id,
                EmailKind::ResetPassword,
                &code,
                now,
                &caller.metadata,
            )
            .await?;
        self.mail.wake();
        Ok(())
    }
}

impl Services {
    fn codes(&self) -> Codes {
        Codes {
            users: self.users.clone(),
            clock: self.clock.clone(),
            ids: self.ids.clone(),
            key: self.code_key.clone(),
            mail: self.mail.clone(),
        }
    }

    /// A new code, lasting `lifetime`.
    pub(super) fn new_code(&self, lifetime: TimeDelta) -> NewCode {
        self.codes().new_code(lifetime)
    }

    /// Strapi's forgot-password: the same answer, `{ok: true}`, whether or not the email is a
    /// user's (or a blocked one's). Everything after the limits runs after the answer (the
    /// lookup of the email, the code, its durable write), so that the answer's time cannot tell
    /// an existing email from an unknown one; it acknowledges nothing, and a code lost to a
    /// crash in that instant is asked for again.
    pub async fn forgot_password(&self, email: &str, caller: Caller) -> Result<(), Failure> {
        self.limits.check_login(caller.ip, email)?;
        self.limits.check_email(email)?;
        let codes = self.codes();
        let lifetime = self.config.accounts.reset_code_lifetime;
        let email = email.to_owned();
        tokio::spawn(async move {
            if let Err(error) = codes.record_reset(&email, lifetime, caller).await {
                tracing::warn!(%error, "could not record a reset-password code");
            }
        });
        Ok(())
    }

    /// Strapi's reset-password: the code's user gets the new password, every session of the
    /// user ends (`SessionsCleared{password_reset}`), the code is spent, and a session begins
    /// as a login's would.
    pub async fn reset_password(
        &self,
        form: ResetPassword,
        caller: Caller,
        delivery: RefreshDelivery,
    ) -> Result<Started, Failure> {
        // Codes are 256 bits, beyond guessing; the limit keeps a flood off the hasher.
        self.limits.check_login(caller.ip, "reset-password")?;
        super::password_rules("", "", &form.password)?;
        let hash = self.passwords.hash(form.password).await?;
        let now = self.clock.now();
        let user = match self
            .users
            .reset_password(&digest(&form.code), &hash, now, &caller.metadata)
            .await
        {
            Err(UserError::NotFound) => return Err(Failure::IncorrectCode),
            other => other?,
        };
        let clear = Command::ClearSessions(ClearSessions {
            reason: ClearReason::PasswordReset,
            device_id: None,
            keep: None,
        });
        self.registry
            .execute(user.id, clear, caller.metadata.clone())
            .await?;
        if user.blocked {
            return Err(Failure::Blocked);
        }
        self.start_session(caller, user, None, IssueReason::PasswordReset, delivery)
            .await
    }

    /// Strapi's send-email-confirmation: `{email, sent: true}` for an unknown email too; a
    /// confirmed or blocked user's is refused as Strapi refuses it.
    pub async fn send_email_confirmation(
        &self,
        email: &str,
        caller: Caller,
    ) -> Result<String, Failure> {
        self.limits.check_login(caller.ip, email)?;
        self.limits.check_email(email)?;
        let Some(user) = self.codes().by_email(email).await? else {
            return Ok(email.to_owned());
        };
        if user.confirmed {
            return Err(Failure::AlreadyConfirmed);
        }
        if user.blocked {
            return Err(Failure::UserBlocked);
        }
        let code = self.new_code(self.config.accounts.confirmation_code_lifetime);
        self.users
            .request_code(
                user.id,
                EmailKind::EmailConfirmation,
                &code,
                self.clock.now(),
                &caller.metadata,
            )
            .await?;
        self.mail.wake();
        Ok(user.email)
    }

    /// Strapi's email-confirmation link: the code's user is confirmed and the code spent.
    pub async fn confirm_email(&self, code: &str, caller: Caller) -> Result<User, Failure> {
        self.limits.check_login(caller.ip, "email-confirmation")?;
        match self
            .users
            .confirm_email(&digest(code), self.clock.now(), &caller.metadata)
            .await
        {
            Err(UserError::NotFound) => Err(Failure::InvalidConfirmation),
            other => Ok(other?),
        }
    }
}
