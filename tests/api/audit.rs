//! Audit and forensics: the trail, replay to any moment, tamper evidence, the admin API.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use support::{assert_error, assert_unauthorized};

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

const ADMIN: &str = "admin-token-0123456789abcdef0123456789abcdef";

fn s(value: &Value) -> String {
    value.as_str().expect("a string").to_owned()
}

async fn admin_get(app: &TestApp, path: &str, token: &str) -> (u16, Value) {
    app.get_with_bearer(path, token).await
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The session ids the user sees in `GET /api/auth/sessions`.
async fn listed(app: &TestApp, jwt: &str) -> BTreeSet<String> {
    let (status, body) = app.get_with_bearer("/api/auth/sessions", jwt).await;
    assert_eq!(status, 200, "{body}");
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| s(&d["id"]))
        .collect()
}

#[actix_web::test]
async fn every_recorded_moment_replays_to_the_same_sessions() {
    let app = spawn_app_with(&[
        ("ADMIN_API_TOKEN", ADMIN),
        ("REFRESH_TOKEN_ROTATION", "true"),
    ])
    .await;
    let id = app.register("ava").await["user"]["id"].as_i64().unwrap();
    let observer = app.login_with("ava", json!({"deviceId": "observer"})).await;
    let jwt = s(&observer["jwt"]);
    let mut moments = Vec::new();
    let mut record = |at, sessions| moments.push((at, sessions));

    let phone = app.login_with("ava", json!({"deviceId": "phone"})).await;
    record(app.state().clock.now(), listed(&app, &jwt).await);
    let (_, rotated) = app.refresh(&s(&phone["refreshToken"])).await;
    assert!(rotated["refreshToken"].is_string());
    record(app.state().clock.now(), listed(&app, &jwt).await);
    let laptop = app.login_with("ava", json!({"deviceId": "laptop"})).await;
    record(app.state().clock.now(), listed(&app, &jwt).await);
    app.post_with_bearer("/api/auth/logout", &s(&phone["jwt"]), json!({}))
        .await;
    record(app.state().clock.now(), listed(&app, &jwt).await);
    app.post_with_bearer(
        "/api/auth/logout",
        &s(&laptop["jwt"]),
        json!({"scope": "all"}),
    )
    .await;
    let after_clear = app.state().clock.now();

    for (at, expected) in &moments {
        let at_text = at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let (status, body) = admin_get(
            &app,
            &format!(
                "/api/admin/users/{id}/sessions?at={}",
                at_text.replace('+', "%2B")
            ),
            ADMIN,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let replayed: BTreeSet<String> = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| s(&d["id"]))
            .collect();
        assert_eq!(&replayed, expected, "?at={at_text}");

        let output = app.cli(&["replay", "--until", &at_text, "--user", &id.to_string()]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = stdout(&output);
        let from_cli: BTreeSet<String> = text
            .lines()
            .filter_map(|line| line.split_whitespace().nth(1))
            .filter(|id| id.len() == 36)
            .map(str::to_owned)
            .collect();
        assert_eq!(&from_cli, expected, "replay --until {at_text}:\n{text}");
    }
    let (_, body) = admin_get(
        &app,
        &format!(
            "/api/admin/users/{id}/sessions?at={}",
            after_clear.to_rfc3339().replace('+', "%2B")
        ),
        ADMIN,
    )
    .await;
    assert_eq!(body["data"], json!([]), "everything was cleared");
}

#[actix_web::test]
async fn verify_names_the_first_altered_event() {
    let app = spawn_app().await;
    let id = app.register("bea").await["user"]["id"].as_i64().unwrap();
    app.login("bea").await;
    app.register("cyd").await;
    let output = app.cli(&["verify"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Each user's registration, and the sessions of two registrations and a login.
    let said = stdout(&output);
    assert!(said.starts_with("ok: 5 events in 2 streams;"), "{said}");
    assert!(said.contains("\nusers: 2 rows explained"), "{said}");

    // Someone edits the log behind the service's back: the second event of bea's stream
    // (her registration's session).
    let url = format!(
        "sqlite://{}",
        app.dir.path().join("tokenledger.db").display()
    );
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    // One byte of the stored event changed (its fields, sealed or not, are in its body).
    let mut body: Vec<u8> =
        sqlx::query_scalar("SELECT body FROM events WHERE stream_id = ? AND stream_version = 2")
            .bind(format!("user-{id}"))
            .fetch_one(&pool)
            .await
            .unwrap();
    let last = body.len() - 1;
    body[last] ^= 1;
    let changed =
        sqlx::query("UPDATE events SET body = ? WHERE stream_id = ? AND stream_version = 2")
            .bind(body)
            .bind(format!("user-{id}"))
            .execute(&pool)
            .await
            .unwrap();
    assert_eq!(changed.rows_affected(), 1);
    pool.close().await;

    let output = app.cli(&["verify"]);
    assert!(!output.status.success());
    let text = stdout(&output);
    assert!(
        text.contains(&format!("(stream user-{id}, version 2)"))
            && text.contains("does not match its hash under the ledger key"),
        "{text}"
    );
}

#[actix_web::test]
async fn audit_shows_who_presented_the_reused_token() {
    let app = spawn_app_with(&[
        ("REFRESH_TOKEN_ROTATION", "true"),
        ("REFRESH_TOKEN_REUSE_GRACE", "0s"),
    ])
    .await;
    app.register("dee").await;
    let stolen = s(&app.login("dee").await["refreshToken"]);
    let (_, rotated) = app.refresh(&stolen).await;
    assert!(rotated["refreshToken"].is_string());
    let response = app
        .client
        .post(app.url("/api/auth/local/refresh"))
        .header("user-agent", "attacker-agent/6.6")
        .json(&json!({ "refreshToken": stolen }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);

    let output = app.cli(&["audit", "dee"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let table = stdout(&output);
    let reuse = table
        .lines()
        .find(|l| l.contains("RefreshTokenReused"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        reuse.contains("127.0.0.1") && reuse.contains("attacker-agent/6.6"),
        "{table}"
    );
    assert!(table.lines().next().unwrap().starts_with("time"), "{table}");

    let output = app.cli(&["audit", "dee@example.com", "--json"]);
    let lines: Vec<Value> = stdout(&output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let reuse = lines
        .iter()
        .find(|e| e["type"] == "RefreshTokenReused")
        .unwrap();
    assert_eq!(
        (reuse["ip"].as_str(), reuse["userAgent"].as_str()),
        (Some("127.0.0.1"), Some("attacker-agent/6.6"))
    );
    assert_eq!(reuse["generation"], 0);
    assert_eq!(reuse["actor"], "user");
}

#[actix_web::test]
async fn admin_routes_are_hidden_without_a_token_and_guarded_with_one() {
    let hidden = spawn_app().await;
    let id = hidden.register("eli").await["user"]["id"].as_i64().unwrap();
    let (status, body) = admin_get(&hidden, &format!("/api/admin/users/{id}/events"), ADMIN).await;
    assert_error(status, &body, 404, "NotFoundError", "Not Found");

    let app = spawn_app_with(&[
        ("ADMIN_API_TOKEN", ADMIN),
        ("REFRESH_TOKEN_ROTATION", "true"),
    ])
    .await;
    let id = app.register("fin").await["user"]["id"].as_i64().unwrap();
    let login = app.login("fin").await;
    let (_, rotated) = app.refresh(&s(&login["refreshToken"])).await;
    for token in ["wrong", &ADMIN[..ADMIN.len() - 1]] {
        let (status, body) = admin_get(&app, &format!("/api/admin/users/{id}/events"), token).await;
        assert_unauthorized(status, &body);
    }
    let (status, body) = admin_get(&app, &format!("/api/admin/users/{id}/events"), ADMIN).await;
    assert_eq!(status, 200, "{body}");
    let types: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "UserRegistered",
            "TokenIssued",
            "TokenIssued",
            "TokenRotated"
        ]
    );
    // Never a token, never a whole token hash: a short prefix only.
    let text = body.to_string();
    for secret in [
        s(&login["refreshToken"]),
        s(&rotated["refreshToken"]),
        s(&login["jwt"]),
    ] {
        assert!(!text.contains(&secret));
    }
    assert!(!text.contains("eyJ"), "{text}");
    // Nor a password hash: the registration shows a prefix of its digest.
    assert!(!text.contains("argon2"), "{text}");
    let digest = s(&body["data"][0]["payload"]["password_digest"]);
    assert_eq!(digest.chars().count(), 13, "{digest}");
    let hash = s(&body["data"][1]["payload"]["token_hash"]);
    assert_eq!(
        hash.chars().count(),
        13,
        "12 hex digits and an ellipsis: {hash}"
    );
    assert_eq!(
        body["data"][0]["requestId"].as_str().map(str::len),
        Some(36)
    );

    // Filters and paging.
    let (_, page) = admin_get(
        &app,
        &format!("/api/admin/users/{id}/events?limit=2"),
        ADMIN,
    )
    .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    let next = page["meta"]["next"].as_i64().expect("a next page");
    let (_, rest) = admin_get(
        &app,
        &format!("/api/admin/users/{id}/events?after={next}"),
        ADMIN,
    )
    .await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 2);
    assert_eq!(rest["meta"]["next"], Value::Null);
    let (_, rotations) = admin_get(
        &app,
        &format!("/api/admin/users/{id}/events?type=TokenRotated"),
        ADMIN,
    )
    .await;
    assert_eq!(rotations["data"].as_array().unwrap().len(), 1);
    let (_, none) = admin_get(
        &app,
        &format!("/api/admin/users/{id}/events?to=2000-01-01T00:00:00Z"),
        ADMIN,
    )
    .await;
    assert_eq!(none["data"], json!([]));
    let (status, body) = admin_get(
        &app,
        &format!("/api/admin/users/{id}/events?from=yesterday"),
        ADMIN,
    )
    .await;
    assert_eq!(
        (status, body["error"]["name"].as_str()),
        (400, Some("ValidationError"))
    );
    let (status, body) = admin_get(&app, "/api/admin/users/999/events", ADMIN).await;
    assert_error(status, &body, 404, "NotFoundError", "User not found");

    // Clearing as the admin.
    let response = app
        .client
        .post(app.url(&format!("/api/admin/users/{id}/sessions/clear")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"data": {"cleared": 2}})
    );
    assert_eq!(app.refresh(&s(&rotated["refreshToken"])).await.0, 401);
    let (_, body) = admin_get(
        &app,
        &format!("/api/admin/users/{id}/events?type=SessionsCleared"),
        ADMIN,
    )
    .await;
    let cleared = &body["data"][0];
    assert_eq!(
        (
            cleared["actor"].as_str(),
            cleared["payload"]["reason"].as_str()
        ),
        (Some("admin"), Some("admin"))
    );
}

/// Every page of `path` (which has a query already), following `meta.next`: the positions
/// and types seen, in order.
async fn read_all_pages(app: &TestApp, path: &str) -> Vec<(i64, String)> {
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let (status, page) = admin_get(app, &format!("{path}&after={after}"), ADMIN).await;
        assert_eq!(status, 200, "{page}");
        let data = page["data"].as_array().unwrap();
        seen.extend(
            data.iter()
                .map(|e| (e["position"].as_i64().unwrap(), s(&e["type"]))),
        );
        match page["meta"]["next"].as_i64() {
            Some(next) => {
                assert_eq!(
                    Some(next),
                    seen.last().map(|e| e.0),
                    "next is the last shown"
                );
                after = next;
            }
            None => return seen,
        }
    }
}

#[actix_web::test]
async fn paging_a_trail_shows_each_event_once_whatever_the_page_size_and_filter() {
    // Given: two users whose trails interleave in the log (logins, rotations, a wrong
    // password), so one's positions have gaps where the other's events are.
    let app = spawn_app_with(&[
        ("ADMIN_API_TOKEN", ADMIN),
        ("REFRESH_TOKEN_ROTATION", "true"),
    ])
    .await;
    let ada = app.register("ada").await["user"]["id"].as_i64().unwrap();
    let bo = app.register("bob").await["user"]["id"].as_i64().unwrap();
    let mut tokens = [
        s(&app.login("ada").await["refreshToken"]),
        s(&app.login("bob").await["refreshToken"]),
    ];
    for round in 0..12 {
        for token in &mut tokens {
            let (status, body) = app.refresh(token).await;
            assert_eq!(status, 200, "{body}");
            *token = s(&body["refreshToken"]);
        }
        if round % 5 == 0 {
            let (status, _) = app
                .post(
                    "/api/auth/local",
                    json!({"identifier": "ada", "password": "nope-nope"}),
                )
                .await;
            assert_eq!(status, 400);
        }
    }
    app.recorded().await;
    let trail = format!("/api/admin/users/{ada}/events");
    let (_, whole) = admin_get(&app, &format!("{trail}?limit=1000"), ADMIN).await;
    let whole: Vec<(i64, String)> = whole["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["position"].as_i64().unwrap(), s(&e["type"])))
        .collect();
    // The registration, two logins, twelve rotations, three wrong passwords.
    assert_eq!(whole.len(), 1 + 2 + 12 + 3, "{whole:?}");

    // When / then: every page size reads the same trail, each event once.
    for limit in [1, 2, 5, 16, 17, 100] {
        assert_eq!(
            read_all_pages(&app, &format!("{trail}?limit={limit}")).await,
            whole,
            "limit {limit}"
        );
    }
    // A filter that skips most events pages through only those it keeps.
    let failures: Vec<_> = whole
        .iter()
        .filter(|e| e.1 == "LoginFailed")
        .cloned()
        .collect();
    assert_eq!(failures.len(), 3);
    assert_eq!(
        read_all_pages(&app, &format!("{trail}?limit=1&type=LoginFailed")).await,
        failures
    );
    // A cursor from the other user's trail starts after the last of hers before it.
    let (_, theirs) = admin_get(
        &app,
        &format!("/api/admin/users/{bo}/events?limit=1000"),
        ADMIN,
    )
    .await;
    let foreign = theirs["data"][5]["position"].as_i64().unwrap();
    let (_, page) = admin_get(&app, &format!("{trail}?after={foreign}&limit=1000"), ADMIN).await;
    let after_foreign: Vec<i64> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["position"].as_i64().unwrap())
        .collect();
    let expected: Vec<i64> = whole.iter().map(|e| e.0).filter(|p| *p > foreign).collect();
    assert!(!expected.is_empty() && expected.len() < whole.len());
    assert_eq!(after_foreign, expected);
}

#[actix_web::test]
async fn every_response_carries_its_request_id_and_the_events_record_it() {
    let app = spawn_app_with(&[("ADMIN_API_TOKEN", ADMIN)]).await;
    let response = app
        .client
        .post(app.url("/api/auth/local/register"))
        .header("x-request-id", "trace-42")
        .json(&json!({"username": "gil", "email": "gil@example.com", "password": "password123"}))
        .send()
        .await
        .unwrap();
    // Ours, not the client's: the id our log and our events know the request by.
    let ours = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(ours.len(), 36, "{ours}");
    let id = response.json::<Value>().await.unwrap()["user"]["id"]
        .as_i64()
        .unwrap();
    let generated = app.client.get(app.url("/nowhere")).send().await.unwrap();
    assert_eq!(
        generated.headers()["x-request-id"].len(),
        36,
        "a new id for requests without one"
    );
    let (_, body) = admin_get(&app, &format!("/api/admin/users/{id}/events"), ADMIN).await;
    assert_eq!(body["data"][0]["requestId"], ours.as_str());
    assert_eq!(body["data"][0]["clientRequestId"], "trace-42");
}

#[actix_web::test]
async fn an_old_schema_version_written_by_hand_reads_as_the_current_type() {
    let app = spawn_app_with(&[("ADMIN_API_TOKEN", ADMIN)]).await;
    let id = app.register("hal").await["user"]["id"].as_i64().unwrap();
    let version_1 = json!({
        "session_id": "01a2259e-7247-769b-a2d4-4d3729a4b46e",
        "token_id": "01a2259e-7247-769b-a2d4-4d390e2b629d",
        "token_hash": "0".repeat(64),
        "reason": "login",
        "issued_at": "2026-11-29T04:00:00Z",
        "token_expires_at": "2026-12-29T04:00:00Z",
        "idle_expires_at": "2026-12-29T04:00:00Z",
        "absolute_expires_at": "2027-02-27T04:00:00Z",
        "ip": "192.0.2.7",
        "user_agent": "old-client"
    });
    let old = tokenledger::store::NewEvent {
        event_type: "TokenIssued",
        schema_version: 1,
        content: tokenledger::store::NewContent::Json(version_1.to_string()),
    };
    let stream = format!("user-{id}");
    let version = app.store().read_stream(&stream, 0).await.unwrap().len() as i64;
    app.store()
        .append(&stream, version, vec![old], &Default::default())
        .await
        .unwrap();
    let (_, body) = admin_get(
        &app,
        &format!("/api/admin/users/{id}/events?type=TokenIssued"),
        ADMIN,
    )
    .await;
    let upcast = &body["data"][1];
    assert_eq!(upcast["schemaVersion"], 1, "stored as written");
    assert_eq!(
        upcast["payload"]["device_id"], "01a2259e-7247-769b-a2d4-4d3729a4b46e",
        "read as version 2"
    );
    let output = app.cli(&["verify"]);
    assert!(output.status.success(), "{}", stdout(&output));
}

#[actix_web::test]
async fn the_cli_takes_a_username_of_digits_as_that_user_and_refuses_a_missing_database() {
    let app = spawn_app().await;
    app.register("alpha").await;
    let id = app.register("001").await["user"]["id"].as_i64().unwrap();
    let output = app.cli(&["user", "block", "001"]);
    assert!(
        stdout(&output).contains(&format!("blocked user {id} (001,")),
        "{}",
        stdout(&output)
    );

    let elsewhere = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tokenledger"))
        .arg("verify")
        .env("DATA_DIR", elsewhere.path().join("nothing-here"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("no database"),
        "{output:?}"
    );
    assert!(
        !elsewhere.path().join("nothing-here").exists(),
        "a read-only command created a folder"
    );
}

#[actix_web::test]
async fn verify_catches_a_changed_schema_version_and_the_trail_keeps_odd_user_agents() {
    let app = spawn_app_with(&[("ADMIN_API_TOKEN", ADMIN)]).await;
    let response = app
        .client
        .post(app.url("/api/auth/local/register"))
        .header(
            "user-agent",
            reqwest::header::HeaderValue::from_bytes(b"latin1 \xe9 agent").unwrap(),
        )
        .json(&json!({"username": "ivy", "email": "ivy@example.com", "password": "password123"}))
        .send()
        .await
        .unwrap();
    let id = response.json::<Value>().await.unwrap()["user"]["id"]
        .as_i64()
        .unwrap();
    let (_, body) = admin_get(&app, &format!("/api/admin/users/{id}/events"), ADMIN).await;
    assert_eq!(body["data"][0]["userAgent"], "latin1 \u{fffd} agent");
    for bad in ["type=TokenReused", "type=", "limit=0", "limit=5000"] {
        let (status, body) =
            admin_get(&app, &format!("/api/admin/users/{id}/events?{bad}"), ADMIN).await;
        assert_eq!(
            (status, body["error"]["name"].as_str()),
            (400, Some("ValidationError")),
            "{bad}: {body}"
        );
    }

    let url = format!(
        "sqlite://{}",
        app.dir.path().join("tokenledger.db").display()
    );
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("UPDATE events SET schema_version = 99 WHERE stream_id = ?")
        .bind(format!("user-{id}"))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let output = app.cli(&["verify"]);
    assert!(!output.status.success());
    assert!(
        stdout(&output).contains(&format!("(stream user-{id}, version 1)")),
        "{}",
        stdout(&output)
    );
}

#[actix_web::test]
async fn seed_fills_an_empty_database_only_and_its_log_verifies() {
    let app = spawn_app().await;
    let first = app.cli(&["seed", "--users", "3", "--events", "0"]);
    assert!(first.status.success(), "{first:?}");
    // Users but no events is not empty: a second seed would collide with them.
    let again = app.cli(&["seed", "--users", "3", "--events", "30"]);
    assert!(!again.status.success());
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(
        said.contains("seed fills an empty database") && said.contains("3 users"),
        "{said}"
    );
    let too_many = app.cli(&["seed", "--users", "1", "--events", "4294967296"]);
    assert!(!too_many.status.success());
    assert!(String::from_utf8_lossy(&too_many.stderr).contains("--events must be at most"));

    let fresh = spawn_app().await;
    let seeded = fresh.cli(&["seed", "--users", "20", "--events", "400"]);
    assert!(seeded.status.success(), "{seeded:?}");
    let said = String::from_utf8_lossy(&seeded.stdout).to_string();
    let events: u64 = said
        .strip_prefix("seeded 20 users, ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{said}"));
    // About 400 of sessions, and each user's registration.
    assert!((420..=440).contains(&events), "about 420 events: {said}");
    assert!(said.contains("(20 registrations;"), "{said}");
    let verified = fresh.cli(&["verify"]);
    assert!(verified.status.success(), "{verified:?}");
    let verified = String::from_utf8_lossy(&verified.stdout);
    assert!(
        verified.contains(&format!("ok: {events} events in 20 streams")),
        "{verified}"
    );
    assert!(verified.contains("users: 20 rows explained"), "{verified}");
}
