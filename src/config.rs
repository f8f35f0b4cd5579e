//! Configuration: a TOML file (`tokenledger.toml`) overridden by environment variables, with
//! the option names of the refresh-token plugin. Every value is checked at start-up, and a
//! bad one is an error naming its key, never a crash later.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use chrono::TimeDelta;
use serde::Deserialize;

/// A secret value: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub data_dir: PathBuf,
    pub database_url: String,
    /// `None` until `secrets::resolve` fills in a generated one.
    pub jwt_secret: Option<Secret>,
    pub refresh_secret: Option<Secret>,
    pub admin_api_token: Option<Secret>,
    pub jwt_expires_in: TimeDelta,
    pub refresh_token_expires_in: TimeDelta,
    pub request_refresh_on_all: bool,
    pub cookie_response: bool,
    pub refresh_token_rotation: bool,
    pub refresh_token_reuse_grace: TimeDelta,
    pub session_idle_timeout: TimeDelta,
    pub session_absolute_lifetime: TimeDelta,
    /// How many sessions one user may hold; a login beyond it ends the least recently used.
    /// `None` is `off`.
    pub max_sessions_per_user: Option<u32>,
    pub production_url: Option<String>,
    pub actor_idle_timeout: TimeDelta,
    pub log_format: LogFormat,
    /// Allows weak secrets, for local experiments only.
    pub insecure_dev: bool,
    pub cookie: CookieSettings,
    /// Per client IP and identifier; `None` is `off`.
    pub login_rate_limit: Option<RateLimit>,
    /// Per session; `None` is `off`.
    pub refresh_rate_limit: Option<RateLimit>,
    /// Per client IP, whatever the identifier; `None` is `off`.
    pub login_ip_rate_limit: Option<RateLimit>,
    /// Failed logins per account, whatever the IP; `None` is `off`.
    pub login_account_failure_limit: Option<RateLimit>,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Which web origins may call the API from a browser.
    pub cors_origins: CorsOrigins,
}

/// Strapi's default is any origin; naming the front ends' origins also lets browsers send
/// the refresh cookie (`credentials: 'include'`), which is never allowed to any origin.
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

/// The refresh-token cookie of cookie mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookieSettings {
    pub name: String,
    pub same_site: SameSite,
    pub path: String,
    pub domain: Option<String>,
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

/// A database URL fit for logs and error messages: its password, in the authority or as a
/// `password=` parameter, becomes `***`.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        message: message.into(),
    }
}

