//! What the `api` and `crash` test binaries share, so that each thing a test needs is written
//! once: the `tokenledger` binary as a child process (`Server`), an HTTP client of the API
//! (`Api`), a JWT's claims, a fresh PostgreSQL schema a test, Strapi's error body, a
//! `/metrics` scrape, and a real SMTP server that keeps what it is sent.
//!
//! It talks to the server only as a client does (HTTP, the command line, its log), so it
//! depends on nothing inside `tokenledger` and survives any rework of its modules.

mod api;
mod claims;
pub mod cluster;
pub mod latency;
pub mod lazyfs;
mod metrics;
pub mod netns;
mod postgres;
mod server;
mod smtp;
mod strapi;

pub use api::Api;
pub use claims::claims;
pub use metrics::Samples;
pub use postgres::{FreshSchema, fresh_postgres_url, on_fresh_schema, postgres_url};
pub use server::Server;
pub use smtp::{SmtpServer, free_port};
pub use strapi::{
    assert_error, assert_forbidden, assert_invalid_refresh_token, assert_rate_limited,
    assert_unauthorized,
};

/// Whether a test whose `needs` may be missing here runs: when they are missing, it prints
/// why and is skipped, except under `CI` (`.ci/run` installs everything and runs as root),
/// where it fails instead.
pub fn runs_here(needs: &str, missing: Option<String>) -> bool {
    let Some(why) = missing else {
        return true;
    };
    assert!(
        std::env::var("CI").is_err(),
        "{needs} must run in CI: {why}"
    );
    eprintln!("skipping {needs}: {why}");
    false
}

/// The signing secrets every test server runs with (strong enough to be accepted).
pub const JWT_SECRET: &str = "test-access-secret-0123456789abcdef0123456789";
pub const REFRESH_SECRET: &str = "test-refresh-secret-0123456789abcdef012345678";
/// The ledger key and checkpoint signing seed every test server runs with (64 hex digits).
pub const LEDGER_KEY: &str = "6c6564676572206b657920666f72207468652074657374733b207075626c6963";
pub const CHECKPOINT_KEY: &str = "636865636b706f696e74207365656420666f72207465737473207075626c6963";
/// The master key of the personal data keys every test server runs with (64 hex digits).
pub const PERSONAL_DATA_KEY: &str =
    "706572736f6e616c2064617461206b657920666f722074657374732c20707562";
/// The password `Api::register` gives every user, and `Api::login` logs in with.
pub const PASSWORD: &str = "password123";
