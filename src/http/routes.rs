//! The route table: every route of the app, registered from `ENDPOINTS` and nowhere else,
//! and what answers a request no route took (404, or 405 with `Allow`, as Strapi's router).

use actix_web::http::{Method, header};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};

use super::errors::ApiError;
use super::{
    AppState, admin, admin_page, auth, introspection, ledger, openapi, probes, sessions, users,
    well_known,
};

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
        path: "/api/auth/forgot-password",
        handler: || web::to(auth::forgot_password),
    },
    Endpoint {
        method: Method::POST,
        path: "/api/auth/reset-password",
        handler: || web::to(auth::reset_password),
    },
    Endpoint {
        method: Method::POST,
        path: "/api/auth/send-email-confirmation",
        handler: || web::to(auth::send_email_confirmation),
    },
    Endpoint {
        method: Method::GET,
        path: "/api/auth/email-confirmation",
        handler: || web::to(auth::email_confirmation),
    },
    Endpoint {
        method: Method::POST,
        path: "/api/auth/logout",
        handler: || web::to(sessions::logout),
    },
    Endpoint {
        method: Method::POST,
        path: "/api/auth/introspect",
        handler: || web::to(introspection::introspect),
    },
    Endpoint {
        method: Method::POST,
        path: "/api/auth/revoke",
        handler: || web::to(introspection::revoke),
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
        method: Method::DELETE,
        path: "/api/admin/users/{id}",
        handler: || web::to(admin::forget),
    },
    Endpoint {
        method: Method::POST,
        path: "/api/admin/users/{id}/block",
        handler: || web::to(admin::block),
    },
    Endpoint {
        method: Method::POST,
        path: "/api/admin/users/{id}/unblock",
        handler: || web::to(admin::unblock),
    },
    Endpoint {
        method: Method::GET,
        path: "/api/admin/ledger/checkpoint",
        handler: || web::to(ledger::checkpoint),
    },
    Endpoint {
        method: Method::GET,
        path: "/api/admin/ledger/proof/inclusion",
        handler: || web::to(ledger::inclusion),
    },
    Endpoint {
        method: Method::GET,
        path: "/api/admin/ledger/proof/consistency",
        handler: || web::to(ledger::consistency),
    },
    Endpoint {
        method: Method::GET,
        path: "/.well-known/jwks.json",
        handler: || web::to(well_known::jwks),
    },
    Endpoint {
        method: Method::GET,
        path: "/.well-known/oauth-authorization-server",
        handler: || web::to(well_known::metadata),
    },
    Endpoint {
        method: Method::GET,
        path: "/_health",
        handler: || web::to(probes::health),
    },
    Endpoint {
        method: Method::GET,
        path: "/_ready",
        handler: || web::to(probes::ready),
    },
    Endpoint {
        method: Method::GET,
        path: "/metrics",
        handler: || web::to(probes::scrape),
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
pub(super) fn matching(path: &str) -> impl Iterator<Item = &'static Endpoint> + '_ {
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
