//! The CodeDeploy lifecycle hooks. CodeDeploy invokes a hook with a deployment id and a hook
//! execution id; the hook reads what the deployment moves (the AppSpec), both versions' schema
//! stamps, the database's Alembic state, and for `BeforeAllowTraffic` the backfills the target
//! needs, for `AfterAllowTraffic` the versions' traffic in CloudWatch; it evaluates the gates
//! and calls `PutLifecycleEventHookExecutionStatus` exactly once, with `Failed` on every path
//! where it cannot show that the step is safe: a failing gate, an error, a panic in the
//! evaluation, or a deadline that would otherwise stop it before it reports.

pub mod config;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use shiftguard_aws::{
    CloudWatchAdapter, CodeDeployAdapter, HookStatus, LambdaAdapter, MetricPoint,
};
use shiftguard_core::appspec::LambdaTarget;
use shiftguard_core::config::ProjectConfig;
use shiftguard_core::gate::{
    BackfillNow, Decision, HealthBudget, VersionMetrics, VersionStamp, between_steps, post_traffic,
    pre_traffic, smoke_gate,
};
use shiftguard_core::{DatabaseState, Manifest, RevisionGraph};
use shiftguard_sql::backfill::first_pending_key;
use shiftguard_sql::{ConnectSettings, Connection, DatabaseUrl, read_heads};

use crate::config::HookConfig;

/// Which lifecycle event a hook serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Phase {
    /// `BeforeAllowTraffic`: schema inside both versions' windows, required backfills complete.
    PreTraffic,
    /// `AfterAllowTraffic`: schema still fits the target; the target's health within budget.
    PostTraffic,
    /// The gate monitor, between canary steps: the pre-traffic gates and the target's health.
    BetweenSteps,
}

/// What a hook needs, built once per cold start.
#[derive(Debug)]
pub struct Deps {
    pub graph: RevisionGraph,
    pub project: ProjectConfig,
    pub url: DatabaseUrl,
    pub version_table: String,
    pub codedeploy: CodeDeployAdapter,
    pub lambda: LambdaAdapter,
    pub cloudwatch: CloudWatchAdapter,
    pub budget: HealthBudget,
    pub metrics_window: Duration,
    pub smoke: Option<config::Smoke>,
    pub deadline_margin: Duration,
}

impl Deps {
    /// Reads the manifest and configuration, resolves the database URL and creates the clients.
    pub async fn build(config: &HookConfig, aws: &aws_config::SdkConfig) -> anyhow::Result<Self> {
        let manifest = std::fs::read_to_string(&config.manifest_path)
            .with_context(|| format!("cannot read manifest {}", config.manifest_path.display()))?;
        let graph = Manifest::parse(&manifest)
            .with_context(|| config.manifest_path.display().to_string())?;
        let project = match &config.config_path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read configuration {}", path.display()))?;
                ProjectConfig::parse(&text).with_context(|| path.display().to_string())?
            }
            None => ProjectConfig::default(),
        };
        let url = DatabaseUrl::parse(&config.database.resolve(aws).await?)?;
        Ok(Deps {
            graph,
            project,
            url,
            version_table: config.version_table.clone(),
            codedeploy: CodeDeployAdapter::new(aws),
            lambda: LambdaAdapter::new(aws),
            cloudwatch: CloudWatchAdapter::new(aws),
            budget: config.budget.clone(),
            metrics_window: config.metrics_window,
            smoke: config.smoke.clone(),
            deadline_margin: config.deadline_margin,
        })
    }
}

/// The decision record: one JSON log line per evaluation.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Evaluation {
    pub phase: Option<Phase>,
    pub deployment_id: String,
    pub target: Option<LambdaTarget>,
    pub current_version: Option<VersionStamp>,
    pub target_version: Option<VersionStamp>,
    pub database: Option<String>,
    pub database_heads: Vec<String>,
    pub backfills: Vec<BackfillNow>,
    /// Post-traffic: the target's and the current version's traffic in the window.
    pub metrics: Vec<VersionMetrics>,
    /// Post-traffic: the alias's configured weight for the target, and the share of
    /// invocations it really served (they drift apart at low traffic).
    pub configured_weight: Option<f64>,
    pub observed_weight: Option<f64>,
    pub decision: Decision,
}

/// How one hook invocation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reported {
    pub status: HookStatus,
    /// Why, when Failed.
    pub reason: Option<String>,
}