/// The file's shape. Unknown keys are refused, so a typo is an error, not a silent default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    jwt: JwtSection,
    #[serde(default)]
    refresh: RefreshSection,
    #[serde(default)]
    server: ServerSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct JwtSection {
    expires_in: Option<toml::Value>,
    secret: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RefreshSection {
    refresh_token_expires_in: Option<toml::Value>,
    request_refresh_on_all: Option<toml::Value>,
    refresh_token_secret: Option<String>,
    cookie_response: Option<toml::Value>,
    refresh_token_rotation: Option<toml::Value>,
    refresh_token_reuse_grace: Option<toml::Value>,
    session_idle_timeout: Option<toml::Value>,
    session_absolute_lifetime: Option<toml::Value>,
    max_sessions_per_user: Option<toml::Value>,
    cookie_name: Option<String>,
    cookie_same_site: Option<String>,
    cookie_path: Option<String>,
    cookie_domain: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ServerSection {
    host: Option<String>,
    port: Option<toml::Value>,
    data_dir: Option<String>,
    database_url: Option<String>,
    production_url: Option<String>,
    admin_api_token: Option<String>,
    actor_idle_timeout: Option<toml::Value>,
    log_format: Option<String>,
    login_rate_limit: Option<String>,
    refresh_rate_limit: Option<String>,
    login_ip_rate_limit: Option<String>,
    login_account_failure_limit: Option<String>,
    trusted_proxies: Option<toml::Value>,
    cors_origins: Option<toml::Value>,
}

/// A raw value from the environment (wins) or the file, with the key to name in errors.
struct Raw {
    key: String,
    value: Option<String>,
}

fn toml_text(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
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
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                toml::from_str::<FileConfig>(&text).map_err(|e| ConfigError::Parse {
                    path: path.to_owned(),
                    message: e.to_string(),
                })?
            }
            None => FileConfig::default(),
        };
        let pick = |env_key: &str, file_key: &str, file_value: Option<String>| -> Raw {
            match env.get(env_key).filter(|v| !v.is_empty()) {
                Some(v) => Raw {
                    key: env_key.to_owned(),
                    value: Some(v.clone()),
                },
                None => Raw {
                    key: file_key.to_owned(),
                    value: file_value,
                },
            }
        };
        let (j, r, s) = (&file.jwt, &file.refresh, &file.server);
        let text = |v: &Option<toml::Value>| v.as_ref().map(toml_text);

        let data_dir = PathBuf::from(
            pick("DATA_DIR", "server.dataDir", s.data_dir.clone())
                .value
                .unwrap_or_else(|| "./data".to_owned()),
        );
        let database_url = pick("DATABASE_URL", "server.databaseUrl", s.database_url.clone())
            .value
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("tokenledger.db").display()));
        let port_raw = pick("PORT", "server.port", text(&s.port));
        let port = match &port_raw.value {
            None => 1337,
            Some(v) => v
                .trim()
                .parse::<u16>()
                .map_err(|_| invalid(&port_raw.key, format!("{v:?} is not a port number")))?,
        };
        let refresh_token_expires_in = duration(
            pick(
                "REFRESH_TOKEN_EXPIRES_IN",
                "refresh.refreshTokenExpiresIn",
                text(&r.refresh_token_expires_in),
            ),
            "30d",
        )?;
        let jwt_expires_in = duration(
            pick("JWT_EXPIRES_IN", "jwt.expiresIn", text(&j.expires_in)),
            "2h",
        )?;
        let session_idle_timeout = match pick(
            "SESSION_IDLE_TIMEOUT",
            "refresh.sessionIdleTimeout",
            text(&r.session_idle_timeout),
        ) {
            Raw { value: None, .. } => refresh_token_expires_in,
            raw => duration(raw, "")?,
        };
        let log_format_raw = pick("LOG_FORMAT", "server.logFormat", s.log_format.clone());
        let log_format = match log_format_raw.value.as_deref().map(str::to_ascii_lowercase) {
            None => LogFormat::Text,
            Some(v) if v == "text" => LogFormat::Text,
            Some(v) if v == "json" => LogFormat::Json,
            Some(v) => {
                return Err(invalid(
                    &log_format_raw.key,
                    format!("{v:?} is not text or json"),
                ));
            }
        };
        let production_url = pick(
            "PRODUCTION_URL",
            "server.productionUrl",
            s.production_url.clone(),
        )
        .value;
        let same_site_raw = pick(
            "COOKIE_SAME_SITE",
            "refresh.cookieSameSite",
            r.cookie_same_site.clone(),
        );
        let same_site = match same_site_raw
            .value
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("strict") => SameSite::Strict,
            Some("lax") => SameSite::Lax,
            Some("none") => SameSite::None,
            Some(other) => {
                return Err(invalid(
                    &same_site_raw.key,
                    format!("{other:?} is not strict, lax or none"),
                ));
            }
        };
        let cookie = CookieSettings {
            name: pick("COOKIE_NAME", "refresh.cookieName", r.cookie_name.clone())
                .value
                .unwrap_or_else(|| "refreshToken".to_owned()),
            same_site,
            path: pick("COOKIE_PATH", "refresh.cookiePath", r.cookie_path.clone())
                .value
                .unwrap_or_else(|| "/api/auth".to_owned()),
            domain: pick(
                "COOKIE_DOMAIN",
                "refresh.cookieDomain",
                r.cookie_domain.clone(),
            )
            .value,
        };
        let trusted_raw = pick(
            "TRUSTED_PROXIES",
            "server.trustedProxies",
            s.trusted_proxies.as_ref().map(|v| match v {
                toml::Value::Array(items) => {
                    items.iter().map(toml_text).collect::<Vec<_>>().join(",")
                }
                other => toml_text(other),
            }),
        );
        let trusted_proxies = proxies(&trusted_raw)?;
        let cors_origins = cors_origins(&pick(
            "CORS_ORIGINS",
            "server.corsOrigins",
            s.cors_origins.as_ref().map(|v| match v {
                toml::Value::Array(items) => {
                    items.iter().map(toml_text).collect::<Vec<_>>().join(",")
                }
                other => toml_text(other),
            }),
        ))?;
        let config = Config {
            host: pick("HOST", "server.host", s.host.clone())
                .value
                .unwrap_or_else(|| "127.0.0.1".to_owned()),
            port,
            data_dir,
            database_url,
            jwt_secret: pick("JWT_SECRET", "jwt.secret", j.secret.clone())
                .value
                .map(Secret),
            refresh_secret: pick(
                "REFRESH_JWT_SECRET",
                "refresh.refreshTokenSecret",
                r.refresh_token_secret.clone(),
            )
            .value
            .map(Secret),
            admin_api_token: pick(
                "ADMIN_API_TOKEN",
                "server.adminApiToken",
                s.admin_api_token.clone(),
            )
            .value
            .map(Secret),
            jwt_expires_in,
            refresh_token_expires_in,
            request_refresh_on_all: boolean(
                pick(
                    "REQUEST_REFRESH_ON_ALL",
                    "refresh.requestRefreshOnAll",
                    text(&r.request_refresh_on_all),
                ),
                false,
            )?,
            cookie_response: boolean(
                pick(
                    "COOKIE_RESPONSE",
                    "refresh.cookieResponse",
                    text(&r.cookie_response),
                ),
                false,
            )?,
            refresh_token_rotation: boolean(
                pick(
                    "REFRESH_TOKEN_ROTATION",
                    "refresh.refreshTokenRotation",
                    text(&r.refresh_token_rotation),
                ),
                false,
            )?,
            refresh_token_reuse_grace: duration(
                pick(
                    "REFRESH_TOKEN_REUSE_GRACE",
                    "refresh.refreshTokenReuseGrace",
                    text(&r.refresh_token_reuse_grace),
                ),
                "10s",
            )?,
            session_idle_timeout,
            session_absolute_lifetime: duration(
                pick(
                    "SESSION_ABSOLUTE_LIFETIME",
                    "refresh.sessionAbsoluteLifetime",
                    text(&r.session_absolute_lifetime),
                ),
                "90d",
            )?,
            max_sessions_per_user: session_limit(
                pick(
                    "MAX_SESSIONS_PER_USER",
                    "refresh.maxSessionsPerUser",
                    text(&r.max_sessions_per_user),
                ),
                "100",
            )?,
            production_url,
            actor_idle_timeout: duration(
                pick(
                    "ACTOR_IDLE_TIMEOUT",
                    "server.actorIdleTimeout",
                    text(&s.actor_idle_timeout),
                ),
                "5m",
            )?,
            log_format,
            insecure_dev,
            cookie,
            login_rate_limit: rate_limit(
                pick(
                    "LOGIN_RATE_LIMIT",
                    "server.loginRateLimit",
                    s.login_rate_limit.clone(),
                ),
                "10/60s",
            )?,
            refresh_rate_limit: rate_limit(
                pick(
                    "REFRESH_RATE_LIMIT",
                    "server.refreshRateLimit",
                    s.refresh_rate_limit.clone(),
                ),
                "30/60s",
            )?,
            login_ip_rate_limit: rate_limit(
                pick(
                    "LOGIN_IP_RATE_LIMIT",
                    "server.loginIpRateLimit",
                    s.login_ip_rate_limit.clone(),
                ),
                "30/60s",
            )?,
            login_account_failure_limit: rate_limit(
                pick(
                    "LOGIN_ACCOUNT_FAILURE_LIMIT",
                    "server.loginAccountFailureLimit",
                    s.login_account_failure_limit.clone(),
                ),
                "20/1h",
            )?,
            trusted_proxies,
            cors_origins,
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.jwt_expires_in >= self.refresh_token_expires_in {
            return Err(invalid(
                "JWT_EXPIRES_IN (jwt.expiresIn)",
                "must be below REFRESH_TOKEN_EXPIRES_IN (refresh.refreshTokenExpiresIn): an access token may not outlive its refresh token",
            ));
        }
        if self.refresh_token_reuse_grace >= self.refresh_token_expires_in {
            return Err(invalid(
                "REFRESH_TOKEN_REUSE_GRACE (refresh.refreshTokenReuseGrace)",
                "must be below REFRESH_TOKEN_EXPIRES_IN: a longer grace window would switch reuse detection off",
            ));
        }
        for (key, value) in [
            ("jwt.expiresIn", self.jwt_expires_in),
            (
                "refresh.refreshTokenExpiresIn",
                self.refresh_token_expires_in,
            ),
            ("refresh.sessionIdleTimeout", self.session_idle_timeout),
            (
                "refresh.sessionAbsoluteLifetime",
                self.session_absolute_lifetime,
            ),
            ("server.actorIdleTimeout", self.actor_idle_timeout),
        ] {
            if value <= TimeDelta::zero() {
                return Err(invalid(key, "must be longer than zero"));
            }
        }
        if let Some(url) = &self.production_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid(
                "PRODUCTION_URL",
                format!("{url:?} is not an http(s) URL"),
            ));
        }
        let cookie = &self.cookie;
        let token_char = |c: char| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?={}".contains(c);
        if cookie.name.is_empty() || !cookie.name.chars().all(token_char) {
            return Err(invalid(
                "COOKIE_NAME (refresh.cookieName)",
                format!("{:?} is not a valid cookie name", cookie.name),
            ));
        }
        if !cookie.path.starts_with('/') || cookie.path.chars().any(|c| c == ';' || c.is_control())
        {
            return Err(invalid(
                "COOKIE_PATH (refresh.cookiePath)",
                format!("{:?} must start with / and hold no ;", cookie.path),
            ));
        }
        if let Some(domain) = &cookie.domain
            && (domain.is_empty()
                || !domain
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'))
        {
            return Err(invalid(
                "COOKIE_DOMAIN (refresh.cookieDomain)",
                format!("{domain:?} is not a domain name"),
            ));
        }
        if let Some(token) = &self.admin_api_token
            && !token.expose().bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(invalid(
                "ADMIN_API_TOKEN",
                "must be printable ASCII without spaces (it is sent as a bearer token)",
            ));
        }
        if !(self.database_url.starts_with("sqlite:")
            || crate::store::is_postgres(&self.database_url))
        {
            return Err(invalid(
                "DATABASE_URL",
                "must be a sqlite:// or postgres:// URL",
            ));
        }
        for (key, secret) in [
            ("JWT_SECRET", &self.jwt_secret),
            ("REFRESH_JWT_SECRET", &self.refresh_secret),
            ("ADMIN_API_TOKEN", &self.admin_api_token),
        ] {
            if let Some(secret) = secret {
                refuse_weak(key, secret, self.insecure_dev)?;
            }
        }
        Ok(())
    }

    /// Things that are allowed but unwise, for the start-up log.
    pub fn warnings(&self) -> Vec<String> {
        let mut said = Vec::new();
        for (key, secret) in [
            ("JWT_SECRET", &self.jwt_secret),
            ("REFRESH_JWT_SECRET", &self.refresh_secret),
        ] {
            if let Some(why) = secret.as_ref().and_then(|s| weakness(s.expose())) {
                // `refuse_weak` stops any other start; the line must not claim a flag that
                // was not given, should a new source of secrets ever skip that check.
                said.push(if self.insecure_dev {
                    format!("{key} {why}: accepted only because of --insecure-dev")
                } else {
                    format!("{key} {why}, and --insecure-dev was not given")
                });
            }
        }
        if self.jwt_secret.is_some() && self.jwt_secret == self.refresh_secret {
            said.push(
                "JWT_SECRET and REFRESH_JWT_SECRET are the same: use two different secrets"
                    .to_owned(),
            );
        }
        said
    }

    pub fn bind_address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Creates `dir` (and its parents) readable by its owner only, if it does not exist: the
