//! `shiftguard gate cutover|contract` and `shiftguard status`, the real binary against real
//! PostgreSQL (moved by the real Alembic CLI) and the AWS emulator. The one Lambda call the
//! emulator lacks, `ListProvisionedConcurrencyConfigs`, is answered by a local endpoint that
//! checks the wire request; every other call goes through it to the emulator.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use shiftguard_sql::measure::measure;
use shiftguard_sql::{ConnectSettings, Connection, DatabaseUrl};

use crate::endpoint::{LocalEndpoint, Request, Response};
use crate::support::example::*;
use crate::support::{
    Kind, Run, TestDatabase, alembic, aws_endpoint, example_project, json, publish_versions,
    sdk_config, unique_suffix,
};

const ACCOUNT_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function";

/// One release: a database, a function with versions, an alias, a configuration file, and the
/// local Lambda endpoint with the provisioned concurrency it reports.
pub(crate) struct Release {
    pub(crate) db: TestDatabase,
    pub(crate) lambda: LocalEndpoint,
    provisioned: Arc<Mutex<Vec<String>>>,
    pub(crate) moto: aws_config::SdkConfig,
    pub(crate) name: String,
    pub(crate) versions: Vec<String>,
    dir: tempfile::TempDir,
}

pub(crate) const BACKFILL: &str = r#"
[[backfill]]
name    = "users_display_name"
table   = "users"
key     = "id"
pending = "display_name IS NULL"
set     = "display_name = full_name"
"#;

/// `database_at`: the revision the database is upgraded to; `builds`: each version's stamp;
/// the alias `live` points at the last one.
pub(crate) async fn release(database_at: &str, builds: &[&str], config: &str) -> Release {
    let db = TestDatabase::create(Kind::Postgres).await;
    alembic(
        &example_project(),
        Some(&db.sqlalchemy_url()),
        &["upgrade", database_at],
    );
    let provisioned = Arc::new(Mutex::new(Vec::<String>::new()));
    let reported = Arc::clone(&provisioned);
    let lambda = LocalEndpoint::start(Arc::new(move |request: &Request, _: &[Request]| {
        let line = request.line();
        if !(line.starts_with("GET /2019-09-30/functions/")
            && line.contains("/provisioned-concurrency"))
        {
            return None;
        }
        let configs: Vec<serde_json::Value> = reported
            .lock()
            .expect("lock")
            .iter()
            .map(|arn| {
                serde_json::json!({
                    "FunctionArn": arn,
                    "RequestedProvisionedConcurrentExecutions": 5,
                    "AllocatedProvisionedConcurrentExecutions": 5,
                    "Status": "READY",
                })
            })
            .collect();
        Some(Response {
            status: "200 OK",
            content_type: "application/json",
            body: serde_json::json!({ "ProvisionedConcurrencyConfigs": configs }).to_string(),
        })
    }))
    .await;
    let moto = sdk_config(&aws_endpoint()).await;
    let name = format!("users-api-{}", unique_suffix());
    let envs: Vec<Vec<(&str, &str)>> = builds
        .iter()
        .map(|b| vec![("SHIFTGUARD_SCHEMA_REVISION", *b)])
        .collect();
    let envs: Vec<&[(&str, &str)]> = envs.iter().map(Vec::as_slice).collect();
    let versions = publish_versions(&moto, &name, &envs).await;
    let dir = tempfile::tempdir().expect("dir");
    let r = Release {
        db,
        lambda,
        provisioned,
        moto,
        name,
        versions,
        dir,
    };
    r.configure(config);
    let last = r.versions.last().expect("a version").clone();
    r.alias("live", &last, None).await;
    r
}

impl Release {
    pub(crate) fn config_path(&self) -> PathBuf {
        self.dir.path().join("shiftguard.toml")
    }

    fn configure(&self, text: &str) {
        std::fs::write(self.config_path(), text).expect("write config");
    }

    fn lambda_client(&self) -> aws_sdk_lambda::Client {
        aws_sdk_lambda::Client::new(&self.moto)
    }

