//! Gate checks' SQL: one number from a query run in a read-only transaction under a statement
//! time limit, so a check can never change the database it judges.

use std::time::Duration;

use crate::connection::{Cell, Connection, Kind};
use crate::error::SqlError;
use crate::url::{DatabaseUrl, Dialect};

/// Runs `query` (one row, one numeric column) read-only within `limit`; `None` when it returns
/// no row or NULL. A query that tries to write fails with the database's own refusal.
pub async fn measure(
    connection: &mut Connection,
    url: &DatabaseUrl,
    query: &str,
    limit: Duration,
) -> Result<Option<f64>, SqlError> {
    let failed = |reason: String| SqlError::Query {
        target: url.target().to_owned(),
        reason,
    };
    let ms = limit.as_millis().max(1);
    let begin = match connection.dialect() {
        Dialect::Postgres => format!(
            "BEGIN READ ONLY; SET LOCAL statement_timeout = '{ms}ms'; SET LOCAL lock_timeout = '{ms}ms'"
        ),
        // MariaDB's limit is max_statement_time (seconds); MySQL's is max_execution_time (ms).
        Dialect::MySql => {
            let mariadb = connection
                .raw(&format!(
                    "SET SESSION max_statement_time = {}",
                    ms as f64 / 1000.0
                ))
                .await;
            if mariadb.is_err() {
                connection
                    .raw(&format!("SET SESSION max_execution_time = {ms}"))
                    .await
                    .map_err(|e| failed(url.redact(&e.to_string())))?;
            }
            "START TRANSACTION READ ONLY".to_owned()
        }
        // The file is opened read-only as well.
        Dialect::Sqlite => "PRAGMA query_only = ON; BEGIN".to_owned(),
    };
    connection
        .raw(&begin)
        .await
        .map_err(|e| failed(url.redact(&e.to_string())))?;
    // A scalar subquery: exactly one column, at most one row, and no second statement.
    let query = query.trim().trim_end_matches(';');
    // SQLite's scalar subquery takes the first of several rows where the servers fail; a check
    // must not pass on an arbitrary row, so count them there first.
    if connection.dialect() == Dialect::Sqlite {
        let rows = connection
            .fetch_row(
                &format!("SELECT count(*) FROM ({query})"),
                &[],
                &[Kind::Int],
            )
            .await;
        if let Ok(Some(row)) = &rows
            && let Some(n) = row[0].int().filter(|n| *n > 1)
        {
            let _ = connection.raw("ROLLBACK").await;
            return Err(failed(format!(
                "the check returned {n} rows; it must return one row with one number"
            )));
        }
    }
    let double = match connection.dialect() {
        Dialect::MySql => "DOUBLE",
        Dialect::Postgres | Dialect::Sqlite => "DOUBLE PRECISION",
    };
    let sql = format!("SELECT CAST(({query}) AS {double})");
    let measured = tokio::time::timeout(
        limit + Duration::from_secs(1),
        connection.fetch_row(&sql, &[], &[Kind::Float]),
    )
    .await;
    // Nothing to keep, whatever happened; a failed rollback shows in the next statement.
    let _ = connection.raw("ROLLBACK").await;
    match measured {
        Err(_) => Err(failed(format!(
            "the check did not answer within {} ms",
            limit.as_millis()
        ))),
        Ok(Err(error)) => Err(failed(url.redact(&error.to_string()))),
        Ok(Ok(row)) => Ok(row.and_then(|cells| match cells.first() {
            Some(Cell::Float(value)) => *value,
            _ => None,
        })),
    }
}
