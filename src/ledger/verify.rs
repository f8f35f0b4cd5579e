//! What `tokenledger verify` checks as it reads the log once in position order: the keyed
//! chain, the seal of an unkeyed prefix, and the Merkle tree against every checkpoint it was
//! given (stored ones, files an operator or a witness kept, the tree's own persisted head).

use crate::store::{Broken, ChainKey, ChainVerifier, RecordedEvent, is_seal};
use crate::tlog::merkle::{Frontier, Hash, leaf_hash};

/// A tree head the log must reproduce: its size and root, and where it came from.
#[derive(Clone, Debug)]
pub struct Expected {
    pub size: u64,
    pub root: Hash,
    pub from: String,
}

/// The first thing found wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Finding {
    #[error("{0}")]
    Chain(Broken),
    #[error(
        "position {position}: the LedgerKeyed seal does not match the {found} unkeyed events before it: an event of the log written before the ledger key was changed, removed or inserted"
    )]
    Seal { position: i64, found: u64 },
    #[error(
        "{from} (tree size {size}) does not match the log: an event at or before position {position} was changed, removed, inserted or reordered"
    )]
    Mismatch {
        from: String,
        size: u64,
        position: i64,
    },
    #[error(
        "{from} covers {size} events, the log has {found} (the last at position {position}): events were deleted, or the database is an older copy"
    )]
    Missing {
        from: String,
        size: u64,
        found: u64,
        position: i64,
    },
}

pub struct LedgerVerifier {
    chain: ChainVerifier,
    tree: Frontier,
    /// Smallest first; `next` is the first not yet reached.
    expected: Vec<Expected>,
    next: usize,
    last_position: i64,
    /// Checkpoints matched so far.
    pub matched: usize,
}

impl LedgerVerifier {
    pub fn new(key: ChainKey, mut expected: Vec<Expected>) -> LedgerVerifier {
        expected.sort_by_key(|e| e.size);
        let mut verifier = LedgerVerifier {
            chain: ChainVerifier::new(key),
            tree: Frontier::new(),
            expected,
            next: 0,
            last_position: 0,
            matched: 0,
        };
        // A checkpoint of the empty tree matches before any event.
        let _ = verifier.reach();
        verifier
    }

    pub fn check(&mut self, event: &RecordedEvent) -> Result<(), Finding> {
        self.chain.check(event).map_err(Finding::Chain)?;
        if is_seal(&event.stream_id, event.stream_version, &event.event_type) {
            self.check_seal(event)?;
        }
        self.tree.push(leaf_hash(&event.hash));
        self.last_position = event.position;
        self.reach()
    }

    fn check_seal(&self, event: &RecordedEvent) -> Result<(), Finding> {
        let payload: serde_json::Value = serde_json::from_str(&event.payload).unwrap_or_default();
        let sealed = (
            payload["legacy_events"].as_u64(),
            payload["legacy_root"].as_str(),
        );
        let found = self.tree.size();
        if sealed != (Some(found), Some(hex::encode(self.tree.root()).as_str())) {
            return Err(Finding::Seal {
                position: event.position,
                found,
            });
        }
        Ok(())
    }

    /// Compares every expected head of the tree's current size.
    fn reach(&mut self) -> Result<(), Finding> {
        while let Some(expected) = self.expected.get(self.next) {
            if expected.size != self.tree.size() {
                break;
            }
            if expected.root != self.tree.root() {
                return Err(Finding::Mismatch {
                    from: expected.from.clone(),
                    size: expected.size,
                    position: self.last_position,
                });
            }
            self.matched += 1;
            self.next += 1;
        }
        Ok(())
    }

    /// After the last event: the tree is `(size, root)`.
    pub fn finish(&self) -> Result<(u64, Hash), Finding> {
        self.chain.finish().map_err(Finding::Chain)?;
        if let Some(expected) = self.expected.get(self.next) {
            return Err(Finding::Missing {
                from: expected.from.clone(),
                size: expected.size,
                found: self.tree.size(),
                position: self.last_position,
            });
        }
        Ok((self.tree.size(), self.tree.root()))
    }

    /// (events checked, streams seen)
    pub fn totals(&self) -> (u64, usize) {
        self.chain.totals()
    }
}
