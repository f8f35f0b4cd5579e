//! The server under test: the real `tokenledger` binary as its own process (so a crash shows
//! as its exit, and its memory is its own), its log watched for panics and errors, and the
//! accounts the generator uses.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::generate::Account;
use crate::helpers::{JWT_SECRET, REFRESH_SECRET};

pub const ADMIN_TOKEN: &str = "hostile-admin-token-0123456789abcdef0123456789";
const PASSWORD: &str = "password123";

/// The `tokenledger` binary, serving on a port of its own; killed when dropped.
pub struct Server {
    pub child: Child,
    pub address: SocketAddr,
    pub log: Arc<Mutex<Log>>,
    _dir: tempfile::TempDir,
}

/// What the server's log said that matters here.
#[derive(Default)]
pub struct Log {
    pub panics: Vec<String>,
    pub errors: Vec<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    pub fn start(database_url: Option<&str>) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut command = Command::new(env!("CARGO_BIN_EXE_tokenledger"));
        command
            .env("DATA_DIR", dir.path())
            .env("PORT", "0")
            .env("JWT_SECRET", JWT_SECRET)
            .env("REFRESH_JWT_SECRET", REFRESH_SECRET)
            .env("ADMIN_API_TOKEN", ADMIN_TOKEN)
            .env("REFRESH_TOKEN_ROTATION", "true")
            // The generator's X-Forwarded-For then counts, so its logins spread over many
            // rate-limit keys and reach the password check; the rest still meet the limits.
            .env("TRUSTED_PROXIES", "127.0.0.1")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(url) = database_url {
            command.env("DATABASE_URL", url);
        }
        let mut child = command.spawn().expect("the tokenledger binary starts");
        let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
        let port = loop {
            let line = lines
                .next()
                .expect("the server logs until it serves")
                .expect("log line");
            if let Ok(entry) = serde_json::from_str::<Value>(&line)
                && entry["fields"]["message"] == "tokenledger is serving"
            {
                break entry["fields"]["port"].as_u64().expect("a port") as u16;
            }
        };
        let log = Arc::new(Mutex::new(Log::default()));
        let watched = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut log = watched.lock().unwrap();
                if line.contains("panicked") {
                    log.panics.push(line);
                } else if line.contains("\"level\":\"ERROR\"")
                    // HTTP's own refusals of broken framing are logged as errors.
                    && !line.contains("request parse error")
                    && log.errors.len() < 20
                {
                    log.errors.push(line);
                }
            }
        });
        Server {
            child,
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
            _dir: dir,
        }
    }

    /// `VmRSS` and `VmHWM` (its peak) of the server process, in KiB.
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server process is alive");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }
}

pub async fn register(client: &reqwest::Client, base: &str, name: &str) -> i64 {
    let response = client
        .post(format!("{base}/api/auth/local/register"))
        .json(&json!({
            "username": name,
            "email": format!("{name}@example.com"),
            "password": PASSWORD,
        }))
        .send()
        .await
        .expect("register");
    assert_eq!(response.status(), 200, "register {name}");
    let body: Value = response.json().await.expect("json");
    body["user"]["id"].as_i64().expect("user id")
}

/// Logs `name` in from an address of its own (`from`, through the trusted proxy), so the
/// run's rate limits never hold it back, and returns its tokens.
pub async fn log_in(
    client: &reqwest::Client,
    base: &str,
    name: &str,
    id: i64,
    from: u32,
) -> Option<Account> {
    let response = client
        .post(format!("{base}/api/auth/local"))
        .header(
            "x-forwarded-for",
            std::net::Ipv4Addr::from(from).to_string(),
        )
        .json(&json!({"identifier": name, "password": PASSWORD, "requestRefresh": true}))
        .send()
        .await
        .ok()?;
    if response.status() != 200 {
        return None;
    }
    let body: Value = response.json().await.ok()?;
    let jwt = body["jwt"].as_str()?.to_owned();
    let payload = URL_SAFE_NO_PAD.decode(jwt.split('.').nth(1)?).ok()?;
    let claims: Value = serde_json::from_slice(&payload).ok()?;
    Some(Account {
        id,
        username: name.to_owned(),
        email: format!("{name}@example.com"),
        session_id: claims["sid"].as_str()?.to_owned(),
        refresh_token: body["refreshToken"].as_str()?.to_owned(),
        jwt,
    })
}
