//! The server under test: the real binary as a child process on one data folder (and
//! database) for its whole life, started on a free port, killed with `SIGKILL` or stopped with
//! `SIGTERM`, and its command line run on the same data.

use std::io::Write as _;
use std::net::TcpListener;
use std::os::unix::process::ExitStatusExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::postgres::{Postgres, backends};
use crate::{GRACE, JWT_SECRET, REFRESH_SECRET};

/// The real server as a child process, on one data folder (and database) for its whole life.
pub struct Server {
    dir: TempDir,
    postgres: Option<Postgres>,
    child: Option<Child>,
    pub base: String,
    log: PathBuf,
}

impl Server {
    pub fn new(postgres: Option<Postgres>) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("server.log");
        Server {
            dir,
            postgres,
            child: None,
            base: String::new(),
            log,
        }
    }

    /// The binary with this server's configuration and nothing inherited.
    fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tokenledger"));
        command
            .env_clear()
            .env("HOST", "127.0.0.1")
            .env("DATA_DIR", self.dir.path())
            .env("JWT_SECRET", JWT_SECRET)
            .env("REFRESH_JWT_SECRET", REFRESH_SECRET)
            .env("REFRESH_TOKEN_ROTATION", "true")
            .env("REFRESH_TOKEN_REUSE_GRACE", GRACE)
            .env("LOGIN_RATE_LIMIT", "off")
            .env("LOGIN_IP_RATE_LIMIT", "off")
            .env("REFRESH_RATE_LIMIT", "off")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1");
        if let Some(postgres) = &self.postgres {
            command.env("DATABASE_URL", &postgres.url);
        }
        command
    }

    /// Starts the server on a free port and waits until `/_ready` says 200.
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "one server at a time");
        for _ in 0..5 {
            let port = free_port();
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .expect("server log");
            writeln!(&log, "--- starting on port {port}").expect("server log");
            let mut command = self.command();
            if let Some(postgres) = &self.postgres {
                let name = postgres.application_name();
                command.env(
                    "DATABASE_URL",
                    format!("{}&application_name={name}", postgres.url),
                );
            }
            let child = command
                .env("PORT", port.to_string())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("server log"))
                .stderr(log)
                .spawn()
                .expect("the tokenledger binary starts");
            self.child = Some(child);
            self.base = format!("http://127.0.0.1:{port}");
            if self.wait_until_ready().await {
                if let Some(postgres) = &self.postgres {
                    // Else `settle` would wait for nothing.
                    assert!(
                        backends(postgres).await > 0,
                        "the server's backends are named"
                    );
                }
                return;
            }
            // Another process took the port in the meantime: try another.
            self.child = None;
            assert!(
                self.log_tail().contains("binding"),
                "the server exited at start-up:\n{}",
                self.log_tail()
            );
        }
        panic!("no free port after 5 attempts:\n{}", self.log_tail());
    }

    /// True once `/_ready` answers 200 (503 while the log is folded at start-up); false if
    /// the process exited first.
    async fn wait_until_ready(&mut self) -> bool {
        let http = http_client();
        let deadline = Instant::now() + Duration::from_secs(60);
        let ready = format!("{}/_ready", self.base);
        loop {
            if let Ok(response) = http.get(&ready).send().await {
                match response.status().as_u16() {
                    200 => return true,
                    503 => {}
                    status => panic!("GET /_ready: {status}"),
                }
            }
            let child = self.child.as_mut().expect("started");
            if child.try_wait().expect("the server's status").is_some() {
                return false;
            }
            assert!(
                Instant::now() < deadline,
                "the server was not ready within 60 s:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `SIGTERM` (as an orchestrator stops a service) or `SIGINT` (Ctrl-C), and the exit it
    /// leads to: the server must stop accepting, answer what it has, flush the log and end by
    /// itself, with success.
    pub async fn stop_with(&mut self, signal: &str) {
        let mut child = self.child.take().expect("a running server");
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -{signal}");
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().expect("the server's status") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not stop within 60 s of SIG{signal}:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(
            status.success(),
            "the server ended with {status} after SIG{signal}:\n{}",
            self.log_tail()
        );
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `SIGKILL` (what `Child::kill` sends on Unix): no flush, no shutdown, nothing.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("a running server");
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("the killed server is reaped");
        assert_eq!(
            status.signal(),
            Some(9),
            "the server ended by itself ({status}):\n{}",
            self.log_tail()
        );
    }

    /// Waits until the log is what the killed server left. On SQLite it is at once; a
    /// PostgreSQL backend that already holds the server's `COMMIT` carries it out after the
    /// server is gone, so the log is fixed only once the server's backends have ended.
    pub async fn settle(&self) {
        let Some(postgres) = &self.postgres else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = backends(postgres).await;
            if left == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{left} backends of the killed server still run after 30 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Runs the binary's command line on this server's data.
    pub fn cli(&self, args: &[&str]) -> Output {
        let output = self
            .command()
            .args(args)
            .output()
            .expect("the tokenledger binary runs");
        if !output.status.success() {
            eprintln!(
                "tokenledger {args:?}: {}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        output
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "the server's log ({}):\n{}",
                self.log.display(),
                self.log_tail()
            );
        }
    }
}

/// A port nothing listens on right now (the server binds it a moment later).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

/// A fresh connection pool: the old one's connections died with the old server.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}
