//! The layers every request passes, outermost first as app.rs wraps them: the API's one
//! trailing slash, the request's ids and access line, the metrics, Strapi's security headers,
//! CORS (`cors.rs`), readiness, and operator paths only as written.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, web};
use tracing::Instrument;

use super::AppState;
use super::context::RequestId;
use super::errors::ApiError;
use super::routes::{Unmatched, matching, route_of};
use crate::config::Config;
use crate::metrics::method_label;

/// `/api/auth/local/` is `/api/auth/local`, as Strapi's router (not `strict`) matches one
/// trailing slash. Only on the API: the operators' paths (`/metrics`, `/docs`, …) stay exact,
/// so a proxy rule that hides one path hides all of it; and `//` is not merged, as Strapi
/// does not.
pub async fn api_trailing_slash(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let path = req.path();
    if path.starts_with("/api/") && path.ends_with('/') && !path.ends_with("//") {
        let trimmed = match req.query_string() {
            "" => path[..path.len() - 1].to_owned(),
            query => format!("{}?{query}", &path[..path.len() - 1]),
        };
        let mut parts = req.head().uri.clone().into_parts();
        if let Ok(path_and_query) = trimmed.parse() {
            parts.path_and_query = Some(path_and_query);
            if let Ok(uri) = actix_web::http::Uri::from_parts(parts) {
                req.match_info_mut().get_mut().update(&uri);
                req.head_mut().uri = uri;
            }
        }
    }
    next.call(req).await
}

/// A new id for the request, from the app's id source.
fn ids(req: &ServiceRequest) -> String {
    match req.app_data::<web::Data<AppState>>() {
        Some(state) => state.app.ids.new_id().to_string(),
        None => uuid::Uuid::now_v7().to_string(),
    }
}

/// What the client sent in `X-Request-Id`, when it is fit to keep: at most 128 bytes of
/// printable ASCII. Anything else (control characters that would forge log lines or a
/// terminal's output, bytes beyond ASCII, a 2 KB value) is dropped, not cut or escaped, so
/// what is kept is always exactly what the client sent.
fn client_request_id(req: &ServiceRequest) -> Option<String> {
    let value = req.headers().get("x-request-id")?;
    let bytes = value.as_bytes();
    let printable = bytes.iter().all(|b| matches!(b, b' '..=b'~'));
    if bytes.is_empty() || bytes.len() > 128 || !printable {
        return None;
    }
    value.to_str().ok().map(str::to_owned)
}

pub async fn request_id(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = RequestId {
        ours: ids(&req),
        client: client_request_id(&req),
    };
    // Every line logged while the request is handled carries both ids (the span's fields);
    // the client's only when it sent one.
    let span = tracing::info_span!(
        "request",
        request_id = %id.ours,
        client_request_id = tracing::field::Empty
    );
    if let Some(client) = &id.client {
        span.record("client_request_id", client.as_str());
    }
    let ours = id.ours.clone();
    req.extensions_mut().insert(id);
    // As metrics name it: an invented method, of any length, is `other`.
    let method = method_label(req.method());
    let started = Instant::now();
    let mut response = next.call(req).instrument(span.clone()).await?;
    // The access line names the route's pattern, not the path a client wrote: a path, like a
    // query string, can carry whatever the client put in it, tokens included.
    span.in_scope(|| {
        tracing::info!(
            target: "tokenledger::access",
            %method,
            route = route_of(response.request()),
            status = response.status().as_u16(),
            micros = started.elapsed().as_micros() as u64,
            "answered"
        );
    });
    if let Ok(value) = header::HeaderValue::from_str(&ours) {
        response
            .headers_mut()
            .insert(header::HeaderName::from_static("x-request-id"), value);
    }
    Ok(response)
}

