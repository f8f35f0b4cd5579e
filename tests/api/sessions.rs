//! Strapi 5's session routes: refresh, logout, list, revoke, change password; reuse, grace
//! and expiry with the server's clock moved forward instead of sleeping.

use chrono::TimeDelta;
use serde_json::{Value, json};
use support::{assert_error, assert_forbidden, assert_invalid_refresh_token};

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

fn s(value: &Value) -> String {
    value.as_str().expect("a string").to_owned()
}

/// Registers `name` and logs in from two devices; returns (user id, phone login, laptop login).
async fn two_devices(app: &TestApp, name: &str) -> (i64, Value, Value) {
    let id = app.register(name).await["user"]["id"].as_i64().unwrap();
    let phone = app.login_with(name, json!({"deviceId": "phone"})).await;
    let laptop = app.login_with(name, json!({"deviceId": "laptop"})).await;
    (id, phone, laptop)
}

#[actix_web::test]
async fn sessions_are_listed_current_first_with_their_details() {
    let app = spawn_app().await;
    let (_, phone, laptop) = two_devices(&app, "amy").await;
    // The laptop is used last, so it leads the others; the caller's own session leads all.
    app.refresh(&s(&laptop["refreshToken"])).await;
    let (status, body) = app
        .get_with_bearer("/api/auth/sessions", &s(&phone["jwt"]))
        .await;
    assert_eq!(status, 200, "{body}");
    let data = body["data"].as_array().unwrap();
    let devices: Vec<&str> = data
        .iter()
        .map(|d| d["deviceId"].as_str().unwrap())
        .collect();
    assert_eq!(devices[..2], ["phone", "laptop"], "{body}");
    assert_eq!(data.len(), 3, "register, phone and laptop: {body}");
    assert_eq!(data[0]["current"], true);
    assert!(data[1..].iter().all(|d| d["current"] == false));
    for key in [
        "id",
        "deviceName",
        "loginAt",
        "lastActiveAt",
        "ip",
        "userAgent",
        "expiresAt",
    ] {
        assert!(data[0].get(key).is_some(), "{key} missing: {body}");
    }
    assert_eq!(data[0]["ip"], "127.0.0.1");
}

