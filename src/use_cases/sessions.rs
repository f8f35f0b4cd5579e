//! A user's own sessions: who holds a live one (`authenticate`), the list, and revoking one.

use tokenledger_domain::{Command, RevokeReason, RevokeSession, Session, SessionId, UserId};

use super::{Caller, Failure, Services};
use crate::store::users::User;
use crate::store::{StoreError, stream_of};
use crate::tokens::AccessClaims;

impl Services {
    /// The user behind an access token whose session is still live, and the token's claims.
    pub async fn authenticate(
        &self,
        access_token: Option<&str>,
    ) -> Result<(User, AccessClaims), Failure> {
        let token = access_token.ok_or(Failure::NoCredentials)?;
        let claims = self
            .tokens
            .verify_access(token, self.clock.now())
            .map_err(|_| Failure::MissingCredentials)?;
        // A Strapi-made token belongs to no session: it holds until it expires.
        if !claims.strapi && !self.session_is_live(claims.id, &claims.sid).await? {
            return Err(Failure::MissingCredentials);
        }
        match self.users.find(claims.id).await? {
            Some(user) if !user.blocked => Ok((user, claims)),
            _ => Err(Failure::InvalidCredentials),
        }
    }

    /// Whether `session_id` is a live session of `user_id`. On a shared log, a session the
    /// projection does not know sends this instance to the user's stream first (it may have
    /// been issued a moment ago by another instance); a single instance's projection is
    /// complete, and an unknown session is refused without touching the store.
    pub async fn session_is_live(
        &self,
        user_id: UserId,
        session_id: &SessionId,
    ) -> Result<bool, StoreError> {
        if self.shared_log && !self.projection().owns(user_id, session_id) {
            self.catch_up_user(user_id).await?;
        }
        Ok(self
            .projection()
            .is_live(user_id, session_id, self.clock.now()))
    }

    /// Folds the user's events the projection has not seen yet.
    async fn catch_up_user(&self, user_id: UserId) -> Result<(), StoreError> {
        let after = self.projection().version(user_id);
        let tail = self.store.read_stream(&stream_of(user_id), after).await?;
        // Decoded before the lock is taken, which every request shares.
        let events = tail
            .iter()
            .map(|record| {
                let event = record.decode().map_err(|source| StoreError::Corrupt {
                    position: record.position,
                    source,
                })?;
                Ok((record.stream_version, event))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.projection_mut().apply_all(
            user_id,
            events.iter().map(|(version, event)| (*version, event)),
        );
        Ok(())
    }

    /// A page of the user's live sessions, `current` first, then the most recently used;
    /// and how many there are.
    pub fn sessions_of(
        &self,
        user_id: UserId,
        current: SessionId,
        skip: usize,
        take: usize,
    ) -> (Vec<Session>, usize) {
        self.projection()
            .page_of(user_id, self.clock.now(), Some(current), skip, take)
    }

    /// Ends one of the user's live sessions; any other id is `SessionNotFound`.
    pub async fn revoke_session(
        &self,
        user_id: UserId,
        session_id: SessionId,
        caller: Caller,
    ) -> Result<(), Failure> {
        let live = self
            .projection()
            .is_live(user_id, &session_id, self.clock.now());
        if !live {
            return Err(Failure::SessionNotFound);
        }
        let command = Command::RevokeSession(RevokeSession {
            session_id,
            reason: RevokeReason::UserRevoked,
        });
        match self
            .registry
            .execute(user_id, command, caller.metadata)
            .await
        {
            Ok(_) => Ok(()),
            Err(crate::actors::ExecuteError::Refused(_)) => Err(Failure::SessionNotFound),
            Err(other) => Err(other.into()),
        }
    }
}
