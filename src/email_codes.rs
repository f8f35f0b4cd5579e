//! The codes that reset links and confirmation links carry. A code is never stored, not even
//! in the mailer's memory between two sends: it is derived from its event's `code_id` with a
//! key made from `PERSONAL_DATA_KEY`, which the database never sees. The log keeps only its
//! SHA-256 (`code_digest`), which a reset or a confirmation must match. So whoever reads the
//! database cannot make a working link, and the mailer can send the same link again after a
//! restart without having kept it anywhere.

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::secrets::hmac_sha256;

/// The key codes are derived with: `HMAC-SHA256(PERSONAL_DATA_KEY, "tokenledger email codes
/// v1")`, so that it is a key of its own, not the master key used for a second purpose.
#[derive(Clone)]
pub struct CodeKey([u8; 32]);

impl CodeKey {
    pub fn derive(personal_data_key: &[u8; 32]) -> CodeKey {
        CodeKey(hmac_sha256(
            personal_data_key,
            b"tokenledger email codes v1",
        ))
    }

    /// The code of `code_id`: lowercase hex of `HMAC-SHA256(code key, code_id's 16 bytes)`,
    /// 64 characters, 256 bits that nobody without the key can guess from the id.
    pub fn code(&self, code_id: Uuid) -> String {
        hex::encode(hmac_sha256(&self.0, code_id.as_bytes()))
    }
}

impl std::fmt::Debug for CodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CodeKey(…)")
    }
}

/// What the log keeps of a code: lowercase hex SHA-256 of its text. A code is 256 random-looking
/// bits, so a plain hash is enough: there is nothing to guess that a slow hash would protect.
pub fn digest(code: &str) -> String {
    hex::encode(Sha256::digest(code.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    #[test]
    fn given_one_key_and_id_then_the_code_is_always_the_same_64_hex_digits() {
        let id = Uuid::parse_str("01938e2a-0000-7000-8000-000000000001").unwrap();
        let code = CodeKey::derive(&KEY).code(id);
        assert_eq!(code, CodeKey::derive(&KEY).code(id), "derived, not random");
        assert_eq!(code.len(), 64);
        assert!(
            code.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
    }

    #[test]
    fn given_another_id_or_another_key_then_the_code_differs() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let key = CodeKey::derive(&KEY);
        assert_ne!(key.code(a), key.code(b));
        assert_ne!(key.code(a), CodeKey::derive(&[8; 32]).code(a));
    }

    #[test]
    fn the_code_key_is_not_the_master_key() {
        // Were the derivation skipped, the code would be an HMAC under the master key itself.
        let id = Uuid::from_u128(42);
        let under_master = hex::encode(hmac_sha256(&KEY, id.as_bytes()));
        assert_ne!(CodeKey::derive(&KEY).code(id), under_master);
    }

    #[test]
    fn the_digest_is_lowercase_hex_sha256() {
        // SHA-256("abc"), FIPS 180-2's first example.
        assert_eq!(
            digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let code = CodeKey::derive(&KEY).code(Uuid::from_u128(3));
        assert_eq!(digest(&code).len(), 64);
        assert_ne!(digest(&code), code);
    }
}
