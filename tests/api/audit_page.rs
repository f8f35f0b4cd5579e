//! The audit page at `/admin`: how it is served, and, end to end in headless Chromium
//! (`tests/browser/audit_page.mjs`, playwright-core), that an investigator can pick a user and
//! read their sessions, rotations, revocations and reuse incidents off the timeline.

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::TimeDelta;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

const ADMIN: &str = "admin-token-0123456789abcdef0123456789abcdef";
const CHROMIUM: &str = "/usr/bin/chromium";

/// Where a request comes from: `X-Forwarded-For` (the test's proxy is trusted) and
/// `User-Agent`, distinctive enough to be found again on the page.
#[derive(Clone, Copy)]
struct Client {
    ip: &'static str,
    agent: &'static str,
}

const PHONE: Client = Client {
    ip: "203.0.113.71",
    agent: "AuditPhone/3.1 (Android 14; Pixel 8) tokenledger-e2e",
};
const LAPTOP: Client = Client {
    ip: "198.51.100.23",
    agent: "AuditLaptop/9.2 (X11; Linux x86_64) tokenledger-e2e",
};
const KIOSK: Client = Client {
    ip: "192.0.2.140",
    agent: "AuditKiosk/1.0 (lobby terminal) tokenledger-e2e",
};
const ATTACKER: Client = Client {
    ip: "198.18.0.66",
    agent: "curl/8.5.0 replayed-token tokenledger-e2e",
};

