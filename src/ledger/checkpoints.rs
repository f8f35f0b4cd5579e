//! Signed checkpoints: every `CHECKPOINT_INTERVAL` the tree is extended and, if it grew, its
//! head is signed (C2SP tlog-checkpoint), stored, appended to `CHECKPOINT_FILE` and queued for
//! `CHECKPOINT_WEBHOOK_URL`. Nothing of this runs in a request's path.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::config::{KeyBytes, LedgerConfig};
use crate::store::StoreError;
use crate::store::ledger::{LedgerStore, TreeHead};
use crate::tlog::note::{Checkpoint, SigningKey, VerifierKey, open};

/// The signing key named by `LEDGER_ORIGIN`, or by default `tokenledger/` and the first 8
/// bytes of SHA-256 of its public key: stable, and distinct for each deployment.
pub fn signing_key(config: &LedgerConfig) -> anyhow::Result<SigningKey> {
    let seed: &KeyBytes = config
        .checkpoint_key
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("CHECKPOINT_KEY is not set"))?;
    let name = match &config.origin {
        Some(origin) => origin.clone(),
        None => {
            let public = ed25519_dalek::SigningKey::from_bytes(seed.expose()).verifying_key();
            format!(
                "tokenledger/{}",
                hex::encode(&Sha256::digest(public.as_bytes())[..8])
            )
        }
    };
    Ok(SigningKey::from_seed(&name, seed.expose())?)
}

/// Makes, keeps and sends the checkpoints of one ledger.
pub struct Checkpointer {
    ledger: Arc<dyn LedgerStore>,
    key: SigningKey,
    verifier: VerifierKey,
    file: Option<PathBuf>,
    webhook: Option<mpsc::Sender<String>>,
    /// The tree size of the last checkpoint this process handed to the file and webhook: a
    /// failed append is tried again at the next interval, not skipped for good.
    published: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{file}: {source}")]
    File {
        file: String,
        source: std::io::Error,
    },
}

impl Checkpointer {
    pub fn new(ledger: Arc<dyn LedgerStore>, key: SigningKey, file: Option<PathBuf>) -> Self {
        let verifier = VerifierKey::parse(&key.verifier_key()).expect("our own key reads back");
        Checkpointer {
            ledger,
            key,
            verifier,
            file,
            webhook: None,
            published: AtomicU64::new(0),
        }
    }

    /// Also posts each new checkpoint to `url`, from a task of its own.
    pub fn with_webhook(mut self, url: String) -> Self {
        let (queue, queued) = mpsc::channel(1024);
        tokio::spawn(post_all(url, queued));
        self.webhook = Some(queue);
        self
    }

    pub fn verifier_key(&self) -> String {
        self.key.verifier_key()
    }

    pub fn ledger(&self) -> &Arc<dyn LedgerStore> {
        &self.ledger
    }

    /// The latest checkpoint, made first if the log grew since: `(tree, note)`.
    pub async fn checkpoint(&self) -> Result<(TreeHead, String), CheckpointError> {
        let tree = self.ledger.extend(&mut |_| {}).await?;
        let note = match self.ledger.latest_checkpoint().await? {
            // A note another key signed (the key was rotated) is not ours to hand out.
            Some((size, note)) if size == tree.size && self.open(&note).is_ok() => note,
            _ => self.sign(&tree).await?,
        };
        if tree.size > self.published.load(Ordering::Acquire) {
            self.publish(&note)?;
            self.published.fetch_max(tree.size, Ordering::AcqRel);
        }
        Ok((tree, note))
    }

    /// Signs the tree's head and stores it; the empty tree is answered, not kept: it commits
    /// to nothing.
    async fn sign(&self, tree: &TreeHead) -> Result<String, CheckpointError> {
        let note = self
            .key
            .sign_checkpoint(&Checkpoint {
                origin: self.key.name().to_owned(),
                size: tree.size,
                root: tree.root,
                extensions: Vec::new(),
            })
            .expect("an origin that config accepted, a size and a root always read back");
        if tree.size > 0 {
            self.ledger.add_checkpoint(tree.size, &note).await?;
        }
        Ok(note)
    }

    fn publish(&self, note: &str) -> Result<(), CheckpointError> {
        if let Some(path) = &self.file {
            append(path, note).map_err(|source| CheckpointError::File {
                file: path.display().to_string(),
                source,
            })?;
        }
        if let Some(queue) = &self.webhook
            && queue.try_send(note.to_owned()).is_err()
        {
            tracing::warn!("checkpoint webhook queue full: a checkpoint was not sent");
        }
        Ok(())
    }

    /// Makes a checkpoint every `interval` while the log grows, until the task is dropped.
    pub fn spawn(self: Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if let Err(error) = self.checkpoint().await {
                    tracing::error!(%error, "checkpoint failed; retried at the next interval");
                }
            }
        })
    }

    /// Opens a checkpoint note with this ledger's key.
    pub fn open(&self, note: &str) -> Result<Checkpoint, crate::tlog::note::NoteError> {
        open(note, &self.verifier)
    }
}

/// Appends a note to the checkpoint file and syncs it: a witness copy that an insider
/// editing the database does not touch (when the file lives elsewhere).
fn append(path: &std::path::Path, note: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    // Notes in one file are separated by a blank line (a note's own blank line sits between
    // its text and its signatures; see `notes_in`).
    file.write_all(format!("{note}\n").as_bytes())?;
    file.sync_data()
}

/// The notes of a checkpoint file as `append` writes them (or one note alone).
pub fn notes_in(text: &str) -> Vec<String> {
    let mut notes = Vec::new();
    let mut current = String::new();
    let mut in_signatures = false;
    for line in text.split_inclusive('\n') {
        if line == "\n" {
            if in_signatures {
                notes.push(std::mem::take(&mut current));
                in_signatures = false;
                continue;
            }
            in_signatures = true;
        }
        current.push_str(line);
    }
    if !current.trim().is_empty() {
        notes.push(current);
    }
    notes
}

/// Posts each queued checkpoint, retrying with backoff (1 s doubling to 5 min) until it is
/// accepted; a newer checkpoint supersedes one still failing, since it commits to more.
async fn post_all(url: String, mut queued: mpsc::Receiver<String>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a client without TLS always builds");
    while let Some(mut note) = queued.recv().await {
        let mut wait = Duration::from_secs(1);
        loop {
            while let Ok(newer) = queued.try_recv() {
                note = newer;
            }
            let sent = client
                .post(&url)
                .header("content-type", "text/plain; charset=utf-8")
                .body(note.clone())
                .send()
                .await
                .and_then(|r| r.error_for_status());
            match sent {
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?wait, "checkpoint webhook failed");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(300));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_file_of_appended_notes_then_each_note_reads_back_whole() {
        let one = "o\n1\nAAAA\n\n— o abc=\n";
        let two = "o\n2\nBBBB\n\n— o def=\n— w ghi=\n";
        let file = format!("{one}\n{two}\n");
        assert_eq!(notes_in(&file), vec![one.to_owned(), two.to_owned()]);
        assert_eq!(notes_in(one), vec![one.to_owned()]);
    }
}
