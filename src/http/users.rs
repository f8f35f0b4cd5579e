//! `/api/users/me`, and the user object every route returns.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::errors::{ApiError, ErrorBody};
use super::{AppState, bearer};
use crate::store::users::{User, strapi_time};
use crate::tokens::AccessClaims;

/// Strapi's sanitised user: never the password hash.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublicUser {
    id: i64,
    document_id: String,
    username: String,
    email: String,
    /// `local` for users who log in with a password.
    provider: String,
    confirmed: bool,
    blocked: bool,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    /// Strapi publishes users as they are created.
    #[schema(format = DateTime)]
    published_at: String,
}

impl PublicUser {
    pub fn of(user: &User) -> PublicUser {
        PublicUser {
            id: user.id,
            document_id: user.document_id.clone(),
            username: user.username.clone(),
            email: user.email.clone(),
            provider: user.provider.clone(),
            confirmed: user.confirmed,
            blocked: user.blocked,
            created_at: strapi_time(&user.created_at),
            updated_at: strapi_time(&user.updated_at),
            published_at: strapi_time(&user.created_at),
        }
    }
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

/// The user behind the access token; a revoked session's token is refused.
#[utoipa::path(
    get,
    path = "/api/users/me",
    tag = "users",
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The user", body = PublicUser),
        (status = 401, description = "No access token, or one that is invalid, expired, of an ended session or of a blocked or deleted user", body = ErrorBody),
        (status = 503, description = "The store could not be read; try again", body = ErrorBody),
    )
)]
pub async fn me(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let (user, _) = authenticated(&state, &req).await?;
    Ok(HttpResponse::Ok().json(PublicUser::of(&user)))
}
