//! The decisions of a rehearsal (`shiftguard rehearse`): which revisions a release applies and in
//! what order, what an app build's test result means next to the rule's prediction, which
//! revision a wrong prediction points at, and which locks a step took are findings.
//!
//! The rule *predicts* whether a build fits the schema after each step; the build's own tests
//! *confirm* it. A build that fits and fails means a revision's phase is declared or inferred
//! wrongly: the canary would break production.

use std::fmt;

use serde::Serialize;

use crate::schema::alembic::{Located, RevisionFile, parse_revision_file};
use crate::schema::compat::DatabaseState;
use crate::schema::graph::{RevisionGraph, RevisionIndex};
use crate::schema::phase::decide;
use crate::schema::revision::{Phase, PhaseSource};

/// The revisions a release applies from `since`, one step each, in topological order (a merge
/// after both its parents; branches one revision at a time).
pub fn steps(graph: &RevisionGraph, since: &[RevisionIndex]) -> Vec<RevisionIndex> {
    let applied = graph.ancestors(since.iter().copied());
    graph
        .topological()
        .filter(|&index| !applied.contains(index))
        .collect()
}

/// What a build's test result says about the rule's prediction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Confirmation {
    /// The rule said it fits, and its tests pass.
    FitsPasses,
    /// The rule said it fits, and its tests fail: the rule was wrong about a revision.
    FitsFails,
    /// The rule refused it, and its tests fail: as expected.
    RefusedFails,
    /// The rule refused it, and its tests pass: the window is conservative.
    RefusedPasses,
}

impl Confirmation {
    pub fn of(fits: bool, passed: bool) -> Self {
        match (fits, passed) {
            (true, true) => Confirmation::FitsPasses,
            (true, false) => Confirmation::FitsFails,
            (false, false) => Confirmation::RefusedFails,
            (false, true) => Confirmation::RefusedPasses,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Confirmation::FitsPasses => "fits+passes",
            Confirmation::FitsFails => "fits+FAILS",
            Confirmation::RefusedFails => "refused+fails",
            Confirmation::RefusedPasses => "refused+passes",
        }
    }

    /// Only a prediction the tests contradict in the unsafe direction is an error.
    pub fn is_error(self) -> bool {
        self == Confirmation::FitsFails
    }
}

