//! A user's own sessions: log out (this session, a device, or everywhere), list them, and
//! revoke one — what Strapi 5's session mode, Supabase Auth and Auth0 give their users.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use tokenledger_domain::{Session, SessionId};
use utoipa::ToSchema;

use super::auth::{cookie_first, presented_token};
use super::body::Body;
use super::errors::{ApiError, BearerBodyRefusals, ErrorBody, ReadUnavailable, WriteUnavailable};
use super::forms::LogoutRequest;
use super::pagination::{PageMeta, PageRequest};
use super::{AppState, bearer, caller, cookies};
use crate::store::users::strapi_time;
use crate::use_cases::{Failure, LogoutInput};

#[derive(Serialize, ToSchema)]
struct LoggedOut {
    /// Always `true`.
    ok: bool,
}

/// `{}` ends the current session, `{"deviceId":…}` that device's sessions, `{"scope":"all"}`
/// every session of the user. Answers `{"ok":true}` and, for cookie clients, expires the cookie.
#[utoipa::path(
    post,
    path = "/api/auth/logout",
    tag = "sessions",
    security(("bearerAuth" = []), ("refreshCookie" = []), ()),
    params(("x-strapi-refresh-cookie" = Option<String>, Header, description = "`httpOnly`: expire the refresh cookie too")),
    request_body(description = "`{}` for this session; a refresh token (here or in the cookie) names the session when there is no access token (with `JWT_MANAGEMENT=refresh` the access token is required, and a valid refresh token names the session to end)", content(
        (Option<LogoutRequest> = "application/json"),
        (Option<LogoutRequest> = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "Logged out (also when the session had already ended)", body = LoggedOut,
            headers(("Set-Cookie" = String, description = "Expires the refresh cookie, for cookie clients"))),
        (status = 400, description = "A malformed body, `scope` other than `all`, or an empty `deviceId`", body = ErrorBody),
        (status = 401, description = "An access token that is invalid, expired or of an ended session, and no usable refresh token; a token of an ended session asking to end others; or `Invalid refresh token`: a superseded refresh token (reuse: its session ends). With `JWT_MANAGEMENT=refresh`: an invalid access token", body = ErrorBody),
        BearerBodyRefusals,
        WriteUnavailable,
    )
)]
pub async fn logout(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    cookies::refuse_cross_site(&state, &req)?;
    let (scope, from_body) = LogoutRequest::parse(&body)?.into_parts();
    let refresh_mode = state.config.sessions.refresh_mode();
    // Strapi's refresh mode reads the cookie first (users-permissions dist/server/controllers/
    // auth.js:111); the plugin's rules, the body's.
    let presented = if refresh_mode {
        cookie_first(&state, &req, from_body)
    } else {
        presented_token(&state, &req, from_body)
    };
    let request = LogoutInput {
        scope,
        access_token: bearer(&req).map(str::to_owned),
        refresh_token: presented.map(|(token, _)| token),
    };
    let caller = caller(&req, &state);
    if refresh_mode {
        state.app.logout_with_bearer(request, caller).await?;
    } else {
        state.app.logout(request, caller).await?;
    }
    let mut response = HttpResponse::Ok();
    if cookies::requested(&state, &req) || cookies::token(&state, &req).is_some() {
        response.cookie(cookies::expired(&state));
    }
    Ok(response.json(LoggedOut { ok: true }))
}

/// A short, human name for the device behind a user agent: "Firefox on Linux".
fn device_name(user_agent: Option<&str>) -> Option<String> {
    let ua = user_agent?;
    let browser = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
        ("okhttp", "Android app"),
        ("CFNetwork", "iOS app"),
    ]
    .iter()
    .find(|(marker, _)| ua.contains(marker))
    .map(|(_, name)| *name);
    let system = [
        ("Android", "Android"),
        ("iPhone", "iOS"),
        ("iPad", "iPadOS"),
        ("Mac OS X", "macOS"),
        ("Windows", "Windows"),
        ("CrOS", "ChromeOS"),
        ("Linux", "Linux"),
    ]
    .iter()
    .find(|(marker, _)| ua.contains(marker))
    .map(|(_, name)| *name);
    match (browser, system) {
        (Some(b), Some(s)) => Some(format!("{b} on {s}")),
        (Some(b), None) => Some(b.to_owned()),
        (None, Some(s)) => Some(s.to_owned()),
        (None, None) => None,
    }
}

/// One session, as its user (or an admin) sees it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct SessionSummary {
    #[schema(value_type = String, format = Uuid)]
    id: SessionId,
    device_id: String,
    /// "Firefox on Linux", from the last user agent.
    device_name: Option<String>,
    /// Whether it is the session of the access token asking (always `false` for an admin).
    current: bool,
    #[schema(format = DateTime)]
    login_at: String,
    #[schema(format = DateTime)]
    last_active_at: String,
    ip: Option<String>,
    user_agent: Option<String>,
    #[schema(format = DateTime)]
    expires_at: String,
}

