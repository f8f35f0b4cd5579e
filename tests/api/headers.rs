//! The response headers of Strapi's security middleware, on answers that carry tokens and on
//! errors alike, and HSTS only over https.

use serde_json::json;

use crate::helpers::spawn_app_with;

const STRAPI_HEADERS: [(&str, &str); 6] = [
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "SAMEORIGIN"),
    ("referrer-policy", "no-referrer"),
    ("x-dns-prefetch-control", "off"),
    ("x-permitted-cross-domain-policies", "none"),
    ("cache-control", "no-store"),
];

#[actix_web::test]
async fn token_answers_and_errors_carry_the_security_headers_and_no_hsts_over_http() {
    let app = spawn_app_with(&[]).await;
    app.register("headers").await;
    let login = app
        .client
        .post(app.url("/api/auth/local"))
        .json(&json!({"identifier": "headers", "password": "password123", "requestRefresh": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let refused = app
        .client
        .post(app.url("/api/auth/local/refresh"))
        .json(&json!({"refreshToken": "not-a-token"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    for response in [&login, &refused] {
        for (name, value) in STRAPI_HEADERS {
            assert_eq!(
                response.headers().get(name).and_then(|v| v.to_str().ok()),
                Some(value),
                "{name} on a {} answer",
                response.status()
            );
        }
        assert!(
            response
                .headers()
                .get("content-security-policy")
                .is_some_and(|v| v.to_str().unwrap().contains("frame-ancestors 'self'"))
        );
        assert!(
            response
                .headers()
                .get("strict-transport-security")
                .is_none(),
            "no HSTS without an https PRODUCTION_URL"
        );
    }
}

#[actix_web::test]
async fn an_https_production_url_adds_hsts() {
    // An https service must send its emails (nothing is sent here: no email is asked for).
    let app = spawn_app_with(&[
        ("PRODUCTION_URL", "https://auth.example.com"),
        ("SMTP_HOST", "127.0.0.1"),
    ])
    .await;
    let health = app.client.get(app.url("/_health")).send().await.unwrap();
    assert_eq!(
        health
            .headers()
            .get("strict-transport-security")
            .and_then(|v| v.to_str().ok()),
        Some("max-age=31536000; includeSubDomains")
    );
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

async fn preflight(app: &crate::helpers::TestApp, origin: &str) -> reqwest::Response {
    app.client
        .request(reqwest::Method::OPTIONS, app.url("/api/auth/local/refresh"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,x-strapi-refresh-cookie",
        )
        .send()
        .await
        .unwrap()
}

async fn login_from(app: &crate::helpers::TestApp, origin: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/auth/local"))
        .header("origin", origin)
        .json(&json!({"identifier": "cors", "password": "password123"}))
        .send()
        .await
        .unwrap()
}

#[actix_web::test]
async fn by_default_any_origin_may_call_with_credentials_as_strapi() {
    let app = spawn_app_with(&[]).await;
    app.register("cors").await;
    let origin = "https://anywhere.example";
    let answer = preflight(&app, origin).await;
    assert_eq!(answer.status(), 204);
    assert_eq!(
        header(&answer, "access-control-allow-origin").as_deref(),
        Some(origin)
    );
    let methods = header(&answer, "access-control-allow-methods").unwrap();
    assert!(methods.contains("POST"), "{methods}");
    let headers = header(&answer, "access-control-allow-headers")
        .unwrap()
        .to_ascii_lowercase();
    assert!(headers.contains("x-strapi-refresh-cookie"), "{headers}");
    assert_eq!(
        header(&answer, "access-control-max-age").as_deref(),
        Some("31536000")
    );
    // Strapi's default `credentials: true` (issue 18; the refresh cookie is still honoured
    // only from listed origins, `strapi_frontend`).
    assert_eq!(
        header(&answer, "access-control-allow-credentials").as_deref(),
        Some("true")
    );
    let answer = login_from(&app, origin).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(
        header(&answer, "access-control-allow-origin").as_deref(),
        Some(origin)
    );
    assert_eq!(
        header(&answer, "access-control-allow-credentials").as_deref(),
        Some("true")
    );
}

#[actix_web::test]
async fn listed_origins_get_credentials_and_others_no_cors_headers() {
    let front = "https://app.example.com";
    let app = spawn_app_with(&[
        (
            "CORS_ORIGINS",
            "https://app.example.com, http://localhost:3000",
        ),
        ("COOKIE_RESPONSE", "true"),
    ])
    .await;
    app.register("cors").await;
    let answer = preflight(&app, front).await;
    assert!(answer.status().is_success(), "{}", answer.status());
    assert_eq!(
        header(&answer, "access-control-allow-origin").as_deref(),
        Some(front)
    );
    assert_eq!(
        header(&answer, "access-control-allow-credentials").as_deref(),
        Some("true")
    );
    let answer = login_from(&app, front).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(
        header(&answer, "access-control-allow-origin").as_deref(),
        Some(front)
    );
    assert_eq!(
        header(&answer, "access-control-allow-credentials").as_deref(),
        Some("true")
    );
    assert!(header(&answer, "vary").unwrap().contains("Origin"));

    // Another site: the request is answered (CORS is the browser's to enforce), without a
    // header that would let the browser hand the answer to that site's page.
    let evil = "https://evil.example";
    let answer = preflight(&app, evil).await;
    assert_eq!(header(&answer, "access-control-allow-origin"), None);
    let answer = login_from(&app, evil).await;
    // Cookie mode: a cross-site login is refused (403), not for CORS (a plain-text 400
    // before issue 18) but to keep the refresh cookie from other sites.
    assert_eq!(answer.status(), 403);
    assert_eq!(header(&answer, "access-control-allow-origin"), None);
}
