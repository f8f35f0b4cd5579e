//! The request bodies, each parsed from Strapi's body into its struct, which is also its
//! schema in the OpenAPI document: what is documented is what is read. Each field is checked
//! as Strapi checks it, with its wording (`validation::Checks`).

use serde_json::Value;
use utoipa::ToSchema;

use super::body::Body;
use super::errors::ApiError;
use super::validation::{Checks, truthy};
use crate::rules::{PASSWORD_MAX_BYTES, is_valid_email, rule_violations};
use crate::use_cases::{ChangePassword, Login, LogoutWith, Register};

const REGISTER_FIELDS: [&str; 3] = ["username", "email", "password"];

/// The longest identifier looked up: Strapi's username and email columns hold 255.
const MAX_IDENTIFIER_CHARS: usize = 255;

/// Any other field is refused.
#[derive(ToSchema)]
pub struct RegisterRequest {
    #[schema(min_length = 3, max_length = 255)]
    username: String,
    #[schema(format = Email, min_length = 6, max_length = 255)]
    email: String,
    /// 6 to 72 bytes (bcrypt's limit, kept for Strapi compatibility).
    #[schema(min_length = 6, max_length = 72)]
    password: String,
}

impl RegisterRequest {
    pub fn parse(body: &Body) -> Result<Register, ApiError> {
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
        let form = Self::fields(body)?;
        // … then the lengths Strapi checks when saving, as a separate stage.
        let mut lengths = Checks::default();
        for (field, message) in rule_violations(&form.username, &form.email, &form.password) {
            let echo = (field != "password").then(|| body.get(field)).flatten();
            lengths.fail(field, message, echo);
        }
        lengths.finish()?;
        Ok(Register {
            username: form.username,
            email: form.email,
            password: form.password,
        })
    }

