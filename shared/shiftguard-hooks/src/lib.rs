//! The CodeDeploy lifecycle hooks and the gate monitor, at the edge: they build the production
//! ports once per cold start ([`Deps`]), run one decision of
//! `shiftguard_core::release::decide` per invocation, and turn its outcome into exactly one
//! `PutLifecycleEventHookExecutionStatus` (hooks) or `GateFailing` metrics (monitor). `Failed`
//! on every path where the step cannot be shown safe: a failing gate, a [`DecisionError`], a
//! panic in the evaluation, or a deadline that would otherwise stop the hook before it reports.

pub mod config;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shiftguard_aws::{
    CloudWatchAdapter, CodeDeployAdapter, HookStatus, LambdaAdapter, MetricPoint, Notifier,
};
use shiftguard_core::config::ProjectConfig;
use shiftguard_core::release::decide::{self, Release, TrafficSettings};
use shiftguard_core::release::notify;
use shiftguard_core::release::{DecisionError, Evaluation, GroupReport, Ports};
use shiftguard_core::{Manifest, RevisionGraph};
use shiftguard_sql::{ConnectSettings, DatabaseUrl, SqlDatabase};

use crate::config::HookConfig;

pub use shiftguard_core::release::DecisionPoint;

/// What a hook needs, built by the first invocation that can build it (see `Setup`).
#[derive(Clone, Debug)]
pub struct Deps {
    pub graph: RevisionGraph,
    pub project: ProjectConfig,
    pub url: DatabaseUrl,
    pub version_table: String,
    pub codedeploy: CodeDeployAdapter,
    pub lambda: LambdaAdapter,
    pub cloudwatch: CloudWatchAdapter,
    /// Where the monitor tells of a verdict that changed; none configured, nowhere.
    pub notifier: Option<Notifier>,
    /// The verdict (`GateFailing`) last told per group, while this function stays warm.
    pub verdicts: Arc<Mutex<HashMap<String, f64>>>,
    pub settings: TrafficSettings,
}

impl Deps {
    /// Reads the manifest and configuration, resolves the database URL and creates the clients.
    pub async fn build(config: &HookConfig, aws: &aws_config::SdkConfig) -> anyhow::Result<Self> {
        let path = &config.manifest_path;
        let manifest = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read manifest {}: {e}", path.display()))?;
        let graph =
            Manifest::parse(&manifest).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let project = match &config.config_path {
            Some(path) => ProjectConfig::read(path)?,
            None => ProjectConfig::default(),
        };
        let url = DatabaseUrl::parse(&config.database.resolve(aws).await?)?;
        Ok(Deps {
            graph,
            project,
            url,
            version_table: config.version_table.clone(),
            codedeploy: match &config.holds_table {
                Some(table) => reporting_client(aws, config.deadline_margin)
                    .with_holds(shiftguard_aws::DynamoHolds::new(aws, table)),
                None => reporting_client(aws, config.deadline_margin),
            },
            lambda: LambdaAdapter::new(aws),
            cloudwatch: CloudWatchAdapter::new(aws),
            notifier: Notifier::new(aws, &config.notify),
            verdicts: Arc::default(),
            settings: config.settings.clone(),
        })
    }

    /// Reads the configuration from `environment` and builds, by `deadline` (a secret that
    /// does not come would otherwise hold the hook until Lambda kills it); the problem as one
    /// line otherwise.
    pub async fn build_by(
        environment: impl Fn(&str) -> Option<String>,
        aws: &aws_config::SdkConfig,
        deadline: Instant,
    ) -> Result<Self, String> {
        let config = HookConfig::from_lookup(environment)?;
        tokio::time::timeout_at(deadline.into(), Deps::build(&config, aws))
            .await
            .map_err(|_| "setup did not finish before the deadline".to_owned())?
            .map_err(|e| format!("{e:#}"))
    }

    fn release(&self) -> Release<'_> {
        Release {
            graph: &self.graph,
            config: &self.project,
        }
    }

    /// The hooks' database: one read-only session per decision, or per monitor run, whose
    /// statements the server stops at `deadline`.
    fn database(&self, deadline: Instant) -> SqlDatabase<'_> {
        SqlDatabase::new(&self.url, &self.version_table, ConnectSettings::default()).until(deadline)
    }
}

