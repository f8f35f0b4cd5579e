//! Snapshots of `ActiveSessions`, so that a start folds only the log's tail (issue 20).
//!
//! A snapshot is the projection as folded through a log position P (every event at or before
//! P, and perhaps some of a user's later ones, which the tail's fold then skips), with the
//! ledger's commitment to the log up to P: the size N of the Merkle tree whose last leaf is
//! the event at P, and the tree's root at N. It is verified, not trusted: its header (P, N,
//! the root, the counts and the body's digest) carries an HMAC under a key derived from the
//! ledger key, which the database never holds. A start checks that P is inside the log, the
//! HMAC, the body's digest and that the log's own tree has that root at N and the event at P
//! as leaf N − 1; a snapshot that fails any is refused with a warning naming why, and the
//! next older one is tried, then the whole log.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chacha20poly1305::aead::{Aead, AeadInOut, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{KeyInit, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokenledger_projections::{ActiveSessions, SnapshotError, decode_chunks};

use crate::catch_up::fold_into;
use crate::config::KeyBytes;
use crate::store::ledger::LedgerStore;
use crate::store::snapshots::{SnapshotStore, StoredSnapshot};
use crate::store::{EventStore, StoreError};
use crate::tlog::merkle::{Hash, subtree_needs, subtree_root};

/// How many snapshots are kept: the newest, and older ones to fall back on.
pub const KEEP: usize = 3;

/// Users encoded together under one read lock, and decoded together.
const USERS_PER_CHUNK: usize = 4096;

/// What a body starts with: its format.
const MAGIC: &[u8; 8] = b"TLSNAP01";

/// The bytes of a body hashed together before their hashes are (see `body_digest`).
const DIGEST_PIECE: usize = 8 << 20;

/// The keys of snapshots, both derived from keys the database never holds: the HMAC of their
/// authenticators from the ledger key, and the cipher of their chunks (which hold IPs, user
/// agents and device names, as sealed in the log) from `PERSONAL_DATA_KEY`.
#[derive(Clone)]
pub struct SnapshotKey {
    mac: hmac::Hmac<Sha256>,
    cipher: XChaCha20Poly1305,
}

/// HMAC-SHA256(key, label): a key of its own for one use of `key`.
fn derived(key: &KeyBytes, label: &[u8]) -> [u8; 32] {
    crate::secrets::hmac_sha256(key.expose(), label)
}

impl SnapshotKey {
    pub fn derive(ledger_key: &KeyBytes, personal_data_key: &KeyBytes) -> SnapshotKey {
        let mac_key = derived(ledger_key, b"tokenledger projection snapshot key v1");
        let cipher_key = derived(
            personal_data_key,
            b"tokenledger projection snapshot cipher v1",
        );
        SnapshotKey {
            mac: hmac::Hmac::<Sha256>::new_from_slice(&mac_key)
                .expect("HMAC takes keys of any length"),
            cipher: XChaCha20Poly1305::new(&cipher_key.into()),
        }
    }

    /// `nonce ‖ ciphertext ‖ tag` of chunk `index`.
    fn encrypt(&self, index: usize, chunk: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        let aad = (index as u64).to_be_bytes();
        let sealed = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: chunk,
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 takes any chunk");
        [&nonce[..], &sealed].concat()
    }