/// data folder holds the database and the signing secrets.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.as_os_str().is_empty() || dir.exists() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Refuses a weak secret unless `--insecure-dev`. One rule for every source of a secret: the
/// environment and the config file (`Config::load`), and `secrets.json` (`secrets::resolve`),
/// where `key` also names the file.
pub fn refuse_weak(key: &str, secret: &Secret, insecure_dev: bool) -> Result<(), ConfigError> {
    match weakness(secret.expose()) {
        Some(why) if !insecure_dev => Err(invalid(
            key,
            format!(
                "{why}; use a random value of 32 bytes or more (or --insecure-dev for local experiments)"
            ),
        )),
        _ => Ok(()),
    }
}

/// Why a secret is too weak to sign tokens with, if it is.
pub fn weakness(secret: &str) -> Option<&'static str> {
    const KNOWN_DEFAULTS: [&str; 4] = ["SomethingSecret", "SuperSecretKey", "secret", "changeme"];
    // Placeholders such as .env.example's count as defaults: they are public.
    if KNOWN_DEFAULTS
        .iter()
        .any(|known| known.eq_ignore_ascii_case(secret))
        || secret.to_ascii_lowercase().contains("change-me")
    {
        Some("is a well-known default secret")
    } else if secret.len() < 32 {
        Some("is shorter than 32 bytes")
    } else {
        None
    }
}

