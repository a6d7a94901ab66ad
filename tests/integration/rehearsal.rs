//! The end-to-end rehearsal: one release of the running example walked through every stage
//! against real components — PostgreSQL moved by the real Alembic CLI, the AWS emulator (Lambda
//! versions with schema stamps and alias routing, CloudWatch metric data, DynamoDB checkpoints,
//! CodeDeploy deployments), the real pre- and post-traffic hook handler, the real backfill Lambda
//! handler, the real gate monitor, and the real `shiftguard` binary for the contract gate and the
//! final check. A premature deployment and a premature contract must both be blocked.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shiftguard_aws::{CloudWatchAdapter, CodeDeployAdapter, LambdaAdapter};
use shiftguard_core::Manifest;
use shiftguard_core::config::ProjectConfig;
use shiftguard_core::release::decide::TrafficSettings;
use shiftguard_core::release::gate::{HealthBudget, InconclusivePolicy};
use shiftguard_core::schema::scan::load_migrations;
use shiftguard_hooks::{DecisionPoint, Deps, handle};
use shiftguard_sql::DatabaseUrl;

use crate::gates::{BACKFILL, release};
use crate::hooks::{CodeDeployEndpoint, appspec, deployment, event};
use crate::support::example::*;
use crate::support::{alembic, aws_endpoint, dynamodb_table, example_project, sdk_config};

/// Runs one lifecycle hook for a new deployment from `current` to `target`; returns the status
/// it reported (exactly one report per execution) and its reason.
async fn hook(
    deps: &Arc<Deps>,
    endpoint: &CodeDeployEndpoint,
    application: &str,
    phase: DecisionPoint,
    (function, current, target): (&str, &str, &str),
) -> (String, String) {
    let aws = sdk_config(&aws_endpoint()).await;
    let id = deployment(&aws, application, &appspec(function, current, target)).await;
    let before = endpoint.puts().len();
    let execution = format!("exec-{id}");
    let reported = handle(
        phase,
        event(&id, &execution),
        Instant::now() + Duration::from_secs(20),
        Arc::clone(deps),
    )
    .await
    .expect("hook handled");
    let puts = endpoint.puts();
    assert_eq!(puts.len(), before + 1, "exactly one report: {puts:?}");
    let put = &puts[before];
    assert_eq!(put["lifecycleEventHookExecutionId"], execution.as_str());
    (
        put["status"].as_str().unwrap_or_default().to_owned(),
        reported.reason.unwrap_or_default(),
    )
}

