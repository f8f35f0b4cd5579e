//! Strapi's error body, `{"data": null, "error": {"status", "name", "message", "details"}}`,
//! asserted as clients parse it, and the answers many tests meet: the two 401s, the 403 of a
//! request without a token, and the 429.

use serde_json::Value;

/// Asserts Strapi's error body with this status, name and message.
#[track_caller]
pub fn assert_error(status: u16, body: &Value, expected_status: u16, name: &str, message: &str) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["data"], Value::Null, "{body}");
    assert_eq!(body["error"]["status"], expected_status, "{body}");
    assert_eq!(body["error"]["name"], name, "{body}");
    assert_eq!(body["error"]["message"], message, "{body}");
    assert!(body["error"]["details"].is_object(), "{body}");
}

/// A refresh (or a logout with a refresh token) refused: forged, expired, reused or revoked.
#[track_caller]
pub fn assert_invalid_refresh_token(status: u16, body: &Value) {
    assert_error(
        status,
        body,
        401,
        "UnauthorizedError",
        "Invalid refresh token",
    );
}

/// A bearer route refused: a bad access token, or a missing or wrong admin token.
#[track_caller]
pub fn assert_unauthorized(status: u16, body: &Value) {
    assert_error(
        status,
        body,
        401,
        "UnauthorizedError",
        "Missing or invalid credentials",
    );
}

/// A bearer route asked without any token: Strapi's public role is refused with
/// `ctx.forbidden()`, whose body is exactly this.
#[track_caller]
pub fn assert_forbidden(status: u16, body: &Value) {
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        *body,
        serde_json::json!({"data": null, "error": {
            "status": 403, "name": "ForbiddenError", "message": "Forbidden", "details": {}
        }})
    );
}

/// A request held back by a rate limit.
#[track_caller]
pub fn assert_rate_limited(status: u16, body: &Value) {
    assert_error(
        status,
        body,
        429,
        "RateLimitError",
        "Too many requests, please try again later.",
    );
}