    /// Opens chunk `index` (`nonce ‖ ciphertext ‖ tag`) where it lies: the plaintext takes
    /// the ciphertext's place, so opening a snapshot touches no second copy of its body (on
    /// these machines a start-up's time goes mostly to the kernel zeroing fresh memory).
    fn decrypt_in_place<'b>(&self, index: usize, sealed: &'b mut [u8]) -> Option<&'b [u8]> {
        let (nonce, rest) = sealed.split_first_chunk_mut::<24>()?;
        let (text, tag) = rest.split_at_mut(rest.len().checked_sub(16)?);
        let tag = chacha20poly1305::Tag::try_from(&tag[..]).ok()?;
        let aad = (index as u64).to_be_bytes();
        self.cipher
            .decrypt_inout_detached(&XNonce::from(*nonce), &aad, text.into(), &tag)
            .ok()?;
        Some(text)
    }

    /// The authenticator of a snapshot's header.
    fn authenticate(&self, snapshot: &StoredSnapshot) -> Vec<u8> {
        let mut mac = self.mac.clone();
        mac.update(b"tokenledger projection snapshot v1\n");
        for number in [
            snapshot.position,
            snapshot.tree_size,
            snapshot.users,
            snapshot.sessions,
        ] {
            mac.update(&number.to_be_bytes());
        }
        for bytes in [&snapshot.tree_root, &snapshot.body_digest] {
            mac.update(&(bytes.len() as u64).to_be_bytes());
            mac.update(bytes);
        }
        mac.finalize().into_bytes().to_vec()
    }

    fn verifies(&self, snapshot: &StoredSnapshot) -> bool {
        use subtle::ConstantTimeEq;
        bool::from(self.authenticate(snapshot).ct_eq(&snapshot.authenticator))
    }
}

impl std::fmt::Debug for SnapshotKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SnapshotKey(…)")
    }
}

/// Why a stored snapshot is not used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("its position {position} is beyond the log's end ({head})")]
    BeyondLog { position: i64, head: i64 },
    #[error(
        "its authenticator does not verify: not made with this server's ledger key, or altered"
    )]
    Authenticator,
    #[error("its body does not match its digest: corrupted")]
    Digest,
    #[error("the log does not commit to it: {0}")]
    Commitment(String),
    #[error("its body does not decode: {0}")]
    Body(String),
    #[error("chunk {0} does not open with this server's PERSONAL_DATA_KEY")]
    Sealed(usize),
}

/// A body: `MAGIC`, the count of chunks (u32), then each chunk's length (u64) and bytes.
pub fn frame(chunks: &[Vec<u8>]) -> Vec<u8> {
    let size = chunks.iter().map(|c| c.len() + 8).sum::<usize>() + 12;
    let mut body = Vec::with_capacity(size);
    body.extend_from_slice(MAGIC);
    body.extend_from_slice(&(chunks.len() as u32).to_be_bytes());
    for chunk in chunks {
        body.extend_from_slice(&(chunk.len() as u64).to_be_bytes());
        body.extend_from_slice(chunk);
    }
    body
}

/// The chunks of a body `frame` made, each to be opened where it lies.
pub fn unframe(body: &mut [u8]) -> Result<Vec<&mut [u8]>, Refused> {
    let bad = |why: &str| Refused::Body(why.to_owned());
    if !body.starts_with(MAGIC) {
        return Err(bad("not a snapshot body"));
    }
    let (count, mut rest) = body[MAGIC.len()..]
        .split_first_chunk_mut::<4>()
        .ok_or_else(|| bad("cut short"))?;
    let count = u32::from_be_bytes(*count) as usize;
    let mut chunks = Vec::with_capacity(count.min(rest.len() / 8));
    for _ in 0..count {
        let (length, after) = rest
            .split_first_chunk_mut::<8>()
            .ok_or_else(|| bad("cut short"))?;
        let length = usize::try_from(u64::from_be_bytes(*length)).unwrap_or(usize::MAX);
        if length > after.len() {
            return Err(bad("cut short"));
        }
        let (chunk, after) = after.split_at_mut(length);
        chunks.push(chunk);
        rest = after;
    }
    if !rest.is_empty() {
        return Err(bad("bytes after the last chunk"));
    }
    Ok(chunks)
}

