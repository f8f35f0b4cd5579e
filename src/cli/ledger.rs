//! `tokenledger ledger key|checkpoint|prove|verify-proof`: what an operator hands to auditors
//! and witnesses, and what an auditor runs without any database.

use anyhow::Context;

use super::LedgerCommand;
use super::forensics::open;
use crate::config::Config;
use crate::ledger::checkpoints::{Checkpointer, notes_in, signing_key};
use crate::ledger::proofs::{inclusion, verify_offline};

pub async fn run(config: &Config, command: LedgerCommand) -> anyhow::Result<()> {
    match command {
        LedgerCommand::Key => {
            say!("{}", signing_key(&config.ledger)?.verifier_key());
            Ok(())
        }
        LedgerCommand::Checkpoint => {
            let opened = open(config).await?;
            let checkpointer = Checkpointer::new(
                opened.ledger.clone(),
                signing_key(&config.ledger)?,
                config.ledger.checkpoint_file.clone(),
            );
            let (_, note) = checkpointer.checkpoint().await?;
            opened.events.close().await;
            print!("{note}");
            Ok(())
        }
        LedgerCommand::Prove { position, size } => {
            let opened = open(config).await?;
            let proof = inclusion(opened.ledger.as_ref(), position, size).await;
            opened.events.close().await;
            say!("{}", serde_json::to_string_pretty(&proof?)?);
            Ok(())
        }
        LedgerCommand::VerifyProof {
            key,
            checkpoint,
            proof,
        } => {
            let read = |path: &std::path::Path| {
                std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))
            };
            let checkpoints = read(&checkpoint)?;
            // A file CHECKPOINT_FILE collected holds many: the proof names its tree size.
            let proof = read(&proof)?;
            let mut last = Err("the checkpoint file holds no note".to_owned());
            for note in notes_in(&checkpoints).iter().rev() {
                last = verify_offline(&key, note, &proof);
                if last.is_ok() {
                    break;
                }
            }
            let proven = last.map_err(|e| anyhow::anyhow!(e))?;
            say!("{proven}");
            Ok(())
        }
    }
}
