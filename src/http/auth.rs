//! Register, login, refresh (the plugin's `/api/auth/local/refresh` and Strapi 5's
//! `/api/auth/refresh`) and change-password.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::TimeDelta;
use serde::Serialize;
use serde_json::Value;
use tokenledger_domain::{
    ClearReason, ClearSessions, Command, IssueReason, IssueToken, RecordLoginFailure, RevokeReason,
    RevokeSession, RotateToken, UserId,
};
use utoipa::ToSchema;
use uuid::Uuid;

use super::body::Body;
use super::errors::{ApiError, ErrorBody};
use super::limits::Account;
use super::users::{PublicUser, authenticated};
use super::validation::{Checks, truthy};
use super::{AppState, RequestContext, cookies};
use crate::actors::ExecuteError;
use crate::password::PasswordError;
use crate::rules::{PASSWORD_MAX_BYTES, is_valid_email, rule_violations};
use crate::store::users::{NewUser, User, UserError};
use tokenledger_domain::DomainError;

const REGISTER_FIELDS: [&str; 3] = ["username", "email", "password"];

/// The longest identifier looked up: Strapi's username and email columns hold 255.
const MAX_IDENTIFIER_CHARS: usize = 255;

// The request bodies below describe, for the document, what the handlers read: they read the
// body as a map, to answer each field as Strapi does, so these are never built.

