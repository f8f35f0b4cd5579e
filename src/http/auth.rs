//! Register, login, refresh (the plugin's `/api/auth/local/refresh` and Strapi 5's
//! `/api/auth/refresh`) and change-password: each parses its body, calls its use case, and
//! shapes Strapi's answer (the refresh token in the body or a cookie).

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::body::Body;
use super::context::{bearer, caller};
use super::errors::{
    ApiError, BearerBodyRefusals, BodyRefusals, ErrorBody, ReadUnavailable, WriteUnavailable,
};
use super::forms::{
    ChangePasswordRequest, EmailRequest, LoginRequest, RefreshRequest, RegisterRequest,
    ResetPasswordRequest,
};
use super::public_user::PublicUser;
use super::{AppState, cookies};
use crate::use_cases::{RefreshDelivery, Registered, Started};

/// Strapi's answer to a login, a registration or a password change.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct AuthResponse {
    /// The access token, for `Authorization: Bearer`.
    jwt: String,
    user: PublicUser,
    /// When asked for (`requestRefresh`, `requestRefreshOnAll`, a password change; with
    /// `JWT_MANAGEMENT=refresh` every login) and not delivered in the cookie; with
    /// `JWT_MANAGEMENT=refresh`, a registration's and a password change's always.
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct RefreshResponse {
    jwt: String,
    /// The rotated token, when rotation is on (with `JWT_MANAGEMENT=refresh`, always on
    /// `/api/auth/refresh`) and it is not delivered in the cookie.
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
    /// Strapi 5's refresh mode answers registrations and password changes with the token
    /// in the body whatever the cookie settings (users-permissions dist/server/controllers/
    /// auth.js:92-96 and 590-594); a client that asked for the cookie gets it there too, or
    /// its next refresh would find none.
    BodyAndCookie,
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

    /// Registration and password change in refresh mode: always in the body.
    fn always_in_body(state: &AppState, req: &HttpRequest) -> Delivery {
        if cookies::requested(state, req) {
            Delivery::BodyAndCookie
        } else {
            Delivery::Body
        }
    }
}

/// The use case needs to know before it issues the session: one whose refresh token is
/// withheld ends with its access token.
impl From<Delivery> for RefreshDelivery {
    fn from(delivery: Delivery) -> RefreshDelivery {
        match delivery {
            Delivery::Withheld => RefreshDelivery::Withheld,
            Delivery::Body | Delivery::Cookie | Delivery::BodyAndCookie => {
                RefreshDelivery::Delivered
            }
        }
    }
}

/// Strapi's `{jwt, user}` for a session begun, with its refresh token where `delivery` says.
fn started(state: &AppState, started: Started, delivery: Delivery) -> HttpResponse {
    let mut body = AuthResponse {
        jwt: started.access_token,
        user: PublicUser::of(&started.user),
        refresh_token: None,
    };
    let mut response = HttpResponse::Ok();
    match (delivery, started.refresh_token) {
        (Delivery::Body, Some((token, _))) => body.refresh_token = Some(token),
        (Delivery::Cookie, Some((token, lifetime))) => {
            response.cookie(cookies::carrying(state, token, lifetime));
        }
        (Delivery::BodyAndCookie, Some((token, lifetime))) => {
            response.cookie(cookies::carrying(state, token.clone(), lifetime));
            body.refresh_token = Some(token);
        }
        _ => {}
    }
    response.json(body)
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
        (status = 200, description = "Registered and logged in; with `EMAIL_CONFIRMATION=true`, `{user}` alone (unconfirmed, not logged in: the confirmation email goes out)", body = AuthResponse,
            headers(("Set-Cookie" = String, description = "The refresh token, in cookie mode"))),
        (status = 400, description = "A malformed body, an unknown or invalid field (`ValidationError`), or a taken email or username (`ApplicationError`)", body = ErrorBody),
        (status = 401, description = "The user was deleted while its session was being started", body = ErrorBody),
        BodyRefusals,
        (status = 429, description = "Too many attempts from this address (for this email, or for any)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        WriteUnavailable,
    )
)]
pub async fn register(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    cookies::refuse_cross_site(&state, &req)?;
    let form = RegisterRequest::parse(&body)?;
    let delivery = if state.config.sessions.refresh_mode() {
        Delivery::always_in_body(&state, &req)
    } else {
        Delivery::of(&state, &req, state.config.tokens.request_refresh_on_all)
    };
    let caller = caller(&req, &state);
    match state.app.register(form, caller, delivery.into()).await? {
        Registered::LoggedIn(session) => Ok(started(&state, session, delivery)),
        // Strapi's answer with email confirmation on: the user alone, no token.
        Registered::Unconfirmed(user) => {
            Ok(HttpResponse::Ok().json(serde_json::json!({ "user": PublicUser::of(&user) })))
        }
    }
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
        BodyRefusals,
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
    let caller = caller(&req, &state);
    // Every attempt counts against the address limits, malformed ones too, as Strapi's
    // rate-limit middleware counts them before the body is checked.
    let identifier = LoginRequest::identifier(&body)?;
    state.app.limits.check_login(caller.ip, identifier)?;
    let form = LoginRequest::parse(&body)?;
    // Strapi 5's refresh mode issues one on every login (users-permissions
    // dist/server/controllers/auth.js:179-183).
    let asked = form.asks_for_refresh_token()
        || state.config.tokens.request_refresh_on_all
        || state.config.sessions.refresh_mode();
    let delivery = Delivery::of(&state, &req, asked);
    let session = state
        .app
        .login(form.into_login(), caller, delivery.into())
        .await?;
    Ok(started(&state, session, delivery))
}

