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
    /// A query failed.
    #[error("query on {target} failed: {reason}")]
    Query { target: String, reason: String },
}
