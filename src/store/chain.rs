//! The tamper-evident chain: each event's hash covers its predecessor's hash and every stored
//! field, so altering, dropping or reordering an event breaks every hash after it.

use sha2::{Digest, Sha256};

/// What the hash of one event covers: every stored field but the position (a backend's
/// numbering, which may have gaps) and the hashes themselves.
pub struct Hashed<'a> {
    pub stream_id: &'a str,
    pub stream_version: i64,
    pub event_type: &'a str,
    pub schema_version: i16,
    pub payload: &'a str,
    pub metadata: &'a str,
    /// RFC 3339 with microseconds, as stored.
    pub recorded_at: &'a str,
}

/// `SHA-256(prev_hash ‖ stream_id ‖ stream_version ‖ event_type ‖ schema_version ‖ payload ‖
/// metadata ‖ recorded_at)`. Variable-length fields are length-prefixed so that no two
/// different events can concatenate to the same bytes.
pub fn chain_hash(prev_hash: &[u8], event: &Hashed) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash);
    for field in [
        event.stream_id.as_bytes(),
        event.event_type.as_bytes(),
        event.payload.as_bytes(),
        event.metadata.as_bytes(),
        event.recorded_at.as_bytes(),
    ] {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field);
    }
    hasher.update(event.stream_version.to_be_bytes());
    hasher.update(event.schema_version.to_be_bytes());
    hasher.finalize().to_vec()
}

/// The `prev_hash` of a stream's first event.
pub const GENESIS: [u8; 32] = [0; 32];

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(prev: &[u8], version: i64, event_type: &str, schema: i16, payload: &str) -> Vec<u8> {
        chain_hash(
            prev,
            &Hashed {
                stream_id: "user-1",
                stream_version: version,
                event_type,
                schema_version: schema,
                payload,
                metadata: "{}",
                recorded_at: "t",
            },
        )
    }

    #[test]
    fn any_changed_field_changes_the_hash() {
        let base = hash(&GENESIS, 1, "TokenIssued", 1, "{}");
        assert_eq!(base, hash(&GENESIS, 1, "TokenIssued", 1, "{}"));
        assert_ne!(base, hash(&[1; 32], 1, "TokenIssued", 1, "{}"));
        assert_ne!(base, hash(&GENESIS, 2, "TokenIssued", 1, "{}"));
        assert_ne!(base, hash(&GENESIS, 1, "TokenIssued", 2, "{}"));
        assert_ne!(base, hash(&GENESIS, 1, "TokenIssued", 1, "{ }"));
        // Moving bytes between fields must not collide.
        assert_ne!(
            hash(&GENESIS, 1, "ab", 1, "c"),
            hash(&GENESIS, 1, "a", 1, "bc")
        );
    }
}

/// Where a stream's hash chain breaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broken {
    pub stream_id: String,
    pub stream_version: i64,
    pub why: &'static str,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stream {} breaks at version {}: {}",
            self.stream_id, self.stream_version, self.why
        )
    }
}

/// Recomputes every stream's chain as the log is read in position order.
#[derive(Debug, Default)]
pub struct ChainVerifier {
    heads: std::collections::HashMap<String, (i64, Vec<u8>)>,
    events: u64,
}

impl ChainVerifier {
    pub fn check(&mut self, event: &super::RecordedEvent) -> Result<(), Broken> {
        let broken = |why| Broken {
            stream_id: event.stream_id.clone(),
            stream_version: event.stream_version,
            why,
        };
        let (version, prev) = self
            .heads
            .get(&event.stream_id)
            .cloned()
            .unwrap_or((0, GENESIS.to_vec()));
        if event.stream_version != version + 1 {
            return Err(broken("a version is missing or out of order"));
        }
        if event.prev_hash != prev {
            return Err(broken("prev_hash does not match the previous event's hash"));
        }
        let recorded_at = event
            .recorded_at
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string();
        let expected = chain_hash(
            &prev,
            &Hashed {
                stream_id: &event.stream_id,
                stream_version: event.stream_version,
                event_type: &event.event_type,
                schema_version: event.schema_version,
                payload: &event.payload,
                metadata: &event.metadata,
                recorded_at: &recorded_at,
            },
        );
        if event.hash != expected {
            return Err(broken("the event's content does not match its hash"));
        }
        self.heads
            .insert(event.stream_id.clone(), (event.stream_version, expected));
        self.events += 1;
        Ok(())
    }

    /// (events checked, streams seen)
    pub fn totals(&self) -> (u64, usize) {
        (self.events, self.heads.len())
    }
}
