//! State survives a restart: it is rebuilt from the log.

use crate::helpers::{assert_error, spawn_app, spawn_app_with};

#[actix_web::test]
async fn a_refresh_token_issued_before_a_restart_still_works() {
    let app = spawn_app().await;
    app.register("olga").await;
    let login = app.login("olga").await;
    let token = login["refreshToken"].as_str().unwrap().to_owned();
    let jwt = login["jwt"].as_str().unwrap().to_owned();
    let app = app.restart().await;
    let (status, body) = app.refresh(&token).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = app.get_with_bearer("/api/users/me", &jwt).await;
    assert_eq!(
        status, 200,
        "the access token's session is live after the restart"
    );
}

#[actix_web::test]
async fn rotation_state_survives_a_restart() {
    let app = spawn_app_with(&[
        ("REFRESH_TOKEN_ROTATION", "true"),
        ("REFRESH_TOKEN_REUSE_GRACE", "0s"),
    ])
    .await;
    app.register("pete").await;
    let first = app.login("pete").await["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, body) = app.refresh(&first).await;
    let second = body["refreshToken"].as_str().unwrap().to_owned();
    let app = app.restart().await;
    let (status, body) = app.refresh(&second).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app.refresh(&first).await;
    assert_error(
        status,
        &body,
        401,
        "UnauthorizedError",
        "Invalid refresh token",
    );
}

#[actix_web::test]
async fn users_survive_a_restart_and_secrets_are_generated_once() {
    let app = spawn_app().await;
    app.register("quinn").await;
    let app = app.restart().await;
    assert!(app.login("quinn").await["jwt"].is_string());
}
