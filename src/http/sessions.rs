//! A user's own sessions: log out (this session, a device, or everywhere), list them, and
//! revoke one — what Strapi 5's session mode, Supabase Auth and Auth0 give their users.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use serde_json::Value;
use tokenledger_domain::{
    Command, DomainError, Logout, LogoutScope, PresentedToken, RevokeReason, RevokeSession,
    Session, SessionId, UserId,
};
use utoipa::ToSchema;

use super::auth::presented_token;
use super::body::Body;
use super::errors::{ApiError, ErrorBody};
use super::pagination::{PageMeta, PageRequest};
use super::users::authenticated;
use super::{AppState, RequestContext, bearer, cookies};
use crate::actors::ExecuteError;
use crate::store::users::strapi_time;

/// Who asks to log out, and with what.
struct LogoutTarget {
    user_id: UserId,
    /// "This" session: the refresh token's, else the access token's.
    session_id: SessionId,
    /// The refresh token that names the session, checked by the user's actor as a refresh
    /// is: a superseded one is reuse, never a licence to end sessions.
    presented: Option<PresentedToken>,
    /// A valid access token of a live session came with the request.
    bearer: bool,
}

/// As Strapi 5: the refresh token (body, then cookie) names the session when it is there —
/// a browser whose access token lapsed can still log out — else the bearer access token's.
async fn logout_target(
    state: &AppState,
    req: &HttpRequest,
    body: &Body,
) -> Result<LogoutTarget, ApiError> {
    let bearer_user = match bearer(req) {
        Some(_) => Some(authenticated(state, req).await),
        None => None,
    };
    let now = state.clock.now();
    let refreshing = presented_token(state, req, body)
        .and_then(|(token, _)| state.tokens.verify_refresh(&token, now).ok())
        .filter(|token| match &bearer_user {
            // Another user's refresh token next to this user's access token is ignored.
            Some(Ok((user, _))) => user.id == token.user_id,
            _ => true,
        });
    let bearer = matches!(bearer_user, Some(Ok(_)));
    if let Some(token) = refreshing {
        return Ok(LogoutTarget {
            user_id: token.user_id,
            session_id: token.session_id,
            presented: Some(token),
            bearer,
        });
    }
    match bearer_user {
        Some(Ok((user, claims))) => Ok(LogoutTarget {
            user_id: user.id,
            session_id: claims.sid,
            presented: None,
            bearer,
        }),
        Some(Err(error)) => Err(error),
        None => Err(ApiError::unauthorized("Missing or invalid credentials")),
    }
}

