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
    /// Its name on the server (SQLite: the file's).
    pub name: String,
    /// Where to connect to drop it (the rehearsed database).
    home: DatabaseUrl,
}

/// The longest database name both servers take (PostgreSQL 63 bytes, MySQL 64 characters).
const MAX_DATABASE_NAME: usize = 63;

/// The scratch database's name: `given`, or the rehearsed database's name with `_scratch`
/// appended. A name is letters, digits and `_`, at most 63 characters, never the rehearsed
/// database's own.
pub fn scratch_name(home: &DatabaseUrl, given: Option<&str>) -> Result<String, String> {
    let name = match given {
        Some(name) => name.to_owned(),
        None if home.dialect() == Dialect::Sqlite => "scratch".to_owned(),
        None => match home.database_name() {
            Some(database) => format!("{database}_scratch"),
            None => {
                return Err(
                    "the database URL names no database: name the scratch database with --scratch-database".to_owned(),
                );
            }
        },
    };
    // A name given is held to the plain characters; one derived from the database's own name
    // keeps its characters (it is quoted) and only has to fit.
    let plain = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if name.is_empty() || name.len() > MAX_DATABASE_NAME || (given.is_some() && !plain) {
        return Err(format!(
            "scratch database name `{name}`: use letters, digits and `_`, at most {MAX_DATABASE_NAME} characters (--scratch-database NAME)"
        ));
    }
    if home.database_name() == Some(name.as_str()) {
        return Err(format!(
            "the scratch database `{name}` is the rehearsed database itself: name another"
        ));
    }
    Ok(name)
}

impl Scratch {
    /// Creates the empty scratch database `name` (see [`scratch_name`]). `alembic_url` is the
    /// rehearsed database's URL as Alembic takes it (`postgresql+psycopg://…`); `dir` holds the
    /// SQLite file. A database of that name that exists already is left alone (an error): it
    /// may hold something, and it is dropped afterwards.
    pub async fn create(
        home: &DatabaseUrl,
        alembic_url: &str,
        name: &str,
        dir: &std::path::Path,
    ) -> Result<Self, SqlError> {
        if home.dialect() == Dialect::Sqlite {
            let path = dir.join(format!("{name}.db"));
            return Ok(Scratch {
                url: DatabaseUrl::parse(&format!("sqlite://{}", path.display()))?,
                alembic_url: format!("sqlite:///{}", path.display()),
                name: name.to_owned(),
                home: home.clone(),
            });
        }
        let replace = |raw: &str| -> Result<String, SqlError> {
            let mut parsed = url::Url::parse(raw).map_err(|e| SqlError::InvalidUrl {
                reason: e.to_string(),
            })?;
            parsed.set_path(&format!("/{name}"));
            Ok(parsed.into())
        };
        // Both URLs first: nothing is created that could not be used (and dropped).
        let scratch = Scratch {
            url: DatabaseUrl::parse(&replace(&home.driver_url)?)?,
            alembic_url: replace(alembic_url)?,
            name: name.to_owned(),
            home: home.clone(),
        };
        let mut connection = Connection::open(home, settings()).await?;
        let quoted = quote(home.dialect(), name);
        let created = connection
            .raw(&format!("CREATE DATABASE {quoted}"))
            .await
            .map_err(|e| cannot_create(home, name, &e));
        connection.close().await;
        created.map(|()| scratch)
    }

    /// Drops the scratch database (it holds nothing but the migrated schema). An error says
    /// why it is left behind: the next rehearsal cannot create it again.
    pub async fn drop(self) -> Result<(), SqlError> {
        if self.home.dialect() == Dialect::Sqlite {
            if let Some(path) = self.url.sqlite_path() {
                let _ = std::fs::remove_file(path);
            }
            return Ok(());
        }
        let mut connection = Connection::open(&self.home, settings()).await?;
        let quoted = quote(self.home.dialect(), &self.name);
        let dropped = connection
            .raw(&format!("DROP DATABASE IF EXISTS {quoted}"))
            .await
            .map_err(|e| query_failed(&self.home, &e));
        connection.close().await;
        dropped
    }
}

/// Why `CREATE DATABASE name` failed, with what to do about it: the privilege it takes, or
/// another name when it exists.
fn cannot_create(home: &DatabaseUrl, name: &str, error: &sqlx::Error) -> SqlError {
    let code = error
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned())
        .unwrap_or_default();
    let hint = if is_exists(error) {
        "it exists already (left by an interrupted rehearsal?): drop it, or name another with --scratch-database".to_owned()
    } else {
        match (home.dialect(), code.as_str()) {
            // insufficient_privilege
            (Dialect::Postgres, "42501") => "the role lacks the CREATEDB privilege (ALTER ROLE … CREATEDB), or skip the from-empty check with --no-empty-check".to_owned(),
            // ER_DBACCESS_DENIED_ERROR (1044) reports 42000.
            (Dialect::MySql, "42000") => format!(
                "the user lacks the CREATE and DROP privileges on it (GRANT CREATE, DROP ON `{name}`.* TO …), or skip the from-empty check with --no-empty-check"
            ),
            _ => String::new(),
        }
    };
    let reason = home.redact(&error.to_string());
    SqlError::ScratchDatabase {
        name: name.to_owned(),
        target: home.target().to_owned(),
        reason: if hint.is_empty() {
            reason
        } else {
            format!("{reason}: {hint}")
        },
    }
}

/// ER_DB_CREATE_EXISTS (1007) on MySQL; duplicate_database on PostgreSQL.
fn is_exists(error: &sqlx::Error) -> bool {
    error.as_database_error().is_some_and(|e| {
        e.code().as_deref() == Some("42P04")
            || e.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                .is_some_and(|m| m.number() == 1007)
    })
}

/// Quotes an identifier the dialect's way.
pub(crate) fn quote(dialect: Dialect, name: &str) -> String {
    match dialect {
        Dialect::MySql => format!("`{}`", name.replace('`', "``")),
        _ => format!("\"{}\"", name.replace('"', "\"\"")),
    }
}
