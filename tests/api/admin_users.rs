//! `GET /api/admin/users?q&limit`: finding the user an investigation is about, on SQLite and
//! on PostgreSQL.

use serde_json::Value;
use support::{assert_error, assert_unauthorized, fresh_postgres_url};

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

const ADMIN: &str = "admin-token-0123456789abcdef0123456789abcdef";

async fn find(app: &TestApp, query: &str) -> (u16, Value) {
    app.get_with_bearer(&format!("/api/admin/users?{query}"), ADMIN)
        .await
}

fn urlencoding(text: &str) -> String {
    text.bytes().map(|b| format!("%{b:02X}")).collect()
}

fn usernames(body: &Value) -> Vec<&str> {
    body["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect()
}

/// Given users whose names overlap, when the admin searches by a piece of a name, an email,
/// an id or nothing, then each finds what an investigator means.
async fn finds_users_by_name_email_and_id(app: &TestApp) {
    let mut ids = Vec::new();
    for name in ["maria", "mariana", "Marek", "zed_1", "zed%2"] {
        ids.push(app.register(name).await["user"]["id"].as_i64().unwrap());
    }

    let (status, body) = find(app, "q=MARI").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(usernames(&body), ["maria", "mariana"], "any case, by id");
    let user = &body["data"][0];
    assert_eq!(user["email"], "maria@example.com");
    assert_eq!(user["blocked"], false);
    assert!(user.get("password").is_none() && user.get("passwordHash").is_none());
    assert_eq!(body["meta"]["more"], false);

    let (_, body) = find(app, "q=mariana%40example").await;
    assert_eq!(usernames(&body), ["mariana"], "by email");

    let (_, body) = find(app, "q=mar&limit=2").await;
    assert_eq!(usernames(&body), ["maria", "mariana"]);
    assert_eq!(
        (
            body["meta"]["limit"].as_i64(),
            body["meta"]["more"].as_bool()
        ),
        (Some(2), Some(true))
    );

    let (_, body) = find(app, &format!("q={}", ids[2])).await;
    assert_eq!(usernames(&body)[0], "Marek", "the id first");

    // LIKE's wildcards are plain characters here: `_` is not "any one character".
    let (_, body) = find(app, "q=d_").await;
    assert_eq!(usernames(&body), ["zed_1"]);
    let (_, body) = find(app, "q=d%25").await;
    assert_eq!(usernames(&body), ["zed%2"]);

    let (_, body) = find(app, "").await;
    assert_eq!(
        usernames(&body),
        ["zed%2", "zed_1", "Marek", "mariana", "maria"],
        "no query: the newest first"
    );
    let (_, body) = find(app, "q=nobody").await;
    assert_eq!(body["data"], serde_json::json!([]));

    // A name with letters beyond ASCII, whose email does not repeat it: found as typed, and
    // with its ASCII letters in any case, on both backends.
    let (status, body) = app
        .post(
            "/api/auth/local/register",
            serde_json::json!({"username": "Émile", "email": "e.z@example.com", "password": "password123"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for typed in ["%C3%89mile", "%C3%89MILE", "%C3%89mi"] {
        let (_, body) = find(app, &format!("q={typed}")).await;
        assert_eq!(usernames(&body), ["Émile"], "q={typed}");
    }
    // The exact name first, in whatever case its ASCII letters are typed.
    for name in ["Évans", "Éva"] {
        let (status, body) = app
            .post(
                "/api/auth/local/register",
                serde_json::json!({"username": name, "email": format!("{}@example.com", name.len()), "password": "password123"}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (_, body) = find(app, "q=%C3%89VA").await;
    assert_eq!(usernames(&body), ["Éva", "Évans"]);
}

#[actix_web::test]
async fn the_admin_finds_users_by_name_email_or_id() {
    let app = spawn_app_with(&[("ADMIN_API_TOKEN", ADMIN)]).await;
    finds_users_by_name_email_and_id(&app).await;
}

#[actix_web::test]
async fn the_admin_finds_users_on_postgres() {
    let Some(url) = fresh_postgres_url().await else {
        return;
    };
    let app = spawn_app_with(&[("ADMIN_API_TOKEN", ADMIN), ("DATABASE_URL", &url)]).await;
    finds_users_by_name_email_and_id(&app).await;
    // PostgreSQL lowers every letter; a name typed as it is stored is found, though Rust would
    // lower its final Σ to ς where PostgreSQL lowers it to σ. (A ς typed is another letter:
    // lowering is not case folding.)
    let (status, body) = app
        .post(
            "/api/auth/local/register",
            serde_json::json!({"username": "ΣΟΦΟΣ", "email": "s@example.com", "password": "password123"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for typed in ["ΣΟΦΟΣ", "σοφοσ", "ΣοΦοσ", "οΦοΣ"] {
        let (_, body) = find(&app, &format!("q={}", urlencoding(typed))).await;
        assert_eq!(usernames(&body), ["ΣΟΦΟΣ"], "q={typed}");
    }
    // A NUL would fail PostgreSQL's query: refused before it gets there.
    let (status, body) = find(&app, "q=a%00b").await;
    assert_error(
        status,
        &body,
        400,
        "ValidationError",
        "q must not contain NUL characters",
    );
    app.stop().await;
}

#[actix_web::test]
async fn a_bad_user_search_is_a_validation_error_and_the_search_is_guarded() {
    // Given no admin token configured, the route does not exist.
    let hidden = spawn_app().await;
    let (status, body) = find(&hidden, "q=a").await;
    assert_error(status, &body, 404, "NotFoundError", "Not Found");

    let app = spawn_app_with(&[("ADMIN_API_TOKEN", ADMIN)]).await;
    let (status, body) = app.get_with_bearer("/api/admin/users", "wrong").await;
    assert_unauthorized(status, &body);
    let long = format!("q={}", "a".repeat(256));
    for (query, message) in [
        ("limit=0", "limit must be a whole number between 1 and 100"),
        (
            "limit=101",
            "limit must be a whole number between 1 and 100",
        ),
        ("limit=-1", "limit must be a whole number between 1 and 100"),
        (
            "limit=ten",
            "limit must be a whole number between 1 and 100",
        ),
        ("q=%00", "q must not contain NUL characters"),
        (long.as_str(), "q must be at most 255 characters"),
    ] {
        let (status, body) = find(&app, query).await;
        assert_error(status, &body, 400, "ValidationError", message);
    }
}
