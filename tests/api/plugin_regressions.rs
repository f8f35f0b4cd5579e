//! The failures of `@redon2inc/strapi-plugin-refresh-token` that tokenledger replaces, kept as
//! regression tests. The others live beside the feature they test:
//! - a forged user id with someone else's session id:
//!   `token_attacks::a_token_whose_subject_and_session_belong_to_different_users_is_refused`;
//! - concurrent rotations forking a session:
//!   `concurrency::fifty_concurrent_rotations_of_one_token_yield_one_successor`;
//! - a user blocked through tokenledger: `limits::a_blocked_user_is_logged_out_everywhere_and_cannot_log_in`
//!   and `a_user_blocked_through_the_service_cannot_refresh_and_unblocked_logs_in_again` below;
//! - a `Secure` cookie over plain HTTP behind a TLS proxy (the plugin answers 500):
//!   `cookies::cookie_attributes_follow_the_configuration`.

use serde_json::Value;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};
use support::{JWT_SECRET, REFRESH_SECRET, assert_error, assert_invalid_refresh_token};

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

/// A user with a refresh token that works, and its id.
async fn user_with_token(app: &TestApp, name: &str) -> (i64, String) {
    let (id, token) = app.user_with_token(name).await;
    assert_eq!(app.refresh(&token).await.0, 200);
    (id, token)
}

/// Runs one statement on the app's SQLite file, as an operator or another tool would.
async fn sql(app: &TestApp, statement: &'static str, id: i64) {
    let mut db = SqliteConnectOptions::new()
        .filename(app.dir.path().join("tokenledger.db"))
        .connect()
        .await
        .expect("the database opens");
    let done = sqlx::query(statement)
        .bind(id)
        .execute(&mut db)
        .await
        .expect("the statement runs");
    assert_eq!(done.rows_affected(), 1, "{statement}");
    db.close().await.unwrap();
}

#[actix_web::test]
async fn a_users_row_edited_with_sql_ends_no_session_and_verify_names_it() {
    // A refresh no longer reads the users row (issue 20): blocking and deleting go through
    // the user's stream, which ends the sessions. A block made straight in the table, as
    // Strapi's admin panel would, is an edit behind the log: `verify` names it.
    let app = spawn_app().await;
    let (id, token) = user_with_token(&app, "barred").await;
    sql(&app, "UPDATE users SET blocked = 1 WHERE id = ?", id).await;
    assert_eq!(app.refresh(&token).await.0, 200);
    let verified = app.cli(&["verify"]);
    assert!(!verified.status.success(), "{verified:?}");
    let said = String::from_utf8_lossy(&verified.stdout).to_string()
        + &String::from_utf8_lossy(&verified.stderr);
    assert!(said.contains(&format!("users row {id}")), "{said}");
}

#[actix_web::test]
async fn a_user_blocked_through_the_service_cannot_refresh_and_unblocked_logs_in_again() {
    let app = spawn_app().await;
    let (_, token) = user_with_token(&app, "held").await;
    let blocked = app.cli(&["user", "block", "held"]);
    assert!(blocked.status.success(), "{blocked:?}");
    let (status, body) = app.refresh(&token).await;
    assert_invalid_refresh_token(status, &body);
    let unblocked = app.cli(&["user", "unblock", "held"]);
    assert!(unblocked.status.success(), "{unblocked:?}");
    let (status, body) = app.refresh(&token).await;
    assert_invalid_refresh_token(status, &body);
    assert_eq!(app.login("held").await["user"]["username"], "held");
}

fn lifetime_of(token: &str) -> i64 {
    let claims = support::claims(token);
    claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap()
}

#[actix_web::test]
async fn durations_like_7_days_and_1y_are_read_as_such() {
    let app = spawn_app_with(&[
        ("REFRESH_TOKEN_EXPIRES_IN", "7 days"),
        ("JWT_EXPIRES_IN", "1 hour"),
        ("SESSION_ABSOLUTE_LIFETIME", "1y"),
    ])
    .await;
    let (_, _) = user_with_token(&app, "patient").await;
    let login = app.login("patient").await;
    assert_eq!(
        lifetime_of(login["refreshToken"].as_str().unwrap()),
        7 * 86_400
    );
    assert_eq!(lifetime_of(login["jwt"].as_str().unwrap()), 3_600);
}

#[test]
fn a_duration_no_one_can_use_stops_the_start_with_its_key_named() {
    let dir = tempfile::tempdir().unwrap();
    for (key, value) in [
        ("REFRESH_TOKEN_EXPIRES_IN", "1000000y"),
        ("REFRESH_TOKEN_EXPIRES_IN", "a week"),
        ("SESSION_ABSOLUTE_LIFETIME", "99999999999999999999"),
        ("JWT_EXPIRES_IN", "-5m"),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_tokenledger"))
            .env("DATA_DIR", dir.path())
            .env("PORT", "0")
            .env("JWT_SECRET", JWT_SECRET)
            .env("REFRESH_JWT_SECRET", REFRESH_SECRET)
            .env(key, value)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{key}={value} started");
        assert!(
            stderr.contains(key) && !stderr.contains("panicked"),
            "{key}={value}: {stderr}"
        );
    }
}

#[actix_web::test]
async fn a_missing_body_is_strapis_400_never_a_405_or_500() {
    let app = spawn_app().await;
    for (path, message) in [
        ("/api/auth/local/refresh", "Missing refresh token"),
        ("/api/auth/refresh", "Missing refresh token"),
    ] {
        let (status, body) = app.post_raw(path, None, Vec::new()).await;
        assert_error(status, &body, 400, "BadRequestError", message);
    }
    for path in [
        "/api/auth/local",
        "/api/auth/local/register",
        "/api/auth/change-password",
        "/api/auth/logout",
    ] {
        let (status, body) = app.post_raw(path, None, Vec::new()).await;
        assert!(
            (400..500).contains(&status) && status != 405,
            "{path}: {status} {body}"
        );
        assert_eq!(body["error"]["status"], status, "{path}: {body}");
        assert_eq!(body["data"], Value::Null, "{path}: {body}");
    }
}
