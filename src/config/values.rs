//! The parsers of the key table: text as an operator writes it (in the environment or the
//! file) into a typed value, or a message that the loader prefixes with the key it came from.

use std::path::PathBuf;

use chrono::TimeDelta;

use super::{
    AccessAlg, CookieMaxAge, CorsOrigins, JwtManagement, KeyBytes, LogFormat, RateLimit, SameSite,
    Secret, SmtpSecurity,
};

pub(super) type Parsed<T> = Result<T, String>;

pub(super) fn text(value: &str) -> Parsed<String> {
    Ok(value.to_owned())
}

pub(super) fn path(value: &str) -> Parsed<PathBuf> {
    Ok(PathBuf::from(value))
}

pub(super) fn secret(value: &str) -> Parsed<Secret> {
    Ok(Secret::new(value))
}

pub(super) fn key(value: &str) -> Parsed<KeyBytes> {
    KeyBytes::parse(value)
}

/// An `http://` URL: the service links no TLS stack, so a witness on `https://` is reached
/// through a local relay (a sidecar proxy).
pub(super) fn http_url(value: &str) -> Parsed<String> {
    let url = value.trim();
    if url.starts_with("https://") {
        Err(format!(
            "{url:?}: https is not supported here; post to a local http relay that forwards over TLS"
        ))
    } else if url.starts_with("http://") && url.len() > "http://".len() {
        Ok(url.to_owned())
    } else {
        Err(format!("{url:?} is not an http:// URL"))
    }
}

pub(super) fn port(value: &str) -> Parsed<u16> {
    value
        .trim()
        .parse::<u16>()
        .map_err(|_| format!("{value:?} is not a port number"))
}

pub(super) fn boolean(value: &str) -> Parsed<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(format!("{other:?} is not true, false, 1 or 0")),
    }
}

/// `STRAPI_ACCESS_TOKENS`: `accept` (true) or `refuse`.
pub(super) fn accept_or_refuse(value: &str) -> Parsed<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "accept" => Ok(true),
        "refuse" => Ok(false),
        other => Err(format!("{other:?} is not accept or refuse")),
    }
}

/// Durations as Strapi and the plugin write them: `30d`, `2h`, `15m`, `10s`, `7 days`, `1y`,
/// or a bare number of seconds.
pub(super) fn duration(value: &str) -> Parsed<TimeDelta> {
    let text = value.trim();
    let std = match text.parse::<u64>() {
        Ok(seconds) => std::time::Duration::from_secs(seconds),
        Err(_) => humantime::parse_duration(text)
            .map_err(|e| format!("{text:?} is not a duration like 30d, 2h, 15m or 10s ({e})"))?,
    };
    // Far beyond any session, and far enough from chrono's limits that `now + lifetime` can
    // never overflow later, at the first login.
    const LONGEST: TimeDelta = TimeDelta::days(100 * 366);
    TimeDelta::from_std(std)
        .ok()
        .filter(|d| *d <= LONGEST)
        .ok_or_else(|| format!("{text:?} is too long (at most 100y)"))
}

/// A duration, or `off`.
pub(super) fn retention(value: &str) -> Parsed<Option<TimeDelta>> {
    if value.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    duration(value).map(Some)
}

/// `10/60s` (requests per period), or `off`.
pub(super) fn rate_limit(value: &str) -> Parsed<Option<RateLimit>> {
    let text = value.trim();
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let bad = || format!("{text:?} is not like 10/60s (requests per period) or off");
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
pub(super) fn session_limit(value: &str) -> Parsed<Option<u32>> {
    let text = value.trim();
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    text.parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .map(Some)
        .ok_or_else(|| format!("{text:?} is not a number of sessions of 1 or more, or off"))
}

/// A number of events of 1 or more, or `off` (0).
pub(super) fn snapshot_interval(value: &str) -> Parsed<u64> {
    let text = value.trim();
    if text.eq_ignore_ascii_case("off") {
        return Ok(0);
    }
    text.parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{text:?} is not a number of events of 1 or more, or off"))
}

/// Comma-separated addresses or networks (`10.0.0.0/8`, `::1`).
pub(super) fn proxies(value: &str) -> Parsed<Vec<ipnet::IpNet>> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse::<ipnet::IpNet>()
                .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("{item:?} is not an IP address or network"))
        })
        .collect()
}

/// `*`, or origins like `https://app.example.com`, separated by commas.
pub(super) fn cors_origins(value: &str) -> Parsed<CorsOrigins> {
    let items: Vec<&str> = value
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
                    format!("{item:?} is not an origin like https://app.example.com (no path)")
                })
        })
        .collect::<Result<_, _>>()
        .map(CorsOrigins::Listed)
}

pub(super) fn same_site(value: &str) -> Parsed<SameSite> {
    match value.to_ascii_lowercase().as_str() {
        "strict" => Ok(SameSite::Strict),
        "lax" => Ok(SameSite::Lax),
        "none" => Ok(SameSite::None),
        other => Err(format!("{other:?} is not strict, lax or none")),
    }
}

pub(super) fn log_format(value: &str) -> Parsed<LogFormat> {
    match value.to_ascii_lowercase().as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(format!("{other:?} is not text or json")),
    }
}

/// Strapi's `jwtManagement`, spelt as Strapi spells it.
/// `HS256`, `EdDSA` or `ES256`, as JOSE spells them (any case).
pub(super) fn access_alg(value: &str) -> Parsed<AccessAlg> {
    match value.trim().to_ascii_uppercase().as_str() {
        "HS256" => Ok(AccessAlg::HS256),
        "EDDSA" => Ok(AccessAlg::EdDSA),
        "ES256" => Ok(AccessAlg::ES256),
        other => Err(format!("{other:?} is not HS256, EdDSA or ES256")),
    }
}

pub(super) fn jwt_management(value: &str) -> Parsed<JwtManagement> {
    match value.trim() {
        "legacy-support" => Ok(JwtManagement::LegacySupport),
        "refresh" => Ok(JwtManagement::Refresh),
        other => Err(format!("{other:?} is not legacy-support or refresh")),
    }
}

/// `token`, `session`, or a duration.
pub(super) fn cookie_max_age(value: &str) -> Parsed<CookieMaxAge> {
    match value.trim().to_ascii_lowercase().as_str() {
        "token" => Ok(CookieMaxAge::Token),
        "session" => Ok(CookieMaxAge::Session),
        _ => duration(value)
            .map(CookieMaxAge::Fixed)
            .map_err(|why| format!("{why}, token or session")),
    }
}

/// `SMTP_SECURITY`.
pub(super) fn smtp_security(value: &str) -> Parsed<SmtpSecurity> {
    match value.trim().to_ascii_lowercase().as_str() {
        "starttls" => Ok(SmtpSecurity::StartTls),
        "tls" => Ok(SmtpSecurity::Tls),
        "none" => Ok(SmtpSecurity::None),
        other => Err(format!("{other:?} is not starttls, tls or none")),
    }
}

/// A mailbox as an email header writes it: `Name <address>` or `address`.
pub(super) fn mailbox(value: &str) -> Parsed<String> {
    let text = value.trim();
    text.parse::<lettre::message::Mailbox>()
        .map(|_| text.to_owned())
        .map_err(|e| format!("{text:?} is not an email address or `name <address>` ({e})"))
}

/// A positive number of tries.
pub(super) fn attempts(value: &str) -> Parsed<u32> {
    match value.trim().parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{value:?} is not a positive number")),
    }
}
