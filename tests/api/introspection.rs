//! `POST /api/auth/introspect` (RFC 7662) and `POST /api/auth/revoke` (RFC 7009): a service
//! learns that a token is dead the moment its session ends, without a read of the store; and
//! whoever holds a token can end its session, with the same record as a logout.

use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use support::{JWT_SECRET, assert_error, assert_invalid_refresh_token};

use crate::helpers::{TestApp, spawn_app_with};

const SERVICE: &str = "orders-api";
const SECRET: &str = "orders-api-introspection-secret-0123456789";
const ADMIN: &str = "admin-token-0123456789abcdef0123456789abcdef";
const INTROSPECT: &str = "/api/auth/introspect";
const REVOKE: &str = "/api/auth/revoke";

fn s(value: &Value) -> String {
    value.as_str().expect("a string").to_owned()
}

/// The app with one introspection client (and the admin API, for blocks).
async fn app_with(extra: &[(&str, &str)]) -> TestApp {
    let clients = format!("{SERVICE}:{SECRET}");
    let mut env = vec![
        ("INTROSPECTION_CLIENTS", clients.as_str()),
        ("ADMIN_API_TOKEN", ADMIN),
    ];
    env.extend_from_slice(extra);
    spawn_app_with(&env).await
}

async fn send(request: reqwest::RequestBuilder) -> (u16, HeaderMap, Value) {
    let response = request.send().await.expect("request");
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, body)
}

/// The service's question about `token` (JSON body, HTTP Basic): the answer, which must be a
/// 200 no cache may keep.
async fn introspect(app: &TestApp, token: &str) -> Value {
    introspect_with(app, json!({ "token": token })).await
}

async fn introspect_with(app: &TestApp, body: Value) -> Value {
    let request = app
        .client
        .post(app.url(INTROSPECT))
        .basic_auth(SERVICE, Some(SECRET))
        .json(&body);
    let (status, headers, answer) = send(request).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(headers["cache-control"], "no-store");
    answer
}

#[track_caller]
fn assert_inactive(answer: &Value, what: &str) {
    assert_eq!(*answer, json!({"active": false}), "{what}");
}

/// Registers and logs `name` in: (user id, access token, refresh token).
async fn session(app: &TestApp, name: &str) -> (i64, String, String) {
    let id = app.register(name).await["user"]["id"].as_i64().unwrap();
    let login = app.login(name).await;
    (id, s(&login["jwt"]), s(&login["refreshToken"]))
}

async fn revoke(app: &TestApp, body: Value) -> (u16, Value) {
    app.post(REVOKE, body).await
}

#[actix_web::test]
async fn live_tokens_are_active_with_their_claims_and_asking_touches_no_store() {
    let app = app_with(&[]).await;
    let (id, access, refresh) = session(&app, "ada").await;
    let access_claims = support::claims(&access);
    let refresh_claims = support::claims(&refresh);

    let touches = app.store().stats().touches();
    let answer = introspect(&app, &access).await;
    assert_eq!(
        answer,
        json!({
            "active": true,
            "sub": id.to_string(),
            "sid": access_claims["sid"],
            "exp": access_claims["exp"],
            "iat": access_claims["iat"],
            "token_type": "access_token",
        }),
        "no `iss` while tokens carry none"
    );
    let answer = introspect(&app, &refresh).await;
    assert_eq!(
        answer,
        json!({
            "active": true,
            "sub": id.to_string(),
            "sid": refresh_claims["sid"],
            "exp": refresh_claims["exp"],
            "iat": refresh_claims["iat"],
            "token_type": "refresh_token",
        })
    );
    assert_eq!(
        app.store().stats().touches(),
        touches,
        "introspection read or wrote the event store"
    );

    // The RFC's form body, and a hint that is wrong or unknown: the same answers.
    let request = app
        .client
        .post(app.url(INTROSPECT))
        .basic_auth(SERVICE, Some(SECRET))
        .form(&[
            ("token", access.as_str()),
            ("token_type_hint", "refresh_token"),
        ]);
    let (status, _, answer) = send(request).await;
    assert_eq!(
        (status, &answer["token_type"]),
        (200, &json!("access_token"))
    );
    let hinted = introspect_with(
        &app,
        json!({"token": refresh, "token_type_hint": "access_token"}),
    )
    .await;
    assert_eq!(hinted["token_type"], "refresh_token");
    let unknown = introspect_with(
        &app,
        json!({"token": access, "token_type_hint": "id_token"}),
    );
    assert_eq!(unknown.await["active"], true);
}

