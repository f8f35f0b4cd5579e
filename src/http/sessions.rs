//! A user's own sessions: log out (this session, a device, or everywhere), list them, and
//! revoke one — what Strapi 5's session mode, Supabase Auth and Auth0 give their users.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};
use tokenledger_domain::{
    ClearReason, ClearSessions, Command, DomainError, RevokeReason, RevokeSession, Session,
    SessionId, UserId,
};

use super::auth::presented_token;
use super::body::Body;
use super::errors::ApiError;
use super::users::authenticated;
use super::{AppState, RequestContext, bearer, cookies};
use crate::actors::ExecuteError;
use crate::store::users::strapi_time;

/// Who asks to log out, and which session is "this one".
struct LogoutTarget {
    user_id: UserId,
    session_id: SessionId,
    /// Proven by a live session (a valid access token, or the refresh token of a live
    /// session): enough to end other sessions too. A token of an ended session may only end
    /// its own (already ended) session.
    live: bool,
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
    if let Some(token) = refreshing {
        let owned = state
            .projection
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .owns(token.user_id, &token.session_id);
        let live = owned || matches!(bearer_user, Some(Ok(_)));
        return Ok(LogoutTarget {
            user_id: token.user_id,
            session_id: token.session_id,
            live,
        });
    }
    match bearer_user {
        Some(Ok((user, claims))) => Ok(LogoutTarget {
            user_id: user.id,
            session_id: claims.sid,
            live: true,
        }),
        Some(Err(error)) => Err(error),
        None => Err(ApiError::unauthorized("Missing or invalid credentials")),
    }
}

/// `{}` ends the current session, `{"deviceId":…}` that device's sessions, `{"scope":"all"}`
/// every session of the user. Answers `{"ok":true}` and, for cookie clients, expires the cookie.
pub async fn logout(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    enum Scope {
        This,
        Device(String),
        All,
    }
    let scope = match (body.get("scope"), body.get("deviceId")) {
        (Some(Value::String(scope)), _) if scope == "all" => Scope::All,
        (Some(_), _) => {
            return Err(ApiError::validation(
                "scope must be one of the following values: all",
            ));
        }
        (None, Some(Value::String(device))) if !device.is_empty() => Scope::Device(device.clone()),
        (None, Some(_)) => return Err(ApiError::validation("deviceId must be a non-empty string")),
        (None, None) => Scope::This,
    };
    let target = logout_target(&state, &req, &body).await?;
    let clear = |device_id| {
        Command::ClearSessions(ClearSessions {
            reason: ClearReason::Logout,
            device_id,
            keep: None,
        })
    };
    let command = match scope {
        Scope::This => Command::RevokeSession(RevokeSession {
            session_id: target.session_id,
            reason: RevokeReason::Logout,
        }),
        _ if !target.live => return Err(ApiError::unauthorized("Missing or invalid credentials")),
        Scope::Device(device) => clear(Some(device)),
        Scope::All => clear(None),
    };
    let ctx = RequestContext::of(&req, &state);
    match state
        .registry
        .execute(target.user_id, command, ctx.metadata)
        .await
    {
        // Already ended (a second logout, a race with expiry): the outcome is the same.
        Ok(_) | Err(ExecuteError::Refused(DomainError::UnknownSession)) => {}
        Err(other) => return Err(other.into()),
    }
    let mut response = HttpResponse::Ok();
    if cookies::requested(&state, &req) || cookies::token(&state, &req).is_some() {
        response.cookie(cookies::expired(&state));
    }
    Ok(response.json(json!({ "ok": true })))
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

pub(super) fn session_json(session: &Session, current: bool) -> Value {
    json!({
        "id": session.id,
        "deviceId": session.device_id,
        "deviceName": device_name(session.last_user_agent.as_deref()),
        "current": current,
        "loginAt": strapi_time(&session.created_at),
        "lastActiveAt": strapi_time(&session.last_used_at),
        "ip": session.last_ip.as_deref(),
        "userAgent": session.last_user_agent.as_deref(),
        "expiresAt": strapi_time(&session.expires_at()),
    })
}

/// The caller's live sessions: the current one first, then the most recently used.
pub async fn list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let (user, claims) = authenticated(&state, &req).await?;
    let mut sessions = state
        .projection
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .sessions_of(user.id, state.clock.now());
    // Stable: the rest keep their most-recent-first order.
    sessions.sort_by_key(|s| s.id != claims.sid);
    let data: Vec<Value> = sessions
        .iter()
        .map(|s| session_json(s, s.id == claims.sid))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "data": data })))
}

/// Revokes one of the caller's sessions; anything else, another user's included, is 404.
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
        Ok(_) => Ok(HttpResponse::Ok().json(json!({ "data": {} }))),
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
