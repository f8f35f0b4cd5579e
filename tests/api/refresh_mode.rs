//! `JWT_MANAGEMENT=refresh`: Strapi 5's session rules on Strapi's routes, one test a rule.
//! Each names the line of Strapi's source it follows: `@strapi/plugin-users-permissions`
//! 5.54.0 (`users-permissions …`) and `@strapi/core` 5.54.0 (`core …`), both `dist/`.

use chrono::TimeDelta;
use serde_json::{Value, json};
use support::{PASSWORD, assert_error, assert_invalid_refresh_token, claims};

use crate::helpers::{TestApp, spawn_app_with};

const REFRESH_MODE: (&str, &str) = ("JWT_MANAGEMENT", "refresh");
const HTTP_ONLY: (&str, &str) = ("x-strapi-refresh-cookie", "httpOnly");

/// An answer: status, the `Set-Cookie` lines, the body.
struct Answer {
    status: u16,
    cookies: Vec<String>,
    body: Value,
}

impl Answer {
    /// The `Set-Cookie` line of `name`, if any.
    fn cookie(&self, name: &str) -> Option<&str> {
        let prefix = format!("{name}=");
        self.cookies
            .iter()
            .find(|c| c.starts_with(&prefix))
            .map(String::as_str)
    }

    /// The value that `Set-Cookie` line of `name` carries.
    fn cookie_value(&self, name: &str) -> String {
        let line = self
            .cookie(name)
            .unwrap_or_else(|| panic!("no {name} cookie"));
        let pair = line.split(';').next().unwrap_or_default();
        pair[name.len() + 1..].to_owned()
    }

    fn string(&self, key: &str) -> String {
        self.body[key]
            .as_str()
            .unwrap_or_else(|| panic!("no {key} in {}", self.body))
            .to_owned()
    }
}

/// POSTs `body` with these headers (a `("cookie", …)` included) and an optional bearer.
async fn post(
    app: &TestApp,
    path: &str,
    body: Value,
    headers: &[(&str, &str)],
    bearer: Option<&str>,
) -> Answer {
    let mut request = app.client.post(app.url(path)).json(&body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let cookies = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("ASCII").to_owned())
        .collect();
    let body = response.json().await.expect("a JSON body");
    Answer {
        status,
        cookies,
        body,
    }
}

/// A login as a Strapi 5 front end sends it: no `requestRefresh`.
async fn login(app: &TestApp, name: &str, headers: &[(&str, &str)]) -> Answer {
    let body = json!({"identifier": name, "password": PASSWORD});
    let answer = post(app, "/api/auth/local", body, headers, None).await;
    assert_eq!(answer.status, 200, "login: {}", answer.body);
    answer
}

async fn refresh(app: &TestApp, token: &str) -> Answer {
    let body = json!({"refreshToken": token});
    post(app, "/api/auth/refresh", body, &[], None).await
}

async fn me(app: &TestApp, jwt: &str) -> u16 {
    app.get_with_bearer("/api/users/me", jwt).await.0
}

#[actix_web::test]
async fn every_login_gets_a_refresh_token_without_asking() {
    // users-permissions server/controllers/auth.js:179-183 (refresh mode sends the session
    // answer) and 75-79 (`{jwt, refreshToken, user}` when no cookie is asked for).
    let app = spawn_app_with(&[REFRESH_MODE]).await;
    app.register("ada").await;
    let answer = login(&app, "ada", &[]).await;
    assert!(answer.body["jwt"].is_string() && answer.body["user"]["id"].is_i64());
    let token = answer.string("refreshToken");
    assert_eq!(refresh(&app, &token).await.status, 200);
    // `requestRefresh: false` changes nothing: Strapi does not read it.
    let body = json!({"identifier": "ada", "password": PASSWORD, "requestRefresh": false});
    let answer = post(&app, "/api/auth/local", body, &[], None).await;
    assert!(answer.body["refreshToken"].is_string(), "{}", answer.body);
}

