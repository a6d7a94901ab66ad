//! Inspection of a backfill's target before anything is written: the table exists, its key can
//! be walked (see `key.rs`: unique, NOT NULL, orderable, indexed), and the `set` and `pending`
//! fragments are valid SQL for this table. It also reads how far a pass goes (an integer key's
//! range, or the table's row estimate) for progress, and the first pending key that gates and
//! verification ask about. Each check fails with a message that names what to fix.

use shiftguard_core::backfill::{BackfillConfig, Checkpoint, Key, KeyRange, remaining_estimate};

use super::key::{ColumnInfo, IndexInfo, KeyKind, KeyPlan, plan_key};
use super::statements::{Statement, Statements, bigint};
use super::{BackfillError, Runner};
use crate::connection::{Bind, Cell, Connection, Kind};
use crate::error::SqlError;
use crate::url::{DatabaseUrl, Dialect};

/// How far a pass goes, for progress and the remaining estimate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Extent {
    /// A single integer key's smallest and largest value: the cursor's place between them.
    Keys { min: i64, max: i64 },
    /// Any other key: the table's rows by the planner's statistics (PostgreSQL, MySQL) or a
    /// count (SQLite), less the rows updated so far. An estimate.
    Rows(u64),
}

impl Extent {
    /// The number of key positions in the range, as a row estimate (exact for dense keys).
    fn span(self) -> u64 {
        match self {
            Extent::Keys { min, max } => (max.saturating_sub(min).saturating_add(1)).max(0) as u64,
            Extent::Rows(rows) => rows,
        }
    }

    /// Rows left in this pass after `checkpoint`'s cursor, estimated.
    pub fn remaining(self, checkpoint: &Checkpoint) -> u64 {
        match (self, &checkpoint.cursor) {
            (_, None) => self.span(),
            (Extent::Keys { min, max }, Some(cursor)) => match cursor.as_int() {
                Some(cursor) => remaining_estimate(min, max, Some(cursor), self.span()),
                None => self.span(),
            },
            (Extent::Rows(rows), Some(_)) => rows.saturating_sub(checkpoint.rows_updated),
        }
    }

    /// Share of the pass covered, 0-100.
    pub fn percent(self, checkpoint: &Checkpoint) -> f64 {
        let left = self.remaining(checkpoint) as f64;
        (100.0 * (1.0 - left / self.span().max(1) as f64)).clamp(0.0, 100.0)
    }

    /// Whether the figures are estimates from statistics rather than the key range.
    pub fn estimated(self) -> bool {
        matches!(self, Extent::Rows(_))
    }
}

/// What the inspection found: how to walk the key, and how far a pass goes.
#[derive(Debug)]
pub(super) struct Inspected {
    pub statements: Statements,
    pub extent: Extent,
}

/// `schema.table` split for the catalogues that take them apart.
fn split_table(table: &str) -> (Option<String>, &str) {
    match table.split_once('.') {
        Some((schema, bare)) => (Some(schema.to_owned()), bare),
        None => (None, table),
    }
}

/// The catalogue query listing the table's columns: name, type, nullable (1) or not (0).
fn columns_query(dialect: Dialect, table: &str) -> (&'static str, Vec<Bind>) {
    let (schema, bare_table) = split_table(table);
    let text = |v: &str| Bind::Text(Some(v.to_owned()));
    match dialect {
        Dialect::Postgres => (
            "SELECT CAST(a.attname AS TEXT), format_type(a.atttypid, a.atttypmod), \
             CAST(CASE WHEN a.attnotnull THEN 0 ELSE 1 END AS BIGINT) \
             FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 \
             AND NOT a.attisdropped",
            vec![text(table)],
        ),
        Dialect::MySql => (
            // DATA_TYPE is a binary string on MySQL 8: cast it to text.
            "SELECT CAST(c.COLUMN_NAME AS CHAR), CAST(c.DATA_TYPE AS CHAR), \
             CAST(CASE WHEN c.IS_NULLABLE = 'NO' THEN 0 ELSE 1 END AS SIGNED) \
             FROM information_schema.COLUMNS c WHERE c.TABLE_SCHEMA = COALESCE(?, DATABASE()) \
             AND c.TABLE_NAME = ?",
            vec![Bind::Text(schema), text(bare_table)],
        ),
        Dialect::Sqlite => (
            // A lone INTEGER PRIMARY KEY is the rowid: never NULL. (Other primary key columns
            // may hold NULL in SQLite unless declared NOT NULL.)
            "SELECT c.name, c.type, CAST(CASE WHEN c.\"notnull\" = 1 OR (c.pk = 1 \
             AND upper(c.type) = 'INTEGER' AND (SELECT count(*) FROM pragma_table_info(?1) \
             WHERE pk > 0) = 1) THEN 0 ELSE 1 END AS BIGINT) FROM pragma_table_info(?1) c",
            vec![text(bare_table)],
        ),
    }
}

