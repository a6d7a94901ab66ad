//! What the lint reads from SQL text: the data statements of `op.execute(…)`, and which revision
//! each part of Alembic's offline (`--sql`) output belongs to.

use std::ops::Range;

use crate::schema::sqltext::{Token, statements};

/// An UPDATE or DELETE found in literal SQL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataStatement {
    pub kind: DataKind,
    /// The target table (last part of a qualified name, unquoted).
    pub table: Option<String>,
    /// The columns an UPDATE assigns.
    pub set_columns: Vec<String>,
    /// A top-level WHERE or LIMIT bounds the rows it touches.
    pub bounded: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataKind {
    Update,
    Delete,
}

impl DataKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DataKind::Update => "UPDATE",
            DataKind::Delete => "DELETE",
        }
    }
}

/// The UPDATE and DELETE statements in `sql` (other statements are skipped).
pub fn data_statements(sql: &str) -> Vec<DataStatement> {
    statements(sql)
        .iter()
        .filter_map(|tokens| data_statement(tokens))
        .collect()
}

fn data_statement(tokens: &[Token]) -> Option<DataStatement> {
    let is = |token: &Token, word: &str| token.is(word);
    // A WITH … prefix is not read: such statements are left alone rather than guessed at.
    let (kind, rest) = match tokens {
        [first, rest @ ..] if is(first, "UPDATE") => (DataKind::Update, rest),
        [first, second, rest @ ..] if is(first, "DELETE") && is(second, "FROM") => {
            (DataKind::Delete, rest)
        }
        _ => return None,
    };
    let rest = match rest {
        [only, rest @ ..] if is(only, "ONLY") => rest,
        _ => rest,
    };
    // schema.table: the name is the last part before anything that is not a dot.
    let mut name_end = 0;
    while name_end + 2 <= rest.len() && rest[name_end + 1].text == "." {
        name_end += 2;
    }
    let table = rest
        .get(name_end)
        .map(|token| token.text.to_ascii_lowercase());
    let top = |word: &str| rest.iter().any(|t| t.depth == 0 && is(t, word));
    let bounded = top("WHERE") || top("LIMIT");
    let mut set_columns = Vec::new();
    if kind == DataKind::Update
        && let Some(set) = rest.iter().position(|t| t.depth == 0 && is(t, "SET"))
    {
        // `SET a = …, b = …`: the name before each top-level `=` after SET, until a clause ends it.
        let clause = &rest[set + 1..];
        let end = clause
            .iter()
            .position(|t| {
                t.depth == 0
                    && ["FROM", "WHERE", "RETURNING", "LIMIT"]
                        .iter()
                        .any(|w| is(t, w))
            })
            .unwrap_or(clause.len());
        for (i, token) in clause[..end].iter().enumerate() {
            if token.depth == 0 && token.text == "=" && i > 0 {
                set_columns.push(clause[i - 1].text.to_ascii_lowercase());
            }
        }
    }
    Some(DataStatement {
        kind,
        table,
        set_columns,
        bounded,
    })
}

/// The table an `ALTER TABLE` or `CREATE INDEX … ON` statement acts on.
pub fn statement_table(statement: &str) -> Option<String> {
    let statements = statements(statement);
    let tokens = statements.first()?;
    let word = |i: usize, w: &str| tokens.get(i).is_some_and(|t| t.is(w));
    let start = if word(0, "ALTER") && word(1, "TABLE") {
        let mut i = 2;
        while word(i, "IF") || word(i, "EXISTS") || word(i, "ONLY") {
            i += 1;
        }
        i
    } else if word(0, "CREATE") {
        let on = tokens.iter().position(|t| t.is("ON"))?;
        if word(on + 1, "ONLY") { on + 2 } else { on + 1 }
    } else {
        return None;
    };
    let mut end = start;
    while tokens.get(end + 1).is_some_and(|t| t.text == ".") {
        end += 2;
    }
    tokens.get(end).map(|t| t.text.to_ascii_lowercase())
}

/// The columns a backfill's `set` (`a = expr, b = expr`) assigns.
pub fn assigned_columns(set: &str) -> Vec<String> {
    statements(&format!("UPDATE t SET {set}"))
        .first()
        .and_then(|tokens| data_statement(tokens))
        .map(|statement| statement.set_columns)
        .unwrap_or_default()
}

/// The part of Alembic's offline output that one revision's upgrade produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub revision: String,
    /// Byte range in the whole output.
    pub range: Range<usize>,
}

/// Splits `alembic upgrade A:B --sql` output at its `-- Running upgrade X -> Y` comments.
pub fn segments(output: &str) -> Vec<Segment> {
    let mut segments: Vec<Segment> = Vec::new();
    let mut offset = 0;
    for line in output.split_inclusive('\n') {
        if let Some(step) = line.trim_end().strip_prefix("-- Running upgrade ")
            && let Some((_, target)) = step.rsplit_once("->")
        {
            if let Some(last) = segments.last_mut() {
                last.range.end = offset;
            }
            segments.push(Segment {
                revision: target.trim().to_owned(),
                range: offset..output.len(),
            });
        }
        offset += line.len();
    }
    segments
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_update_and_delete_statements() {
        let found = data_statements(
            "UPDATE users SET display_name = full_name, \"Flag\" = (SELECT 1 WHERE true); \
             DELETE FROM public.audit_log WHERE id < 10; \
             update only \"Users\" set a = 'x;y' limit 5; \
             CREATE INDEX ix ON t (a); -- UPDATE t SET a = 1\n\
             INSERT INTO t VALUES (1)",
        );
        assert_eq!(
            found,
            vec![
                DataStatement {
                    kind: DataKind::Update,
                    table: Some("users".into()),
                    set_columns: vec!["display_name".into(), "flag".into()],
                    bounded: false,
                },
                DataStatement {
                    kind: DataKind::Delete,
                    table: Some("audit_log".into()),
                    set_columns: vec![],
                    bounded: true,
                },
                DataStatement {
                    kind: DataKind::Update,
                    table: Some("users".into()),
                    set_columns: vec!["a".into()],
                    bounded: true,
                },
            ]
        );
        assert_eq!(
            assigned_columns("display_name = full_name, n = n + 1"),
            ["display_name", "n"]
        );
        for (statement, table) in [
            ("ALTER TABLE users ADD COLUMN n int NOT NULL", Some("users")),
            (
                "alter table if exists only public.\"Teams\" add x int",
                Some("teams"),
            ),
            (
                "CREATE UNIQUE INDEX CONCURRENTLY ix ON only app.users (a)",
                Some("users"),
            ),
            ("DROP TABLE users", None),
        ] {
            assert_eq!(statement_table(statement).as_deref(), table, "{statement}");
        }
    }

    #[test]
    fn splits_offline_output_by_revision() {
        let output = "BEGIN;\n\n-- Running upgrade  -> a1\n\nCREATE TABLE t (a int);\n\n-- Running upgrade a1, b2 -> m3\n\nDROP TABLE t;\n\nCOMMIT;\n";
        let found = segments(output);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].revision, "a1");
        assert!(output[found[0].range.clone()].contains("CREATE TABLE"));
        assert!(!output[found[0].range.clone()].contains("DROP"));
        assert_eq!(found[1].revision, "m3");
        assert!(output[found[1].range.clone()].ends_with("COMMIT;\n"));
    }
}
