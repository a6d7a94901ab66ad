//! Decides a revision's phase: from its declaration when it has one, otherwise from its operations.
//!
//! A declaration may be stricter than the operations show (a team may know that a unique index
//! breaks old writers), never looser: declaring `expand` or `data` on a revision whose `upgrade()`
//! contains a contract operation is an error. When nothing is declared and some operation cannot
//! be classified (say `op.execute(sql)` with SQL built at run time), the phase is assumed to be
//! `contract`, the answer that keeps old builds from being called safe on a guess.

use thiserror::Error;

use crate::schema::alembic::{Operation, RevisionFile};
use crate::schema::revision::{Phase, PhaseSource};
use crate::schema::sqltext::{Token, statements};

/// A phase declaration that the revision's own operations contradict.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PhaseError {
    #[error(
        "declared {declared}, but `op.{operation}` at line {operation_line} is a contract operation"
    )]
    Contradiction {
        declared: Phase,
        declared_line: u32,
        operation: String,
        operation_line: u32,
    },
    #[error(
        "shiftguard_requires_app_at_least is only meaningful on a contract revision (this one is {phase})"
    )]
    ToleranceOnNonContract { phase: Phase, line: u32 },
}

impl PhaseError {
    /// The 1-based line of the declaration at fault.
    pub fn line(&self) -> u32 {
        match self {
            PhaseError::Contradiction { declared_line, .. } => *declared_line,
            PhaseError::ToleranceOnNonContract { line, .. } => *line,
        }
    }
}

/// The phase of one operation, or `None` when it cannot be told from the call alone.
pub fn classify(operation: &Operation) -> Option<Phase> {
    use Phase::*;
    if operation.opaque {
        return None;
    }
    match operation.name.as_str() {
        "create_table"
        | "create_index"
        | "create_foreign_key"
        | "create_unique_constraint"
        | "create_check_constraint"
        | "create_primary_key"
        | "create_exclude_constraint"
        | "create_table_comment"
        | "create_sequence" => Some(Expand),
        "add_column" => {
            // A NOT NULL column without a default rejects every insert from old code.
            if operation.nullable == Some(false) && !operation.has_server_default {
                Some(Contract)
            } else {
                Some(Expand)
            }
        }
        "alter_column" => {
            if operation.renames_column
                || operation.changes_type
                || operation.nullable == Some(false)
            {
                Some(Contract)
            } else {
                Some(Expand)
            }
        }
        "drop_column" | "drop_table" | "drop_constraint" | "drop_index" | "rename_table"
        | "drop_table_comment" | "drop_sequence" => Some(Contract),
        "bulk_insert" => Some(Data),
        "execute" => operation.sql.as_deref().and_then(classify_sql),
        _ => None,
    }
}

/// The phase of literal SQL, by the keywords of each statement; `None` if any statement is not
/// recognised. Strings, comments and function bodies (`$$…$$`) are not read; session settings
/// (`SET lock_timeout …`) and queries count as nothing.
pub fn classify_sql(sql: &str) -> Option<Phase> {
    let mut strictest = None;
    for statement in statements(sql) {
        let first = statement
            .first()
            .filter(|t| !t.quoted)
            .map_or("", |t| t.text.as_str());
        let phase = match first {
            "UPDATE" | "INSERT" | "DELETE" | "MERGE" | "REPLACE" | "COPY" => Phase::Data,
            "CREATE" | "COMMENT" => Phase::Expand,
            "DROP" | "TRUNCATE" => Phase::Contract,
            "ALTER" => classify_alter(&statement)?,
            "SET" | "RESET" | "SELECT" | "ANALYZE" | "VACUUM" | "BEGIN" | "COMMIT" => continue,
            _ => return None,
        };
        strictest = strictest.max(Some(phase));
    }
    // Only settings and queries: nothing that changes the schema.
    Some(strictest.unwrap_or(Phase::Expand))
}

/// `ALTER …`: renames, drops (but not `DROP NOT NULL` / `DROP DEFAULT`, which relax), type
/// changes and new NOT NULL constraints contract; additions and relaxations expand.
fn classify_alter(tokens: &[Token]) -> Option<Phase> {
    let word = |i: usize| {
        tokens
            .get(i)
            .filter(|t| !t.quoted)
            .map_or("", |t| t.text.as_str())
    };
    if word(1) == "TYPE" {
        // Enum types: ADD VALUE / ADD ATTRIBUTE expand; RENAME / DROP contract.
        let verb = (2..tokens.len())
            .map(word)
            .find(|w| matches!(*w, "ADD" | "RENAME" | "DROP"));
        return match verb {
            Some("ADD") => Some(Phase::Expand),
            Some(_) => Some(Phase::Contract),
            None => None,
        };
    }
    let (mut contract, mut expand, mut not_null, mut default) = (false, false, false, false);
    for (i, token) in tokens.iter().enumerate().skip(2) {
        let top = token.depth == 0;
        match word(i) {
            "RENAME" | "MODIFY" | "CHANGE" => contract = true,
            "DROP" if matches!(word(i + 1), "NOT" | "DEFAULT") => expand = true,
            "DROP" => contract = true,
            // `ALTER [COLUMN] c TYPE t`, `SET DATA TYPE t`; not a column named type.
            "TYPE"
                if word(i - 1) == "DATA"
                    || (i >= 4 && word(i - 2) == "ALTER")
                    || (i >= 5 && word(i - 2) == "COLUMN" && word(i - 3) == "ALTER") =>
            {
                contract = true;
            }
            "SET" if word(i + 1) == "NOT" && word(i + 2) == "NULL" => contract = true,
            "NOT" if top && word(i + 1) == "NULL" && word(i - 1) != "DROP" => not_null = true,
            "DEFAULT" if top => default = true,
            "ADD" => expand = true,
            _ => {}
        }
    }
    if contract || (not_null && !default) {
        Some(Phase::Contract)
    } else if expand || default {
        Some(Phase::Expand)
    } else {
        None
    }
}

