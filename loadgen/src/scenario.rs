//! The scenarios, as the loop one virtual user runs on its own connection until the window
//! closes. A user records into its own `Stats` only requests it started after the warm-up.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::ValueEnum;
use hyper::header::HeaderValue;
use hyper::{Request, StatusCode};

use crate::answers::{self, BodyWriter};
use crate::connection::Connection;
use crate::setup::{self, User};
use crate::stats::{Kind, Stats};
use crate::target::{Body, Route, Target};

/// A request still unanswered this long after the window closed is abandoned (and counted as a
/// transport error), so a stuck server cannot hold the run forever.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Refreshes per login in `mixed`.
const MIXED_REFRESHES: usize = 5;

const LOGIN_WITHOUT_TOKENS: &str = "login answered 2xx without jwt or refreshToken in the body \
     (is the server in cookie mode? COOKIE_RESPONSE must be false)";
const REFRESH_WITHOUT_JWT: &str = "refresh answered 2xx without a jwt";
const NOT_ROTATING: &str = "refresh answered 2xx without a new refreshToken: the server does not \
     rotate (start tokenledger with REFRESH_TOKEN_ROTATION=true, or use --scenario refresh)";
const UNUSABLE_JWT: &str = "the jwt cannot be sent in an Authorization header";
const INACTIVE: &str =
    "introspection answered 2xx without \"active\": true for a live access token";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// GET /_health: the HTTP floor.
    Health,
    /// POST /api/auth/local with requestRefresh, in a loop.
    Login,
    /// One login (setup), then POST /api/auth/local/refresh with the refresh token, in a loop.
    Refresh,
    /// Like refresh, each answer's new refresh token used for the next (server's rotation on).
    RefreshRotate,
    /// Login, 5 refreshes, GET /api/auth/sessions, POST /api/auth/logout, in a loop.
    Mixed,
    /// One login (setup), then POST /api/auth/introspect of its access token as a service
    /// (--introspection-client), in a loop.
    Introspect,
    /// One login (setup), then GET /api/users/me with its access token, in a loop: the same
    /// session check as introspect, behind a bearer route.
    Me,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Health => "health",
            Scenario::Login => "login",
            Scenario::Refresh => "refresh",
            Scenario::RefreshRotate => "refresh-rotate",
            Scenario::Mixed => "mixed",
            Scenario::Introspect => "introspect",
            Scenario::Me => "me",
        }
    }

    pub fn needs_users(self) -> bool {
        self != Scenario::Health
    }

    /// Whether a user logs in during setup to hold its tokens from the start.
    fn logs_in_first(self) -> bool {
        matches!(
            self,
            Scenario::Refresh | Scenario::RefreshRotate | Scenario::Introspect | Scenario::Me
        )
    }
}

/// The measured window: requests started in `[from, end)` are recorded.
#[derive(Clone, Copy)]
pub struct Window {
    pub from: Instant,
    pub end: Instant,
}

/// A 2xx answer; `measured` when its request started in the window.
struct Reply {
    body: Bytes,
    measured: bool,
}

/// Why a request did not succeed (already recorded).
/// How long a virtual user waits after a 503: about the second of the `Retry-After` that
/// tokenledger sends with it, spread over 0.5–1.5 s so that the refused do not all come back
/// at once and leave the password threads idle in between.
pub fn busy_backoff() -> Duration {
    let spread = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos() % 1_000_000_000);
    Duration::from_millis(500) + Duration::from_nanos(u64::from(spread))
}

enum Failure {
    Status(StatusCode),
    Transport,
}

pub struct VirtualUser {
    scenario: Scenario,
    connection: Connection,
    target: Arc<Target>,
    users: Arc<Vec<User>>,
    user: usize,
    jwt: String,
    refresh_token: String,
    /// `{"refreshToken": refresh_token}`, rebuilt only when the token changes.
    refresh_body: Bytes,
    /// `introspect`: the service's `Basic` credential.
    service: Option<HeaderValue>,
    writer: BodyWriter,
    stats: Stats,
    window: Window,
    in_flight: Option<Kind>,
    /// Requests of all users, for the progress line.
    progress: Arc<AtomicU64>,
}

impl VirtualUser {
    /// Connects (and logs in, for the refresh scenarios): the unmeasured setup of user `index`.
    pub async fn prepare(
        scenario: Scenario,
        target: Arc<Target>,
        users: Arc<Vec<User>>,
        index: usize,
        progress: Arc<AtomicU64>,
        service: Option<HeaderValue>,
    ) -> anyhow::Result<VirtualUser> {
        let mut connection = Connection::new(target.addr);
        connection.connect().await.map_err(|error| {
            anyhow::anyhow!(
                "cannot connect to {} ({error}); is the server running?",
                target.addr
            )
        })?;
        let now = Instant::now();
        let mut user = VirtualUser {
            scenario,
            connection,
            user: if users.is_empty() {
                0
            } else {
                index % users.len()
            },
            users,
            target,
            jwt: String::with_capacity(512),
            refresh_token: String::with_capacity(512),
            refresh_body: Bytes::new(),
            service,
            writer: BodyWriter::default(),
            stats: Stats::default(),
            window: Window {
                from: now,
                end: now,
            },
            in_flight: None,
            progress,
        };
        if scenario.logs_in_first() {
            let (jwt, refresh_token) =
                setup::login(&mut user.connection, &user.target, &user.users[user.user]).await?;
            user.jwt = jwt;
            user.adopt_refresh_token(&refresh_token);
        }
        Ok(user)
    }

