//! The ledger's tables (`migrations/*/0003_ledger.sql`), written once over `Dialect`: the
//! Merkle tree's extension over the log, the reads a proof needs, the checkpoints, and the
//! one-time upgrade of a log written before the ledger key.
//!
//! The tree is extended from its persisted frontier by whoever asks first (the checkpoint
//! task, a proof, `tokenledger ledger checkpoint`): O(log n) an event, never a rescan. One
//! extension runs at a time: SQLite's `BEGIN IMMEDIATE`, an advisory lock on PostgreSQL,
//! where only events below the catch-up horizon are taken, so that an event committed late
//! at a lower position is never passed over and every instance builds the same tree.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::Utc;
use sqlx::{ColumnIndex, Connection, Database, Encode, Executor, IntoArguments, Row as _, Type};

use crate::store::account_log::{append_in, of_user};
use crate::store::dialect::{Conn, Dialect, Row, Value, query};
use crate::store::events::{EventTable, RECORDED_COLUMNS, recorded_columns};
use crate::store::keyring::Keyring;
use crate::store::users::{COLUMNS as USER_COLUMNS, User, user};
use crate::store::{Actor, EventMetadata, registration_of};
use crate::store::{
    ChainKey, LEDGER_KEYED, LEDGER_STREAM, NewContent, NewEvent, RecordedEvent, StoreError,
    with_hashed,
};
use crate::tlog::merkle::{Frontier, Hash, Needs, Node, Source, empty_root, leaf_hash};

/// Events one extension step reads and folds in one transaction.
const STEP: i64 = 20_000;

/// The tree as far as it has been extended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeHead {
    pub size: u64,
    pub root: Hash,
    /// The position of the last event the tree covers (0 for none).
    pub last_position: i64,
}

/// Whether opening may seal a log whose events are not keyed and whose ledger tables are
/// empty. Such a log is either one an older version wrote, or one an insider rewrote without
/// the key (and emptied the tables): sealing it would make the rewrite verify. So it is
/// sealed only when the ledger key is new (made by this start: nothing can have been keyed
/// before it), or when the operator says so (`migrate --seal-legacy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upgrading {
    Seal,
    /// Refuse to open such a log, saying why.
    Refuse,
    /// Change nothing at all: for the commands that only read.
    Leave,
}

impl Upgrading {
    /// For a command that writes: seal only if this start made the ledger key, or the
    /// operator asked.
    pub fn for_writing(config: &crate::config::LedgerConfig) -> Upgrading {
        if config.seal_legacy {
            Upgrading::Seal
        } else {
            Upgrading::Refuse
        }
    }
}

/// What the one-time upgrade did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Upgrade {
    /// The ledger tables were already in use.
    None,
    /// A new, empty log.
    Started,
    /// A log written before the ledger key: its events sealed by `LedgerKeyed`, and each
    /// users row recorded by a `UserRegistered` of its own.
    Sealed { legacy_events: u64, users: u64 },
    /// The tree's row was missing from a keyed log: rebuilt, nothing sealed.
    Rebuilt,
}

/// An event, the leaf it took and the tree it is in (see `LedgerStore::locate`).
#[derive(Clone, Debug)]
pub struct Located {
    pub event: RecordedEvent,
    pub leaf: Option<u64>,
    /// The run of positions the event's leaf is in.
    pub span: Option<Span>,
    pub tree: TreeHead,
}

/// A run of consecutive positions that took consecutive leaves: `(first leaf, first
/// position, count)`, a row of `ledger_spans`.
pub type Span = (i64, i64, i64);

/// Leaf and node hashes fetched for one `Needs`.
#[derive(Debug, Default)]
pub struct Fetched {
    leaves: HashMap<u64, Hash>,
    nodes: HashMap<(u32, u64), Hash>,
}

impl Source for Fetched {
    fn leaf(&self, index: u64) -> Option<Hash> {
        self.leaves.get(&index).copied()
    }

    fn node(&self, level: u32, index: u64) -> Option<Hash> {
        self.nodes.get(&(level, index)).copied()
    }
}