/// SHA-256 over the body's length and the SHA-256 of each `DIGEST_PIECE` bytes of it, the
/// pieces hashed in parallel: every byte counts, and a large body hashes on every core.
pub fn body_digest(body: &[u8]) -> Vec<u8> {
    let pieces: Vec<&[u8]> = body.chunks(DIGEST_PIECE).collect();
    let threads = cores().clamp(1, pieces.len().max(1));
    let per_thread = pieces.len().div_ceil(threads).max(1);
    let hashes: Vec<Vec<[u8; 32]>> = std::thread::scope(|scope| {
        let running: Vec<_> = pieces
            .chunks(per_thread)
            .map(|mine| {
                scope.spawn(move || {
                    mine.iter()
                        .map(|piece| Sha256::digest(piece).into())
                        .collect()
                })
            })
            .collect();
        running
            .into_iter()
            .map(|t| t.join().expect("hashing does not panic"))
            .collect()
    });
    let mut outer = Sha256::new();
    outer.update((body.len() as u64).to_be_bytes());
    for hash in hashes.iter().flatten() {
        outer.update(hash);
    }
    outer.finalize().to_vec()
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// A snapshot of `projection` at `position`, committed to by the tree of `tree_size` leaves
/// with `tree_root`: encoded a batch of users at a time, each under a short read lock, so
/// that the appends folding meanwhile wait for one batch at most.
pub fn seal(
    key: &SnapshotKey,
    projection: &RwLock<ActiveSessions>,
    position: i64,
    tree_size: u64,
    tree_root: Hash,
) -> StoredSnapshot {
    let read = || projection.read().unwrap_or_else(|p| p.into_inner());
    let ids = read().user_ids();
    let mut sessions = 0;
    let chunks: Vec<Vec<u8>> = ids
        .chunks(USERS_PER_CHUNK)
        .enumerate()
        .map(|(index, batch)| {
            let (bytes, held) = read().encode_users(batch);
            sessions += held;
            key.encrypt(index, &bytes)
        })
        .collect();
    let body = frame(&chunks);
    let mut snapshot = StoredSnapshot {
        position,
        tree_size: tree_size as i64,
        tree_root: tree_root.to_vec(),
        users: ids.len() as i64,
        sessions: sessions as i64,
        body_digest: body_digest(&body),
        authenticator: Vec::new(),
        body,
    };
    snapshot.authenticator = key.authenticate(&snapshot);
    snapshot
}

/// The projection in a snapshot whose header verified and which the log commits to: its
/// body's digest checked, then opened in place and decoded on every core.
pub fn open_body(
    key: &SnapshotKey,
    mut snapshot: StoredSnapshot,
) -> Result<ActiveSessions, Refused> {
    if body_digest(&snapshot.body) != snapshot.body_digest {
        return Err(Refused::Digest);
    }
    let chunks = decrypt_all(key, unframe(&mut snapshot.body)?)?;
    decode_chunks(&chunks, cores()).map_err(|e: SnapshotError| Refused::Body(e.to_string()))
}

/// The chunks opened in place, on every core.
fn decrypt_all<'b>(key: &SnapshotKey, sealed: Vec<&'b mut [u8]>) -> Result<Vec<&'b [u8]>, Refused> {
    let per_thread = sealed.len().div_ceil(cores()).max(1);
    let mut sealed = sealed.into_iter().enumerate().collect::<Vec<_>>();
    let opened: Vec<Result<Vec<&[u8]>, Refused>> = std::thread::scope(|scope| {
        let running: Vec<_> = sealed
            .chunks_mut(per_thread)
            .map(|mine| {
                scope.spawn(move || {
                    mine.iter_mut()
                        .map(|(index, chunk)| {
                            let index = *index;
                            let chunk = std::mem::take(chunk);
                            key.decrypt_in_place(index, chunk)
                                .ok_or(Refused::Sealed(index))
                        })
                        .collect()
                })
            })
            .collect();
        running
            .into_iter()
            .map(|t| t.join().expect("decrypting does not panic"))
            .collect()
    });
    let mut chunks = Vec::with_capacity(sealed.len());
    for part in opened {
        chunks.extend(part?);
    }
    Ok(chunks)
}

/// A snapshot made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taken {
    pub position: i64,
    pub tree_size: i64,
    pub users: i64,
    pub sessions: i64,
    pub bytes: usize,
    pub elapsed: Duration,
}

