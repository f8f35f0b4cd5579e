//! Register, login and refresh as a Strapi front end uses them.

use serde_json::json;
use support::{
    Api, assert_error, assert_forbidden, assert_invalid_refresh_token, assert_unauthorized,
};

use crate::helpers::{spawn_app, spawn_app_with};

#[actix_web::test]
async fn register_answers_strapis_jwt_and_user_without_secrets() {
    let app = spawn_app().await;
    let (status, body) = app
        .post(
            "/api/auth/local/register",
            json!({"username": "Alice", "email": "Alice@Example.COM", "password": "password123"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let user = &body["user"];
    assert_eq!(user["username"], "Alice");
    assert_eq!(
        user["email"], "alice@example.com",
        "email is stored lower-cased"
    );
    assert_eq!(user["provider"], "local");
    assert_eq!(
        (user["confirmed"].as_bool(), user["blocked"].as_bool()),
        (Some(true), Some(false))
    );
    let document_id = user["documentId"].as_str().unwrap();
    assert_eq!(document_id.len(), 24);
    assert!(document_id.starts_with(|c: char| c.is_ascii_lowercase()));
    let mut keys: Vec<&str> = user
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "blocked",
            "confirmed",
            "createdAt",
            "documentId",
            "email",
            "id",
            "provider",
            "publishedAt",
            "updatedAt",
            "username"
        ]
    );
    assert!(
        body.get("refreshToken").is_none(),
        "no refresh token unless requestRefreshOnAll"
    );
    let (status, me) = app
        .get_with_bearer("/api/users/me", body["jwt"].as_str().unwrap())
        .await;
    assert_eq!((status, &me["id"]), (200, &user["id"]));
    assert_eq!(
        app.event_types(user["id"].as_i64().unwrap()).await,
        ["UserRegistered", "TokenIssued"]
    );
}

#[actix_web::test]
async fn register_refuses_taken_names_unknown_fields_and_bad_values() {
    let app = spawn_app().await;
    app.register("bob").await;
    let (status, body) = app
        .post(
            "/api/auth/local/register",
            json!({"username": "bob", "email": "other@example.com", "password": "password123"}),
        )
        .await;
    assert_error(
        status,
        &body,
        400,
        "ApplicationError",
        "Email or Username are already taken",
    );
    let (status, body) = app
        .post(
            "/api/auth/local/register",
            json!({"username": "robert", "email": "BOB@example.com", "password": "password123"}),
        )
        .await;
    assert_error(
        status,
        &body,
        400,
        "ApplicationError",
        "Email or Username are already taken",
    );

    let (status, body) = app
        .post(
            "/api/auth/local/register",
            json!({"username": "carol", "role": 1, "email": "c@example.com", "password": "password123", "confirmed": true}),
        )
        .await;
    assert_error(
        status,
        &body,
        400,
        "ValidationError",
        "Invalid parameters: role, confirmed",
    );

    let (status, body) = app.post("/api/auth/local/register", json!({})).await;
    assert_error(status, &body, 400, "ValidationError", "3 errors occurred");
    let paths: Vec<&str> = body["error"]["details"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"][0].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["email", "username", "password"]);

    let (status, body) = app
        .post(
            "/api/auth/local/register",
            json!({"username": "dave", "email": "not-an-email", "password": "password123"}),
        )
        .await;
    assert_error(
        status,
        &body,
        400,
        "ValidationError",
        "email must be a valid email",
    );
    let (status, body) = app
        .post(
            "/api/auth/local/register",
            json!({"username": "dave", "email": "dave@example.com", "password": "short"}),
        )
        .await;
    assert_error(
        status,
        &body,
        400,
        "ValidationError",
        "password must be at least 6 characters",
    );
}

#[actix_web::test]
async fn login_matches_email_in_any_case_and_username_exactly() {
    let app = spawn_app().await;
    app.register("Erin").await;
    for identifier in ["erin@example.com", "ERIN@EXAMPLE.COM", "Erin"] {
        let body = app.login(identifier).await;
        assert!(body["refreshToken"].is_string(), "{identifier}: {body}");
    }
    let (status, body) = app
        .post(
            "/api/auth/local",
            json!({"identifier": "erin", "password": "password123"}),
        )
        .await;
    assert_error(
        status,
        &body,
        400,
        "ValidationError",
        "Invalid identifier or password",
    );
}

#[actix_web::test]
async fn a_wrong_password_and_an_unknown_user_get_the_same_answer_and_the_failure_is_recorded() {
    let app = spawn_app().await;
    let id = app.register("frank").await["user"]["id"].as_i64().unwrap();
    let verifications = || app.state().passwords.verifications();
    let before = verifications();
    let app = &app;
    let raw_login = |identifier: &'static str| async move {
        app.client
            .post(app.url("/api/auth/local"))
            .json(&json!({"identifier": identifier, "password": "wrong-password"}))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
    };
    let wrong_raw = raw_login("frank").await;
    assert_eq!(verifications(), before + 1, "one argon2 verification");
    let unknown_raw = raw_login("nobody").await;
    assert_eq!(
        verifications(),
        before + 2,
        "an unknown user costs the same one verification"
    );
    assert_eq!(wrong_raw, unknown_raw, "byte-identical bodies");
    let (status, wrong) = app
        .post(
            "/api/auth/local",
            json!({"identifier": "frank", "password": "wrong-password"}),
        )
        .await;
    assert_error(
        status,
        &wrong,
        400,
        "ValidationError",
        "Invalid identifier or password",
    );
    let (status, unknown) = app
        .post(
            "/api/auth/local",
            json!({"identifier": "nobody", "password": "wrong-password"}),
        )
        .await;
    assert_eq!((status, &unknown), (400, &wrong));
    assert_eq!(
        app.event_types(id).await,
        [
            "UserRegistered",
            "TokenIssued",
            "LoginFailed",
            "LoginFailed"
        ]
    );
}

#[actix_web::test]
async fn request_refresh_is_read_as_javascript_truthiness_and_forms_work() {
    let app = spawn_app().await;
    app.register("gina").await;
    for (value, expected) in [
        (json!(true), true),
        (json!("yes"), true),
        (json!(1), true),
        (json!(false), false),
        (json!(0), false),
        (json!(""), false),
    ] {
        let (status, body) = app
            .post(
                "/api/auth/local",
                json!({"identifier": "gina", "password": "password123", "requestRefresh": value}),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(
            body.get("refreshToken").is_some(),
            expected,
            "requestRefresh={value}"
        );
    }
    let (status, body) = app
        .post_raw(
            "/api/auth/local",
            Some("application/x-www-form-urlencoded"),
            "identifier=gina%40example.com&password=password123&requestRefresh=true",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["refreshToken"].is_string());
}

#[actix_web::test]
async fn request_refresh_on_all_hands_out_refresh_tokens_on_register_and_login() {
    let app = spawn_app_with(&[("REQUEST_REFRESH_ON_ALL", "true")]).await;
    assert!(app.register("hank").await["refreshToken"].is_string());
    let (_, body) = app
        .post(
            "/api/auth/local",
            json!({"identifier": "hank", "password": "password123"}),
        )
        .await;
    assert!(body["refreshToken"].is_string(), "{body}");
}

#[actix_web::test]
async fn with_rotation_off_the_same_refresh_token_keeps_working() {
    let app = spawn_app().await;
    let id = app.register("ivy").await["user"]["id"].as_i64().unwrap();
    let token = app.login("ivy").await["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..3 {
        let (status, body) = app.refresh(&token).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["jwt"]
        );
        let (status, _) = app
            .get_with_bearer("/api/users/me", body["jwt"].as_str().unwrap())
            .await;
        assert_eq!(status, 200);
    }
    // From the session's last client within SESSION_ACTIVITY_RESOLUTION (60s) of the last
    // recorded use: answered with no durable write.
    assert_eq!(
        app.event_types(id).await,
        ["UserRegistered", "TokenIssued", "TokenIssued"]
    );

    // A minute on, the next use is recorded; and one from another client always is.
    app.advance(chrono::TimeDelta::seconds(61));
    assert_eq!(app.refresh(&token).await.0, 200);
    assert_eq!(app.refresh(&token).await.0, 200);
    let (status, body) = Api::send(
        app.api
            .client
            .post(app.api.url("/api/auth/local/refresh"))
            .header("user-agent", "another-browser/1.0")
            .json(&json!({ "refreshToken": token })),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        app.event_types(id).await,
        [
            "UserRegistered",
            "TokenIssued",
            "TokenIssued",
            "TokenRefreshed",
            "TokenRefreshed"
        ]
    );
    let last = app.payloads(id, "TokenRefreshed").await;
    assert_eq!(last[0]["same_client"], true, "{last:?}");
    assert_eq!(last[1]["same_client"], false, "{last:?}");
}

#[actix_web::test]
async fn with_an_activity_resolution_of_zero_every_refresh_is_recorded() {
    let app = spawn_app_with(&[("SESSION_ACTIVITY_RESOLUTION", "0s")]).await;
    let id = app.register("ivo").await["user"]["id"].as_i64().unwrap();
    let token = app.login("ivo").await["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..3 {
        assert_eq!(app.refresh(&token).await.0, 200);
    }
    assert_eq!(
        app.event_types(id).await,
        [
            "UserRegistered",
            "TokenIssued",
            "TokenIssued",
            "TokenRefreshed",
            "TokenRefreshed",
            "TokenRefreshed"
        ]
    );
}

#[actix_web::test]
async fn with_rotation_on_the_successor_works_and_the_old_token_is_then_refused() {
    let app = spawn_app_with(&[("REFRESH_TOKEN_ROTATION", "true")]).await;
    let id = app.register("jack").await["user"]["id"].as_i64().unwrap();
    let first = app.login("jack").await["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, rotated) = app.refresh(&first).await;
    assert_eq!(status, 200, "{rotated}");
    let second = rotated["refreshToken"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    // The successor works and rotates on; the first token is two generations old now.
    let (status, body) = app.refresh(&second).await;
    assert_eq!(status, 200, "{body}");
    let third = body["refreshToken"].as_str().unwrap().to_owned();
    let (status, body) = app.refresh(&first).await;
    assert_invalid_refresh_token(status, &body);
    // Reuse kills the whole family, the newest token included, and its access tokens.
    let (status, _) = app.refresh(&third).await;
    assert_eq!(status, 401);
    let (status, _) = app
        .get_with_bearer("/api/users/me", rotated["jwt"].as_str().unwrap())
        .await;
    assert_eq!(
        status, 401,
        "an access token of a revoked session is refused"
    );
    assert_eq!(
        app.event_types(id).await,
        [
            "UserRegistered",
            "TokenIssued",
            "TokenIssued",
            "TokenRotated",
            "TokenRotated",
            "RefreshTokenReused",
            "SessionRevoked"
        ]
    );
}

#[actix_web::test]
async fn the_previous_token_within_the_grace_window_gets_the_identical_successor() {
    let app = spawn_app_with(&[
        ("REFRESH_TOKEN_ROTATION", "true"),
        ("REFRESH_TOKEN_REUSE_GRACE", "1s"),
    ])
    .await;
    let id = app.register("kate").await["user"]["id"].as_i64().unwrap();
    let first = app.login("kate").await["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, rotated) = app.refresh(&first).await;
    let (status, again) = app.refresh(&first).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        again["refreshToken"], rotated["refreshToken"],
        "same successor within the grace window"
    );
    // After the window the previous token is reuse: the session dies.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (status, body) = app.refresh(&first).await;
    assert_invalid_refresh_token(status, &body);
    let (status, _) = app.refresh(rotated["refreshToken"].as_str().unwrap()).await;
    assert_eq!(status, 401);
    let types = app.event_types(id).await;
    assert_eq!(types.iter().filter(|t| *t == "TokenRotated").count(), 1);
    assert_eq!(
        &types[types.len() - 2..],
        ["RefreshTokenReused", "SessionRevoked"]
    );
}

#[actix_web::test]
async fn refresh_without_a_token_is_a_400_and_with_garbage_a_401() {
    let app = spawn_app().await;
    for body in [
        json!({}),
        json!({"refreshToken": ""}),
        json!({"refreshToken": null}),
        json!({"refreshToken": 5}),
    ] {
        let (status, answer) = app.post("/api/auth/local/refresh", body).await;
        assert_error(
            status,
            &answer,
            400,
            "BadRequestError",
            "Missing refresh token",
        );
    }
    let (status, answer) = app.refresh("not.a.jwt").await;
    assert_invalid_refresh_token(status, &answer);
}

#[actix_web::test]
async fn users_me_needs_a_valid_bearer_token() {
    let app = spawn_app().await;
    let (status, body) = app.get_with_bearer("/api/users/me", "nonsense").await;
    assert_unauthorized(status, &body);
    let (status, body) = app.get("/api/users/me").await;
    assert_forbidden(status, &body);
    let (_, refresh) = app.user_with_token("lena").await;
    let (status, _) = app.get_with_bearer("/api/users/me", &refresh).await;
    assert_eq!(status, 401, "a refresh token is not an access token");
}

#[actix_web::test]
async fn a_username_may_not_be_anothers_email_nor_the_reverse() {
    let app = spawn_app().await;
    let (status, _) = app
        .post("/api/auth/local/register", json!({"username": "dan@example.com", "email": "d1@example.com", "password": "password123"}))
        .await;
    assert_eq!(status, 200);
    // Taking dan's login name as an email would capture his logins.
    let (status, body) = app
        .post(
            "/api/auth/local/register",
            json!({"username": "mallory", "email": "Dan@Example.com", "password": "password123"}),
        )
        .await;
    assert_error(
        status,
        &body,
        400,
        "ApplicationError",
        "Email or Username are already taken",
    );
    let (status, body) = app
        .post("/api/auth/local/register", json!({"username": "D1@example.com", "email": "m@example.com", "password": "password123"}))
        .await;
    assert_error(
        status,
        &body,
        400,
        "ApplicationError",
        "Email or Username are already taken",
    );
    let (status, _) = app
        .post(
            "/api/auth/local",
            json!({"identifier": "dan@example.com", "password": "password123"}),
        )
        .await;
    assert_eq!(status, 200, "dan still logs in");
}
