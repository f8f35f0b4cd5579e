//! The real `loadgen` binary against the real tokenledger, started in-process on port 0 with a
//! fresh SQLite file (one server per rotation mode): every scenario runs briefly without a
//! single error, and the JSON report says so. No speed is asserted.

use std::collections::HashMap;
use std::process::{Command, Output};

use actix_web::dev::ServerHandle;
use serde_json::Value;
use tempfile::TempDir;
use tokenledger::app::Application;
use tokenledger::config::Config;

const JWT_SECRET: &str = "loadgen-test-access-secret-0123456789abcdef01";
const REFRESH_SECRET: &str = "loadgen-test-refresh-secret-0123456789abcdef0";
/// The service `introspect` asks as, one of the server's INTROSPECTION_CLIENTS.
const SERVICE: &str = "loadgen-service:loadgen-test-service-secret-0123456789";

struct Server {
    base_url: String,
    handle: ServerHandle,
    running: actix_web::rt::task::JoinHandle<std::io::Result<()>>,
    _dir: TempDir,
}

impl Server {
    /// Must run inside an actix system, as `Application::build` does.
    async fn start(rotation: bool) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let env: HashMap<String, String> = [
            ("PORT", "0"),
            ("JWT_SECRET", JWT_SECRET),
            ("REFRESH_JWT_SECRET", REFRESH_SECRET),
            (
                "LEDGER_KEY",
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            ),
            (
                "CHECKPOINT_KEY",
                "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210",
            ),
            (
                "PERSONAL_DATA_KEY",
                "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
            ),
            ("LOGIN_RATE_LIMIT", "off"),
            ("LOGIN_IP_RATE_LIMIT", "off"),
            ("LOGIN_ACCOUNT_FAILURE_LIMIT", "off"),
            ("REFRESH_RATE_LIMIT", "off"),
            ("INTROSPECTION_CLIENTS", SERVICE),
            (
                "REFRESH_TOKEN_ROTATION",
                if rotation { "true" } else { "false" },
            ),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain([("DATA_DIR".to_owned(), dir.path().display().to_string())])
        .collect();
        let config = Config::load(None, &env, false).expect("test config");
        let app = Application::build(config).await.expect("app builds");
        let base_url = format!("http://127.0.0.1:{}", app.port());
        let handle = app.handle();
        let running = actix_web::rt::spawn(app.run_until_stopped());
        Server {
            base_url,
            handle,
            running,
            _dir: dir,
        }
    }

    async fn stop(self) {
        self.handle.stop(true).await;
        self.running
            .await
            .expect("server task")
            .expect("server ran");
    }

    /// Runs the binary off the server's threads, so the server keeps serving meanwhile.
    async fn loadgen(&self, scenario: &str, duration: &str) -> Output {
        let args: Vec<String> = [
            "--base-url",
            &self.base_url,
            "--scenario",
            scenario,
            "--json",
            "--duration",
            duration,
            "--warmup",
            "0s",
            "--connections",
            "4",
            "--users",
            "4",
            "--introspection-client",
            SERVICE,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        actix_web::rt::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_loadgen"))
                .args(&args)
                .output()
                .expect("the loadgen binary runs")
        })
        .await
        .expect("blocking task")
    }

    /// Runs `scenario` for 2 s and returns its report, asserting it saw no error.
    async fn clean_run(&self, scenario: &str) -> Value {
        let output = self.loadgen(scenario, "2s").await;
        let report = report_of(&output, scenario);
        let requests = report["requests"].as_u64().expect("requests");
        assert!(requests > 0, "{scenario}: no requests: {report:#}");
        assert_eq!(report["errors"], 0, "{scenario}: errors: {report:#}");
        assert_eq!(report["success"], requests, "{scenario}: {report:#}");
        assert_eq!(report["scenario"], scenario);
        report
    }
}

fn report_of(output: &Output, scenario: &str) -> Value {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{scenario}: loadgen exited with {}: {stderr}",
        output.status
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "{scenario}: stdout is not one JSON object ({error}): {}\nstderr: {stderr}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn assert_mixed_counts_each_kind(report: &Value) {
    for kind in ["login", "refresh", "sessions", "logout"] {
        let stats = &report["kinds"][kind];
        let requests = stats["requests"].as_u64().unwrap_or(0);
        assert!(requests > 0, "mixed: no {kind} requests: {report:#}");
        assert_eq!(stats["success"], requests, "mixed {kind}: {report:#}");
    }
    // Five refreshes per login; each of the 4 users' last loop may be cut short by the end.
    let logins = report["kinds"]["login"]["requests"].as_u64().unwrap_or(0);
    let refreshes = report["kinds"]["refresh"]["requests"].as_u64().unwrap_or(0);
    assert!(
        refreshes <= 5 * logins && refreshes + 5 * 4 >= 5 * logins,
        "{report:#}"
    );
}

#[actix_web::test]
async fn every_scenario_runs_without_errors_when_the_server_does_not_rotate() {
    let server = Server::start(false).await;
    for scenario in ["health", "login", "refresh", "introspect", "me"] {
        server.clean_run(scenario).await;
    }
    let mixed = server.clean_run("mixed").await;
    assert_mixed_counts_each_kind(&mixed);

    // refresh-rotate needs rotation: every answer is an error that says so, and the run still
    // exits 0 with its counts.
    let output = server.loadgen("refresh-rotate", "1s").await;
    let report = report_of(&output, "refresh-rotate");
    assert!(
        report["unexpected_answers"].as_u64() > Some(0),
        "{report:#}"
    );
    assert_eq!(report["errors"], report["requests"]);
    let messages = report["error_messages"].as_object().expect("messages");
    assert!(
        messages
            .keys()
            .any(|m| m.contains("REFRESH_TOKEN_ROTATION=true")),
        "{report:#}"
    );
    server.stop().await;
}

#[actix_web::test]
async fn the_refresh_scenarios_run_without_errors_when_the_server_rotates() {
    let server = Server::start(true).await;
    server.clean_run("refresh-rotate").await;
    // refresh follows a rotating server's new tokens too.
    server.clean_run("refresh").await;
    let mixed = server.clean_run("mixed").await;
    assert_mixed_counts_each_kind(&mixed);
    server.stop().await;
}

#[test]
fn setup_failures_and_bad_arguments_exit_non_zero() {
    let loadgen = || Command::new(env!("CARGO_BIN_EXE_loadgen"));
    let bad = loadgen()
        .args(["--scenario", "nonsense"])
        .output()
        .expect("runs");
    assert_eq!(bad.status.code(), Some(2));
    let bad = loadgen()
        .args(["--scenario", "health", "--duration", "0s"])
        .output()
        .expect("runs");
    assert_eq!(bad.status.code(), Some(2));
    let bad = loadgen()
        .args(["--scenario", "introspect"])
        .output()
        .expect("runs");
    assert_eq!(
        bad.status.code(),
        Some(2),
        "introspect without a credential"
    );
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--introspection-client"));

    // Nothing listens on port 1.
    let unreachable = loadgen()
        .args(["--scenario", "refresh", "--json"])
        .args(["--base-url", "http://127.0.0.1:1"])
        .output()
        .expect("runs");
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(unreachable.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert!(stderr.contains("cannot connect"), "{stderr}");
}
