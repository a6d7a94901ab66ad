//! Gates: the checks that stand before a traffic step, as values. A gate passes, fails with a
//! reason, or is inconclusive (not enough to judge on); `Result` is kept for failing to *decide*
//! (I/O), which callers turn into a failure too: when shiftguard cannot decide, the answer is
//! "not safe".

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::backfill::ShownKey;

use crate::schema::compat::{DatabaseState, check_build};
use crate::schema::graph::RevisionGraph;

/// A gate's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", content = "reason", rename_all = "lowercase")]
pub enum GateVerdict {
    Pass,
    Fail(String),
    Inconclusive(String),
}

impl GateVerdict {
    /// The verdict in one word: `pass`, `fail` or `inconclusive`.
    pub fn name(&self) -> &'static str {
        match self {
            GateVerdict::Pass => "pass",
            GateVerdict::Fail(_) => "fail",
            GateVerdict::Inconclusive(_) => "inconclusive",
        }
    }
}

/// One evaluated gate: which, about what, and the answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GateResult {
    /// The gate's name, e.g. `schema:target`.
    pub gate: String,
    #[serde(flatten)]
    pub verdict: GateVerdict,
    /// The measured value, for gates that measure one (checks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// The threshold it was held against, e.g. `<= 0`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<String>,
    /// Observe only (`[gates] observe`, `SHIFTGUARD_OBSERVE_GATES`): evaluated, recorded and
    /// published, but its verdict does not decide.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub observed: bool,
}

impl GateResult {
    pub fn new(gate: impl Into<String>, verdict: GateVerdict) -> Self {
        GateResult {
            gate: gate.into(),
            verdict,
            value: None,
            threshold: None,
            observed: false,
        }
    }

    /// The same result, with what was measured and against what.
    pub fn measured(mut self, value: Option<f64>, threshold: Option<String>) -> Self {
        self.value = value;
        self.threshold = threshold;
        self
    }

    /// Whether it passed outright.
    pub fn passed(&self) -> bool {
        self.verdict == GateVerdict::Pass
    }

    /// Whether its verdict decides (it is not observe-only).
    pub fn decides(&self) -> bool {
        !self.observed
    }
}

impl fmt::Display for GateResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let gate = &self.gate;
        match (&self.verdict, self.observed) {
            (GateVerdict::Pass, false) => write!(f, "{gate}: pass")?,
            (GateVerdict::Pass, true) => write!(f, "{gate}: pass (observed)")?,
            (GateVerdict::Fail(reason), false) => write!(f, "{gate}: FAIL: {reason}")?,
            (GateVerdict::Fail(reason), true) => write!(f, "{gate}: failed-observed: {reason}")?,
            (GateVerdict::Inconclusive(reason), false) => {
                write!(f, "{gate}: inconclusive: {reason}")?
            }
            (GateVerdict::Inconclusive(reason), true) => {
                write!(f, "{gate}: inconclusive-observed: {reason}")?
            }
        }
        match (&self.value, &self.threshold) {
            (Some(value), Some(threshold)) => write!(f, " (value {value}, threshold {threshold})"),
            (None, Some(threshold)) => write!(f, " (no value, threshold {threshold})"),
            (Some(value), None) => write!(f, " (value {value})"),
            (None, None) => Ok(()),
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
    /// The first key still matching `pending` (`None`: nothing pending now), as the backfill's
    /// `show_keys` lets it be shown.
    pub first_pending_key: Option<ShownKey>,
}

/// Rule check for one version: its build revision must be inside the database's window.
/// `role` names it in the gate (`current`, `target`).
pub fn schema_gate(
    graph: &RevisionGraph,
    state: &DatabaseState,
    role: &str,
    stamp: &VersionStamp,
) -> GateResult {
    version_fits(graph, state, format!("schema:{role}"), stamp)
}