/// The refresh token of a request: the body's (`from_body`), else the cookie's; and
/// whether it came from the cookie. Refresh and logout read it alike.
pub fn presented_token(
    state: &AppState,
    req: &HttpRequest,
    from_body: Option<String>,
) -> Option<(String, bool)> {
    match from_body {
        Some(token) => Some((token, false)),
        None => cookies::token(state, req).map(|token| (token, true)),
    }
}

/// As `presented_token`, the cookie's first: Strapi's refresh mode reads it so.
pub fn cookie_first(
    state: &AppState,
    req: &HttpRequest,
    from_body: Option<String>,
) -> Option<(String, bool)> {
    match cookies::token(state, req) {
        Some(token) => Some((token, true)),
        None => from_body.map(|token| (token, false)),
    }
}

/// The two refresh routes, the plugin's and Strapi 5's, with one meaning and one document:
/// utoipa takes one path a handler, so the handler is written once and named twice.
macro_rules! refresh_route {
    ($(#[$doc:meta])* $name:ident, $path:literal, $rules:path) => {
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
                BodyRefusals,
                (status = 429, description = "Too many refreshes of this session", body = ErrorBody,
                    headers(("Retry-After" = u64, description = "Seconds to wait"))),
                WriteUnavailable,
            )
        )]
        pub async fn $name(
            state: web::Data<AppState>,
            req: HttpRequest,
            body: Body,
        ) -> Result<HttpResponse, ApiError> {
            rotate(&state, &req, &body, $rules(&state)).await
        }
    };
}

refresh_route!(
    /// The refresh-token plugin's refresh.
    refresh,
    "/api/auth/local/refresh",
    Rules::plugin
);
refresh_route!(
    /// Strapi 5's session refresh: the plugin's rules; with `JWT_MANAGEMENT=refresh`,
    /// Strapi's: the cookie's token before the body's, and always rotated.
    refresh_session,
    "/api/auth/refresh",
    Rules::of
);

/// Whose rules a route follows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rules {
    Plugin,
    /// Strapi 5's refresh mode (`JWT_MANAGEMENT=refresh`).
    Strapi,
}

impl Rules {
    /// The plugin's route keeps the plugin's rules in either mode.
    fn plugin(_: &AppState) -> Rules {
        Rules::Plugin
    }

    /// Strapi's own routes follow the mode.
    fn of(state: &AppState) -> Rules {
        if state.config.sessions.refresh_mode() {
            Rules::Strapi
        } else {
            Rules::Plugin
        }
    }
}

async fn rotate(
    state: &AppState,
    req: &HttpRequest,
    body: &Body,
    rules: Rules,
) -> Result<HttpResponse, ApiError> {
    cookies::refuse_cross_site(state, req)?;
    let from_body = RefreshRequest::parse(body).refresh_token();
    let presented = match rules {
        Rules::Plugin => presented_token(state, req, from_body),
        // The cookie first, then the body (users-permissions dist/server/controllers/
        // auth.js:289-292).
        Rules::Strapi => cookie_first(state, req, from_body),
    };
    let (token, from_cookie) =
        presented.ok_or_else(|| ApiError::bad_request("Missing refresh token"))?;
    let caller = caller(req, state);
    let refreshed = match rules {
        Rules::Plugin => state.app.refresh(&token, caller).await?,
        // Always rotating, whatever REFRESH_TOKEN_ROTATION says: Strapi's session manager
        // makes a child token on every refresh (core dist/services/session-manager.js:481-519).
        Rules::Strapi => state.app.refresh_rotating(&token, caller).await?,
    };
    // A token from the body next to a cookie may be someone else's (a cross-site form that
    // posts the attacker's token with the victim's cookie): its successor never replaces
    // the cookie, it goes back in the body it came from.
    let into_cookie =
        from_cookie || (cookies::requested(state, req) && cookies::token(state, req).is_none());
    let mut response = HttpResponse::Ok();
    let mut body = RefreshResponse {
        jwt: refreshed.access_token,
        refresh_token: None,
    };
    match refreshed.refresh_token {
        Some((successor, lifetime)) if into_cookie => {
            response.cookie(cookies::carrying(state, successor, lifetime));
        }
        Some((successor, _)) => body.refresh_token = Some(successor),
        None => {}
    }
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
        (status = 401, description = "An access token that is invalid, expired or of an ended session", body = ErrorBody),
        BearerBodyRefusals,
        (status = 429, description = "Too many attempts from this address, or too many failed password checks of this user", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        WriteUnavailable,
    )
)]
pub async fn change_password(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    cookies::refuse_cross_site(&state, &req)?;
    let (user, claims) = state.app.authenticate(bearer(&req)).await?;
    let form = ChangePasswordRequest::parse(&body)?.into_change();
    let caller = caller(&req, &state);
    let session = state
        .app
        .change_password(user, claims.sid, form, caller)
        .await?;
    let delivery = if state.config.sessions.refresh_mode() {
        Delivery::always_in_body(&state, &req)
    } else if cookies::requested(&state, &req) {
        Delivery::Cookie
    } else {
        Delivery::Body
    };
    Ok(started(&state, session, delivery))
}

