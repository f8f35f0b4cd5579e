//! `POST /api/auth/introspect` (RFC 7662) and `POST /api/auth/revoke` (RFC 7009): the OAuth
//! routes other services and front ends use to check and end tokens. Bodies are the RFCs'
//! `application/x-www-form-urlencoded` or JSON, as on every route here; errors keep Strapi's
//! body, with the OAuth error code (`invalid_request`) in `details.error`.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use base64::Engine as _;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::body::Body;
use super::errors::{ApiError, ErrorBody, ReadUnavailable, WriteUnavailable};
use super::validation::Checks;
use super::{AppState, caller};
use crate::use_cases::{Introspected, ServiceCredential, TokenKind};

/// What a 401 asks the service for (RFC 7235 §4.1, RFC 6749 §5.2).
const CHALLENGE: &str = "Basic realm=\"tokenledger\"";

/// RFC 7662 §2.1. The service authenticates with HTTP Basic (`client_secret_basic`), or with
/// `client_id` and `client_secret` here (`client_secret_post`); other fields are ignored.
#[derive(ToSchema)]
#[allow(
    dead_code,
    reason = "the body as the OpenAPI document shows it; `token_fields` reads it"
)]
pub struct IntrospectionRequest {
    /// The access or refresh token to check.
    #[schema(min_length = 1)]
    token: String,
    /// `access_token` or `refresh_token`: which kind to try first; any other value is ignored.
    token_type_hint: Option<String>,
    /// `client_secret_post`: the service's id, when it sends no `Authorization: Basic`.
    client_id: Option<String>,
    /// `client_secret_post`: the service's secret.
    client_secret: Option<String>,
}

/// RFC 7009 §2.1. No client credential: holding the token is the right to end it.
#[derive(ToSchema)]
#[allow(
    dead_code,
    reason = "the body as the OpenAPI document shows it; `token_fields` reads it"
)]
pub struct RevocationRequest {
    /// The access or refresh token whose session ends.
    #[schema(min_length = 1)]
    token: String,
    /// `access_token` or `refresh_token`: which kind to try first; any other value is ignored.
    token_type_hint: Option<String>,
}

/// RFC 7662 §2.2: `{"active": false}` alone for any token that is not live.
#[derive(Serialize, ToSchema)]
struct IntrospectionAnswer {
    active: bool,
    /// The user's id, as a string.
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    /// The session's id; absent for a Strapi-made access token, which has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = Uuid)]
    sid: Option<String>,
    /// The token's expiry, in seconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
    /// When the token was issued, in seconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    /// The issuer, when tokens carry one.
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    /// `access_token` or `refresh_token` (RFC 7009's hint names).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^(access_token|refresh_token)$")]
    token_type: Option<&'static str>,
}

impl IntrospectionAnswer {
    fn of(state: Option<Introspected>) -> IntrospectionAnswer {
        let Some(live) = state else {
            return IntrospectionAnswer {
                active: false,
                sub: None,
                sid: None,
                exp: None,
                iat: None,
                iss: None,
                token_type: None,
            };
        };
        IntrospectionAnswer {
            active: true,
            sub: Some(live.user_id.to_string()),
            sid: live.session_id.map(|sid| sid.to_string()),
            exp: Some(live.expires_at),
            iat: Some(live.issued_at),
            iss: live.issuer,
            token_type: Some(live.kind.name()),
        }
    }
}

/// `token` (required, a non-empty string; never echoed in an error) and the hint, if known.
fn token_fields(body: &Body) -> Result<(&str, Option<TokenKind>), ApiError> {
    let mut checks = Checks::default();
    let token = checks.string(body, "token", true);
    let token = checks.finish_with(token).map_err(|mut error| {
        error.details["error"] = json!("invalid_request");
        error
    })?;
    let hint = body
        .get("token_type_hint")
        .and_then(Value::as_str)
        .and_then(TokenKind::from_hint);
    Ok((token, hint))
}

/// The service's credential: `Authorization: Basic` when the request has one, else the
/// body's `client_id` and `client_secret` (another scheme, such as a front end's `Bearer`,
/// is no client authentication, so the body's still counts). `None` when neither is complete.
fn service_credentials(req: &HttpRequest, body: &Body) -> Option<Vec<ServiceCredential>> {
    let basic = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .filter(|value| {
            let scheme = value.trim_start().split(' ').next().unwrap_or_default();
            scheme.eq_ignore_ascii_case("basic")
        });
    if let Some(value) = basic {
        return basic_credentials(value);
    }
    let field = |name| body.get(name).and_then(Value::as_str).map(str::to_owned);
    Some(vec![ServiceCredential {
        id: field("client_id")?,
        secret: field("client_secret")?,
    }])
}

/// `Basic base64(id:secret)`. RFC 6749 §2.3.1 form-encodes the id and the secret before
/// joining them, which most clients (and `curl -u`) skip: both readings are tried, and each
/// needs the secret.
fn basic_credentials(value: &str) -> Option<Vec<ServiceCredential>> {
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let mut readings = vec![ServiceCredential {
        id: id.to_owned(),
        secret: secret.to_owned(),
    }];
    if let (Some(decoded_id), Some(decoded_secret)) = (form_decoded(id), form_decoded(secret))
        && (decoded_id != id || decoded_secret != secret)
    {
        readings.push(ServiceCredential {
            id: decoded_id,
            secret: decoded_secret,
        });
    }
    Some(readings)
}

