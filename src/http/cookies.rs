//! Cookie mode: the refresh token travels in an `HttpOnly` cookie instead of the body, when
//! `cookieResponse` is on or a request asks with `x-strapi-refresh-cookie: httpOnly` (as
//! Strapi 5 does). Refresh and logout read the cookie when the body carries no token.

use actix_web::HttpRequest;
use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::cookie::{Cookie, SameSite as CookieSameSite};
use chrono::TimeDelta;

use super::AppState;
use crate::config::SameSite;

/// Whether this request asks for cookie delivery itself (Strapi 5's header).
pub fn asked_by_header(req: &HttpRequest) -> bool {
    req.headers()
        .get("x-strapi-refresh-cookie")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("httponly"))
}

/// Whether refresh tokens go into a cookie for this request.
pub fn requested(state: &AppState, req: &HttpRequest) -> bool {
    state.config.cookie_response || asked_by_header(req)
}

fn base(state: &AppState, value: String) -> Cookie<'static> {
    let settings = &state.config.cookie;
    let mut cookie = Cookie::new(settings.name.clone(), value);
    cookie.set_http_only(true);
    cookie.set_path(settings.path.clone());
    cookie.set_same_site(match settings.same_site {
        SameSite::Strict => CookieSameSite::Strict,
        SameSite::Lax => CookieSameSite::Lax,
        SameSite::None => CookieSameSite::None,
    });
    // Secure follows the public URL, so plain-HTTP development on localhost still works.
    let https = state
        .config
        .production_url
        .as_deref()
        .is_some_and(|url| url.starts_with("https://"));
    // Browsers drop SameSite=None cookies that are not Secure.
    cookie.set_secure(https || settings.same_site == SameSite::None);
    if let Some(domain) = &settings.domain {
        cookie.set_domain(domain.clone());
    }
    cookie
}

/// The cookie carrying `token`, living as long as the token.
pub fn carrying(state: &AppState, token: String, lifetime: TimeDelta) -> Cookie<'static> {
    let mut cookie = base(state, token);
    // Rounded up: a token issued a few milliseconds ago still shows its full lifetime.
    let seconds = (lifetime.num_milliseconds().max(0) + 999) / 1000;
    cookie.set_max_age(CookieDuration::seconds(seconds));
    cookie
}

/// A cookie that makes the browser forget the refresh token.
pub fn expired(state: &AppState) -> Cookie<'static> {
    let mut cookie = base(state, String::new());
    cookie.make_removal();
    cookie
}

/// The refresh token of the request's cookie, if any.
pub fn token(state: &AppState, req: &HttpRequest) -> Option<String> {
    req.cookie(&state.config.cookie.name)
        .map(|c| c.value().to_owned())
        .filter(|t| !t.is_empty())
}
