//! The real `tokenledger` binary as a child process: for what only a process shows (its log,
//! its start-up, its memory, its exit on a signal, a `SIGKILL` at any moment) and for several
//! instances on one database. It serves on a port of its own (`PORT=0`, read back from its
//! log), on one data folder for its whole life however often it is restarted, with nothing
//! of the test's environment but what is set here. Every line it logs (JSON, one object a
//! line) is kept, across restarts.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::{Api, CHECKPOINT_KEY, JWT_SECRET, LEDGER_KEY, PERSONAL_DATA_KEY, REFRESH_SECRET};

/// How long a start, a readiness or a graceful stop may take on a loaded CI machine.
const PATIENCE: Duration = Duration::from_secs(60);

pub struct Server {
    binary: PathBuf,
    /// The data folder where `new` made it, kept for as long as the server may use it.
    temporary: Option<TempDir>,
    env: BTreeMap<String, String>,
    args: Vec<String>,
    /// The network namespace it runs in (`ip netns exec`), if not this one.
    namespace: Option<String>,
    child: Option<Child>,
    readers: Vec<JoinHandle<()>>,
    lines: Arc<Mutex<Vec<String>>>,
    /// The first line the last start logged.
    first: usize,
    /// `http://<HOST>:<port>` of the last start.
    pub address: String,
    port: u16,
}

