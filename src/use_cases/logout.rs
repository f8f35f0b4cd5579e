//! Logging out: this session, a device's sessions, or every session of the user — what
//! Strapi 5's session mode, Supabase Auth and Auth0 give their users.

use tokenledger_domain::{
    Command, DomainError, Logout, LogoutScope, PresentedToken, SessionId, UserId,
};

use super::{Caller, Failure, Services};
use crate::actors::ExecuteError;

/// Which sessions to end.
pub enum LogoutWith {
    This,
    Device(String),
    All,
}

/// A logout and the tokens that came with it.
pub struct LogoutInput {
    pub scope: LogoutWith,
    /// The bearer access token, if any.
    pub access_token: Option<String>,
    /// The refresh token of the body, else of the cookie, if any.
    pub refresh_token: Option<String>,
}

/// Who asks to log out, and with what.
struct Target {
    user_id: UserId,
    /// "This" session: the refresh token's, else the access token's.
    session_id: SessionId,
    /// The refresh token that names the session, checked by the user's actor as a refresh
    /// is: a superseded one is reuse, never a licence to end sessions.
    presented: Option<PresentedToken>,
    /// A valid access token of a live session came with the request.
    bearer: bool,
}

impl Services {
    pub async fn logout(&self, request: LogoutInput, caller: Caller) -> Result<(), Failure> {
        let target = self.logout_target(&request).await?;
        let scope = match request.scope {
            LogoutWith::This => LogoutScope::Session(target.session_id),
            LogoutWith::Device(device) => LogoutScope::Device(device),
            LogoutWith::All => LogoutScope::All,
        };
        let logout = |presented| {
            Command::Logout(Logout {
                scope: scope.clone(),
                presented,
                reuse_grace: self.config.tokens.refresh_token_reuse_grace,
                client: caller.client.clone(),
            })
        };
        let first = logout(target.presented.clone());
        match self
            .registry
            .execute(target.user_id, first, caller.metadata.clone())
            .await
        {
            Ok(executed) if executed.reuse_detected => return Err(Failure::InvalidRefreshToken),
            Ok(_) => return Ok(()),
            Err(ExecuteError::Refused(DomainError::UnknownSession)) => {}
            Err(ExecuteError::Refused(_)) => return Err(Failure::InvalidRefreshToken),
            Err(other) => return Err(other.into()),
        }
        // The session named had ended already.
        match scope {
            // Already ended (a second logout, a race with expiry): the outcome is the same.
            LogoutScope::Session(_) => Ok(()),
            // The refresh token's session has ended; a valid access token still speaks for
            // the user. Without one, an ended session's token may end no other.
            _ if target.bearer => {
                let again = logout(None);
                match self
                    .registry
                    .execute(target.user_id, again, caller.metadata)
                    .await
                {
                    Ok(_) | Err(ExecuteError::Refused(DomainError::UnknownSession)) => Ok(()),
                    Err(other) => Err(other.into()),
                }
            }
            _ => Err(Failure::MissingCredentials),
        }
    }

    /// As Strapi 5: the refresh token names the session when it is there — a browser whose
    /// access token lapsed can still log out — else the bearer access token's.
    async fn logout_target(&self, request: &LogoutInput) -> Result<Target, Failure> {
        let bearer_user = match request.access_token.as_deref() {
            Some(token) => Some(self.authenticate(Some(token)).await),
            None => None,
        };
        let now = self.clock.now();
        let refreshing = request
            .refresh_token
            .as_deref()
            .and_then(|token| self.tokens.verify_refresh(token, now).ok())
            .filter(|token| match &bearer_user {
                // Another user's refresh token next to this user's access token is ignored.
                Some(Ok((user, _))) => user.id == token.user_id,
                _ => true,
            });
        let bearer = matches!(bearer_user, Some(Ok(_)));
        if let Some(token) = refreshing {
            return Ok(Target {
                user_id: token.user_id,
                session_id: token.session_id,
                presented: Some(token),
                bearer,
            });
        }
        match bearer_user {
            Some(Ok((user, claims))) => Ok(Target {
                user_id: user.id,
                session_id: claims.sid,
                presented: None,
                bearer,
            }),
            Some(Err(failure)) => Err(failure),
            None if request.refresh_token.is_none() => Err(Failure::NoCredentials),
            None => Err(Failure::MissingCredentials),
        }
    }
}