/// The ledger of whichever database was opened.
#[async_trait]
pub trait LedgerStore: Send + Sync + 'static {
    /// Seals a log written before the ledger key, once (see `Upgrade`, `Upgrading`).
    async fn upgrade(&self, upgrading: Upgrading) -> Result<Upgrade, StoreError>;

    /// Extends the tree over every settled event; `progress` hears the size after each step.
    async fn extend(&self, progress: &mut (dyn FnMut(u64) + Send)) -> Result<TreeHead, StoreError>;

    /// The tree as persisted, without extending it.
    async fn tree(&self) -> Result<TreeHead, StoreError>;

    /// The hashes a proof's `Needs` lists. `span`, a run of positions known to the caller
    /// (`Located::span`), saves reading the runs when it covers every leaf needed.
    async fn fetch(&self, needs: &Needs, span: Option<Span>) -> Result<Fetched, StoreError>;

    /// Stores a signed checkpoint, unless one of that size is there already.
    async fn add_checkpoint(&self, size: u64, note: &str) -> Result<(), StoreError>;

    /// Every stored checkpoint, smallest first, as `(size, note)`.
    async fn checkpoints(&self) -> Result<Vec<(u64, String)>, StoreError>;

    /// The stored checkpoint of the largest tree, if any.
    async fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, StoreError>;

    /// The event at `position`, for a proof's answer, with its leaf (if the tree covers it)
    /// and the tree as persisted: one read.
    async fn locate(&self, position: i64) -> Result<Option<Located>, StoreError>;
}

fn corrupt(what: &str) -> StoreError {
    StoreError::from(sqlx::Error::Protocol(format!("ledger: {what}")))
}

fn hash32(bytes: &[u8]) -> Result<Hash, StoreError> {
    bytes
        .try_into()
        .map_err(|_| corrupt("a stored hash is not 32 bytes"))
}

/// Folds `leaves` (position, chain hash) into `frontier`; returns the new stored nodes and
/// the spans to write, `(first_leaf, first_position, count)`: `last_span` (the newest
/// stored one), grown where the positions continue it, then any new ones.
fn fold(
    frontier: &mut Frontier,
    leaves: &[(i64, Vec<u8>)],
    last_span: Option<(i64, i64, i64)>,
) -> (Vec<Node>, Vec<(i64, i64, i64)>) {
    let mut nodes = Vec::new();
    let mut spans: Vec<(i64, i64, i64)> = last_span.into_iter().collect();
    for (position, hash) in leaves {
        let leaf = frontier.size() as i64;
        nodes.extend(frontier.push(leaf_hash(hash)));
        match spans.last_mut() {
            Some((_, first, count)) if *first + *count == *position => *count += 1,
            _ => spans.push((leaf, *position, 1)),
        }
    }
    (nodes, spans)
}

/// The leaf ranges of `needs`, each widened to cover what its 256-leaf block needs.
fn blocks(ranges: &[std::ops::Range<u64>]) -> Vec<std::ops::Range<u64>> {
    let mut blocks: Vec<std::ops::Range<u64>> = Vec::new();
    for range in ranges {
        match blocks.last_mut() {
            Some(last) if last.start / 256 == range.start / 256 => {
                last.start = last.start.min(range.start);
                last.end = last.end.max(range.end);
            }
            _ => blocks.push(range.clone()),
        }
    }
    blocks
}

/// The runs of positions that hold the leaves of `range`: `(first leaf, positions)`.
fn positions(
    spans: &[(i64, i64, i64)],
    range: std::ops::Range<u64>,
) -> Vec<(i64, std::ops::Range<i64>)> {
    let (start, end) = (range.start as i64, range.end as i64);
    spans
        .iter()
        .filter(|(leaf, _, count)| *leaf < end && leaf + count > start)
        .map(|(leaf, first, count)| {
            let (from, to) = (start.max(*leaf), end.min(leaf + count));
            (from, first + from - leaf..first + to - leaf)
        })
        .collect()
}