    /// First yup's schema, all fields at once.
    fn fields(body: &Body) -> Result<RegisterRequest, ApiError> {
        let mut checks = Checks::default();
        let email = checks.string(body, "email", false);
        if let Some(email) = email {
            let valid = is_valid_email(email);
            checks.require(valid, "email", "email must be a valid email", Some(email));
        }
        let username = checks.string(body, "username", false);
        let password = checks.string(body, "password", true);
        if let Some(password) = password {
            let fits = password.len() <= PASSWORD_MAX_BYTES;
            checks.require(
                fits,
                "password",
                "Password must be less than 73 bytes",
                None,
            );
        }
        let fields = username.zip(email).zip(password);
        let ((username, email), password) = checks.finish_with(fields)?;
        Ok(RegisterRequest {
            username: username.to_owned(),
            email: email.to_owned(),
            password: password.to_owned(),
        })
    }
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct LoginRequest {
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

impl LoginRequest {
    /// The identifier, if the body has one as a string, bounded before any limiter sees it:
    /// no identifier longer than Strapi's columns names anyone.
    pub fn identifier(body: &Body) -> Result<&str, ApiError> {
        let identifier = body.get("identifier").and_then(Value::as_str);
        if identifier.is_some_and(|i| i.chars().count() > MAX_IDENTIFIER_CHARS) {
            let mut checks = Checks::default();
            let message = format!("identifier must be at most {MAX_IDENTIFIER_CHARS} characters");
            checks.fail("identifier", message, body.get("identifier"));
            checks.finish()?;
        }
        Ok(identifier.unwrap_or(""))
    }

    pub fn parse(body: &Body) -> Result<LoginRequest, ApiError> {
        let mut checks = Checks::default();
        let identifier = checks.string(body, "identifier", false);
        let password = checks.string(body, "password", true);
        let (identifier, password) = checks.finish_with(identifier.zip(password))?;
        Ok(LoginRequest {
            identifier: identifier.to_owned(),
            password: password.to_owned(),
            request_refresh: body.get("requestRefresh").map(|v| truthy(Some(v))),
            device_id: body
                .get("deviceId")
                .and_then(Value::as_str)
                .filter(|d| !d.is_empty() && d.len() <= 255)
                .map(str::to_owned),
        })
    }

    pub fn asks_for_refresh_token(&self) -> bool {
        self.request_refresh == Some(true)
    }

    pub fn into_login(self) -> Login {
        Login {
            identifier: self.identifier,
            password: self.password,
            device_id: self.device_id,
        }
    }
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct RefreshRequest {
    /// Else the cookie's is used; neither is a 400.
    refresh_token: Option<String>,
}

impl RefreshRequest {
    /// Only a non-empty string is a token; anything else is as if there were none.
    pub fn parse(body: &Body) -> RefreshRequest {
        let refresh_token = match body.get("refreshToken") {
            Some(Value::String(token)) if !token.is_empty() => Some(token.clone()),
            _ => None,
        };
        RefreshRequest { refresh_token }
    }

    pub fn refresh_token(self) -> Option<String> {
        self.refresh_token
    }
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct ChangePasswordRequest {
    #[schema(min_length = 1)]
    current_password: String,
    #[schema(min_length = 6, max_length = 72)]
    password: String,
    /// Equal to `password`.
    #[schema(min_length = 1)]
    password_confirmation: String,
}

impl ChangePasswordRequest {
    pub fn parse(body: &Body) -> Result<ChangePasswordRequest, ApiError> {
        let mut checks = Checks::default();
        let current = checks.string(body, "currentPassword", true);
        let password = checks.string(body, "password", true);
        let confirmation = checks.string(body, "passwordConfirmation", true);
        if let (Some(password), Some(confirmation)) = (password, confirmation) {
            let same = password == confirmation;
            checks.require(same, "passwordConfirmation", "Passwords do not match", None);
        }
        let fields = current.zip(password).zip(confirmation);
        let ((current, password), confirmation) = checks.finish_with(fields)?;
        Ok(ChangePasswordRequest {
            current_password: current.to_owned(),
            password: password.to_owned(),
            password_confirmation: confirmation.to_owned(),
        })
    }

    pub fn into_change(self) -> ChangePassword {
        debug_assert_eq!(self.password, self.password_confirmation);
        ChangePassword {
            current: self.current_password,
            password: self.password,
        }
    }
}

/// Which sessions to end: `{}` this one, `deviceId` that device's, `scope: all` every one.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct LogoutRequest {
    /// `all` ends every session of the user.
    #[schema(pattern = "^all$", nullable = false)]
    scope: Option<String>,
    /// Ends that device's sessions.
    #[schema(min_length = 1, nullable = false)]
    device_id: Option<String>,
    /// Names "this" session when the access token has lapsed (else the cookie's).
    refresh_token: Option<String>,
}

impl LogoutRequest {
    /// `deviceId` is checked whatever the scope, as the document describes the field: a
    /// malformed one is an error, not ignored because `scope` wins.
    pub fn parse(body: &Body) -> Result<LogoutRequest, ApiError> {
        let mut checks = Checks::default();
        let device_id = match body.get("deviceId") {
            None => None,
            Some(Value::String(device)) if !device.is_empty() => Some(device.clone()),
            Some(other) => {
                let message = "deviceId must be a non-empty string".to_owned();
                checks.fail("deviceId", message, Some(other));
                None
            }
        };
        let scope = match body.get("scope") {
            None => None,
            Some(Value::String(scope)) if scope == "all" => Some(scope.clone()),
            Some(other) => {
                let message = "scope must be one of the following values: all".to_owned();
                checks.fail("scope", message, Some(other));
                None
            }
        };
        checks.finish()?;
        Ok(LogoutRequest {
            scope,
            device_id,
            refresh_token: RefreshRequest::parse(body).refresh_token(),
        })
    }

    /// Which sessions to end, and the body's refresh token.
    pub fn into_parts(self) -> (LogoutWith, Option<String>) {
        let with = match (self.scope, self.device_id) {
            (Some(_), _) => LogoutWith::All,
            (None, Some(device)) => LogoutWith::Device(device),
            (None, None) => LogoutWith::This,
        };
        (with, self.refresh_token)
    }
}

/// `POST /api/auth/forgot-password` and `POST /api/auth/send-email-confirmation`.
#[derive(ToSchema)]
#[allow(
    dead_code,
    reason = "the body as the OpenAPI document shows it; `parse` reads it"
)]
pub struct EmailRequest {
    #[schema(format = Email)]
    email: String,
}

impl EmailRequest {
    /// yup's `email().required()`.
    pub fn parse(body: &Body) -> Result<String, ApiError> {
        let mut checks = Checks::default();
        let email = checks.string(body, "email", false);
        if let Some(email) = email {
            let valid = is_valid_email(email);
            checks.require(valid, "email", "email must be a valid email", Some(email));
        }
        Ok(checks.finish_with(email)?.to_owned())
    }
}

/// `POST /api/auth/reset-password`: the emailed code and the new password, twice.
#[derive(ToSchema)]
#[allow(
    dead_code,
    reason = "the body as the OpenAPI document shows it; `parse` reads it"
)]
#[schema(rename_all = "camelCase")]
pub struct ResetPasswordRequest {
    #[schema(min_length = 1)]
    code: String,
    #[schema(min_length = 6, max_length = 72)]
    password: String,
    /// Equal to `password`.
    #[schema(min_length = 1)]
    password_confirmation: String,
    /// Ask for a refresh token too, as at login.
    request_refresh: Option<bool>,
}

impl ResetPasswordRequest {
    /// The reset, and whether a refresh token was asked for.
    pub fn parse(body: &Body) -> Result<(crate::use_cases::ResetPassword, bool), ApiError> {
        let mut checks = Checks::default();
        let code = checks.string(body, "code", true);
        let password = checks.string(body, "password", true);
        let confirmation = checks.string(body, "passwordConfirmation", true);
        if let (Some(password), Some(confirmation)) = (password, confirmation) {
            let same = password == confirmation;
            checks.require(same, "passwordConfirmation", "Passwords do not match", None);
        }
        let ((code, password), _) = checks.finish_with(code.zip(password).zip(confirmation))?;
        let reset = crate::use_cases::ResetPassword {
            code: code.to_owned(),
            password: password.to_owned(),
        };
        Ok((reset, truthy(body.get("requestRefresh"))))
    }
}
