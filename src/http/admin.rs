//! The admin API, for operators and investigators: finding a user, a user's event trail, the
//! sessions alive at any past moment (replayed from the log), and clearing a user's sessions.
//! Behind `ADMIN_API_TOKEN` (bearer, compared in constant time); without one configured the
//! routes do not exist (404).

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokenledger_domain::{ClearReason, ClearSessions, Command, Event, UserId};
use tokenledger_projections::sessions_alive_at;

use super::errors::ApiError;
use super::sessions::session_json;
use super::users::user_json;
use super::{AppState, RequestContext, bearer};
use crate::audit::AuditEntry;
use crate::store::users::{USERNAME_MAX, User};
use crate::store::{Actor, stream_of};

const PAGE: usize = 100;
const EVENT_TYPES: [&str; 7] = [
    "TokenIssued",
    "TokenRotated",
    "TokenRefreshed",
    "RefreshTokenReused",
    "SessionRevoked",
    "SessionsCleared",
    "LoginFailed",
];
const MAX_PAGE: usize = 1000;
const USERS_PAGE: u32 = 20;
const MAX_USERS_PAGE: u32 = 100;

fn authorize(state: &AppState, req: &HttpRequest) -> Result<(), ApiError> {
    let Some(expected) = &state.config.admin_api_token else {
        return Err(ApiError::not_found());
    };
    let given = bearer(req).unwrap_or_default();
    if bool::from(given.as_bytes().ct_eq(expected.expose().as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::unauthorized("Missing or invalid credentials"))
    }
}

fn query(req: &HttpRequest) -> Result<HashMap<String, String>, ApiError> {
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

/// The user named by the path, after the admin check.
async fn user(state: &AppState, req: &HttpRequest, id: &str) -> Result<User, ApiError> {
    authorize(state, req)?;
    let not_found = || ApiError::not_found_message("User not found");
    let id: UserId = id.parse().map_err(|_| not_found())?;
    state.users.find(id).await?.ok_or_else(not_found)
}

/// `GET /api/admin/users?q=<text>&limit=<n>`: the users an investigator may mean, by a
/// piece of username or email, or by id (see `UserStore::search`), for the audit page's picker.
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
    // One more than asked, to know whether there are more.
    let mut found = state.users.search(text, limit + 1).await?;
    let more = found.len() > limit as usize;
    found.truncate(limit as usize);
    let data: Vec<Value> = found.iter().map(user_json).collect();
    Ok(HttpResponse::Ok().json(json!({
        "data": data,
        "meta": { "q": text, "limit": limit, "more": more }
    })))
}

/// `GET /api/admin/users/:id/events?from&to&type&after&limit`: the trail in order, paged by
/// position (`meta.next` is the `after` of the next page).
pub async fn events(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = user(&state, &req, &path).await?;
    let query = query(&req)?;
    let (from, to) = (
        time_parameter(&query, "from")?,
        time_parameter(&query, "to")?,
    );
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
    let records = state.store.read_stream(&stream_of(user.id), 0).await?;
    let mut selected = Vec::new();
    let mut more = false;
    for record in records.iter().filter(|r| r.position > after) {
        let in_window = from.is_none_or(|f| record.recorded_at >= f)
            && to.is_none_or(|t| record.recorded_at <= t);
        let wanted = types
            .as_ref()
            .is_none_or(|types| types.contains(&record.event_type.as_str()));
        if !(in_window && wanted) {
            continue;
        }
        if selected.len() == limit {
            more = true;
            break;
        }
        selected.push(AuditEntry::of(record)?);
    }
    let next = if more {
        selected.last().map(|e| e.position)
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(json!({ "data": selected, "meta": { "next": next } })))
}

/// `GET /api/admin/users/:id/sessions?at=<time>`: the sessions alive then (default: now).
pub async fn sessions_at(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = user(&state, &req, &path).await?;
    let at = time_parameter(&query(&req)?, "at")?.unwrap_or_else(|| state.clock.now());
    let records = state.store.read_stream(&stream_of(user.id), 0).await?;
    let events: Vec<Event> = records
        .iter()
        .map(|r| {
            r.decode()
                .map_err(|source| crate::store::StoreError::Corrupt {
                    position: r.position,
                    source,
                })
        })
        .collect::<Result<_, _>>()?;
    let alive = sessions_alive_at(user.id, &events, at);
    let data: Vec<Value> = alive.iter().map(|s| session_json(s, false)).collect();
    Ok(HttpResponse::Ok().json(json!({ "data": data, "meta": { "at": at.to_rfc3339() } })))
}

/// `POST /api/admin/users/:id/sessions/clear`: `SessionsCleared{admin}`, with the admin as
/// the recorded actor.
pub async fn clear(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = user(&state, &req, &path).await?;
    let live = state
        .projection
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .sessions_of(user.id, state.clock.now())
        .len();
    let mut ctx = RequestContext::of(&req, &state);
    ctx.metadata.actor = Actor::Admin;
    let command = Command::ClearSessions(ClearSessions {
        reason: ClearReason::Admin,
        device_id: None,
        keep: None,
    });
    state
        .registry
        .execute(user.id, command, ctx.metadata)
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "data": { "cleared": live } })))
}
