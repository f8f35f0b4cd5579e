//! Signing secrets that were not configured are generated on first start into the data
//! folder (mode 0600) and read back on every later start, so tokens survive restarts with no
//! setup at all. What is read back is held to the same rule as a configured secret: a weak
//! one written into the file by hand is refused unless `--insecure-dev`.

use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::config::{Config, KeyBytes, Secret, refuse_weak};
use crate::private_files;

const FILE_NAME: &str = "secrets.json";

#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    jwt_secret: Option<String>,
    refresh_jwt_secret: Option<String>,
    /// Added with the keyed ledger: absent from older files, and then generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ledger_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    checkpoint_key: Option<String>,
    /// Added with sealed personal data: absent from older files, and then generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    personal_data_key: Option<String>,
    /// Added with asymmetric access tokens: absent from older files, and then generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signing_key: Option<String>,
}

/// HMAC-SHA256 of `message` under `key`: the one way a key of its own is derived from a
/// configured key and a fixed label (email codes, snapshots), and codes from their ids.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use hmac::{KeyInit, Mac};
    // HMAC takes keys of any length: `new_from_slice` cannot fail.
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

fn random_secret() -> String {
    let mut bytes = [0u8; 48];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn random_key() -> KeyBytes {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    KeyBytes::new(bytes)
}

fn missing(config: &Config) -> Vec<&'static str> {
    let (tokens, ledger) = (&config.tokens, &config.ledger);
    [
        ("JWT_SECRET", tokens.jwt_secret.is_none()),
        ("REFRESH_JWT_SECRET", tokens.refresh_secret.is_none()),
        ("LEDGER_KEY", ledger.key.is_none()),
        ("CHECKPOINT_KEY", ledger.checkpoint_key.is_none()),
        ("PERSONAL_DATA_KEY", config.privacy.key.is_none()),
        // Made on first start with SQLite, as the others, so that a first rotation by the
        // command line finds the running server holding it; on PostgreSQL only needed with
        // what derives keys from it.
        (
            "SIGNING_KEY",
            tokens.signing_key.is_none()
                && (tokens.needs_signing_key() || !config.server.database_url.is_postgres()),
        ),
    ]
    .into_iter()
    .filter_map(|(name, missing)| missing.then_some(name))
    .collect()
}

fn invalid_data(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

/// Fills in missing secrets and keys from (or into) `<data dir>/secrets.json`. Returns what
/// it did, for the start-up log.
pub fn resolve(config: &mut Config) -> std::io::Result<Option<String>> {
    let missing = missing(config);
    if missing.is_empty() {
        return Ok(None);
    }
    if config.server.database_url.is_postgres() {
        // Instances sharing a database must share their secrets; generated ones would differ
        // per instance (and per container), and every token would fail on the others.
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{} must be set when DATABASE_URL is PostgreSQL: every instance needs the same ones",
                missing.join(", ")
            ),
        ));
    }
    let path = config.server.data_dir.join(FILE_NAME);
    let mut stored = read_stored(&path)?;
    let generated = fill_secrets(config, &mut stored, &path)?
        .into_iter()
        .chain(fill_keys(config, &mut stored, &path, true)?)
        .collect::<Vec<_>>();
    if generated.is_empty() {
        return Ok(Some(format!(
            "using signing secrets and ledger keys from {}",
            path.display()
        )));
    }
    private_files::write(&path, &serde_json::to_vec_pretty(&stored)?)?;
    Ok(Some(format!(
        "generated {} into {} (mode 0600); set them in the environment to manage them yourself",
        generated.join(", "),
        path.display()
    )))
}

/// Fills in missing keys from `<data dir>/secrets.json` if it is there, making nothing and
/// writing nothing: for the commands that only read.
pub fn read_existing(config: &mut Config) -> std::io::Result<()> {
    if missing(config).is_empty() || config.server.database_url.is_postgres() {
        return Ok(());
    }
    let path = config.server.data_dir.join(FILE_NAME);
    fill_keys(config, &mut read_stored(&path)?, &path, false).map(drop)
}

