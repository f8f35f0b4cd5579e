//! The table of configuration keys: for each, its environment variable, its key in the file,
//! the parser of its value, its default and what it means. Reading a key, refusing an unknown
//! one in the file, naming a key in an error and README's table all come from this one list.

use std::collections::HashMap;
use std::path::PathBuf;

use chrono::TimeDelta;

use super::introspection::{ServiceClient, service_clients};
use super::values::{
    Parsed, accept_or_refuse, access_alg, boolean, cookie_max_age, cors_origins, duration,
    http_url, jwt_management, key, log_format, path, port, proxies, rate_limit, retention,
    same_site, secret, session_limit, snapshot_interval, text,
};
use super::values::{attempts, mailbox, smtp_security};
use super::{
    AccessAlg, ConfigError, CookieMaxAge, CorsOrigins, JwtManagement, KeyBytes, LogFormat,
    RateLimit, SameSite, Secret, SmtpSecurity, invalid,
};

/// What is known of a key whatever its type.
#[derive(Debug)]
pub(super) struct About {
    /// The environment variable, which wins over the file.
    pub(super) env: &'static str,
    /// `section.key` in the TOML file.
    pub(super) file: &'static str,
    pub(super) form: Form,
    pub(super) default: Fallback,
    /// README's description of the key.
    pub(super) help: &'static str,
}

/// The TOML values the file may give a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Form {
    /// A string only.
    Text,
    /// Any value: a string as it is, anything else as TOML writes it (`port = 1337`).
    Scalar,
    /// An array, read as its items joined by commas, or a scalar.
    List,
}