impl fmt::Display for Confirmation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The finding for a build the rule said fits but whose tests fail after `step` (`None`: at
/// the starting point); `passed_before`: its tests passed before this step. Names the revision
/// whose phase is wrong, what was declared or inferred, and what would have made the rule right.
///
/// A suggested change is one shiftguard itself accepts: a declaration is offered only when the
/// revision's file, with it, passes the phase validation `shiftguard manifest` runs, and a
/// suggested operation is parsed and classified as an expand before it is offered. `files` holds
/// each revision's parsed file, indexed like the graph (empty when there are none to read).
pub fn misjudged(
    graph: &RevisionGraph,
    files: &[RevisionFile],
    build: RevisionIndex,
    step: Option<RevisionIndex>,
    state: &DatabaseState,
    passed_before: bool,
) -> String {
    let build_id = &graph.revision(build).id;
    let built_on = graph.ancestors([build]);
    match step.filter(|&s| !built_on.contains(s)) {
        Some(step) if passed_before => {
            let revision = graph.revision(step);
            let what = described(revision.phase, revision.phase_source);
            return match (revision.phase, &revision.requires_app_at_least) {
                (Phase::Contract, Some(oldest)) => format!(
                    "revision {} ({what}) declares shiftguard_requires_app_at_least = \"{oldest}\", which lets build {build_id} through, but the build breaks after it: raise it to the oldest build that passes",
                    revision.id
                ),
                // The build is older than the step that broke it: to that build, the step is a
                // contract, whatever it was called (a declaration every file may carry).
                _ => format!(
                    "revision {} ({what}) broke build {build_id}, which the rule said tolerates it: a revision that breaks the builds made before it is a contract; declare shiftguard_phase = \"contract\" in it (and shiftguard_requires_app_at_least = the oldest build that passes), so the contract gate waits for those builds to be gone",
                    revision.id
                ),
            };
        }
        Some(_) => {
            return format!(
                "build {build_id}'s tests failed before this step as well: this step is not to blame; an earlier one is, or the tests fail on their own"
            );
        }
        None => {}
    }
    // The build descends from every applied step: it may need a revision the rule thought it
    // could do without (a contract it descends from that is not applied yet).
    let unapplied: Vec<RevisionIndex> = graph
        .topological()
        .filter(|&i| built_on.contains(i) && !state.applied().contains(i))
        .collect();
    if unapplied.is_empty() {
        return format!(
            "build {build_id} fails on a schema that has every revision it was built at: no phase explains it; its tests fail on their own"
        );
    }
    let named: Vec<String> = unapplied
        .iter()
        .map(|&i| {
            let revision = graph.revision(i);
            format!(
                "{} ({})",
                revision.id,
                described(revision.phase, revision.phase_source)
            )
        })
        .collect();
    let fixes: Vec<String> = unapplied
        .iter()
        .map(|&i| fix_for_needed(graph, files, state, i, build_id))
        .collect();
    format!(
        "build {build_id} fails although every expand revision it descends from is applied; it may need {}, which the rule let it run without: {}",
        named.join(", "),
        fixes.join("; ")
    )
}

/// What to change when a build needs `needed`, a revision the rule let it run without: the
/// expand declaration where the file passes validation with it; else, for a column the
/// revision drops that is NOT NULL without a default, the operation that makes it optional in
/// an expand before it; else splitting the revision.
fn fix_for_needed(
    graph: &RevisionGraph,
    files: &[RevisionFile],
    state: &DatabaseState,
    needed: RevisionIndex,
    build_id: &str,
) -> String {
    let id = &graph.revision(needed).id;
    let Some(file) = files.get(needed) else {
        return split(id, build_id);
    };
    if passes_with_declaration(file, Phase::Expand) {
        return format!("declare shiftguard_phase = \"expand\" in {id}");
    }
    let relaxations: Vec<String> = file
        .operations
        .iter()
        .filter(|op| op.name == "drop_column")
        .filter_map(|op| {
            let (table, column) = (op.table.as_deref()?, op.column.as_deref()?);
            let facts = column_facts(graph, files, state, table, column)?;
            (facts.nullable == Some(false) && !facts.has_server_default)
                .then(|| relax_not_null(table, column, facts.type_.as_deref()))
                .flatten()
                .map(|call| {
                    format!(
                        "{id} drops {table}.{column}, which is NOT NULL without a default until then, so a build that no longer writes it cannot insert: make it optional in an expand revision before {id}: `{call}` (on SQLite inside `op.batch_alter_table`), and keep {id} a contract"
                    )
                })
        })
        .collect();
    if relaxations.is_empty() {
        split(id, build_id)
    } else {
        relaxations.join("; ")
    }
}

fn split(id: &str, build_id: &str) -> String {
    format!(
        "split {id}: what build {build_id} needs goes into an expand revision before it, the removal stays a contract (declaring {id} an expand would fail validation or let it run before the old build is gone)"
    )
}

/// Whether `file` passes the phase validation with `phase` declared.
fn passes_with_declaration(file: &RevisionFile, phase: Phase) -> bool {
    let mut declared = file.clone();
    declared.declared_phase = Some(Located {
        value: phase,
        line: 1,
    });
    decide(&declared).is_ok()
}

/// A column as the applied revisions leave it.
#[derive(Debug, Default)]
struct ColumnFacts {
    nullable: Option<bool>,
    has_server_default: bool,
    type_: Option<String>,
}

/// What the applied revisions' operations say about `table.column` (`None`: no applied
/// operation defines it, e.g. it was made by raw SQL).
fn column_facts(
    graph: &RevisionGraph,
    files: &[RevisionFile],
    state: &DatabaseState,
    table: &str,
    column: &str,
) -> Option<ColumnFacts> {
    let mut facts: Option<ColumnFacts> = None;
    let applied = graph
        .topological()
        .filter(|&i| state.applied().contains(i))
        .filter_map(|i| files.get(i));
    for operation in applied.flat_map(|file| &file.operations) {
        if operation.table.as_deref() != Some(table) {
            continue;
        }
        match operation.name.as_str() {
            "create_table" | "add_column" => {
                if let Some(spec) = operation.columns.iter().find(|c| c.name == column) {
                    facts = Some(ColumnFacts {
                        nullable: spec.nullable,
                        has_server_default: spec.has_server_default,
                        type_: spec.type_.clone(),
                    });
                }
            }
            "alter_column" if operation.column.as_deref() == Some(column) => {
                if let Some(facts) = facts.as_mut() {
                    facts.nullable = operation.nullable.or(facts.nullable);
                    facts.has_server_default |= operation.has_server_default;
                }
            }
            "drop_column" if operation.column.as_deref() == Some(column) => facts = None,
            "drop_table" => facts = None,
            _ => {}
        }
    }
    facts
}

/// SQLAlchemy's generic types, which `sqlalchemy` exports under these names.
const GENERIC_TYPES: &[&str] = &[
    "BigInteger",
    "Boolean",
    "Date",
    "DateTime",
    "Double",
    "Float",
    "Integer",
    "Interval",
    "JSON",
    "LargeBinary",
    "Numeric",
    "SmallInteger",
    "String",
    "Text",
    "Time",
    "Unicode",
    "UnicodeText",
    "Uuid",
];

/// `op.alter_column(…, nullable=True)` for the column, when it parses and classifies as an
/// expand (checked, not assumed: it is printed as advice).
fn relax_not_null(table: &str, column: &str, type_: Option<&str>) -> Option<String> {
    // MySQL needs the type; only SQLAlchemy's generic types are spelled `sa.…` for sure.
    let existing = type_
        .filter(|t| GENERIC_TYPES.contains(&t.split('(').next().unwrap_or_default()))
        .map(|t| format!(", existing_type=sa.{t}"))
        .unwrap_or_default();
    let call = format!(
        "op.alter_column({table:?}, {column:?}{existing}, existing_nullable=False, nullable=True)"
    );
    let source = format!("revision = 'x'\ndown_revision = None\n\ndef upgrade():\n    {call}\n");
    let parsed = parse_revision_file(&source).ok()?;
    (decide(&parsed).ok()? == (Phase::Expand, PhaseSource::Inferred)).then_some(call)
}

/// `expand, declared` / `contract, inferred from its operations` / `contract, assumed`.
pub fn described(phase: Phase, source: PhaseSource) -> String {
    let source = match source {
        PhaseSource::Declared => "declared",
        PhaseSource::Inferred => "inferred from its operations",
        PhaseSource::Assumed => "assumed: nothing could be inferred",
    };
    format!("{phase}, {source}")
}

/// PostgreSQL's table lock modes, weakest first (the order of their conflicts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LockMode {
    AccessShare,
    RowShare,
    RowExclusive,
    ShareUpdateExclusive,
    Share,
    ShareRowExclusive,
    Exclusive,
    AccessExclusive,
}

