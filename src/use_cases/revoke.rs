//! Token revocation (RFC 7009): whoever holds a token may end its session, with no other
//! credential, as a logout with that token may. The session ends exactly as that logout ends
//! it (`logout`, this session), so the record is the same `SessionRevoked{logout}`. Anything
//! that is not a live session's token changes nothing, and the answer is the same either way.

use super::introspect::{Presented, TokenKind};
use super::{Caller, Failure, LogoutInput, LogoutWith, Services};

impl Services {
    /// Ends the session of `token` if it is live. Only a store that cannot take the write is
    /// an error (RFC 7009 §2.2.1 allows a 503 then); every other outcome is done.
    ///
    /// A superseded refresh token goes through the logout too, which treats it as a refresh
    /// would: outside the grace window it is reuse (`RefreshTokenReused`, and the session ends
    /// with reason `reuse_detected`), within it the session ends as a logout. Either way the
    /// session is over, which is what its holder asked for; the record says which it was.
    pub async fn revoke(
        &self,
        token: &str,
        hint: Option<TokenKind>,
        caller: Caller,
    ) -> Result<(), Failure> {
        let (access_token, refresh_token) = match self.read_token(token, hint) {
            None => return Ok(()),
            // A Strapi-made token names no session: nothing here can end it.
            Some(Presented::Access(claims)) if claims.strapi => return Ok(()),
            Some(Presented::Access(claims)) => {
                if !self.session_is_live(claims.id, &claims.sid).await? {
                    return Ok(());
                }
                (Some(token.to_owned()), None)
            }
            Some(Presented::Refresh(presented)) => {
                let (user_id, session_id) = (presented.user_id, presented.session_id);
                // An expired session not yet recorded as such is still the actor's to end.
                let owned = self.projection().owns(user_id, &session_id);
                if !(owned || self.session_is_live(user_id, &session_id).await?) {
                    return Ok(());
                }
                (None, Some(token.to_owned()))
            }
        };
        let logout = LogoutInput {
            scope: LogoutWith::This,
            access_token,
            refresh_token,
        };
        match self.logout(logout, caller).await {
            Err(unavailable @ Failure::Unavailable { .. }) => Err(unavailable),
            // Reuse (recorded), a session that ended meanwhile, a blocked user: done.
            Ok(()) | Err(_) => Ok(()),
        }
    }
}