/// Counts every answer by its route (`route_of`) and status.
pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let metrics = req
        .app_data::<web::Data<AppState>>()
        .map(|state| state.metrics.clone());
    let method = method_label(req.method());
    let handling = metrics.as_ref().map(|m| m.in_flight.enter());
    let mut answered = next.call(req).await;
    drop(handling);
    if let Some(metrics) = metrics {
        // Draining before a stop: the client's next request goes to a new connection, which
        // another instance takes.
        if let Ok(response) = &mut answered
            && metrics.in_flight.draining()
        {
            response
                .response_mut()
                .head_mut()
                .set_connection_type(actix_web::http::ConnectionType::Close);
        }
        let (route, status) = match &answered {
            Ok(response) => (route_of(response.request()), response.status().as_u16()),
            Err(error) => (
                "unmatched".to_owned(),
                error.as_response_error().status_code().as_u16(),
            ),
        };
        metrics.observe(method, route, status, started.elapsed().as_secs_f64());
    }
    answered
}

/// Refuses what needs the projections while start-up is still folding the log into them: an
/// answer from a half-built projection (a live session reported unknown) would be wrong, not
/// slow. The probes, the metrics, the API's document and the audit page's files (its data
/// comes through the admin API, which waits) answer throughout.
pub async fn until_ready<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<actix_web::body::EitherBody<B>>, actix_web::Error> {
    let ready = req
        .app_data::<web::Data<AppState>>()
        .is_none_or(|state| state.catch_up.is_ready());
    let path = req.path();
    let needs_no_projection = matches!(path, "/_health" | "/_ready" | "/metrics" | "/openapi.json")
        || ["/docs", "/admin"].iter().any(|page| {
            path.strip_prefix(page)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        });
    if ready || needs_no_projection {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    let refused = actix_web::ResponseError::error_response(&ApiError::starting());
    Ok(req.into_response(refused).map_into_right_body())
}

/// The headers Strapi's security middleware (koa-helmet, with Strapi's defaults) puts on every
/// response, and `Cache-Control: no-store`, since logins and refreshes carry tokens that no
/// cache may keep. HSTS only when the service is served over https (`PRODUCTION_URL`).
pub fn security_headers(config: &Config) -> actix_web::middleware::DefaultHeaders {
    let mut headers = actix_web::middleware::DefaultHeaders::new()
        .add((
            "Content-Security-Policy",
            "connect-src 'self' https:;default-src 'self';base-uri 'self';font-src 'self' https: data:;\
             form-action 'self';frame-ancestors 'self';img-src 'self' data:;object-src 'none';\
             script-src 'self';script-src-attr 'none';style-src 'self' https: 'unsafe-inline'",
        ))
        .add(("Referrer-Policy", "no-referrer"))
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("X-DNS-Prefetch-Control", "off"))
        .add(("X-Download-Options", "noopen"))
        .add(("X-Frame-Options", "SAMEORIGIN"))
        .add(("X-Permitted-Cross-Domain-Policies", "none"))
        .add((header::CACHE_CONTROL, "no-store"));
    let https = config
        .server
        .production_url
        .as_deref()
        .is_some_and(|url| url.to_ascii_lowercase().starts_with("https://"));
    if https {
        headers = headers.add((
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=31536000; includeSubDomains",
        ));
    }
    headers
}

/// The operators' paths (`/metrics`, `/docs`, `/admin`, the probes, …) exist only as
/// written. The router matches a percent-decoded path, so `/%6detrics` and `/metric%73` were
/// `/metrics`, and `/%61dmin` the audit page: a proxy rule that keeps `/metrics` or `/admin`
/// from the internet compares the path as sent and let them through. A request whose path,
/// decoded, differs from the path it sent and lands on an operator path is a 404, whatever
/// the method. The API keeps its spellings (`/api/users/%6de` is `/api/users/me`), as Strapi's
/// router decodes too, and its routes guard themselves.
pub async fn operator_paths_as_written<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<actix_web::body::EitherBody<B>>, actix_web::Error> {
    let matched = req.match_info().as_str();
    let encoded = matched != req.uri().path();
    if encoded && matching(matched).any(|endpoint| !endpoint.path.starts_with("/api/")) {
        req.extensions_mut().insert(Unmatched);
        let refused = actix_web::ResponseError::error_response(&ApiError::not_found());
        return Ok(req.into_response(refused).map_into_right_body());
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}