impl LockMode {
    /// From `pg_locks.mode` (`AccessExclusiveLock`, …).
    pub fn parse(mode: &str) -> Option<Self> {
        use LockMode::*;
        Some(match mode {
            "AccessShareLock" => AccessShare,
            "RowShareLock" => RowShare,
            "RowExclusiveLock" => RowExclusive,
            "ShareUpdateExclusiveLock" => ShareUpdateExclusive,
            "ShareLock" => Share,
            "ShareRowExclusiveLock" => ShareRowExclusive,
            "ExclusiveLock" => Exclusive,
            "AccessExclusiveLock" => AccessExclusive,
            _ => return None,
        })
    }

    /// The SQL name (`ACCESS EXCLUSIVE`).
    pub fn name(self) -> &'static str {
        use LockMode::*;
        match self {
            AccessShare => "ACCESS SHARE",
            RowShare => "ROW SHARE",
            RowExclusive => "ROW EXCLUSIVE",
            ShareUpdateExclusive => "SHARE UPDATE EXCLUSIVE",
            Share => "SHARE",
            ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            Exclusive => "EXCLUSIVE",
            AccessExclusive => "ACCESS EXCLUSIVE",
        }
    }

    /// What the app's traffic cannot do while the lock is held: `None` when it blocks neither
    /// reads nor writes (SHARE UPDATE EXCLUSIVE and weaker: `CREATE INDEX CONCURRENTLY`).
    pub fn blocks(self) -> Option<&'static str> {
        match self {
            LockMode::AccessExclusive => Some("reads and writes"),
            mode if mode >= LockMode::Share => Some("writes"),
            _ => None,
        }
    }
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The strongest lock a step held on one table, and for how long it was seen held.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HeldLock {
    pub table: String,
    pub mode: LockMode,
    /// From the first sample that saw it to the last.
    pub held_ms: f64,
}

