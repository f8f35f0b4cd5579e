//! The tamper-evident chain: each event's hash covers its predecessor's hash and every stored
//! field, so altering, dropping or reordering an event breaks every hash after it.
//!
//! Events are chained with HMAC-SHA256 under the ledger key, which is kept outside the
//! database: whoever can write the database but lacks the key can neither edit an event nor
//! insert one that verifies. Logs written before the key existed keep their plain SHA-256
//! hashes; the `LedgerKeyed` event that opened the keyed part seals them (see `ledger`).

use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::config::KeyBytes;

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
    /// The body of a row written since personal data is sealed (its payload and metadata
    /// are then empty); `None` before.
    pub body: Option<&'a [u8]>,
}

/// The message an event's hash covers: `prev_hash ‖ stream_id ‖ event_type ‖ payload ‖
/// metadata ‖ recorded_at ‖ stream_version ‖ schema_version [‖ body]`. Variable-length fields
/// are length-prefixed so that no two different events can concatenate to the same bytes; a
/// row with a body has an empty payload, which no JSON row has.
fn feed(prev_hash: &[u8], event: &Hashed, mut update: impl FnMut(&[u8])) {
    update(prev_hash);
    for field in [
        event.stream_id.as_bytes(),
        event.event_type.as_bytes(),
        event.payload.as_bytes(),
        event.metadata.as_bytes(),
        event.recorded_at.as_bytes(),
    ] {
        update(&(field.len() as u64).to_be_bytes());
        update(field);
    }
    update(&event.stream_version.to_be_bytes());
    update(&event.schema_version.to_be_bytes());
    if let Some(body) = event.body {
        update(&(body.len() as u64).to_be_bytes());
        update(body);
    }
}

/// The unkeyed hash of events written before the ledger key: plain SHA-256 of the message.
pub fn chain_hash(prev_hash: &[u8], event: &Hashed) -> Vec<u8> {
    let mut hasher = Sha256::new();
    feed(prev_hash, event, |bytes| hasher.update(bytes));
    hasher.finalize().to_vec()
}

/// `f` of a stored event's fields as its hash covers them (`recorded_at` as the text hashed;
/// a body row's payload and metadata as stored, empty, not as a read fills them in).
pub fn with_hashed<T>(event: &super::RecordedEvent, f: impl FnOnce(&Hashed) -> T) -> T {
    let recorded_at = event
        .recorded_at
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    let (payload, metadata) = match event.body {
        Some(_) => ("", ""),
        None => (event.payload.as_str(), event.metadata.as_str()),
    };
    f(&Hashed {
        stream_id: &event.stream_id,
        stream_version: event.stream_version,
        event_type: &event.event_type,
        schema_version: event.schema_version,
        payload,
        metadata,
        recorded_at: &recorded_at,
        body: event.body.as_deref(),
    })
}

/// The ledger key: chains every event written since the log was keyed.
#[derive(Clone)]
pub struct ChainKey(hmac::Hmac<Sha256>);

impl ChainKey {
    pub fn new(key: &KeyBytes) -> ChainKey {
        ChainKey(
            hmac::Hmac::<Sha256>::new_from_slice(key.expose())
                .expect("HMAC takes keys of any length"),
        )
    }

    /// `HMAC-SHA256(ledger key, message)`.
    pub fn hash(&self, prev_hash: &[u8], event: &Hashed) -> Vec<u8> {
        let mut mac = self.0.clone();
        feed(prev_hash, event, |bytes| mac.update(bytes));
        mac.finalize().into_bytes().to_vec()
    }

    /// A name for the key that reveals nothing of it: the first 8 bytes of its HMAC of a
    /// fixed label, in hex. The `LedgerKeyed` event records it, so a verifier given the
    /// wrong key says so instead of calling every event forged.
    pub fn id(&self) -> String {
        let mut mac = self.0.clone();
        mac.update(b"tokenledger ledger key id");
        hex::encode(&mac.finalize().into_bytes()[..8])
    }
}

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainKey(…)")
    }
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
                body: None,
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

/// The stream of the ledger's own events (`LedgerKeyed`), which no user stream can be.
pub const LEDGER_STREAM: &str = "ledger";
/// The event that opened the keyed part of a log written before the ledger key existed.
pub const LEDGER_KEYED: &str = "LedgerKeyed";

/// Whether `event` is the seal of a log's unkeyed prefix (see `ledger::seal`).
pub fn is_seal(stream_id: &str, stream_version: i64, event_type: &str) -> bool {
    stream_id == LEDGER_STREAM && stream_version == 1 && event_type == LEDGER_KEYED
}

/// Where the log's hash chain breaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broken {
    pub position: i64,
    pub stream_id: String,
    pub stream_version: i64,
    pub why: &'static str,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "position {} (stream {}, version {}): {}",
            self.position, self.stream_id, self.stream_version, self.why
        )
    }
}

/// Recomputes every stream's chain as the log is read in position order. Events before the
/// seal (a log's unkeyed prefix) must carry plain SHA-256 hashes; the seal and every event
/// after it, or every event of a log that has no seal, the ledger key's HMAC.
#[derive(Debug)]
pub struct ChainVerifier {
    key: ChainKey,
    heads: std::collections::HashMap<String, (i64, Vec<u8>)>,
    events: u64,
    sealed: bool,
    /// Whether an event under the key was read: no unkeyed one may follow.
    keyed: bool,
    /// The first unkeyed event, which a seal must follow.
    first_unkeyed: Option<Broken>,
}

impl ChainVerifier {
    pub fn new(key: ChainKey) -> ChainVerifier {
        ChainVerifier {
            key,
            heads: Default::default(),
            events: 0,
            sealed: false,
            keyed: false,
            first_unkeyed: None,
        }
    }

    pub fn check(&mut self, event: &super::RecordedEvent) -> Result<(), Broken> {
        let broken = |why| Broken {
            position: event.position,
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
        let (keyed, unkeyed) = with_hashed(event, |hashed| {
            (self.key.hash(&prev, hashed), chain_hash(&prev, hashed))
        });
        let seal = is_seal(&event.stream_id, event.stream_version, &event.event_type);
        if seal && self.sealed {
            return Err(broken("a second LedgerKeyed event"));
        }
        if event.hash == keyed {
            self.keyed = true;
        } else if !self.keyed && !seal && unkeyed == event.hash {
            // Valid only in a prefix that a seal closes (`finish`).
            self.first_unkeyed.get_or_insert_with(|| {
                broken("hashed without the ledger key, and no LedgerKeyed event seals it: rewritten without the key, or written by an older version and never opened by this one (run `tokenledger migrate`)")
            });
        } else if !self.keyed && !seal && self.events == 0 {
            return Err(broken(
                "the event's content does not match its hash, keyed or not (or LEDGER_KEY is not the key this log was written with)",
            ));
        } else {
            return Err(broken(
                "the event's content does not match its hash under the ledger key",
            ));
        }
        self.sealed |= seal;
        self.heads.insert(
            event.stream_id.clone(),
            (event.stream_version, event.hash.clone()),
        );
        self.events += 1;
        Ok(())
    }

    /// After the last event: unkeyed events with no seal after them were written (or
    /// rewritten) without the key.
    pub fn finish(&self) -> Result<(), Broken> {
        match &self.first_unkeyed {
            Some(first) if !self.sealed => Err(first.clone()),
            _ => Ok(()),
        }
    }

    /// (events checked, streams seen)
    pub fn totals(&self) -> (u64, usize) {
        (self.events, self.heads.len())
    }
}