    /// Runs the scenario through `window` (and `STOP_GRACE` at most after it).
    pub async fn run(mut self, window: Window) -> Stats {
        self.window = window;
        // A fresh connection: the one setup used may have sat idle past the server's keep-alive
        // while other users were still being set up (a busy server's 503s make setup long),
        // and a request on a connection the server closed could wait until the hard stop.
        self.connection = Connection::new(self.target.addr);
        let hard_stop = tokio::time::Instant::from_std(window.end + STOP_GRACE);
        let scenario = self.scenario;
        let driven = tokio::time::timeout_at(hard_stop, async {
            match scenario {
                Scenario::Health => self.health().await,
                Scenario::Login => self.login().await,
                Scenario::Refresh => self.refresh(false).await,
                Scenario::RefreshRotate => self.refresh(true).await,
                Scenario::Mixed => self.mixed().await,
                Scenario::Introspect => self.introspect().await,
                Scenario::Me => self.me().await,
            }
        })
        .await;
        if driven.is_err()
            && let Some(kind) = self.in_flight
        {
            self.stats.transport(kind, || {
                format!(
                    "no answer {} s after the end of the run",
                    STOP_GRACE.as_secs()
                )
            });
        }
        self.stats
    }

    async fn health(&mut self) {
        while self.open() {
            let request = self.target.get(Route::Health, None);
            if let Ok(reply) = self.send(Kind::Health, request).await {
                self.succeed(Kind::Health, &reply);
            }
        }
    }

    async fn login(&mut self) {
        while self.open() {
            let request = self.target.post(Route::Login, self.login_body(), None);
            let reply = match self.send(Kind::Login, request).await {
                Ok(reply) => reply,
                // Too many logins wait for a password check already: back off about as the
                // answer asks (`Retry-After: 1`), as a real client would, not spin on 503s.
                Err(Failure::Status(StatusCode::SERVICE_UNAVAILABLE)) => {
                    tokio::time::sleep(busy_backoff()).await;
                    continue;
                }
                Err(_) => continue,
            };
            match answers::tokens(&reply.body) {
                Some(t) if !t.jwt.is_empty() && !t.refresh_token.is_empty() => {
                    self.succeed(Kind::Login, &reply);
                }
                _ => self.unexpected(Kind::Login, &reply, LOGIN_WITHOUT_TOKENS),
            }
        }
    }

    /// `rotate`: every answer must carry the next refresh token. Without it, a new token in an
    /// answer is still used, so `refresh` works against a rotating server too.
    async fn refresh(&mut self, rotate: bool) {
        while self.open() {
            let request = self
                .target
                .post(Route::Refresh, self.refresh_body.clone(), None);
            match self.send(Kind::Refresh, request).await {
                Ok(reply) => {
                    let Some(tokens) = answers::tokens(&reply.body).filter(|t| !t.jwt.is_empty())
                    else {
                        self.unexpected(Kind::Refresh, &reply, REFRESH_WITHOUT_JWT);
                        continue;
                    };
                    if tokens.refresh_token.is_empty() {
                        if rotate {
                            self.unexpected(Kind::Refresh, &reply, NOT_ROTATING);
                            continue;
                        }
                    } else {
                        self.adopt_refresh_token(&tokens.refresh_token);
                    }
                    self.succeed(Kind::Refresh, &reply);
                }
                // The session is gone (revoked, expired, or a broken rotation chain).
                Err(Failure::Status(StatusCode::UNAUTHORIZED)) => self.relogin().await,
                Err(_) => {}
            }
        }
    }

