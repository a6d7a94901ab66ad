//! The compatibility rule: can an app build made at revision B run on a database whose applied
//! set is S?
//!
//! (a) Every `expand`/`data` revision that is an ancestor-or-equal of B is in S: the code's needs
//!     are met. Contract revisions B descends from need not be applied.
//! (b) Every `contract` revision C in S that is not an ancestor-or-equal of B is tolerated by B:
//!     C declares `requires_app_at_least = X` and X is an ancestor-or-equal of B. Undeclared, only
//!     builds at or after C tolerate it.
//!
//! A database revision that the graph does not know cannot be judged; [`DatabaseState::new`]
//! refuses it, so callers fail closed instead of passing.

use std::fmt;

use serde::Serialize;
use thiserror::Error;

use crate::schema::graph::{RevisionGraph, RevisionIndex, RevisionSet};
use crate::schema::revision::Phase;

/// The revisions a database has applied: the closure of its `alembic_version` rows.
#[derive(Clone, Debug)]
pub struct DatabaseState {
    heads: Vec<RevisionIndex>,
    applied: RevisionSet,
}

/// The database is at a revision the migrations do not contain.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error(
    "database is at revision {} which the migrations do not contain (deployed from a newer branch, or the wrong migrations directory?)",
    revisions.join(", ")
)]
pub struct UnknownDatabaseRevision {
    pub revisions: Vec<String>,
}

impl DatabaseState {
    /// The state of a database whose `alembic_version` holds `heads` (empty: nothing applied).
    pub fn new<S: AsRef<str>>(
        graph: &RevisionGraph,
        heads: &[S],
    ) -> Result<Self, UnknownDatabaseRevision> {
        let mut known = Vec::with_capacity(heads.len());
        let mut unknown = Vec::new();
        for head in heads {
            match graph.index_of(head.as_ref()) {
                Some(index) => known.push(index),
                None => unknown.push(head.as_ref().to_owned()),
            }
        }
        if !unknown.is_empty() {
            return Err(UnknownDatabaseRevision { revisions: unknown });
        }
        known.sort_unstable();
        known.dedup();
        let applied = graph.ancestors(known.iter().copied());
        Ok(DatabaseState {
            heads: known,
            applied,
        })
    }

    /// The `alembic_version` rows, resolved.
    pub fn heads(&self) -> &[RevisionIndex] {
        &self.heads
    }

    /// Every applied revision.
    pub fn applied(&self) -> &RevisionSet {
        &self.applied
    }
}

/// Why a build cannot run on a database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Reason {
    /// Rule (a): the build needs an expand/data revision the database has not applied.
    MissingRevision {
        build: String,
        revision: String,
        phase: Phase,
    },
    /// Rule (b): the database has applied a contract revision the build does not tolerate.
    ContractNotTolerated {
        build: String,
        revision: String,
        requires_app_at_least: Option<String>,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::MissingRevision {
                build,
                revision,
                phase,
            } => write!(
                f,
                "build {build} needs {phase} revision {revision}, which the database has not applied (rule a: the build's needs are met)"
            ),
            Reason::ContractNotTolerated {
                build,
                revision,
                requires_app_at_least: Some(oldest),
            } => write!(
                f,
                "database has applied contract revision {revision}, which tolerates builds at or after {oldest}; build {build} is older (rule b: contract tolerance)"
            ),
            Reason::ContractNotTolerated {
                build,
                revision,
                requires_app_at_least: None,
            } => write!(
                f,
                "database has applied contract revision {revision}, which declares no shiftguard_requires_app_at_least, so only builds at or after it tolerate it; build {build} is older (rule b: contract tolerance)"
            ),
        }
    }
}

/// The answer for one build: compatible, or not with every reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Compatible,
    Incompatible(Vec<Reason>),
}

impl Verdict {
    pub fn is_compatible(&self) -> bool {
        matches!(self, Verdict::Compatible)
    }

    pub fn reasons(&self) -> &[Reason] {
        match self {
            Verdict::Compatible => &[],
            Verdict::Incompatible(reasons) => reasons,
        }
    }
}