/// The locks that are findings: one that blocks the app's traffic, on a table that holds rows,
/// held for at least `threshold_ms`.
pub fn lock_findings(
    locks: &[HeldLock],
    has_rows: impl Fn(&str) -> bool,
    threshold_ms: f64,
) -> impl Iterator<Item = (&HeldLock, &'static str)> {
    locks.iter().filter_map(move |lock| {
        let blocks = lock.mode.blocks()?;
        (lock.held_ms >= threshold_ms && has_rows(&lock.table)).then_some((lock, blocks))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::revision::Revision;

    /// base -> expand -> (audit | index) -> merge -> contract (tolerated from merge).
    fn graph() -> RevisionGraph {
        let mut contract = Revision::for_test("contract", &["merge"], Phase::Contract);
        contract.requires_app_at_least = Some("merge".to_owned());
        RevisionGraph::new(vec![
            Revision::for_test("base", &[], Phase::Expand),
            Revision::for_test("expand", &["base"], Phase::Expand),
            Revision::for_test("audit", &["expand"], Phase::Expand),
            Revision::for_test("index", &["expand"], Phase::Expand),
            Revision::for_test("merge", &["audit", "index"], Phase::Expand),
            contract,
        ])
        .expect("graph")
    }

    fn ids(graph: &RevisionGraph, indexes: &[RevisionIndex]) -> Vec<String> {
        indexes
            .iter()
            .map(|&i| graph.revision(i).id.clone())
            .collect()
    }

    fn at(graph: &RevisionGraph, id: &str) -> RevisionIndex {
        graph.index_of(id).expect(id)
    }

    #[test]
    fn steps_are_every_unapplied_revision_parents_first() {
        let g = graph();
        let order = ids(&g, &steps(&g, &[at(&g, "base")]));
        assert_eq!(order.len(), 5, "{order:?}");
        let position = |id: &str| order.iter().position(|s| s == id).expect(id);
        assert!(position("expand") < position("audit"));
        assert!(position("expand") < position("index"));
        assert!(position("audit") < position("merge") && position("index") < position("merge"));
        assert_eq!(order.last().map(String::as_str), Some("contract"));
        // Several heads as the starting point: only what neither has applied.
        let from_both = steps(&g, &[at(&g, "audit"), at(&g, "index")]);
        assert_eq!(ids(&g, &from_both), ["merge", "contract"]);
        assert!(steps(&g, &[at(&g, "contract")]).is_empty());
    }

    #[test]
    fn confirmations_cover_the_four_outcomes_and_only_fits_fails_is_an_error() {
        let all = [(true, true), (true, false), (false, false), (false, true)]
            .map(|(fits, passed)| Confirmation::of(fits, passed));
        assert_eq!(
            all.map(Confirmation::label),
            [
                "fits+passes",
                "fits+FAILS",
                "refused+fails",
                "refused+passes"
            ]
        );
        assert_eq!(all.map(Confirmation::is_error), [false, true, false, false]);
    }

    #[test]
    fn a_step_that_breaks_an_older_build_is_named_as_a_contract() {
        let g = graph();
        let state = DatabaseState::new(&g, &["audit"]).expect("state");
        let finding = misjudged(&g, &[], at(&g, "base"), Some(at(&g, "audit")), &state, true);
        assert!(
            finding.starts_with("revision audit (expand, declared) broke build base"),
            "{finding}"
        );
        assert!(
            finding.contains("declare shiftguard_phase = \"contract\""),
            "{finding}"
        );
        // Failing before the step already: the step is not blamed.
        let finding = misjudged(
            &g,
            &[],
            at(&g, "base"),
            Some(at(&g, "audit")),
            &state,
            false,
        );
        assert!(finding.contains("this step is not to blame"), "{finding}");
        // A contract whose declared tolerance let the build through: raise it.
        let state = DatabaseState::new(&g, &["contract"]).expect("state");
        let finding = misjudged(
            &g,
            &[],
            at(&g, "merge"),
            Some(at(&g, "contract")),
            &state,
            true,
        );
        assert!(
            finding.contains("declares shiftguard_requires_app_at_least = \"merge\", which lets build merge through"),
            "{finding}"
        );
    }

    #[test]
    fn a_newer_build_that_fails_points_at_the_contract_it_descends_from() {
        let g = graph();
        let state = DatabaseState::new(&g, &["merge"]).expect("state");
        // The build made at the contract fails before the contract is applied.
        let finding = misjudged(
            &g,
            &[],
            at(&g, "contract"),
            Some(at(&g, "merge")),
            &state,
            true,
        );
        assert!(
            finding.contains("it may need contract (contract, declared)"),
            "{finding}"
        );
        // Without its file, no declaration can be checked: the advice is to split it.
        assert!(finding.contains("split contract:"), "{finding}");
        assert!(!finding.contains("shiftguard_phase"), "{finding}");
        // Nothing unapplied to blame: the tests fail on their own.
        let state = DatabaseState::new(&g, &["contract"]).expect("state");
        let finding = misjudged(&g, &[], at(&g, "contract"), None, &state, true);
        assert!(finding.contains("no phase explains it"), "{finding}");
    }

    /// Graph and parsed files of revision sources `(id, parent, upgrade body)`.
    fn project(sources: &[(&str, Option<&str>, &str)]) -> (RevisionGraph, Vec<RevisionFile>) {
        let mut revisions = Vec::new();
        let mut files = Vec::new();
        for (id, parent, body) in sources {
            let down = parent.map_or("None".to_owned(), |p| format!("'{p}'"));
            let source =
                format!("revision = '{id}'\ndown_revision = {down}\n\ndef upgrade():\n{body}\n");
            files.push(parse_revision_file(&source).expect("parses"));
            revisions.push(crate::schema::scan::revision_from_source(&source, id).expect("valid"));
        }
        (RevisionGraph::new(revisions).expect("graph"), files)
    }

    #[test]
    fn the_advice_for_a_needed_contract_is_what_validation_accepts() {
        let (g, files) = project(&[
            (
                "orders",
                None,
                "    op.create_table('orders', sa.Column('id', sa.Integer(), primary_key=True), sa.Column('customer_email', sa.String(200), nullable=False))",
            ),
            (
                "cid",
                Some("orders"),
                "    op.add_column('orders', sa.Column('customer_id', sa.Integer()))",
            ),
            (
                "drop",
                Some("cid"),
                "    op.drop_column('orders', 'customer_email')",
            ),
            ("opaque", Some("drop"), "    op.execute(some_sql)"),
        ]);
        let state = DatabaseState::new(&g, &["cid"]).expect("state");
        let finding = misjudged(
            &g,
            &files,
            at(&g, "drop"),
            Some(at(&g, "cid")),
            &state,
            true,
        );
        // Declaring the drop an expand is what `shiftguard manifest` refuses: not offered.
        assert!(
            !finding.contains("shiftguard_phase = \"expand\""),
            "{finding}"
        );
        let call = "op.alter_column(\"orders\", \"customer_email\", existing_type=sa.String(200), existing_nullable=False, nullable=True)";
        assert!(finding.contains(call), "{finding}");
        // Followed as printed (the call added to the expand before it), the file still passes
        // as an expand.
        let mut cid = files[at(&g, "cid")].clone();
        let extra = parse_revision_file(&format!(
            "revision = 'x'\ndown_revision = None\ndef upgrade():\n    {call}\n"
        ))
        .expect("parses");
        cid.operations.extend(extra.operations);
        assert_eq!(decide(&cid), Ok((Phase::Expand, PhaseSource::Inferred)));
        // A revision assumed a contract (nothing could be inferred) may be declared an expand.
        let state = DatabaseState::new(&g, &["drop"]).expect("state");
        let finding = misjudged(
            &g,
            &files,
            at(&g, "opaque"),
            Some(at(&g, "drop")),
            &state,
            true,
        );
        assert!(
            finding.contains("declare shiftguard_phase = \"expand\" in opaque"),
            "{finding}"
        );
        // A dropped column that was nullable all along explains nothing: split it.
        let (g, files) = project(&[
            (
                "orders",
                None,
                "    op.create_table('orders', sa.Column('id', sa.Integer(), primary_key=True), sa.Column('note', sa.Text()))",
            ),
            (
                "drop",
                Some("orders"),
                "    op.drop_column('orders', 'note')",
            ),
        ]);
        let state = DatabaseState::new(&g, &["orders"]).expect("state");
        let finding = misjudged(&g, &files, at(&g, "drop"), None, &state, true);
        assert!(finding.contains("split drop:"), "{finding}");
    }

    #[test]
    fn lock_modes_order_and_what_they_block() {
        let concurrently = LockMode::parse("ShareUpdateExclusiveLock").expect("mode");
        let index = LockMode::parse("ShareLock").expect("mode");
        let alter = LockMode::parse("AccessExclusiveLock").expect("mode");
        assert!(concurrently < index && index < alter);
        assert_eq!(concurrently.blocks(), None);
        assert_eq!(index.blocks(), Some("writes"));
        assert_eq!(alter.blocks(), Some("reads and writes"));
        assert_eq!(alter.to_string(), "ACCESS EXCLUSIVE");
        assert_eq!(LockMode::parse("SIReadLock"), None);
    }

    #[test]
    fn only_blocking_locks_on_tables_with_rows_held_past_the_threshold_are_findings() {
        let lock = |table: &str, mode, held_ms| HeldLock {
            table: table.to_owned(),
            mode,
            held_ms,
        };
        let locks = [
            lock("users", LockMode::Share, 1500.0),
            lock("users", LockMode::ShareUpdateExclusive, 9000.0),
            lock("empty", LockMode::AccessExclusive, 5000.0),
            lock("audit", LockMode::AccessExclusive, 20.0),
        ];
        let findings: Vec<_> = lock_findings(&locks, |t| t != "empty", 1000.0)
            .map(|(l, blocks)| (l.table.as_str(), l.mode, blocks))
            .collect();
        assert_eq!(findings, [("users", LockMode::Share, "writes")]);
        assert_eq!(lock_findings(&locks, |_| true, 0.0).count(), 3);
    }
}