/// Any other field is refused.
#[derive(ToSchema)]
#[allow(dead_code)]
struct RegisterRequest {
    #[schema(min_length = 3, max_length = 255)]
    username: String,
    #[schema(format = Email, min_length = 6, max_length = 255)]
    email: String,
    /// 6 to 72 bytes (bcrypt's limit, kept for Strapi compatibility).
    #[schema(min_length = 6, max_length = 72)]
    password: String,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
struct LoginRequest {
    /// The username or the email.
    #[schema(min_length = 1, max_length = 255)]
    identifier: String,
    #[schema(min_length = 1)]
    password: String,
    /// Read as JavaScript reads it: any truthy value asks for a refresh token.
    request_refresh: Option<bool>,
    /// Names the device; one is made up when it is missing, empty or over 255 bytes.
    device_id: Option<String>,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
struct RefreshRequest {
    /// Else the cookie's is used; neither is a 400.
    refresh_token: Option<String>,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
struct ChangePasswordRequest {
    #[schema(min_length = 1)]
    current_password: String,
    #[schema(min_length = 6, max_length = 72)]
    password: String,
    /// Equal to `password`.
    #[schema(min_length = 1)]
    password_confirmation: String,
}

/// Strapi's answer to a login, a registration or a password change.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct AuthResponse {
    /// The access token, for `Authorization: Bearer`.
    jwt: String,
    user: PublicUser,
    /// When asked for (`requestRefresh`, `requestRefreshOnAll`, a password change) and not
    /// delivered in the cookie.
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct RefreshResponse {
    jwt: String,
    /// The rotated token, when rotation is on and it is not delivered in the cookie.
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
}

/// How a new refresh token reaches the client.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// Not asked for: the session exists, the client just holds no refresh token.
    Withheld,
    Body,
    Cookie,
}

impl Delivery {
    /// `asked`: the body or the configuration asks for a refresh token; Strapi 5's cookie
    /// header asks for one by itself.
    fn of(state: &AppState, req: &HttpRequest, asked: bool) -> Delivery {
        if !(asked || cookies::asked_by_header(req)) {
            Delivery::Withheld
        } else if cookies::requested(state, req) {
            Delivery::Cookie
        } else {
            Delivery::Body
        }
    }
}

/// Starts a session for `user` and answers Strapi's `{jwt, user}`, with the refresh token in
/// the body or a cookie when asked for.
async fn start_session(
    state: &AppState,
    ctx: RequestContext,
    user: &User,
    device_id: Option<String>,
    reason: IssueReason,
    delivery: Delivery,
) -> Result<HttpResponse, ApiError> {
    let session_id = Uuid::now_v7();
    let command = Command::IssueToken(IssueToken {
        session_id,
        device_id: device_id.unwrap_or_else(|| Uuid::now_v7().to_string()),
        token_id: Uuid::now_v7(),
        reason,
        lifetimes: state.lifetimes(),
        max_sessions: state.max_sessions(),
        client: ctx.client,
    });
    let executed = state
        .registry
        .execute(user.id, command, ctx.metadata.clone())
        .await?;
    // The user may have been blocked, or its password changed, while this login was being
    // decided; those clear every session, but this one may have been appended after the
    // clear. Looking again after the append closes that window: whichever runs second sees
    // the other.
    let current = state.users.find(user.id).await?;
    let superseded = match &current {
        Some(now) if now.blocked => Some((RevokeReason::Blocked, blocked_error())),
        Some(now) if now.password_hash != user.password_hash => Some((
            RevokeReason::PasswordChanged,
            ApiError::validation("Invalid identifier or password"),
        )),
        Some(_) => None,
        None => Some((
            RevokeReason::Admin,
            ApiError::unauthorized("Invalid credentials"),
        )),
    };
    if let Some((reason, error)) = superseded {
        let revoke = Command::RevokeSession(RevokeSession { session_id, reason });
        match state.registry.execute(user.id, revoke, ctx.metadata).await {
            // The block's or the change's own clear got there first: ended either way.
            Ok(_) | Err(ExecuteError::Refused(DomainError::UnknownSession)) => {}
            Err(other) => return Err(other.into()),
        }
        return Err(error);
    }
    let now = state.clock.now();
    let mut body = AuthResponse {
        jwt: state.tokens.sign_access(user.id, session_id, now),
        user: PublicUser::of(user),
        refresh_token: None,
    };
    let mut response = HttpResponse::Ok();
    if let (Some(token), Some(session)) = (executed.refresh_token, executed.session) {
        match delivery {
            Delivery::Withheld => {}
            Delivery::Body => body.refresh_token = Some(token),
            Delivery::Cookie => {
                response.cookie(cookies::carrying(
                    state,
                    token,
                    session.token_expires_at - now,
                ));
            }
        }
    }
    Ok(response.json(body))
}

fn blocked_error() -> ApiError {
    ApiError::application("Your account has been blocked by an administrator")
}

fn hashing_failed(error: PasswordError) -> ApiError {
    if let PasswordError::Busy = error {
        return ApiError::busy();
    }
    tracing::error!(%error, "password hashing");
    ApiError::unavailable()
}

/// Strapi's registration: the new user, logged in.
#[utoipa::path(
    post,
    path = "/api/auth/local/register",
    tag = "auth",
    params(("x-strapi-refresh-cookie" = Option<String>, Header, description = "`httpOnly`: a refresh token, in the cookie")),
    request_body(content(
        (RegisterRequest = "application/json"),
        (RegisterRequest = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "Registered and logged in", body = AuthResponse,
            headers(("Set-Cookie" = String, description = "The refresh token, in cookie mode"))),
        (status = 400, description = "A malformed body, an unknown or invalid field (`ValidationError`), or a taken email or username (`ApplicationError`)", body = ErrorBody),
        (status = 401, description = "The user was deleted while its session was being started", body = ErrorBody),
        (status = 403, description = "Cookie mode: a cross-site request (`Origin` not allowed)", body = ErrorBody),
        (status = 408, description = "The body was not received in time", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 429, description = "Too many attempts from this address (for this email, or for any)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "The store could not take the write; try again", body = ErrorBody),
    )
)]
pub async fn register(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    cookies::refuse_cross_site(&state, &req)?;
    let unknown: Vec<&str> = body
        .0
        .keys()
        .map(String::as_str)
        .filter(|k| !REGISTER_FIELDS.contains(k))
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::validation(format!(
            "Invalid parameters: {}",
            unknown.join(", ")
        )));
    }
    // First yup's schema, all fields at once …
    let mut checks = Checks::default();
    let email = checks.string(&body, "email", false);
    if let Some(email) = email {
        checks.require(
            is_valid_email(email),
            "email",
            "email must be a valid email",
            Some(email),
        );
    }
    let username = checks.string(&body, "username", false);
    let password = checks.string(&body, "password", true);
    if let Some(password) = password {
        let fits = password.len() <= PASSWORD_MAX_BYTES;
        checks.require(
            fits,
            "password",
            "Password must be less than 73 bytes",
            None,
        );
    }
    checks.finish()?;
    let (Some(email), Some(username), Some(password)) = (email, username, password) else {
        unreachable!("finish() fails when a field is missing");
    };
    // … then the lengths Strapi checks when saving, as a separate stage.
    let mut lengths = Checks::default();
    for (field, message) in rule_violations(username, email, password) {
        let echo = if field == "password" {
            None
        } else {
            body.get(field)
        };
        lengths.fail(field, message, echo);
    }
    lengths.finish()?;
    let ctx = RequestContext::of(&req, &state);
    state.limits.check_login(ctx.ip, email)?;

