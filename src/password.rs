//! Password hashing: argon2id with OWASP's parameters (m=19456 KiB, t=2, p=1), run on the
//! blocking pool behind a semaphore of one permit per core, so a login flood queues here
//! instead of stalling the async workers or oversubscribing the CPU.

use std::sync::Arc;

use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
use tokio::sync::Semaphore;

#[derive(Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
    /// Verified against when the user does not exist, so an unknown identifier costs the same
    /// time as a wrong password (no user enumeration by timing).
    dummy_hash: Arc<str>,
}

fn argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("the password pool is shut down")]
    Closed,
}

impl Passwords {
    pub fn new(parallelism: usize) -> Result<Passwords, PasswordError> {
        let dummy = argon2()
            .hash_password(b"tokenledger dummy password")
            .map_err(|e| PasswordError::Hash(e.to_string()))?
            .to_string();
        Ok(Passwords {
            permits: Arc::new(Semaphore::new(parallelism.max(1))),
            dummy_hash: dummy.into(),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PasswordError::Closed)?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|_| PasswordError::Closed)
    }

    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        self.run(move || {
            argon2()
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
        })
        .await?
        .map_err(|e| PasswordError::Hash(e.to_string()))
    }

    /// Whether `password` matches `hash`; with no hash (unknown user) it checks against the
    /// dummy hash and answers false.
    pub async fn verify(
        &self,
        password: String,
        hash: Option<String>,
    ) -> Result<bool, PasswordError> {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.to_string());
        let matches = self
            .run(move || {
                argon2()
                    .verify_password(password.as_bytes(), hash.as_str())
                    .is_ok()
            })
            .await?;
        Ok(known && matches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let p = Passwords::new(1).unwrap();
        let hash = p.hash("correct horse".to_owned()).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            p.verify("correct horse".to_owned(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(!p.verify("wrong".to_owned(), Some(hash)).await.unwrap());
        assert!(
            !p.verify("tokenledger dummy password".to_owned(), None)
                .await
                .unwrap()
        );
    }
}
