//! `tokenledger snapshot`: a snapshot of the sessions projection, made from the newest one that
//! verifies and the log after it (or the whole log), stored where a start looks for it.

use std::sync::{Arc, RwLock};

use tokenledger_projections::ActiveSessions;

use super::forensics::{ledger_key, open};
use crate::catch_up::fold_into;
use crate::config::Config;
use crate::snapshots::{SnapshotKey, Snapshots};
use crate::store::StoreKeys;

pub async fn snapshot(config: &Config) -> anyhow::Result<()> {
    let opened = open(config).await?;
    let snapshots = Snapshots {
        events: opened.events.clone(),
        ledger: opened.ledger.clone(),
        kept: opened.snapshots.clone(),
        key: SnapshotKey::derive(ledger_key(config)?, &StoreKeys::of(config)?.personal),
    };
    let projection = Arc::new(RwLock::new(ActiveSessions::new()));
    let from = match snapshots.load_newest().await? {
        Some(loaded) => {
            *projection.write().unwrap_or_else(|p| p.into_inner()) = loaded.projection;
            loaded.position
        }
        None => 0,
    };
    let (reached, folded) =
        fold_into(opened.events.as_ref(), &projection, from, &mut |_, _| {}).await?;
    let taken = snapshots.take(&projection, reached).await;
    opened.events.close().await;
    let Some(taken) = taken? else {
        say!("no snapshot: the log is empty");
        return Ok(());
    };
    let digest = projection
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .digest();
    say!(
        "snapshot: position {}, tree size {}, {} users, {} sessions, {} bytes in {:.3} s \
         (from {}, {folded} events folded)",
        taken.position,
        taken.tree_size,
        taken.users,
        taken.sessions,
        taken.bytes,
        taken.elapsed.as_secs_f64(),
        if from > 0 {
            format!("the snapshot at {from}")
        } else {
            "the whole log".to_owned()
        }
    );
    say!("digest: {}", hex::encode(digest));
    Ok(())
}
