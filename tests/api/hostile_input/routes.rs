//! Requests to the API's routes: the right method mostly, a real path (ids real, foreign or
//! junk), a query string for the admin routes, a valid body then damaged, bearer tokens and
//! cookies real, foreign, forged or junk, and whatever other headers a client may send.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;

use super::generate::{Account, Case, Class, Generator, Request, pick};
use super::json::{self, BAD_UTF8, Fields};
use super::server::{SERVICE_ID, SERVICE_SECRET};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Auth {
    None,
    User,
    Admin,
    /// A service of `INTROSPECTION_CLIENTS`, with HTTP Basic.
    Service,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    Register,
    Login,
    LocalRefresh,
    Refresh,
    ChangePassword,
    ForgotPassword,
    ResetPassword,
    SendEmailConfirmation,
    EmailConfirmation,
    Logout,
    Introspect,
    Revoke,
    Sessions,
    RevokeSession,
    Me,
    AdminUsers,
    AdminEvents,
    AdminSessions,
    AdminClear,
    AdminBlock,
    AdminUnblock,
    AdminForget,
    LedgerCheckpoint,
    LedgerInclusion,
    LedgerConsistency,
    Health,
}

const ROUTES: [Route; 26] = [
    Route::Register,
    Route::Login,
    Route::LocalRefresh,
    Route::Refresh,
    Route::ChangePassword,
    Route::ForgotPassword,
    Route::ResetPassword,
    Route::SendEmailConfirmation,
    Route::EmailConfirmation,
    Route::Logout,
    Route::Introspect,
    Route::Revoke,
    Route::Sessions,
    Route::RevokeSession,
    Route::Me,
    Route::AdminUsers,
    Route::AdminEvents,
    Route::AdminSessions,
    Route::AdminClear,
    Route::AdminBlock,
    Route::AdminUnblock,
    Route::AdminForget,
    Route::LedgerCheckpoint,
    Route::LedgerInclusion,
    Route::LedgerConsistency,
    Route::Health,
];

impl Route {
    fn method(self) -> &'static str {
        match self {
            Route::Sessions
            | Route::Me
            | Route::EmailConfirmation
            | Route::AdminUsers
            | Route::AdminEvents
            | Route::AdminSessions
            | Route::LedgerCheckpoint
            | Route::LedgerInclusion
            | Route::LedgerConsistency => "GET",
            Route::RevokeSession | Route::AdminForget => "DELETE",
            Route::Health => "HEAD",
            _ => "POST",
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Route::Register => "/api/auth/local/register",
            Route::Login => "/api/auth/local",
            Route::LocalRefresh => "/api/auth/local/refresh",
            Route::Refresh => "/api/auth/refresh",
            Route::ChangePassword => "/api/auth/change-password",
            Route::ForgotPassword => "/api/auth/forgot-password",
            Route::ResetPassword => "/api/auth/reset-password",
            Route::SendEmailConfirmation => "/api/auth/send-email-confirmation",
            Route::EmailConfirmation => "/api/auth/email-confirmation",
            Route::Logout => "/api/auth/logout",
            Route::Introspect => "/api/auth/introspect",
            Route::Revoke => "/api/auth/revoke",
            Route::Sessions => "/api/auth/sessions",
            Route::RevokeSession => "/api/auth/sessions/:id",
            Route::Me => "/api/users/me",
            Route::AdminUsers => "/api/admin/users",
            Route::AdminEvents => "/api/admin/users/:id/events",
            Route::AdminSessions => "/api/admin/users/:id/sessions",
            Route::AdminClear => "/api/admin/users/:id/sessions/clear",
            Route::AdminBlock => "/api/admin/users/:id/block",
            Route::AdminUnblock => "/api/admin/users/:id/unblock",
            Route::AdminForget => "/api/admin/users/:id",
            Route::LedgerCheckpoint => "/api/admin/ledger/checkpoint",
            Route::LedgerInclusion => "/api/admin/ledger/proof/inclusion",
            Route::LedgerConsistency => "/api/admin/ledger/proof/consistency",
            Route::Health => "/_health",
        }
    }

    fn auth(self) -> Auth {
        match self {
            Route::ChangePassword
            | Route::Logout
            | Route::Sessions
            | Route::RevokeSession
            | Route::Me => Auth::User,
            Route::AdminUsers
            | Route::AdminEvents
            | Route::AdminSessions
            | Route::AdminClear
            | Route::AdminBlock
            | Route::AdminUnblock
            | Route::AdminForget
            | Route::LedgerCheckpoint
            | Route::LedgerInclusion
            | Route::LedgerConsistency => Auth::Admin,
            Route::Introspect => Auth::Service,
            _ => Auth::None,
        }
    }

    fn takes_body(self) -> bool {
        matches!(
            self,
            Route::Register
                | Route::Login
                | Route::LocalRefresh
                | Route::Refresh
                | Route::ChangePassword
                | Route::ForgotPassword
                | Route::ResetPassword
                | Route::SendEmailConfirmation
                | Route::Logout
                | Route::Introspect
                | Route::Revoke
        )
    }
}

