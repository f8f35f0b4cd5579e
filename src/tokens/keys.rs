//! The keys that sign access tokens, and which of them still verify.
//!
//! Generation 0 is `JWT_SECRET` itself, HS256 with no `kid`: the tokens Strapi's content
//! servers check. Every later key is derived from `SIGNING_KEY` and its generation, so that
//! every instance holding `SIGNING_KEY` has it without a private key ever being stored or
//! sent: a `SigningKeyRotated` event in the `signing-keys` stream names the generation that
//! signs from then on. A key that stops signing still verifies the tokens it signed until
//! they expire; the next generation is published before it signs, so a verifier's cached
//! JWKS already holds it when the first of its tokens arrives.

use std::sync::Arc;

use chrono::TimeDelta;
use jsonwebtoken::jwk::{Jwk, KeyAlgorithm, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Validation};
use serde::{Deserialize, Serialize};

use super::validation;
use crate::config::{AccessAlg, KeyBytes};
use crate::secrets::hmac_sha256;

/// The stream of `SigningKeyRotated` events.
pub const KEYS_STREAM: &str = "signing-keys";
pub const KEY_ROTATED: &str = "SigningKeyRotated";

/// How long after a key stops signing a token it signed is still taken as fresh: an
/// instance on a shared database learns of a rotation by its catch-up, a moment later.
pub const ROTATION_SLACK_SECONDS: i64 = 60;

/// Why a key began signing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RotationReason {
    /// `tokenledger keys rotate`.
    Manual,
    /// `SIGNING_KEY_ROTATION` came due.
    Scheduled,
    /// `ACCESS_TOKEN_ALG` changed: the first key of the new algorithm.
    Algorithm,
}

/// The payload of `SigningKeyRotated`: the key of `generation` signs from `rotated_at`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRotated {
    pub generation: u32,
    pub alg: AccessAlg,
    /// `None`: `JWT_SECRET` (HS256 as Strapi signs, the generation-0 key) signs again.
    pub kid: Option<String>,
    /// The public JWK of an asymmetric key, so that a reader of the log can check a token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<serde_json::Value>,
    pub reason: RotationReason,
    /// Unix seconds.
    pub rotated_at: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "SIGNING_KEY is not set: the access-token keys of ACCESS_TOKEN_ALG={0:?} (or rotated ones) are derived from it"
    )]
    NoSigningKey(AccessAlg),
    #[error(
        "generation {generation}: the log names key {recorded}, SIGNING_KEY derives {derived}: SIGNING_KEY is not the one the keys were made with"
    )]
    WrongSigningKey {
        generation: u32,
        recorded: String,
        derived: String,
    },
    #[error("signing key: {0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
    /// A rotation after one not folded yet: the stream must be read again.
    #[error("rotation {version} follows {folded} folded: the stream is read again")]
    Behind { folded: i64, version: i64 },
}

/// One access-token key.
pub struct AccessKey {
    pub alg: AccessAlg,
    /// `None` for `JWT_SECRET`, whose tokens carry no `kid` (as Strapi's).
    pub kid: Option<String>,
    pub(super) encoding: EncodingKey,
    pub(super) decoding: DecodingKey,
    /// Made once: every bearer request checks a token against it.
    pub(super) validation: Validation,
    /// The public key, for the JWKS (asymmetric keys only).
    pub jwk: Option<Jwk>,
    /// A derived HS256 key's secret, as the services that check it are given it.
    pub secret_text: Option<String>,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

pub fn algorithm(alg: AccessAlg) -> Algorithm {
    match alg {
        AccessAlg::HS256 => Algorithm::HS256,
        AccessAlg::EdDSA => Algorithm::EdDSA,
        AccessAlg::ES256 => Algorithm::ES256,
    }
}

/// PKCS #8 of an Ed25519 seed (RFC 8410 §7): a fixed prefix, then the 32 bytes.
const ED25519_PKCS8: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// PKCS #8 of a P-256 private scalar (RFC 5915 inside RFC 5208, the optional public key left
/// out): a fixed prefix, then the 32 bytes.
const P256_PKCS8: [u8; 35] = [
    0x30, 0x41, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
    0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x04, 0x27, 0x30, 0x25, 0x02, 0x01,
    0x01, 0x04, 0x20,
];

impl AccessKey {
    /// `JWT_SECRET`'s key.
    pub fn configured(jwt_secret: &[u8]) -> Result<AccessKey, KeyError> {
        Ok(AccessKey {
            alg: AccessAlg::HS256,
            kid: None,
            encoding: EncodingKey::from_secret(jwt_secret)?,
            decoding: DecodingKey::from_secret(jwt_secret)?,
            validation: validation(Algorithm::HS256),
            jwk: None,
            secret_text: None,
        })
    }

