//! Attacks that go through the operator: stored text that reaches a terminal through the
//! command line, weak secrets in `secrets.json`, the database file deleted or replaced under a
//! running server, and a second server reaching the same file through a symlink. Each is the
//! reproduction of an item of issue 14 (items 9, 11, 12 and 13), kept as a regression test.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use serde_json::{Value, json};
use support::{Api, JWT_SECRET, REFRESH_SECRET, Server, assert_error};

use crate::helpers::{server_on, spawn_app};

// ---------------------------------------------------------------------------------------------
// Item 9: terminal injection through stored text.

/// Clears the screen, retitles the terminal window and starts a fake line of output.
const HOSTILE_NAME: &str = "evil\u{1b}[2J\u{1b}]0;owned\u{7}\nroot";
const HOSTILE_NAME_ESCAPED: &str = r"evil\x1b[2J\x1b]0;owned\x07\nroot";
/// CSI and NEL as C1 controls: a terminal that takes 8-bit controls obeys them.
const HOSTILE_AGENT: &str = "Mozilla\u{9b}2J\u{85}next";
const HOSTILE_AGENT_ESCAPED: &str = r"Mozilla\u{9b}2J\u{85}next";
const HOSTILE_DEVICE: &str = "dev\u{1b}[2J\nfake";
const HOSTILE_DEVICE_ESCAPED: &str = r"dev\x1b[2J\nfake";

#[actix_web::test]
async fn a_username_or_email_with_control_characters_is_refused_at_registration() {
    let app = spawn_app().await;
    for (username, email, field) in [
        (HOSTILE_NAME, "evil@example.com", "username"),
        ("csi\u{9b}31m", "csi@example.com", "username"),
        ("del\u{7f}ete", "del@example.com", "username"),
        ("tab\tbed", "tab@example.com", "username"),
        // yup's pattern takes C0 controls inside a quoted local part.
        ("quoted", "\"\u{1b}[2J\"@example.com", "email"),
    ] {
        let (status, body) = app
            .post(
                "/api/auth/local/register",
                json!({"username": username, "email": email, "password": "password123"}),
            )
            .await;
        assert_error(
            status,
            &body,
            400,
            "ValidationError",
            &format!("{field} must not contain control characters"),
        );
        assert_eq!(
            body["error"]["details"]["errors"][0]["path"],
            json!([field]),
            "{body}"
        );
    }
    let output = app.cli(&["user", "list"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).lines().count(),
        1,
        "only the header: no user was created"
    );
}

