//! Secret values (signing secrets, the admin token): never printed, and held to one rule of
//! strength wherever they come from.

use std::fmt;

use super::{ConfigError, invalid};

/// A secret value: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// Refuses a weak secret unless `--insecure-dev`. One rule for every source of a secret: the
/// environment and the config file (`Config::load`), and `secrets.json` (`secrets::resolve`),
/// where `key` also names the file.
pub fn refuse_weak(key: &str, secret: &Secret, insecure_dev: bool) -> Result<(), ConfigError> {
    match weakness(secret.expose()) {
        Some(why) if !insecure_dev => Err(invalid(
            key,
            format!(
                "{why}; use a random value of 32 bytes or more (or --insecure-dev for local experiments)"
            ),
        )),
        _ => Ok(()),
    }
}

/// Why a secret is too weak to sign tokens with, if it is.
pub fn weakness(secret: &str) -> Option<&'static str> {
    const KNOWN_DEFAULTS: [&str; 4] = ["SomethingSecret", "SuperSecretKey", "secret", "changeme"];
    // Placeholders such as .env.example's count as defaults: they are public.
    if KNOWN_DEFAULTS
        .iter()
        .any(|known| known.eq_ignore_ascii_case(secret))
        || secret.to_ascii_lowercase().contains("change-me")
    {
        Some("is a well-known default secret")
    } else if secret.len() < 32 && !strapi_generated(secret) {
        Some("is shorter than 32 bytes")
    } else {
        None
    }
}

/// Strapi's own generated secrets are 16 random bytes in base64 (24 characters): 128 bits,
/// enough for HMAC-SHA256, and the secret a Strapi deployment moving here must keep (its
/// content servers check our access tokens with it). Base64 of 16 bytes or more passes.
fn strapi_generated(secret: &str) -> bool {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(secret)
        .is_ok_and(|bytes| bytes.len() >= 16 && bytes.iter().any(|b| *b != bytes[0]))
}

/// A 32-byte key (the ledger's HMAC key, the checkpoint signing seed): 64 hex digits where
/// an operator writes it, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyBytes([u8; 32]);

impl KeyBytes {
    pub fn new(bytes: [u8; 32]) -> Self {
        KeyBytes(bytes)
    }

    /// 64 hex digits, surrounding whitespace ignored (a key file ends in a newline).
    pub fn parse(text: &str) -> Result<KeyBytes, String> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut bytes)
            .map_err(|_| "must be 64 hex digits (32 random bytes)".to_owned())?;
        if bytes.iter().all(|b| *b == bytes[0]) {
            return Err("is not random (every byte is the same)".to_owned());
        }
        Ok(KeyBytes(bytes))
    }

    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyBytes(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_strapi_generated_secret_is_strong_enough_and_short_text_is_not() {
        // As create-strapi-app makes JWT_SECRET: 16 random bytes in base64.
        assert_eq!(weakness("q3Hk0nJ1YbVZ8oW7u2xR6g=="), None);
        assert!(weakness("peer-refresh-jwt-secret").is_some());
        assert!(weakness("AAAAAAAAAAAAAAAAAAAAAA==").is_some());
        assert!(weakness("c2hvcnQ=").is_some());
    }
}
