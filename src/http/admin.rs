//! The admin API, for operators and investigators: finding a user, a user's event trail, the
//! sessions alive at any past moment (replayed from the log); clearing a user's sessions,
//! blocking and unblocking a user.
//! Behind `ADMIN_API_TOKEN` (bearer, compared in constant time); without one configured the
//! routes do not exist (404).

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Serialize;
use subtle::ConstantTimeEq;
use tokenledger_domain::UserId;
use utoipa::ToSchema;

use super::errors::{ApiError, ErrorBody, ReadUnavailable, WriteUnavailable};
use super::pagination::{PageRequest, Pagination};
use super::public_user::PublicUser;
use super::sessions::SessionSummary;
use super::{AppState, bearer, caller};
use crate::audit::AuditEntry;
use crate::rules::USERNAME_MAX;
use crate::store::users::User;
use crate::use_cases::{Failure, Trail, TrailQuery};

const PAGE: usize = 100;
const EVENT_TYPES: [&str; 20] = [
    "TokenIssued",
    "TokenRotated",
    "TokenRefreshed",
    "RefreshTokenReused",
    "SessionRevoked",
    "SessionsCleared",
    "LoginFailed",
    "UserRegistered",
    "PasswordChanged",
    "UserBlocked",
    "UserUnblocked",
    "UserForgotten",
    "UserImported",
    "PasswordRehashed",
    "PasswordResetRequested",
    "PasswordReset",
    "EmailConfirmationRequested",
    "EmailConfirmed",
    "EmailSent",
    "EmailFailed",
];
const MAX_PAGE: usize = 1000;
const USERS_PAGE: u32 = 20;
const MAX_USERS_PAGE: u32 = 100;

pub(super) fn authorize(state: &AppState, req: &HttpRequest) -> Result<(), ApiError> {
    let Some(expected) = &state.config.admin.api_token else {
        return Err(ApiError::not_found());
    };
    let given = bearer(req).unwrap_or_default();
    if bool::from(given.as_bytes().ct_eq(expected.expose().as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::unauthorized("Missing or invalid credentials"))
    }
}

pub(super) fn query(req: &HttpRequest) -> Result<HashMap<String, String>, ApiError> {
    serde_urlencoded::from_str(req.query_string())
        .map_err(|_| ApiError::validation("The query string could not be read"))
}

fn time_parameter(
    query: &HashMap<String, String>,
    key: &str,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    query
        .get(key)
        .map(|text| {
            DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    ApiError::validation(format!(
                        "{key} must be an RFC 3339 time, like 2026-11-29T10:42:00Z"
                    ))
                })
        })
        .transpose()
}

/// The id of the user named by the path, after the admin check.
fn user_id(state: &AppState, req: &HttpRequest, id: &str) -> Result<UserId, ApiError> {
    authorize(state, req)?;
    Ok(id.parse().map_err(|_| Failure::UserNotFound)?)
}

/// The user named by the path, after the admin check.
async fn user(state: &AppState, req: &HttpRequest, id: &str) -> Result<User, ApiError> {
    let id = user_id(state, req, id)?;
    Ok(state.app.user_by_id(id).await?)
}

#[derive(Serialize, ToSchema)]
struct FoundUsers {
    data: Vec<PublicUser>,
    meta: Search,
}

#[derive(Serialize, ToSchema)]
struct Search {
    /// The text searched for, trimmed.
    q: String,
    limit: u32,
    /// Whether more users match than `limit`.
    more: bool,
}

