//! Inspection of a backfill's target before anything is written: the table exists, the key is a
//! unique, NOT NULL integer column (what a keyset cursor needs to neither skip nor repeat rows),
//! and the `set` and `pending` fragments are valid SQL for this table. It also reads the key
//! range the progress estimates use, and the first pending key that gates and verification ask
//! about. Each check fails with a message that names what to fix.

use shiftguard_core::backfill::BackfillConfig;
use shiftguard_core::backfill::remaining_estimate;

use super::statements::{Statements, bigint};
use super::{BackfillError, Runner};
use crate::connection::{Bind, Cell, Connection, Kind};
use crate::error::SqlError;
use crate::url::{DatabaseUrl, Dialect};

/// What the run learned about the target table: its smallest and largest key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct KeyRange {
    pub min: i64,
    pub max: i64,
}

impl KeyRange {
    /// The number of key positions in the range, as a row estimate (exact for dense keys).
    pub fn span(self) -> u64 {
        (self.max.saturating_sub(self.min).saturating_add(1)).max(0) as u64
    }

    /// Rows left after `cursor`, estimated from the range.
    pub fn remaining(self, cursor: Option<i64>) -> u64 {
        remaining_estimate(self.min, self.max, cursor, self.span())
    }
}

/// The catalogue query that describes the key column: its type, whether a unique index covers
/// it alone, and whether it can be NULL (1) or not (0); with its parameters.
fn key_column_query(dialect: Dialect, table: &str, key: &str) -> (&'static str, Vec<Bind>) {
    let (schema, bare_table) = match table.split_once('.') {
        Some((schema, bare)) => (Some(schema.to_owned()), bare),
        None => (None, table),
    };
    let text = |v: &str| Bind::Text(Some(v.to_owned()));
    match dialect {
        Dialect::Postgres => (
            "SELECT format_type(a.atttypid, NULL), CAST(CASE WHEN EXISTS (SELECT 1 FROM pg_index i \
             WHERE i.indrelid = a.attrelid AND i.indisunique AND i.indisvalid AND i.indnkeyatts = 1 \
             AND i.indkey[0] = a.attnum AND i.indpred IS NULL) THEN 1 ELSE 0 END AS BIGINT), \
             CAST(CASE WHEN a.attnotnull THEN 0 ELSE 1 END AS BIGINT) \
             FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attname = $2 \
             AND NOT a.attisdropped",
            vec![text(table), text(key)],
        ),
        Dialect::MySql => (
            // DATA_TYPE is a binary string on MySQL 8: cast it to text.
            "SELECT CAST(c.DATA_TYPE AS CHAR), CAST((SELECT COUNT(*) FROM information_schema.STATISTICS s \
             WHERE s.TABLE_SCHEMA = c.TABLE_SCHEMA AND s.TABLE_NAME = c.TABLE_NAME \
             AND s.COLUMN_NAME = c.COLUMN_NAME AND s.NON_UNIQUE = 0 AND s.SEQ_IN_INDEX = 1 \
             AND NOT EXISTS (SELECT 1 FROM information_schema.STATISTICS s2 \
             WHERE s2.TABLE_SCHEMA = s.TABLE_SCHEMA AND s2.TABLE_NAME = s.TABLE_NAME \
             AND s2.INDEX_NAME = s.INDEX_NAME AND s2.SEQ_IN_INDEX = 2)) AS SIGNED), \
             CAST(CASE WHEN c.IS_NULLABLE = 'NO' THEN 0 ELSE 1 END AS SIGNED) \
             FROM information_schema.COLUMNS c WHERE c.TABLE_SCHEMA = COALESCE(?, DATABASE()) \
             AND c.TABLE_NAME = ? AND c.COLUMN_NAME = ?",
            vec![Bind::Text(schema), text(bare_table), text(key)],
        ),
        Dialect::Sqlite => (
            "SELECT c.type, CAST(CASE WHEN (c.pk = 1 AND (SELECT count(*) FROM pragma_table_info(?1) \
             WHERE pk > 0) = 1) OR EXISTS (SELECT 1 FROM pragma_index_list(?1) il \
             WHERE il.\"unique\" = 1 AND il.partial = 0 AND (SELECT count(*) FROM pragma_index_info(il.name)) = 1 \
             AND (SELECT name FROM pragma_index_info(il.name)) = ?2) THEN 1 ELSE 0 END AS BIGINT), \
             CAST(CASE WHEN c.\"notnull\" = 1 OR (c.pk = 1 AND upper(c.type) = 'INTEGER') THEN 0 ELSE 1 END AS BIGINT) \
             FROM pragma_table_info(?1) c WHERE c.name = ?2",
            vec![text(bare_table), text(key)],
        ),
    }
}

