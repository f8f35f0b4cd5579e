//! Configuration: a TOML file (`tokenledger.toml`) overridden by environment variables, with
//! the option names of the refresh-token plugin. Every value is checked at start-up, and a
//! bad one is an error naming its key, never a crash later.
//!
//! The keys are data (`keys`): each names its variable, file key, parser, default and meaning
//! once. This module imports nothing else of the crate, so that everything may depend on it.

mod database_url;
mod file;
mod introspection;
mod keys;
mod secret;
mod values;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::TimeDelta;

pub use database_url::DatabaseUrl;
pub use introspection::{ServiceClient, credential_digest};
use keys::Source;
pub use keys::help;
pub use secret::{KeyBytes, Secret, refuse_weak};

#[derive(Clone, Debug)]
pub struct Config {
    pub server: ServerConfig,
    pub tokens: TokenConfig,
    pub lifetimes: LifetimeConfig,
    pub cookie: CookieConfig,
    pub sessions: SessionsConfig,
    pub limits: LimitConfig,
    pub admin: AdminConfig,
    /// The services that may introspect tokens (`INTROSPECTION_CLIENTS`); empty: none may.
    pub introspection_clients: Vec<ServiceClient>,
    pub logging: LoggingConfig,
    pub ledger: LedgerConfig,
    pub privacy: PrivacyConfig,
    pub accounts: AccountConfig,
    pub email: EmailConfig,
    /// Allows weak secrets, for local experiments only.
    pub insecure_dev: bool,
}

/// Strapi's advanced settings of accounts: sign-up, email confirmation, password reset.
#[derive(Clone, Debug)]
pub struct AccountConfig {
    pub allow_register: bool,
    pub email_confirmation: bool,
    pub email_confirmation_redirection: String,
    /// The front end's reset page; `None`: no reset link can be made.
    pub email_reset_password: Option<String>,
    pub reset_code_lifetime: TimeDelta,
    pub confirmation_code_lifetime: TimeDelta,
}

/// How the mailer sends the reset and confirmation emails.
#[derive(Clone, Debug)]
pub struct EmailConfig {
    /// `None`: nothing is sent, each email's link is logged (development only).
    pub smtp: Option<SmtpConfig>,
    /// The sender's mailbox, `name <address>` or `address`.
    pub from: String,
    pub reply_to: Option<String>,
    pub reset_password_template: Option<PathBuf>,
    pub confirmation_template: Option<PathBuf>,
    pub max_attempts: u32,
    /// The wait after the first failed try; doubled after each.
    pub retry_delay: TimeDelta,
}

#[derive(Clone, Debug)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    /// Both or neither (checked at load).
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub timeout: TimeDelta,
}

/// How the connection to the SMTP server is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain text, then `STARTTLS`, which the server must offer.
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
    /// Plain text throughout.
    None,
}

/// Where the service listens, what it stores where, and whom it believes.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    pub data_dir: PathBuf,
    pub database_url: DatabaseUrl,
    pub production_url: Option<String>,
    pub actor_idle_timeout: TimeDelta,
    /// Events appended since the last snapshot of the projection that make the next one;
    /// 0 (`off`): no snapshot is made, periodically or at stop (see `crate::snapshots`).
    pub snapshot_interval: u64,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Which web origins may call the API from a browser.
    pub cors_origins: CorsOrigins,
}

/// How tokens are signed and handed out.
#[derive(Clone, Debug)]
pub struct TokenConfig {
    /// `None` until `secrets::resolve` fills in a generated one.
    pub jwt_secret: Option<Secret>,
    pub refresh_secret: Option<Secret>,
    pub jwt_expires_in: TimeDelta,
    /// `STRAPI_ACCESS_TOKENS=accept`.
    pub strapi_access_tokens: bool,
    pub request_refresh_on_all: bool,
    pub refresh_token_rotation: bool,
    pub refresh_token_reuse_grace: TimeDelta,
    /// `ACCESS_TOKEN_ALG`.
    pub access_alg: AccessAlg,
    /// `SIGNING_KEY`: `None` until needed and generated (or never, in HS256 mode unrotated).
    pub signing_key: Option<KeyBytes>,
    /// `SIGNING_KEY_ROTATION`.
    pub signing_key_rotation: Option<TimeDelta>,
    /// `ACCESS_TOKEN_ISSUER` (see `Config::access_token_issuer`).
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

/// How access tokens are signed (`ACCESS_TOKEN_ALG`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum AccessAlg {
    HS256,
    EdDSA,
    ES256,
}

impl AccessAlg {
    pub fn is_asymmetric(self) -> bool {
        self != AccessAlg::HS256
    }
}

impl TokenConfig {
    /// Whether `SIGNING_KEY` is needed from the start: some key is derived from it.
    pub fn needs_signing_key(&self) -> bool {
        self.access_alg.is_asymmetric() || self.signing_key_rotation.is_some()
    }
}

/// How long a session lives.
#[derive(Clone, Copy, Debug)]
pub struct LifetimeConfig {
    pub refresh_token_expires_in: TimeDelta,
    pub session_idle_timeout: TimeDelta,
    pub session_absolute_lifetime: TimeDelta,
    pub session_activity_resolution: TimeDelta,
}

/// The refresh-token cookie of cookie mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookieConfig {
    /// Refresh tokens go out in the cookie for every client, not only those that ask.
    pub response: bool,
    pub name: String,
    pub same_site: SameSite,
    pub path: String,
    pub domain: Option<String>,
}

/// Which rules Strapi's own routes follow, and what the refresh cookie says beyond
/// `CookieConfig` (Strapi's `sessions.cookie.secure` and `maxAge`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionsConfig {
    pub jwt_management: JwtManagement,
    pub cookie_secure: Option<bool>,
    pub cookie_max_age: CookieMaxAge,
}

