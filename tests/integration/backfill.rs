//! `shiftguard backfill` against real PostgreSQL, MariaDB and SQLite: killed with -9 and resumed,
//! raced by a second runner, fed new pending rows by an "old app", throttled, and refused on bad
//! input without writing anything.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{
    ALL_KINDS, Kind, Run, TestDatabase, dynamodb, dynamodb_table, with_aws_emulator,
};

pub(crate) const NAME: &str = "users_display_name";

/// A users table with `rows` rows, every one pending (display_name NULL).
async fn users_table(db: &TestDatabase, rows: u64) {
    db.execute(
        "CREATE TABLE users (id BIGINT NOT NULL PRIMARY KEY, full_name VARCHAR(200), email VARCHAR(320), display_name VARCHAR(200))",
    )
    .await;
    insert_users(db, 1, rows).await;
}

/// Inserts pending users with ids `from..from+count`, as the old app would (no display_name).
async fn insert_users(db: &TestDatabase, from: u64, count: u64) {
    let to = from + count - 1;
    let sql = match db.kind {
        Kind::Postgres => format!(
            "INSERT INTO users (id, full_name, email) SELECT g, 'User ' || g, 'u' || g || '@example.com' FROM generate_series({from}, {to}) g"
        ),
        // MariaDB's Sequence engine (recursive CTEs stop at 1,000 iterations by default).
        Kind::MariaDb => format!(
            "INSERT INTO users (id, full_name, email) SELECT seq, CONCAT('User ', seq), CONCAT('u', seq, '@example.com') FROM seq_{from}_to_{to}"
        ),
        Kind::Sqlite => format!(
            "INSERT INTO users (id, full_name, email) WITH RECURSIVE seq(n) AS (SELECT {from} UNION ALL SELECT n + 1 FROM seq WHERE n < {to}) SELECT n, 'User ' || n, 'u' || n || '@example.com' FROM seq"
        ),
    };
    db.execute(&sql).await;
}

/// A config directory with shiftguard.toml: the users backfill with `tuning` lines added.
struct Config {
    dir: tempfile::TempDir,
}

impl Config {
    fn new(tuning: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("shiftguard.toml"),
            format!(
                "[[backfill]]\nname = \"{NAME}\"\ntable = \"users\"\nkey = \"id\"\npending = \"display_name IS NULL\"\nset = \"display_name = full_name\"\n{tuning}\n"
            ),
        )
        .expect("write config");
        Config { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("shiftguard.toml")
    }
}

pub(crate) fn backfill_command(config: &Path, url: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shiftguard"));
    command
        .arg("backfill")
        .args(args)
        .arg("--config")
        .arg(config)
        .env("DATABASE_URL", url);
    with_aws_emulator(&mut command);
    command
}

pub(crate) fn backfill(config: &Path, url: &str, args: &[&str]) -> Run {
    backfill_command(config, url, args)
        .output()
        .expect("run shiftguard backfill")
        .into()
}