    let password_hash = state
        .passwords
        .hash(password.to_owned())
        .await
        .map_err(hashing_failed)?;
    let new_user = NewUser {
        username: username.to_owned(),
        email: email.to_owned(),
        password_hash,
    };
    let user = state.users.create(new_user, state.clock.now()).await?;
    let delivery = Delivery::of(&state, &req, state.config.request_refresh_on_all);
    start_session(&state, ctx, &user, None, IssueReason::Register, delivery).await
}

/// Strapi's login.
#[utoipa::path(
    post,
    path = "/api/auth/local",
    tag = "auth",
    params(("x-strapi-refresh-cookie" = Option<String>, Header, description = "`httpOnly`: a refresh token, in the cookie")),
    request_body(content(
        (LoginRequest = "application/json"),
        (LoginRequest = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "Logged in", body = AuthResponse,
            headers(("Set-Cookie" = String, description = "The refresh token, in cookie mode"))),
        (status = 400, description = "A malformed body, a missing field or an identifier over 255 characters, `Invalid identifier or password` (`ValidationError`), or a blocked account (`ApplicationError`)", body = ErrorBody),
        (status = 401, description = "The user was deleted while its session was being started", body = ErrorBody),
        (status = 403, description = "Cookie mode: a cross-site request (`Origin` not allowed)", body = ErrorBody),
        (status = 408, description = "The body was not received in time", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 429, description = "Too many attempts from this address (for this identifier, or for any), or too many failed logins of this account from anywhere", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "The store could not take the write, or too many logins wait for a password check; try again", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait, when too many logins wait"))),
    )
)]
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    cookies::refuse_cross_site(&state, &req)?;
    let ctx = RequestContext::of(&req, &state);
    // Bounded before any limiter sees it: Strapi's columns hold 255 characters, and no
    // identifier longer than that names anyone.
    let identifier = body.get("identifier").and_then(Value::as_str);
    if identifier.is_some_and(|i| i.chars().count() > MAX_IDENTIFIER_CHARS) {
        return Err(ApiError::validation(format!(
            "identifier must be at most {MAX_IDENTIFIER_CHARS} characters"
        )));
    }
    // Every attempt counts against the limits, malformed ones too, as Strapi counts them.
    state.limits.check_login(ctx.ip, identifier.unwrap_or(""))?;
    let mut checks = Checks::default();
    let identifier = checks.string(&body, "identifier", false);
    let password = checks.string(&body, "password", true);
    checks.finish()?;
    let (Some(identifier), Some(password)) = (identifier, password) else {
        unreachable!("finish() fails when a field is missing");
    };
    let user = state.users.find_by_identifier(identifier).await?;
    let account = user
        .as_ref()
        .map_or_else(|| Account::unknown(identifier), |u| Account::user(u.id));
    state.limits.check_account(account)?;
    let hash = user.as_ref().and_then(|u| u.password_hash.clone());
    let matches = state
        .passwords
        .verify(password.to_owned(), hash)
        .await
        .map_err(hashing_failed)?;
    if !matches {
        state.limits.count_failure(account);
    }
    let user = match user {
        Some(user) if matches => user,
        // A wrong password and an unknown user answer alike and at once: the failure is
        // recorded after the answer, so no durable write tells them apart by timing.
        Some(user) => {
            record_failure(&state, user.id, ctx);
            return Err(ApiError::validation("Invalid identifier or password"));
        }
        None => return Err(ApiError::validation("Invalid identifier or password")),
    };
    if user.blocked {
        return Err(blocked_error());
    }
    let device_id = body
        .get("deviceId")
        .and_then(Value::as_str)
        .filter(|d| !d.is_empty() && d.len() <= 255)
        .map(str::to_owned);
    let asked = truthy(body.get("requestRefresh")) || state.config.request_refresh_on_all;
    let delivery = Delivery::of(&state, &req, asked);
    start_session(&state, ctx, &user, device_id, IssueReason::Login, delivery).await
}

