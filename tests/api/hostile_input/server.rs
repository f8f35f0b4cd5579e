//! The server under test: the real `tokenledger` binary as its own process (so a crash shows
//! as its exit, and its memory is its own), what its log says of panics and errors, and the
//! accounts the generator uses.

use serde_json::json;
use support::{Api, PASSWORD, Server, claims};

use super::generate::Account;
use crate::helpers::server;

pub const ADMIN_TOKEN: &str = "hostile-admin-token-0123456789abcdef0123456789";
/// The one service of `INTROSPECTION_CLIENTS`.
pub const SERVICE_ID: &str = "hostile-service";
pub const SERVICE_SECRET: &str = "hostile-service-secret-0123456789abcdef01";

/// The binary, serving on a port of its own (on PostgreSQL where `database_url` says so).
pub async fn start(database_url: Option<&str>) -> Server {
    let mut server = server().envs(&[
        ("ADMIN_API_TOKEN", ADMIN_TOKEN),
        (
            "INTROSPECTION_CLIENTS",
            &format!("{SERVICE_ID}:{SERVICE_SECRET}"),
        ),
        ("REFRESH_TOKEN_ROTATION", "true"),
        // The generator's X-Forwarded-For then counts, so its logins spread over many
        // rate-limit keys and reach the password check; the rest still meet the limits.
        ("TRUSTED_PROXIES", "127.0.0.1"),
    ]);
    if let Some(url) = database_url {
        server = server.env("DATABASE_URL", url);
    }
    server.serving().await
}

/// What the server's log said that matters here.
pub struct Log {
    pub panics: Vec<String>,
    pub errors: Vec<String>,
}

impl Log {
    pub fn of(server: &Server) -> Log {
        let lines = server.lines();
        Log {
            panics: lines
                .iter()
                .filter(|line| line.contains("panicked"))
                .cloned()
                .collect(),
            errors: lines
                .into_iter()
                .filter(|line| line.contains("\"level\":\"ERROR\""))
                // HTTP's own refusals of broken framing are logged as errors.
                .filter(|line| !line.contains("request parse error"))
                .take(20)
                .collect(),
        }
    }
}

pub async fn register(api: &Api, name: &str) -> i64 {
    api.register(name).await["user"]["id"]
        .as_i64()
        .expect("user id")
}

/// Logs `name` in from an address of its own (`from`, through the trusted proxy), so the
/// run's rate limits never hold it back, and returns its tokens.
pub async fn log_in(api: &Api, name: &str, id: i64, from: u32) -> Option<Account> {
    let request = api
        .client
        .post(api.url("/api/auth/local"))
        .header(
            "x-forwarded-for",
            std::net::Ipv4Addr::from(from).to_string(),
        )
        .json(&json!({"identifier": name, "password": PASSWORD, "requestRefresh": true}));
    let (status, body) = Api::send(request).await.ok()?;
    if status != 200 {
        return None;
    }
    let jwt = body["jwt"].as_str()?.to_owned();
    Some(Account {
        id,
        username: name.to_owned(),
        email: format!("{name}@example.com"),
        session_id: claims(&jwt)["sid"].as_str()?.to_owned(),
        refresh_token: body["refreshToken"].as_str()?.to_owned(),
        jwt,
    })
}