/// The rule for one version, as the gate named `gate`.
pub fn version_fits(
    graph: &RevisionGraph,
    state: &DatabaseState,
    gate: String,
    stamp: &VersionStamp,
) -> GateResult {
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

/// The prefixes of the gates the compatibility rule decides: never observe-only.
const ALWAYS_DECIDING_PREFIXES: [&str; 3] = ["schema:", "live:", "rollback:"];

/// Whether `gate` always decides (the operator's hold, the compatibility rule's gates).
fn always_decides(gate: &str) -> bool {
    gate == "hold" || ALWAYS_DECIDING_PREFIXES.iter().any(|p| gate.starts_with(p))
}

/// Gates chosen by name, for observe-only: `health:p99` exactly, or `health:*` every gate
/// whose name starts with `health:` (a `*` only at the end; `*` alone: every gate).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct GateSelection(Vec<String>);

impl GateSelection {
    /// A selection of `patterns`; the error names the first that is not a gate name.
    pub fn new(patterns: Vec<String>) -> Result<Self, String> {
        let selection = GateSelection(patterns);
        match selection.problem() {
            Some(problem) => Err(problem),
            None => Ok(selection),
        }
    }

    /// A comma-separated list, e.g. `health:p99,backfill:*`.
    pub fn parse_list(list: &str) -> Result<Self, String> {
        GateSelection::new(
            list.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }

    /// What makes it unusable: a pattern that is empty, holds other than gate-name characters
    /// (letters, digits, `:`, `_`, `-`, `.`), or a `*` anywhere but at the end; or one that
    /// would silence a gate that always decides: `*` alone, the operator's `hold`, the
    /// compatibility rule's gates (`schema:*`, and the approvals' `live:*`, `rollback:*`).
    pub fn problem(&self) -> Option<String> {
        self.0.iter().find_map(|pattern| {
            let name = pattern.strip_suffix('*').unwrap_or(pattern);
            let valid = name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-' | '.'));
            if pattern.is_empty() || !valid {
                return Some(format!(
                    "`{pattern}` is not a gate name (e.g. `health:p99`) or a prefix ending in `*` (e.g. `health:*`)"
                ));
            }
            if pattern == "*" {
                return Some(
                    "`*` would make every gate observe-only, the operator's `hold` and the compatibility rule's among them: name gates or prefixes (e.g. `database:*`)"
                        .to_owned(),
                );
            }
            // `gate` is a name (`hold`) or a family of names (`schema:`).
            let silences = |gate: &str| match pattern.strip_suffix('*') {
                Some(prefix) => {
                    gate.starts_with(prefix) || (gate.ends_with(':') && prefix.starts_with(gate))
                }
                None => pattern == gate || (gate.ends_with(':') && pattern.starts_with(gate)),
            };
            if silences("hold") {
                return Some(format!(
                    "`{pattern}` would make the operator's `hold` gate observe-only: a hold always decides"
                ));
            }
            ALWAYS_DECIDING_PREFIXES.iter().find(|p| silences(p)).map(|_| {
                format!(
                    "`{pattern}` would make the compatibility rule's gates (`schema:current`, `schema:target`, the approvals' `live:` and `rollback:`) observe-only: the rule always decides"
                )
            })
        })
    }

    /// Whether `gate` is selected.
    pub fn matches(&self, gate: &str) -> bool {
        self.0
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => gate.starts_with(prefix),
                None => gate == pattern,
            })
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Marks the gates `selection` names observe-only (never one that always decides, whatever the
/// selection says).
pub fn observe(gates: &mut [GateResult], selection: &GateSelection) {
    for gate in gates
        .iter_mut()
        .filter(|g| selection.matches(&g.gate) && !always_decides(&g.gate))
    {
        gate.observed = true;
    }
}

/// The gates of one evaluation, in order.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Decision {
    pub gates: Vec<GateResult>,
    /// Whether an inconclusive gate lets the decision pass (the configured policy).
    pub inconclusive_passes: bool,
}

impl Decision {
    /// Passes when every gate that decides passes; an inconclusive gate passes only under that
    /// policy. Observe-only gates never decide.
    pub fn passed(&self) -> bool {
        self.gates
            .iter()
            .filter(|g| g.decides())
            .all(|g| match g.verdict {
                GateVerdict::Pass => true,
                GateVerdict::Inconclusive(_) => self.inconclusive_passes,
                GateVerdict::Fail(_) => false,
            })
    }

    /// The decision as one verdict: fail when any gate fails, else inconclusive when any gate
    /// is (and the policy does not let it pass), else pass.
    pub fn overall(&self) -> Overall {
        let failed = |g: &&GateResult| g.decides() && matches!(g.verdict, GateVerdict::Fail(_));
        if self.gates.iter().any(|g| failed(&g)) {
            Overall::Fail
        } else if self.passed() {
            Overall::Pass
        } else {
            Overall::Inconclusive
        }
    }

    /// The gates that decide and did not pass, one line.
    pub fn failures(&self) -> String {
        let failing: Vec<String> = self
            .gates
            .iter()
            .filter(|g| g.decides() && g.verdict != GateVerdict::Pass)
            .map(ToString::to_string)
            .collect();
        failing.join("; ")
    }

    /// The observe-only gates that did not pass, one line.
    pub fn observed_failures(&self) -> String {
        let failing: Vec<String> = self
            .gates
            .iter()
            .filter(|g| g.observed && g.verdict != GateVerdict::Pass)
            .map(ToString::to_string)
            .collect();
        failing.join("; ")
    }
}

/// A decision in one word, for exit codes and summaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Overall {
    Pass,
    Fail,
    Inconclusive,
}

/// A smoke invocation's result: the function's own error, if any, and the response body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SmokeOutcome {
    pub function_error: Option<String>,
    pub body: String,
}