#[actix_web::test]
async fn every_registration_gets_a_refresh_token_in_the_body() {
    // users-permissions server/controllers/auth.js:579-594: `{jwt, refreshToken, user}`,
    // whatever the cookie settings.
    let app = spawn_app_with(&[REFRESH_MODE]).await;
    let token = app.register("bea").await["refreshToken"]
        .as_str()
        .expect("a refresh token in the body")
        .to_owned();
    assert_eq!(refresh(&app, &token).await.status, 200);
    // Asked for the cookie, Strapi still answers in the body; ours sets the cookie too, so
    // that a cookie client's next refresh finds one.
    let body = json!({"username": "cyd", "email": "cyd@example.com", "password": PASSWORD});
    let path = "/api/auth/local/register";
    let answer = post(&app, path, body, &[HTTP_ONLY], None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.string("refreshToken"),
        answer.cookie_value("strapi_up_refresh")
    );
}

#[actix_web::test]
async fn a_password_change_ends_every_session_and_answers_a_fresh_refresh_token() {
    // users-permissions server/controllers/auth.js:241-244 and 81-97: every session of the
    // user is invalidated, a new one issued, `{jwt, refreshToken, user}`.
    let app = spawn_app_with(&[REFRESH_MODE]).await;
    app.register("dee").await;
    let here = login(&app, "dee", &[]).await;
    let there = login(&app, "dee", &[]).await;
    let body = json!({"currentPassword": PASSWORD, "password": "n3w-password",
        "passwordConfirmation": "n3w-password"});
    let path = "/api/auth/change-password";
    let changed = post(&app, path, body, &[], Some(&here.string("jwt"))).await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert_eq!(me(&app, &here.string("jwt")).await, 401);
    assert_eq!(me(&app, &there.string("jwt")).await, 401);
    assert_eq!(
        refresh(&app, &there.string("refreshToken")).await.status,
        401
    );
    assert_eq!(me(&app, &changed.string("jwt")).await, 200);
    let fresh = refresh(&app, &changed.string("refreshToken")).await;
    assert_eq!(fresh.status, 200, "{}", fresh.body);
}

#[actix_web::test]
async fn refresh_always_rotates_and_answers_the_successor() {
    // users-permissions server/controllers/auth.js:296-315 with core services/
    // session-manager.js:481-519: every refresh makes a child token and answers
    // `{jwt, refreshToken}`, whatever REFRESH_TOKEN_ROTATION says (here its default, off).
    let app = spawn_app_with(&[REFRESH_MODE]).await;
    app.register("eve").await;
    let first = login(&app, "eve", &[]).await.string("refreshToken");
    let answer = refresh(&app, &first).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let keys: Vec<&String> = answer.body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["jwt", "refreshToken"]);
    let second = answer.string("refreshToken");
    assert_ne!(second, first);
    assert_eq!(me(&app, &answer.string("jwt")).await, 200);
    let third = refresh(&app, &second).await.string("refreshToken");
    assert_ne!(third, second);
    // The plugin's own route keeps the plugin's rules: no rotation with it off.
    let (status, body) = app.refresh(&third).await;
    assert_eq!((status, body.get("refreshToken")), (200, None), "{body}");
}

#[actix_web::test]
async fn a_superseded_token_is_reuse_after_the_grace_window() {
    // Strapi refuses a rotated token (core services/session-manager.js:428-432); ours also
    // ends its session (reuse detection), after giving the same successor within the grace.
    let app = spawn_app_with(&[REFRESH_MODE]).await;
    app.register("fay").await;
    let first = login(&app, "fay", &[]).await.string("refreshToken");
    let successor = refresh(&app, &first).await.string("refreshToken");
    let again = refresh(&app, &first).await;
    assert_eq!(again.string("refreshToken"), successor, "within the grace");
    app.advance(TimeDelta::seconds(11));
    let reused = refresh(&app, &first).await;
    assert_invalid_refresh_token(reused.status, &reused.body);
    let orphan = refresh(&app, &successor).await;
    assert_invalid_refresh_token(orphan.status, &orphan.body);
    let user = app.login("fay").await["user"]["id"].as_i64().unwrap();
    assert!(
        app.event_types(user)
            .await
            .contains(&"RefreshTokenReused".to_owned())
    );
}

