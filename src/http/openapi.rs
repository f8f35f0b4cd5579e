//! The OpenAPI 3.1 document of every route in `ENDPOINTS`, generated from the handlers'
//! `#[utoipa::path]` attributes and the response types, served at `/openapi.json`; and
//! Swagger UI at `/docs`, from files compiled into the binary (utoipa-swagger-ui's `vendored`
//! copy), so the page needs nothing from the internet and no inline script, which the
//! `Content-Security-Policy` (`script-src 'self'`) would block.

use std::sync::{Arc, LazyLock};

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::errors::{ApiError, ErrorBody};
use super::{admin, admin_page, auth, introspection, ledger, probes, sessions, users, well_known};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tokenledger",
        description = "Event-sourced login, refresh tokens and sessions; a drop-in for Strapi 5's login API. \
                       Every error has Strapi's body: `{\"data\":null,\"error\":{\"status\",\"name\",\"message\",\"details\"}}`."
    ),
    paths(
        auth::register,
        auth::login,
        auth::refresh,
        auth::refresh_session,
        auth::change_password,
        auth::forgot_password,
        auth::reset_password,
        auth::send_email_confirmation,
        auth::email_confirmation,
        sessions::logout,
        sessions::list,
        sessions::revoke,
        introspection::introspect,
        introspection::revoke,
        users::me,
        admin::find_users,
        admin::events,
        admin::sessions_at,
        admin::clear,
        admin::block,
        admin::unblock,
        admin::forget,
        ledger::checkpoint,
        ledger::inclusion,
        ledger::consistency,
        admin_page::index,
        admin_page::asset,
        well_known::jwks,
        well_known::metadata,
        probes::health,
        probes::ready,
        probes::scrape,
        document,
        docs_page,
        docs_asset,
    ),
    components(schemas(ErrorBody)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "auth", description = "Register, log in, refresh, change password, reset a forgotten one, confirm an email"),
        (name = "sessions", description = "A user's own sessions"),
        (name = "users", description = "The user behind an access token"),
        (name = "tokens", description = "For services that check access tokens: the public keys and the server's metadata"),
        (name = "oauth", description = "Token introspection (RFC 7662) for services, and revocation (RFC 7009)"),
        (name = "admin", description = "For operators, behind ADMIN_API_TOKEN; 404 when it is not set"),
        (name = "health", description = "For load balancers, orchestrators and Prometheus"),
        (name = "docs", description = "This document and its page"),
    )
)]
pub struct ApiDoc;

/// The names the operations' `security(...)` refer to.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut access = Http::new(HttpAuthScheme::Bearer);
        access.bearer_format = Some("JWT".into());
        access.description = Some("The `jwt` of a login, register or refresh answer".into());
        components.add_security_scheme("bearerAuth", SecurityScheme::Http(access));
        let mut admin = Http::new(HttpAuthScheme::Bearer);
        admin.description = Some("The configured `ADMIN_API_TOKEN`".into());
        components.add_security_scheme("adminToken", SecurityScheme::Http(admin));
        let mut service = Http::new(HttpAuthScheme::Basic);
        service.description = Some("A `client_id:client_secret` of `INTROSPECTION_CLIENTS`".into());
        components.add_security_scheme("serviceBasic", SecurityScheme::Http(service));
        components.add_security_scheme(
            "refreshCookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "refreshToken",
                "Cookie mode's refresh token (the name is `COOKIE_NAME`, `refreshToken` by default)",
            ))),
        );
    }
}

/// Built once: the document does not change while the binary runs.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    ApiDoc::openapi()
        .to_json()
        // Proven by construction: the document is plain data that serde_json always writes.
        .expect("the OpenAPI document serialises")
});

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "docs",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object))
)]
pub async fn document() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(header::ContentType::json())
        .body(DOCUMENT.as_str())
}

fn swagger_file(path: &str) -> Option<utoipa_swagger_ui::SwaggerFile<'static>> {
    // No validator: Swagger UI would otherwise send the document's address to
    // validator.swagger.io for a badge (the CSP blocks it; it must not be tried at all).
    let config = Arc::new(utoipa_swagger_ui::Config::from("/openapi.json").validator_url("none"));
    // `Err` only when the embedded initializer is not UTF-8 or the config does not serialise:
    // both fixed at build time, so treated as missing rather than a 5xx.
    utoipa_swagger_ui::serve(path, config).ok().flatten()
}

/// Swagger UI for this document. Its assets are relative to `/docs/`, so the page names that
/// as its base: served at `/docs`, it still finds them.
#[utoipa::path(
    get,
    path = "/docs",
    tag = "docs",
    responses((status = 200, description = "Swagger UI", content_type = "text/html", body = String))
)]
pub async fn docs_page() -> Result<HttpResponse, ApiError> {
    let page = swagger_file("index.html").ok_or_else(ApiError::not_found)?;
    let html = String::from_utf8_lossy(&page.bytes).replacen(
        "<head>",
        "<head>\n    <base href=\"/docs/\">",
        1,
    );
    Ok(HttpResponse::Ok()
        .content_type(header::ContentType::html())
        .body(html))
}

/// Swagger UI's scripts, styles and icons.
#[utoipa::path(
    get,
    path = "/docs/{file}",
    tag = "docs",
    params(("file" = String, Path, example = "swagger-ui.css", description = "A file of Swagger UI")),
    responses(
        (status = 200, description = "The file", content(
            ("text/html"), ("text/css"), ("text/javascript"), ("image/png"),
            // Source maps
            ("text/plain")
        )),
        (status = 404, description = "No such file", body = ErrorBody),
    )
)]
pub async fn docs_asset(file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let found = swagger_file(&file).ok_or_else(ApiError::not_found)?;
    Ok(HttpResponse::Ok()
        .content_type(found.content_type)
        .body(found.bytes.into_owned()))
}
