//! Inclusion and consistency proofs as the admin API and `tokenledger ledger prove` answer
//! them, and their offline check (`tokenledger ledger verify-proof`).

use serde::{Deserialize, Serialize};

use crate::store::ledger::{LedgerStore, TreeHead};
use crate::store::{RecordedEvent, StoreError};
use crate::tlog::merkle::{
    Hash, Needs, ProofError, consistency_needs, consistency_proof, inclusion_needs,
    inclusion_proof, leaf_hash, subtree_needs, subtree_root, verify_inclusion,
};
use crate::tlog::note::{VerifierKey, open};

/// One event's inclusion in the tree of `tree_size` leaves, with the event itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InclusionProof {
    /// The event's leaf: its 0-based place in position order.
    pub index: u64,
    pub tree_size: u64,
    /// `SHA-256(0x00 ‖ the event's chain hash)`, hex.
    pub leaf_hash: String,
    /// Sibling hashes from the leaf up, hex: at most ⌈log2 tree_size⌉.
    pub audit_path: Vec<String>,
    pub root_hash: String,
    #[schema(value_type = Object)]
    pub event: serde_json::Value,
}

/// That the tree of `to` leaves extends the tree of `from` leaves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    pub from_root: String,
    pub to_root: String,
    pub proof: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProveError {
    #[error("no event at position {0}")]
    NoEvent(i64),
    #[error("the tree has {tree} events; {asked} is beyond it")]
    BeyondTree { asked: u64, tree: u64 },
    #[error("the event at position {position} is leaf {index}, not in a tree of size {size}")]
    NotInTree {
        position: i64,
        index: u64,
        size: u64,
    },
    #[error("the ledger's tables are incomplete: {0}")]
    Proof(#[from] ProofError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The event as a proof shows it: every stored field, the hashes in hex.
pub fn event_json(event: &RecordedEvent) -> serde_json::Value {
    let json = |text: &str| serde_json::from_str(text).unwrap_or(serde_json::Value::Null);
    serde_json::json!({
        "position": event.position,
        "stream_id": event.stream_id,
        "stream_version": event.stream_version,
        "event_type": event.event_type,
        "schema_version": event.schema_version,
        "payload": json(&event.payload),
        "metadata": json(&event.metadata),
        "recorded_at": event.recorded_at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        "prev_hash": hex::encode(&event.prev_hash),
        "hash": hex::encode(&event.hash),
    })
}

/// Whether a request for the tree of `asked` leaves (none: the whole tree, newest events
/// included) must extend `tree` first.
fn must_extend(tree: &TreeHead, asked: Option<u64>) -> bool {
    asked.is_none_or(|size| size > tree.size)
}

/// The size a request names, checked against `tree`, and the root at that size when it is
/// the tree's own (else the proof computes it).
fn settle(tree: &TreeHead, asked: Option<u64>) -> Result<(u64, Option<Hash>), ProveError> {
    match asked {
        Some(size) if size > tree.size => Err(ProveError::BeyondTree {
            asked: size,
            tree: tree.size,
        }),
        Some(size) if size < tree.size => Ok((size, None)),
        _ => Ok((tree.size, Some(tree.root))),
    }
}

/// `needs` and what computing `0..size`'s root reads besides, for a root not at hand.
fn with_root(mut needs: Needs, size: u64) -> Needs {
    let more = subtree_needs(0, size);
    needs.leaves.extend(more.leaves);
    needs.leaves.sort_by_key(|r| r.start);
    needs.nodes.extend(more.nodes);
    needs
}

/// The event at `position` and its inclusion in the tree of `size` (default: the whole tree).
pub async fn inclusion(
    ledger: &dyn LedgerStore,
    position: i64,
    size: Option<u64>,
) -> Result<InclusionProof, ProveError> {
    let mut located = ledger
        .locate(position)
        .await?
        .ok_or(ProveError::NoEvent(position))?;
    if must_extend(&located.tree, size) || located.leaf.is_none() {
        ledger.extend(&mut |_| {}).await?;
        located = ledger
            .locate(position)
            .await?
            .ok_or(ProveError::NoEvent(position))?;
    }
    let (size, root) = settle(&located.tree, size)?;
    let index = located
        .leaf
        .filter(|index| *index < size)
        .ok_or(ProveError::NotInTree {
            position,
            index: located.leaf.unwrap_or(u64::MAX),
            size,
        })?;
    let needs = inclusion_needs(index, size);
    let needs = if root.is_none() {
        with_root(needs, size)
    } else {
        needs
    };
    let fetched = ledger.fetch(&needs, located.span).await?;
    let path = inclusion_proof(index, size, &fetched)?;
    let root = match root {
        Some(root) => root,
        None => subtree_root(0, size, &fetched)?,
    };
    let event = &located.event;
    Ok(InclusionProof {
        index,
        tree_size: size,
        leaf_hash: hex::encode(leaf_hash(&event.hash)),
        audit_path: path.iter().map(hex::encode).collect(),
        root_hash: hex::encode(root),
        event: event_json(event),
    })
}

/// That the tree of `to` leaves extends that of `from`.
pub async fn consistency(
    ledger: &dyn LedgerStore,
    from: u64,
    to: u64,
) -> Result<ConsistencyProof, ProveError> {
    let mut tree = ledger.tree().await?;
    if must_extend(&tree, Some(to)) {
        tree = ledger.extend(&mut |_| {}).await?;
    }
    let (to, _) = settle(&tree, Some(to))?;
    let needs = with_root(with_root(consistency_needs(from, to), from), to);
    let fetched = ledger.fetch(&needs, None).await?;
    Ok(ConsistencyProof {
        from,
        to,
        from_root: hex::encode(subtree_root(0, from, &fetched)?),
        to_root: hex::encode(subtree_root(0, to, &fetched)?),
        proof: consistency_proof(from, to, &fetched)?
            .iter()
            .map(hex::encode)
            .collect(),
    })
}

fn hash_of(text: &str, what: &str) -> Result<Hash, String> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(text, &mut hash).map_err(|_| format!("{what} is not 64 hex digits"))?;
    Ok(hash)
}

/// `tokenledger ledger verify-proof`: the proof's event is in the tree the checkpoint signed.
/// Needs no database: what an outside auditor runs. Returns what was proven, for the output.
pub fn verify_offline(key: &str, checkpoint: &str, proof: &str) -> Result<String, String> {
    let key = VerifierKey::parse(key.trim()).map_err(|e| format!("--key: {e}"))?;
    let checkpoint = open(checkpoint, &key).map_err(|e| format!("--checkpoint: {e}"))?;
    let proof: InclusionProof =
        serde_json::from_str(proof).map_err(|e| format!("--proof: not a proof: {e}"))?;
    if proof.tree_size != checkpoint.size {
        return Err(format!(
            "the proof is for a tree of {} events, the checkpoint for {}: ask for the proof with --size {}",
            proof.tree_size, checkpoint.size, checkpoint.size
        ));
    }
    let chain_hash = proof.event["hash"]
        .as_str()
        .ok_or("--proof: the event has no hash")?;
    let chain_hash = hex::decode(chain_hash).map_err(|_| "--proof: the event's hash is not hex")?;
    let leaf = leaf_hash(&chain_hash);
    if hex::encode(leaf) != proof.leaf_hash {
        return Err("the proof's leaf hash is not the event's".to_owned());
    }
    let path = proof
        .audit_path
        .iter()
        .map(|h| hash_of(h, "an audit path hash"))
        .collect::<Result<Vec<_>, _>>()?;
    if !verify_inclusion(&leaf, proof.index, proof.tree_size, &path, &checkpoint.root) {
        return Err(format!(
            "the event is not in the tree the checkpoint signed (leaf {}, size {})",
            proof.index, proof.tree_size
        ));
    }
    Ok(format!(
        "ok: the event at position {} is leaf {} of the {} events that {} signed",
        proof.event["position"],
        proof.index,
        checkpoint.size,
        key.name()
    ))
}
