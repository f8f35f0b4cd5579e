//! `spawn_app`: the real server on a random port with a fresh SQLite file, and a client.

use std::collections::HashMap;

use actix_web::dev::ServerHandle;
use actix_web::web;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokenledger::app::Application;
use tokenledger::config::Config;
use tokenledger::http::AppState;
use tokenledger::store::EventStore;
use tokenledger::use_cases::Services;

pub const JWT_SECRET: &str = "test-access-secret-0123456789abcdef0123456789";
pub const REFRESH_SECRET: &str = "test-refresh-secret-0123456789abcdef012345678";

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub dir: TempDir,
    env: HashMap<String, String>,
    handle: ServerHandle,
    running: tokio::task::JoinHandle<std::io::Result<()>>,
    state: web::Data<AppState>,
    store: std::sync::Arc<dyn EventStore>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Starts the app with these environment overrides on top of the test defaults.
pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut env: HashMap<String, String> = [
        ("PORT", "0"),
        ("JWT_SECRET", JWT_SECRET),
        ("REFRESH_JWT_SECRET", REFRESH_SECRET),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.insert("DATA_DIR".into(), dir.path().display().to_string());
    for (k, v) in overrides {
        env.insert(k.to_string(), v.to_string());
    }
    start(dir, env).await
}

async fn start(dir: TempDir, env: HashMap<String, String>) -> TestApp {
    // Warnings and errors of the server show with a failing test's output.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_test_writer()
        .try_init();
    let config = Config::load(None, &env, false).expect("test config");
    let app = Application::build(config).await.expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let (handle, state, store) = (app.handle(), app.state(), app.store());
    let running = actix_web::rt::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::new(),
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

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("request");
        read(response).await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        let mut request = self.client.post(self.url(path)).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        read(request.send().await.expect("request")).await
    }

    pub async fn post_with_bearer(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("request");
        read(response).await
    }

    pub async fn delete_with_bearer(&self, path: &str, token: &str) -> (u16, Value) {
        let response = self
            .client
            .delete(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        read(response).await
    }

    /// Logs in with this body (password and requestRefresh added) and returns the answer.
    pub async fn login_with(&self, identifier: &str, extra: Value) -> Value {
        let mut body =
            json!({"identifier": identifier, "password": "password123", "requestRefresh": true});
        for (k, v) in extra.as_object().expect("an object") {
            body[k] = v.clone();
        }
        let (status, answer) = self.post("/api/auth/local", body).await;
        assert_eq!(status, 200, "login: {answer}");
        answer
    }

    /// The payloads of a user's events of one type.
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

    pub async fn payloads(&self, user_id: i64, event_type: &str) -> Vec<Value> {
        self.recorded().await;
        self.store()
            .read_stream(&format!("user-{user_id}"), 0)
            .await
            .expect("read stream")
            .into_iter()
            .filter(|e| e.event_type == event_type)
            .map(|e| serde_json::from_str(&e.payload).expect("json payload"))
            .collect()
    }

    pub async fn get_with_bearer(&self, path: &str, token: &str) -> (u16, Value) {
        let response = self
            .client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        read(response).await
    }

    pub async fn register(&self, username: &str) -> Value {
        let (status, body) = self
            .post(
                "/api/auth/local/register",
                json!({"username": username, "email": format!("{username}@example.com"), "password": "password123"}),
            )
            .await;
        assert_eq!(status, 200, "register: {body}");
        body
    }

    /// Logs in with `requestRefresh` and returns the whole answer.
    pub async fn login(&self, identifier: &str) -> Value {
        let (status, body) = self
            .post(
                "/api/auth/local",
                json!({"identifier": identifier, "password": "password123", "requestRefresh": true}),
            )
            .await;
        assert_eq!(status, 200, "login: {body}");
        body
    }

    /// Registers `name` and logs in with `requestRefresh`: the user's id and refresh token.
    pub async fn user_with_token(&self, name: &str) -> (i64, String) {
        let id = self.register(name).await["user"]["id"].as_i64().unwrap();
        let token = self.login(name).await["refreshToken"]
            .as_str()
            .unwrap()
            .to_owned();
        (id, token)
    }

    pub async fn refresh(&self, token: &str) -> (u16, Value) {
        self.post("/api/auth/local/refresh", json!({ "refreshToken": token }))
            .await
    }

    /// The event types of a user's stream, in order.
    pub async fn event_types(&self, user_id: i64) -> Vec<String> {
        self.recorded().await;
        self.store()
            .read_stream(&format!("user-{user_id}"), 0)
            .await
            .expect("read stream")
            .into_iter()
            .map(|e| e.event_type)
            .collect()
    }
}

async fn read(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, body)
}

/// Asserts Strapi's error body with this status, name and message.
pub fn assert_error(status: u16, body: &Value, expected_status: u16, name: &str, message: &str) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["data"], Value::Null, "{body}");
    assert_eq!(body["error"]["status"], expected_status, "{body}");
    assert_eq!(body["error"]["name"], name, "{body}");
    assert_eq!(body["error"]["message"], message, "{body}");
    assert!(body["error"]["details"].is_object(), "{body}");
}