/// The ledger's statements on dialect `D`, with the bounds sqlx needs stated once.
struct Tables<D>(std::marker::PhantomData<D>);

#[async_trait]
impl<D: Dialect> LedgerStore for D
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    for<'a> &'a str: Encode<'a, D::Db> + Type<D::Db>,
    i64: Value<D::Db>,
    i32: Value<D::Db>,
    i16: Value<D::Db>,
    String: Value<D::Db>,
    Option<String>: Value<D::Db>,
    bool: Value<D::Db>,
    Vec<u8>: Value<D::Db>,
    Option<Vec<u8>>: Value<D::Db>,
    usize: ColumnIndex<Row<D>>,
{
    async fn upgrade(&self, upgrading: Upgrading) -> Result<Upgrade, StoreError> {
        if upgrading == Upgrading::Leave {
            return Ok(Upgrade::None);
        }
        let mut conn = self.writer().acquire().await?;
        let mut tx = conn.begin_with(D::BEGIN).await?;
        if let Some(lock) = D::LOCK_EVENTS {
            sqlx::query(lock).execute(&mut *tx).await?;
        }
        if Tables::<D>::read_tree(&mut tx).await?.is_some() {
            return Ok(Upgrade::None);
        }
        let last = Tables::<D>::last_event(&mut tx).await?;
        let users = Tables::<D>::users(&mut tx).await?;
        // Users but no events, or unkeyed events: what an older version left.
        let legacy = match &last {
            None => !users.is_empty(),
            Some(last) => !keyed(self.chain(), last),
        };
        let upgrade = match (legacy, upgrading) {
            (false, _) if last.is_none() => Upgrade::Started,
            (false, _) => Upgrade::Rebuilt,
            (true, Upgrading::Refuse | Upgrading::Leave) => {
                return Err(corrupt(
                    "the log's events are not keyed and its ledger tables are empty: either an older version wrote it (run `tokenledger migrate --seal-legacy` once to seal those events), or it was rewritten without the ledger key (check it against a checkpoint kept elsewhere first: `tokenledger verify --checkpoint FILE`)",
                ));
            }
            (true, Upgrading::Seal) => {
                let (legacy_events, root) = Tables::<D>::legacy_root(&mut tx).await?;
                if legacy_events > 0 {
                    Tables::<D>::seal(&mut tx, self.chain(), self.keyring(), legacy_events, &root)
                        .await?;
                }
                Tables::<D>::register(&mut tx, self.chain(), self.keyring(), &users).await?;
                Upgrade::Sealed {
                    legacy_events,
                    users: users.len() as u64,
                }
            }
        };
        Tables::<D>::write_tree(&mut tx, &Frontier::new(), 0).await?;
        tx.commit().await?;
        Ok(upgrade)
    }

    async fn extend(&self, progress: &mut (dyn FnMut(u64) + Send)) -> Result<TreeHead, StoreError> {
        loop {
            let (head, read) = Tables::<D>::extend_step(self).await?;
            progress(head.size);
            if read < STEP {
                return Ok(head);
            }
        }
    }

    async fn tree(&self) -> Result<TreeHead, StoreError> {
        let mut conn = self.reader().acquire().await?;
        let (frontier, last_position) = Tables::<D>::read_tree(&mut conn)
            .await?
            .unwrap_or_else(|| (Frontier::new(), 0));
        Ok(TreeHead {
            size: frontier.size(),
            root: frontier.root(),
            last_position,
        })
    }

    async fn fetch(&self, needs: &Needs, span: Option<Span>) -> Result<Fetched, StoreError> {
        let mut fetched = Fetched::default();
        let mut conn = self.reader().acquire().await?;
        // At most two reads whatever the proof: the spans (a few rows) unless the caller's
        // covers every leaf, then every leaf and node at once, a 256-leaf block a range.
        let covered = |(leaf, _, count): Span| {
            needs
                .leaves
                .iter()
                .all(|r| r.start as i64 >= leaf && r.end as i64 <= leaf + count)
        };
        let spans = match span {
            Some(span) if covered(span) => vec![span],
            _ => Tables::<D>::spans(&mut conn).await?,
        };
        let mut ranges = Vec::new();
        for block in blocks(&needs.leaves) {
            ranges.extend(positions(&spans, block));
        }
        Tables::<D>::fetch_hashes(&mut conn, &ranges, &needs.nodes, &mut fetched).await?;
        Ok(fetched)
    }

    async fn add_checkpoint(&self, size: u64, note: &str) -> Result<(), StoreError> {
        query::<D>(
            "INSERT INTO checkpoints (size, note, made_at) VALUES (?, ?, ?) \
             ON CONFLICT (size) DO NOTHING",
        )
        .bind(size as i64)
        .bind(note.to_owned())
        .bind(Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, StoreError> {
        let row = sqlx::query("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1")
            .fetch_optional(self.reader())
            .await?;
        Ok(match row {
            Some(row) => Some((row.try_get::<i64, _>(0)? as u64, row.try_get(1)?)),
            None => None,
        })
    }

    async fn checkpoints(&self) -> Result<Vec<(u64, String)>, StoreError> {
        let rows = sqlx::query("SELECT size, note FROM checkpoints ORDER BY size")
            .fetch_all(self.reader())
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get::<i64, _>(0)? as u64, row.try_get(1)?)))
            .collect()
    }

    async fn locate(&self, position: i64) -> Result<Option<Located>, StoreError> {
        let sql = format!(
            "SELECT {}, s.first_leaf, s.first_position, s.count, t.size, t.root, t.last_position \
             FROM events LEFT JOIN ledger_spans s ON s.first_position <= ?1 \
             AND s.first_position + s.count > ?1 \
             LEFT JOIN ledger_tree t ON t.id = 1 WHERE events.position = ?1",
            recorded_columns::<D>()
        );
        let row = query::<D>(&sql)
            .bind(position)
            .fetch_optional(self.reader())
            .await?;
        let Some(row) = row else { return Ok(None) };
        // The span's and the tree's columns come after the event's.
        const AT: usize = RECORDED_COLUMNS;
        let span: Option<Span> = match (
            row.try_get::<Option<i64>, _>(AT)?,
            row.try_get::<Option<i64>, _>(AT + 1)?,
            row.try_get::<Option<i64>, _>(AT + 2)?,
        ) {
            (Some(leaf), Some(first), Some(count)) => Some((leaf, first, count)),
            _ => None,
        };
        let root: Option<Vec<u8>> = row.try_get(AT + 4)?;
        Ok(Some(Located {
            event: D::recorded(&row)?,
            leaf: span.map(|(leaf, first, _)| (leaf + position - first) as u64),
            span,
            tree: TreeHead {
                size: row.try_get::<Option<i64>, _>(AT + 3)?.unwrap_or(0) as u64,
                root: root.as_deref().map_or(Ok(empty_root()), hash32)?,
                last_position: row.try_get::<Option<i64>, _>(AT + 5)?.unwrap_or(0),
            },
        }))
    }
}