/// A snapshot loaded.
#[derive(Debug)]
pub struct Loaded {
    pub projection: ActiveSessions,
    pub position: i64,
    pub users: i64,
    pub sessions: i64,
    /// The body's size, and the time to read it, to check the header and the log's
    /// commitment, and to check the digest and decode: together `elapsed`.
    pub bytes: usize,
    pub read: Duration,
    pub checked: Duration,
    pub decoded: Duration,
    pub elapsed: Duration,
}

/// A projection opened, with the time each step took.
type Opened = (ActiveSessions, Duration, Duration);

/// What making and loading snapshots needs: the log, its ledger, where snapshots are kept,
/// and the key.
#[derive(Clone)]
pub struct Snapshots {
    pub events: Arc<dyn EventStore>,
    pub ledger: Arc<dyn LedgerStore>,
    pub kept: Arc<dyn SnapshotStore>,
    pub key: SnapshotKey,
}

impl Snapshots {
    /// Makes and stores a snapshot of `projection`, which has folded the log through
    /// `folded_through`: the tree is extended over the log first, the projection caught up
    /// with it, and the snapshot taken at the tree's last event. `None` for an empty log.
    pub async fn take(
        &self,
        projection: &Arc<RwLock<ActiveSessions>>,
        folded_through: i64,
    ) -> Result<Option<Taken>, StoreError> {
        let started = Instant::now();
        let tree = self.settled_tree().await?;
        if tree.size == 0 {
            return Ok(None);
        }
        // Everything the tree covers is folded once this has read on from `folded_through`
        // (the tree takes only settled events, which this read sees too).
        fold_into(
            self.events.as_ref(),
            projection,
            folded_through,
            &mut |_, _| {},
        )
        .await?;
        let (key, projection) = (self.key.clone(), projection.clone());
        let snapshot = tokio::task::spawn_blocking(move || {
            seal(&key, &projection, tree.last_position, tree.size, tree.root)
        })
        .await
        .map_err(|_| StoreError::Closed)?;
        self.kept.save_snapshot(&snapshot, KEEP).await?;
        Ok(Some(Taken {
            position: snapshot.position,
            tree_size: snapshot.tree_size,
            users: snapshot.users,
            sessions: snapshot.sessions,
            bytes: snapshot.body.len(),
            elapsed: started.elapsed(),
        }))
    }

