//! The one HTTP error type: every error leaves in Strapi's body,
//! `{"data":null,"error":{"status","name","message","details"}}`, and none leaks internals.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::limits::Limited;
use crate::use_cases::Failure;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub name: &'static str,
    pub message: String,
    /// Boxed: errors travel in `Result`s everywhere, and a bare `Value` makes them large.
    pub details: Box<Value>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, name: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            name,
            message: message.into(),
            details: Box::new(json!({})),
            retry_after: None,
        }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "ValidationError", message)
    }

    pub fn application(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "ApplicationError", message)
    }

    /// Strapi 5's name for a plain 400 from a controller (`ctx.badRequest`).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequestError", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UnauthorizedError", message)
    }

    /// Strapi's answer to a request without a token on a route only the authenticated role
    /// may use: its public role is refused (`ctx.forbidden()`), a 403, not a 401.
    pub fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN, "ForbiddenError", "Forbidden")
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFoundError", "Not Found")
    }

    /// The path is a route's, the method is not (`Allow` says which are).
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowedError",
            "Method Not Allowed",
        )
    }

    pub fn not_found_message(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFoundError", message)
    }

    /// Strapi's wording; the wait becomes the `Retry-After` header.
    pub fn rate_limited(limited: Limited) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RateLimitError",
            "Too many requests, please try again later.",
        )
        .with_retry_after(limited.seconds())
    }

    fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn payload_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLargeError",
            "request entity too large",
        )
    }

    pub fn request_timeout() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "RequestTimeoutError",
            "The request body was not received in time",
        )
    }

    /// Start-up: the projections are still being rebuilt from the log (`/_ready` says when).
    pub fn starting() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailableError",
            "The service is starting, please try again",
        )
        .with_retry_after(1)
    }

    /// The store could not take the write; nothing was acknowledged. The client may retry,
    /// and `Retry-After` says when: a database that is away is looked for again at once.
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailableError",
            "The service is temporarily unavailable, please try again",
        )
        .with_retry_after(1)
    }

    /// Too many password checks wait already: refused at once, so that none waits long.
    pub fn busy() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailableError",
            "Too many logins at once, please try again",
        )
        .with_retry_after(1)
    }

    /// A cross-site request in cookie mode: a form on another site must not log a browser in
    /// or out, nor swap its refresh cookie.
    pub fn cross_site() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "ForbiddenError",
            "Cross-site requests are not allowed",
        )
    }

    /// One failed field check, as yup reports it (`value` echoes what was sent).
    pub fn field_error(field: &str, message: String, value: Option<&Value>) -> Value {
        let mut entry = json!({ "path": [field], "message": message, "name": "ValidationError" });
        if let Some(value) = value {
            entry["value"] = value.clone();
        }
        entry
    }

    /// Failed field checks, each an entry of `details.errors`; the message is the single
    /// error's, or "N errors occurred".
    pub fn invalid_fields(errors: Vec<Value>) -> Self {
        let message = match errors.as_slice() {
            [one] => one["message"].as_str().unwrap_or_default().to_owned(),
            many => format!("{} errors occurred", many.len()),
        };
        ApiError::validation(message).with_details(json!({ "errors": errors }))
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Box::new(details);
        self
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            data: (),
            error: ErrorDetail {
                status: self.status.as_u16(),
                name: self.name,
                message: self.message.clone(),
                details: (*self.details).clone(),
            },
        }
    }
}

/// Strapi's error body, as every error leaves.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// Always `null`.
    #[schema(schema_with = null)]
    data: (),
    error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
struct ErrorDetail {
    /// The HTTP status again.
    status: u16,
    #[schema(value_type = String, example = "ValidationError")]
    name: &'static str,
    message: String,
    /// `{}`, or `{"errors":[{"path","message","name","value"?}]}` for a failed field check.
    #[schema(value_type = Object)]
    details: Value,
}

fn null() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::Object::with_type(utoipa::openapi::schema::Type::Null)
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.name,
            self.message
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(seconds) = self.retry_after {
            response.insert_header((actix_web::http::header::RETRY_AFTER, seconds.to_string()));
        }
        response.json(self.body())
    }
}

