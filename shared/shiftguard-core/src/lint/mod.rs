//! `shiftguard lint`: the questions a reviewer must ask of a release's migrations on a shared
//! database, answered from the parsed `upgrade()` operations (this module) and from the SQL
//! Alembic renders for them (the CLI runs squawk on it; [`sql::segments`] maps it back).
//!
//! The rules are precise on purpose: a finding names the operation, its line and why it breaks
//! the running build or stalls traffic. What cannot be known statically (a table's size, SQL built
//! at run time) is either configured or reported as unknown, never guessed.

mod catalogue;
mod rules;
pub mod sql;

use serde::Deserialize;
use std::collections::HashMap;

use thiserror::Error;

use crate::schema::graph::{RevisionGraph, RevisionIndex, RevisionSet};
use crate::schema::scan::Project;

pub use catalogue::{Layer, Level, RULES, Rule, find_rule, rule};
pub use rules::lint_operations;

/// The database the migrations run on; some rules are PostgreSQL's only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Postgresql,
    Mysql,
    Sqlite,
    /// Known not to be PostgreSQL, otherwise unknown.
    Other,
}

impl Dialect {
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Postgresql => "postgresql",
            Dialect::Mysql => "mysql",
            Dialect::Sqlite => "sqlite",
            Dialect::Other => "other",
        }
    }

    /// The dialect of a SQLAlchemy URL (`postgresql+psycopg://…` -> PostgreSQL).
    pub fn from_url(url: &str) -> Option<Dialect> {
        let scheme = url.split("://").next()?.split('+').next()?;
        match scheme {
            "postgresql" | "postgres" => Some(Dialect::Postgresql),
            "mysql" | "mariadb" => Some(Dialect::Mysql),
            "sqlite" => Some(Dialect::Sqlite),
            _ => None,
        }
    }
}

/// The revisions a lint looks at: those after the production head(s) up to the heads.
#[derive(Debug)]
pub struct Scope {
    /// The production head(s) given with `--since`; empty for the whole graph.
    pub since: Vec<RevisionIndex>,
    /// The revisions of the release.
    pub release: RevisionSet,
    /// What production has: the ancestors-or-equal of `since`.
    pub production: RevisionSet,
}

impl Scope {
    pub fn new(graph: &RevisionGraph, since: Vec<RevisionIndex>) -> Scope {
        let production = if since.is_empty() {
            graph.empty_set()
        } else {
            graph.ancestors(since.iter().copied())
        };
        let mut release = graph.empty_set();
        for index in graph.topological() {
            if !production.contains(index) {
                release.insert(index);
            }
        }
        Scope {
            since,
            release,
            production,
        }
    }

    /// Cross-revision release rules need to know where production stands.
    pub fn knows_production(&self) -> bool {
        !self.since.is_empty()
    }

    /// The release's revisions in topological order.
    pub fn revisions<'g>(
        &'g self,
        graph: &'g RevisionGraph,
    ) -> impl Iterator<Item = RevisionIndex> + 'g {
        graph
            .topological()
            .filter(|&index| self.release.contains(index))
    }
}

/// Whether `table` is created by `revision` itself or (production known) by a revision of the
/// release before it: such a table has no rows and no traffic from the running build.
pub fn is_new_table(
    project: &Project,
    scope: &Scope,
    revision: RevisionIndex,
    table: &str,
) -> bool {
    let creates = |index: RevisionIndex| {
        project.files[index].parsed.operations.iter().any(|op| {
            op.name == "create_table"
                && op
                    .table
                    .as_deref()
                    .is_some_and(|t| t.eq_ignore_ascii_case(table))
        })
    };
    if creates(revision) {
        return true;
    }
    // Earlier in the release: a revision of the release that this one descends from.
    scope.knows_production()
        && project
            .graph
            .ancestors([revision])
            .iter()
            .any(|index| scope.release.contains(index) && creates(index))
}

