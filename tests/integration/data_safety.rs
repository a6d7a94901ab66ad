//! The data-safety defects a review reproduced (issue 31), each pinned on a real database: SQL
//! fragments from the configuration that could comment out the statement around them, and a
//! health query ending in a comment.

use std::path::PathBuf;

use crate::backfill::backfill;
use crate::support::{ALL_KINDS, Kind, TestDatabase};

/// 5,000 users, the even half of them pending (display_name NULL), every one with touched = 0.
async fn half_pending(db: &TestDatabase) {
    db.execute(
        "CREATE TABLE users (id BIGINT NOT NULL PRIMARY KEY, full_name VARCHAR(200), display_name VARCHAR(200), touched INT NOT NULL DEFAULT 0)",
    )
    .await;
    let rows = match db.kind {
        Kind::Postgres => {
            "INSERT INTO users (id, full_name) SELECT g, 'User ' || g FROM generate_series(1, 5000) g"
        }
        Kind::MariaDb => {
            "INSERT INTO users (id, full_name) SELECT seq, CONCAT('User ', seq) FROM seq_1_to_5000"
        }
        Kind::Sqlite => {
            "INSERT INTO users (id, full_name) WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < 5000) SELECT n, 'User ' || n FROM seq"
        }
    };
    db.execute(rows).await;
    db.execute("UPDATE users SET display_name = full_name WHERE id % 2 = 0")
        .await;
}

/// A shiftguard.toml with one backfill of `users` (`pending` and `set` as given) and `extra` lines.
fn config(dir: &tempfile::TempDir, pending: &str, set: &str, extra: &str) -> PathBuf {
    let path = dir.path().join("shiftguard.toml");
    let toml = format!(
        "[[backfill]]\nname = \"copy\"\ntable = \"users\"\nkey = \"id\"\npending = {pending:?}\nset = {set:?}\n{extra}\n"
    );
    std::fs::write(&path, toml).expect("write config");
    path
}

