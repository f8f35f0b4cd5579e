//! The store failing under a running server: a database file that turns read-only, a full
//! disk (SQLite on a tiny tmpfs), and PostgreSQL going away and coming back (every connection dropped by a proxy
//! between the server and the database). Requests get 503 `ServiceUnavailableError` in
//! Strapi's body, every acknowledged write is in the log and nothing else is, and the service
//! recovers by itself once the store is back.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{assert_error, fresh_postgres_url, postgres_url};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

use crate::helpers::{TestApp, spawn_app_with};

fn assert_unavailable(status: u16, body: &Value) {
    assert_error(
        status,
        body,
        503,
        "ServiceUnavailableError",
        "The service is temporarily unavailable, please try again",
    );
}

/// While the store is down, a refresh and a login of `name` both get the 503, each within
/// 2 s and with `Retry-After` (issue 22: no hang while the database is away).
async fn writes_are_refused(app: &TestApp, token: &str, name: &str) {
    for (path, body) in [
        ("/api/auth/local/refresh", json!({ "refreshToken": token })),
        (
            "/api/auth/local",
            json!({"identifier": name, "password": "password123"}),
        ),
    ] {
        let started = Instant::now();
        let answer = app
            .client
            .post(app.url(path))
            .json(&body)
            .send()
            .await
            .expect("an answer");
        let took = started.elapsed();
        let retry_after = answer.headers().get("retry-after").cloned();
        let status = answer.status().as_u16();
        let body: Value = answer.json().await.expect("a JSON body");
        assert_unavailable(status, &body);
        assert!(
            took < Duration::from_secs(2),
            "{path}: the 503 took {took:?}"
        );
        assert_eq!(
            retry_after.as_ref().and_then(|v| v.to_str().ok()),
            Some("1"),
            "{path}"
        );
    }
}

/// Refreshes until one succeeds: the service must come back by itself.
async fn recovers(app: &TestApp, token: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut failures = 0;
    loop {
        let (status, body) = app.refresh(token).await;
        match status {
            200 => return failures,
            503 if Instant::now() < deadline => {
                failures += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            _ => panic!("the store is back but the service answers {status} {body}"),
        }
    }
}

async fn refreshes_recorded(app: &TestApp, user: i64) -> usize {
    app.event_types(user)
        .await
        .iter()
        .filter(|t| *t == "TokenRefreshed")
        .count()
}

/// A tmpfs of `size` mounted on a fresh folder for the test, unmounted when dropped; `None`
/// (with the reason printed) where this process may not mount, which CI (root) always may.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        let mounted = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&path)
            .output();
        match mounted {
            Ok(output) if output.status.success() => Some(Tmpfs { path, _dir: dir }),
            other if std::env::var("CI").is_err() => {
                eprintln!("skipping the disk failure test: cannot mount a tmpfs ({other:?})");
                None
            }
            other => panic!("CI runs as root and must mount a tmpfs: {other:?}"),
        }
    }

    /// Writes zeros into `filler` until the file system is full.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let filler = self.path.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc_enospc()) => break,
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        // The last partial block: down to the byte.
        for size in [4096usize, 512, 1] {
            while file.write(&block[..size]).is_ok_and(|n| n > 0) {}
        }
        let _ = file.sync_all();
        filler
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