/// Evaluates a phase's gates for a deployment. An `Err` is a failure to decide.
pub async fn evaluate(
    deps: Arc<Deps>,
    phase: Phase,
    deployment_id: String,
) -> Result<Evaluation, String> {
    let mut record = Evaluation {
        phase: Some(phase),
        deployment_id: deployment_id.clone(),
        ..Evaluation::default()
    };
    let target = deps
        .codedeploy
        .lambda_target(&deployment_id)
        .await
        .map_err(|e| e.to_string())?;
    let current = deps
        .lambda
        .version_stamp(&target.function, &target.current_version)
        .await
        .map_err(|e| e.to_string())?;
    let next = deps
        .lambda
        .version_stamp(&target.function, &target.target_version)
        .await
        .map_err(|e| e.to_string())?;
    record.target = Some(target);

    let mut connection = Connection::open(&deps.url, ConnectSettings::default())
        .await
        .map_err(|e| e.to_string())?;
    let heads = read_heads(&mut connection, &deps.url, &deps.version_table).await;
    let mut backfills = Vec::new();
    let required: &[String] = match phase {
        Phase::PreTraffic | Phase::BetweenSteps => &next.required_backfills,
        Phase::PostTraffic => &[],
    };
    for name in required {
        // A name the configuration lacks is reported by the gate itself.
        if let Some(config) = deps.project.backfill(name) {
            let first = first_pending_key(&mut connection, &deps.url, config)
                .await
                .map_err(|e| e.to_string())?;
            backfills.push(BackfillNow {
                name: name.clone(),
                first_pending_key: first,
            });
        }
    }
    connection.close().await;
    let heads = heads.map_err(|e| e.to_string())?;
    let state = DatabaseState::new(&deps.graph, &heads).map_err(|e| e.to_string())?;

    let mut pre = pre_traffic(&deps.graph, &state, &current, &next, &backfills);
    if let (Some(smoke), Phase::PreTraffic) = (&deps.smoke, phase)
        && let Some(target) = &record.target
    {
        let outcome = deps
            .lambda
            .invoke(&target.function, &target.target_version, &smoke.payload)
            .await
            .map_err(|e| e.to_string())?;
        pre.gates
            .push(smoke_gate(&target.target_version, &outcome, &smoke.expect));
    }
    record.decision = match phase {
        Phase::PreTraffic => pre,
        Phase::PostTraffic | Phase::BetweenSteps => {
            let target = record.target.clone().ok_or("no deployment target")?;
            let (new, old) = traffic(&deps, &target, &mut record).await?;
            let decision = match phase {
                Phase::PostTraffic => {
                    post_traffic(&deps.graph, &state, &next, &new, Some(&old), &deps.budget)
                }
                _ => between_steps(pre, &new, Some(&old), &deps.budget),
            };
            record.metrics = vec![new, old];
            decision
        }
    };
    record.database = Some(deps.url.target().to_owned());
    record.database_heads = heads;
    record.backfills = backfills;
    record.current_version = Some(current);
    record.target_version = Some(next);
    Ok(record)
}

/// The target's and the current version's traffic in the window, and how the observed split
/// compares with the alias's weight (logged when they differ by more than 10 points).
async fn traffic(
    deps: &Deps,
    target: &LambdaTarget,
    record: &mut Evaluation,
) -> Result<(VersionMetrics, VersionMetrics), String> {
    let (function, alias, window) = (&target.function, &target.alias, deps.metrics_window);
    let new = deps
        .cloudwatch
        .version_metrics(function, alias, &target.target_version, window)
        .await
        .map_err(|e| e.to_string())?;
    let old = deps
        .cloudwatch
        .version_metrics(function, alias, &target.current_version, window)
        .await
        .map_err(|e| e.to_string())?;
    let (_, weights) = deps
        .lambda
        .alias_routing(&target.function, &target.alias)
        .await
        .map_err(|e| e.to_string())?;
    let configured = weights
        .iter()
        .find(|(v, _)| *v == target.target_version)
        .map_or(1.0, |(_, w)| *w);
    let total = new.invocations + old.invocations;
    let observed = (total > 0.0).then(|| new.invocations / total);
    if let Some(observed) = observed
        && (configured - observed).abs() > 0.1
    {
        tracing::warn!(
            configured,
            observed,
            invocations = total,
            "the observed traffic split differs from the alias weight (low traffic?)"
        );
    }
    record.configured_weight = Some(configured);
    record.observed_weight = observed;
    Ok((new, old))
}