/// The phase of each operation of one revision, in context: an operation on a table that the
/// same revision created before it is an expand whatever it does (no build has used that table).
pub fn classify_all(operations: &[Operation]) -> Vec<Option<Phase>> {
    let mut created: Vec<&str> = Vec::new();
    operations
        .iter()
        .map(|operation| {
            let table = operation.table.as_deref();
            if operation.name == "create_table"
                && let Some(table) = table
            {
                created.push(table);
            }
            match table {
                Some(table) if operation.name != "create_table" && created.contains(&table) => {
                    Some(Phase::Expand)
                }
                _ => classify(operation),
            }
        })
        .collect()
}

/// Decides the phase of a parsed revision file.
pub fn decide(file: &RevisionFile) -> Result<(Phase, PhaseSource), PhaseError> {
    let phases = classify_all(&file.operations);
    let first_contract = file
        .operations
        .iter()
        .zip(&phases)
        .find(|(_, phase)| **phase == Some(Phase::Contract))
        .map(|(op, _)| op);
    let (phase, source) = match &file.declared_phase {
        Some(declared) => {
            if declared.value != Phase::Contract
                && let Some(operation) = first_contract
            {
                return Err(PhaseError::Contradiction {
                    declared: declared.value,
                    declared_line: declared.line,
                    operation: operation.name.clone(),
                    operation_line: operation.line,
                });
            }
            (declared.value, PhaseSource::Declared)
        }
        None => infer(&phases),
    };
    if let Some(tolerance) = &file.requires_app_at_least
        && phase != Phase::Contract
    {
        return Err(PhaseError::ToleranceOnNonContract {
            phase,
            line: tolerance.line,
        });
    }
    Ok((phase, source))
}

