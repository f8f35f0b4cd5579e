//! The HTTP API (DESIGN §7), grouped by surface: `auth` (register, login, refresh, change
//! password), `sessions` (logout, list, revoke), `users` (`/api/users/me`). Handlers are thin:
//! they parse, ask the users table or an actor, and shape Strapi's answers.

mod auth;
pub mod body;
mod cookies;
pub mod errors;
pub mod limits;
mod sessions;
mod users;
mod validation;

use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use tokenledger_domain::{Client, Lifetimes};
use tokenledger_projections::ActiveSessions;
use uuid::Uuid;

use crate::actors::Registry;
use crate::clock::Clock;
use crate::config::Config;
use crate::password::Passwords;
use crate::store::users::UserStore;
use crate::store::{Actor, EventMetadata};
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
}

impl AppState {
    pub fn lifetimes(&self) -> Lifetimes {
        Lifetimes {
            refresh_token: self.config.refresh_token_expires_in,
            idle_timeout: self.config.session_idle_timeout,
            absolute: self.config.session_absolute_lifetime,
        }
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/auth/local/register", web::post().to(auth::register))
        .route("/api/auth/local", web::post().to(auth::login))
        .route("/api/auth/local/refresh", web::post().to(auth::refresh))
        .route("/api/auth/refresh", web::post().to(auth::refresh))
        .route(
            "/api/auth/change-password",
            web::post().to(auth::change_password),
        )
        .route("/api/auth/logout", web::post().to(sessions::logout))
        .route("/api/auth/sessions", web::get().to(sessions::list))
        .route(
            "/api/auth/sessions/{id}",
            web::delete().to(sessions::revoke),
        )
        .route("/api/users/me", web::get().to(users::me))
        .route("/_health", web::get().to(health))
        .route("/_health", web::head().to(health))
        .default_service(web::to(not_found));
}

async fn health() -> HttpResponse {
    HttpResponse::NoContent().finish()
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found())
}

/// Who is asking: recorded with the events a request causes.
pub struct RequestContext {
    pub ip: Option<IpAddr>,
    pub client: Client,
    pub metadata: EventMetadata,
}

impl RequestContext {
    pub fn of(req: &HttpRequest, state: &AppState) -> RequestContext {
        let forwarded = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok());
        let address = limits::client_ip(
            req.peer_addr().map(|addr| addr.ip()),
            forwarded,
            &state.config.trusted_proxies,
        );
        let ip = address.map(|ip| ip.to_string());
        let user_agent = req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(512).collect::<String>());
        let request_id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 128)
            .map(str::to_owned)
            .unwrap_or_else(|| Uuid::now_v7().to_string());
        RequestContext {
            ip: address,
            client: Client {
                ip: ip.clone(),
                user_agent: user_agent.clone(),
            },
            metadata: EventMetadata {
                request_id: Some(request_id),
                ip,
                user_agent,
                actor: Actor::User,
            },
        }
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