/// Runs `evaluation` and reports its outcome exactly once: Succeeded only when it finished and
/// every gate passed; Failed when a gate failed, it returned an error, it panicked, or
/// `deadline` came first. Returns what was reported; `Err` only when the report itself failed.
pub async fn report_once<F>(
    codedeploy: &CodeDeployAdapter,
    deployment_id: &str,
    execution_id: &str,
    deadline: Instant,
    evaluation: F,
) -> Result<Reported, shiftguard_aws::AwsError>
where
    F: Future<Output = Result<Evaluation, String>> + Send + 'static,
{
    let mut task = tokio::spawn(evaluation);
    let outcome = tokio::select! {
        joined = &mut task => match joined {
            Ok(Ok(record)) => {
                log_record(&record);
                if record.decision.passed() {
                    Reported { status: HookStatus::Succeeded, reason: None }
                } else {
                    failed(record.decision.failures())
                }
            }
            Ok(Err(error)) => failed(format!("could not decide: {error}")),
            Err(join) if join.is_panic() => failed(format!(
                "could not decide: the evaluation panicked: {}",
                panic_message(join.into_panic())
            )),
            Err(join) => failed(format!("could not decide: {join}")),
        },
        () = tokio::time::sleep_until(deadline.into()) => {
            task.abort();
            failed("could not decide before the invocation's deadline".to_owned())
        }
    };
    match &outcome.reason {
        None => tracing::info!(deployment_id, "gates pass: reporting Succeeded"),
        Some(reason) => tracing::warn!(deployment_id, reason = reason.as_str(), "reporting Failed"),
    }
    codedeploy
        .report(deployment_id, execution_id, outcome.status)
        .await?;
    Ok(outcome)
}