/// `GET /api/admin/users?q=<text>&limit=<n>`: the users an investigator may mean, by a
/// piece of username or email, or by id (see `UserStore::search`), for the audit page's picker.
#[utoipa::path(
    get,
    path = "/api/admin/users",
    tag = "admin",
    security(("adminToken" = [])),
    params(
        ("q" = Option<String>, Query, max_length = 255, description = "A piece of a username or email (case ignored; on SQLite for ASCII letters only), or a user id; empty lists the newest users"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "How many, 20 by default"),
    ),
    responses(
        (status = 200, description = "The users found, an id match first, then exact names, then the rest by id", body = FoundUsers),
        (status = 400, description = "An unreadable query, a `q` too long or with a NUL, a `limit` out of range", body = ErrorBody),
        (status = 401, description = "Not the admin token", body = ErrorBody),
        (status = 404, description = "No `ADMIN_API_TOKEN` configured", body = ErrorBody),
        ReadUnavailable,
    )
)]
pub async fn find_users(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    authorize(&state, &req)?;
    let query = query(&req)?;
    let text = query.get("q").map_or("", |q| q.trim());
    if text.chars().count() > USERNAME_MAX {
        return Err(ApiError::validation(format!(
            "q must be at most {USERNAME_MAX} characters"
        )));
    }
    // No username or email holds a NUL, and PostgreSQL would fail the query on one.
    if text.contains('\0') {
        return Err(ApiError::validation("q must not contain NUL characters"));
    }
    let limit = match query.get("limit").map(|v| v.parse::<u32>()) {
        None => USERS_PAGE,
        Some(Ok(n)) if (1..=MAX_USERS_PAGE).contains(&n) => n,
        Some(_) => {
            return Err(ApiError::validation(format!(
                "limit must be a whole number between 1 and {MAX_USERS_PAGE}"
            )));
        }
    };
    let (found, more) = state.app.find_users(text, limit).await?;
    Ok(HttpResponse::Ok().json(FoundUsers {
        data: found.iter().map(PublicUser::of).collect(),
        meta: Search {
            q: text.to_owned(),
            limit,
            more,
        },
    }))
}

/// `from`, `to`, `type`, `after` and `limit` of a trail request, each checked.
fn trail_query(query: &HashMap<String, String>) -> Result<TrailQuery, ApiError> {
    let (from, to) = (time_parameter(query, "from")?, time_parameter(query, "to")?);
    let types: Option<Vec<&str>> = query
        .get("type")
        .map(|t| t.split(',').map(str::trim).collect());
    if let Some(types) = &types
        && let Some(unknown) = types.iter().find(|t| !EVENT_TYPES.contains(t))
    {
        // A typo must not read as "no such incident".
        return Err(ApiError::validation(format!(
            "type {unknown:?} is not one of {}",
            EVENT_TYPES.join(", ")
        )));
    }
    let number = |key: &str| -> Result<Option<i64>, ApiError> {
        query
            .get(key)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| ApiError::validation(format!("{key} must be a whole number")))
            })
            .transpose()
    };
    let after = number("after")?.unwrap_or(0);
    let limit = match number("limit")? {
        None => PAGE,
        Some(n) if (1..=MAX_PAGE as i64).contains(&n) => n as usize,
        Some(_) => {
            return Err(ApiError::validation(format!(
                "limit must be between 1 and {MAX_PAGE}"
            )));
        }
    };
    let types = types.map(|types| types.into_iter().map(str::to_owned).collect());
    Ok(TrailQuery {
        from,
        to,
        types,
        after,
        limit,
    })
}

#[derive(Serialize, ToSchema)]
struct EventTrail {
    data: Vec<AuditEntry>,
    meta: TrailPage,
}

#[derive(Serialize, ToSchema)]
struct TrailPage {
    /// The `after` of the next page; `null` on the last.
    next: Option<i64>,
}