async fn post_as(
    app: &TestApp,
    client: Client,
    path: &str,
    bearer: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut request = app
        .client
        .post(app.url(path))
        .header("user-agent", client.agent)
        .header("x-forwarded-for", client.ip)
        .json(&body);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn login_as(app: &TestApp, client: Client, device: &str) -> Value {
    let (status, body) = post_as(
        app,
        client,
        "/api/auth/local",
        None,
        json!({"identifier": "iris", "password": "password123", "requestRefresh": true, "deviceId": device}),
    )
    .await;
    assert_eq!(status, 200, "login: {body}");
    body
}

/// Refreshes `token` as `client` and returns the successor refresh token.
async fn rotate_as(app: &TestApp, client: Client, token: &str) -> String {
    let (status, body) = post_as(
        app,
        client,
        "/api/auth/local/refresh",
        None,
        json!({ "refreshToken": token }),
    )
    .await;
    assert_eq!(status, 200, "refresh: {body}");
    body["refreshToken"]
        .as_str()
        .expect("rotation is on")
        .to_owned()
}

fn text(value: &Value) -> &str {
    value.as_str().expect("a string")
}

/// An afternoon of one user's sessions, spread over hours of the server's clock: a phone
/// session rotated three times and then killed by a reused token; a laptop session rotated
/// and logged out; a kiosk cleared by a device logout; a failed login; a registration session
/// left to expire; and a tablet session still alive. Returns the user's id.
async fn investigated_history(app: &TestApp) -> i64 {
    let minutes = |n| app.advance(TimeDelta::minutes(n));
    let (status, body) = post_as(
        app,
        LAPTOP,
        "/api/auth/local/register",
        None,
        json!({"username": "iris", "email": "iris@example.com", "password": "password123"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = body["user"]["id"].as_i64().unwrap();

    minutes(12);
    let phone = login_as(app, PHONE, "phone").await;
    let first = text(&phone["refreshToken"]).to_owned();
    minutes(18);
    let second = rotate_as(app, PHONE, &first).await;
    minutes(25);
    let mut current = rotate_as(app, PHONE, &second).await;

    minutes(10);
    let laptop = login_as(app, LAPTOP, "laptop").await;
    minutes(20);
    rotate_as(app, LAPTOP, text(&laptop["refreshToken"])).await;
    minutes(15);
    let kiosk = login_as(app, KIOSK, "kiosk").await;
    minutes(10);
    let (status, body) = post_as(
        app,
        LAPTOP,
        "/api/auth/logout",
        Some(text(&laptop["jwt"])),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "laptop logout: {body}");

    minutes(20);
    current = rotate_as(app, PHONE, &current).await;
    minutes(15);
    let (status, body) = post_as(
        app,
        KIOSK,
        "/api/auth/logout",
        Some(text(&kiosk["jwt"])),
        json!({"deviceId": "kiosk"}),
    )
    .await;
    assert_eq!(status, 200, "kiosk logout: {body}");

    // Someone replays the phone's second token long after it was rotated away.
    minutes(25);
    let (status, body) = post_as(
        app,
        ATTACKER,
        "/api/auth/local/refresh",
        None,
        json!({ "refreshToken": second }),
    )
    .await;
    assert_eq!(status, 401, "reuse: {body}");
    assert_eq!(
        rotate_as_status(app, PHONE, &current).await,
        401,
        "the family is dead"
    );

    minutes(10);
    let (status, _) = post_as(
        app,
        ATTACKER,
        "/api/auth/local",
        None,
        json!({"identifier": "iris", "password": "guess-one"}),
    )
    .await;
    assert_eq!(status, 400);
    minutes(15);
    let tablet = login_as(app, PHONE, "tablet").await;
    minutes(20);
    let next = rotate_as(app, PHONE, text(&tablet["refreshToken"])).await;
    minutes(15);
    rotate_as(app, PHONE, &next).await;
    minutes(5);
    // "Forgot password?": its code is recorded just after the answer.
    let (status, _) = post_as(
        app,
        LAPTOP,
        "/api/auth/forgot-password",
        None,
        json!({"email": "iris@example.com"}),
    )
    .await;
    assert_eq!(status, 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.payloads(id, "PasswordResetRequested").await.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no PasswordResetRequested"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    minutes(5);

    let types = app.event_types(id).await;
    for expected in [
        "TokenRotated",
        "RefreshTokenReused",
        "SessionRevoked",
        "SessionsCleared",
        "LoginFailed",
        "PasswordResetRequested",
    ] {
        assert!(types.iter().any(|t| t == expected), "{expected}: {types:?}");
    }
    id
}

async fn rotate_as_status(app: &TestApp, client: Client, token: &str) -> u16 {
    post_as(
        app,
        client,
        "/api/auth/local/refresh",
        None,
        json!({ "refreshToken": token }),
    )
    .await
    .0
}

/// Why the browser test cannot run here, if it cannot.
fn browser_missing(browser_dir: &Path) -> Option<String> {
    if !Path::new(CHROMIUM).exists() {
        return Some(format!("{CHROMIUM} is missing (apt-get install chromium)"));
    }
    crate::helpers::node_packages_missing(browser_dir, &["playwright-core"])
}

#[actix_web::test]
async fn an_investigator_reads_a_users_sessions_off_the_audit_page_in_chromium() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let browser_dir = root.join("tests/browser");
    // CI installs what it needs (.ci/run): there, a missing piece is a failure, not a skip.
    if !support::runs_here(
        "the audit page's browser test",
        browser_missing(&browser_dir),
    ) {
        return;
    }

    // Given a user with a history worth investigating,
    let app = spawn_app_with(&[
        ("ADMIN_API_TOKEN", ADMIN),
        ("REFRESH_TOKEN_ROTATION", "true"),
        ("REFRESH_TOKEN_REUSE_GRACE", "0s"),
        ("TRUSTED_PROXIES", "127.0.0.1"),
        ("REFRESH_RATE_LIMIT", "off"),
        // The registration's session, never used, runs out on its own.
        ("SESSION_IDLE_TIMEOUT", "90m"),
    ])
    .await;
    let id = investigated_history(&app).await;

    // when an investigator opens /admin in Chromium and picks that user,
    let screenshot = root.join("target/test-output/audit_page.png");
    let clients = json!([
        [PHONE.ip, PHONE.agent],
        [LAPTOP.ip, LAPTOP.agent],
        [KIOSK.ip, KIOSK.agent]
    ]);
    let mut node = Command::new("node");
    node.arg(browser_dir.join("audit_page.mjs"))
        .current_dir(&browser_dir)
        .env("AUDIT_URL", &app.address)
        .env("AUDIT_TOKEN", ADMIN)
        .env("AUDIT_USER", "iris")
        .env("AUDIT_USER_ID", id.to_string())
        .env("AUDIT_CLIENTS", clients.to_string())
        .env(
            "AUDIT_ATTACKER",
            json!([ATTACKER.ip, ATTACKER.agent]).to_string(),
        )
        .env("AUDIT_CHROMIUM", CHROMIUM)
        .env("AUDIT_SCREENSHOT", &screenshot);
    // The server runs on this test's runtime: wait for the browser off it.
    let output = actix_web::rt::task::spawn_blocking(move || node.output())
        .await
        .expect("the node task")
        .expect("node runs");

    // then the page showed what the log holds (the script asserts it in the DOM).
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{said}");
    assert!(
        output.status.success(),
        "the browser script failed:\n{said}"
    );
    assert!(
        screenshot.exists(),
        "no screenshot at {}",
        screenshot.display()
    );
}

#[actix_web::test]
async fn the_page_is_served_from_the_binary_under_the_services_csp_and_only_with_a_token() {
    let hidden = spawn_app().await;
    for path in ["/admin", "/admin/app.js", "/admin/app.css"] {
        let response = hidden.client.get(hidden.url(path)).send().await.unwrap();
        assert_eq!(
            response.status().as_u16(),
            404,
            "{path} without ADMIN_API_TOKEN"
        );
    }

    let app = spawn_app_with(&[("ADMIN_API_TOKEN", ADMIN)]).await;
    let mut html = String::new();
    for (path, content_type) in [
        ("/admin", "text/html; charset=utf-8"),
        ("/admin/app.js", "text/javascript; charset=utf-8"),
        ("/admin/app.css", "text/css; charset=utf-8"),
    ] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], content_type, "{path}");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("script-src-attr 'none'"),
            "{csp}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let body = response.text().await.unwrap();
        assert!(!body.contains(ADMIN), "the page never holds the token");
        if path == "/admin" {
            html = body;
        }
    }
    // Scripts only from files: no inline script, no event-handler attributes.
    let lower = html.to_lowercase();
    assert_eq!(lower.matches("<script").count(), 1, "{html}");
    assert!(lower.contains(r#"<script src="/admin/app.js" defer></script>"#));
    assert!(
        !regex::Regex::new(r#"\son[a-z]+\s*="#)
            .unwrap()
            .is_match(&lower),
        "an on* attribute: {html}"
    );
    assert!(
        !lower.contains("http://") && !lower.contains("https://"),
        "nothing from elsewhere"
    );
}
