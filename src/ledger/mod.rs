//! The transparency log over the audit trail. Pure: the Merkle tree and its proofs
//! (`merkle`), the signed checkpoints that commit to a tree's size and root (`note`), and
//! what `verify` checks as it reads the log (`verify`). Around them: the ledger's tables
//! (`store`), the checkpoint task (`checkpoints`) and the proofs served (`proofs`).

pub mod checkpoints;
pub mod merkle;
pub mod note;
pub mod proofs;
pub mod store;
pub mod verify;
