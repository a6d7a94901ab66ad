//! The database's view of a canary, on real PostgreSQL with `pg_stat_statements` and real
//! MariaDB with `performance_schema`: two app versions, their sessions tagged as the sample app
//! tags them (PostgreSQL's `application_name`; MariaDB's `@shiftguard_tag`), run query loads
//! against one database; the sampler attributes the statements to the versions and the gate
//! judges the target against the current version.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use shiftguard_core::release::gate::GateVerdict;
use shiftguard_core::release::load::{
    DatabaseLoad, LoadBudget, LoadSource, load_gates, session_tag,
};
use shiftguard_core::release::ports::SharedDatabase;
use shiftguard_sql::{ConnectSettings, DatabaseUrl, SqlDatabase};
use sqlx::mysql::MySqlConnection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};

use crate::support::{Kind, TestDatabase};

const FUNCTION: &str = "users-api";

/// A query by the primary key (an index lookup) and one by an unindexed column (a scan), on
/// a `users (id, full_name)` table like the example's (PostgreSQL's placeholders; MariaDB's are
/// `?`).
pub(crate) const BY_ID: &str = "SELECT full_name FROM users WHERE id = $1";
pub(crate) const BY_NAME: &str = "SELECT id FROM users WHERE full_name = $1";

/// A version's session, tagged: PostgreSQL's `application_name` at connect; on MariaDB the
/// user variable `@shiftguard_tag` right after (sqlx sends no connection attributes).
enum Session {
    Postgres(PgConnection),
    MariaDb(MySqlConnection),
}

impl Session {
    async fn open(url: &str, tag: &str) -> Session {
        if url.starts_with("mysql") {
            let mut connection = MySqlConnection::connect(url).await.expect("connect");
            sqlx::query("SET @shiftguard_tag = ?")
                .bind(tag)
                .execute(&mut connection)
                .await
                .expect("tag");
            return Session::MariaDb(connection);
        }
        let options: PgConnectOptions = url.parse().expect("url");
        let connection = options
            .application_name(tag)
            .connect()
            .await
            .expect("connect");
        Session::Postgres(connection)
    }

    /// Runs `query` (by id or by name) for user `n`.
    async fn call(&mut self, query: &str, n: i64) {
        let by_id = query == BY_ID;
        let name = format!("User {n}");
        match self {
            Session::Postgres(c) => {
                let query = sqlx::query(query);
                let query = if by_id {
                    query.bind(n)
                } else {
                    query.bind(name)
                };
                query.execute(c).await.map(drop)
            }
            Session::MariaDb(c) => {
                let sql = query.replace("$1", "?");
                let query = sqlx::query(&sql);
                let query = if by_id {
                    query.bind(n)
                } else {
                    query.bind(name)
                };
                query.execute(c).await.map(drop)
            }
        }
        .expect("query");
    }

    async fn close(self) {
        match self {
            Session::Postgres(c) => c.close().await,
            Session::MariaDb(c) => c.close().await,
        }
        .expect("close");
    }
}

/// Version `version` of `function` running `queries` in turn, in a loop on its own tagged
/// session until `stop`, with `pause` between calls; returns the calls made.
pub(crate) fn version_load(
    url: &str,
    function: &str,
    version: &str,
    queries: &'static [&'static str],
    pause: Duration,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<u64> {
    let lookup = |name: &str| match name {
        "AWS_LAMBDA_FUNCTION_NAME" => Some(function.to_owned()),
        "AWS_LAMBDA_FUNCTION_VERSION" => Some(version.to_owned()),
        _ => None,
    };
    // The sample app's tag is shiftguard's convention.
    let tag = sample_app::session_tag(lookup).expect("inside Lambda");
    assert_eq!(tag, session_tag(function, version));
    let url = url.to_owned();
    tokio::spawn(async move {
        let mut session = Session::open(&url, &tag).await;
        let mut calls = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let n = (calls % 50_000 + 1) as i64;
            session
                .call(queries[calls as usize % queries.len()], n)
                .await;
            calls += 1;
            tokio::time::sleep(pause).await;
        }
        session.close().await;
        calls
    })
}