impl SessionSummary {
    pub(super) fn of(session: &Session, current: bool) -> SessionSummary {
        SessionSummary {
            id: session.id,
            device_id: session.device_id.to_string(),
            device_name: device_name(session.last_user_agent.as_deref()),
            current,
            login_at: strapi_time(&session.created_at.to_timestamp()),
            last_active_at: strapi_time(&session.last_used_at.to_timestamp()),
            ip: session.last_ip.as_deref().map(str::to_owned),
            user_agent: session.last_user_agent.as_deref().map(str::to_owned),
            expires_at: strapi_time(&session.expires_at()),
        }
    }
}

/// One page of sessions, in Strapi's list shape.
#[derive(Serialize, ToSchema)]
struct SessionList {
    data: Vec<SessionSummary>,
    meta: PageMeta,
}

/// The caller's live sessions, a page at a time: the current one first, then the most
/// recently used.
#[utoipa::path(
    get,
    path = "/api/auth/sessions",
    tag = "sessions",
    security(("bearerAuth" = [])),
    params(
        ("pagination[page]" = Option<u64>, Query, minimum = 1, description = "The page, from 1 (the default)"),
        ("pagination[pageSize]" = Option<u64>, Query, minimum = 1, description = "Sessions a page, 25 by default; above 100 it is read as 100 (Strapi's `maxLimit`)"),
    ),
    responses(
        (status = 200, description = "A page of the live sessions, the current one first on page 1", body = SessionList),
        (status = 400, description = "A `pagination[page]` or `pagination[pageSize]` that is not a whole number above 0, or an unreadable query", body = ErrorBody),
        (status = 401, description = "An access token that is invalid, expired or of an ended session", body = ErrorBody),
        (status = 403, description = "No access token: `Forbidden` (`ForbiddenError`), as Strapi answers its public role", body = ErrorBody),
        ReadUnavailable,
    )
)]
pub async fn list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let (user, claims) = state.app.authenticate(bearer(&req)).await?;
    let page = PageRequest::of(&req)?;
    let (sessions, total) = state
        .app
        .sessions_of(user.id, claims.sid, page.skip(), page.take());
    let data = sessions
        .iter()
        .map(|s| SessionSummary::of(s, s.id == claims.sid))
        .collect();
    Ok(HttpResponse::Ok().json(SessionList {
        data,
        meta: PageMeta {
            pagination: page.meta(total),
        },
    }))
}

/// `{"data":{}}`, as Strapi answers a delete.
#[derive(Serialize, ToSchema)]
struct Revoked {
    #[schema(value_type = Object)]
    data: Empty,
}

#[derive(Serialize)]
struct Empty {}

/// Revokes one of the caller's sessions; anything else, another user's included, is 404.
#[utoipa::path(
    delete,
    path = "/api/auth/sessions/{id}",
    tag = "sessions",
    security(("bearerAuth" = [])),
    params(("id" = String, Path, description = "The session's `id`, as the session list shows it")),
    responses(
        (status = 200, description = "Revoked", body = Revoked),
        (status = 401, description = "An access token that is invalid, expired or of an ended session", body = ErrorBody),
        (status = 403, description = "No access token: `Forbidden` (`ForbiddenError`), as Strapi answers its public role", body = ErrorBody),
        (status = 404, description = "`Session not found`: no live session of the caller has this id", body = ErrorBody),
        WriteUnavailable,
    )
)]
pub async fn revoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (user, _) = state.app.authenticate(bearer(&req)).await?;
    // Not an id: no session of the caller's, as any other id.
    let session_id: SessionId = path
        .parse()
        .map_err(|_| ApiError::from(Failure::SessionNotFound))?;
    let caller = caller(&req, &state);
    state
        .app
        .revoke_session(user.id, session_id, caller)
        .await?;
    Ok(HttpResponse::Ok().json(Revoked { data: Empty {} }))
}

#[cfg(test)]
mod tests {
    use super::device_name;

    #[test]
    fn device_names_read_well() {
        let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
        assert_eq!(
            device_name(Some(firefox)).as_deref(),
            Some("Firefox on Linux")
        );
        let safari = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Version/17.0 Mobile/15E148 Safari/604.1";
        assert_eq!(device_name(Some(safari)).as_deref(), Some("Safari on iOS"));
        assert_eq!(device_name(Some("curl/8.5.0")).as_deref(), Some("curl"));
        assert_eq!(device_name(Some("something")), None);
        assert_eq!(device_name(None), None);
    }
}
