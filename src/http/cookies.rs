//! Cookie mode: the refresh token travels in an `HttpOnly` cookie instead of the body, when
//! `cookieResponse` is on or a request asks with `x-strapi-refresh-cookie: httpOnly` (as
//! Strapi 5 does). Refresh and logout read the cookie when the body carries no token.
//! Where a cookie is in play, cross-site requests are refused (`refuse_cross_site`).

use actix_web::HttpRequest;
use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::cookie::{Cookie, SameSite as CookieSameSite};
use actix_web::http::header;
use chrono::TimeDelta;

use super::AppState;
use super::errors::ApiError;
use crate::config::{CookieMaxAge, CorsOrigins, SameSite};

/// Whether this request asks for cookie delivery itself (Strapi 5's header).
pub fn asked_by_header(req: &HttpRequest) -> bool {
    req.headers()
        .get("x-strapi-refresh-cookie")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("httponly"))
}

/// Whether refresh tokens go into a cookie for this request.
pub fn requested(state: &AppState, req: &HttpRequest) -> bool {
    state.config.cookie.response || asked_by_header(req)
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
    // Secure follows the public URL, so plain-HTTP development on localhost still works
    // (Strapi's follows NODE_ENV, refresh-cookie-options.js:9); COOKIE_SECURE says otherwise.
    let https = state
        .config
        .server
        .production_url
        .as_deref()
        .is_some_and(|url| url.starts_with("https://"));
    // Browsers drop SameSite=None cookies that are not Secure.
    let secure = state.config.sessions.cookie_secure;
    cookie.set_secure(secure.unwrap_or(https || settings.same_site == SameSite::None));
    if let Some(domain) = &settings.domain {
        cookie.set_domain(domain.clone());
    }
    cookie
}

/// The cookie carrying `token`, whose lifetime is `lifetime`: the cookie lives as long by
/// default, or as `COOKIE_MAX_AGE` says (in refresh mode, until the browser closes, as
/// Strapi's cookie without `maxAge`).
pub fn carrying(state: &AppState, token: String, lifetime: TimeDelta) -> Cookie<'static> {
    let mut cookie = base(state, token);
    let max_age = match state.config.sessions.cookie_max_age {
        CookieMaxAge::Token => lifetime,
        CookieMaxAge::Fixed(max_age) => max_age,
        CookieMaxAge::Session => return cookie,
    };
    // Rounded up: a token issued a few milliseconds ago still shows its full lifetime.
    let seconds = (max_age.num_milliseconds().max(0) + 999) / 1000;
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

/// Refuses a cross-site request that could ride or set the refresh cookie: a form on another
/// site is a CORS "simple request" the browser sends with the cookie and whose `Set-Cookie`
/// it keeps, so it could log the browser in as the attacker, swap its cookie, or log it out.
/// Only where a cookie is in play (cookie mode, or the request carries the cookie); a request
/// with no `Origin` and no `Sec-Fetch-Site: cross-site` is not a browser's cross-site one.
pub fn refuse_cross_site(state: &AppState, req: &HttpRequest) -> Result<(), ApiError> {
    if !(requested(state, req) || token(state, req).is_some()) {
        return Ok(());
    }
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let allowed = match header("origin") {
        Some(origin) => origin_allowed(state, req, origin),
        None => {
            header("sec-fetch-site").is_none_or(|site| !site.eq_ignore_ascii_case("cross-site"))
        }
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::cross_site())
    }
}

/// An origin listed in `CORS_ORIGINS`, the service's own public one (`PRODUCTION_URL`), or
/// the one the request was sent to (its `Host`). `null` (a sandboxed or privacy-hidden
/// origin) is none of them.
fn origin_allowed(state: &AppState, req: &HttpRequest, origin: &str) -> bool {
    let origin = origin.trim_end_matches('/');
    if let CorsOrigins::Listed(origins) = &state.config.server.cors_origins
        && origins
            .iter()
            .any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let public = state
        .config
        .server
        .production_url
        .as_deref()
        .and_then(origin_of);
    if public.is_some_and(|public| public.eq_ignore_ascii_case(origin)) {
        return true;
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, host)| host);
    matches!((origin_host, host), (Some(a), Some(b)) if a.eq_ignore_ascii_case(b))
}

/// `https://auth.example.com` of `https://auth.example.com/some/path`.
fn origin_of(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find('/').unwrap_or(rest.len());
    Some(&url[..scheme.len() + 3 + end])
}

#[cfg(test)]
mod tests {
    use super::origin_of;

    #[test]
    fn an_origin_is_scheme_and_authority() {
        assert_eq!(
            origin_of("https://auth.example.com/api/x"),
            Some("https://auth.example.com")
        );
        assert_eq!(
            origin_of("http://localhost:1337"),
            Some("http://localhost:1337")
        );
        assert_eq!(origin_of("localhost"), None);
    }
}