/// `application/x-www-form-urlencoded` decoding of one value (`+` is a space); `None` when
/// it is malformed.
fn form_decoded(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        rest = tail;
        match first {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(rest.get(..2)?).ok()?;
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
                rest = &rest[2..];
            }
            other => bytes.push(other),
        }
    }
    String::from_utf8(bytes).ok()
}

/// A 401 with the challenge RFC 6749 §5.2 asks for when client authentication fails.
fn unauthenticated() -> HttpResponse {
    let mut response =
        ApiError::unauthorized("Missing or invalid client credentials").error_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static(CHALLENGE),
    );
    response
}

/// RFC 7662 introspection, for services named in `INTROSPECTION_CLIENTS`: whether the token
/// is live right now. Answered from the sessions projection: `active` turns false the moment
/// the session ends (logout, reuse detected, password change, block).
#[utoipa::path(
    post,
    path = "/api/auth/introspect",
    tag = "oauth",
    security(("serviceBasic" = []), ()),
    request_body(content(
        (IntrospectionRequest = "application/x-www-form-urlencoded"),
        (IntrospectionRequest = "application/json"),
    )),
    responses(
        (status = 200, description = "`{\"active\": true, sub, sid, exp, iat, token_type}` for a live token; exactly `{\"active\": false}` for any other (forged, expired, garbage, of an ended session, superseded)", body = IntrospectionAnswer,
            headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 400, description = "A malformed body, or no `token` (`ValidationError`, `details.error`: `invalid_request`)", body = ErrorBody),
        (status = 401, description = "No service credential, or a wrong one (`UnauthorizedError`); always so when `INTROSPECTION_CLIENTS` is unset", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Basic realm=\"tokenledger\"`"))),
        (status = 408, description = "The body was not received in time", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        ReadUnavailable,
    )
)]
pub async fn introspect(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let known = service_credentials(&req, &body)
        .is_some_and(|readings| readings.iter().any(|c| state.app.is_service(c)));
    if !known {
        return Ok(unauthenticated());
    }
    let (token, hint) = token_fields(&body)?;
    let live = state.app.introspect(token, hint).await?;
    Ok(HttpResponse::Ok()
        // RFC 7662 §4: an answer about a token must not be kept by a cache.
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(IntrospectionAnswer::of(live)))
}

/// RFC 7009 revocation: a live token's session ends, as `POST /api/auth/logout` with that
/// token ends it. No client credential is needed (single-page apps have none): whoever holds
/// the token may end it. The answer is `{}`, whether or not the token was valid.
#[utoipa::path(
    post,
    path = "/api/auth/revoke",
    tag = "oauth",
    request_body(content(
        (RevocationRequest = "application/x-www-form-urlencoded"),
        (RevocationRequest = "application/json"),
    )),
    responses(
        (status = 200, description = "`{}`: the token's session has ended, or the token was not a live one (RFC 7009 §2.2)", body = Object, example = json!({})),
        (status = 400, description = "A malformed body, or no `token` (`ValidationError`, `details.error`: `invalid_request`)", body = ErrorBody),
        (status = 408, description = "The body was not received in time", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        WriteUnavailable,
    )
)]
pub async fn revoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let (token, hint) = token_fields(&body)?;
    state.app.revoke(token, hint, caller(&req, &state)).await?;
    Ok(HttpResponse::Ok().json(json!({})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(id_secret: &str) -> String {
        let encoded = base64::engine::general_purpose::STANDARD.encode(id_secret);
        format!("Basic {encoded}")
    }

    #[test]
    fn basic_credentials_are_read_as_sent_and_form_decoded() {
        let readings = basic_credentials(&basic("svc:a%3Ab+c")).expect("read");
        let pairs: Vec<(&str, &str)> = readings
            .iter()
            .map(|c| (c.id.as_str(), c.secret.as_str()))
            .collect();
        assert_eq!(pairs, [("svc", "a%3Ab+c"), ("svc", "a:b c")]);
        let plain = basic_credentials(&basic("svc:s3cret:with:colons")).expect("read");
        assert_eq!(plain.len(), 1, "nothing to decode");
        assert_eq!(plain[0].secret, "s3cret:with:colons");
    }

    #[test]
    fn anything_but_basic_is_no_credential() {
        for header in [
            "Bearer abc".to_owned(),
            "Basic".to_owned(),
            "Basic !!!not-base64".to_owned(),
            basic("no-colon"),
        ] {
            assert!(basic_credentials(&header).is_none(), "{header}");
        }
    }

    #[test]
    fn form_decoding_refuses_broken_escapes() {
        assert_eq!(form_decoded("a%2"), None);
        assert_eq!(form_decoded("a%zz"), None);
        assert_eq!(form_decoded("%C3%A9+x").as_deref(), Some("é x"));
        assert_eq!(form_decoded("plain").as_deref(), Some("plain"));
    }
}
