//! `/api/users/me`, and the user object every route returns.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::errors::{ApiError, ErrorBody, ReadUnavailable};
use super::user_query::{SelectedUser, UserQuery};
use super::{AppState, bearer};
use crate::store::users::{User, strapi_time};

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

/// The user behind the access token; a revoked session's token is refused. `fields` and
/// `populate` shape it as Strapi's sanitizer does (`user_query`).
#[utoipa::path(
    get,
    path = "/api/users/me",
    tag = "users",
    security(("bearerAuth" = [])),
    params(
        ("fields" = Option<String>, Query, description = "Fields to show besides `id` and `documentId`: `username,email`, or `fields[0]=username`; `*` for all"),
        ("populate" = Option<String>, Query, description = "`role` (or `*`) adds the user's role, Strapi's Authenticated role; `populate[role][fields][0]=name` shows some of its fields"),
    ),
    responses(
        (status = 200, description = "The user, with the fields asked for", body = SelectedUser),
        (status = 400, description = "`Invalid key …`: a field that is not one of the user's visible fields, or a populate of anything but `role` (`ValidationError`)", body = ErrorBody),
        (status = 401, description = "An access token that is invalid, expired, of an ended session or of a blocked or deleted user", body = ErrorBody),
        (status = 403, description = "No access token: `Forbidden` (`ForbiddenError`), as Strapi answers its public role", body = ErrorBody),
        ReadUnavailable,
    )
)]
pub async fn me(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let (user, _) = state.app.authenticate(bearer(&req)).await?;
    let query = UserQuery::of(req.query_string())?;
    Ok(HttpResponse::Ok().json(query.shape(&user)))
}
