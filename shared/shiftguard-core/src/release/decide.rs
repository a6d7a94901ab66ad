//! The one orchestration per release decision. Each function asks the ports for the facts its
//! decision needs, in a fixed order, calls the pure decision ([`gate`], [`approval`],
//! [`checks`]) and returns the decision record. An `Err` is a failure to decide, which every
//! caller turns into "not safe".
//!
//! **Invariant:** nothing outside this module gathers the inputs of a gate decision; the hooks,
//! the monitor, `shiftguard gate`, `shiftguard status` and the lab call these functions (checked
//! by `tests/integration/architecture.rs`). A new gate input is wired here once.

use std::time::Duration;

use crate::backfill::{BackfillConfig, ShownKey};
use crate::config::ProjectConfig;
use crate::release::DecisionError;
use crate::release::approval::{self, Shift};
use crate::release::appspec::LambdaTarget;
use crate::release::checks::{DATABASE_TAG, GateKind};
use crate::release::gate::{
    self, BackfillNow, Decision, GateResult, GateSelection, GateVerdict, HealthBudget,
    VersionMetrics, VersionStamp, schema_gate, smoke_gate,
};
use crate::release::hold::hold_gate;
use crate::release::load::{DatabaseLoad, LoadBudget, load_gates, session_tag};
use crate::release::ports::{
    Deployments, FunctionVersions, HealthSignals, LiveEvidence, Ports, SharedDatabase,
};
use crate::release::record::{
    ApprovalRecord, DecisionPoint, Evaluation, FunctionLive, GatePoint, GroupReport, LoadPoint,
    Routing, VersionNow, VersionsNow,
};
use crate::schema::compat::{DatabaseState, check_build};
use crate::schema::graph::RevisionGraph;

/// What a release is judged against: the revision graph (the manifest) and `shiftguard.toml`.
#[derive(Clone, Copy, Debug)]
pub struct Release<'a> {
    pub graph: &'a RevisionGraph,
    pub config: &'a ProjectConfig,
}

/// How the traffic decisions judge health, and the optional smoke test.
#[derive(Clone, Debug, PartialEq)]
pub struct TrafficSettings {
    pub budget: HealthBudget,
    /// The window of per-version metrics (default 5 minutes).
    pub metrics_window: Duration,
    /// Whether the target's health is also compared with the current version's (ratio
    /// budgets), not only held to the absolute budget.
    pub compare_with_current: bool,
    /// Pre-traffic: invoke the target version with a payload first.
    pub smoke: Option<Smoke>,
    /// Gates observed only, besides `[gates] observe` (the hooks' `SHIFTGUARD_OBSERVE_GATES`).
    pub observe: GateSelection,
    /// Between steps: what each version costs the database (off unless a sample time is set).
    pub load: LoadBudget,
}

impl Default for TrafficSettings {
    fn default() -> Self {
        TrafficSettings {
            budget: HealthBudget::default(),
            metrics_window: Duration::from_secs(300),
            compare_with_current: true,
            smoke: None,
            observe: GateSelection::default(),
            load: LoadBudget::default(),
        }
    }
}

/// A smoke invocation of the target version before it takes traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Smoke {
    pub payload: String,
    /// Text the response must contain (empty: any response).
    pub expect: String,
}

/// What the traffic decisions read first: the deployment, both versions, the database.
struct TrafficFacts {
    target: LambdaTarget,
    current: VersionStamp,
    next: VersionStamp,
    heads: Vec<String>,
    state: DatabaseState,
    backfills: Vec<BackfillNow>,
}

impl TrafficFacts {
    /// `with_backfills`: read the backfills the target requires (pre-traffic, between steps).
    async fn read<C, F, H, L, D>(
        ports: Ports<'_, C, F, H, L, D>,
        release: Release<'_>,
        deployment_id: &str,
        with_backfills: bool,
    ) -> Result<Self, DecisionError>
    where
        C: Deployments,
        F: FunctionVersions,
        D: SharedDatabase,
    {
        let target = ports.deployments.lambda_target(deployment_id).await?;
        let current = ports
            .functions
            .stamp(&target.function, &target.current_version)
            .await?;
        let next = ports
            .functions
            .stamp(&target.function, &target.target_version)
            .await?;
        let heads = ports.database.heads().await?;
        let required: &[String] = if with_backfills {
            &next.required_backfills
        } else {
            &[]
        };
        // A name the configuration lacks is reported by the backfill gate itself.
        let defined: Vec<&BackfillConfig> = required
            .iter()
            .filter_map(|name| release.config.backfill(name))
            .collect();
        let backfills = backfills_now(ports.database, &defined).await?;
        let state = DatabaseState::new(release.graph, &heads)?;
        Ok(TrafficFacts {
            target,
            current,
            next,
            heads,
            state,
            backfills,
        })
    }