#[actix_web::test]
async fn the_issuer_is_the_access_tokens_and_the_servers_for_a_refresh_token() {
    let app = app_with(&[("ACCESS_TOKEN_ISSUER", "https://auth.example.com")]).await;
    let (_, access, refresh) = session(&app, "abe").await;
    assert_eq!(support::claims(&access)["iss"], "https://auth.example.com");
    assert_eq!(
        introspect(&app, &access).await["iss"],
        "https://auth.example.com"
    );
    assert_eq!(
        introspect(&app, &refresh).await["iss"],
        "https://auth.example.com"
    );
}

#[actix_web::test]
async fn anything_but_a_live_token_is_exactly_inactive() {
    let app = app_with(&[]).await;
    let (_, access, refresh) = session(&app, "bob").await;
    let mut forged = access.clone();
    forged.replace_range(forged.len() - 4.., "AAAA");
    let long = "x".repeat(5000);
    for token in [
        "garbage",
        "a.b.c",
        forged.as_str(),
        long.as_str(),
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.e30.",
    ] {
        assert_inactive(&introspect(&app, token).await, token);
    }
    // Both kinds, once expired on the server's clock (access 2 h, refresh 30 d).
    app.advance(chrono::TimeDelta::days(31));
    assert_inactive(&introspect(&app, &access).await, "expired access token");
    assert_inactive(&introspect(&app, &refresh).await, "expired refresh token");
}

#[actix_web::test]
async fn a_missing_token_is_a_400_with_the_oauth_code() {
    let app = app_with(&[]).await;
    for body in [json!({}), json!({"token": ""}), json!({"token": 42})] {
        let request = app
            .client
            .post(app.url(INTROSPECT))
            .basic_auth(SERVICE, Some(SECRET))
            .json(&body);
        let (status, _, answer) = send(request).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["name"], "ValidationError", "{answer}");
        assert_eq!(answer["error"]["details"]["error"], "invalid_request");
        assert_eq!(
            answer["error"]["details"]["errors"][0]["path"],
            json!(["token"])
        );
        assert!(
            answer["error"]["details"]["errors"][0]
                .get("value")
                .is_none(),
            "a token is never echoed: {answer}"
        );
    }
}

#[actix_web::test]
async fn services_must_present_a_credential_of_their_own() {
    let app = app_with(&[]).await;
    let (_, access, _) = session(&app, "cat").await;
    let body = json!({ "token": access });
    let post = || app.client.post(app.url(INTROSPECT));
    let refused = [
        ("no credential", post().json(&body)),
        (
            "wrong secret",
            post().basic_auth(SERVICE, Some("x".repeat(40))).json(&body),
        ),
        (
            "unknown client",
            post().basic_auth("other", Some(SECRET)).json(&body),
        ),
        ("the admin token", post().bearer_auth(ADMIN).json(&body)),
        (
            "the user's own token",
            post().bearer_auth(&access).json(&body),
        ),
        (
            "a wrong secret in the body",
            post().json(&json!({"token": access, "client_id": SERVICE, "client_secret": "nope"})),
        ),
        (
            "an id without a secret",
            post().json(&json!({"token": access, "client_id": SERVICE})),
        ),
    ];
    for (what, request) in refused {
        let (status, headers, answer) = send(request).await;
        assert_error(
            status,
            &answer,
            401,
            "UnauthorizedError",
            "Missing or invalid client credentials",
        );
        assert_eq!(
            headers["www-authenticate"], "Basic realm=\"tokenledger\"",
            "{what}"
        );
    }

    // client_secret_post, as JSON and as a form.
    let posted = json!({"token": access, "client_id": SERVICE, "client_secret": SECRET});
    let (status, _, answer) = send(post().json(&posted)).await;
    assert_eq!((status, &answer["active"]), (200, &json!(true)), "{answer}");
    let form = [
        ("token", access.as_str()),
        ("client_id", SERVICE),
        ("client_secret", SECRET),
    ];
    let (status, _, answer) = send(post().form(&form)).await;
    assert_eq!((status, &answer["active"]), (200, &json!(true)), "{answer}");
    // A front end's bearer header is no client authentication: the body's credential counts.
    let (status, _, answer) = send(post().bearer_auth(&access).json(&posted)).await;
    assert_eq!((status, &answer["active"]), (200, &json!(true)), "{answer}");
    // A Basic header is the credential, even beside a right one in the body.
    let request = post().basic_auth(SERVICE, Some("wrong")).json(&posted);
    assert_eq!(send(request).await.0, 401);
}