const fn libc_enospc() -> i32 {
    28
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Files made immutable (`chattr +i`: even root's writes fail, through descriptors already
/// open too) until dropped; `None` (with the reason printed) where the file system has no
/// such flag, which CI's ext4 has.
struct Immutable(Vec<PathBuf>);

impl Immutable {
    fn set(files: Vec<PathBuf>) -> Option<Immutable> {
        let set = Command::new("chattr").arg("+i").args(&files).output();
        match set {
            Ok(output) if output.status.success() => Some(Immutable(files)),
            other if std::env::var("CI").is_err() => {
                eprintln!("skipping the read-only database test: chattr +i failed ({other:?})");
                None
            }
            other => panic!("CI runs as root on ext4 and must set chattr +i: {other:?}"),
        }
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").args(&self.0).status();
    }
}

#[actix_web::test]
async fn a_read_only_database_is_a_503_and_the_service_recovers() {
    let app = spawn_app_with(&[
        ("REFRESH_RATE_LIMIT", "off"),
        ("LOGIN_RATE_LIMIT", "off"),
        // Every refresh is a write here: within the resolution one would need none.
        ("SESSION_ACTIVITY_RESOLUTION", "0s"),
    ])
    .await;
    let (id, token) = app.user_with_token("frozen").await;
    assert_eq!(app.refresh(&token).await.0, 200);
    let mut acknowledged = 1;

    let database = app.dir.path().join("tokenledger.db");
    let wal = app.dir.path().join("tokenledger.db-wal");
    let Some(frozen) = Immutable::set(vec![database, wal]) else {
        return;
    };
    writes_are_refused(&app, &token, "frozen").await;
    let (status, body) = app
        .post(
            "/api/auth/local/register",
            json!({"username": "late", "email": "late@example.com", "password": "password123"}),
        )
        .await;
    assert_unavailable(status, &body);
    drop(frozen);
    recovers(&app, &token).await;
    acknowledged += 1;
    app.register("late").await;
    assert_eq!(
        refreshes_recorded(&app, id).await,
        acknowledged,
        "the log holds exactly the acknowledged refreshes"
    );
    let verified = app.cli(&["verify"]);
    assert!(verified.status.success(), "{verified:?}");
    app.stop().await;
}

#[actix_web::test]
async fn a_full_disk_is_a_503_and_the_service_recovers() {
    let Some(disk) = Tmpfs::mount("6m") else {
        return;
    };
    let data = disk.path().display().to_string();
    let app = spawn_app_with(&[
        ("DATA_DIR", data.as_str()),
        ("REFRESH_RATE_LIMIT", "off"),
        ("LOGIN_RATE_LIMIT", "off"),
        // Every refresh is a write here: within the resolution one would need none.
        ("SESSION_ACTIVITY_RESOLUTION", "0s"),
    ])
    .await;
    let (id, token) = app.user_with_token("disk").await;
    assert_eq!(app.refresh(&token).await.0, 200);
    let mut acknowledged = 1;

    // Writes go on until the file system has no room left, then fail cleanly.
    let filler = disk.fill();
    let mut refused = 0;
    for _ in 0..20_000 {
        let (status, body) = app.refresh(&token).await;
        match status {
            200 => acknowledged += 1,
            _ => {
                assert_unavailable(status, &body);
                refused += 1;
                if refused == 5 {
                    break;
                }
            }
        }
    }
    assert_eq!(refused, 5, "a full disk never refused a write");
    std::fs::remove_file(filler).unwrap();
    let retries = recovers(&app, &token).await;
    acknowledged += 1;
    eprintln!(
        "full disk: {acknowledged} refreshes acknowledged, {refused} refused, {retries} retries to recover"
    );
    assert_eq!(
        refreshes_recorded(&app, id).await,
        acknowledged,
        "the log holds exactly the acknowledged refreshes"
    );
    let verified = app.cli(&["verify"]);
    assert!(verified.status.success(), "{verified:?}");
    app.stop().await;
}

/// A TCP proxy that can drop every connection and refuse new ones, as a database restart
/// looks from the client's side.
struct Proxy {
    address: SocketAddr,
    open: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<AbortHandle>>>,
    accepting: AbortHandle,
}

impl Proxy {
    async fn to(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let open = Arc::new(AtomicBool::new(true));
        let links = Arc::new(Mutex::new(Vec::<AbortHandle>::new()));
        let (is_open, all) = (open.clone(), links.clone());
        let accepting = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if !is_open.load(Ordering::SeqCst) {
                    continue; // dropped: the database is "down"
                }
                let upstream = upstream.clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                all.lock().unwrap().push(link.abort_handle());
            }
        })
        .abort_handle();
        Proxy {
            address,
            open,
            links,
            accepting,
        }
    }

    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accepting.abort();
    }
}

#[actix_web::test]
async fn postgres_going_away_is_a_503_and_the_service_recovers() {
    let Some(url) = fresh_postgres_url().await else {
        return;
    };
    let direct = postgres_url();
    let authority = direct
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("host:port in the test database URL")
        .to_owned();
    let proxy = Proxy::to(authority.clone()).await;
    let through = url.replacen(&authority, &proxy.address.to_string(), 1);
    let app = spawn_app_with(&[
        ("DATABASE_URL", through.as_str()),
        ("REFRESH_RATE_LIMIT", "off"),
        ("LOGIN_RATE_LIMIT", "off"),
        // Every refresh is a write here: within the resolution one would need none.
        ("SESSION_ACTIVITY_RESOLUTION", "0s"),
    ])
    .await;
    let (id, token) = app.user_with_token("pia").await;
    assert_eq!(app.refresh(&token).await.0, 200);
    let mut acknowledged = 1;

    for _ in 0..2 {
        proxy.cut();
        let started = Instant::now();
        writes_are_refused(&app, &token, "pia").await;
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the 503s took {:?}",
            started.elapsed()
        );
        proxy.restore();
        recovers(&app, &token).await;
        acknowledged += 1;
    }
    // New sessions work again too, and the log holds exactly what was acknowledged.
    app.login("pia").await;
    assert_eq!(refreshes_recorded(&app, id).await, acknowledged);
    app.stop().await;
}
