//! Setup, never measured: the users the scenarios log in as, their registration, and the
//! login that gives a virtual user its first refresh token. Any failure here ends the run with
//! a message that says what the server wanted.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use hyper::StatusCode;
use serde_json::json;
use tokio::task::JoinSet;

use crate::answers;
use crate::connection::Connection;
use crate::target::{Route, Target};

/// A setup request that takes longer than this means the server is stuck, not busy.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// One registered user, as a virtual user needs it.
pub struct User {
    pub username: String,
    /// `{"identifier","password","requestRefresh":true}`, built once.
    pub login_body: Bytes,
    register_body: Bytes,
}

/// `count` users `{prefix}-{i}` with email `{prefix}-{i}@loadgen.test`.
pub fn users(prefix: &str, count: usize, password: &str) -> Vec<User> {
    (0..count)
        .map(|i| {
            let username = format!("{prefix}-{i}");
            let email = format!("{username}@loadgen.test");
            let login =
                json!({"identifier": username, "password": password, "requestRefresh": true});
            let register = json!({"username": username, "email": email, "password": password});
            User {
                login_body: Bytes::from(login.to_string()),
                register_body: Bytes::from(register.to_string()),
                username,
            }
        })
        .collect()
}

/// A prefix no earlier or concurrent run used: `lg`, the time in milliseconds and the process
/// id, in base 36.
pub fn fresh_prefix() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!(
        "lg{}{}",
        base36(millis),
        base36(u128::from(std::process::id()))
    )
}

fn base36(mut n: u128) -> String {
    let mut digits = Vec::new();
    loop {
        // n % 36 < 36, a valid base-36 digit.
        digits.push(char::from_digit((n % 36) as u32, 36).unwrap_or('0'));
        n /= 36;
        if n == 0 {
            break;
        }
    }
    digits.iter().rev().collect()
}

#[derive(Debug, Default)]
pub struct Registered {
    pub created: usize,
    pub existing: usize,
}

/// Registers every user, `parallel` at a time (each costs the server an argon2 hash). A user
/// that already exists (400 "already taken") is fine: it logs in later.
pub async fn register_all(
    target: &Arc<Target>,
    users: &Arc<Vec<User>>,
    parallel: usize,
) -> anyhow::Result<Registered> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = JoinSet::new();
    for _ in 0..parallel.clamp(1, users.len().max(1)) {
        let (target, users, next) = (target.clone(), users.clone(), next.clone());
        workers.spawn(async move {
            let mut connection = Connection::new(target.addr);
            let mut registered = Registered::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(user) = users.get(i) else {
                    return Ok::<_, anyhow::Error>(registered);
                };
                let request = || target.post(Route::Register, user.register_body.clone(), None);
                let (status, body) = exchange(&mut connection, request)
                    .await
                    .with_context(|| format!("registering {}", user.username))?;
                if status.is_success() {
                    registered.created += 1;
                } else if status == StatusCode::BAD_REQUEST
                    && answers::error_message(status, &body).contains("already taken")
                {
                    registered.existing += 1;
                } else {
                    bail!(
                        "registering {} answered {}{}",
                        user.username,
                        answers::error_message(status, &body),
                        hint(status)
                    );
                }
            }
        });
    }
    let mut total = Registered::default();
    while let Some(worker) = workers.join_next().await {
        // A failed worker aborts the others: dropping the set cancels them.
        let registered = worker.context("a registration task panicked")??;
        total.created += registered.created;
        total.existing += registered.existing;
    }
    Ok(total)
}

/// Logs `user` in and returns `(jwt, refreshToken)`.
pub async fn login(
    connection: &mut Connection,
    target: &Target,
    user: &User,
) -> anyhow::Result<(String, String)> {
    let request = || target.post(Route::Login, user.login_body.clone(), None);
    let (status, body) = exchange(connection, request)
        .await
        .with_context(|| format!("logging in as {}", user.username))?;
    if !status.is_success() {
        bail!(
            "logging in as {} answered {}{}",
            user.username,
            answers::error_message(status, &body),
            hint(status)
        );
    }
    let tokens = answers::tokens(&body)
        .with_context(|| format!("logging in as {}: the answer is not JSON", user.username))?;
    if tokens.jwt.is_empty() || tokens.refresh_token.is_empty() {
        bail!(
            "logging in as {} with requestRefresh answered no jwt or no refreshToken in the body \
             (is the server in cookie mode? COOKIE_RESPONSE must be false)",
            user.username
        );
    }
    Ok((tokens.jwt.into_owned(), tokens.refresh_token.into_owned()))
}

/// Sends the request `request` makes; while the server answers 503 (too many password
/// checks wait already: setup registers and logs in many users at once), waits about the
/// second its `Retry-After` asks and sends it again, a bounded number of times.
async fn exchange(
    connection: &mut Connection,
    request: impl Fn() -> hyper::Request<crate::target::Body>,
) -> anyhow::Result<(StatusCode, Bytes)> {
    for _ in 0..BUSY_RETRIES {
        let answer = tokio::time::timeout(SETUP_TIMEOUT, connection.send(request()))
            .await
            .with_context(|| format!("no answer in {}s", SETUP_TIMEOUT.as_secs()))??;
        if answer.0 != StatusCode::SERVICE_UNAVAILABLE {
            return Ok(answer);
        }
        tokio::time::sleep(crate::scenario::busy_backoff()).await;
    }
    bail!("the server answered 503 {BUSY_RETRIES} times in a row")
}

/// How often setup sends a request the server was too busy for.
const BUSY_RETRIES: usize = 60;

/// What the server probably needs when setup is refused.
fn hint(status: StatusCode) -> &'static str {
    match status {
        StatusCode::TOO_MANY_REQUESTS => {
            " (rate limited: start tokenledger with LOGIN_RATE_LIMIT=off LOGIN_IP_RATE_LIMIT=off REFRESH_RATE_LIMIT=off)"
        }
        StatusCode::BAD_REQUEST => " (wrong password for an existing user? see --password)",
        StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => {
            " (is registration enabled and the base URL right?)"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_numbered_under_the_prefix() {
        let users = users("lgtest", 2, "loadgen-password-1");
        assert_eq!(users[1].username, "lgtest-1");
        let register: serde_json::Value =
            serde_json::from_slice(&users[1].register_body).expect("json");
        assert_eq!(register["email"], "lgtest-1@loadgen.test");
        let login: serde_json::Value = serde_json::from_slice(&users[0].login_body).expect("json");
        assert_eq!(login["requestRefresh"], true);
    }

    #[test]
    fn prefixes_are_lowercase_names() {
        let prefix = fresh_prefix();
        assert!(prefix.starts_with("lg") && prefix.len() > 4);
        assert!(
            prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
    }
}