#[tokio::test]
async fn a_release_rehearsed_end_to_end_against_real_components() {
    // Production: the database at "create users" with 3,000 users; v1 (built there) serves.
    // v2 is built at the merge of the expand branches (dual write).
    let r = release(CREATE_USERS, &[CREATE_USERS, MERGE], BACKFILL).await;
    let (v1, v2) = (r.versions[0].clone(), r.versions[1].clone());
    r.alias("live", &v1, None).await;
    r.db
        .execute("INSERT INTO users (full_name, email) SELECT 'User ' || g, 'u' || g || '@example.com' FROM generate_series(1, 3000) g")
        .await;

    // The hooks' dependencies, as the packaged hook builds them (the manifest round-tripped).
    let endpoint = CodeDeployEndpoint::start().await;
    let moto = sdk_config(&aws_endpoint()).await;
    let graph = load_migrations(&example_project()).expect("example").graph;
    let graph = Manifest::parse(&Manifest::from_graph(&graph).to_json()).expect("manifest");
    let deps = Arc::new(Deps {
        graph,
        project: ProjectConfig::parse(BACKFILL).expect("config"),
        url: DatabaseUrl::parse(&r.db.url()).expect("url"),
        version_table: "alembic_version".to_owned(),
        codedeploy: CodeDeployAdapter::new(&sdk_config(endpoint.url()).await),
        lambda: LambdaAdapter::new(&moto),
        cloudwatch: CloudWatchAdapter::new(&moto),
        notifier: None,
        verdicts: Default::default(),
        settings: TrafficSettings {
            budget: HealthBudget {
                inconclusive: InconclusivePolicy::Fail,
                ..HealthBudget::default()
            },
            ..TrafficSettings::default()
        },
    });
    let release_of = |n: u32| format!("{}-{n}", r.name);
    let shift = (r.name.as_str(), v1.as_str(), v2.as_str());

    // 1. Premature: v2 deployed before the expand. The pre-traffic hook reports Failed.
    let (status, reason) = hook(
        &deps,
        &endpoint,
        &release_of(1),
        DecisionPoint::PreTraffic,
        shift,
    )
    .await;
    assert_eq!(status, "Failed", "{reason}");
    assert!(reason.contains("schema:target"), "{reason}");

    // 2. The expand, by the real Alembic CLI; now both versions fit: Succeeded.
    alembic(
        &example_project(),
        Some(&r.db.sqlalchemy_url()),
        &["upgrade", MERGE],
    );
    let (status, reason) = hook(
        &deps,
        &endpoint,
        &release_of(2),
        DecisionPoint::PreTraffic,
        shift,
    )
    .await;
    assert_eq!(status, "Succeeded", "{reason}");

    // 3. The canary's first step: v2 at 10%. A premature contract is blocked, naming v1 and the
    //    pending backfill.
    r.alias("live", &v1, Some((&v2, 0.1))).await;
    let premature = r.contract(&[]).await;
    assert_eq!(
        premature.code, 1,
        "{}{}",
        premature.stdout, premature.stderr
    );
    assert!(
        premature.stdout.contains(&format!("live:{}:{v1}", r.name)),
        "{}",
        premature.stdout
    );
    assert!(
        premature.stdout.contains("backfill:users_display_name"),
        "{}",
        premature.stdout
    );

    // 4. The backfill Lambda's handler, checkpoints in DynamoDB: a short invocation stops at its
    //    deadline, the next ones resume; a row the old version writes meanwhile is caught.
    let table = dynamodb_table().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("shiftguard.toml");
    std::fs::write(
        &config,
        format!("{BACKFILL}batch_size = 100\nmax_batch_size = 100\nmax_rows_per_second = 1000\n"),
    )
    .expect("config");
    let env: HashMap<&str, String> = [
        ("DATABASE_URL", r.db.url()),
        ("SHIFTGUARD_CONFIG", config.to_string_lossy().into_owned()),
        ("SHIFTGUARD_CHECKPOINT", "dynamodb".to_owned()),
        ("SHIFTGUARD_CHECKPOINT_TABLE", table.clone()),
    ]
    .into_iter()
    .collect();
    let function = backfill::config::FunctionConfig::from_lookup(|k| env.get(k).cloned())
        .expect("function config");
    let backfill_deps = backfill::Deps::build(&function, &moto, |_| None)
        .await
        .expect("backfill deps");
    let invoke = |deadline: Duration| {
        let deps = &backfill_deps;
        async move {
            let records = backfill::handle(
                backfill::BackfillEvent::default(),
                Instant::now() + deadline,
                deps,
                "lambda:rehearsal",
            )
            .await
            .expect("backfill invocation");
            (records[0].outcome.clone(), records[0].rows_updated)
        }
    };
    let (outcome, first) = invoke(Duration::from_secs(2)).await;
    assert_eq!(outcome, "deadline");
    assert!(first > 0 && first < 3000, "{first}");
    // The next invocation resumes: it updates exactly the rows the first left.
    let (outcome, second) = invoke(Duration::from_secs(30)).await;
    assert_eq!(outcome, "swept");
    assert_eq!(first + second, 3000, "no row done twice, none skipped");
    // The old version writes after the pass went by: the sweep finds the row, a new pass fixes
    // it, and only then is the backfill complete.
    r.db.execute("INSERT INTO users (full_name, email) VALUES ('Old Writer', 'old@example.com')")
        .await;
    let (outcome, third) = invoke(Duration::from_secs(30)).await;
    assert_eq!((outcome.as_str(), third), ("swept", 1));
    let (outcome, _) = invoke(Duration::from_secs(30)).await;
    assert_eq!(outcome, "complete");
    assert_eq!(
        r.db.scalar("SELECT count(*) FROM users WHERE display_name IS NULL")
            .await,
        0
    );

    // 5. Between the steps: v2 healthy in CloudWatch; the gate monitor publishes GateFailing 0
    //    for the deployment group; the post-traffic hook reports Succeeded.
    r.invocations(&v2, 400.0, 1.0, 0).await;
    let group = format!("{app}/{app}-group", app = release_of(2));
    let groups = shiftguard_hooks::deployment_groups(&group).expect("groups");
    let reports = shiftguard_hooks::monitor(
        Arc::clone(&deps),
        &groups,
        Instant::now() + Duration::from_secs(60),
    )
    .await
    .expect("monitor");
    assert_eq!(reports[0].gate_failing, 0.0, "{reports:?}");
    let (status, reason) = hook(
        &deps,
        &endpoint,
        &release_of(3),
        DecisionPoint::PostTraffic,
        shift,
    )
    .await;
    assert_eq!(status, "Succeeded", "{reason}");

    // 6. v2 takes all traffic. v1 was still invoked 30 minutes ago: inside the default 60-minute
    //    observation window the contract is blocked; with a 20-minute window nothing old can run
    //    any more, the gate passes, and the real Alembic CLI applies the contract.
    r.alias("live", &v2, None).await;
    r.invocations(&v1, 12.0, 0.0, 30).await;
    let recent = r.contract(&[]).await;
    assert_eq!(recent.code, 1, "{}{}", recent.stdout, recent.stderr);
    assert!(recent.stdout.contains("invoked"), "{}", recent.stdout);
    let contract = r.contract(&["--observation-minutes", "20"]).await;
    assert_eq!(contract.code, 0, "{}{}", contract.stdout, contract.stderr);
    alembic(
        &example_project(),
        Some(&r.db.sqlalchemy_url()),
        &["upgrade", DROP_FULL_NAME],
    );

    // 7. After the contract, v1 can no longer run on this database; v2 can.
    let check = |revision: &str| {
        crate::support::shiftguard(&[
            "check",
            "--migrations",
            example_project().to_str().expect("utf-8"),
            "--database-url",
            &r.db.url(),
            "--app-revision",
            revision,
        ])
    };
    assert_eq!(check(CREATE_USERS).code, 1);
    assert_eq!(check(MERGE).code, 0);
}
