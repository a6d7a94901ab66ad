//! Synthetic rows for every table of a database, so that a rehearsed migration step meets data:
//! one `INSERT … SELECT` per table over a generated series (PostgreSQL's `generate_series`, a
//! recursive CTE on SQLite, a cross join of digits on MySQL/MariaDB), parents before children.
//!
//! Row `i` (1..=N) gets values derived from `i`: unique wherever `i` is (integers, text), so
//! unique constraints hold; a foreign key takes the parent's value for row `(i - 1) % N + 1`,
//! computed the same way the parent's was. Identity, serial and auto-increment columns and
//! computed columns are left to the database. A NOT NULL column of a type with no synthetic
//! value (and no default) is an error naming it; a CHECK constraint the values violate fails
//! the insert with the database's own message.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::connection::{Connection, Kind};
use crate::error::SqlError;
use crate::url::{DatabaseUrl, Dialect};

use super::{query_failed, quote, settings};

/// What kind of value a column takes.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Value {
    /// Integers; `max` is a small type's largest value (row numbers past it wrap: not unique).
    Integer {
        max: Option<u32>,
    },
    /// Decimals; `digits`: how many integer digits `numeric(p, s)` holds.
    Number {
        digits: Option<u32>,
    },
    Text {
        max: Option<u32>,
    },
    Boolean,
    Date,
    Timestamp,
    Time,
    Uuid,
    Json,
    Bytes,
    /// An enum: its first label (MySQL spells it in the column type; PostgreSQL's is looked up).
    Enum(Option<String>),
    /// No synthetic value: NULL or the default.
    Unknown(String),
}

#[derive(Clone, Debug)]
struct Column {
    name: String,
    /// The type as the database spells it (PostgreSQL: `format_type`, for the cast).
    sql_type: String,
    value: Value,
    not_null: bool,
    has_default: bool,
    /// Identity, serial, auto-increment, rowid alias, or computed: the database fills it.
    generated: bool,
}

#[derive(Clone, Debug, Default)]
struct Table {
    columns: Vec<Column>,
    /// Single-column foreign keys: column -> (parent table, parent column).
    references: BTreeMap<String, (String, String)>,
}

/// One filled table.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Filled {
    pub table: String,
    pub rows: u64,
    pub ms: f64,
}

/// Inserts `rows` synthetic rows into every table except `skip` (the version table and the
/// checkpoint table). Returns what it filled, parents first.
pub async fn fill(url: &DatabaseUrl, rows: u64, skip: &[&str]) -> Result<Vec<Filled>, SqlError> {
    let mut connection = Connection::open(url, settings()).await?;
    let result = fill_on(&mut connection, url, rows, skip).await;
    connection.close().await;
    result
}

async fn fill_on(
    connection: &mut Connection,
    url: &DatabaseUrl,
    rows: u64,
    skip: &[&str],
) -> Result<Vec<Filled>, SqlError> {
    let mut tables = describe(connection, url).await?;
    tables.retain(|name, _| !skip.iter().any(|s| s.eq_ignore_ascii_case(name)));
    let dialect = connection.dialect();
    let mut filled = Vec::new();
    for name in order(&tables) {
        let insert =
            insert_sql(dialect, &name, &tables, rows).map_err(|reason| SqlError::Query {
                target: url.target().to_owned(),
                reason,
            })?;
        let started = Instant::now();
        let inserted = connection
            .execute(&insert, &[])
            .await
            .map_err(|e| SqlError::Query {
                target: url.target().to_owned(),
                reason: format!("filling table {name}: {}", url.redact(&e.to_string())),
            })?;
        filled.push(Filled {
            table: name,
            rows: inserted,
            ms: millis(started.elapsed()),
        });
    }
    if dialect == Dialect::Postgres {
        // Fresh statistics, as a production table has them.
        connection
            .raw("ANALYZE")
            .await
            .map_err(|e| query_failed(url, &e))?;
    }
    Ok(filled)
}

fn millis(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64() * 1e3
}

/// Parents before children; tables in a cycle of foreign keys come last, in name order.
fn order(tables: &BTreeMap<String, Table>) -> Vec<String> {
    let mut done = BTreeSet::new();
    let mut ordered = Vec::with_capacity(tables.len());
    loop {
        let ready: Vec<String> = tables
            .iter()
            .filter(|(name, table)| {
                !done.contains(*name)
                    && table.references.values().all(|(parent, _)| {
                        parent == *name || done.contains(parent) || !tables.contains_key(parent)
                    })
            })
            .map(|(name, _)| name.clone())
            .collect();
        if ready.is_empty() {
            break;
        }
        for name in ready {
            done.insert(name.clone());
            ordered.push(name);
        }
    }
    ordered.extend(tables.keys().filter(|n| !done.contains(*n)).cloned());
    ordered
}

