//! The codes of the account emails (a password reset's, an email confirmation's). A code is
//! never stored: it is derived from its id with a key made from `PERSONAL_DATA_KEY`, which the
//! database never sees, so that the mailer, following the log, can put it in the email, and
//! the log and the users table keep only its SHA-256.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The key codes are derived with.
#[derive(Clone)]
pub struct CodeKey([u8; 32]);

impl std::fmt::Debug for CodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CodeKey(…)")
    }
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

impl CodeKey {
    /// From `PERSONAL_DATA_KEY`, under a label of its own: a leak of codes says nothing of
    /// the data keys, and the reverse.
    pub fn derive(personal_data_key: &[u8; 32]) -> CodeKey {
        CodeKey(hmac(personal_data_key, b"tokenledger email codes v1"))
    }

    /// The code of `code_id`: 64 hex digits, 256 bits.
    pub fn code(&self, code_id: Uuid) -> String {
        hex::encode(hmac(&self.0, code_id.as_bytes()))
    }
}

/// Lowercase hex SHA-256 of a code: what is stored of it.
pub fn digest(code: &str) -> String {
    hex::encode(Sha256::digest(code.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_is_a_function_of_its_id_and_the_key_alone() {
        let key = CodeKey::derive(&[7; 32]);
        let id = Uuid::from_u128(42);
        assert_eq!(key.code(id), key.code(id));
        assert_eq!(key.code(id).len(), 64);
        assert_ne!(key.code(id), key.code(Uuid::from_u128(43)));
        assert_ne!(key.code(id), CodeKey::derive(&[8; 32]).code(id));
        assert_eq!(digest(&key.code(id)).len(), 64);
        assert_ne!(digest(&key.code(id)), key.code(id));
    }
}