pub(super) const METHODS: [&str; 14] = [
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "CONNECT", "PROPFIND",
    "post", "FOO", "M-SEARCH", "QUERY",
];

const CONTENT_TYPES: [&[u8]; 22] = [
    b"application/json; charset=latin1",
    b"application/json; charset=utf-16",
    b"APPLICATION/JSON",
    b"application/vnd.api+json",
    b"application/json-patch+json",
    b"text/json",
    b"text/plain",
    b"text/html; charset=utf-8",
    b"multipart/form-data",
    b"multipart/form-data; boundary=",
    b"application/x-www-form-urlencoded; charset=iso-8859-1",
    b"application/octet-stream",
    b"",
    b";",
    b"application/json, text/plain",
    b"application/json\xff",
    b"\xe2\x98\x83/json",
    b"*/*",
    b"application/",
    b"/json",
    b"application/json;;;=;",
    b"application/json; boundary=\"x",
];

pub(super) const SEGMENTS: [&str; 18] = [
    "%FF",
    "%00",
    "%ZZ",
    "%2F",
    "%2e%2e",
    "..",
    "%E2%98%83",
    "%ED%A0%80",
    "%C0%AF",
    "null",
    "-1",
    "0",
    "00000000-0000-0000-0000-000000000000",
    "{id}",
    "'%20OR%201=1",
    "9999999999999999999999999",
    "1e3",
    "%20",
];

const TIMES: [&str; 14] = [
    "2026-11-29T10:42:00Z",
    "0000-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59-23:59",
    "0000-01-01T00:00:00%2B23:59",
    "1970-01-01T00:00:00.999999999999Z",
    "2026-02-30T00:00:00Z",
    "yesterday",
    "",
    "%FF",
    "2026-11-29T10:42:00%2B99:99",
    "-1",
    "2026-11-29T10:42:00Z%00",
    "%2B275760-09-13T00:00:00Z",
];

