//! Every rule `shiftguard lint` reports, with its stable code. Codes never change meaning; a rule
//! that is retired leaves its code unused.

/// How bad a finding is: errors fail the lint (exit 1); warnings only with `--deny warnings`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Warning,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }
}

/// Which layer finds it: the Alembic operations in Python, or the SQL Alembic renders for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    Operations,
    Sql,
}

impl Layer {
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Operations => "operations",
            Layer::Sql => "sql",
        }
    }
}

/// One lint rule.
#[derive(Debug, PartialEq, Eq)]
pub struct Rule {
    /// Stable code, e.g. `SG104`.
    pub code: &'static str,
    /// Stable name, e.g. `rename-in-disguise`; for the SQL layer, squawk's rule name.
    pub name: &'static str,
    pub level: Level,
    pub layer: Layer,
    /// What the rule finds, one sentence.
    pub summary: &'static str,
    /// How to fix what it finds, one sentence.
    pub fix: &'static str,
    /// A SQL-layer rule that finds the same hazard as this operations rule: its finding is
    /// dropped when the operations rule already reported on the same revision.
    pub same_as: Option<&'static str>,
}

const fn ops(
    code: &'static str,
    name: &'static str,
    level: Level,
    summary: &'static str,
    fix: &'static str,
) -> Rule {
    Rule {
        code,
        name,
        level,
        layer: Layer::Operations,
        summary,
        fix,
        same_as: None,
    }
}

const fn sql(
    code: &'static str,
    name: &'static str,
    level: Level,
    same_as: Option<&'static str>,
    summary: &'static str,
    fix: &'static str,
) -> Rule {
    Rule {
        code,
        name,
        level,
        layer: Layer::Sql,
        summary,
        fix,
        same_as,
    }
}

use Level::{Error, Warning};