    fn pre_traffic(&self, graph: &RevisionGraph) -> Decision {
        gate::pre_traffic(
            graph,
            &self.state,
            &self.current,
            &self.next,
            &self.backfills,
        )
    }

    /// The record, with the gates `[gates] observe` and the settings name marked observe-only.
    fn record(
        self,
        (point, deployment_id): (DecisionPoint, &str),
        (release, settings): (Release<'_>, &TrafficSettings),
        database: &str,
        mut decision: Decision,
    ) -> Evaluation {
        mark_observed(&mut decision.gates, release, settings);
        Evaluation {
            phase: Some(point),
            deployment_id: deployment_id.to_owned(),
            target: Some(self.target),
            current_version: Some(self.current),
            target_version: Some(self.next),
            database: Some(database.to_owned()),
            database_heads: self.heads,
            backfills: self.backfills,
            decision,
            ..Evaluation::default()
        }
    }
}

/// The target's and the current version's traffic in the window, the alias's configured
/// weight for the target against the share it really served, and, when sampled, what each
/// costs the database (target first) or why it could not be sampled.
struct Traffic {
    new: VersionMetrics,
    old: VersionMetrics,
    configured_weight: f64,
    observed_weight: Option<f64>,
    load: Result<Vec<DatabaseLoad>, DecisionError>,
}

impl Traffic {
    /// `with_load`: sample the database too (between steps, while both versions serve).
    async fn read<C, F, H, L, D>(
        ports: Ports<'_, C, F, H, L, D>,
        settings: &TrafficSettings,
        target: &LambdaTarget,
        with_load: bool,
    ) -> Result<Self, DecisionError>
    where
        F: FunctionVersions,
        H: HealthSignals,
        D: SharedDatabase,
    {
        let (function, alias, window) = (&target.function, &target.alias, settings.metrics_window);
        let new = ports
            .health
            .version_metrics(function, alias, &target.target_version, window)
            .await?;
        let old = ports
            .health
            .version_metrics(function, alias, &target.current_version, window)
            .await?;
        let routing = ports.functions.routing(function, alias).await?;
        let configured_weight = routing
            .additional
            .iter()
            .find(|(v, _)| *v == target.target_version)
            .map_or(1.0, |(_, w)| *w);
        let total = new.invocations + old.invocations;
        let observed_weight = (total > 0.0).then(|| new.invocations / total);
        let load = if with_load && settings.load.enabled() {
            let tagged = [&target.target_version, &target.current_version]
                .map(|version| (version.clone(), session_tag(function, version)));
            ports
                .database
                .database_load(&tagged, settings.load.sample, &settings.load.roles)
                .await
        } else {
            Ok(Vec::new())
        };
        Ok(Traffic {
            new,
            old,
            configured_weight,
            observed_weight,
            load,
        })
    }

    /// The per-version database gates, when the load was sampled; a sample that could not be
    /// taken is a failing `database:sample` with the reason (so that observing the gates covers
    /// a missing extension or privilege too).
    fn load_gates(&self, settings: &TrafficSettings) -> Vec<GateResult> {
        match self.load.as_deref() {
            Ok([target, current]) => load_gates(target, current, &settings.load),
            // Not sampled (not asked for, or not at this point).
            Ok([]) => Vec::new(),
            Ok(other) => vec![GateResult::new(
                "database:sample",
                GateVerdict::Fail(format!(
                    "the sampler answered for {} versions, not the target and the current",
                    other.len()
                )),
            )],
            Err(error) => vec![GateResult::new(
                "database:sample",
                GateVerdict::Fail(format!(
                    "cannot sample the versions' database load: {error}"
                )),
            )],
        }
    }

