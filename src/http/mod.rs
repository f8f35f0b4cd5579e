//! The HTTP API (DESIGN §7), grouped by surface: `auth` (register, login, refresh, change
//! password), `sessions` (logout, list, revoke), `users` (`/api/users/me`). Handlers are thin:
//! they parse, ask the users table or an actor, and shape Strapi's answers. `ENDPOINTS` lists
//! every route; `openapi` documents them and serves the document and its docs page.

mod admin;
mod admin_page;
mod auth;
pub mod body;
pub mod client_ip;
mod cookies;
pub mod errors;
pub mod limits;
pub mod openapi;
mod pagination;
mod sessions;
mod users;
mod validation;

use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use tokenledger_domain::{Client, Lifetimes, SessionId, UserId};
use tokenledger_projections::ActiveSessions;
use tracing::Instrument;
use uuid::Uuid;

use crate::actors::Registry;
use crate::clock::Clock;
use crate::config::Config;
use crate::password::Passwords;
use crate::store::users::UserStore;
use crate::store::{Actor, EventMetadata, EventStore, StoreError, stream_of};
use crate::tokens::Tokens;
use errors::ApiError;

/// What every handler shares.
pub struct AppState {
    pub config: Arc<Config>,
    pub users: UserStore,
    pub passwords: Passwords,
    pub tokens: Arc<Tokens>,
    pub registry: Registry,
    pub projection: Arc<RwLock<ActiveSessions>>,
    pub clock: Arc<Clock>,
    pub limits: limits::RateLimits,
    pub store: Arc<dyn EventStore>,
    /// Other instances write to the same log (PostgreSQL): a session this instance has not
    /// seen yet may be another's newest, so the user's stream is read before "unknown" counts.
    pub shared_log: bool,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// How far the projections have folded the log, and whether start-up has caught up.
    pub catch_up: Arc<crate::catch_up::Progress>,
}

impl AppState {
    /// Whether `session_id` is a live session of `user_id`. On a shared log, a session the
    /// projection does not know sends this instance to the user's stream first (it may have
    /// been issued a moment ago by another instance); a single instance's projection is
    /// complete, and an unknown session is refused without touching the store.
    pub async fn session_is_live(
        &self,
        user_id: UserId,
        session_id: &SessionId,
    ) -> Result<bool, ApiError> {
        let known = self
            .projection
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .owns(user_id, session_id);
        if !known && self.shared_log {
            let after = self
                .projection
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .version(user_id);
            let tail = self.store.read_stream(&stream_of(user_id), after).await?;
            // Decoded before the lock is taken, which every request shares.
            let events = tail
                .iter()
                .map(|record| {
                    let event = record.decode().map_err(|source| StoreError::Corrupt {
                        position: record.position,
                        source,
                    })?;
                    Ok((record.stream_version, event))
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            self.projection
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .apply_all(
                    user_id,
                    events.iter().map(|(version, event)| (*version, event)),
                );
        }
        Ok(self
            .projection
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_live(user_id, session_id, self.clock.now()))
    }

    /// `MAX_SESSIONS_PER_USER`, for every command that starts a session.
    pub fn max_sessions(&self) -> Option<u32> {
        self.config.limits.max_sessions_per_user
    }

    pub fn lifetimes(&self) -> Lifetimes {
        Lifetimes {
            refresh_token: self.config.lifetimes.refresh_token_expires_in,
            idle_timeout: self.config.lifetimes.session_idle_timeout,
            absolute: self.config.lifetimes.session_absolute_lifetime,
        }
    }
}

/// One route of the app. Every route is registered from `ENDPOINTS`, and
/// tests/api/openapi.rs fails when one of them is missing from the OpenAPI document (or the
/// document names a route that is not here), so the two cannot drift apart.
pub struct Endpoint {
    pub method: Method,
    /// actix's pattern, which is also OpenAPI's: `/api/auth/sessions/{id}`.
    pub path: &'static str,
    /// The handler; the method guard comes from `method`, so it is written once.
    handler: fn() -> actix_web::Route,
}

/// To add a route: an entry here, a `#[utoipa::path]` on its handler with the same method and
/// path, and the handler in `openapi::ApiDoc`'s `paths(...)`.
pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        method: Method::POST,
        path: "/api/auth/local/register",
        handler: || web::to(auth::register),
    },
    Endpoint {
        method: Method::POST,
        path: "/api/auth/local",
        handler: || web::to(auth::login),
    },
    Endpoint {
        method: Method::POST,
        path: "/api/auth/local/refresh",
        handler: || web::to(auth::refresh),
    },
    Endpoint {
        method: Method::POST,
        path: "/api/auth/refresh",
        handler: || web::to(auth::refresh_session),
    },
    Endpoint {
        method: Method::POST,
        path: "/api/auth/change-password",
        handler: || web::to(auth::change_password),
    },
    Endpoint {
        method: Method::POST,
        path: "/api/auth/logout",
        handler: || web::to(sessions::logout),
    },
    Endpoint {
        method: Method::GET,
        path: "/api/auth/sessions",
        handler: || web::to(sessions::list),
    },
    Endpoint {
        method: Method::DELETE,
        path: "/api/auth/sessions/{id}",
        handler: || web::to(sessions::revoke),
    },
    Endpoint {
        method: Method::GET,
        path: "/api/users/me",
        handler: || web::to(users::me),
    },
    Endpoint {
        method: Method::GET,
        path: "/api/admin/users",
        handler: || web::to(admin::find_users),
    },
    Endpoint {
        method: Method::GET,
        path: "/api/admin/users/{id}/events",
        handler: || web::to(admin::events),
    },
    Endpoint {
        method: Method::GET,
        path: "/api/admin/users/{id}/sessions",
        handler: || web::to(admin::sessions_at),
    },
    Endpoint {
        method: Method::POST,
        path: "/api/admin/users/{id}/sessions/clear",
        handler: || web::to(admin::clear),
    },
    Endpoint {
        method: Method::GET,
        path: "/_health",
        handler: || web::to(health),
    },
    Endpoint {
        method: Method::GET,
        path: "/_ready",
        handler: || web::to(ready),
    },
    Endpoint {
        method: Method::GET,
        path: "/metrics",
        handler: || web::to(crate::metrics::scrape),
    },
    Endpoint {
        method: Method::GET,
        path: "/admin",
        handler: || web::to(admin_page::index),
    },
    Endpoint {
        method: Method::GET,
        path: "/admin/{file}",
        handler: || web::to(admin_page::asset),
    },
    Endpoint {
        method: Method::GET,
        path: "/openapi.json",
        handler: || web::to(openapi::document),
    },
    Endpoint {
        method: Method::GET,
        path: "/docs",
        handler: || web::to(openapi::docs_page),
    },
    Endpoint {
        method: Method::GET,
        path: "/docs/{file}",
        handler: || web::to(openapi::docs_asset),
    },
];