/// The one statement that fills `name`.
fn insert_sql(
    dialect: Dialect,
    name: &str,
    tables: &BTreeMap<String, Table>,
    rows: u64,
) -> Result<String, String> {
    let table = &tables[name];
    let mut columns = Vec::new();
    let mut values = Vec::new();
    for column in table.columns.iter().filter(|c| !c.generated) {
        let expression = match table.references.get(&column.name) {
            Some((parent, parent_column)) if parent != name => {
                let parent_value = tables
                    .get(parent)
                    .and_then(|t| t.columns.iter().find(|c| &c.name == parent_column));
                // The parent's row (i - 1) % N + 1, computed as the parent computed it.
                let row = format!("((i - 1) % {rows} + 1)");
                match parent_value {
                    Some(p) if p.generated => Some(row),
                    Some(p) => value(dialect, p, &row, rows),
                    None => None,
                }
            }
            Some(_) => None,
            None => value(dialect, column, "i", rows),
        };
        match expression {
            Some(expression) => {
                columns.push(quote(dialect, &column.name));
                values.push(match dialect {
                    // PostgreSQL types the SELECT list before the INSERT: cast to the column.
                    Dialect::Postgres => format!("CAST({expression} AS {})", column.sql_type),
                    _ => expression,
                });
            }
            None if column.not_null && !column.has_default => {
                return Err(format!(
                    "cannot make up values for {name}.{} ({}, NOT NULL, no default): fill the table yourself, or rehearse without --rows",
                    column.name, column.sql_type
                ));
            }
            None => {}
        }
    }
    if columns.is_empty() {
        // Only generated columns: PostgreSQL inserts rows of defaults from a column-less
        // SELECT; the others generate a key for an explicit NULL.
        match (dialect, table.columns.iter().find(|c| c.generated)) {
            (Dialect::Postgres, _) => {}
            (_, Some(generated)) => {
                columns.push(quote(dialect, &generated.name));
                values.push("NULL".to_owned());
            }
            (_, None) => return Err(format!("table {name} has no column shiftguard can fill")),
        }
    }
    let table_sql = quote(dialect, name);
    let (columns, values) = (columns.join(", "), values.join(", "));
    let columns = if columns.is_empty() {
        String::new()
    } else {
        format!(" ({columns})")
    };
    Ok(match dialect {
        Dialect::Postgres => format!(
            "INSERT INTO {table_sql}{columns} SELECT {values} FROM generate_series(1, {rows}) AS s(i)"
        ),
        Dialect::Sqlite => format!(
            "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {rows}) INSERT INTO {table_sql}{columns} SELECT {values} FROM s"
        ),
        Dialect::MySql => format!(
            "INSERT INTO {table_sql}{columns} SELECT {values} FROM {} WHERE i <= {rows}",
            digits(rows)
        ),
    })
}

/// `(SELECT … i FROM digits d0 CROSS JOIN digits d1 …) s`: 1..=10^k rows, k the digits of N.
fn digits(rows: u64) -> String {
    let places = rows.max(1).to_string().len();
    let digit = "(SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)";
    let sum: Vec<String> = (0..places)
        .map(|p| format!("d{p}.d * {}", 10u64.pow(p as u32)))
        .collect();
    let joins: Vec<String> = (0..places).map(|p| format!("{digit} d{p}")).collect();
    format!(
        "(SELECT {} + 1 AS i FROM {}) s",
        sum.join(" + "),
        joins.join(" CROSS JOIN ")
    )
}