#[actix_web::test]
async fn a_rotating_session_still_ends_at_its_absolute_lifetime() {
    // core services/session-manager.js:474-480: rotation never passes the family's maximum
    // (ours: SESSION_ABSOLUTE_LIFETIME).
    let app = spawn_app_with(&[
        REFRESH_MODE,
        ("SESSION_ABSOLUTE_LIFETIME", "1d"),
        ("REFRESH_TOKEN_EXPIRES_IN", "12h"),
    ])
    .await;
    app.register("gus").await;
    let mut token = login(&app, "gus", &[]).await.string("refreshToken");
    for _ in 0..2 {
        app.advance(TimeDelta::hours(10));
        token = refresh(&app, &token).await.string("refreshToken");
    }
    app.advance(TimeDelta::hours(5));
    let late = refresh(&app, &token).await;
    assert_invalid_refresh_token(late.status, &late.body);
}

#[actix_web::test]
async fn refresh_errors_are_strapis() {
    // users-permissions server/controllers/auth.js:293-295 (no string token: 400 `Missing
    // refresh token`) and 297-299 (`Invalid refresh token`, 401).
    let app = spawn_app_with(&[REFRESH_MODE]).await;
    for body in [
        json!({}),
        json!({"refreshToken": 42}),
        json!({"refreshToken": ""}),
    ] {
        let answer = post(&app, "/api/auth/refresh", body, &[], None).await;
        let message = "Missing refresh token";
        assert_error(answer.status, &answer.body, 400, "BadRequestError", message);
    }
    let forged = refresh(&app, "eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl").await;
    assert_invalid_refresh_token(forged.status, &forged.body);
}

#[actix_web::test]
async fn the_cookie_is_strapi_up_refresh_lax_on_the_root_until_the_browser_closes() {
    // users-permissions server/controllers/auth.js:65-74 (the header asks for the cookie;
    // then `{jwt, user}` only) and utils/refresh-cookie-options.js:8-18 (HttpOnly,
    // SameSite=Lax, Path=/, no Max-Age, Secure only in production).
    let app = spawn_app_with(&[REFRESH_MODE]).await;
    app.register("hal").await;
    let answer = login(&app, "hal", &[HTTP_ONLY]).await;
    assert!(answer.body.get("refreshToken").is_none(), "{}", answer.body);
    let cookie = answer.cookie("strapi_up_refresh").expect("the cookie");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attribute), "{attribute}: {cookie}");
    }
    for absent in ["Max-Age", "Expires", "Secure", "Domain"] {
        assert!(!cookie.contains(absent), "{absent}: {cookie}");
    }
}

#[actix_web::test]
async fn the_http_only_switch_and_the_cookie_keys_shape_the_cookie() {
    // utils/refresh-cookie-options.js:9-16: `sessions.httpOnly` (COOKIE_RESPONSE here) sends
    // it without the header (auth.js:66); `cookie.name`, `secure`, `sameSite`, `path` and
    // `maxAge` are the COOKIE_* keys.
    let app = spawn_app_with(&[
        REFRESH_MODE,
        ("COOKIE_RESPONSE", "true"),
        ("COOKIE_NAME", "up"),
        ("COOKIE_SECURE", "true"),
        ("COOKIE_SAME_SITE", "strict"),
        ("COOKIE_PATH", "/api"),
        ("COOKIE_MAX_AGE", "7d"),
    ])
    .await;
    app.register("ida").await;
    let answer = login(&app, "ida", &[]).await;
    assert!(answer.body.get("refreshToken").is_none(), "{}", answer.body);
    let cookie = answer.cookie("up").expect("the cookie");
    for attribute in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/api",
        "Max-Age=604800",
    ] {
        assert!(cookie.contains(attribute), "{attribute}: {cookie}");
    }
}

#[actix_web::test]
async fn refresh_reads_the_cookie_before_the_body_and_rotates_into_it() {
    // users-permissions server/controllers/auth.js:289-292 (the cookie first) and 304-311
    // (the rotated token into the cookie, `{jwt}` in the body).
    let app = spawn_app_with(&[REFRESH_MODE]).await;
    app.register("jon").await;
    let by_cookie = login(&app, "jon", &[HTTP_ONLY]).await;
    let in_cookie = by_cookie.cookie_value("strapi_up_refresh");
    let in_body = login(&app, "jon", &[]).await.string("refreshToken");
    let jar = format!("strapi_up_refresh={in_cookie}");
    let headers = [HTTP_ONLY, ("cookie", jar.as_str())];
    let body = json!({"refreshToken": in_body});
    let answer = post(&app, "/api/auth/refresh", body, &headers, None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let keys: Vec<&String> = answer.body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["jwt"]);
    let rotated = answer.cookie_value("strapi_up_refresh");
    assert_ne!(rotated, in_cookie);
    // The cookie's session was refreshed, not the body's: the body's token is unused.
    let access = claims(&answer.string("jwt"));
    assert_eq!(access["sid"], claims(&by_cookie.string("jwt"))["sid"]);
    let untouched = refresh(&app, &in_body).await;
    assert_eq!(untouched.status, 200, "{}", untouched.body);
}