/// What the project tells the lint beyond the revision files.
#[derive(Debug, Default)]
pub struct Options {
    /// `None`: the SQL dialect is not known; PostgreSQL-only rules run (the lint's target).
    pub dialect: Option<Dialect>,
    /// Tables too large for a data change inside a migration (`*` for all).
    pub large_tables: Vec<String>,
    /// (table, columns) that `[[backfill]]` jobs fill.
    pub backfilled: Vec<(String, Vec<String>)>,
}

/// One thing wrong with one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub rule: &'static Rule,
    pub revision: RevisionIndex,
    /// 1-based line in the revision file.
    pub line: u32,
    pub message: String,
}

/// `shiftguard_lint_disable` names something that is not a rule.
#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "{file}:{line}: shiftguard_lint_disable names unknown rule `{rule}` (rules: `shiftguard lint --list-rules`)"
)]
pub struct DisableError {
    pub file: String,
    pub line: u32,
    pub rule: String,
}

/// Whether `rule` ran on this lint: the SQL layer's only when it ran, PostgreSQL's rules only on
/// PostgreSQL (or an unknown dialect), SG103 only with `--since`.
pub fn rule_ran(rule: &Rule, scope: &Scope, options: &Options, sql_layer_ran: bool) -> bool {
    match (rule.layer, rule.code) {
        (Layer::Sql, _) => sql_layer_ran,
        (_, "SG301" | "SG302") => matches!(options.dialect, None | Some(Dialect::Postgresql)),
        (_, "SG103") => scope.knows_production(),
        _ => true,
    }
}

/// Applies each revision's `shiftguard_lint_disable` (reporting entries that disabled nothing,
/// among the rules that ran), drops SQL-layer findings whose operations twin reported on the same
/// revision, and orders the findings by revision (topologically), line and code.
pub fn finish(
    project: &Project,
    scope: &Scope,
    mut findings: Vec<Finding>,
    ran: impl Fn(&Rule) -> bool,
) -> Result<Vec<Finding>, DisableError> {
    // Before the disables: disabling an operations rule must not bring its SQL twin back.
    let reported: Vec<(RevisionIndex, &str)> = findings
        .iter()
        .filter(|f| f.rule.layer == Layer::Operations)
        .map(|f| (f.revision, f.rule.code))
        .collect();

    for index in scope.revisions(&project.graph) {
        let file = &project.files[index];
        let Some(disable) = &file.parsed.lint_disable else {
            continue;
        };
        for entry in &disable.value {
            let disabled = find_rule(entry).ok_or_else(|| DisableError {
                file: file.path.display().to_string(),
                line: disable.line,
                rule: entry.clone(),
            })?;
            let before = findings.len();
            findings.retain(|f| !(f.revision == index && f.rule == disabled));
            if findings.len() == before && ran(disabled) {
                findings.push(Finding {
                    rule: rule("SG001"),
                    revision: index,
                    line: disable.line,
                    message: format!(
                        "`{}` ({}) is disabled here but reports nothing in this revision",
                        disabled.code, disabled.name
                    ),
                });
            }
        }
    }
    findings.retain(|f| {
        f.rule
            .same_as
            .is_none_or(|twin| !reported.contains(&(f.revision, twin)))
    });

    let position: HashMap<RevisionIndex, usize> = project
        .graph
        .topological()
        .enumerate()
        .map(|(position, index)| (index, position))
        .collect();
    findings.sort_by(|a, b| {
        (position[&a.revision], a.line, a.rule.code).cmp(&(
            position[&b.revision],
            b.line,
            b.rule.code,
        ))
    });
    findings.dedup();
    Ok(findings)
}

/// `[lint]`: what `shiftguard lint` cannot see in the revision files.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LintConfig {
    /// Tables too large for a data change inside a migration (rule SG402); `"*"` for all.
    #[serde(default)]
    pub large_tables: Vec<String>,
}

#[cfg(test)]
mod tests;