/// Whether a column type (lower case) is an integer: SQLite's affinity rule (the name contains
/// `int`), or one of the server dialects' integer types, with or without modifiers.
fn is_integer_type(dialect: Dialect, column_type: &str) -> bool {
    match dialect {
        Dialect::Sqlite => column_type.contains("int"),
        _ => [
            "smallint",
            "integer",
            "bigint",
            "int",
            "tinyint",
            "mediumint",
        ]
        .iter()
        .any(|t| column_type == *t || column_type.starts_with(&format!("{t} "))),
    }
}

/// Checks the key column's description (type, unique, nullable); the problem if it does not fit.
fn check_key_column(dialect: Dialect, table: &str, key: &str, row: &[Cell]) -> Result<(), String> {
    let column_type = row[0].text().unwrap_or_default().to_ascii_lowercase();
    if !is_integer_type(dialect, &column_type) {
        return Err(format!(
            "key {table}.{key} is of type {column_type}: the keyset cursor needs an integer key"
        ));
    }
    if row[2].int() != Some(0) {
        return Err(format!(
            "key {table}.{key} can be NULL: rows with a NULL key would never be backfilled (make it NOT NULL)"
        ));
    }
    if row[1].int() != Some(1) {
        return Err(format!(
            "key {table}.{key} is not unique (no primary key or unique index on it alone): batches could skip or repeat rows"
        ));
    }
    Ok(())
}

impl Runner<'_> {
    /// Checks that the table exists, the key is a unique integer column, and `pending` and `set`
    /// are valid SQL for this table (by running the update on no rows and rolling back).
    pub(super) async fn inspect(
        &self,
        connection: &mut Connection,
    ) -> Result<KeyRange, BackfillError> {
        self.check_signal_settings(connection.dialect())?;
        self.check_key(connection).await?;
        self.check_fragments(connection).await?;
        self.key_range(connection).await
    }

    async fn check_key(&self, connection: &mut Connection) -> Result<(), BackfillError> {
        let (table, key) = (&self.config.table, &self.config.key);
        let dialect = connection.dialect();
        let (sql, binds) = key_column_query(dialect, table, key);
        let row = connection
            .fetch_row(sql, &binds, &[Kind::Text, Kind::Int, Kind::Int])
            .await
            .map_err(|e| {
                self.target_error(format!(
                    "cannot inspect table {table}: {}",
                    self.sql_error(&e)
                ))
            })?;
        let Some(row) = row else {
            // Tell a missing table from a missing column.
            let probe = format!("SELECT 1 FROM {table} WHERE 1 = 0");
            return Err(match connection.execute(&probe, &[]).await {
                Err(_) => self.target_error(format!("table {table} does not exist")),
                Ok(_) => self.target_error(format!("table {table} has no column {key}")),
            });
        };
        check_key_column(dialect, table, key, &row).map_err(|problem| self.target_error(problem))
    }

    /// Validates the SQL fragments without writing: the update on no rows, rolled back.
    async fn check_fragments(&self, connection: &mut Connection) -> Result<(), BackfillError> {
        let dry_run = format!(
            "UPDATE {} SET {} WHERE ({}) AND 1 = 0",
            self.config.table, self.config.set, self.config.pending
        );
        connection
            .raw("BEGIN")
            .await
            .map_err(|e| self.target_error(self.sql_error(&e)))?;
        let checked = connection.execute(&dry_run, &[]).await;
        let _ = connection.raw("ROLLBACK").await;
        checked.map_err(|e| {
            self.target_error(format!(
                "`set` or `pending` is not valid here: {}",
                self.sql_error(&e)
            ))
        })?;
        Ok(())
    }

    async fn key_range(&self, connection: &mut Connection) -> Result<KeyRange, BackfillError> {
        let (table, key) = (&self.config.table, &self.config.key);
        let dialect = connection.dialect();
        let range_sql = format!(
            "SELECT {}, {} FROM {table}",
            bigint(dialect, &format!("min({key})")),
            bigint(dialect, &format!("max({key})"))
        );
        let range = connection
            .fetch_row(&range_sql, &[], &[Kind::Int, Kind::Int])
            .await
            .map_err(|e| self.target_error(self.sql_error(&e)))?
            .unwrap_or_default();
        Ok(KeyRange {
            min: range.first().and_then(|c| c.int()).unwrap_or(0),
            max: range.get(1).and_then(|c| c.int()).unwrap_or(0),
        })
    }

    /// The smallest key that matches `pending` now, for verification and status.
    pub(super) async fn pending_from(
        &self,
        connection: &mut Connection,
        statements: &Statements,
    ) -> Result<Option<i64>, BackfillError> {
        Ok(connection
            .fetch_row(&statements.first_pending, &[], &[Kind::Int])
            .await
            .map_err(|e| self.target_error(self.sql_error(&e)))?
            .and_then(|row| row[0].int()))
    }
}