/// Samples `target` (version 2) and `current` (version 1) while they run their loads.
async fn sampled(
    db: &TestDatabase,
    target: (&'static [&'static str], Duration),
    current: (&'static [&'static str], Duration),
) -> Vec<DatabaseLoad> {
    let stop = Arc::new(AtomicBool::new(false));
    let url = db.url();
    let loads = [
        version_load(&url, FUNCTION, "2", target.0, target.1, Arc::clone(&stop)),
        version_load(&url, FUNCTION, "1", current.0, current.1, Arc::clone(&stop)),
    ];
    tokio::time::sleep(Duration::from_millis(300)).await;
    let parsed = DatabaseUrl::parse(&url).expect("url");
    let database = SqlDatabase::new(&parsed, "alembic_version", ConnectSettings::default());
    let versions = ["2", "1"].map(|v| (v.to_owned(), session_tag(FUNCTION, v)));
    let sampled = database
        .database_load(&versions, Duration::from_secs(2), &[db.user()])
        .await
        .expect("sampled");
    database.close().await;
    stop.store(true, Ordering::Relaxed);
    for load in loads {
        assert!(load.await.expect("load") > 0);
    }
    sampled
}

fn verdicts(target: &DatabaseLoad, current: &DatabaseLoad) -> Vec<(String, String)> {
    let budget = LoadBudget {
        sample: Duration::from_secs(2),
        ..LoadBudget::default()
    };
    load_gates(target, current, &budget)
        .into_iter()
        .map(|g| {
            let verdict = match &g.verdict {
                GateVerdict::Pass => "pass".to_owned(),
                GateVerdict::Fail(reason) => format!("fail: {reason}"),
                GateVerdict::Inconclusive(reason) => format!("inconclusive: {reason}"),
            };
            (g.gate, verdict)
        })
        .collect()
}

/// A `users (id, full_name)` table of `rows` users named `User <id>`, analyzed; on PostgreSQL
/// with `pg_stat_statements` created in the database.
async fn users_table(db: &TestDatabase, rows: u64) {
    let (fill, analyze) = match db.kind {
        Kind::Postgres => {
            db.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                .await;
            (
                format!(
                    "INSERT INTO users SELECT g, 'User ' || g FROM generate_series(1, {rows}) g"
                ),
                "ANALYZE users",
            )
        }
        _ => (
            format!("INSERT INTO users SELECT seq, CONCAT('User ', seq) FROM seq_1_to_{rows}"),
            "ANALYZE TABLE users",
        ),
    };
    db.execute("CREATE TABLE users (id BIGINT PRIMARY KEY, full_name VARCHAR(64) NOT NULL)")
        .await;
    db.execute(&fill).await;
    db.execute(analyze).await;
}

/// The error of sampling version 2's load (the app's role: `db`'s user) through `url` for
/// `sample`: the sampler must refuse.
async fn sampling_error(db: &TestDatabase, url: &str, sample: Duration) -> String {
    let url = DatabaseUrl::parse(url).expect("url");
    let database = SqlDatabase::new(&url, "alembic_version", ConnectSettings::default());
    let versions = [("2".to_owned(), session_tag(FUNCTION, "2"))];
    let error = database
        .database_load(&versions, sample, &[db.user()])
        .await
        .expect_err("the sample cannot be taken");
    database.close().await;
    error.to_string()
}

