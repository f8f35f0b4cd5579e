//! Starting a session for a user whose credentials were just checked: the login's, the
//! registration's and the password change's last step.

use tokenledger_domain::{
    Command, DomainError, IssueReason, IssueToken, RevokeReason, RevokeSession,
};

use super::{Caller, Failure, RefreshDelivery, Services, Started};
use crate::actors::ExecuteError;
use crate::store::users::User;

impl Services {
    /// Issues a session (and its refresh token, when `delivery` says the client gets it) to
    /// `user`, on `device_id` or a new device.
    pub(super) async fn start_session(
        &self,
        caller: Caller,
        user: User,
        device_id: Option<String>,
        reason: IssueReason,
        delivery: RefreshDelivery,
    ) -> Result<Started, Failure> {
        let session_id = self.ids.new_id();
        let command = Command::IssueToken(IssueToken {
            session_id,
            device_id: device_id.unwrap_or_else(|| self.ids.new_id().to_string()),
            token_id: self.ids.new_id(),
            reason,
            lifetimes: self.lifetimes_of_new_session(delivery),
            max_sessions: self.max_sessions(),
            client: caller.client.clone(),
        });
        let executed = self
            .registry
            .execute(user.id, command, caller.metadata.clone())
            .await?;
        self.refuse_if_superseded(&user, session_id, caller).await?;
        let now = self.clock.now();
        let refresh_token = match (delivery, executed.refresh_token, executed.session) {
            (RefreshDelivery::Delivered, Some(token), Some(session)) => {
                Some((token, session.token_expires_at.to_timestamp() - now))
            }
            _ => None,
        };
        Ok(Started {
            access_token: self.tokens.sign_access(user.id, session_id, now),
            user,
            refresh_token,
        })
    }

    /// The user may have been blocked, or its password changed, while this session was being
    /// decided; those clear every session, but this one may have been appended after the
    /// clear. Looking again after the append closes that window: whichever runs second sees
    /// the other.
    async fn refuse_if_superseded(
        &self,
        user: &User,
        session_id: tokenledger_domain::SessionId,
        caller: Caller,
    ) -> Result<(), Failure> {
        let superseded = match self.users.find(user.id).await? {
            Some(now) if now.blocked => Some((RevokeReason::Blocked, Failure::Blocked)),
            Some(now) if now.password_hash != user.password_hash => {
                Some((RevokeReason::PasswordChanged, Failure::InvalidLogin))
            }
            Some(_) => None,
            None => Some((RevokeReason::Admin, Failure::InvalidCredentials)),
        };
        let Some((reason, failure)) = superseded else {
            return Ok(());
        };
        let revoke = Command::RevokeSession(RevokeSession { session_id, reason });
        match self
            .registry
            .execute(user.id, revoke, caller.metadata)
            .await
        {
            // The block's or the change's own clear got there first: ended either way.
            Ok(_) | Err(ExecuteError::Refused(DomainError::UnknownSession)) => Err(failure),
            Err(other) => Err(other.into()),
        }
    }
}
