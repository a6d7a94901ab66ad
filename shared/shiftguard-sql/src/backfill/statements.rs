//! The SQL text of one backfill, per dialect. The batch statements are rendered once per run
//! (not once per batch), so the hot path only binds parameters; the casts that differ between
//! dialects live here so every query reads an integer or a float the same way everywhere.

use std::borrow::Cow;
use std::time::Duration;

use shiftguard_core::backfill::{BackfillConfig, Key, KeyRange};

use super::key::{Compare, KeyPlan};
use crate::checkpoint::placeholder;
use crate::connection::{Bind, Kind};
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

/// A parameter of a statement: a value of the lower or upper bound key, of a shard's range's
/// ends, or the batch size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Lower(usize),
    Upper(usize),
    RangeAfter(usize),
    RangeUntil(usize),
    Size,
}

/// One statement and what its parameters bind, in order.
#[derive(Debug)]
pub(super) struct Statement {
    pub sql: String,
    slots: Vec<Slot>,
}

impl Statement {
    /// The parameters: `lower` and `upper` bound keys (those the statement compares with), the
    /// batch size, and the shard's `range`.
    pub fn binds(
        &self,
        lower: Option<&Key>,
        upper: Option<&Key>,
        size: u64,
        range: &KeyRange,
    ) -> Vec<Bind> {
        let value = |key: Option<&Key>, i: usize| {
            key.and_then(|k| KeyPlan::bind(k).nth(i))
                .unwrap_or(Bind::Int(None))
        };
        self.slots
            .iter()
            .map(|slot| match *slot {
                Slot::Lower(i) => value(lower, i),
                Slot::Upper(i) => value(upper, i),
                Slot::RangeAfter(i) => value(range.after.as_ref(), i),
                Slot::RangeUntil(i) => value(range.until.as_ref(), i),
                Slot::Size => Bind::Int(Some(size.min(i64::MAX as u64) as i64)),
            })
            .collect()
    }
}

/// Writes one statement's SQL, numbering its placeholders and noting what each binds.
struct Writer<'p> {
    plan: &'p KeyPlan,
    slots: Vec<Slot>,
}

impl<'p> Writer<'p> {
    fn new(plan: &'p KeyPlan) -> Self {
        Writer {
            plan,
            slots: Vec::new(),
        }
    }

    /// The key compared with the lower (`upper == false`) or upper bound.
    fn compare(&mut self, compare: Compare, upper: bool) -> String {
        self.compare_with(compare, if upper { Slot::Upper } else { Slot::Lower })
    }

    /// The key compared with the key whose values `slot` binds.
    fn compare_with(&mut self, compare: Compare, slot: fn(usize) -> Slot) -> String {
        let dialect = self.plan.dialect;
        let mut n = self.slots.len();
        let sql = self.plan.compare(compare, &mut || {
            n += 1;
            placeholder(dialect, n)
        });
        for i in self.plan.compare_slots() {
            self.slots.push(slot(i));
        }
        sql
    }

    /// The conditions that keep the key inside `range` (none when it is whole).
    fn within(&mut self, range: &KeyRange) -> Vec<String> {
        let mut conditions = Vec::new();
        if range.after.is_some() {
            conditions.push(self.compare_with(Compare::After, Slot::RangeAfter));
        }
        if range.until.is_some() {
            conditions.push(self.compare_with(Compare::AtMost, Slot::RangeUntil));
        }
        conditions
    }

    fn size(&mut self) -> String {
        self.slots.push(Slot::Size);
        placeholder(self.plan.dialect, self.slots.len())
    }

    fn finish(self, sql: String) -> Statement {
        Statement {
            sql,
            slots: self.slots,
        }
    }
}

