//! The two approvals after a traffic shift, as pure decisions (DESIGN.md steps 5 and 6):
//!
//! * **cutover**: flip the flag only when the backfills are complete now, the named checks hold,
//!   and the way back is open (the previous version is still published and fits the schema);
//! * **contract**: apply contract revision C only when every version that can still run, of the
//!   app and of every function sharing the database, is compatible with the database at C, no
//!   traffic shift is in progress, and the backfills the contract depends on are complete.

use serde::Serialize;

use crate::release::gate::{
    BackfillNow, Decision, GateResult, GateVerdict, VersionStamp, backfill_gates, version_fits,
};
use crate::schema::compat::{DatabaseState, UnknownDatabaseRevision};
use crate::schema::graph::RevisionGraph;

/// A version that can still run, and why shiftguard thinks so.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LiveVersion {
    pub function: String,
    pub stamp: VersionStamp,
    /// E.g. `alias live (primary)`, `invoked 12 times in the last 60 min`,
    /// `event source mapping 5f1c…`, `provisioned concurrency on alias live`.
    pub because: Vec<String>,
}

/// An alias that still splits traffic between versions.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Shift {
    pub function: String,
    pub alias: String,
    pub primary: String,
    /// Additional versions and their weights.
    pub additional: Vec<(String, f64)>,
}

/// The database as it would be after `alembic upgrade C`: today's heads plus C.
pub fn state_after<S: AsRef<str>>(
    graph: &RevisionGraph,
    heads: &[S],
    revision: &str,
) -> Result<DatabaseState, UnknownDatabaseRevision> {
    let mut with = heads
        .iter()
        .map(|h| h.as_ref().to_owned())
        .collect::<Vec<_>>();
    with.push(revision.to_owned());
    DatabaseState::new(graph, &with)
}

/// Per live version: the rule against `state`, the gate named `<role>:<function>:<version>`,
/// with why the version counts as live.
fn live_version_gates(
    graph: &RevisionGraph,
    state: &DatabaseState,
    role: &str,
    live: &[LiveVersion],
) -> Vec<GateResult> {
    live.iter()
        .map(|v| {
            let name = format!("{role}:{}:{}", v.function, v.stamp.version);
            let mut gate = version_fits(graph, state, name, &v.stamp);
            if let GateVerdict::Fail(reason) = &mut gate.verdict {
                reason.push_str(&format!(" (live: {})", v.because.join(", ")));
            }
            gate
        })
        .collect()
}

/// `traffic:<function>:<alias>`: the alias is not splitting traffic.
fn traffic_gate(shift: &Shift, then: &str) -> GateResult {
    let verdict = if shift.additional.is_empty() {
        GateVerdict::Pass
    } else {
        let weights: Vec<String> = shift
            .additional
            .iter()
            .map(|(v, w)| format!("version {v} at {:.0}%", w * 100.0))
            .collect();
        GateVerdict::Fail(format!(
            "alias {}:{} is still shifting traffic (primary {}, {}): {then} after the shift ends",
            shift.function,
            shift.alias,
            shift.primary,
            weights.join(", ")
        ))
    };
    GateResult::new(
        format!("traffic:{}:{}", shift.function, shift.alias),
        verdict,
    )
}

/// The contract gate, against `after` (the database simulated at the contract revision).
/// `shifts`: the aliases that must not be splitting traffic.
pub fn contract(
    graph: &RevisionGraph,
    after: &DatabaseState,
    live: &[LiveVersion],
    shifts: &[Shift],
    backfills: (&[String], &[BackfillNow]),
    checks: Vec<GateResult>,
) -> Decision {
    let mut gates: Vec<GateResult> = shifts
        .iter()
        .map(|shift| traffic_gate(shift, "contract"))
        .collect();
    gates.extend(live_version_gates(graph, after, "live", live));
    gates.extend(backfill_gates(backfills.0, backfills.1));
    gates.extend(checks);
    Decision {
        gates,
        inconclusive_passes: false,
    }
}

