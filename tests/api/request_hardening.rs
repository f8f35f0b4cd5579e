//! Attacks on what a request says about itself — where it came from (`X-Forwarded-For`,
//! `Forwarded`, an IPv4 client of a server on `::`), which path it asked for
//! (percent-encoded operator paths), which id it carries (`X-Request-Id`) — each kept as the
//! reproduction of issue 14's item that it closes.

use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use support::{assert_error, assert_rate_limited};

use crate::helpers::{TestApp, server_on, spawn_app_with};

const ADMIN: &str = "admin-token-0123456789abcdef0123456789abcdef";

/// A login of `identifier` (password `password123`) with these header lines, each sent as
/// its own field line: the answer's status, body and headers.
async fn login_from(
    app: &TestApp,
    identifier: &str,
    password: &str,
    lines: &[(&str, &str)],
) -> (u16, Value, HeaderMap) {
    let mut request = app
        .client
        .post(app.url("/api/auth/local"))
        .json(&json!({"identifier": identifier, "password": password}));
    for (name, value) in lines {
        // `header` appends: two lines of one name stay two lines on the wire.
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, response.json().await.unwrap(), headers)
}

/// The metadata of a user's events, oldest first.
async fn metadata(app: &TestApp, user_id: i64) -> Vec<Value> {
    app.store()
        .read_stream(&format!("user-{user_id}"), 0)
        .await
        .unwrap()
        .iter()
        .map(|e| serde_json::from_str(&e.metadata).unwrap())
        .collect()
}

/// The address `GET /api/auth/sessions` shows for the caller's own session.
async fn current_session_ip(app: &TestApp, jwt: &str) -> Value {
    let (status, body) = app.get_with_bearer("/api/auth/sessions", jwt).await;
    assert_eq!(status, 200, "{body}");
    let current = body["data"][0].clone();
    assert_eq!(current["current"], true, "{body}");
    current["ip"].clone()
}

// ---- item 4: every forwarding line, and `Forwarded` ------------------------------------