#[actix_web::test]
async fn without_introspection_clients_everyone_is_refused() {
    let app = spawn_app_with(&[]).await;
    let (_, access, _) = session(&app, "dan").await;
    let request = app
        .client
        .post(app.url(INTROSPECT))
        .basic_auth(SERVICE, Some(SECRET))
        .json(&json!({ "token": access }));
    let (status, headers, answer) = send(request).await;
    assert_eq!(status, 401, "{answer}");
    assert!(headers.contains_key("www-authenticate"));
}

#[actix_web::test]
async fn a_logout_ends_both_tokens_at_once() {
    let app = app_with(&[]).await;
    let (_, access, refresh) = session(&app, "eve").await;
    let (status, _) = app
        .post_with_bearer("/api/auth/logout", &access, json!({}))
        .await;
    assert_eq!(status, 200);
    assert_inactive(&introspect(&app, &access).await, "access after logout");
    assert_inactive(&introspect(&app, &refresh).await, "refresh after logout");
}

#[actix_web::test]
async fn a_rotated_token_is_inactive_and_reuse_ends_the_family() {
    let app = app_with(&[
        ("REFRESH_TOKEN_ROTATION", "true"),
        ("REFRESH_TOKEN_REUSE_GRACE", "0s"),
    ])
    .await;
    let (_, access, gen0) = session(&app, "fay").await;
    let (_, rotated) = app.refresh(&gen0).await;
    let gen1 = s(&rotated["refreshToken"]);
    assert_inactive(&introspect(&app, &gen0).await, "superseded");
    assert_eq!(introspect(&app, &gen1).await["active"], true);
    assert_eq!(introspect(&app, &s(&rotated["jwt"])).await["active"], true);

    let (status, body) = app.refresh(&gen0).await;
    assert_invalid_refresh_token(status, &body);
    for (what, token) in [
        ("the newest refresh token", &gen1),
        ("the login's access token", &access),
        ("the rotation's access token", &s(&rotated["jwt"])),
    ] {
        assert_inactive(&introspect(&app, token).await, what);
    }
}

#[actix_web::test]
async fn a_password_change_ends_the_old_tokens_and_the_new_ones_are_live() {
    let app = app_with(&[]).await;
    let (_, access, refresh) = session(&app, "gus").await;
    let (status, changed) = app
        .post_with_bearer(
            "/api/auth/change-password",
            &access,
            json!({"currentPassword": "password123", "password": "newpass123",
                "passwordConfirmation": "newpass123"}),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_inactive(&introspect(&app, &access).await, "old access");
    assert_inactive(&introspect(&app, &refresh).await, "old refresh");
    assert_eq!(introspect(&app, &s(&changed["jwt"])).await["active"], true);
    let new_refresh = s(&changed["refreshToken"]);
    assert_eq!(introspect(&app, &new_refresh).await["active"], true);
}

#[actix_web::test]
async fn a_block_ends_every_session_of_the_user() {
    let app = app_with(&[]).await;
    let (id, access, refresh) = session(&app, "hal").await;
    let second = app.login("hal").await;
    let (status, body) = app
        .post_with_bearer(&format!("/api/admin/users/{id}/block"), ADMIN, json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    for token in [
        access,
        refresh,
        s(&second["jwt"]),
        s(&second["refreshToken"]),
    ] {
        assert_inactive(&introspect(&app, &token).await, "after the block");
    }
}

/// As Strapi signs its access tokens: HS256, `typ: JWT`, `{id, iat, exp}`.
fn strapi_token(user_id: i64, now: i64) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"id": user_id, "iat": now, "exp": now + 600}),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()).unwrap(),
    )
    .unwrap()
}

#[actix_web::test]
async fn a_strapi_made_token_is_active_without_a_session_until_its_user_is_blocked() {
    let app = app_with(&[("STRAPI_ACCESS_TOKENS", "accept")]).await;
    let (id, _, _) = session(&app, "ivy").await;
    let now = app.state().clock.now().timestamp();
    let token = strapi_token(id, now);
    let answer = introspect(&app, &token).await;
    assert_eq!(
        answer,
        json!({"active": true, "sub": id.to_string(), "exp": now + 600, "iat": now,
            "token_type": "access_token"}),
        "no session, so no sid"
    );
    app.post_with_bearer(&format!("/api/admin/users/{id}/block"), ADMIN, json!({}))
        .await;
    assert_inactive(&introspect(&app, &token).await, "blocked");
    // Revoking one changes nothing: it names no session.
    let (status, _) = revoke(&app, json!({ "token": strapi_token(id, now) })).await;
    assert_eq!(status, 200);
}

