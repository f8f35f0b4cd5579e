//! The snapshots of the read projection (`migrations/*/0007_snapshots.sql`), written once over
//! `Dialect`. The store only keeps them: what they hold and whether one may be used is
//! `crate::snapshots`' business.

use async_trait::async_trait;
use chrono::Utc;
use sqlx::{ColumnIndex, Database, Executor, IntoArguments, Row as _};

use crate::store::StoreError;
use crate::store::dialect::{Dialect, Row, Value, query};

/// One snapshot as stored: its header's fields and its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSnapshot {
    /// The last log position folded in.
    pub position: i64,
    /// The ledger's tree size whose last leaf is the event at `position`, and its root then.
    pub tree_size: i64,
    pub tree_root: Vec<u8>,
    pub users: i64,
    pub sessions: i64,
    pub body_digest: Vec<u8>,
    pub authenticator: Vec<u8>,
    pub body: Vec<u8>,
}

#[async_trait]
pub trait SnapshotStore: Send + Sync + 'static {
    /// Stores `snapshot` (in place of one at its position), then drops all but the newest
    /// `keep`.
    async fn save_snapshot(&self, snapshot: &StoredSnapshot, keep: usize)
    -> Result<(), StoreError>;

    /// The positions of the stored snapshots, newest first.
    async fn snapshot_positions(&self) -> Result<Vec<i64>, StoreError>;

    /// The snapshot at `position`, if one is stored.
    async fn snapshot_at(&self, position: i64) -> Result<Option<StoredSnapshot>, StoreError>;
}

const COLUMNS: &str =
    "position, tree_size, tree_root, users, sessions, body_digest, authenticator, body";

fn snapshot<D: Dialect>(row: &Row<D>) -> Result<StoredSnapshot, sqlx::Error>
where
    i64: Value<D::Db>,
    Vec<u8>: Value<D::Db>,
    usize: ColumnIndex<Row<D>>,
{
    Ok(StoredSnapshot {
        position: row.try_get(0)?,
        tree_size: row.try_get(1)?,
        tree_root: row.try_get(2)?,
        users: row.try_get(3)?,
        sessions: row.try_get(4)?,
        body_digest: row.try_get(5)?,
        authenticator: row.try_get(6)?,
        body: row.try_get(7)?,
    })
}

#[async_trait]
impl<D: Dialect> SnapshotStore for D
where
    for<'c> &'c sqlx::Pool<D::Db>: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    i64: Value<D::Db>,
    String: Value<D::Db>,
    Vec<u8>: Value<D::Db>,
    usize: ColumnIndex<Row<D>>,
{
    async fn save_snapshot(
        &self,
        snapshot: &StoredSnapshot,
        keep: usize,
    ) -> Result<(), StoreError> {
        query::<D>(&format!(
            "INSERT INTO snapshots ({COLUMNS}, made_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (position) DO UPDATE SET tree_size = excluded.tree_size, \
             tree_root = excluded.tree_root, users = excluded.users, \
             sessions = excluded.sessions, body_digest = excluded.body_digest, \
             authenticator = excluded.authenticator, body = excluded.body, \
             made_at = excluded.made_at"
        ))
        .bind(snapshot.position)
        .bind(snapshot.tree_size)
        .bind(snapshot.tree_root.clone())
        .bind(snapshot.users)
        .bind(snapshot.sessions)
        .bind(snapshot.body_digest.clone())
        .bind(snapshot.authenticator.clone())
        .bind(snapshot.body.clone())
        .bind(Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        .execute(self.writer())
        .await?;
        query::<D>(
            "DELETE FROM snapshots WHERE position NOT IN \
             (SELECT position FROM snapshots ORDER BY position DESC LIMIT ?)",
        )
        .bind(keep.max(1) as i64)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn snapshot_positions(&self) -> Result<Vec<i64>, StoreError> {
        let rows = sqlx::query("SELECT position FROM snapshots ORDER BY position DESC")
            .fetch_all(self.reader())
            .await?;
        Ok(rows
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()?)
    }

    async fn snapshot_at(&self, position: i64) -> Result<Option<StoredSnapshot>, StoreError> {
        let row = query::<D>(&format!(
            "SELECT {COLUMNS} FROM snapshots WHERE position = ?"
        ))
        .bind(position)
        .fetch_optional(self.reader())
        .await?;
        Ok(row.as_ref().map(snapshot::<D>).transpose()?)
    }
}