/// Strapi's `jwtManagement`: `legacy-support`, its default, keeps the refresh-token plugin's
/// rules everywhere; `refresh` gives Strapi 5's session rules to its login, registration,
/// refresh, logout and password-change routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JwtManagement {
    LegacySupport,
    Refresh,
}

/// How long a browser keeps the refresh cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CookieMaxAge {
    /// What is left of the refresh token's lifetime.
    Token,
    /// No `Max-Age`: until the browser closes (Strapi's default).
    Session,
    Fixed(TimeDelta),
}

/// How much one client, session or account may ask for; `None` is `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitConfig {
    /// Per client IP and identifier.
    pub login: Option<RateLimit>,
    /// Per client IP, whatever the identifier.
    pub login_ip: Option<RateLimit>,
    /// Failed logins per account, whatever the IP.
    pub account_failures: Option<RateLimit>,
    /// Per session.
    pub refresh: Option<RateLimit>,
    /// Account emails per address, whatever the client.
    pub email: Option<RateLimit>,
    /// How many sessions one user may hold; a login beyond it ends the least recently used.
    pub max_sessions_per_user: Option<u32>,
}

#[derive(Clone, Debug)]
pub struct AdminConfig {
    /// `None` leaves the admin API off.
    pub api_token: Option<Secret>,
}

/// The keys of the ledger and where its checkpoints go.
#[derive(Clone, Debug)]
pub struct LedgerConfig {
    /// `None` until `secrets::resolve` fills in a generated one.
    pub key: Option<KeyBytes>,
    pub checkpoint_key: Option<KeyBytes>,
    /// `None`: derived from the checkpoint key (`tokenledger/<key id>`).
    pub origin: Option<String>,
    pub checkpoint_interval: TimeDelta,
    pub checkpoint_file: Option<PathBuf>,
    pub checkpoint_webhook_url: Option<String>,
    /// Whether opening may seal an unkeyed log (`store::ledger::Upgrading`): set when this
    /// start made the ledger key, or by `migrate --seal-legacy`. Not a configuration key.
    pub seal_legacy: bool,
}

/// Personal data: the master key of the data keys, and how long personal fields are kept.
#[derive(Clone, Debug)]
pub struct PrivacyConfig {
    /// `None` until `secrets::resolve` fills in a generated one.
    pub key: Option<KeyBytes>,
    /// `None`: kept until the user is forgotten.
    pub retention: Option<TimeDelta>,
}

#[derive(Clone, Copy, Debug)]
pub struct LoggingConfig {
    pub format: LogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Strapi's default is any origin (with credentials, as Strapi); naming the front ends'
/// origins also lets their pages use the refresh cookie, which no other origin may.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CorsOrigins {
    Any,
    Listed(Vec<String>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

/// At most `requests` per `period`, replenished evenly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u32,
    pub period: std::time::Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        message: message.into(),
    }
}