/// Durations as Strapi and the plugin write them: `30d`, `2h`, `15m`, `10s`, `7 days`, `1y`,
/// or a bare number of seconds.
fn duration(raw: Raw, default: &str) -> Result<TimeDelta, ConfigError> {
    let text = raw.value.as_deref().unwrap_or(default).trim().to_owned();
    let std = match text.parse::<u64>() {
        Ok(seconds) => std::time::Duration::from_secs(seconds),
        Err(_) => humantime::parse_duration(&text).map_err(|e| {
            invalid(
                &raw.key,
                format!("{text:?} is not a duration like 30d, 2h, 15m or 10s ({e})"),
            )
        })?,
    };
    // Far beyond any session, and far enough from chrono's limits that `now + lifetime` can
    // never overflow later, at the first login.
    const LONGEST: TimeDelta = TimeDelta::days(100 * 366);
    TimeDelta::from_std(std)
        .ok()
        .filter(|d| *d <= LONGEST)
        .ok_or_else(|| invalid(&raw.key, format!("{text:?} is too long (at most 100y)")))
}

/// `10/60s` (requests per period), or `off`.
fn rate_limit(raw: Raw, default: &str) -> Result<Option<RateLimit>, ConfigError> {
    let text = raw.value.as_deref().unwrap_or(default).trim().to_owned();
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let bad = || {
        invalid(
            &raw.key,
            format!("{text:?} is not like 10/60s (requests per period) or off"),
        )
    };
    let (count, period) = text.split_once('/').ok_or_else(bad)?;
    let requests = count
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(bad)?;
    let period = match period.trim().parse::<u64>() {
        Ok(seconds) => std::time::Duration::from_secs(seconds),
        Err(_) => humantime::parse_duration(period.trim()).map_err(|_| bad())?,
    };
    if period.is_zero() {
        return Err(bad());
    }
    Ok(Some(RateLimit { requests, period }))
}

