//! The lifecycle hooks against the AWS emulator (Lambda versions with schema stamps and alias
//! routing, CodeDeploy deployments with AppSpec content, CloudWatch metric data), real PostgreSQL
//! moved by the real Alembic CLI, and a local HTTP endpoint for the one call the emulator lacks,
//! `PutLifecycleEventHookExecutionStatus`: it checks the JSON 1.1 wire request and counts calls,
//! and every test asserts exactly one report with the expected status.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shiftguard_aws::{CloudWatchAdapter, CodeDeployAdapter, HookStatus, LambdaAdapter};
use shiftguard_core::Manifest;
use shiftguard_core::config::ProjectConfig;
use shiftguard_core::release::decide::TrafficSettings;
use shiftguard_core::release::gate::{HealthBudget, InconclusivePolicy};
use shiftguard_core::release::{DecisionError, Evaluation};
use shiftguard_core::schema::scan::load_migrations;
use shiftguard_hooks::{DecisionPoint, Deps, handle, report_once, reporting_client};
use shiftguard_sql::{ConnectSettings, DatabaseUrl};

use crate::endpoint::{LocalEndpoint, Request, Response};
use crate::support::example::*;
use crate::support::{
    Kind, TestDatabase, alembic, aws_endpoint, example_project, json, publish_versions, sdk_config,
};

const PUT_TARGET: &str = "CodeDeploy_20141006.PutLifecycleEventHookExecutionStatus";

/// A local CodeDeploy endpoint: `PutLifecycleEventHookExecutionStatus` is answered here (and
/// recorded); every other call is forwarded to the emulator.
pub(crate) struct CodeDeployEndpoint(LocalEndpoint);

impl CodeDeployEndpoint {
    pub(crate) async fn start() -> Self {
        CodeDeployEndpoint(LocalEndpoint::start(Arc::new(answer_put)).await)
    }

    pub(crate) fn url(&self) -> &str {
        &self.0.url
    }

    /// The bodies of the reports, in order.
    pub(crate) fn puts(&self) -> Vec<serde_json::Value> {
        self.0.answered().iter().map(Request::json).collect()
    }
}

/// Answers `PutLifecycleEventHookExecutionStatus` after checking its JSON 1.1 request; like
/// CodeDeploy, refuses a second status for the same hook execution.
fn answer_put(request: &Request, earlier: &[Request]) -> Option<Response> {
    if request.header("x-amz-target").as_deref() != Some(PUT_TARGET) {
        return None;
    }
    assert!(request.line().starts_with("POST / "), "{}", request.head);
    assert_eq!(
        request.header("content-type").as_deref(),
        Some("application/x-amz-json-1.1")
    );
    let execution = request.json()["lifecycleEventHookExecutionId"].clone();
    let duplicate = earlier
        .iter()
        .any(|p| p.json()["lifecycleEventHookExecutionId"] == execution);
    let (status, body) = if duplicate {
        (
            "400 Bad Request",
            serde_json::json!({"__type": "InvalidLifecycleEventHookExecutionStatusException", "message": "the status is already set"}),
        )
    } else {
        (
            "200 OK",
            serde_json::json!({ "lifecycleEventHookExecutionId": execution }),
        )
    };
    Some(Response {
        status,
        content_type: "application/x-amz-json-1.1",
        body: body.to_string(),
    })
}

/// A CodeDeploy deployment whose AppSpec moves `function`'s alias from `current` to `target`.
pub(crate) async fn deployment(aws: &aws_config::SdkConfig, name: &str, appspec: &str) -> String {
    use aws_sdk_codedeploy::types::{
        AppSpecContent, ComputePlatform, RevisionLocation, RevisionLocationType,
    };
    let codedeploy = aws_sdk_codedeploy::Client::new(aws);
    codedeploy
        .create_application()
        .application_name(name)
        .compute_platform(ComputePlatform::Lambda)
        .send()
        .await
        .expect("create application");
    codedeploy
        .create_deployment_group()
        .application_name(name)
        .deployment_group_name(format!("{name}-group"))
        .service_role_arn("arn:aws:iam::123456789012:role/codedeploy")
        .send()
        .await
        .expect("create deployment group");
    codedeploy
        .create_deployment()
        .application_name(name)
        .deployment_group_name(format!("{name}-group"))
        .revision(
            RevisionLocation::builder()
                .revision_type(RevisionLocationType::AppSpecContent)
                .app_spec_content(AppSpecContent::builder().content(appspec).build())
                .build(),
        )
        .send()
        .await
        .expect("create deployment")
        .deployment_id
        .expect("deployment id")
}

/// Two published versions with these environments, and a deployment from the first to the second.
async fn stamped_deployment(
    w: &World,
    current: &[(&str, &str)],
    target: &[(&str, &str)],
) -> (String, Vec<String>) {
    let versions = publish_versions(&w.moto, &w.name, &[current, target]).await;
    let id = deployment(
        &w.moto,
        &w.name,
        &appspec(&w.name, &versions[0], &versions[1]),
    )
    .await;
    (id, versions)
}

/// The running example's usual release: v1 built at "create users", v2 at the expand.
async fn v1_to_v2(w: &World) -> (String, Vec<String>) {
    stamped_deployment(
        w,
        &[("SHIFTGUARD_SCHEMA_REVISION", CREATE_USERS)],
        &[("SHIFTGUARD_SCHEMA_REVISION", ADD_DISPLAY_NAME)],
    )
    .await
}

pub(crate) fn appspec(function: &str, current: &str, target: &str) -> String {
    format!(
        "version: 0.0\nResources:\n  - UsersApi:\n      Type: AWS::Lambda::Function\n      Properties:\n        Name: {function}\n        Alias: live\n        CurrentVersion: {current}\n        TargetVersion: {target}\n"
    )
}

/// The world of one test: a database, a function with versions, the CodeDeploy endpoint.
struct World {
    db: TestDatabase,
    endpoint: CodeDeployEndpoint,
    deps: Arc<Deps>,
    moto: aws_config::SdkConfig,
    name: String,
}

async fn world(database_at: &str, backfills: &str) -> World {
    let db = TestDatabase::create(Kind::Postgres).await;
    alembic(
        &example_project(),
        Some(&db.sqlalchemy_url()),
        &["upgrade", database_at],
    );
    let endpoint = CodeDeployEndpoint::start().await;
    let moto = sdk_config(&aws_endpoint()).await;
    let graph = load_migrations(&example_project()).expect("example").graph;
    // The hook reads the manifest, as packaged: round-trip it.
    let graph = Manifest::parse(&Manifest::from_graph(&graph).to_json()).expect("manifest");
    let project = ProjectConfig::parse(backfills).expect("config");
    let deps = Deps {
        graph,
        project,
        url: DatabaseUrl::parse(&db.url()).expect("url"),
        version_table: "alembic_version".to_owned(),
        codedeploy: reporting_client(&sdk_config(endpoint.url()).await, Duration::from_secs(3)),
        lambda: LambdaAdapter::new(&moto),
        cloudwatch: CloudWatchAdapter::new(&moto),
        notifier: None,
        verdicts: Default::default(),
        settings: TrafficSettings::default(),
    };
    let name = format!("users-api-{}", crate::support::unique_suffix());
    World {
        db,
        endpoint,
        deps: Arc::new(deps),
        moto,
        name,
    }
}

pub(crate) fn event(deployment_id: &str, execution: &str) -> serde_json::Value {
    serde_json::json!({ "DeploymentId": deployment_id, "LifecycleEventHookExecutionId": execution })
}

/// Invokes the pre-traffic hook and asserts exactly one report, with `status`; returns the
/// reason.
async fn invoke_expecting(world: &World, deployment_id: &str, status: &str) -> String {
    invoke_phase_expecting(world, DecisionPoint::PreTraffic, deployment_id, status).await
}