    /// Creates or moves alias `alias` to `version`, with `additional` = (version, weight).
    pub(crate) async fn alias(&self, alias: &str, version: &str, additional: Option<(&str, f64)>) {
        use aws_sdk_lambda::types::AliasRoutingConfiguration;
        let routing = AliasRoutingConfiguration::builder()
            .set_additional_version_weights(
                additional.map(|(v, w)| [(v.to_owned(), w)].into_iter().collect()),
            )
            .build();
        let lambda = self.lambda_client();
        let updated = lambda
            .update_alias()
            .function_name(&self.name)
            .name(alias)
            .function_version(version)
            .routing_config(routing.clone())
            .send()
            .await;
        if updated.is_err() {
            lambda
                .create_alias()
                .function_name(&self.name)
                .name(alias)
                .function_version(version)
                .routing_config(routing)
                .send()
                .await
                .expect("create alias");
        }
    }

    /// Puts `Invocations`/`Errors` of `version` through alias `live`, `minutes_ago`.
    pub(crate) async fn invocations(
        &self,
        version: &str,
        invocations: f64,
        errors: f64,
        minutes_ago: u64,
    ) {
        use aws_sdk_cloudwatch::primitives::DateTime;
        use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
        let at = SystemTime::now() - Duration::from_secs(minutes_ago * 60);
        let datum = |name: &str, value: f64| {
            MetricDatum::builder()
                .metric_name(name)
                .value(value)
                .unit(StandardUnit::Count)
                .timestamp(DateTime::from(at))
                .dimensions(
                    Dimension::builder()
                        .name("FunctionName")
                        .value(&self.name)
                        .build(),
                )
                .dimensions(
                    Dimension::builder()
                        .name("Resource")
                        .value(format!("{}:live", self.name))
                        .build(),
                )
                .dimensions(
                    Dimension::builder()
                        .name("ExecutedVersion")
                        .value(version)
                        .build(),
                )
                .build()
        };
        aws_sdk_cloudwatch::Client::new(&self.moto)
            .put_metric_data()
            .namespace("AWS/Lambda")
            .metric_data(datum("Invocations", invocations))
            .metric_data(datum("Errors", errors))
            .send()
            .await
            .expect("put metric data");
    }

    /// Runs `shiftguard <args> --migrations … --config … --database-url … --function …
    /// --alias live` against the emulator, Lambda through the local endpoint.
    pub(crate) async fn shiftguard(&self, args: &[&str]) -> Run {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shiftguard"));
        command
            .args(args)
            .arg("--migrations")
            .arg(example_project())
            .arg("--config")
            .arg(self.config_path())
            .args(["--database-url", &self.db.url()])
            .args(["--function", &self.name, "--alias", "live"])
            .env_remove("DATABASE_URL")
            .env_remove("AWS_PROFILE")
            .env("AWS_ENDPOINT_URL", aws_endpoint())
            .env("AWS_ENDPOINT_URL_LAMBDA", &self.lambda.url)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_MAX_ATTEMPTS", "1");
        run(command).await
    }

    pub(crate) async fn contract(&self, extra: &[&str]) -> Run {
        let mut args = vec!["gate", "contract", "--revision", DROP_FULL_NAME];
        args.extend_from_slice(extra);
        self.shiftguard(&args).await
    }
}

/// Runs a command off the runtime's thread (the local endpoint is served on it).
async fn run(mut command: Command) -> Run {
    tokio::task::spawn_blocking(move || Run::from(command.output().expect("run shiftguard")))
        .await
        .expect("join")
}