/// The value of `column` for row `i` (an SQL expression), `None` when there is none to make up.
fn value(dialect: Dialect, column: &Column, i: &str, rows: u64) -> Option<String> {
    use Dialect::*;
    let prefix: String = column
        .name
        .chars()
        .take(12)
        .collect::<String>()
        .replace('\'', "");
    Some(match (&column.value, dialect) {
        (Value::Integer { max: Some(max) }, _) if rows > u64::from(*max) => {
            format!("({i} % {max})")
        }
        (Value::Number { digits: Some(d) }, _) if rows >= 10u64.saturating_pow(*d) => {
            format!("({i} % {})", 10u64.saturating_pow(*d))
        }
        (Value::Integer { .. } | Value::Number { .. }, _) => i.to_owned(),
        // The number first: a value cut to the column's length stays unique while it fits.
        (Value::Text { max }, MySql) => {
            let text = format!("CONCAT({i}, '-{prefix}')");
            max.map_or(text.clone(), |max| format!("LEFT({text}, {max})"))
        }
        (Value::Text { .. }, _) => format!("{i} || '-{prefix}'"),
        (Value::Boolean, Postgres) => format!("({i} % 2 = 0)"),
        (Value::Boolean, _) => format!("({i} % 2)"),
        (Value::Date, Postgres) => format!("DATE '2026-01-01' + ({i} % 3650)::int"),
        (Value::Date, MySql) => format!("DATE_ADD('2026-01-01', INTERVAL ({i} % 3650) DAY)"),
        (Value::Date, Sqlite) => format!("date('2026-01-01', '+' || ({i} % 3650) || ' days')"),
        (Value::Timestamp, Postgres) => {
            format!("TIMESTAMP '2026-01-01' + {i} * INTERVAL '1 second'")
        }
        (Value::Timestamp, MySql) => {
            format!("DATE_ADD('2026-01-01 00:00:00', INTERVAL {i} SECOND)")
        }
        (Value::Timestamp, Sqlite) => format!("datetime('2026-01-01', '+' || {i} || ' seconds')"),
        (Value::Time, _) => "'12:00:00'".to_owned(),
        // Derived from the row number, so a child computes its parent's value again.
        (Value::Uuid, Postgres) => format!("md5({i}::text)::uuid"),
        (Value::Uuid, MySql) => format!(
            "INSERT(INSERT(INSERT(INSERT(MD5({i}), 21, 0, '-'), 17, 0, '-'), 13, 0, '-'), 9, 0, '-')"
        ),
        (Value::Uuid, Sqlite) => format!("printf('%032x', {i})"),
        (Value::Json, _) => "'{}'".to_owned(),
        (Value::Bytes, Postgres) => format!("decode(md5({i}::text), 'hex')"),
        (Value::Bytes, MySql) => format!("UNHEX(MD5({i}))"),
        (Value::Bytes, Sqlite) => format!("CAST(printf('%016x', {i}) AS BLOB)"),
        (Value::Enum(Some(label)), _) => format!("'{}'", label.replace('\'', "''")),
        (Value::Enum(None), Postgres) => format!(
            "(SELECT enumlabel FROM pg_enum WHERE enumtypid = '{}'::regtype ORDER BY enumsortorder LIMIT 1)",
            column.sql_type.replace('\'', "''")
        ),
        (Value::Enum(None) | Value::Unknown(_), _) => return None,
    })
}

/// The value kind of a type name (lower case; `varchar(200)`, `character varying(200)`, …).
fn kind_of(sql_type: &str, dialect: Dialect) -> Value {
    let t = sql_type.to_ascii_lowercase();
    if t.ends_with("[]") {
        // PostgreSQL arrays: NULL or the default.
        return Value::Unknown(sql_type.to_owned());
    }
    let base = t.split(['(', ' ']).next().unwrap_or("");
    let max = t
        .split_once('(')
        .and_then(|(_, rest)| rest.split([')', ',']).next())
        .and_then(|n| n.trim().parse().ok());
    match base {
        "tinyint" if t.starts_with("tinyint(1)") => Value::Boolean,
        "tinyint" => Value::Integer { max: Some(127) },
        "smallint" | "int2" | "smallserial" => Value::Integer { max: Some(32767) },
        "integer" | "int" | "int4" | "mediumint" | "bigint" | "int8" | "serial" | "bigserial" => {
            Value::Integer { max: None }
        }
        "numeric" | "decimal" => Value::Number {
            digits: precision_and_scale(&t).map(|(p, s)| p.saturating_sub(s)),
        },
        "real" | "double" | "float" | "float4" | "float8" | "money" => {
            Value::Number { digits: None }
        }
        "character" | "char" | "varchar" | "nvarchar" | "nchar" | "text" | "tinytext"
        | "mediumtext" | "longtext" | "citext" | "clob" | "string" => Value::Text { max },
        "boolean" | "bool" => Value::Boolean,
        "date" => Value::Date,
        "timestamp" | "datetime" => Value::Timestamp,
        "time" => Value::Time,
        "uuid" => Value::Uuid,
        "json" | "jsonb" => Value::Json,
        "bytea" | "blob" | "binary" | "varbinary" | "tinyblob" | "mediumblob" | "longblob" => {
            Value::Bytes
        }
        "enum" | "set" => Value::Enum(first_label(&t)),
        // SQLite's type affinity: INT anywhere is an integer; CHAR, CLOB, TEXT are text.
        _ if dialect == Dialect::Sqlite && t.contains("int") => Value::Integer { max: None },
        _ if dialect == Dialect::Sqlite
            && ["char", "clob", "text"].iter().any(|k| t.contains(k)) =>
        {
            Value::Text { max }
        }
        _ => Value::Unknown(sql_type.to_owned()),
    }
}