/// What a key is when neither the environment nor the file sets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fallback {
    /// This text, read by the key's parser.
    Value(&'static str),
    /// Nothing: the feature is off.
    Unset,
    /// Worked out where the key is read (from another key, or generated); README shows this.
    Derived(&'static str),
}

/// A key whose value parses into a `T`.
pub(super) struct Key<T> {
    pub(super) about: About,
    parse: fn(&str) -> Parsed<T>,
}

impl About {
    /// `JWT_EXPIRES_IN (jwt.expiresIn)`: both names, for a rule that spans either source.
    pub(super) fn both(&self) -> String {
        format!("{} ({})", self.env, self.file)
    }
}

impl Fallback {
    /// As README's table writes it.
    fn shown(&self) -> String {
        match self {
            Fallback::Value(value) => format!("`{value}`"),
            Fallback::Unset => "none".to_owned(),
            Fallback::Derived(shown) => (*shown).to_owned(),
        }
    }
}

/// The keys as `tokenledger --help` lists them after the options.
pub fn help() -> String {
    let mut help =
        "Configuration (environment variables win over the --config file's keys):\n".to_owned();
    for key in KEYS {
        let line = format!(
            "  {} ({}), default {}\n      {}\n",
            key.env,
            key.file,
            key.default.shown(),
            key.help
        );
        // README's Markdown, read in a terminal.
        help.push_str(&line.replace('`', ""));
    }
    help
}

/// One `const` a row, and `KEYS` listing them all in the order of README's table.
macro_rules! keys {
    ($($name:ident: $type:ty = $env:literal, $file:literal, $form:ident, $default:expr, $parse:ident,
        $help:literal;)*) => {
        $(pub(super) const $name: Key<$type> = Key {
            about: About {
                env: $env,
                file: $file,
                form: Form::$form,
                default: $default,
                help: $help,
            },
            parse: $parse,
        };)*
        pub(super) const KEYS: &[&About] = &[$(&$name.about),*];
    };
}

use Fallback::{Derived, Unset, Value};

keys! {
    HOST: String = "HOST", "server.host", Text, Value("127.0.0.1"), text,
        "address to listen on";
    PORT: u16 = "PORT", "server.port", Scalar, Value("1337"), port,
        "port (as Strapi)";
    DATA_DIR: PathBuf = "DATA_DIR", "server.dataDir", Text, Value("./data"), path,
        "database and generated secrets";
    DATABASE_URL: String = "DATABASE_URL", "server.databaseUrl", Text,
        Derived("`sqlite://<DATA_DIR>/tokenledger.db`"), text,
        "the event store: `sqlite://…` or `postgres://…`";
    JWT_SECRET: Secret = "JWT_SECRET", "jwt.secret", Text, Derived("generated"), secret,
        "signs access tokens";
    REFRESH_JWT_SECRET: Secret = "REFRESH_JWT_SECRET", "refresh.refreshTokenSecret", Text,
        Derived("generated"), secret,
        "signs refresh tokens";
    JWT_EXPIRES_IN: TimeDelta = "JWT_EXPIRES_IN", "jwt.expiresIn", Scalar, Value("2h"), duration,
        "access token lifetime";
    STRAPI_ACCESS_TOKENS: bool = "STRAPI_ACCESS_TOKENS", "jwt.strapiAccessTokens", Text,
        Value("refuse"), accept_or_refuse,
        "`accept`: bearer routes also take Strapi's own access tokens (`{id, iat, exp}` signed \
        with `JWT_SECRET`) until they expire, for a switch-over from Strapi; they cannot be \
        revoked";
    ACCESS_TOKEN_ALG: AccessAlg = "ACCESS_TOKEN_ALG", "jwt.algorithm", Text, Value("HS256"),
        access_alg,
        "how access tokens are signed: `HS256` (with `JWT_SECRET`, what Strapi's content \
        servers check), `EdDSA` (Ed25519) or `ES256` (P-256), whose public keys are published \
        at `/.well-known/jwks.json` so that other services check tokens without a secret";
    SIGNING_KEY: KeyBytes = "SIGNING_KEY", "jwt.signingKey", Text,
        Derived("generated"), key,
        "32 bytes (64 hex digits) from which the access-token signing keys of `EdDSA`, `ES256` \
        and rotated `HS256` are derived; every instance on PostgreSQL needs the same one there";
    SIGNING_KEY_ROTATION: TimeDelta = "SIGNING_KEY_ROTATION", "jwt.signingKeyRotation",
        Scalar, Unset, duration,
        "a new access-token signing key every this long (as `tokenledger keys rotate`); older \
        keys still verify the tokens they signed until those expire";
    ACCESS_TOKEN_ISSUER: String = "ACCESS_TOKEN_ISSUER", "jwt.issuer", Text,
        Derived("the public URL with `EdDSA` or `ES256`; none with `HS256`"), text,
        "the `iss` claim of access tokens, checked on every token presented";
    ACCESS_TOKEN_AUDIENCE: String = "ACCESS_TOKEN_AUDIENCE", "jwt.audience", Text, Unset, text,
        "the `aud` claim of access tokens, checked on every token presented";
    JWT_MANAGEMENT: JwtManagement = "JWT_MANAGEMENT", "jwt.jwtManagement", Text,
        Value("legacy-support"), jwt_management,
        "`legacy-support` (the refresh-token plugin's rules) or `refresh` (Strapi 5's session \
        rules on Strapi's routes; see Strapi 5 refresh mode)";
    REFRESH_TOKEN_EXPIRES_IN: TimeDelta = "REFRESH_TOKEN_EXPIRES_IN",
        "refresh.refreshTokenExpiresIn", Scalar, Value("30d"), duration,
        "refresh token lifetime";
    REQUEST_REFRESH_ON_ALL: bool = "REQUEST_REFRESH_ON_ALL", "refresh.requestRefreshOnAll",
        Scalar, Value("false"), boolean,
        "refresh token on every login and register";
    REFRESH_TOKEN_ROTATION: bool = "REFRESH_TOKEN_ROTATION", "refresh.refreshTokenRotation",
        Scalar, Value("false"), boolean,
        "single-use refresh tokens";
    REFRESH_TOKEN_REUSE_GRACE: TimeDelta = "REFRESH_TOKEN_REUSE_GRACE",
        "refresh.refreshTokenReuseGrace", Scalar, Value("10s"), duration,
        "previous token's grace window";
    MAX_SESSIONS_PER_USER: Option<u32> = "MAX_SESSIONS_PER_USER", "refresh.maxSessionsPerUser",
        Scalar, Value("100"), session_limit,
        "sessions one user may hold; a login beyond it ends the least recently used \
        (`SessionRevoked`, reason `evicted`); `off` for no limit (`0` is refused)";
    SESSION_IDLE_TIMEOUT: TimeDelta = "SESSION_IDLE_TIMEOUT", "refresh.sessionIdleTimeout",
        Scalar, Derived("`refreshTokenExpiresIn`"), duration,
        "a session unused this long ends";
    SESSION_ABSOLUTE_LIFETIME: TimeDelta = "SESSION_ABSOLUTE_LIFETIME",
        "refresh.sessionAbsoluteLifetime", Scalar, Value("90d"), duration,
        "no session outlives login + this";
    SESSION_ACTIVITY_RESOLUTION: TimeDelta = "SESSION_ACTIVITY_RESOLUTION",
        "refresh.sessionActivityResolution", Scalar, Value("60s"), duration,
        "with rotation off, a refresh from the session's last client is recorded \
        (`TokenRefreshed`) only if the last recorded use is this old; one from another IP or \
        user agent always is; the idle timeout is exact to this; never more than a tenth of `SESSION_IDLE_TIMEOUT`; \
        `0s` records every refresh";
    ALLOW_REGISTER: bool = "ALLOW_REGISTER", "advanced.allow_register", Scalar, Value("true"),
        boolean,
        "new users may register (Strapi's setting); `false` answers `Register action is \
        currently disabled`";
    EMAIL_CONFIRMATION: bool = "EMAIL_CONFIRMATION", "advanced.email_confirmation", Scalar,
        Value("false"), boolean,
        "a registration is unconfirmed until its emailed link is followed, and unconfirmed users \
        cannot log in (Strapi's setting)";
    EMAIL_CONFIRMATION_REDIRECTION: String = "EMAIL_CONFIRMATION_REDIRECTION",
        "advanced.email_confirmation_redirection", Text, Value("/"), text,
        "where a followed confirmation link redirects (Strapi's setting)";
    EMAIL_RESET_PASSWORD: String = "EMAIL_RESET_PASSWORD", "advanced.email_reset_password", Text,
        Unset, text,
        "the front end's reset-password page: the emailed link is it with `?code=…` (Strapi's \
        setting)";
    RESET_PASSWORD_CODE_LIFETIME: TimeDelta = "RESET_PASSWORD_CODE_LIFETIME",
        "advanced.resetPasswordCodeLifetime", Scalar, Value("1h"), duration,
        "how long a reset-password code works (Strapi's never expire)";
    EMAIL_CONFIRMATION_CODE_LIFETIME: TimeDelta = "EMAIL_CONFIRMATION_CODE_LIFETIME",
        "advanced.emailConfirmationCodeLifetime", Scalar, Value("7d"), duration,
        "how long an email-confirmation code works (Strapi's never expire)";
    ACTOR_IDLE_TIMEOUT: TimeDelta = "ACTOR_IDLE_TIMEOUT", "server.actorIdleTimeout", Scalar,
        Value("5m"), duration,
        "an idle user's actor is stopped";
    SNAPSHOT_INTERVAL: u64 = "SNAPSHOT_INTERVAL", "server.snapshotInterval", Scalar,
        Value("100000"), snapshot_interval,
        "a snapshot of the sessions projection is stored when at least this many events were \
        appended since the last one (checked every minute), and at a graceful stop; a start \
        loads the newest that verifies and folds only the events after it; `off` makes none";
    COOKIE_RESPONSE: bool = "COOKIE_RESPONSE", "refresh.cookieResponse", Scalar, Value("false"),
        boolean,
        "refresh tokens in an HttpOnly cookie";
    COOKIE_NAME: String = "COOKIE_NAME", "refresh.cookieName", Text,
        Derived("`refreshToken`; `strapi_up_refresh` in refresh mode"), text,
        "the cookie's name";
    COOKIE_SAME_SITE: SameSite = "COOKIE_SAME_SITE", "refresh.cookieSameSite", Text,
        Derived("`strict`; `lax` in refresh mode"), same_site,
        "`strict`, `lax` or `none`";
    COOKIE_PATH: String = "COOKIE_PATH", "refresh.cookiePath", Text,
        Derived("`/api/auth`; `/` in refresh mode"), text,
        "the cookie's path";
    COOKIE_SECURE: bool = "COOKIE_SECURE", "refresh.cookieSecure", Scalar,
        Derived("`true` when `PRODUCTION_URL` is `https://…` or `COOKIE_SAME_SITE` is `none`"),
        boolean,
        "the cookie's `Secure` flag";
    COOKIE_MAX_AGE: CookieMaxAge = "COOKIE_MAX_AGE", "refresh.cookieMaxAge", Scalar,
        Derived("the token's lifetime; `session` in refresh mode"), cookie_max_age,
        "the cookie's `Max-Age`: a duration, `token` (what is left of the refresh token's \
        lifetime) or `session` (none: the browser forgets it when it closes)";
    COOKIE_DOMAIN: String = "COOKIE_DOMAIN", "refresh.cookieDomain", Text, Unset, text,
        "the cookie's domain";
    PRODUCTION_URL: String = "PRODUCTION_URL", "server.productionUrl", Text, Unset, text,
        "`https://…` makes the cookie `Secure`";
    LOGIN_RATE_LIMIT: Option<RateLimit> = "LOGIN_RATE_LIMIT", "server.loginRateLimit", Text,
        Value("10/60s"), rate_limit,
        "logins and registrations per client address and identifier, or `off`";
    LOGIN_IP_RATE_LIMIT: Option<RateLimit> = "LOGIN_IP_RATE_LIMIT", "server.loginIpRateLimit",
        Text, Value("30/60s"), rate_limit,
        "logins and registrations per client address, whatever the identifier, or `off`";
    LOGIN_ACCOUNT_FAILURE_LIMIT: Option<RateLimit> = "LOGIN_ACCOUNT_FAILURE_LIMIT",
        "server.loginAccountFailureLimit", Text, Value("20/1h"), rate_limit,
        "failed logins per account (or unknown identifier), whatever the address; past it \
        every login of the account is a 429; or `off`";
    EMAIL_RATE_LIMIT: Option<RateLimit> = "EMAIL_RATE_LIMIT", "server.emailRateLimit", Text,
        Value("5/1h"), rate_limit,
        "reset-password and confirmation emails asked for one address, from any client, or `off`";
    REFRESH_RATE_LIMIT: Option<RateLimit> = "REFRESH_RATE_LIMIT", "server.refreshRateLimit", Text,
        Value("30/60s"), rate_limit,
        "per session, or `off`";
    TRUSTED_PROXIES: Vec<ipnet::IpNet> = "TRUSTED_PROXIES", "server.trustedProxies", List, Unset,
        proxies,
        "addresses/networks whose `X-Forwarded-For` (or, without one, `Forwarded`) counts; \
        IPv4 entries also match IPv4-mapped peers";
    CORS_ORIGINS: CorsOrigins = "CORS_ORIGINS", "server.corsOrigins", List, Value("*"),
        cors_origins,
        "origins allowed to read answers in a browser (with credentials, as Strapi), \
        comma-separated; the refresh cookie is honoured only from listed origins (or the \
        service's own)";
    ADMIN_API_TOKEN: Secret = "ADMIN_API_TOKEN", "server.adminApiToken", Text, Unset, secret,
        "enables the admin API (32 bytes or more)";
    INTROSPECTION_CLIENTS: Vec<ServiceClient> = "INTROSPECTION_CLIENTS",
        "server.introspectionClients", List, Unset, service_clients,
        "services that may call `POST /api/auth/introspect` (RFC 7662), comma-separated \
        `client_id:client_secret` (secrets of 32 bytes or more, not the admin token); unset, \
        introspection answers 401 to everyone";
    LOG_FORMAT: LogFormat = "LOG_FORMAT", "server.logFormat", Text, Value("text"), log_format,
        "`text` or `json` (`RUST_LOG` filters)";
    LEDGER_KEY: KeyBytes = "LEDGER_KEY", "ledger.key", Text, Derived("generated"), key,
        "keys the events' hash chain (HMAC-SHA256): 64 hex digits; keep it out of the \
        database's reach (required on PostgreSQL)";
    LEDGER_KEY_FILE: PathBuf = "LEDGER_KEY_FILE", "ledger.keyFile", Text, Unset, path,
        "a file holding `LEDGER_KEY`";
    CHECKPOINT_KEY: KeyBytes = "CHECKPOINT_KEY", "ledger.checkpointKey", Text,
        Derived("generated"), key,
        "the Ed25519 seed that signs checkpoints: 64 hex digits (required on PostgreSQL)";
    CHECKPOINT_KEY_FILE: PathBuf = "CHECKPOINT_KEY_FILE", "ledger.checkpointKeyFile", Text,
        Unset, path,
        "a file holding `CHECKPOINT_KEY`";
    LEDGER_ORIGIN: String = "LEDGER_ORIGIN", "ledger.origin", Text,
        Derived("`tokenledger/<key id>`"), text,
        "the checkpoints' origin line, and the name of their signing key";
    CHECKPOINT_INTERVAL: TimeDelta = "CHECKPOINT_INTERVAL", "ledger.checkpointInterval", Scalar,
        Value("10s"), duration,
        "a signed checkpoint is made this often when the log grew";
    CHECKPOINT_FILE: PathBuf = "CHECKPOINT_FILE", "ledger.checkpointFile", Text, Unset, path,
        "each checkpoint is also appended to this file";
    CHECKPOINT_WEBHOOK_URL: String = "CHECKPOINT_WEBHOOK_URL", "ledger.checkpointWebhookUrl",
        Text, Unset, http_url,
        "each checkpoint is POSTed here (`text/plain`), retried with backoff; `http://` only \
        (put a TLS relay in front of an `https` witness)";
    PERSONAL_DATA_KEY: KeyBytes = "PERSONAL_DATA_KEY", "privacy.key", Text, Derived("generated"),
        key,
        "wraps the per-user data keys that seal personal fields (IP, user agent, device, \
        names): 64 hex digits; keep it out of the database's reach (required on PostgreSQL)";
    PERSONAL_DATA_KEY_FILE: PathBuf = "PERSONAL_DATA_KEY_FILE", "privacy.keyFile", Text, Unset,
        path,
        "a file holding `PERSONAL_DATA_KEY`";
    PERSONAL_DATA_RETENTION: Option<TimeDelta> = "PERSONAL_DATA_RETENTION", "privacy.retention",
        Scalar, Value("off"), retention,
        "how long personal fields stay readable, e.g. `90d`: the data keys of calendar months \
        that ended longer ago are deleted, and their fields read as `erased`; `off` keeps them";
    // The mailer (issue 19): how reset and confirmation emails leave.
    SMTP_HOST: String = "SMTP_HOST", "smtp.host", Text, Unset, text,
        "the SMTP server the reset and confirmation emails go through; unset, each email's link \
        is logged at `info` instead (development only: refused with an `https` `PRODUCTION_URL`)";
    SMTP_PORT: u16 = "SMTP_PORT", "smtp.port", Scalar,
        Derived("`587`; `465` with `SMTP_SECURITY=tls`, `25` with `none`"), port,
        "the SMTP server's port";
    SMTP_SECURITY: SmtpSecurity = "SMTP_SECURITY", "smtp.security", Text, Value("starttls"),
        smtp_security,
        "`starttls` (required, not opportunistic), `tls` (TLS from the first byte) or `none` \
        (plain text: a relay on the same host or network only)";
    SMTP_USERNAME: String = "SMTP_USERNAME", "smtp.username", Text, Unset, text,
        "the SMTP login, if the server asks for one";
    SMTP_PASSWORD: Secret = "SMTP_PASSWORD", "smtp.password", Text, Unset, secret,
        "the SMTP password";
    SMTP_TIMEOUT: TimeDelta = "SMTP_TIMEOUT", "smtp.timeout", Scalar, Value("10s"), duration,
        "how long one SMTP exchange may take before the attempt counts as failed";
    EMAIL_FROM: String = "EMAIL_FROM", "email.from", Text,
        Derived("`no-reply@` the host of `PRODUCTION_URL` (`localhost` without it)"), mailbox,
        "the sender, `name <address>` or `address` (Strapi's `from`); its domain ends each \
        `Message-ID`";
    EMAIL_REPLY_TO: String = "EMAIL_REPLY_TO", "email.replyTo", Text, Unset, mailbox,
        "where replies go (Strapi's `response_email`)";
    EMAIL_RESET_PASSWORD_TEMPLATE: PathBuf = "EMAIL_RESET_PASSWORD_TEMPLATE",
        "email.resetPasswordTemplate", Text, Derived("Strapi's text"), path,
        "a TOML file with the reset email's `subject`, `text` and `html` (see Emails)";
    EMAIL_CONFIRMATION_TEMPLATE: PathBuf = "EMAIL_CONFIRMATION_TEMPLATE",
        "email.confirmationTemplate", Text, Derived("Strapi's text"), path,
        "the same for the email-confirmation email";
    EMAIL_MAX_ATTEMPTS: u32 = "EMAIL_MAX_ATTEMPTS", "email.maxAttempts", Scalar, Value("8"),
        attempts,
        "tries at sending one email before the mailer gives up (`EmailFailed` without \
        `retry_at`)";
    EMAIL_RETRY_DELAY: TimeDelta = "EMAIL_RETRY_DELAY", "email.retryDelay", Scalar,
        Value("30s"), duration,
        "the wait after a failed try, doubled after each one, at most an hour";
}

/// Where values come from: the environment, then the file.
pub(super) struct Source<'a> {
    env: &'a HashMap<String, String>,
    /// The file's values by file key, as text.
    file: HashMap<&'static str, String>,
}