/// The target version answered the smoke payload without a function error, and its response
/// contains `expect` (empty: any response).
pub fn smoke_gate(version: &str, outcome: &SmokeOutcome, expect: &str) -> GateResult {
    let verdict = match &outcome.function_error {
        Some(error) => GateVerdict::Fail(format!(
            "smoke invoke of version {version} failed ({error}): {}",
            outcome.body.chars().take(200).collect::<String>()
        )),
        None if !outcome.body.contains(expect) => GateVerdict::Fail(format!(
            "smoke invoke of version {version} answered {}, which does not contain {expect:?}",
            outcome.body.chars().take(200).collect::<String>()
        )),
        None => GateVerdict::Pass,
    };
    GateResult::new("smoke", verdict)
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
    Decision {
        gates,
        inconclusive_passes: false,
    }
}

/// What to do when there is too little traffic to judge a version's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InconclusivePolicy {
    Fail,
    Pass,
}

/// The health a new version must show after taking traffic.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HealthBudget {
    /// Errors / invocations above this fail (e.g. 0.01).
    pub max_error_rate: f64,
    /// An error rate above this multiple of the baseline's fails (when the baseline has enough
    /// invocations and any errors; with a clean baseline the absolute budget decides).
    pub max_error_ratio: f64,
    /// p95 duration above this fails, when set.
    pub max_p95_ms: Option<f64>,
    /// p99 duration above this fails, when set.
    pub max_p99_ms: Option<f64>,
    /// p95 or p99 above this multiple of the baseline's fails (when both have samples).
    pub max_latency_ratio: f64,
    /// Fewer invocations than this in the window is inconclusive, not a verdict.
    pub min_invocations: u64,
    pub inconclusive: InconclusivePolicy,
}

impl Default for HealthBudget {
    fn default() -> Self {
        HealthBudget {
            max_error_rate: 0.01,
            max_error_ratio: 2.0,
            max_p95_ms: None,
            max_p99_ms: None,
            max_latency_ratio: 1.5,
            min_invocations: 50,
            inconclusive: InconclusivePolicy::Fail,
        }
    }
}

/// One version's traffic in the window (CloudWatch, dimension ExecutedVersion).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct VersionMetrics {
    pub version: String,
    pub invocations: f64,
    pub errors: f64,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

impl VersionMetrics {
    /// Errors per invocation (0 without invocations).
    pub fn error_rate(&self) -> f64 {
        if self.invocations > 0.0 {
            self.errors / self.invocations
        } else {
            0.0
        }
    }
}