#[actix_web::test]
async fn user_add_refuses_control_characters_too() {
    let app = spawn_app().await;
    let output = app.cli(&[
        "user",
        "add",
        "--username",
        HOSTILE_NAME,
        "--email",
        "evil@example.com",
        "--password",
        "password123",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "added: {output:?}");
    assert!(
        stderr.contains("username must not contain control characters"),
        "{stderr}"
    );
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
}

/// What of `text` a terminal would act on rather than show: every control character but the
/// newlines that end lines.
fn raw_controls(text: &str) -> Vec<char> {
    text.chars()
        .filter(|c| c.is_control() && *c != '\n')
        .collect()
}

#[actix_web::test]
async fn stored_control_characters_reach_the_command_line_escaped() {
    let app = spawn_app().await;
    let id = app.register("mallory").await["user"]["id"]
        .as_i64()
        .unwrap();
    // The user agent and device id come from the client, unchecked.
    let login = app
        .client
        .post(app.url("/api/auth/local"))
        .header(
            "user-agent",
            reqwest::header::HeaderValue::from_bytes(HOSTILE_AGENT.as_bytes()).unwrap(),
        )
        .json(&json!({
            "identifier": "mallory",
            "password": "password123",
            "requestRefresh": true,
            "deviceId": HOSTILE_DEVICE,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    // A name stored before registration refused control characters (an older version).
    let url = format!(
        "sqlite://{}",
        app.dir.path().join("tokenledger.db").display()
    );
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let renamed = sqlx::query("UPDATE users SET username = ? WHERE id = ?")
        .bind(HOSTILE_NAME)
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(renamed.rows_affected(), 1);
    pool.close().await;

    let id_text = id.to_string();
    let commands: [(&[&str], &[&str]); 6] = [
        (&["user", "list"], &[HOSTILE_NAME_ESCAPED]),
        (&["audit", &id_text], &[HOSTILE_AGENT_ESCAPED]),
        (
            &["audit", &id_text, "--json"],
            &[r"Mozilla\u009b2J\u0085next"],
        ),
        (&["replay"], &[HOSTILE_DEVICE_ESCAPED]),
        (&["replay", "--user", &id_text], &[HOSTILE_DEVICE_ESCAPED]),
        (&["user", "block", &id_text], &[HOSTILE_NAME_ESCAPED]),
    ];
    let mut raw = Vec::new();
    for (args, escaped) in commands {
        let output = app.cli(args);
        assert!(output.status.success(), "{args:?}: {output:?}");
        let stdout = String::from_utf8(output.stdout).unwrap();
        let controls = raw_controls(&stdout);
        if !controls.is_empty() {
            raw.push(format!("{args:?} printed {controls:?}"));
        }
        for form in escaped {
            if !stdout.contains(form) {
                raw.push(format!("{args:?} has no {form}: {stdout:?}"));
            }
        }
        // A newline inside a field would start a forged line.
        if stdout
            .lines()
            .any(|line| ["root", "fake", "next"].iter().any(|s| line.starts_with(s)))
        {
            raw.push(format!("{args:?}: a field broke its line"));
        }
        if args.contains(&"--json") {
            let agents: Vec<String> = stdout
                .lines()
                .map(|line| serde_json::from_str::<Value>(line).unwrap())
                .filter_map(|entry| entry["userAgent"].as_str().map(str::to_owned))
                .collect();
            assert_eq!(agents, [HOSTILE_AGENT], "the JSON still holds the value");
        }
    }
    assert!(raw.is_empty(), "{}", raw.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Item 11: weak secrets in secrets.json.

/// How a start of the binary ended: it exited on its own, or it was serving (and is killed).
enum Started {
    Exited(ExitStatus, String),
    Serving(String),
}

/// Runs `tokenledger <args>` on `dir` with `env` and no signing secret in the environment,
/// until it exits or serves.
fn run_binary(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Started {
    let mut server = server_on(dir)
        .without("JWT_SECRET")
        .without("REFRESH_JWT_SECRET")
        .args(args)
        .envs(env);
    match server.try_start() {
        Ok(()) => Started::Serving(server.stop().join("\n")),
        Err(status) => Started::Exited(status, server.log_text()),
    }
}

#[test]
fn weak_secrets_in_secrets_json_are_refused_unless_insecure_dev() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secrets.json");
    std::fs::write(&file, r#"{"jwt_secret":"a","refresh_jwt_secret":"a"}"#).unwrap();
    match run_binary(dir.path(), &["serve"], &[]) {
        Started::Exited(status, log) => {
            assert!(!status.success(), "{log}");
            assert!(
                log.contains("JWT_SECRET") && log.contains(&file.display().to_string()),
                "names the key and the file: {log}"
            );
            assert!(log.contains("shorter than 32 bytes"), "{log}");
        }
        Started::Serving(log) => panic!("served with the secret \"a\":\n{log}"),
    }

    // One weak secret from the file next to a strong one from the environment.
    std::fs::write(&file, r#"{"refresh_jwt_secret":"SuperSecretKey"}"#).unwrap();
    match run_binary(dir.path(), &["serve"], &[("JWT_SECRET", JWT_SECRET)]) {
        Started::Exited(status, log) => {
            assert!(!status.success(), "{log}");
            assert!(log.contains("REFRESH_JWT_SECRET"), "{log}");
            assert!(log.contains("well-known default secret"), "{log}");
        }
        Started::Serving(log) => panic!("served with SuperSecretKey:\n{log}"),
    }

    std::fs::write(&file, r#"{"jwt_secret":"a","refresh_jwt_secret":"b"}"#).unwrap();
    match run_binary(dir.path(), &["--insecure-dev", "serve"], &[]) {
        Started::Serving(log) => assert!(
            log.contains("accepted only because of --insecure-dev"),
            "{log}"
        ),
        Started::Exited(status, log) => panic!("--insecure-dev refused ({status}):\n{log}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Item 12: the database file deleted or replaced under a running server.
// (Inodes, hard links and symlinks: the tests of items 12 and 13 run on Unix.)

/// A user's acknowledged login on a fresh server: the server and the refresh token.
async fn serving_with_a_session(dir: &Path) -> (Server, String) {
    let server = server_on(dir).serving().await;
    server.api().register("dora").await;
    let token = log_in(&server.api()).await;
    (server, token)
}

async fn log_in(api: &Api) -> String {
    api.login("dora").await["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// After the file under the server changed: logins and refreshes are refused, none acknowledged.
async fn writes_are_refused(api: &Api, token: &str) {
    for _ in 0..2 {
        let (status, body) = api
            .post(
                "/api/auth/local",
                json!({"identifier": "dora", "password": "password123", "requestRefresh": true}),
            )
            .await;
        assert_eq!(status, 503, "login acknowledged: {body}");
        assert_eq!(body["error"]["name"], "ServiceUnavailableError", "{body}");
        let (status, body) = api.refresh(token).await;
        assert_eq!(status, 503, "refresh acknowledged: {body}");
    }
    // What an orchestrator asks: not ready, until a restart.
    let (status, body) = api.get("/_ready").await;
    assert_eq!(status, 503);
    assert_eq!(
        body["error"]["message"],
        "The database file was deleted or replaced: restart the service"
    );
    let metrics = api.metrics().await;
    assert_eq!(metrics.get("tokenledger_ready"), 0.0);
}

/// Restarted on the restored file: what was acknowledged before is there.
async fn acknowledged_writes_survive(dir: &Path, token: &str) {
    let server = server_on(dir).serving().await;
    let api = server.api();
    let (status, body) = api.refresh(token).await;
    assert_eq!(status, 200, "{body}");
    log_in(&api).await;
    server.stop();
}

fn database(dir: &Path) -> PathBuf {
    dir.join("tokenledger.db")
}

#[cfg(unix)]
#[actix_web::test]
async fn deleting_the_database_file_under_the_server_is_a_503_until_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (server, token) = serving_with_a_session(dir.path()).await;
    let kept = dir.path().join("kept.db");
    // A second name keeps the file, so that it can be put back for the restart.
    std::fs::hard_link(database(dir.path()), &kept).unwrap();
    std::fs::remove_file(database(dir.path())).unwrap();
    writes_are_refused(&server.api(), &token).await;
    let log = server.stop().join("\n");
    assert!(log.contains("was deleted"), "{log}");
    std::fs::rename(&kept, database(dir.path())).unwrap();
    acknowledged_writes_survive(dir.path(), &token).await;
}

#[cfg(unix)]
#[actix_web::test]
async fn replacing_the_database_file_under_the_server_is_a_503_until_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (server, token) = serving_with_a_session(dir.path()).await;
    let kept = dir.path().join("kept.db");
    std::fs::hard_link(database(dir.path()), &kept).unwrap();
    // A backup put back over the live file, as `mv backup.db tokenledger.db` does.
    let copy = dir.path().join("copy.db");
    std::fs::copy(database(dir.path()), &copy).unwrap();
    std::fs::rename(&copy, database(dir.path())).unwrap();
    writes_are_refused(&server.api(), &token).await;
    let log = server.stop().join("\n");
    assert!(log.contains("was replaced"), "{log}");
    std::fs::rename(&kept, database(dir.path())).unwrap();
    acknowledged_writes_survive(dir.path(), &token).await;
}

#[cfg(unix)]
#[actix_web::test]
async fn deleting_the_write_ahead_log_under_the_server_is_a_503_until_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (server, token) = serving_with_a_session(dir.path()).await;
    let wal = dir.path().join("tokenledger.db-wal");
    let kept = dir.path().join("kept.db-wal");
    std::fs::hard_link(&wal, &kept).unwrap();
    std::fs::remove_file(&wal).unwrap();
    writes_are_refused(&server.api(), &token).await;
    let log = server.stop().join("\n");
    assert!(log.contains("write-ahead log"), "{log}");
    std::fs::rename(&kept, &wal).unwrap();
    acknowledged_writes_survive(dir.path(), &token).await;
}

// ---------------------------------------------------------------------------------------------
// Item 13: the one-server lock, reached through another name of the same file.

#[cfg(unix)]
#[actix_web::test]
async fn a_second_server_through_a_symlink_to_the_database_refuses_to_start() {
    let app = spawn_app().await;
    app.register("sybil").await;
    let elsewhere = tempfile::tempdir().unwrap();
    let link = elsewhere.path().join("link.db");
    std::os::unix::fs::symlink(app.dir.path().join("tokenledger.db"), &link).unwrap();
    let dotted = app
        .dir
        .path()
        .join("..")
        .join(app.dir.path().file_name().unwrap())
        .join("tokenledger.db");
    for spelling in [link, dotted] {
        let url = format!("sqlite://{}", spelling.display());
        let started = run_binary(
            elsewhere.path(),
            &["serve"],
            &[
                ("DATABASE_URL", &url),
                ("JWT_SECRET", JWT_SECRET),
                ("REFRESH_JWT_SECRET", REFRESH_SECRET),
            ],
        );
        match started {
            Started::Exited(status, log) => {
                assert!(!status.success(), "{log}");
                assert!(
                    log.contains("another tokenledger is serving this database"),
                    "{url}: {log}"
                );
            }
            Started::Serving(log) => panic!("a second server on {url}:\n{log}"),
        }
    }
    // The first server still serves the same users.
    assert!(app.login("sybil").await["jwt"].is_string());
}