/// The first key that matches a backfill's `pending` predicate now (`None`: nothing pending),
/// for gates that require a backfill to be complete. Read-only.
pub async fn first_pending_key(
    connection: &mut Connection,
    url: &DatabaseUrl,
    config: &BackfillConfig,
) -> Result<Option<i64>, SqlError> {
    let statements = Statements::new(connection.dialect(), config);
    let row = connection
        .fetch_row(&statements.first_pending, &[], &[Kind::Int])
        .await
        .map_err(|e| SqlError::Query {
            target: url.target().to_owned(),
            reason: format!("backfill {}: {}", config.name, url.redact(&e.to_string())),
        })?;
    Ok(row.and_then(|r| r[0].int()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(column_type: &str, unique: i64, nullable: i64) -> Vec<Cell> {
        vec![
            Cell::Text(Some(column_type.to_owned())),
            Cell::Int(Some(unique)),
            Cell::Int(Some(nullable)),
        ]
    }

    #[test]
    fn integer_keys_are_recognised_per_dialect() {
        for t in [
            "int",
            "bigint",
            "int unsigned",
            "bigint unsigned",
            "smallint",
        ] {
            assert!(is_integer_type(Dialect::MySql, t), "{t}");
        }
        for t in ["varchar", "point", "uuid", "bigserial", "interval"] {
            assert!(!is_integer_type(Dialect::Postgres, t), "{t}");
        }
        // SQLite's affinity: any type name containing INT.
        assert!(is_integer_type(Dialect::Sqlite, "unsigned big int"));
        assert!(!is_integer_type(Dialect::Sqlite, "text"));
    }

    #[test]
    fn a_key_must_be_an_integer_not_null_and_unique() {
        let check = |row: &[Cell]| check_key_column(Dialect::Postgres, "users", "id", row);
        assert_eq!(check(&row("BIGINT", 1, 0)), Ok(()));
        assert_eq!(
            check(&row("text", 1, 0)),
            Err("key users.id is of type text: the keyset cursor needs an integer key".to_owned())
        );
        assert!(
            check(&row("integer", 1, 1))
                .unwrap_err()
                .contains("can be NULL")
        );
        assert!(
            check(&row("integer", 0, 0))
                .unwrap_err()
                .contains("is not unique")
        );
        // Unknown answers count against the key.
        let unknown = [
            Cell::Text(Some("integer".to_owned())),
            Cell::Int(None),
            Cell::Int(None),
        ];
        assert!(check(&unknown).unwrap_err().contains("can be NULL"));
    }

    #[test]
    fn mysql_looks_the_key_up_in_the_named_schema_or_the_current_one() {
        let (_, binds) = key_column_query(Dialect::MySql, "crm.users", "id");
        let text = |v: &str| Bind::Text(Some(v.to_owned()));
        assert_eq!(binds, [text("crm"), text("users"), text("id")]);
        let (_, binds) = key_column_query(Dialect::MySql, "users", "id");
        assert_eq!(binds, [Bind::Text(None), text("users"), text("id")]);
        // PostgreSQL resolves the qualified name itself; SQLite's pragmas take the bare name.
        let (sql, binds) = key_column_query(Dialect::Postgres, "crm.users", "id");
        assert!(sql.contains("to_regclass($1)"));
        assert_eq!(binds, [text("crm.users"), text("id")]);
        let (_, binds) = key_column_query(Dialect::Sqlite, "main.users", "id");
        assert_eq!(binds, [text("users"), text("id")]);
    }

    #[test]
    fn the_key_range_estimates_what_is_left() {
        let range = KeyRange { min: 1, max: 1_000 };
        assert_eq!(range.span(), 1_000);
        assert_eq!(range.remaining(None), 1_000);
        // Half the range left, of 1,000 positions (the estimate rounds half up).
        assert_eq!(range.remaining(Some(500)), 501);
        assert_eq!(range.remaining(Some(1_000)), 0);
        // An empty table reads as min = max = 0; extreme keys do not overflow.
        assert_eq!(KeyRange { min: 0, max: 0 }.span(), 1);
        assert_eq!(
            KeyRange {
                min: i64::MIN,
                max: i64::MAX
            }
            .span(),
            i64::MAX as u64
        );
        assert_eq!(KeyRange { min: 5, max: 1 }.span(), 0);
    }
}