impl Config {
    /// Reads `path` (if any) and overlays `env`. Secrets are left as configured; see
    /// `crate::secrets` for generating missing ones.
    pub fn load(
        path: Option<&Path>,
        env: &HashMap<String, String>,
        insecure_dev: bool,
    ) -> Result<Config, ConfigError> {
        let file = match path {
            Some(path) => file::read(path)?,
            None => HashMap::new(),
        };
        let source = Source::new(env, file);
        let sessions = SessionsConfig::read(&source)?;
        let config = Config {
            server: ServerConfig::read(&source)?,
            tokens: TokenConfig::read(&source)?,
            lifetimes: LifetimeConfig::read(&source)?,
            cookie: CookieConfig::read(&source, sessions.jwt_management)?,
            sessions,
            limits: LimitConfig::read(&source)?,
            admin: AdminConfig {
                api_token: source.optional(&keys::ADMIN_API_TOKEN)?,
            },
            introspection_clients: source
                .optional(&keys::INTROSPECTION_CLIENTS)?
                .unwrap_or_default(),
            logging: LoggingConfig {
                format: source.value(&keys::LOG_FORMAT)?,
            },
            ledger: LedgerConfig::read(&source)?,
            privacy: PrivacyConfig {
                key: key_or_file(
                    &source,
                    &keys::PERSONAL_DATA_KEY,
                    &keys::PERSONAL_DATA_KEY_FILE,
                )?,
                retention: source.value(&keys::PERSONAL_DATA_RETENTION)?,
            },
            accounts: AccountConfig {
                allow_register: source.value(&keys::ALLOW_REGISTER)?,
                email_confirmation: source.value(&keys::EMAIL_CONFIRMATION)?,
                email_confirmation_redirection: source
                    .value(&keys::EMAIL_CONFIRMATION_REDIRECTION)?,
                email_reset_password: source.optional(&keys::EMAIL_RESET_PASSWORD)?,
                reset_code_lifetime: source.value(&keys::RESET_PASSWORD_CODE_LIFETIME)?,
                confirmation_code_lifetime: source
                    .value(&keys::EMAIL_CONFIRMATION_CODE_LIFETIME)?,
            },
            email: EmailConfig::read(&source)?,
            insecure_dev,
        };
        config.validate()?;
        introspection::validate(
            keys::INTROSPECTION_CLIENTS.about.env,
            &config.introspection_clients,
            config.admin.api_token.as_ref(),
            config.insecure_dev,
        )?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.lifetimes.validate(&self.tokens)?;
        let tokens = &self.tokens;
        if tokens.access_alg.is_asymmetric()
            && self.server.database_url.is_postgres()
            && tokens.issuer.is_none()
            && self.server.production_url.is_none()
        {
            // Each instance's own http://HOST:PORT would make another's tokens foreign.
            return Err(invalid(
                keys::ACCESS_TOKEN_ISSUER.about.env,
                "must be set (or PRODUCTION_URL) with EdDSA or ES256 on PostgreSQL: every instance names the same issuer",
            ));
        }
        let lifetimes = &self.lifetimes;
        for (key, value) in [
            (&keys::JWT_EXPIRES_IN, self.tokens.jwt_expires_in),
            (
                &keys::REFRESH_TOKEN_EXPIRES_IN,
                lifetimes.refresh_token_expires_in,
            ),
            (&keys::SESSION_IDLE_TIMEOUT, lifetimes.session_idle_timeout),
            (
                &keys::SESSION_ABSOLUTE_LIFETIME,
                lifetimes.session_absolute_lifetime,
            ),
            (&keys::ACTOR_IDLE_TIMEOUT, self.server.actor_idle_timeout),
            (&keys::CHECKPOINT_INTERVAL, self.ledger.checkpoint_interval),
        ] {
            if value <= TimeDelta::zero() {
                return Err(invalid(key.about.file, "must be longer than zero"));
            }
        }
        if self
            .privacy
            .retention
            .is_some_and(|r| r <= TimeDelta::zero())
        {
            return Err(invalid(
                keys::PERSONAL_DATA_RETENTION.about.file,
                "must be longer than zero, or off",
            ));
        }
        if let Some(url) = &self.server.production_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid(
                keys::PRODUCTION_URL.about.env,
                format!("{url:?} is not an http(s) URL"),
            ));
        }
        self.cookie.validate()?;
        self.email.validate(&self.server)?;
        if self.sessions.cookie_secure == Some(false) && self.cookie.same_site == SameSite::None {
            return Err(invalid(
                &keys::COOKIE_SECURE.about.both(),
                "cannot be false with COOKIE_SAME_SITE=none: browsers drop such a cookie",
            ));
        }
        if let Some(token) = &self.admin.api_token
            && !token.expose().bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(invalid(
                keys::ADMIN_API_TOKEN.about.env,
                "must be printable ASCII without spaces (it is sent as a bearer token)",
            ));
        }
        for (key, secret) in [
            (&keys::JWT_SECRET, &self.tokens.jwt_secret),
            (&keys::REFRESH_JWT_SECRET, &self.tokens.refresh_secret),
            (&keys::ADMIN_API_TOKEN, &self.admin.api_token),
        ] {
            if let Some(secret) = secret {
                refuse_weak(key.about.env, secret, self.insecure_dev)?;
            }
        }
        Ok(())
    }

    /// The `iss` of access tokens: `ACCESS_TOKEN_ISSUER`, else the public URL for the
    /// services that check tokens with the public keys; Strapi's HS256 tokens name none.
    pub fn access_token_issuer(&self) -> Option<String> {
        let tokens = &self.tokens;
        tokens.issuer.clone().or_else(|| {
            tokens
                .access_alg
                .is_asymmetric()
                .then(|| self.server.public_url())
        })
    }

    /// Things that are allowed but unwise, for the start-up log.
    pub fn warnings(&self) -> Vec<String> {
        let tokens = &self.tokens;
        let mut said = Vec::new();
        for (key, secret) in [
            (&keys::JWT_SECRET, &tokens.jwt_secret),
            (&keys::REFRESH_JWT_SECRET, &tokens.refresh_secret),
        ] {
            let key = key.about.env;
            if let Some(why) = secret.as_ref().and_then(|s| secret::weakness(s.expose())) {
                // `refuse_weak` stops any other start; the line must not claim a flag that
                // was not given, should a new source of secrets ever skip that check.
                said.push(if self.insecure_dev {
                    format!("{key} {why}: accepted only because of --insecure-dev")
                } else {
                    format!("{key} {why}, and --insecure-dev was not given")
                });
            }
        }
        if tokens.jwt_secret.is_some() && tokens.jwt_secret == tokens.refresh_secret {
            said.push(
                "JWT_SECRET and REFRESH_JWT_SECRET are the same: use two different secrets"
                    .to_owned(),
            );
        }
        if tokens.strapi_access_tokens {
            said.push(
                "STRAPI_ACCESS_TOKENS=accept: Strapi's own access tokens signed with JWT_SECRET \
                 are accepted until they expire, and cannot be revoked (a logout, a password \
                 change or reuse detection does not end them; a block or a deleted user does); \
                 set it back to refuse once they have expired (JWT_EXPIRES_IN after the switch)"
                    .to_owned(),
            );
        }
        if let Some(retention) = self.privacy.retention
            && retention < self.lifetimes.session_absolute_lifetime
        {
            said.push(
                "PERSONAL_DATA_RETENTION is shorter than SESSION_ABSOLUTE_LIFETIME: a session \
                 still live may show its login's IP, user agent and device as erased"
                    .to_owned(),
            );
        }
        said
    }
}

impl ServerConfig {
    fn read(source: &Source) -> Result<ServerConfig, ConfigError> {
        let data_dir = source.value(&keys::DATA_DIR)?;
        let database_url = match source.optional(&keys::DATABASE_URL)? {
            // Named by its variable whatever its source, as the check always has been.
            Some(url) => DatabaseUrl::parse(&url)
                .map_err(|message| invalid(keys::DATABASE_URL.about.env, message))?,
            None => DatabaseUrl::in_data_dir(&data_dir),
        };
        Ok(ServerConfig {
            host: source.value(&keys::HOST)?,
            port: source.value(&keys::PORT)?,
            data_dir,
            database_url,
            production_url: source.optional(&keys::PRODUCTION_URL)?,
            actor_idle_timeout: source.value(&keys::ACTOR_IDLE_TIMEOUT)?,
            snapshot_interval: source.value(&keys::SNAPSHOT_INTERVAL)?,
            trusted_proxies: source.optional(&keys::TRUSTED_PROXIES)?.unwrap_or_default(),
            cors_origins: source.value(&keys::CORS_ORIGINS)?,
        })
    }