/// A number of sessions of 1 or more, or `off`. 0 is refused rather than read as either:
/// "no sessions at all" would lock every user out, and "no limit" is what `off` says.
fn session_limit(raw: Raw, default: &str) -> Result<Option<u32>, ConfigError> {
    let text = raw.value.as_deref().unwrap_or(default).trim().to_owned();
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    text.parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .map(Some)
        .ok_or_else(|| {
            invalid(
                &raw.key,
                format!("{text:?} is not a number of sessions of 1 or more, or off"),
            )
        })
}

/// Comma-separated addresses or networks (`10.0.0.0/8`, `::1`).
fn proxies(raw: &Raw) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    let Some(text) = raw.value.as_deref() else {
        return Ok(Vec::new());
    };
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse::<ipnet::IpNet>()
                .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    invalid(
                        &raw.key,
                        format!("{item:?} is not an IP address or network"),
                    )
                })
        })
        .collect()
}

/// `*` (the default), or origins like `https://app.example.com`, separated by commas.
fn cors_origins(raw: &Raw) -> Result<CorsOrigins, ConfigError> {
    let text = raw.value.as_deref().unwrap_or("*");
    let items: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .collect();
    if items.is_empty() || items.contains(&"*") {
        return Ok(CorsOrigins::Any);
    }
    let origin = regex::Regex::new(r"^https?://[^/\s?#]+$").expect("a valid pattern");
    items
        .into_iter()
        .map(|item| {
            origin
                .is_match(item)
                .then(|| item.to_owned())
                .ok_or_else(|| {
                    invalid(
                        &raw.key,
                        format!("{item:?} is not an origin like https://app.example.com (no path)"),
                    )
                })
        })
        .collect::<Result<_, _>>()
        .map(CorsOrigins::Listed)
}