#[actix_web::test]
async fn a_revoked_refresh_token_ends_its_session_as_a_logout_does() {
    let app = app_with(&[]).await;
    let (id, access, refresh) = session(&app, "jon").await;
    let (status, body) = revoke(&app, json!({ "token": refresh })).await;
    assert_eq!((status, body), (200, json!({})));
    let (status, body) = app.refresh(&refresh).await;
    assert_invalid_refresh_token(status, &body);
    assert_inactive(&introspect(&app, &refresh).await, "revoked");
    assert_inactive(&introspect(&app, &access).await, "its access token");
    assert_eq!(app.get_with_bearer("/api/users/me", &access).await.0, 401);
    let revoked = app.payloads(id, "SessionRevoked").await;
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0]["reason"], "logout");
    assert_eq!(revoked[0]["session_id"], support::claims(&refresh)["sid"]);
}

#[actix_web::test]
async fn a_revoked_access_token_ends_its_session_whatever_the_hint() {
    let app = app_with(&[]).await;
    let (id, access, refresh) = session(&app, "kim").await;
    let other = app.login("kim").await;
    // RFC 7009 §2.1: a wrong hint only costs a second look.
    let request = app.client.post(app.url(REVOKE)).form(&[
        ("token", access.as_str()),
        ("token_type_hint", "refresh_token"),
    ]);
    let (status, _, body) = send(request).await;
    assert_eq!((status, body), (200, json!({})));
    assert_eq!(app.refresh(&refresh).await.0, 401, "its session ended");
    assert_eq!(
        app.refresh(&s(&other["refreshToken"])).await.0,
        200,
        "the user's other session lives on"
    );
    let revoked = app.payloads(id, "SessionRevoked").await;
    assert_eq!(revoked[0]["reason"], "logout");
    assert_eq!(revoked[0]["session_id"], support::claims(&access)["sid"]);

    // An unknown hint is ignored.
    let (status, _) = revoke(
        &app,
        json!({"token": s(&other["jwt"]), "token_type_hint": "id_token"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(app.refresh(&s(&other["refreshToken"])).await.0, 401);
}

#[actix_web::test]
async fn revoking_what_is_not_a_live_token_answers_200_and_writes_nothing() {
    let app = app_with(&[]).await;
    let (id, access, refresh) = session(&app, "lea").await;
    revoke(&app, json!({ "token": refresh })).await;
    let events = app.event_types(id).await.len();
    let mut forged = refresh.clone();
    forged.replace_range(forged.len() - 4.., "AAAA");
    let long = "x".repeat(3000);
    for token in [
        "garbage",
        forged.as_str(),
        refresh.as_str(),
        access.as_str(),
        long.as_str(),
    ] {
        let (status, body) = revoke(&app, json!({ "token": token })).await;
        assert_eq!((status, body), (200, json!({})), "{token}");
    }
    let (status, _) = app
        .post_raw(
            REVOKE,
            Some("application/x-www-form-urlencoded"),
            "token=nothing",
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(app.event_types(id).await.len(), events, "nothing written");
}

#[actix_web::test]
async fn revoking_without_a_token_is_a_400_invalid_request() {
    let app = app_with(&[]).await;
    for body in [
        json!({}),
        json!({"token_type_hint": "access_token"}),
        json!({"token": null}),
    ] {
        let (status, answer) = revoke(&app, body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["name"], "ValidationError");
        assert_eq!(answer["error"]["details"]["error"], "invalid_request");
    }
    let (status, answer) = app
        .post_raw(REVOKE, Some("application/x-www-form-urlencoded"), "")
        .await;
    assert_eq!(status, 400, "{answer}");
}

#[actix_web::test]
async fn revoking_a_superseded_refresh_token_is_reuse_and_ends_the_family() {
    let app = app_with(&[
        ("REFRESH_TOKEN_ROTATION", "true"),
        ("REFRESH_TOKEN_REUSE_GRACE", "0s"),
    ])
    .await;
    let (id, _, gen0) = session(&app, "max").await;
    let (_, rotated) = app.refresh(&gen0).await;
    let (status, body) = revoke(&app, json!({ "token": gen0 })).await;
    assert_eq!((status, body), (200, json!({})), "200 whatever the token");
    assert_eq!(app.refresh(&s(&rotated["refreshToken"])).await.0, 401);
    assert_eq!(app.payloads(id, "RefreshTokenReused").await.len(), 1);
    assert_eq!(
        app.payloads(id, "SessionRevoked").await[0]["reason"],
        "reuse_detected"
    );
}