    /// The current version, when the settings compare against it.
    fn baseline<'a>(&'a self, settings: &TrafficSettings) -> Option<&'a VersionMetrics> {
        settings.compare_with_current.then_some(&self.old)
    }

    fn into_record(self, mut record: Evaluation) -> Evaluation {
        record.configured_weight = Some(self.configured_weight);
        record.observed_weight = self.observed_weight;
        record.metrics = vec![self.new, self.old];
        record.database_load = self.load.unwrap_or_default();
        record
    }
}

/// Before traffic (`BeforeAllowTraffic`): the schema inside both versions' windows, the
/// target's required backfills complete now, and the optional smoke invoke.
pub async fn pre_traffic<C, F, H, L, D>(
    ports: Ports<'_, C, F, H, L, D>,
    release: Release<'_>,
    settings: &TrafficSettings,
    deployment_id: &str,
) -> Result<Evaluation, DecisionError>
where
    C: Deployments,
    F: FunctionVersions,
    D: SharedDatabase,
{
    let facts = TrafficFacts::read(ports, release, deployment_id, true).await?;
    let holds = ports.deployments.deployment_holds(deployment_id).await?;
    let mut decision = facts.pre_traffic(release.graph);
    decision.gates.push(hold_gate(&holds));
    if let Some(smoke) = &settings.smoke {
        let (function, version) = (&facts.target.function, &facts.target.target_version);
        let outcome = ports
            .functions
            .invoke(function, version, &smoke.payload)
            .await?;
        decision
            .gates
            .push(smoke_gate(version, &outcome, &smoke.expect));
    }
    Ok(facts.record(
        (DecisionPoint::PreTraffic, deployment_id),
        (release, settings),
        ports.database.target(),
        decision,
    ))
}

/// Between canary steps (the gate monitor): everything the pre-traffic decision checks, and
/// the target's health since the shift.
pub async fn between_steps<C, F, H, L, D>(
    ports: Ports<'_, C, F, H, L, D>,
    release: Release<'_>,
    settings: &TrafficSettings,
    deployment_id: &str,
) -> Result<Evaluation, DecisionError>
where
    C: Deployments,
    F: FunctionVersions,
    H: HealthSignals,
    D: SharedDatabase,
{
    let facts = TrafficFacts::read(ports, release, deployment_id, true).await?;
    let traffic = Traffic::read(ports, settings, &facts.target, true).await?;
    let mut decision = gate::between_steps(
        facts.pre_traffic(release.graph),
        &traffic.new,
        traffic.baseline(settings),
        &settings.budget,
    );
    decision.gates.extend(traffic.load_gates(settings));
    let record = facts.record(
        (DecisionPoint::BetweenSteps, deployment_id),
        (release, settings),
        ports.database.target(),
        decision,
    );
    Ok(traffic.into_record(record))
}

/// After traffic (`AfterAllowTraffic`): the schema still inside the target's window, the
/// target's health within budget, and no operator's hold.
pub async fn post_traffic<C, F, H, L, D>(
    ports: Ports<'_, C, F, H, L, D>,
    release: Release<'_>,
    settings: &TrafficSettings,
    deployment_id: &str,
) -> Result<Evaluation, DecisionError>
where
    C: Deployments,
    F: FunctionVersions,
    H: HealthSignals,
    D: SharedDatabase,
{
    let facts = TrafficFacts::read(ports, release, deployment_id, false).await?;
    let holds = ports.deployments.deployment_holds(deployment_id).await?;
    // No database gates here: after traffic the current version serves nothing to compare with.
    let traffic = Traffic::read(ports, settings, &facts.target, false).await?;
    let mut decision = gate::post_traffic(
        release.graph,
        &facts.state,
        &facts.next,
        &traffic.new,
        traffic.baseline(settings),
        &settings.budget,
    );
    decision.gates.push(hold_gate(&holds));
    let record = facts.record(
        (DecisionPoint::PostTraffic, deployment_id),
        (release, settings),
        ports.database.target(),
        decision,
    );
    Ok(traffic.into_record(record))
}

