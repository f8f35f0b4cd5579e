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

    /// Strapi 5's refresh-mode logout (users-permissions 5.54.0 dist/server/controllers/
    /// auth.js:98-123 and 317-352): the bearer is required (the logout permission is the
    /// authenticated role's, dist/server/services/users-permissions.js:60); `scope: "all"` ends
    /// every session, `deviceId` the device's; otherwise a valid refresh token (`refresh_token`:
    /// the cookie's, else the body's) names the session, and without one the access token's
    /// session ends. Strapi answers `{ok: true}` whatever happened; so does this, except when
    /// the store could not take the write. Our reuse detection stays on top: a superseded
    /// refresh token ends its session (`RefreshTokenReused`), and the access token's too.
    pub async fn logout_with_bearer(
        &self,
        request: LogoutInput,
        caller: Caller,
    ) -> Result<(), Failure> {
        let (user, claims) = self.authenticate(request.access_token.as_deref()).await?;
        let end = |scope, presented| {
            Command::Logout(Logout {
                scope,
                presented,
                reuse_grace: self.config.tokens.refresh_token_reuse_grace,
                client: caller.client.clone(),
            })
        };
        let scope = match request.scope {
            LogoutWith::Device(device) => LogoutScope::Device(device),
            LogoutWith::All => LogoutScope::All,
            LogoutWith::This => {
                let named = request
                    .refresh_token
                    .as_deref()
                    .and_then(|token| self.tokens.verify_refresh(token, self.clock.now()).ok())
                    .filter(|token| token.user_id == user.id);
                if let Some(token) = named {
                    let this = LogoutScope::Session(token.session_id);
                    let command = end(this, Some(token));
                    match self
                        .registry
                        .execute(user.id, command, caller.metadata.clone())
                        .await
                    {
                        Ok(executed) if !executed.reuse_detected => return Ok(()),
                        // Reused, or of an ended session: not a valid token, so the access
                        // token's session is "this" one (auth.js:109-121).
                        Ok(_) | Err(ExecuteError::Refused(_)) => {}
                        Err(other) => return Err(other.into()),
                    }
                }
                LogoutScope::Session(claims.sid)
            }
        };
        match self
            .registry
            .execute(user.id, end(scope, None), caller.metadata)
            .await
        {
            // Nothing left to end is a logout done; Strapi swallows its errors (auth.js:336-338).
            Ok(_) | Err(ExecuteError::Refused(_)) => Ok(()),
            Err(other) => Err(other.into()),
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