/// Runs the backfill `copy` until a run reports it complete (at most 8 runs).
fn run_to_completion(path: &std::path::Path, url: &str) {
    for _ in 0..8 {
        let run = backfill(path, url, &["run", "copy"]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        if run.stderr.contains("complete: nothing is pending") {
            return;
        }
    }
    panic!("not complete after 8 runs");
}

/// The configuration at `path` with its checkpoints in the DynamoDB table `table`.
fn with_dynamodb(path: &std::path::Path, table: &str) {
    let text = std::fs::read_to_string(path).expect("config");
    std::fs::write(
        path,
        format!("[checkpoint]\nstore = \"dynamodb\"\ntable = \"{table}\"\n{text}"),
    )
    .expect("config");
}

/// PostgreSQL with [`half_pending`] users, and the backfill `copy` (`touched` counts its
/// updates, `extra` its tuning) with its checkpoints in a new DynamoDB table: the database, the
/// table, the configuration's directory (kept while it lives) and the configuration.
async fn on_dynamodb(extra: &str) -> (TestDatabase, String, tempfile::TempDir, PathBuf) {
    let db = TestDatabase::create(Kind::Postgres).await;
    half_pending(&db).await;
    let table = crate::support::dynamodb_table().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = config(
        &dir,
        "display_name IS NULL",
        "display_name = full_name, touched = touched + 1",
        extra,
    );
    with_dynamodb(&path, &table);
    (db, table, dir, path)
}

/// Waits (up to 30 s) until at least `rows` users match `condition`: a runner's batches
/// committed.
async fn wait_for(db: &TestDatabase, condition: &str, rows: i64) {
    let count = format!("SELECT count(*) FROM users WHERE {condition}");
    let started = std::time::Instant::now();
    while db.scalar(&count).await < rows {
        assert!(
            started.elapsed().as_secs() < 30,
            "no {rows} rows with {condition}: the runner never got going"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The reproduction: on MariaDB `#` starts a comment, and a `set` ending in one commented out
/// the key range and the `pending` guard (every row touched four times, 20,000 updates, exit 0).
/// Every fragment is now read as each dialect reads it: refused on every database, nothing
/// written.
#[tokio::test]
async fn a_fragment_that_would_comment_out_the_guard_is_refused_and_nothing_is_written() {
    let fragments = [
        (
            "display_name IS NULL",
            "display_name = full_name, touched = touched + 1 # copy",
            "`set` holds a comment (`#` starts one on MySQL/MariaDB)",
        ),
        (
            "display_name IS NULL # pending",
            "display_name = full_name, touched = touched + 1",
            "`pending` holds a comment (`#` starts one on MySQL/MariaDB)",
        ),
        // MySQL reads `\'` inside a string as a quote, so the string ends one quote later and
        // the `#` after it is a comment there (a tokenizer without escapes sees it quoted).
        (
            "display_name IS NULL",
            "display_name = 'a\\'', touched = touched + 1 # '",
            "`set` holds a comment (`#` starts one on MySQL/MariaDB)",
        ),
    ];
    for kind in ALL_KINDS {
        let db = TestDatabase::create(kind).await;
        half_pending(&db).await;
        for (pending, set, expected) in fragments {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = config(&dir, pending, set, "");
            let run = backfill(&path, &db.url(), &["run", "copy"]);
            assert_eq!(run.code, 2, "{kind:?} {set:?}: {}", run.stderr);
            assert!(
                run.stderr.contains(expected),
                "{kind:?}: expected {expected:?} in {}",
                run.stderr
            );
            assert_eq!(run.stderr.lines().count(), 1, "one line: {}", run.stderr);
        }
        assert_eq!(
            db.scalar("SELECT count(*) FROM users WHERE touched <> 0")
                .await,
            0,
            "{kind:?}: nothing written"
        );
        assert!(!db.table_exists("shiftguard_backfill").await, "{kind:?}");
        db.drop_database().await;
    }
}

/// Fragments are spliced inside parentheses and before a new line, so a good backfill touches
/// exactly the pending rows, once each (a `pending` with an OR stays inside the key range), and
/// a health query may end in a comment (the replica-lag query failed with "incomplete input"
/// for want of the new line).
#[tokio::test]
async fn every_pending_row_is_updated_once_and_health_queries_may_end_in_a_comment() {
    for kind in ALL_KINDS {
        let db = TestDatabase::create(kind).await;
        half_pending(&db).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = config(
            &dir,
            "display_name IS NULL OR display_name = 'x'",
            "display_name = full_name, touched = touched + 1",
            "batch_size = 300\nmin_batch_size = 100\nreplica_lag_query = \"SELECT 0 -- no replica here\"\nthrottle_query = \"SELECT 0 -- always calm\"\nthrottle_max = 1",
        );
        run_to_completion(&path, &db.url());
        for (rows, expected, what) in [
            ("touched = 1", 2500, "the pending rows"),
            ("touched <> 1 AND id % 2 = 1", 0, "every pending row once"),
            (
                "touched <> 0 AND id % 2 = 0",
                0,
                "no row that was not pending",
            ),
        ] {
            let found = db
                .scalar(&format!("SELECT count(*) FROM users WHERE {rows}"))
                .await;
            assert_eq!(found, expected, "{kind:?}: {what}");
        }
        db.drop_database().await;
    }
}

/// No password is printed, in any spelling of the URL: in the query string, with a `+driver`,
/// percent-encoded; in the human, JSON, JUnit and HTML output. (The password rode in
/// `?password=` through every output: the URL parser collected only `user:secret@`.)
#[tokio::test]
async fn no_password_is_printed_in_any_spelling_of_the_url() {
    use crate::support::{AlembicProject, alembic_binary, shiftguard};
    let project = AlembicProject::init();
    project.revision("items", &[]);
    project.set_upgrade(
        "items",
        "    op.create_table('items', sa.Column('id', sa.Integer(), primary_key=True))",
    );
    let db = TestDatabase::create(Kind::Postgres).await;
    let base = db.sqlalchemy_url();
    let (userinfo, rest) = base
        .split_once("://")
        .map(|(scheme, rest)| (scheme.to_owned(), rest.to_owned()))
        .expect("url");
    let (user, host) = rest.split_once('@').expect("a user in the test URL");
    // Trust authentication on 127.0.0.1: each password is carried and never needed.
    let spellings = [
        format!("{base}?password=secretQQ"),
        format!("{base}?sslmode=prefer&password=secret%51Q"),
        format!("{userinfo}://{user}:secretQQ@{host}"),
        format!("{userinfo}://{user}:secret%51Q@{host}?application_name=x"),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let report = dir.path().join("report.html");
    // Each output format once at least, each spelling once.
    let formats = ["human", "json", "junit", "json"];
    for (url, format) in spellings.iter().zip(formats) {
        db.execute("DROP TABLE IF EXISTS items").await;
        db.execute("DROP TABLE IF EXISTS alembic_version").await;
        // The app prints its URL, as a failing test's traceback may.
        let alembic = alembic_binary();
        let run = shiftguard(&[
            "rehearse",
            "--alembic",
            alembic.to_str().expect("utf-8"),
            "--migrations",
            project.path().to_str().expect("utf-8"),
            "--database-url",
            url,
            "--since",
            "items",
            "--no-empty-check",
            "--app",
            "items=echo \"connecting to $DATABASE_URL\"; exit 1",
            "--format",
            format,
            "--report",
            report.to_str().expect("utf-8"),
        ]);
        assert_eq!(
            run.code, 1,
            "{url} {format}: {}\n{}",
            run.stdout, run.stderr
        );
        // (A stock env.py hands the URL to ConfigParser, which cannot take a `%`: Alembic
        // fails first there, quoting the URL.)
        if !url.contains('%') {
            assert!(
                run.stdout.contains("connecting to"),
                "{format}: the app's output is shown: {}",
                run.stdout
            );
        }
        let html = std::fs::read_to_string(&report).expect("report");
        for (what, text) in [
            ("stdout", &run.stdout),
            ("stderr", &run.stderr),
            ("html", &html),
        ] {
            assert!(
                !text.contains("secret"),
                "{url} {format}: a password in {what}: {text}"
            );
        }
    }
    db.drop_database().await;
}

/// One run lock per database, whatever the host is called: a runner through `localhost` and one
/// through `127.0.0.1` (a Lambda on the endpoint beside a CLI through a tunnel), or a SQLite file
/// reached through a symlink, exclude each other. (The lock was named by host:port and by the
/// path as written, so both ran.)
#[tokio::test]
async fn one_run_lock_per_database_whatever_the_host_is_called() {
    use crate::backfill::spawn;
    use crate::support::Run;
    for kind in ALL_KINDS {
        let db = TestDatabase::create(kind).await;
        half_pending(&db).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = config(
            &dir,
            "display_name IS NULL",
            "display_name = full_name, touched = touched + 1",
            "batch_size = 100\nmin_batch_size = 100\nmax_batch_size = 100\nmax_rows_per_second = 2500",
        );
        let url = db.url();
        let other = match kind {
            Kind::Sqlite => {
                let file = url.strip_prefix("sqlite://").expect("sqlite url");
                let link = dir.path().join("alias.db");
                std::os::unix::fs::symlink(file, &link).expect("symlink");
                format!("sqlite://{}", link.display())
            }
            _ => url.replacen("127.0.0.1", "localhost", 1),
        };
        assert_ne!(other, url);
        let first = spawn(&path, &url, &["run", "copy"]);
        wait_for(&db, "touched > 0", 1).await;
        let second = backfill(&path, &other, &["run", "copy"]);
        let first: Run = first.wait_with_output().expect("first runner").into();
        assert_eq!(first.code, 0, "{kind:?}: {}", first.stderr);
        assert_eq!(second.code, 75, "{kind:?}: {}", second.stderr);
        assert!(
            second.stderr.contains("skipped: another runner"),
            "{}",
            second.stderr
        );
        assert_eq!(
            db.scalar("SELECT count(*) FROM users WHERE touched > 1")
                .await,
            0,
            "{kind:?}: no row updated twice"
        );
        db.drop_database().await;
    }
}

/// A failed shard can be resumed: the run tells the operator to run `backfill resume NAME`, and
/// that command reaches the shards (it was refused at the parent: "cannot resume a backfill that
/// is swept").
#[tokio::test]
async fn a_failed_shard_is_resumed_by_the_command_the_run_names() {
    let db = TestDatabase::create(Kind::Postgres).await;
    half_pending(&db).await;
    db.execute("ALTER TABLE users ADD COLUMN divisor INT NOT NULL DEFAULT 1")
        .await;
    // Row 4,001 cannot be fixed until an operator repairs it: division by zero.
    db.execute("UPDATE users SET divisor = 0 WHERE id = 4001")
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = config(
        &dir,
        "display_name IS NULL",
        "display_name = full_name, touched = touched + 1 / divisor",
        "shards = 4\nbatch_size = 100\nmin_batch_size = 100\nmax_retries = 0",
    );
    let url = db.url();
    let mut failed = None;
    for _ in 0..4 {
        let run = backfill(&path, &url, &["run", "copy"]);
        if run.code != 0 {
            failed = Some(run);
            break;
        }
    }
    let failed = failed.expect("the shard with row 4,001 fails");
    assert!(
        failed.stderr.contains("division by zero"),
        "{}",
        failed.stderr
    );
    let told = backfill(&path, &url, &["run", "copy"]);
    assert!(
        told.stderr.contains("then `shiftguard backfill resume`"),
        "the next run names the command: {}",
        told.stderr
    );
    db.execute("UPDATE users SET divisor = 1 WHERE id = 4001")
        .await;
    let resumed = backfill(&path, &url, &["resume", "copy"]);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    run_to_completion(&path, &url);
    assert_eq!(
        db.scalar("SELECT count(*) FROM users WHERE display_name IS NULL")
            .await,
        0
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM users WHERE touched > 1")
            .await,
        0,
        "no row updated twice"
    );
    db.drop_database().await;
}

/// A reset is final even for a runner frozen before it: the fence row is never deleted (a reset
/// raises its epoch), and a batch's fence write checks the epoch and the checkpoint's
/// generation. Runner A (DynamoDB store, lease 2 s) is frozen with SIGSTOP; an operator resets
/// the backfill with a new `set`; runner C works the new generation; A, thawed, must commit
/// nothing. (The reset deleted the fence row, C got epoch 1 again, A's batch with the old `set`
/// committed into the new generation, and the next runner adopted its cursor over rows still
/// pending.)
#[tokio::test]
async fn a_reset_is_final_even_for_a_runner_frozen_before_it() {
    use crate::backfill::spawn;
    use crate::support::dynamodb_table;
    let db = TestDatabase::create(Kind::Postgres).await;
    half_pending(&db).await;
    let table = dynamodb_table().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |set: &str| {
        let path = config(
            &dir,
            "display_name IS NULL",
            set,
            "batch_size = 100\nmin_batch_size = 100\nmax_batch_size = 100\nmax_rows_per_second = 500\nstatement_timeout_ms = 1000\nlease_ttl_ms = 2000",
        );
        with_dynamodb(&path, &table);
        path
    };
    let signal = |pid: u32, signal: &str| {
        let status = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal}");
    };
    let url = db.url();
    let path = write("display_name = 'old', touched = touched + 1");
    let a = spawn(&path, &url, &["run", "copy"]);
    wait_for(&db, "display_name = 'old'", 300).await;
    signal(a.id(), "-STOP");
    // Past the lease and the clock-skew allowance (2 s each).
    tokio::time::sleep(std::time::Duration::from_millis(4_500)).await;
    let frozen_at = db
        .scalar("SELECT coalesce(max(id), 0) FROM users WHERE display_name = 'old'")
        .await;

    let path = write("display_name = 'new', touched = touched + 1");
    let reset = backfill(&path, &url, &["reset", "copy"]);
    assert_eq!(reset.code, 0, "{}", reset.stderr);
    let c = backfill(&path, &url, &["run", "copy", "--max-seconds", "1"]);
    assert_eq!(c.code, 0, "{}", c.stderr);

    signal(a.id(), "-CONT");
    let a = a.wait_with_output().expect("runner A");
    let a_stderr = String::from_utf8_lossy(&a.stderr);
    assert_eq!(
        db.scalar("SELECT coalesce(max(id), 0) FROM users WHERE display_name = 'old'")
            .await,
        frozen_at,
        "runner A committed after the reset: {a_stderr}"
    );
    run_to_completion(&path, &url);
    assert_eq!(
        db.scalar("SELECT count(*) FROM users WHERE display_name IS NULL")
            .await,
        0,
        "nothing left pending"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM users WHERE touched > 1")
            .await,
        0,
        "no row updated twice"
    );
    db.drop_database().await;
}

/// The statuses of a backfill's checkpoint items in DynamoDB, by name (`reset` for a tombstone).
async fn dynamo_items(table: &str) -> std::collections::BTreeMap<String, String> {
    let output = crate::support::dynamodb()
        .await
        .scan()
        .table_name(table)
        .send()
        .await
        .expect("scan");
    output
        .items()
        .iter()
        .map(|item| {
            let text = |key: &str| item.get(key).and_then(|v| v.as_s().ok()).cloned();
            let status = match item.contains_key("reset_at") {
                true => "reset".to_owned(),
                false => text("status").unwrap_or_default(),
            };
            (text("name").unwrap_or_default(), status)
        })
        .collect()
}

/// An operator's reset of a backfill with shards takes effect on every shard or on none: while
/// a runner holds shard 3 nothing is reset (it deleted shards 1 and 2, then stopped at 3 with
/// exit 2); once it is free, every shard is.
#[tokio::test]
async fn a_reset_of_shards_changes_every_shard_or_none() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let (db, table, _dir, path) = on_dynamodb("shards = 4\nbatch_size = 100\nmin_batch_size = 100\nmax_batch_size = 100\nmax_rows_per_second = 1000\nstatement_timeout_ms = 1000\nlease_ttl_ms = 3000").await;
    let url = db.url();
    let run = backfill(&path, &url, &["run", "copy", "--max-seconds", "1"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let planned = dynamo_items(&table).await;
    assert_eq!(
        planned.len(),
        5,
        "the backfill and its 4 shards: {planned:?}"
    );

    // A runner elsewhere holds shard 3 (its lease a minute long).
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis()
        + 60_000;
    crate::support::dynamodb()
        .await
        .update_item()
        .table_name(&table)
        .key("name", AttributeValue::S("copy.shard3".to_owned()))
        .update_expression(
            "SET lease_owner = :owner, lease_expires_at = :until, version = version + :one",
        )
        .expression_attribute_values(":owner", AttributeValue::S("elsewhere:42".to_owned()))
        .expression_attribute_values(":until", AttributeValue::N(until.to_string()))
        .expression_attribute_values(":one", AttributeValue::N("1".to_owned()))
        .send()
        .await
        .expect("hold shard 3");
    let refused = backfill(&path, &url, &["reset", "copy"]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("copy.shard3") && refused.stderr.contains("elsewhere:42"),
        "{}",
        refused.stderr
    );
    assert_eq!(dynamo_items(&table).await, planned, "nothing was reset");
    let status = backfill(&path, &url, &["status", "copy", "--json"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    let report = crate::support::json(&status);
    let report = if report.is_array() {
        report[0].clone()
    } else {
        report
    };
    assert_eq!(
        report["shards"].as_array().map(Vec::len),
        Some(4),
        "{report}"
    );

    // Free again: every shard is reset, and the next runs start over and complete.
    crate::support::dynamodb()
        .await
        .update_item()
        .table_name(&table)
        .key("name", AttributeValue::S("copy.shard3".to_owned()))
        .update_expression("REMOVE lease_owner, lease_expires_at")
        .send()
        .await
        .expect("free shard 3");
    let reset = backfill(&path, &url, &["reset", "copy"]);
    assert_eq!(reset.code, 0, "{}", reset.stderr);
    assert!(
        dynamo_items(&table).await.values().all(|s| s == "reset"),
        "{:?}",
        dynamo_items(&table).await
    );
    run_to_completion(&path, &url);
    assert_eq!(
        db.scalar("SELECT count(*) FROM users WHERE display_name IS NULL")
            .await,
        0
    );
    db.drop_database().await;
}

/// A lease renewal that DynamoDB throttles (past the SDK's own three attempts) is retried
/// within the lease's time: the run goes on and completes. (It ended the run as an error, and
/// the backfill Lambda told a "Backfill Failed" notice.)
#[tokio::test]
async fn a_throttled_lease_renewal_is_retried_within_the_lease() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use crate::endpoint::{LocalEndpoint, Response};
    use crate::support::Run;
    let (db, _, _dir, path) = on_dynamodb("throttle_query = \"SELECT max(v) FROM strain\"\nthrottle_max = 5\nstatement_timeout_ms = 1000\nlease_ttl_ms = 6000").await;
    db.execute("CREATE TABLE strain (v INTEGER NOT NULL)").await;
    db.execute("INSERT INTO strain VALUES (7)").await;
    // Once armed, the next three PutItem calls (one SDK call and its two retries) are throttled.
    let armed = Arc::new(AtomicBool::new(false));
    let endpoint = LocalEndpoint::start(Arc::new({
        let armed = Arc::clone(&armed);
        move |request, earlier| {
            let put =
                request.header("x-amz-target").as_deref() == Some("DynamoDB_20120810.PutItem");
            (put && armed.load(Ordering::SeqCst) && earlier.len() < 3).then(|| Response {
                status: "400 Bad Request",
                content_type: "application/x-amz-json-1.0",
                body: serde_json::json!({
                    "__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException",
                    "message": "Rate of requests exceeds the allowed throughput."
                })
                .to_string(),
            })
        }
    }))
    .await;
    let mut command = crate::backfill::backfill_command(
        &path,
        &db.url(),
        &["run", "copy", "--max-seconds", "60"],
    );
    command.env("AWS_ENDPOINT_URL_DYNAMODB", &endpoint.url);
    let runner = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // Held by the throttle query, the run renews its lease every 2 s: throttle the next one.
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    armed.store(true, Ordering::SeqCst);
    let started = std::time::Instant::now();
    while endpoint.answered().len() < 3 {
        assert!(started.elapsed().as_secs() < 30, "no renewal was throttled");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    db.execute("UPDATE strain SET v = 1").await;
    // (Waited for off the runtime: the endpoint serves the runner's calls on it.)
    let run: Run = tokio::task::spawn_blocking(move || runner.wait_with_output())
        .await
        .expect("join")
        .expect("runner")
        .into();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("swept"), "{}", run.stderr);
    assert_eq!(
        db.scalar("SELECT count(*) FROM users WHERE display_name IS NULL")
            .await,
        0
    );
    db.drop_database().await;
}

/// A long wait between batches (here the rate cap: 100 rows at 10 rows/s, 10 s) keeps the lease:
/// the runner renews it while it waits, so a second runner 5 s in is turned away. (The wait was
/// one sleep: the lease, 2 s and 2 s for clocks, ran out in it and the second runner took over.)
#[tokio::test]
async fn a_long_wait_between_batches_keeps_the_lease() {
    use crate::backfill::spawn;
    let (db, _, _dir, path) = on_dynamodb("batch_size = 100\nmin_batch_size = 100\nmax_batch_size = 100\nmax_rows_per_second = 10\nstatement_timeout_ms = 1000\nlease_ttl_ms = 2000").await;
    let url = db.url();
    let mut first = spawn(&path, &url, &["run", "copy", "--max-seconds", "12"]);
    wait_for(&db, "touched > 0", 1).await;
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let second = backfill(&path, &url, &["run", "copy", "--max-seconds", "1"]);
    let _ = first.kill();
    let _ = first.wait();
    assert_eq!(
        second.code, 75,
        "the lease was still held: {}",
        second.stderr
    );
    db.drop_database().await;
}

/// A shard's checkpoint carries its key range wherever it is created: a runner of one shard
/// whose item is missing (reset under it, say) creates it as it takes the lease, and the range
/// must be there, or status, pause and reset pass the shard by. (Taking the lease created it
/// without one.)
#[tokio::test]
async fn a_shards_checkpoint_is_created_with_its_range() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use shiftguard_core::backfill::{BackfillConfig, Key, KeyRange, Tuning};
    use shiftguard_sql::backfill::{Checkpoints, LagSource, Runner};
    let (db, table, _dir, _) = on_dynamodb("").await;
    let url = shiftguard_sql::DatabaseUrl::parse(&db.url()).expect("url");
    let config = BackfillConfig {
        name: "copy.shard2".to_owned(),
        table: "users".to_owned(),
        key: vec!["id".to_owned()],
        pending: "display_name IS NULL".to_owned(),
        set: "display_name = full_name".to_owned(),
        tuning: Tuning::default(),
    };
    let store = shiftguard_aws::DynamoCheckpoints::from_config(
        &crate::support::emulator_config().await,
        &table,
    );
    let range = KeyRange {
        after: Some(Key::int(1_000)),
        until: Some(Key::int(2_000)),
    };
    let runner = Runner {
        url: &url,
        config: &config,
        checkpoints: Checkpoints::External(&store),
        owner: "test:1".to_owned(),
        lag: LagSource::None,
        connect_timeout: std::time::Duration::from_secs(5),
        range: range.clone(),
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    runner.run(deadline, &mut |_| {}).await.expect("ran");
    let item = crate::support::dynamodb()
        .await
        .get_item()
        .table_name(&table)
        .key("name", AttributeValue::S(config.name.clone()))
        .consistent_read(true)
        .send()
        .await
        .expect("get_item")
        .item
        .expect("the shard's checkpoint");
    assert_eq!(
        item.get("key_range").and_then(|v| v.as_s().ok()),
        Some(&range.to_json().to_string()),
        "{item:?}"
    );
    // It walked its range only.
    assert_eq!(
        db.scalar("SELECT count(*) FROM users WHERE display_name IS NULL AND id % 2 = 0 OR display_name IS NOT NULL AND id % 2 = 1 AND (id <= 1000 OR id > 2000)")
            .await,
        0
    );
    db.drop_database().await;
}