/// The traffic decision at `point`, for the hooks that serve one of the three.
pub async fn traffic_decision<C, F, H, L, D>(
    point: DecisionPoint,
    ports: Ports<'_, C, F, H, L, D>,
    release: Release<'_>,
    settings: &TrafficSettings,
    deployment_id: &str,
) -> Result<Evaluation, DecisionError>
where
    C: Deployments,
    F: FunctionVersions,
    H: HealthSignals,
    D: SharedDatabase,
{
    match point {
        DecisionPoint::PreTraffic => pre_traffic(ports, release, settings, deployment_id).await,
        DecisionPoint::PostTraffic => post_traffic(ports, release, settings, deployment_id).await,
        DecisionPoint::BetweenSteps => between_steps(ports, release, settings, deployment_id).await,
    }
}

/// What one run of the gate monitor found, and the `GateFailing` values to publish.
#[derive(Clone, Debug)]
pub struct Monitored {
    pub reports: Vec<GroupReport>,
    pub points: Vec<GatePoint>,
    /// What each version costs the database, where sampled.
    pub load: Vec<LoadPoint>,
}

/// The gate monitor: the between-steps decision for every active deployment of each
/// `application/deployment group`, as `GateFailing` values per group, per group and gate
/// (dimension `Gate`), and per application (the maximum over its groups). A deployment that
/// cannot be evaluated, or a group whose deployments cannot be listed, counts as failing. An
/// observe-only gate is published under its `Gate` like any other, but does not fail the group.
pub async fn monitor<C, F, H, L, D>(
    ports: Ports<'_, C, F, H, L, D>,
    release: Release<'_>,
    settings: &TrafficSettings,
    groups: &[(String, String)],
) -> Monitored
where
    C: Deployments,
    F: FunctionVersions,
    H: HealthSignals,
    D: SharedDatabase,
{
    let mut reports = Vec::new();
    let mut points = Vec::new();
    for (application, group) in groups {
        let report = monitor_group(ports, release, settings, application, group, &mut points).await;
        points.push(GatePoint {
            dimensions: vec![("DeploymentGroup", format!("{application}/{group}"))],
            value: report.gate_failing,
        });
        reports.push(report);
    }
    // Per application too: an alarm on it needs no reference to the deployment group, which
    // lists the alarm (a template would otherwise be circular).
    let mut applications: Vec<(&str, f64)> = Vec::new();
    for report in &reports {
        match applications
            .iter_mut()
            .find(|(a, _)| *a == report.application)
        {
            Some((_, failing)) => *failing = failing.max(report.gate_failing),
            None => applications.push((&report.application, report.gate_failing)),
        }
    }
    points.extend(applications.iter().map(|(application, failing)| GatePoint {
        dimensions: vec![("Application", (*application).to_owned())],
        value: *failing,
    }));
    let load = reports
        .iter()
        .flat_map(|report| &report.evaluations)
        .filter_map(|evaluation| Some((evaluation.target.as_ref()?, &evaluation.database_load)))
        .flat_map(|(target, loads)| {
            loads.iter().flat_map(move |load| {
                load.metrics()
                    .into_iter()
                    .map(move |(metric, unit, value)| LoadPoint {
                        function: target.function.clone(),
                        version: load.version.clone(),
                        metric,
                        unit,
                        value,
                    })
            })
        })
        .collect();
    Monitored {
        reports,
        points,
        load,
    }
}

async fn monitor_group<C, F, H, L, D>(
    ports: Ports<'_, C, F, H, L, D>,
    release: Release<'_>,
    settings: &TrafficSettings,
    application: &str,
    group: &str,
    points: &mut Vec<GatePoint>,
) -> GroupReport
where
    C: Deployments,
    F: FunctionVersions,
    H: HealthSignals,
    D: SharedDatabase,
{
    let name = format!("{application}/{group}");
    let mut report = GroupReport {
        application: application.to_owned(),
        deployment_group: group.to_owned(),
        gate_failing: 0.0,
        hold: None,
        evaluations: Vec::new(),
        errors: Vec::new(),
    };
    // The operator's hold: the group's gate, published once with or without a deployment, and
    // recorded with each deployment's decision.
    let hold = match ports.deployments.group_holds(application, group).await {
        Ok(holds) => {
            let mut gate = hold_gate(&holds);
            mark_observed(std::slice::from_mut(&mut gate), release, settings);
            Some(gate)
        }
        Err(error) => {
            report.errors.push(format!("hold: {error}"));
            None
        }
    };
    match ports
        .deployments
        .active_deployments(application, group)
        .await
    {
        Err(error) => report.errors.push(error.to_string()),
        Ok(ids) => {
            if let Some(hold) = &hold {
                points.push(GatePoint {
                    dimensions: vec![
                        ("DeploymentGroup", name.clone()),
                        ("Gate", hold.gate.clone()),
                    ],
                    value: failing_value(hold, false),
                });
                if !hold.passed() && hold.decides() {
                    report.gate_failing = 1.0;
                }
            }
            for id in ids {
                match between_steps(ports, release, settings, &id).await {
                    Ok(mut evaluation) => {
                        let decision = &evaluation.decision;
                        points.extend(decision.gates.iter().map(|gate| GatePoint {
                            dimensions: vec![
                                ("DeploymentGroup", name.clone()),
                                ("Gate", gate.gate.clone()),
                            ],
                            value: failing_value(gate, decision.inconclusive_passes),
                        }));
                        if !decision.passed() {
                            report.gate_failing = 1.0;
                        }
                        // In the record too (published once above, for the group).
                        evaluation.decision.gates.extend(hold.clone());
                        report.evaluations.push(evaluation);
                    }
                    Err(error) => report
                        .errors
                        .push(format!("{id}: could not decide: {error}")),
                }
            }
        }
    }
    if !report.errors.is_empty() {
        report.gate_failing = 1.0;
    }
    report.hold = hold;
    report
}

