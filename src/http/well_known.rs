//! What services that check our access tokens read: the public keys (`/.well-known/jwks.json`,
//! RFC 7517) and the server's metadata (`/.well-known/oauth-authorization-server`, RFC 8414).

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use serde_json::json;

use super::AppState;

/// How long a verifier may cache the key set: the next key is published before it signs, so
/// a cached set verifies new tokens until a second rotation; a quarter of the rotation
/// interval keeps that from happening with a schedule, and libraries fetch again on an
/// unknown `kid` anyway.
fn max_age(state: &AppState) -> i64 {
    match state.config.tokens.signing_key_rotation {
        Some(every) => (every.num_seconds() / 4).clamp(60, 3600),
        None => 300,
    }
}

/// The public keys that may have signed a live access token: the one that signs, the next
/// one, and retired ones until their last token has expired. Empty with HS256, whose keys are
/// secrets.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "tokens",
    responses((status = 200, description = "The JWK set (RFC 7517) of the access-token keys", content_type = "application/json", body = Object))
)]
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    let keys = state.app.tokens.keys();
    let published = keys.published(state.app.clock.now().timestamp());
    HttpResponse::Ok()
        .insert_header((
            header::CACHE_CONTROL,
            format!("public, max-age={}", max_age(&state)),
        ))
        .json(json!({ "keys": published }))
}

/// The issuer of access tokens, where its keys are and the endpoints for services (RFC 8414).
#[utoipa::path(
    get,
    path = "/.well-known/oauth-authorization-server",
    tag = "tokens",
    responses((status = 200, description = "Authorization server metadata (RFC 8414)", content_type = "application/json", body = Object))
)]
pub async fn metadata(state: web::Data<AppState>) -> HttpResponse {
    let base = state.config.server.public_url();
    let issuer = state
        .app
        .tokens
        .issuer()
        .map_or_else(|| base.clone(), str::to_owned);
    let alg = format!("{:?}", state.config.tokens.access_alg);
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .json(json!({
            "issuer": issuer,
            "jwks_uri": format!("{base}/.well-known/jwks.json"),
            "introspection_endpoint": format!("{base}/api/auth/introspect"),
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "revocation_endpoint": format!("{base}/api/auth/revoke"),
            "revocation_endpoint_auth_methods_supported": ["none"],
            // Required by RFC 8414; logins are Strapi's `POST /api/auth/local`, not OAuth's
            // authorization endpoint.
            "response_types_supported": [],
            "access_token_signing_alg_values_supported": [alg],
        }))
}
