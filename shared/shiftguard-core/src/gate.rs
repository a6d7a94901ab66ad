//! Gates: the checks that stand before a traffic step, as values. A gate passes, fails with a
//! reason, or is inconclusive (not enough to judge on); `Result` is kept for failing to *decide*
//! (I/O), which callers turn into a failure too: when shiftguard cannot decide, the answer is
//! "not safe".

use std::fmt;

use serde::Serialize;

use crate::compat::{DatabaseState, check_build};
use crate::graph::RevisionGraph;

/// A gate's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", content = "reason", rename_all = "lowercase")]
pub enum GateVerdict {
    Pass,
    Fail(String),
    Inconclusive(String),
}

/// One evaluated gate: which, about what, and the answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GateResult {
    /// The gate's name, e.g. `schema:target`.
    pub gate: String,
    #[serde(flatten)]
    pub verdict: GateVerdict,
}

impl GateResult {
    fn new(gate: impl Into<String>, verdict: GateVerdict) -> Self {
        GateResult {
            gate: gate.into(),
            verdict,
        }
    }
}

impl fmt::Display for GateResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.verdict {
            GateVerdict::Pass => write!(f, "{}: pass", self.gate),
            GateVerdict::Fail(reason) => write!(f, "{}: FAIL: {reason}", self.gate),
            GateVerdict::Inconclusive(reason) => {
                write!(f, "{}: inconclusive: {reason}", self.gate)
            }
        }
    }
}

/// What a published Lambda version says about itself (from its environment snapshot).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VersionStamp {
    /// The version number (or `$LATEST`).
    pub version: String,
    /// `SHIFTGUARD_SCHEMA_REVISION`: the Alembic head the build was made against.
    pub schema_revision: Option<String>,
    /// `SHIFTGUARD_REQUIRED_BACKFILLS`: backfills that must be complete before it takes traffic.
    pub required_backfills: Vec<String>,
}

/// A backfill as the database shows it now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackfillNow {
    pub name: String,
    /// The first key still matching `pending` (`None`: nothing pending now).
    pub first_pending_key: Option<i64>,
}

/// Rule check for one version: its build revision must be inside the database's window.
/// `role` names it in the gate (`current`, `target`).
pub fn schema_gate(
    graph: &RevisionGraph,
    state: &DatabaseState,
    role: &str,
    stamp: &VersionStamp,
) -> GateResult {
    let gate = format!("schema:{role}");
    let Some(revision) = stamp.schema_revision.as_deref() else {
        return GateResult::new(
            gate,
            GateVerdict::Fail(format!(
                "version {} carries no SHIFTGUARD_SCHEMA_REVISION: its schema needs are unknown",
                stamp.version
            )),
        );
    };
    let Some(build) = graph.index_of(revision) else {
        return GateResult::new(
            gate,
            GateVerdict::Fail(format!(
                "version {} was built at revision {revision}, which the manifest does not contain",
                stamp.version
            )),
        );
    };
    let verdict = check_build(graph, build, state);
    let verdict = if verdict.is_compatible() {
        GateVerdict::Pass
    } else {
        let reasons: Vec<String> = verdict.reasons().iter().map(ToString::to_string).collect();
        GateVerdict::Fail(format!("version {}: {}", stamp.version, reasons.join("; ")))
    };
    GateResult::new(gate, verdict)
}

/// Every backfill `required` names must be complete now: nothing pending.
pub fn backfill_gates(required: &[String], now: &[BackfillNow]) -> Vec<GateResult> {
    required
        .iter()
        .map(|name| {
            let gate = format!("backfill:{name}");
            let verdict = match now.iter().find(|b| &b.name == name) {
                None => GateVerdict::Fail(format!(
                    "backfill {name} is required but not defined in the configuration"
                )),
                Some(BackfillNow {
                    first_pending_key: Some(key),
                    ..
                }) => GateVerdict::Fail(format!(
                    "backfill {name} is not complete: rows are pending from key {key}"
                )),
                Some(_) => GateVerdict::Pass,
            };
            GateResult::new(gate, verdict)
        })
        .collect()
}

/// The gates of one evaluation, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub gates: Vec<GateResult>,
}

impl Decision {
    /// Passes only when every gate passes (inconclusive is not a pass).
    pub fn passed(&self) -> bool {
        self.gates.iter().all(|g| g.verdict == GateVerdict::Pass)
    }

    /// The gates that did not pass, one line.
    pub fn failures(&self) -> String {
        let failing: Vec<String> = self
            .gates
            .iter()
            .filter(|g| g.verdict != GateVerdict::Pass)
            .map(ToString::to_string)
            .collect();
        failing.join("; ")
    }
}