async fn invoke_phase_expecting(
    world: &World,
    phase: DecisionPoint,
    deployment_id: &str,
    status: &str,
) -> String {
    let execution = format!("exec-{deployment_id}");
    let reported = handle(
        phase,
        event(deployment_id, &execution),
        Instant::now() + Duration::from_secs(20),
        Arc::clone(&world.deps),
    )
    .await
    .expect("hook handled");
    let puts = world.endpoint.puts();
    assert_eq!(puts.len(), 1, "exactly one report: {puts:?}");
    assert_eq!(puts[0]["deploymentId"], deployment_id);
    assert_eq!(puts[0]["lifecycleEventHookExecutionId"], execution.as_str());
    assert_eq!(puts[0]["status"], status, "reason: {:?}", reported.reason);
    reported.reason.unwrap_or_default()
}

const SQL_BACKFILL: &str = "[[backfill]]\nname = \"users_display_name\"\ntable = \"users\"\nkey = \"id\"\npending = \"display_name IS NULL\"\nset = \"display_name = full_name\"\n";

/// A deployment from v1 to v2, which requires the backfill `users_display_name` complete.
async fn requiring_the_backfill(w: &World) -> String {
    let (id, _) = stamped_deployment(
        w,
        &[("SHIFTGUARD_SCHEMA_REVISION", CREATE_USERS)],
        &[
            ("SHIFTGUARD_SCHEMA_REVISION", ADD_DISPLAY_NAME),
            ("SHIFTGUARD_REQUIRED_BACKFILLS", "users_display_name"),
        ],
    )
    .await;
    id
}

#[tokio::test]
async fn pre_traffic_passes_when_both_versions_fit_and_backfills_are_done() {
    let w = world(ADD_DISPLAY_NAME, SQL_BACKFILL).await;
    let id = requiring_the_backfill(&w).await;
    invoke_expecting(&w, &id, "Succeeded").await;
    w.db.drop_database().await;
}

#[tokio::test]
async fn pre_traffic_fails_on_the_schema_a_version_cannot_run_on() {
    // The database is still before the expand the target needs.
    let w = world(CREATE_USERS, "").await;
    let (id, versions) = v1_to_v2(&w).await;
    let reason = invoke_expecting(&w, &id, "Failed").await;
    assert!(
        reason.contains(&format!("schema:target: FAIL: version {}: build {ADD_DISPLAY_NAME} needs expand revision {ADD_DISPLAY_NAME}", versions[1])),
        "{reason}"
    );
    w.db.drop_database().await;
}

#[tokio::test]
async fn pre_traffic_fails_while_a_required_backfill_has_pending_rows() {
    let w = world(ADD_DISPLAY_NAME, SQL_BACKFILL).await;
    w.db.execute("INSERT INTO users (id, full_name, email) VALUES (1, 'Ada', 'ada@example.com'), (2, 'Bo', 'bo@example.com')").await;
    let (id, _) = stamped_deployment(
        &w,
        &[("SHIFTGUARD_SCHEMA_REVISION", CREATE_USERS)],
        &[
            ("SHIFTGUARD_SCHEMA_REVISION", ADD_DISPLAY_NAME),
            (
                "SHIFTGUARD_REQUIRED_BACKFILLS",
                "users_display_name, undefined_one",
            ),
        ],
    )
    .await;
    let reason = invoke_expecting(&w, &id, "Failed").await;
    assert!(
        reason.contains("backfill users_display_name is not complete: rows are pending from key 1"),
        "{reason}"
    );
    assert!(
        reason.contains("backfill undefined_one is required but not defined"),
        "{reason}"
    );
    w.db.drop_database().await;
}

/// An observe-only gate (`[gates] observe`) that fails leaves the hook Succeeded, and the
/// decision names it failed-observed.
#[tokio::test]
async fn an_observed_gate_that_fails_leaves_the_hook_succeeded() {
    let config = format!("{SQL_BACKFILL}[gates]\nobserve = [\"backfill:*\"]\n");
    let w = world(ADD_DISPLAY_NAME, &config).await;
    w.db.execute("INSERT INTO users (id, full_name, email) VALUES (1, 'Ada', 'ada@example.com')")
        .await;
    let id = requiring_the_backfill(&w).await;
    let reported = handle(
        DecisionPoint::PreTraffic,
        event(&id, "exec-observed"),
        Instant::now() + Duration::from_secs(20),
        Arc::clone(&w.deps),
    )
    .await
    .expect("hook handled");
    let puts = w.endpoint.puts();
    assert_eq!(puts.len(), 1, "exactly one report: {puts:?}");
    assert_eq!(puts[0]["status"], "Succeeded", "{reported:?}");
    assert_eq!(
        reported.observed,
        "backfill:users_display_name: failed-observed: backfill users_display_name is not complete: rows are pending from key 1"
    );
    w.db.drop_database().await;
}