fn expect(run: &Run, code: i32, contains: &[&str]) {
    assert_eq!(
        run.code, code,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    let text = format!("{}{}", run.stdout, run.stderr);
    for needle in contains {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
}

#[tokio::test]
async fn the_contract_gate_blocks_while_old_code_can_run_and_passes_once_nothing_old_is_left() {
    // The database has every expand (3f55); the contract 172e tolerates builds at or after 3f55.
    // Version 1 was built before the expands, version 2 after.
    let r = release(MERGE, &[CREATE_USERS, MERGE], BACKFILL).await;
    r.db.execute("INSERT INTO users (email, full_name, display_name) VALUES ('ada@example.com', 'Ada', 'Ada'), ('bob@example.com', 'Bob', 'Bob')")
        .await;
    let (v1, v2) = (r.versions[0].as_str(), r.versions[1].as_str());
    let name = r.name.as_str();

    // Mid-shift: version 1 is primary, version 2 takes 50%.
    r.alias("live", v1, Some((v2, 0.5))).await;
    let blocked = r.contract(&[]).await;
    expect(
        &blocked,
        1,
        &[
            &format!("FAIL          traffic:{name}:live"),
            "is still shifting traffic (primary 1, version 2 at 50%)",
            &format!("FAIL          live:{name}:{v1}"),
            "(live: alias live (primary))",
            "result: FAIL: blocked by",
        ],
    );
    eprintln!("--- contract gate, blocked:\n{}", blocked.stdout);
    // The same decision as a CI summary (names that differ per run written as the example's).
    let summary = r.contract(&["--format", "markdown"]).await;
    assert_eq!(summary.code, 1, "{}", summary.stderr);
    crate::support::assert_golden(
        "gate-contract.md",
        &summary
            .stdout
            .replace(name, "users-api")
            .replace(&r.db.name.replace('_', "\\_"), "app"),
    );

    // The shift is over; version 1 still ran 90 minutes ago: inside a 120-minute window, not
    // inside the default 60.
    r.alias("live", v2, None).await;
    r.invocations(v1, 7.0, 0.0, 90).await;
    let recent = r.contract(&["--observation-minutes", "120"]).await;
    expect(
        &recent,
        1,
        &[
            &format!("live:{name}:{v1}"),
            "invoked 7 times in the last 120 min",
        ],
    );

    // Another alias still pointing at version 1.
    r.alias("stable", v1, None).await;
    expect(
        &r.contract(&[]).await,
        1,
        &[
            &format!("live:{name}:{v1}"),
            "(live: alias stable (primary))",
        ],
    );
    r.lambda_client()
        .delete_alias()
        .function_name(name)
        .name("stable")
        .send()
        .await
        .expect("delete alias");

    // An event source mapping on version 1 (a DynamoDB stream).
    let stream = {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
            StreamSpecification, StreamViewType,
        };
        aws_sdk_dynamodb::Client::new(&r.moto)
            .create_table()
            .table_name(format!("{name}-events"))
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("id")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .expect("attribute"),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("id")
                    .key_type(KeyType::Hash)
                    .build()
                    .expect("key"),
            )
            .billing_mode(BillingMode::PayPerRequest)
            .stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(StreamViewType::NewImage)
                    .build()
                    .expect("stream"),
            )
            .send()
            .await
            .expect("create table")
            .table_description
            .and_then(|t| t.latest_stream_arn)
            .expect("stream arn")
    };
    let mapping = r
        .lambda_client()
        .create_event_source_mapping()
        .function_name(format!("{name}:{v1}"))
        .event_source_arn(stream)
        .starting_position(aws_sdk_lambda::types::EventSourcePosition::Latest)
        .send()
        .await
        .expect("create event source mapping")
        .uuid
        .expect("uuid");
    expect(
        &r.contract(&[]).await,
        1,
        &[
            &format!("live:{name}:{v1}"),
            &format!("event source mapping {mapping}"),
        ],
    );
    r.lambda_client()
        .delete_event_source_mapping()
        .uuid(&mapping)
        .send()
        .await
        .expect("delete event source mapping");

    // Provisioned concurrency on version 1, as ListProvisionedConcurrencyConfigs reports it.
    *r.provisioned.lock().expect("lock") = vec![format!("{ACCOUNT_ARN}:{name}:{v1}")];
    expect(
        &r.contract(&[]).await,
        1,
        &[
            &format!("live:{name}:{v1}"),
            &format!("provisioned concurrency on {v1}"),
        ],
    );
    let requests = r.lambda.answered();
    let request = requests.last().expect("a provisioned concurrency request");
    assert!(
        request.line().starts_with(&format!(
            "GET /2019-09-30/functions/{name}/provisioned-concurrency?List=ALL"
        )),
        "{}",
        request.head
    );
    let authorization = request.header("authorization").unwrap_or_default();
    assert!(
        authorization.starts_with("AWS4-HMAC-SHA256")
            && authorization.contains("/us-east-1/lambda/aws4_request"),
        "{authorization}"
    );
    r.provisioned.lock().expect("lock").clear();

    // A worker sharing the database, found by its tag, whose alias runs an old build.
    let tag = format!("users-db-{}", unique_suffix());
    let worker = format!("{name}-worker");
    let worker_versions = publish_versions(
        &r.moto,
        &worker,
        &[&[("SHIFTGUARD_SCHEMA_REVISION", CREATE_USERS)]],
    )
    .await;
    let lambda = r.lambda_client();
    let worker_arn = lambda
        .get_function()
        .function_name(&worker)
        .send()
        .await
        .expect("get worker")
        .configuration
        .and_then(|c| c.function_arn)
        .expect("arn");
    lambda
        .tag_resource()
        .resource(worker_arn)
        .tags("shiftguard:database", &tag)
        .send()
        .await
        .expect("tag worker");
    lambda
        .create_alias()
        .function_name(&worker)
        .name("live")
        .function_version(&worker_versions[0])
        .send()
        .await
        .expect("worker alias");
    r.configure(&format!("{BACKFILL}\n[gates]\ndatabase_tag = \"{tag}\"\n"));
    expect(
        &r.contract(&[]).await,
        1,
        &[&format!("live:{worker}:{}", worker_versions[0])],
    );
    // The worker is redeployed with a build that tolerates the contract.
    lambda
        .update_function_configuration()
        .function_name(&worker)
        .environment(
            aws_sdk_lambda::types::Environment::builder()
                .variables("SHIFTGUARD_SCHEMA_REVISION", MERGE)
                .build(),
        )
        .send()
        .await
        .expect("update worker");
    let worker_v2 = lambda
        .publish_version()
        .function_name(&worker)
        .send()
        .await
        .expect("publish worker")
        .version
        .expect("version");
    lambda
        .update_alias()
        .function_name(&worker)
        .name("live")
        .function_version(&worker_v2)
        .send()
        .await
        .expect("move worker alias");

    // Nothing old is left: the contract passes, and says what it checked.
    let passed = r.contract(&["--json"]).await;
    assert_eq!(passed.code, 0, "{}\n{}", passed.stdout, passed.stderr);
    let record = json(&passed);
    assert_eq!(record["result"], "pass");
    assert_eq!(record["revision"], DROP_FULL_NAME);
    let functions: Vec<&str> = record["functions"]
        .as_array()
        .expect("functions")
        .iter()
        .map(|f| f["function"].as_str().expect("name"))
        .collect();
    assert_eq!(functions, [name, worker.as_str()]);
    let passed = r.contract(&[]).await;
    expect(&passed, 0, &["result: PASS"]);
    eprintln!("--- contract gate, passed:\n{}", passed.stdout);
    r.db.drop_database().await;
}