    /// The key of `alg` and `generation`, derived from `master` (`SIGNING_KEY`).
    pub fn derived(
        master: &KeyBytes,
        alg: AccessAlg,
        generation: u32,
    ) -> Result<AccessKey, KeyError> {
        let seed = |attempt: u32| {
            let label = format!("tokenledger access-token key {alg:?} {generation} {attempt}");
            hmac_sha256(master.expose(), label.as_bytes())
        };
        match alg {
            AccessAlg::HS256 => {
                // Text, so that a service configures it as it would `JWT_SECRET`.
                let secret = hex::encode(seed(0));
                let probe = Jwk::from_encoding_key(
                    &EncodingKey::from_secret(secret.as_bytes())?,
                    Algorithm::HS256,
                )?;
                Ok(AccessKey {
                    alg,
                    kid: Some(probe.thumbprint(ThumbprintHash::SHA256)?),
                    encoding: EncodingKey::from_secret(secret.as_bytes())?,
                    decoding: DecodingKey::from_secret(secret.as_bytes())?,
                    validation: validation(Algorithm::HS256),
                    jwk: None,
                    secret_text: Some(secret),
                })
            }
            AccessAlg::EdDSA => {
                let der = [&ED25519_PKCS8[..], &seed(0)].concat();
                Self::asymmetric(alg, EncodingKey::from_ed_der(&der))
            }
            AccessAlg::ES256 => {
                // A scalar of zero or past the group order (odds 2^-32) is no key: the next
                // attempt's is.
                let mut attempt = 0;
                loop {
                    let der = [&P256_PKCS8[..], &seed(attempt)].concat();
                    match Self::asymmetric(alg, EncodingKey::from_ec_der(&der)) {
                        Err(KeyError::Jwt(_)) if attempt < 8 => attempt += 1,
                        made => return made,
                    }
                }
            }
        }
    }

    fn asymmetric(alg: AccessAlg, encoding: EncodingKey) -> Result<AccessKey, KeyError> {
        let mut jwk = Jwk::from_encoding_key(&encoding, algorithm(alg))?;
        let kid = jwk.thumbprint(ThumbprintHash::SHA256)?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = Some(match alg {
            AccessAlg::EdDSA => KeyAlgorithm::EdDSA,
            _ => KeyAlgorithm::ES256,
        });
        Ok(AccessKey {
            alg,
            kid: Some(kid),
            decoding: DecodingKey::from_jwk(&jwk)?,
            validation: validation(algorithm(alg)),
            encoding,
            jwk: Some(jwk),
            secret_text: None,
        })
    }
}

/// A key that signed once, and until when tokens it signed are taken.
#[derive(Debug)]
pub struct HeldKey {
    pub key: Arc<AccessKey>,
    pub generation: u32,
    /// When it began signing (unix seconds; 0 for `JWT_SECRET` before any rotation).
    pub since: i64,
    /// When its successor began signing; `None` while it signs.
    pub retired_at: Option<i64>,
}

/// The keys at one moment of the log: the one that signs, those that still verify, and the
/// one that will sign next.
#[derive(Debug)]
pub struct KeySet {
    /// Every key that ever signed, oldest first; the last signs now.
    pub held: Vec<HeldKey>,
    /// The next generation of the configured algorithm, published ahead of its turn.
    pub next: Option<Arc<AccessKey>>,
    /// The access-token lifetime: a retired key verifies until its last token expires.
    lifetime: TimeDelta,
    /// How many rotations were folded (the stream's version).
    pub version: i64,
}

/// What a key set is made from.
pub struct KeySource<'a> {
    pub jwt_secret: &'a [u8],
    pub signing_key: Option<&'a KeyBytes>,
    pub alg: AccessAlg,
    pub lifetime: TimeDelta,
}