#[tokio::test]
async fn the_database_gate_fails_the_version_that_scans_and_passes_alike_ones() {
    let db = TestDatabase::create(Kind::Postgres).await;
    users_table(&db, 50_000).await;
    let busy = Duration::from_millis(2);

    // Version 2 looks users up by name, which has no index: a scan per call.
    let scan = sampled(&db, (&[BY_NAME], busy), (&[BY_ID], busy)).await;
    let (target, current) = (&scan[0], &scan[1]);
    assert_eq!(
        (target.version.as_str(), current.version.as_str()),
        ("2", "1")
    );
    assert!(target.calls >= 50.0 && current.calls >= 50.0, "{scan:?}");
    assert_eq!((target.sessions, current.sessions), (1, 1), "{scan:?}");
    assert!(target.samples >= 10, "{scan:?}");
    let judged = verdicts(target, current);
    eprintln!("scan: {judged:?}");
    assert_eq!(judged.len(), 2, "{judged:?}");
    for (gate, verdict) in &judged {
        assert!(
            verdict.starts_with("fail: version 2's"),
            "{gate}: {verdict}"
        );
    }
    assert!(
        judged[1].1.contains("blocks per call"),
        "the scan shows in blocks: {judged:?}"
    );

    // Both by id: alike, both gates pass.
    let alike = sampled(&db, (&[BY_ID], busy), (&[BY_ID], busy)).await;
    let judged = verdicts(&alike[0], &alike[1]);
    assert!(
        judged.iter().all(|(_, v)| v == "pass"),
        "{judged:?} {alike:?}"
    );

    // Version 2 runs the lookup both run, and every fourth call the scan: the shared statement
    // counts for each version by its share of the samples, and the scan still shows in version
    // 2's blocks per call (its time per call may stay under the 1 ms floor on a cached table).
    let mixed = sampled(
        &db,
        (&[BY_ID, BY_ID, BY_ID, BY_NAME], busy),
        (&[BY_ID], busy),
    )
    .await;
    let judged = verdicts(&mixed[0], &mixed[1]);
    assert!(
        judged[1].0 == "database:blocks-per-call" && judged[1].1.starts_with("fail: version 2's"),
        "{judged:?} {mixed:?}"
    );
    let per_call = |load: &DatabaseLoad| load.ms_per_call().expect("calls");
    assert!(per_call(&mixed[0]) > 5.0 * per_call(&mixed[1]), "{mixed:?}");

    // Version 2 barely called in the sample: inconclusive, not a verdict.
    let thin = sampled(
        &db,
        (&[BY_NAME], Duration::from_millis(500)),
        (&[BY_ID], busy),
    )
    .await;
    let judged = verdicts(&thin[0], &thin[1]);
    assert_eq!(judged.len(), 1, "{judged:?}");
    assert_eq!(judged[0].0, "database:sample");
    assert!(
        judged[0].1.starts_with("inconclusive: ")
            && judged[0].1.contains("of version 2's statements"),
        "{judged:?}"
    );
    db.drop_database().await;
}

