//! Strapi's registration: a new user, logged in; or, with `EMAIL_CONFIRMATION`, a new
//! unconfirmed user with the code that confirms its email, not logged in.

use tokenledger_domain::IssueReason;

use super::{Caller, Failure, RefreshDelivery, Services, Started};
use crate::store::users::{NewUser, User};

/// What a registration did.
pub enum Registered {
    LoggedIn(Started),
    /// `EMAIL_CONFIRMATION`: Strapi answers `{user}` alone; the user logs in once confirmed.
    Unconfirmed(User),
}

/// A registration whose fields passed Strapi's checks.
pub struct Register {
    pub username: String,
    pub email: String,
    pub password: String,
}

impl Services {
    pub async fn register(
        &self,
        form: Register,
        caller: Caller,
        delivery: RefreshDelivery,
    ) -> Result<Registered, Failure> {
        if !self.config.accounts.allow_register {
            return Err(Failure::RegistrationClosed);
        }
        self.limits.check_login(caller.ip, &form.email)?;
        let password_hash = self.passwords.hash(form.password).await?;
        let new_user = NewUser {
            username: form.username,
            email: form.email,
            password_hash,
        };
        let now = self.clock.now();
        if self.config.accounts.email_confirmation {
            let code = self.new_code(self.config.accounts.confirmation_code_lifetime);
            let user = (self.users)
                .create_unconfirmed(new_user, &code, now, &caller.metadata)
                .await?;
            self.mail.wake();
            return Ok(Registered::Unconfirmed(user));
        }
        let user = self.users.create(new_user, now, &caller.metadata).await?;
        self.start_session(caller, user, None, IssueReason::Register, delivery)
            .await
            .map(Registered::LoggedIn)
    }
}
