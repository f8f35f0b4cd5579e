//! Strapi's login: an identifier (username or email) and a password.

use tokenledger_domain::{Command, IssueReason, RecordLoginFailure, UserId};

use super::{Caller, Failure, RefreshDelivery, Services, Started};
use crate::limits::Account;
use crate::password::Scheme;
use crate::store::users::{User, UserError};

/// A login whose fields passed Strapi's checks.
pub struct Login {
    pub identifier: String,
    pub password: String,
    /// Names the device; a new one is made up when `None`.
    pub device_id: Option<String>,
}

impl Services {
    /// The attempt has been counted against the address limits already (`http`, as Strapi's
    /// rate-limit middleware counts it before the body is checked); the account's failures
    /// are counted here.
    pub async fn login(
        &self,
        form: Login,
        caller: Caller,
        delivery: RefreshDelivery,
    ) -> Result<Started, Failure> {
        let user = self.users.find_by_identifier(&form.identifier).await?;
        let account = user.as_ref().map_or_else(
            || Account::unknown(&form.identifier),
            |u| Account::user(u.id),
        );
        self.limits.check_account(account)?;
        let hash = user.as_ref().and_then(|u| u.password_hash.clone());
        // Kept only for a hash of another scheme, which a proven password replaces.
        let to_rehash = (hash.as_deref().map(Scheme::of))
            .is_some_and(|scheme| scheme != Scheme::Argon2id)
            .then(|| form.password.clone());
        let matches = self.passwords.verify(form.password, hash).await?;
        if !matches {
            self.limits.count_failure(account);
        }
        let user = match user {
            Some(user) if matches => user,
            // A wrong password and an unknown user answer alike and at once: the failure is
            // recorded after the answer, so no durable write tells them apart by timing.
            Some(user) => {
                self.record_failure(user.id, caller);
                return Err(Failure::InvalidLogin);
            }
            None => return Err(Failure::InvalidLogin),
        };
        // Strapi's order: an unconfirmed email first, then a block.
        if self.config.accounts.email_confirmation && !user.confirmed {
            return Err(Failure::EmailNotConfirmed);
        }
        if user.blocked {
            return Err(Failure::Blocked);
        }
        let user = match to_rehash {
            Some(password) => self.upgrade_hash(user, password, &caller).await?,
            None => user,
        };
        self.start_session(caller, user, form.device_id, IssueReason::Login, delivery)
            .await
    }

    /// An imported (bcrypt) hash whose password was just proven is replaced by an argon2id
    /// one (`PasswordRehashed`). Two first logins at once: one replaces it, the other finds
    /// the new hash and checks the password against it, so neither is refused.
    async fn upgrade_hash(
        &self,
        user: User,
        password: String,
        caller: &Caller,
    ) -> Result<User, Failure> {
        let Some(previous) = user.password_hash.clone() else {
            return Ok(user);
        };
        let hash = self.passwords.hash(password.clone()).await?;
        let now = self.clock.now();
        match self
            .users
            .rehash(user.id, &previous, &hash, now, &caller.metadata)
            .await
        {
            Ok(rehashed) => Ok(rehashed),
            Err(UserError::NotFound) => {
                let current = self
                    .users
                    .find(user.id)
                    .await?
                    .ok_or(Failure::InvalidLogin)?;
                let hash = current.password_hash.clone();
                if self.passwords.verify(password, hash).await? {
                    Ok(current)
                } else {
                    Err(Failure::InvalidLogin)
                }
            }
            Err(other) => Err(other.into()),
        }
    }

    /// A wrong password for an existing user goes on its record. It is handed to the user's
    /// actor now (so it keeps its place before the user's next command) and recorded after
    /// the answer: an unknown user has nothing to record, and waiting for the write would
    /// tell the two apart by timing.
    pub(super) fn record_failure(&self, user_id: UserId, caller: Caller) {
        let command = Command::RecordLoginFailure(RecordLoginFailure {
            client: caller.client,
            failed_at: self.clock.now(),
        });
        self.registry.submit(user_id, command, caller.metadata);
    }
}