/// The statements of one backfill, rendered once per run for its key and dialect.
#[derive(Debug)]
pub(super) struct Statements {
    pub plan: KeyPlan,
    /// The keys walked: all, or a shard's. Every statement stays inside it.
    pub range: KeyRange,
    /// The next batch's last key and row count, from the start of the table or after the
    /// cursor: the k-th key is found on the key's index, without touching other rows.
    bounds_first: Statement,
    bounds_after: Statement,
    /// The batch's update: keys up to the batch's last (after the cursor) that are pending.
    update_first: Statement,
    update_after: Statement,
    /// The smallest key still pending (no row when none).
    pub first_pending: Statement,
    /// Any key still pending, in no order: where nothing is pending, a scan of the table in
    /// its own order (after a pass, often many times faster than walking the key's index
    /// past every row version the pass left).
    pub any_pending: Statement,
    /// The largest key before a given one (where a new pass starts).
    pub before: Statement,
    /// The key at a row offset (bound as the size) on the key's index: shard boundaries.
    pub nth: Statement,
}

impl Statements {
    pub fn new(plan: KeyPlan, config: &BackfillConfig, range: &KeyRange) -> Self {
        let table = &config.table;
        let (keys, read, descending) = (plan.list(""), plan.read_list(), plan.list(" DESC"));
        // The batch's update needs no range: its bounds come from `bounds`, inside the range.
        let bounds = |after: bool| {
            let mut w = Writer::new(&plan);
            let mut conditions = Vec::new();
            if after {
                conditions.push(w.compare(Compare::After, false));
            }
            conditions.extend(w.within(range));
            let from = if conditions.is_empty() {
                String::new()
            } else {
                format!(" WHERE {}", conditions.join(" AND "))
            };
            let size = w.size();
            w.finish(format!(
                "SELECT {read}, count(*) OVER () FROM (SELECT {keys} FROM {table}{from} ORDER BY {keys} LIMIT {size}) w ORDER BY {descending} LIMIT 1"
            ))
        };
        let update = |after: bool| {
            let mut w = Writer::new(&plan);
            let from = if after {
                format!("{} AND ", w.compare(Compare::After, false))
            } else {
                String::new()
            };
            let to = w.compare(Compare::AtMost, true);
            w.finish(format!(
                "UPDATE {table} SET {}\nWHERE {from}{to} AND ({}\n)",
                config.set, config.pending
            ))
        };
        let mut w = Writer::new(&plan);
        let mut below = vec![w.compare(Compare::Before, true)];
        below.extend(w.within(range));
        let before = w.finish(format!(
            "SELECT {read} FROM {table} WHERE {} ORDER BY {descending} LIMIT 1",
            below.join(" AND ")
        ));
        let mut w = Writer::new(&plan);
        let mut pending = vec![format!("({}\n)", config.pending)];
        pending.extend(w.within(range));
        let first_pending = w.finish(format!(
            "SELECT {read} FROM {table} WHERE {} ORDER BY {keys} LIMIT 1",
            pending.join(" AND ")
        ));
        let mut w = Writer::new(&plan);
        let mut pending = vec![format!("({}\n)", config.pending)];
        pending.extend(w.within(range));
        let any_pending = w.finish(format!(
            "SELECT {read} FROM {table} WHERE {} LIMIT 1",
            pending.join(" AND ")
        ));
        let mut w = Writer::new(&plan);
        let offset = w.size();
        let nth = w.finish(format!(
            "SELECT {read} FROM {table} ORDER BY {keys} LIMIT 1 OFFSET {offset}"
        ));
        Statements {
            nth,
            bounds_first: bounds(false),
            bounds_after: bounds(true),
            update_first: update(false),
            update_after: update(true),
            first_pending,
            any_pending,
            before,
            plan,
            range: range.clone(),
        }
    }

    /// `statement`'s parameters for these bounds, within this runner's range.
    pub fn binds(
        &self,
        statement: &Statement,
        lower: Option<&Key>,
        upper: Option<&Key>,
        size: u64,
    ) -> Vec<Bind> {
        statement.binds(lower, upper, size, &self.range)
    }

