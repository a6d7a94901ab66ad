//! Gate checks' SQL: one number from a query run in a read-only transaction under a statement
//! time limit, so a check can never change the database it judges.

use std::time::Duration;

use crate::connection::{Cell, Connection, Kind};
use crate::error::SqlError;
use crate::url::{DatabaseUrl, Dialect};

/// Runs `query` (one row, one numeric column) read-only within `limit`; `None` when it returns
/// no row or NULL. A query that tries to write fails with the database's own refusal; more than
/// one row or column, or a value that is not a number, is an error too.
///
/// SQLite has no statement time limit: there `limit` only bounds the wait for the answer.
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
            let seconds = ms as f64 / 1000.0;
            let mariadb = connection
                .raw(&format!("SET SESSION max_statement_time = {seconds}"))
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

    // The query as a CTE with one named column: a second column is an error, rows are counted,
    // and no second statement can follow.
    // (The query may end in a comment: the wrapper closes on a line of its own.)
    let query = shiftguard_core::sql_fragments::without_final_semicolon(query);
    // The third column counts what the other dialects refuse by themselves: PostgreSQL lets a
    // CTE name fewer columns than the query has, and SQLite turns text into numbers silently.
    let (double, misfits) = match connection.dialect() {
        Dialect::MySql => ("DOUBLE", "CAST(0 AS SIGNED)"),
        Dialect::Postgres => (
            "DOUBLE PRECISION",
            "coalesce(max((SELECT count(*) FROM json_object_keys(row_to_json(shiftguard_check)))), 1) - 1",
        ),
        Dialect::Sqlite => (
            "DOUBLE PRECISION",
            "coalesce(sum(typeof(value) IN ('text', 'blob')), 0)",
        ),
    };
    let sql = format!(
        "WITH shiftguard_check(value) AS ({query}\n) SELECT count(*), CAST(max(value) AS {double}), {misfits} FROM shiftguard_check"
    );
    let measured =
        tokio::time::timeout(limit + Duration::from_secs(1), read(connection, &sql)).await;
    // Nothing to keep, whatever happened; a failed rollback shows in the next statement.
    let _ = connection.raw("ROLLBACK").await;
    let (row, warnings) = match measured {
        Err(_) => {
            return Err(failed(format!(
                "the check did not answer within {} ms",
                limit.as_millis()
            )));
        }
        Ok(Err(error)) => return Err(failed(url.redact(&error.to_string()))),
        Ok(Ok(read)) => read,
    };
    let row = row.unwrap_or_default();
    let cell = |i: usize| row.get(i).cloned().unwrap_or(Cell::Int(None));
    let rows = cell(0).int().unwrap_or(0);
    if rows > 1 {
        return Err(failed(format!(
            "the check returned {rows} rows; it must return one row with one number"
        )));
    }
    if warnings > 0 || cell(2).int().unwrap_or(0) > 0 {
        return Err(failed(
            "the check must return one number (one row, one column, a numeric value)".to_owned(),
        ));
    }
    Ok(cell(1).float())
}

/// The check's row, and MySQL/MariaDB's count of warnings (they convert text to a number with a
/// warning, not an error; the count is unsigned, hence the cast). A named function rather than
/// an async block, so the future is provably `Send` for the hooks' spawned evaluation.
async fn read(
    connection: &mut Connection,
    sql: &str,
) -> Result<(Option<Vec<Cell>>, i64), sqlx::Error> {
    let row = connection
        .fetch_row(sql, &[], &[Kind::Int, Kind::Float, Kind::Int])
        .await?;
    let warnings = match connection.dialect() {
        Dialect::MySql => connection
            .fetch_row("SELECT CAST(@@warning_count AS SIGNED)", &[], &[Kind::Int])
            .await?
            .and_then(|r| r[0].int())
            .unwrap_or(0),
        Dialect::Postgres | Dialect::Sqlite => 0,
    };
    Ok((row, warnings))
}
