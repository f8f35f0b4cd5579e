//! The transparency log over the audit trail: the Merkle tree and its proofs (`merkle`), the
//! signed checkpoints that commit to a tree's size and root (`note`) — both pure — and their
//! tables (`store`).

pub mod checkpoints;
pub mod merkle;
pub mod note;
pub mod proofs;
pub mod store;
pub mod verify;