#[actix_web::test]
async fn a_forged_first_forwarded_for_line_chooses_neither_the_recorded_ip_nor_the_limit() {
    let app = spawn_app_with(&[
        ("TRUSTED_PROXIES", "127.0.0.1"),
        ("LOGIN_RATE_LIMIT", "3/60s"),
    ])
    .await;
    let id = app.register("ann").await["user"]["id"].as_i64().unwrap();
    // The client's forged line first, the proxy's own line (HAProxy `option forwardfor`) last.
    let (status, body, _) = login_from(
        &app,
        "ann",
        "password123",
        &[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "198.51.100.7"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let jwt = body["jwt"].as_str().unwrap();
    assert_eq!(current_session_ip(&app, jwt).await, "198.51.100.7");
    let trail = metadata(&app, id).await;
    assert_eq!(trail.last().unwrap()["ip"], "198.51.100.7");

    // A new forged line each time does not buy a new allowance: the limit counts against the
    // address the proxy saw.
    for forged in ["1.2.3.5", "1.2.3.6"] {
        let (status, body, _) = login_from(
            &app,
            "ann",
            "wrong-password",
            &[
                ("x-forwarded-for", forged),
                ("x-forwarded-for", "198.51.100.7"),
            ],
        )
        .await;
        assert_eq!(status, 400, "{body}");
    }
    let (status, body, _) = login_from(
        &app,
        "ann",
        "password123",
        &[
            ("x-forwarded-for", "1.2.3.7"),
            ("x-forwarded-for", "198.51.100.7"),
        ],
    )
    .await;
    assert_rate_limited(status, &body);
    // Another client behind the same proxy keeps its own allowance.
    let (status, body, _) = login_from(
        &app,
        "ann",
        "password123",
        &[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "198.51.100.8"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[actix_web::test]
async fn the_forwarded_header_names_the_client_when_no_forwarded_for_came() {
    let app = spawn_app_with(&[("TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8")]).await;
    let id = app.register("bea").await["user"]["id"].as_i64().unwrap();
    let (status, body, _) = login_from(
        &app,
        "bea",
        "password123",
        &[
            ("forwarded", "for=1.2.3.4"),
            (
                "forwarded",
                "for=\"[2001:db8:cafe::17]:4711\";proto=https, for=10.0.0.2:8080",
            ),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let jwt = body["jwt"].as_str().unwrap();
    assert_eq!(current_session_ip(&app, jwt).await, "2001:db8:cafe::17");

    // `unknown` stops the walk: the last trusted hop is the client, never what lies left of it.
    let (status, body, _) = login_from(
        &app,
        "bea",
        "password123",
        &[("forwarded", "for=1.2.3.4, for=unknown, for=10.0.0.2")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(metadata(&app, id).await.last().unwrap()["ip"], "10.0.0.2");

    // Both: the proxy wrote X-Forwarded-For, and the client's own `Forwarded` is not believed.
    let (status, body, _) = login_from(
        &app,
        "bea",
        "password123",
        &[
            ("forwarded", "for=1.2.3.4"),
            ("x-forwarded-for", "198.51.100.7"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        metadata(&app, id).await.last().unwrap()["ip"],
        "198.51.100.7"
    );
}

// ---- item 5: IPv4-mapped peers ----------------------------------------------------------

#[actix_web::test]
async fn a_server_on_the_ipv6_wildcard_believes_its_ipv4_proxy_and_records_plain_ipv4() {
    // Bound to `::`, the server sees the IPv4 client 127.0.0.1 as ::ffff:127.0.0.1.
    let app = spawn_app_with(&[("HOST", "::"), ("TRUSTED_PROXIES", "127.0.0.1")]).await;
    let id = app.register("cyd").await["user"]["id"].as_i64().unwrap();
    let (status, body, _) = login_from(
        &app,
        "cyd",
        "password123",
        &[("x-forwarded-for", "198.51.100.7")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let jwt = body["jwt"].as_str().unwrap();
    assert_eq!(current_session_ip(&app, jwt).await, "198.51.100.7");
    // The proxy itself, and a mapped hop, are recorded as IPv4.
    let trail = metadata(&app, id).await;
    assert_eq!(trail[0]["ip"], "127.0.0.1", "{trail:?}");
    let (status, body, _) = login_from(
        &app,
        "cyd",
        "password123",
        &[("x-forwarded-for", "::ffff:203.0.113.5")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        metadata(&app, id).await.last().unwrap()["ip"],
        "203.0.113.5"
    );
}

// ---- item 10: percent-encoded operator paths --------------------------------------------

#[actix_web::test]
async fn percent_encoded_operator_paths_are_not_found() {
    let app = spawn_app_with(&[("ADMIN_API_TOKEN", ADMIN)]).await;
    for (path, status) in [
        ("/metrics", 200),
        ("/docs", 200),
        ("/docs/swagger-ui.css", 200),
        ("/openapi.json", 200),
        ("/_ready", 200),
        ("/_health", 204),
        ("/admin", 200),
        ("/admin/app.js", 200),
    ] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{path}");
    }
    for path in [
        "/%6detrics",
        "/%6Detrics",
        "/metric%73",
        "/%6D%65%74%72%69%63%73",
        "/%64ocs",
        "/doc%73",
        "/docs/swagger-ui%2Ecss",
        "/d%6fcs/swagger-ui.css",
        "/openapi%2ejson",
        "/openapi%2Ejson",
        "/%6fpenapi.json",
        "/_%72eady",
        "/%5Fready",
        "/%5fhealth",
        "/_healt%68",
        "/%61dmin",
        "/adm%69n",
        "/%61%64%6D%69%6E",
        "/%61dmin/app.js",
        "/admin/app%2Ejs",
    ] {
        for method in [
            reqwest::Method::GET,
            reqwest::Method::HEAD,
            reqwest::Method::POST,
        ] {
            let response = app
                .client
                .request(method.clone(), app.url(path))
                .header("authorization", format!("Bearer {ADMIN}"))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            assert_eq!(status, 404, "{method} {path}");
            if method == reqwest::Method::HEAD {
                continue;
            }
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert_error(status, &body, 404, "NotFoundError", "Not Found");
        }
    }
    // The API keeps its spellings: an encoded letter still reaches its route.
    let (status, _) = app.get_with_bearer("/api/users/%6de", "not-a-token").await;
    assert_eq!(status, 401);
}

// ---- item 14: the client's X-Request-Id --------------------------------------------------

fn is_our_uuid(text: &Value) -> bool {
    text.as_str()
        .and_then(|t| uuid::Uuid::parse_str(t).ok())
        .is_some_and(|id| id.get_version_num() == 7)
}

#[actix_web::test]
async fn a_client_chosen_request_id_is_recorded_apart_from_ours() {
    let app = spawn_app_with(&[("ADMIN_API_TOKEN", ADMIN)]).await;
    let id = app.register("dov").await["user"]["id"].as_i64().unwrap();
    let (status, body, headers) = login_from(
        &app,
        "dov",
        "password123",
        &[("x-request-id", "attacker-chosen")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let recorded = metadata(&app, id).await.pop().unwrap();
    assert!(is_our_uuid(&recorded["request_id"]), "{recorded}");
    assert_eq!(recorded["client_request_id"], "attacker-chosen");
    // The answer names the id our log and our events know it by.
    assert_eq!(
        headers["x-request-id"].to_str().unwrap(),
        recorded["request_id"]
    );
    // The admin trail shows both.
    let trail: Value = app
        .client
        .get(app.url(&format!("/api/admin/users/{id}/events")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entry = trail["data"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(entry["requestId"], recorded["request_id"], "{entry}");
    assert_eq!(entry["clientRequestId"], "attacker-chosen", "{entry}");
    // So does the command line's trail, and the chain verifies over events with and without
    // the client's id (registration sent none).
    let audit = app.cli(&["audit", "dov", "--json"]);
    assert!(audit.status.success(), "{audit:?}");
    let text = String::from_utf8_lossy(&audit.stdout);
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["clientRequestId"], "attacker-chosen", "{last}");
    assert_eq!(last["requestId"], recorded["request_id"], "{last}");
    let verify = app.cli(&["verify"]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

#[actix_web::test]
async fn an_oversized_or_unprintable_request_id_is_not_recorded() {
    let app = spawn_app_with(&[]).await;
    let id = app.register("eve").await["user"]["id"].as_i64().unwrap();
    let oversized = "a".repeat(2048);
    for sent in [oversized.as_str(), "abc\tdef", "caf\u{e9}", "a\u{7f}b"] {
        let mut request = app
            .client
            .post(app.url("/api/auth/local"))
            .json(&json!({"identifier": "eve", "password": "password123"}));
        request = match reqwest::header::HeaderValue::from_bytes(sent.as_bytes()) {
            Ok(value) => request.header("x-request-id", value),
            // Not even sendable: nothing to check.
            Err(_) => continue,
        };
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "{sent:?}");
        let recorded = metadata(&app, id).await.pop().unwrap();
        assert!(is_our_uuid(&recorded["request_id"]), "{recorded}");
        assert!(
            recorded.get("client_request_id").is_none(),
            "{sent:?}: {recorded}"
        );
    }
    // At the bound, printable, spaces included: kept.
    let bounded = format!("{} x", "b".repeat(126));
    let (status, body, _) =
        login_from(&app, "eve", "password123", &[("x-request-id", &bounded)]).await;
    assert_eq!(status, 200, "{body}");
    let recorded = metadata(&app, id).await.pop().unwrap();
    assert_eq!(recorded["client_request_id"], bounded.as_str());
}

#[actix_web::test]
async fn the_access_line_carries_our_request_id_and_the_clients() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_on(dir.path()).serving().await;
    let response = reqwest::Client::new()
        .get(format!("{}/_health", server.address))
        .header("x-request-id", "trace-from-client")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let ours = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    // Stopped first, so that every line it wrote has been read.
    let entries: Vec<Value> = server
        .stop()
        .iter()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let access: Vec<&Value> = entries
        .iter()
        .filter(|e| e["target"] == "tokenledger::access" && e["fields"]["route"] == "/_health")
        .filter(|e| e["span"]["client_request_id"] == "trace-from-client")
        .collect();
    assert_eq!(access.len(), 1, "{entries:#?}");
    assert_eq!(access[0]["span"]["request_id"], ours.as_str());
    assert!(is_our_uuid(&json!(ours)), "{ours}");
}

#[actix_web::test]
async fn events_with_and_without_a_client_request_id_verify_on_postgres() {
    let Some(url) = support::fresh_postgres_url().await else {
        return;
    };
    let app = spawn_app_with(&[("DATABASE_URL", url.as_str())]).await;
    let id = app.register("fay").await["user"]["id"].as_i64().unwrap();
    let (status, body, _) =
        login_from(&app, "fay", "password123", &[("x-request-id", "trace-pg")]).await;
    assert_eq!(status, 200, "{body}");
    let trail = metadata(&app, id).await;
    assert!(trail[0].get("client_request_id").is_none(), "{trail:?}");
    assert_eq!(trail.last().unwrap()["client_request_id"], "trace-pg");
    let verify = app.cli(&["verify"]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    app.stop().await;
}