/// What `secrets.json` holds; nothing if it is not there.
fn read_stored(path: &std::path::Path) -> std::io::Result<Stored> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| invalid_data(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Stored::default()),
        Err(e) => Err(e),
    }
}

/// The signing secrets: those read back held to the rule of configured ones.
fn fill_secrets(
    config: &mut Config,
    stored: &mut Stored,
    path: &std::path::Path,
) -> std::io::Result<Vec<&'static str>> {
    let tokens = &mut config.tokens;
    let mut generated = Vec::new();
    for (name, value, configured) in [
        ("JWT_SECRET", &mut stored.jwt_secret, &mut tokens.jwt_secret),
        (
            "REFRESH_JWT_SECRET",
            &mut stored.refresh_jwt_secret,
            &mut tokens.refresh_secret,
        ),
    ] {
        if configured.is_some() {
            continue;
        }
        if let Some(value) = value {
            let key = format!("{name} in {}", path.display());
            refuse_weak(&key, &Secret::new(value.clone()), config.insecure_dev)
                .map_err(|e| invalid_data(e.to_string()))?;
        }
        let value = value.get_or_insert_with(|| {
            generated.push(name);
            random_secret()
        });
        *configured = Some(Secret::new(value.clone()));
    }
    Ok(generated)
}

/// The ledger key, the checkpoint signing key and the personal data key: read back, or (with
/// `generate`) made.
fn fill_keys(
    config: &mut Config,
    stored: &mut Stored,
    path: &std::path::Path,
    generate: bool,
) -> std::io::Result<Vec<&'static str>> {
    let ledger = &mut config.ledger;
    let mut generated = Vec::new();
    for (name, value, configured) in [
        ("LEDGER_KEY", &mut stored.ledger_key, &mut ledger.key),
        (
            "CHECKPOINT_KEY",
            &mut stored.checkpoint_key,
            &mut ledger.checkpoint_key,
        ),
        (
            "PERSONAL_DATA_KEY",
            &mut stored.personal_data_key,
            &mut config.privacy.key,
        ),
        (
            "SIGNING_KEY",
            &mut stored.signing_key,
            &mut config.tokens.signing_key,
        ),
    ] {
        if configured.is_some() {
            continue;
        }
        let key = match value {
            Some(text) => KeyBytes::parse(text)
                .map_err(|e| invalid_data(format!("{name} in {}: {e}", path.display())))?,
            None if !generate => continue,
            None => {
                generated.push(name);
                // Nothing can have been chained with a key made just now.
                ledger.seal_legacy |= name == "LEDGER_KEY";
                let key = random_key();
                *value = Some(key.to_hex());
                key
            }
        };
        *configured = Some(key);
    }
    Ok(generated)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn instances_on_postgresql_must_be_given_their_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let env: HashMap<String, String> = [
            ("DATA_DIR".to_owned(), dir.path().display().to_string()),
            (
                "DATABASE_URL".to_owned(),
                "postgres://db.example.com/tokenledger".to_owned(),
            ),
        ]
        .into();
        let mut config = Config::load(None, &env, false).unwrap();
        let refused = resolve(&mut config).unwrap_err().to_string();
        assert!(
            refused.starts_with(
                "JWT_SECRET, REFRESH_JWT_SECRET, LEDGER_KEY, CHECKPOINT_KEY, PERSONAL_DATA_KEY must be set when DATABASE_URL is PostgreSQL"
            ),
            "{refused}"
        );
        assert!(!dir.path().join(FILE_NAME).exists());
    }

    #[test]
    fn asymmetric_tokens_on_postgresql_need_the_signing_key_and_an_issuer() {
        let dir = tempfile::tempdir().unwrap();
        let mut env: HashMap<String, String> = [
            ("DATA_DIR", dir.path().display().to_string()),
            (
                "DATABASE_URL",
                "postgres://db.example.com/tokenledger".to_owned(),
            ),
            ("ACCESS_TOKEN_ALG", "EdDSA".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let refused = Config::load(None, &env, false).unwrap_err().to_string();
        assert!(refused.contains("ACCESS_TOKEN_ISSUER"), "{refused}");
        env.insert(
            "PRODUCTION_URL".to_owned(),
            "http://auth.example.com".to_owned(),
        );
        let mut config = Config::load(None, &env, false).unwrap();
        assert_eq!(
            config.access_token_issuer().as_deref(),
            Some("http://auth.example.com")
        );
        let refused = resolve(&mut config).unwrap_err().to_string();
        assert!(
            refused.starts_with("JWT_SECRET, REFRESH_JWT_SECRET, LEDGER_KEY, CHECKPOINT_KEY, PERSONAL_DATA_KEY, SIGNING_KEY must be set"),
            "{refused}"
        );
    }

    #[test]
    fn weak_secrets_in_the_file_are_refused_unless_insecure_dev() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::write(
            &path,
            r#"{"jwt_secret":"a","refresh_jwt_secret":"SomethingSecret"}"#,
        )
        .unwrap();
        let env: HashMap<String, String> =
            [("DATA_DIR".to_owned(), dir.path().display().to_string())].into();
        let mut config = Config::load(None, &env, false).unwrap();
        let refused = resolve(&mut config).unwrap_err().to_string();
        assert_eq!(
            refused,
            format!(
                "JWT_SECRET in {}: is shorter than 32 bytes; use a random value of 32 bytes or more (or --insecure-dev for local experiments)",
                path.display()
            )
        );
        let strong = "x".repeat(32);
        let env: HashMap<String, String> = [
            ("DATA_DIR".to_owned(), dir.path().display().to_string()),
            ("JWT_SECRET".to_owned(), strong),
        ]
        .into();
        let mut config = Config::load(None, &env, false).unwrap();
        let refused = resolve(&mut config).unwrap_err().to_string();
        assert!(
            refused.starts_with("REFRESH_JWT_SECRET in ")
                && refused.contains("is a well-known default secret"),
            "{refused}"
        );

        let mut config = Config::load(None, &env, true).unwrap();
        resolve(&mut config).unwrap();
        assert_eq!(
            config.tokens.refresh_secret.unwrap().expose(),
            "SomethingSecret"
        );
    }

    #[test]
    fn generated_secrets_are_private_and_stable_across_starts() {
        let dir = tempfile::tempdir().unwrap();
        let env: HashMap<String, String> =
            [("DATA_DIR".to_owned(), dir.path().display().to_string())].into();
        let mut first = Config::load(None, &env, false).unwrap();
        let said = resolve(&mut first).unwrap().unwrap();
        assert!(
            said.contains("generated JWT_SECRET, REFRESH_JWT_SECRET, LEDGER_KEY, CHECKPOINT_KEY, PERSONAL_DATA_KEY"),
            "{said}"
        );
        let mut second = Config::load(None, &env, false).unwrap();
        resolve(&mut second).unwrap();
        assert_eq!(first.tokens.jwt_secret, second.tokens.jwt_secret);
        assert_eq!(first.tokens.refresh_secret, second.tokens.refresh_secret);
        assert_ne!(first.tokens.jwt_secret, first.tokens.refresh_secret);
        assert_eq!(first.ledger.key, second.ledger.key);
        assert_eq!(first.ledger.checkpoint_key, second.ledger.checkpoint_key);
        assert!(first.tokens.signing_key.is_some());
        assert_eq!(first.tokens.signing_key, second.tokens.signing_key);
        assert!(first.ledger.key.is_some() && first.ledger.key != first.ledger.checkpoint_key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(FILE_NAME))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