    pub fn bind_address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Where clients reach the service: `PRODUCTION_URL`, else `http://HOST:PORT`; no
    /// trailing slash. Emailed links to the service start with it.
    pub fn public_url(&self) -> String {
        match &self.production_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.bind_address()),
        }
    }

    /// Whether the service is served over https (`PRODUCTION_URL`).
    pub fn is_https(&self) -> bool {
        self.production_url
            .as_deref()
            .is_some_and(|url| url.starts_with("https://"))
    }
}

impl EmailConfig {
    fn read(source: &Source) -> Result<EmailConfig, ConfigError> {
        let smtp = match source.optional(&keys::SMTP_HOST)? {
            None => None,
            Some(host) => {
                let security = source.value(&keys::SMTP_SECURITY)?;
                let port = match security {
                    SmtpSecurity::StartTls => 587,
                    SmtpSecurity::Tls => 465,
                    SmtpSecurity::None => 25,
                };
                Some(SmtpConfig {
                    host,
                    port: source.optional(&keys::SMTP_PORT)?.unwrap_or(port),
                    security,
                    username: source.optional(&keys::SMTP_USERNAME)?,
                    password: source.optional(&keys::SMTP_PASSWORD)?,
                    timeout: source.value(&keys::SMTP_TIMEOUT)?,
                })
            }
        };
        let from = match source.optional(&keys::EMAIL_FROM)? {
            Some(from) => from,
            None => format!("no-reply@{}", default_sender_domain(source)?),
        };
        Ok(EmailConfig {
            smtp,
            from,
            reply_to: source.optional(&keys::EMAIL_REPLY_TO)?,
            reset_password_template: source.optional(&keys::EMAIL_RESET_PASSWORD_TEMPLATE)?,
            confirmation_template: source.optional(&keys::EMAIL_CONFIRMATION_TEMPLATE)?,
            max_attempts: source.value(&keys::EMAIL_MAX_ATTEMPTS)?,
            retry_delay: source.value(&keys::EMAIL_RETRY_DELAY)?,
        })
    }

    /// Links in the log are for development: a service on https must send its emails. A
    /// login without a password (or the reverse) is a half-made setting.
    fn validate(&self, server: &ServerConfig) -> Result<(), ConfigError> {
        match &self.smtp {
            None if server.is_https() => Err(invalid(
                keys::SMTP_HOST.about.env,
                "must be set when PRODUCTION_URL is https://…: without it the reset and \
                 confirmation emails are not sent, only logged; set SMTP_HOST (and SMTP_PORT, \
                 SMTP_SECURITY, SMTP_USERNAME, SMTP_PASSWORD, EMAIL_FROM)",
            )),
            Some(smtp) if smtp.username.is_some() != smtp.password.is_some() => Err(invalid(
                keys::SMTP_USERNAME.about.env,
                "SMTP_USERNAME and SMTP_PASSWORD go together: set both or neither",
            )),
            Some(smtp) if smtp.timeout <= TimeDelta::zero() => Err(invalid(
                keys::SMTP_TIMEOUT.about.env,
                "must be longer than zero",
            )),
            _ if self.retry_delay <= TimeDelta::zero() => Err(invalid(
                keys::EMAIL_RETRY_DELAY.about.env,
                "must be longer than zero",
            )),
            _ => Ok(()),
        }
    }
}

/// The host of `PRODUCTION_URL`, or `localhost`: the default sender's domain.
fn default_sender_domain(source: &Source) -> Result<String, ConfigError> {
    let url = source.optional(&keys::PRODUCTION_URL)?;
    let host = url
        .as_deref()
        .and_then(|url| url.split_once("://"))
        .map(|(_, rest)| rest.split(['/', ':', '?', '#']).next().unwrap_or(""))
        .filter(|host| !host.is_empty());
    Ok(host.unwrap_or("localhost").to_owned())
}

impl TokenConfig {
    fn read(source: &Source) -> Result<TokenConfig, ConfigError> {
        Ok(TokenConfig {
            jwt_secret: source.optional(&keys::JWT_SECRET)?,
            refresh_secret: source.optional(&keys::REFRESH_JWT_SECRET)?,
            jwt_expires_in: source.value(&keys::JWT_EXPIRES_IN)?,
            strapi_access_tokens: source.value(&keys::STRAPI_ACCESS_TOKENS)?,
            request_refresh_on_all: source.value(&keys::REQUEST_REFRESH_ON_ALL)?,
            refresh_token_rotation: source.value(&keys::REFRESH_TOKEN_ROTATION)?,
            refresh_token_reuse_grace: source.value(&keys::REFRESH_TOKEN_REUSE_GRACE)?,
            access_alg: source.value(&keys::ACCESS_TOKEN_ALG)?,
            signing_key: source.optional(&keys::SIGNING_KEY)?,
            signing_key_rotation: source.optional(&keys::SIGNING_KEY_ROTATION)?,
            issuer: source.optional(&keys::ACCESS_TOKEN_ISSUER)?,
            audience: source.optional(&keys::ACCESS_TOKEN_AUDIENCE)?,
        })
    }
}