impl<D: Dialect> Tables<D>
where
    for<'c> &'c mut Conn<D>: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    for<'a> &'a str: Encode<'a, D::Db> + Type<D::Db>,
    i64: Value<D::Db>,
    i32: Value<D::Db>,
    i16: Value<D::Db>,
    String: Value<D::Db>,
    Option<String>: Value<D::Db>,
    bool: Value<D::Db>,
    Vec<u8>: Value<D::Db>,
    Option<Vec<u8>>: Value<D::Db>,
    usize: ColumnIndex<Row<D>>,
{
    /// One step of `extend`, in one transaction: at most `STEP` settled events folded in.
    /// Returns the tree after it and how many events it read.
    async fn extend_step(db: &D) -> Result<(TreeHead, i64), StoreError> {
        // Read and hashed outside the write lock, which the appender needs: only the few
        // rows of the result are written under it, if no one extended the tree meanwhile.
        loop {
            let mut conn = db.reader().acquire().await?;
            let (mut frontier, last_position) = Self::read_tree(&mut conn)
                .await?
                .unwrap_or_else(|| (Frontier::new(), 0));
            let leaves = Self::leaves_after(&mut conn, last_position, D::CATCH_UP).await?;
            let head = |frontier: &Frontier, last_position| TreeHead {
                size: frontier.size(),
                root: frontier.root(),
                last_position,
            };
            let Some(&(newest, _)) = leaves.last() else {
                return Ok((head(&frontier, last_position), 0));
            };
            let last_span = Self::last_span(&mut conn).await?;
            drop(conn);
            let (nodes, spans) = fold(&mut frontier, &leaves, last_span);
            let mut writer = db.writer().acquire().await?;
            let mut tx = writer.begin_with(D::BEGIN).await?;
            if let Some(lock) = D::LEDGER_LOCK {
                sqlx::query(lock).execute(&mut *tx).await?;
            }
            let now = Self::read_tree(&mut tx).await?.map_or(0, |(_, p)| p);
            if now != last_position {
                continue; // another extender went first: fold from its tree
            }
            Self::write_nodes(&mut tx, &nodes).await?;
            Self::write_spans(&mut tx, &spans).await?;
            Self::write_tree(&mut tx, &frontier, newest).await?;
            tx.commit().await?;
            return Ok((head(&frontier, newest), leaves.len() as i64));
        }
    }

    /// At most `STEP` events after `position` as `(position, chain hash)`, `filter` added.
    async fn leaves_after(
        conn: &mut Conn<D>,
        position: i64,
        filter: &str,
    ) -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
        let sql = format!(
            "SELECT position, hash FROM events WHERE position > ?{filter} \
             ORDER BY position LIMIT ?"
        );
        let rows = query::<D>(&sql)
            .bind(position)
            .bind(STEP)
            .fetch_all(&mut *conn)
            .await?;
        Ok(rows
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()?)
    }

    async fn read_tree(conn: &mut Conn<D>) -> Result<Option<(Frontier, i64)>, StoreError> {
        let row = sqlx::query("SELECT size, last_position, frontier FROM ledger_tree WHERE id = 1")
            .fetch_optional(&mut *conn)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let size: i64 = row.try_get(0)?;
        let frontier = Frontier::from_bytes(size as u64, &row.try_get::<Vec<u8>, _>(2)?)
            .ok_or_else(|| corrupt("the tree's frontier does not fit its size"))?;
        Ok(Some((frontier, row.try_get(1)?)))
    }

    async fn write_tree(
        conn: &mut Conn<D>,
        frontier: &Frontier,
        last_position: i64,
    ) -> Result<(), StoreError> {
        query::<D>(
            "INSERT INTO ledger_tree (id, size, last_position, root, frontier) \
             VALUES (1, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET size = excluded.size, \
             last_position = excluded.last_position, root = excluded.root, \
             frontier = excluded.frontier",
        )
        .bind(frontier.size() as i64)
        .bind(last_position)
        .bind(frontier.root().to_vec())
        .bind(frontier.to_bytes())
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    async fn last_span(conn: &mut Conn<D>) -> Result<Option<(i64, i64, i64)>, StoreError> {
        let row = sqlx::query(
            "SELECT first_leaf, first_position, count FROM ledger_spans \
             ORDER BY first_leaf DESC LIMIT 1",
        )
        .fetch_optional(&mut *conn)
        .await?;
        Ok(match row {
            Some(row) => Some((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)),
            None => None,
        })
    }

    async fn write_spans(conn: &mut Conn<D>, spans: &[(i64, i64, i64)]) -> Result<(), StoreError> {
        for (leaf, position, count) in spans {
            query::<D>(
                "INSERT INTO ledger_spans (first_leaf, first_position, count) VALUES (?, ?, ?) \
                 ON CONFLICT (first_leaf) DO UPDATE SET count = excluded.count",
            )
            .bind(*leaf)
            .bind(*position)
            .bind(*count)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    async fn write_nodes(conn: &mut Conn<D>, nodes: &[Node]) -> Result<(), StoreError> {
        for chunk in nodes.chunks(1000) {
            let rows = vec!["(?, ?, ?)"; chunk.len()].join(", ");
            let sql = format!(
                "INSERT INTO ledger_nodes (level, idx, hash) VALUES {rows} \
                 ON CONFLICT (level, idx) DO NOTHING"
            );
            let mut insert = query::<D>(&sql);
            for node in chunk {
                insert = insert
                    .bind(node.level as i32)
                    .bind(node.index as i64)
                    .bind(node.hash.to_vec());
            }
            insert.execute(&mut *conn).await?;
        }
        Ok(())
    }

    async fn spans(conn: &mut Conn<D>) -> Result<Vec<(i64, i64, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT first_leaf, first_position, count FROM ledger_spans ORDER BY first_leaf",
        )
        .fetch_all(&mut *conn)
        .await?;
        Ok(rows
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
            .collect::<Result<_, sqlx::Error>>()?)
    }

    /// The leaves of `runs` (`(first leaf, positions)`) and the stored `nodes`, in one read:
    /// a leaf's row has level -1 and its position in the second column.
    async fn fetch_hashes(
        conn: &mut Conn<D>,
        runs: &[(i64, std::ops::Range<i64>)],
        nodes: &[(u32, u64)],
        into: &mut Fetched,
    ) -> Result<(), StoreError> {
        let mut parts: Vec<String> = runs
            .iter()
            .map(|_| {
                "SELECT -1, position, hash FROM events WHERE position >= ? AND position < ?"
                    .to_owned()
            })
            .collect();
        if !nodes.is_empty() {
            let conditions = vec!["(level = ? AND idx = ?)"; nodes.len()].join(" OR ");
            parts.push(format!(
                "SELECT level, idx, hash FROM ledger_nodes WHERE {conditions}"
            ));
        }
        if parts.is_empty() {
            return Ok(());
        }
        let mut select = query::<D>(&parts.join(" UNION ALL "));
        for (_, positions) in runs {
            select = select.bind(positions.start).bind(positions.end);
        }
        for (level, index) in nodes {
            select = select.bind(*level as i32).bind(*index as i64);
        }
        for row in select.fetch_all(&mut *conn).await? {
            let (level, at): (i32, i64) = (row.try_get(0)?, row.try_get(1)?);
            let hash: Vec<u8> = row.try_get(2)?;
            if level < 0 {
                let (leaf, positions) = runs
                    .iter()
                    .find(|(_, positions)| positions.contains(&at))
                    .ok_or_else(|| corrupt("a leaf outside the runs read"))?;
                into.leaves
                    .insert((leaf + at - positions.start) as u64, leaf_hash(&hash));
            } else {
                into.nodes.insert((level as u32, at as u64), hash32(&hash)?);
            }
        }
        Ok(())
    }

    /// The newest event, for the upgrade's question: keyed or not?
    async fn last_event(conn: &mut Conn<D>) -> Result<Option<RecordedEvent>, StoreError> {
        let sql = format!(
            "SELECT {} FROM events ORDER BY position DESC LIMIT 1",
            recorded_columns::<D>()
        );
        let row = query::<D>(&sql).fetch_optional(&mut *conn).await?;
        row.as_ref().map(D::recorded).transpose()
    }

    /// The number of events of a log written before the key, and the root of their tree.
    async fn legacy_root(conn: &mut Conn<D>) -> Result<(u64, Hash), StoreError> {
        let mut frontier = Frontier::new();
        let mut after = 0i64;
        loop {
            let leaves = Self::leaves_after(conn, after, "").await?;
            for (position, hash) in &leaves {
                after = *position;
                frontier.push(leaf_hash(hash));
            }
            if (leaves.len() as i64) < STEP {
                return Ok((frontier.size(), frontier.root()));
            }
        }
    }

    /// The users rows no `UserRegistered` explains: those an older version wrote.
    async fn users(conn: &mut Conn<D>) -> Result<Vec<User>, StoreError> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE 'user-' || id NOT IN \
             (SELECT stream_id FROM events WHERE event_type = 'UserRegistered') ORDER BY id"
        );
        let rows = query::<D>(&sql).fetch_all(&mut *conn).await?;
        Ok(rows.iter().map(user).collect::<Result<_, sqlx::Error>>()?)
    }

    /// A `UserRegistered` for each of `users`, so that the log explains their rows.
    async fn register(
        conn: &mut Conn<D>,
        chain: &ChainKey,
        keyring: &Keyring,
        users: &[User],
    ) -> Result<(), StoreError> {
        let metadata = system();
        let at = chrono::Utc::now();
        for chunk in users.chunks(1000) {
            let appends: Vec<_> = chunk
                .iter()
                .map(|user| of_user(user.id, &registration_of(user, at)))
                .collect();
            append_in::<D>(conn, chain, keyring, &appends, &metadata).await?;
        }
        Ok(())
    }

    /// Appends `LedgerKeyed`, sealing the `legacy_events` unkeyed events before it.
    async fn seal(
        conn: &mut Conn<D>,
        chain: &ChainKey,
        keyring: &Keyring,
        legacy_events: u64,
        root: &Hash,
    ) -> Result<(), StoreError> {
        let payload = serde_json::json!({
            "legacy_events": legacy_events,
            "legacy_root": hex::encode(root),
            "key_id": chain.id(),
        })
        .to_string();
        let seal = NewEvent {
            event_type: LEDGER_KEYED,
            schema_version: 1,
            content: NewContent::Json(payload),
        };
        let seal = [(LEDGER_STREAM.to_owned(), seal)];
        append_in::<D>(conn, chain, keyring, &seal, &system()).await?;
        Ok(())
    }
}

