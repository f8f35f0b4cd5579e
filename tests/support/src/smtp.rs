//! A real SMTP server for the mailer's tests: Python's `aiosmtpd` (installed by `.ci/run`) as
//! a child process (`smtp/catcher.py`), which writes each message it accepts into a folder
//! as JSON that the test reads back. Where `aiosmtpd` is missing a test skips, saying why;
//! under `CI` it fails instead.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

const CATCHER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/smtp/catcher.py");

pub struct SmtpServer {
    child: Child,
    folder: TempDir,
    pub port: u16,
}

impl SmtpServer {
    /// On any free port; `None` (with the reason printed) where `aiosmtpd` is not installed.
    pub async fn start() -> Option<SmtpServer> {
        SmtpServer::start_on(0).await
    }

    /// On `port` (0: any free one).
    pub async fn start_on(port: u16) -> Option<SmtpServer> {
        if !crate::runs_here("the mailer's tests", missing()) {
            return None;
        }
        let folder = tempfile::tempdir().expect("temp dir");
        let child = Command::new("python3")
            .arg(CATCHER)
            .arg(folder.path())
            .arg(port.to_string())
            .stdin(Stdio::null())
            .spawn()
            .expect("python3 runs");
        let ready = folder.path().join("ready");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ready.exists() {
            assert!(Instant::now() < deadline, "the SMTP server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let port = std::fs::read_to_string(&ready).unwrap().parse().unwrap();
        Some(SmtpServer {
            child,
            folder,
            port,
        })
    }

    /// The messages accepted so far, in order.
    pub fn messages(&self) -> Vec<Value> {
        messages_in(self.folder.path())
    }

    /// The messages, once there are at least `count` (or what there is after `limit`).
    pub async fn wait_for(&self, count: usize, limit: Duration) -> Vec<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let messages = self.messages();
            if messages.len() >= count || Instant::now() >= deadline {
                return messages;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on now: a server that is not there yet.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().unwrap().port()
}

fn missing() -> Option<String> {
    let probe = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match probe {
        Ok(status) if status.success() => None,
        Ok(_) => Some("Python's aiosmtpd is not installed (pip install aiosmtpd)".to_owned()),
        Err(e) => Some(format!("python3 does not run: {e}")),
    }
}

fn messages_in(folder: &Path) -> Vec<Value> {
    let mut names: Vec<_> = std::fs::read_dir(folder)
        .unwrap()
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|path| serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap())
        .collect()
}