const CUTOVER_CHECKS: &str = r#"
[[check]]
name  = "display-name-mismatches"
query = "SELECT count(*) FROM users WHERE display_name IS NOT NULL AND display_name <> full_name"
max   = 0

[[check]]
name            = "primary-error-rate"
metric          = "error_rate"
max             = 0.01
window_minutes  = 15
min_invocations = 100
"#;

#[tokio::test]
async fn the_cutover_gate_blocks_on_pending_rows_and_mismatches_and_shows_the_way_back() {
    let config = format!("{BACKFILL}{CUTOVER_CHECKS}");
    let r = release(ADD_DISPLAY_NAME, &[CREATE_USERS, ADD_DISPLAY_NAME], &config).await;
    let (v1, v2) = (r.versions[0].as_str(), r.versions[1].as_str());
    r.db.execute(
        "INSERT INTO users (email, full_name) SELECT 'user' || g || '@example.com', 'user ' || g FROM generate_series(1, 500) AS g",
    )
    .await;
    r.invocations(v2, 1_000.0, 2.0, 1).await;
    let name = r.name.as_str();

    expect(
        &r.shiftguard(&["gate", "cutover"]).await,
        1,
        &[
            "FAIL          backfill:users_display_name",
            "rows are pending from key 1",
        ],
    );

    // The backfill runs; then an old writer inserts a row the pass never saw.
    let backfill = r
        .shiftguard_backfill(&["backfill", "run", "users_display_name"])
        .await;
    assert_eq!(backfill.code, 0, "{}", backfill.stderr);
    r.db.execute("INSERT INTO users (email, full_name) VALUES ('late@example.com', 'late writer')")
        .await;
    expect(
        &r.shiftguard(&["gate", "cutover"]).await,
        1,
        &[
            "backfill:users_display_name",
            "rows are pending from key 501",
        ],
    );
    r.db.execute("UPDATE users SET display_name = full_name WHERE display_name IS NULL")
        .await;

    // The new representation disagrees with the old on one row.
    r.db.execute("UPDATE users SET display_name = 'someone else' WHERE id = 7")
        .await;
    expect(
        &r.shiftguard(&["gate", "cutover"]).await,
        1,
        &[
            "FAIL          check:display-name-mismatches",
            "value 1 (threshold <= 0)",
            "1 is above the maximum 0",
        ],
    );
    r.db.execute("UPDATE users SET display_name = full_name WHERE id = 7")
        .await;

    let passed = r.shiftguard(&["gate", "cutover"]).await;
    expect(
        &passed,
        0,
        &[
            "pass          check:display-name-mismatches",
            "value 0 (threshold <= 0)",
            "check:primary-error-rate",
            "value 0.002 (threshold <= 0.01)",
            &format!("rollback:{name}:{v1}"),
            "result: PASS",
        ],
    );
    eprintln!("--- cutover gate, passed:\n{}", passed.stdout);
    let record = json(&r.shiftguard(&["gate", "cutover", "--json"]).await);
    assert_eq!(record["result"], "pass");
    assert_eq!(record["rollback_version"]["version"], v1);
    let check = record["gates"]
        .as_array()
        .expect("gates")
        .iter()
        .find(|g| g["gate"] == "check:display-name-mismatches")
        .expect("the check");
    assert_eq!(check["value"], 0.0);
    assert_eq!(check["threshold"], "<= 0");

    // Too few invocations to judge the error rate: inconclusive, exit 3.
    r.configure(&config.replace("min_invocations = 100", "min_invocations = 5000"));
    expect(
        &r.shiftguard(&["gate", "cutover"]).await,
        3,
        &[
            "inconclusive  check:primary-error-rate",
            "1000 invocations of version 2 in 15 min, fewer than the 5000 needed to judge",
            "result: INCONCLUSIVE",
        ],
    );

    // `status` shows the release.
    let status = r.shiftguard(&["status"]).await;
    expect(
        &status,
        0,
        &[
            &format!("{name}:live"),
            &format!("database heads  {ADD_DISPLAY_NAME}"),
            &format!("{v2:<10}    100%  {ADD_DISPLAY_NAME:<14} yes"),
            "alias live (primary)",
            "users_display_name",
            "swept",
            "cutover: INCONCLUSIVE",
            &format!("contract to {DROP_FULL_NAME}: FAIL"),
        ],
    );
    eprintln!("--- status:\n{}", status.stdout);
    let status = json(&r.shiftguard(&["status", "--json"]).await);
    assert_eq!(status["primary"], v2);
    assert_eq!(status["database_heads"][0], ADD_DISPLAY_NAME);
    let backfill = &status["backfills"][0];
    assert_eq!(backfill["name"], "users_display_name");
    assert_eq!(backfill["percent"], 100.0);
    assert_eq!(backfill["first_pending_key"], serde_json::Value::Null);
    assert_eq!(status["cutover"]["result"], "inconclusive");
    assert_eq!(status["contract"]["result"], "fail");
    r.db.drop_database().await;
}

