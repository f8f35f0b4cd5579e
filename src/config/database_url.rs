//! `DATABASE_URL`, parsed once at start-up: which database it names is decided here, so the
//! store, the secrets and the start-up lock match on a variant instead of re-reading the
//! scheme. Its `Display` is the form fit for logs and error messages, without the password.

use std::fmt;
use std::path::Path;

#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `sqlite:` followed by what sqlx's SQLite options read (a path, `//path`, options).
    Sqlite(String),
    /// `postgres://…` or `postgresql://…`.
    Postgres(String),
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<DatabaseUrl, String> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(DatabaseUrl::Postgres(url.to_owned()))
        } else if url.starts_with("sqlite:") {
            Ok(DatabaseUrl::Sqlite(url.to_owned()))
        } else {
            Err("must be a sqlite:// or postgres:// URL".to_owned())
        }
    }

    /// The default: `tokenledger.db` in the data folder.
    pub fn in_data_dir(data_dir: &Path) -> DatabaseUrl {
        DatabaseUrl::Sqlite(format!(
            "sqlite://{}",
            data_dir.join("tokenledger.db").display()
        ))
    }

    /// PostgreSQL is shared by several instances; a SQLite file belongs to one server.
    pub fn is_postgres(&self) -> bool {
        matches!(self, DatabaseUrl::Postgres(_))
    }

    /// The URL to connect with, password included: never for a log line (use `Display`).
    pub fn expose(&self) -> &str {
        match self {
            DatabaseUrl::Sqlite(url) | DatabaseUrl::Postgres(url) => url,
        }
    }
}

/// The password, in the authority or as a `password=` parameter, becomes `***`.
impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redacted(self.expose()))
    }
}

/// Redacted as well, so that a `Config` printed with `{:?}` leaks no password.
impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let variant = match self {
            DatabaseUrl::Sqlite(_) => "Sqlite",
            DatabaseUrl::Postgres(_) => "Postgres",
        };
        f.debug_tuple(variant)
            .field(&redacted(self.expose()))
            .finish()
    }
}

fn redacted(url: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(url: &str) -> String {
        DatabaseUrl::parse(url).unwrap().to_string()
    }

    #[test]
    fn database_urls_lose_their_passwords_in_messages() {
        assert_eq!(
            shown("postgres://app:s3cr%40t@db.internal:5432/auth?sslmode=require"),
            "postgres://app:***@db.internal:5432/auth?sslmode=require"
        );
        assert_eq!(
            shown("postgres://db/auth?user=app&password=hunter2&sslmode=disable"),
            "postgres://db/auth?user=app&password=***&sslmode=disable"
        );
        assert_eq!(
            shown("sqlite://data/tokenledger.db"),
            "sqlite://data/tokenledger.db"
        );
        assert_eq!(shown("postgres://app@db/auth"), "postgres://app@db/auth");
        let debug = format!("{:?}", DatabaseUrl::parse("postgres://a:b@db/x").unwrap());
        assert_eq!(debug, r#"Postgres("postgres://a:***@db/x")"#);
    }

    #[test]
    fn sqlite_and_postgres_urls_are_told_apart_once() {
        for url in ["postgres://db/auth", "postgresql://db/auth"] {
            let parsed = DatabaseUrl::parse(url).unwrap();
            assert!(parsed.is_postgres(), "{url}");
            assert_eq!(parsed.expose(), url);
        }
        for url in ["sqlite://data/t.db", "sqlite:t.db", "sqlite::memory:"] {
            let parsed = DatabaseUrl::parse(url).unwrap();
            assert!(!parsed.is_postgres(), "{url}");
            assert_eq!(parsed.expose(), url);
        }
        for url in ["mysql://db/auth", "data/t.db", "Postgres://db/auth", ""] {
            assert!(DatabaseUrl::parse(url).is_err(), "{url}");
        }
        assert_eq!(
            DatabaseUrl::in_data_dir(Path::new("./data")).expose(),
            "sqlite://./data/tokenledger.db"
        );
    }
}