/// The cutover gate: the shift is over, backfills complete now, the checks hold, and the
/// rollback path is open: `rollback` is the version to go back to, or why there is none; it
/// must still be compatible with the database as it is.
pub fn cutover(
    graph: &RevisionGraph,
    now: &DatabaseState,
    shift: &Shift,
    rollback: Result<&VersionStamp, String>,
    backfills: (&[String], &[BackfillNow]),
    checks: Vec<GateResult>,
) -> Decision {
    let mut gates = vec![traffic_gate(shift, "cut over")];
    gates.extend(backfill_gates(backfills.0, backfills.1));
    gates.extend(checks);
    gates.push(match rollback {
        Err(reason) => GateResult::new(
            format!("rollback:{}", shift.function),
            GateVerdict::Fail(reason),
        ),
        Ok(stamp) => {
            let name = format!("rollback:{}:{}", shift.function, stamp.version);
            version_fits(graph, now, name, stamp)
        }
    });
    Decision {
        gates,
        inconclusive_passes: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backfill::Key;
    use crate::release::gate::Overall;
    use crate::schema::revision::{Phase, Revision};

    /// a (expand) -> b (expand) -> c (contract, tolerates builds at b and later).
    fn graph() -> RevisionGraph {
        let mut c = Revision::for_test("c", &["b"], Phase::Contract);
        c.requires_app_at_least = Some("b".to_owned());
        RevisionGraph::new(vec![
            Revision::for_test("a", &[], Phase::Expand),
            Revision::for_test("b", &["a"], Phase::Expand),
            c,
        ])
        .expect("graph")
    }

    fn live(version: &str, built: Option<&str>, because: &str) -> LiveVersion {
        LiveVersion {
            function: "api".into(),
            stamp: VersionStamp {
                version: version.into(),
                schema_revision: built.map(str::to_owned),
                required_backfills: vec![],
            },
            because: vec![because.into()],
        }
    }

    #[test]
    fn contract_blocks_on_every_live_version_that_cannot_run_at_c() {
        let graph = graph();
        let after = state_after(&graph, &["b"], "c").expect("known");
        let settled = Shift {
            function: "api".into(),
            alias: "live".into(),
            primary: "2".into(),
            additional: vec![],
        };
        let none: (&[String], &[BackfillNow]) = (&[], &[]);
        let ok = contract(
            &graph,
            &after,
            &[live("2", Some("b"), "alias live (primary)")],
            std::slice::from_ref(&settled),
            none,
            vec![],
        );
        assert_eq!(ok.overall(), Overall::Pass, "{}", ok.failures());

        let old = contract(
            &graph,
            &after,
            &[
                live("2", Some("b"), "alias live (primary)"),
                live("1", Some("a"), "invoked 12 times in the last 60 min"),
                live("0", None, "event source mapping e1"),
            ],
            std::slice::from_ref(&settled),
            none,
            vec![],
        );
        assert_eq!(old.overall(), Overall::Fail);
        let failures = old.failures();
        assert!(
            failures.contains("live:api:1: FAIL: version 1: "),
            "{failures}"
        );
        assert!(
            failures.contains("(live: invoked 12 times in the last 60 min)"),
            "{failures}"
        );
        assert!(
            failures.contains("live:api:0: FAIL: version 0 carries no SHIFTGUARD_SCHEMA_REVISION"),
            "{failures}"
        );

        let shifting = Shift {
            additional: vec![("1".into(), 0.1)],
            ..settled
        };
        let blocked = contract(
            &graph,
            &after,
            &[live("2", Some("b"), "alias live (primary)")],
            &[shifting],
            none,
            vec![],
        );
        assert!(
            blocked.failures().contains(
                "traffic:api:live: FAIL: alias api:live is still shifting traffic (primary 2, version 1 at 10%)"
            ),
            "{}",
            blocked.failures()
        );
    }

    #[test]
    fn cutover_needs_backfills_checks_and_a_way_back() {
        let graph = graph();
        let now = DatabaseState::new(&graph, &["b"]).expect("known");
        let required = ["fill".to_owned()];
        let pending = [BackfillNow {
            name: "fill".into(),
            first_pending_key: Some(crate::backfill::ShownKey::Shown(Key::int(41))),
        }];
        let done = [BackfillNow {
            name: "fill".into(),
            first_pending_key: None,
        }];
        let previous = live("1", Some("a"), "").stamp;
        let settled = Shift {
            function: "api".into(),
            alias: "live".into(),
            primary: "2".into(),
            additional: vec![],
        };
        let blocked = cutover(
            &graph,
            &now,
            &settled,
            Ok(&previous),
            (&required, &pending),
            vec![],
        );
        assert_eq!(blocked.overall(), Overall::Fail);
        assert!(blocked.failures().contains("backfill:fill: FAIL"));
        let open = cutover(
            &graph,
            &now,
            &settled,
            Ok(&previous),
            (&required, &done),
            vec![GateResult::new(
                "check:x",
                GateVerdict::Inconclusive("no row".into()),
            )],
        );
        assert_eq!(open.overall(), Overall::Inconclusive);
        let gone = cutover(
            &graph,
            &now,
            &settled,
            Err("api has no published version below 2".into()),
            (&required, &done),
            vec![],
        );
        assert!(
            gone.failures()
                .contains("rollback:api: FAIL: api has no published version below 2"),
            "{}",
            gone.failures()
        );
        let shifting = Shift {
            additional: vec![("3".into(), 0.1)],
            ..settled
        };
        let mid = cutover(
            &graph,
            &now,
            &shifting,
            Ok(&previous),
            (&required, &done),
            vec![],
        );
        assert!(
            mid.failures().contains("traffic:api:live: FAIL: alias api:live is still shifting traffic (primary 2, version 3 at 10%): cut over after the shift ends"),
            "{}",
            mid.failures()
        );
    }
}