pub static RULES: &[Rule] = &[
    ops(
        "SG001",
        "unused-disable",
        Warning,
        "`shiftguard_lint_disable` names a rule that reports nothing in this revision.",
        "Remove the rule from `shiftguard_lint_disable`, so a later hazard is not hidden.",
    ),
    ops(
        "SG101",
        "declared-phase-contradicted",
        Error,
        "A revision declared expand or data contains a contract operation.",
        "Move the operation into a contract revision that ships in a later release, or declare the revision contract.",
    ),
    ops(
        "SG102",
        "expand-and-contract-in-one-revision",
        Error,
        "One revision both expands and contracts the schema, so its expand cannot ship before its contract.",
        "Split it: the expand revision now, the contract revision in a later release, after the contract gate.",
    ),
    ops(
        "SG103",
        "contract-with-its-expand",
        Error,
        "A contract operation ships in the same release as an expand of the same table, and the running build does not tolerate it.",
        "Ship the contract in a later release (after the backfill and the contract gate), or declare shiftguard_requires_app_at_least when the running build never uses it.",
    ),
    ops(
        "SG104",
        "rename-in-disguise",
        Error,
        "A column (or table) is dropped and one of the same type added: a rename that breaks the running build.",
        "Add the new column in an expand, copy with a backfill job, switch reads, and drop the old column in a later release.",
    ),
    ops(
        "SG105",
        "rename-column",
        Error,
        "`alter_column(new_column_name=…)` renames a column the running build still reads and writes.",
        "Add the new column (expand), backfill it, move the code to it, drop the old column in a later release (contract).",
    ),
    ops(
        "SG106",
        "rename-table",
        Error,
        "`rename_table` renames a table the running build still uses.",
        "Create the new table (expand), backfill it, move the code to it, drop the old table in a later release (contract).",
    ),
    ops(
        "SG107",
        "not-null-without-default",
        Error,
        "A NOT NULL column without a server default is added to an existing table: every insert from the running build fails.",
        "Add it nullable (or with server_default=…), backfill it, then set NOT NULL in a later release.",
    ),
    ops(
        "SG108",
        "not-null-without-backfill",
        Error,
        "`alter_column(nullable=False)` on an existing column with no backfill of it before: rows that are still NULL make it fail.",
        "Fill the column first with a [[backfill]] job (shiftguard.toml) or a data revision, then set NOT NULL.",
    ),
    ops(
        "SG109",
        "tolerance-on-non-contract",
        Error,
        "`shiftguard_requires_app_at_least` is declared on a revision that is not a contract.",
        "Remove the declaration, or declare shiftguard_phase = \"contract\" if the revision is one.",
    ),
    ops(
        "SG110",
        "phase-unknown",
        Warning,
        "An operation's phase cannot be told from the code (SQL built at run time, a non-literal argument, a plugin operation), so the revision counts as contract.",
        "Declare shiftguard_phase in the revision, or write the operation with literal arguments.",
    ),
    ops(
        "SG301",
        "index-not-concurrent",
        Error,
        "An index is built on an existing PostgreSQL table without postgresql_concurrently=True: writes to the table block until it is built.",
        "Pass postgresql_concurrently=True inside `with op.get_context().autocommit_block():`.",
    ),
    ops(
        "SG302",
        "concurrent-index-in-transaction",
        Error,
        "A concurrent index build or drop runs inside the transaction Alembic opens: PostgreSQL refuses it.",
        "Put the operation inside `with op.get_context().autocommit_block():`.",
    ),
    ops(
        "SG401",
        "unbounded-data-change",
        Error,
        "An UPDATE or DELETE in a migration has no WHERE or LIMIT: every row of an existing table changes in one transaction.",
        "Move it to a [[backfill]] job (batched, throttled, resumable), or bound the statement.",
    ),
    ops(
        "SG402",
        "data-with-its-expand",
        Error,
        "A data revision changes a large table (configured in [lint] large_tables) in the same release as the expand it depends on.",
        "Run the data change as a [[backfill]] job after the expand, not inside the release's migrations.",
    ),
    sql(
        "SG501",
        "adding-required-field",
        Error,
        Some("SG107"),
        "The SQL adds a NOT NULL column without a default: inserts from the running build fail.",
        "Add the column nullable or with a non-volatile DEFAULT.",
    ),
    sql(
        "SG502",
        "adding-not-nullable-field",
        Warning,
        Some("SG108"),
        "SET NOT NULL scans the whole table under an ACCESS EXCLUSIVE lock.",
        "Add a CHECK (col IS NOT NULL) NOT VALID constraint, VALIDATE it, then SET NOT NULL.",
    ),
    sql(
        "SG503",
        "require-concurrent-index-creation",
        Error,
        Some("SG301"),
        "CREATE INDEX without CONCURRENTLY blocks writes to an existing table.",
        "Use CREATE INDEX CONCURRENTLY outside a transaction.",
    ),
    sql(
        "SG504",
        "ban-concurrent-index-creation-in-transaction",
        Error,
        Some("SG302"),
        "CREATE INDEX CONCURRENTLY inside a transaction fails.",
        "Run it outside the transaction (Alembic: autocommit_block()).",
    ),
    sql(
        "SG505",
        "constraint-missing-not-valid",
        Warning,
        None,
        "Adding a constraint without NOT VALID checks every row under a lock that blocks writes.",
        "Add the constraint NOT VALID, then VALIDATE CONSTRAINT in a separate transaction.",
    ),
    sql(
        "SG506",
        "adding-foreign-key-constraint",
        Warning,
        None,
        "Adding a foreign key locks both tables while every row is checked.",
        "Add it NOT VALID, then VALIDATE CONSTRAINT in a separate transaction.",
    ),
    sql(
        "SG507",
        "changing-column-type",
        Warning,
        None,
        "Changing a column's type may rewrite the table under an ACCESS EXCLUSIVE lock, and the running build may not read the new type.",
        "Add a column of the new type, backfill it, switch the code, drop the old one later.",
    ),
    sql(
        "SG508",
        "disallowed-unique-constraint",
        Warning,
        None,
        "Adding a UNIQUE constraint builds its index under a lock that blocks writes.",
        "CREATE UNIQUE INDEX CONCURRENTLY first, then ADD CONSTRAINT … UNIQUE USING INDEX.",
    ),
    sql(
        "SG509",
        "adding-serial-primary-key-field",
        Warning,
        None,
        "Adding a primary key builds its index under an ACCESS EXCLUSIVE lock.",
        "CREATE UNIQUE INDEX CONCURRENTLY first, then ADD PRIMARY KEY USING INDEX.",
    ),
    sql(
        "SG510",
        "adding-field-with-default",
        Warning,
        None,
        "A column with a volatile default rewrites the whole table under an ACCESS EXCLUSIVE lock.",
        "Add the column without the default, set the default, and backfill existing rows in batches.",
    ),
    sql(
        "SG511",
        "renaming-column",
        Error,
        Some("SG105"),
        "The SQL renames a column the running build uses.",
        "Expand (new column), backfill, contract (drop the old one) in a later release.",
    ),
    sql(
        "SG512",
        "renaming-table",
        Error,
        Some("SG106"),
        "The SQL renames a table the running build uses.",
        "Expand (new table), backfill, contract (drop the old one) in a later release.",
    ),
    sql(
        "SG513",
        "ban-drop-database",
        Error,
        None,
        "The SQL drops a database.",
        "Never in a migration.",
    ),
    sql(
        "SG514",
        "ban-truncate-cascade",
        Error,
        None,
        "TRUNCATE … CASCADE empties every table that references this one.",
        "Truncate the tables you mean, by name.",
    ),
];

/// The rule with this code. Panics on an unknown code: codes are constants of this crate.
pub fn rule(code: &str) -> &'static Rule {
    RULES
        .iter()
        .find(|rule| rule.code == code)
        .unwrap_or_else(|| panic!("no lint rule {code}"))
}

/// The rule named by a code or a name, as `shiftguard_lint_disable` may write it.
pub fn find_rule(code_or_name: &str) -> Option<&'static Rule> {
    RULES
        .iter()
        .find(|rule| rule.code.eq_ignore_ascii_case(code_or_name) || rule.name == code_or_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_are_unique_and_sql_twins_exist() {
        for (i, a) in RULES.iter().enumerate() {
            for b in &RULES[i + 1..] {
                assert_ne!(a.code, b.code);
                assert_ne!(a.name, b.name);
            }
            if let Some(twin) = a.same_as {
                assert_eq!(rule(twin).layer, Layer::Operations, "{}", a.code);
            }
        }
    }
}