/// `numeric(10,2)` -> (10, 2).
fn precision_and_scale(sql_type: &str) -> Option<(u32, u32)> {
    let inner = sql_type.split_once('(')?.1.split_once(')')?.0;
    let (p, s) = inner.split_once(',').unwrap_or((inner, "0"));
    Some((p.trim().parse().ok()?, s.trim().parse().ok()?))
}

/// `enum('a','b')` -> `a`.
fn first_label(column_type: &str) -> Option<String> {
    let rest = column_type.split_once("('")?.1;
    Some(rest.split_once('\'')?.0.to_owned())
}

/// Every table's columns and single-column foreign keys.
async fn describe(
    connection: &mut Connection,
    url: &DatabaseUrl,
) -> Result<BTreeMap<String, Table>, SqlError> {
    let dialect = connection.dialect();
    let (columns_sql, references_sql) = match dialect {
        Dialect::Postgres => (POSTGRES_COLUMNS, POSTGRES_REFERENCES),
        Dialect::MySql => (MYSQL_COLUMNS, MYSQL_REFERENCES),
        Dialect::Sqlite => (SQLITE_COLUMNS, SQLITE_REFERENCES),
    };
    let text = |n| vec![Kind::Text; n];
    let rows = connection
        .fetch_rows(columns_sql, &[], &text(7))
        .await
        .map_err(|e| query_failed(url, &e))?;
    let mut tables: BTreeMap<String, Table> = BTreeMap::new();
    for row in &rows {
        let cell = |i: usize| row[i].text().unwrap_or_default().to_owned();
        let sql_type = cell(2);
        let extra = cell(6).to_ascii_lowercase();
        let mut value = kind_of(&sql_type, dialect);
        if extra == "enum" {
            value = Value::Enum(None);
        }
        tables.entry(cell(0)).or_default().columns.push(Column {
            name: cell(1),
            value,
            not_null: cell(3) == "1",
            has_default: cell(4) == "1",
            generated: cell(5) == "1"
                || extra.contains("auto_increment")
                || extra.contains("generated"),
            sql_type,
        });
    }
    if dialect == Dialect::Sqlite {
        sqlite_rowid_aliases(connection, url, &mut tables).await?;
    }
    let references = connection
        .fetch_rows(references_sql, &[], &text(4))
        .await
        .map_err(|e| query_failed(url, &e))?;
    for row in &references {
        let cell = |i: usize| row[i].text().unwrap_or_default().to_owned();
        let parent = cell(2);
        let parent_column = match cell(3) {
            // SQLite: a foreign key that names no column references the parent's primary key.
            empty if empty.is_empty() => primary_key(connection, url, &parent).await?,
            named => named,
        };
        if let Some(table) = tables.get_mut(&cell(0)) {
            table.references.insert(cell(1), (parent, parent_column));
        }
    }
    Ok(tables)
}

/// SQLite's `INTEGER PRIMARY KEY` (the only primary-key column) is the rowid: generated.
async fn sqlite_rowid_aliases(
    connection: &mut Connection,
    url: &DatabaseUrl,
    tables: &mut BTreeMap<String, Table>,
) -> Result<(), SqlError> {
    for (name, table) in tables.iter_mut() {
        let key = primary_keys(connection, url, name).await?;
        if let [only] = key.as_slice()
            && let Some(column) = table.columns.iter_mut().find(|c| &c.name == only)
            && column.sql_type.eq_ignore_ascii_case("integer")
        {
            column.generated = true;
        }
    }
    Ok(())
}

async fn primary_keys(
    connection: &mut Connection,
    url: &DatabaseUrl,
    table: &str,
) -> Result<Vec<String>, SqlError> {
    connection
        .fetch_strings(&format!(
            "SELECT name FROM pragma_table_info('{}') WHERE pk > 0 ORDER BY pk",
            table.replace('\'', "''")
        ))
        .await
        .map_err(|e| query_failed(url, &e))
}

