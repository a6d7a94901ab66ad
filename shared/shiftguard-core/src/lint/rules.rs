//! The operations rules: one pass over the whole graph in topological order keeps a model of the
//! schema (tables, their columns and types, which revision made them), so a rule can tell an
//! existing table from one the release creates, and what type a dropped column had. Findings are
//! reported only for the release's revisions.

use std::collections::{HashMap, HashSet};

use super::sql::data_statements;
use super::{Dialect, Finding, Options, Scope, is_new_table, rule};
use crate::schema::alembic::Operation;
use crate::schema::graph::RevisionIndex;
use crate::schema::phase::{PhaseError, classify_all};
use crate::schema::revision::{Phase, PhaseSource};
use crate::schema::scan::Project;

/// Runs the operations rules over the release (see [`Scope`]).
pub fn lint_operations(project: &Project, scope: &Scope, options: &Options) -> Vec<Finding> {
    let mut linter = Linter {
        project,
        scope,
        options,
        tables: HashMap::new(),
        filled: HashSet::new(),
        added_columns: Vec::new(),
        dropped_columns: Vec::new(),
        created_tables: Vec::new(),
        dropped_tables: Vec::new(),
        touches: Vec::new(),
        findings: Vec::new(),
    };
    for index in project.graph.topological() {
        linter.revision(index);
    }
    let renames = linter.renames_in_disguise();
    linter.findings.extend(renames);
    let contracts = linter.contracts_with_their_expand();
    linter.findings.extend(contracts);
    let data = linter.data_with_its_expand();
    linter.findings.extend(data);
    linter.findings
}

#[derive(Debug)]
struct Column {
    type_: Option<String>,
    nullable: Option<bool>,
    has_server_default: bool,
}

/// Tables and columns are matched case-insensitively (SQL folds unquoted names).
fn key(name: &str) -> String {
    name.to_ascii_lowercase()
}

#[derive(Debug)]
struct Table {
    /// `None`: the table predates every revision that mentions it.
    created_in: Option<RevisionIndex>,
    columns: HashMap<String, Column>,
}

/// A column or table added or dropped in the release, for the rename-in-disguise rule.
#[derive(Debug)]
struct Change {
    revision: RevisionIndex,
    line: u32,
    table: String,
    /// Column changes: the column and its type.
    column: Option<(String, Option<String>)>,
    /// Table changes: the columns (sorted), when all types are known.
    columns: Option<Vec<(String, String)>>,
}

/// An operation of the release on a table, with its phase.
#[derive(Debug)]
struct Touch {
    revision: RevisionIndex,
    line: u32,
    table: String,
    phase: Phase,
    operation: String,
}

struct Linter<'a> {
    project: &'a Project,
    scope: &'a Scope,
    options: &'a Options,
    tables: HashMap<String, Table>,
    /// (table, column) that a literal UPDATE of a migration fills.
    filled: HashSet<(String, String)>,
    added_columns: Vec<Change>,
    dropped_columns: Vec<Change>,
    created_tables: Vec<Change>,
    dropped_tables: Vec<Change>,
    touches: Vec<Touch>,
    findings: Vec<Finding>,
}

