//! Forgot password, reset password and email confirmation, as a Strapi front end calls them.
//! The code an email would carry is derived here the way the mailer derives it (from the
//! code's id in the log, with the key made from the test's `PERSONAL_DATA_KEY`); that the
//! email itself arrives is the mailer's tests' (`mailer.rs`).

use std::time::{Duration, Instant};

use chrono::TimeDelta;
use serde_json::{Value, json};
use support::{PASSWORD, PERSONAL_DATA_KEY, assert_error};
use tokenledger::email_codes::CodeKey;

use crate::helpers::{TestApp, spawn_app_with};

const NEW_PASSWORD: &str = "a-new-password-2026";

fn code_key() -> CodeKey {
    let mut key = [0u8; 32];
    hex::decode_to_slice(PERSONAL_DATA_KEY, &mut key).unwrap();
    CodeKey::derive(&key)
}

/// The code of the user's `index`-th event of `event_type` (recorded after the answer, so
/// waited for).
async fn code_of(app: &TestApp, user: i64, event_type: &str, index: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let requested = app.payloads(user, event_type).await;
        if let Some(event) = requested.get(index) {
            let id = event["code_id"].as_str().unwrap().parse().unwrap();
            let code = code_key().code(id);
            assert_eq!(
                tokenledger::email_codes::digest(&code),
                event["code_digest"].as_str().unwrap(),
                "the log keeps the digest of the code the mailer derives"
            );
            return code;
        }
        assert!(
            Instant::now() < deadline,
            "no {event_type} #{index} for user {user}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn reset(app: &TestApp, code: &str, password: &str) -> (u16, Value) {
    app.post(
        "/api/auth/reset-password",
        json!({"code": code, "password": password, "passwordConfirmation": password}),
    )
    .await
}

async fn login_status(app: &TestApp, identifier: &str, password: &str) -> u16 {
    app.post(
        "/api/auth/local",
        json!({"identifier": identifier, "password": password}),
    )
    .await
    .0
}

#[actix_web::test]
async fn a_forgotten_password_is_reset_with_the_emailed_code_once_and_every_session_ends() {
    let app = spawn_app_with(&[("EMAIL_RESET_PASSWORD", "https://app.example.com/reset")]).await;
    let id = app.register("pat").await["user"]["id"].as_i64().unwrap();
    let before = app.login("pat").await;
    let (old_refresh, old_jwt) = (
        before["refreshToken"].as_str().unwrap().to_owned(),
        before["jwt"].as_str().unwrap().to_owned(),
    );

    let (status, body) = app
        .post(
            "/api/auth/forgot-password",
            json!({"email": "PAT@example.com"}),
        )
        .await;
    assert_eq!((status, body), (200, json!({"ok": true})));
    let code = code_of(&app, id, "PasswordResetRequested", 0).await;

    let (status, body) = app
        .post(
            "/api/auth/reset-password",
            json!({"code": code, "password": NEW_PASSWORD, "passwordConfirmation": "other-password"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string().contains("Passwords do not match"),
        "{body}"
    );
    let (status, body) = reset(&app, &"0".repeat(64), NEW_PASSWORD).await;
    assert_error(
        status,
        &body,
        400,
        "ValidationError",
        "Incorrect code provided",
    );

    let (status, body) = reset(&app, &code, NEW_PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["id"], id);
    let (status, _) = app
        .get_with_bearer("/api/users/me", body["jwt"].as_str().unwrap())
        .await;
    assert_eq!(status, 200, "the reset logs in");

    assert_eq!(login_status(&app, "pat", NEW_PASSWORD).await, 200);
    assert_eq!(
        login_status(&app, "pat", PASSWORD).await,
        400,
        "the old password"
    );
    assert_eq!(app.refresh(&old_refresh).await.0, 401, "an old session");
    assert_eq!(app.get_with_bearer("/api/users/me", &old_jwt).await.0, 401);
    let (status, body) = reset(&app, &code, "yet-another-password").await;
    assert_error(
        status,
        &body,
        400,
        "ValidationError",
        "Incorrect code provided",
    );

    let types = app.event_types(id).await;
    for expected in ["PasswordResetRequested", "PasswordReset", "SessionsCleared"] {
        assert!(
            types.iter().any(|t| t == expected),
            "{expected} in {types:?}"
        );
    }
    let cleared = app.payloads(id, "SessionsCleared").await;
    assert_eq!(cleared.last().unwrap()["reason"], "password_reset");
    verify_explains_every_row(&app, 1).await;
}

/// `verify` finds every users row what the log says, codes included.
async fn verify_explains_every_row(app: &TestApp, rows: usize) {
    let output = app.cli(&["verify"]);
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        said.contains(&format!("users: {rows} rows explained")),
        "{said}"
    );
}

#[actix_web::test]
async fn a_reset_code_written_with_sql_is_named_by_verify() {
    let app = spawn_app_with(&[]).await;
    let id = app.register("eve").await["user"]["id"].as_i64().unwrap();
    assert_eq!(
        app.post(
            "/api/auth/forgot-password",
            json!({"email": "eve@example.com"})
        )
        .await
        .0,
        200
    );
    code_of(&app, id, "PasswordResetRequested", 0).await;
    verify_explains_every_row(&app, 1).await;
    // An insider with the database but not the keys plants a code of their own.
    let db = app.dir.path().join("tokenledger.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("UPDATE users SET reset_code_digest = ? WHERE id = ?")
        .bind(tokenledger::email_codes::digest("insider"))
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let output = app.cli(&["verify"]);
    assert!(!output.status.success());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        said.contains(&format!(
            "users row {id}: reset_code is not what the log records"
        )),
        "{said}"
    );
}

#[actix_web::test]
async fn a_code_expires_a_new_request_supersedes_it_and_an_unknown_email_records_nothing() {
    let app = spawn_app_with(&[("RESET_PASSWORD_CODE_LIFETIME", "1h")]).await;
    let id = app.register("kim").await["user"]["id"].as_i64().unwrap();
    let other = app.register("lee").await["user"]["id"].as_i64().unwrap();
    let forgot = |email: &'static str| {
        let app = &app;
        async move {
            app.post("/api/auth/forgot-password", json!({ "email": email }))
                .await
        }
    };

    assert_eq!(forgot("kim@example.com").await, (200, json!({"ok": true})));
    let expired = code_of(&app, id, "PasswordResetRequested", 0).await;
    app.advance(TimeDelta::minutes(61));
    let (status, body) = reset(&app, &expired, NEW_PASSWORD).await;
    assert_error(
        status,
        &body,
        400,
        "ValidationError",
        "Incorrect code provided",
    );

    assert_eq!(forgot("kim@example.com").await.0, 200);
    let first = code_of(&app, id, "PasswordResetRequested", 1).await;
    assert_eq!(forgot("kim@example.com").await.0, 200);
    let second = code_of(&app, id, "PasswordResetRequested", 2).await;
    let (status, _) = reset(&app, &first, NEW_PASSWORD).await;
    assert_eq!(status, 400, "superseded");
    assert_eq!(reset(&app, &second, NEW_PASSWORD).await.0, 200);

    // The same answer for nobody, and nothing recorded for anyone.
    assert_eq!(
        forgot("nobody@example.com").await,
        (200, json!({"ok": true}))
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        app.payloads(other, "PasswordResetRequested")
            .await
            .is_empty()
    );
    assert_eq!(app.payloads(id, "PasswordResetRequested").await.len(), 3);

    let (status, body) = app
        .post(
            "/api/auth/forgot-password",
            json!({"email": "not-an-email"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"]["details"]["errors"][0]["path"],
        json!(["email"])
    );
}

#[actix_web::test]
async fn with_email_confirmation_a_registration_logs_in_once_its_link_is_followed() {
    let app = spawn_app_with(&[
        ("EMAIL_CONFIRMATION", "true"),
        (
            "EMAIL_CONFIRMATION_REDIRECTION",
            "https://app.example.com/welcome",
        ),
    ])
    .await;
    let (status, body) = app
        .post(
            "/api/auth/local/register",
            json!({"username": "ria", "email": "ria@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.get("jwt").is_none(),
        "Strapi answers {{user}} alone: {body}"
    );
    assert_eq!(body["user"]["confirmed"], false);
    let id = body["user"]["id"].as_i64().unwrap();
    let (status, body) = app
        .post(
            "/api/auth/local",
            json!({"identifier": "ria", "password": PASSWORD}),
        )
        .await;
    assert_error(
        status,
        &body,
        400,
        "ApplicationError",
        "Your account email is not confirmed",
    );

    // Asked again: a new code supersedes the first.
    let (status, body) = app
        .post(
            "/api/auth/send-email-confirmation",
            json!({"email": "RIA@example.com"}),
        )
        .await;
    assert_eq!(
        (status, body),
        (200, json!({"email": "ria@example.com", "sent": true}))
    );
    let first = code_of(&app, id, "EmailConfirmationRequested", 0).await;
    let code = code_of(&app, id, "EmailConfirmationRequested", 1).await;
    let link = |code: &str| format!("/api/auth/email-confirmation?confirmation={code}");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let followed = client.get(app.url(&link(&first))).send().await.unwrap();
    assert_eq!(followed.status(), 400, "superseded");
    let followed = client.get(app.url(&link(&code))).send().await.unwrap();
    assert_eq!(followed.status(), 302);
    assert_eq!(
        followed.headers()["location"],
        "https://app.example.com/welcome"
    );
    assert_eq!(login_status(&app, "ria", PASSWORD).await, 200);
    let again = client.get(app.url(&link(&code))).send().await.unwrap();
    assert_eq!(again.status(), 400, "used");
    let missing = client
        .get(app.url("/api/auth/email-confirmation"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 400);

    let (status, body) = app
        .post(
            "/api/auth/send-email-confirmation",
            json!({"email": "ria@example.com"}),
        )
        .await;
    assert_error(status, &body, 400, "ApplicationError", "Already confirmed");
    let (status, body) = app
        .post(
            "/api/auth/send-email-confirmation",
            json!({"email": "nobody@example.com"}),
        )
        .await;
    assert_eq!(
        (status, body),
        (200, json!({"email": "nobody@example.com", "sent": true}))
    );
    assert!(
        app.event_types(id)
            .await
            .iter()
            .any(|t| t == "EmailConfirmed")
    );
}

#[actix_web::test]
async fn closing_sign_up_refuses_registrations_as_strapi() {
    let app = spawn_app_with(&[("ALLOW_REGISTER", "false")]).await;
    let (status, body) = app
        .post(
            "/api/auth/local/register",
            json!({"username": "sam", "email": "sam@example.com", "password": PASSWORD}),
        )
        .await;
    assert_error(
        status,
        &body,
        400,
        "ApplicationError",
        "Register action is currently disabled",
    );
}

#[actix_web::test]
async fn an_inbox_gets_a_bounded_number_of_emails_from_any_number_of_clients() {
    let app = spawn_app_with(&[
        ("EMAIL_RATE_LIMIT", "3/1h"),
        ("LOGIN_RATE_LIMIT", "off"),
        ("LOGIN_IP_RATE_LIMIT", "off"),
    ])
    .await;
    app.register("zoe").await;
    for email in ["zoe@example.com", "nobody@example.com"] {
        for _ in 0..3 {
            let (status, body) = app
                .post("/api/auth/forgot-password", json!({ "email": email }))
                .await;
            assert_eq!(status, 200, "{body}");
        }
        let (status, body) = app
            .post(
                "/api/auth/forgot-password",
                json!({ "email": email.to_uppercase() }),
            )
            .await;
        assert_eq!(status, 429, "the fourth for {email}, known or not: {body}");
    }
    let (status, _) = app
        .post(
            "/api/auth/send-email-confirmation",
            json!({"email": "zoe@example.com"}),
        )
        .await;
    assert_eq!(status, 429, "one budget for both kinds of email");
}
