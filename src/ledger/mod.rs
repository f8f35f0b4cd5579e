//! The transparency log's pure parts: the Merkle tree over the audit trail and its proofs
//! (`merkle`), and the signed checkpoints that commit to a tree's size and root (`note`).
//! No IO and no async here, so that both can be checked against published test vectors and
//! reused by `tokenledger verify` without a database.

pub mod merkle;
pub mod note;
