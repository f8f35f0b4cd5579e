//! Cookie mode end to end, with a real cookie jar.

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with};

fn set_cookie(response: &reqwest::Response) -> String {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

async fn jar_client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap()
}

async fn post(
    client: &reqwest::Client,
    app: &TestApp,
    path: &str,
    body: Value,
) -> (u16, String, Value) {
    let response = client.post(app.url(path)).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    let cookie = set_cookie(&response);
    (status, cookie, response.json().await.unwrap())
}

#[actix_web::test]
async fn login_refresh_refresh_logout_with_cookies_only() {
    let app = spawn_app_with(&[
        ("COOKIE_RESPONSE", "true"),
        ("REFRESH_TOKEN_ROTATION", "true"),
    ])
    .await;
    app.register("lou").await;
    let browser = jar_client().await;
    let (status, cookie, body) = post(
        &browser,
        &app,
        "/api/auth/local",
        json!({"identifier": "lou", "password": "password123", "requestRefresh": true}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.get("refreshToken").is_none(),
        "the token travels in the cookie only: {body}"
    );
    assert!(body["jwt"].is_string());
    for attribute in [
        "refreshToken=",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/api/auth",
        "Max-Age=2592000",
    ] {
        assert!(
            cookie.contains(attribute),
            "{attribute} missing in {cookie}"
        );
    }
    assert!(
        !cookie.contains("Secure") && !cookie.contains("Domain"),
        "{cookie}"
    );
    let first = cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("refreshToken=")
        .to_owned();

    let (status, rotated, body) = post(&browser, &app, "/api/auth/local/refresh", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["jwt"]
    );
    assert!(
        rotated.starts_with("refreshToken=") && !rotated.contains(&first),
        "rotation re-sets the cookie: {rotated}"
    );
    let (status, _, body) = post(&browser, &app, "/api/auth/refresh", json!({})).await;
    assert_eq!(status, 200, "{body}");

    let (status, expired, body) = post(&browser, &app, "/api/auth/logout", json!({})).await;
    assert_eq!((status, &body), (200, &json!({"ok": true})));
    assert!(
        expired.contains("Max-Age=0") || expired.contains("Expires="),
        "logout expires the cookie: {expired}"
    );
    let (status, _, body) = post(&browser, &app, "/api/auth/local/refresh", json!({})).await;
    assert_eq!(
        (status, body["error"]["message"].as_str()),
        (400, Some("Missing refresh token"))
    );
    // The last cookie value, kept by an attacker, is dead too.
    let stolen = rotated
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("refreshToken=")
        .to_owned();
    assert_eq!(app.refresh(&stolen).await.0, 401);
}

#[actix_web::test]
async fn strapis_header_asks_for_a_cookie_per_request() {
    let app = spawn_app_with(&[]).await;
    app.register("max").await;
    let response = app
        .client
        .post(app.url("/api/auth/local"))
        .header("x-strapi-refresh-cookie", "httpOnly")
        .json(&json!({"identifier": "max", "password": "password123"}))
        .send()
        .await
        .unwrap();
    let cookie = set_cookie(&response);
    let body: Value = response.json().await.unwrap();
    assert!(cookie.starts_with("refreshToken="), "{cookie}");
    assert!(body.get("refreshToken").is_none());
    // Without the header the same server answers in the body.
    assert!(app.login("max").await["refreshToken"].is_string());
}

#[actix_web::test]
async fn cookie_attributes_follow_the_configuration() {
    let app = spawn_app_with(&[
        ("COOKIE_RESPONSE", "true"),
        ("PRODUCTION_URL", "https://auth.example.com"),
        ("SMTP_HOST", "127.0.0.1"),
        ("COOKIE_NAME", "rt"),
        ("COOKIE_SAME_SITE", "lax"),
        ("COOKIE_DOMAIN", "example.com"),
        ("COOKIE_PATH", "/"),
    ])
    .await;
    app.register("ned").await;
    let browser = jar_client().await;
    let (_, cookie, _) = post(
        &browser,
        &app,
        "/api/auth/local",
        json!({"identifier": "ned", "password": "password123", "requestRefresh": true}),
    )
    .await;
    for attribute in [
        "rt=",
        "HttpOnly",
        "SameSite=Lax",
        "Secure",
        "Path=/",
        "Domain=example.com",
    ] {
        assert!(
            cookie.contains(attribute),
            "{attribute} missing in {cookie}"
        );
    }
    // Served over plain HTTP all the same (the plugin crashes here).
    let token = cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("rt=")
        .to_owned();
    let response = app
        .client
        .post(app.url("/api/auth/local/refresh"))
        .header("cookie", format!("rt={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
}