/// The catalogue query listing the table's indexes: unique (1/0), usable (1/0), the key columns
/// in order (comma-separated), and the same with `-` where the index orders a column otherwise
/// than the column compares.
fn indexes_query(dialect: Dialect, table: &str) -> (&'static str, Vec<Bind>) {
    let (schema, bare_table) = split_table(table);
    let text = |v: &str| Bind::Text(Some(v.to_owned()));
    match dialect {
        Dialect::Postgres => (
            "SELECT CAST(CASE WHEN i.indisunique THEN 1 ELSE 0 END AS BIGINT), \
             CAST(CASE WHEN i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL \
             AND am.amname = 'btree' THEN 1 ELSE 0 END AS BIGINT), \
             (SELECT string_agg(CAST(a.attname AS TEXT), ',' ORDER BY k.n) \
              FROM generate_series(0, i.indnkeyatts - 1) AS k(n) \
              JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[k.n]), \
             (SELECT string_agg(CASE WHEN i.indcollation[k.n] = a.attcollation \
              AND (i.indoption[k.n] & 1) = 0 THEN CAST(a.attname AS TEXT) ELSE '-' END, ',' ORDER BY k.n) \
              FROM generate_series(0, i.indnkeyatts - 1) AS k(n) \
              JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[k.n]) \
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam \
             WHERE i.indrelid = to_regclass($1)",
            vec![text(table)],
        ),
        Dialect::MySql => (
            "SELECT CAST(CASE WHEN MIN(s.NON_UNIQUE) = 0 THEN 1 ELSE 0 END AS SIGNED), \
             CAST(CASE WHEN COUNT(*) = COUNT(s.COLUMN_NAME) AND MAX(s.INDEX_TYPE) = 'BTREE' \
             THEN 1 ELSE 0 END AS SIGNED), \
             CAST(GROUP_CONCAT(s.COLUMN_NAME ORDER BY s.SEQ_IN_INDEX SEPARATOR ',') AS CHAR), \
             CAST(GROUP_CONCAT(s.COLUMN_NAME ORDER BY s.SEQ_IN_INDEX SEPARATOR ',') AS CHAR) \
             FROM information_schema.STATISTICS s WHERE s.TABLE_SCHEMA = COALESCE(?, DATABASE()) \
             AND s.TABLE_NAME = ? GROUP BY s.INDEX_NAME",
            vec![Bind::Text(schema), text(bare_table)],
        ),
        Dialect::Sqlite => (
            // The rowid (a lone INTEGER PRIMARY KEY) is unique and ordered without an index.
            "SELECT CAST(il.\"unique\" AS BIGINT), CAST(CASE WHEN il.partial = 0 AND NOT EXISTS \
             (SELECT 1 FROM pragma_index_info(il.name) WHERE name IS NULL) THEN 1 ELSE 0 END AS BIGINT), \
             (SELECT group_concat(name, ',') FROM (SELECT name FROM pragma_index_info(il.name) ORDER BY seqno)), \
             (SELECT group_concat(name, ',') FROM (SELECT name FROM pragma_index_info(il.name) ORDER BY seqno)) \
             FROM pragma_index_list(?1) il \
             UNION ALL SELECT 1, 1, c.name, c.name FROM pragma_table_info(?1) c WHERE c.pk = 1 \
             AND upper(c.type) = 'INTEGER' AND (SELECT count(*) FROM pragma_table_info(?1) WHERE pk > 0) = 1",
            vec![text(bare_table)],
        ),
    }
}