impl KeySet {
    /// The keys after `rotations`, the `signing-keys` stream in order.
    pub fn fold(source: &KeySource, rotations: &[KeyRotated]) -> Result<KeySet, KeyError> {
        let configured = Arc::new(AccessKey::configured(source.jwt_secret)?);
        let mut held = vec![HeldKey {
            key: configured.clone(),
            generation: 0,
            since: 0,
            retired_at: None,
        }];
        let derive = |alg, generation| match source.signing_key {
            Some(master) => AccessKey::derived(master, alg, generation).map(Arc::new),
            None => Err(KeyError::NoSigningKey(alg)),
        };
        for rotation in rotations {
            let key = match rotation.kid {
                None => configured.clone(),
                Some(_) => derive(rotation.alg, rotation.generation)?,
            };
            if key.kid != rotation.kid {
                return Err(KeyError::WrongSigningKey {
                    generation: rotation.generation,
                    recorded: rotation.kid.clone().unwrap_or_default(),
                    derived: key.kid.clone().unwrap_or_default(),
                });
            }
            if let Some(last) = held.last_mut() {
                last.retired_at = Some(rotation.rotated_at);
            }
            held.push(HeldKey {
                key,
                generation: rotation.generation,
                since: rotation.rotated_at,
                retired_at: None,
            });
        }
        let next_generation = rotations.last().map_or(1, |r| r.generation + 1);
        let next = match source.alg.is_asymmetric() {
            true => Some(derive(source.alg, next_generation)?),
            false => None,
        };
        Ok(KeySet {
            held,
            next,
            lifetime: source.lifetime,
            version: rotations.len() as i64,
        })
    }

    /// The key that signs now.
    pub fn current(&self) -> &HeldKey {
        self.held.last().expect("JWT_SECRET's key is always held")
    }

    /// The generation the next rotation makes.
    pub fn next_generation(&self) -> u32 {
        self.current().generation + 1
    }

    /// The key a token naming `kid` (none: `JWT_SECRET`) was signed with, and the latest
    /// `iat` it may carry; `None` for a key that is not ours or no longer verifies.
    pub fn verifier(&self, kid: Option<&str>) -> Option<(&AccessKey, Option<i64>)> {
        // Newest first: `JWT_SECRET` may have signed twice, and its latest turn decides.
        if let Some(held) = self.held.iter().rev().find(|h| h.key.kid.as_deref() == kid) {
            let latest_iat = held.retired_at.map(|at| at + ROTATION_SLACK_SECONDS);
            return Some((&held.key, latest_iat));
        }
        // Signed by an instance that learned of a rotation before this one.
        let next = self.next.as_deref()?;
        (next.kid.as_deref() == kid && kid.is_some()).then_some((next, None))
    }

    /// The public keys a token alive at `now` may have been signed with: the next one, the
    /// one that signs, and those retired less than a token's lifetime ago.
    pub fn published(&self, now: i64) -> Vec<&Jwk> {
        let keep = self.lifetime.num_seconds() + ROTATION_SLACK_SECONDS;
        let mut published: Vec<&Jwk> = self
            .held
            .iter()
            .rev()
            .filter(|h| h.retired_at.is_none_or(|at| now < at + keep))
            .filter_map(|h| h.key.jwk.as_ref())
            .collect();
        if let Some(next) = self.next.as_ref().and_then(|k| k.jwk.as_ref()) {
            published.insert(0, next);
        }
        published
    }

    /// The rotation that makes a key of `alg` the one that signs, at `now`.
    pub fn rotation(
        &self,
        source: &KeySource,
        alg: AccessAlg,
        reason: RotationReason,
        now: i64,
    ) -> Result<KeyRotated, KeyError> {
        let generation = self.next_generation();
        let master = source.signing_key.ok_or(KeyError::NoSigningKey(alg))?;
        let key = AccessKey::derived(master, alg, generation)?;
        Ok(KeyRotated {
            generation,
            alg,
            kid: key.kid.clone(),
            public_key: key
                .jwk
                .as_ref()
                .map(|jwk| serde_json::to_value(jwk).expect("a JWK serializes")),
            reason,
            rotated_at: now,
        })
    }

