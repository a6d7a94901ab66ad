//! The database side of a rehearsal (`shiftguard rehearse`): what tables a database holds, a
//! scratch database beside it, synthetic rows for every table ([`fill`]) and the table locks a
//! migration step takes on PostgreSQL ([`locks`]).

pub mod fill;
pub mod locks;

use crate::connection::{ConnectSettings, Connection};
use crate::error::SqlError;
use crate::url::{DatabaseUrl, Dialect};

/// Settings for the rehearsal's own connections: writable, patient with SQLite.
pub fn settings() -> ConnectSettings {
    ConnectSettings {
        read_only: false,
        ..ConnectSettings::default()
    }
}

/// The base tables of the database (the current schema on PostgreSQL), sorted. A SQLite file
/// that does not exist yet has none.
pub async fn tables(url: &DatabaseUrl) -> Result<Vec<String>, SqlError> {
    if url.sqlite_path().is_some_and(|p| !p.exists()) {
        return Ok(Vec::new());
    }
    let sql = match url.dialect() {
        Dialect::Postgres => {
            "SELECT c.relname::text FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1"
        }
        Dialect::MySql => {
            "SELECT CAST(TABLE_NAME AS CHAR) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE' ORDER BY 1"
        }
        Dialect::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY 1"
        }
    };
    let mut connection = Connection::open(url, settings()).await?;
    let names = connection.fetch_strings(sql).await;
    connection.close().await;
    names.map_err(|e| query_failed(url, &e))
}

pub(crate) fn query_failed(url: &DatabaseUrl, error: &sqlx::Error) -> SqlError {
    SqlError::Query {
        target: url.target().to_owned(),
        reason: url.redact(&error.to_string()),
    }
}

/// A database created beside the rehearsed one (same server, or a file in `dir` for SQLite),
/// for the check that the migrations also run from nothing. Dropped by [`Scratch::drop`].
#[derive(Debug)]
pub struct Scratch {
    /// For shiftguard's own connections.
    pub url: DatabaseUrl,
    /// The rehearsal's URL with the scratch database in place of its own, as Alembic takes it.
    pub alembic_url: String,
    name: String,
    /// Where to connect to drop it (the rehearsed database).
    home: DatabaseUrl,
}

impl Scratch {
    /// Creates an empty scratch database. `alembic_url` is the rehearsed database's URL as
    /// Alembic takes it (`postgresql+psycopg://…`); `dir` holds the SQLite file.
    pub async fn create(
        home: &DatabaseUrl,
        alembic_url: &str,
        dir: &std::path::Path,
    ) -> Result<Self, SqlError> {
        // Unique across runners sharing a server (a container's pid is often the same).
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("sg_rehearsal_empty_{}_{nanos}", std::process::id());
        if home.dialect() == Dialect::Sqlite {
            let path = dir.join(format!("{name}.db"));
            return Ok(Scratch {
                url: DatabaseUrl::parse(&format!("sqlite://{}", path.display()))?,
                alembic_url: format!("sqlite:///{}", path.display()),
                name,
                home: home.clone(),
            });
        }
        let mut connection = Connection::open(home, settings()).await?;
        let quoted = quote(home.dialect(), &name);
        let created = connection
            .raw(&format!("CREATE DATABASE {quoted}"))
            .await
            .map_err(|e| query_failed(home, &e));
        connection.close().await;
        created?;
        let replace = |raw: &str| -> Result<String, SqlError> {
            let mut parsed = url::Url::parse(raw).map_err(|e| SqlError::InvalidUrl {
                reason: e.to_string(),
            })?;
            parsed.set_path(&format!("/{name}"));
            Ok(parsed.into())
        };
        Ok(Scratch {
            url: DatabaseUrl::parse(&replace(&home.driver_url)?)?,
            alembic_url: replace(alembic_url)?,
            name,
            home: home.clone(),
        })
    }

    /// Drops the scratch database (best effort: it holds nothing but the migrated schema).
    pub async fn drop(self) {
        if self.home.dialect() == Dialect::Sqlite {
            if let Some(path) = self.url.sqlite_path() {
                let _ = std::fs::remove_file(path);
            }
            return;
        }
        if let Ok(mut connection) = Connection::open(&self.home, settings()).await {
            let quoted = quote(self.home.dialect(), &self.name);
            let _ = connection
                .raw(&format!("DROP DATABASE IF EXISTS {quoted}"))
                .await;
            connection.close().await;
        }
    }
}

/// Quotes an identifier the dialect's way.
pub(crate) fn quote(dialect: Dialect, name: &str) -> String {
    match dialect {
        Dialect::MySql => format!("`{}`", name.replace('`', "``")),
        _ => format!("\"{}\"", name.replace('"', "\"\"")),
    }
}
