//! The ledger checked as an outside auditor would, with nothing of the server's code: the
//! Merkle root recomputed from the events' chain hashes with a few lines of RFC 9162 of our
//! own, a checkpoint's Ed25519 signature checked by OpenSSL, and every inclusion proof and a
//! consistency proof the admin API serves verified with our own RFC 9162 verifiers.

use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;
use sha2::{Digest, Sha256};
use support::{Api, Server};

use crate::helpers::server_on;
use crate::insider::busy;

const ADMIN: &str = "ledger-admin-token-0123456789abcdef0123456789";

type Hash = [u8; 32];

// RFC 9162 §2.1, in as few lines as it takes.

fn leaf(entry: &[u8]) -> Hash {
    Sha256::new()
        .chain_update([0x00])
        .chain_update(entry)
        .finalize()
        .into()
}

fn node(left: &Hash, right: &Hash) -> Hash {
    Sha256::new()
        .chain_update([0x01])
        .chain_update(left)
        .chain_update(right)
        .finalize()
        .into()
}

/// §2.1.1: the Merkle Tree Hash of `leaves` (leaf hashes): split at the largest power of two
/// below their number.
fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let k = 1 << (usize::BITS - 1 - (n - 1).leading_zeros());
            node(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// Right-shifts both until `f` is odd or zero (the inner loops of §2.1.3.2 and §2.1.4.2).
fn shift_until_odd(f: &mut u64, s: &mut u64) {
    while *f & 1 == 0 && *f != 0 {
        *f >>= 1;
        *s >>= 1;
    }
}

/// §2.1.3.2: the audit path shows `leaf` at `index` in the tree of `size` leaves with `root`.
fn verify_inclusion(index: u64, size: u64, leaf: &Hash, path: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s, mut r) = (index, size - 1, *leaf);
    for p in path {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node(p, &r);
            shift_until_odd(&mut f, &mut s);
        } else {
            r = node(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

/// §2.1.4.2: the tree of `second` leaves with `second_root` extends the tree of `first` leaves
/// with `first_root` (0 < first < second).
fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    path: &[Hash],
) -> bool {
    if first == 0 || first >= second || path.is_empty() {
        return false;
    }
    let mut path = path.to_vec();
    if first.is_power_of_two() {
        path.insert(0, *first_root);
    }
    let (mut f, mut s) = (first - 1, second - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node(c, &fr);
            sr = node(c, &sr);
            shift_until_odd(&mut f, &mut s);
        } else {
            sr = node(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    fr == *first_root && sr == *second_root && s == 0
}

/// ⌈log2 n⌉
fn ceil_log2(n: u64) -> u32 {
    if n <= 1 {
        0
    } else {
        u64::BITS - (n - 1).leading_zeros()
    }
}

fn hex32(text: &str) -> Hash {
    let bytes = hex::decode(text).unwrap_or_else(|_| panic!("hex: {text}"));
    bytes
        .try_into()
        .unwrap_or_else(|_| panic!("32 bytes: {text}"))
}

/// A signed checkpoint as C2SP tlog-checkpoint and signed-note spell it.
struct Note {
    /// The signed text: up to and including the newline before the blank line.
    text: String,
    size: u64,
    root: Hash,
    signer: String,
    /// The signature line's base64, decoded: key hash (4 bytes) ‖ Ed25519 signature.
    signature: Vec<u8>,
}

impl Note {
    fn parse(note: &str) -> Note {
        let (text, signatures) = note
            .split_once("\n\n")
            .unwrap_or_else(|| panic!("a blank line: {note}"));
        let lines: Vec<&str> = text.lines().collect();
        let [_origin, size, root, ..] = lines[..] else {
            panic!("origin, size, root: {note}");
        };
        let line = signatures.lines().next().expect("a signature line");
        let (signer, signature) = line
            .strip_prefix("\u{2014} ")
            .and_then(|rest| rest.split_once(' '))
            .unwrap_or_else(|| panic!("a signature line: {line}"));
        Note {
            text: format!("{text}\n"),
            size: size.parse().expect("a size"),
            root: BASE64
                .decode(root)
                .expect("base64")
                .try_into()
                .expect("32 bytes"),
            signer: signer.to_owned(),
            signature: BASE64.decode(signature).expect("base64"),
        }
    }
}

async fn checkpoint(api: &Api) -> Note {
    let response = api
        .client
        .get(api.url("/api/admin/ledger/checkpoint"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    Note::parse(&response.text().await.expect("the note"))
}

/// `(position, chain hash)` of every event in position order, read straight from the file.
async fn chain_hashes(file: &Path) -> Vec<(i64, Vec<u8>)> {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", file.display()))
        .await
        .expect("the SQLite file");
    let rows: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT position, hash FROM events ORDER BY position")
            .fetch_all(&pool)
            .await
            .expect("the events");
    pool.close().await;
    rows
}

async fn serving(dir: &Path) -> Server {
    server_on(dir)
        .envs(&[
            ("ADMIN_API_TOKEN", ADMIN),
            ("REFRESH_TOKEN_ROTATION", "true"),
            ("LOGIN_RATE_LIMIT", "off"),
            ("LOGIN_IP_RATE_LIMIT", "off"),
            ("REFRESH_RATE_LIMIT", "off"),
        ])
        .serving()
        .await
}

/// Whether OpenSSL's Ed25519 (`openssl pkeyutl -verify -rawin`) accepts `signature` of
/// `message` by the raw 32-byte `public` key.
fn openssl_verifies(public: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let dir = tempfile::tempdir().expect("temp dir");
    // DER SubjectPublicKeyInfo of an Ed25519 key (RFC 8410): a fixed header and the key.
    let mut der = hex::decode("302a300506032b6570032100").expect("hex");
    der.extend_from_slice(public);
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        BASE64.encode(der)
    );
    let file = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write");
        path
    };
    let (key, msg, sig) = (
        file("pub.pem", pem.as_bytes()),
        file("msg", message),
        file("sig", signature),
    );
    let output = Command::new("openssl")
        .args(["pkeyutl", "-verify", "-pubin", "-rawin", "-inkey"])
        .arg(&key)
        .arg("-in")
        .arg(&msg)
        .arg("-sigfile")
        .arg(&sig)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "`openssl` must be on PATH (OpenSSL 3): it is the independent Ed25519 \
                 implementation this test checks signatures with ({e})"
            )
        });
    let said = String::from_utf8_lossy(&output.stdout);
    match output.status.success() {
        true => said.contains("Signature Verified Successfully"),
        false if said.contains("Signature Verification Failure") => false,
        false => panic!(
            "openssl pkeyutl failed: {said}{}",
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_busy_log_when_its_root_is_recomputed_independently_then_the_signed_checkpoint_matches()
 {
    // Given
    let dir = tempfile::tempdir().expect("temp dir");
    let server = serving(dir.path()).await;
    busy(&server.api(), "eve", 8, 6).await;

    // When
    let note = checkpoint(&server.api()).await;
    let hashes = chain_hashes(&dir.path().join("tokenledger.db")).await;
    let key = String::from_utf8(server.cli(&["ledger", "key"]).stdout).expect("UTF-8");

    // Then: the root is the RFC 9162 hash of the first `size` events' chain hashes.
    let size = note.size as usize;
    assert!(
        size >= 80 && size <= hashes.len(),
        "{size} of {}",
        hashes.len()
    );
    let leaves: Vec<Hash> = hashes[..size].iter().map(|(_, hash)| leaf(hash)).collect();
    assert_eq!(mth(&leaves), note.root, "the checkpoint's root");
    assert_ne!(mth(&leaves[..size - 1]), note.root);

    // And the signature: by the key `ledger key` names (C2SP signed-note: the key hash is the
    // first 4 bytes of SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key)), checked by OpenSSL.
    // Names have no '+'; the base64 may.
    let [name, key_hash, public] = key.trim().splitn(3, '+').collect::<Vec<_>>()[..] else {
        panic!("<name>+<hash>+<key>: {key}");
    };
    let public = BASE64.decode(public).expect("base64");
    assert_eq!(
        (public.len(), public[0]),
        (33, 0x01),
        "0x01 (Ed25519) ‖ 32 bytes"
    );
    let public = &public[1..];
    let digest = Sha256::new()
        .chain_update(name)
        .chain_update("\n")
        .chain_update([0x01])
        .chain_update(public)
        .finalize();
    assert_eq!(hex::encode(&digest[..4]), key_hash);
    assert_eq!(note.signer, name);
    assert_eq!(hex::encode(&note.signature[..4]), key_hash);
    let signature = &note.signature[4..];
    assert_eq!(signature.len(), 64);
    assert!(
        openssl_verifies(public, note.text.as_bytes(), signature),
        "OpenSSL refused the checkpoint's signature:\n{}",
        note.text
    );
    // OpenSSL does refuse: another size, another root.
    let other_size = note.text.replace(
        &format!("\n{}\n", note.size),
        &format!("\n{}\n", note.size + 1),
    );
    assert!(!openssl_verifies(public, other_size.as_bytes(), signature));
    let mut other_root = note.text.clone().into_bytes();
    let at = other_root.len() - 3;
    other_root[at] = if other_root[at] == b'A' { b'B' } else { b'A' };
    assert!(!openssl_verifies(public, &other_root, signature));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_log_past_256_events_when_every_position_is_proven_over_http_then_each_proof_verifies_independently()
 {
    // Given: a checkpoint halfway and one at the end of a log of about 300 events (past the
    // 256 leaves below which the server stores no node).
    let dir = tempfile::tempdir().expect("temp dir");
    let server = serving(dir.path()).await;
    let api = server.api();
    busy(&api, "fay", 10, 10).await;
    let halfway = checkpoint(&api).await;
    busy(&api, "gus", 10, 10).await;
    let end = checkpoint(&api).await;
    let n = end.size;
    assert!(n > 256, "{n} events");
    let hashes = chain_hashes(&dir.path().join("tokenledger.db")).await;
    let leaves: Vec<Hash> = hashes.iter().map(|(_, hash)| leaf(hash)).collect();
    assert_eq!(mth(&leaves[..n as usize]), end.root);
    assert_eq!(mth(&leaves[..halfway.size as usize]), halfway.root);

    // When / then: every event's inclusion in the tree the last checkpoint signed.
    for (index, (position, hash)) in hashes[..n as usize].iter().enumerate() {
        let path = format!("/api/admin/ledger/proof/inclusion?position={position}&size={n}");
        let (status, proof) = api.get_with_bearer(&path, ADMIN).await;
        assert_eq!(status, 200, "{path}: {proof}");
        assert_eq!(
            (
                proof["index"].as_u64(),
                proof["tree_size"].as_u64(),
                proof["event"]["position"].as_i64()
            ),
            (Some(index as u64), Some(n), Some(*position)),
            "{path}"
        );
        assert_eq!(proof["event"]["hash"], hex::encode(hash), "{path}");
        assert_eq!(proof["leaf_hash"], hex::encode(leaves[index]), "{path}");
        assert_eq!(proof["root_hash"], hex::encode(end.root), "{path}");
        let audit: Vec<Hash> = proof["audit_path"]
            .as_array()
            .expect("an audit path")
            .iter()
            .map(|h| hex32(h.as_str().expect("hex")))
            .collect();
        assert!(
            audit.len() as u32 <= ceil_log2(n),
            "{path}: {} hashes",
            audit.len()
        );
        assert!(
            verify_inclusion(index as u64, n, &leaves[index], &audit, &end.root),
            "{path}: {proof}"
        );
        if index % 37 == 0 {
            // A proof of the neighbour's leaf, or a path with a bit flipped, does not verify.
            let other = (index + 1) % n as usize;
            assert!(!verify_inclusion(
                index as u64,
                n,
                &leaves[other],
                &audit,
                &end.root
            ));
            let mut bent = audit.clone();
            bent[0][0] ^= 1;
            assert!(!verify_inclusion(
                index as u64,
                n,
                &leaves[index],
                &bent,
                &end.root
            ));
        }
    }

    // And the end's tree extends the halfway one's, and every other size ours computes.
    let consistency = |from: u64| {
        let api = api.clone();
        async move {
            let path = format!("/api/admin/ledger/proof/consistency?from={from}&to={n}");
            let (status, proof) = api.get_with_bearer(&path, ADMIN).await;
            assert_eq!(status, 200, "{path}: {proof}");
            proof
        }
    };
    let proof = consistency(halfway.size).await;
    assert_eq!(proof["from_root"], hex::encode(halfway.root));
    assert_eq!(proof["to_root"], hex::encode(end.root));
    let path = hashes_of(&proof["proof"]);
    assert!(verify_consistency(
        halfway.size,
        n,
        &halfway.root,
        &end.root,
        &path
    ));
    let mut bent = path.clone();
    bent[0][31] ^= 1;
    assert!(!verify_consistency(
        halfway.size,
        n,
        &halfway.root,
        &end.root,
        &bent
    ));
    for from in [1, 2, 3, 128, 255, 256, 257, n - 1] {
        let proof = consistency(from).await;
        let first = mth(&leaves[..from as usize]);
        assert_eq!(proof["from_root"], hex::encode(first), "from {from}");
        let path = hashes_of(&proof["proof"]);
        assert!(
            path.len() as u32 <= ceil_log2(n) + 1,
            "from {from}: {proof}"
        );
        assert!(
            verify_consistency(from, n, &first, &end.root, &path),
            "from {from}: {proof}"
        );
        assert!(!verify_consistency(from, n, &end.root, &end.root, &path));
    }
}

fn hashes_of(list: &Value) -> Vec<Hash> {
    list.as_array()
        .expect("a list of hashes")
        .iter()
        .map(|h| hex32(h.as_str().expect("hex")))
        .collect()
}