/// A migration holds the backfilled table locked: the pending-rows probe waits behind it. The
/// database itself stops the probe before the deadline (the gate session's statements are
/// limited to the time left), the hook reports Failed with that reason, and nothing of the
/// hook's is left running or waiting on the server. The session cannot write either.
#[tokio::test]
async fn a_locked_table_fails_the_hook_by_its_deadline_and_leaves_no_query_behind() {
    use sqlx::Connection as _;
    let w = world(ADD_DISPLAY_NAME, SQL_BACKFILL).await;
    w.db.execute("INSERT INTO users (id, full_name, email) VALUES (1, 'Ada', 'ada@example.com')")
        .await;
    let id = requiring_the_backfill(&w).await;
    let mut migration = sqlx::PgConnection::connect(&w.db.url())
        .await
        .expect("connect");
    sqlx::raw_sql("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .execute(&mut migration)
        .await
        .expect("lock");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(3);
    let hook = tokio::spawn(handle(
        DecisionPoint::PreTraffic,
        event(&id, "exec-locked"),
        deadline,
        Arc::clone(&w.deps),
    ));
    // Outside the migration's transaction, which would see one snapshot of the statistics.
    let mut observer = sqlx::PgConnection::connect(&w.db.url())
        .await
        .expect("connect");
    let hooks_queries = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'shiftguard' AND state <> 'idle' AND query LIKE '%FROM users%'";
    let mut seen_waiting = false;
    while !seen_waiting && Instant::now() < deadline {
        let waiting: i64 = sqlx::query_scalar(hooks_queries)
            .fetch_one(&mut observer)
            .await
            .expect("pg_stat_activity");
        seen_waiting = waiting > 0;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen_waiting, "the probe waits behind the lock");
    let reported = hook.await.expect("hook task").expect("reported");
    assert_eq!(reported.status, HookStatus::Failed);
    let reason = reported.reason.unwrap_or_default();
    // The database stopped the probe itself, in time for its error to be the reason.
    assert!(
        reason.contains("users_display_name") && reason.contains("statement timeout"),
        "{reason}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let puts = w.endpoint.puts();
    assert_eq!(puts.len(), 1, "{puts:?}");
    assert_eq!(puts[0]["status"], "Failed");
    // The lock is still held: a probe left behind would still be waiting on it.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let left: i64 = sqlx::query_scalar(hooks_queries)
        .fetch_one(&mut observer)
        .await
        .expect("pg_stat_activity");
    assert_eq!(left, 0, "a query of the hook's is still on the server");
    observer.close().await.expect("close");
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut migration)
        .await
        .expect("unlock");

    // The gate session cannot write, on the server dialects too.
    for kind in [Kind::Postgres, Kind::MariaDb] {
        let db = TestDatabase::create(kind).await;
        let url = DatabaseUrl::parse(&db.url()).expect("url");
        let mut session = shiftguard_sql::Connection::open(&url, ConnectSettings::default())
            .await
            .expect("open");
        let refused = session.raw("CREATE TABLE written (id INT)").await;
        assert!(
            refused.as_ref().is_err_and(
                |e| e.to_string().contains("read-only") || e.to_string().contains("READ ONLY")
            ),
            "{kind:?}: {refused:?}"
        );
        session
            .limit_statements(Duration::from_millis(300))
            .await
            .expect("limit");
        let sleep = match kind {
            Kind::Postgres => "SELECT pg_sleep(5)",
            _ => "SELECT SLEEP(5)",
        };
        let started = Instant::now();
        let stopped = session.raw(sleep).await;
        assert!(
            stopped.is_err() && started.elapsed() < Duration::from_secs(3),
            "{kind:?}: {stopped:?} after {:?}",
            started.elapsed()
        );
        session.close().await;
        db.drop_database().await;
    }
    w.db.drop_database().await;
}

#[tokio::test]
async fn every_failure_to_decide_reports_failed_exactly_once() {
    // A version without the stamp.
    let w = world(ADD_DISPLAY_NAME, "").await;
    let (id, _) = stamped_deployment(
        &w,
        &[("SHIFTGUARD_SCHEMA_REVISION", CREATE_USERS)],
        &[("OTHER", "x")],
    )
    .await;
    let reason = invoke_expecting(&w, &id, "Failed").await;
    assert!(
        reason.contains("carries no SHIFTGUARD_SCHEMA_REVISION"),
        "{reason}"
    );
    w.db.drop_database().await;

    // A deployment that does not exist.
    let w = world(ADD_DISPLAY_NAME, "").await;
    let reason = invoke_expecting(&w, "d-NOSUCHDEPLOY", "Failed").await;
    assert!(
        reason.starts_with("could not decide: GetDeployment d-NOSUCHDEPLOY"),
        "{reason}"
    );
    w.db.drop_database().await;

    // An AppSpec that is not one Lambda deployment.
    let w = world(ADD_DISPLAY_NAME, "").await;
    let id = deployment(&w.moto, &w.name, "Resources: [").await;
    let reason = invoke_expecting(&w, &id, "Failed").await;
    assert!(reason.contains("AppSpec: not YAML or JSON"), "{reason}");
    w.db.drop_database().await;

    // The database is down.
    let mut w = world(ADD_DISPLAY_NAME, "").await;
    let (id, _) = v1_to_v2(&w).await;
    let deps = Arc::get_mut(&mut w.deps).expect("sole owner");
    deps.url = DatabaseUrl::parse("postgres://app:hunter2@127.0.0.1:1/app").expect("url");
    let reason = invoke_expecting(&w, &id, "Failed").await;
    assert!(
        reason.contains("cannot connect to postgres database app on 127.0.0.1:1"),
        "{reason}"
    );
    assert!(!reason.contains("hunter2"));
    w.db.drop_database().await;

    // The database is at a revision the manifest does not contain.
    let w = world(ADD_DISPLAY_NAME, "").await;
    w.db.execute("UPDATE alembic_version SET version_num = 'feedfacecafe'")
        .await;
    let (id, _) = v1_to_v2(&w).await;
    let reason = invoke_expecting(&w, &id, "Failed").await;
    assert!(
        reason.contains("database is at revision feedfacecafe which the migrations do not contain"),
        "{reason}"
    );
    w.db.drop_database().await;
}

#[tokio::test]
async fn a_panic_or_the_deadline_still_reports_failed_exactly_once() {
    let w = world(ADD_DISPLAY_NAME, "").await;
    let panicking = async {
        let gates: Vec<u8> = Vec::new();
        // An evaluation bug: indexing past the end.
        let _ = gates[usize::from(gates.is_empty())];
        Ok::<Evaluation, DecisionError>(Evaluation::default())
    };
    let reported = report_once(
        &w.deps.codedeploy,
        "d-PANIC",
        "exec-panic",
        Instant::now() + Duration::from_secs(20),
        panicking,
    )
    .await
    .expect("reported");
    assert_eq!(reported.status, HookStatus::Failed);
    assert!(
        reported
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("the evaluation panicked"),
        "{reported:?}"
    );

    let started = Instant::now();
    let stuck = async {
        tokio::time::sleep(Duration::from_secs(600)).await;
        Ok::<Evaluation, DecisionError>(Evaluation::default())
    };
    let reported = report_once(
        &w.deps.codedeploy,
        "d-SLOW",
        "exec-slow",
        Instant::now() + Duration::from_millis(300),
        stuck,
    )
    .await
    .expect("reported");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        reported.reason.as_deref(),
        Some("could not decide before the invocation's deadline")
    );

    let puts = w.endpoint.puts();
    let statuses: Vec<(&str, &str)> = puts
        .iter()
        .map(|p| {
            (
                p["deploymentId"].as_str().unwrap_or_default(),
                p["status"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(statuses, [("d-PANIC", "Failed"), ("d-SLOW", "Failed")]);

    // CodeDeploy itself hangs: the report, retries included, gives up within the margin (here
    // 1 s) after the deadline, so the invocation still ends before Lambda's own timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let hung = sdk_config(&format!("http://{}", silent.local_addr().expect("addr"))).await;
    let started = Instant::now();
    let codedeploy = reporting_client(&hung, Duration::from_secs(1));
    let reporting = report_once(
        &codedeploy,
        "d-HUNG",
        "exec-hung",
        started + Duration::from_millis(200),
        async { Ok::<Evaluation, DecisionError>(Evaluation::default()) },
    );
    let reported = tokio::time::timeout(Duration::from_secs(30), reporting)
        .await
        .expect("the report gives up by itself");
    let took = started.elapsed();
    assert!(
        matches!(&reported, Err(DecisionError::Deployment(why)) if why.contains("PutLifecycleEventHookExecutionStatus d-HUNG")),
        "{reported:?}"
    );
    assert!(took < Duration::from_millis(1_200), "{took:?}");
    drop(silent);

    // CodeDeploy throttles the first report: the SDK tries again within the margin, and exactly
    // one status lands.
    let throttling = LocalEndpoint::start(Arc::new(throttle_first_report)).await;
    let retrying = sdk_config(&throttling.url)
        .await
        .to_builder()
        .retry_config(aws_config::retry::RetryConfig::standard())
        .build();
    let started = Instant::now();
    let reported = report_once(
        &reporting_client(&retrying, Duration::from_secs(3)),
        "d-THROTTLED",
        "exec-throttled",
        started + Duration::from_millis(200),
        async { Err::<Evaluation, DecisionError>(DecisionError::Deadline) },
    )
    .await
    .expect("reported on the second attempt");
    assert_eq!(reported.status, HookStatus::Failed);
    assert!(started.elapsed() < Duration::from_millis(3_200));
    let attempts: Vec<_> = throttling.answered().iter().map(Request::json).collect();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert!(attempts.iter().all(|a| a["status"] == "Failed"));
    w.db.drop_database().await;
}

/// Answers the first report of a hook execution with CodeDeploy's throttling error, the second
/// with success, any later one as already set.
fn throttle_first_report(request: &Request, earlier: &[Request]) -> Option<Response> {
    if request.header("x-amz-target").as_deref() != Some(PUT_TARGET) {
        return None;
    }
    let execution = request.json()["lifecycleEventHookExecutionId"].clone();
    let before = earlier
        .iter()
        .filter(|p| p.json()["lifecycleEventHookExecutionId"] == execution)
        .count();
    let (status, body) = match before {
        0 => (
            "400 Bad Request",
            serde_json::json!({"__type": "ThrottlingException", "message": "Rate exceeded"}),
        ),
        1 => (
            "200 OK",
            serde_json::json!({ "lifecycleEventHookExecutionId": execution }),
        ),
        _ => (
            "400 Bad Request",
            serde_json::json!({"__type": "InvalidLifecycleEventHookExecutionStatusException", "message": "the status is already set"}),
        ),
    };
    Some(Response {
        status,
        content_type: "application/x-amz-json-1.1",
        body: body.to_string(),
    })
}

/// The fault suite: each dependency of a decision fails in turn — refuses, or accepts and never
/// answers — and each time the hook reports `Failed` exactly once, with the reason, before the
/// invocation's deadline (2 s here; 3 s of slack for the report). README's table lists these
/// and the faults the other tests of this file inject.
#[tokio::test]
async fn every_dependency_failing_reports_failed_once_before_the_deadline() {
    let w = world(ADD_DISPLAY_NAME, SQL_BACKFILL).await;
    let id = requiring_the_backfill(&w).await;
    // Accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_at = silent.local_addr().expect("addr");
    let hung = sdk_config(&format!("http://{silent_at}")).await;
    // Nothing listens there.
    let refusing_at = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    type Fault = (&'static str, DecisionPoint, Box<dyn Fn(&mut Deps)>, String);
    let cases: Vec<Fault> = vec![
        (
            "the database refuses connections",
            DecisionPoint::PreTraffic,
            Box::new(move |deps: &mut Deps| {
                deps.url = DatabaseUrl::parse(&format!("postgres://postgres@{refusing_at}/app"))
                    .expect("url");
            }),
            refusing_at.to_string(),
        ),
        (
            "the database accepts and never answers",
            DecisionPoint::PreTraffic,
            Box::new(move |deps: &mut Deps| {
                deps.url = DatabaseUrl::parse(&format!("postgres://postgres@{silent_at}/app"))
                    .expect("url");
            }),
            "before the invocation's deadline".to_owned(),
        ),
        (
            "the Lambda API accepts and never answers",
            DecisionPoint::PreTraffic,
            Box::new({
                let hung = hung.clone();
                move |deps: &mut Deps| deps.lambda = LambdaAdapter::new(&hung)
            }),
            "before the invocation's deadline".to_owned(),
        ),
        (
            "CloudWatch accepts and never answers",
            DecisionPoint::PostTraffic,
            Box::new({
                let hung = hung.clone();
                move |deps: &mut Deps| deps.cloudwatch = CloudWatchAdapter::new(&hung)
            }),
            "before the invocation's deadline".to_owned(),
        ),
    ];
    for (i, (fault, point, inject, reason)) in cases.into_iter().enumerate() {
        let mut deps = (*w.deps).clone();
        inject(&mut deps);
        let execution = format!("exec-fault-{i}");
        let started = Instant::now();
        let reported = handle(
            point,
            event(&id, &execution),
            started + Duration::from_secs(2),
            Arc::new(deps),
        )
        .await
        .expect("reported");
        let took = started.elapsed();
        assert_eq!(reported.status, HookStatus::Failed, "{fault}");
        let said = reported.reason.unwrap_or_default();
        assert!(said.contains(&reason), "{fault}: {said}");
        assert!(took < Duration::from_secs(5), "{fault}: {took:?}");
        let puts: Vec<_> = w
            .endpoint
            .puts()
            .into_iter()
            .filter(|put| put["lifecycleEventHookExecutionId"] == execution.as_str())
            .collect();
        assert_eq!(puts.len(), 1, "{fault}: {puts:?}");
        assert_eq!(puts[0]["status"], "Failed", "{fault}");
    }
    drop(silent);
    w.db.drop_database().await;
}

#[tokio::test]
async fn malformed_events_and_duplicate_deliveries() {
    let w = world(ADD_DISPLAY_NAME, "").await;
    // No ids: nothing can be reported; the invocation errors, loudly.
    let error = handle(
        DecisionPoint::PreTraffic,
        serde_json::json!({"Records": []}),
        Instant::now() + Duration::from_secs(5),
        Arc::clone(&w.deps),
    )
    .await
    .expect_err("no ids");
    assert!(
        error
            .to_string()
            .starts_with("the event carries no DeploymentId"),
        "{error}"
    );
    assert!(w.endpoint.puts().is_empty());

    // The same hook execution delivered twice: the second report is refused, not a crash.
    let (id, _) = v1_to_v2(&w).await;
    for _ in 0..2 {
        handle(
            DecisionPoint::PreTraffic,
            event(&id, "exec-twice"),
            Instant::now() + Duration::from_secs(20),
            Arc::clone(&w.deps),
        )
        .await
        .expect("handled");
    }
    assert_eq!(w.endpoint.puts().len(), 2, "one report per delivery");
    w.db.drop_database().await;
}

/// The alias `live` routing 10% to `target`, and invocation/error counts per version in CloudWatch.
async fn traffic(w: &World, current: &str, target: &str, counts: &[(&str, f64, f64)]) {
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
    use aws_sdk_lambda::types::AliasRoutingConfiguration;
    aws_sdk_lambda::Client::new(&w.moto)
        .create_alias()
        .function_name(&w.name)
        .name("live")
        .function_version(current)
        .routing_config(
            AliasRoutingConfiguration::builder()
                .additional_version_weights(target, 0.1)
                .build(),
        )
        .send()
        .await
        .expect("create alias");
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&w.moto);
    for (version, invocations, errors) in counts {
        let dimensions = [
            ("FunctionName", w.name.clone()),
            ("Resource", format!("{}:live", w.name)),
            ("ExecutedVersion", (*version).to_owned()),
        ];
        let datum = |name: &str, value: f64| {
            let mut datum = MetricDatum::builder()
                .metric_name(name)
                .value(value)
                .unit(StandardUnit::Count);
            for (k, v) in &dimensions {
                datum = datum.dimensions(Dimension::builder().name(*k).value(v).build());
            }
            datum.build()
        };
        cloudwatch
            .put_metric_data()
            .namespace("AWS/Lambda")
            .metric_data(datum("Invocations", *invocations))
            .metric_data(datum("Errors", *errors))
            .send()
            .await
            .expect("put metric data");
    }
}

async fn post_traffic_world(budget: HealthBudget) -> (World, String, Vec<String>) {
    let mut w = world(ADD_DISPLAY_NAME, "").await;
    Arc::get_mut(&mut w.deps)
        .expect("sole owner")
        .settings
        .budget = budget;
    let (id, versions) = v1_to_v2(&w).await;
    (w, id, versions)
}

#[tokio::test]
async fn post_traffic_passes_a_healthy_version_and_fails_a_failing_one() {
    // (target's errors in 1,000 invocations, against the current version's 9 in 9,000; status;
    // the reason, given (target, current))
    type Reason = fn(&str, &str) -> String;
    let cases: [(f64, &str, Option<Reason>); 3] = [
        (2.0, "Succeeded", None),
        (
            50.0,
            "Failed",
            Some(|new, _| {
                format!(
                    "health:errors: FAIL: version {new} error rate 5.00% (50 of 1000) is above the budget 1.00%"
                )
            }),
        ),
        // Under the budget, but five times the current version's rate.
        (
            5.0,
            "Failed",
            Some(|new, old| {
                format!(
                    "health:errors: FAIL: version {new} error rate 0.50% is above 2.0 x version {old}'s 0.10%"
                )
            }),
        ),
    ];
    for (errors, status, expected) in cases {
        let (w, id, v) = post_traffic_world(HealthBudget::default()).await;
        traffic(
            &w,
            &v[0],
            &v[1],
            &[(&v[0], 9_000.0, 9.0), (&v[1], 1_000.0, errors)],
        )
        .await;
        let reason = invoke_phase_expecting(&w, DecisionPoint::PostTraffic, &id, status).await;
        if let Some(expected) = expected {
            let expected = expected(&v[1], &v[0]);
            assert!(reason.contains(&expected), "{reason}");
        }
        w.db.drop_database().await;
    }
}

#[tokio::test]
async fn post_traffic_on_a_handful_of_requests_follows_the_inconclusive_policy() {
    let (w, id, v) = post_traffic_world(HealthBudget::default()).await;
    traffic(&w, &v[0], &v[1], &[(&v[0], 40.0, 0.0), (&v[1], 3.0, 0.0)]).await;
    let reason = invoke_phase_expecting(&w, DecisionPoint::PostTraffic, &id, "Failed").await;
    assert!(
        reason.contains("health:sample: inconclusive: 3 invocations"),
        "{reason}"
    );
    w.db.drop_database().await;

    let lenient = HealthBudget {
        inconclusive: InconclusivePolicy::Pass,
        ..HealthBudget::default()
    };
    let (w, id, v) = post_traffic_world(lenient).await;
    traffic(&w, &v[0], &v[1], &[(&v[0], 40.0, 0.0), (&v[1], 3.0, 0.0)]).await;
    invoke_phase_expecting(&w, DecisionPoint::PostTraffic, &id, "Succeeded").await;
    w.db.drop_database().await;
}

#[tokio::test]
async fn post_traffic_fails_closed_when_cloudwatch_cannot_answer() {
    let (mut w, id, v) = post_traffic_world(HealthBudget::default()).await;
    traffic(&w, &v[0], &v[1], &[(&v[1], 1_000.0, 0.0)]).await;
    Arc::get_mut(&mut w.deps).expect("sole owner").cloudwatch =
        CloudWatchAdapter::new(&sdk_config("http://127.0.0.1:1").await);
    let reason = invoke_phase_expecting(&w, DecisionPoint::PostTraffic, &id, "Failed").await;
    assert!(
        reason.starts_with("could not decide: GetMetricData"),
        "{reason}"
    );
    w.db.drop_database().await;
}

/// One run of the gate monitor over `groups`, with a minute to go.
async fn monitor_once(
    w: &World,
    groups: &[(String, String)],
) -> Vec<shiftguard_core::release::GroupReport> {
    shiftguard_hooks::monitor(
        Arc::clone(&w.deps),
        groups,
        Instant::now() + Duration::from_secs(60),
    )
    .await
    .expect("monitor")
}

/// The `Shiftguard/GateFailing` values the monitor published for `group` (and `gate`, if given).
async fn gate_failing(w: &World, group: &str, gate: Option<&str>) -> Vec<f64> {
    let mut dimensions = vec![("DeploymentGroup", group)];
    dimensions.extend(gate.map(|gate| ("Gate", gate)));
    gate_failing_by(w, &dimensions).await
}

/// The `Shiftguard/GateFailing` values the monitor published for `application`.
async fn application_gate_failing(w: &World, application: &str) -> Vec<f64> {
    gate_failing_by(w, &[("Application", application)]).await
}

async fn gate_failing_by(w: &World, dimensions: &[(&str, &str)]) -> Vec<f64> {
    published(w, "GateFailing", dimensions).await
}

/// The values of `Shiftguard/<name>` published with `dimensions` in the last minutes (each
/// period's maximum).
async fn published(w: &World, name: &str, dimensions: &[(&str, &str)]) -> Vec<f64> {
    use aws_sdk_cloudwatch::primitives::DateTime;
    use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
    let mut metric = Metric::builder().namespace("Shiftguard").metric_name(name);
    for (name, value) in dimensions {
        metric = metric.dimensions(Dimension::builder().name(*name).value(*value).build());
    }
    let now = std::time::SystemTime::now();
    let output = aws_sdk_cloudwatch::Client::new(&w.moto)
        .get_metric_data()
        .start_time(DateTime::from(now - Duration::from_secs(300)))
        .end_time(DateTime::from(now + Duration::from_secs(60)))
        .metric_data_queries(
            MetricDataQuery::builder()
                .id("failing")
                .metric_stat(
                    MetricStat::builder()
                        .metric(metric.build())
                        .period(360)
                        .stat("Maximum")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("get metric data");
    output.metric_data_results()[0].values().to_vec()
}

#[tokio::test]
async fn the_gate_monitor_publishes_gate_failing_for_alarms_between_steps() {
    // The database lacks the expand the target needs: the monitor must raise GateFailing.
    let (w, _id, v) = {
        let mut w = world(CREATE_USERS, "").await;
        Arc::get_mut(&mut w.deps)
            .expect("sole owner")
            .settings
            .budget = HealthBudget {
            inconclusive: InconclusivePolicy::Pass,
            ..HealthBudget::default()
        };
        let (id, versions) = v1_to_v2(&w).await;
        (w, id, versions)
    };
    traffic(&w, &v[0], &v[1], &[(&v[1], 5.0, 0.0)]).await;
    let group = format!("{}/{}-group", w.name, w.name);
    let groups = shiftguard_hooks::deployment_groups(&group).expect("groups");
    let reports = monitor_once(&w, &groups).await;
    assert_eq!(reports[0].gate_failing, 1.0, "{reports:?}");
    assert_eq!(gate_failing(&w, &group, None).await, [1.0]);
    assert_eq!(application_gate_failing(&w, &w.name).await, [1.0]);
    assert_eq!(gate_failing(&w, &group, Some("schema:target")).await, [1.0]);
    assert_eq!(
        gate_failing(&w, &group, Some("schema:current")).await,
        [0.0]
    );
    // Few invocations under the pass policy: inconclusive, published as not failing.
    assert_eq!(gate_failing(&w, &group, Some("health:sample")).await, [0.0]);
    assert!(
        w.endpoint.puts().is_empty(),
        "the monitor reports no hook status"
    );

    // After the expand the same deployment passes.
    alembic(
        &example_project(),
        Some(&w.db.sqlalchemy_url()),
        &["upgrade", ADD_DISPLAY_NAME],
    );
    let reports = monitor_once(&w, &groups).await;
    assert_eq!(reports[0].gate_failing, 0.0, "{reports:?}");
    assert!(reports[0].evaluations[0].decision.passed());

    // When CodeDeploy cannot be read, the group fails closed.
    let mut w = w;
    Arc::get_mut(&mut w.deps).expect("sole owner").codedeploy =
        CodeDeployAdapter::new(&sdk_config("http://127.0.0.1:1").await);
    let reports = monitor_once(&w, &groups).await;
    assert_eq!(reports[0].gate_failing, 1.0, "{reports:?}");
    assert!(
        reports[0].errors[0].starts_with("ListDeployments"),
        "{reports:?}"
    );
    w.db.drop_database().await;
}

/// The monitor end to end with the per-version database gates: two versions of the function,
/// their sessions tagged, run loads on the real database (version 2 scans); the monitor samples
/// `pg_stat_statements`, fails `database:time-per-call` and `database:blocks-per-call`, and
/// publishes each version's values in CloudWatch under `FunctionName` and `ExecutedVersion`.
#[tokio::test]
async fn the_monitor_judges_and_publishes_what_each_version_costs_the_database() {
    use std::sync::atomic::{AtomicBool, Ordering};

    use crate::database_load::{BY_ID, BY_NAME, version_load};
    let mut w = world(ADD_DISPLAY_NAME, "").await;
    w.db.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await;
    w.db.execute(
        "INSERT INTO users (id, full_name, email) SELECT g, 'User ' || g, 'user' || g || '@example.com' FROM generate_series(1, 50000) g",
    )
    .await;
    w.db.execute("ANALYZE users").await;
    let settings = &mut Arc::get_mut(&mut w.deps).expect("sole owner").settings;
    settings.budget.inconclusive = InconclusivePolicy::Pass;
    settings.load = shiftguard_core::release::load::LoadBudget {
        sample: Duration::from_secs(2),
        roles: vec![w.db.user()],
        ..Default::default()
    };
    let (_, v) = v1_to_v2(&w).await;
    traffic(&w, &v[0], &v[1], &[(&v[1], 5.0, 0.0)]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let busy = Duration::from_millis(2);
    let loads = [
        version_load(
            &w.db.url(),
            &w.name,
            &v[1],
            &[BY_NAME],
            busy,
            Arc::clone(&stop),
        ),
        version_load(
            &w.db.url(),
            &w.name,
            &v[0],
            &[BY_ID],
            busy,
            Arc::clone(&stop),
        ),
    ];
    tokio::time::sleep(Duration::from_millis(300)).await;
    let group = format!("{}/{}-group", w.name, w.name);
    let groups = shiftguard_hooks::deployment_groups(&group).expect("groups");
    let reports = monitor_once(&w, &groups).await;
    stop.store(true, Ordering::Relaxed);
    for load in loads {
        load.await.expect("load");
    }
    assert_eq!(reports[0].gate_failing, 1.0, "{reports:?}");
    let evaluation = &reports[0].evaluations[0];
    let versions: Vec<&str> = evaluation
        .database_load
        .iter()
        .map(|l| l.version.as_str())
        .collect();
    assert_eq!(versions, [v[1].as_str(), v[0].as_str()]);
    for gate in ["database:time-per-call", "database:blocks-per-call"] {
        assert_eq!(gate_failing(&w, &group, Some(gate)).await, [1.0], "{gate}");
    }
    // Lambda's own dimensions: each version's time per call, the scan's far above.
    let mut times = Vec::new();
    for version in [&v[1], &v[0]] {
        let dimensions = [
            ("FunctionName", w.name.as_str()),
            ("ExecutedVersion", version.as_str()),
        ];
        times.push(published(&w, "DatabaseTimePerCall", &dimensions).await);
    }
    let [scan, lookup] = [&times[0], &times[1]];
    assert_eq!((scan.len(), lookup.len()), (1, 1), "{scan:?} {lookup:?}");
    assert!(scan[0] > 10.0 * lookup[0], "{scan:?} {lookup:?}");
    w.db.drop_database().await;
}

/// `shiftguard hold` / `release` against the emulator's DynamoDB.
fn hold_cli(args: &[&str]) -> crate::support::Run {
    std::process::Command::new(env!("CARGO_BIN_EXE_shiftguard"))
        .args(args)
        .env("AWS_ENDPOINT_URL", aws_endpoint())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env_remove("SHIFTGUARD_HOLDS_TABLE")
        .output()
        .expect("run shiftguard")
        .into()
}

/// An operator holds the deployment group: the pre-traffic hook reports Failed with who, when
/// and why, the monitor publishes the group's `hold` gate as 1 (the alarm's input) and tells
/// the change of verdict to an SNS topic and an EventBridge bus, once; released, both pass and
/// the monitor tells that too. `shiftguard hold --list` and `status`-like JSON show it meanwhile.
#[tokio::test]
async fn an_operator_hold_fails_the_hook_and_the_monitor_until_released() {
    let mut w = world(ADD_DISPLAY_NAME, SQL_BACKFILL).await;
    let table = crate::support::keyed_dynamodb_table("holds", "group").await;
    let sink = crate::support::NoticeSink::create().await;
    let targets = shiftguard_aws::NotifyTargets {
        topic_arn: Some(sink.topic_arn.clone()),
        event_bus: Some(sink.event_bus.clone()),
    };
    let deps = Arc::get_mut(&mut w.deps).expect("sole owner");
    deps.codedeploy = deps
        .codedeploy
        .clone()
        .with_holds(shiftguard_aws::DynamoHolds::new(&w.moto, &table));
    deps.notifier = shiftguard_aws::Notifier::new(&w.moto, &targets);
    // The test's trickle of traffic is too thin to judge: let that pass, so the hold decides.
    deps.settings.budget.inconclusive = InconclusivePolicy::Pass;
    let (id, v) = v1_to_v2(&w).await;
    // The alias, so that the monitor can evaluate the deployment between steps.
    traffic(&w, &v[0], &v[1], &[(&v[1], 5.0, 0.0)]).await;
    let group = format!("{}/{}-group", w.name, w.name);

    // Bad input writes nothing.
    let bad = hold_cli(&["hold", "no-slash", "--reason", "x", "--table", &table]);
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(
        bad.stderr.contains("`no-slash` is not a deployment group"),
        "{bad:?}"
    );
    let held = hold_cli(&[
        "hold",
        &group,
        "--reason",
        "replica lag is climbing",
        "--by",
        "alice",
        "--table",
        &table,
        "--json",
    ]);
    assert_eq!(held.code, 0, "{held:?}");
    assert_eq!(json(&held)["hold"]["by"], "alice");
    let list = hold_cli(&["hold", "--list", "--table", &table]);
    assert!(
        list.stdout
            .contains(&format!("{group} held by alice since "))
            && list.stdout.contains(": replica lag is climbing"),
        "{list:?}"
    );

    let reason = invoke_expecting(&w, &id, "Failed").await;
    assert!(
        reason.starts_with(&format!("hold: FAIL: {group} held by alice since "))
            && reason.contains("`shiftguard release"),
        "{reason}"
    );
    let groups = shiftguard_hooks::deployment_groups(&group).expect("groups");
    let reports = monitor_once(&w, &groups).await;
    assert_eq!(reports[0].gate_failing, 1.0, "{reports:?}");
    assert_eq!(
        gate_failing(&w, &group, Some("hold")).await,
        [1.0],
        "{reports:?}"
    );
    // The verdict changed: told once to the topic and the bus, the hold's reason in both.
    let (message, told) = sink.take_one().await;
    assert_eq!(
        message["Subject"],
        format!("shiftguard: {group}: gate verdict changed").as_str()
    );
    let message = message["Message"].as_str().expect("a message");
    assert!(
        message.starts_with(&format!(
            "The gates of {group} now fail (failing: hold); GateFailing is 1"
        )) && message.contains("\nhold: FAIL: ")
            && message.contains(": replica lag is climbing"),
        "{message}"
    );
    assert_eq!(told["source"], "shiftguard");
    assert_eq!(told["detail-type"], "Gate Verdict Changed");
    assert_eq!(told["detail"]["about"], group.as_str());
    assert_eq!(told["detail"]["record"]["hold"]["gate"], "hold");
    // Still held: the same verdict is not told again.
    monitor_once(&w, &groups).await;
    sink.assert_quiet().await;

    let released = hold_cli(&["release", &group, "--by", "alice", "--table", &table]);
    assert_eq!(released.code, 0, "{released:?}");
    assert!(
        released
            .stdout
            .starts_with(&format!("released: {group} held by alice"))
            && released
                .stdout
                .contains(&format!("{group} is no longer held")),
        "{released:?}"
    );
    let again = hold_cli(&["release", &group, "--by", "alice", "--table", &table]);
    assert_eq!(
        again.stdout.trim(),
        format!("{group} was not held by alice")
    );
    let reported = handle(
        DecisionPoint::PreTraffic,
        event(&id, "exec-after-release"),
        Instant::now() + Duration::from_secs(20),
        Arc::clone(&w.deps),
    )
    .await
    .expect("hook handled");
    assert_eq!(reported.status, HookStatus::Succeeded, "{reported:?}");
    let reports = monitor_once(&w, &groups).await;
    let hold = reports[0].evaluations[0]
        .decision
        .gates
        .iter()
        .find(|g| g.gate == "hold")
        .expect("the hold gate");
    assert!(hold.passed(), "{reports:?}");
    let (message, _) = sink.take_one().await;
    assert!(
        message["Message"]
            .as_str()
            .is_some_and(|m| m.starts_with(&format!("The gates of {group} pass again"))),
        "{message:?}"
    );
    w.db.drop_database().await;
}

/// Several operators hold one group, each with a reason, and none overwrites another (eight at
/// once); the post-traffic hook fails while it is held, naming every holder; `release` lets the
/// caller's own hold go and says who still holds it, `release --all` every one. A group
/// CodeDeploy does not know is refused (a typo held nothing and exited 0), unless `--force`.
#[tokio::test]
async fn several_holders_coexist_and_the_post_traffic_hook_fails_while_held() {
    let (mut w, id, v) = post_traffic_world(HealthBudget::default()).await;
    let table = crate::support::keyed_dynamodb_table("holds", "group").await;
    let deps = Arc::get_mut(&mut w.deps).expect("sole owner");
    deps.codedeploy = deps
        .codedeploy
        .clone()
        .with_holds(shiftguard_aws::DynamoHolds::new(&w.moto, &table));
    traffic(
        &w,
        &v[0],
        &v[1],
        &[(&v[0], 9_000.0, 9.0), (&v[1], 1_000.0, 1.0)],
    )
    .await;
    let group = format!("{}/{}-group", w.name, w.name);
    let hold = |group: &str, by: &str, extra: &[&str]| {
        let mut args = vec![
            "hold", group, "--reason", "a reason", "--by", by, "--table", &table,
        ];
        args.extend_from_slice(extra);
        hold_cli(&args)
    };
    let list = || hold_cli(&["hold", "--list", "--table", &table, "--json"]);
    let holders = || -> Vec<String> {
        json(&list())
            .as_array()
            .expect("holds")
            .iter()
            .map(|h| h["by"].as_str().expect("by").to_owned())
            .collect()
    };

    // A typo: refused, nothing written; with --force, held.
    let typo = format!("{}/{}-gruop", w.name, w.name);
    let refused = hold(&typo, "alice", &[]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused.stderr.contains(&format!(
            "CodeDeploy knows no deployment group `{}-gruop`",
            w.name
        )) && refused.stderr.contains("--force"),
        "{refused:?}"
    );
    assert!(holders().is_empty());
    assert_eq!(hold(&typo, "alice", &["--force"]).code, 0);
    assert_eq!(
        hold_cli(&["release", &typo, "--all", "--table", &table]).code,
        0
    );
    assert!(holders().is_empty());

    // Alice and Bob, then six more at once: every one kept.
    assert_eq!(hold(&group, "alice", &[]).code, 0);
    let bob = hold(&group, "bob", &[]);
    assert!(
        bob.stdout
            .starts_with(&format!("held: {group} held by bob"))
            && bob.stdout.contains(&format!("also {group} held by alice")),
        "{bob:?}"
    );
    std::thread::scope(|scope| {
        let runs: Vec<_> = (0..6)
            .map(|i| {
                let hold = &hold;
                let group = &group;
                scope.spawn(move || hold(group, &format!("op{i}"), &[]))
            })
            .collect();
        for run in runs {
            let run = run.join().expect("hold");
            assert_eq!(run.code, 0, "{run:?}");
        }
    });
    let mut all = holders();
    all.sort();
    assert_eq!(
        all,
        ["alice", "bob", "op0", "op1", "op2", "op3", "op4", "op5"]
    );

    // After traffic, healthy: failed all the same, naming the holders.
    let reason = invoke_phase_expecting(&w, DecisionPoint::PostTraffic, &id, "Failed").await;
    assert!(
        reason.contains(&format!("hold: FAIL: {group} held by "))
            && reason.contains("held by alice")
            && reason.contains("held by bob"),
        "{reason}"
    );

    // Alice lets hers go: the others remain.
    let alice = hold_cli(&["release", &group, "--by", "alice", "--table", &table]);
    assert_eq!(alice.code, 0, "{alice:?}");
    assert!(
        alice
            .stdout
            .starts_with(&format!("released: {group} held by alice"))
            && alice.stdout.contains(&format!("still {group} held by bob")),
        "{alice:?}"
    );
    assert_eq!(holders().len(), 7);
    let every = hold_cli(&["release", &group, "--all", "--table", &table, "--json"]);
    assert_eq!(every.code, 0, "{every:?}");
    assert_eq!(json(&every)["released"].as_array().map(Vec::len), Some(7));
    assert!(holders().is_empty());
    let groups = shiftguard_hooks::deployment_groups(&group).expect("groups");
    let reports = monitor_once(&w, &groups).await;
    assert_eq!(
        gate_failing(&w, &group, Some("hold")).await.last(),
        Some(&0.0),
        "{reports:?}"
    );
    w.db.drop_database().await;
}

/// Runs the real function binary `name` under cargo-lambda's Lambda runtime emulator with the
/// world's database and AWS endpoints plus `env`, invokes it once with `event`, and returns its
/// JSON answer: the event is decoded by lambda_runtime and the answer encoded by it.
async fn run_under_the_runtime_emulator(
    w: &World,
    name: &str,
    env: &[(&str, String)],
    event: serde_json::Value,
) -> serde_json::Value {
    let (answered, stdout, stderr) = invoke_under_the_runtime_emulator(w, name, env, event).await;
    assert!(answered, "{name}: {stdout}\n{stderr}");
    serde_json::from_str(stdout.trim()).expect("JSON answer")
}

/// As [`run_under_the_runtime_emulator`], for an invocation that may fail: whether it
/// answered, and what `cargo lambda invoke` printed. An empty value in `env` unsets the
/// variable.
async fn invoke_under_the_runtime_emulator(
    w: &World,
    name: &str,
    env: &[(&str, String)],
    event: serde_json::Value,
) -> (bool, String, String) {
    use std::process::{Command, Stdio};
    let root = crate::support::repo_root();
    let cargo_lambda = root.join(".venv/bin/cargo-lambda");
    assert!(
        cargo_lambda.exists(),
        "cargo-lambda is required: run scripts/python-env"
    );
    // scripts/test builds the workspace's binaries before the tests. The binary cannot be built
    // from here: the running `cargo test` holds the build directory's lock.
    let target_dir =
        std::env::var("CARGO_TARGET_DIR").map_or_else(|_| root.join("target"), Into::into);
    let binary = target_dir.join("debug").join(name);
    assert!(
        binary.exists(),
        "{} is missing: run scripts/test (or `cargo build --workspace --bins` first)",
        binary.display()
    );
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        listener.local_addr().expect("addr").port()
    };
    let mut emulator = Command::new(&cargo_lambda)
        .args([
            "lambda",
            "watch",
            "--only-lambda-apis",
            "--invoke-address",
            "127.0.0.1",
            "-P",
            &port.to_string(),
        ])
        .current_dir(&root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cargo lambda watch");
    let manifest = tempfile::NamedTempFile::new().expect("manifest file");
    let graph = load_migrations(&example_project()).expect("example").graph;
    std::fs::write(manifest.path(), Manifest::from_graph(&graph).to_json())
        .expect("write manifest");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut function = Command::new(&binary);
    function
        .env(
            "AWS_LAMBDA_RUNTIME_API",
            format!("http://127.0.0.1:{port}/.rt"),
        )
        .env("AWS_LAMBDA_FUNCTION_NAME", "_")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("SHIFTGUARD_MANIFEST", manifest.path())
        .env("DATABASE_URL", w.db.url())
        .env("AWS_ENDPOINT_URL", aws_endpoint())
        .env("AWS_ENDPOINT_URL_CODEDEPLOY", w.endpoint.url())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_MAX_ATTEMPTS", "1")
        // The emulator gives every invocation 600 s.
        .env("SHIFTGUARD_DEADLINE_MARGIN_MS", "500")
        .envs(
            env.iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (*k, v.as_str())),
        );
    for (unset, _) in env.iter().filter(|(_, v)| v.is_empty()) {
        function.env_remove(unset);
    }
    let mut function = function
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run the function binary");
    let invoked = tokio::task::spawn_blocking({
        let cargo_lambda = cargo_lambda.clone();
        move || {
            // Bounded: a function that died would leave the invocation waiting forever.
            let mut invoke = Command::new(cargo_lambda)
                .args([
                    "lambda",
                    "invoke",
                    "--invoke-address",
                    "127.0.0.1",
                    "-P",
                    &port.to_string(),
                    "-o",
                    "json",
                    "--data-ascii",
                ])
                .arg(event.to_string())
                .arg("_")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("cargo lambda invoke");
            let deadline = Instant::now() + Duration::from_secs(60);
            while invoke.try_wait().expect("try_wait").is_none() {
                if Instant::now() > deadline {
                    let _ = invoke.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            invoke.wait_with_output().expect("invoke output")
        }
    })
    .await
    .expect("invoke");
    let _ = function.kill();
    let _ = emulator.kill();
    let _ = function.wait();
    let _ = emulator.wait();
    (
        invoked.status.success(),
        String::from_utf8_lossy(&invoked.stdout).into_owned(),
        String::from_utf8_lossy(&invoked.stderr).into_owned(),
    )
}

/// The three real hook binaries under cargo-lambda's Lambda runtime emulator: each decodes its
/// event, reads the deployment through the SDK and answers; the hooks report exactly once.
#[tokio::test]
async fn the_real_binaries_run_under_the_lambda_runtime_emulator() {
    let w = world(ADD_DISPLAY_NAME, "").await;
    let (id, v) = v1_to_v2(&w).await;
    traffic(
        &w,
        &v[0],
        &v[1],
        &[(&v[0], 9_000.0, 9.0), (&v[1], 1_000.0, 1.0)],
    )
    .await;

    let answer =
        run_under_the_runtime_emulator(&w, "pre-traffic-hook", &[], event(&id, "exec-runtime-pre"))
            .await;
    assert_eq!(answer["status"], "Succeeded", "{answer}");
    let answer = run_under_the_runtime_emulator(
        &w,
        "post-traffic-hook",
        &[],
        event(&id, "exec-runtime-post"),
    )
    .await;
    assert_eq!(answer["status"], "Succeeded", "{answer}");
    let puts = w.endpoint.puts();
    assert_eq!(puts.len(), 2, "{puts:?}");
    assert_eq!(puts[0]["lifecycleEventHookExecutionId"], "exec-runtime-pre");
    assert_eq!(
        puts[1]["lifecycleEventHookExecutionId"],
        "exec-runtime-post"
    );
    assert!(
        puts.iter().all(|put| put["status"] == "Succeeded"),
        "{puts:?}"
    );

    // The monitor: a scheduled event, one report per deployment group, nothing reported to
    // CodeDeploy.
    let group = format!("{}/{}-group", w.name, w.name);
    let answer = run_under_the_runtime_emulator(
        &w,
        "gate-monitor",
        &[("SHIFTGUARD_DEPLOYMENT_GROUPS", group.clone())],
        serde_json::json!({"source": "aws.events", "detail-type": "Scheduled Event"}),
    )
    .await;
    assert_eq!(
        answer[0]["deployment_group"],
        format!("{}-group", w.name),
        "{answer}"
    );
    assert_eq!(answer[0]["gate_failing"], 0.0, "{answer}");
    assert_eq!(answer[0]["evaluations"][0]["deployment_id"], id.as_str());
    assert_eq!(gate_failing(&w, &group, None).await, [0.0]);
    assert_eq!(
        w.endpoint.puts().len(),
        2,
        "the monitor reports no hook status"
    );
    w.db.drop_database().await;
}

/// A hook whose setup fails — a variable malformed, the manifest missing, the database secret
/// missing, Secrets Manager hanging — still answers its invocation: it reports Failed once, with
/// the reason, before the deadline. The gate monitor in the same state publishes its gates as
/// failing and fails the invocation with the reason.
#[tokio::test]
async fn a_hook_that_cannot_start_still_reports_failed_with_the_reason() {
    let w = world(ADD_DISPLAY_NAME, "").await;
    let missing_secret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:missing-AbCdEf";
    /// The function, what its environment has (an empty value unsets), what the reason says.
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, &'a str);
    let cases: [Case; 4] = [
        (
            "pre-traffic-hook",
            vec![(
                "SHIFTGUARD_MANIFEST",
                "/nonexistent/manifest.json".to_owned(),
            )],
            "cannot read manifest /nonexistent/manifest.json",
        ),
        (
            "post-traffic-hook",
            vec![("SHIFTGUARD_MAX_ERROR_RATE", "lots".to_owned())],
            "SHIFTGUARD_MAX_ERROR_RATE is `lots`",
        ),
        (
            "post-traffic-hook",
            vec![("SHIFTGUARD_OBSERVE_GATES", "health:*,*".to_owned())],
            "SHIFTGUARD_OBSERVE_GATES: `*` would make every gate observe-only",
        ),
        (
            "pre-traffic-hook",
            vec![
                ("DATABASE_URL", String::new()),
                ("DATABASE_SECRET_ARN", missing_secret.to_owned()),
            ],
            "missing-AbCdEf",
        ),
    ];
    for (i, (function, env, reason)) in cases.into_iter().enumerate() {
        let execution = format!("exec-setup-{i}");
        let started = Instant::now();
        let answer =
            run_under_the_runtime_emulator(&w, function, &env, event("d-setup", &execution)).await;
        assert_eq!(answer["status"], "Failed", "{function} {env:?}: {answer}");
        let said = answer["reason"].as_str().unwrap_or_default();
        assert!(
            said.starts_with("the hook could not start: ") && said.contains(reason),
            "{function} {env:?}: {said}"
        );
        // At once, not when CodeDeploy's hook timeout runs out.
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{:?}",
            started.elapsed()
        );
        let puts: Vec<_> = w
            .endpoint
            .puts()
            .into_iter()
            .filter(|put| put["lifecycleEventHookExecutionId"] == execution.as_str())
            .collect();
        assert_eq!(puts.len(), 1, "{function} {env:?}: {puts:?}");
        assert_eq!(puts[0]["status"], "Failed");
        assert_eq!(puts[0]["deploymentId"], "d-setup");
    }
    // A secret that never comes: the setup gives up at the deadline (the emulator's invocations
    // have 600 s, so this is checked here).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let secrets = sdk_config(&format!("http://{}", silent.local_addr().expect("addr"))).await;
    let manifest = tempfile::NamedTempFile::new().expect("manifest file");
    let graph = load_migrations(&example_project()).expect("example").graph;
    std::fs::write(manifest.path(), Manifest::from_graph(&graph).to_json()).expect("manifest");
    let path = manifest.path().display().to_string();
    let env = [
        ("DATABASE_SECRET_ARN", missing_secret),
        ("SHIFTGUARD_MANIFEST", path.as_str()),
    ];
    let started = Instant::now();
    let built = Deps::build_by(
        shiftguard_aws::environment::fixed(&env),
        &secrets,
        started + Duration::from_secs(1),
    )
    .await;
    assert_eq!(
        built.map(|_| ()),
        Err("setup did not finish before the deadline".to_owned())
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    drop(silent);

    let group = format!("{}/{}-group", w.name, w.name);
    let (answered, stdout, stderr) = invoke_under_the_runtime_emulator(
        &w,
        "gate-monitor",
        &[
            ("SHIFTGUARD_DEPLOYMENT_GROUPS", group.clone()),
            (
                "SHIFTGUARD_MANIFEST",
                "/nonexistent/manifest.json".to_owned(),
            ),
        ],
        serde_json::json!({"source": "aws.events", "detail-type": "Scheduled Event"}),
    )
    .await;
    assert!(!answered, "the monitor's invocation fails: {stdout}");
    assert!(
        format!("{stdout}{stderr}").contains("the gate monitor could not start"),
        "{stdout}\n{stderr}"
    );
    assert_eq!(gate_failing(&w, &group, None).await, [1.0]);
    assert_eq!(application_gate_failing(&w, &w.name).await, [1.0]);
    w.db.drop_database().await;
}

#[tokio::test]
async fn pre_traffic_smoke_invokes_the_target_version() {
    // moto runs no code without Docker; scripts/services configures it so before any test runs
    // (switching it mid-run would swap moto's Lambda backend under the other tests), and then an
    // invoke echoes the payload back.
    let config = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import urllib.request; print(urllib.request.urlopen('{}/moto-api/config').read().decode())",
            aws_endpoint()
        ))
        .output()
        .expect("read the emulator's configuration");
    let config: serde_json::Value =
        serde_json::from_slice(&config.stdout).expect("the emulator's configuration is JSON");
    assert_eq!(
        config["lambda"]["use_docker"], false,
        "scripts/services sets moto's Lambda to run without Docker: {config}"
    );
    for (expect, status) in [("smoke-test", "Succeeded"), ("pong", "Failed")] {
        let mut w = world(ADD_DISPLAY_NAME, "").await;
        Arc::get_mut(&mut w.deps)
            .expect("sole owner")
            .settings
            .smoke = Some(shiftguard_core::release::decide::Smoke {
            payload: r#"{"ping": "smoke-test"}"#.to_owned(),
            expect: expect.to_owned(),
        });
        let (id, versions) = v1_to_v2(&w).await;
        let reason = invoke_expecting(&w, &id, status).await;
        if status == "Failed" {
            assert!(
                reason.contains(&format!(
                    "smoke: FAIL: smoke invoke of version {} answered",
                    versions[1]
                )),
                "{reason}"
            );
            assert!(
                reason.contains("which does not contain \"pong\""),
                "{reason}"
            );
        }
        w.db.drop_database().await;
    }
}