/// Health gates for the target version, against the budget and the current version (baseline):
/// `health:sample` (inconclusive below the minimum), else `health:errors`, `health:p95`,
/// `health:p99` (the latency gates only where a limit or a comparable baseline exists).
pub fn health_gates(
    target: &VersionMetrics,
    baseline: Option<&VersionMetrics>,
    budget: &HealthBudget,
) -> Vec<GateResult> {
    let version = &target.version;
    if target.invocations < budget.min_invocations as f64 {
        return vec![GateResult::new(
            "health:sample",
            GateVerdict::Inconclusive(format!(
                "{} invocations of version {version} in the window, fewer than the {} needed to judge",
                target.invocations, budget.min_invocations
            )),
        )];
    }
    // The baseline counts only with enough traffic of its own.
    let baseline = baseline.filter(|b| b.invocations >= budget.min_invocations as f64);
    let rate = target.error_rate();
    let errors = match baseline {
        _ if rate > budget.max_error_rate => GateVerdict::Fail(format!(
            "version {version} error rate {:.2}% ({} of {}) is above the budget {:.2}%",
            rate * 100.0,
            target.errors,
            target.invocations,
            budget.max_error_rate * 100.0
        )),
        Some(old) if old.errors > 0.0 && rate > old.error_rate() * budget.max_error_ratio => {
            GateVerdict::Fail(format!(
                "version {version} error rate {:.2}% is above {:.1} x version {}'s {:.2}%",
                rate * 100.0,
                budget.max_error_ratio,
                old.version,
                old.error_rate() * 100.0
            ))
        }
        _ => GateVerdict::Pass,
    };
    // Value and threshold in percent, the baseline's share of the threshold when it counts.
    let mut threshold = format!("<= {:.2}%", budget.max_error_rate * 100.0);
    if let Some(old) = baseline.filter(|old| old.errors > 0.0) {
        threshold.push_str(&format!(
            " and <= {:.2}% ({:.1} x version {}'s)",
            old.error_rate() * budget.max_error_ratio * 100.0,
            budget.max_error_ratio,
            old.version
        ));
    }
    let mut gates = vec![
        GateResult::new("health:errors", errors).measured(Some(rate * 100.0), Some(threshold)),
    ];
    for (name, value, limit, base) in [
        (
            "p95",
            target.p95_ms,
            budget.max_p95_ms,
            baseline.and_then(|b| b.p95_ms),
        ),
        (
            "p99",
            target.p99_ms,
            budget.max_p99_ms,
            baseline.and_then(|b| b.p99_ms),
        ),
    ] {
        let old = baseline.map_or("", |b| b.version.as_str());
        let verdict = match (value, limit, base) {
            (None, None, _) => continue,
            (None, Some(_), _) => {
                GateVerdict::Inconclusive(format!("no {name} duration data for version {version}"))
            }
            (Some(value), Some(limit), _) if value > limit => GateVerdict::Fail(format!(
                "version {version} {name} {value:.0} ms is above the budget {limit:.0} ms"
            )),
            (Some(value), _, Some(base)) if value > base * budget.max_latency_ratio => {
                GateVerdict::Fail(format!(
                    "version {version} {name} {value:.0} ms is above {:.1} x version {old}'s {base:.0} ms",
                    budget.max_latency_ratio
                ))
            }
            (Some(_), _, _) => GateVerdict::Pass,
        };
        // The threshold in milliseconds: the budget, and the baseline's ratio when it counts.
        let threshold: Vec<String> = limit
            .map(|limit| format!("<= {limit:.1} ms"))
            .into_iter()
            .chain(base.map(|base| {
                format!(
                    "<= {:.1} ms ({:.1} x version {old}'s)",
                    base * budget.max_latency_ratio,
                    budget.max_latency_ratio
                )
            }))
            .collect();
        gates.push(GateResult::new(format!("health:{name}"), verdict).measured(
            value,
            (!threshold.is_empty()).then(|| threshold.join(" and ")),
        ));
    }
    gates
}

/// The gate monitor's gates, evaluated between canary steps: everything the pre-traffic hook
/// checks, and the target's health.
pub fn between_steps(
    pre: Decision,
    target_metrics: &VersionMetrics,
    baseline: Option<&VersionMetrics>,
    budget: &HealthBudget,
) -> Decision {
    let mut gates = pre.gates;
    gates.extend(health_gates(target_metrics, baseline, budget));
    Decision {
        gates,
        inconclusive_passes: budget.inconclusive == InconclusivePolicy::Pass,
    }
}

