//! Access and refresh tokens (DESIGN §3).
//!
//! Both are HS256 JWTs with different secrets and different `typ` headers, and verification
//! pins both the algorithm and the `typ`: an access token is never accepted as a refresh token
//! or the reverse, and `alg: none` or an RSA/HMAC confusion cannot get through. Refresh tokens
//! are signed from a `RefreshGrant` alone, so the same grant always yields the same token.
//!
//! Two foreign forms are read too, for a move from Strapi. The refresh-token plugin's
//! `{userId, secret}` (signed with the same `REFRESH_JWT_SECRET`) names a session imported by
//! `tokenledger import strapi`, found by its `secret` (`plugin_session`). Strapi's own access
//! tokens `{id, iat, exp}` (signed with `JWT_SECRET`) are accepted only when
//! `STRAPI_ACCESS_TOKENS=accept`: they name no session, so nothing here can revoke them.

pub mod keys;

use std::cell::RefCell;
use std::sync::{Arc, RwLock};

use chrono::TimeDelta;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokenledger_domain::{
    PresentedToken, RefreshGrant, SessionId, Timestamp, TokenHash, TokenSealer, UserId,
};
use uuid::Uuid;

use crate::config::{AccessAlg, KeyBytes};
use keys::{KeyError, KeyRotated, KeySet, KeySource, algorithm};

const ACCESS_TYP: &str = "JWT";
const REFRESH_TYP: &str = "refresh+jwt";

/// Access token claims: Strapi's `id`, plus the session it belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub id: UserId,
    /// The nil UUID for a Strapi-made token (`strapi`), which belongs to no session here.
    pub sid: SessionId,
    pub iat: i64,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// `ACCESS_TOKEN_ISSUER` (or the public URL with EdDSA and ES256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// `ACCESS_TOKEN_AUDIENCE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// Made by Strapi (`STRAPI_ACCESS_TOKENS=accept`): valid until it expires, whatever
    /// happens to sessions here.
    #[serde(skip)]
    pub strapi: bool,
}

/// A Strapi access token's claims.
#[derive(Deserialize)]
struct StrapiAccessClaims {
    id: UserId,
    iat: i64,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
}

/// The Strapi refresh-token plugin's claims: `secret` is its token row's `document_id`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PluginRefreshClaims {
    user_id: UserId,
    secret: String,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
}

/// What identifies a session imported from the Strapi plugin, all derived from the plugin
/// token's `secret`, so that the import and a later refresh find the same session without
/// keeping the secret: only its hash is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PluginSession {
    pub session_id: SessionId,
    pub token_id: Uuid,
    pub hash: TokenHash,
}

/// The session, token id and hash of the plugin token whose `secret` this is.
pub fn plugin_session(secret: &str) -> PluginSession {
    let derived = |label: &str| {
        let digest = Sha256::new()
            .chain_update(b"tokenledger strapi-plugin ")
            .chain_update(label.as_bytes())
            .chain_update([0])
            .chain_update(secret.as_bytes())
            .finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        Uuid::new_v8(bytes)
    };
    PluginSession {
        session_id: derived("session"),
        token_id: derived("token"),
        hash: hash(secret),
    }
}

/// An access token as Strapi 5's refresh mode also reads it (`JWT_MANAGEMENT=refresh`): its
/// verifier wants `type: "access"` and the user id as `userId`, a string (core 5.54.0
/// dist/services/session-manager.js:379-383, users-permissions dist/server/services/jwt.js:133-138),
/// so a Strapi server sharing `JWT_SECRET` accepts ours. `id` and `sid` stay ours.
#[derive(Serialize)]
struct SessionModeClaims<'a> {
    #[serde(flatten)]
    claims: &'a AccessClaims,
    #[serde(rename = "userId")]
    user_id: String,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Debug, Serialize, Deserialize)]
struct RefreshClaims {
    sub: String,
    sid: Uuid,
    jti: Uuid,
    #[serde(rename = "gen")]
    generation: u32,
    iat: i64,
    exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<i64>,
}