    /// The rotation a start with `ACCESS_TOKEN_ALG=alg` must make first: the key that signs
    /// is of another algorithm. Back to HS256 is back to `JWT_SECRET`, as Strapi's servers
    /// check it.
    pub fn switch_to(&self, source: &KeySource, now: i64) -> Result<Option<KeyRotated>, KeyError> {
        if self.current().key.alg == source.alg {
            return Ok(None);
        }
        if source.alg.is_asymmetric() {
            return self
                .rotation(source, source.alg, RotationReason::Algorithm, now)
                .map(Some);
        }
        Ok(Some(KeyRotated {
            generation: self.next_generation(),
            alg: AccessAlg::HS256,
            kid: None,
            public_key: None,
            reason: RotationReason::Algorithm,
            rotated_at: now,
        }))
    }

    /// Whether `SIGNING_KEY_ROTATION` (`every`) is due at `now`.
    pub fn rotation_due(&self, every: TimeDelta, now: i64) -> bool {
        now >= self.current().since + every.num_seconds()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master() -> KeyBytes {
        KeyBytes::new([7; 32])
    }

    fn source(alg: AccessAlg, master: &KeyBytes) -> KeySource<'_> {
        KeySource {
            jwt_secret: b"a-jwt-secret-of-thirty-two-bytes!",
            signing_key: Some(master),
            alg,
            lifetime: TimeDelta::hours(2),
        }
    }

    fn kids(jwks: &[&Jwk]) -> Vec<String> {
        jwks.iter()
            .map(|jwk| jwk.common.key_id.clone().unwrap())
            .collect()
    }

    #[test]
    fn given_a_master_then_each_algorithm_and_generation_derives_its_own_stable_key() {
        for alg in [AccessAlg::HS256, AccessAlg::EdDSA, AccessAlg::ES256] {
            let first = AccessKey::derived(&master(), alg, 1).unwrap();
            let again = AccessKey::derived(&master(), alg, 1).unwrap();
            let second = AccessKey::derived(&master(), alg, 2).unwrap();
            let other = AccessKey::derived(&KeyBytes::new([8; 32]), alg, 1).unwrap();
            assert_eq!(first.kid, again.kid, "{alg:?}");
            assert_ne!(first.kid, second.kid, "{alg:?}");
            assert_ne!(first.kid, other.kid, "{alg:?}");
            assert_eq!(first.jwk.is_some(), alg.is_asymmetric());
        }
        let hs = AccessKey::derived(&master(), AccessAlg::HS256, 1).unwrap();
        assert_eq!(hs.secret_text.unwrap().len(), 64);
    }

    #[test]
    fn given_an_asymmetric_key_then_its_jwk_names_it_by_its_rfc7638_thumbprint() {
        let key = AccessKey::derived(&master(), AccessAlg::EdDSA, 1).unwrap();
        let jwk = key.jwk.as_ref().unwrap();
        let public = serde_json::to_value(jwk).unwrap();
        assert_eq!(public["kty"], "OKP");
        assert_eq!(public["crv"], "Ed25519");
        assert_eq!(public["alg"], "EdDSA");
        assert_eq!(public["use"], "sig");
        assert!(public.get("d").is_none(), "no private part: {public}");
        // RFC 7638 §3.2: SHA-256 of the required members in order, base64url.
        let canonical = format!(
            r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
            public["x"].as_str().unwrap()
        );
        let digest = sha2::Sha256::digest(canonical.as_bytes());
        use base64::Engine;
        use sha2::Digest;
        let thumbprint = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
        assert_eq!(key.kid.as_deref(), Some(thumbprint.as_str()));
        let es = AccessKey::derived(&master(), AccessAlg::ES256, 1).unwrap();
        let public = serde_json::to_value(es.jwk.as_ref().unwrap()).unwrap();
        assert_eq!(
            (public["kty"].as_str(), public["crv"].as_str()),
            (Some("EC"), Some("P-256"))
        );
    }

    #[test]
    fn given_no_rotation_then_jwt_secret_signs_and_nothing_is_published_in_hs256() {
        let m = master();
        let keys = KeySet::fold(&source(AccessAlg::HS256, &m), &[]).unwrap();
        assert_eq!(keys.current().key.kid, None);
        assert!(keys.next.is_none());
        assert!(keys.published(1_000).is_empty());
        assert!(
            keys.verifier(None)
                .is_some_and(|(_, latest)| latest.is_none())
        );
    }

