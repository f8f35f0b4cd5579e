//! State survives a restart: it is rebuilt from the log.

use support::assert_invalid_refresh_token;

use crate::helpers::{spawn_app, spawn_app_with, test_env};

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
    assert_invalid_refresh_token(status, &body);
}

#[actix_web::test]
async fn users_survive_a_restart_and_secrets_are_generated_once() {
    let app = spawn_app().await;
    app.register("quinn").await;
    let app = app.restart().await;
    assert!(app.login("quinn").await["jwt"].is_string());
}

#[actix_web::test]
async fn a_second_server_on_the_same_database_refuses_to_start() {
    let app = spawn_app().await;
    let env = test_env(app.dir.path());
    let config = tokenledger::config::Config::load(None, &env, false).unwrap();
    let refused = tokenledger::app::Application::build(config)
        .await
        .err()
        .expect("refused");
    assert!(
        format!("{refused:#}").contains("another tokenledger is serving this database"),
        "{refused:#}"
    );
}

#[cfg(unix)]
#[actix_web::test]
async fn the_database_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let app = spawn_app().await;
    app.register("ursula").await;
    let mode = std::fs::metadata(app.dir.path().join("tokenledger.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[actix_web::test]
async fn configured_secrets_and_a_missing_data_folder_start_fine() {
    let app = spawn_app().await;
    let nested = app.dir.path().join("not/yet/there");
    let env = test_env(&nested);
    let config = tokenledger::config::Config::load(None, &env, false).unwrap();
    let second = tokenledger::app::Application::build(config).await;
    assert!(second.is_ok(), "{:#}", second.err().unwrap());
    assert!(nested.join("tokenledger.db").exists());
}