#[actix_web::test]
async fn revoking_one_session_ends_its_tokens_and_only_the_owner_can() {
    let app = spawn_app().await;
    let (_, phone, laptop) = two_devices(&app, "ben").await;
    let (_, sessions) = app
        .get_with_bearer("/api/auth/sessions", &s(&phone["jwt"]))
        .await;
    let laptop_id = s(&sessions["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["deviceId"] == "laptop")
        .unwrap()["id"]);

    let (_, other, _) = two_devices(&app, "eve").await;
    let (status, body) = app
        .delete_with_bearer(
            &format!("/api/auth/sessions/{laptop_id}"),
            &s(&other["jwt"]),
        )
        .await;
    assert_error(status, &body, 404, "NotFoundError", "Session not found");

    let (status, body) = app
        .delete_with_bearer(
            &format!("/api/auth/sessions/{laptop_id}"),
            &s(&phone["jwt"]),
        )
        .await;
    assert_eq!((status, &body), (200, &json!({"data": {}})));
    assert_eq!(app.refresh(&s(&laptop["refreshToken"])).await.0, 401);
    assert_eq!(
        app.get_with_bearer("/api/users/me", &s(&laptop["jwt"]))
            .await
            .0,
        401
    );
    assert_eq!(
        app.refresh(&s(&phone["refreshToken"])).await.0,
        200,
        "the phone is untouched"
    );
    let (status, body) = app
        .delete_with_bearer(
            &format!("/api/auth/sessions/{laptop_id}"),
            &s(&phone["jwt"]),
        )
        .await;
    assert_error(status, &body, 404, "NotFoundError", "Session not found");
    let (status, body) = app
        .delete_with_bearer("/api/auth/sessions/not-a-uuid", &s(&phone["jwt"]))
        .await;
    assert_error(status, &body, 404, "NotFoundError", "Session not found");
    let (status, _) = app
        .delete_with_bearer(&format!("/api/auth/sessions/{laptop_id}"), "garbage")
        .await;
    assert_eq!(status, 401);
}

#[actix_web::test]
async fn logout_ends_the_current_session_only() {
    let app = spawn_app().await;
    let (id, phone, laptop) = two_devices(&app, "cal").await;
    let (status, body) = app
        .post_with_bearer("/api/auth/logout", &s(&phone["jwt"]), json!({}))
        .await;
    assert_eq!((status, &body), (200, &json!({"ok": true})));
    assert_eq!(app.refresh(&s(&phone["refreshToken"])).await.0, 401);
    assert_eq!(
        app.get_with_bearer("/api/users/me", &s(&phone["jwt"]))
            .await
            .0,
        401
    );
    assert_eq!(app.refresh(&s(&laptop["refreshToken"])).await.0, 200);
    assert_eq!(
        app.payloads(id, "SessionRevoked").await[0]["reason"],
        "logout"
    );
    let (status, body) = app.post("/api/auth/logout", json!({})).await;
    assert_forbidden(status, &body);
}

#[actix_web::test]
async fn logout_of_a_device_ends_that_devices_sessions() {
    let app = spawn_app().await;
    let (_, phone, laptop) = two_devices(&app, "dot").await;
    let laptop2 = app.login_with("dot", json!({"deviceId": "laptop"})).await;
    let (status, _) = app
        .post_with_bearer(
            "/api/auth/logout",
            &s(&phone["jwt"]),
            json!({"deviceId": "laptop"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(app.refresh(&s(&laptop["refreshToken"])).await.0, 401);
    assert_eq!(app.refresh(&s(&laptop2["refreshToken"])).await.0, 401);
    assert_eq!(app.refresh(&s(&phone["refreshToken"])).await.0, 200);
    let (status, body) = app
        .post_with_bearer(
            "/api/auth/logout",
            &s(&phone["jwt"]),
            json!({"scope": "some"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["name"].as_str()),
        (400, Some("ValidationError"))
    );
    // Found by schemathesis: an empty deviceId next to `scope` was ignored, not refused.
    let (status, body) = app
        .post_with_bearer(
            "/api/auth/logout",
            &s(&phone["jwt"]),
            json!({"scope": "all", "deviceId": ""}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["message"].as_str()),
        (400, Some("deviceId must be a non-empty string"))
    );
}

#[actix_web::test]
async fn logging_out_everywhere_from_one_device_ends_every_other_at_once() {
    let app = spawn_app().await;
    let (id, phone, laptop) = two_devices(&app, "fay").await;
    let tablet = app.login_with("fay", json!({"deviceId": "tablet"})).await;
    let (status, body) = app
        .post_with_bearer(
            "/api/auth/logout",
            &s(&phone["jwt"]),
            json!({"scope": "all"}),
        )
        .await;
    assert_eq!((status, &body), (200, &json!({"ok": true})));
    for device in [&phone, &laptop, &tablet] {
        assert_eq!(app.refresh(&s(&device["refreshToken"])).await.0, 401);
        assert_eq!(
            app.get_with_bearer("/api/users/me", &s(&device["jwt"]))
                .await
                .0,
            401
        );
    }
    let cleared = app.payloads(id, "SessionsCleared").await;
    assert_eq!(cleared[0]["reason"], "logout");
    assert_eq!(
        cleared[0]["session_ids"].as_array().unwrap().len(),
        4,
        "register + three devices"
    );
}

#[actix_web::test]
async fn changing_the_password_clears_every_session_and_starts_a_fresh_one() {
    let app = spawn_app().await;
    let (id, phone, laptop) = two_devices(&app, "gus").await;
    let jwt = s(&phone["jwt"]);
    let change = |current: &str, password: &str, confirmation: &str| json!({"currentPassword": current, "password": password, "passwordConfirmation": confirmation});
    let (status, body) = app
        .post_with_bearer(
            "/api/auth/change-password",
            &jwt,
            change("nope-nope", "newpass123", "newpass123"),
        )
        .await;
    assert_error(
        status,
        &body,
        400,
        "ValidationError",
        "The provided current password is invalid",
    );
    let (status, body) = app
        .post_with_bearer(
            "/api/auth/change-password",
            &jwt,
            change("password123", "newpass123", "other"),
        )
        .await;
    assert_error(
        status,
        &body,
        400,
        "ValidationError",
        "Passwords do not match",
    );
    let (status, body) = app
        .post_with_bearer(
            "/api/auth/change-password",
            &jwt,
            change("password123", "password123", "password123"),
        )
        .await;
    assert_error(
        status,
        &body,
        400,
        "ValidationError",
        "Your new password must be different than your current password",
    );
    let (status, body) = app
        .post_with_bearer("/api/auth/change-password", &jwt, json!({}))
        .await;
    assert_error(status, &body, 400, "ValidationError", "3 errors occurred");

    let (status, fresh) = app
        .post_with_bearer(
            "/api/auth/change-password",
            &jwt,
            change("password123", "newpass123", "newpass123"),
        )
        .await;
    assert_eq!(status, 200, "{fresh}");
    assert!(
        fresh["jwt"].is_string() && fresh["refreshToken"].is_string() && fresh["user"]["id"] == id
    );
    for old in [&phone, &laptop] {
        assert_eq!(app.refresh(&s(&old["refreshToken"])).await.0, 401);
        assert_eq!(
            app.get_with_bearer("/api/users/me", &s(&old["jwt"]))
                .await
                .0,
            401
        );
    }
    assert_eq!(app.refresh(&s(&fresh["refreshToken"])).await.0, 200);
    assert_eq!(
        app.get_with_bearer("/api/users/me", &s(&fresh["jwt"]))
            .await
            .0,
        200
    );
    let (status, _) = app
        .post(
            "/api/auth/local",
            json!({"identifier": "gus", "password": "password123"}),
        )
        .await;
    assert_eq!(status, 400, "the old password is gone");
    let (status, _) = app
        .post(
            "/api/auth/local",
            json!({"identifier": "gus", "password": "newpass123"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        app.payloads(id, "SessionsCleared").await[0]["reason"],
        "password_changed"
    );
    let issued = app.payloads(id, "TokenIssued").await;
    assert!(
        issued
            .iter()
            .any(|e| e["reason"] == "password_change" && e["device_id"] == "phone")
    );
}

#[actix_web::test]
async fn strapis_refresh_route_rotates_and_detects_reuse_like_the_plugins() {
    let app = spawn_app_with(&[
        ("REFRESH_TOKEN_ROTATION", "true"),
        ("REFRESH_TOKEN_REUSE_GRACE", "0s"),
    ])
    .await;
    let id = app.register("hal").await["user"]["id"].as_i64().unwrap();
    let gen0 = s(&app.login("hal").await["refreshToken"]);
    let refresh = |token: String| {
        let app = &app;
        async move {
            app.post("/api/auth/refresh", json!({ "refreshToken": token }))
                .await
        }
    };
    let (status, body) = refresh(gen0.clone()).await;
    assert_eq!(status, 200, "{body}");
    let gen1 = s(&body["refreshToken"]);
    let (_, body) = refresh(gen1).await;
    let gen2 = s(&body["refreshToken"]);
    let (status, body) = refresh(gen0).await;
    assert_invalid_refresh_token(status, &body);
    let (status, _) = refresh(gen2).await;
    assert_eq!(status, 401, "the newest token dies with its family");
    let reused = app.payloads(id, "RefreshTokenReused").await;
    assert_eq!(
        (
            reused[0]["presented_generation"].as_u64(),
            reused[0]["current_generation"].as_u64()
        ),
        (Some(0), Some(2))
    );
    assert_eq!(
        app.payloads(id, "SessionRevoked").await[0]["reason"],
        "reuse_detected"
    );
    let (status, body) = app.post("/api/auth/refresh", json!({})).await;
    assert_error(
        status,
        &body,
        400,
        "BadRequestError",
        "Missing refresh token",
    );
}

#[actix_web::test]
async fn the_grace_window_holds_on_the_servers_clock() {
    let app = spawn_app_with(&[
        ("REFRESH_TOKEN_ROTATION", "true"),
        ("REFRESH_TOKEN_REUSE_GRACE", "10s"),
    ])
    .await;
    let id = app.register("ida").await["user"]["id"].as_i64().unwrap();
    let gen0 = s(&app.login("ida").await["refreshToken"]);
    let (_, first) = app.refresh(&gen0).await;
    app.advance(TimeDelta::milliseconds(9_500));
    let (status, again) = app.refresh(&gen0).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        again["refreshToken"], first["refreshToken"],
        "gen 1 byte for byte"
    );
    app.advance(TimeDelta::seconds(1));
    let (status, _) = app.refresh(&gen0).await;
    assert_eq!(status, 401);
    assert_eq!(app.refresh(&s(&first["refreshToken"])).await.0, 401);
    assert_eq!(
        app.payloads(id, "SessionRevoked").await[0]["reason"],
        "reuse_detected"
    );
}

#[actix_web::test]
async fn an_idle_session_expires_leaves_the_listing_and_is_recorded_on_its_next_refresh() {
    let app = spawn_app_with(&[("SESSION_IDLE_TIMEOUT", "1h"), ("JWT_EXPIRES_IN", "4h")]).await;
    let id = app.register("jay").await["user"]["id"].as_i64().unwrap();
    let login = app.login("jay").await;
    app.advance(TimeDelta::minutes(50));
    assert_eq!(
        app.refresh(&s(&login["refreshToken"])).await.0,
        200,
        "use slides the idle expiry"
    );
    app.advance(TimeDelta::minutes(50));
    assert_eq!(app.refresh(&s(&login["refreshToken"])).await.0, 200);
    app.advance(TimeDelta::minutes(61));
    let (_, body) = app
        .get_with_bearer("/api/auth/sessions", &s(&login["jwt"]))
        .await;
    assert_eq!(
        body["error"]["status"], 401,
        "its access token's session has expired: {body}"
    );
    let (status, _) = app.refresh(&s(&login["refreshToken"])).await;
    assert_eq!(status, 401);
    let revoked = app.payloads(id, "SessionRevoked").await;
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0]["reason"], "expired");
    // A fresh login lists only itself.
    let fresh = app.login("jay").await;
    let (_, body) = app
        .get_with_bearer("/api/auth/sessions", &s(&fresh["jwt"]))
        .await;
    assert_eq!(body["data"].as_array().unwrap().len(), 1, "{body}");
}

#[actix_web::test]
async fn rotation_never_extends_the_absolute_lifetime() {
    let app = spawn_app_with(&[
        ("REFRESH_TOKEN_ROTATION", "true"),
        ("SESSION_IDLE_TIMEOUT", "1h"),
        ("SESSION_ABSOLUTE_LIFETIME", "3h"),
        ("JWT_EXPIRES_IN", "10m"),
    ])
    .await;
    app.register("kim").await;
    let mut token = s(&app.login("kim").await["refreshToken"]);
    for _ in 0..3 {
        app.advance(TimeDelta::minutes(55));
        let (status, body) = app.refresh(&token).await;
        assert_eq!(status, 200, "{body}");
        token = s(&body["refreshToken"]);
    }
    app.advance(TimeDelta::minutes(20));
    assert_eq!(
        app.refresh(&token).await.0,
        401,
        "3 h after login the session is over"
    );
}

#[actix_web::test]
async fn logout_takes_the_refresh_token_when_the_access_token_has_lapsed() {
    let app = spawn_app_with(&[("JWT_EXPIRES_IN", "10m")]).await;
    app.register("lia").await;
    let login = app.login("lia").await;
    app.advance(TimeDelta::minutes(11));
    let (status, _) = app
        .get_with_bearer("/api/users/me", &s(&login["jwt"]))
        .await;
    assert_eq!(status, 401, "the access token has lapsed");
    let (status, body) = app
        .post_with_bearer(
            "/api/auth/logout",
            &s(&login["jwt"]),
            json!({"refreshToken": login["refreshToken"]}),
        )
        .await;
    assert_eq!((status, &body), (200, &json!({"ok": true})));
    assert_eq!(app.refresh(&s(&login["refreshToken"])).await.0, 401);
    let (status, _) = app
        .post_with_bearer("/api/auth/logout", &s(&login["jwt"]), json!({}))
        .await;
    assert_eq!(status, 401, "a lapsed access token alone is not enough");
}

#[actix_web::test]
async fn an_absolute_expiry_is_recorded_on_the_first_refresh_that_finds_it() {
    let app = spawn_app_with(&[
        ("SESSION_ABSOLUTE_LIFETIME", "1h"),
        ("JWT_EXPIRES_IN", "10m"),
    ])
    .await;
    let id = app.register("ola").await["user"]["id"].as_i64().unwrap();
    let token = s(&app.login("ola").await["refreshToken"]);
    app.advance(TimeDelta::minutes(61));
    assert_eq!(app.refresh(&token).await.0, 401);
    assert_eq!(app.refresh(&token).await.0, 401);
    let revoked = app.payloads(id, "SessionRevoked").await;
    assert_eq!(revoked.len(), 1, "recorded once: {revoked:?}");
    assert_eq!(revoked[0]["reason"], "expired");
}

#[actix_web::test]
async fn logout_ends_the_session_of_the_cookie_not_of_the_access_token() {
    let app = spawn_app_with(&[("COOKIE_RESPONSE", "true")]).await;
    app.register("pam").await;
    let a = app.login("pam").await;
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let response = browser
        .post(app.url("/api/auth/local"))
        .json(&json!({"identifier": "pam", "password": "password123", "requestRefresh": true}))
        .send()
        .await
        .unwrap();
    let b_cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let b_token = b_cookie.trim_start_matches("refreshToken=").to_owned();
    let response = browser
        .post(app.url("/api/auth/logout"))
        .bearer_auth(s(&a["jwt"]))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        app.refresh(&b_token).await.0,
        401,
        "the cookie's session ended"
    );
    assert_eq!(
        app.get_with_bearer("/api/users/me", &s(&a["jwt"])).await.0,
        200,
        "the bearer's did not"
    );
    // Logging out a session that has already ended is the same success.
    let (status, body) = app
        .post("/api/auth/logout", json!({"refreshToken": b_token}))
        .await;
    assert_eq!((status, &body), (200, &json!({"ok": true})));
    // But a token of an ended session cannot end the others.
    let (status, _) = app
        .post(
            "/api/auth/logout",
            json!({"refreshToken": b_token, "scope": "all"}),
        )
        .await;
    assert_eq!(status, 401);
}

#[actix_web::test]
async fn two_password_changes_with_the_same_current_password_have_one_winner() {
    let app = spawn_app().await;
    let id = app.register("quy").await["user"]["id"].as_i64().unwrap();
    let jwt = s(&app.login("quy").await["jwt"]);
    let change = |password: &'static str| {
        let (app, jwt) = (&app, jwt.clone());
        async move {
            app.post_with_bearer(
                "/api/auth/change-password",
                &jwt,
                json!({"currentPassword": "password123", "password": password, "passwordConfirmation": password}),
            )
            .await
        }
    };
    let (first, second) = futures::join!(change("first-pass1"), change("second-pass2"));
    let mut statuses = [first.0, second.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 400], "{first:?} {second:?}");
    let winner = if first.0 == 200 { first.1 } else { second.1 };
    let live = app
        .state()
        .projection
        .read()
        .unwrap()
        .sessions_of(id, chrono::Utc::now());
    assert_eq!(live.len(), 1, "only the winner's fresh session is alive");
    assert_eq!(
        app.get_with_bearer("/api/users/me", &s(&winner["jwt"]))
            .await
            .0,
        200
    );
}

#[actix_web::test]
async fn guessing_the_current_password_is_limited_and_recorded() {
    let app = spawn_app_with(&[("LOGIN_RATE_LIMIT", "3/60s")]).await;
    let id = app.register("rex").await["user"]["id"].as_i64().unwrap();
    let jwt = s(&app.login("rex").await["jwt"]);
    let guess = json!({"currentPassword": "guess-guess", "password": "newpass123", "passwordConfirmation": "newpass123"});
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(
            app.post_with_bearer("/api/auth/change-password", &jwt, guess.clone())
                .await
                .0,
        );
    }
    // Keyed by address and email: the registration spent one of the three.
    assert_eq!(statuses, [400, 400, 429, 429]);
    assert_eq!(app.payloads(id, "LoginFailed").await.len(), 2);
}
