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
    assert_eq!(
        listed(&app, fresh_jwt).await,
        std::slice::from_ref(&refreshed)
    );
    assert_eq!(alive_for_admin(&app, user_id).await, [refreshed]);
    let (status, body) = app
        .get_with_bearer("/api/users/me", plain["jwt"].as_str().unwrap())
        .await;
    assert_unauthorized(status, &body);
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

/// A browser's preflight from `origin` for a POST with these headers.
async fn preflight(app: &TestApp, path: &str, origin: &str) -> reqwest::Response {
    app.client
        .request(reqwest::Method::OPTIONS, app.url(path))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type,x-custom")
        .send()
        .await
        .unwrap()
}

async fn login_from(app: &TestApp, origin: &str, name: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/auth/local"))
        .header("origin", origin)
        .json(&json!({"identifier": name, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
}

/// `strapi::cors` with its defaults (`origin: '*'`, `credentials: true`): the origin is
/// echoed with credentials, so `fetch(…, {credentials: 'include'})` works from any page; a
/// preflight is a 204 whatever it asks, anywhere.
#[actix_web::test]
async fn by_default_any_origin_is_echoed_with_credentials_as_strapi_does() {
    let app = spawn_app().await;
    app.register("quin").await;
    let origin = "https://anywhere.example";
    for path in ["/api/auth/local", "/nothing/here"] {
        let answer = preflight(&app, path, origin).await;
        assert_eq!(answer.status(), 204, "{path}");
        for (name, value) in [
            ("access-control-allow-origin", origin),
            ("access-control-allow-credentials", "true"),
            ("access-control-max-age", "31536000"),
            (
                "access-control-allow-methods",
                "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS",
            ),
            (
                "access-control-allow-headers",
                "Content-Type,Authorization,Origin,Accept,x-strapi-refresh-cookie",
            ),
            ("vary", "Origin"),
        ] {
            assert_eq!(
                header(&answer, name).as_deref(),
                Some(value),
                "{path} {name}"
            );
        }
        assert_eq!(answer.text().await.unwrap(), "");
    }
    let answer = login_from(&app, origin, "quin").await;
    assert_eq!(answer.status(), 200);
    assert_eq!(
        header(&answer, "access-control-allow-origin").as_deref(),
        Some(origin)
    );
    assert_eq!(
        header(&answer, "access-control-allow-credentials").as_deref(),
        Some("true")
    );
    // An error answer too, so the page can read it; and `Origin: null` is echoed as sent.
    let refused = app
        .client
        .get(app.url("/api/users/me"))
        .header("origin", "null")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(
        header(&refused, "access-control-allow-origin").as_deref(),
        Some("null")
    );
    assert_eq!(
        header(&refused, "access-control-allow-credentials").as_deref(),
        Some("true")
    );
    // Not a browser's cross-origin request: no CORS header (Strapi sends an empty one).
    let plain = app.client.get(app.url("/_health")).send().await.unwrap();
    assert_eq!(header(&plain, "access-control-allow-origin"), None);
    assert_eq!(header(&plain, "vary").as_deref(), Some("Origin"));
    // An `OPTIONS` that is no preflight is the router's answer, without CORS.
    let options = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/auth/local"))
        .header("origin", origin)
        .send()
        .await
        .unwrap();
    assert!(header(&options, "allow").is_some());
    assert_eq!(header(&options, "access-control-allow-origin"), None);
}

/// With listed origins, another one gets what Strapi gives it: the request answered as any
/// other, with no CORS header (the browser keeps the answer from the page), never a
/// plain-text 400.
#[actix_web::test]
async fn a_refused_origin_is_answered_without_cors_headers_as_strapi_does() {
    let front = "https://app.example.com";
    let app = spawn_app_with(&[("CORS_ORIGINS", "https://app.example.com")]).await;
    app.register("rhea").await;
    let evil = "https://evil.example";
    let answer = preflight(&app, "/api/auth/local", evil).await;
    assert_eq!(answer.status(), 204, "the router's OPTIONS answer");
    assert!(header(&answer, "allow").is_some());
    assert_eq!(header(&answer, "access-control-allow-origin"), None);
    let answer = login_from(&app, evil, "rhea").await;
    assert_eq!(answer.status(), 200);
    assert_eq!(header(&answer, "access-control-allow-origin"), None);
    assert_eq!(header(&answer, "access-control-allow-credentials"), None);
    assert_eq!(header(&answer, "vary").as_deref(), Some("Origin"));
    assert!(answer.json::<Value>().await.unwrap()["jwt"].is_string());
    let answer = login_from(&app, front, "rhea").await;
    assert_eq!(
        header(&answer, "access-control-allow-origin").as_deref(),
        Some(front)
    );
    assert_eq!(
        header(&answer, "access-control-allow-credentials").as_deref(),
        Some("true")
    );
}

/// Credentials for any origin do not hand the refresh cookie to any site: a request that
/// carries it is honoured only from a listed origin or the service's own.
#[actix_web::test]
async fn with_any_origin_the_refresh_cookie_still_works_only_from_the_services_own() {
    let app = spawn_app().await;
    app.register("saul").await;
    let login = app
        .client
        .post(app.url("/api/auth/local"))
        .header("x-strapi-refresh-cookie", "httpOnly")
        .json(&json!({"identifier": "saul", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let cookie = header(&login, "set-cookie").unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let refresh_from = |origin: String| {
        app.client
            .post(app.url("/api/auth/refresh"))
            .header("origin", origin)
            .header("cookie", cookie.clone())
            .json(&json!({}))
            .send()
    };
    let evil = "https://evil.example";
    let answer = refresh_from(evil.to_owned()).await.unwrap();
    assert_eq!(answer.status(), 403);
    assert_eq!(
        header(&answer, "access-control-allow-origin").as_deref(),
        Some(evil)
    );
    let body: Value = answer.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "Cross-site requests are not allowed"
    );
    let answer = refresh_from(app.address.clone()).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert!(answer.json::<Value>().await.unwrap()["jwt"].is_string());
}

async fn me(app: &TestApp, jwt: &str, query: &str) -> (u16, Value) {
    app.get_with_bearer(&format!("/api/users/me?{query}"), jwt)
        .await
}

/// `fields` and `populate` on `/api/users/me`, as Strapi 5.54 answers them (each answer
/// below was taken from a real Strapi 5.54 with the same query).
#[actix_web::test]
async fn users_me_applies_fields_and_populate_as_strapi() {
    let app = spawn_app().await;
    let registered = app.register("tess").await;
    let jwt = registered["jwt"].as_str().unwrap();
    let user = &registered["user"];

    let (id, document_id) = (user["id"].clone(), user["documentId"].clone());
    for (query, expected) in [
        (
            "fields=username,email",
            json!({"id": id, "documentId": document_id, "username": "tess", "email": "tess@example.com"}),
        ),
        (
            "fields[0]=username",
            json!({"id": id, "documentId": document_id, "username": "tess"}),
        ),
        (
            "fields[]=email&fields[]=blocked",
            json!({"id": id, "documentId": document_id, "email": "tess@example.com", "blocked": false}),
        ),
        ("fields=id", json!({"id": id, "documentId": document_id})),
        ("fields=*", user.clone()),
        ("sort=username", user.clone()),
    ] {
        let (status, body) = me(&app, jwt, query).await;
        assert_eq!((status, &body), (200, &expected), "{query}");
    }
    let role = json!({
        "id": 1, "documentId": "tokenledgerauthenticated", "name": "Authenticated",
        "description": "Default role given to authenticated user.", "type": "authenticated",
        "createdAt": "1970-01-01T00:00:00.000Z", "updatedAt": "1970-01-01T00:00:00.000Z",
        "publishedAt": "1970-01-01T00:00:00.000Z",
    });
    for query in [
        "populate=role",
        "populate=*",
        "populate[0]=role",
        "populate[role]=true",
    ] {
        let (status, body) = me(&app, jwt, query).await;
        let mut expected = user.clone();
        expected["role"] = role.clone();
        assert_eq!((status, &body), (200, &expected), "{query}");
    }
    let (_, body) = me(&app, jwt, "fields=username&populate[role][fields][0]=type").await;
    assert_eq!(
        body,
        json!({"id": id, "documentId": document_id, "username": "tess",
            "role": {"id": 1, "documentId": "tokenledgerauthenticated", "type": "authenticated"}})
    );
    for (query, message, details) in [
        (
            "fields=foo",
            "Invalid key foo",
            json!({"key": "foo", "path": null, "source": "query", "param": "fields"}),
        ),
        (
            "fields=password",
            "Invalid key password",
            json!({"key": "password", "path": "password", "source": "query", "param": "fields"}),
        ),
        (
            "fields=role",
            "Invalid key role",
            json!({"key": "role", "path": "role", "source": "query", "param": "fields"}),
        ),
        (
            "populate=foo",
            "Invalid key foo",
            json!({"key": "foo", "path": "foo", "source": "query", "param": "populate"}),
        ),
        (
            "populate=role.foo",
            "Invalid key foo at role.foo",
            json!({"key": "foo", "path": "role.foo", "source": "query", "param": "populate"}),
        ),
        (
            "fields[a]=username",
            "Invalid fields parameter. Expected a string or an array of strings",
            json!({}),
        ),
    ] {
        let (status, body) = me(&app, jwt, query).await;
        support::assert_error(status, &body, 400, "ValidationError", message);
        assert_eq!(body["error"]["details"], details, "{query}");
    }
    // A token is checked before the query, as Strapi's route checks it.
    let (status, body) = app.get("/api/users/me?fields=foo").await;
    assert_forbidden(status, &body);
}

/// Validation errors carry the value sent, as Strapi's yup errors do — except a password's,
/// which Strapi echoes and tokenledger does not.
#[actix_web::test]
async fn validation_errors_carry_the_value_sent_but_never_a_password() {
    let app = spawn_app().await;
    let (status, body) = app
        .post(
            "/api/auth/local/register",
            json!({"username": "", "email": "nope", "password": ""}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["details"]["errors"],
        json!([
            {"path": ["email"], "message": "email must be a valid email", "name": "ValidationError", "value": "nope"},
            {"path": ["username"], "message": "username is a required field", "name": "ValidationError", "value": ""},
            {"path": ["password"], "message": "password is a required field", "name": "ValidationError"},
        ])
    );
    let (_, body) = app
        .post(
            "/api/auth/local/register",
            json!({"username": "ab", "email": "ab@example.com", "password": "abc"}),
        )
        .await;
    assert_eq!(
        body["error"]["details"]["errors"],
        json!([
            {"path": ["username"], "message": "username must be at least 3 characters", "name": "ValidationError", "value": "ab"},
            {"path": ["password"], "message": "password must be at least 6 characters", "name": "ValidationError"},
        ])
    );
    let (_, body) = app
        .post(
            "/api/auth/local",
            json!({"identifier": 123, "password": null}),
        )
        .await;
    assert_eq!(
        body["error"]["details"]["errors"],
        json!([
            {"path": ["identifier"], "message": "identifier must be a `string` type, but the final value was: `123`.", "name": "ValidationError", "value": 123},
            {"path": ["password"], "message": "password must be a `string` type, but the final value was: `null`.", "name": "ValidationError"},
        ])
    );
    let jwt = app.register("uma").await["jwt"]
        .as_str()
        .unwrap()
        .to_owned();
    let mismatch = json!({"currentPassword": PASSWORD, "password": "newpassword1", "passwordConfirmation": "newpassword2"});
    let (_, body) = app
        .post_with_bearer("/api/auth/change-password", &jwt, mismatch)
        .await;
    assert_eq!(
        body["error"]["details"]["errors"],
        json!([{"path": ["passwordConfirmation"], "message": "Passwords do not match", "name": "ValidationError"}])
    );
    let (status, body) = app
        .post_with_bearer("/api/auth/logout", &jwt, json!({"deviceId": 7}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["details"]["errors"],
        json!([{"path": ["deviceId"], "message": "deviceId must be a non-empty string", "name": "ValidationError", "value": 7}])
    );
}
