//! Register, login and the refresh-token plugin's refresh route.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use serde_json::{Map, Value, json};
use tokenledger_domain::{
    Command, IssueReason, IssueToken, RecordLoginFailure, RotateToken, UserId,
};
use uuid::Uuid;

use super::body::Body;
use super::errors::ApiError;
use super::users::user_json;
use super::validation::{Checks, truthy};
use super::{AppState, RequestContext};
use crate::store::users::{NewUser, PASSWORD_MAX_BYTES, User, is_valid_email, rule_violations};

const REGISTER_FIELDS: [&str; 3] = ["username", "email", "password"];

/// Starts a session for `user` and answers Strapi's `{jwt, user}`, with `refreshToken` when
/// asked for.
async fn start_session(
    state: &AppState,
    ctx: RequestContext,
    user: &User,
    device_id: Option<&str>,
    reason: IssueReason,
    with_refresh_token: bool,
) -> Result<HttpResponse, ApiError> {
    let session_id = Uuid::now_v7();
    let command = Command::IssueToken(IssueToken {
        session_id,
        device_id: device_id.map_or_else(|| Uuid::now_v7().to_string(), str::to_owned),
        token_id: Uuid::now_v7(),
        reason,
        lifetimes: state.lifetimes(),
        client: ctx.client,
    });
    let executed = state
        .registry
        .execute(user.id, command, ctx.metadata)
        .await?;
    let mut body = Map::new();
    body.insert(
        "jwt".into(),
        state
            .tokens
            .sign_access(user.id, session_id, Utc::now())
            .into(),
    );
    body.insert("user".into(), user_json(user));
    if with_refresh_token && let Some(token) = executed.refresh_token {
        body.insert("refreshToken".into(), token.into());
    }
    Ok(HttpResponse::Ok().json(Value::Object(body)))
}

pub async fn register(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
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

    let password_hash = state
        .passwords
        .hash(password.to_owned())
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "hashing a new password");
            ApiError::unavailable()
        })?;
    let new_user = NewUser {
        username: username.to_owned(),
        email: email.to_owned(),
        password_hash,
    };
    let user = state.users.create(new_user, Utc::now()).await?;
    let with_refresh = state.config.request_refresh_on_all;
    start_session(
        &state,
        RequestContext::of(&req),
        &user,
        None,
        IssueReason::Register,
        with_refresh,
    )
    .await
}

pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let mut checks = Checks::default();
    let identifier = checks.string(&body, "identifier", false);
    let password = checks.string(&body, "password", true);
    checks.finish()?;
    let (Some(identifier), Some(password)) = (identifier, password) else {
        unreachable!("finish() fails when a field is missing");
    };
    let ctx = RequestContext::of(&req);
    let user = state.users.find_by_identifier(identifier).await?;
    let hash = user.as_ref().and_then(|u| u.password_hash.clone());
    let matches = state
        .passwords
        .verify(password.to_owned(), hash)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "verifying a password");
            ApiError::unavailable()
        })?;
    let user = match user {
        Some(user) if matches => user,
        Some(user) => {
            record_failure(&state, user.id, ctx).await;
            return Err(ApiError::validation("Invalid identifier or password"));
        }
        None => return Err(ApiError::validation("Invalid identifier or password")),
    };
    if user.blocked {
        return Err(ApiError::application(
            "Your account has been blocked by an administrator",
        ));
    }
    let device_id = body
        .get("deviceId")
        .and_then(Value::as_str)
        .filter(|d| !d.is_empty() && d.len() <= 255);
    let with_refresh = truthy(body.get("requestRefresh")) || state.config.request_refresh_on_all;
    start_session(
        &state,
        ctx,
        &user,
        device_id,
        IssueReason::Login,
        with_refresh,
    )
    .await
}

/// A wrong password for an existing user goes on its record; failing to record it must not
/// change the answer the client gets.
async fn record_failure(state: &AppState, user_id: UserId, ctx: RequestContext) {
    let command = Command::RecordLoginFailure(RecordLoginFailure { client: ctx.client });
    if let Err(error) = state.registry.execute(user_id, command, ctx.metadata).await {
        tracing::warn!(user = user_id, %error, "could not record a failed login");
    }
}

fn invalid_refresh_token() -> ApiError {
    ApiError::unauthorized("Invalid refresh token")
}

pub async fn refresh(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let token = match body.get("refreshToken") {
        Some(Value::String(token)) if !token.is_empty() => token,
        _ => return Err(ApiError::bad_request("Missing refresh token")),
    };
    let presented = state
        .tokens
        .verify_refresh(token, state.clock.now())
        .map_err(|_| invalid_refresh_token())?;
    // Unknown, ended or someone else's sessions are turned away here, without an actor.
    let owner = state
        .projection
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .owner(&presented.session_id);
    if owner != Some(presented.user_id) {
        return Err(invalid_refresh_token());
    }
    let user_id = presented.user_id;
    let session_id = presented.session_id;
    let rotation = state.config.refresh_token_rotation;
    let ctx = RequestContext::of(&req);
    let command = Command::RotateToken(RotateToken {
        presented,
        rotation,
        successor_id: Uuid::now_v7(),
        reuse_grace: state.config.refresh_token_reuse_grace,
        lifetimes: state.lifetimes(),
        client: ctx.client,
    });
    let executed = match state.registry.execute(user_id, command, ctx.metadata).await {
        Ok(executed) => executed,
        Err(crate::actors::ExecuteError::Refused(_)) => return Err(invalid_refresh_token()),
        Err(other) => return Err(other.into()),
    };
    if executed.session.is_none() {
        return Err(invalid_refresh_token());
    }
    let jwt = state.tokens.sign_access(user_id, session_id, Utc::now());
    Ok(HttpResponse::Ok().json(match executed.refresh_token {
        Some(refresh_token) => json!({ "jwt": jwt, "refreshToken": refresh_token }),
        None => json!({ "jwt": jwt }),
    }))
}