impl Server {
    /// The binary at `binary` (a test binary's `env!("CARGO_BIN_EXE_tokenledger")`), not
    /// started yet, on a fresh temporary data folder.
    pub fn new(binary: &str) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = Server::on(binary, dir.path());
        server.temporary = Some(dir);
        server
    }

    /// As `new`, on a data folder the test owns (and may share between instances or runs).
    pub fn on(binary: &str, data: &Path) -> Server {
        let env = [
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("JWT_SECRET", JWT_SECRET),
            ("REFRESH_JWT_SECRET", REFRESH_SECRET),
            ("LEDGER_KEY", LEDGER_KEY),
            ("CHECKPOINT_KEY", CHECKPOINT_KEY),
            ("PERSONAL_DATA_KEY", PERSONAL_DATA_KEY),
            ("PERSONAL_DATA_KEY", PERSONAL_DATA_KEY),
            ("LOG_FORMAT", "json"),
            ("RUST_LOG", "info"),
            ("NO_COLOR", "1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain([("DATA_DIR".to_owned(), data.display().to_string())])
        .collect();
        Server {
            binary: PathBuf::from(binary),
            temporary: None,
            env,
            args: Vec::new(),
            namespace: None,
            child: None,
            readers: Vec::new(),
            lines: Arc::new(Mutex::new(Vec::new())),
            first: 0,
            address: String::new(),
            port: 0,
        }
    }

    /// Sets a variable of the server's environment (and of `cli`'s).
    pub fn env(mut self, key: &str, value: &str) -> Server {
        self.env.insert(key.to_owned(), value.to_owned());
        self
    }

    pub fn envs(self, variables: &[(&str, &str)]) -> Server {
        variables
            .iter()
            .fold(self, |server, (key, value)| server.env(key, value))
    }

    /// Leaves a variable of the defaults out (a signing secret, to see what the server does
    /// without it).
    pub fn without(mut self, key: &str) -> Server {
        self.env.remove(key);
        self
    }

    /// The command line the server starts with (`serve` when none is given).
    pub fn args(mut self, args: &[&str]) -> Server {
        self.args = args.iter().map(|a| a.to_string()).collect();
        self
    }

    /// Runs it (and `cli`) in the network namespace `namespace`, serving on `host`, an
    /// address of that namespace.
    pub fn in_namespace(mut self, namespace: &str, host: &str) -> Server {
        self.namespace = Some(namespace.to_owned());
        self.env("HOST", host)
    }

    /// The binary with this server's environment and nothing inherited. In a namespace it is
    /// `ip netns exec`, which execs the binary: the child's process is still the server's.
    fn command(&self) -> Command {
        let mut command = match &self.namespace {
            Some(namespace) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", namespace]).arg(&self.binary);
                command
            }
            None => Command::new(&self.binary),
        };
        command.env_clear().envs(&self.env);
        command
    }

    /// Starts the server and returns as soon as it listens (its log may still be being
    /// folded: `/_ready` says 503 until `ready`); panics, with its log, if it exits first.
    pub fn start(&mut self) -> &mut Server {
        if let Err(status) = self.try_start() {
            panic!(
                "the server ended ({status}) before listening:\n{}",
                self.log_tail()
            );
        }
        self
    }

    /// Starts the server until it listens, or until it exits by itself: its exit status then.
    pub fn try_start(&mut self) -> Result<(), ExitStatus> {
        assert!(self.child.is_none(), "one process at a time");
        let mut child = self
            .command()
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the tokenledger binary starts");
        self.first = self.lines.lock().expect("log lines").len();
        let stdout = Box::new(child.stdout.take().expect("piped"));
        let stderr = Box::new(child.stderr.take().expect("piped"));
        self.readers = vec![self.keep(stdout), self.keep(stderr)];
        self.child = Some(child);
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(port) = self.said_since(self.first, "listening", "port") {
                self.port = u16::try_from(port).expect("a port");
                self.address = format!("http://{}:{}", self.env["HOST"], self.port);
                return Ok(());
            }
            if let Some(status) = self.exited() {
                self.reap();
                return Err(status);
            }
            assert!(
                Instant::now() < deadline,
                "the server did not listen within {PATIENCE:?}:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Copies every line of `output` into the kept log, until the process closes it.
    fn keep(&self, output: Box<dyn Read + Send>) -> JoinHandle<()> {
        let kept = self.lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(output).lines().map_while(Result::ok) {
                kept.lock().expect("log lines").push(line);
            }
        })
    }

    /// The number `field` of the first line since `first` whose message starts with `message`.
    fn said_since(&self, first: usize, message: &str, field: &str) -> Option<u64> {
        let lines = self.lines.lock().expect("log lines");
        lines[first..].iter().find_map(|line| {
            let entry: Value = serde_json::from_str(line).ok()?;
            let fields = &entry["fields"];
            fields["message"]
                .as_str()?
                .starts_with(message)
                .then(|| fields[field].as_u64())
                .flatten()
        })
    }

    /// Waits until `/_ready` answers 200 and the command line said it serves (from then on
    /// it stops gracefully on `SIGTERM` and `SIGINT`).
    pub async fn ready(&mut self) {
        let client = reqwest::Client::new();
        let ready = format!("{}/_ready", self.address);
        let deadline = Instant::now() + PATIENCE;
        loop {
            let answered = match client.get(&ready).send().await {
                Ok(response) => match response.status().as_u16() {
                    200 => true,
                    503 => false,
                    status => panic!("GET /_ready: {status}"),
                },
                Err(_) => false,
            };
            if answered
                && self
                    .said_since(self.first, "tokenledger is serving", "port")
                    .is_some()
            {
                return;
            }
            if let Some(status) = self.exited() {
                panic!(
                    "the server ended ({status}) before it was ready:\n{}",
                    self.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the server was not ready within {PATIENCE:?}:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Starts the server and waits until it is ready: what most tests want.
    pub async fn serving(mut self) -> Server {
        self.start();
        self.ready().await;
        self
    }

    /// A client of the running server, with a connection pool of its own.
    pub fn api(&self) -> Api {
        Api::new(self.address.clone())
    }

    pub fn socket_address(&self) -> SocketAddr {
        SocketAddr::new(self.env["HOST"].parse().expect("an address"), self.port)
    }

    /// The exit status, once the process has ended by itself.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        child.try_wait().expect("the server's status")
    }

    /// `SIGKILL` (what `Child::kill` sends on Unix): no flush, no shutdown, nothing. Panics
    /// if the server had already ended by itself.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("a running server");
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("the killed server is reaped");
        self.join_readers();
        #[cfg(unix)]
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "the server ended by itself ({status}):\n{}",
            self.log_tail()
        );
    }

    /// `kill -<signal>` (`TERM` as an orchestrator stops a service, `INT` as Ctrl-C) and the
    /// exit it leads to: the server must answer what it has, flush the log and end by itself,
    /// with success.
    pub async fn stop_with(&mut self, signal: &str) {
        let child = self.child.as_ref().expect("a running server");
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -{signal}");
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = self.exited() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not stop within {PATIENCE:?} of SIG{signal}:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        self.reap();
        assert!(
            status.success(),
            "the server ended with {status} after SIG{signal}:\n{}",
            self.log_tail()
        );
    }

    /// Kills the server, if it still runs, and returns every line it logged.
    pub fn stop(mut self) -> Vec<String> {
        self.reap();
        self.lines()
    }

    /// Ends the process if it runs, and reads the rest of what it wrote.
    fn reap(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.join_readers();
    }

    fn join_readers(&mut self) {
        for reader in self.readers.drain(..) {
            reader.join().expect("a log reader");
        }
    }

    /// Every line logged so far, by every start.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("log lines").clone()
    }

    /// Every line logged so far, parsed.
    pub fn entries(&self) -> Vec<Value> {
        self.lines()
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    pub fn log_text(&self) -> String {
        self.lines().join("\n")
    }

    fn log_tail(&self) -> String {
        let lines = self.lines();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// `VmRSS` and `VmHWM` (its peak) of the server process, in KiB.
    pub fn memory_kib(&self) -> (u64, u64) {
        let child = self.child.as_ref().expect("a running server");
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
            .expect("the server process is alive");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or_else(|| panic!("no {name} line: has the server exited?"))
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Runs the binary's command line on this server's data, with its environment.
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
}

impl Drop for Server {
    fn drop(&mut self) {
        self.reap();
        if std::thread::panicking() {
            eprintln!("the server's log:\n{}", self.log_tail());
        }
    }
}