impl LifetimeConfig {
    fn read(source: &Source) -> Result<LifetimeConfig, ConfigError> {
        let refresh_token_expires_in = source.value(&keys::REFRESH_TOKEN_EXPIRES_IN)?;
        let session_idle_timeout = source
            .optional(&keys::SESSION_IDLE_TIMEOUT)?
            .unwrap_or(refresh_token_expires_in);
        Ok(LifetimeConfig {
            refresh_token_expires_in,
            session_idle_timeout,
            session_absolute_lifetime: source.value(&keys::SESSION_ABSOLUTE_LIFETIME)?,
            // A session in use must never idle out between two recorded uses.
            session_activity_resolution: source
                .value::<TimeDelta>(&keys::SESSION_ACTIVITY_RESOLUTION)?
                .min(session_idle_timeout / 10),
        })
    }

    /// What the refresh token's lifetime bounds: the access token's, and the reuse grace.
    fn validate(&self, tokens: &TokenConfig) -> Result<(), ConfigError> {
        let refresh = &keys::REFRESH_TOKEN_EXPIRES_IN.about;
        if tokens.jwt_expires_in >= self.refresh_token_expires_in {
            return Err(invalid(
                &keys::JWT_EXPIRES_IN.about.both(),
                format!(
                    "must be below {}: an access token may not outlive its refresh token",
                    refresh.both()
                ),
            ));
        }
        if tokens.refresh_token_reuse_grace >= self.refresh_token_expires_in {
            return Err(invalid(
                &keys::REFRESH_TOKEN_REUSE_GRACE.about.both(),
                format!(
                    "must be below {}: a longer grace window would switch reuse detection off",
                    refresh.env
                ),
            ));
        }
        Ok(())
    }
}

impl SessionsConfig {
    fn read(source: &Source) -> Result<SessionsConfig, ConfigError> {
        let jwt_management = source.value(&keys::JWT_MANAGEMENT)?;
        // Strapi's cookie has no `maxAge` unless configured (refresh-cookie-options.js:16).
        let max_age = match jwt_management {
            JwtManagement::LegacySupport => CookieMaxAge::Token,
            JwtManagement::Refresh => CookieMaxAge::Session,
        };
        Ok(SessionsConfig {
            jwt_management,
            cookie_secure: source.optional(&keys::COOKIE_SECURE)?,
            cookie_max_age: source.optional(&keys::COOKIE_MAX_AGE)?.unwrap_or(max_age),
        })
    }

    /// Strapi 5's refresh mode is on.
    pub fn refresh_mode(&self) -> bool {
        self.jwt_management == JwtManagement::Refresh
    }
}

impl CookieConfig {
    /// The plugin's cookie by default; in refresh mode, Strapi's (`strapi_up_refresh`,
    /// users-permissions dist/server/controllers/auth.js:67, `SameSite=Lax` and `Path=/`,
    /// utils/refresh-cookie-options.js:13-14).
    fn read(source: &Source, mode: JwtManagement) -> Result<CookieConfig, ConfigError> {
        let (name, same_site, path) = match mode {
            JwtManagement::LegacySupport => ("refreshToken", SameSite::Strict, "/api/auth"),
            JwtManagement::Refresh => ("strapi_up_refresh", SameSite::Lax, "/"),
        };
        Ok(CookieConfig {
            response: source.value(&keys::COOKIE_RESPONSE)?,
            name: source
                .optional(&keys::COOKIE_NAME)?
                .unwrap_or_else(|| name.to_owned()),
            same_site: source
                .optional(&keys::COOKIE_SAME_SITE)?
                .unwrap_or(same_site),
            path: source
                .optional(&keys::COOKIE_PATH)?
                .unwrap_or_else(|| path.to_owned()),
            domain: source.optional(&keys::COOKIE_DOMAIN)?,
        })
    }

    /// What would break the `Set-Cookie` header, or let a value inject an attribute.
    fn validate(&self) -> Result<(), ConfigError> {
        let token_char = |c: char| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?={}".contains(c);
        if self.name.is_empty() || !self.name.chars().all(token_char) {
            return Err(invalid(
                &keys::COOKIE_NAME.about.both(),
                format!("{:?} is not a valid cookie name", self.name),
            ));
        }
        if !self.path.starts_with('/') || self.path.chars().any(|c| c == ';' || c.is_control()) {
            return Err(invalid(
                &keys::COOKIE_PATH.about.both(),
                format!("{:?} must start with / and hold no ;", self.path),
            ));
        }
        if let Some(domain) = &self.domain
            && (domain.is_empty()
                || !domain
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'))
        {
            return Err(invalid(
                &keys::COOKIE_DOMAIN.about.both(),
                format!("{domain:?} is not a domain name"),
            ));
        }
        Ok(())
    }
}

impl LedgerConfig {
    fn read(source: &Source) -> Result<LedgerConfig, ConfigError> {
        let origin = source.optional(&keys::LEDGER_ORIGIN)?;
        if let Some(origin) = &origin
            && (origin.is_empty() || origin.chars().any(|c| c.is_whitespace() || c == '+'))
        {
            // The origin names the signing key too, and a key name has no spaces or `+`.
            return Err(invalid(
                keys::LEDGER_ORIGIN.about.env,
                format!("{origin:?} must be non-empty, without spaces or +"),
            ));
        }
        Ok(LedgerConfig {
            key: key_or_file(source, &keys::LEDGER_KEY, &keys::LEDGER_KEY_FILE)?,
            checkpoint_key: key_or_file(source, &keys::CHECKPOINT_KEY, &keys::CHECKPOINT_KEY_FILE)?,
            origin,
            checkpoint_interval: source.value(&keys::CHECKPOINT_INTERVAL)?,
            checkpoint_file: source.optional(&keys::CHECKPOINT_FILE)?,
            checkpoint_webhook_url: source.optional(&keys::CHECKPOINT_WEBHOOK_URL)?,
            seal_legacy: false,
        })
    }
}

/// A key given itself or as a file holding it (a mounted secret), not both.
fn key_or_file(
    source: &Source,
    key: &keys::Key<KeyBytes>,
    file: &keys::Key<PathBuf>,
) -> Result<Option<KeyBytes>, ConfigError> {
    let (given, path) = (source.optional(key)?, source.optional(file)?);
    match (given, path) {
        (Some(_), Some(_)) => Err(invalid(
            key.about.env,
            format!("is set and so is {}: give one", file.about.env),
        )),
        (given, None) => Ok(given),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| invalid(file.about.env, format!("{}: {e}", path.display())))?;
            KeyBytes::parse(&text).map(Some).map_err(|message| {
                invalid(file.about.env, format!("{}: {message}", path.display()))
            })
        }
    }
}