/// A gate role without `pg_read_all_stats` sees other roles' statements and sessions without
/// their details: an error naming the grant, not a sample of no load.
#[tokio::test]
async fn statistics_hidden_from_the_role_are_an_error_not_no_load() {
    let db = TestDatabase::create(Kind::Postgres).await;
    users_table(&db, 100).await;
    let role = format!("sg_viewer_{}", std::process::id());
    db.execute(&format!("DROP ROLE IF EXISTS {role}")).await;
    db.execute(&format!("CREATE ROLE {role} LOGIN")).await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = version_load(
        &db.url(),
        FUNCTION,
        "2",
        &[BY_ID],
        Duration::from_millis(5),
        Arc::clone(&stop),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let url = db.url().replacen("postgres@", &format!("{role}@"), 1);
    assert_ne!(url, db.url(), "the test database's URL names its user");
    let error = sampling_error(&db, &url, Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.expect("load");
    assert!(error.contains("GRANT pg_read_all_stats"), "{error}");
    db.execute(&format!("DROP ROLE IF EXISTS {role}")).await;
    db.drop_database().await;
}

#[tokio::test]
async fn sampling_fails_closed_without_pg_stat_statements_or_on_another_dialect() {
    // No extension in this database.
    let db = TestDatabase::create(Kind::Postgres).await;
    let error = sampling_error(&db, &db.url(), Duration::from_millis(200)).await;
    assert!(error.contains("cannot read pg_stat_statements"), "{error}");
    db.drop_database().await;
    let db = TestDatabase::create(Kind::Sqlite).await;
    let error = sampling_error(&db, &db.url(), Duration::from_millis(200)).await;
    assert!(error.contains("not SQLite"), "{error}");
    db.drop_database().await;
}

/// MariaDB counts each session's statements itself (`performance_schema`): the versions' loads
/// are exact, and the scan shows in rows examined per call.
#[tokio::test]
async fn on_mariadb_the_gate_fails_the_version_that_scans_by_its_rows_examined() {
    let db = TestDatabase::create(Kind::MariaDb).await;
    users_table(&db, 50_000).await;
    let busy = Duration::from_millis(2);

    let scan = sampled(&db, (&[BY_NAME], busy), (&[BY_ID], busy)).await;
    let (target, current) = (&scan[0], &scan[1]);
    assert_eq!(target.source, LoadSource::PerformanceSchema);
    assert!(target.calls >= 50.0 && current.calls >= 50.0, "{scan:?}");
    assert_eq!((target.sessions, current.sessions), (1, 1), "{scan:?}");
    // Exact, per session: every scan reads the whole table, every lookup at most one row. (A
    // session tagged only after the first snapshot, on a slow start, also counts the `SET` that
    // tagged it: one call that examines nothing.)
    let scans = target.rows_examined / 50_000.0;
    assert!(
        scans == target.calls || scans == target.calls - 1.0,
        "{scan:?}"
    );
    assert!(current.rows_examined <= current.calls, "{scan:?}");
    let judged = verdicts(target, current);
    eprintln!("mariadb scan: {judged:?}");
    assert_eq!(judged[1].0, "database:rows-examined-per-call", "{judged:?}");
    assert!(
        judged[1]
            .1
            .starts_with("fail: version 2's rows examined per call is 50000.00 rows"),
        "{judged:?}"
    );

    let alike = sampled(&db, (&[BY_ID], busy), (&[BY_ID], busy)).await;
    let judged = verdicts(&alike[0], &alike[1]);
    assert!(
        judged.len() == 2 && judged.iter().all(|(_, v)| v == "pass"),
        "{judged:?} {alike:?}"
    );

    let thin = sampled(
        &db,
        (&[BY_NAME], Duration::from_millis(500)),
        (&[BY_ID], busy),
    )
    .await;
    let judged = verdicts(&thin[0], &thin[1]);
    assert_eq!(judged[0].0, "database:sample", "{judged:?}");
    assert!(judged[0].1.starts_with("inconclusive: "), "{judged:?}");
    db.drop_database().await;
}

/// A MariaDB user that may not read `performance_schema`: an error naming the grant.
#[tokio::test]
async fn on_mariadb_a_user_without_performance_schema_gets_an_error_naming_the_grant() {
    let db = TestDatabase::create(Kind::MariaDb).await;
    let user = format!("sg_viewer_{}", std::process::id());
    db.execute(&format!("DROP USER IF EXISTS '{user}'@'%'"))
        .await;
    db.execute(&format!("CREATE USER '{user}'@'%'")).await;
    db.execute(&format!("GRANT SELECT ON `{}`.* TO '{user}'@'%'", db.name))
        .await;
    let url = db.url().replacen("root@", &format!("{user}@"), 1);
    assert_ne!(url, db.url(), "the test database's URL names its user");
    let error = sampling_error(&db, &url, Duration::from_millis(200)).await;
    assert!(
        error.contains("GRANT SELECT ON performance_schema.* and PROCESS"),
        "{error}"
    );
    db.execute(&format!("DROP USER IF EXISTS '{user}'@'%'"))
        .await;
    db.drop_database().await;
}

/// A tagged MariaDB session that is not instrumented would count no statements: an error, not
/// a version that costs nothing.
#[tokio::test]
async fn on_mariadb_an_uninstrumented_session_is_an_error_not_no_load() {
    let db = TestDatabase::create(Kind::MariaDb).await;
    let mut app = MySqlConnection::connect(&db.url()).await.expect("connect");
    sqlx::query("SET @shiftguard_tag = ?")
        .bind(session_tag(FUNCTION, "2"))
        .execute(&mut app)
        .await
        .expect("tag");
    sqlx::query(
        "UPDATE performance_schema.threads SET INSTRUMENTED = 'NO' \
         WHERE PROCESSLIST_ID = CONNECTION_ID()",
    )
    .execute(&mut app)
    .await
    .expect("instrumentation off");
    let error = sampling_error(&db, &db.url(), Duration::from_millis(300)).await;
    app.close().await.expect("close");
    assert!(
        error.contains("a tagged session is not instrumented"),
        "{error}"
    );
    db.drop_database().await;
}

/// A tag is a label any session may carry: only the app's own database users count. Another
/// user's session tagged as version 2, running cheap lookups (a `pgbench -f 'SELECT 1'` under
/// that name once made both gates pass for a version that scanned), steers nothing.
#[tokio::test]
async fn another_users_session_carrying_a_versions_tag_steers_nothing() {
    for kind in [Kind::Postgres, Kind::MariaDb] {
        let db = TestDatabase::create(kind).await;
        users_table(&db, 50_000).await;
        let intruder = format!("sg_intruder_{}", std::process::id());
        let url = match kind {
            Kind::Postgres => {
                db.execute(&format!("DROP ROLE IF EXISTS {intruder}")).await;
                db.execute(&format!("CREATE ROLE {intruder} LOGIN")).await;
                db.execute(&format!("GRANT SELECT ON users TO {intruder}"))
                    .await;
                db.url().replacen("postgres@", &format!("{intruder}@"), 1)
            }
            _ => {
                db.execute(&format!("DROP USER IF EXISTS '{intruder}'@'%'"))
                    .await;
                db.execute(&format!("CREATE USER '{intruder}'@'%'")).await;
                db.execute(&format!(
                    "GRANT SELECT ON `{}`.* TO '{intruder}'@'%'",
                    db.name
                ))
                .await;
                db.url().replacen("root@", &format!("{intruder}@"), 1)
            }
        };
        assert_ne!(url, db.url(), "the test database's URL names its user");
        let stop = Arc::new(AtomicBool::new(false));
        let flood = version_load(
            &url,
            FUNCTION,
            "2",
            &[BY_ID],
            Duration::from_millis(1),
            Arc::clone(&stop),
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let busy = Duration::from_millis(2);
        let scan = sampled(&db, (&[BY_NAME], busy), (&[BY_ID], busy)).await;
        stop.store(true, Ordering::Relaxed);
        assert!(flood.await.expect("flood") > 0);
        let (target, current) = (&scan[0], &scan[1]);
        assert_eq!(
            (target.sessions, current.sessions),
            (1, 1),
            "{kind:?}: {scan:?}"
        );
        let judged = verdicts(target, current);
        assert!(
            !judged.is_empty()
                && judged
                    .iter()
                    .all(|(_, v)| v.starts_with("fail: version 2's")),
            "{kind:?}: {judged:?} {scan:?}"
        );
        match kind {
            Kind::Postgres => {
                db.execute(&format!("DROP OWNED BY {intruder}")).await;
                db.execute(&format!("DROP ROLE {intruder}")).await;
            }
            _ => {
                db.execute(&format!("DROP USER IF EXISTS '{intruder}'@'%'"))
                    .await
            }
        }
        db.drop_database().await;
    }
}

/// On MariaDB a session's counters are its whole life's: one tagged only after the sample began
/// would bring everything it did before. Such a session is left out.
#[tokio::test]
async fn on_mariadb_a_session_tagged_during_the_sample_is_left_out() {
    let db = TestDatabase::create(Kind::MariaDb).await;
    users_table(&db, 50_000).await;
    let url = db.url();
    // An app session that scanned for a while untagged, then tags itself as version 1 while the
    // sample runs.
    let late = tokio::spawn({
        let url = url.clone();
        async move {
            let mut connection = MySqlConnection::connect(&url).await.expect("connect");
            for n in 0..20 {
                sqlx::query("SELECT id FROM users WHERE full_name = ?")
                    .bind(format!("User {n}"))
                    .execute(&mut connection)
                    .await
                    .expect("scan");
            }
            tokio::time::sleep(Duration::from_millis(1_200)).await;
            sqlx::query("SET @shiftguard_tag = ?")
                .bind(session_tag(FUNCTION, "1"))
                .execute(&mut connection)
                .await
                .expect("tag");
            tokio::time::sleep(Duration::from_millis(2_000)).await;
            connection.close().await.expect("close");
        }
    });
    let busy = Duration::from_millis(2);
    let loads = sampled(&db, (&[BY_ID], busy), (&[BY_ID], busy)).await;
    late.await.expect("late session");
    let current = &loads[1];
    assert_eq!(current.sessions, 1, "{loads:?}");
    assert!(current.rows_examined <= current.calls, "{loads:?}");
    db.drop_database().await;
}