impl Release {
    /// `shiftguard backfill …` with this release's configuration and database.
    async fn shiftguard_backfill(&self, args: &[&str]) -> Run {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shiftguard"));
        command
            .args(args)
            .arg("--config")
            .arg(self.config_path())
            .args(["--database-url", &self.db.url()])
            .env_remove("DATABASE_URL");
        run(command).await
    }
}

#[tokio::test]
async fn a_gate_query_that_writes_is_refused_and_writes_nothing() {
    let r = release(
        ADD_DISPLAY_NAME,
        &[CREATE_USERS, ADD_DISPLAY_NAME],
        BACKFILL,
    )
    .await;
    r.db.execute("INSERT INTO users (email, full_name, display_name) VALUES ('ada@example.com', 'Ada', 'Ada')")
        .await;
    r.db.execute(
        "CREATE FUNCTION sneaky() RETURNS bigint LANGUAGE sql AS $$ UPDATE users SET display_name = 'x'; SELECT 1::bigint $$",
    )
    .await;
    let check = |query: &str| {
        format!("{BACKFILL}\n[[check]]\nname = \"sneaky\"\nquery = \"{query}\"\nmax = 1\n")
    };
    for (query, refusal) in [
        ("SELECT sneaky()", "in a read-only transaction"),
        (
            "WITH gone AS (DELETE FROM users RETURNING 1) SELECT count(*) FROM gone",
            "data-modifying statement",
        ),
        ("UPDATE users SET display_name = 'x'", "must be one SELECT"),
    ] {
        r.configure(&check(query));
        let refused = r.shiftguard(&["gate", "cutover"]).await;
        expect(&refused, 2, &[refusal]);
        let errors = refused.stderr.lines().filter(|l| l.starts_with("error: "));
        assert_eq!(errors.count(), 1, "{}", refused.stderr);
        assert_eq!(
            r.db.scalar("SELECT count(*) FROM users WHERE display_name = 'Ada'")
                .await,
            1,
            "{query} wrote"
        );
    }
    r.db.drop_database().await;
}

