//! The decision records: what a decision read and what it decided, as the hooks log them (one
//! JSON line), the monitor returns them and `shiftguard gate --json` prints them.

use serde::Serialize;

use crate::release::approval::{LiveVersion, Shift};
use crate::release::appspec::LambdaTarget;
use crate::release::checks::GateKind;
use crate::release::gate::{
    BackfillNow, Decision, GateResult, Overall, VersionMetrics, VersionStamp,
};
use crate::release::load::DatabaseLoad;

/// Where in a deployment a traffic decision is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum DecisionPoint {
    /// `BeforeAllowTraffic`: schema inside both versions' windows, required backfills complete.
    PreTraffic,
    /// `AfterAllowTraffic`: schema still fits the target; the target's health within budget.
    PostTraffic,
    /// The gate monitor, between canary steps: the pre-traffic gates and the target's health.
    BetweenSteps,
}

/// An alias's routing: the primary version and the weighted additional versions.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Routing {
    pub primary: String,
    pub additional: Vec<(String, f64)>,
}

impl Routing {
    /// The share of the traffic `version` gets.
    pub fn weight_of(&self, version: &str) -> f64 {
        if version == self.primary {
            1.0 - self.additional.iter().map(|(_, w)| w).sum::<f64>()
        } else {
            self.additional
                .iter()
                .find(|(v, _)| v == version)
                .map_or(0.0, |(_, w)| *w)
        }
    }
}

/// A function's aliases and the versions of it that can still run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FunctionLive {
    pub function: String,
    pub aliases: Vec<Shift>,
    pub live: Vec<LiveVersion>,
}

/// The record of one traffic decision (pre-traffic, post-traffic, between steps).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Evaluation {
    pub phase: Option<DecisionPoint>,
    pub deployment_id: String,
    pub target: Option<LambdaTarget>,
    pub current_version: Option<VersionStamp>,
    pub target_version: Option<VersionStamp>,
    pub database: Option<String>,
    pub database_heads: Vec<String>,
    pub backfills: Vec<BackfillNow>,
    /// Post-traffic and between steps: the target's and the current version's traffic in the
    /// window.
    pub metrics: Vec<VersionMetrics>,
    /// The alias's configured weight for the target, and the share of invocations it really
    /// served (they drift apart at low traffic).
    pub configured_weight: Option<f64>,
    pub observed_weight: Option<f64>,
    /// Between steps, when sampled: what the target and the current version cost the database.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub database_load: Vec<DatabaseLoad>,
    pub decision: Decision,
}

/// The record of the cutover or the contract decision.
#[derive(Clone, Debug, Serialize)]
pub struct ApprovalRecord {
    pub gate: GateKind,
    pub result: Overall,
    /// Contract: the revision approved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    pub database: String,
    pub database_heads: Vec<String>,
    pub function: String,
    pub alias: String,
    /// Contract: every function checked, with its aliases and live versions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub functions: Vec<FunctionLive>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub backfills: Vec<BackfillNow>,
    /// Cutover: the version the rollback would return to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_version: Option<VersionStamp>,
    pub gates: Vec<GateResult>,
}

/// What the gate monitor found for one deployment group.
#[derive(Clone, Debug, Serialize)]
pub struct GroupReport {
    pub application: String,
    pub deployment_group: String,
    /// 1 when any active deployment fails a gate or cannot be evaluated, else 0.
    pub gate_failing: f64,
    /// The operator's hold gate, when it could be read (with or without a deployment).
    pub hold: Option<GateResult>,
    pub evaluations: Vec<Evaluation>,
    pub errors: Vec<String>,
}

/// One `GateFailing` value the monitor publishes, with its dimensions.
#[derive(Clone, Debug, PartialEq)]
pub struct GatePoint {
    pub dimensions: Vec<(&'static str, String)>,
    /// 1 failing (or undecided), 0 passing.
    pub value: f64,
}

/// One per-version database value the gate monitor publishes, under the dimensions Lambda's
/// own metrics use (`FunctionName`, `ExecutedVersion`).
#[derive(Clone, Debug, PartialEq)]
pub struct LoadPoint {
    pub function: String,
    pub version: String,
    pub metric: &'static str,
    /// CloudWatch's unit name.
    pub unit: &'static str,
    pub value: f64,
}

/// One version of the function as the database is now.
#[derive(Clone, Debug)]
pub struct VersionNow {
    pub stamp: VersionStamp,
    /// Its share of the alias's traffic.
    pub weight: f64,
    /// The rule against the database now (gate `schema:now`).
    pub fits: GateResult,
    /// Why it counts as live.
    pub because: Vec<String>,
}

/// Every live version of a function and whether it can run on the database now.
#[derive(Clone, Debug)]
pub struct VersionsNow {
    pub routing: Routing,
    pub database: String,
    pub database_heads: Vec<String>,
    /// The migrations' heads the database has not applied (what a contract would go to).
    pub unapplied_heads: Vec<String>,
    pub versions: Vec<VersionNow>,
}