/// `GET /api/admin/users/:id/events?from&to&type&after&limit`: the trail in order, paged by
/// position (`meta.next` is the `after` of the next page).
#[utoipa::path(
    get,
    path = "/api/admin/users/{id}/events",
    tag = "admin",
    security(("adminToken" = [])),
    params(
        ("id" = String, Path, example = "1", description = "The user's id"),
        ("from" = Option<String>, Query, format = DateTime, description = "Only events recorded at or after this RFC 3339 time"),
        ("to" = Option<String>, Query, format = DateTime, description = "Only events recorded at or before this RFC 3339 time"),
        ("type" = Option<String>, Query, description = "Comma-separated event types: TokenIssued, TokenRotated, TokenRefreshed, RefreshTokenReused, SessionRevoked, SessionsCleared, LoginFailed, UserRegistered, PasswordChanged, UserBlocked, UserUnblocked, UserForgotten, UserImported, PasswordRehashed, PasswordResetRequested, PasswordReset, EmailConfirmationRequested, EmailConfirmed, EmailSent, EmailFailed"),
        ("after" = Option<i64>, Query, description = "Only events after this log position (a page's `meta.next`)"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "Page size, 100 by default"),
    ),
    responses(
        (status = 200, description = "The user's events, oldest first", body = EventTrail),
        (status = 400, description = "An unreadable query, time, number or event type", body = ErrorBody),
        (status = 401, description = "Not the admin token", body = ErrorBody),
        (status = 404, description = "No such user (`User not found`), or no `ADMIN_API_TOKEN` configured", body = ErrorBody),
        ReadUnavailable,
    )
)]
pub async fn events(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    // A forgotten user has no row, but its events remain, their personal fields erased.
    let id = user_id(&state, &req, &path)?;
    if !state.app.known_user(id).await? {
        return Err(Failure::UserNotFound.into());
    }
    let query = trail_query(&query(&req)?)?;
    let Trail { entries, next } = state.app.trail(id, query).await?;
    Ok(HttpResponse::Ok().json(EventTrail {
        data: entries,
        meta: TrailPage { next },
    }))
}

#[derive(Serialize, ToSchema)]
struct SessionsAt {
    data: Vec<SessionSummary>,
    meta: Moment,
}

#[derive(Serialize, ToSchema)]
struct Moment {
    #[schema(format = DateTime)]
    at: String,
    pagination: Pagination,
}

/// `GET /api/admin/users/:id/sessions?at=<time>`: the sessions alive then (default: now), a
/// page at a time as the user's own list.
#[utoipa::path(
    get,
    path = "/api/admin/users/{id}/sessions",
    tag = "admin",
    security(("adminToken" = [])),
    params(
        ("id" = String, Path, example = "1", description = "The user's id"),
        ("at" = Option<String>, Query, format = DateTime, description = "The moment, RFC 3339; now by default"),
        ("pagination[page]" = Option<u64>, Query, minimum = 1, description = "The page, from 1 (the default)"),
        ("pagination[pageSize]" = Option<u64>, Query, minimum = 1, description = "Sessions a page, 25 by default; above 100 it is read as 100"),
    ),
    responses(
        (status = 200, description = "A page of the sessions alive at that moment, replayed from the log, the most recently used first", body = SessionsAt),
        (status = 400, description = "An unreadable query or time, or a page or page size that is not a whole number above 0", body = ErrorBody),
        (status = 401, description = "Not the admin token", body = ErrorBody),
        (status = 404, description = "No such user (`User not found`), or no `ADMIN_API_TOKEN` configured", body = ErrorBody),
        ReadUnavailable,
    )
)]
pub async fn sessions_at(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = user(&state, &req, &path).await?;
    let at = time_parameter(&query(&req)?, "at")?.unwrap_or_else(|| state.app.clock.now());
    let page = PageRequest::of(&req)?;
    let (alive, total) = (state.app)
        .sessions_at(user.id, at, page.skip(), page.take())
        .await?;
    let data = alive.iter().map(|s| SessionSummary::of(s, false)).collect();
    Ok(HttpResponse::Ok().json(SessionsAt {
        data,
        meta: Moment {
            at: at.to_rfc3339(),
            pagination: page.meta(total),
        },
    }))
}

#[derive(Serialize, ToSchema)]
struct ClearedAnswer {
    data: Cleared,
}

#[derive(Serialize, ToSchema)]
struct Cleared {
    /// How many sessions were live.
    cleared: usize,
}

/// `POST /api/admin/users/:id/sessions/clear`: `SessionsCleared{admin}`, with the admin as
/// the recorded actor.
#[utoipa::path(
    post,
    path = "/api/admin/users/{id}/sessions/clear",
    tag = "admin",
    security(("adminToken" = [])),
    params(("id" = String, Path, example = "1", description = "The user's id")),
    responses(
        (status = 200, description = "Every session of the user ended", body = ClearedAnswer),
        (status = 401, description = "Not the admin token", body = ErrorBody),
        (status = 404, description = "No such user (`User not found`), or no `ADMIN_API_TOKEN` configured", body = ErrorBody),
        WriteUnavailable,
    )
)]
pub async fn clear(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = user(&state, &req, &path).await?;
    let live = state
        .app
        .clear_sessions(user.id, caller(&req, &state))
        .await?;
    Ok(HttpResponse::Ok().json(ClearedAnswer {
        data: Cleared { cleared: live },
    }))
}

