//! The key a backfill walks. From the catalogue's description of the table, [`plan_key`] decides
//! (without I/O) whether the configured columns make a key a keyset cursor can walk: each column
//! NOT NULL and of a type with a total order the database compares (integer, UUID, text with its
//! collation, binary), the columns unique together (a unique index over some of them), and an
//! index whose leading columns are the key, so each batch finds its bounds without a scan. The
//! resulting [`KeyPlan`] knows how to read each column's value into a typed [`Key`], bind it
//! back, and write the row-value comparisons of the batch statements in each dialect.

use shiftguard_core::backfill::{Key, KeyValue};

use crate::connection::{Bind, Cell, Kind};
use crate::url::Dialect;

/// How a key column's values are read and compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Int,
    Uuid,
    Text,
    Bytes,
}

/// A key column's kind by its type (as the catalogue names it, lower case), if it can be a key.
pub(crate) fn kind_of(dialect: Dialect, column_type: &str) -> Option<KeyKind> {
    let base = column_type.split('(').next().unwrap_or_default().trim();
    match dialect {
        // SQLite's affinity rules, in their order.
        Dialect::Sqlite if base.contains("int") => Some(KeyKind::Int),
        Dialect::Sqlite if ["char", "clob", "text"].iter().any(|t| base.contains(t)) => {
            Some(KeyKind::Text)
        }
        Dialect::Sqlite if base.is_empty() || base.contains("blob") => Some(KeyKind::Bytes),
        Dialect::Sqlite => None,
        Dialect::Postgres => match base {
            "smallint" | "integer" | "bigint" => Some(KeyKind::Int),
            "uuid" => Some(KeyKind::Uuid),
            "text" | "character varying" | "character" | "citext" => Some(KeyKind::Text),
            "bytea" => Some(KeyKind::Bytes),
            _ => None,
        },
        Dialect::MySql => match base.split(' ').next().unwrap_or_default() {
            "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" => {
                Some(KeyKind::Int)
            }
            "uuid" => Some(KeyKind::Uuid),
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" => {
                Some(KeyKind::Text)
            }
            "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
                Some(KeyKind::Bytes)
            }
            _ => None,
        },
    }
}

/// A table column as the catalogue describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ColumnInfo {
    pub name: String,
    /// The type as the dialect prints it (PostgreSQL: with its modifiers, castable to).
    pub sql_type: String,
    pub nullable: bool,
}

/// An index of the table as the catalogue describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IndexInfo {
    pub unique: bool,
    /// Valid, not partial, a B-tree over plain columns: it can enforce uniqueness and be walked.
    pub usable: bool,
    /// Its key columns in order.
    pub columns: Vec<String>,
    /// Its key columns in order, with `-` where the index sorts a column otherwise than the
    /// column compares (another collation, descending): a walk in key order can use the
    /// columns up to there.
    pub walk: Vec<String>,
}

/// One column of a walkable key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeyColumn {
    pub name: String,
    pub kind: KeyKind,
    /// The column's type, which a bound value is cast to on PostgreSQL.
    pub sql_type: String,
}

/// A key the batches can walk, and how to read, bind and compare it in one dialect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeyPlan {
    pub dialect: Dialect,
    pub columns: Vec<KeyColumn>,
}

/// Whether the key's columns (case-insensitively) start `index`.
fn leads(key: &[String], index: &[String]) -> bool {
    index.len() >= key.len()
        && key
            .iter()
            .zip(index)
            .all(|(k, i)| k.eq_ignore_ascii_case(i))
}

