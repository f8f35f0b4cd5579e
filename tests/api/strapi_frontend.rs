//! What a Strapi front end meets, answered as Strapi 5.54 answers it (issue 18, item 5): a
//! request without a token (403) against a bad one (401), CORS with Strapi's defaults,
//! `fields` and `populate` on `/api/users/me`, `value` in validation errors, and a session
//! without a refresh token ending with its access token.

use chrono::TimeDelta;
use serde_json::{Value, json};
use support::{PASSWORD, assert_forbidden, assert_unauthorized};

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

const ADMIN: &str = "admin-token-0123456789abcdef0123456789abcdef";

/// Sends `method path` with this `Authorization` (none when `None`) and a valid body.
async fn ask(app: &TestApp, method: &str, path: &str, authorization: Option<&str>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = app.client.request(method.clone(), app.url(path));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    if method == reqwest::Method::POST {
        let body = json!({
            "currentPassword": PASSWORD, "password": "another password",
            "passwordConfirmation": "another password",
        });
        request = request.json(&body);
    }
    support::Api::send(request).await.unwrap()
}

/// Every route a user's access token opens, with a body each accepts.
const BEARER_ROUTES: [(&str, &str); 5] = [
    ("GET", "/api/users/me"),
    ("GET", "/api/auth/sessions"),
    (
        "DELETE",
        "/api/auth/sessions/0196f3a0-0000-7000-8000-000000000000",
    ),
    ("POST", "/api/auth/change-password"),
    ("POST", "/api/auth/logout"),
];

/// Strapi's users-permissions reads `Authorization` split at whitespace, and anything but
/// exactly `Bearer <token>` is no token: the public role, refused with `ctx.forbidden()`.
#[actix_web::test]
async fn a_bearer_route_without_a_token_is_strapis_403_forbidden() {
    let app = spawn_app().await;
    app.register("nora").await;
    for (method, path) in BEARER_ROUTES {
        for authorization in [
            None,
            Some("Basic bm9yYTpwYXNz"),
            Some("Bearer"),
            Some("Bearer a b"),
        ] {
            let (status, body) = ask(&app, method, path, authorization).await;
            assert_forbidden(status, &body);
        }
    }
    let head = app
        .client
        .head(app.url("/api/users/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 403);
}

/// A token that is there but not a usable access token is Strapi's 401, worded as its
/// `authenticate` words it when no strategy accepted the request.
#[actix_web::test]
async fn a_bearer_route_with_a_bad_token_is_strapis_401() {
    let app = spawn_app().await;
    let registered = app.register("olive").await;
    let jwt = registered["jwt"].as_str().unwrap().to_owned();
    let refresh = app.login("olive").await["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut forged = jwt.clone();
    forged.pop();
    forged.push(if jwt.ends_with('A') { 'B' } else { 'A' });
    for token in ["nonsense", forged.as_str(), refresh.as_str()] {
        for (method, path) in BEARER_ROUTES {
            let (status, body) = ask(&app, method, path, Some(&format!("Bearer {token}"))).await;
            assert_unauthorized(status, &body);
        }
    }
    // Lapsed: the same answer as a forged token.
    app.advance(TimeDelta::hours(2) + TimeDelta::seconds(1));
    let (status, body) = app.get_with_bearer("/api/users/me", &jwt).await;
    assert_unauthorized(status, &body);
}

/// The admin API keeps its own rule (its token is not a user's, and Strapi has no such
/// routes): no token and a wrong token are both a 401.
#[actix_web::test]
async fn the_admin_api_without_a_token_is_still_a_401() {
    let app = spawn_app_with(&[("ADMIN_API_TOKEN", ADMIN)]).await;
    let (status, body) = app.get("/api/admin/users?q=a").await;
    assert_unauthorized(status, &body);
    let (status, body) = app.get_with_bearer("/api/admin/users?q=a", "wrong").await;
    assert_unauthorized(status, &body);
}

/// The ids of the sessions a user's list shows, with `jwt`.
async fn listed(app: &TestApp, jwt: &str) -> Vec<String> {
    let (status, body) = app.get_with_bearer("/api/auth/sessions", jwt).await;
    assert_eq!(status, 200, "{body}");
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The ids of the sessions the admin API shows alive now.
async fn alive_for_admin(app: &TestApp, user_id: i64) -> Vec<String> {
    let path = format!("/api/admin/users/{user_id}/sessions");
    let (status, body) = app.get_with_bearer(&path, ADMIN).await;
    assert_eq!(status, 200, "{body}");
    let mut ids: Vec<String> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn session_of(jwt: &Value) -> String {
    support::claims(jwt.as_str().unwrap())["sid"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A registration and a login without `requestRefresh` hand over no refresh token: nothing
/// can refresh their sessions, which end when their access tokens expire (`JWT_EXPIRES_IN`,
/// 2 hours) instead of being listed and held for 30 days. A session with a refresh token
/// is not touched.
#[actix_web::test]
async fn a_session_without_a_refresh_token_ends_with_its_access_token() {
    let app = spawn_app_with(&[("ADMIN_API_TOKEN", ADMIN)]).await;
    let registered = app.register("pia").await;
    let user_id = registered["user"]["id"].as_i64().unwrap();
    let (status, plain) = app
        .post(
            "/api/auth/local",
            json!({"identifier": "pia", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, 200, "{plain}");
    assert!(plain.get("refreshToken").is_none(), "{plain}");
    let kept = app.login("pia").await;
    let (registration, plain_login, refreshed) = (
        session_of(&registered["jwt"]),
        session_of(&plain["jwt"]),
        session_of(&kept["jwt"]),
    );

    app.advance(TimeDelta::hours(2) - TimeDelta::seconds(5));
    let jwt = kept["jwt"].as_str().unwrap();
    let mut shown = listed(&app, jwt).await;
    shown.sort();
    let mut all = vec![registration.clone(), plain_login.clone(), refreshed.clone()];
    all.sort();
    assert_eq!(
        shown, all,
        "before their access tokens expire, all three are listed"
    );
    assert_eq!(alive_for_admin(&app, user_id).await, all);
    let (_, body) = app.get_with_bearer("/api/auth/sessions", jwt).await;
    let registration_entry = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == registration.as_str())
        .unwrap()
        .clone();
    let login_at =
        chrono::DateTime::parse_from_rfc3339(registration_entry["loginAt"].as_str().unwrap())
            .unwrap();
    let expires_at =
        chrono::DateTime::parse_from_rfc3339(registration_entry["expiresAt"].as_str().unwrap())
            .unwrap();
    assert_eq!(
        expires_at - login_at,
        TimeDelta::hours(2),
        "{registration_entry}"
    );

    app.advance(TimeDelta::seconds(10));
    // The kept session's access token has lapsed too; its refresh token still works.
    let (status, fresh) = app.refresh(kept["refreshToken"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{fresh}");
    let fresh_jwt = fresh["jwt"].as_str().unwrap();
    assert_eq!(listed(&app, fresh_jwt).await, [refreshed.clone()]);
    assert_eq!(alive_for_admin(&app, user_id).await, [refreshed]);
    let (status, body) = app
        .get_with_bearer("/api/users/me", plain["jwt"].as_str().unwrap())
        .await;
    assert_unauthorized(status, &body);
}
