//! The tamper-evident chain: each event's hash covers its predecessor's hash and every stored
//! field, so altering, dropping or reordering an event breaks every hash after it.

use sha2::{Digest, Sha256};

/// `SHA-256(prev_hash ‖ stream_id ‖ stream_version ‖ event_type ‖ payload ‖ metadata ‖
/// recorded_at)`. Variable-length fields are length-prefixed so that no two different
/// events can concatenate to the same bytes.
pub fn chain_hash(
    prev_hash: &[u8],
    stream_id: &str,
    stream_version: i64,
    event_type: &str,
    payload: &str,
    metadata: &str,
    recorded_at: &str,
) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash);
    for field in [
        stream_id.as_bytes(),
        event_type.as_bytes(),
        payload.as_bytes(),
        metadata.as_bytes(),
        recorded_at.as_bytes(),
    ] {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field);
    }
    hasher.update(stream_version.to_be_bytes());
    hasher.finalize().to_vec()
}

/// The `prev_hash` of a stream's first event.
pub const GENESIS: [u8; 32] = [0; 32];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_changed_field_changes_the_hash() {
        let base = chain_hash(&GENESIS, "user-1", 1, "TokenIssued", "{}", "{}", "t");
        assert_eq!(
            base,
            chain_hash(&GENESIS, "user-1", 1, "TokenIssued", "{}", "{}", "t")
        );
        assert_ne!(
            base,
            chain_hash(&[1; 32], "user-1", 1, "TokenIssued", "{}", "{}", "t")
        );
        assert_ne!(
            base,
            chain_hash(&GENESIS, "user-1", 2, "TokenIssued", "{}", "{}", "t")
        );
        assert_ne!(
            base,
            chain_hash(&GENESIS, "user-1", 1, "TokenIssued", "{ }", "{}", "t")
        );
        // Moving bytes between fields must not collide.
        assert_ne!(
            chain_hash(&GENESIS, "user-1", 1, "ab", "c", "{}", "t"),
            chain_hash(&GENESIS, "user-1", 1, "a", "bc", "{}", "t")
        );
    }
}