/// The production ports of a traffic decision (the live-version evidence is not read there).
fn ports<'a>(
    deps: &'a Deps,
    database: &'a SqlDatabase<'a>,
) -> Ports<'a, CodeDeployAdapter, LambdaAdapter, CloudWatchAdapter, (), SqlDatabase<'a>> {
    Ports {
        deployments: &deps.codedeploy,
        functions: &deps.lambda,
        health: &deps.cloudwatch,
        live: &(),
        database,
    }
}

/// How one hook invocation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reported {
    pub status: HookStatus,
    /// Why, when Failed.
    pub reason: Option<String>,
    /// The observe-only gates that did not pass, one line (empty when none): recorded, not
    /// deciding.
    pub observed: String,
}

/// The decision at `point` for a deployment, as the hooks make it.
pub async fn evaluate(
    deps: Arc<Deps>,
    point: DecisionPoint,
    deployment_id: String,
    deadline: Instant,
) -> Result<Evaluation, DecisionError> {
    let database = deps.database(deadline);
    let decided = decide::traffic_decision(
        point,
        ports(&deps, &database),
        deps.release(),
        &deps.settings,
        &deployment_id,
    )
    .await;
    database.close().await;
    decided
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
) -> Result<Reported, DecisionError>
where
    F: Future<Output = Result<Evaluation, DecisionError>> + Send + 'static,
{
    let mut task = tokio::spawn(evaluation);
    let decided = tokio::select! {
        joined = &mut task => joined.unwrap_or_else(|join| Err(if join.is_panic() {
            DecisionError::from_panic(join.into_panic().as_ref())
        } else {
            DecisionError::Panicked(join.to_string())
        })),
        () = tokio::time::sleep_until(deadline.into()) => {
            task.abort();
            Err(DecisionError::Deadline)
        }
    };
    let outcome = match decided {
        Ok(record) => {
            log_record(&record);
            let observed = record.decision.observed_failures();
            if !observed.is_empty() {
                tracing::warn!(
                    deployment_id,
                    observed = observed.as_str(),
                    "observe-only gates did not pass (not deciding)"
                );
            }
            let mut reported = if record.decision.passed() {
                Reported {
                    status: HookStatus::Succeeded,
                    reason: None,
                    observed: String::new(),
                }
            } else {
                failed(record.decision.failures())
            };
            reported.observed = observed;
            reported
        }
        Err(error) => failed(error.failed_reason()),
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
        observed: String::new(),
    }
}

/// The decision record as one JSON log line, and a warning when the observed traffic split
/// differs from the alias weight by more than 10 points (low traffic).
fn log_record(record: &Evaluation) {
    if let (Some(configured), Some(observed)) = (record.configured_weight, record.observed_weight)
        && (configured - observed).abs() > 0.1
    {
        let invocations: f64 = record.metrics.iter().map(|m| m.invocations).sum();
        tracing::warn!(
            configured,
            observed,
            invocations,
            "the observed traffic split differs from the alias weight (low traffic?)"
        );
    }
    match serde_json::to_string(record) {
        Ok(json) => tracing::info!(record = json.as_str(), "decision record"),
        Err(error) => tracing::warn!(%error, "decision record could not be written"),
    }
}