    /// The tree extended over the log as it is now: on PostgreSQL, where the tree takes only
    /// events below the catch-up horizon, after waiting up to two seconds for the
    /// transactions in flight that hold the horizon back.
    async fn settled_tree(&self) -> Result<crate::store::ledger::TreeHead, StoreError> {
        let head = self.events.head().await?;
        let mut tree = self.ledger.extend(&mut |_| {}).await?;
        for _ in 0..40 {
            if tree.last_position >= head {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            tree = self.ledger.extend(&mut |_| {}).await?;
        }
        Ok(tree)
    }

    /// The newest snapshot that verifies, decoded; each refused one is logged with why.
    pub async fn load_newest(&self) -> Result<Option<Loaded>, StoreError> {
        let head = self.events.head().await?;
        for position in self.kept.snapshot_positions().await? {
            let started = Instant::now();
            let Some(snapshot) = self.kept.snapshot_at(position).await? else {
                continue;
            };
            let read = started.elapsed();
            let (users, sessions, bytes) = (snapshot.users, snapshot.sessions, snapshot.body.len());
            match self.open(snapshot, head).await? {
                Ok((projection, checked, decoded)) => {
                    return Ok(Some(Loaded {
                        projection,
                        position,
                        users,
                        sessions,
                        bytes,
                        read,
                        checked,
                        decoded,
                        elapsed: started.elapsed(),
                    }));
                }
                Err(refused) => tracing::warn!(
                    position,
                    reason = %refused,
                    "snapshot refused: {refused}"
                ),
            }
        }
        Ok(None)
    }

    /// `snapshot`'s projection if it verifies against the key and the log (`head` its last
    /// position).
    async fn open(
        &self,
        snapshot: StoredSnapshot,
        head: i64,
    ) -> Result<Result<Opened, Refused>, StoreError> {
        let started = Instant::now();
        if snapshot.position > head {
            return Ok(Err(Refused::BeyondLog {
                position: snapshot.position,
                head,
            }));
        }
        if !self.key.verifies(&snapshot) {
            return Ok(Err(Refused::Authenticator));
        }
        if let Err(refused) = self.committed(&snapshot).await? {
            return Ok(Err(refused));
        }
        let checked = started.elapsed();
        let key = self.key.clone();
        let opened = tokio::task::spawn_blocking(move || open_body(&key, snapshot))
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(opened.map(|projection| (projection, checked, started.elapsed() - checked)))
    }

    /// Whether the log's tree has the snapshot's root at its size, with the event at its
    /// position as the last leaf.
    async fn committed(
        &self,
        snapshot: &StoredSnapshot,
    ) -> Result<Result<(), Refused>, StoreError> {
        let refuse = |why: String| Ok(Err(Refused::Commitment(why)));
        let Ok(size) = u64::try_from(snapshot.tree_size) else {
            return refuse("a negative tree size".to_owned());
        };
        if size == 0 {
            return refuse("an empty tree".to_owned());
        }
        let mut located = self.ledger.locate(snapshot.position).await?;
        if located.as_ref().is_some_and(|l| l.tree.size < size) {
            self.ledger.extend(&mut |_| {}).await?;
            located = self.ledger.locate(snapshot.position).await?;
        }
        let Some(located) = located else {
            return refuse(format!("no event at position {}", snapshot.position));
        };
        if located.tree.size < size {
            return refuse(format!(
                "the log's tree has {} leaves, not {size}",
                located.tree.size
            ));
        }
        if located.leaf != Some(size - 1) {
            return refuse(format!(
                "the event at position {} is not leaf {} of the tree",
                snapshot.position,
                size - 1
            ));
        }
        let fetched = self.ledger.fetch(&subtree_needs(0, size), None).await?;
        match subtree_root(0, size, &fetched) {
            Ok(root) if root[..] == snapshot.tree_root[..] => Ok(Ok(())),
            Ok(_) => refuse(format!("the log's root at tree size {size} differs")),
            Err(error) => refuse(format!("the log's root at tree size {size}: {error}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeDelta};
    use tokenledger_domain::{Event, IssueReason, TokenHash, TokenIssued};
    use uuid::Uuid;

    use super::*;

    fn key(byte: u8) -> SnapshotKey {
        SnapshotKey::derive(&KeyBytes::new([byte; 32]), &KeyBytes::new([byte; 32]))
    }

    fn projection(users: i64) -> RwLock<ActiveSessions> {
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let mut p = ActiveSessions::new();
        for user in 1..=users {
            let login = Event::TokenIssued(TokenIssued {
                session_id: Uuid::from_u128(user as u128),
                device_id: "phone".into(),
                token_id: Uuid::from_u128(1000 + user as u128),
                token_hash: TokenHash([3; 32]),
                reason: IssueReason::Login,
                issued_at: at,
                token_expires_at: at + TimeDelta::days(30),
                idle_expires_at: at + TimeDelta::days(30),
                absolute_expires_at: at + TimeDelta::days(90),
                ip: Some("10.1.2.3".into()),
                user_agent: Some("curl/8".into()),
            });
            p.apply(user, 1, &login);
        }
        RwLock::new(p)
    }

    #[test]
    fn given_chunks_when_framed_then_unframed_they_come_back_and_a_cut_body_is_refused() {
        let chunks = vec![b"one".to_vec(), Vec::new(), b"three".to_vec()];
        let body = frame(&chunks);
        let back: Vec<Vec<u8>> = unframe(&mut body.clone())
            .unwrap()
            .iter()
            .map(|c| c.to_vec())
            .collect();
        assert_eq!(back, chunks);
        for cut in [0, 7, 12, body.len() - 1] {
            assert!(
                matches!(unframe(&mut body[..cut].to_vec()), Err(Refused::Body(_))),
                "cut at {cut}"
            );
        }
        let mut longer = body.clone();
        longer.push(0);
        assert!(unframe(&mut longer).is_err(), "bytes after the last chunk");
    }

    #[test]
    fn given_a_body_when_any_byte_flips_then_its_digest_changes() {
        let body: Vec<u8> = (0..(DIGEST_PIECE * 2 + 100)).map(|i| i as u8).collect();
        let digest = body_digest(&body);
        assert_eq!(body_digest(&body), digest);
        for at in [0, DIGEST_PIECE, body.len() - 1] {
            let mut flipped = body.clone();
            flipped[at] ^= 1;
            assert_ne!(body_digest(&flipped), digest, "byte {at}");
        }
        assert_ne!(body_digest(&body[..body.len() - 1]), digest);
    }

    #[test]
    fn given_a_sealed_snapshot_then_it_verifies_and_opens_to_the_same_projection() {
        let folded = projection(5000);
        let snapshot = seal(&key(1), &folded, 42, 40, [9; 32]);
        assert!(key(1).verifies(&snapshot));
        assert_eq!((snapshot.users, snapshot.sessions), (5000, 5000));
        let opened = open_body(&key(1), snapshot).unwrap();
        assert_eq!(opened.digest(), folded.read().unwrap().digest());
    }

    #[test]
    fn given_a_sealed_snapshot_when_its_header_changes_or_another_key_checks_then_it_fails() {
        let snapshot = seal(&key(1), &projection(3), 42, 40, [9; 32]);
        assert!(!key(2).verifies(&snapshot), "another server's key");
        let altered: [fn(&mut StoredSnapshot); 5] = [
            |s| s.position += 1,
            |s| s.tree_size -= 1,
            |s| s.tree_root[0] ^= 1,
            |s| s.sessions += 1,
            |s| s.authenticator[31] ^= 1,
        ];
        for (n, alter) in altered.iter().enumerate() {
            let mut changed = snapshot.clone();
            alter(&mut changed);
            assert!(!key(1).verifies(&changed), "alteration {n}");
        }
    }

    #[test]
    fn given_a_flipped_body_byte_then_opening_refuses_it_for_its_digest() {
        let mut snapshot = seal(&key(1), &projection(3), 42, 40, [9; 32]);
        let middle = snapshot.body.len() / 2;
        snapshot.body[middle] ^= 0x40;
        assert!(key(1).verifies(&snapshot), "the header is intact");
        assert_eq!(open_body(&key(1), snapshot).unwrap_err(), Refused::Digest);
    }

    #[test]
    fn given_a_forged_body_with_its_own_digest_then_the_authenticator_refuses_it() {
        let genuine = seal(&key(1), &projection(3), 42, 40, [9; 32]);
        let mut forged = seal(&key(7), &projection(1), 42, 40, [9; 32]);
        assert!(
            open_body(&key(7), forged.clone()).is_ok(),
            "a well-made body"
        );
        assert!(!key(1).verifies(&forged));
        forged.authenticator = genuine.authenticator.clone();
        assert!(!key(1).verifies(&forged), "nor with the genuine one's");
    }

    #[test]
    fn given_a_sealed_snapshot_then_its_personal_fields_are_encrypted_under_the_personal_key() {
        let snapshot = seal(&key(1), &projection(3), 42, 40, [9; 32]);
        let body = String::from_utf8_lossy(&snapshot.body);
        assert!(!body.contains("curl/8") && !body.contains("10.1.2.3") && !body.contains("phone"));

        let other_personal_key =
            SnapshotKey::derive(&KeyBytes::new([1; 32]), &KeyBytes::new([2; 32]));
        assert!(
            other_personal_key.verifies(&snapshot),
            "the same ledger key"
        );
        assert_eq!(
            open_body(&other_personal_key, snapshot).unwrap_err(),
            Refused::Sealed(0)
        );
    }
}
