//! One `shiftguard migrate` at a time per database: a lock that dies with its holder, held by
//! shiftguard's own session while Alembic (another process) migrates. PostgreSQL: a session
//! advisory lock (advisory locks are per database); MySQL/MariaDB: `GET_LOCK` on a name that
//! holds the database's name (named locks are server-wide); SQLite: an advisory lock on the
//! file `<database>.shiftguard-migrate.lock` beside it.

use std::path::Path;

use crate::connection::{Bind, ConnectSettings, Connection, Kind};
use crate::error::SqlError;
use crate::rehearsal::query_failed;
use crate::url::{DatabaseUrl, Dialect};

/// Held while migrating; [`MigrationLock::release`] (or the process ending) lets go.
#[derive(Debug)]
pub enum MigrationLock {
    /// The session holding the server's lock.
    Session {
        connection: Connection,
        name: String,
    },
    /// The locked file beside a SQLite database (closing it releases the lock).
    File(std::fs::File),
    /// An in-memory SQLite database: nothing to exclude.
    Memory,
}

/// The lock's name on the server (at most 64 characters: MySQL's limit).
fn lock_name(url: &DatabaseUrl) -> String {
    let name = match url.dialect() {
        Dialect::MySql => format!(
            "shiftguard:migrate:{}",
            url.database_name().unwrap_or_default()
        ),
        _ => "shiftguard:migrate".to_owned(),
    };
    name.chars().take(64).collect()
}

impl MigrationLock {
    /// Takes the lock if it is free; `None` when another `shiftguard migrate` holds it.
    pub async fn try_take(
        url: &DatabaseUrl,
        settings: ConnectSettings,
    ) -> Result<Option<Self>, SqlError> {
        if url.dialect() == Dialect::Sqlite {
            return lock_file(url);
        }
        let mut connection = Connection::open(url, settings).await?;
        let sql = match url.dialect() {
            Dialect::Postgres => {
                "SELECT CAST(CASE WHEN pg_try_advisory_lock(hashtextextended($1, 0)) THEN 1 ELSE 0 END AS BIGINT)"
            }
            _ => "SELECT CAST(GET_LOCK(?, 0) AS SIGNED)",
        };
        let name = lock_name(url);
        let taken = connection
            .fetch_row(sql, &[Bind::Text(Some(name.clone()))], &[Kind::Int])
            .await
            .map(|row| row.and_then(|r| r[0].int()) == Some(1))
            .map_err(|e| query_failed(url, &e));
        match taken {
            Ok(true) => Ok(Some(MigrationLock::Session { connection, name })),
            Ok(false) => {
                connection.close().await;
                Ok(None)
            }
            Err(error) => {
                connection.close().await;
                Err(error)
            }
        }
    }

    /// Lets go of the lock (closing the session would as well; this says so at once).
    pub async fn release(self) {
        if let MigrationLock::Session {
            mut connection,
            name,
        } = self
        {
            let sql = match connection.dialect() {
                Dialect::Postgres => "SELECT pg_advisory_unlock(hashtextextended($1, 0))",
                _ => "SELECT RELEASE_LOCK(?)",
            };
            let _ = connection.execute(sql, &[Bind::Text(Some(name))]).await;
            connection.close().await;
        }
    }
}

/// SQLite: the advisory lock on `<database>.shiftguard-migrate.lock` (the database by its
/// canonical path, so a symlink or `..` does not make a second lock). A database file that does
/// not exist yet is locked by the name it will have.
fn lock_file(url: &DatabaseUrl) -> Result<Option<MigrationLock>, SqlError> {
    let Some(database) = url.sqlite_path() else {
        return Ok(Some(MigrationLock::Memory));
    };
    let database = std::fs::canonicalize(database)
        .or_else(|_| std::path::absolute(database))
        .unwrap_or_else(|_| database.to_owned());
    let mut path = database.into_os_string();
    path.push(".shiftguard-migrate.lock");
    let failed = |reason: String| SqlError::Query {
        target: url.target().to_owned(),
        reason,
    };
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| failed(format!("cannot open {}: {e}", Path::new(&path).display())))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(MigrationLock::File(file))),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(failed(format!(
            "cannot lock {}: {e}",
            Path::new(&path).display()
        ))),
    }
}