/// Applies the rule to a build made at `build` (a revision of `graph`) and a database state.
/// Reasons come in topological order of the revisions they name.
pub fn check_build(graph: &RevisionGraph, build: RevisionIndex, state: &DatabaseState) -> Verdict {
    let built_on = graph.ancestors([build]);
    let build_id = &graph.revision(build).id;
    let mut reasons = Vec::new();
    for index in graph.topological() {
        let revision = graph.revision(index);
        let applied = state.applied.contains(index);
        if built_on.contains(index) {
            if !applied && revision.phase.is_needed_by_later_builds() {
                reasons.push(Reason::MissingRevision {
                    build: build_id.clone(),
                    revision: revision.id.clone(),
                    phase: revision.phase,
                });
            }
        } else if applied && revision.phase == Phase::Contract {
            let tolerated = revision
                .requires_app_at_least
                .as_deref()
                .and_then(|oldest| graph.index_of(oldest))
                .is_some_and(|oldest| built_on.contains(oldest));
            if !tolerated {
                reasons.push(Reason::ContractNotTolerated {
                    build: build_id.clone(),
                    revision: revision.id.clone(),
                    requires_app_at_least: revision.requires_app_at_least.clone(),
                });
            }
        }
    }
    if reasons.is_empty() {
        Verdict::Compatible
    } else {
        Verdict::Incompatible(reasons)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::revision::Revision;

    /// base -> e1 (expand) -> c1 (contract, tolerates e1) -> e2 (expand) -> c2 (contract)
    ///      \-> d1 (data, a side branch)
    fn graph() -> RevisionGraph {
        let rev = |id: &str, parents: &[&str], phase: Phase, tolerates: Option<&str>| Revision {
            requires_app_at_least: tolerates.map(str::to_owned),
            ..Revision::for_test(id, parents, phase)
        };
        RevisionGraph::new(vec![
            rev("base", &[], Phase::Expand, None),
            rev("e1", &["base"], Phase::Expand, None),
            rev("c1", &["e1"], Phase::Contract, Some("e1")),
            rev("e2", &["c1"], Phase::Expand, None),
            rev("c2", &["e2"], Phase::Contract, None),
            rev("d1", &["base"], Phase::Data, None),
        ])
        .expect("valid graph")
    }

    /// The rule as a table: database heads, build, expected reasons (rule letter + revision).
    #[test]
    fn rule_table() {
        let table: &[(&[&str], &str, &[&str])] = &[
            // A build on the exact state it was made against.
            (&["e1"], "e1", &[]),
            // Old build, expand applied on top: fine.
            (&["e1"], "base", &[]),
            // New build, its expand missing.
            (&["base"], "e1", &["a:e1"]),
            // Contract c1 applied: tolerated by builds at/after e1 (declared), not by base.
            (&["c1"], "e1", &[]),
            (&["c1"], "base", &["b:c1"]),
            // A build at e2 needs e2 but not c1's and c2's contracts.
            (&["c1"], "e2", &["a:e2"]),
            (&["e2"], "e2", &[]),
            // c2 undeclared: only builds at or after c2 tolerate it.
            (&["c2"], "e2", &["b:c2"]),
            (&["c2"], "c2", &[]),
            (&["c2"], "e1", &["b:c2"]),
            // Two heads: the side branch's data revision is needed only by builds on it.
            (&["e1", "d1"], "e1", &[]),
            (&["e1"], "d1", &["a:d1"]),
            // Empty alembic_version: nothing applied.
            (&[], "base", &["a:base"]),
            // Every reason is listed, not just the first.
            (&["c2"], "d1", &["b:c1", "b:c2", "a:d1"]),
        ];
        let graph = graph();
        for &(heads, build, expected) in table {
            let state = DatabaseState::new(&graph, heads).expect("known heads");
            let build_index = graph.index_of(build).expect("known build");
            let verdict = check_build(&graph, build_index, &state);
            let actual: Vec<String> = verdict
                .reasons()
                .iter()
                .map(|reason| match reason {
                    Reason::MissingRevision { revision, .. } => format!("a:{revision}"),
                    Reason::ContractNotTolerated { revision, .. } => format!("b:{revision}"),
                })
                .collect();
            assert_eq!(actual, expected, "heads {heads:?}, build {build}");
            assert_eq!(verdict.is_compatible(), expected.is_empty());
        }
    }

    #[test]
    fn unknown_database_revision_is_refused() {
        let error = DatabaseState::new(&graph(), &["e1", "f00"]).expect_err("f00 is unknown");
        assert_eq!(error.revisions, ["f00"]);
    }

    #[test]
    fn reasons_name_revision_build_and_rule() {
        let graph = graph();
        let state = DatabaseState::new(&graph, &["c2"]).expect("known");
        let verdict = check_build(&graph, graph.index_of("e1").expect("e1"), &state);
        assert_eq!(
            verdict.reasons()[0].to_string(),
            "database has applied contract revision c2, which declares no shiftguard_requires_app_at_least, so only builds at or after it tolerate it; build e1 is older (rule b: contract tolerance)"
        );
    }
}
