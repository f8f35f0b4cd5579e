//! `spawn_app`: the real server in this process, on a random port with a fresh SQLite file,
//! and a client of its API (`support::Api`); for a child process, `server()`.

use std::collections::HashMap;
use std::ops::Deref;

use actix_web::dev::ServerHandle;
use actix_web::web;
use serde_json::Value;
use support::{
    Api, CHECKPOINT_KEY, JWT_SECRET, LEDGER_KEY, PERSONAL_DATA_KEY, REFRESH_SECRET, Server,
};
use tempfile::TempDir;
use tokenledger::app::Application;
use tokenledger::config::Config;
use tokenledger::http::AppState;
use tokenledger::store::{EventStore, RecordedEvent};
use tokenledger::use_cases::Services;

pub struct TestApp {
    pub api: Api,
    pub dir: TempDir,
    env: HashMap<String, String>,
    handle: ServerHandle,
    running: tokio::task::JoinHandle<std::io::Result<()>>,
    state: web::Data<AppState>,
    store: std::sync::Arc<dyn EventStore>,
}

/// The app is first of all its API: `app.post(…)`, `app.login(…)`, `app.client`.
impl Deref for TestApp {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

/// Why a test that drives node with the packages `npm ci --prefix <dir>` installs cannot run
/// here, if it cannot.
pub fn node_packages_missing(dir: &std::path::Path, packages: &[&str]) -> Option<String> {
    if let Some(package) = packages
        .iter()
        .find(|p| !dir.join("node_modules").join(p).exists())
    {
        return Some(format!(
            "{}/node_modules/{package} is missing (npm ci --prefix {})",
            dir.display(),
            dir.display()
        ));
    }
    match std::process::Command::new("node").arg("--version").output() {
        Ok(output) if output.status.success() => None,
        _ => Some("node is not on the PATH".to_owned()),
    }
}

/// The `tokenledger` binary of this build as a child process, not started yet.
pub fn server() -> Server {
    Server::new(env!("CARGO_BIN_EXE_tokenledger"))
}

/// As `server`, on a data folder the test owns.
pub fn server_on(dir: &std::path::Path) -> Server {
    Server::on(env!("CARGO_BIN_EXE_tokenledger"), dir)
}
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Starts the app with these environment overrides on top of the test defaults.
pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut env = test_env(dir.path());
    for (k, v) in overrides {
        env.insert(k.to_string(), v.to_string());
    }
    start(dir, env).await
}

/// The environment a test app runs with, on the data folder `dir`: a random port, the test
/// secrets.
pub fn test_env(dir: &std::path::Path) -> HashMap<String, String> {
    [
        ("PORT", "0"),
        ("JWT_SECRET", JWT_SECRET),
        ("REFRESH_JWT_SECRET", REFRESH_SECRET),
        ("LEDGER_KEY", LEDGER_KEY),
        ("CHECKPOINT_KEY", CHECKPOINT_KEY),
        ("PERSONAL_DATA_KEY", PERSONAL_DATA_KEY),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain([("DATA_DIR".to_owned(), dir.display().to_string())])
    .collect()
}

async fn start(dir: TempDir, env: HashMap<String, String>) -> TestApp {
    // Warnings and errors of the server show with a failing test's output.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_test_writer()
        .try_init();
    let config = Config::load(None, &env, false).expect("test config");
    let app = Application::build(config).await.expect("app builds");
    let api = Api::new(format!("http://127.0.0.1:{}", app.port()));
    let (handle, state, store) = (app.handle(), app.state(), app.store());
    let running = actix_web::rt::spawn(app.run_until_stopped());
    TestApp {
        api,
        dir,
        env,
        handle,
        running,
        state,
        store,
    }
}

impl TestApp {
    /// Stops the server gracefully (store flushed and closed) and starts it again on the same
    /// database file.
    pub async fn restart(self) -> TestApp {
        self.handle.stop(true).await;
        self.running
            .await
            .expect("server task")
            .expect("server ran");
        start(self.dir, self.env).await
    }

    /// As `restart`, with these environment overrides from then on.
    pub async fn restart_with(mut self, overrides: &[(&str, &str)]) -> TestApp {
        for (k, v) in overrides {
            self.env.insert(k.to_string(), v.to_string());
        }
        self.restart().await
    }

    /// Stops the server gracefully and waits for it. Tests on PostgreSQL end with this: its
    /// pools and listener must be dropped while the runtime still runs.
    pub async fn stop(self) {
        self.handle.stop(true).await;
        self.running
            .await
            .expect("server task")
            .expect("server ran");
    }

    pub fn store(&self) -> &dyn EventStore {
        self.store.as_ref()
    }

    /// The use cases' services, for tests that look behind the API (clock, actors, hashes).
    pub fn state(&self) -> &Services {
        &self.state.app
    }

    /// Runs the real `tokenledger` binary with this app's environment (its data folder and
    /// database, its secrets).
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_tokenledger"))
            .args(args)
            .envs(&self.env)
            .output()
            .expect("the tokenledger binary runs")
    }

    /// Moves the server's clock forward.
    pub fn advance(&self, by: chrono::TimeDelta) {
        self.state.app.clock.advance(by);
    }

    /// Waits until every command handed to an actor without waiting (a failed login's
    /// record) has been recorded.
    pub async fn recorded(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.state.app.registry.unrecorded() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "submitted commands still unrecorded"
            );
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }

    /// The payloads of a user's events of one type.
    pub async fn payloads(&self, user_id: i64, event_type: &str) -> Vec<Value> {
        self.events(user_id)
            .await
            .into_iter()
            .filter(|e| e.event_type == event_type)
            .map(|e| serde_json::from_str(&e.payload).expect("json payload"))
            .collect()
    }

    /// The event types of a user's stream, in order.
    pub async fn event_types(&self, user_id: i64) -> Vec<String> {
        self.events(user_id)
            .await
            .into_iter()
            .map(|e| e.event_type)
            .collect()
    }

    /// A user's stream, once every command handed to its actor is recorded.
    async fn events(&self, user_id: i64) -> Vec<RecordedEvent> {
        self.recorded().await;
        self.store()
            .read_stream(&format!("user-{user_id}"), 0)
            .await
            .expect("read stream")
    }
}