impl LimitConfig {
    fn read(source: &Source) -> Result<LimitConfig, ConfigError> {
        Ok(LimitConfig {
            login: source.value(&keys::LOGIN_RATE_LIMIT)?,
            login_ip: source.value(&keys::LOGIN_IP_RATE_LIMIT)?,
            account_failures: source.value(&keys::LOGIN_ACCOUNT_FAILURE_LIMIT)?,
            refresh: source.value(&keys::REFRESH_RATE_LIMIT)?,
            email: source.value(&keys::EMAIL_RATE_LIMIT)?,
            max_sessions_per_user: source.value(&keys::MAX_SESSIONS_PER_USER)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn error_of(pairs: &[(&str, &str)]) -> String {
        Config::load(None, &env(pairs), false)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn defaults_follow_strapi_and_the_plugin() {
        let c = Config::load(None, &env(&[]), false).unwrap();
        assert_eq!((c.server.host.as_str(), c.server.port), ("127.0.0.1", 1337));
        assert_eq!(
            c.server.database_url.expose(),
            "sqlite://./data/tokenledger.db"
        );
        assert_eq!(c.tokens.jwt_expires_in, TimeDelta::hours(2));
        assert_eq!(c.lifetimes.refresh_token_expires_in, TimeDelta::days(30));
        assert_eq!(c.lifetimes.session_idle_timeout, TimeDelta::days(30));
        assert_eq!(c.tokens.refresh_token_reuse_grace, TimeDelta::seconds(10));
        assert!(
            !c.tokens.refresh_token_rotation
                && !c.tokens.request_refresh_on_all
                && !c.cookie.response
        );
        assert_eq!(c.limits.max_sessions_per_user, Some(100));
    }

    #[test]
    fn the_session_limit_is_a_positive_number_or_off() {
        let limit = |pairs: &[(&str, &str)]| {
            Config::load(None, &env(pairs), false)
                .unwrap()
                .limits
                .max_sessions_per_user
        };
        assert_eq!(limit(&[("MAX_SESSIONS_PER_USER", "5000")]), Some(5000));
        assert_eq!(limit(&[("MAX_SESSIONS_PER_USER", "OFF")]), None);
        for bad in ["0", "-1", "ten", "1.5", "4294967296"] {
            assert!(
                error_of(&[("MAX_SESSIONS_PER_USER", bad)]).starts_with("MAX_SESSIONS_PER_USER:"),
                "{bad}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenledger.toml");
        std::fs::write(&path, "[refresh]\nmaxSessionsPerUser = 3\n").unwrap();
        let c = Config::load(Some(&path), &env(&[]), false).unwrap();
        assert_eq!(c.limits.max_sessions_per_user, Some(3));
    }

    #[test]
    fn the_environment_wins_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenledger.toml");
        std::fs::write(
            &path,
            "[jwt]\nexpiresIn = \"1h\"\n[refresh]\nrefreshTokenRotation = true\nrefreshTokenExpiresIn = \"7 days\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&path), &env(&[("JWT_EXPIRES_IN", "15m")]), false).unwrap();
        assert_eq!(c.tokens.jwt_expires_in, TimeDelta::minutes(15));
        assert_eq!(c.lifetimes.refresh_token_expires_in, TimeDelta::days(7));
        assert!(c.tokens.refresh_token_rotation);
    }

    #[test]
    fn bad_values_name_their_key() {
        assert!(error_of(&[("JWT_EXPIRES_IN", "soon")]).starts_with("JWT_EXPIRES_IN:"));
        assert!(
            error_of(&[("REFRESH_TOKEN_ROTATION", "yes")]).starts_with("REFRESH_TOKEN_ROTATION:")
        );
        assert!(error_of(&[("PORT", "99999")]).starts_with("PORT:"));
        assert!(
            error_of(&[("JWT_EXPIRES_IN", "30d")])
                .starts_with("JWT_EXPIRES_IN (jwt.expiresIn): must be below")
        );
        assert!(
            error_of(&[("REFRESH_TOKEN_REUSE_GRACE", "40d")])
                .starts_with("REFRESH_TOKEN_REUSE_GRACE")
        );
        assert!(
            error_of(&[("REFRESH_TOKEN_EXPIRES_IN", "1000000y")])
                .starts_with("REFRESH_TOKEN_EXPIRES_IN: \"1000000y\" is too long")
        );
        assert!(
            error_of(&[("SESSION_ABSOLUTE_LIFETIME", "99999999999999999")]).contains("too long")
        );
        assert!(error_of(&[("JWT_SECRET", "SomethingSecret")]).contains("well-known default"));
        assert!(error_of(&[("REFRESH_JWT_SECRET", "short")]).contains("shorter than 32 bytes"));
        let example = "change-me-to-32-or-more-random-bytes-for-access-tokens";
        assert!(error_of(&[("JWT_SECRET", example)]).contains("well-known default"));
    }

    #[test]
    fn rate_limits_cookies_and_proxies_parse() {
        let c = Config::load(None, &env(&[]), false).unwrap();
        assert_eq!(
            c.limits.login,
            Some(RateLimit {
                requests: 10,
                period: std::time::Duration::from_secs(60)
            })
        );
        assert_eq!(c.limits.refresh.unwrap().requests, 30);
        assert_eq!(
            (c.limits.login_ip, c.limits.account_failures),
            (
                Some(RateLimit {
                    requests: 30,
                    period: std::time::Duration::from_secs(60)
                }),
                Some(RateLimit {
                    requests: 20,
                    period: std::time::Duration::from_secs(3600)
                })
            )
        );
        assert_eq!(
            c.cookie,
            CookieConfig {
                response: false,
                name: "refreshToken".into(),
                same_site: SameSite::Strict,
                path: "/api/auth".into(),
                domain: None
            }
        );
        let c = Config::load(
            None,
            &env(&[
                ("LOGIN_RATE_LIMIT", "off"),
                ("LOGIN_IP_RATE_LIMIT", "off"),
                ("LOGIN_ACCOUNT_FAILURE_LIMIT", "5/1d"),
                ("REFRESH_RATE_LIMIT", "5/1m"),
                ("TRUSTED_PROXIES", "10.0.0.0/8, ::1"),
                ("COOKIE_SAME_SITE", "Lax"),
            ]),
            false,
        )
        .unwrap();
        assert_eq!(c.limits.login, None);
        assert_eq!(c.limits.login_ip, None);
        assert_eq!(
            c.limits.account_failures.unwrap().period,
            std::time::Duration::from_secs(86_400)
        );
        assert_eq!(
            c.limits.refresh.unwrap().period,
            std::time::Duration::from_secs(60)
        );
        assert_eq!(c.server.trusted_proxies.len(), 2);
        assert_eq!(c.cookie.same_site, SameSite::Lax);
        assert!(error_of(&[("LOGIN_RATE_LIMIT", "ten")]).starts_with("LOGIN_RATE_LIMIT:"));
        assert!(error_of(&[("LOGIN_IP_RATE_LIMIT", "0/60s")]).starts_with("LOGIN_IP_RATE_LIMIT:"));
        assert!(
            error_of(&[("LOGIN_ACCOUNT_FAILURE_LIMIT", "x")])
                .starts_with("LOGIN_ACCOUNT_FAILURE_LIMIT:")
        );
        assert!(error_of(&[("LOGIN_RATE_LIMIT", "0/60s")]).starts_with("LOGIN_RATE_LIMIT:"));
        assert!(error_of(&[("TRUSTED_PROXIES", "10.0.0.0/99")]).starts_with("TRUSTED_PROXIES:"));
        assert!(error_of(&[("COOKIE_SAME_SITE", "sometimes")]).starts_with("COOKIE_SAME_SITE:"));
        assert!(error_of(&[("COOKIE_NAME", "bad name;")]).starts_with("COOKIE_NAME"));
        assert!(error_of(&[("COOKIE_DOMAIN", "a;b")]).starts_with("COOKIE_DOMAIN"));
        assert!(error_of(&[("COOKIE_PATH", "relative")]).starts_with("COOKIE_PATH"));
    }

    #[test]
    fn refresh_mode_takes_strapis_cookie_unless_the_keys_say_otherwise() {
        let plugin = Config::load(None, &env(&[]), false).unwrap();
        assert_eq!(plugin.sessions.jwt_management, JwtManagement::LegacySupport);
        assert_eq!(plugin.sessions.cookie_max_age, CookieMaxAge::Token);
        let strapi = Config::load(None, &env(&[("JWT_MANAGEMENT", "refresh")]), false).unwrap();
        assert!(strapi.sessions.refresh_mode());
        let cookie = &strapi.cookie;
        assert_eq!(
            (cookie.name.as_str(), cookie.same_site, cookie.path.as_str()),
            ("strapi_up_refresh", SameSite::Lax, "/")
        );
        assert_eq!(strapi.sessions.cookie_max_age, CookieMaxAge::Session);
        assert_eq!(strapi.sessions.cookie_secure, None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(
            &path,
            "[jwt]\njwtManagement = \"refresh\"\n[refresh]\ncookieName = \"up\"\n\
             cookieMaxAge = \"1d\"\ncookieSecure = true\n",
        )
        .unwrap();
        let c = Config::load(Some(&path), &env(&[]), false).unwrap();
        assert_eq!(
            (c.cookie.name.as_str(), c.cookie.path.as_str()),
            ("up", "/")
        );
        assert_eq!(
            c.sessions.cookie_max_age,
            CookieMaxAge::Fixed(TimeDelta::days(1))
        );
        assert_eq!(c.sessions.cookie_secure, Some(true));
        assert!(error_of(&[("JWT_MANAGEMENT", "Refresh")]).starts_with("JWT_MANAGEMENT:"));
        assert!(error_of(&[("COOKIE_MAX_AGE", "soon")]).starts_with("COOKIE_MAX_AGE:"));
        assert!(
            error_of(&[("COOKIE_SECURE", "false"), ("COOKIE_SAME_SITE", "none")])
                .starts_with("COOKIE_SECURE (refresh.cookieSecure): cannot be false")
        );
    }

    #[test]
    fn cors_origins_are_any_by_default_or_a_list_of_origins() {
        let any = Config::load(None, &env(&[]), false).unwrap();
        assert_eq!(any.server.cors_origins, CorsOrigins::Any);
        let listed = Config::load(
            None,
            &env(&[(
                "CORS_ORIGINS",
                "https://app.example.com, http://localhost:3000",
            )]),
            false,
        )
        .unwrap();
        assert_eq!(
            listed.server.cors_origins,
            CorsOrigins::Listed(vec![
                "https://app.example.com".into(),
                "http://localhost:3000".into()
            ])
        );
        assert!(
            error_of(&[("CORS_ORIGINS", "https://app.example.com/")]).starts_with("CORS_ORIGINS:")
        );
        assert!(error_of(&[("CORS_ORIGINS", "app.example.com")]).starts_with("CORS_ORIGINS:"));
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, "[refresh]\nrefreshTokenRotaton = true\n").unwrap();
        let err = Config::load(Some(&path), &env(&[]), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("refreshTokenRotaton"), "{err}");
    }

    #[test]
    fn the_file_takes_numbers_lists_and_strings_where_each_key_does() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(
            &path,
            "[server]\nport = 8080\ntrustedProxies = [\"10.0.0.0/8\", \"::1\"]\n\
             corsOrigins = [\"https://a.example\"]\nhost = \"0.0.0.0\"\n\
             [refresh]\nrefreshTokenRotation = true\ncookieName = \"rt\"\n",
        )
        .unwrap();
        // An empty variable is unset: the file's value stands.
        let c = Config::load(Some(&path), &env(&[("PORT", "")]), false).unwrap();
        assert_eq!(c.server.bind_address(), "0.0.0.0:8080");
        assert_eq!(c.server.trusted_proxies.len(), 2);
        assert_eq!(
            c.server.cors_origins,
            CorsOrigins::Listed(vec!["https://a.example".into()])
        );
        assert!(c.tokens.refresh_token_rotation);
        assert_eq!(c.cookie.name, "rt");

        std::fs::write(&path, "[server]\nhost = 5\n").unwrap();
        let err = Config::load(Some(&path), &env(&[]), false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 2") && err.contains("invalid type: integer `5`, expected a string"),
            "{err}"
        );
        std::fs::write(&path, "[sever]\nport = 1\n").unwrap();
        let err = Config::load(Some(&path), &env(&[]), false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "unknown field `sever`, expected one of `advanced`, `email`, `jwt`, `ledger`, `privacy`, `refresh`, `server`, `smtp`"
            ),
            "{err}"
        );
    }

    #[test]
    fn without_smtp_emails_are_logged_except_on_https() {
        let dev = Config::load(None, &env(&[]), false).unwrap();
        assert!(dev.email.smtp.is_none());
        assert_eq!(dev.email.from, "no-reply@localhost");
        assert_eq!(dev.server.public_url(), "http://127.0.0.1:1337");
        let https = [("PRODUCTION_URL", "https://auth.example.com/")];
        let error = error_of(&https);
        assert!(
            error.starts_with("SMTP_HOST: must be set when PRODUCTION_URL is https://")
                && error.contains("SMTP_PASSWORD"),
            "{error}"
        );
        let sent = Config::load(
            None,
            &env(&[https[0], ("SMTP_HOST", "smtp.example.com")]),
            false,
        )
        .unwrap();
        let smtp = sent.email.smtp.unwrap();
        assert_eq!((smtp.port, smtp.security), (587, SmtpSecurity::StartTls));
        assert_eq!(smtp.timeout, TimeDelta::seconds(10));
        assert_eq!(sent.email.from, "no-reply@auth.example.com");
        assert_eq!(sent.server.public_url(), "https://auth.example.com");
        assert_eq!(
            (sent.email.max_attempts, sent.email.retry_delay),
            (8, TimeDelta::seconds(30))
        );
    }

    #[test]
    fn smtp_settings_are_checked_at_load() {
        let host = ("SMTP_HOST", "mail");
        let tls = Config::load(None, &env(&[host, ("SMTP_SECURITY", "TLS")]), false).unwrap();
        assert_eq!(tls.email.smtp.unwrap().port, 465);
        let plain = Config::load(None, &env(&[host, ("SMTP_SECURITY", "none")]), false).unwrap();
        assert_eq!(plain.email.smtp.unwrap().port, 25);
        assert!(error_of(&[host, ("SMTP_SECURITY", "ssl")]).starts_with("SMTP_SECURITY:"));
        assert!(
            error_of(&[host, ("SMTP_USERNAME", "ann")])
                .starts_with("SMTP_USERNAME: SMTP_USERNAME and")
        );
        assert!(error_of(&[("EMAIL_FROM", "not an address")]).starts_with("EMAIL_FROM:"));
        assert!(error_of(&[("EMAIL_REPLY_TO", "a@")]).starts_with("EMAIL_REPLY_TO:"));
        assert!(error_of(&[("EMAIL_MAX_ATTEMPTS", "0")]).starts_with("EMAIL_MAX_ATTEMPTS:"));
        let named = Config::load(
            None,
            &env(&[("EMAIL_FROM", "Administration Panel <no-reply@example.com>")]),
            false,
        )
        .unwrap();
        assert_eq!(
            named.email.from,
            "Administration Panel <no-reply@example.com>"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(
            &path,
            "[smtp]\nhost = \"mail.example.com\"\nport = 2525\nusername = \"ann\"\n\
             password = \"pw\"\n[email]\nfrom = \"a@example.com\"\nmaxAttempts = 3\n",
        )
        .unwrap();
        let file = Config::load(Some(&path), &env(&[]), false).unwrap();
        let smtp = file.email.smtp.unwrap();
        assert_eq!((smtp.host.as_str(), smtp.port), ("mail.example.com", 2525));
        assert_eq!(smtp.password.unwrap().expose(), "pw");
        assert_eq!(
            (file.email.from.as_str(), file.email.max_attempts),
            ("a@example.com", 3)
        );
    }

    #[test]
    fn weak_secrets_pass_with_insecure_dev() {
        let c = Config::load(None, &env(&[("JWT_SECRET", "SomethingSecret")]), true).unwrap();
        assert_eq!(c.tokens.jwt_secret.unwrap().expose(), "SomethingSecret");
    }
}