impl Generator<'_> {
    /// A token with one character changed, cut, lengthened, or its signature dropped.
    fn damaged_token(&mut self, token: &str) -> String {
        let mut bytes = token.as_bytes().to_vec();
        match self.rng.random_range(0..5) {
            0 if !bytes.is_empty() => {
                let at = self.rng.random_range(0..bytes.len());
                bytes[at] = pick(&mut self.rng, b"AZaz09-_.=+/ ");
            }
            1 => bytes.truncate(self.rng.random_range(0..=bytes.len())),
            2 => bytes.extend_from_slice(b"AAAA"),
            3 => {
                // alg none, the payload kept.
                let payload = token.split('.').nth(1).unwrap_or_default();
                let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
                bytes = format!("{header}.{payload}.").into_bytes();
            }
            _ => bytes = bytes.repeat(2),
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn authorization(&mut self, request: &mut Request, auth: Auth, account: &Account) {
        let admin = self.fixture.admin_token.clone();
        let own = if auth == Auth::Admin {
            admin.clone()
        } else {
            account.jwt.clone()
        };
        let value: Option<Vec<u8>> = match self.rng.random_range(0..24) {
            0..10 if auth == Auth::Service => Some(self.service_basic()),
            0..10 if auth != Auth::None => Some(format!("Bearer {own}").into_bytes()),
            0..3 => Some(format!("Bearer {}", account.jwt).into_bytes()),
            10 => Some(format!("Bearer {}", account.refresh_token).into_bytes()),
            11 => Some(format!("Bearer {}", self.damaged_token(&own)).into_bytes()),
            12 => Some(
                pick(
                    &mut self.rng,
                    &["Bearer", "Bearer ", "Bearer    ", "bearer x", "BEARER  y  "],
                )
                .into(),
            ),
            13 => Some(b"Basic dXNlcjpwYXNzd29yZA==".to_vec()),
            14 => Some(format!("Bearer {}", "A".repeat(8000)).into_bytes()),
            15 => Some([&b"Bearer "[..], pick(&mut self.rng, &BAD_UTF8)].concat()),
            16 => Some(format!("Bearer {admin}").into_bytes()),
            17 => Some(format!("Bearer {own} {own}").into_bytes()),
            18 => Some(format!("Token {own}").into_bytes()),
            19 => {
                request.header("authorization", format!("Bearer {own}"));
                Some(b"Bearer garbage".to_vec())
            }
            _ => None,
        };
        if let Some(value) = value {
            request.header("authorization", value);
        }
    }

    /// `Basic` with the service's credential, now and then wrong or malformed.
    fn service_basic(&mut self) -> Vec<u8> {
        let pair = match self.rng.random_range(0..8) {
            0..5 => format!("{SERVICE_ID}:{SERVICE_SECRET}"),
            5 => format!("{SERVICE_ID}:{}", self.damaged_token(SERVICE_SECRET)),
            6 => format!("other:{SERVICE_SECRET}"),
            _ => SERVICE_ID.to_owned(),
        };
        let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
        match self.rng.random_range(0..6) {
            0 => format!("basic   {encoded}").into_bytes(),
            1 => format!("Basic {encoded}%%").into_bytes(),
            _ => format!("Basic {encoded}").into_bytes(),
        }
    }

    /// The token an introspection or revocation names: the account's, damaged, or junk.
    fn token_fields(&mut self, account: &Account, service: bool) -> Fields {
        let s = json::string;
        let token = match self.rng.random_range(0..6) {
            0 | 1 => account.jwt.clone(),
            2 | 3 => account.refresh_token.clone(),
            4 => self.damaged_token(&account.jwt),
            _ => pick(&mut self.rng, &["", "x", "a.b.c", "null"]).to_owned(),
        };
        let mut fields = vec![("token".into(), s(&token))];
        if self.chance(0.5) {
            let hint = pick(
                &mut self.rng,
                &[
                    "access_token",
                    "refresh_token",
                    "id_token",
                    "",
                    "ACCESS_TOKEN",
                ],
            );
            fields.push(("token_type_hint".into(), s(hint)));
        }
        if service && self.chance(0.2) {
            fields.push(("client_id".into(), s(SERVICE_ID)));
            fields.push(("client_secret".into(), s(SERVICE_SECRET)));
        }
        fields
    }

    fn cookie(&mut self, request: &mut Request, account: &Account) {
        let token = account.refresh_token.clone();
        let value: Vec<u8> = match self.rng.random_range(0..10) {
            0..3 => format!("refreshToken={token}").into_bytes(),
            3 => format!("refreshToken={}", self.damaged_token(&token)).into_bytes(),
            4 => b"refreshToken=".to_vec(),
            5 => format!("refreshToken=x; refreshToken={token}").into_bytes(),
            6 => b"=;;; ;=; ==".to_vec(),
            7 => format!("refreshToken=\"{token}\"").into_bytes(),
            8 => [&b"refreshToken="[..], pick(&mut self.rng, &BAD_UTF8)].concat(),
            _ => format!("a={}", "b".repeat(4000)).into_bytes(),
        };
        request.header("cookie", value);
    }

    /// Headers any client might send, honest or not.
    fn extra_headers(&mut self, request: &mut Request) {
        for _ in 0..self.rng.random_range(0..6) {
            match self.rng.random_range(0..14) {
                0 => {
                    let ip = format!(
                        "{}.{}.{}.{}",
                        self.rng.random::<u8>(),
                        self.rng.random::<u8>(),
                        self.rng.random::<u8>(),
                        self.rng.random::<u8>()
                    );
                    request.header("x-forwarded-for", ip);
                }
                1 => {
                    let value = pick(
                        &mut self.rng,
                        &[
                            "unknown",
                            "::1, 10.0.0.1",
                            "1.2.3.4, junk, 127.0.0.1",
                            ",,,",
                            "999.999.999.999",
                            "[::1]:80",
                        ],
                    );
                    request.header("x-forwarded-for", value);
                }
                2 => {
                    let value = pick(&mut self.rng, &["httpOnly", "HTTPONLY", "no", ""]);
                    request.header("x-strapi-refresh-cookie", value);
                }
                3 => {
                    let value = pick(&mut self.rng, &["", "abc", "x y", "../../../", "\u{e9}"])
                        .to_string()
                        + &"r".repeat(self.rng.random_range(0..300));
                    request.header("x-request-id", value);
                }
                4 => {
                    let mut value = b"Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0 ".to_vec();
                    value.extend(std::iter::repeat_n(b'U', self.rng.random_range(0..3000)));
                    value.extend_from_slice(pick(&mut self.rng, &BAD_UTF8));
                    request.header("user-agent", value);
                }
                5 => request.header("expect", "100-continue"),
                6 => request.header("connection", pick(&mut self.rng, &["close", "upgrade"])),
                // (`Upgrade: websocket` with a body is one of the slow clients: the server
                // takes what follows the head for the upgraded stream, and times the body out.)
                7 => request.header("upgrade", "h2c"),
                8 => request.header("content-encoding", pick(&mut self.rng, &["gzip", "br"])),
                9 => request.header("accept", pick(&mut self.rng, &["*/*", "text/html", ""])),
                10 => request.header("x-http-method-override", "DELETE"),
                11 => request.header("origin", "https://evil.example"),
                12 => request.header("range", "bytes=0-1"),
                _ => {
                    let name = format!("x-{}", self.rng.random::<u32>());
                    let value: Vec<u8> = (0..self.rng.random_range(0..200))
                        .map(|_| {
                            let b: u8 = self.rng.random_range(0x20..0xff);
                            if b == 0x7f { b'~' } else { b }
                        })
                        .collect();
                    request.header(&name, value);
                }
            }
        }
    }

    /// The route's path with its id: a real one, another user's, or junk.
    fn path(&mut self, route: Route, account: &Account) -> String {
        let other = self.account();
        match route {
            Route::RevokeSession => {
                let id = match self.rng.random_range(0..6) {
                    0 | 1 => account.session_id.clone(),
                    2 => other.session_id,
                    3 => uuid::Uuid::from_u128(self.rng.random()).to_string(),
                    4 => "a".repeat(self.rng.random_range(1..5000)),
                    _ => pick(&mut self.rng, &SEGMENTS).to_owned(),
                };
                format!("/api/auth/sessions/{id}")
            }
            Route::AdminEvents
            | Route::AdminSessions
            | Route::AdminClear
            | Route::AdminBlock
            | Route::AdminUnblock => {
                let id = match self.rng.random_range(0..4) {
                    0 | 1 => account.id.to_string(),
                    2 => pick(&mut self.rng, &["0", "-1", "999999", "+1", "1.0", "0x1"]).into(),
                    _ => pick(&mut self.rng, &SEGMENTS).to_owned(),
                };
                let tail = match route {
                    Route::AdminEvents => "events",
                    Route::AdminSessions => "sessions",
                    Route::AdminBlock => "block",
                    Route::AdminUnblock => "unblock",
                    _ => "sessions/clear",
                };
                format!("/api/admin/users/{id}/{tail}")
            }
            // Never the test's own account: the rest of the run uses it.
            Route::AdminForget => {
                let id = match self.rng.random_range(0..2) {
                    0 => pick(&mut self.rng, &["0", "-1", "999999", "+1", "1.0", "0x1"]).into(),
                    _ => pick(&mut self.rng, &SEGMENTS).to_owned(),
                };
                format!("/api/admin/users/{id}")
            }
            other => other.name().to_owned(),
        }
    }

    fn query(&mut self, route: Route) -> String {
        let mut pairs: Vec<String> = Vec::new();
        match route {
            Route::AdminEvents => {
                for key in ["from", "to"] {
                    if self.chance(0.3) {
                        pairs.push(format!("{key}={}", pick(&mut self.rng, &TIMES)));
                    }
                }
                if self.chance(0.4) {
                    let types = pick(
                        &mut self.rng,
                        &[
                            "TokenIssued",
                            "TokenIssued,SessionRevoked",
                            "",
                            ",",
                            "tokenissued",
                            "%FF",
                            "TokenIssued,",
                        ],
                    );
                    pairs.push(format!("type={types}"));
                }
                if self.chance(0.4) {
                    let limit = pick(
                        &mut self.rng,
                        &[
                            "0",
                            "1",
                            "1000",
                            "1001",
                            "-1",
                            "99999999999999999999",
                            "1.5",
                            "",
                        ],
                    );
                    pairs.push(format!("limit={limit}"));
                }
                if self.chance(0.3) {
                    let after = pick(
                        &mut self.rng,
                        &[
                            "0",
                            "-1",
                            "9223372036854775807",
                            "-9223372036854775808",
                            "9223372036854775808",
                            "x",
                        ],
                    );
                    pairs.push(format!("after={after}"));
                }
            }
            Route::AdminUsers => {
                if self.chance(0.8) {
                    // LIKE's wildcards and escape, a NUL (PostgreSQL refuses one), bad UTF-8.
                    let q = pick(
                        &mut self.rng,
                        &[
                            "u", "", "%25", "_", "%5C", "%00", "a%00b", "%FF", "1", "-1", "%20%20",
                        ],
                    );
                    pairs.push(format!("q={q}"));
                }
                if self.chance(0.3) {
                    pairs.push(format!("q={}", "x".repeat(self.rng.random_range(200..400))));
                }
                if self.chance(0.4) {
                    let limit = pick(&mut self.rng, &["0", "1", "100", "101", "-1", "1.5", ""]);
                    pairs.push(format!("limit={limit}"));
                }
            }
            Route::AdminSessions if self.chance(0.7) => {
                pairs.push(format!("at={}", pick(&mut self.rng, &TIMES)));
            }
            Route::LedgerInclusion | Route::LedgerConsistency => {
                let keys: &[&str] = if route == Route::LedgerInclusion {
                    &["position", "size"]
                } else {
                    &["from", "to"]
                };
                for key in keys {
                    if self.chance(0.8) {
                        let value = pick(
                            &mut self.rng,
                            &[
                                "1",
                                "2",
                                "0",
                                "-1",
                                "3",
                                "999999",
                                "9223372036854775807",
                                "9223372036854775808",
                                "18446744073709551616",
                                "1.5",
                                "",
                                "%FF",
                                "x",
                            ],
                        );
                        pairs.push(format!("{key}={value}"));
                    }
                }
            }
            _ => {}
        }
        if self.chance(0.15) {
            let junk = pick(
                &mut self.rng,
                &[
                    "",
                    "&&",
                    "%ZZ",
                    "a=%FF",
                    "=",
                    "a[b]=c",
                    "%00",
                    "limit=1&limit=2",
                    "a=b;c",
                ],
            );
            pairs.push(junk.to_owned());
        }
        if self.chance(0.02) {
            pairs.push("a=b&".repeat(2000));
        }
        if pairs.is_empty() {
            String::new()
        } else {
            format!("?{}", pairs.join("&"))
        }
    }

    /// The route's valid body, as fields.
    fn fields(&mut self, route: Route, account: &Account) -> Fields {
        let s = json::string;
        match route {
            Route::Register => {
                let name = format!("u{}", self.rng.random::<u64>());
                vec![
                    ("username".into(), s(&name)),
                    ("email".into(), s(&format!("{name}@example.com"))),
                    ("password".into(), s("password123")),
                ]
            }
            Route::Login => {
                let identifier = match self.rng.random_range(0..3) {
                    0 => account.username.clone(),
                    1 => account.email.to_uppercase(),
                    _ => format!("nobody{}", self.rng.random::<u32>()),
                };
                let mut fields = vec![
                    ("identifier".into(), s(&identifier)),
                    ("password".into(), s("password123")),
                ];
                if self.chance(0.5) {
                    fields.push(("requestRefresh".into(), b"true".to_vec()));
                }
                if self.chance(0.5) {
                    fields.push(("deviceId".into(), s("phone")));
                }
                fields
            }
            Route::LocalRefresh | Route::Refresh => {
                vec![("refreshToken".into(), s(&account.refresh_token))]
            }
            // The new password equals the current one: a valid shape that never changes the
            // fixture's password (the server refuses it after checking the current one).
            Route::ChangePassword => vec![
                ("currentPassword".into(), s("password123")),
                ("password".into(), s("password123")),
                ("passwordConfirmation".into(), s("password123")),
            ],
            Route::ForgotPassword | Route::SendEmailConfirmation => {
                let email = match self.rng.random_range(0..2) {
                    0 => account.email.to_uppercase(),
                    _ => format!("nobody{}@example.com", self.rng.random::<u32>()),
                };
                vec![("email".into(), s(&email))]
            }
            // A code that is no one's: the shape is valid, the answer `Incorrect code provided`.
            Route::ResetPassword => vec![
                (
                    "code".into(),
                    s(&format!("{:064x}", self.rng.random::<u128>())),
                ),
                ("password".into(), s("password123")),
                ("passwordConfirmation".into(), s("password123")),
            ],
            Route::Logout => match self.rng.random_range(0..4) {
                0 => vec![],
                1 => vec![("deviceId".into(), s("phone"))],
                2 => vec![("refreshToken".into(), s(&account.refresh_token))],
                _ => vec![("scope".into(), s(pick(&mut self.rng, &["all", "ALL", "x"])))],
            },
            Route::Introspect => self.token_fields(account, true),
            Route::Revoke => self.token_fields(account, false),
            _ => vec![],
        }
    }

    /// A request to one of the API's routes, damaged here and there.
    pub(super) fn api_request(&mut self) -> Case {
        let route = pick(&mut self.rng, &ROUTES);
        let account = self.account();
        let method = if self.chance(0.88) {
            route.method()
        } else {
            pick(&mut self.rng, &METHODS)
        };
        let target = self.path(route, &account) + &self.query(route);
        let host = self.fixture.host.clone();
        let mut request = Request::new(method, target, &host);
        if self.chance(0.03) {
            request.headers.clear();
        }
        if self.chance(0.03) {
            request.version = b"HTTP/1.0";
        }
        let auth_chance = if route.auth() == Auth::None { 0.1 } else { 0.9 };
        if self.chance(auth_chance) {
            self.authorization(&mut request, route.auth(), &account);
        }
        let cookie_chance = if matches!(route, Route::Refresh | Route::LocalRefresh | Route::Logout)
        {
            0.3
        } else {
            0.05
        };
        if self.chance(cookie_chance) {
            self.cookie(&mut request, &account);
        }
        self.extra_headers(&mut request);
        let mut what = format!("{method} {}", route.name());
        if route.takes_body() || self.chance(0.05) {
            let mut fields = self.fields(route, &account);
            let pristine = self.chance(0.15);
            if !pristine {
                json::mutate_fields(&mut self.rng, &mut fields);
            }
            let (content_type, body): (Option<Vec<u8>>, Vec<u8>) =
                match self.rng.random_range(0..20) {
                    0..12 => (
                        Some(b"application/json".to_vec()),
                        json::frame(&mut self.rng, &fields),
                    ),
                    12 => (None, json::frame(&mut self.rng, &fields)),
                    13 | 14 => (
                        Some(b"application/x-www-form-urlencoded".to_vec()),
                        json::form(&mut self.rng, &fields),
                    ),
                    15 => (
                        Some(b"application/x-www-form-urlencoded".to_vec()),
                        json::frame(&mut self.rng, &fields),
                    ),
                    _ => {
                        let content_type = pick(&mut self.rng, &CONTENT_TYPES).to_vec();
                        let body = if self.chance(0.5) {
                            json::frame(&mut self.rng, &fields)
                        } else {
                            json::form(&mut self.rng, &fields)
                        };
                        what.push_str(" (odd type)");
                        (Some(content_type), body)
                    }
                };
            request.body = body;
            if !pristine && self.chance(0.3) {
                json::mutate_bytes(&mut self.rng, &mut request.body);
                what.push_str(" (bytes)");
            }
            if let Some(content_type) = content_type {
                request.header("content-type", content_type);
            }
            if self.chance(0.1) {
                request.chunks = Some(self.chunk_sizes(request.body.len()));
            }
        }
        self.case(&request, Class::Http, what)
    }
}

/// A new API route must be added here too, or the generated hostile input never reaches it.
#[test]
fn every_api_route_of_the_app_is_generated() {
    let generated: std::collections::BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method().to_owned(), r.name().to_owned()))
        .collect();
    for endpoint in tokenledger::http::ENDPOINTS {
        if !endpoint.path.starts_with("/api/") {
            continue;
        }
        let key = (
            endpoint.method.to_string(),
            endpoint.path.replace("{id}", ":id"),
        );
        assert!(
            generated.contains(&key),
            "{key:?} is not in hostile_input's ROUTES"
        );
    }
}