/// What the upgrade's events record: the service itself did it.
fn system() -> EventMetadata {
    EventMetadata {
        actor: Actor::System,
        ..EventMetadata::default()
    }
}

/// Whether the ledger key made `event`'s hash.
fn keyed(chain: &ChainKey, event: &RecordedEvent) -> bool {
    with_hashed(event, |hashed| chain.hash(&event.prev_hash, hashed)) == event.hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_positions_with_a_gap_then_fold_grows_the_last_span_and_starts_another() {
        let mut frontier = Frontier::new();
        let leaves: Vec<(i64, Vec<u8>)> = [1, 2, 3].iter().map(|p| (*p, vec![*p as u8])).collect();
        let (_, spans) = fold(&mut frontier, &leaves, None);
        assert_eq!(spans, vec![(0, 1, 3)]);
        // Position 4 rolled back (PostgreSQL): 5 and 6 take leaves 3 and 4.
        let more: Vec<(i64, Vec<u8>)> = [5, 6].iter().map(|p| (*p, vec![*p as u8])).collect();
        let (_, spans) = fold(&mut frontier, &more, Some((0, 1, 3)));
        assert_eq!(spans, vec![(0, 1, 3), (3, 5, 2)]);
        let next = vec![(7, vec![7u8])];
        let (_, spans) = fold(&mut frontier, &next, Some((3, 5, 2)));
        assert_eq!(spans, vec![(3, 5, 3)]);
        assert_eq!(frontier.size(), 6);
    }

    #[test]
    fn given_a_leaf_range_across_two_spans_then_positions_follow_each() {
        let spans = [(0, 1, 3), (3, 5, 10)];
        assert_eq!(positions(&spans, 1..5), vec![(1, 2..4), (3, 5..7)]);
        assert_eq!(positions(&spans, 4..6), vec![(4, 6..8)]);
        assert!(positions(&spans, 20..30).is_empty());
    }

    #[test]
    fn given_ranges_in_one_block_then_they_are_read_as_one() {
        assert_eq!(blocks(&[0..5, 6..256, 256..300]), vec![0..256, 256..300]);
        let one = vec![10..11, 12..13];
        assert_eq!(blocks(&one), vec![10..13]);
    }
}