impl<'a> Source<'a> {
    pub(super) fn new(
        env: &'a HashMap<String, String>,
        file: HashMap<&'static str, String>,
    ) -> Source<'a> {
        Source { env, file }
    }

    /// The key's value, or its default text parsed alike; `None` when it has neither.
    pub(super) fn optional<T>(&self, key: &Key<T>) -> Result<Option<T>, ConfigError> {
        let about = &key.about;
        // An empty variable is unset, as a shell's `VAR=` or a blank line in an env file means.
        let (named, value) = match self.env.get(about.env).filter(|v| !v.is_empty()) {
            Some(value) => (about.env, Some(value.as_str())),
            None => (about.file, self.file.get(about.file).map(String::as_str)),
        };
        let value = match (value, about.default) {
            (Some(value), _) => value,
            (None, Fallback::Value(default)) => default,
            (None, Fallback::Unset | Fallback::Derived(_)) => return Ok(None),
        };
        (key.parse)(value)
            .map(Some)
            .map_err(|message| invalid(named, message))
    }

    /// The value of a key with a default.
    pub(super) fn value<T>(&self, key: &Key<T>) -> Result<T, ConfigError> {
        self.optional(key)?
            .ok_or_else(|| invalid(key.about.env, "has no default and is not set"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The row of README's configuration table.
    fn readme_row(key: &About) -> String {
        format!(
            "| `{}` | `{}` | {} | {} |",
            key.env,
            key.file,
            key.default.shown(),
            key.help
        )
    }

    #[test]
    fn readme_lists_every_key_of_the_table_and_no_other() {
        let readme = include_str!("../../README.md");
        let section = readme
            .split("\n## Configuration\n")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("README has a Configuration section");
        let rows: Vec<&str> = section
            .lines()
            .filter(|line| line.starts_with("| `"))
            .collect();
        let table: Vec<String> = KEYS.iter().map(|key| readme_row(key)).collect();
        assert_eq!(
            rows, table,
            "README's configuration table and config::keys::KEYS"
        );
    }

    #[test]
    fn help_lists_every_key() {
        let help = help();
        for key in KEYS {
            assert!(
                help.contains(&format!("  {} ({})", key.env, key.file)),
                "{}",
                key.env
            );
        }
        assert!(help.contains("JWT_SECRET (jwt.secret), default generated"));
    }

    #[test]
    fn each_key_has_its_own_names() {
        for (i, key) in KEYS.iter().enumerate() {
            for other in &KEYS[i + 1..] {
                assert!(key.env != other.env && key.file != other.file, "{key:?}");
            }
            assert!(key.file.split_once('.').is_some(), "{}", key.file);
        }
    }
}
