//! Token introspection (RFC 7662): a service holding a credential of `INTROSPECTION_CLIENTS`
//! asks whether a token is live. Answered from the sessions projection, with no read of the
//! event store or the users table on one instance: a session that ends (logout, reuse, a
//! password change, a block) leaves the projection as its event is appended, so the answer
//! turns to inactive at once, where a service checking the JWT alone would accept the token
//! until it expires. Revocation (`revoke`) reads tokens the same way (`read_token`).

use subtle::ConstantTimeEq;
use tokenledger_domain::{PresentedToken, SessionId, UserId};

use super::{Failure, Services};
use crate::config::credential_digest;
use crate::tokens::AccessClaims;

/// RFC 7009's `token_type_hint` values, which also name the kind of a live token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Refresh,
}

impl TokenKind {
    /// The hint's wording (RFC 7009 §2.1, RFC 7662 §2.1).
    pub fn name(self) -> &'static str {
        match self {
            TokenKind::Access => "access_token",
            TokenKind::Refresh => "refresh_token",
        }
    }

    /// A hint this service knows; any other is ignored, as RFC 7009 §2.1 allows.
    pub fn from_hint(hint: &str) -> Option<TokenKind> {
        match hint {
            "access_token" => Some(TokenKind::Access),
            "refresh_token" => Some(TokenKind::Refresh),
            _ => None,
        }
    }
}

/// What a service presents: `client_id` and `client_secret`, from HTTP Basic or the body.
pub struct ServiceCredential {
    pub id: String,
    pub secret: String,
}

/// A live token, as the introspection answer shows it.
#[derive(Debug, PartialEq, Eq)]
pub struct Introspected {
    pub kind: TokenKind,
    pub user_id: UserId,
    /// `None` for a Strapi-made access token, which belongs to no session here.
    pub session_id: Option<SessionId>,
    pub issued_at: i64,
    pub expires_at: i64,
    pub issuer: Option<String>,
}

/// A token whose signature, type and time hold: which kind, and what it names.
pub(super) enum Presented {
    Access(AccessClaims),
    Refresh(PresentedToken),
}

impl Services {
    /// Whether `credential` is one of `INTROSPECTION_CLIENTS`. Every client is compared, in
    /// constant time and through digests of one length, so neither the time nor an early
    /// return tells which ids exist or how long their secrets are.
    pub fn is_service(&self, credential: &ServiceCredential) -> bool {
        let id = credential_digest(&credential.id);
        let secret = credential_digest(&credential.secret);
        self.config
            .introspection_clients
            .iter()
            .fold(subtle::Choice::from(0), |found, client| {
                let same_id = client.id_digest.ct_eq(&id);
                let same_secret = client.secret_digest.ct_eq(&secret);
                found | (same_id & same_secret)
            })
            .into()
    }

    /// The token's state: `Some` while it is live, `None` for anything else (forged, expired,
    /// garbage, of an ended session, superseded). Only a shared log's catch-up can fail.
    pub async fn introspect(
        &self,
        token: &str,
        hint: Option<TokenKind>,
    ) -> Result<Option<Introspected>, Failure> {
        match self.read_token(token, hint) {
            None => Ok(None),
            Some(Presented::Access(claims)) => self.live_access_token(claims).await,
            Some(Presented::Refresh(presented)) => Ok(self.live_refresh_token(presented).await?),
        }
    }

    /// The token read as the hinted kind first, then as the other (RFC 7009 §2.1: a wrong
    /// hint costs a second try, never a wrong answer). The two kinds have their own `typ` and
    /// secret, so no token verifies as both.
    pub(super) fn read_token(&self, token: &str, hint: Option<TokenKind>) -> Option<Presented> {
        let now = self.clock.now();
        let access = || {
            self.tokens
                .verify_access(token, now)
                .ok()
                .map(Presented::Access)
        };
        let refresh = || {
            let presented = self.tokens.verify_refresh(token, now).ok();
            presented.map(Presented::Refresh)
        };
        match hint {
            Some(TokenKind::Refresh) => refresh().or_else(access),
            Some(TokenKind::Access) | None => access().or_else(refresh),
        }
    }

    async fn live_access_token(
        &self,
        claims: AccessClaims,
    ) -> Result<Option<Introspected>, Failure> {
        let live = if claims.strapi {
            // A Strapi-made token names no session, so only a block or a deleted user ends it
            // before it expires: the users table says so, as the bearer routes read it.
            self.users
                .find(claims.id)
                .await?
                .is_some_and(|user| !user.blocked)
        } else {
            self.session_is_live(claims.id, &claims.sid).await?
        };
        Ok(live.then(|| Introspected {
            kind: TokenKind::Access,
            user_id: claims.id,
            session_id: (!claims.strapi).then_some(claims.sid),
            issued_at: claims.iat,
            expires_at: claims.exp,
            issuer: claims.iss,
        }))
    }

    /// Live while its session is, and while it is the session's current token: a superseded
    /// token is refused by a refresh (or is reuse), so it is not active, even within the grace
    /// window, where it only gets its successor again. Its times are the session's current
    /// token's, which are this token's claims (`Session::grant`). A refresh token carries no
    /// `iss`; the issuer this server names its access tokens with issued it too.
    async fn live_refresh_token(
        &self,
        presented: PresentedToken,
    ) -> Result<Option<Introspected>, crate::store::StoreError> {
        let (user_id, session_id) = (presented.user_id, presented.session_id);
        if !self.session_is_live(user_id, &session_id).await? {
            return Ok(None);
        }
        let Some(view) = self.projection().get(user_id, &session_id) else {
            return Ok(None);
        };
        let session = view.session;
        Ok(session
            .token_hash
            .matches(&presented.hash)
            .then(|| Introspected {
                kind: TokenKind::Refresh,
                user_id,
                session_id: Some(session_id),
                issued_at: session.token_issued_at.to_timestamp().timestamp(),
                expires_at: session.token_expires_at.to_timestamp().timestamp(),
                issuer: self.tokens.issuer().map(str::to_owned),
            }))
    }
}