/// The two ids of a hook event. A malformed event without them cannot be reported on.
pub fn hook_ids(event: &serde_json::Value) -> Result<(String, String), DecisionError> {
    let id = |key: &str| {
        event
            .get(key)
            .and_then(|v| v.as_str())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    match (id("DeploymentId"), id("LifecycleEventHookExecutionId")) {
        (Some(deployment), Some(execution)) => Ok((deployment, execution)),
        _ => Err(DecisionError::MalformedEvent(format!(
            "the event carries no DeploymentId and LifecycleEventHookExecutionId, so no status can be reported: {}",
            truncate(&event.to_string(), 200)
        ))),
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
    point: DecisionPoint,
    event: serde_json::Value,
    deadline: Instant,
    deps: Arc<Deps>,
) -> Result<Reported, DecisionError> {
    let (deployment_id, execution_id) = hook_ids(&event)?;
    let evaluation = evaluate(Arc::clone(&deps), point, deployment_id.clone(), deadline);
    match report_once(
        &deps.codedeploy,
        &deployment_id,
        &execution_id,
        deadline,
        evaluation,
    )
    .await
    {
        Err(error @ DecisionError::DuplicateDelivery(_)) => {
            tracing::warn!(deployment_id, error = %error, "the hook execution already has a status (duplicate delivery)");
            Ok(failed(error.to_string()))
        }
        reported => reported,
    }
}

/// The CloudWatch namespace of the gate monitor's metrics.
pub const MONITOR_NAMESPACE: &str = "Shiftguard";

/// The gate monitor: `decide::monitor` over every `application/deployment group`, its
/// `GateFailing` values published in the `Shiftguard` namespace for the alarms CodeDeploy
/// watches between canary steps; a group whose verdict changed since the last value published
/// (read back before publishing) is told to the notifier, when there is one.
pub async fn monitor(
    deps: Arc<Deps>,
    groups: &[(String, String)],
    deadline: Instant,
) -> Result<Vec<GroupReport>, DecisionError> {
    let database = deps.database(deadline);
    let monitored = decide::monitor(
        ports(&deps, &database),
        deps.release(),
        &deps.settings,
        groups,
    )
    .await;
    database.close().await;
    for report in &monitored.reports {
        let group = format!("{}/{}", report.application, report.deployment_group);
        for evaluation in &report.evaluations {
            log_record(evaluation);
            if !evaluation.decision.passed() {
                tracing::warn!(
                    deployment_id = evaluation.deployment_id.as_str(),
                    failures = evaluation.decision.failures().as_str(),
                    "gates failing between steps"
                );
            }
        }
        if !report.errors.is_empty() {
            tracing::warn!(group = group.as_str(), errors = ?report.errors, "gate monitor could not decide: failing closed");
        }
    }
    let mut points: Vec<MetricPoint> = monitored
        .points
        .into_iter()
        .map(|point| MetricPoint {
            name: "GateFailing",
            dimensions: point.dimensions,
            value: point.value,
            unit: "Count",
        })
        .collect();
    points.extend(monitored.load.into_iter().map(|point| MetricPoint {
        name: point.metric,
        dimensions: vec![
            ("FunctionName", point.function),
            ("ExecutedVersion", point.version),
        ],
        value: point.value,
        unit: point.unit,
    }));
    let previous = match &deps.notifier {
        Some(_) => previous_verdicts(&deps, &monitored.reports, deadline).await,
        None => Vec::new(),
    };
    deps.cloudwatch
        .publish(MONITOR_NAMESPACE, &points)
        .await
        .map_err(|e| DecisionError::Metrics(e.message))?;
    if let Some(notifier) = &deps.notifier {
        tell_changes(&deps, notifier, &monitored.reports, previous, deadline).await;
    }
    Ok(monitored.reports)
}

/// How far back the monitor looks for a group's last `GateFailing` (it runs every minute).
const PREVIOUS_VERDICT_WITHIN: Duration = Duration::from_secs(15 * 60);

/// The longest the monitor waits for the previous verdicts: publishing must not wait on telling.
const PREVIOUS_VERDICT_READ: Duration = Duration::from_secs(5);

fn group_name(report: &GroupReport) -> String {
    format!("{}/{}", report.application, report.deployment_group)
}

/// Each group's verdict last told (this warm function's memory) or, after a cold start, its
/// last published `GateFailing`; none when neither is known (a failing verdict is then told
/// again: better twice than never).
async fn previous_verdicts(
    deps: &Deps,
    reports: &[GroupReport],
    deadline: Instant,
) -> Vec<Option<f64>> {
    let mut previous: Vec<Option<f64>> = {
        let told = deps.verdicts.lock().unwrap_or_else(|p| p.into_inner());
        reports
            .iter()
            .map(|report| told.get(&group_name(report)).copied())
            .collect()
    };
    let unknown: Vec<usize> = (0..reports.len())
        .filter(|&i| previous[i].is_none())
        .collect();
    if unknown.is_empty() {
        return previous;
    }
    let series: Vec<Vec<(&str, String)>> = unknown
        .iter()
        .map(|&i| vec![("DeploymentGroup", group_name(&reports[i]))])
        .collect();
    let read = deps.cloudwatch.latest_maximums(
        MONITOR_NAMESPACE,
        "GateFailing",
        &series,
        PREVIOUS_VERDICT_WITHIN,
    );
    let until = (Instant::now() + PREVIOUS_VERDICT_READ).min(deadline);
    match tokio::time::timeout_at(until.into(), read).await {
        Ok(Ok(values)) => {
            for (i, value) in unknown.into_iter().zip(values) {
                previous[i] = value;
            }
        }
        Ok(Err(error)) => tracing::warn!(error = error.message, "previous verdicts unknown"),
        Err(_) => tracing::warn!("previous verdicts unknown: CloudWatch did not answer in time"),
    }
    previous
}

/// Tells each group's verdict that changed, by `deadline`; remembers a verdict once told (or
/// when there was nothing to tell), so a notice that could not be sent is tried again next run.
async fn tell_changes(
    deps: &Deps,
    notifier: &Notifier,
    reports: &[GroupReport],
    previous: Vec<Option<f64>>,
    deadline: Instant,
) {
    for (report, previous) in reports.iter().zip(previous) {
        let told = match notify::verdict_change(report, previous) {
            None => true,
            // Telling is not deciding: the metrics are out, the alarm acts on them.
            Some(notice) => {
                match tokio::time::timeout_at(deadline.into(), notifier.send(&notice)).await {
                    Ok(Ok(())) => {
                        tracing::info!(group = notice.about.as_str(), "{}", notice.sentence);
                        true
                    }
                    Ok(Err(error)) => {
                        tracing::error!(error = error.message, "verdict change not notified");
                        false
                    }
                    Err(_) => {
                        tracing::error!("verdict change not notified before the deadline");
                        false
                    }
                }
            }
        };
        if told {
            let mut verdicts = deps.verdicts.lock().unwrap_or_else(|p| p.into_inner());
            verdicts.insert(group_name(report), report.gate_failing);
        }
    }
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

/// A function's environment, by variable name.
type Lookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// A function's dependencies, built by the first invocation that can build them. A setup that
/// fails — a missing or malformed variable, no manifest, a secret that cannot be read, or one
/// that hangs — does not stop the function: each invocation tries again within its own
/// deadline, and while it cannot, a hook reports `Failed` with the reason (CodeDeploy hears at
/// once, not when its hook timeout runs out) and the monitor publishes its gates as failing.
struct Setup {
    environment: Lookup,
    aws: aws_config::SdkConfig,
    /// From the environment on its own, so that even a setup that fails keeps its margin.
    margin: Duration,
    built: std::sync::Mutex<Option<Arc<Deps>>>,
}

impl Setup {
    async fn new(environment: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        shiftguard_aws::init_json_logging();
        let margin = config::deadline_margin(&environment).unwrap_or(DEFAULT_MARGIN);
        Setup {
            environment: Box::new(environment),
            aws: aws_config::load_from_env().await,
            margin,
            built: std::sync::Mutex::new(None),
        }
    }

    /// The invocation's deadline: Lambda's, less the margin for reporting.
    fn deadline(&self, context: &lambda_runtime::Context) -> Instant {
        shiftguard_aws::deadline_instant(context.deadline, self.margin)
    }

    /// The dependencies, built now if no invocation could build them yet.
    async fn deps(&self, deadline: Instant) -> Result<Arc<Deps>, String> {
        if let Some(deps) = self.built.lock().ok().and_then(|built| built.clone()) {
            return Ok(deps);
        }
        let deps = Arc::new(Deps::build_by(&self.environment, &self.aws, deadline).await?);
        if let Ok(mut built) = self.built.lock() {
            *built = Some(Arc::clone(&deps));
        }
        Ok(deps)
    }

    /// A CodeDeploy client for reporting without the dependencies, bounded by the margin.
    fn codedeploy(&self) -> CodeDeployAdapter {
        reporting_client(&self.aws, self.margin)
    }
}

/// The margin when `SHIFTGUARD_DEADLINE_MARGIN_MS` is unusable (its error is reported).
const DEFAULT_MARGIN: Duration = Duration::from_secs(3);

/// The hooks' CodeDeploy client: a report, retries included, ends within the margin it is
/// given after the deadline (less a tenth for answering Lambda), however CodeDeploy answers.
pub fn reporting_client(aws: &aws_config::SdkConfig, margin: Duration) -> CodeDeployAdapter {
    CodeDeployAdapter::new(&shiftguard_aws::bounded(
        aws,
        margin.saturating_sub(margin / 10),
    ))
}

/// Reports `Failed` for a hook whose dependencies could not be built.
pub async fn report_setup_failure(
    codedeploy: &CodeDeployAdapter,
    event: &serde_json::Value,
    problem: &str,
) -> Result<Reported, DecisionError> {
    let (deployment_id, execution_id) = hook_ids(event)?;
    let reported = failed(format!("the hook could not start: {problem}"));
    tracing::error!(
        deployment_id,
        reason = reported.reason.as_deref(),
        "reporting Failed"
    );
    match codedeploy
        .report(&deployment_id, &execution_id, HookStatus::Failed)
        .await
    {
        Ok(()) | Err(DecisionError::DuplicateDelivery(_)) => Ok(reported),
        Err(error) => Err(error),
    }
}

/// The whole Lambda function of a hook: configuration (from `environment`, the process
/// environment in `main`) and clients built once, then one [`handle`] per invocation with the
/// invocation's deadline less the margin; [`report_setup_failure`] while they cannot be built.
pub async fn run_hook(
    point: DecisionPoint,
    environment: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
) -> Result<(), lambda_runtime::Error> {
    let setup = Arc::new(Setup::new(environment).await);
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<serde_json::Value>| {
            let setup = Arc::clone(&setup);
            async move {
                let deadline = setup.deadline(&event.context);
                let reported = match setup.deps(deadline).await {
                    Ok(deps) => handle(point, event.payload, deadline, deps).await?,
                    Err(problem) => {
                        report_setup_failure(&setup.codedeploy(), &event.payload, &problem).await?
                    }
                };
                Ok::<_, lambda_runtime::Error>(serde_json::json!({
                    "status": format!("{:?}", reported.status),
                    "reason": reported.reason,
                }))
            }
        },
    ))
    .await
}

/// The whole Lambda function of the gate monitor (scheduled; the event is ignored). While its
/// dependencies cannot be built it publishes `GateFailing` = 1 for every group and application
/// it watches, and fails the invocation with the reason.
pub async fn run_monitor(
    environment: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
) -> Result<(), lambda_runtime::Error> {
    let groups =
        deployment_groups(&environment("SHIFTGUARD_DEPLOYMENT_GROUPS").unwrap_or_default());
    let setup = Arc::new(Setup::new(environment).await);
    let groups = Arc::new(groups);
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<serde_json::Value>| {
            let (setup, groups) = (Arc::clone(&setup), Arc::clone(&groups));
            async move {
                let deadline = setup.deadline(&event.context);
                let built = match &*groups {
                    Ok(groups) => setup.deps(deadline).await.map(|deps| (deps, groups)),
                    Err(problem) => Err(problem.clone()),
                };
                match built {
                    Ok((deps, groups)) => {
                        let reports = monitor(deps, groups, deadline).await?;
                        Ok(serde_json::to_value(reports)?)
                    }
                    Err(problem) => {
                        let groups: &[(String, String)] = match &*groups {
                            Ok(groups) => groups,
                            Err(_) => &[],
                        };
                        let aws = shiftguard_aws::bounded(&setup.aws, setup.margin);
                        let cloudwatch = CloudWatchAdapter::new(&aws);
                        if let Err(error) = cloudwatch
                            .publish(MONITOR_NAMESPACE, &setup_failing(groups))
                            .await
                        {
                            tracing::error!(error = error.message, "GateFailing not published");
                        }
                        tracing::error!(
                            reason = problem.as_str(),
                            "the gate monitor could not start: failing closed"
                        );
                        Err(lambda_runtime::Error::from(format!(
                            "the gate monitor could not start: {problem}"
                        )))
                    }
                }
            }
        },
    ))
    .await
}

/// `GateFailing` = 1 for every group and application, as a monitor that cannot decide says it.
fn setup_failing(groups: &[(String, String)]) -> Vec<MetricPoint> {
    let mut points: Vec<MetricPoint> = groups
        .iter()
        .map(|(application, group)| MetricPoint {
            name: "GateFailing",
            dimensions: vec![("DeploymentGroup", format!("{application}/{group}"))],
            value: 1.0,
            unit: "Count",
        })
        .collect();
    let mut applications: Vec<&str> = groups.iter().map(|(a, _)| a.as_str()).collect();
    applications.sort_unstable();
    applications.dedup();
    points.extend(applications.into_iter().map(|application| MetricPoint {
        name: "GateFailing",
        dimensions: vec![("Application", application.to_owned())],
        value: 1.0,
        unit: "Count",
    }));
    points
}