/// Runs until a run reports complete (a pass ends `swept`; the next run verifies); returns the
/// runs made.
pub(crate) fn run_until_complete(config: &Path, url: &str) -> Vec<Run> {
    let mut runs = Vec::new();
    for _ in 0..4 {
        let run = backfill(config, url, &["run", NAME]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let complete = run.stderr.contains("complete: nothing is pending");
        runs.push(run);
        if complete {
            return runs;
        }
    }
    panic!(
        "not complete after 4 runs: {:?}",
        runs.last().map(|r| &r.stderr)
    );
}

pub(crate) fn spawn(config: &Path, url: &str, args: &[&str]) -> Child {
    backfill_command(config, url, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shiftguard backfill")
}

/// Rows still pending, rows done, and the checkpoint's (cursor, rows_updated, status).
struct Observed {
    pending: i64,
    done: i64,
    pending_at_or_below_cursor: i64,
    checkpoint: Option<(Option<i64>, i64, String)>,
}

async fn observe(db: &TestDatabase) -> Observed {
    let pending = db
        .scalar("SELECT count(*) FROM users WHERE display_name IS NULL")
        .await;
    let done = db
        .scalar("SELECT count(*) FROM users WHERE display_name IS NOT NULL")
        .await;
    let checkpoint = db.checkpoint(NAME).await;
    let cursor = checkpoint.as_ref().and_then(|c| c.0).unwrap_or(i64::MIN);
    let pending_at_or_below_cursor = db
        .scalar(&format!(
            "SELECT count(*) FROM users WHERE display_name IS NULL AND id <= {cursor}"
        ))
        .await;
    Observed {
        pending,
        done,
        pending_at_or_below_cursor,
        checkpoint,
    }
}

/// Polls `condition` every 20 ms for up to 20 s.
async fn wait_until<F, Fut>(mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition().await {
        assert!(Instant::now() < deadline, "condition not reached in 20 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A small deterministic generator, so a failing kill schedule can be replayed from its seed.
pub(crate) struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

async fn killed_and_resumed(kind: Kind) {
    let db = TestDatabase::create(kind).await;
    let rows = 60_000;
    users_table(&db, rows).await;
    let config =
        Config::new("batch_size = 300\nmax_batch_size = 500\ntarget_batch_ms = 10\npause_ms = 10");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7);
    let mut random = Lcg(seed);
    let url = db.url();
    let (mut kills, mut last_done) = (0, 0);
    for _ in 0..8 {
        let mut child = spawn(&config.path(), &url, &["run", NAME]);
        std::thread::sleep(Duration::from_millis(80 + random.next(400)));
        child.kill().expect("kill -9");
        let _ = child.wait();
        db.wait_until_alone().await;
        // Between kills: the checkpoint is never ahead of committed data, and counts agree.
        let seen = observe(&db).await;
        // A kill counts when it landed mid-pass: some rows done, some not.
        kills += usize::from(seen.done > 0 && seen.pending > 0 && seen.done > last_done);
        last_done = seen.done;
        if let Some((_, rows_updated, _)) = &seen.checkpoint {
            assert_eq!(
                *rows_updated, seen.done,
                "{kind:?} seed {seed}: checkpoint count = rows changed"
            );
            assert_eq!(
                seen.pending_at_or_below_cursor, 0,
                "{kind:?} seed {seed}: nothing pending behind the cursor"
            );
        }
    }
    assert!(
        kills >= 3,
        "{kind:?}: the schedule must interrupt runs ({kills} kills)"
    );

    let runs = run_until_complete(&config.path(), &url);
    assert!(
        runs.len() <= 2,
        "{kind:?}: one run to finish the pass, one to verify"
    );
    let seen = observe(&db).await;
    assert_eq!(seen.pending, 0);
    assert_eq!(seen.done, rows as i64);
    let (_, rows_updated, status) = seen.checkpoint.expect("checkpoint");
    assert_eq!(
        rows_updated, rows as i64,
        "{kind:?} seed {seed}: every row counted exactly once"
    );
    assert_eq!(status, "complete");
    let wrong = db
        .scalar("SELECT count(*) FROM users WHERE display_name IS NOT NULL AND display_name <> full_name")
        .await;
    assert_eq!(wrong, 0);
    db.drop_database().await;
}

#[tokio::test]
async fn kill_9_and_resume_on_postgres() {
    killed_and_resumed(Kind::Postgres).await;
}

#[tokio::test]
async fn kill_9_and_resume_on_mariadb() {
    killed_and_resumed(Kind::MariaDb).await;
}

#[tokio::test]
async fn kill_9_and_resume_on_sqlite() {
    killed_and_resumed(Kind::Sqlite).await;
}

#[tokio::test]
async fn two_runners_at_once_exactly_one_advances() {
    for kind in ALL_KINDS {
        let db = TestDatabase::create(kind).await;
        users_table(&db, 20_000).await;
        // The rate cap makes the first run last about 4 s whatever the machine.
        let config =
            Config::new("batch_size = 200\nmax_batch_size = 200\nmax_rows_per_second = 5000");
        let url = db.url();
        let first = spawn(&config.path(), &url, &["run", NAME]);
        // Race it as soon as it holds the backfill.
        wait_until(|| async { observe(&db).await.done > 0 }).await;
        let second = backfill(&config.path(), &url, &["run", NAME]);
        let first: Run = first.wait_with_output().expect("first runner").into();
        assert_eq!(first.code, 0, "{kind:?}: {}", first.stderr);
        assert_eq!(second.code, 75, "{kind:?}: {}", second.stderr);
        assert!(
            second.stderr.contains("skipped: another runner") && second.stderr.contains(':'),
            "{}",
            second.stderr
        );
        let seen = observe(&db).await;
        assert_eq!(seen.pending, 0);
        assert_eq!(seen.checkpoint.expect("checkpoint").1, 20_000);
        db.drop_database().await;
    }
}

#[tokio::test]
async fn old_writers_adding_pending_rows_are_swept() {
    for kind in ALL_KINDS {
        let db = TestDatabase::create(kind).await;
        users_table(&db, 20_000).await;
        let config = Config::new("batch_size = 500\nmax_batch_size = 500\npause_ms = 2");
        let url = db.url();
        let runner = spawn(&config.path(), &url, &["run", NAME]);
        // The old app keeps inserting rows without display_name, during the pass…
        let mut next_id = 20_001;
        let deadline = Instant::now() + Duration::from_millis(600);
        while Instant::now() < deadline {
            insert_users(&db, next_id, 50).await;
            next_id += 50;
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        let first: Run = runner.wait_with_output().expect("runner").into();
        assert_eq!(first.code, 0, "{kind:?}: {}", first.stderr);
        // …and after it: low and high keys, behind the finished cursor.
        db.execute("UPDATE users SET display_name = NULL WHERE id IN (5, 17)")
            .await;
        insert_users(&db, next_id, 10).await;
        let status = backfill(&config.path(), &url, &["status", NAME, "--json"]);
        let report: serde_json::Value = serde_json::from_str(&status.stdout).expect("status JSON");
        assert_eq!(
            report[0]["first_pending_key"], 5,
            "{kind:?}: {}",
            status.stdout
        );

        let pending_before = observe(&db).await.pending;
        assert!(pending_before >= 12);
        // The next run verifies, finds them, and sweeps again from the first pending key…
        let second = backfill(&config.path(), &url, &["run", NAME, "--json"]);
        assert_eq!(second.code, 0, "{kind:?}: {}", second.stderr);
        let summary: serde_json::Value = serde_json::from_str(&second.stdout).expect("run JSON");
        assert_eq!(summary["status"], "swept", "{kind:?}: {}", second.stdout);
        assert_eq!(
            summary["run"]["rows_updated"], pending_before,
            "{kind:?}: {}",
            second.stdout
        );
        assert!(
            second
                .stderr
                .contains("pending rows found again from key 5"),
            "{}",
            second.stderr
        );
        assert!(summary["checkpoint"]["passes"].as_u64().expect("passes") >= 2);
        // …and the one after finds nothing: complete.
        let third = backfill(&config.path(), &url, &["run", NAME]);
        assert!(
            third.stderr.contains("complete: nothing is pending"),
            "{}",
            third.stderr
        );
        let seen = observe(&db).await;
        assert_eq!(seen.pending, 0, "{kind:?}");
        let (_, rows_updated, _) = seen.checkpoint.expect("checkpoint");
        assert_eq!(
            rows_updated,
            seen.done + 2,
            "the two reset rows were updated twice"
        );
        db.drop_database().await;
    }
}

#[tokio::test]
async fn replica_lag_pauses_batches() {
    let db = TestDatabase::create(Kind::Postgres).await;
    users_table(&db, 5_000).await;
    db.execute("CREATE TABLE fake_lag (ms INTEGER NOT NULL)")
        .await;
    db.execute("INSERT INTO fake_lag VALUES (5000)").await;
    let config = Config::new(
        "replica_lag_query = \"SELECT max(ms) FROM fake_lag\"\nmax_replica_lag_ms = 1500",
    );
    let url = db.url();
    let run = backfill(&config.path(), &url, &["run", NAME, "--max-seconds", "2"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("throttled: replica lag 5000 ms > 1500 ms"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("stopped before the time limit"),
        "{}",
        run.stderr
    );
    assert_eq!(
        observe(&db).await.done,
        0,
        "no batch ran while the replica lagged"
    );

    db.execute("UPDATE fake_lag SET ms = 10").await;
    let run = backfill(&config.path(), &url, &["run", NAME]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(observe(&db).await.pending, 0);
    db.drop_database().await;
}

/// A held run: it stopped at its time limit, said why, and updated nothing.
async fn assert_held(db: &TestDatabase, run: &Run, why: &str) {
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains(why), "{why}: {}", run.stderr);
    assert!(
        run.stderr.contains("stopped before the time limit"),
        "{}",
        run.stderr
    );
    assert_eq!(observe(db).await.done, 0, "no batch ran while held");
}

#[tokio::test]
async fn a_throttle_query_holds_the_backfill_while_it_answers_above_its_max() {
    for kind in ALL_KINDS {
        let db = TestDatabase::create(kind).await;
        users_table(&db, 2_000).await;
        db.execute("CREATE TABLE strain (v INTEGER NOT NULL)").await;
        db.execute("INSERT INTO strain VALUES (7)").await;
        let config =
            Config::new("throttle_query = \"SELECT max(v) FROM strain\"\nthrottle_max = 5");
        let url = db.url();
        let run = backfill(
            &config.path(),
            &url,
            &["run", NAME, "--max-seconds", "2", "--emf"],
        );
        assert_held(&db, &run, "throttled: throttle_query 7 > 5").await;
        // Each hold is a ThrottleHolds metric with the signal as a dimension.
        let hold = run
            .stdout
            .lines()
            .find(|l| l.contains("\"ThrottleHolds\""))
            .unwrap_or_else(|| panic!("{kind:?}: no hold metric: {}", run.stdout));
        let hold: serde_json::Value = serde_json::from_str(hold).expect("EMF JSON");
        assert_eq!(hold["Signal"], "throttle_query");
        assert_eq!(hold["value"], 7.0);

        // No answer holds too.
        db.execute("DELETE FROM strain").await;
        let run = backfill(&config.path(), &url, &["run", NAME, "--max-seconds", "2"]);
        assert_held(&db, &run, "throttled: throttle_query unknown").await;
        if kind == Kind::Postgres {
            // The query runs read-only: one that writes is an error, not a number.
            db.execute("CREATE SEQUENCE strain_seq").await;
            let writes = Config::new("throttle_query = \"SELECT nextval('strain_seq')\"");
            let run = backfill(&writes.path(), &url, &["run", NAME]);
            assert_eq!(run.code, 2, "{}", run.stderr);
            assert!(
                run.stderr.contains("read-only transaction"),
                "{}",
                run.stderr
            );
        }
        db.execute("INSERT INTO strain VALUES (1)").await;
        run_until_complete(&config.path(), &url);
        assert_eq!(observe(&db).await.pending, 0, "{kind:?}");
        db.drop_database().await;
    }
}

#[tokio::test]
async fn a_vacuum_on_the_table_holds_the_backfill_on_postgresql() {
    let db = TestDatabase::create(Kind::Postgres).await;
    users_table(&db, 20_000).await;
    // Dead rows for a VACUUM to work through, slowly (a cost delay for its session only).
    db.execute("UPDATE users SET email = 'x'").await;
    let mut vacuum = Command::new("psql")
        .arg(db.url())
        .args(["-q", "-c", "VACUUM users"])
        .env(
            "PGOPTIONS",
            "-c vacuum_cost_delay=100 -c vacuum_cost_limit=1",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("psql");
    let started = Instant::now();
    let running = "SELECT count(*) FROM pg_stat_progress_vacuum WHERE datname = current_database() AND relid = 'users'::regclass";
    while db.scalar(running).await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the VACUUM did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // WAL archiving is read too (nothing waits here: archiving is off).
    let config = Config::new("hold_on_vacuum = true\nmax_archive_pending = 100");
    let url = db.url();
    let run = backfill(&config.path(), &url, &["run", NAME, "--max-seconds", "2"]);
    assert_held(&db, &run, "throttled: a VACUUM is running on the table").await;

    db.execute(&running.replacen("count(*)", "pg_cancel_backend(pid)", 1))
        .await;
    vacuum.wait().expect("psql ends");
    run_until_complete(&config.path(), &url);
    assert_eq!(observe(&db).await.pending, 0);

    // A role that cannot see autovacuum's workers is refused, not waved through.
    let role = format!("sg_blind_{}", std::process::id());
    db.execute(&format!("DROP ROLE IF EXISTS {role}")).await;
    db.execute(&format!("CREATE ROLE {role} LOGIN")).await;
    db.execute(&format!(
        "GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}"
    ))
    .await;
    db.execute(&format!("GRANT ALL ON SCHEMA public TO {role}"))
        .await;
    insert_users(&db, 30_001, 10).await;
    let blind = url.replacen("postgres@", &format!("{role}@"), 1);
    assert_ne!(
        blind, url,
        "the test database's URL names the postgres user"
    );
    let run = backfill(&config.path(), &blind, &["run", NAME]);
    db.execute(&format!("DROP OWNED BY {role}")).await;
    db.execute(&format!("DROP ROLE {role}")).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("hold_on_vacuum needs a role with pg_read_all_stats"),
        "{}",
        run.stderr
    );
    db.drop_database().await;
}

#[tokio::test]
async fn running_threads_hold_the_backfill_on_mariadb() {
    let db = TestDatabase::create(Kind::MariaDb).await;
    users_table(&db, 2_000).await;
    // Eight busy sessions (stopped below): Threads_running stays above 6 meanwhile.
    let sleep = "SELECT SLEEP(20) AS sg_sleeper";
    let mut sleepers: Vec<Child> = (0..8)
        .map(|_| {
            Command::new("mysql")
                .args([
                    "--protocol=tcp",
                    "-h",
                    "127.0.0.1",
                    "-u",
                    "root",
                    "-e",
                    sleep,
                ])
                .stdout(Stdio::null())
                .spawn()
                .expect("mysql")
        })
        .collect();
    let started = Instant::now();
    let busy =
        format!("SELECT count(*) FROM information_schema.PROCESSLIST WHERE INFO = '{sleep}'");
    while db.scalar(&busy).await < 8 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the sleepers did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let config = Config::new("max_threads_running = 6");
    let url = db.url();
    let run = backfill(&config.path(), &url, &["run", NAME, "--max-seconds", "2"]);
    assert_held(&db, &run, "throttled: threads_running").await;
    let ids = {
        use sqlx::Connection as _;
        let mut admin = sqlx::MySqlConnection::connect(&url).await.expect("connect");
        let ids: Vec<i64> = sqlx::query_scalar(&busy.replacen("count(*)", "CAST(ID AS SIGNED)", 1))
            .fetch_all(&mut admin)
            .await
            .expect("sleepers");
        ids
    };
    for id in ids {
        db.execute(&format!("KILL QUERY {id}")).await;
    }
    for sleeper in &mut sleepers {
        sleeper.wait().expect("mysql ends");
    }
    run_until_complete(&config.path(), &url);
    assert_eq!(observe(&db).await.pending, 0);
    // A PostgreSQL-only signal on MariaDB is refused, not ignored.
    let config = Config::new("hold_on_vacuum = true");
    let run = backfill(&config.path(), &url, &["run", NAME]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("hold_on_vacuum is for PostgreSQL"),
        "{}",
        run.stderr
    );
    db.drop_database().await;
}

/// Another session holds a lock on a row of the first batch for 3 s: the batch times out, is
/// retried with backoff, and the backfill completes once the lock is gone.
async fn held_row_lock(kind: Kind, lock_timeout_ms: u64, error_text: &str) {
    use sqlx::Connection as _;
    let db = TestDatabase::create(kind).await;
    users_table(&db, 2_000).await;
    let config = Config::new(&format!("lock_timeout_ms = {lock_timeout_ms}"));
    let url = db.url();
    let lock = "SELECT * FROM users WHERE id = 10 FOR UPDATE";
    let mut postgres = None;
    let mut mariadb = None;
    match kind {
        Kind::Postgres => {
            let mut c = sqlx::PgConnection::connect(&url).await.expect("connect");
            for sql in ["BEGIN", lock] {
                sqlx::raw_sql(sql).execute(&mut c).await.expect("lock row");
            }
            postgres = Some(c);
        }
        _ => {
            let mut c = sqlx::MySqlConnection::connect(&url).await.expect("connect");
            for sql in ["BEGIN", lock] {
                sqlx::raw_sql(sql).execute(&mut c).await.expect("lock row");
            }
            mariadb = Some(c);
        }
    }
    let runner = tokio::task::spawn_blocking({
        let path = config.path();
        move || backfill(&path, &url, &["run", NAME])
    });
    tokio::time::sleep(Duration::from_millis(3000)).await;
    if let Some(mut c) = postgres {
        sqlx::raw_sql("ROLLBACK")
            .execute(&mut c)
            .await
            .expect("release");
    }
    if let Some(mut c) = mariadb {
        sqlx::raw_sql("ROLLBACK")
            .execute(&mut c)
            .await
            .expect("release");
    }
    let run = runner.await.expect("runner");
    assert_eq!(run.code, 0, "{kind:?}: {}", run.stderr);
    assert!(run.stderr.contains("retry 1 in"), "{}", run.stderr);
    assert!(run.stderr.contains(error_text), "{}", run.stderr);
    assert_eq!(observe(&db).await.pending, 0);
    db.drop_database().await;
}

#[tokio::test]
async fn a_held_row_lock_times_out_and_is_retried() {
    held_row_lock(Kind::Postgres, 200, "lock timeout").await;
}

#[tokio::test]
async fn a_held_row_lock_times_out_and_is_retried_on_mariadb() {
    // MariaDB counts lock waits in whole seconds.
    held_row_lock(Kind::MariaDb, 1000, "Lock wait timeout").await;
}

#[tokio::test]
async fn operators_pause_resume_cancel_and_reset() {
    let db = TestDatabase::create(Kind::Postgres).await;
    users_table(&db, 30_000).await;
    let config = Config::new("batch_size = 200\nmax_batch_size = 200\nmax_rows_per_second = 5000");
    let url = db.url();
    let runner = spawn(&config.path(), &url, &["run", NAME]);
    wait_until(|| async { observe(&db).await.done > 0 }).await;
    let paused = backfill(&config.path(), &url, &["pause", NAME]);
    assert_eq!(
        paused.stdout.trim(),
        format!("backfill {NAME}: paused"),
        "{}",
        paused.stderr
    );
    let run: Run = runner.wait_with_output().expect("runner").into();
    assert_eq!(run.code, 0);
    assert!(
        run.stderr.contains("an operator changed it to paused"),
        "{}",
        run.stderr
    );
    let at_pause = observe(&db).await;
    assert!(at_pause.pending > 0);
    assert_eq!(
        at_pause.checkpoint.as_ref().expect("checkpoint").1,
        at_pause.done
    );

    let idle = backfill(&config.path(), &url, &["run", NAME]);
    assert!(
        idle.stderr.contains("nothing to do: it is paused"),
        "{}",
        idle.stderr
    );
    assert_eq!(observe(&db).await.done, at_pause.done);

    let resumed = backfill(&config.path(), &url, &["resume", NAME]);
    assert_eq!(resumed.stdout.trim(), format!("backfill {NAME}: running"));
    let finished = backfill(&config.path(), &url, &["run", NAME]);
    assert_eq!(finished.code, 0, "{}", finished.stderr);
    assert_eq!(observe(&db).await.pending, 0);

    let cancelled = backfill(&config.path(), &url, &["cancel", NAME]);
    assert_eq!(
        cancelled.stdout.trim(),
        format!("backfill {NAME}: cancelled")
    );
    let refused = backfill(&config.path(), &url, &["resume", NAME]);
    assert_eq!(refused.code, 2);
    assert!(
        refused
            .stderr
            .contains("cannot resume a backfill that is cancelled"),
        "{}",
        refused.stderr
    );

    let reset = backfill(&config.path(), &url, &["reset", NAME]);
    assert_eq!(
        reset.stdout.trim(),
        format!("backfill {NAME}: reset; the next run starts over")
    );
    assert_eq!(observe(&db).await.checkpoint, None);
    db.drop_database().await;
}

#[tokio::test]
async fn bad_input_is_refused_and_nothing_is_written() {
    for kind in ALL_KINDS {
        let db = TestDatabase::create(kind).await;
        db.execute(
            "CREATE TABLE no_key (id BIGINT NOT NULL, full_name VARCHAR(200), display_name VARCHAR(200))",
        )
        .await;
        db.execute("CREATE TABLE float_key (id DOUBLE PRECISION NOT NULL PRIMARY KEY, full_name VARCHAR(200), display_name VARCHAR(200))")
            .await;
        db.execute("CREATE TABLE nullable_key (id BIGINT UNIQUE, full_name VARCHAR(200), display_name VARCHAR(200))")
            .await;
        db.execute("CREATE TABLE users (id BIGINT NOT NULL PRIMARY KEY, full_name VARCHAR(200), display_name VARCHAR(200))")
            .await;
        db.execute("CREATE TABLE unindexed (id BIGINT NOT NULL PRIMARY KEY, tenant VARCHAR(20) NOT NULL, full_name VARCHAR(200), display_name VARCHAR(200))")
            .await;
        let url = db.url();
        let cases: &[(&str, &str, &str)] = &[
            ("ghosts", "\"id\"", "table ghosts does not exist"),
            ("users", "\"uid\"", "table users has no column uid"),
            ("no_key", "\"id\"", "key no_key.id is not unique"),
            ("nullable_key", "\"id\"", "key nullable_key.id can be NULL"),
            ("float_key", "\"id\"", "key float_key.id is of type double"),
            // Unique (the primary key is part of it) but no index leads with tenant.
            (
                "unindexed",
                "[\"tenant\", \"id\"]",
                "key unindexed.tenant, id has no usable index",
            ),
        ];
        for (table, key, expected) in cases {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("shiftguard.toml");
            std::fs::write(
                &path,
                format!("[[backfill]]\nname = \"b\"\ntable = \"{table}\"\nkey = {key}\npending = \"display_name IS NULL\"\nset = \"display_name = full_name\"\n"),
            )
            .expect("write");
            let run = backfill(&path, &url, &["run", "b"]);
            assert_eq!(run.code, 2, "{kind:?} {table}: {}", run.stderr);
            assert!(
                run.stderr.contains(expected),
                "{kind:?}: expected {expected:?} in {}",
                run.stderr
            );
            assert_eq!(run.stderr.lines().count(), 1, "one line: {}", run.stderr);
        }
        let bad_set = Config::new("");
        std::fs::write(
            bad_set.path(),
            "[[backfill]]\nname = \"b\"\ntable = \"users\"\nkey = \"id\"\npending = \"display_name IS NULL\"\nset = \"display_nam = full_name\"\n",
        )
        .expect("write");
        let run = backfill(&bad_set.path(), &url, &["run", "b"]);
        assert_eq!(run.code, 2);
        assert!(
            run.stderr.contains("`set` or `pending` is not valid here"),
            "{kind:?}: {}",
            run.stderr
        );

        assert!(
            !db.table_exists("shiftguard_backfill").await,
            "{kind:?}: no checkpoint table after refused runs"
        );

        // An empty table is swept at once, and complete on the next run.
        let empty = Config::new("");
        let runs = run_until_complete(&empty.path(), &url);
        assert_eq!(runs.len(), 2, "{kind:?}");
        assert!(
            runs[0].stderr.contains("swept: the pass is finished"),
            "{}",
            runs[0].stderr
        );
        db.drop_database().await;
    }

    // Numbers out of their range: named with the range, nothing written.
    for (line, expected) in [
        (
            "lease_ttl_ms = 18446744073709551615",
            "lease_ttl_ms = 18446744073709551615 is out of range: it must be between 1000 and 14400000",
        ),
        (
            "max_batch_size = 9200000000000000000",
            "max_batch_size = 9200000000000000000 is out of range: it must be between 1 and 1000000",
        ),
        (
            "statement_timeout_ms = 3600001",
            "statement_timeout_ms = 3600001 is out of range",
        ),
    ] {
        let config = Config::new(line);
        let run = backfill(&config.path(), "sqlite::memory:", &["run", NAME]);
        assert_eq!(run.code, 2, "{line}: {}", run.stderr);
        assert!(run.stderr.contains(expected), "{line}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    }

    let unguarded = Config::new("");
    std::fs::write(
        unguarded.path(),
        "[[backfill]]\nname = \"b\"\ntable = \"users\"\nkey = \"id\"\npending = \"true\"\nset = \"display_name = full_name\"\n",
    )
    .expect("write");
    let run = backfill(&unguarded.path(), "sqlite::memory:", &["run", "b"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("`pending` must select only the rows still to do"),
        "{}",
        run.stderr
    );

    let config = Config::new("");
    let run = backfill(
        &config.path(),
        "postgres://app:hunter2@127.0.0.1:1/app",
        &["run", NAME],
    );
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("cannot connect to postgres database app on 127.0.0.1:1"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("hunter2"));

    let run = backfill(&config.path(), "sqlite::memory:", &["run", "nope"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("no backfill named nope in the configuration (defined: users_display_name)"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn emf_lines_describe_every_batch() {
    let db = TestDatabase::create(Kind::Sqlite).await;
    users_table(&db, 3_000).await;
    let config = Config::new("batch_size = 1000\nmin_batch_size = 1000\nmax_batch_size = 1000");
    let run = backfill(&config.path(), &db.url(), &["run", NAME, "--emf"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("each stdout line is JSON"))
        .collect();
    let batches: Vec<&serde_json::Value> = lines.iter().filter(|l| l["event"] == "batch").collect();
    assert_eq!(batches.len(), 3);
    assert!(batches.iter().all(|b| b["RowsUpdated"] == 1000
        && b["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "shiftguard/backfill"));
    assert_eq!(batches[2]["cursor"], 3000);
    let summary = lines.last().expect("summary");
    assert_eq!(summary["event"], "run");
    assert_eq!(summary["RowsUpdated"], 3000);
}

/// The checkpoint item in DynamoDB: (cursor, rows_updated, status, lease_owner).
async fn dynamo_checkpoint(table: &str) -> Option<(Option<i64>, i64, String, Option<String>)> {
    use aws_sdk_dynamodb::types::AttributeValue;
    let item = dynamodb()
        .await
        .get_item()
        .table_name(table)
        .key("name", AttributeValue::S(NAME.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .expect("get_item")
        .item
        .clone()?;
    let number = |key: &str| {
        item.get(key)
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<i64>().ok())
    };
    let text = |key: &str| item.get(key).and_then(|v| v.as_s().ok()).cloned();
    Some((
        number("cursor"),
        number("rows_updated").unwrap_or(0),
        text("status").unwrap_or_default(),
        text("lease_owner"),
    ))
}

#[tokio::test]
async fn dynamodb_checkpoints_survive_kill_9_and_exclude_a_second_runner() {
    let db = TestDatabase::create(Kind::Postgres).await;
    let rows = 30_000;
    users_table(&db, rows).await;
    let table = dynamodb_table().await;
    let config = Config::new(
        "batch_size = 300\nmax_batch_size = 500\npause_ms = 10\nstatement_timeout_ms = 1000\nlease_ttl_ms = 3000",
    );
    // The store is chosen in the configuration.
    let text = std::fs::read_to_string(config.path()).expect("config");
    std::fs::write(
        config.path(),
        format!("[checkpoint]\nstore = \"dynamodb\"\ntable = \"{table}\"\n{text}"),
    )
    .expect("config");
    let url = db.url();

    let (mut kills, mut checked) = (0, 0);
    for pause in [400, 600, 800] {
        let mut child = spawn(&config.path(), &url, &["run", NAME]);
        std::thread::sleep(Duration::from_millis(pause));
        if child.try_wait().expect("try_wait").is_none() {
            child.kill().expect("kill -9");
            kills += 1;
        }
        let _ = child.wait();
        db.wait_until_alone().await;
        let seen = observe(&db).await;
        let Some((cursor, rows_updated, _, owner)) = dynamo_checkpoint(&table).await else {
            assert_eq!(seen.done, 0, "rows changed without a checkpoint");
            continue;
        };
        checked += 1;
        // Never ahead of committed data: everything at or below the cursor is done, and the
        // count trails the rows changed by at most one batch (500 rows) per kill so far.
        let cursor = cursor.unwrap_or(0);
        let behind = db
            .scalar(&format!(
                "SELECT count(*) FROM users WHERE display_name IS NULL AND id <= {cursor}"
            ))
            .await;
        assert_eq!(behind, 0);
        assert!(
            rows_updated <= seen.done && seen.done - rows_updated <= 500 * kills.max(1),
            "{rows_updated} vs {}",
            seen.done
        );
        // The killed runner's lease holds the backfill until it expires.
        if owner.is_some() {
            let blocked = backfill(&config.path(), &url, &["run", NAME]);
            assert_eq!(blocked.code, 75, "{}", blocked.stderr);
            assert!(
                blocked.stderr.contains("skipped: another runner"),
                "{}",
                blocked.stderr
            );
            // The TTL, and the allowance for clocks that disagree.
            std::thread::sleep(Duration::from_millis(
                3_100 + shiftguard_core::backfill::LEASE_CLOCK_SKEW_MS as u64,
            ));
        }
    }
    assert!(
        kills >= 2 && checked >= 2,
        "the schedule must interrupt runs ({kills} kills, {checked} checked)"
    );
    run_until_complete(&config.path(), &url);
    let seen = observe(&db).await;
    assert_eq!(seen.pending, 0);
    assert_eq!(seen.done, rows as i64);
    let (_, _, status, owner) = dynamo_checkpoint(&table).await.expect("checkpoint item");
    assert_eq!(status, "complete");
    assert_eq!(owner, None, "the lease is released at the end of a run");
    assert_eq!(
        observe(&db).await.checkpoint,
        None,
        "no SQL checkpoint table with the dynamodb store"
    );

    // Operator commands work on the DynamoDB item too.
    let cancelled = backfill(&config.path(), &url, &["cancel", NAME]);
    assert_eq!(
        cancelled.stdout.trim(),
        format!("backfill {NAME}: cancelled"),
        "{}",
        cancelled.stderr
    );
    db.drop_database().await;
}

#[tokio::test]
async fn a_missing_dynamodb_table_is_named_and_nothing_is_written() {
    let db = TestDatabase::create(Kind::Postgres).await;
    users_table(&db, 1_000).await;
    let config = Config::new("");
    let run = backfill(
        &config.path(),
        &db.url(),
        &["run", NAME, "--checkpoint", "dynamodb"],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("DynamoDB table shiftguard_backfill does not exist"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert_eq!(observe(&db).await.done, 0);
    db.drop_database().await;
}

#[tokio::test]
async fn a_mysql_replica_without_replication_holds_the_backfill() {
    let db = TestDatabase::create(Kind::MariaDb).await;
    users_table(&db, 1_000).await;
    let config = Config::new("replica_url_env = \"SHIFTGUARD_TEST_REPLICA_URL\"");
    // The "replica" is a server that replicates nothing: its status has no row, so the lag is
    // unknown and the backfill waits (fail closed) instead of outrunning a broken replica.
    let run: Run = backfill_command(
        &config.path(),
        &db.url(),
        &["run", NAME, "--max-seconds", "2"],
    )
    .env("SHIFTGUARD_TEST_REPLICA_URL", db.url())
    .output()
    .expect("run")
    .into();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("throttled: replica lag unknown (no replica status, or replication stopped)"),
        "{}",
        run.stderr
    );
    assert_eq!(observe(&db).await.done, 0);

    let unset = backfill(&config.path(), &db.url(), &["run", NAME]);
    assert_eq!(unset.code, 2);
    assert!(
        unset
            .stderr
            .contains("replica_url_env names SHIFTGUARD_TEST_REPLICA_URL, which is not set"),
        "{}",
        unset.stderr
    );
    db.drop_database().await;
}

#[tokio::test]
async fn replica_status_is_read_as_mysql_reports_it() {
    // MySQL and MariaDB report Seconds_Behind_Master/Source as UNSIGNED, and NULL when
    // replication is stopped: both must read right (a misread would stall every backfill).
    let db = TestDatabase::create(Kind::MariaDb).await;
    let url = shiftguard_sql::DatabaseUrl::parse(&db.url()).expect("url");
    let mut connection =
        shiftguard_sql::Connection::open(&url, shiftguard_sql::ConnectSettings::default())
            .await
            .expect("connect");
    let names = ["Seconds_Behind_Master", "Seconds_Behind_Source"];
    let lag = connection
        .fetch_row_named(
            "SELECT CAST(7 AS UNSIGNED) AS Seconds_Behind_Source",
            &names,
        )
        .await
        .expect("query");
    assert_eq!(lag, Some(7));
    let stopped = connection
        .fetch_row_named("SELECT NULL AS Seconds_Behind_Master", &names)
        .await
        .expect("query");
    assert_eq!(stopped, None);
    connection.close().await;
    db.drop_database().await;
}
