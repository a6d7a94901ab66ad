//! The SQL text of one backfill, per dialect. The batch statements are rendered once per run
//! (not once per batch), so the hot path only binds parameters; the casts that differ between
//! dialects live here so every query reads an integer or a float the same way everywhere.

use std::borrow::Cow;
use std::time::Duration;

use shiftguard_core::backfill::BackfillConfig;

use crate::checkpoint::placeholder;
use crate::url::Dialect;

/// `expression` as a 64-bit integer, in the dialect's spelling.
pub(super) fn bigint(dialect: Dialect, expression: &str) -> String {
    match dialect {
        Dialect::MySql => format!("CAST({expression} AS SIGNED)"),
        Dialect::Postgres | Dialect::Sqlite => format!("CAST({expression} AS BIGINT)"),
    }
}

/// `expression` as a double-precision float, in the dialect's spelling.
pub(super) fn double(dialect: Dialect, expression: &str) -> String {
    match dialect {
        Dialect::MySql => format!("CAST({expression} AS DOUBLE)"),
        Dialect::Postgres => format!("CAST({expression} AS DOUBLE PRECISION)"),
        Dialect::Sqlite => format!("CAST({expression} AS REAL)"),
    }
}

/// The statements of one backfill, rendered once per dialect.
#[derive(Debug)]
pub(super) struct Statements {
    /// The next batch's upper key and row count, from the cursor (`> $1`) and the size (`$2`).
    pub bounds: String,
    /// The batch's update: keys in `($1, $2]` that are still pending.
    pub update: String,
    /// The smallest key still pending (NULL when none).
    pub first_pending: String,
}

impl Statements {
    pub fn new(dialect: Dialect, config: &BackfillConfig) -> Self {
        let p = |n| placeholder(dialect, n);
        let (table, key) = (&config.table, &config.key);
        Statements {
            bounds: format!(
                "SELECT {}, count(*) FROM (SELECT {key} FROM {table} WHERE {key} > {} ORDER BY {key} LIMIT {}) w",
                bigint(dialect, &format!("max({key})")),
                p(1),
                p(2)
            ),
            update: format!(
                "UPDATE {table} SET {} WHERE {key} > {} AND {key} <= {} AND ({})",
                config.set,
                p(1),
                p(2),
                config.pending
            ),
            first_pending: format!(
                "SELECT {} FROM {table} WHERE ({})",
                bigint(dialect, &format!("min({key})")),
                config.pending
            ),
        }
    }
}

/// The statement that opens a batch's transaction. PostgreSQL tightens the session's timeouts
/// for this transaction only, the statement timeout capped at `statement_ms`; SQLite takes the
/// write lock at once (`IMMEDIATE`), so a busy file fails fast and the batch is retried.
pub(super) fn begin_batch(
    dialect: Dialect,
    lock_timeout_ms: u64,
    statement_ms: u64,
) -> Cow<'static, str> {
    match dialect {
        Dialect::Postgres => Cow::Owned(format!(
            "BEGIN; SET LOCAL lock_timeout = '{lock_timeout_ms}ms'; SET LOCAL statement_timeout = '{statement_ms}ms'"
        )),
        Dialect::MySql => Cow::Borrowed("START TRANSACTION"),
        Dialect::Sqlite => Cow::Borrowed("BEGIN IMMEDIATE"),
    }
}

/// A batch's statement timeout: the configured one, but no statement may outlive the run's
/// deadline (`left`: the time to it, less the slack), and never under 100 ms.
pub(super) fn statement_budget_ms(statement_timeout_ms: u64, left: Duration) -> u64 {
    statement_timeout_ms.min((left.as_millis() as u64).max(100))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backfill::fixtures::config;

    #[test]
    fn batch_statements_bind_their_bounds_in_each_dialects_placeholders() {
        let config = config();
        let postgres = Statements::new(Dialect::Postgres, &config);
        assert_eq!(
            postgres.bounds,
            "SELECT CAST(max(id) AS BIGINT), count(*) FROM (SELECT id FROM users WHERE id > $1 ORDER BY id LIMIT $2) w"
        );
        assert_eq!(
            postgres.update,
            "UPDATE users SET display_name = name WHERE id > $1 AND id <= $2 AND (display_name IS NULL)"
        );
        assert_eq!(
            postgres.first_pending,
            "SELECT CAST(min(id) AS BIGINT) FROM users WHERE (display_name IS NULL)"
        );
        let mysql = Statements::new(Dialect::MySql, &config);
        assert_eq!(
            mysql.bounds,
            "SELECT CAST(max(id) AS SIGNED), count(*) FROM (SELECT id FROM users WHERE id > ? ORDER BY id LIMIT ?) w"
        );
        assert_eq!(
            mysql.update,
            "UPDATE users SET display_name = name WHERE id > ? AND id <= ? AND (display_name IS NULL)"
        );
        assert_eq!(
            mysql.first_pending,
            "SELECT CAST(min(id) AS SIGNED) FROM users WHERE (display_name IS NULL)"
        );
        let sqlite = Statements::new(Dialect::Sqlite, &config);
        assert!(sqlite.bounds.contains("WHERE id > ? ORDER BY id LIMIT ?"));
        assert!(sqlite.bounds.starts_with("SELECT CAST(max(id) AS BIGINT)"));
    }

    #[test]
    fn a_pending_predicate_with_or_stays_inside_the_key_bounds() {
        let mut config = config();
        config.pending = "a IS NULL OR b IS NULL".to_owned();
        let statements = Statements::new(Dialect::Postgres, &config);
        assert!(
            statements
                .update
                .ends_with("WHERE id > $1 AND id <= $2 AND (a IS NULL OR b IS NULL)"),
            "{}",
            statements.update
        );
    }

    #[test]
    fn casts_are_spelled_per_dialect() {
        assert_eq!(bigint(Dialect::MySql, "x"), "CAST(x AS SIGNED)");
        assert_eq!(bigint(Dialect::Sqlite, "x"), "CAST(x AS BIGINT)");
        assert_eq!(
            double(Dialect::Postgres, "x"),
            "CAST(x AS DOUBLE PRECISION)"
        );
        assert_eq!(double(Dialect::MySql, "x"), "CAST(x AS DOUBLE)");
        assert_eq!(double(Dialect::Sqlite, "x"), "CAST(x AS REAL)");
    }

    #[test]
    fn a_batch_transaction_opens_per_dialect() {
        assert_eq!(
            begin_batch(Dialect::Postgres, 2_000, 750),
            "BEGIN; SET LOCAL lock_timeout = '2000ms'; SET LOCAL statement_timeout = '750ms'"
        );
        assert_eq!(begin_batch(Dialect::MySql, 2_000, 750), "START TRANSACTION");
        assert_eq!(begin_batch(Dialect::Sqlite, 2_000, 750), "BEGIN IMMEDIATE");
    }

    #[test]
    fn the_statement_budget_is_capped_by_the_deadline_but_not_below_100_ms() {
        assert_eq!(
            statement_budget_ms(30_000, Duration::from_secs(3600)),
            30_000
        );
        assert_eq!(
            statement_budget_ms(30_000, Duration::from_millis(1_234)),
            1_234
        );
        assert_eq!(statement_budget_ms(30_000, Duration::ZERO), 100);
        assert_eq!(statement_budget_ms(50, Duration::ZERO), 50);
    }
}