fn infer(phases: &[Option<Phase>]) -> (Phase, PhaseSource) {
    let mut strictest = Phase::Expand;
    let mut unclassified = false;
    for phase in phases {
        match *phase {
            Some(phase) => strictest = strictest.max(phase),
            None => unclassified = true,
        }
    }
    if unclassified && strictest != Phase::Contract {
        (Phase::Contract, PhaseSource::Assumed)
    } else {
        (strictest, PhaseSource::Inferred)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::alembic::parse_revision_file;

    fn check(upgrade_body: &str, expected: Result<(Phase, PhaseSource), &str>) {
        let source = format!(
            "revision = 'r'\ndown_revision = None\n{}",
            if upgrade_body.starts_with("shiftguard") {
                upgrade_body.to_owned()
            } else {
                format!("def upgrade():\n{upgrade_body}\n")
            }
        );
        let file = parse_revision_file(&source).expect("test source parses");
        let actual = decide(&file).map_err(|e| format!("line {}: {e}", e.line()));
        match expected {
            Ok(phase) => assert_eq!(actual, Ok(phase), "{upgrade_body}"),
            Err(prefix) => {
                let message = actual.expect_err(upgrade_body);
                assert!(message.starts_with(prefix), "{upgrade_body}: {message}");
            }
        }
    }

    #[test]
    fn inference_table() {
        use Phase::*;
        use PhaseSource::*;
        let table: &[(&str, Phase, PhaseSource)] = &[
            ("    pass", Expand, Inferred),
            (
                "    op.add_column('users', sa.Column('d', sa.String()))",
                Expand,
                Inferred,
            ),
            (
                "    op.add_column('users', sa.Column('d', sa.String(), nullable=False))",
                Contract,
                Inferred,
            ),
            (
                "    op.add_column('u', sa.Column('d', sa.Integer(), nullable=False, server_default='0'))",
                Expand,
                Inferred,
            ),
            (
                "    op.add_column('u', sa.Column('id2', sa.Integer(), primary_key=True))",
                Contract,
                Inferred,
            ),
            (
                "    op.create_table('t', sa.Column('id', sa.Integer()))\n    op.create_index('ix', 't', ['id'])",
                Expand,
                Inferred,
            ),
            (
                "    op.drop_column('users', 'full_name')",
                Contract,
                Inferred,
            ),
            ("    op.drop_table('users')", Contract, Inferred),
            ("    op.drop_constraint('fk', 'users')", Contract, Inferred),
            (
                "    op.alter_column('users', 'email', nullable=False)",
                Contract,
                Inferred,
            ),
            (
                "    op.alter_column('users', 'email', nullable=True)",
                Expand,
                Inferred,
            ),
            (
                "    op.alter_column('users', 'a', new_column_name='b')",
                Contract,
                Inferred,
            ),
            ("    op.rename_table('a', 'b')", Contract, Inferred),
            (
                "    op.execute(\"UPDATE users SET d = full_name\")",
                Data,
                Inferred,
            ),
            (
                "    op.execute(\"ALTER TABLE users DROP COLUMN full_name\")",
                Contract,
                Inferred,
            ),
            (
                "    op.execute(\"ALTER TABLE users ADD COLUMN x int\")",
                Expand,
                Inferred,
            ),
            ("    op.execute(build_sql())", Contract, Assumed),
            (
                "    op.execute(\"ALTER TABLE users ADD COLUMN x int NOT NULL\")",
                Contract,
                Inferred,
            ),
            (
                "    op.execute(\"ALTER TABLE users ADD COLUMN x int NOT NULL DEFAULT 0\")",
                Expand,
                Inferred,
            ),
            (
                "    op.execute(\"ALTER TYPE order_status ADD VALUE 'refunded'\")",
                Expand,
                Inferred,
            ),
            (
                "    op.execute(\"ALTER TABLE events ADD COLUMN type varchar(20)\")",
                Expand,
                Inferred,
            ),
            (
                "    op.execute(\"ALTER TABLE t ALTER COLUMN c DROP NOT NULL\")",
                Expand,
                Inferred,
            ),
            (
                "    op.execute(\"ALTER TABLE t ALTER COLUMN c TYPE bigint\")",
                Contract,
                Inferred,
            ),
            (
                "    op.execute(\"ALTER TABLE t ALTER COLUMN c SET NOT NULL\")",
                Contract,
                Inferred,
            ),
            (
                "    op.execute(\"ALTER TABLE t ADD CONSTRAINT ck CHECK (c IS NOT NULL) NOT VALID\")",
                Expand,
                Inferred,
            ),
            (
                "    op.execute(\"SET lock_timeout = '2s'\")\n    op.execute('''CREATE FUNCTION touch() RETURNS trigger AS $$ BEGIN NEW.updated_at = now(); RETURN NEW; END; $$ LANGUAGE plpgsql''')",
                Expand,
                Inferred,
            ),
            (
                "    op.execute(\"DO $$ BEGIN DELETE FROM cache; END $$\")",
                Contract,
                Assumed,
            ),
            (
                "    op.add_column('users', sa.Column('x', sa.Integer(), nullable=flag))",
                Contract,
                Assumed,
            ),
            ("    op.add_column('users', column)", Contract, Assumed),
            (
                "    op.alter_column('users', 'x', nullable=flag)",
                Contract,
                Assumed,
            ),
            (
                "    conn = op.get_bind()\n    conn.execute(sa.text('ALTER TABLE users DROP COLUMN x'))",
                Contract,
                Inferred,
            ),
            (
                "    op.get_bind().exec_driver_sql('UPDATE users SET x = 1')",
                Data,
                Inferred,
            ),
            (
                "    if True:\n        for _ in range(1):\n            op.drop_table('t')",
                Contract,
                Inferred,
            ),
            ("    globals()['helper']()", Contract, Assumed),
            ("    op.some_plugin_operation('x')", Contract, Assumed),
            (
                "    op.create_table('t')\n    op.bulk_insert(t, [{'id': 1}])",
                Data,
                Inferred,
            ),
            (
                "    op.create_table('t', sa.Column('id', sa.Integer()))\n    op.add_column('t', sa.Column('n', sa.Integer(), nullable=False))\n    op.alter_column('t', 'id', nullable=False)",
                Expand,
                Inferred,
            ),
        ];
        for &(body, phase, source) in table {
            check(body, Ok((phase, source)));
        }
    }

    #[test]
    fn declarations_may_be_stricter_never_looser() {
        check(
            "shiftguard_phase = 'contract'\ndef upgrade():\n    op.create_index('ux', 'users', ['email'], unique=True)\n",
            Ok((Phase::Contract, PhaseSource::Declared)),
        );
        check(
            "shiftguard_phase = 'expand'\ndef upgrade():\n    op.execute(build_sql())\n",
            Ok((Phase::Expand, PhaseSource::Declared)),
        );
        check(
            "shiftguard_phase = 'expand'\n\ndef upgrade():\n    op.add_column('u', sa.Column('x', sa.Integer()))\n    op.drop_column('u', 'y')\n",
            Err("line 3: declared expand, but `op.drop_column` at line 7 is a contract operation"),
        );
        check(
            "shiftguard_requires_app_at_least = 'a'\ndef upgrade():\n    pass\n",
            Err("line 3: shiftguard_requires_app_at_least is only meaningful on a contract"),
        );
    }
}
