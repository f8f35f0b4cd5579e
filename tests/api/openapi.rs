//! The OpenAPI document against the routes the app registers: every route in
//! `http::ENDPOINTS` is documented, every documented operation is a registered route that
//! answers, and no route is registered anywhere but from `ENDPOINTS`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{Value, json};
use support::assert_error;
use tokenledger::http::ENDPOINTS;

use crate::helpers::{spawn_app, spawn_app_with};

const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef0123456789";

/// `(method, path)` of every operation of the served document.
fn documented(document: &Value) -> BTreeSet<(String, String)> {
    let paths = document["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            let item = item.as_object().expect("a path item");
            item.keys()
                .filter(|key| {
                    [
                        "get", "put", "post", "delete", "options", "head", "patch", "trace",
                    ]
                    .contains(&key.as_str())
                })
                .map(|method| (method.to_uppercase(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[actix_web::test]
async fn every_route_is_documented_and_every_documented_operation_answers() {
    // With an admin token, so the admin routes exist rather than answer 404.
    let app = spawn_app_with(&[("ADMIN_API_TOKEN", ADMIN_TOKEN)]).await;
    let response = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let document: Value = response.json().await.unwrap();
    assert!(
        document["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        document["openapi"]
    );

    let registered: BTreeSet<(String, String)> = ENDPOINTS
        .iter()
        .map(|e| (e.method.to_string(), e.path.to_owned()))
        .collect();
    let documented = documented(&document);
    let undocumented: Vec<_> = registered.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from the OpenAPI document: {undocumented:?}; give each handler a \
         #[utoipa::path] with the same method and path, and list it in http::openapi::ApiDoc"
    );
    let unregistered: Vec<_> = documented.difference(&registered).collect();
    assert!(
        unregistered.is_empty(),
        "documented but not in http::ENDPOINTS: {unregistered:?}"
    );

    for (method, path) in &documented {
        // Any value does for a path parameter: the handler, not the router, judges it.
        let url = app.url(&path.replace("{id}", "1").replace("{file}", "index.css"));
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = app
            .client
            .request(method.clone(), &url)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let default_route = status == 404
            && (method == reqwest::Method::HEAD || body["error"]["message"] == "Not Found");
        assert!(
            !default_route,
            "{method} {path} falls through to the default 404: {body}"
        );
    }
}

#[actix_web::test]
async fn head_answers_wherever_get_does_with_the_same_status_and_no_body() {
    let app = spawn_app_with(&[("ADMIN_API_TOKEN", ADMIN_TOKEN)]).await;
    let gets = ENDPOINTS
        .iter()
        .filter(|e| e.method == actix_web::http::Method::GET);
    for endpoint in gets {
        let url = app.url(
            &endpoint
                .path
                .replace("{id}", "1")
                .replace("{file}", "app.js"),
        );
        let get = app.client.get(&url).send().await.unwrap();
        let head = app.client.head(&url).send().await.unwrap();
        assert_eq!(head.status(), get.status(), "HEAD {}", endpoint.path);
        assert_eq!(
            head.headers().get("content-type"),
            get.headers().get("content-type"),
            "HEAD {}",
            endpoint.path
        );
        assert!(
            head.bytes().await.unwrap().is_empty(),
            "HEAD {}",
            endpoint.path
        );
    }
}

#[actix_web::test]
async fn a_routes_path_asked_with_another_method_answers_405_with_what_it_allows() {
    let app = spawn_app_with(&[("ADMIN_API_TOKEN", ADMIN_TOKEN)]).await;
    // The methods each path answers, from the table, HEAD wherever GET.
    let mut allowed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for endpoint in ENDPOINTS {
        let path = endpoint
            .path
            .replace("{id}", "1")
            .replace("{file}", "app.js");
        let methods = allowed.entry(path).or_default();
        methods.insert(endpoint.method.to_string());
        if endpoint.method == actix_web::http::Method::GET {
            methods.insert("HEAD".to_owned());
        }
    }
    for (path, methods) in &allowed {
        let url = app.url(path);
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if methods.contains(method) {
                continue;
            }
            let response = app
                .client
                .request(method.parse().unwrap(), &url)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 405, "{method} {path}");
            let allow: BTreeSet<String> = response.headers()["allow"]
                .to_str()
                .unwrap()
                .split(", ")
                .map(str::to_owned)
                .collect();
            assert_eq!(&allow, methods, "{method} {path}");
            let body: Value = response.json().await.unwrap();
            assert_error(
                405,
                &body,
                405,
                "MethodNotAllowedError",
                "Method Not Allowed",
            );
        }
        // OPTIONS (not a CORS preflight) answers what the path allows, as Strapi's router does.
        let options = app
            .client
            .request(
                actix_web::http::Method::OPTIONS.as_str().parse().unwrap(),
                &url,
            )
            .send()
            .await
            .unwrap();
        assert_eq!(options.status(), 204, "OPTIONS {path}");
        assert!(options.headers().contains_key("allow"), "OPTIONS {path}");
    }
    // No route's path: still 404, whatever the method.
    for method in ["GET", "POST", "DELETE", "OPTIONS"] {
        let response = app
            .client
            .request(method.parse().unwrap(), app.url("/api/auth/nothing"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{method}");
        assert!(!response.headers().contains_key("allow"));
    }
}

#[actix_web::test]
async fn on_the_api_one_trailing_slash_reaches_the_same_route_and_operator_paths_stay_exact() {
    let app = spawn_app().await;
    app.register("tess").await;
    let (status, body) = app
        .post(
            "/api/auth/local/",
            json!({"identifier": "tess", "password": "password123"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let jwt = body["jwt"].as_str().unwrap().to_owned();
    let (status, body) = app.get_with_bearer("/api/users/me/", &jwt).await;
    assert_eq!((status, body["username"].as_str()), (200, Some("tess")));
    let (status, body) = app.get_with_bearer("/api/auth/sessions/?x=1", &jwt).await;
    assert_eq!(status, 200, "{body}");
    // Strapi's router neither merges slashes nor takes two trailing ones.
    for path in ["/api//auth/sessions", "/api/auth/sessions//"] {
        let (status, _) = app.get_with_bearer(path, &jwt).await;
        assert_eq!(status, 404, "{path}");
    }
    // A proxy rule that hides `/metrics` (say, nginx's `location = /metrics`) hides it all.
    for path in ["/metrics/", "//metrics", "/_ready/", "/openapi.json/"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }
    // The router matches the decoded path, and so does the 405's.
    let response = app
        .client
        .get(app.url("/api/auth/%6Cocal"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
}

#[actix_web::test]
async fn without_an_admin_token_the_admin_routes_are_404_whatever_the_method() {
    let app = spawn_app().await;
    for (method, path) in [
        ("POST", "/api/admin/users"),
        ("GET", "/api/admin/users/1/sessions/clear"),
        ("DELETE", "/api/admin/users/1/events"),
        ("OPTIONS", "/admin"),
        ("POST", "/admin/app.js"),
    ] {
        let response = app
            .client
            .request(method.parse().unwrap(), app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{method} {path}");
        assert!(!response.headers().contains_key("allow"), "{method} {path}");
    }
}

/// The source files under `dir`, recursively.
fn rust_files(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// A route registered with actix directly would be served without being in `ENDPOINTS`, and
/// so without the check above. actix cannot list its routes, so the source is read instead:
/// the only registration calls are the ones in `http::routes` (one `cfg.route`, the default
/// service) and app.rs's `.configure(http::routes)`.
#[test]
fn routes_are_registered_only_from_the_endpoints_table() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let allowed = [
        ("src/http/routes.rs", ".route("),
        ("src/http/routes.rs", ".default_service("),
        ("src/app.rs", ".configure("),
    ];
    let mut stray = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let name = file.strip_prefix(root).unwrap().display().to_string();
        for call in [
            ".route(",
            ".service(",
            ".default_service(",
            ".configure(",
            "web::resource(",
            "web::scope(",
            "Files::new(",
        ] {
            let count = text.matches(call).count();
            let expected = usize::from(allowed.contains(&(name.as_str(), call)));
            if count != expected {
                stray.push(format!("{name}: {count} × {call}"));
            }
        }
    }
    assert!(
        stray.is_empty(),
        "routes must be registered only through http::ENDPOINTS (and documented with \
         #[utoipa::path] in http::openapi::ApiDoc): {stray:?}"
    );
}