/// The only place routes are registered (tests/api/openapi.rs checks that too).
pub fn routes(cfg: &mut web::ServiceConfig) {
    for endpoint in ENDPOINTS {
        let route = (endpoint.handler)();
        // HEAD wherever GET (RFC 9110 §9.1), as Strapi's router answers it; actix sends the
        // headers of the GET answer without its body.
        let route = if endpoint.method == Method::GET {
            route.guard(actix_web::guard::Any(actix_web::guard::Get()).or(actix_web::guard::Head()))
        } else {
            route.method(endpoint.method.clone())
        };
        cfg.route(endpoint.path, route);
    }
    cfg.default_service(web::to(unrouted));
}

/// 204 when serving (HEAD too, like every GET route, for load balancers that probe with it).
#[utoipa::path(
    get,
    path = "/_health",
    tag = "health",
    responses((status = 204, description = "The service is serving"))
)]
async fn health() -> HttpResponse {
    HttpResponse::NoContent().finish()
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Ready {
    /// Always `ready`.
    status: &'static str,
}

/// 200 once the start-up rebuild of the projections has caught up with the log; 503 before,
/// when every route that reads the projections answers 503 too (`until_ready`), and for good
/// once the database file was deleted or replaced under the server: every write is refused
/// then, and only a restart helps, which an orchestrator can tell from this.
#[utoipa::path(
    get,
    path = "/_ready",
    tag = "health",
    responses(
        (status = 200, description = "The projections have caught up with the log", body = Ready),
        (status = 503, description = "Still folding the log at start-up (`Retry-After: 1`), or the database file was deleted or replaced (until a restart)", body = errors::ErrorBody),
    )
)]
async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.store.detached().is_some() {
        // The path is the operator's business (it is in the log), not a client's.
        Err(ApiError {
            message: "The database file was deleted or replaced: restart the service".into(),
            ..ApiError::unavailable()
        })
    } else if state.catch_up.is_ready() {
        Ok(HttpResponse::Ok().json(Ready { status: "ready" }))
    } else {
        Err(ApiError::starting())
    }
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

/// The route a request took, by its pattern (`/api/auth/sessions/{id}`, never the id), or
/// `unmatched`: what metrics and the access line name, so that neither holds what a client
/// wrote.
pub fn route_of(req: &HttpRequest) -> String {
    if req.extensions().contains::<Unmatched>() {
        return "unmatched".to_owned();
    }
    req.match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned())
}

/// Marks a request no route took (no path matched, or its method did not), for the metrics'
/// `unmatched` label.
#[derive(Clone, Copy)]
pub struct Unmatched;

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

/// What answers a request no route took, as Strapi's router (`allowedMethods`) does: on a
/// route's path with another method, 405 with `Allow`, and an `OPTIONS` gets `Allow` alone (in
/// a 204, where Strapi's router sends an empty 200); on any other path, 404.
async fn unrouted(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    req.extensions_mut().insert(Unmatched);
    // Without an admin token the admin routes do not exist, whatever the method.
    let admin_off = req
        .app_data::<web::Data<AppState>>()
        .is_some_and(|state| state.config.admin.api_token.is_none());
    // The path the router matched: percent-decoded where it is safe to.
    let path = req.match_info().as_str();
    let hidden = admin_off && (path.starts_with("/api/admin/") || path.starts_with("/admin"));
    let allowed = if hidden {
        Vec::new()
    } else {
        allowed_methods(path)
    };
    if allowed.is_empty() {
        return Err(ApiError::not_found());
    }
    let mut response = if req.method() == Method::OPTIONS {
        HttpResponse::NoContent().finish()
    } else {
        actix_web::ResponseError::error_response(&ApiError::method_not_allowed())
    };
    let allow =
        header::HeaderValue::from_str(&allowed.join(", ")).expect("method names are header-safe");
    response.headers_mut().insert(header::ALLOW, allow);
    Ok(response)
}