fn failed(reason: String) -> Reported {
    Reported {
        status: HookStatus::Failed,
        reason: Some(reason),
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic".to_owned())
}

fn log_record(record: &Evaluation) {
    match serde_json::to_string(record) {
        Ok(json) => tracing::info!(record = json.as_str(), "decision record"),
        Err(error) => tracing::warn!(%error, "decision record could not be written"),
    }
}

/// The two ids of a hook event. A malformed event without them cannot be reported on.
pub fn hook_ids(event: &serde_json::Value) -> Result<(String, String), String> {
    let id = |key: &str| {
        event
            .get(key)
            .and_then(|v| v.as_str())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    match (id("DeploymentId"), id("LifecycleEventHookExecutionId")) {
        (Some(deployment), Some(execution)) => Ok((deployment, execution)),
        _ => Err(format!(
            "the event carries no DeploymentId and LifecycleEventHookExecutionId, so no status can be reported: {}",
            truncate(&event.to_string(), 200)
        )),
    }
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// One invocation: ids from the event, evaluation, exactly one report. A duplicate delivery
/// whose report CodeDeploy refuses (the status is already set) is logged, not an error.
pub async fn handle(
    phase: Phase,
    event: serde_json::Value,
    deadline: Instant,
    deps: Arc<Deps>,
) -> anyhow::Result<Reported> {
    let (deployment_id, execution_id) = hook_ids(&event).map_err(anyhow::Error::msg)?;
    let evaluation = evaluate(Arc::clone(&deps), phase, deployment_id.clone());
    match report_once(
        &deps.codedeploy,
        &deployment_id,
        &execution_id,
        deadline,
        evaluation,
    )
    .await
    {
        Ok(reported) => Ok(reported),
        Err(error)
            if !error.transient
                && error
                    .message
                    .contains("InvalidLifecycleEventHookExecutionStatus") =>
        {
            tracing::warn!(deployment_id, error = %error, "the hook execution already has a status (duplicate delivery)");
            Ok(Reported {
                status: HookStatus::Failed,
                reason: Some(format!("duplicate delivery: {error}")),
            })
        }
        Err(error) => Err(error.into()),
    }
}

/// What the gate monitor found for one deployment group.
#[derive(Clone, Debug, Serialize)]
pub struct GroupReport {
    pub application: String,
    pub deployment_group: String,
    /// 1 when any active deployment fails a gate or cannot be evaluated, else 0.
    pub gate_failing: f64,
    pub evaluations: Vec<Evaluation>,
    pub errors: Vec<String>,
}

/// The CloudWatch namespace of the gate monitor's metrics.
pub const MONITOR_NAMESPACE: &str = "Shiftguard";

/// The gate monitor: evaluates every active deployment of each `application/deployment group`
/// and publishes `GateFailing` (0/1) per group, per group and gate (dimension `Gate`), and per
/// application (the maximum over its groups), in the `Shiftguard` namespace, for the alarms that CodeDeploy watches between canary steps. An
/// evaluation that cannot decide counts as failing.
pub async fn monitor(
    deps: Arc<Deps>,
    groups: &[(String, String)],
) -> anyhow::Result<Vec<GroupReport>> {
    let mut reports = Vec::new();
    let mut points: Vec<MetricPoint> = Vec::new();
    for (application, group) in groups {
        let name = format!("{application}/{group}");
        let mut report = GroupReport {
            application: application.clone(),
            deployment_group: group.clone(),
            gate_failing: 0.0,
            evaluations: Vec::new(),
            errors: Vec::new(),
        };
        match deps.codedeploy.active_deployments(application, group).await {
            Err(error) => report.errors.push(error.to_string()),
            Ok(ids) => {
                for id in ids {
                    match evaluate(Arc::clone(&deps), Phase::BetweenSteps, id.clone()).await {
                        Ok(evaluation) => {
                            log_record(&evaluation);
                            for gate in &evaluation.decision.gates {
                                let failing = match gate.verdict {
                                    shiftguard_core::gate::GateVerdict::Pass => 0.0,
                                    shiftguard_core::gate::GateVerdict::Inconclusive(_)
                                        if evaluation.decision.inconclusive_passes =>
                                    {
                                        0.0
                                    }
                                    _ => 1.0,
                                };
                                points.push(MetricPoint {
                                    name: "GateFailing",
                                    dimensions: vec![
                                        ("DeploymentGroup", name.clone()),
                                        ("Gate", gate.gate.clone()),
                                    ],
                                    value: failing,
                                });
                            }
                            if !evaluation.decision.passed() {
                                tracing::warn!(
                                    deployment_id = id.as_str(),
                                    failures = evaluation.decision.failures().as_str(),
                                    "gates failing between steps"
                                );
                            }
                            report.gate_failing =
                                report.gate_failing.max(if evaluation.decision.passed() {
                                    0.0
                                } else {
                                    1.0
                                });
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
            tracing::warn!(group = name.as_str(), errors = ?report.errors, "gate monitor could not decide: failing closed");
            report.gate_failing = 1.0;
        }
        points.push(MetricPoint {
            name: "GateFailing",
            dimensions: vec![("DeploymentGroup", name)],
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
    points.extend(
        applications
            .iter()
            .map(|(application, failing)| MetricPoint {
                name: "GateFailing",
                dimensions: vec![("Application", (*application).to_owned())],
                value: *failing,
            }),
    );
    deps.cloudwatch
        .publish(MONITOR_NAMESPACE, &points)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(reports)
}

/// `SHIFTGUARD_DEPLOYMENT_GROUPS`: `application/group` pairs, comma-separated.
pub fn deployment_groups(value: &str) -> Result<Vec<(String, String)>, String> {
    let groups: Vec<(String, String)> = value
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(|g| {
            g.split_once('/')
                .filter(|(a, d)| !a.is_empty() && !d.is_empty())
                .map(|(a, d)| (a.to_owned(), d.to_owned()))
                .ok_or_else(|| {
                    format!(
                        "SHIFTGUARD_DEPLOYMENT_GROUPS: `{g}` is not application/deployment-group"
                    )
                })
        })
        .collect::<Result<_, _>>()?;
    if groups.is_empty() {
        return Err(
            "SHIFTGUARD_DEPLOYMENT_GROUPS names no application/deployment-group".to_owned(),
        );
    }
    Ok(groups)
}

/// The whole Lambda function of a hook: configuration (from `environment`, the process
/// environment in `main`) and clients once per cold start, then one [`handle`] per invocation
/// with the invocation's deadline less the margin.
pub async fn run_hook(
    phase: Phase,
    environment: impl Fn(&str) -> Option<String>,
) -> Result<(), lambda_runtime::Error> {
    shiftguard_aws::init_json_logging();
    let config = HookConfig::from_lookup(&environment)?;
    let aws = aws_config::load_from_env().await;
    let deps = Arc::new(Deps::build(&config, &aws).await?);
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<serde_json::Value>| {
            let deps = Arc::clone(&deps);
            async move {
                let deadline =
                    shiftguard_aws::deadline_instant(event.context.deadline, deps.deadline_margin);
                let reported = handle(phase, event.payload, deadline, deps).await?;
                Ok::<_, lambda_runtime::Error>(serde_json::json!({
                    "status": format!("{:?}", reported.status),
                    "reason": reported.reason,
                }))
            }
        },
    ))
    .await
}

/// The whole Lambda function of the gate monitor (scheduled; the event is ignored).
pub async fn run_monitor(
    environment: impl Fn(&str) -> Option<String>,
) -> Result<(), lambda_runtime::Error> {
    shiftguard_aws::init_json_logging();
    let config = HookConfig::from_lookup(&environment)?;
    let groups =
        deployment_groups(&environment("SHIFTGUARD_DEPLOYMENT_GROUPS").unwrap_or_default())?;
    let aws = aws_config::load_from_env().await;
    let deps = Arc::new(Deps::build(&config, &aws).await?);
    let groups = Arc::new(groups);
    lambda_runtime::run(lambda_runtime::service_fn(
        move |_event: lambda_runtime::LambdaEvent<serde_json::Value>| {
            let (deps, groups) = (Arc::clone(&deps), Arc::clone(&groups));
            async move {
                let reports = monitor(deps, &groups).await?;
                Ok::<_, lambda_runtime::Error>(serde_json::to_value(reports)?)
            }
        },
    ))
    .await
}