    #[test]
    fn given_a_rotation_then_the_old_key_verifies_its_tokens_until_they_expire_and_then_leaves() {
        let m = master();
        let eddsa = source(AccessAlg::EdDSA, &m);
        let empty = KeySet::fold(&eddsa, &[]).unwrap();
        let first = empty.switch_to(&eddsa, 1_000).unwrap().unwrap();
        assert_eq!(
            (first.generation, first.reason),
            (1, RotationReason::Algorithm)
        );
        let one = KeySet::fold(&eddsa, std::slice::from_ref(&first)).unwrap();
        // The next key is published before it signs.
        let next_kid = one.next.as_ref().unwrap().kid.clone().unwrap();
        assert_eq!(
            kids(&one.published(1_000)),
            vec![next_kid.clone(), first.kid.clone().unwrap()]
        );

        let second = one
            .rotation(&eddsa, AccessAlg::EdDSA, RotationReason::Manual, 5_000)
            .unwrap();
        assert_eq!(second.kid.as_deref(), Some(next_kid.as_str()));
        let two = KeySet::fold(&eddsa, &[first.clone(), second.clone()]).unwrap();
        assert_eq!(two.current().key.kid, second.kid);
        let (_, latest) = two.verifier(first.kid.as_deref()).unwrap();
        assert_eq!(latest, Some(5_000 + ROTATION_SLACK_SECONDS));
        // Until the last token the old key signed has expired, it is published.
        let lifetime = 2 * 3600 + ROTATION_SLACK_SECONDS;
        assert!(kids(&two.published(5_000 + lifetime - 1)).contains(&first.kid.clone().unwrap()));
        assert!(!kids(&two.published(5_000 + lifetime)).contains(&first.kid.clone().unwrap()));
        // JWT_SECRET, retired at the first rotation, was never published.
        assert_eq!(two.published(5_000).len(), 3);
        assert!(two.verifier(Some("not-ours")).is_none());
    }

    #[test]
    fn given_a_switch_back_to_hs256_then_jwt_secret_signs_again() {
        let m = master();
        let eddsa = KeySet::fold(&source(AccessAlg::EdDSA, &m), &[]).unwrap();
        let first = eddsa
            .switch_to(&source(AccessAlg::EdDSA, &m), 10)
            .unwrap()
            .unwrap();
        let hs = source(AccessAlg::HS256, &m);
        let keys = KeySet::fold(&hs, std::slice::from_ref(&first)).unwrap();
        let back = keys.switch_to(&hs, 20).unwrap().unwrap();
        assert_eq!(
            (back.kid, back.alg, back.generation),
            (None, AccessAlg::HS256, 2)
        );
        assert!(
            keys.switch_to(&source(AccessAlg::EdDSA, &m), 20)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn given_another_signing_key_then_the_recorded_keys_are_refused_by_name() {
        let m = master();
        let eddsa = source(AccessAlg::EdDSA, &m);
        let first = KeySet::fold(&eddsa, &[])
            .unwrap()
            .switch_to(&eddsa, 1)
            .unwrap()
            .unwrap();
        let other = KeyBytes::new([9; 32]);
        let refused = KeySet::fold(&source(AccessAlg::EdDSA, &other), &[first]).unwrap_err();
        assert!(
            matches!(refused, KeyError::WrongSigningKey { generation: 1, .. }),
            "{refused}"
        );
        let none = KeySource {
            signing_key: None,
            ..source(AccessAlg::EdDSA, &m)
        };
        assert!(matches!(
            KeySet::fold(&none, &[]),
            Err(KeyError::NoSigningKey(AccessAlg::EdDSA))
        ));
    }

    #[test]
    fn given_a_schedule_then_a_rotation_is_due_once_the_signing_key_is_that_old() {
        let m = master();
        let eddsa = source(AccessAlg::EdDSA, &m);
        let first = KeySet::fold(&eddsa, &[])
            .unwrap()
            .switch_to(&eddsa, 1_000)
            .unwrap()
            .unwrap();
        let keys = KeySet::fold(&eddsa, &[first]).unwrap();
        assert!(!keys.rotation_due(TimeDelta::hours(1), 1_000 + 3599));
        assert!(keys.rotation_due(TimeDelta::hours(1), 1_000 + 3600));
    }
}