/// The pre-traffic gates: the schema inside the windows of both the current and the target
/// version, and every backfill the target requires complete now.
pub fn pre_traffic(
    graph: &RevisionGraph,
    state: &DatabaseState,
    current: &VersionStamp,
    target: &VersionStamp,
    backfills: &[BackfillNow],
) -> Decision {
    let mut gates = vec![
        schema_gate(graph, state, "current", current),
        schema_gate(graph, state, "target", target),
    ];
    gates.extend(backfill_gates(&target.required_backfills, backfills));
    Decision { gates }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revision::{Phase, PhaseSource, Revision};

    fn graph() -> RevisionGraph {
        let rev = |id: &str, parents: &[&str], phase| Revision {
            id: id.to_owned(),
            parents: parents.iter().map(|p| (*p).to_owned()).collect(),
            depends_on: Vec::new(),
            branch_labels: Vec::new(),
            phase,
            phase_source: PhaseSource::Declared,
            requires_app_at_least: None,
            message: None,
            file: None,
        };
        RevisionGraph::new(vec![
            rev("a", &[], Phase::Expand),
            rev("b", &["a"], Phase::Expand),
            rev("c", &["b"], Phase::Contract),
        ])
        .expect("graph")
    }

    fn stamp(version: &str, revision: Option<&str>, backfills: &[&str]) -> VersionStamp {
        VersionStamp {
            version: version.to_owned(),
            schema_revision: revision.map(str::to_owned),
            required_backfills: backfills.iter().map(|b| (*b).to_owned()).collect(),
        }
    }

    #[test]
    fn pre_traffic_table() {
        let graph = graph();
        let done = BackfillNow {
            name: "fill".into(),
            first_pending_key: None,
        };
        let pending = BackfillNow {
            name: "fill".into(),
            first_pending_key: Some(7),
        };
        // (heads, current, target, backfills now, expected failing gates)
        // (heads, current, target, backfills now, expected failing gates)
        type Row<'a> = (
            &'a [&'a str],
            VersionStamp,
            VersionStamp,
            &'a [BackfillNow],
            &'a [&'a str],
        );
        let table: &[Row] = &[
            (
                &["b"],
                stamp("1", Some("a"), &[]),
                stamp("2", Some("b"), &[]),
                &[],
                &[],
            ),
            (
                &["a"],
                stamp("1", Some("a"), &[]),
                stamp("2", Some("b"), &[]),
                &[],
                &["schema:target"],
            ),
            (
                &["c"],
                stamp("1", Some("a"), &[]),
                stamp("2", Some("b"), &[]),
                &[],
                &["schema:current", "schema:target"],
            ),
            (
                &["b"],
                stamp("1", None, &[]),
                stamp("2", Some("b"), &[]),
                &[],
                &["schema:current"],
            ),
            (
                &["b"],
                stamp("1", Some("a"), &[]),
                stamp("2", Some("zz"), &[]),
                &[],
                &["schema:target"],
            ),
            (
                &["b"],
                stamp("1", Some("a"), &[]),
                stamp("2", Some("b"), &["fill"]),
                std::slice::from_ref(&done),
                &[],
            ),
            (
                &["b"],
                stamp("1", Some("a"), &[]),
                stamp("2", Some("b"), &["fill"]),
                std::slice::from_ref(&pending),
                &["backfill:fill"],
            ),
            (
                &["b"],
                stamp("1", Some("a"), &[]),
                stamp("2", Some("b"), &["other"]),
                std::slice::from_ref(&done),
                &["backfill:other"],
            ),
        ];
        for (heads, current, target, backfills, expected) in table {
            let state = DatabaseState::new(&graph, heads).expect("known heads");
            let decision = pre_traffic(&graph, &state, current, target, backfills);
            let failing: Vec<&str> = decision
                .gates
                .iter()
                .filter(|g| g.verdict != GateVerdict::Pass)
                .map(|g| g.gate.as_str())
                .collect();
            assert_eq!(&failing, expected, "{heads:?} {current:?} {target:?}");
            assert_eq!(decision.passed(), expected.is_empty());
        }
    }

    #[test]
    fn reasons_name_version_revision_and_rule() {
        let graph = graph();
        let state = DatabaseState::new(&graph, &["c"]).expect("known");
        let gate = schema_gate(&graph, &state, "current", &stamp("4", Some("a"), &[]));
        assert_eq!(
            gate.to_string(),
            "schema:current: FAIL: version 4: database has applied contract revision c, which declares no shiftguard_requires_app_at_least, so only builds at or after it tolerate it; build a is older (rule b: contract tolerance)"
        );
        let record = serde_json::to_value(&gate).expect("json");
        assert_eq!(record["gate"], "schema:current");
        assert_eq!(record["verdict"], "fail");
        let missing = schema_gate(&graph, &state, "target", &stamp("5", None, &[]));
        assert_eq!(
            missing.to_string(),
            "schema:target: FAIL: version 5 carries no SHIFTGUARD_SCHEMA_REVISION: its schema needs are unknown"
        );
    }
}