fn boolean(raw: Raw, default: bool) -> Result<bool, ConfigError> {
    match raw.value.as_deref().map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if v == "true" || v == "1" => Ok(true),
        Some(v) if v == "false" || v == "0" => Ok(false),
        Some(v) => Err(invalid(
            &raw.key,
            format!("{v:?} is not true, false, 1 or 0"),
        )),
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
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 1337));
        assert_eq!(c.database_url, "sqlite://./data/tokenledger.db");
        assert_eq!(c.jwt_expires_in, TimeDelta::hours(2));
        assert_eq!(c.refresh_token_expires_in, TimeDelta::days(30));
        assert_eq!(c.session_idle_timeout, TimeDelta::days(30));
        assert_eq!(c.refresh_token_reuse_grace, TimeDelta::seconds(10));
        assert!(!c.refresh_token_rotation && !c.request_refresh_on_all && !c.cookie_response);
        assert_eq!(c.max_sessions_per_user, Some(100));
    }

    #[test]
    fn the_session_limit_is_a_positive_number_or_off() {
        let limit = |pairs: &[(&str, &str)]| {
            Config::load(None, &env(pairs), false)
                .unwrap()
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
        assert_eq!(c.max_sessions_per_user, Some(3));
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
        assert_eq!(c.jwt_expires_in, TimeDelta::minutes(15));
        assert_eq!(c.refresh_token_expires_in, TimeDelta::days(7));
        assert!(c.refresh_token_rotation);
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
            c.login_rate_limit,
            Some(RateLimit {
                requests: 10,
                period: std::time::Duration::from_secs(60)
            })
        );
        assert_eq!(c.refresh_rate_limit.unwrap().requests, 30);
        assert_eq!(
            (c.login_ip_rate_limit, c.login_account_failure_limit),
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
            CookieSettings {
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
        assert_eq!(c.login_rate_limit, None);
        assert_eq!(c.login_ip_rate_limit, None);
        assert_eq!(
            c.login_account_failure_limit.unwrap().period,
            std::time::Duration::from_secs(86_400)
        );
        assert_eq!(
            c.refresh_rate_limit.unwrap().period,
            std::time::Duration::from_secs(60)
        );
        assert_eq!(c.trusted_proxies.len(), 2);
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
    fn database_urls_lose_their_passwords_in_messages() {
        assert_eq!(
            redacted("postgres://app:s3cr%40t@db.internal:5432/auth?sslmode=require"),
            "postgres://app:***@db.internal:5432/auth?sslmode=require"
        );
        assert_eq!(
            redacted("postgres://db/auth?user=app&password=hunter2&sslmode=disable"),
            "postgres://db/auth?user=app&password=***&sslmode=disable"
        );
        assert_eq!(
            redacted("sqlite://data/tokenledger.db"),
            "sqlite://data/tokenledger.db"
        );
        assert_eq!(redacted("postgres://app@db/auth"), "postgres://app@db/auth");
    }

    #[test]
    fn cors_origins_are_any_by_default_or_a_list_of_origins() {
        let any = Config::load(None, &env(&[]), false).unwrap();
        assert_eq!(any.cors_origins, CorsOrigins::Any);
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
            listed.cors_origins,
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
    fn weak_secrets_pass_with_insecure_dev() {
        let c = Config::load(None, &env(&[("JWT_SECRET", "SomethingSecret")]), true).unwrap();
        assert_eq!(c.jwt_secret.unwrap().expose(), "SomethingSecret");
    }
}