/// Decides whether `key` of `table` can be walked, from the catalogue's description of the
/// table; the problem, naming what to fix, when it cannot.
pub(crate) fn plan_key(
    dialect: Dialect,
    table: &str,
    key: &[String],
    columns: &[ColumnInfo],
    indexes: &[IndexInfo],
) -> Result<KeyPlan, String> {
    let shown = key.join(", ");
    let mut planned = Vec::with_capacity(key.len());
    for name in key {
        let Some(column) = columns.iter().find(|c| c.name.eq_ignore_ascii_case(name)) else {
            return Err(format!("table {table} has no column {name}"));
        };
        let column_type = column.sql_type.to_ascii_lowercase();
        let Some(kind) = kind_of(dialect, &column_type) else {
            return Err(format!(
                "key {table}.{name} is of type {column_type}: a backfill key must be an integer, UUID, text or binary column"
            ));
        };
        if column.nullable {
            return Err(format!(
                "key {table}.{name} can be NULL: rows with a NULL key would never be backfilled (make it NOT NULL)"
            ));
        }
        planned.push(KeyColumn {
            name: column.name.clone(),
            kind,
            sql_type: column.sql_type.clone(),
        });
    }
    let in_key = |c: &String| key.iter().any(|k| k.eq_ignore_ascii_case(c));
    let unique = indexes
        .iter()
        .any(|i| i.unique && i.usable && !i.columns.is_empty() && i.columns.iter().all(in_key));
    if !unique {
        return Err(format!(
            "key {table}.{shown} is not unique (no primary key or unique index on it or on some of its columns): batches could skip or repeat rows"
        ));
    }
    if !indexes.iter().any(|i| i.usable && leads(key, &i.walk)) {
        return Err(format!(
            "key {table}.{shown} has no usable index: every batch would scan the table (create a B-tree index whose leading columns are {shown}, in that order and the columns' own collation)"
        ));
    }
    Ok(KeyPlan {
        dialect,
        columns: planned,
    })
}

/// A comparison of the key with a bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Compare {
    /// key > bound
    After,
    /// key <= bound
    AtMost,
    /// key < bound
    Before,
}

