//! CORS as Strapi's `strapi::cors` middleware answers it (`@koa/cors` 5 with Strapi's
//! defaults): an allowed `Origin` — any, with `CORS_ORIGINS=*`, else a listed one — is echoed
//! with `Access-Control-Allow-Credentials: true`; a preflight (`OPTIONS` with
//! `Access-Control-Request-Method`) from it is answered 204 at once, with Strapi's methods,
//! headers and a year's `max-age`, whatever it asks for (the browser compares); an origin that
//! is not allowed gets no CORS header and its request is answered as any other, as Strapi
//! answers it: the browser then keeps the answer from the page. Every answer varies on
//! `Origin`.
//!
//! Credentials for any origin are safe here because nothing ambient authenticates a request
//! but the refresh cookie, and the cookie is honoured only from a listed origin or the
//! service's own (`cookies::refuse_cross_site`): a site allowed to read answers still cannot
//! make a browser's cookie work for it. Bearer tokens are never sent by a browser on its own.
//!
//! One difference: a request without `Origin` (no browser's cross-origin request) gets no
//! CORS header, where Strapi sends an empty `Access-Control-Allow-Origin` with credentials.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};

use super::AppState;
use crate::config::CorsOrigins;

/// Strapi's `methods`, in its order.
const METHODS: &str = "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS";
/// Strapi's `headers`, and Strapi 5's own cookie-mode header, which its default list lacks:
/// without it a front end on another origin could not ask for the refresh cookie.
const HEADERS: &str = "Content-Type,Authorization,Origin,Accept,x-strapi-refresh-cookie";
/// Strapi's `maxAge`: a year.
const MAX_AGE: &str = "31536000";

pub async fn cors<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let allowed = allowed_origin(&req);
    let options = req.method() == Method::OPTIONS;
    let preflight = options
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if let (Some(origin), true) = (&allowed, preflight) {
        let answer = HttpResponse::NoContent()
            .insert_header((header::VARY, "Origin"))
            .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()))
            .insert_header((header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true"))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, MAX_AGE))
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, METHODS))
            .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, HEADERS))
            .finish();
        return Ok(req.into_response(answer).map_into_right_body());
    }
    let mut response = next.call(req).await?;
    let headers = response.headers_mut();
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    // An `OPTIONS` that is no preflight is the router's (`Allow`), without CORS, as koa's.
    if let Some(origin) = allowed.filter(|_| !options) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    Ok(response.map_into_left_body())
}

/// The request's `Origin`, as sent, when CORS allows it.
fn allowed_origin(req: &ServiceRequest) -> Option<HeaderValue> {
    let origin = req.headers().get(header::ORIGIN)?;
    let state = req.app_data::<web::Data<AppState>>()?;
    let text = origin.to_str().ok()?;
    allows(&state.config.server.cors_origins, text).then(|| origin.clone())
}

/// Whether `origin` may read answers: any with `*`, else one listed (compared as browsers
/// write origins, in any case).
fn allows(origins: &CorsOrigins, origin: &str) -> bool {
    match origins {
        CorsOrigins::Any => true,
        CorsOrigins::Listed(listed) => listed
            .iter()
            .any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_allows_every_origin_and_a_list_only_its_own() {
        assert!(allows(&CorsOrigins::Any, "https://anywhere.example"));
        assert!(allows(&CorsOrigins::Any, "null"));
        let listed = CorsOrigins::Listed(vec!["https://App.example.com".into()]);
        assert!(allows(&listed, "https://app.example.com"));
        assert!(!allows(&listed, "https://app.example.com.evil.example"));
        assert!(!allows(&listed, "http://app.example.com"));
        assert!(!allows(&listed, "null"));
    }
}