/// A wrong password for an existing user goes on its record. It is handed to the user's
/// actor now (so it keeps its place before the user's next command) and recorded after the
/// answer: an unknown user has nothing to record, and waiting for the write would tell the
/// two apart by timing.
fn record_failure(state: &AppState, user_id: UserId, ctx: RequestContext) {
    let command = Command::RecordLoginFailure(RecordLoginFailure {
        client: ctx.client,
        failed_at: state.clock.now(),
    });
    state.registry.submit(user_id, command, ctx.metadata);
}

/// A genuine but expired refresh token whose session has expired too: the session's end goes
/// on record (`SessionRevoked{expired}`) on the first refresh that finds it, as an idle expiry
/// does in the aggregate. The answer stays 401 whatever happens here.
async fn record_expiry(state: &AppState, req: &HttpRequest, token: &str) {
    let now = state.clock.now();
    let Some(presented) = state.tokens.expired_refresh(token, now) else {
        return;
    };
    let expired = state
        .projection
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(presented.user_id, &presented.session_id)
        .is_some_and(|view| view.user_id == presented.user_id && view.session.is_expired(now));
    if expired {
        let mut ctx = RequestContext::of(req, state);
        // The clock ended this session; the request only found out.
        ctx.metadata.actor = crate::store::Actor::System;
        let command = Command::RevokeSession(RevokeSession {
            session_id: presented.session_id,
            reason: RevokeReason::Expired,
        });
        if let Err(error) = state
            .registry
            .execute(presented.user_id, command, ctx.metadata)
            .await
        {
            tracing::warn!(%error, "could not record a session's expiry");
        }
    }
}

fn invalid_refresh_token() -> ApiError {
    ApiError::unauthorized("Invalid refresh token")
}

/// The refresh token of a request: the body's `refreshToken`, else the cookie's.
pub fn presented_token(state: &AppState, req: &HttpRequest, body: &Body) -> Option<(String, bool)> {
    match body.get("refreshToken") {
        Some(Value::String(token)) if !token.is_empty() => Some((token.clone(), false)),
        _ => cookies::token(state, req).map(|token| (token, true)),
    }
}