/// Strapi's forgot-password: `{ok: true}`, the same answer whether or not the email is a
/// user's. A user's gets a reset code, emailed by the mailer.
#[utoipa::path(
    post,
    path = "/api/auth/forgot-password",
    tag = "auth",
    request_body(content(
        (EmailRequest = "application/json"),
        (EmailRequest = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "`{\"ok\": true}`, whether or not the email is a user's", body = Object, example = json!({"ok": true})),
        (status = 400, description = "A malformed body, or a missing or invalid email (`ValidationError`)", body = ErrorBody),
        BodyRefusals,
        (status = 429, description = "Too many requests from this address (for this email, or for any)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        ReadUnavailable,
    )
)]
pub async fn forgot_password(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let email = EmailRequest::parse(&body)?;
    state
        .app
        .forgot_password(&email, caller(&req, &state))
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "ok": true })))
}

/// Strapi's reset-password: the emailed code and a new password; every session of the user
/// ends (`SessionsCleared{password_reset}`) and a new one begins, with a refresh token by the
/// login's rules.
#[utoipa::path(
    post,
    path = "/api/auth/reset-password",
    tag = "auth",
    request_body(content(
        (ResetPasswordRequest = "application/json"),
        (ResetPasswordRequest = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "Reset: every other session ended; logged in", body = AuthResponse,
            headers(("Set-Cookie" = String, description = "The refresh token, in cookie mode"))),
        (status = 400, description = "A malformed body, a missing or invalid field, passwords that differ, or `Incorrect code provided` (unknown, used, superseded or expired)", body = ErrorBody),
        BodyRefusals,
        (status = 429, description = "Too many attempts from this address", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        WriteUnavailable,
    )
)]
pub async fn reset_password(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    cookies::refuse_cross_site(&state, &req)?;
    let (reset, asked) = ResetPasswordRequest::parse(&body)?;
    let asked =
        asked || state.config.tokens.request_refresh_on_all || state.config.sessions.refresh_mode();
    let delivery = Delivery::of(&state, &req, asked);
    let session = state
        .app
        .reset_password(reset, caller(&req, &state), delivery.into())
        .await?;
    Ok(started(&state, session, delivery))
}

/// Strapi's send-email-confirmation: `{email, sent: true}`; the mailer sends the link.
#[utoipa::path(
    post,
    path = "/api/auth/send-email-confirmation",
    tag = "auth",
    request_body(content(
        (EmailRequest = "application/json"),
        (EmailRequest = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "`{email, sent: true}`, an unknown email too", body = Object, example = json!({"email": "ada@example.com", "sent": true})),
        (status = 400, description = "A malformed body, a missing or invalid email (`ValidationError`); `Already confirmed` or `User blocked` (`ApplicationError`)", body = ErrorBody),
        BodyRefusals,
        (status = 429, description = "Too many requests from this address", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        WriteUnavailable,
    )
)]
pub async fn send_email_confirmation(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let email = EmailRequest::parse(&body)?;
    let email = state
        .app
        .send_email_confirmation(&email, caller(&req, &state))
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "email": email, "sent": true })))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
pub struct Confirmation {
    /// The code of the emailed link.
    confirmation: Option<String>,
}

/// Strapi's email-confirmation link: confirms the user and redirects to
/// `EMAIL_CONFIRMATION_REDIRECTION`.
#[utoipa::path(
    get,
    path = "/api/auth/email-confirmation",
    tag = "auth",
    params(Confirmation),
    responses(
        (status = 302, description = "Confirmed: to `EMAIL_CONFIRMATION_REDIRECTION`",
            headers(("Location" = String, description = "EMAIL_CONFIRMATION_REDIRECTION"))),
        (status = 400, description = "No `confirmation`, or `Invalid token` (unknown, used, superseded or expired)", body = ErrorBody),
        (status = 429, description = "Too many attempts from this address", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        WriteUnavailable,
    )
)]
pub async fn email_confirmation(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<Confirmation>,
) -> Result<HttpResponse, ApiError> {
    let code = match query.into_inner().confirmation {
        Some(code) if !code.is_empty() => code,
        _ => {
            return Err(ApiError::invalid_fields(vec![ApiError::field_error(
                "confirmation",
                "confirmation is a required field".to_owned(),
                None,
            )]));
        }
    };
    state.app.confirm_email(&code, caller(&req, &state)).await?;
    let to = &state.config.accounts.email_confirmation_redirection;
    Ok(HttpResponse::Found()
        .insert_header((actix_web::http::header::LOCATION, to.as_str()))
        .finish())
}
