//! A refresh: a new access token for a live session's refresh token, and with rotation on,
//! the token's successor (the plugin's `/api/auth/local/refresh`, Strapi 5's
//! `/api/auth/refresh`).

use chrono::TimeDelta;
use tokenledger_domain::{Command, RevokeReason, RevokeSession, RotateToken};

use super::{Caller, Failure, Services};
use crate::actors::ExecuteError;
use crate::store::Actor;

pub struct Refreshed {
    pub access_token: String,
    /// The rotated token and how long it lasts, when rotation is on.
    pub refresh_token: Option<(String, TimeDelta)>,
}

impl Services {
    /// Rotating or not as `REFRESH_TOKEN_ROTATION` says.
    pub async fn refresh(&self, token: &str, caller: Caller) -> Result<Refreshed, Failure> {
        let rotation = self.config.tokens.refresh_token_rotation;
        self.refresh_with(token, caller, rotation).await
    }

    /// Always rotating: Strapi 5's refresh mode (`JWT_MANAGEMENT=refresh`).
    pub async fn refresh_rotating(
        &self,
        token: &str,
        caller: Caller,
    ) -> Result<Refreshed, Failure> {
        self.refresh_with(token, caller, true).await
    }

    async fn refresh_with(
        &self,
        token: &str,
        caller: Caller,
        rotation: bool,
    ) -> Result<Refreshed, Failure> {
        let now = self.clock.now();
        let presented = match self.tokens.verify_refresh(token, now) {
            Ok(presented) => presented,
            Err(_) => {
                self.record_expiry(token, caller).await;
                return Err(Failure::InvalidRefreshToken);
            }
        };
        let (user_id, session_id) = (presented.user_id, presented.session_id);
        // Unknown, ended, expired or someone else's sessions are turned away here, without
        // an actor (expired ones go on to record their end).
        let owned = self.projection().owns(user_id, &session_id);
        if !(owned || self.session_is_live(user_id, &session_id).await?) {
            return Err(Failure::InvalidRefreshToken);
        }
        // No read of the users table: a block or a deletion goes through the user's stream
        // (`UserBlocked` or `UserForgotten`, then `SessionsCleared`), so the projection and the
        // actor already know the sessions ended.
        self.limits.check_refresh(session_id)?;
        let command = Command::RotateToken(RotateToken {
            presented,
            rotation,
            successor_id: self.ids.new_id(),
            reuse_grace: self.config.tokens.refresh_token_reuse_grace,
            lifetimes: self.lifetimes(),
            activity_resolution: self.config.lifetimes.session_activity_resolution,
            client: caller.client,
        });
        let executed = match self
            .registry
            .execute(user_id, command, caller.metadata)
            .await
        {
            Ok(executed) => executed,
            Err(ExecuteError::Refused(_)) => return Err(Failure::InvalidRefreshToken),
            Err(other) => return Err(other.into()),
        };
        let Some(session) = executed.session else {
            return Err(Failure::InvalidRefreshToken);
        };
        Ok(Refreshed {
            access_token: self.tokens.sign_access(user_id, session_id, now),
            refresh_token: executed
                .refresh_token
                .map(|successor| (successor, session.token_expires_at.to_timestamp() - now)),
        })
    }

    /// A genuine but expired refresh token whose session has expired too: the session's end
    /// goes on record (`SessionRevoked{expired}`) on the first refresh that finds it, as an
    /// idle expiry does in the aggregate. The answer stays 401 whatever happens here.
    async fn record_expiry(&self, token: &str, mut caller: Caller) {
        let now = self.clock.now();
        let Some(presented) = self.tokens.expired_refresh(token, now) else {
            return;
        };
        let expired = self
            .projection()
            .get(presented.user_id, &presented.session_id)
            .is_some_and(|view| view.user_id == presented.user_id && view.session.is_expired(now));
        if !expired {
            return;
        }
        // The clock ended this session; the request only found out.
        caller.metadata.actor = Actor::System;
        let command = Command::RevokeSession(RevokeSession {
            session_id: presented.session_id,
            reason: RevokeReason::Expired,
        });
        let recorded = self
            .registry
            .execute(presented.user_id, command, caller.metadata)
            .await;
        if let Err(error) = recorded {
            tracing::warn!(%error, "could not record a session's expiry");
        }
    }
}