    async fn mixed(&mut self) {
        'iteration: while self.open() {
            let request = self.target.post(Route::Login, self.login_body(), None);
            let reply = match self.send(Kind::Login, request).await {
                Ok(reply) => reply,
                Err(Failure::Status(StatusCode::SERVICE_UNAVAILABLE)) => {
                    tokio::time::sleep(busy_backoff()).await;
                    continue;
                }
                Err(_) => continue,
            };
            match answers::tokens(&reply.body) {
                Some(t) if !t.jwt.is_empty() && !t.refresh_token.is_empty() => {
                    self.jwt.clear();
                    self.jwt.push_str(&t.jwt);
                    self.adopt_refresh_token(&t.refresh_token);
                    self.succeed(Kind::Login, &reply);
                }
                _ => {
                    self.unexpected(Kind::Login, &reply, LOGIN_WITHOUT_TOKENS);
                    continue;
                }
            }
            for _ in 0..MIXED_REFRESHES {
                if !self.open() {
                    break 'iteration;
                }
                let request = self
                    .target
                    .post(Route::Refresh, self.refresh_body.clone(), None);
                let Ok(reply) = self.send(Kind::Refresh, request).await else {
                    continue 'iteration;
                };
                let Some(tokens) = answers::tokens(&reply.body).filter(|t| !t.jwt.is_empty())
                else {
                    self.unexpected(Kind::Refresh, &reply, REFRESH_WITHOUT_JWT);
                    continue 'iteration;
                };
                self.jwt.clear();
                self.jwt.push_str(&tokens.jwt);
                if !tokens.refresh_token.is_empty() {
                    self.adopt_refresh_token(&tokens.refresh_token);
                }
                self.succeed(Kind::Refresh, &reply);
            }
            let Some(bearer) = self.writer.bearer(&self.jwt) else {
                self.stats.note(|| UNUSABLE_JWT.to_owned());
                continue;
            };
            if !self.open() {
                break;
            }
            let request = self.target.get(Route::Sessions, Some(&bearer));
            let Ok(reply) = self.send(Kind::Sessions, request).await else {
                continue;
            };
            self.succeed(Kind::Sessions, &reply);
            if !self.open() {
                break;
            }
            let logout = Bytes::from_static(b"{}");
            let request = self.target.post(Route::Logout, logout, Some(&bearer));
            if let Ok(reply) = self.send(Kind::Logout, request).await {
                self.succeed(Kind::Logout, &reply);
            }
        }
    }

    /// The service asks about the user's access token; its body is written once per token.
    async fn introspect(&mut self) {
        let mut body = self.writer.introspection(&self.jwt);
        while self.open() {
            let request = self
                .target
                .post(Route::Introspect, body.clone(), self.service.as_ref());
            match self.send(Kind::Introspect, request).await {
                Ok(reply) if answers::active(&reply.body) => self.succeed(Kind::Introspect, &reply),
                // The session is gone: a new login, and its token from then on.
                Ok(reply) => {
                    self.unexpected(Kind::Introspect, &reply, INACTIVE);
                    self.relogin().await;
                    body = self.writer.introspection(&self.jwt);
                }
                Err(_) => {}
            }
        }
    }

    async fn me(&mut self) {
        let Some(mut bearer) = self.writer.bearer(&self.jwt) else {
            self.stats.note(|| UNUSABLE_JWT.to_owned());
            return;
        };
        while self.open() {
            let request = self.target.get(Route::Me, Some(&bearer));
            match self.send(Kind::Me, request).await {
                Ok(reply) => self.succeed(Kind::Me, &reply),
                Err(Failure::Status(StatusCode::UNAUTHORIZED)) => {
                    self.relogin().await;
                    match self.writer.bearer(&self.jwt) {
                        Some(fresh) => bearer = fresh,
                        None => return,
                    }
                }
                Err(_) => {}
            }
        }
    }

    fn open(&self) -> bool {
        Instant::now() < self.window.end
    }

    fn login_body(&self) -> Bytes {
        self.users[self.user].login_body.clone()
    }

    fn adopt_refresh_token(&mut self, token: &str) {
        if token != self.refresh_token {
            self.refresh_token.clear();
            self.refresh_token.push_str(token);
            self.refresh_body = self.writer.refresh(token);
        }
    }

    /// Sends one request and records its answer (its outcome, for a 2xx, is the caller's).
    async fn send(&mut self, kind: Kind, request: Request<Body>) -> Result<Reply, Failure> {
        let started = Instant::now();
        let measured = started >= self.window.from;
        self.in_flight = measured.then_some(kind);
        let result = self.connection.send(request).await;
        self.in_flight = None;
        self.progress.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok((status, body)) => {
                if measured {
                    self.stats.answered(kind, started.elapsed());
                }
                if status.is_success() {
                    Ok(Reply { body, measured })
                } else {
                    if measured {
                        self.stats.failed_status(kind, status.as_u16(), || {
                            answers::error_message(status, &body)
                        });
                    }
                    Err(Failure::Status(status))
                }
            }
            Err(error) => {
                if measured {
                    self.stats.transport(kind, || error.to_string());
                }
                Err(Failure::Transport)
            }
        }
    }

    fn succeed(&mut self, kind: Kind, reply: &Reply) {
        if reply.measured {
            self.stats.success(kind);
        }
    }

    fn unexpected(&mut self, kind: Kind, reply: &Reply, message: &str) {
        if reply.measured {
            self.stats.unexpected(kind, message);
        }
    }

    /// An unmeasured login for a user whose session is gone; a failure is noted and slows the
    /// user down, so a server refusing logins is not hammered at full speed.
    async fn relogin(&mut self) {
        if !self.open() {
            return;
        }
        if Instant::now() >= self.window.from {
            self.stats.relogins += 1;
        }
        let login = setup::login(&mut self.connection, &self.target, &self.users[self.user]).await;
        match login {
            Ok((jwt, refresh_token)) => {
                self.jwt = jwt;
                self.adopt_refresh_token(&refresh_token);
            }
            Err(error) => {
                self.stats.note(|| format!("relogin failed: {error:#}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
