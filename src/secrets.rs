//! Signing secrets that were not configured are generated on first start into the data
//! folder (mode 0600) and read back on every later start, so tokens survive restarts with no
//! setup at all. What is read back is held to the same rule as a configured secret: a weak
//! one written into the file by hand is refused unless `--insecure-dev`.

use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::config::{Config, Secret, refuse_weak};
use crate::private_files;

const FILE_NAME: &str = "secrets.json";

#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    jwt_secret: Option<String>,
    refresh_jwt_secret: Option<String>,
}

fn random_secret() -> String {
    let mut bytes = [0u8; 48];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Fills in missing secrets from (or into) `<data dir>/secrets.json`. Returns what it did,
/// for the start-up log.
pub fn resolve(config: &mut Config) -> std::io::Result<Option<String>> {
    let tokens = &mut config.tokens;
    if tokens.jwt_secret.is_some() && tokens.refresh_secret.is_some() {
        return Ok(None);
    }
    if config.server.database_url.is_postgres() {
        // Instances sharing a database must share their secrets; generated ones would differ
        // per instance (and per container), and every token would fail on the others.
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "JWT_SECRET and REFRESH_JWT_SECRET must be set when DATABASE_URL is PostgreSQL: every instance needs the same ones",
        ));
    }
    let path = config.server.data_dir.join(FILE_NAME);
    let mut stored: Stored = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Stored::default(),
        Err(e) => return Err(e),
    };
    for (key, value, configured) in [
        ("JWT_SECRET", &stored.jwt_secret, &tokens.jwt_secret),
        (
            "REFRESH_JWT_SECRET",
            &stored.refresh_jwt_secret,
            &tokens.refresh_secret,
        ),
    ] {
        if let (Some(value), None) = (value, configured) {
            let key = format!("{key} in {}", path.display());
            refuse_weak(&key, &Secret::new(value.clone()), config.insecure_dev)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        }
    }
    let mut generated = Vec::new();
    if tokens.jwt_secret.is_none() {
        let value = stored.jwt_secret.get_or_insert_with(|| {
            generated.push("JWT_SECRET");
            random_secret()
        });
        tokens.jwt_secret = Some(Secret::new(value.clone()));
    }
    if tokens.refresh_secret.is_none() {
        let value = stored.refresh_jwt_secret.get_or_insert_with(|| {
            generated.push("REFRESH_JWT_SECRET");
            random_secret()
        });
        tokens.refresh_secret = Some(Secret::new(value.clone()));
    }
    if generated.is_empty() {
        return Ok(Some(format!(
            "using signing secrets from {}",
            path.display()
        )));
    }
    private_files::write(&path, &serde_json::to_vec_pretty(&stored)?)?;
    Ok(Some(format!(
        "generated {} into {} (mode 0600); set them in the environment to manage them yourself",
        generated.join(" and "),
        path.display()
    )))
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
            refused.contains("must be set when DATABASE_URL is PostgreSQL"),
            "{refused}"
        );
        assert!(!dir.path().join(FILE_NAME).exists());
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
            said.contains("generated JWT_SECRET and REFRESH_JWT_SECRET"),
            "{said}"
        );
        let mut second = Config::load(None, &env, false).unwrap();
        resolve(&mut second).unwrap();
        assert_eq!(first.tokens.jwt_secret, second.tokens.jwt_secret);
        assert_eq!(first.tokens.refresh_secret, second.tokens.refresh_secret);
        assert_ne!(first.tokens.jwt_secret, first.tokens.refresh_secret);
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