/// Each way a use case fails is one of Strapi's answers.
impl From<Failure> for ApiError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::InvalidLogin => ApiError::validation("Invalid identifier or password"),
            Failure::Blocked => {
                ApiError::application("Your account has been blocked by an administrator")
            }
            Failure::Taken => ApiError::application("Email or Username are already taken"),
            Failure::InvalidRefreshToken => ApiError::unauthorized("Invalid refresh token"),
            Failure::NoCredentials => ApiError::forbidden(),
            Failure::MissingCredentials => ApiError::unauthorized("Missing or invalid credentials"),
            Failure::InvalidCredentials => ApiError::unauthorized("Invalid credentials"),
            Failure::WrongCurrentPassword => {
                ApiError::validation("The provided current password is invalid")
            }
            Failure::UnchangedPassword => ApiError::validation(
                "Your new password must be different than your current password",
            ),
            Failure::PasswordRules(messages) => ApiError::invalid_fields(
                messages
                    .into_iter()
                    .map(|message| ApiError::field_error("password", message, None))
                    .collect(),
            ),
            Failure::IncorrectCode => ApiError::validation("Incorrect code provided"),
            Failure::InvalidConfirmation => ApiError::validation("Invalid token"),
            Failure::RegistrationClosed => {
                ApiError::application("Register action is currently disabled")
            }
            Failure::EmailNotConfirmed => {
                ApiError::application("Your account email is not confirmed")
            }
            Failure::AlreadyConfirmed => ApiError::application("Already confirmed"),
            Failure::UserBlocked => ApiError::application("User blocked"),
            Failure::SessionNotFound => ApiError::not_found_message("Session not found"),
            Failure::UserNotFound => ApiError::not_found_message("User not found"),
            Failure::Limited(limited) => ApiError::rate_limited(limited),
            Failure::Busy => ApiError::busy(),
            unavailable @ Failure::Unavailable { .. } => {
                tracing::error!(error = %unavailable, "unavailable");
                ApiError::unavailable()
            }
        }
    }
}

impl From<Limited> for ApiError {
    fn from(limited: Limited) -> Self {
        ApiError::rate_limited(limited)
    }
}

/// The answers every route with a body may give before its handler decides anything: the
/// OpenAPI rows written once, listed in a route's `responses(...)` by name.
#[derive(utoipa::IntoResponses)]
pub enum BodyRefusals {
    #[response(
        status = 403,
        description = "Cookie mode: a cross-site request (`Origin` not allowed)"
    )]
    CrossSite(ErrorBody),
    #[response(status = 408, description = "The body was not received in time")]
    Timeout(ErrorBody),
    #[response(status = 413, description = "The body is over 64 KiB")]
    TooLarge(ErrorBody),
}

/// `BodyRefusals` for a route that needs a token: its 403 is also Strapi's answer to none.
#[derive(utoipa::IntoResponses)]
pub enum BearerBodyRefusals {
    #[response(
        status = 403,
        description = "No token at all: `Forbidden` (`ForbiddenError`), as Strapi answers its public role; or, in cookie mode, a cross-site request (`Origin` not allowed)"
    )]
    Forbidden(ErrorBody),
    #[response(status = 408, description = "The body was not received in time")]
    Timeout(ErrorBody),
    #[response(status = 413, description = "The body is over 64 KiB")]
    TooLarge(ErrorBody),
}

/// A route that writes: the store may refuse the write (nothing acknowledged).
#[derive(utoipa::IntoResponses)]
pub enum WriteUnavailable {
    #[response(
        status = 503,
        description = "The store could not take the write; try again (`Retry-After: 1`)",
        headers(("Retry-After" = u64, description = "Seconds to wait"))
    )]
    Unavailable(ErrorBody),
}

/// A route that only reads.
#[derive(utoipa::IntoResponses)]
pub enum ReadUnavailable {
    #[response(
        status = 503,
        description = "The store could not be read; try again (`Retry-After: 1`)",
        headers(("Retry-After" = u64, description = "Seconds to wait"))
    )]
    Unavailable(ErrorBody),
}