/// The measuring itself, on each dialect: the number, NULL as no value, and a write refused.
#[tokio::test]
async fn check_queries_measure_read_only_on_every_dialect() {
    for kind in [Kind::Postgres, Kind::MariaDb, Kind::Sqlite] {
        let db = TestDatabase::create(kind).await;
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)")
            .await;
        db.execute("INSERT INTO t (id, v) VALUES (1, 10), (2, NULL), (3, 5)")
            .await;
        let url = DatabaseUrl::parse(&db.url()).expect("url");
        let mut connection = Connection::open(&url, ConnectSettings::default())
            .await
            .expect("connect");
        let limit = Duration::from_secs(5);
        assert_eq!(
            measure(
                &mut connection,
                &url,
                "SELECT count(*) FROM t WHERE v IS NOT NULL",
                limit
            )
            .await
            .expect("count"),
            Some(2.0),
            "{kind:?}"
        );
        assert_eq!(
            measure(&mut connection, &url, "SELECT avg(v) FROM t;", limit)
                .await
                .expect("avg"),
            Some(7.5),
            "{kind:?}"
        );
        assert_eq!(
            measure(&mut connection, &url, "SELECT v FROM t WHERE id = 2", limit)
                .await
                .expect("null"),
            None,
            "{kind:?}"
        );
        for (bad, expected) in [
            ("SELECT v FROM t", "returned 3 rows"),
            ("SELECT 'many' AS word", "must return one number"),
        ] {
            let refused = measure(&mut connection, &url, bad, limit)
                .await
                .expect_err(bad)
                .to_string();
            let expected = match (kind, expected) {
                // PostgreSQL refuses the cast itself.
                (Kind::Postgres, "must return one number") => "invalid input syntax",
                _ => expected,
            };
            assert!(refused.contains(expected), "{kind:?}: {bad}: {refused}");
        }
        let two_columns = measure(&mut connection, &url, "SELECT 1, 2", limit).await;
        assert!(two_columns.is_err(), "{kind:?}: two columns must not pass");
        if kind == Kind::MariaDb {
            db.execute("CREATE FUNCTION sneaky() RETURNS INT MODIFIES SQL DATA BEGIN UPDATE t SET v = 0; RETURN 1; END")
                .await;
            let refused = measure(&mut connection, &url, "SELECT sneaky()", limit)
                .await
                .expect_err("a write in a read-only transaction");
            assert!(refused.to_string().contains("READ ONLY"), "{refused}");
        }
        connection.close().await;
        assert_eq!(db.scalar("SELECT count(*) FROM t WHERE v = 0").await, 0);
        db.drop_database().await;
    }
}