/// `exp` and `nbf` against the service clock (not the library's), so that one clock rules
/// every expiry.
fn in_time(exp: i64, nbf: Option<i64>, now: Timestamp) -> Result<(), InvalidToken> {
    let now = now.timestamp();
    if exp <= now || nbf.is_some_and(|nbf| nbf > now) {
        return Err(InvalidToken);
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid token")]
pub struct InvalidToken;

pub struct Tokens {
    /// The access-token keys as of the last rotation folded (see `keys`).
    access: RwLock<Arc<KeySet>>,
    material: KeyMaterial,
    /// Every rotation folded so far, the `signing-keys` stream in order.
    rotations: RwLock<Vec<KeyRotated>>,
    /// `JWT_SECRET`'s check, for Strapi's own access tokens.
    strapi_check: DecodingKey,
    refresh_key: EncodingKey,
    refresh_check: DecodingKey,
    access_lifetime: TimeDelta,
    validation: Validation,
    strapi_access: bool,
    /// Access tokens carry Strapi 5's refresh-mode claims too (`SessionModeClaims`).
    session_mode_claims: bool,
    issuer: Option<String>,
    audience: Option<String>,
}

/// What the access-token keys are derived from.
struct KeyMaterial {
    jwt_secret: Vec<u8>,
    signing_key: Option<KeyBytes>,
    alg: AccessAlg,
}

impl KeyMaterial {
    fn source(&self, lifetime: TimeDelta) -> KeySource<'_> {
        KeySource {
            jwt_secret: &self.jwt_secret,
            signing_key: self.signing_key.as_ref(),
            alg: self.alg,
            lifetime,
        }
    }
}

fn validation(alg: Algorithm) -> Validation {
    let mut validation = Validation::new(alg);
    validation.leeway = 0;
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp", "iat"]);
    validation
}

impl Tokens {
    /// Fails only for an empty secret.
    pub fn new(
        access_secret: &[u8],
        refresh_secret: &[u8],
        access_lifetime: TimeDelta,
    ) -> Result<Tokens, jsonwebtoken::errors::Error> {
        let material = KeyMaterial {
            jwt_secret: access_secret.to_vec(),
            signing_key: None,
            alg: AccessAlg::HS256,
        };
        let keys =
            KeySet::fold(&material.source(access_lifetime), &[]).map_err(|error| match error {
                KeyError::Jwt(error) => error,
                other => unreachable!("HS256 with no rotation derives nothing: {other}"),
            })?;
        Ok(Tokens {
            access: RwLock::new(Arc::new(keys)),
            material,
            rotations: RwLock::default(),
            strapi_check: DecodingKey::from_secret(access_secret)?,
            refresh_key: EncodingKey::from_secret(refresh_secret)?,
            refresh_check: DecodingKey::from_secret(refresh_secret)?,
            access_lifetime,
            validation: validation(Algorithm::HS256),
            strapi_access: false,
            session_mode_claims: false,
            issuer: None,
            audience: None,
        })
    }

    /// Accepts Strapi's own access tokens too (`STRAPI_ACCESS_TOKENS=accept`).
    pub fn accepting_strapi_access_tokens(mut self, accept: bool) -> Tokens {
        self.strapi_access = accept;
        self
    }

    /// Access tokens also carry Strapi 5's refresh-mode claims (`JWT_MANAGEMENT=refresh`).
    pub fn with_session_mode_claims(mut self, on: bool) -> Tokens {
        self.session_mode_claims = on;
        self
    }

    /// Access tokens carry (and must carry) `iss` and `aud` where set.
    pub fn with_issuer_and_audience(
        mut self,
        issuer: Option<String>,
        audience: Option<String>,
    ) -> Tokens {
        self.issuer = issuer;
        self.audience = audience;
        self
    }

    /// The access-token keys come from `ACCESS_TOKEN_ALG` and `SIGNING_KEY` too: until the
    /// rotations of the log are folded (`fold_rotations`), `JWT_SECRET` still signs.
    pub fn with_signing(mut self, alg: AccessAlg, signing_key: Option<KeyBytes>) -> Tokens {
        self.material.alg = alg;
        self.material.signing_key = signing_key;
        self
    }

    /// The `iss` access tokens carry.
    pub fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    pub fn access_lifetime(&self) -> TimeDelta {
        self.access_lifetime
    }

    /// The access-token keys now.
    pub fn keys(&self) -> Arc<KeySet> {
        self.access
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// What the keys are made from, for working out a rotation.
    pub fn key_source(&self) -> KeySource<'_> {
        self.material.source(self.access_lifetime)
    }

    /// Folds rotations read from the `signing-keys` stream (`version` is the first's stream
    /// version); those folded already are skipped, and a gap is `KeyError::Behind`. Returns
    /// whether the keys changed.
    pub fn fold_rotations(&self, version: i64, rotations: &[KeyRotated]) -> Result<bool, KeyError> {
        let mut folded = self.rotations.write().unwrap_or_else(|p| p.into_inner());
        if version > folded.len() as i64 + 1 {
            return Err(KeyError::Behind {
                folded: folded.len() as i64,
                version,
            });
        }
        let skip = (folded.len() as i64 + 1 - version) as usize;
        if skip >= rotations.len() && !folded.is_empty() {
            return Ok(false);
        }
        let mut all = folded.clone();
        all.extend(rotations.iter().skip(skip).cloned());
        let keys = KeySet::fold(&self.key_source(), &all)?;
        *self.access.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
        *folded = all;
        Ok(true)
    }

    fn header(typ: &str) -> Header {
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some(typ.to_owned());
        header
    }

    pub fn sign_access(&self, user_id: UserId, session_id: SessionId, now: Timestamp) -> String {
        let iat = now.timestamp();
        let claims = AccessClaims {
            id: user_id,
            sid: session_id,
            iat,
            exp: iat + self.access_lifetime.num_seconds(),
            nbf: None,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            strapi: false,
        };
        let keys = self.keys();
        let key = &keys.current().key;
        let mut header = Header::new(algorithm(key.alg));
        header.typ = Some(ACCESS_TYP.to_owned());
        header.kid = key.kid.clone();
        let signed = if self.session_mode_claims {
            let claims = SessionModeClaims {
                claims: &claims,
                user_id: user_id.to_string(),
                kind: "access",
            };
            jsonwebtoken::encode(&header, &claims, &key.encoding)
        } else {
            jsonwebtoken::encode(&header, &claims, &key.encoding)
        };
        signed.expect("signing plain claims with a key made for its algorithm cannot fail")
    }

    pub fn verify_access(&self, token: &str, now: Timestamp) -> Result<AccessClaims, InvalidToken> {
        let claims = match self.decode_access(token) {
            Ok(claims) => claims,
            Err(_) if self.strapi_access => self.decode_strapi_access(token)?,
            Err(_) => return Err(InvalidToken),
        };
        in_time(claims.exp, claims.nbf, now)?;
        Ok(claims)
    }

    /// One of our access tokens: signed by a key that still verifies it, with our `typ`,
    /// `iss` and `aud`.
    fn decode_access(&self, token: &str) -> Result<AccessClaims, InvalidToken> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| InvalidToken)?;
        let keys = self.keys();
        let (key, latest_iat) = keys.verifier(header.kid.as_deref()).ok_or(InvalidToken)?;
        let data = jsonwebtoken::decode::<AccessClaims>(token, &key.decoding, &key.validation)
            .map_err(|_| InvalidToken)?;
        let claims = data.claims;
        if data.header.typ.as_deref() != Some(ACCESS_TYP) {
            return Err(InvalidToken);
        }
        let checked = match latest_iat {
            // What the key that signs now minted names this configuration's issuer and
            // audience.
            None => claims.iss == self.issuer && claims.aud == self.audience,
            // A retired key's tokens were minted under the configuration of their day (an
            // algorithm switch brings an issuer), and none can be newer than its retirement.
            Some(latest) => {
                claims.iat <= latest && claims.exp <= latest + self.access_lifetime.num_seconds()
            }
        };
        if !checked {
            return Err(InvalidToken);
        }
        Ok(claims)
    }

    /// A Strapi access token (`{id, iat, exp}`, `typ` JWT as its library writes it).
    fn decode_strapi_access(&self, token: &str) -> Result<AccessClaims, InvalidToken> {
        let data =
            jsonwebtoken::decode::<StrapiAccessClaims>(token, &self.strapi_check, &self.validation)
                .map_err(|_| InvalidToken)?;
        if data.header.typ.as_deref() != Some(ACCESS_TYP) {
            return Err(InvalidToken);
        }
        let StrapiAccessClaims { id, iat, exp, nbf } = data.claims;
        Ok(AccessClaims {
            id,
            sid: Uuid::nil(),
            iat,
            exp,
            nbf,
            iss: None,
            aud: None,
            strapi: true,
        })
    }

    pub fn sign_refresh(&self, grant: &RefreshGrant) -> String {
        let claims = RefreshClaims {
            sub: grant.user_id.to_string(),
            sid: grant.session_id,
            jti: grant.token_id,
            generation: grant.generation,
            iat: grant.issued_at,
            exp: grant.expires_at,
            nbf: None,
        };
        jsonwebtoken::encode(&Self::header(REFRESH_TYP), &claims, &self.refresh_key)
            .expect("HS256 signing of plain claims cannot fail")
    }

    /// Checks signature, algorithm, `typ` and expiry; what it returns still has to match the
    /// session's current token, which only the aggregate knows.
    pub fn verify_refresh(
        &self,
        token: &str,
        now: Timestamp,
    ) -> Result<PresentedToken, InvalidToken> {
        let (presented, exp, nbf) = self.decode_refresh(token)?;
        in_time(exp, nbf, now)?;
        Ok(presented)
    }

    /// A genuine refresh token (signature and `typ` hold) whose time is up: its session may
    /// have expired with it, which is worth recording.
    pub fn expired_refresh(&self, token: &str, now: Timestamp) -> Option<PresentedToken> {
        let (presented, exp, _) = self.decode_refresh(token).ok()?;
        (exp <= now.timestamp()).then_some(presented)
    }

    fn decode_refresh(
        &self,
        token: &str,
    ) -> Result<(PresentedToken, i64, Option<i64>), InvalidToken> {
        let data = match jsonwebtoken::decode::<RefreshClaims>(
            token,
            &self.refresh_check,
            &self.validation,
        ) {
            Ok(data) => data,
            Err(_) => return self.decode_plugin_refresh(token),
        };
        if data.header.typ.as_deref() != Some(REFRESH_TYP) {
            return Err(InvalidToken);
        }
        let claims = data.claims;
        let presented = PresentedToken {
            user_id: claims.sub.parse().map_err(|_| InvalidToken)?,
            session_id: claims.sid,
            token_id: claims.jti,
            generation: claims.generation,
            hash: hash(token),
        };
        Ok((presented, claims.exp, claims.nbf))
    }
}