/// The two refresh routes, the plugin's and Strapi 5's, with one meaning and one document:
/// utoipa takes one path a handler, so the handler is written once and named twice.
macro_rules! refresh_route {
    ($(#[$doc:meta])* $name:ident, $path:literal) => {
        $(#[$doc])*
        #[utoipa::path(
            post,
            path = $path,
            tag = "auth",
            security((), ("refreshCookie" = [])),
            params(("x-strapi-refresh-cookie" = Option<String>, Header, description = "`httpOnly`: the rotated token, in the cookie")),
            request_body(content(
                (Option<RefreshRequest> = "application/json"),
                (Option<RefreshRequest> = "application/x-www-form-urlencoded"),
            )),
            responses(
                (status = 200, description = "A new access token (and the rotated refresh token)", body = RefreshResponse,
                    headers(("Set-Cookie" = String, description = "The rotated refresh token, in cookie mode"))),
                (status = 400, description = "A malformed body (`ValidationError`), or `Missing refresh token` (`BadRequestError`)", body = ErrorBody),
                (status = 401, description = "`Invalid refresh token`: forged, expired, reused, or of an ended session or a blocked user", body = ErrorBody),
                (status = 403, description = "Cookie mode: a cross-site request (`Origin` not allowed)", body = ErrorBody),
                (status = 408, description = "The body was not received in time", body = ErrorBody),
                (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
                (status = 429, description = "Too many refreshes of this session", body = ErrorBody,
                    headers(("Retry-After" = u64, description = "Seconds to wait"))),
                (status = 503, description = "The store could not take the write; try again", body = ErrorBody),
            )
        )]
        pub async fn $name(
            state: web::Data<AppState>,
            req: HttpRequest,
            body: Body,
        ) -> Result<HttpResponse, ApiError> {
            rotate(&state, &req, &body).await
        }
    };
}

refresh_route!(
    /// The refresh-token plugin's refresh.
    refresh,
    "/api/auth/local/refresh"
);
refresh_route!(
    /// Strapi 5's session refresh: the same as the plugin's.
    refresh_session,
    "/api/auth/refresh"
);

async fn rotate(
    state: &AppState,
    req: &HttpRequest,
    body: &Body,
) -> Result<HttpResponse, ApiError> {
    cookies::refuse_cross_site(state, req)?;
    let (token, from_cookie) = presented_token(state, req, body)
        .ok_or_else(|| ApiError::bad_request("Missing refresh token"))?;
    let now = state.clock.now();
    let presented = match state.tokens.verify_refresh(&token, now) {
        Ok(presented) => presented,
        Err(_) => {
            record_expiry(state, req, &token).await;
            return Err(invalid_refresh_token());
        }
    };
    // Unknown, ended, expired or someone else's sessions are turned away here, without an
    // actor (expired ones go on to record their end).
    let owned = state
        .projection
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .owns(presented.user_id, &presented.session_id);
    let known = owned
        || state
            .session_is_live(presented.user_id, &presented.session_id)
            .await?;
    if !known {
        return Err(invalid_refresh_token());
    }
    // `tokenledger user block` ends the sessions itself, but a row deleted or blocked
    // straight in the users table (as Strapi's admin panel does) must end them too.
    match state.users.find(presented.user_id).await? {
        Some(user) if !user.blocked => {}
        _ => return Err(invalid_refresh_token()),
    }
    state.limits.check_refresh(presented.session_id)?;
    let (user_id, session_id) = (presented.user_id, presented.session_id);
    let ctx = RequestContext::of(req, state);
    let command = Command::RotateToken(RotateToken {
        presented,
        rotation: state.config.refresh_token_rotation,
        successor_id: Uuid::now_v7(),
        reuse_grace: state.config.refresh_token_reuse_grace,
        lifetimes: state.lifetimes(),
        client: ctx.client,
    });
    let executed = match state.registry.execute(user_id, command, ctx.metadata).await {
        Ok(executed) => executed,
        Err(ExecuteError::Refused(_)) => return Err(invalid_refresh_token()),
        Err(other) => return Err(other.into()),
    };
    let Some(session) = executed.session else {
        return Err(invalid_refresh_token());
    };
    let jwt = state.tokens.sign_access(user_id, session_id, now);
    // A token from the body next to a cookie may be someone else's (a cross-site form that
    // posts the attacker's token with the victim's cookie): its successor never replaces
    // the cookie, it goes back in the body it came from.
    let into_cookie =
        from_cookie || (cookies::requested(state, req) && cookies::token(state, req).is_none());
    let mut response = HttpResponse::Ok();
    let body = match executed.refresh_token {
        Some(successor) if into_cookie => {
            let lifetime: TimeDelta = session.token_expires_at - now;
            response.cookie(cookies::carrying(state, successor, lifetime));
            RefreshResponse {
                jwt,
                refresh_token: None,
            }
        }
        Some(successor) => RefreshResponse {
            jwt,
            refresh_token: Some(successor),
        },
        None => RefreshResponse {
            jwt,
            refresh_token: None,
        },
    };
    Ok(response.json(body))
}

/// Strapi's change-password: every session ends (`SessionsCleared{password_changed}`), and
/// the caller gets a fresh session on the same device.
#[utoipa::path(
    post,
    path = "/api/auth/change-password",
    tag = "auth",
    security(("bearerAuth" = [])),
    params(("x-strapi-refresh-cookie" = Option<String>, Header, description = "`httpOnly`: the new refresh token, in the cookie")),
    request_body(content(
        (ChangePasswordRequest = "application/json"),
        (ChangePasswordRequest = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "Changed: every other session ended; a fresh one with its refresh token", body = AuthResponse,
            headers(("Set-Cookie" = String, description = "The refresh token, in cookie mode"))),
        (status = 400, description = "A malformed body, a missing or invalid field, a wrong current password, or an unchanged one", body = ErrorBody),
        (status = 401, description = "No access token, or one that is invalid, expired or of an ended session", body = ErrorBody),
        (status = 403, description = "Cookie mode: a cross-site request (`Origin` not allowed)", body = ErrorBody),
        (status = 408, description = "The body was not received in time", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 429, description = "Too many attempts from this address, or too many failed password checks of this user", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "The store could not take the write; try again", body = ErrorBody),
    )
)]
pub async fn change_password(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    cookies::refuse_cross_site(&state, &req)?;
    let (user, claims) = authenticated(&state, &req).await?;
    let mut checks = Checks::default();
    let current = checks.string(&body, "currentPassword", true);
    let password = checks.string(&body, "password", true);
    let confirmation = checks.string(&body, "passwordConfirmation", true);
    if let (Some(password), Some(confirmation)) = (password, confirmation) {
        checks.require(
            password == confirmation,
            "passwordConfirmation",
            "Passwords do not match",
            None,
        );
    }
    checks.finish()?;
    let (Some(current), Some(password)) = (current, password) else {
        unreachable!("finish() fails when a field is missing");
    };
    // A stolen access token must not allow unlimited, unrecorded password guessing.
    let ctx = RequestContext::of(&req, &state);
    state.limits.check_login(ctx.ip, &user.email)?;
    let account = Account::user(user.id);
    state.limits.check_account(account)?;
    let matches = state
        .passwords
        .verify(current.to_owned(), user.password_hash.clone())
        .await
        .map_err(hashing_failed)?;
    if !matches {
        state.limits.count_failure(account);
        record_failure(&state, user.id, ctx);
        return Err(ApiError::validation(
            "The provided current password is invalid",
        ));
    }
    if current == password {
        return Err(ApiError::validation(
            "Your new password must be different than your current password",
        ));
    }
    let mut rules = Checks::default();
    for (field, message) in rule_violations(&user.username, &user.email, password) {
        if field == "password" {
            rules.fail(field, message, None);
        }
    }
    rules.finish()?;

    let hash = state
        .passwords
        .hash(password.to_owned())
        .await
        .map_err(hashing_failed)?;
    // Compare-and-set: of two changes made with the same current password, one wins.
    let previous = user.password_hash.as_deref().unwrap_or_default();
    let user = match state
        .users
        .set_password(user.id, previous, &hash, state.clock.now())
        .await
    {
        Err(UserError::NotFound) => {
            return Err(ApiError::validation(
                "The provided current password is invalid",
            ));
        }
        other => other?,
    };
    let device_id = state
        .projection
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(user.id, &claims.sid)
        .map(|view| view.session.device_id);
    let clear = Command::ClearSessions(ClearSessions {
        reason: ClearReason::PasswordChanged,
        device_id: None,
        keep: None,
    });
    state
        .registry
        .execute(user.id, clear, ctx.metadata.clone())
        .await?;
    let delivery = if cookies::requested(&state, &req) {
        Delivery::Cookie
    } else {
        Delivery::Body
    };
    start_session(
        &state,
        ctx,
        &user,
        device_id,
        IssueReason::PasswordChange,
        delivery,
    )
    .await
}
