//! template.yaml: cfn-lint (with the SAM transform) passes; the wiring is what the README says
//! (hooks, alarms, schedules, the checkpoint table, least-privilege IAM); and SAM publishes a new
//! app version exactly when the VersionKey the pipeline computes changes (the real SAM
//! translator decides, run from the project's venv).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::repo_root;

fn venv_tool(name: &str) -> PathBuf {
    let tool = repo_root().join(".venv/bin").join(name);
    assert!(tool.exists(), "{name} is required: run scripts/python-env");
    tool
}

fn template_text() -> String {
    std::fs::read_to_string(repo_root().join("template.yaml")).expect("template.yaml")
}

fn template() -> Value {
    serde_saphyr::from_str(&template_text()).expect("template.yaml is YAML")
}

/// cfn-lint on the template, and on what the SAM transform makes of it: only the transformed
/// template shows CloudFormation's view, e.g. a circular dependency through a generated
/// resource such as the deployment group.
#[test]
fn cfn_lint_passes_on_the_template_and_its_transform() {
    let dir = tempfile::tempdir().expect("dir");
    let transformed = dir.path().join("transformed.json");
    app_version_writing(
        &repo_root().join("template.yaml"),
        "code-1",
        &serde_json::json!({ "SchemaRevision": "836a014c0874" }),
        Some(&transformed),
    );
    // W2001 "parameter not used" on the transformed one only: the transform has already put the
    // values of parameters such as DeploymentType and VersionKey where they belong.
    for (template, ignore) in [
        (repo_root().join("template.yaml"), None),
        (transformed, Some("W2001")),
    ] {
        let mut lint = Command::new(venv_tool("cfn-lint"));
        if let Some(check) = ignore {
            lint.args(["--ignore-checks", check, "--"]);
        }
        let output = lint.arg(&template).output().expect("run cfn-lint");
        assert!(
            output.status.success() && output.stdout.is_empty(),
            "cfn-lint {}:\n{}{}",
            template.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// `{"Ref": name}` → name.
fn reference(value: &Value) -> Option<&str> {
    value.get("Ref").and_then(Value::as_str)
}

fn resources(template: &Value) -> &serde_json::Map<String, Value> {
    template["Resources"].as_object().expect("Resources")
}

fn resource_type<'a>(template: &'a Value, name: &str) -> &'a str {
    resources(template)
        .get(name)
        .unwrap_or_else(|| panic!("no resource {name}"))["Type"]
        .as_str()
        .expect("Type")
}

#[test]
fn the_template_wires_hooks_alarms_schedules_and_the_checkpoint_table() {
    let t = template();
    let app = &t["Resources"]["UsersApi"]["Properties"];
    assert_eq!(app["AutoPublishAlias"], "live");
    assert_eq!(reference(&app["AutoPublishCodeSha256"]), Some("VersionKey"));
    assert_eq!(
        reference(&app["Environment"]["Variables"]["SHIFTGUARD_SCHEMA_REVISION"]),
        Some("SchemaRevision")
    );
    let preference = &app["DeploymentPreference"];
    assert_eq!(reference(&preference["Type"]), Some("DeploymentType"));
    assert_eq!(
        t["Parameters"]["DeploymentType"]["Default"],
        "Canary10Percent5Minutes"
    );
    for (hook, function) in [
        ("PreTraffic", "PreTrafficHook"),
        ("PostTraffic", "PostTrafficHook"),
    ] {
        assert_eq!(reference(&preference["Hooks"][hook]), Some(function));
        assert_eq!(resource_type(&t, function), "AWS::Serverless::Function");
    }
    // CodeDeploy's own role may invoke exactly the two hooks.
    let role = preference["Role"]["Fn::GetAtt"][0].as_str().expect("role");
    let invoke = t["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .find(|s| s["Action"] == "lambda:InvokeFunction")
        .expect("invoke statement");
    let targets: Vec<&str> = invoke["Resource"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r["Fn::GetAtt"][0].as_str().expect("GetAtt"))
        .collect();
    assert_eq!(targets, ["PreTrafficHook", "PostTrafficHook"]);

    let alarms: Vec<&str> = preference["Alarms"]
        .as_array()
        .expect("alarms")
        .iter()
        .filter_map(reference)
        .collect();
    assert_eq!(alarms, ["UsersApiErrorsAlarm", "GateFailingAlarm"]);
    let gate = &t["Resources"]["GateFailingAlarm"]["Properties"];
    assert_eq!(
        resource_type(&t, "GateFailingAlarm"),
        "AWS::CloudWatch::Alarm"
    );
    assert_eq!(gate["Namespace"], shiftguard_hooks::MONITOR_NAMESPACE);
    assert_eq!(gate["MetricName"], "GateFailing");
    assert_eq!(gate["Dimensions"][0]["Name"], "Application");
    assert_eq!(
        reference(&gate["Dimensions"][0]["Value"]),
        Some("ServerlessDeploymentApplication")
    );
    assert_eq!(
        gate["TreatMissingData"], "breaching",
        "a silent monitor must stop the canary"
    );
    let errors = &t["Resources"]["UsersApiErrorsAlarm"]["Properties"];
    let dimensions: Vec<&str> = errors["Dimensions"]
        .as_array()
        .expect("dimensions")
        .iter()
        .map(|d| d["Name"].as_str().expect("name"))
        .collect();
    assert_eq!(dimensions, ["FunctionName", "Resource", "ExecutedVersion"]);

    // Both hooks and the monitor read the operators' holds, keyed by group.
    for function in ["PreTrafficHook", "PostTrafficHook", "GateMonitor"] {
        let properties = &t["Resources"][function]["Properties"];
        assert_eq!(
            reference(&properties["Environment"]["Variables"]["SHIFTGUARD_HOLDS_TABLE"]),
            Some("HoldsTable"),
            "{function}"
        );
        let statements = properties["Policies"][0]["Statement"]
            .as_array()
            .expect("statements");
        assert!(
            statements.iter().any(|s| s["Action"] == "dynamodb:GetItem"
                && s["Resource"]["Fn::GetAtt"][0] == "HoldsTable"),
            "{function} may read the holds"
        );
    }
    assert_eq!(
        t["Resources"]["HoldsTable"]["Properties"]["KeySchema"][0]["AttributeName"],
        "group"
    );

    // Notifications, optional: the topic exists with `Notifications` on; the monitor and the
    // backfill are told it and the default bus then, and may publish to both.
    assert_eq!(t["Parameters"]["Notifications"]["Default"], "off");
    assert_eq!(t["Resources"]["NotificationTopic"]["Condition"], "Notify");
    for function in ["GateMonitor", "Backfill"] {
        let properties = &t["Resources"][function]["Properties"];
        let variables = &properties["Environment"]["Variables"];
        assert_eq!(
            variables["SHIFTGUARD_NOTIFY_TOPIC_ARN"]["Fn::If"],
            serde_json::json!(["Notify", {"Ref": "NotificationTopic"}, ""]),
            "{function}"
        );
        assert_eq!(
            variables["SHIFTGUARD_NOTIFY_EVENT_BUS"]["Fn::If"],
            serde_json::json!(["Notify", "default", ""]),
            "{function}"
        );
        let statements = properties["Policies"][0]["Statement"]
            .as_array()
            .expect("statements");
        for (action, resource) in [
            ("sns:Publish", ":${AWS::StackName}-notices"),
            ("events:PutEvents", ":event-bus/default"),
        ] {
            assert!(
                statements.iter().any(|s| s["Action"] == action
                    && s["Resource"]["Fn::Sub"]
                        .as_str()
                        .is_some_and(|r| r.ends_with(resource))),
                "{function} may {action}"
            );
        }
    }
    assert_eq!(
        t["Resources"]["NotificationTopic"]["Properties"]["TopicName"]["Fn::Sub"],
        "${AWS::StackName}-notices"
    );

    // Every function is a workspace binary built by cargo-lambda; hooks and the monitor read
    // the release's manifest from the layer.
    let workspace_binaries = [
        "sample-app",
        "pre-traffic-hook",
        "post-traffic-hook",
        "gate-monitor",
        "backfill",
    ];
    for (name, resource) in resources(&t) {
        if resource["Type"] != "AWS::Serverless::Function" {
            continue;
        }
        assert_eq!(
            resource["Metadata"]["BuildMethod"], "rust-cargolambda",
            "{name}"
        );
        let binary = resource["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .expect("binary");
        assert!(workspace_binaries.contains(&binary), "{name}: {binary}");
        let variables = &resource["Properties"]["Environment"]["Variables"];
        assert_eq!(
            reference(&variables["DATABASE_SECRET_ARN"]),
            Some("DatabaseSecretArn"),
            "{name}: the database comes from the secret"
        );
        if name != "UsersApi" && name != "Backfill" {
            assert_eq!(
                variables["SHIFTGUARD_MANIFEST"], "/opt/manifest.json",
                "{name}"
            );
        }
    }
    assert_eq!(t["Globals"]["Function"]["Runtime"], "provided.al2023");

    // Schedules: the backfill (with its backfill's name) and the monitor.
    let schedule = |function: &str| -> Value {
        t["Resources"][function]["Properties"]["Events"]
            .as_object()
            .expect("events")
            .values()
            .next()
            .expect("an event")
            .clone()
    };
    // The backfill's schedule starts its state machine, not the Lambda.
    assert!(
        t["Resources"]["Backfill"]["Properties"]
            .get("Events")
            .is_none()
    );
    assert_eq!(schedule("BackfillStateMachine")["Type"], "Schedule");
    assert_eq!(
        reference(&schedule("BackfillStateMachine")["Properties"]["Schedule"]),
        Some("BackfillSchedule")
    );
    assert_eq!(schedule("GateMonitor")["Type"], "Schedule");
    assert_eq!(
        t["Resources"]["GateMonitor"]["Properties"]["Environment"]["Variables"]["SHIFTGUARD_DEPLOYMENT_GROUPS"]
            ["Fn::Sub"],
        "${ServerlessDeploymentApplication}/${UsersApiDeploymentGroup}"
    );

    let table = &t["Resources"]["CheckpointTable"]["Properties"];
    assert_eq!(table["BillingMode"], "PAY_PER_REQUEST");
    assert_eq!(
        table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
        true
    );
    assert_eq!(table["KeySchema"][0]["AttributeName"], "name");

    // No password parameter: the database comes from a secret ARN.
    for (name, parameter) in t["Parameters"].as_object().expect("parameters") {
        assert!(
            !name.to_ascii_lowercase().contains("password"),
            "parameter {name}"
        );
        assert!(parameter.get("NoEcho").is_none(), "parameter {name}");
    }
    for output in [
        "AliasArn",
        "CheckpointTableName",
        "AppFunction",
        "PreTrafficHookFunction",
        "PostTrafficHookFunction",
        "GateMonitorFunction",
        "BackfillFunction",
        "BackfillStateMachineArn",
    ] {
        assert!(t["Outputs"].get(output).is_some(), "output {output}");
    }
}

/// Every IAM statement names its resources; `Resource: "*"` only for the actions AWS gives no
/// resource-level permission for, each with a comment saying so just above the statement.
#[test]
fn every_iam_statement_is_scoped() {
    let t = template();
    let mut statements: Vec<(String, Value)> = Vec::new();
    for (name, resource) in resources(&t) {
        let policies = match resource["Type"].as_str() {
            Some("AWS::Serverless::Function") => resource["Properties"]["Policies"].clone(),
            Some("AWS::IAM::Role") => Value::Array(
                resource["Properties"]["Policies"]
                    .as_array()
                    .expect("policies")
                    .iter()
                    .map(|p| p["PolicyDocument"].clone())
                    .collect(),
            ),
            _ => continue,
        };
        let policies = policies.as_array().cloned().unwrap_or_default();
        assert!(!policies.is_empty(), "{name} has no policy of its own");
        for policy in policies {
            assert!(
                policy.is_object(),
                "{name}: managed or template policies are broader than needed: {policy}"
            );
            for statement in policy["Statement"].as_array().expect("statements") {
                statements.push((name.clone(), statement.clone()));
            }
        }
    }
    let unscoped_allowed = ["cloudwatch:GetMetricData", "cloudwatch:PutMetricData"];
    for (name, statement) in &statements {
        assert_eq!(statement["Effect"], "Allow", "{name}");
        let resource = &statement["Resource"];
        assert!(!resource.is_null(), "{name}: a statement without Resource");
        if resource == "*" {
            let action = statement["Action"].as_str().unwrap_or_default();
            assert!(
                unscoped_allowed.contains(&action),
                "{name}: {action} on every resource"
            );
        }
        let actions: Vec<&str> = match &statement["Action"] {
            Value::String(a) => vec![a.as_str()],
            Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
            other => panic!("{name}: Action {other}"),
        };
        assert!(
            actions.iter().all(|a| !a.ends_with(":*") && *a != "*"),
            "{name}: wildcard action in {actions:?}"
        );
    }
    // PutMetricData is held to the monitor's namespace.
    let put = statements
        .iter()
        .find(|(_, s)| s["Action"] == "cloudwatch:PutMetricData")
        .expect("the monitor publishes");
    assert_eq!(
        put.1["Condition"]["StringEquals"]["cloudwatch:namespace"],
        "Shiftguard"
    );
    // Each `Resource: "*"` has a comment within the statement's lines above it.
    let text = template_text();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.trim() == "Resource: \"*\"" {
            let above = &lines[i.saturating_sub(3)..i];
            assert!(
                above.iter().any(|l| l.trim_start().starts_with('#')),
                "template.yaml:{}: Resource \"*\" without a comment giving the reason",
                i + 1
            );
        }
    }
}

/// The logical id SAM gives the app's version for these parameters and this code.
fn app_version(template: &Path, code_key: &str, parameters: &Value) -> String {
    app_version_writing(template, code_key, parameters, None)
}

/// [`app_version`], also writing the transformed template to `out`.
fn app_version_writing(
    template: &Path,
    code_key: &str,
    parameters: &Value,
    out: Option<&Path>,
) -> String {
    let mut all = serde_json::json!({
        "DatabaseSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf",
    });
    for (k, v) in parameters.as_object().expect("parameters") {
        all[k] = v.clone();
    }
    let output = Command::new(venv_tool("python"))
        .arg(repo_root().join("tests/integration/sam_versions.py"))
        .arg(template)
        .arg(code_key)
        .arg(all.to_string())
        .args(out)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .expect("run the SAM translator");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let versions: Vec<String> = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(versions.len(), 1, "{versions:?}");
    versions[0].clone()
}

fn version_key(bootstrap: &Path, revision: &str, flag: &str) -> String {
    let output = Command::new(repo_root().join("scripts/version-key"))
        .arg(bootstrap)
        .arg(revision)
        .arg("")
        .arg(flag)
        .output()
        .expect("scripts/version-key");
    assert!(output.status.success());
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

#[test]
fn a_new_schema_revision_alone_publishes_a_new_app_version() {
    use crate::support::example::*;
    let template = repo_root().join("template.yaml");
    let dir = tempfile::tempdir().expect("dir");
    let bootstrap = dir.path().join("bootstrap");
    std::fs::write(&bootstrap, b"the same binary").expect("write");

    // Without VersionKey SAM hashes the code only: the pitfall the key exists for.
    let at = |revision: &str| serde_json::json!({ "SchemaRevision": revision });
    assert_eq!(
        app_version(&template, "code-1", &at(ADD_DISPLAY_NAME)),
        app_version(&template, "code-1", &at(MERGE)),
        "SAM alone does not see a new SchemaRevision"
    );
    assert_ne!(
        app_version(&template, "code-1", &at(ADD_DISPLAY_NAME)),
        app_version(&template, "code-2", &at(ADD_DISPLAY_NAME)),
    );

    // With the key the pipeline computes: a new revision, or the flag, is a new version; the
    // same inputs are the same version (no needless deployment).
    let keyed = |revision: &str, flag: &str| {
        let key = version_key(&bootstrap, revision, flag);
        app_version(
            &template,
            "code-1",
            &serde_json::json!({
                "SchemaRevision": revision,
                "ReadDisplayName": flag,
                "VersionKey": key,
            }),
        )
    };
    let before = keyed(ADD_DISPLAY_NAME, "false");
    assert_ne!(before, keyed(MERGE, "false"));
    assert_ne!(before, keyed(ADD_DISPLAY_NAME, "true"));
    assert_eq!(before, keyed(ADD_DISPLAY_NAME, "false"));
}

/// The pipeline example is valid workflow YAML (schemastore's schema, vendored by
/// check-jsonschema) and follows the doctrine's order, each step in its environment.
#[test]
fn the_pipeline_example_is_a_valid_workflow_in_the_doctrines_order() {
    let dir = repo_root().join("infra/github");
    let output = Command::new(venv_tool("check-jsonschema"))
        .args(["--builtin-schema", "vendor.github-workflows"])
        .arg(dir.join("deploy.yml"))
        .arg(dir.join("contract.yml"))
        .arg(dir.join("lint.yml"))
        .arg(dir.join("release.yml"))
        .output()
        .expect("run check-jsonschema");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(dir.join("deploy.yml")).expect("deploy.yml");
    let deploy: Value = serde_saphyr::from_str(&text).expect("YAML");
    let jobs = &deploy["jobs"];
    // (job, environment, the job it must come after)
    for (job, environment, after) in [
        ("migrate-expand", Some("production-db"), "test-and-build"),
        (
            "deploy-compatible",
            Some("production-app"),
            "migrate-expand",
        ),
        ("backfill", Some("production-db"), "deploy-compatible"),
        ("cutover", Some("production-app"), "backfill"),
    ] {
        assert_eq!(
            jobs[job]["environment"].as_str(),
            environment,
            "{job}'s environment"
        );
        let needs = &jobs[job]["needs"];
        let needs: Vec<&str> = match needs {
            Value::String(one) => vec![one.as_str()],
            Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
            other => panic!("{job}: needs {other}"),
        };
        assert!(needs.contains(&after), "{job} must run after {after}");
    }
    let steps = |job: &str| serde_json::to_string(&jobs[job]["steps"]).expect("steps");
    assert!(steps("migrate-expand").contains("shiftguard check"));
    let migrate = steps("migrate-expand");
    let lint = migrate.find("shiftguard lint").expect("the lint");
    let upgrade = migrate
        .find("shiftguard migrate expand")
        .expect("the expand");
    assert!(lint < upgrade, "the release is linted before it is applied");
    assert!(steps("cutover").contains("shiftguard gate cutover"));
    assert!(steps("deploy-compatible").contains("scripts/version-key"));
    let contract: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(dir.join("contract.yml")).expect("contract.yml"),
    )
    .expect("YAML");
    assert!(
        contract["on"].get("workflow_dispatch").is_some(),
        "manually started"
    );
    assert_eq!(contract["jobs"]["contract"]["environment"], "production-db");
    let steps = serde_json::to_string(&contract["jobs"]["contract"]["steps"]).expect("steps");
    let pull_requests: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(dir.join("lint.yml")).expect("lint.yml"))
            .expect("YAML");
    assert!(pull_requests["on"].get("pull_request").is_some());
    let lint_steps = serde_json::to_string(&pull_requests["jobs"]["lint"]["steps"]).expect("steps");
    assert!(
        lint_steps.contains(
            "shiftguard lint --migrations \\\"$MIGRATIONS\\\" --since \\\"$PROD_HEAD\\\""
        )
    );
    assert!(lint_steps.contains("upload-sarif"));
    // The rehearsal: a service-container PostgreSQL, from production's head, both builds' tests.
    let rehearse = &pull_requests["jobs"]["rehearse"];
    assert_eq!(rehearse["needs"], "lint");
    assert!(
        rehearse["services"]["postgres"]["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("postgres:"))
    );
    let rehearse_steps = serde_json::to_string(&rehearse["steps"]).expect("steps");
    assert!(
        rehearse_steps.contains("shiftguard rehearse --migrations \\\"$MIGRATIONS\\\"")
            && rehearse_steps.contains("--since \\\"$PROD_HEAD\\\"")
            && rehearse_steps
                .contains("--app \\\"$PROD_HEAD=cd previous && $LIVE_TEST_COMMAND\\\"")
            && rehearse_steps.contains("--app \\\"$head=$NEW_TEST_COMMAND\\\""),
        "{rehearse_steps}"
    );
    // The gate and the migration are one step: nothing is applied unless the gate passes.
    assert!(
        steps.contains("shiftguard migrate contract --revision \\\"$REVISION\\\""),
        "{steps}"
    );
}

/// The backfill's state machine, as the SAM transform emits it: the shards fan out at once
/// (one invocation each, at most `BackfillShards` at a time), throttled invocations are retried,
/// a round that leaves the backfill complete ends it, any other waits and goes again, and an
/// execution ends after `BackfillRounds` rounds. Every transition leads to a state, and every
/// state is reached.
#[test]
fn the_backfill_state_machine_fans_out_the_shards_and_loops_until_complete() {
    let dir = tempfile::tempdir().expect("dir");
    let transformed = dir.path().join("transformed.json");
    app_version_writing(
        &repo_root().join("template.yaml"),
        "code-1",
        &serde_json::json!({ "SchemaRevision": "836a014c0874", "BackfillShards": "4" }),
        Some(&transformed),
    );
    let t: Value =
        serde_json::from_str(&std::fs::read_to_string(&transformed).expect("read")).expect("JSON");
    let machine = &t["Resources"]["BackfillStateMachine"];
    assert_eq!(machine["Type"], "AWS::StepFunctions::StateMachine");
    let properties = &machine["Properties"];
    let substitutions = &properties["DefinitionSubstitutions"];
    assert_eq!(substitutions["BackfillArn"]["Fn::GetAtt"][0], "Backfill");
    // The definition with the stack's values put in, as Step Functions will read it.
    // SAM writes the definition as the lines of a JSON document, joined by CloudFormation.
    let lines = properties["DefinitionString"]["Fn::Join"][1]
        .as_array()
        .expect("the definition's lines");
    let mut text = lines
        .iter()
        .map(|line| line.as_str().expect("a line of text"))
        .collect::<Vec<_>>()
        .join("\n");
    for (name, value) in [
        (
            "BackfillArn",
            "arn:aws:lambda:us-east-1:123456789012:function:backfill",
        ),
        ("BackfillName", "users_display_name"),
        ("BackfillShards", "4"),
        ("BackfillRounds", "11"),
    ] {
        text = text.replace(&format!("${{{name}}}"), value);
    }
    assert!(!text.contains("${"), "every substitution is made: {text}");
    let definition: Value = serde_json::from_str(&text).expect("the definition is JSON");
    let states = definition["States"].as_object().expect("states");

    // The Step Functions schema (cfn-lint's E3601, which reads a definition given as an
    // object): the resolved definition passes, and a broken copy is caught.
    let asl_lint = |definition: &Value| {
        let file = dir.path().join("machine.json");
        let template = serde_json::json!({
            "AWSTemplateFormatVersion": "2010-09-09",
            "Resources": { "Machine": {
                "Type": "AWS::StepFunctions::StateMachine",
                "Properties": {
                    "RoleArn": "arn:aws:iam::123456789012:role/backfill",
                    "Definition": definition,
                },
            }},
        });
        std::fs::write(&file, template.to_string()).expect("write");
        let output = Command::new(venv_tool("cfn-lint"))
            .arg(&file)
            .output()
            .expect("run cfn-lint");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let (valid, findings) = asl_lint(&definition);
    assert!(valid, "the state machine's definition: {findings}");
    let mut broken = definition.clone();
    broken["States"]["Round"]["Type"] = Value::from("Mapp");
    let (valid, findings) = asl_lint(&broken);
    assert!(!valid && findings.contains("E3601"), "{findings}");

    let plan = &states["Plan"]["Parameters"];
    assert_eq!(plan["starts.$"], "States.ArrayRange(1, 4, 1)");
    assert_eq!(plan["concurrency.$"], "States.StringToJson('4')");
    let round = &states["Round"];
    assert_eq!(round["Type"], "Map");
    assert_eq!(round["MaxConcurrencyPath"], "$.concurrency");
    assert_eq!(round["ItemSelector"]["first.$"], "$$.Map.Item.Value");
    let invoke = &round["ItemProcessor"]["States"]["Invoke"];
    assert_eq!(invoke["Resource"], "arn:aws:states:::lambda:invoke");
    assert!(
        invoke["Parameters"]["FunctionName"]
            .as_str()
            .is_some_and(|f| f.ends_with(":function:backfill"))
    );
    let retried: Vec<&str> = invoke["Retry"][0]["ErrorEquals"]
        .as_array()
        .expect("retry")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        retried.contains(&"Lambda.TooManyRequestsException"),
        "{retried:?}"
    );
    assert!(invoke["Retry"][0]["MaxAttempts"].as_u64() > Some(1));

    // The loop: complete ends it; rounds left go again after a pause; none left ends it.
    let choice = &states["Complete?"];
    assert_eq!(choice["Choices"][0]["Variable"], "$.complete");
    assert_eq!(choice["Choices"][0]["Next"], "Complete");
    assert_eq!(choice["Choices"][1]["Variable"], "$.rounds_left");
    assert_eq!(choice["Default"], "Pause");
    assert_eq!(states["Pause"]["Next"], "Round");
    assert_eq!(states["Complete"]["Type"], "Succeed");
    assert_eq!(
        states["Outcomes"]["Parameters"]["outcomes.$"], "$.runs[*][*].outcome",
        "the outcomes of every invocation (each returns its backfills' records)"
    );

    // Every transition leads somewhere, and every state is reached from the start.
    let mut reached = std::collections::BTreeSet::new();
    let mut next = vec![definition["StartAt"].as_str().expect("start").to_owned()];
    while let Some(name) = next.pop() {
        let state = states
            .get(&name)
            .unwrap_or_else(|| panic!("no state {name}"));
        if !reached.insert(name) {
            continue;
        }
        let targets = state["Choices"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| &c["Next"])
            .chain([&state["Next"], &state["Default"]]);
        next.extend(targets.filter_map(Value::as_str).map(str::to_owned));
    }
    assert_eq!(reached.len(), states.len(), "{reached:?}");

    // The state machine may invoke the backfill function, and nothing else.
    let role = machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]
        .as_str()
        .expect("role");
    let policies = t["Resources"][role]["Properties"]["Policies"].to_string();
    assert!(policies.contains("lambda:InvokeFunction"), "{policies}");
    assert!(policies.contains("Backfill"), "{policies}");
}

/// The release workflow: wheels for every platform PyPI users run and the sdist, published by
/// trusted publishing; the functions zipped for both architectures with their SHA-256; the CLI
/// built once per platform (by maturin), never by cargo elsewhere.
#[test]
fn the_release_workflow_builds_each_artifact_once_and_publishes_without_a_token() {
    let text =
        std::fs::read_to_string(repo_root().join("infra/github/release.yml")).expect("release.yml");
    let release: Value = serde_saphyr::from_str(&text).expect("YAML");
    assert!(release["on"]["push"]["tags"].is_array(), "on a tag");
    let jobs = &release["jobs"];
    let targets: Vec<&str> = jobs["wheels"]["strategy"]["matrix"]["include"]
        .as_array()
        .expect("the wheel matrix")
        .iter()
        .filter_map(|entry| entry["target"].as_str())
        .collect();
    for target in [
        "x86_64-unknown-linux-gnu",
        "aarch64-unknown-linux-gnu",
        "x86_64-unknown-linux-musl",
        "aarch64-unknown-linux-musl",
        "x86_64-apple-darwin",
        "aarch64-apple-darwin",
    ] {
        assert!(
            targets.contains(&target),
            "a wheel for {target}: {targets:?}"
        );
    }
    let steps = |job: &str| serde_json::to_string(&jobs[job]["steps"]).expect("steps");
    assert!(steps("wheels").contains("PyO3/maturin-action") && steps("wheels").contains("--strip"));
    assert!(steps("sdist").contains("\"command\":\"sdist\""));
    let lambdas = steps("lambdas");
    for function in [
        "pre-traffic-hook",
        "post-traffic-hook",
        "gate-monitor",
        "backfill",
    ] {
        assert!(lambdas.contains(function), "{function}");
    }
    assert!(lambdas.contains("sha256sum"));
    assert_eq!(jobs["pypi"]["environment"], "pypi");
    assert_eq!(jobs["pypi"]["permissions"]["id-token"], "write");
    assert!(steps("pypi").contains("pypa/gh-action-pypi-publish"));
    assert!(!text.contains("password"), "trusted publishing: no token");
    // Nothing builds the CLI but maturin.
    for (job, _) in jobs.as_object().expect("jobs") {
        let steps = steps(job);
        assert!(
            !steps.contains("--bin shiftguard") && !steps.contains("cargo build"),
            "{job} builds the CLI again"
        );
    }
}

/// The workflows a user copies install shiftguard's wheel (a pinned version); none builds it.
#[test]
fn the_copied_workflows_install_the_cli_instead_of_building_it() {
    for file in ["lint.yml", "deploy.yml", "contract.yml"] {
        let text =
            std::fs::read_to_string(repo_root().join("infra/github").join(file)).expect(file);
        let workflow: Value = serde_saphyr::from_str(&text).expect("YAML");
        assert!(
            !text.contains("--bin shiftguard") && !text.contains("target/release/shiftguard"),
            "{file} builds shiftguard"
        );
        // Every job that runs shiftguard installs it first.
        for (job, body) in workflow["jobs"].as_object().expect("jobs") {
            let steps = serde_json::to_string(&body["steps"]).expect("steps");
            let Some(runs) = steps.find("shiftguard ") else {
                continue;
            };
            let installs = steps
                .find("shiftguard==$SHIFTGUARD_VERSION")
                .unwrap_or_else(|| {
                    panic!("{file}: job {job} runs shiftguard without installing it")
                });
            assert!(
                installs < runs,
                "{file}: job {job} runs shiftguard before installing it"
            );
            // A runner's system pip refuses installs (PEP 668): setup-python's pip comes first.
            let python = steps.find("actions/setup-python").unwrap_or(usize::MAX);
            assert!(
                python < installs,
                "{file}: job {job} installs without setup-python"
            );
        }
    }
}
