//! The transparency log's primitives, pure (no IO, no async) and checked against published
//! test vectors: the RFC 9162 Merkle tree and its proofs (`merkle`), and the C2SP signed
//! notes and checkpoints that commit to a tree's size and root (`note`). The store keeps the
//! tree with them; the ledger (`crate::ledger`) signs, serves and verifies with them.

pub mod merkle;
pub mod note;