impl KeyPlan {
    /// `a, b`, or with `suffix` after each column (` DESC`).
    pub fn list(&self, suffix: &str) -> String {
        let names: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("{}{suffix}", c.name))
            .collect();
        names.join(", ")
    }

    /// The select list that reads the key's values, in the shape of [`KeyPlan::shape`].
    pub fn read_list(&self) -> String {
        let reads: Vec<String> = self.columns.iter().map(|c| self.read(c)).collect();
        reads.join(", ")
    }

    fn read(&self, column: &KeyColumn) -> String {
        let name = &column.name;
        match (self.dialect, column.kind) {
            (Dialect::MySql, KeyKind::Int) => format!("CAST({name} AS SIGNED)"),
            (_, KeyKind::Int) => format!("CAST({name} AS BIGINT)"),
            (Dialect::Postgres, KeyKind::Uuid | KeyKind::Text) => format!("CAST({name} AS TEXT)"),
            (Dialect::MySql, KeyKind::Uuid) => format!("CAST({name} AS CHAR)"),
            _ => name.clone(),
        }
    }

    /// How to read the select list of [`KeyPlan::read_list`].
    pub fn shape(&self) -> impl Iterator<Item = Kind> + '_ {
        self.columns.iter().map(|c| match c.kind {
            KeyKind::Int => Kind::Int,
            KeyKind::Uuid | KeyKind::Text => Kind::Text,
            KeyKind::Bytes => Kind::Bytes,
        })
    }

    /// The key in `cells` (read by [`KeyPlan::read_list`]); `None` if a value is missing.
    pub fn key_from(&self, cells: &[Cell]) -> Option<Key> {
        let values = self
            .columns
            .iter()
            .zip(cells)
            .map(|(column, cell)| match column.kind {
                KeyKind::Int => cell.int().map(KeyValue::Int),
                KeyKind::Uuid => cell.text().map(|t| KeyValue::Uuid(t.to_owned())),
                KeyKind::Text => cell.text().map(|t| KeyValue::Text(t.to_owned())),
                KeyKind::Bytes => cell.bytes().map(|b| KeyValue::Bytes(b.to_vec())),
            })
            .collect::<Option<Vec<_>>>()?;
        (values.len() == self.columns.len())
            .then(|| Key::new(values))
            .flatten()
    }

    /// Whether `key` is a value of this key: as many values as columns, each of its column's
    /// kind (a checkpoint written for another key does not fit).
    pub fn fits(&self, key: &Key) -> bool {
        key.values().len() == self.columns.len()
            && self.columns.iter().zip(key.values()).all(|(c, v)| {
                matches!(
                    (c.kind, v),
                    (KeyKind::Int, KeyValue::Int(_))
                        | (KeyKind::Uuid, KeyValue::Uuid(_))
                        | (KeyKind::Text, KeyValue::Text(_))
                        | (KeyKind::Bytes, KeyValue::Bytes(_))
                )
            })
    }

    /// The parameters binding `key`'s values, one per column.
    pub fn bind(key: &Key) -> impl Iterator<Item = Bind> + '_ {
        key.values().iter().map(|value| match value {
            KeyValue::Int(v) => Bind::Int(Some(*v)),
            KeyValue::Uuid(v) | KeyValue::Text(v) => Bind::Text(Some(v.clone())),
            KeyValue::Bytes(v) => Bind::Bytes(Some(v.clone())),
        })
    }

    /// The key compared with a bound whose values are the parameters `params` (one per column,
    /// placeholders as the dialect writes them). Row values on PostgreSQL and SQLite, which
    /// walk an index with them; MySQL/MariaDB do not range-scan a row-value comparison, so it
    /// is spelled out there, with the leading column's range first.
    pub fn compare(&self, compare: Compare, params: &mut dyn FnMut() -> String) -> String {
        let (strict, last) = match compare {
            Compare::After => (">", ">"),
            Compare::AtMost => ("<", "<="),
            Compare::Before => ("<", "<"),
        };
        if let [column] = self.columns.as_slice() {
            let param = self.cast(column, params());
            return format!("{} {last} {param}", column.name);
        }
        if self.dialect != Dialect::MySql {
            let params: Vec<String> = self
                .columns
                .iter()
                .map(|c| self.cast(c, params()))
                .collect();
            return format!("({}) {last} ({})", self.list(""), params.join(", "));
        }
        let first = &self.columns[0];
        let mut terms = vec![format!("{} {strict}= {}", first.name, params())];
        let mut alternatives = Vec::with_capacity(self.columns.len());
        for (i, column) in self.columns.iter().enumerate() {
            let mut parts: Vec<String> = self.columns[..i]
                .iter()
                .map(|c| format!("{} = {}", c.name, params()))
                .collect();
            let op = if i + 1 == self.columns.len() {
                last
            } else {
                strict
            };
            parts.push(format!("{} {op} {}", column.name, params()));
            alternatives.push(format!("({})", parts.join(" AND ")));
        }
        terms.push(format!("({})", alternatives.join(" OR ")));
        terms.join(" AND ")
    }

    /// The number of parameters [`KeyPlan::compare`] takes, and which key value each binds.
    pub fn compare_slots(&self) -> Vec<usize> {
        let n = self.columns.len();
        if n == 1 || self.dialect != Dialect::MySql {
            return (0..n).collect();
        }
        let mut slots = vec![0];
        for i in 0..n {
            slots.extend(0..=i);
        }
        slots
    }

    /// A bound parameter as compared with `column`: PostgreSQL casts text parameters to the
    /// column's type (UUID, varchar, citext, …) so the column's index and collation apply.
    fn cast(&self, column: &KeyColumn, param: String) -> String {
        match (self.dialect, column.kind) {
            (Dialect::Postgres, KeyKind::Uuid | KeyKind::Text | KeyKind::Bytes) => {
                format!("CAST({param} AS {})", column.sql_type)
            }
            _ => param,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, sql_type: &str, nullable: bool) -> ColumnInfo {
        ColumnInfo {
            name: name.to_owned(),
            sql_type: sql_type.to_owned(),
            nullable,
        }
    }

    fn index(unique: bool, columns: &[&str]) -> IndexInfo {
        let columns: Vec<String> = columns.iter().map(|c| (*c).to_owned()).collect();
        IndexInfo {
            unique,
            usable: true,
            walk: columns.clone(),
            columns,
        }
    }

    fn key(columns: &[&str]) -> Vec<String> {
        columns.iter().map(|c| (*c).to_owned()).collect()
    }

    #[test]
    fn kinds_follow_each_dialects_type_names() {
        let table = [
            (Dialect::Postgres, "bigint", Some(KeyKind::Int)),
            (Dialect::Postgres, "uuid", Some(KeyKind::Uuid)),
            (
                Dialect::Postgres,
                "character varying(40)",
                Some(KeyKind::Text),
            ),
            (Dialect::Postgres, "character(10)", Some(KeyKind::Text)),
            (Dialect::Postgres, "bytea", Some(KeyKind::Bytes)),
            (Dialect::Postgres, "numeric", None),
            (Dialect::Postgres, "timestamp with time zone", None),
            (Dialect::MySql, "bigint unsigned", Some(KeyKind::Int)),
            (Dialect::MySql, "uuid", Some(KeyKind::Uuid)),
            (Dialect::MySql, "varchar", Some(KeyKind::Text)),
            (Dialect::MySql, "binary", Some(KeyKind::Bytes)),
            (Dialect::MySql, "double", None),
            (Dialect::Sqlite, "unsigned big int", Some(KeyKind::Int)),
            (Dialect::Sqlite, "varchar(36)", Some(KeyKind::Text)),
            (Dialect::Sqlite, "blob", Some(KeyKind::Bytes)),
            (Dialect::Sqlite, "", Some(KeyKind::Bytes)),
            (Dialect::Sqlite, "real", None),
        ];
        for (dialect, column_type, kind) in table {
            assert_eq!(
                kind_of(dialect, column_type),
                kind,
                "{dialect:?} {column_type}"
            );
        }
    }

    #[test]
    fn a_key_must_be_orderable_not_null_unique_and_indexed() {
        let columns = [
            column("tenant", "text", false),
            column("id", "uuid", false),
            column("email", "text", true),
            column("score", "numeric", false),
        ];
        let plan = |key_columns: &[&str], indexes: &[IndexInfo]| {
            plan_key(Dialect::Postgres, "t", &key(key_columns), &columns, indexes)
        };
        let composite = plan(&["tenant", "id"], &[index(true, &["tenant", "id"])]).expect("plan");
        assert_eq!(composite.list(""), "tenant, id");
        // Unique over a subset of the key, walked by another index that leads with the key.
        assert!(
            plan(
                &["tenant", "id"],
                &[index(true, &["id"]), index(false, &["tenant", "id", "x"])]
            )
            .is_ok()
        );
        for (key_columns, indexes, problem) in [
            (&["nope"][..], vec![], "table t has no column nope"),
            (
                &["score"][..],
                vec![],
                "key t.score is of type numeric: a backfill key must be an integer, UUID, text or binary column",
            ),
            (&["email"][..], vec![], "key t.email can be NULL"),
            (
                &["tenant"][..],
                vec![index(false, &["tenant"])],
                "key t.tenant is not unique",
            ),
            (
                &["tenant", "id"][..],
                vec![index(true, &["id", "tenant"])],
                "key t.tenant, id has no usable index",
            ),
        ] {
            let found = plan(key_columns, &indexes).expect_err("refused");
            assert!(found.starts_with(problem), "{found}");
        }
        // A partial or invalid unique index proves nothing; an index in another collation
        // cannot be walked in the column's order.
        let mut partial = index(true, &["tenant"]);
        partial.usable = false;
        assert!(
            plan(&["tenant"], &[partial])
                .unwrap_err()
                .contains("not unique")
        );
        let mut collated = index(true, &["tenant"]);
        collated.walk = vec!["-".to_owned()];
        assert!(
            plan(&["tenant"], &[collated])
                .unwrap_err()
                .contains("no usable index")
        );
    }

    fn plan(dialect: Dialect, kinds: &[(&str, KeyKind, &str)]) -> KeyPlan {
        KeyPlan {
            dialect,
            columns: kinds
                .iter()
                .map(|(name, kind, sql_type)| KeyColumn {
                    name: (*name).to_owned(),
                    kind: *kind,
                    sql_type: (*sql_type).to_owned(),
                })
                .collect(),
        }
    }

    fn numbered() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("${n}")
        }
    }

    #[test]
    fn comparisons_are_row_values_or_spelled_out_on_mysql() {
        let single = plan(Dialect::Postgres, &[("id", KeyKind::Uuid, "uuid")]);
        assert_eq!(
            single.compare(Compare::After, &mut numbered()),
            "id > CAST($1 AS uuid)"
        );
        let pair = [
            ("tenant", KeyKind::Text, "text"),
            ("id", KeyKind::Int, "bigint"),
        ];
        let postgres = plan(Dialect::Postgres, &pair);
        assert_eq!(
            postgres.compare(Compare::AtMost, &mut numbered()),
            "(tenant, id) <= (CAST($1 AS text), $2)"
        );
        assert_eq!(postgres.compare_slots(), [0, 1]);
        let mysql = plan(Dialect::MySql, &pair);
        let mut question = || "?".to_owned();
        assert_eq!(
            mysql.compare(Compare::After, &mut question),
            "tenant >= ? AND ((tenant > ?) OR (tenant = ? AND id > ?))"
        );
        assert_eq!(
            mysql.compare(Compare::AtMost, &mut question),
            "tenant <= ? AND ((tenant < ?) OR (tenant = ? AND id <= ?))"
        );
        assert_eq!(mysql.compare_slots(), [0, 0, 0, 1]);
        let three = plan(
            Dialect::MySql,
            &[
                ("a", KeyKind::Int, ""),
                ("b", KeyKind::Int, ""),
                ("c", KeyKind::Int, ""),
            ],
        );
        assert_eq!(
            three.compare(Compare::Before, &mut question),
            "a <= ? AND ((a < ?) OR (a = ? AND b < ?) OR (a = ? AND b = ? AND c < ?))"
        );
        assert_eq!(three.compare_slots(), [0, 0, 0, 1, 0, 1, 2]);
    }

    #[test]
    fn values_are_read_typed_and_must_fit_the_key() {
        let pair = plan(
            Dialect::Postgres,
            &[
                ("tenant", KeyKind::Text, "text"),
                ("id", KeyKind::Uuid, "uuid"),
            ],
        );
        assert_eq!(pair.read_list(), "CAST(tenant AS TEXT), CAST(id AS TEXT)");
        let cells = [
            Cell::Text(Some("acme".into())),
            Cell::Text(Some("u-1".into())),
        ];
        let key = pair.key_from(&cells).expect("key");
        assert_eq!(
            key.values(),
            [KeyValue::Text("acme".into()), KeyValue::Uuid("u-1".into())]
        );
        assert!(pair.fits(&key));
        assert!(!pair.fits(&Key::int(5)));
        assert_eq!(
            pair.key_from(&[Cell::Text(None), Cell::Text(Some("u".into()))]),
            None
        );
        assert_eq!(
            KeyPlan::bind(&key).collect::<Vec<_>>(),
            [
                Bind::Text(Some("acme".into())),
                Bind::Text(Some("u-1".into()))
            ]
        );
        let mysql = plan(
            Dialect::MySql,
            &[("id", KeyKind::Int, ""), ("b", KeyKind::Bytes, "")],
        );
        assert_eq!(mysql.read_list(), "CAST(id AS SIGNED), b");
        assert_eq!(mysql.shape().collect::<Vec<_>>(), [Kind::Int, Kind::Bytes]);
    }
}
