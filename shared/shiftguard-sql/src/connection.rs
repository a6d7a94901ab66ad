//! One connection to PostgreSQL, MySQL/MariaDB or SQLite, opened with a timeout.

use std::str::FromStr;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection as _};

use crate::error::SqlError;
use crate::url::{DatabaseUrl, Dialect};

/// An open connection, by dialect. Code that runs the same SQL on every dialect matches once
/// through [`Connection::fetch_strings`]; dialect-specific SQL matches on the variant.
#[derive(Debug)]
pub enum Connection {
    Postgres(PgConnection),
    MySql(MySqlConnection),
    Sqlite(SqliteConnection),
}

/// How to open a connection.
#[derive(Clone, Copy, Debug)]
pub struct ConnectSettings {
    pub timeout: Duration,
    /// Open SQLite files read-only (the server dialects are not affected).
    pub read_only: bool,
}

impl Default for ConnectSettings {
    fn default() -> Self {
        ConnectSettings {
            timeout: Duration::from_secs(10),
            read_only: true,
        }
    }
}

impl Connection {
    /// Opens a connection; errors name the target, never the URL.
    pub async fn open(url: &DatabaseUrl, settings: ConnectSettings) -> Result<Self, SqlError> {
        let failed = |error: sqlx::Error| SqlError::Connect {
            target: url.target().to_owned(),
            reason: url.redact(&error.to_string()),
        };
        if let Some(path) = url.sqlite_path().filter(|p| !p.exists()) {
            return Err(SqlError::SqliteFileMissing {
                path: path.display().to_string(),
            });
        }
        let connecting = async {
            Ok(match url.dialect() {
                Dialect::Postgres => {
                    let options = PgConnectOptions::from_str(&url.driver_url)?;
                    Connection::Postgres(options.connect().await?)
                }
                Dialect::MySql => {
                    let options = MySqlConnectOptions::from_str(&url.driver_url)?;
                    Connection::MySql(options.connect().await?)
                }
                Dialect::Sqlite => {
                    let options = SqliteConnectOptions::from_str(&url.driver_url)?
                        .read_only(settings.read_only)
                        .create_if_missing(false);
                    Connection::Sqlite(SqliteConnection::connect_with(&options).await?)
                }
            })
        };
        match tokio::time::timeout(settings.timeout, connecting).await {
            Ok(connected) => connected.map_err(failed),
            Err(_) => Err(SqlError::ConnectTimeout {
                target: url.target().to_owned(),
                seconds: settings.timeout.as_secs(),
            }),
        }
    }

    /// Runs a query whose one column is text and returns every row's value.
    pub async fn fetch_strings(&mut self, sql: &str) -> Result<Vec<String>, sqlx::Error> {
        match self {
            Connection::Postgres(c) => sqlx::query_scalar(sql).fetch_all(c).await,
            Connection::MySql(c) => sqlx::query_scalar(sql).fetch_all(c).await,
            Connection::Sqlite(c) => sqlx::query_scalar(sql).fetch_all(c).await,
        }
    }

    /// Closes the connection cleanly (errors on close are of no interest to the caller).
    pub async fn close(self) {
        let _ = match self {
            Connection::Postgres(c) => c.close().await,
            Connection::MySql(c) => c.close().await,
            Connection::Sqlite(c) => c.close().await,
        };
    }
}
