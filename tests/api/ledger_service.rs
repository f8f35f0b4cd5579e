//! The ledger as a running service keeps it: instances on one PostgreSQL database agree on one
//! tree, checkpoints reach `CHECKPOINT_FILE` and a witness behind `CHECKPOINT_WEBHOOK_URL`
//! (through its failures), and a log written before the ledger key is sealed on upgrade.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Api, fresh_postgres_url};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{server, server_on};

const ADMIN: &str = "admin-token-0123456789abcdef0123456789abcdef";

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The tree size of a checkpoint note (its second line).
fn size_of(note: &str) -> u64 {
    note.lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .unwrap_or(0)
}

async fn checkpoint(api: &Api) -> String {
    let response = api
        .client
        .get(api.url("/api/admin/ledger/checkpoint"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    response.text().await.unwrap()
}

async fn some_traffic(api: &Api, name: &str) {
    api.register(name).await;
    for _ in 0..3 {
        let login = api.login(name).await;
        let token = login["refreshToken"].as_str().unwrap().to_owned();
        // From another client than the login's, so that each refresh is an event: one from
        // the login's client within SESSION_ACTIVITY_RESOLUTION would write nothing.
        let (status, _) = Api::send(
            api.client
                .post(api.url("/api/auth/refresh"))
                .header("user-agent", "ledger-test/refresh")
                .json(&json!({"refreshToken": token})),
        )
        .await
        .unwrap();
        assert_eq!(status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_postgresql_database_sign_the_same_tree() {
    let Some(url) = fresh_postgres_url().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut instances = Vec::new();
    for _ in 0..2 {
        instances.push(
            server_on(dir.path())
                .envs(&[
                    ("DATABASE_URL", url.as_str()),
                    ("ADMIN_API_TOKEN", ADMIN),
                    ("CHECKPOINT_INTERVAL", "200ms"),
                    ("LOGIN_RATE_LIMIT", "off"),
                    ("LOGIN_IP_RATE_LIMIT", "off"),
                ])
                .serving()
                .await,
        );
    }
    let apis: Vec<Api> = instances.iter().map(|i| i.api()).collect();
    // Both write, concurrently: each extends the tree on its own ticks.
    tokio::join!(some_traffic(&apis[0], "ann"), some_traffic(&apis[1], "ben"));
    let events = 2 * (2 + 3 + 3); // a registration (two events), three logins and three refreshes each
    let deadline = Instant::now() + Duration::from_secs(10);
    let (a, b) = loop {
        let (a, b) = (checkpoint(&apis[0]).await, checkpoint(&apis[1]).await);
        if size_of(&a) >= events && a == b || Instant::now() > deadline {
            break (a, b);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Ed25519 is deterministic: the same tree signed by the same key is the same note.
    assert_eq!(a, b, "the two instances' checkpoints");
    assert!(size_of(&a) >= events, "{a}");
    // Either instance proves any event against the note both signed (PostgreSQL's SQL path).
    let size = size_of(&a);
    let root = a.lines().nth(2).unwrap().to_owned();
    for (api, position) in [(&apis[0], 1), (&apis[1], 2)] {
        let (status, proof) = api
            .get_with_bearer(
                &format!("/api/admin/ledger/proof/inclusion?position={position}&size={size}"),
                ADMIN,
            )
            .await;
        assert_eq!(status, 200, "{proof}");
        let hex32 = |v: &serde_json::Value| -> [u8; 32] {
            hex::decode(v.as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        };
        let path: Vec<[u8; 32]> = proof["audit_path"]
            .as_array()
            .unwrap()
            .iter()
            .map(hex32)
            .collect();
        let root: [u8; 32] =
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &root)
                .unwrap()
                .try_into()
                .unwrap();
        assert!(tokenledger::tlog::merkle::verify_inclusion(
            &hex32(&proof["leaf_hash"]),
            proof["index"].as_u64().unwrap(),
            size,
            &path,
            &root
        ));
    }
    let verified = instances[0].cli(&["verify"]);
    assert!(verified.status.success(), "{}", stdout(&verified));
    assert!(
        stdout(&verified).contains(&format!("tree size {}", size_of(&a))),
        "{}",
        stdout(&verified)
    );
}

/// A witness that refuses its first post, then keeps what it is sent.
async fn witness() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/witness", listener.local_addr().unwrap());
    let received = Arc::new(Mutex::new(Vec::new()));
    let kept = received.clone();
    tokio::spawn(async move {
        let mut refused = false;
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            // Headers, then as much body as Content-Length says.
            loop {
                let n = socket.read(&mut buffer).await.unwrap_or(0);
                request.extend_from_slice(&buffer[..n]);
                let text = String::from_utf8_lossy(&request).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            let text = String::from_utf8_lossy(&request).into_owned();
            let status = if refused {
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            if refused && let Some((_, body)) = text.split_once("\r\n\r\n") {
                kept.lock().unwrap().push(body.to_owned());
            }
            refused = true;
            let _ = socket
                .write_all(
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .await;
        }
    });
    (url, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_reach_the_file_and_a_witness_that_failed_once() {
    let (url, received) = witness().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("witness").join("checkpoints.txt");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let server = server()
        .envs(&[
            ("ADMIN_API_TOKEN", ADMIN),
            ("CHECKPOINT_INTERVAL", "200ms"),
            ("CHECKPOINT_FILE", file.to_str().unwrap()),
            ("CHECKPOINT_WEBHOOK_URL", url.as_str()),
        ])
        .serving()
        .await;
    let api = server.api();
    some_traffic(&api, "cat").await;
    // The witness refused the first post: the retry comes a second later (backoff).
    let deadline = Instant::now() + Duration::from_secs(15);
    while received.lock().unwrap().iter().all(|n| size_of(n) < 8) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let latest = checkpoint(&api).await;
    assert_eq!(size_of(&latest), 8, "{latest}");
    let posted = received.lock().unwrap().clone();
    assert!(posted.contains(&latest), "the witness got {posted:?}");

    // The file holds every checkpoint made, the latest last, and verify takes it whole.
    let kept = std::fs::read_to_string(&file).unwrap();
    assert!(kept.ends_with(&format!("{latest}\n")), "{kept}");
    let verified = server.cli(&["verify", "--checkpoint", file.to_str().unwrap()]);
    assert!(verified.status.success(), "{}", stdout(&verified));

    // An auditor's check of one event, with the verifier key, the file and a proof only.
    let key = stdout(&server.cli(&["ledger", "key"])).trim().to_owned();
    let proof = server.cli(&["ledger", "prove", "--position", "3", "--size", "8"]);
    assert!(proof.status.success());
    let proof_file = dir.path().join("proof.json");
    std::fs::write(&proof_file, &proof.stdout).unwrap();
    let checked = std::process::Command::new(env!("CARGO_BIN_EXE_tokenledger"))
        .args(["ledger", "verify-proof", "--key", &key, "--checkpoint"])
        .arg(&file)
        .arg("--proof")
        .arg(&proof_file)
        .env_clear()
        .output()
        .unwrap();
    assert!(
        stdout(&checked).starts_with("ok: the event at position 3 is leaf 2 of the 8 events"),
        "{checked:?}"
    );
}

/// Rewrites every event's hash as a version before the ledger key wrote it (plain SHA-256),
/// and empties the ledger's tables: the database such a version left behind. With `from`,
/// only the chains from that event of that stream on are rewritten (an insider's edit).
async fn unkeyed(db: &std::path::Path, from: Option<(&str, i64)>) {
    use sqlx::Row;
    let url = format!("sqlite://{}", db.display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let rows = sqlx::query(
        "SELECT position, stream_id, stream_version, event_type, schema_version, payload, \
         metadata, recorded_at, prev_hash, body FROM events ORDER BY position",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut heads: std::collections::HashMap<String, Vec<u8>> = Default::default();
    for row in rows {
        let stream: String = row.get(1);
        let version: i64 = row.get(2);
        let rewrite = from.is_none_or(|(s, v)| s == stream && version >= v);
        let prev = heads
            .get(&stream)
            .cloned()
            .unwrap_or_else(|| row.get::<Vec<u8>, _>(8));
        let (event_type, payload, metadata, recorded_at): (String, String, String, String) =
            (row.get(3), row.get(5), row.get(6), row.get(7));
        let body: Option<Vec<u8>> = row.get(9);
        let hash = tokenledger::store::chain_hash(
            &prev,
            &tokenledger::store::Hashed {
                stream_id: &stream,
                stream_version: version,
                event_type: &event_type,
                schema_version: row.get(4),
                payload: &payload,
                metadata: &metadata,
                recorded_at: &recorded_at,
                body: body.as_deref(),
            },
        );
        if rewrite {
            sqlx::query("UPDATE events SET prev_hash = ?, hash = ? WHERE position = ?")
                .bind(&prev)
                .bind(&hash)
                .bind(row.get::<i64, _>(0))
                .execute(&pool)
                .await
                .unwrap();
            heads.insert(stream, hash);
        } else {
            let kept: Vec<u8> = sqlx::query_scalar("SELECT hash FROM events WHERE position = ?")
                .bind(row.get::<i64, _>(0))
                .fetch_one(&pool)
                .await
                .unwrap();
            heads.insert(stream, kept);
        }
    }
    if from.is_none() {
        for table in ["ledger_tree", "ledger_nodes", "ledger_spans", "checkpoints"] {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
                .execute(&pool)
                .await
                .unwrap();
        }
    }
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_written_before_the_ledger_key_is_sealed_once_and_stays_sealed() {
    // Given: a log as a version before the ledger key left it.
    let dir = tempfile::tempdir().unwrap();
    let server = server_on(dir.path()).serving().await;
    some_traffic(&server.api(), "dot").await;
    drop(server.stop());
    let db = dir.path().join("tokenledger.db");
    unkeyed(&db, None).await;
    let unsealed = server_on(dir.path()).cli(&["verify"]);
    assert!(!unsealed.status.success());
    assert!(
        stdout(&unsealed).contains("position 1 ")
            && stdout(&unsealed).contains("no LedgerKeyed event seals it"),
        "{}",
        stdout(&unsealed)
    );

    // An unkeyed log is what an insider's rewrite without the key looks like too: with the
    // ledger key already there, nothing seals it unasked.
    let refused = server_on(dir.path()).cli(&["migrate"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("tokenledger migrate --seal-legacy"),
        "{refused:?}"
    );

    // The first start of this version on SQLite makes the ledger key, and then nothing can
    // have been keyed before: that start seals by itself.
    let upgraded = tempfile::tempdir().unwrap();
    std::fs::copy(&db, upgraded.path().join("tokenledger.db")).unwrap();
    let first = server_on(upgraded.path())
        .without("LEDGER_KEY")
        .without("CHECKPOINT_KEY");
    let migrated = first.cli(&["migrate"]);
    assert!(migrated.status.success(), "{migrated:?}");
    assert!(first.cli(&["verify"]).status.success());

    // When: the operator seals it (migrate --seal-legacy), and serves on.
    let migrated = server_on(dir.path()).cli(&["migrate", "--seal-legacy"]);
    assert!(migrated.status.success());
    assert!(
        String::from_utf8_lossy(&migrated.stderr)
            .contains("sealed the 8 events written before the ledger key"),
        "{migrated:?}"
    );
    assert!(
        stdout(&migrated).contains("the ledger's tree covers 9 events"),
        "{}",
        stdout(&migrated)
    );
    let server = server_on(dir.path()).serving().await;
    some_traffic(&server.api(), "eve").await;
    drop(server.stop());

    // Then: it verifies, the seal counted once (a second open seals nothing).
    let verified = server_on(dir.path()).cli(&["verify"]);
    assert!(verified.status.success(), "{}", stdout(&verified));
    assert!(
        stdout(&verified).contains("ok: 17 events in 3 streams; tree size 17"),
        "{}",
        stdout(&verified)
    );

    // And an insider's edit of an unkeyed event, its chain recomputed, breaks the seal.
    let url = format!("sqlite://{}", db.display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let mut body: Vec<u8> = sqlx::query_scalar("SELECT body FROM events WHERE position = 2")
        .fetch_one(&pool)
        .await
        .unwrap();
    let middle = body.len() / 2;
    body[middle] ^= 0x20;
    sqlx::query("UPDATE events SET body = ? WHERE position = 2")
        .bind(body)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    unkeyed(&db, Some(("user-1", 2))).await;
    let broken = server_on(dir.path()).cli(&["verify"]);
    assert!(!broken.status.success());
    assert!(
        stdout(&broken)
            .contains("position 9: the LedgerKeyed seal does not match the 8 unkeyed events"),
        "{}",
        stdout(&broken)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_the_file_could_not_take_is_written_once_it_can() {
    // Given: CHECKPOINT_FILE in a folder that is not there yet (a witness disk not mounted).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("later").join("checkpoints.txt");
    let server = server()
        .envs(&[
            ("ADMIN_API_TOKEN", ADMIN),
            ("CHECKPOINT_INTERVAL", "100ms"),
            ("CHECKPOINT_FILE", file.to_str().unwrap()),
        ])
        .serving()
        .await;
    some_traffic(&server.api(), "fay").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!file.exists());

    // When: the folder appears, the log not growing any more.
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();

    // Then: the next interval writes the checkpoint the file missed.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !file.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let latest = checkpoint(&server.api()).await;
    assert_eq!(size_of(&latest), 8, "{latest}");
    let kept = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(kept.ends_with(&format!("{latest}\n")), "{kept:?}");
}
