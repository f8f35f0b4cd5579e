//! Crypto-shredding: personal fields are sealed (XChaCha20-Poly1305) under a data key of their
//! owner and period, and each data key is stored wrapped by the master key
//! (`PERSONAL_DATA_KEY`), which never enters the database. Deleting a data key leaves its
//! ciphertexts unreadable for good, while the ledger, which covers the ciphertext, still
//! verifies.
//!
//! Periods are calendar months (UTC), numbered from January of year 0, so that retention
//! deletes whole months; the names an account is known by have period 0, a key that only
//! forgetting the user deletes.

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use chrono::Datelike;
use rand::RngCore;
use tokenledger_domain::Timestamp;

use crate::config::KeyBytes;

/// The period of the keys that live as long as the account.
pub const ACCOUNT_PERIOD: i64 = 0;

const NONCE: usize = 24;

/// The period (month) an instant falls in.
pub fn period_of(at: Timestamp) -> i64 {
    i64::from(at.year()) * 12 + i64::from(at.month0())
}

/// The first instant of `period`, e.g. `2026-12` for display.
pub fn period_name(period: i64) -> String {
    if period == ACCOUNT_PERIOD {
        return "account".to_owned();
    }
    format!(
        "{:04}-{:02}",
        period.div_euclid(12),
        period.rem_euclid(12) + 1
    )
}

fn random_nonce() -> [u8; NONCE] {
    let mut nonce = [0; NONCE];
    rand::rng().fill_bytes(&mut nonce);
    nonce
}

/// `nonce ‖ ciphertext ‖ tag` of `plain` under `cipher`, bound to `aad`.
fn seal(cipher: &XChaCha20Poly1305, plain: &[u8], aad: &[u8]) -> Vec<u8> {
    let nonce = random_nonce();
    let sealed = cipher
        .encrypt(&XNonce::from(nonce), Payload { msg: plain, aad })
        .expect("XChaCha20-Poly1305 takes messages far larger than a field");
    [&nonce[..], &sealed].concat()
}

fn open(cipher: &XChaCha20Poly1305, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE {
        return None;
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE);
    let nonce: [u8; NONCE] = nonce.try_into().ok()?;
    cipher
        .decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .ok()
}

/// What a data key is bound to when wrapped: its owner and period, so that a wrapped key
/// copied to another owner's row does not open.
fn key_label(owner: &str, period: i64) -> Vec<u8> {
    [
        b"tokenledger data key\0".as_slice(),
        owner.as_bytes(),
        b"\0",
        &period.to_be_bytes(),
    ]
    .concat()
}

/// `PERSONAL_DATA_KEY`: wraps the data keys.
#[derive(Clone)]
pub struct MasterKey(XChaCha20Poly1305);

impl MasterKey {
    pub fn new(key: &KeyBytes) -> MasterKey {
        MasterKey(XChaCha20Poly1305::new(&(*key.expose()).into()))
    }

    /// A fresh data key for `owner`'s `period`, and its wrapped form to store.
    pub fn generate(&self, owner: &str, period: i64) -> (DataKey, Vec<u8>) {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        let wrapped = seal(&self.0, &key, &key_label(owner, period));
        (DataKey::new(key), wrapped)
    }

    /// The data key a stored `wrapped` holds; `None` if it was not wrapped by this master key
    /// for this owner and period.
    pub fn unwrap(&self, owner: &str, period: i64, wrapped: &[u8]) -> Option<DataKey> {
        let key = open(&self.0, wrapped, &key_label(owner, period))?;
        Some(DataKey::new(key.try_into().ok()?))
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

/// One owner's key for one period.
#[derive(Clone)]
pub struct DataKey(XChaCha20Poly1305);

impl DataKey {
    fn new(key: [u8; 32]) -> DataKey {
        DataKey(XChaCha20Poly1305::new(&key.into()))
    }

    /// `plain` sealed, bound to `aad` (the event it belongs to).
    pub fn seal(&self, plain: &[u8], aad: &[u8]) -> Vec<u8> {
        seal(&self.0, plain, aad)
    }

    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        open(&self.0, sealed, aad)
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(…)")
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;

    fn master(byte: u8) -> MasterKey {
        let mut key = [byte; 32];
        key[0] ^= 1;
        MasterKey::new(&KeyBytes::new(key))
    }

    #[test]
    fn given_a_wrapped_key_when_unwrapped_for_its_owner_and_period_then_it_opens_what_it_sealed() {
        let (key, wrapped) = master(7).generate("user-1", 24323);
        let sealed = key.seal(b"203.0.113.9", b"event");
        let again = master(7).unwrap("user-1", 24323, &wrapped).unwrap();
        assert_eq!(again.open(&sealed, b"event").unwrap(), b"203.0.113.9");
        // Another event's binding, owner, period or master key: nothing opens.
        assert!(again.open(&sealed, b"other").is_none());
        assert!(master(7).unwrap("user-2", 24323, &wrapped).is_none());
        assert!(master(7).unwrap("user-1", 24324, &wrapped).is_none());
        assert!(master(8).unwrap("user-1", 24323, &wrapped).is_none());
        assert!(again.open(&sealed[..10], b"event").is_none());
    }

    #[test]
    fn the_same_field_sealed_twice_differs() {
        let (key, _) = master(7).generate("user-1", 1);
        assert_ne!(key.seal(b"ip", b"a"), key.seal(b"ip", b"a"));
    }

    #[test]
    fn periods_are_calendar_months() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let december = period_of(at("2026-12-31T23:59:59Z"));
        assert_eq!(december, 2026 * 12 + 11);
        assert_eq!(period_of(at("2027-01-01T00:00:00Z")), december + 1);
        assert_eq!(period_of(at("2026-12-01T00:00:00Z")), december);
        assert_eq!(period_name(december), "2026-12");
        assert_eq!(period_name(ACCOUNT_PERIOD), "account");
    }
}