#[derive(Serialize, ToSchema)]
struct UserAnswer {
    data: PublicUser,
}

/// `POST /api/admin/users/:id/block`: the user is blocked (`UserBlocked`) and every session
/// ends (`SessionsCleared{blocked}`), with the admin as the recorded actor.
#[utoipa::path(
    post,
    path = "/api/admin/users/{id}/block",
    tag = "admin",
    security(("adminToken" = [])),
    params(("id" = String, Path, example = "1", description = "The user's id")),
    responses(
        (status = 200, description = "The user, blocked (already blocked: unchanged, nothing recorded)", body = UserAnswer),
        (status = 401, description = "Not the admin token", body = ErrorBody),
        (status = 404, description = "No such user (`User not found`), or no `ADMIN_API_TOKEN` configured", body = ErrorBody),
        WriteUnavailable,
    )
)]
pub async fn block(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_blocked(&state, &req, &path, true).await
}

/// `POST /api/admin/users/:id/unblock`: the user may log in again (`UserUnblocked`), with the
/// admin as the recorded actor.
#[utoipa::path(
    post,
    path = "/api/admin/users/{id}/unblock",
    tag = "admin",
    security(("adminToken" = [])),
    params(("id" = String, Path, example = "1", description = "The user's id")),
    responses(
        (status = 200, description = "The user, unblocked (not blocked: unchanged, nothing recorded)", body = UserAnswer),
        (status = 401, description = "Not the admin token", body = ErrorBody),
        (status = 404, description = "No such user (`User not found`), or no `ADMIN_API_TOKEN` configured", body = ErrorBody),
        WriteUnavailable,
    )
)]
pub async fn unblock(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_blocked(&state, &req, &path, false).await
}

async fn set_blocked(
    state: &AppState,
    req: &HttpRequest,
    id: &str,
    blocked: bool,
) -> Result<HttpResponse, ApiError> {
    let id = user_id(state, req, id)?;
    let user = (state.app)
        .set_blocked(id, blocked, caller(req, state))
        .await?;
    Ok(HttpResponse::Ok().json(UserAnswer {
        data: PublicUser::of(&user),
    }))
}

#[derive(Serialize, ToSchema)]
struct ForgottenAnswer {
    data: Forgotten,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct Forgotten {
    id: UserId,
    document_id: String,
    /// Always `true`: the row and the data keys are gone.
    forgotten: bool,
    /// How many sessions were live and ended.
    sessions_ended: usize,
}

/// `DELETE /api/admin/users/:id`: the user is forgotten (GDPR Art. 17). The row and every
/// data key of the user are deleted with a `UserForgotten`, and every session ends
/// (`SessionsCleared{forgotten}`): the events stay, and the ledger still verifies, but their
/// personal fields (IP, user agent, device, username, email) read as `erased` from then on;
/// the email and username are free again.
#[utoipa::path(
    delete,
    path = "/api/admin/users/{id}",
    tag = "admin",
    security(("adminToken" = [])),
    params(("id" = String, Path, example = "1", description = "The user's id")),
    responses(
        (status = 200, description = "The user is forgotten", body = ForgottenAnswer),
        (status = 401, description = "Not the admin token", body = ErrorBody),
        (status = 404, description = "No such user (`User not found`, also once forgotten), or no `ADMIN_API_TOKEN` configured", body = ErrorBody),
        WriteUnavailable,
    )
)]
pub async fn forget(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = user_id(&state, &req, &path)?;
    let (user, ended) = state.app.forget(id, caller(&req, &state)).await?;
    Ok(HttpResponse::Ok().json(ForgottenAnswer {
        data: Forgotten {
            id: user.id,
            document_id: user.document_id,
            forgotten: true,
            sessions_ended: ended,
        },
    }))
}
