//! Integration tests: the real server over real HTTP, one SQLite file per test. One test
//! binary, so the crate links once.

mod actors;
mod admin_users;
mod audit;
mod audit_page;
mod auth;
mod concurrency;
mod cookies;
mod deploy;
mod hardening;
mod headers;
mod helpers;
mod hostile;
mod hostile_input;
mod insider;
mod instances;
mod ledger_independent;
mod ledger_service;
mod limits;
mod logs;
mod openapi;
mod operations;
mod operator_hardening;
mod plugin_regressions;
mod postgres;
mod privacy;
mod request_hardening;
mod restart;
mod session_scale;
mod sessions;
mod store;
mod store_failures;
mod strapi_frontend;
mod token_attacks;
mod users_explained;
