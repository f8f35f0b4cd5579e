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
    } else if secret.len() < 32 {
        Some("is shorter than 32 bytes")
    } else {
        None
    }
}