/// Marks the gates `[gates] observe` and the settings name observe-only.
fn mark_observed(gates: &mut [GateResult], release: Release<'_>, settings: &TrafficSettings) {
    gate::observe(gates, &release.config.gates.observe);
    gate::observe(gates, &settings.observe);
}

/// 0 for a passing gate (or an inconclusive one the policy lets pass), else 1.
fn failing_value(gate: &GateResult, inconclusive_passes: bool) -> f64 {
    match gate.verdict {
        GateVerdict::Pass => 0.0,
        GateVerdict::Inconclusive(_) if inconclusive_passes => 0.0,
        _ => 1.0,
    }
}

/// The database as an approval reads it: heads, the named backfills now, the gate's SQL checks.
struct DatabaseNow {
    heads: Vec<String>,
    backfills: Vec<BackfillNow>,
    checks: Vec<GateResult>,
}

async fn database_now<D: SharedDatabase>(
    config: &ProjectConfig,
    database: &D,
    backfills: &[String],
    gate: GateKind,
) -> Result<DatabaseNow, DecisionError> {
    let heads = database.heads().await?;
    let defined = backfills
        .iter()
        .map(|name| {
            config.backfill(name).ok_or_else(|| {
                DecisionError::Configuration(format!(
                    "no backfill named {name} in the configuration"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let backfills = backfills_now(database, &defined).await?;
    let mut checks = Vec::new();
    for check in config.checks_for(gate).filter(|c| c.query.is_some()) {
        let value = database
            .measure(check)
            .await
            .map_err(|e| DecisionError::Database(format!("check {}: {e}", check.name)))?;
        checks.push(check.judge(value));
    }
    Ok(DatabaseNow {
        heads,
        backfills,
        checks,
    })
}

/// The first pending key of each backfill.
async fn backfills_now<D: SharedDatabase>(
    database: &D,
    backfills: &[&BackfillConfig],
) -> Result<Vec<BackfillNow>, DecisionError> {
    let mut now = Vec::with_capacity(backfills.len());
    for backfill in backfills {
        now.push(BackfillNow {
            name: backfill.name.clone(),
            first_pending_key: database
                .first_pending_key(backfill)
                .await?
                .map(|key| ShownKey::new(key, backfill.tuning.show_keys)),
        });
    }
    Ok(now)
}

/// The gate's metric checks on the alias's primary version; the cutover also judges the
/// primary's health by the default budget over `[gates] cutover_health_minutes` when it has no
/// metric check of its own.
async fn metric_checks<H: HealthSignals>(
    config: &ProjectConfig,
    health: &H,
    gate: GateKind,
    (function, alias, primary): (&str, &str, &str),
) -> Result<Vec<GateResult>, DecisionError> {
    let mut results = Vec::new();
    let minutes = config.gates.cutover_health_minutes;
    if gate == GateKind::Cutover
        && minutes > 0
        && !config.checks_for(gate).any(|c| c.metric.is_some())
    {
        let window = Duration::from_secs(minutes * 60);
        let metrics = health
            .version_metrics(function, alias, primary, window)
            .await?;
        results.extend(gate::health_gates(&metrics, None, &HealthBudget::default()));
    }
    for check in config.checks_for(gate).filter(|c| c.metric.is_some()) {
        let window = Duration::from_secs(check.window_minutes * 60);
        let metrics = health
            .version_metrics(function, alias, primary, window)
            .await?;
        results.push(check.judge_metrics(&metrics));
    }
    Ok(results)
}

/// The cutover (flip the flag): the shift is over, the backfills are complete now, the cutover
/// checks hold, and the way back is open (`previous_version`, by default the highest published
/// version below the alias's primary, still fits the database).
pub async fn cutover<C, F, H, L, D>(
    ports: Ports<'_, C, F, H, L, D>,
    release: Release<'_>,
    (function, alias): (&str, &str),
    previous_version: Option<&str>,
) -> Result<ApprovalRecord, DecisionError>
where
    F: FunctionVersions,
    H: HealthSignals,
    D: SharedDatabase,
{
    let config = release.config;
    let routing = ports.functions.routing(function, alias).await?;
    let backfills = config.gate_backfills(GateKind::Cutover);
    let db = database_now(config, ports.database, &backfills, GateKind::Cutover).await?;
    let mut checks = db.checks;
    let primary = (function, alias, routing.primary.as_str());
    checks.extend(metric_checks(config, ports.health, GateKind::Cutover, primary).await?);
    let state = DatabaseState::new(release.graph, &db.heads)?;
    let versions = ports.functions.versions(function).await?;
    let previous = match previous_version {
        Some(version) => versions
            .iter()
            .find(|v| v.version == version)
            .cloned()
            .ok_or_else(|| format!("{function} has no published version {version}")),
        None => previous_of(&versions, &routing.primary).ok_or_else(|| {
            format!(
                "{function} has no published version below {} to roll back to",
                routing.primary
            )
        }),
    };
    let shift = shift_of(function, alias, routing);
    let mut decision = approval::cutover(
        release.graph,
        &state,
        &shift,
        previous.as_ref().map_err(Clone::clone),
        (&backfills, &db.backfills),
        checks,
    );
    gate::observe(&mut decision.gates, &config.gates.observe);
    Ok(ApprovalRecord {
        gate: GateKind::Cutover,
        result: decision.overall(),
        revision: None,
        database: ports.database.target().to_owned(),
        database_heads: db.heads,
        function: function.to_owned(),
        alias: alias.to_owned(),
        functions: Vec::new(),
        backfills: db.backfills,
        rollback_version: previous.ok(),
        gates: decision.gates,
    })
}

/// The highest published version below `primary` (versions are numbered).
fn previous_of(versions: &[VersionStamp], primary: &str) -> Option<VersionStamp> {
    let primary: u64 = primary.parse().ok()?;
    versions
        .iter()
        .filter_map(|v| v.version.parse::<u64>().ok().map(|n| (n, v)))
        .filter(|(n, _)| *n < primary)
        .max_by_key(|(n, _)| *n)
        .map(|(_, v)| v.clone())
}

fn shift_of(function: &str, alias: &str, routing: Routing) -> Shift {
    Shift {
        function: function.to_owned(),
        alias: alias.to_owned(),
        primary: routing.primary,
        additional: routing.additional,
    }
}

/// The contract: every version that can still run, of the app and of every function sharing
/// the database, fits the database at `revision` (a unique prefix is enough); no alias is
/// shifting traffic; the contract's backfills are complete; its checks hold.
pub async fn contract<C, F, H, L, D>(
    ports: Ports<'_, C, F, H, L, D>,
    release: Release<'_>,
    (function, alias): (&str, &str),
    revision: &str,
    observation: Duration,
) -> Result<ApprovalRecord, DecisionError>
where
    F: FunctionVersions,
    H: HealthSignals,
    L: LiveEvidence,
    D: SharedDatabase,
{
    let (graph, config) = (release.graph, release.config);
    let target = graph
        .resolve(revision)
        .map_err(|e| DecisionError::Configuration(format!("contract revision {revision}: {e}")))?;
    let revision = graph.revision(target).id.clone();
    // The alias must exist: a typo must not pass as "nothing live".
    let routing = ports.functions.routing(function, alias).await?;
    let backfills = config.gate_backfills(GateKind::Contract);
    let db = database_now(config, ports.database, &backfills, GateKind::Contract).await?;
    let after = approval::state_after(graph, &db.heads, &revision)?;
    let mut checks = db.checks;
    let primary = (function, alias, routing.primary.as_str());
    checks.extend(metric_checks(config, ports.health, GateKind::Contract, primary).await?);

    // Only versions that could not run at the revision matter if invoked.
    let cannot_run = |stamp: &VersionStamp| {
        stamp
            .schema_revision
            .as_deref()
            .and_then(|r| graph.index_of(r))
            .is_none_or(|build| !check_build(graph, build, &after).is_compatible())
    };
    let mut records: Vec<FunctionLive> = Vec::new();
    for checked in sharing_functions(config, ports.live, function).await? {
        records.push(
            ports
                .live
                .live_versions(&checked, observation, &cannot_run)
                .await?,
        );
    }
    let live: Vec<_> = records
        .iter()
        .flat_map(|r| r.live.iter().cloned())
        .collect();
    // The app's alias always; any other alias of a checked function while it splits traffic.
    let mut shifts = vec![shift_of(function, alias, routing)];
    shifts.extend(
        records
            .iter()
            .flat_map(|r| r.aliases.iter())
            .filter(|a| !a.additional.is_empty())
            .filter(|a| !(a.function == function && a.alias == alias))
            .cloned(),
    );
    let mut decision = approval::contract(
        graph,
        &after,
        &live,
        &shifts,
        (&backfills, &db.backfills),
        checks,
    );
    gate::observe(&mut decision.gates, &config.gates.observe);
    Ok(ApprovalRecord {
        gate: GateKind::Contract,
        result: decision.overall(),
        revision: Some(revision),
        database: ports.database.target().to_owned(),
        database_heads: db.heads,
        function: function.to_owned(),
        alias: alias.to_owned(),
        functions: records,
        backfills: db.backfills,
        rollback_version: None,
        gates: decision.gates,
    })
}

/// The app's function, `[gates] shared_functions`, and the functions tagged with
/// `[gates] database_tag`, each once.
async fn sharing_functions<L: LiveEvidence>(
    config: &ProjectConfig,
    live: &L,
    function: &str,
) -> Result<Vec<String>, DecisionError> {
    let mut functions = vec![function.to_owned()];
    let mut add = |name: &String| {
        if !functions.contains(name) {
            functions.push(name.clone());
        }
    };
    config.gates.shared_functions.iter().for_each(&mut add);
    if let Some(value) = &config.gates.database_tag {
        live.functions_tagged(DATABASE_TAG, value)
            .await?
            .iter()
            .for_each(add);
    }
    Ok(functions)
}

/// Every live version of `function` (over `[gates] observation_minutes`) and whether it can run
/// on the database now, with the alias's weights.
pub async fn versions_now<C, F, H, L, D>(
    ports: Ports<'_, C, F, H, L, D>,
    release: Release<'_>,
    (function, alias): (&str, &str),
) -> Result<VersionsNow, DecisionError>
where
    F: FunctionVersions,
    L: LiveEvidence,
    D: SharedDatabase,
{
    let graph = release.graph;
    let routing = ports.functions.routing(function, alias).await?;
    let heads = ports.database.heads().await?;
    let state = DatabaseState::new(graph, &heads)?;
    let cannot_run_now = |stamp: &VersionStamp| !schema_gate(graph, &state, "", stamp).passed();
    let window = Duration::from_secs(release.config.gates.observation_minutes * 60);
    let found = ports
        .live
        .live_versions(function, window, &cannot_run_now)
        .await?;
    let versions = found
        .live
        .into_iter()
        .map(|v| VersionNow {
            weight: routing.weight_of(&v.stamp.version),
            fits: schema_gate(graph, &state, "now", &v.stamp),
            stamp: v.stamp,
            because: v.because,
        })
        .collect();
    let unapplied_heads = graph
        .heads()
        .into_iter()
        .filter(|&h| !state.applied().contains(h))
        .map(|h| graph.revision(h).id.clone())
        .collect();
    Ok(VersionsNow {
        routing,
        database: ports.database.target().to_owned(),
        database_heads: heads,
        unapplied_heads,
        versions,
    })
}

#[cfg(test)]
mod tests;