async fn primary_key(
    connection: &mut Connection,
    url: &DatabaseUrl,
    table: &str,
) -> Result<String, SqlError> {
    Ok(primary_keys(connection, url, table)
        .await?
        .into_iter()
        .next()
        .unwrap_or_default())
}

// Columns: table, column, type, not null, has default, generated (1/0), extra (MySQL's EXTRA,
// or `enum` for a PostgreSQL enum type). All as text.
const POSTGRES_COLUMNS: &str = "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), \
    CASE WHEN a.attnotnull THEN '1' ELSE '0' END, CASE WHEN a.atthasdef THEN '1' ELSE '0' END, \
    CASE WHEN a.attidentity <> '' OR a.attgenerated <> '' OR COALESCE(pg_get_expr(d.adbin, d.adrelid), '') LIKE 'nextval(%' THEN '1' ELSE '0' END, \
    CASE WHEN t.typtype = 'e' THEN 'enum' ELSE '' END \
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_type t ON t.oid = a.atttypid \
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
    WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND a.attnum > 0 AND NOT a.attisdropped \
    ORDER BY c.relname, a.attnum";
const POSTGRES_REFERENCES: &str = "SELECT cl.relname::text, a.attname::text, p.relname::text, pa.attname::text \
    FROM pg_constraint co JOIN pg_class cl ON cl.oid = co.conrelid JOIN pg_class p ON p.oid = co.confrelid \
    JOIN pg_attribute a ON a.attrelid = co.conrelid AND a.attnum = co.conkey[1] \
    JOIN pg_attribute pa ON pa.attrelid = co.confrelid AND pa.attnum = co.confkey[1] \
    WHERE co.contype = 'f' AND cardinality(co.conkey) = 1 AND cl.relnamespace = current_schema()::regnamespace";
// MariaDB reports the default of a nullable column without one as the text NULL.
const MYSQL_COLUMNS: &str = "SELECT CAST(c.TABLE_NAME AS CHAR), CAST(c.COLUMN_NAME AS CHAR), CAST(c.COLUMN_TYPE AS CHAR), \
    CASE WHEN c.IS_NULLABLE = 'NO' THEN '1' ELSE '0' END, \
    CASE WHEN c.COLUMN_DEFAULT IS NULL OR c.COLUMN_DEFAULT = 'NULL' THEN '0' ELSE '1' END, '0', CAST(c.EXTRA AS CHAR) \
    FROM information_schema.COLUMNS c JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME \
    WHERE c.TABLE_SCHEMA = DATABASE() AND t.TABLE_TYPE = 'BASE TABLE' ORDER BY c.TABLE_NAME, c.ORDINAL_POSITION";
const MYSQL_REFERENCES: &str = "SELECT CAST(k.TABLE_NAME AS CHAR), CAST(k.COLUMN_NAME AS CHAR), CAST(k.REFERENCED_TABLE_NAME AS CHAR), CAST(k.REFERENCED_COLUMN_NAME AS CHAR) \
    FROM information_schema.KEY_COLUMN_USAGE k WHERE k.TABLE_SCHEMA = DATABASE() AND k.REFERENCED_TABLE_NAME IS NOT NULL \
    AND (SELECT count(*) FROM information_schema.KEY_COLUMN_USAGE o WHERE o.TABLE_SCHEMA = k.TABLE_SCHEMA AND o.TABLE_NAME = k.TABLE_NAME AND o.CONSTRAINT_NAME = k.CONSTRAINT_NAME) = 1";
const SQLITE_COLUMNS: &str = "SELECT m.name, p.name, p.type, CASE WHEN p.\"notnull\" THEN '1' ELSE '0' END, \
    CASE WHEN p.dflt_value IS NULL THEN '0' ELSE '1' END, '0', '' \
    FROM sqlite_master m JOIN pragma_table_info(m.name) p \
    WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY m.name, p.cid";
