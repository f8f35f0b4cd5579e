//! tokenledger: login, refresh tokens and sessions with a replayable audit trail, as a
//! drop-in for Strapi's login API and the refresh-token plugin.

pub mod config;
pub mod secrets;
pub mod store;
pub mod password;
pub mod tokens;
pub mod actors;
