//! tokenledger: login, refresh tokens and sessions with a replayable audit trail, as a
//! drop-in for Strapi's login API and the refresh-token plugin.

#![forbid(unsafe_code)]

pub mod actors;
pub mod app;
pub mod audit;
pub mod catch_up;
pub mod cli;
pub mod clock;
pub mod config;
pub mod email_codes;
pub mod http;
pub mod ids;
pub mod ledger;
pub mod limits;
pub mod mailer;
pub mod metrics;
pub mod password;
pub mod private_files;
pub mod retention;
pub mod rules;
pub mod secrets;
pub mod signing_keys;
pub mod snapshots;
pub mod store;
pub mod terminal;
pub mod tlog;
pub mod tokens;
pub mod use_cases;