impl Tokens {
    /// The Strapi plugin's refresh token, as the session `tokenledger import strapi` made of
    /// it: generation 0, known by the hash of its `secret` (`plugin_session`).
    fn decode_plugin_refresh(
        &self,
        token: &str,
    ) -> Result<(PresentedToken, i64, Option<i64>), InvalidToken> {
        let data = jsonwebtoken::decode::<PluginRefreshClaims>(
            token,
            &self.refresh_check,
            &self.validation,
        )
        .map_err(|_| InvalidToken)?;
        if data.header.typ.as_deref() != Some(ACCESS_TYP) {
            return Err(InvalidToken);
        }
        let claims = data.claims;
        let session = plugin_session(&claims.secret);
        let presented = PresentedToken {
            user_id: claims.user_id,
            session_id: session.session_id,
            token_id: session.token_id,
            generation: 0,
            hash: session.hash,
        };
        Ok((presented, claims.exp, claims.nbf))
    }
}

/// SHA-256 of a token: what is stored and compared instead of the token.
pub fn hash(token: &str) -> TokenHash {
    TokenHash(Sha256::digest(token.as_bytes()).into())
}

/// Seals grants for one decision and keeps the last signed token, so the reply reuses it
/// instead of signing the same grant twice.
pub struct RecordingSealer<'a> {
    tokens: &'a Tokens,
    last: RefCell<Option<(RefreshGrant, String)>>,
}

