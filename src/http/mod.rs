//! The HTTP API (DESIGN §7, §11): each handler parses its request, calls a use case
//! (`crate::use_cases`), and shapes Strapi's answer. By surface: `auth` (register, login,
//! refresh, change password), `sessions` (logout, list, revoke), `users` (`/api/users/me`),
//! `admin` and its page. By concern: `routes` (the route table), `middleware` (the layers every
//! request passes), `cors` (Strapi's CORS), `context` (who asks), `forms` (the bodies, which
//! are also their schemas), `errors` (Strapi's error answers), `probes` (health, readiness,
//! metrics), `openapi` (the document and its page). `introspection`: RFC 7662 introspection
//! and RFC 7009 revocation, for services and front ends.

mod admin;
mod admin_page;
mod auth;
pub mod body;
pub mod client_ip;
mod context;
mod cookies;
pub mod cors;
pub mod errors;
mod forms;
mod introspection;
mod ledger;
pub mod middleware;
pub mod openapi;
mod pagination;
mod probes;
mod public_user;
pub mod routes;
mod sessions;
mod user_query;
mod users;
mod validation;
mod well_known;

use std::sync::Arc;

pub use context::{bearer, caller};
pub use routes::{ENDPOINTS, Endpoint, route_of, routes};

use crate::config::Config;
use crate::use_cases::Services;

/// What every handler shares: the use cases, and what only HTTP needs.
pub struct AppState {
    pub app: Services,
    /// The same configuration the use cases read (cookies, CORS and delivery are HTTP's).
    pub config: Arc<Config>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// How far the projections have folded the log, and whether start-up has caught up.
    pub catch_up: Arc<crate::catch_up::Progress>,
    /// Makes and serves the ledger's checkpoints and proofs.
    pub ledger: Arc<crate::ledger::checkpoints::Checkpointer>,
}
