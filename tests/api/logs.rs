//! What the server writes to its log: never a token, a password or a secret, at the most
//! talkative level, across a run that touches every route that handles one.

use serde_json::{Value, json};

use support::{JWT_SECRET, REFRESH_SECRET, Server};

use crate::helpers::server_on;

const ADMIN_TOKEN: &str = "admin-token-for-the-log-test-0123456789abcdef";
const PASSWORD: &str = "first-password-7d1c";
const NEW_PASSWORD: &str = "second-password-9e4a";
const WRONG_PASSWORD: &str = "wrong-password-3b8f";

async fn start(dir: &std::path::Path) -> Server {
    server_on(dir)
        .envs(&[
            ("ADMIN_API_TOKEN", ADMIN_TOKEN),
            ("REFRESH_TOKEN_ROTATION", "true"),
            ("RUST_LOG", "debug"),
        ])
        .serving()
        .await
}

fn text(value: &Value) -> String {
    value.as_str().expect("a string").to_owned()
}

#[actix_web::test]
async fn no_token_password_or_secret_reaches_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let api = server.api();
    let mut secrets: Vec<String> = [
        JWT_SECRET,
        REFRESH_SECRET,
        ADMIN_TOKEN,
        PASSWORD,
        NEW_PASSWORD,
        WRONG_PASSWORD,
    ]
    .map(str::to_owned)
    .to_vec();

    let (status, registered) = api
        .post(
            "/api/auth/local/register",
            json!({"username": "logan", "email": "logan@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, 200, "{registered}");
    let id = registered["user"]["id"].as_i64().unwrap();
    secrets.push(text(&registered["jwt"]));
    let login = json!({"identifier": "logan", "password": PASSWORD, "requestRefresh": true});
    let (status, session) = api.post("/api/auth/local", login).await;
    assert_eq!(status, 200, "{session}");
    let (jwt, first) = (text(&session["jwt"]), text(&session["refreshToken"]));
    secrets.extend([jwt.clone(), first.clone()]);
    let wrong = json!({"identifier": "logan", "password": WRONG_PASSWORD});
    assert_eq!(api.post("/api/auth/local", wrong).await.0, 400);

    // Rotate twice, then present the first token again: a reuse, which revokes the session.
    let mut current = first.clone();
    for _ in 0..2 {
        let (status, rotated) = api
            .post("/api/auth/local/refresh", json!({"refreshToken": current}))
            .await;
        assert_eq!(status, 200, "{rotated}");
        current = text(&rotated["refreshToken"]);
        secrets.extend([current.clone(), text(&rotated["jwt"])]);
    }
    let reuse = json!({"refreshToken": first});
    assert_eq!(api.post("/api/auth/local/refresh", reuse).await.0, 401);
    let forged = format!("{first}x");
    let forged_body = json!({"refreshToken": forged});
    assert_eq!(
        api.post("/api/auth/local/refresh", forged_body).await.0,
        401
    );

    // A fresh session: the bearer routes, change-password, the admin API, logout.
    let login = json!({"identifier": "logan", "password": PASSWORD, "requestRefresh": true});
    let (_, session) = api.post("/api/auth/local", login).await;
    let jwt = text(&session["jwt"]);
    secrets.extend([jwt.clone(), text(&session["refreshToken"])]);
    assert_eq!(api.get_with_bearer("/api/users/me", &jwt).await.0, 200);
    assert_eq!(api.get_with_bearer("/api/auth/sessions", &jwt).await.0, 200);
    let change = json!({
        "currentPassword": PASSWORD,
        "password": NEW_PASSWORD,
        "passwordConfirmation": NEW_PASSWORD,
    });
    let (status, changed) = api
        .post_with_bearer("/api/auth/change-password", &jwt, change)
        .await;
    assert_eq!(status, 200, "{changed}");
    let jwt = text(&changed["jwt"]);
    secrets.push(jwt.clone());
    let events = format!("/api/admin/users/{id}/events");
    assert_eq!(api.get_with_bearer(&events, ADMIN_TOKEN).await.0, 200);
    assert_eq!(
        api.post_with_bearer("/api/auth/logout", &jwt, json!({}))
            .await
            .0,
        200
    );

    let lines = server.stop();
    assert!(
        lines.len() > 20 && lines.iter().any(|l| l.contains("DEBUG")),
        "the log is too quiet to mean anything: {lines:?}"
    );
    // A token's signature alone, or its payload, is as telling as the whole token.
    let mut needles: Vec<String> = Vec::new();
    for secret in &secrets {
        needles.push(secret.clone());
        if secret.matches('.').count() == 2 {
            needles.extend(secret.split('.').skip(1).map(str::to_owned));
        }
    }
    for line in &lines {
        for needle in &needles {
            assert!(
                !line.contains(needle.as_str()),
                "a secret ({}…) is in the log: {line}",
                &needle[..needle.len().min(12)]
            );
        }
    }
}
