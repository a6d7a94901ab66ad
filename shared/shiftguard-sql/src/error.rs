//! Errors of the SQL adapters. Messages name the database by its target (dialect, host, port,
//! database), never by its URL, so no password can reach a log.

use thiserror::Error;

/// A database operation that could not be carried out.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SqlError {
    /// The URL's scheme names no supported dialect.
    #[error(
        "unsupported database URL scheme `{scheme}` (expected postgres://, mysql://, mariadb:// or sqlite:)"
    )]
    UnsupportedUrl { scheme: String },
    /// The URL could not be parsed.
    #[error("invalid database URL: {reason}")]
    InvalidUrl { reason: String },
    /// A SQLite URL names a file that does not exist (shiftguard never creates one to read from).
    #[error("sqlite database file {path} does not exist")]
    SqliteFileMissing { path: String },
    /// The server could not be reached or refused the connection.
    #[error("cannot connect to {target}: {reason}")]
    Connect { target: String, reason: String },
    /// The connection was not established within the timeout.
    #[error("timed out after {seconds}s connecting to {target}")]
    ConnectTimeout { target: String, seconds: u64 },
    /// The Alembic version table does not exist.
    #[error("{target} is not under Alembic control: table {table} does not exist")]
    NotUnderAlembic { target: String, table: String },
    /// A table name that is not a plain (optionally schema-qualified) SQL identifier.
    #[error(
        "invalid table name `{name}`: use letters, digits and underscores, optionally schema.table"
    )]
    InvalidTableName { name: String },
    /// The rehearsal's scratch database could not be created.
    #[error("cannot create the scratch database `{name}` on {target}: {reason}")]
    ScratchDatabase {
        name: String,
        target: String,
        reason: String,
    },
    /// A query failed.
    #[error("query on {target} failed: {reason}")]
    Query { target: String, reason: String },
}

/// How the backfill runner treats a failed statement. Decided here, once, for every dialect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// A lock or statement timeout: retry with a smaller batch.
    Timeout,
    /// Serialization failure, deadlock, a busy SQLite file: retry the same batch.
    Transient,
    /// The connection broke: reconnect, take the lock again, retry.
    Connection,
    /// Anything else (bad SQL, constraint violation, …): the backfill fails.
    Permanent,
}

/// Classifies a driver error.
pub fn classify(error: &sqlx::Error) -> ErrorClass {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed => ErrorClass::Connection,
        sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => ErrorClass::Connection,
        sqlx::Error::Database(database) => {
            let code = database.code();
            let code = code.as_deref().unwrap_or_default();
            if let Some(mysql) = database.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
                return match mysql.number() {
                    // Lock wait timeout; MariaDB max_statement_time; MySQL max_execution_time;
                    // a statement killed by the batches' watchdog (KILL QUERY).
                    1205 | 1969 | 3024 | 1317 => ErrorClass::Timeout,
                    // Deadlock; lock wait aborted by a deadlock elsewhere.
                    1213 | 1614 => ErrorClass::Transient,
                    // Server gone, lost connection, shutdown in progress.
                    2006 | 2013 | 1053 => ErrorClass::Connection,
                    _ => ErrorClass::Permanent,
                };
            }
            if database
                .try_downcast_ref::<sqlx::sqlite::SqliteError>()
                .is_some()
            {
                // SQLITE_BUSY (5) and SQLITE_LOCKED (6), reported as extended codes whose low
                // byte is the primary code.
                let busy = code
                    .parse::<i64>()
                    .is_ok_and(|extended| matches!(extended & 0xff, 5 | 6));
                return if busy {
                    ErrorClass::Transient
                } else {
                    ErrorClass::Permanent
                };
            }
            match code {
                // lock_not_available (lock_timeout), query_canceled (statement_timeout).
                "55P03" | "57014" => ErrorClass::Timeout,
                // serialization_failure, deadlock_detected.
                "40001" | "40P01" => ErrorClass::Transient,
                // admin_shutdown, crash_shutdown, cannot_connect_now.
                "57P01" | "57P02" | "57P03" => ErrorClass::Connection,
                other if other.starts_with("08") => ErrorClass::Connection,
                _ => ErrorClass::Permanent,
            }
        }
        _ => ErrorClass::Permanent,
    }
}
