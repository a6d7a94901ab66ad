//! Reads a database's Alembic state: the rows of its version table (one per head).

use crate::connection::Connection;
use crate::error::SqlError;
use crate::url::DatabaseUrl;

/// Alembic's default version table.
pub const DEFAULT_VERSION_TABLE: &str = "alembic_version";

/// Checks that `name` is `table` or `schema.table` with plain identifiers, so it can be put into
/// SQL unquoted (Alembic's own table names are of this kind).
pub fn validate_table_name(name: &str) -> Result<(), SqlError> {
    let plain = |part: &str| {
        let mut chars = part.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() <= 2 && parts.iter().all(|part| plain(part)) {
        Ok(())
    } else {
        Err(SqlError::InvalidTableName {
            name: name.to_owned(),
        })
    }
}

/// The revision ids in the version table, sorted. An empty list means the table exists but
/// nothing is applied.
pub async fn read_heads(
    connection: &mut Connection,
    url: &DatabaseUrl,
    table: &str,
) -> Result<Vec<String>, SqlError> {
    validate_table_name(table)?;
    let sql = format!("SELECT version_num FROM {table}");
    match connection.fetch_strings(&sql).await {
        Ok(mut heads) => {
            heads.sort();
            Ok(heads)
        }
        Err(error) if is_missing_table(&error) => Err(SqlError::NotUnderAlembic {
            target: url.target().to_owned(),
            table: table.to_owned(),
        }),
        Err(error) => Err(SqlError::Query {
            target: url.target().to_owned(),
            reason: url.redact(&error.to_string()),
        }),
    }
}

/// PostgreSQL 42P01 (undefined_table), MySQL/MariaDB 42S02 (ER_NO_SUCH_TABLE), SQLite's
/// "no such table" (SQLite has no finer code for it than SQLITE_ERROR).
fn is_missing_table(error: &sqlx::Error) -> bool {
    let Some(database) = error.as_database_error() else {
        return false;
    };
    matches!(database.code().as_deref(), Some("42P01" | "42S02"))
        || database.message().starts_with("no such table")
}
