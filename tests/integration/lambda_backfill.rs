//! The backfill Lambda's handler against real PostgreSQL and the AWS emulator: the database URL
//! from Secrets Manager, checkpoints in DynamoDB, the invocation deadline honoured, completions,
//! failures and stalls told to SNS and EventBridge once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use backfill::config::FunctionConfig;
use backfill::{BackfillEvent, Deps, handle};

use crate::support::{Kind, NoticeSink, TestDatabase, dynamodb_table, emulator_config};

/// The function's dependencies on `db` with `config_path`, telling its news to a sink of its own.
async fn telling_deps(db: &TestDatabase, config_path: &str) -> (Deps, NoticeSink) {
    let (url, sink) = (db.url(), NoticeSink::create().await);
    let [topic, bus] = sink.env();
    let config = function_config(&[
        ("DATABASE_URL", &url),
        ("SHIFTGUARD_CONFIG", config_path),
        (topic.0, &topic.1),
        (bus.0, &bus.1),
    ]);
    let deps = Deps::build(&config, &emulator_config().await, |_| None)
        .await
        .expect("deps");
    (deps, sink)
}

async fn users(db: &TestDatabase, rows: u64) {
    db.execute("CREATE TABLE users (id BIGINT PRIMARY KEY, full_name TEXT, display_name TEXT)")
        .await;
    db.execute(&format!(
        "INSERT INTO users (id, full_name) SELECT g, 'User ' || g FROM generate_series(1, {rows}) g"
    ))
    .await;
}

fn config_file(dir: &std::path::Path, extra: &str) -> String {
    let path = dir.join("shiftguard.toml");
    std::fs::write(
        &path,
        format!(
            "{extra}\n[[backfill]]\nname = \"users_display_name\"\ntable = \"users\"\nkey = \"id\"\npending = \"display_name IS NULL\"\nset = \"display_name = full_name\"\nbatch_size = 200\nmax_batch_size = 200\nmax_rows_per_second = 2000\n"
        ),
    )
    .expect("write config");
    path.to_string_lossy().into_owned()
}

fn function_config(pairs: &[(&str, &str)]) -> FunctionConfig {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    FunctionConfig::from_lookup(|name| map.get(name).cloned()).expect("function config")
}

#[tokio::test]
async fn secret_url_dynamodb_checkpoints_and_the_deadline() {
    let db = TestDatabase::create(Kind::Postgres).await;
    users(&db, 4_000).await;
    let aws = emulator_config().await;
    let table = dynamodb_table().await;

    // The database URL is in Secrets Manager, as RDS writes it.
    let url = url::Url::parse(&db.url()).expect("url");
    let secret = serde_json::json!({
        "engine": "postgres",
        "host": url.host_str(),
        "port": url.port().unwrap_or(5432),
        "username": url.username(),
        "password": "",
        "dbname": url.path().trim_start_matches('/'),
    });
    let arn = aws_sdk_secretsmanager::Client::new(&aws)
        .create_secret()
        .name(format!("{table}-db"))
        .secret_string(secret.to_string())
        .send()
        .await
        .expect("create secret")
        .arn
        .expect("arn");

    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = config_file(dir.path(), "");
    let sink = NoticeSink::create().await;
    let [topic, bus] = sink.env();
    let config = function_config(&[
        ("DATABASE_SECRET_ARN", &arn),
        ("SHIFTGUARD_CONFIG", &config_path),
        ("SHIFTGUARD_CHECKPOINT", "dynamodb"),
        ("SHIFTGUARD_CHECKPOINT_TABLE", &table),
        (topic.0, &topic.1),
        (bus.0, &bus.1),
    ]);
    let deps = Deps::build(&config, &aws, |_| None).await.expect("deps");

    // A short invocation: stops before its deadline with a consistent checkpoint.
    let started = Instant::now();
    let records = handle(
        BackfillEvent::default(),
        Instant::now() + Duration::from_millis(700),
        &deps,
        "lambda:request-1",
    )
    .await
    .expect("first invocation");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].outcome, "deadline", "{records:?}");
    let done_first = db
        .scalar("SELECT count(*) FROM users WHERE display_name IS NOT NULL")
        .await;
    assert!(done_first > 0 && done_first < 4_000, "{done_first}");
    assert_eq!(records[0].rows_updated as i64, done_first);

    // Later invocations resume, sweep, then verify.
    for expected in ["swept", "complete"] {
        let records = handle(
            BackfillEvent {
                backfill: Some("users_display_name".into()),
                first: None,
            },
            Instant::now() + Duration::from_secs(30),
            &deps,
            "lambda:request-2",
        )
        .await
        .expect("invocation");
        assert_eq!(records[0].outcome, expected, "{records:?}");
    }
    assert_eq!(
        db.scalar("SELECT count(*) FROM users WHERE display_name IS NULL")
            .await,
        0
    );
    // Told once, when it completed (the runs before moved: nothing to tell).
    let (message, event) = sink.take_one().await;
    assert_eq!(
        message["Message"].as_str().and_then(|m| m.lines().next()),
        Some("Backfill users_display_name is complete: verified, no row is left to update.")
    );
    assert_eq!(event["detail-type"], "Backfill Completed");
    assert_eq!(event["detail"]["record"]["outcome"], "complete");

    // Scheduled without a name: a complete backfill is skipped.
    let records = handle(
        BackfillEvent::default(),
        Instant::now() + Duration::from_secs(30),
        &deps,
        "lambda:request-3",
    )
    .await
    .expect("scheduled invocation");
    assert_eq!(records[0].outcome, "skipped");
    sink.assert_quiet().await;

    let error = handle(
        BackfillEvent {
            backfill: Some("nope".into()),
            first: None,
        },
        Instant::now() + Duration::from_secs(30),
        &deps,
        "lambda:request-4",
    )
    .await
    .expect_err("unknown backfill");
    assert_eq!(
        error.to_string(),
        "no backfill named nope in the configuration"
    );
    db.drop_database().await;
}