#[actix_web::test]
async fn logout_needs_the_bearer() {
    // users-permissions server/services/users-permissions.js:59-61 (logout is the
    // authenticated role's permission, so Strapi's auth refuses a request without a token
    // as it refuses /users/me) and server/controllers/auth.js:322-324.
    let app = spawn_app_with(&[REFRESH_MODE]).await;
    app.register("kim").await;
    let session = login(&app, "kim", &[]).await;
    let token = session.string("refreshToken");
    let body = json!({"refreshToken": token});
    let refused = post(&app, "/api/auth/logout", body, &[], None).await;
    let (status, unauthenticated) = app.get("/api/users/me").await;
    assert_eq!((refused.status, &refused.body), (status, &unauthenticated));
    assert!(refused.status == 401 || refused.status == 403, "{status}");
    // Nothing ended.
    assert_eq!(me(&app, &session.string("jwt")).await, 200);
    let bad = post(&app, "/api/auth/logout", json!({}), &[], Some("not.a.jwt")).await;
    assert_eq!(bad.status, 401, "{}", bad.body);
    assert_eq!(refresh(&app, &token).await.status, 200);
}

#[actix_web::test]
async fn logout_ends_the_refresh_tokens_session_else_the_bearers() {
    // users-permissions server/controllers/auth.js:109-121: a valid refresh token (the
    // cookie's, else the body's) names the session to end; without one, the access token's.
    let app = spawn_app_with(&[REFRESH_MODE]).await;
    app.register("lea").await;
    let here = login(&app, "lea", &[]).await;
    let there = login(&app, "lea", &[]).await;
    let body = json!({"refreshToken": there.string("refreshToken")});
    let path = "/api/auth/logout";
    let answer = post(&app, path, body, &[], Some(&here.string("jwt"))).await;
    assert_eq!((answer.status, &answer.body), (200, &json!({"ok": true})));
    assert_eq!(me(&app, &there.string("jwt")).await, 401);
    assert_eq!(me(&app, &here.string("jwt")).await, 200);
    let answer = post(&app, path, json!({}), &[], Some(&here.string("jwt"))).await;
    assert_eq!((answer.status, &answer.body), (200, &json!({"ok": true})));
    assert_eq!(me(&app, &here.string("jwt")).await, 401);
}

#[actix_web::test]
async fn logout_ends_a_device_or_every_session() {
    // users-permissions server/controllers/auth.js:101-108: `scope: "all"` ends every
    // session of the user, `deviceId` that device's.
    let app = spawn_app_with(&[REFRESH_MODE]).await;
    app.register("max").await;
    let login_on = |device: &'static str| {
        let body = json!({"identifier": "max", "password": PASSWORD, "deviceId": device});
        post(&app, "/api/auth/local", body, &[], None)
    };
    let (laptop, phone, tablet) = (
        login_on("laptop").await,
        login_on("phone").await,
        login_on("tablet").await,
    );
    let path = "/api/auth/logout";
    let body = json!({"deviceId": "phone"});
    let answer = post(&app, path, body, &[], Some(&laptop.string("jwt"))).await;
    assert_eq!((answer.status, &answer.body), (200, &json!({"ok": true})));
    assert_eq!(me(&app, &phone.string("jwt")).await, 401);
    assert_eq!(me(&app, &tablet.string("jwt")).await, 200);
    let body = json!({"scope": "all"});
    let answer = post(&app, path, body, &[], Some(&laptop.string("jwt"))).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(me(&app, &tablet.string("jwt")).await, 401);
    assert_eq!(me(&app, &laptop.string("jwt")).await, 401);
}