/// The methods the routes of `path` answer, HEAD wherever GET, as `routes` registers them.
fn allowed_methods(path: &str) -> Vec<&'static str> {
    matching(path)
        .flat_map(|endpoint| {
            if endpoint.method == Method::GET {
                vec![Method::GET.as_str(), Method::HEAD.as_str()]
            } else {
                vec![endpoint.method.as_str()]
            }
        })
        .collect()
}

/// The endpoints whose pattern matches `path`, as the router matches it.
fn matching(path: &str) -> impl Iterator<Item = &'static Endpoint> + '_ {
    static PATTERNS: std::sync::OnceLock<Vec<(actix_web::dev::ResourceDef, &Endpoint)>> =
        std::sync::OnceLock::new();
    let patterns = PATTERNS.get_or_init(|| {
        ENDPOINTS
            .iter()
            .map(|e| (actix_web::dev::ResourceDef::new(e.path), e))
            .collect()
    });
    patterns
        .iter()
        .filter(move |(pattern, _)| pattern.is_match(path))
        .map(|(_, endpoint)| *endpoint)
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

/// Who is asking: recorded with the events a request causes.
pub struct RequestContext {
    pub ip: Option<IpAddr>,
    pub client: Client,
    pub metadata: EventMetadata,
}

impl RequestContext {
    pub fn of(req: &HttpRequest, state: &AppState) -> RequestContext {
        let chain = client_ip::forwarded_chain(req.headers());
        let address = client_ip::client_ip(
            req.peer_addr().map(|addr| addr.ip()),
            chain.as_deref(),
            &state.config.server.trusted_proxies,
        );
        let ip = address.map(|ip| ip.to_string());
        // Lossy: a user agent with one non-ASCII byte must not vanish from the record.
        let user_agent = req.headers().get(header::USER_AGENT).map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .chars()
                .take(512)
                .collect::<String>()
        });
        // Made here when the middleware did not run (a handler called on its own).
        let id = req.extensions().get::<RequestId>().cloned();
        let (request_id, client_request_id) = match id {
            Some(id) => (id.ours, id.client),
            None => (Uuid::now_v7().to_string(), None),
        };
        RequestContext {
            ip: address,
            client: Client {
                ip: ip.clone(),
                user_agent: user_agent.clone(),
            },
            metadata: EventMetadata {
                request_id: Some(request_id),
                client_request_id,
                ip,
                user_agent,
                actor: Actor::User,
            },
        }
    }
}

/// The ids of one request. Ours, a new UUID v7, is the request's id everywhere: in its log
/// lines, in the events it causes and in the answer's `X-Request-Id`, so that what a client
/// reports can be found in our log. The client's `X-Request-Id` is kept beside it, never in its
/// place: taken as ours, it let a client write whatever it liked into the audit trail's
/// request id, or give its requests another client's id.
#[derive(Clone, Debug)]
pub struct RequestId {
    pub ours: String,
    pub client: Option<String>,
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
        ours: Uuid::now_v7().to_string(),
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
    let method = crate::metrics::method_label(req.method());
    let started = std::time::Instant::now();
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

/// The headers Strapi's security middleware (koa-helmet, with Strapi's defaults) puts on every
/// response, and `Cache-Control: no-store`, since logins and refreshes carry tokens that no
/// cache may keep. HSTS only when the service is served over https (`PRODUCTION_URL`).
pub fn security_headers(config: &crate::config::Config) -> actix_web::middleware::DefaultHeaders {
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

/// CORS as Strapi's `strapi::cors` answers it (its methods, headers and a year's `max-age`),
/// with one difference: credentials (the refresh cookie) only for origins named in
/// `CORS_ORIGINS`, never for any origin, which would let every site read the tokens of a
/// browser's cookie. An origin that is not allowed gets no CORS headers; the browser then
/// keeps the answer from the page.
pub fn cors(config: &crate::config::Config) -> actix_cors::Cors {
    let cors = actix_cors::Cors::default()
        .allowed_methods(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
        .allowed_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            header::ORIGIN,
            header::ACCEPT,
            header::HeaderName::from_static("x-strapi-refresh-cookie"),
        ])
        .max_age(31_536_000);
    match &config.server.cors_origins {
        crate::config::CorsOrigins::Any => cors.allow_any_origin(),
        crate::config::CorsOrigins::Listed(origins) => origins
            .iter()
            .fold(cors, |cors, origin| cors.allowed_origin(origin))
            .supports_credentials(),
    }
}

/// The bearer token of `Authorization`, if there is one.
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}