impl<'a> RecordingSealer<'a> {
    pub fn new(tokens: &'a Tokens) -> Self {
        RecordingSealer {
            tokens,
            last: RefCell::new(None),
        }
    }

    /// The signed token for `grant`, reusing the one sealed during the decision if it matches.
    pub fn token_for(&self, grant: &RefreshGrant) -> String {
        match self.last.borrow_mut().take() {
            Some((sealed, token)) if sealed == *grant => token,
            _ => self.tokens.sign_refresh(grant),
        }
    }
}

impl TokenSealer for RecordingSealer<'_> {
    fn seal(&self, grant: &RefreshGrant) -> TokenHash {
        let token = self.tokens.sign_refresh(grant);
        let sealed = hash(&token);
        *self.last.borrow_mut() = Some((grant.clone(), token));
        sealed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens::new(&[1; 32], &[2; 32], TimeDelta::hours(2)).unwrap()
    }

    fn now() -> Timestamp {
        chrono::Utc::now()
    }

    fn grant() -> RefreshGrant {
        let now = now().timestamp();
        RefreshGrant {
            user_id: 42,
            session_id: Uuid::from_u128(1),
            token_id: Uuid::from_u128(2),
            generation: 3,
            issued_at: now,
            expires_at: now + 3600,
        }
    }

    #[test]
    fn the_same_grant_signs_to_the_same_token() {
        let t = tokens();
        assert_eq!(t.sign_refresh(&grant()), t.sign_refresh(&grant()));
        let presented = t.verify_refresh(&t.sign_refresh(&grant()), now()).unwrap();
        assert_eq!((presented.user_id, presented.generation), (42, 3));
        assert_eq!(presented.hash, hash(&t.sign_refresh(&grant())));
    }

    #[test]
    fn access_and_refresh_tokens_are_not_interchangeable() {
        let t = tokens();
        let access = t.sign_access(42, Uuid::from_u128(1), now());
        assert_eq!(t.verify_access(&access, now()).unwrap().id, 42);
        assert_eq!(t.verify_refresh(&access, now()), Err(InvalidToken));
        assert_eq!(
            t.verify_access(&t.sign_refresh(&grant()), now()),
            Err(InvalidToken)
        );
        // Even with one secret for both, the typ keeps them apart.
        let same = Tokens::new(&[1; 32], &[1; 32], TimeDelta::hours(2)).unwrap();
        let access = same.sign_access(42, Uuid::from_u128(1), now());
        assert_eq!(same.verify_refresh(&access, now()), Err(InvalidToken));
    }

    #[test]
    fn expired_or_foreign_tokens_are_refused() {
        let t = tokens();
        let mut old = grant();
        old.expires_at = old.issued_at - 1;
        assert_eq!(
            t.verify_refresh(&t.sign_refresh(&old), now()),
            Err(InvalidToken)
        );
        let other = Tokens::new(&[9; 32], &[9; 32], TimeDelta::hours(2)).unwrap();
        assert_eq!(
            t.verify_refresh(&other.sign_refresh(&grant()), now()),
            Err(InvalidToken)
        );
    }

    fn eddsa_tokens() -> Tokens {
        let tokens = tokens()
            .with_signing(AccessAlg::EdDSA, Some(KeyBytes::new([5; 32])))
            .with_issuer_and_audience(Some("https://auth.example".into()), Some("api".into()));
        tokens.fold_rotations(1, &[]).unwrap();
        tokens
    }

    fn rotate(tokens: &Tokens, alg: AccessAlg, at: Timestamp) {
        let keys = tokens.keys();
        let rotation = keys
            .rotation(
                &tokens.key_source(),
                alg,
                keys::RotationReason::Manual,
                at.timestamp(),
            )
            .unwrap();
        assert!(
            tokens
                .fold_rotations(keys.version + 1, &[rotation])
                .unwrap()
        );
    }

    #[test]
    fn given_the_default_then_access_tokens_are_strapis_hs256_with_no_kid_iss_or_aud() {
        let t = tokens();
        let access = t.sign_access(42, Uuid::from_u128(1), now());
        let header = jsonwebtoken::decode_header(&access).unwrap();
        assert_eq!(
            (header.alg, header.kid, header.typ.as_deref()),
            (Algorithm::HS256, None, Some("JWT"))
        );
        let strapi = jsonwebtoken::decode::<serde_json::Value>(
            &access,
            &DecodingKey::from_secret(&[1; 32]).unwrap(),
            &validation(Algorithm::HS256),
        )
        .unwrap();
        let mut names: Vec<_> = strapi.claims.as_object().unwrap().keys().cloned().collect();
        names.sort();
        assert_eq!(names, ["exp", "iat", "id", "sid"]);
    }

    #[test]
    fn given_a_rotation_then_a_token_signed_before_verifies_until_it_expires() {
        let t = eddsa_tokens();
        rotate(&t, AccessAlg::EdDSA, now());
        let before = t.sign_access(42, Uuid::from_u128(1), now());
        let kid = jsonwebtoken::decode_header(&before).unwrap().kid;
        rotate(&t, AccessAlg::EdDSA, now());
        let after = t.sign_access(42, Uuid::from_u128(1), now());
        assert_ne!(jsonwebtoken::decode_header(&after).unwrap().kid, kid);
        let claims = t.verify_access(&before, now()).unwrap();
        assert_eq!(claims.iss.as_deref(), Some("https://auth.example"));
        assert_eq!(claims.aud.as_deref(), Some("api"));
        let later = now() + TimeDelta::hours(2) - TimeDelta::seconds(5);
        assert!(t.verify_access(&before, later).is_ok());
        assert_eq!(
            t.verify_access(&before, later + TimeDelta::seconds(10)),
            Err(InvalidToken)
        );
    }

    #[test]
    fn given_a_rotation_after_one_not_seen_then_it_is_refused_as_behind() {
        let t = eddsa_tokens();
        let keys = t.keys();
        let source = t.key_source();
        let first = keys
            .rotation(&source, AccessAlg::EdDSA, keys::RotationReason::Manual, 1)
            .unwrap();
        let behind = t.fold_rotations(2, std::slice::from_ref(&first));
        assert!(matches!(
            behind,
            Err(KeyError::Behind {
                folded: 0,
                version: 2
            })
        ));
        assert!(t.fold_rotations(1, std::slice::from_ref(&first)).unwrap());
        // Met again (the reader and the start-up both read it): nothing changes.
        assert!(!t.fold_rotations(1, &[first]).unwrap());
    }

    #[test]
    fn given_a_retired_key_then_a_token_dated_after_its_retirement_is_refused() {
        let t = eddsa_tokens();
        let old = t.keys();
        rotate(&t, AccessAlg::EdDSA, now() - TimeDelta::hours(1));
        // Whoever holds the retired key cannot mint fresh tokens with it.
        let retired = &old.current().key;
        let mut header = Header::new(keys::algorithm(retired.alg));
        header.typ = Some("JWT".into());
        header.kid = retired.kid.clone();
        let iat = now().timestamp();
        let claims = serde_json::json!({"id": 42, "sid": Uuid::from_u128(1), "iat": iat, "exp": iat + 60,
            "iss": "https://auth.example", "aud": "api"});
        let forged = jsonwebtoken::encode(&header, &claims, &retired.encoding).unwrap();
        assert_eq!(t.verify_access(&forged, now()), Err(InvalidToken));
    }

    #[test]
    fn given_an_issuer_and_audience_then_tokens_for_others_are_refused() {
        let t = eddsa_tokens();
        let other = tokens()
            .with_signing(AccessAlg::EdDSA, Some(KeyBytes::new([5; 32])))
            .with_issuer_and_audience(Some("https://auth.example".into()), Some("other".into()));
        other.fold_rotations(1, &[]).unwrap();
        rotate(&t, AccessAlg::EdDSA, now());
        rotate(&other, AccessAlg::EdDSA, now());
        let foreign = other.sign_access(42, Uuid::from_u128(1), now());
        assert_eq!(t.verify_access(&foreign, now()), Err(InvalidToken));
        let ours = t.sign_access(42, Uuid::from_u128(1), now());
        assert!(t.verify_access(&ours, now()).is_ok());
    }

    #[test]
    fn the_recording_sealer_hands_back_what_it_sealed() {
        let t = tokens();
        let sealer = RecordingSealer::new(&t);
        let sealed = sealer.seal(&grant());
        let token = sealer.token_for(&grant());
        assert_eq!(hash(&token), sealed);
        assert_eq!(token, t.sign_refresh(&grant()));
    }
}