    /// PostgreSQL, a key of one column of type `column_type`: the first key at or after a
    /// value given as text (`$1`), found on the index.
    pub fn at_or_after_sql(&self, table: &str, column_type: &str) -> String {
        let key = self.plan.list("");
        format!(
            "SELECT {} FROM {table} WHERE {key} >= CAST($1 AS {column_type}) ORDER BY {key} LIMIT 1",
            self.plan.read_list()
        )
    }

    /// The statement finding the next batch's bounds from `cursor`.
    pub fn bounds(&self, cursor: Option<&Key>) -> &Statement {
        match cursor {
            None => &self.bounds_first,
            Some(_) => &self.bounds_after,
        }
    }

    /// The batch's update from `cursor`.
    pub fn update(&self, cursor: Option<&Key>) -> &Statement {
        match cursor {
            None => &self.update_first,
            Some(_) => &self.update_after,
        }
    }

    /// How to read a key, then `extra` columns.
    pub fn shape(&self, extra: &[Kind]) -> Vec<Kind> {
        self.plan.shape().chain(extra.iter().copied()).collect()
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
    use crate::backfill::key::{KeyColumn, KeyKind};
    use shiftguard_core::backfill::KeyValue;

    fn int_key(dialect: Dialect) -> KeyPlan {
        KeyPlan {
            dialect,
            columns: vec![KeyColumn {
                name: "id".to_owned(),
                kind: KeyKind::Int,
                sql_type: "bigint".to_owned(),
            }],
        }
    }

    #[test]
    fn batch_statements_bind_their_bounds_in_each_dialects_placeholders() {
        let config = config();
        let postgres = Statements::new(int_key(Dialect::Postgres), &config, &KeyRange::default());
        assert_eq!(
            postgres.bounds(None).sql,
            "SELECT CAST(id AS BIGINT), count(*) OVER () FROM (SELECT id FROM users ORDER BY id LIMIT $1) w ORDER BY id DESC LIMIT 1"
        );
        let cursor = Key::int(7);
        assert_eq!(
            postgres.bounds(Some(&cursor)).sql,
            "SELECT CAST(id AS BIGINT), count(*) OVER () FROM (SELECT id FROM users WHERE id > $1 ORDER BY id LIMIT $2) w ORDER BY id DESC LIMIT 1"
        );
        assert_eq!(
            postgres
                .bounds(Some(&cursor))
                .binds(Some(&cursor), None, 500, &KeyRange::default()),
            [Bind::Int(Some(7)), Bind::Int(Some(500))]
        );
        assert_eq!(
            postgres.update(Some(&cursor)).sql,
            "UPDATE users SET display_name = name\nWHERE id > $1 AND id <= $2 AND (display_name IS NULL\n)"
        );
        assert_eq!(
            postgres.update(None).sql,
            "UPDATE users SET display_name = name\nWHERE id <= $1 AND (display_name IS NULL\n)"
        );
        assert_eq!(
            postgres
                .update(None)
                .binds(None, Some(&Key::int(9)), 500, &KeyRange::default()),
            [Bind::Int(Some(9))]
        );
        assert_eq!(
            postgres.first_pending.sql,
            "SELECT CAST(id AS BIGINT) FROM users WHERE (display_name IS NULL\n) ORDER BY id LIMIT 1"
        );
        assert_eq!(
            postgres.any_pending.sql,
            "SELECT CAST(id AS BIGINT) FROM users WHERE (display_name IS NULL\n) LIMIT 1"
        );
        assert_eq!(
            postgres.before.sql,
            "SELECT CAST(id AS BIGINT) FROM users WHERE id < $1 ORDER BY id DESC LIMIT 1"
        );
        let mysql = Statements::new(int_key(Dialect::MySql), &config, &KeyRange::default());
        assert_eq!(
            mysql.update(Some(&cursor)).sql,
            "UPDATE users SET display_name = name\nWHERE id > ? AND id <= ? AND (display_name IS NULL\n)"
        );
        assert!(
            mysql
                .bounds(None)
                .sql
                .starts_with("SELECT CAST(id AS SIGNED), count(*) OVER ()")
        );
        let sqlite = Statements::new(int_key(Dialect::Sqlite), &config, &KeyRange::default());
        assert!(
            sqlite
                .bounds(Some(&cursor))
                .sql
                .contains("WHERE id > ? ORDER BY id LIMIT ?")
        );
    }

    #[test]
    fn a_composite_key_on_mysql_binds_each_bound_value_where_it_is_compared() {
        let mut config = config();
        config.key = vec!["tenant".to_owned(), "id".to_owned()];
        let column = |name: &str, kind| KeyColumn {
            name: name.to_owned(),
            kind,
            sql_type: String::new(),
        };
        let plan = KeyPlan {
            dialect: Dialect::MySql,
            columns: vec![column("tenant", KeyKind::Text), column("id", KeyKind::Int)],
        };
        let statements = Statements::new(plan, &config, &KeyRange::default());
        let lower = Key::new(vec![KeyValue::Text("a".into()), KeyValue::Int(1)]).expect("key");
        let upper = Key::new(vec![KeyValue::Text("b".into()), KeyValue::Int(2)]).expect("key");
        let update = statements.update(Some(&lower));
        assert_eq!(update.sql.matches('?').count(), 8);
        let text = |v: &str| Bind::Text(Some(v.to_owned()));
        assert_eq!(
            update.binds(Some(&lower), Some(&upper), 0, &KeyRange::default()),
            [
                text("a"),
                text("a"),
                text("a"),
                Bind::Int(Some(1)),
                text("b"),
                text("b"),
                text("b"),
                Bind::Int(Some(2))
            ]
        );
    }

    #[test]
    fn a_shard_keeps_every_read_inside_its_range() {
        let range = KeyRange {
            after: Some(Key::int(100)),
            until: Some(Key::int(200)),
        };
        let statements = Statements::new(int_key(Dialect::Postgres), &config(), &range);
        let cursor = Key::int(150);
        let bounds = statements.bounds(Some(&cursor));
        assert_eq!(
            bounds.sql,
            "SELECT CAST(id AS BIGINT), count(*) OVER () FROM (SELECT id FROM users WHERE id > $1 AND id > $2 AND id <= $3 ORDER BY id LIMIT $4) w ORDER BY id DESC LIMIT 1"
        );
        assert_eq!(
            statements.binds(bounds, Some(&cursor), None, 10),
            [
                Bind::Int(Some(150)),
                Bind::Int(Some(100)),
                Bind::Int(Some(200)),
                Bind::Int(Some(10))
            ]
        );
        assert!(statements.first_pending.sql.contains(
            "WHERE (display_name IS NULL\n) AND id > $1 AND id <= $2 ORDER BY id LIMIT 1"
        ));
        assert!(
            statements
                .any_pending
                .sql
                .ends_with("WHERE (display_name IS NULL\n) AND id > $1 AND id <= $2 LIMIT 1")
        );
        assert!(
            statements
                .before
                .sql
                .contains("WHERE id < $1 AND id > $2 AND id <= $3")
        );
        // The update is bounded by the batch, which is inside the range.
        assert!(!statements.update(Some(&cursor)).sql.contains("$3"));
    }

    #[test]
    fn a_pending_predicate_with_or_stays_inside_the_key_bounds() {
        let mut config = config();
        config.pending = "a IS NULL OR b IS NULL".to_owned();
        let statements = Statements::new(int_key(Dialect::Postgres), &config, &KeyRange::default());
        assert!(
            statements
                .update(Some(&Key::int(1)))
                .sql
                .ends_with("WHERE id > $1 AND id <= $2 AND (a IS NULL OR b IS NULL\n)"),
            "{}",
            statements.update(Some(&Key::int(1))).sql
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
