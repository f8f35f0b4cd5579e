//! `/api/users/me`, and the user object every route returns.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use super::errors::ApiError;
use super::{AppState, bearer};
use crate::store::users::{User, strapi_time};
use crate::tokens::AccessClaims;

/// Strapi's sanitised user: never the password hash.
pub fn user_json(user: &User) -> Value {
    json!({
        "id": user.id,
        "documentId": user.document_id,
        "username": user.username,
        "email": user.email,
        "provider": user.provider,
        "confirmed": user.confirmed,
        "blocked": user.blocked,
        "createdAt": strapi_time(&user.created_at),
        "updatedAt": strapi_time(&user.updated_at),
        "publishedAt": strapi_time(&user.created_at),
    })
}

fn invalid_credentials() -> ApiError {
    ApiError::unauthorized("Missing or invalid credentials")
}

/// The user behind a bearer access token whose session is still live, and the token's claims.
pub async fn authenticated(
    state: &AppState,
    req: &HttpRequest,
) -> Result<(User, AccessClaims), ApiError> {
    let token = bearer(req).ok_or_else(invalid_credentials)?;
    let claims = state
        .tokens
        .verify_access(token, state.clock.now())
        .map_err(|_| invalid_credentials())?;
    if !state.session_is_live(claims.id, &claims.sid).await? {
        return Err(invalid_credentials());
    }
    match state.users.find(claims.id).await? {
        Some(user) if !user.blocked => Ok((user, claims)),
        _ => Err(ApiError::unauthorized("Invalid credentials")),
    }
}

pub async fn me(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let (user, _) = authenticated(&state, &req).await?;
    Ok(HttpResponse::Ok().json(user_json(&user)))
}
