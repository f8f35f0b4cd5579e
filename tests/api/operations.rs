//! What operators run the service by: `/metrics`, `/_ready` during start-up, and the request
//! id on the log lines of a request.

use std::time::{Duration, Instant};

use futures::FutureExt as _;
use serde_json::{Value, json};

use support::{JWT_SECRET, REFRESH_SECRET, Samples};

use crate::helpers::{server_on, spawn_app_with};

#[actix_web::test]
async fn given_a_short_load_when_metrics_are_scraped_then_every_family_shows_it() {
    // Given: a user who registered, logged in twice, rotated three times, mistyped a password
    // once, asked for a page that does not exist and for a route with the wrong methods.
    let app = spawn_app_with(&[("REFRESH_TOKEN_ROTATION", "true")]).await;
    app.register("meg").await;
    app.login("meg").await;
    let mut token = app.login("meg").await["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..3 {
        let (status, answer) = app.refresh(&token).await;
        assert_eq!(status, 200, "{answer}");
        token = answer["refreshToken"].as_str().unwrap().to_owned();
    }
    let (status, _) = app
        .post(
            "/api/auth/local",
            json!({"identifier": "meg", "password": "not-her-password"}),
        )
        .await;
    assert_eq!(status, 400);
    let missing = app.client.get(app.url("/api/nothing/here")).send().await;
    assert_eq!(missing.unwrap().status(), 404);
    // A route asked with the wrong method, and a method nobody uses: neither may add a series
    // of its own (an invented method per request would grow them without end).
    let wrong_method = app.client.get(app.url("/api/auth/local")).send().await;
    assert_eq!(wrong_method.unwrap().status(), 405);
    let invented = reqwest::Method::from_bytes(b"M0001").unwrap();
    let odd = app
        .client
        .request(invented, app.url("/api/auth/local"))
        .send();
    assert_eq!(odd.await.unwrap().status(), 405);

    // When (a failed login is recorded just after its answer)
    app.recorded().await;
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();

    // Then
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    let found = Samples::parse(&text);
    let requests = |method: &str, route: &str, status: u16| {
        found.get(&format!(
                "tokenledger_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}}"
            ),
        )
    };
    assert_eq!(requests("POST", "/api/auth/local/refresh", 200), 3.0);
    assert_eq!(requests("POST", "/api/auth/local", 200), 2.0);
    assert_eq!(requests("POST", "/api/auth/local", 400), 1.0);
    assert_eq!(requests("POST", "/api/auth/local/register", 200), 1.0);
    assert_eq!(
        requests("GET", "unmatched", 404),
        1.0,
        "no raw path as a label"
    );
    assert_eq!(requests("GET", "unmatched", 405), 1.0);
    assert_eq!(requests("other", "unmatched", 405), 1.0);
    assert!(!text.contains("M0001"), "no invented method as a label");
    assert!(
        !found.contains(
            "tokenledger_http_requests_total{method=\"GET\",route=\"/api/auth/local\",status=\"405\"}"
        ),
        "a wrong method counts as unmatched, not against the route"
    );
    let latency = "tokenledger_http_request_duration_seconds";
    let refreshes = "{method=\"POST\",route=\"/api/auth/local/refresh\"";
    assert_eq!(found.get(&format!("{latency}_count{refreshes}}}")), 3.0);
    assert_eq!(
        found.get(&format!("{latency}_bucket{refreshes},le=\"+Inf\"}}")),
        3.0
    );
    assert!(found.get(&format!("{latency}_sum{refreshes}}}")) > 0.0);

    let appended = |kind: &str| {
        found.get(&format!(
            "tokenledger_events_appended_total{{type=\"{kind}\"}}"
        ))
    };
    assert_eq!(
        appended("TokenIssued"),
        3.0,
        "the registration and two logins"
    );
    assert_eq!(appended("TokenRotated"), 3.0);
    assert_eq!(appended("LoginFailed"), 1.0);

    let batches = found.get("tokenledger_group_commit_batch_size_count");
    let appends = found.get("tokenledger_group_commit_batch_size_sum");
    assert!(batches >= 1.0 && appends >= batches, "{batches} {appends}");
    assert_eq!(
        found.get("tokenledger_group_commit_batch_size_bucket{le=\"+Inf\"}"),
        batches
    );
    assert_eq!(appends, app.store().stats().batches.appends() as f64);

    assert_eq!(found.get("tokenledger_active_sessions"), 3.0);
    assert_eq!(found.get("tokenledger_live_actors"), 1.0);
    assert_eq!(found.get("tokenledger_projection_lag"), 0.0);
    assert_eq!(found.get("tokenledger_argon2_queue_depth"), 0.0);
    assert_eq!(found.get("tokenledger_ready"), 1.0);
    app.stop().await;
}