const SQLITE_REFERENCES: &str = "SELECT m.name, f.\"from\", f.\"table\", COALESCE(f.\"to\", '') \
    FROM sqlite_master m JOIN pragma_foreign_key_list(m.name) f \
    WHERE m.type = 'table' AND (SELECT count(*) FROM pragma_foreign_key_list(m.name) g WHERE g.id = f.id) = 1";

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, sql_type: &str, dialect: Dialect) -> Column {
        Column {
            name: name.to_owned(),
            sql_type: sql_type.to_owned(),
            value: kind_of(sql_type, dialect),
            not_null: true,
            has_default: false,
            generated: false,
        }
    }

    #[test]
    fn types_map_to_value_kinds() {
        use Dialect::*;
        assert_eq!(
            kind_of("character varying(200)", Postgres),
            Value::Text { max: Some(200) }
        );
        assert_eq!(
            kind_of("varchar(320)", MySql),
            Value::Text { max: Some(320) }
        );
        assert_eq!(kind_of("tinyint(1)", MySql), Value::Boolean);
        assert_eq!(
            kind_of("smallint", Postgres),
            Value::Integer { max: Some(32767) }
        );
        assert_eq!(
            kind_of("numeric(5,2)", Postgres),
            Value::Number { digits: Some(3) }
        );
        assert_eq!(
            kind_of("character varying(20)[]", Postgres),
            Value::Unknown("character varying(20)[]".to_owned())
        );
        assert_eq!(
            kind_of("timestamp without time zone", Postgres),
            Value::Timestamp
        );
        assert_eq!(
            kind_of("enum('new','done')", MySql),
            Value::Enum(Some("new".to_owned()))
        );
        assert_eq!(
            kind_of("BIGINT UNSIGNED", Sqlite),
            Value::Integer { max: None }
        );
        assert_eq!(
            kind_of("VARCHAR(50)", Sqlite),
            Value::Text { max: Some(50) }
        );
        assert_eq!(
            kind_of("tsvector", Postgres),
            Value::Unknown("tsvector".to_owned())
        );
    }

    #[test]
    fn parents_come_first_and_foreign_keys_follow_the_parent_values() {
        let mut tables = BTreeMap::new();
        let mut users = Table::default();
        users.columns.push(Column {
            generated: true,
            ..column("id", "integer", Dialect::Postgres)
        });
        users
            .columns
            .push(column("email", "character varying(320)", Dialect::Postgres));
        let mut audit = Table::default();
        audit
            .columns
            .push(column("user_id", "integer", Dialect::Postgres));
        audit
            .references
            .insert("user_id".to_owned(), ("users".to_owned(), "id".to_owned()));
        tables.insert("a_audit".to_owned(), audit);
        tables.insert("users".to_owned(), users);
        assert_eq!(order(&tables), ["users", "a_audit"]);
        let sql = insert_sql(Dialect::Postgres, "a_audit", &tables, 10).expect("sql");
        assert_eq!(
            sql,
            "INSERT INTO \"a_audit\" (\"user_id\") SELECT CAST(((i - 1) % 10 + 1) AS integer) FROM generate_series(1, 10) AS s(i)"
        );
        let sql = insert_sql(Dialect::Postgres, "users", &tables, 10).expect("sql");
        assert!(
            sql.contains("(\"email\") SELECT CAST(i || '-email' AS character varying(320))"),
            "{sql}"
        );
    }

    #[test]
    fn a_table_of_generated_columns_gets_rows_of_defaults() {
        let mut tables = BTreeMap::new();
        let mut t = Table::default();
        t.columns.push(Column {
            generated: true,
            ..column("id", "INTEGER", Dialect::Sqlite)
        });
        tables.insert("ids".to_owned(), t);
        let sqlite = insert_sql(Dialect::Sqlite, "ids", &tables, 3).expect("sql");
        assert!(
            sqlite.ends_with("INSERT INTO \"ids\" (\"id\") SELECT NULL FROM s"),
            "{sqlite}"
        );
        let postgres = insert_sql(Dialect::Postgres, "ids", &tables, 3).expect("sql");
        assert_eq!(
            postgres,
            "INSERT INTO \"ids\" SELECT  FROM generate_series(1, 3) AS s(i)"
        );
    }

    #[test]
    fn a_not_null_column_without_a_value_is_named() {
        let mut tables = BTreeMap::new();
        let mut t = Table::default();
        t.columns.push(column("doc", "tsvector", Dialect::Postgres));
        tables.insert("docs".to_owned(), t);
        let error = insert_sql(Dialect::Postgres, "docs", &tables, 5).expect_err("no value");
        assert!(
            error.contains("docs.doc (tsvector, NOT NULL, no default)"),
            "{error}"
        );
    }

    #[test]
    fn mysql_counts_with_digits() {
        let source = digits(100_000);
        assert_eq!(
            source.matches(" CROSS JOIN ").count(),
            5,
            "six digits for 100000"
        );
        assert!(source.contains("d5.d * 100000"));
    }
}