/// The query of the table's row estimate: statistics on the servers, a count on SQLite.
pub(super) fn rows_query(dialect: Dialect, table: &str) -> (String, Vec<Bind>) {
    let (schema, bare_table) = split_table(table);
    match dialect {
        Dialect::Postgres => (
            "SELECT CAST(GREATEST(c.reltuples, 0) AS BIGINT) FROM pg_class c WHERE c.oid = to_regclass($1)".to_owned(),
            vec![Bind::Text(Some(table.to_owned()))],
        ),
        Dialect::MySql => (
            "SELECT CAST(COALESCE(t.TABLE_ROWS, 0) AS SIGNED) FROM information_schema.TABLES t \
             WHERE t.TABLE_SCHEMA = COALESCE(?, DATABASE()) AND t.TABLE_NAME = ?"
                .to_owned(),
            vec![Bind::Text(schema), Bind::Text(Some(bare_table.to_owned()))],
        ),
        Dialect::Sqlite => (format!("SELECT count(*) FROM {table}"), Vec::new()),
    }
}

fn column_info(row: &[Cell]) -> ColumnInfo {
    ColumnInfo {
        name: row[0].text().unwrap_or_default().to_owned(),
        sql_type: row[1].text().unwrap_or_default().to_owned(),
        // Unknown answers count against the key.
        nullable: row[2].int() != Some(0),
    }
}

fn index_info(row: &[Cell]) -> IndexInfo {
    let list = |cell: &Cell| -> Vec<String> {
        cell.text()
            .map(|t| t.split(',').map(str::to_owned).collect())
            .unwrap_or_default()
    };
    IndexInfo {
        unique: row[0].int() == Some(1),
        usable: row[1].int() == Some(1),
        columns: list(&row[2]),
        walk: list(&row[3]),
    }
}

/// Reads the catalogue and plans the key: `Ok(Err(problem))` when the key cannot be walked,
/// or the table or a column does not exist.
pub(crate) async fn load_key_plan(
    connection: &mut Connection,
    config: &BackfillConfig,
) -> Result<Result<KeyPlan, String>, sqlx::Error> {
    let (dialect, table) = (connection.dialect(), &config.table);
    let (sql, binds) = columns_query(dialect, table);
    let columns: Vec<ColumnInfo> = connection
        .fetch_rows(sql, &binds, &[Kind::Text, Kind::Text, Kind::Int])
        .await?
        .iter()
        .map(|row| column_info(row))
        .collect();
    if columns.is_empty() {
        return Ok(Err(format!("table {table} does not exist")));
    }
    let (sql, binds) = indexes_query(dialect, table);
    let indexes: Vec<IndexInfo> = connection
        .fetch_rows(sql, &binds, &[Kind::Int, Kind::Int, Kind::Text, Kind::Text])
        .await?
        .iter()
        .map(|row| index_info(row))
        .collect();
    Ok(plan_key(dialect, table, &config.key, &columns, &indexes))
}

/// Runs a statement that returns at most one key.
pub(super) async fn fetch_key(
    connection: &mut Connection,
    statements: &Statements,
    statement: &Statement,
    binds: &[Bind],
) -> Result<Option<Key>, sqlx::Error> {
    let row = connection
        .fetch_row(&statement.sql, binds, &statements.shape(&[]))
        .await?;
    Ok(row.and_then(|cells| statements.plan.key_from(&cells)))
}

