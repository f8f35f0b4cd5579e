//! The real `tokenledger` binary as a child process, with every line it logs kept (JSON, one
//! object a line): for what only a process shows, its log and its start-up.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{JWT_SECRET, REFRESH_SECRET};

pub struct Server {
    child: Child,
    pub address: String,
    lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Starts the binary on `dir` with these variables over the test defaults, and returns
    /// as soon as it listens: the log may still be being folded (`/_ready` says 503).
    pub fn start(dir: &Path, env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tokenledger"));
        command
            .env("DATA_DIR", dir)
            .env("PORT", "0")
            .env("JWT_SECRET", JWT_SECRET)
            .env("REFRESH_JWT_SECRET", REFRESH_SECRET)
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info");
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the tokenledger binary starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let keep = |output: Box<dyn std::io::Read + Send>| {
            let kept = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(output).lines().map_while(Result::ok) {
                    kept.lock().unwrap().push(line);
                }
            })
        };
        let readers = vec![
            keep(Box::new(child.stdout.take().unwrap())),
            keep(Box::new(child.stderr.take().unwrap())),
        ];
        let deadline = Instant::now() + Duration::from_secs(60);
        let port = loop {
            let listening = lines.lock().unwrap().iter().find_map(|line| {
                let entry: Value = serde_json::from_str(line).ok()?;
                entry["fields"]["message"]
                    .as_str()?
                    .starts_with("listening")
                    .then(|| entry["fields"]["port"].as_u64())
                    .flatten()
            });
            if let Some(port) = listening {
                break port;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "the server ended ({status}) before listening:\n{}",
                    lines.lock().unwrap().join("\n")
                );
            }
            assert!(Instant::now() < deadline, "the server never listened");
            std::thread::sleep(Duration::from_millis(2));
        };
        Server {
            child,
            address: format!("http://127.0.0.1:{port}"),
            lines,
            readers,
        }
    }

    /// Waits until `/_ready` answers 200.
    pub async fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let ready = format!("{}/_ready", self.address);
        let client = reqwest::Client::new();
        loop {
            if let Ok(response) = client.get(&ready).send().await
                && response.status() == 200
            {
                return;
            }
            assert!(Instant::now() < deadline, "not ready within 60 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The process's resident memory (`VmRSS`), in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server process is alive");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("a VmRSS line")
    }

    /// Every line logged so far, parsed.
    pub fn entries(&self) -> Vec<Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Stops the server and returns every line it wrote.
    pub fn stop(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
