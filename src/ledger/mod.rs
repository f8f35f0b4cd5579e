//! The ledger over the audit trail (the tree's tables are the store's: `store::ledger`): the
//! checkpoint task (`checkpoints`), the proofs served (`proofs`), and what `verify` checks as
//! it reads the log (`verify`, pure).

pub mod checkpoints;
pub mod proofs;
pub mod verify;