impl Runner<'_> {
    /// Checks that the table exists, its key can be walked, and `pending` and `set` are valid
    /// SQL for this table (by running the update on no rows and rolling back); renders the
    /// statements for the key found.
    pub(super) async fn inspect(
        &self,
        connection: &mut Connection,
    ) -> Result<Inspected, BackfillError> {
        self.check_signal_settings(connection.dialect())?;
        let plan = load_key_plan(connection, self.config)
            .await
            .map_err(|e| {
                self.target_error(format!(
                    "cannot inspect table {}: {}",
                    self.config.table,
                    self.sql_error(&e)
                ))
            })?
            .map_err(|problem| self.target_error(problem))?;
        self.check_fragments(connection).await?;
        let extent = self.extent(connection, &plan).await?;
        Ok(Inspected {
            statements: Statements::new(plan, self.config, &self.range),
            extent,
        })
    }

    /// Validates the SQL fragments without writing: the update on no rows, rolled back.
    async fn check_fragments(&self, connection: &mut Connection) -> Result<(), BackfillError> {
        let dry_run = format!(
            "UPDATE {} SET {}\nWHERE ({}\n) AND 1 = 0",
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

    /// How far a pass goes: a single integer key's range, else the table's row estimate.
    async fn extent(
        &self,
        connection: &mut Connection,
        plan: &KeyPlan,
    ) -> Result<Extent, BackfillError> {
        let dialect = connection.dialect();
        let table = &self.config.table;
        let read = |row: Option<Vec<Cell>>, i: usize| {
            row.as_ref()
                .and_then(|r| r.get(i))
                .and_then(Cell::int)
                .unwrap_or(0)
        };
        let failed = |e: sqlx::Error| self.target_error(self.sql_error(&e));
        if let [column] = plan.columns.as_slice()
            && column.kind == KeyKind::Int
        {
            let key = &column.name;
            let sql = format!(
                "SELECT {}, {} FROM {table}",
                bigint(dialect, &format!("min({key})")),
                bigint(dialect, &format!("max({key})"))
            );
            let row = connection
                .fetch_row(&sql, &[], &[Kind::Int, Kind::Int])
                .await
                .map_err(failed)?;
            // A shard's extent is its part of the range.
            let (mut min, mut max) = (read(row.clone(), 0), read(row, 1));
            if let Some(after) = self.range.after.as_ref().and_then(Key::as_int) {
                min = min.max(after.saturating_add(1));
            }
            if let Some(until) = self.range.until.as_ref().and_then(Key::as_int) {
                max = max.min(until);
            }
            return Ok(Extent::Keys { min, max });
        }
        let (sql, binds) = rows_query(dialect, table);
        let row = connection
            .fetch_row(&sql, &binds, &[Kind::Int])
            .await
            .map_err(failed)?;
        Ok(Extent::Rows(read(row, 0).max(0) as u64))
    }

    /// The smallest key that matches `pending` now, for verification and status.
    pub(super) async fn pending_from(
        &self,
        connection: &mut Connection,
        statements: &Statements,
    ) -> Result<Option<Key>, BackfillError> {
        first_pending(connection, statements)
            .await
            .map_err(|e| self.target_error(self.sql_error(&e)))
    }

    /// The largest key before `key` (`None`: `key` is the first).
    pub(super) async fn key_before(
        &self,
        connection: &mut Connection,
        statements: &Statements,
        key: &Key,
    ) -> Result<Option<Key>, BackfillError> {
        let binds = statements.binds(&statements.before, None, Some(key), 0);
        fetch_key(connection, statements, &statements.before, &binds)
            .await
            .map_err(|e| self.target_error(self.sql_error(&e)))
    }
}

/// The first key that matches a backfill's `pending` predicate now (`None`: nothing pending),
/// for gates that require a backfill to be complete. Read-only; a key that cannot be walked is
/// an error (the backfill could never complete).
pub async fn first_pending_key(
    connection: &mut Connection,
    url: &DatabaseUrl,
    config: &BackfillConfig,
) -> Result<Option<Key>, SqlError> {
    let failed = |reason: String| SqlError::Query {
        target: url.target().to_owned(),
        reason: format!("backfill {}: {reason}", config.name),
    };
    let redacted = |e: sqlx::Error| failed(url.redact(&e.to_string()));
    let plan = load_key_plan(connection, config)
        .await
        .map_err(redacted)?
        .map_err(failed)?;
    let statements = Statements::new(plan, config, &KeyRange::default());
    first_pending(connection, &statements)
        .await
        .map_err(redacted)
}

/// The smallest pending key within the statements' range: first whether any row is pending at
/// all (the common answer after a pass is none), then, only if so, the smallest.
async fn first_pending(
    connection: &mut Connection,
    statements: &Statements,
) -> Result<Option<Key>, sqlx::Error> {
    let binds = statements.binds(&statements.any_pending, None, None, 0);
    if fetch_key(connection, statements, &statements.any_pending, &binds)
        .await?
        .is_none()
    {
        return Ok(None);
    }
    let binds = statements.binds(&statements.first_pending, None, None, 0);
    fetch_key(connection, statements, &statements.first_pending, &binds).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(cursor: Option<Key>, rows_updated: u64) -> Checkpoint {
        let mut checkpoint = Checkpoint::new("b", 0);
        checkpoint.cursor = cursor;
        checkpoint.rows_updated = rows_updated;
        checkpoint
    }

    #[test]
    fn an_integer_keys_range_estimates_what_is_left() {
        let range = Extent::Keys { min: 1, max: 1_000 };
        assert_eq!(range.span(), 1_000);
        assert_eq!(range.remaining(&at(None, 0)), 1_000);
        // Half the range left, of 1,000 positions (the estimate rounds half up).
        assert_eq!(range.remaining(&at(Some(Key::int(500)), 0)), 501);
        assert_eq!(range.remaining(&at(Some(Key::int(1_000)), 0)), 0);
        assert_eq!(range.percent(&at(Some(Key::int(1_000)), 0)), 100.0);
        assert!(!range.estimated());
        // An empty table reads as min = max = 0; extreme keys do not overflow.
        assert_eq!(Extent::Keys { min: 0, max: 0 }.span(), 1);
        let widest = Extent::Keys {
            min: i64::MIN,
            max: i64::MAX,
        };
        assert_eq!(widest.span(), i64::MAX as u64);
        assert_eq!(Extent::Keys { min: 5, max: 1 }.span(), 0);
        // A cursor beyond an emptied table's range stays within 0-100.
        let empty = Extent::Keys { min: 0, max: 0 };
        assert_eq!(empty.percent(&at(Some(Key::int(7)), 0)), 100.0);
    }

    #[test]
    fn other_keys_estimate_from_the_row_count_less_the_rows_done() {
        let rows = Extent::Rows(1_000);
        assert!(rows.estimated());
        let text = Key::new(vec![shiftguard_core::backfill::KeyValue::Text("m".into())]);
        assert_eq!(rows.remaining(&at(None, 0)), 1_000);
        assert_eq!(rows.remaining(&at(text.clone(), 250)), 750);
        assert_eq!(rows.percent(&at(text.clone(), 250)), 25.0);
        // Statistics lag behind: never below zero, never above 100%.
        assert_eq!(rows.remaining(&at(text.clone(), 5_000)), 0);
        assert_eq!(rows.percent(&at(text, 5_000)), 100.0);
    }

    #[test]
    fn mysql_looks_the_table_up_in_the_named_schema_or_the_current_one() {
        let text = |v: &str| Bind::Text(Some(v.to_owned()));
        let (_, binds) = columns_query(Dialect::MySql, "crm.users");
        assert_eq!(binds, [text("crm"), text("users")]);
        let (_, binds) = indexes_query(Dialect::MySql, "users");
        assert_eq!(binds, [Bind::Text(None), text("users")]);
        // PostgreSQL resolves the qualified name itself; SQLite's pragmas take the bare name.
        let (sql, binds) = columns_query(Dialect::Postgres, "crm.users");
        assert!(sql.contains("to_regclass($1)"));
        assert_eq!(binds, [text("crm.users")]);
        let (_, binds) = indexes_query(Dialect::Sqlite, "main.users");
        assert_eq!(binds, [text("users")]);
    }

    #[test]
    fn catalogue_rows_read_into_columns_and_indexes() {
        let column = column_info(&[
            Cell::Text(Some("id".into())),
            Cell::Text(Some("uuid".into())),
            Cell::Int(None),
        ]);
        assert!(column.nullable, "an unknown answer counts against the key");
        let index = index_info(&[
            Cell::Int(Some(1)),
            Cell::Int(Some(1)),
            Cell::Text(Some("tenant,id".into())),
            Cell::Text(Some("-,id".into())),
        ]);
        assert_eq!(index.columns, ["tenant", "id"]);
        assert_eq!(index.walk, ["-", "id"]);
        assert!(index.unique && index.usable);
    }
}