#[actix_web::test]
async fn given_a_seeded_log_when_the_server_starts_then_it_is_ready_only_once_the_projections_caught_up()
 {
    // Given: a log of 60 000 events, which takes a while to fold.
    let dir = tempfile::tempdir().unwrap();
    let seeded = std::process::Command::new(env!("CARGO_BIN_EXE_tokenledger"))
        .args(["seed", "--users", "50", "--events", "60000"])
        .env("DATA_DIR", dir.path())
        .env("JWT_SECRET", JWT_SECRET)
        .env("REFRESH_JWT_SECRET", REFRESH_SECRET)
        .env("LEDGER_KEY", support::LEDGER_KEY)
        .env("PERSONAL_DATA_KEY", support::PERSONAL_DATA_KEY)
        .output()
        .unwrap();
    assert!(seeded.status.success(), "{seeded:?}");

    // When: the server starts on it, and is asked from the moment it listens.
    let mut server = server_on(dir.path());
    server.start();
    let client = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", server.address);
    let log_in = || {
        client
            .post(url("/api/auth/local"))
            .json(&json!({"identifier": "seed-1", "password": "seed-password-1"}))
            .send()
            .map(Result::unwrap)
    };
    let port = server.address.rsplit(':').next().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut starting, mut refused_login, mut scraped_while_starting) = (0, None, None);
    let mut probed_while_starting = None;
    loop {
        let ready = client.get(url("/_ready")).send().await.unwrap();
        match ready.status().as_u16() {
            200 => break,
            503 => starting += 1,
            other => panic!("/_ready answered {other}"),
        }
        if refused_login.is_none() {
            probed_while_starting = Some(probe(dir.path(), &port));
            let login = log_in().await;
            let retry_after = login.headers().get("retry-after").cloned();
            refused_login = Some((
                login.status().as_u16(),
                retry_after,
                login.json::<Value>().await.unwrap(),
            ));
            let health = client.get(url("/_health")).send().await.unwrap();
            assert_eq!(
                health.status(),
                204,
                "the liveness probe answers throughout"
            );
            let metrics = client.get(url("/metrics")).send().await.unwrap();
            scraped_while_starting = Some(Samples::parse(&metrics.text().await.unwrap()));
        }
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Then: 503 (and every other route refused alike) until the fold ended, then 200.
    assert!(starting > 0, "/_ready never said 503");
    let (status, retry_after, body) = refused_login.expect("asked while starting");
    assert_eq!(status, 503, "{body}");
    assert_eq!(retry_after.unwrap(), "1");
    assert_eq!(body["data"], Value::Null);
    assert_eq!(body["error"]["name"], "ServiceUnavailableError");
    let starting_metrics = scraped_while_starting.unwrap();
    assert_eq!(starting_metrics.get("tokenledger_ready"), 0.0);
    assert!(starting_metrics.get("tokenledger_projection_lag") > 0.0);

    // The container health check's command says the same.
    let starting_probe = probed_while_starting.unwrap();
    assert!(!starting_probe.status.success(), "{starting_probe:?}");
    assert!(
        String::from_utf8_lossy(&starting_probe.stderr).contains("not ready: /_ready answered 503"),
        "{starting_probe:?}"
    );
    let ready_probe = probe(dir.path(), &port);
    assert!(ready_probe.status.success(), "{ready_probe:?}");
    assert_eq!(
        String::from_utf8_lossy(&ready_probe.stdout),
        format!("ready: 127.0.0.1:{port}\n")
    );

    assert_eq!(log_in().await.status(), 200);
    let metrics = Samples::parse(
        &client
            .get(url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(metrics.get("tokenledger_ready"), 1.0);
    assert_eq!(metrics.get("tokenledger_projection_lag"), 0.0);
    let messages: Vec<String> = server
        .entries()
        .iter()
        .filter_map(|e| e["fields"]["message"].as_str().map(str::to_owned))
        .collect();
    let position = |prefix: &str| messages.iter().position(|m| m.starts_with(prefix));
    assert!(
        position("listening") < position("projections rebuilt"),
        "listens first, then folds: {messages:?}"
    );
    server.stop();
    let stopped_probe = probe(dir.path(), &port);
    assert!(!stopped_probe.status.success());
    assert!(
        String::from_utf8_lossy(&stopped_probe.stderr).contains("nothing answers on"),
        "{stopped_probe:?}"
    );
    println!("/_ready said 503 {starting} times before 200");
}

#[test]
fn the_probe_asks_for_no_secrets_strong_enough_to_serve_with() {
    // An instance started with --insecure-dev has weak secrets in its environment, which the
    // container's health check shares.
    let dir = tempfile::tempdir().unwrap();
    let probed = std::process::Command::new(env!("CARGO_BIN_EXE_tokenledger"))
        .args(["probe", "--port", "1"])
        .env("DATA_DIR", dir.path())
        .env("JWT_SECRET", "weak")
        .env("REFRESH_JWT_SECRET", "weak")
        .output()
        .unwrap();
    assert!(!probed.status.success());
    let said = String::from_utf8_lossy(&probed.stderr);
    assert!(said.contains("nothing answers on 127.0.0.1:1"), "{said}");
}

/// `tokenledger probe` against the instance on `port`, as a container health check runs it
/// (with the instance's own variables).
fn probe(dir: &std::path::Path, port: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tokenledger"))
        .args(["probe", "--port", port])
        .env("DATA_DIR", dir)
        .env("JWT_SECRET", JWT_SECRET)
        .env("REFRESH_JWT_SECRET", REFRESH_SECRET)
        .output()
        .unwrap()
}

#[actix_web::test]
async fn the_log_lines_of_a_request_carry_its_request_id_and_its_route_not_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_on(dir.path())
        .env("RUST_LOG", "debug")
        .serving()
        .await;
    let client = reqwest::Client::new();
    let register = client
        .post(format!("{}/api/auth/local/register", server.address))
        .header("x-request-id", "trace-register-1")
        .json(&json!({"username": "rid", "email": "rid@example.com", "password": "password123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(register.status(), 200);
    let missing = client
        .get(format!(
            "{}/api/nowhere/secret-looking-path",
            server.address
        ))
        .header("x-request-id", "trace-missing-2")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let invented = reqwest::Method::from_bytes("M".repeat(300).as_bytes()).unwrap();
    let odd = client
        .request(invented, format!("{}/_health", server.address))
        .header("x-request-id", "trace-odd-3")
        .send()
        .await
        .unwrap();
    assert_eq!(odd.status(), 405);
    let chosen = client
        .get(format!("{}/_health", server.address))
        .send()
        .await
        .unwrap();
    let generated = chosen.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();

    let lines = server.stop();
    let entries: Vec<Value> = lines
        .iter()
        .map(|line| serde_json::from_str(line).expect("one JSON object a line"))
        .collect();
    let of = |id: &str| -> Vec<&Value> {
        entries
            .iter()
            // Ours, or the client's X-Request-Id, which the span carries beside ours.
            .filter(|e| e["span"]["request_id"] == id || e["span"]["client_request_id"] == id)
            .collect()
    };
    let access = |id: &str| -> Value {
        let lines = of(id);
        let access: Vec<&&Value> = lines
            .iter()
            .filter(|e| e["target"] == "tokenledger::access")
            .collect();
        assert_eq!(access.len(), 1, "one access line for {id}: {lines:#?}");
        access[0]["fields"].clone()
    };
    let registered = access("trace-register-1");
    assert_eq!(registered["route"], "/api/auth/local/register");
    assert_eq!(registered["status"], 200);
    assert_eq!(registered["method"], "POST");
    let missed = access("trace-missing-2");
    assert_eq!(missed["route"], "unmatched");
    assert_eq!(missed["status"], 404);
    assert!(
        !lines.iter().any(|l| l.contains("secret-looking-path")),
        "no raw path logged"
    );
    assert_eq!(access(&generated)["route"], "/_health");
    assert_eq!(
        access("trace-odd-3")["method"],
        "other",
        "an invented method is not logged whole"
    );
}

#[test]
fn with_json_logs_the_reason_the_server_stopped_is_a_json_error_line_too() {
    // Given: the port is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();

    // When
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tokenledger"))
        .env("DATA_DIR", dir.path())
        .env("PORT", &port)
        .env("JWT_SECRET", JWT_SECRET)
        .env("REFRESH_JWT_SECRET", REFRESH_SECRET)
        .env("LOG_FORMAT", "json")
        .output()
        .unwrap();

    // Then: every line is JSON, the last one the error with its level.
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let last = lines.last().expect("a line");
    assert_eq!(last["level"], "ERROR", "{last}");
    let error = last["fields"]["error"].as_str().unwrap();
    assert!(
        error.contains("binding") && error.contains(&port),
        "{error}"
    );
}