#[tokio::test]
async fn a_failing_backfill_fails_the_invocation_with_its_error() {
    let db = TestDatabase::create(Kind::Postgres).await;
    users(&db, 100).await;
    // A CHECK constraint the update violates: a permanent error.
    db.execute("ALTER TABLE users ADD CONSTRAINT short_names CHECK (length(display_name) < 3)")
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = config_file(dir.path(), "");
    let (deps, sink) = telling_deps(&db, &config_path).await;
    let error = handle(
        BackfillEvent::default(),
        Instant::now() + Duration::from_secs(30),
        &deps,
        "lambda:r",
    )
    .await
    .expect_err("constraint violation");
    let (message, event) = sink.take_one().await;
    let message = message["Message"].as_str().expect("a message");
    assert!(
        message.starts_with("Backfill users_display_name failed in its scheduled run.\n\nerror: ")
            && message.contains("short_names"),
        "{message}"
    );
    assert_eq!(event["detail-type"], "Backfill Failed");
    // Still failed on the next schedule: an error again, but not news.
    handle(
        BackfillEvent::default(),
        Instant::now() + Duration::from_secs(30),
        &deps,
        "lambda:r2",
    )
    .await
    .expect_err("still failed");
    sink.assert_quiet().await;
    assert!(
        error
            .to_string()
            .contains("backfill users_display_name failed"),
        "{error}"
    );
    assert!(error.to_string().contains("short_names"), "{error}");
    let status = db
        .checkpoint("users_display_name")
        .await
        .expect("checkpoint")
        .2;
    assert_eq!(status, "failed");
    db.drop_database().await;
}

/// A throttle that holds the backfill for a whole run: told as a stall, once.
#[tokio::test]
async fn a_backfill_held_for_a_whole_run_is_told_as_stalled_once() {
    let db = TestDatabase::create(Kind::Postgres).await;
    users(&db, 100).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = config_file(dir.path(), "");
    // The [[backfill]] table is the file's last: these keys are its own.
    let mut config = std::fs::read_to_string(&config_path).expect("config");
    config.push_str("throttle_query = \"SELECT 100\"\nthrottle_max = 1\n");
    std::fs::write(&config_path, config).expect("write config");
    let (deps, sink) = telling_deps(&db, &config_path).await;
    for run in ["lambda:r1", "lambda:r2"] {
        let records = handle(
            BackfillEvent::default(),
            Instant::now() + Duration::from_millis(1_500),
            &deps,
            run,
        )
        .await
        .expect("held, not failed");
        assert_eq!(
            (records[0].outcome.as_str(), records[0].rows_updated),
            ("deadline", 0),
            "{records:?}"
        );
        if run == "lambda:r1" {
            let (message, event) = sink.take_one().await;
            let message = message["Message"].as_str().expect("a message");
            assert!(
                message.starts_with("Backfill users_display_name made no progress in a ")
                    && message.ends_with("held by: throttle_query 100 above 1"),
                "{message}"
            );
            assert_eq!(event["detail-type"], "Backfill Stalled");
        } else {
            sink.assert_quiet().await;
        }
    }
    db.drop_database().await;
}
