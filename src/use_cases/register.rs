//! Strapi's registration: a new user, logged in.

use tokenledger_domain::IssueReason;

use super::{Caller, Failure, RefreshDelivery, Services, Started};
use crate::store::users::NewUser;

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
    ) -> Result<Started, Failure> {
        self.limits.check_login(caller.ip, &form.email)?;
        let password_hash = self.passwords.hash(form.password).await?;
        let new_user = NewUser {
            username: form.username,
            email: form.email,
            password_hash,
        };
        let user = self
            .users
            .create(new_user, self.clock.now(), &caller.metadata)
            .await?;
        self.start_session(caller, user, None, IssueReason::Register, delivery)
            .await
    }
}
