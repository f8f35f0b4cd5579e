//! `/api/users/me`.

use actix_web::{HttpRequest, HttpResponse, web};

use super::errors::{ApiError, ErrorBody, ReadUnavailable};
use super::user_query::{SelectedUser, UserQuery};
use super::{AppState, bearer};

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