/// The body logout reads, for the document: the handler reads it as a map, to answer each
/// field as Strapi does.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
struct LogoutRequest {
    /// `all` ends every session of the user.
    #[schema(pattern = "^all$", nullable = false)]
    scope: Option<String>,
    /// Ends that device's sessions.
    #[schema(min_length = 1, nullable = false)]
    device_id: Option<String>,
    /// Names "this" session when the access token has lapsed (else the cookie's).
    refresh_token: Option<String>,
}

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
    request_body(description = "`{}` for this session; a refresh token (here or in the cookie) names the session when there is no access token", content(
        (Option<LogoutRequest> = "application/json"),
        (Option<LogoutRequest> = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "Logged out (also when the session had already ended)", body = LoggedOut,
            headers(("Set-Cookie" = String, description = "Expires the refresh cookie, for cookie clients"))),
        (status = 400, description = "A malformed body, `scope` other than `all`, or an empty `deviceId`", body = ErrorBody),
        (status = 401, description = "Neither a valid access token nor a refresh token; a token of an ended session asking to end others; or `Invalid refresh token`: a superseded refresh token (reuse: its session ends)", body = ErrorBody),
        (status = 403, description = "Cookie mode: a cross-site request (`Origin` not allowed)", body = ErrorBody),
        (status = 408, description = "The body was not received in time", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 503, description = "The store could not take the write; try again", body = ErrorBody),
    )
)]
pub async fn logout(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    cookies::refuse_cross_site(&state, &req)?;
    enum Scope {
        This,
        Device(String),
        All,
    }
    // Checked whatever the scope, as the document describes the field: a malformed one is an
    // error, not silently ignored because `scope` wins.
    let device = match body.get("deviceId") {
        None => None,
        Some(Value::String(device)) if !device.is_empty() => Some(device.clone()),
        Some(_) => return Err(ApiError::validation("deviceId must be a non-empty string")),
    };
    let scope = match (body.get("scope"), device) {
        (Some(Value::String(scope)), _) if scope == "all" => Scope::All,
        (Some(_), _) => {
            return Err(ApiError::validation(
                "scope must be one of the following values: all",
            ));
        }
        (None, Some(device)) => Scope::Device(device),
        (None, None) => Scope::This,
    };
    let target = logout_target(&state, &req, &body).await?;
    let scope = match scope {
        Scope::This => LogoutScope::Session(target.session_id),
        Scope::Device(device) => LogoutScope::Device(device),
        Scope::All => LogoutScope::All,
    };
    let ctx = RequestContext::of(&req, &state);
    let logout = |presented| {
        Command::Logout(Logout {
            scope: scope.clone(),
            presented,
            reuse_grace: state.config.tokens.refresh_token_reuse_grace,
            client: ctx.client.clone(),
        })
    };
    let ended = match state
        .registry
        .execute(
            target.user_id,
            logout(target.presented.clone()),
            ctx.metadata.clone(),
        )
        .await
    {
        Ok(executed) if executed.reuse_detected => {
            return Err(ApiError::unauthorized("Invalid refresh token"));
        }
        Ok(_) => true,
        Err(ExecuteError::Refused(DomainError::UnknownSession)) => false,
        Err(ExecuteError::Refused(_)) => {
            return Err(ApiError::unauthorized("Invalid refresh token"));
        }
        Err(other) => return Err(other.into()),
    };
    if !ended {
        match scope {
            // Already ended (a second logout, a race with expiry): the outcome is the same.
            LogoutScope::Session(_) => {}
            // The refresh token's session has ended; a valid access token still speaks for
            // the user. Without one, an ended session's token may end no other.
            _ if target.bearer => {
                match state
                    .registry
                    .execute(target.user_id, logout(None), ctx.metadata)
                    .await
                {
                    Ok(_) | Err(ExecuteError::Refused(DomainError::UnknownSession)) => {}
                    Err(other) => return Err(other.into()),
                }
            }
            _ => return Err(ApiError::unauthorized("Missing or invalid credentials")),
        }
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
            device_id: session.device_id.clone(),
            device_name: device_name(session.last_user_agent.as_deref()),
            current,
            login_at: strapi_time(&session.created_at),
            last_active_at: strapi_time(&session.last_used_at),
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
        (status = 401, description = "No access token, or one that is invalid, expired or of an ended session", body = ErrorBody),
        (status = 503, description = "The store could not be read; try again", body = ErrorBody),
    )
)]
pub async fn list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let (user, claims) = authenticated(&state, &req).await?;
    let page = PageRequest::of(&req)?;
    let (sessions, total) = state
        .projection
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .page_of(
            user.id,
            state.clock.now(),
            Some(claims.sid),
            page.skip(),
            page.take(),
        );
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
        (status = 401, description = "No access token, or one that is invalid, expired or of an ended session", body = ErrorBody),
        (status = 404, description = "`Session not found`: no live session of the caller has this id", body = ErrorBody),
        (status = 503, description = "The store could not take the write; try again", body = ErrorBody),
    )
)]
pub async fn revoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (user, _) = authenticated(&state, &req).await?;
    let not_found = || ApiError::not_found_message("Session not found");
    let session_id: SessionId = path.parse().map_err(|_| not_found())?;
    let live = state
        .projection
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .is_live(user.id, &session_id, state.clock.now());
    if !live {
        return Err(not_found());
    }
    let ctx = RequestContext::of(&req, &state);
    let command = Command::RevokeSession(RevokeSession {
        session_id,
        reason: RevokeReason::UserRevoked,
    });
    match state.registry.execute(user.id, command, ctx.metadata).await {
        Ok(_) => Ok(HttpResponse::Ok().json(Revoked { data: Empty {} })),
        Err(ExecuteError::Refused(_)) => Err(not_found()),
        Err(other) => Err(other.into()),
    }
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
