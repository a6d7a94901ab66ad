//! Database URLs: which dialect, and a description that is safe to print.
//!
//! The raw URL may carry a password; it is kept private to this crate and only ever handed to the
//! driver. Everything printed uses [`DatabaseUrl::target`], which names the dialect, host, port and
//! database, or [`DatabaseUrl::redact`], which removes the password from driver messages.

use std::fmt;
use std::path::PathBuf;

use crate::error::SqlError;

/// The SQL dialects shiftguard speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    MySql,
    Sqlite,
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dialect::Postgres => "postgres",
            Dialect::MySql => "mysql",
            Dialect::Sqlite => "sqlite",
        })
    }
}

/// A parsed database URL.
#[derive(Clone)]
pub struct DatabaseUrl {
    /// The URL as the driver takes it (may hold a password: never print).
    pub(crate) driver_url: String,
    dialect: Dialect,
    target: String,
    /// The database's name on its server (`None` for SQLite and a URL that names none).
    database: Option<String>,
    /// The URL as given (with a `+driver` if it had one), for redaction.
    given: String,
    /// The password as written in the URL and percent-decoded, for redaction.
    secrets: Vec<String>,
    sqlite_path: Option<PathBuf>,
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseUrl")
            .field("dialect", &self.dialect)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl DatabaseUrl {
    /// Parses `postgres://`, `postgresql://`, `mysql://`, `mariadb://` and `sqlite:` URLs.
    pub fn parse(raw: &str) -> Result<Self, SqlError> {
        let given = raw.trim();
        let written = given
            .split_once(':')
            .map(|(scheme, _)| scheme)
            .unwrap_or("");
        // SQLAlchemy spells a driver into the scheme (`postgresql+psycopg`); the dialect is
        // what counts here.
        let (scheme, driver) = written.split_once('+').unwrap_or((written, ""));
        let raw = &if driver.is_empty() {
            given.to_owned()
        } else {
            format!("{scheme}{}", &given[written.len()..])
        };
        match scheme {
            "sqlite" => Ok(Self::sqlite(raw, given)),
            "postgres" | "postgresql" | "mysql" | "mariadb" => Self::server(raw, scheme, given),
            _ => Err(SqlError::UnsupportedUrl {
                scheme: if scheme.is_empty() || scheme.contains('/') {
                    "(none)".to_owned()
                } else {
                    scheme.to_owned()
                },
            }),
        }
    }

    fn sqlite(raw: &str, given: &str) -> Self {
        let rest = raw
            .strip_prefix("sqlite://")
            .or_else(|| raw.strip_prefix("sqlite:"))
            .unwrap_or_default();
        let path = rest.split_once('?').map_or(rest, |(path, _)| path);
        let in_memory = path.is_empty() || path == ":memory:";
        DatabaseUrl {
            driver_url: raw.to_owned(),
            dialect: Dialect::Sqlite,
            given: given.to_owned(),
            database: None,
            target: if in_memory {
                "sqlite in-memory database".to_owned()
            } else {
                format!("sqlite database {path}")
            },
            secrets: Vec::new(),
            sqlite_path: (!in_memory).then(|| PathBuf::from(path)),
        }
    }

    fn server(raw: &str, scheme: &str, given: &str) -> Result<Self, SqlError> {
        let invalid = |reason: String| SqlError::InvalidUrl { reason };
        let parsed = url::Url::parse(raw).map_err(|e| invalid(e.to_string()))?;
        let dialect = if scheme.starts_with("postgres") {
            Dialect::Postgres
        } else {
            Dialect::MySql
        };
        // A Unix socket is given as `?host=/run/postgresql` (or `?socket=` for MySQL).
        let socket = parsed
            .query_pairs()
            .find(|(key, _)| key == "host" || key == "socket")
            .map(|(_, value)| value.into_owned());
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .or(socket)
            .ok_or_else(|| invalid(format!("{scheme} URL names no host")))?;
        let port = parsed.port().unwrap_or(match dialect {
            Dialect::Postgres => 5432,
            _ => 3306,
        });
        let named = parsed.path().trim_start_matches('/');
        let database = if named.is_empty() { "(default)" } else { named };
        // A password is `user:secret@` or a `password=` (or `sslpassword=`) query parameter;
        // each is kept as written and percent-decoded.
        let in_query = parsed
            .query()
            .unwrap_or_default()
            .split('&')
            .filter_map(|pair| {
                let (key, value) = pair.split_once('=')?;
                // The key as the driver reads it: decoded, in any case (`Pass%77ord=`).
                let key = url::form_urlencoded::parse(format!("{key}=").as_bytes())
                    .next()
                    .map(|(key, _)| key.to_ascii_lowercase())?;
                matches!(key.as_str(), "password" | "sslpassword").then_some(value)
            });
        let mut secrets = Vec::new();
        for written in parsed.password().into_iter().chain(in_query) {
            if written.is_empty() {
                continue;
            }
            let decoded = url::form_urlencoded::parse(format!("p={written}").as_bytes())
                .next()
                .map(|(_, value)| value.into_owned());
            secrets.push(written.to_owned());
            secrets.extend(decoded.filter(|d| d != written && !d.is_empty()));
        }
        let driver_url = match scheme {
            // sqlx's MySQL driver speaks to MariaDB as is; it only knows the mysql scheme name.
            "mariadb" => format!("mysql{}", &raw["mariadb".len()..]),
            _ => raw.to_owned(),
        };
        Ok(DatabaseUrl {
            driver_url,
            given: given.to_owned(),
            database: (!named.is_empty()).then(|| named.to_owned()),
            dialect,
            target: format!("{dialect} database {database} on {host}:{port}"),
            secrets,
            sqlite_path: None,
        })
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// What the URL points at, without credentials: e.g. `postgres database app on db:5432`.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The database's name on its server, as the URL gives it (`None` for SQLite, or when the
    /// URL names none and the server chooses).
    pub fn database_name(&self) -> Option<&str> {
        self.database.as_deref()
    }

    /// The database file of a SQLite URL (`None` for in-memory and server databases).
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        self.sqlite_path.as_deref()
    }

    /// Removes this URL's password (and the raw URL, in the spelling given and the driver's)
    /// from a message that may quote them.
    pub fn redact(&self, message: &str) -> String {
        let mut message = message.replace(&self.driver_url, &self.target);
        message = message.replace(&self.given, &self.target);
        for secret in &self.secrets {
            message = message.replace(secret.as_str(), "***");
        }
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_never_show_the_password() {
        let cases = [
            (
                "postgres://app:s3cr%40t@db.internal:6432/users",
                Dialect::Postgres,
                "postgres database users on db.internal:6432",
            ),
            (
                "postgresql://app@localhost/app",
                Dialect::Postgres,
                "postgres database app on localhost:5432",
            ),
            (
                "mariadb://root:pw@127.0.0.1/shop",
                Dialect::MySql,
                "mysql database shop on 127.0.0.1:3306",
            ),
            (
                "sqlite:///tmp/lab.db?mode=ro",
                Dialect::Sqlite,
                "sqlite database /tmp/lab.db",
            ),
            (
                "sqlite::memory:",
                Dialect::Sqlite,
                "sqlite in-memory database",
            ),
        ];
        for (raw, dialect, target) in cases {
            let url = DatabaseUrl::parse(raw).expect(raw);
            assert_eq!(url.dialect(), dialect);
            assert_eq!(url.target(), target);
            assert!(!format!("{url:?}").contains("pw"));
        }
        let url = DatabaseUrl::parse("postgres://app:s3cr%40t@db/users").expect("valid");
        assert_eq!(
            url.redact("password s3cr@t rejected"),
            "password *** rejected"
        );
        assert_eq!(
            url.redact("bad option in postgres://app:s3cr%40t@db/users"),
            "bad option in postgres database users on db:5432"
        );
        // The password in the query string, percent-encoded, behind a driver's name.
        let url = DatabaseUrl::parse(
            "postgresql+psycopg://app@db/users?sslmode=require&password=s3cr%40t",
        )
        .expect("valid");
        assert_eq!(
            url.redact("as given postgresql+psycopg://app@db/users?sslmode=require&password=s3cr%40t; s3cr@t; s3cr%40t"),
            "as given postgres database users on db:5432; ***; ***"
        );
        let url = DatabaseUrl::parse("postgres://app@db/users?Pass%77ord=other9").expect("valid");
        assert_eq!(url.redact("rejected other9"), "rejected ***");
    }

    #[test]
    fn rejects_what_it_cannot_use() {
        let cases = [
            (
                "redis://localhost",
                "unsupported database URL scheme `redis`",
            ),
            ("/tmp/x.db", "unsupported database URL scheme `(none)`"),
            (
                "postgres://",
                "invalid database URL: postgres URL names no host",
            ),
        ];
        for (raw, expected) in cases {
            let error = DatabaseUrl::parse(raw).expect_err(raw).to_string();
            assert!(error.starts_with(expected), "{raw}: {error}");
        }
    }
}