#[actix_web::test]
async fn logout_clears_the_cookie() {
    // users-permissions server/controllers/auth.js:339-351: the cookie is set empty and
    // expired where cookies are asked for, and the answer is `{ok: true}`.
    let app = spawn_app_with(&[REFRESH_MODE]).await;
    app.register("ned").await;
    let session = login(&app, "ned", &[HTTP_ONLY]).await;
    let jar = format!(
        "strapi_up_refresh={}",
        session.cookie_value("strapi_up_refresh")
    );
    let headers = [HTTP_ONLY, ("cookie", jar.as_str())];
    let jwt = session.string("jwt");
    let answer = post(&app, "/api/auth/logout", json!({}), &headers, Some(&jwt)).await;
    assert_eq!((answer.status, &answer.body), (200, &json!({"ok": true})));
    assert_eq!(answer.cookie_value("strapi_up_refresh"), "");
    let cleared = answer.cookie("strapi_up_refresh").unwrap();
    assert!(
        cleared.contains("Max-Age=0") || cleared.contains("Expires="),
        "{cleared}"
    );
    assert!(
        cleared.contains("Path=/;") || cleared.ends_with("Path=/"),
        "{cleared}"
    );
    assert_eq!(me(&app, &jwt).await, 401);
}

#[actix_web::test]
async fn logout_with_a_reused_refresh_token_ends_its_session_and_the_bearers() {
    // users-permissions server/controllers/auth.js:112-121 and 349-351: a token that is not
    // valid leaves the access token's session to end, and the answer is `{ok: true}`. Ours
    // also treats a superseded token as reuse: `RefreshTokenReused`, its session ended.
    let app = spawn_app_with(&[REFRESH_MODE, ("REFRESH_TOKEN_REUSE_GRACE", "1s")]).await;
    let user = app.register("ola").await["user"]["id"].as_i64().unwrap();
    let stolen = login(&app, "ola", &[]).await;
    let old = stolen.string("refreshToken");
    let successor = refresh(&app, &old).await.string("refreshToken");
    app.advance(TimeDelta::seconds(2));
    let mine = login(&app, "ola", &[]).await;
    let body = json!({"refreshToken": old});
    let jwt = mine.string("jwt");
    let answer = post(&app, "/api/auth/logout", body, &[], Some(&jwt)).await;
    assert_eq!((answer.status, &answer.body), (200, &json!({"ok": true})));
    assert_eq!(me(&app, &jwt).await, 401);
    assert_eq!(refresh(&app, &successor).await.status, 401);
    assert!(
        app.event_types(user)
            .await
            .contains(&"RefreshTokenReused".to_owned())
    );
}

#[actix_web::test]
async fn access_tokens_carry_strapis_session_claims() {
    // core services/session-manager.js:379-383 signs `{userId, sessionId, type: "access"}`,
    // and users-permissions server/services/jwt.js:133-138 accepts only `type: "access"`
    // with a `userId`: a Strapi sharing JWT_SECRET reads ours. `id` and `sid` stay ours.
    let app = spawn_app_with(&[REFRESH_MODE]).await;
    let registered = app.register("pia").await;
    let id = registered["user"]["id"].as_i64().unwrap();
    let jwt = registered["jwt"].as_str().unwrap().to_owned();
    let access = claims(&jwt);
    assert_eq!(access["userId"], json!(id.to_string()));
    assert_eq!(access["type"], "access");
    assert_eq!(access["id"], json!(id));
    assert!(access["sid"].is_string());
    assert_eq!(me(&app, &jwt).await, 200);
    // The default mode signs what it always did.
    let plugin = spawn_app_with(&[]).await;
    let jwt = plugin.register("pia").await["jwt"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(claims(&jwt).get("type").is_none() && claims(&jwt).get("userId").is_none());
}

#[actix_web::test]
async fn legacy_support_is_the_default() {
    // users-permissions server/config.js:21: `jwtManagement: 'legacy-support'`; here that
    // keeps the refresh-token plugin's rules on every route.
    let app = spawn_app_with(&[]).await;
    app.register("quin").await;
    let answer = login(&app, "quin", &[]).await;
    assert!(answer.body.get("refreshToken").is_none(), "{}", answer.body);
    let token = app.login("quin").await["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let answer = refresh(&app, &token).await;
    let keys: Vec<&String> = answer.body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["jwt"], "no rotation by default");
    let explicit = spawn_app_with(&[("JWT_MANAGEMENT", "legacy-support")]).await;
    explicit.register("quin").await;
    let answer = login(&explicit, "quin", &[]).await;
    assert!(answer.body.get("refreshToken").is_none(), "{}", answer.body);
}