impl Linter<'_> {
    fn report(&mut self, code: &str, revision: RevisionIndex, line: u32, message: String) {
        self.findings.push(finding(code, revision, line, message));
    }

    fn file_name(&self, index: RevisionIndex) -> &str {
        self.project
            .graph
            .revision(index)
            .file
            .as_deref()
            .unwrap_or("?")
    }

    /// A table the release itself creates (in this revision, or earlier in the release when
    /// production is known): it has no rows and no traffic from the running build.
    fn is_new_table(&self, table: &str, index: RevisionIndex) -> bool {
        self.tables
            .get(&key(table))
            .and_then(|t| t.created_in)
            .is_some_and(|created| {
                created == index
                    || (self.scope.knows_production() && self.scope.release.contains(created))
            })
    }

    /// The revision declares that the running build (production) tolerates it.
    fn tolerated(&self, index: RevisionIndex) -> bool {
        let graph = &self.project.graph;
        self.project.files[index]
            .parsed
            .requires_app_at_least
            .as_ref()
            .and_then(|x| graph.resolve(&x.value).ok())
            .is_some_and(|x| self.scope.production.contains(x))
    }

    fn postgresql(&self) -> bool {
        matches!(self.options.dialect, None | Some(Dialect::Postgresql))
    }

    fn revision(&mut self, index: RevisionIndex) {
        let project = self.project;
        let file = &project.files[index];
        let in_release = self.scope.release.contains(index);
        if in_release {
            self.phase_rules(index);
        }
        let phases = classify_all(&file.parsed.operations);
        for (operation, phase) in file.parsed.operations.iter().zip(phases) {
            if in_release {
                self.check(index, operation);
            }
            self.apply(index, operation, phase, in_release);
        }
    }

    /// SG101, SG102, SG109, SG110.
    fn phase_rules(&mut self, index: RevisionIndex) {
        let project = self.project;
        let file = &project.files[index];
        match &file.phase_error {
            Some(error @ PhaseError::Contradiction { declared_line, .. }) => {
                self.report("SG101", index, *declared_line, error.to_string());
                return;
            }
            Some(error @ PhaseError::ToleranceOnNonContract { line, .. }) => {
                self.report("SG109", index, *line, error.to_string());
                return;
            }
            _ => {}
        }
        let operations = &file.parsed.operations;
        let phases = classify_all(operations);
        let first = |wanted| {
            operations
                .iter()
                .zip(&phases)
                .find(|(_, phase)| **phase == Some(wanted))
                .map(|(op, _)| op)
        };
        if let (Some(expand), Some(contract)) = (first(Phase::Expand), first(Phase::Contract)) {
            self.report(
                "SG102",
                index,
                contract.line,
                format!(
                    "`op.{}` (line {}) expands and `op.{}` (line {}) contracts in one revision",
                    expand.name, expand.line, contract.name, contract.line
                ),
            );
        }
        if project.graph.revision(index).phase_source == PhaseSource::Assumed
            && file.parsed.declared_phase.is_none()
            && let Some((unknown, _)) = operations.iter().zip(&phases).find(|(_, p)| p.is_none())
        {
            let what = if unknown.name == "execute" {
                "`op.execute` with SQL that is not a literal (or not recognised)".to_owned()
            } else if unknown.opaque {
                format!("`op.{}` with a non-literal argument", unknown.name)
            } else {
                format!("`{}`", unknown.name)
            };
            self.report(
                "SG110",
                index,
                unknown.line,
                format!("{what}: phase unknown, so the revision counts as contract"),
            );
        }
    }

    /// The rules about one operation, against the schema as it is before it.
    fn check(&mut self, index: RevisionIndex, op: &Operation) {
        let table = op.table.as_deref().unwrap_or("?");
        match op.name.as_str() {
            "add_column"
                if op.nullable == Some(false)
                    && !op.has_server_default
                    && !op.opaque
                    && !self.is_new_table(table, index) =>
            {
                let column = op.column.as_deref().unwrap_or("?");
                self.report(
                    "SG107",
                    index,
                    op.line,
                    format!(
                        "`op.add_column` adds {table}.{column} NOT NULL without a server_default to an existing table: inserts from the running build fail"
                    ),
                );
            }
            "alter_column" => {
                let column = op.column.as_deref().unwrap_or("?");
                let harmless = self.tolerated(index) || self.is_new_table(table, index);
                if harmless {
                    // The running build does not use it (declared), or no build has used it yet.
                } else if let Some(new_name) = &op.new_name {
                    self.report(
                        "SG105",
                        index,
                        op.line,
                        format!(
                            "`op.alter_column` renames {table}.{column} to {new_name}: the running build still uses {column}"
                        ),
                    );
                } else if op.renames_column {
                    self.report(
                        "SG105",
                        index,
                        op.line,
                        format!("`op.alter_column` renames {table}.{column}: the running build still uses {column}"),
                    );
                }
                if op.nullable == Some(false) && !op.opaque && self.needs_backfill(index, op) {
                    self.report(
                        "SG108",
                        index,
                        op.line,
                        format!(
                            "`op.alter_column` sets {table}.{column} NOT NULL, and nothing before fills it (no [[backfill]] job of {table} setting {column}, no UPDATE in a migration)"
                        ),
                    );
                }
            }
            "rename_table" if !self.tolerated(index) && !self.is_new_table(table, index) => {
                let new_name = op.new_name.as_deref().unwrap_or("?");
                self.report(
                    "SG106",
                    index,
                    op.line,
                    format!("`op.rename_table` renames {table} to {new_name}: the running build still uses {table}"),
                );
            }
            "create_index" | "drop_index" if self.postgresql() => {
                if op.name == "create_index" && !op.concurrently && !self.is_new_table(table, index)
                {
                    self.report(
                        "SG301",
                        index,
                        op.line,
                        format!(
                            "`op.create_index` on existing table {table} without postgresql_concurrently=True: writes to {table} block until the index is built"
                        ),
                    );
                }
                if op.concurrently && !op.autocommit {
                    self.report(
                        "SG302",
                        index,
                        op.line,
                        format!(
                            "`op.{}` with postgresql_concurrently=True outside autocommit_block(): PostgreSQL refuses it inside the migration's transaction",
                            op.name
                        ),
                    );
                }
            }
            "execute" => {
                for statement in op.sql.as_deref().map(data_statements).unwrap_or_default() {
                    let Some(target) = statement.table.as_deref() else {
                        continue;
                    };
                    if !statement.bounded && !self.is_new_table(target, index) {
                        self.report(
                            "SG401",
                            index,
                            op.line,
                            format!(
                                "`{} {target}` without WHERE or LIMIT changes every row in the migration's transaction",
                                statement.kind.as_str()
                            ),
                        );
                    }
                }
            }
            _ => {}
        }
    }

    /// Whether `alter_column(nullable=False)` lacks evidence that the column holds no NULLs.
    fn needs_backfill(&self, index: RevisionIndex, op: &Operation) -> bool {
        let (Some(table), Some(column)) = (&op.table, &op.column) else {
            return true;
        };
        if self.is_new_table(table, index) {
            return false;
        }
        let known = self
            .tables
            .get(&key(table))
            .and_then(|t| t.columns.get(&key(column)));
        // Already NOT NULL, or filled by the database's default since it was added.
        if known.is_some_and(|c| c.nullable == Some(false) || c.has_server_default) {
            return false;
        }
        let key = (key(table), key(column));
        let configured = self.options.backfilled.iter().any(|(t, columns)| {
            t.eq_ignore_ascii_case(table) && columns.iter().any(|c| c.eq_ignore_ascii_case(column))
        });
        !(configured || self.filled.contains(&key))
    }

    /// Updates the schema model with `op`, and records what the release rules compare.
    fn apply(
        &mut self,
        index: RevisionIndex,
        op: &Operation,
        phase: Option<Phase>,
        in_release: bool,
    ) {
        if in_release
            && let Some(table) = &op.table
            && let Some(phase) = phase
        {
            self.touches.push(Touch {
                revision: index,
                line: op.line,
                table: key(table),
                phase,
                operation: op.name.clone(),
            });
        }
        let Some(table) = op.table.as_deref().map(key) else {
            if let Some(sql) = &op.sql {
                for statement in data_statements(sql) {
                    let Some(target) = statement.table else {
                        continue;
                    };
                    for column in statement.set_columns {
                        self.filled.insert((target.clone(), column));
                    }
                    if in_release {
                        self.touches.push(Touch {
                            revision: index,
                            line: op.line,
                            table: target,
                            phase: Phase::Data,
                            operation: "execute".to_owned(),
                        });
                    }
                }
            }
            return;
        };
        match op.name.as_str() {
            "create_table" => {
                let columns = op
                    .columns
                    .iter()
                    .map(|c| {
                        let column = Column {
                            type_: c.type_.clone(),
                            nullable: c.nullable,
                            has_server_default: c.has_server_default,
                        };
                        (key(&c.name), column)
                    })
                    .collect();
                let created = Table {
                    created_in: Some(index),
                    columns,
                };
                if in_release {
                    self.created_tables.push(Change {
                        revision: index,
                        line: op.line,
                        table: table.clone(),
                        column: None,
                        columns: typed_columns(&created),
                    });
                }
                self.tables.insert(table, created);
            }
            "drop_table" => {
                let dropped = self.tables.remove(&table);
                if in_release {
                    self.dropped_tables.push(Change {
                        revision: index,
                        line: op.line,
                        table,
                        column: None,
                        columns: dropped.as_ref().and_then(typed_columns),
                    });
                }
            }
            "rename_table" => {
                if let (Some(moved), Some(new_name)) = (self.tables.remove(&table), &op.new_name) {
                    self.tables.insert(key(new_name), moved);
                }
            }
            "add_column" => {
                let entry = self.tables.entry(table.clone()).or_insert_with(|| Table {
                    created_in: None,
                    columns: HashMap::new(),
                });
                for spec in &op.columns {
                    entry.columns.insert(
                        key(&spec.name),
                        Column {
                            type_: spec.type_.clone(),
                            nullable: spec.nullable,
                            has_server_default: spec.has_server_default,
                        },
                    );
                    if in_release {
                        self.added_columns.push(Change {
                            revision: index,
                            line: op.line,
                            table: table.clone(),
                            column: Some((key(&spec.name), spec.type_.clone())),
                            columns: None,
                        });
                    }
                }
            }
            "drop_column" => {
                let Some(column) = op.column.as_deref().map(key) else {
                    return;
                };
                let dropped = self
                    .tables
                    .get_mut(&table)
                    .and_then(|t| t.columns.remove(&column));
                if in_release {
                    self.dropped_columns.push(Change {
                        revision: index,
                        line: op.line,
                        table,
                        column: Some((column, dropped.and_then(|c| c.type_))),
                        columns: None,
                    });
                }
            }
            "alter_column" => {
                let Some(column) = op.column.as_deref().map(key) else {
                    return;
                };
                let Some(state) = self.tables.get_mut(&table) else {
                    return;
                };
                let mut current = state.columns.remove(&column).unwrap_or(Column {
                    type_: None,
                    nullable: None,
                    has_server_default: false,
                });
                if op.changes_type {
                    current.type_ = None;
                }
                if op.opaque {
                    current.nullable = None;
                } else if op.nullable.is_some() {
                    current.nullable = op.nullable;
                }
                if op.has_server_default {
                    current.has_server_default = true;
                }
                let name = op.new_name.as_deref().map_or(column, key);
                state.columns.insert(name, current);
            }
            _ => {}
        }
    }

    /// SG104: a drop and an add of the same type, in one revision or (production known) one
    /// release.
    fn renames_in_disguise(&self) -> Vec<Finding> {
        let same_scope =
            |a: &Change, b: &Change| a.revision == b.revision || self.scope.knows_production();
        let mut found = Vec::new();
        let harmless = |drop: &Change| {
            self.tolerated(drop.revision)
                || is_new_table(self.project, self.scope, drop.revision, &drop.table)
        };
        for drop in &self.dropped_columns {
            let Some((dropped, Some(type_))) = &drop.column else {
                continue;
            };
            if harmless(drop) {
                continue;
            }
            let twin = self.added_columns.iter().find(|add| {
                add.table == drop.table
                    && same_scope(add, drop)
                    && matches!(&add.column, Some((name, Some(t))) if t == type_ && name != dropped)
            });
            if let Some(add) = twin {
                let added = add
                    .column
                    .as_ref()
                    .map(|(name, _)| name.as_str())
                    .unwrap_or("?");
                found.push(finding(
                    "SG104",
                    drop.revision,
                    drop.line,
                    format!(
                        "`op.drop_column` {table}.{dropped} ({type_}) with `op.add_column` {table}.{added} ({type_}) at {}:{}: a rename in disguise; the running build still uses {dropped}",
                        self.file_name(add.revision),
                        add.line,
                        table = drop.table,
                    ),
                ));
            }
        }
        for drop in &self.dropped_tables {
            let Some(columns) = drop.columns.as_ref().filter(|c| !c.is_empty()) else {
                continue;
            };
            if harmless(drop) {
                continue;
            }
            let twin = self.created_tables.iter().find(|create| {
                create.table != drop.table
                    && same_scope(create, drop)
                    && create.columns.as_ref() == Some(columns)
            });
            if let Some(create) = twin {
                found.push(finding(
                    "SG104",
                    drop.revision,
                    drop.line,
                    format!(
                        "`op.drop_table` {} with `op.create_table` {} of the same columns at {}:{}: a rename in disguise; the running build still uses {}",
                        drop.table,
                        create.table,
                        self.file_name(create.revision),
                        create.line,
                        drop.table,
                    ),
                ));
            }
        }
        found
    }

    /// SG103: a contract of a table that the same release expands, not tolerated by the running
    /// build.
    fn contracts_with_their_expand(&self) -> Vec<Finding> {
        if !self.scope.knows_production() {
            return Vec::new();
        }
        let mut found = Vec::new();
        for contract in self.touches.iter().filter(|t| t.phase == Phase::Contract) {
            let tolerated = self.tolerated(contract.revision);
            let disguised = self.findings.iter().any(|f| {
                f.rule.code == "SG104" && f.revision == contract.revision && f.line == contract.line
            });
            let new_table =
                is_new_table(self.project, self.scope, contract.revision, &contract.table);
            if tolerated || disguised || new_table {
                continue;
            }
            let expand = self.touches.iter().find(|t| {
                t.revision != contract.revision
                    && t.table == contract.table
                    && matches!(t.phase, Phase::Expand | Phase::Data)
            });
            if let Some(expand) = expand {
                found.push(finding(
                    "SG103",
                    contract.revision,
                    contract.line,
                    format!(
                        "`op.{}` on {} ships in the same release as `op.{}` on {} ({}:{}), and the running build does not tolerate it",
                        contract.operation,
                        contract.table,
                        expand.operation,
                        expand.table,
                        self.file_name(expand.revision),
                        expand.line
                    ),
                ));
            }
        }
        found
    }

    /// SG402: a data change of a large table after an expand it depends on, in the same release.
    fn data_with_its_expand(&self) -> Vec<Finding> {
        let large = |table: &str| {
            self.options
                .large_tables
                .iter()
                .any(|t| t == "*" || t.eq_ignore_ascii_case(table))
        };
        let graph = &self.project.graph;
        let mut found = Vec::new();
        for data in self.touches.iter().filter(|t| t.phase == Phase::Data) {
            if graph.revision(data.revision).phase != Phase::Data || !large(&data.table) {
                continue;
            }
            let ancestors = graph.ancestors([data.revision]);
            let expand = self.touches.iter().find(|t| {
                t.phase == Phase::Expand
                    && t.table == data.table
                    && ancestors.contains(t.revision)
                    && (t.revision == data.revision || self.scope.knows_production())
            });
            if let Some(expand) = expand {
                found.push(finding(
                    "SG402",
                    data.revision,
                    data.line,
                    format!(
                        "a data change of large table {} in the same release as `op.{}` ({}:{}) it depends on",
                        data.table,
                        expand.operation,
                        self.file_name(expand.revision),
                        expand.line
                    ),
                ));
            }
        }
        found
    }
}

fn finding(code: &str, revision: RevisionIndex, line: u32, message: String) -> Finding {
    Finding {
        rule: rule(code),
        revision,
        line,
        message,
    }
}

/// A table's columns with their types, sorted; `None` when a type is unknown.
fn typed_columns(table: &Table) -> Option<Vec<(String, String)>> {
    let mut columns: Vec<(String, String)> = table
        .columns
        .iter()
        .map(|(name, c)| c.type_.clone().map(|t| (name.clone(), t)))
        .collect::<Option<_>>()?;
    columns.sort();
    Some(columns)
}
