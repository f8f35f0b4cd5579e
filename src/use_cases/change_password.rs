//! Strapi's change-password: every session ends (`SessionsCleared{password_changed}`), and
//! the caller gets a fresh session on the same device.

use tokenledger_domain::{ClearReason, ClearSessions, Command, IssueReason, SessionId};

use super::{Caller, Failure, RefreshDelivery, Services, Started};
use crate::limits::Account;
use crate::store::users::{User, UserError};

/// A change whose fields passed Strapi's checks (the confirmation matched).
pub struct ChangePassword {
    pub current: String,
    pub password: String,
}

impl Services {
    /// `user` holds the access token of `session_id`, checked by `authenticate`.
    pub async fn change_password(
        &self,
        user: User,
        session_id: SessionId,
        form: ChangePassword,
        caller: Caller,
    ) -> Result<Started, Failure> {
        // A stolen access token must not allow unlimited, unrecorded password guessing.
        self.limits.check_login(caller.ip, &user.email)?;
        let account = Account::user(user.id);
        self.limits.check_account(account)?;
        let hash = user.password_hash.clone();
        if !self.passwords.verify(form.current.clone(), hash).await? {
            self.limits.count_failure(account);
            self.record_failure(user.id, caller);
            return Err(Failure::WrongCurrentPassword);
        }
        if form.current == form.password {
            return Err(Failure::UnchangedPassword);
        }
        super::password_rules(&user.username, &user.email, &form.password)?;
        let hash = self.passwords.hash(form.password).await?;
        // Compare-and-set: of two changes made with the same current password, one wins.
        let previous = user.password_hash.as_deref().unwrap_or_default();
        let user = match self
            .users
            .set_password(user.id, previous, &hash, self.clock.now(), &caller.metadata)
            .await
        {
            Err(UserError::NotFound) => return Err(Failure::WrongCurrentPassword),
            other => other?,
        };
        let device_id = self
            .projection()
            .get(user.id, &session_id)
            .map(|view| view.session.device_id.to_string());
        let clear = Command::ClearSessions(ClearSessions {
            reason: ClearReason::PasswordChanged,
            device_id: None,
            keep: None,
        });
        self.registry
            .execute(user.id, clear, caller.metadata.clone())
            .await?;
        // A password change always hands over the new session's refresh token.
        let delivered = RefreshDelivery::Delivered;
        self.start_session(
            caller,
            user,
            device_id,
            IssueReason::PasswordChange,
            delivered,
        )
        .await
    }
}
