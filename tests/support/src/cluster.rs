//! A PostgreSQL cluster a test owns (issue 22): made with `initdb` into a temporary folder and
//! started with `pg_ctl` on a port of its own, so that a test may stop it (`-m fast`,
//! `-m immediate`) and start it again without touching the machine's shared cluster.
//! PostgreSQL refuses to run as root: as root the tools run as the `postgres` user.

use std::path::PathBuf;
use std::process::{Command, Output};

use tempfile::TempDir;

pub struct OwnCluster {
    /// Owned by the `postgres` user; removed when the cluster is dropped.
    dir: TempDir,
    bin: PathBuf,
    pub port: u16,
    /// The network namespace it runs in (`netns`), listening on all of that namespace's
    /// addresses; else this namespace's 127.0.0.1.
    namespace: Option<String>,
}

/// Why no cluster of its own can be made here, if none can.
pub fn cluster_unavailable() -> Option<String> {
    match binaries() {
        None => Some("no PostgreSQL server binaries under /usr/lib/postgresql".to_owned()),
        Some(_) if !is_root() => {
            Some("making a cluster needs root (to run as postgres)".to_owned())
        }
        Some(_) => None,
    }
}

fn binaries() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

impl OwnCluster {
    /// A new cluster, started, with a database `test`; `None` with the reason printed where
    /// none can be made (under `CI` that is a failure instead).
    pub fn start_or_skip() -> Option<OwnCluster> {
        if !crate::runs_here("the tests on a cluster of their own", cluster_unavailable()) {
            return None;
        }
        Some(OwnCluster::make(None))
    }

    /// A new cluster, started in the network namespace `namespace` (where it may be made).
    pub fn start_in(namespace: &str) -> OwnCluster {
        OwnCluster::make(Some(namespace.to_owned()))
    }

    fn make(namespace: Option<String>) -> OwnCluster {
        let dir = tempfile::tempdir().expect("a folder for the cluster");
        let cluster = OwnCluster {
            bin: binaries().expect("checked by the caller"),
            port: crate::free_port(),
            dir,
            namespace,
        };
        cluster.command(&["chown", "-R", "postgres", &cluster.folder()], false);
        let data = cluster.data();
        let initdb = cluster.bin.join("initdb");
        cluster.run(&[
            &initdb.display().to_string(),
            "-D",
            &data,
            "-A",
            "trust",
            "-U",
            "postgres",
        ]);
        cluster.start();
        let createdb = cluster.bin.join("createdb");
        let port = cluster.port.to_string();
        cluster.run(&[
            &createdb.display().to_string(),
            "-h",
            &cluster.folder(),
            "-p",
            &port,
            "test",
        ]);
        cluster
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/test", self.port)
    }

    /// Starts it again (after `stop`), waiting until it takes connections.
    pub fn start(&self) {
        let listen = match self.namespace {
            Some(_) => "*",
            None => "127.0.0.1",
        };
        let options = format!(
            "-p {} -k {} -c listen_addresses={listen}",
            self.port,
            self.folder()
        );
        let log = format!("{}/log", self.folder());
        let pg_ctl = self.bin.join("pg_ctl").display().to_string();
        self.run(&[
            &pg_ctl,
            "-D",
            &self.data(),
            "-o",
            &options,
            "-l",
            &log,
            "-w",
            "start",
        ]);
    }

    /// What `psql` prints for `sql` on the database `test`, unaligned, one row a line.
    pub fn psql(&self, sql: &str) -> String {
        let psql = self.bin.join("psql").display().to_string();
        let port = self.port.to_string();
        let output = self.run(&[
            &psql,
            "-h",
            &self.folder(),
            "-p",
            &port,
            "-d",
            "test",
            "-Atc",
            sql,
        ]);
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// `pg_ctl stop -m <mode>`: `fast` (connections ended, a clean shutdown) or `immediate`
    /// (as a crash: recovery at the next start).
    pub fn stop(&self, mode: &str) {
        let pg_ctl = self.bin.join("pg_ctl").display().to_string();
        self.run(&[&pg_ctl, "-D", &self.data(), "-m", mode, "-w", "stop"]);
    }

    fn folder(&self) -> String {
        self.dir.path().display().to_string()
    }

    fn data(&self) -> String {
        format!("{}/data", self.folder())
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args, true)
    }

    fn command(&self, args: &[&str], as_postgres: bool) -> Output {
        let mut command = match as_postgres {
            true => {
                let mut command = match &self.namespace {
                    Some(namespace) => {
                        let mut command = Command::new("ip");
                        command.args(["netns", "exec", namespace, "runuser"]);
                        command
                    }
                    None => Command::new("runuser"),
                };
                command.args(["-u", "postgres", "--"]).args(args);
                command
            }
            false => {
                let mut command = Command::new(args[0]);
                command.args(&args[1..]);
                command
            }
        };
        let output = command.output().expect("the PostgreSQL tools run");
        assert!(
            output.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let pg_ctl = self.bin.join("pg_ctl").display().to_string();
        let _ = Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                &pg_ctl,
                "-D",
                &self.data(),
                "-m",
                "immediate",
                "stop",
            ])
            .output();
    }
}