#[tokio::test]
async fn bad_input_to_the_gates_is_an_error_with_exit_2() {
    let r = release(
        ADD_DISPLAY_NAME,
        &[CREATE_USERS, ADD_DISPLAY_NAME],
        BACKFILL,
    )
    .await;
    // Unknown gate.
    let unknown = crate::support::shiftguard(&["gate", "rollout"]);
    assert_eq!(unknown.code, 2, "{}", unknown.stderr);
    assert!(
        unknown.stderr.contains("unrecognized subcommand 'rollout'"),
        "{}",
        unknown.stderr
    );

    // Malformed configuration: named, with the key at fault.
    r.configure("[gates]\nobservation_minutes = 60\nwindow = 3\n");
    expect(
        &r.shiftguard(&["gate", "cutover"]).await,
        2,
        &["shiftguard.toml", "unknown field `window`"],
    );
    r.configure(&format!(
        "{BACKFILL}\n[[check]]\nname = \"x\"\nquery = \"SELECT 1\"\n"
    ));
    expect(
        &r.shiftguard(&["gate", "contract", "--revision", DROP_FULL_NAME])
            .await,
        2,
        &["check x: give a threshold"],
    );
    r.configure(BACKFILL);

    // A revision the migrations lack.
    expect(
        &r.shiftguard(&["gate", "contract", "--revision", "ffffffffffff"])
            .await,
        2,
        &["contract revision ffffffffffff"],
    );

    // A missing function or alias: named, never "nothing live".
    let mut command = Command::new(env!("CARGO_BIN_EXE_shiftguard"));
    command
        .args([
            "gate",
            "contract",
            "--revision",
            DROP_FULL_NAME,
            "--migrations",
        ])
        .arg(example_project())
        .arg("--config")
        .arg(r.config_path())
        .args(["--database-url", &r.db.url()])
        .args([
            "--function",
            "no-such-function",
            "--alias",
            "live",
            "--json",
        ])
        .env("AWS_ENDPOINT_URL", aws_endpoint())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_MAX_ATTEMPTS", "1");
    let missing = run(command).await;
    expect(&missing, 2, &["GetAlias no-such-function:live"]);
    assert_eq!(json(&missing)["result"], "error");
    r.lambda_client()
        .delete_alias()
        .function_name(&r.name)
        .name("live")
        .send()
        .await
        .expect("delete alias");
    expect(
        &r.shiftguard(&["gate", "cutover"]).await,
        2,
        &[&format!("GetAlias {}:live", r.name)],
    );

    // An unreachable database, without its password.
    let mut command = Command::new(env!("CARGO_BIN_EXE_shiftguard"));
    command
        .args(["gate", "cutover", "--migrations"])
        .arg(example_project())
        .arg("--config")
        .arg(r.config_path())
        .args(["--database-url", "postgres://app:s3cret@127.0.0.1:1/app"])
        .args([
            "--function",
            &r.name,
            "--alias",
            "live",
            "--connect-timeout",
            "2",
        ])
        .env("AWS_ENDPOINT_URL", aws_endpoint())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1");
    r.alias("live", &r.versions[1], None).await;
    let down = run(command).await;
    expect(
        &down,
        2,
        &["cannot connect to postgres database app on 127.0.0.1:1"],
    );
    assert!(!down.stderr.contains("s3cret"), "{}", down.stderr);
    r.db.drop_database().await;
}