/// The post-traffic gates: the schema still inside the target's window, and the target's
/// health within budget.
pub fn post_traffic(
    graph: &RevisionGraph,
    state: &DatabaseState,
    target: &VersionStamp,
    target_metrics: &VersionMetrics,
    baseline: Option<&VersionMetrics>,
    budget: &HealthBudget,
) -> Decision {
    let mut gates = vec![schema_gate(graph, state, "target", target)];
    gates.extend(health_gates(target_metrics, baseline, budget));
    Decision {
        gates,
        inconclusive_passes: budget.inconclusive == InconclusivePolicy::Pass,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::revision::{Phase, Revision};

    fn graph() -> RevisionGraph {
        let rev = Revision::for_test;
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
            first_pending_key: Some(ShownKey::Shown(crate::backfill::Key::int(7))),
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
    fn health_table() {
        let metrics = |version: &str, invocations: f64, errors: f64, p95: f64, p99: f64| {
            let present = |ms: f64| (ms > 0.0).then_some(ms);
            VersionMetrics {
                version: version.to_owned(),
                invocations,
                errors,
                p95_ms: present(p95),
                p99_ms: present(p99),
            }
        };
        let budget = HealthBudget {
            max_p99_ms: Some(500.0),
            ..HealthBudget::default()
        };
        let old = metrics("1", 1_000.0, 2.0, 80.0, 100.0);
        // (target, expected verdict names per gate; no p95 limit, so p95 is judged against the
        // baseline only)
        let table: &[(VersionMetrics, &[(&str, &str)])] = &[
            (
                metrics("2", 3.0, 0.0, 0.0, 90.0),
                &[("health:sample", "inconclusive")],
            ),
            (
                metrics("2", 200.0, 0.0, 85.0, 120.0),
                &[
                    ("health:errors", "pass"),
                    ("health:p95", "pass"),
                    ("health:p99", "pass"),
                ],
            ),
            // 2.5% is over the absolute budget.
            (
                metrics("2", 200.0, 5.0, 85.0, 120.0),
                &[
                    ("health:errors", "fail"),
                    ("health:p95", "pass"),
                    ("health:p99", "pass"),
                ],
            ),
            // 0.5% is under the budget but 2.5 x the baseline's 0.2%.
            (
                metrics("2", 1_000.0, 5.0, 85.0, 120.0),
                &[
                    ("health:errors", "fail"),
                    ("health:p95", "pass"),
                    ("health:p99", "pass"),
                ],
            ),
            (
                metrics("2", 200.0, 0.0, 85.0, 600.0),
                &[
                    ("health:errors", "pass"),
                    ("health:p95", "pass"),
                    ("health:p99", "fail"),
                ],
            ),
            (
                metrics("2", 200.0, 0.0, 130.0, 160.0),
                &[
                    ("health:errors", "pass"),
                    ("health:p95", "fail"),
                    ("health:p99", "fail"),
                ],
            ),
            (
                metrics("2", 200.0, 0.0, 0.0, 0.0),
                &[("health:errors", "pass"), ("health:p99", "inconclusive")],
            ),
        ];
        for (target, expected) in table {
            let gates = health_gates(target, Some(&old), &budget);
            let actual: Vec<(&str, &str)> = gates
                .iter()
                .map(|g| (g.gate.as_str(), g.verdict.name()))
                .collect();
            assert_eq!(&actual, expected, "{target:?}");
        }
        let few = health_gates(&metrics("2", 3.0, 0.0, 0.0, 0.0), None, &budget);
        assert_eq!(
            few[0].to_string(),
            "health:sample: inconclusive: 3 invocations of version 2 in the window, fewer than the 50 needed to judge"
        );
        let relative = health_gates(&metrics("2", 1_000.0, 5.0, 0.0, 0.0), Some(&old), &budget);
        assert_eq!(
            relative[0].to_string(),
            "health:errors: FAIL: version 2 error rate 0.50% is above 2.0 x version 1's 0.20% (value 0.5, threshold <= 1.00% and <= 0.40% (2.0 x version 1's))"
        );
        // A baseline below the minimum sample is no baseline.
        let thin = metrics("1", 10.0, 0.0, 10.0, 10.0);
        let gates = health_gates(&metrics("2", 200.0, 0.0, 85.0, 120.0), Some(&thin), &budget);
        assert!(
            gates.iter().all(|g| g.verdict == GateVerdict::Pass),
            "{gates:?}"
        );
    }

    #[test]
    fn an_observed_gate_is_recorded_but_does_not_decide() {
        let selection = GateSelection::parse_list(" health:p99 , backfill:* ").expect("valid");
        let mut gates = vec![
            GateResult::new("health:p99", GateVerdict::Fail("slow".into())),
            GateResult::new("backfill:fill", GateVerdict::Inconclusive("unknown".into())),
            GateResult::new("health:errors", GateVerdict::Pass),
        ];
        observe(&mut gates, &selection);
        let decision = Decision {
            gates,
            inconclusive_passes: false,
        };
        assert!(decision.passed());
        assert_eq!(decision.overall(), Overall::Pass);
        assert_eq!(decision.failures(), "");
        assert_eq!(
            decision.observed_failures(),
            "health:p99: failed-observed: slow; backfill:fill: inconclusive-observed: unknown"
        );
        assert_eq!(
            decision.gates[0].to_string(),
            "health:p99: failed-observed: slow"
        );
        assert_eq!(
            decision.gates[1].to_string(),
            "backfill:fill: inconclusive-observed: unknown"
        );
        let record = serde_json::to_value(&decision.gates).expect("json");
        assert_eq!(record[0]["verdict"], "fail");
        assert_eq!(record[0]["observed"], true);
        assert!(record[2].get("observed").is_none(), "{record}");
        // The same failure, not observed, decides.
        let mut blocking = decision.clone();
        blocking.gates[0].observed = false;
        assert_eq!(blocking.overall(), Overall::Fail);
        assert_eq!(blocking.failures(), "health:p99: FAIL: slow");
        // A gate that always decides cannot be silenced: `*` alone, the operator's hold, the
        // rule's gates (by name or by any prefix that reaches them).
        for (silencing, why) in [
            ("*", "`*` would make every gate observe-only"),
            (
                "hold",
                "`hold` would make the operator's `hold` gate observe-only",
            ),
            (
                "ho*",
                "`ho*` would make the operator's `hold` gate observe-only",
            ),
            (
                "schema:*",
                "`schema:*` would make the compatibility rule's gates",
            ),
            ("s*", "`s*` would make the compatibility rule's gates"),
            (
                "schema:target",
                "`schema:target` would make the compatibility rule's gates",
            ),
            (
                "live:*",
                "`live:*` would make the compatibility rule's gates",
            ),
        ] {
            let error =
                GateSelection::parse_list(&format!("health:p99,{silencing}")).expect_err(silencing);
            assert!(error.starts_with(why), "{silencing}: {error}");
        }
        for fine in [
            "database:*",
            "health:*",
            "backfill:*",
            "check:*",
            "smoke",
            "holdings",
        ] {
            assert!(GateSelection::parse_list(fine).is_ok(), "{fine}");
        }
        // And were a selection built around the checks, it still marks none of them.
        let mut gates = vec![
            GateResult::new("hold", GateVerdict::Fail("held".to_owned())),
            GateResult::new("schema:target", GateVerdict::Fail("no".to_owned())),
        ];
        observe(&mut gates, &GateSelection(vec!["*".to_owned()]));
        assert!(gates.iter().all(|g| !g.observed));
        // A `*` inside or a stray character is refused.
        for bad in ["health:*99", "health p99", "schema:$"] {
            let error = GateSelection::parse_list(bad).expect_err(bad);
            assert!(
                error.starts_with(&format!("`{bad}` is not a gate name")),
                "{error}"
            );
        }
    }

    #[test]
    fn inconclusive_follows_the_policy() {
        let graph = graph();
        let state = DatabaseState::new(&graph, &["b"]).expect("known");
        let target = stamp("2", Some("b"), &[]);
        let quiet = VersionMetrics {
            version: "2".into(),
            invocations: 3.0,
            ..VersionMetrics::default()
        };
        let strict = post_traffic(
            &graph,
            &state,
            &target,
            &quiet,
            None,
            &HealthBudget::default(),
        );
        assert!(!strict.passed());
        let lenient = HealthBudget {
            inconclusive: InconclusivePolicy::Pass,
            ..HealthBudget::default()
        };
        assert!(post_traffic(&graph, &state, &target, &quiet, None, &lenient).passed());
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
