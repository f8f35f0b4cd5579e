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
    let app = spawn_app_with(&[("PRODUCTION_URL", "https://auth.example.com")]).await;
    let health = app.client.get(app.url("/_health")).send().await.unwrap();
    assert_eq!(
        health
            .headers()
            .get("strict-transport-security")
            .and_then(|v| v.to_str().ok()),
        Some("max-age=31536000; includeSubDomains")
    );
}
