//! What sampling per-version database load costs the database, at 1,000 distinct statements
//! in `pg_stat_statements` (the monitor's own queries, timed from the client):
//!
//! ```sh
//! cargo run --release -p shiftguard-sql --example load_bench -- postgres://postgres@127.0.0.1/postgres
//! cargo run --release -p shiftguard-sql --example load_bench -- mysql://root@127.0.0.1/mysql
//! ```
//! It creates the database `shiftguard_load_bench` (dropped at the end), the extension in it,
//! and 1,000 distinct statements (`IN` lists of 1 to 1,000 keys, each a statement of its own in
//! PostgreSQL 15). Prints the client's time of two snapshots and one activity sample over 20
//! rounds, then the server's own mean time of each of the sampler's statements (as
//! `pg_stat_statements` counts them) and what a monitor run with a 5 s sample costs.
//!
//! MySQL/MariaDB: the sampler reads per-session counters, so what it costs follows the tagged
//! sessions, not the statements: 50 sessions (25 per version) run 1,000 distinct statements
//! between them, and the server's own time is the sampler's session's statement time in
//! `performance_schema` (MariaDB keeps no digests of prepared statements).

use std::time::{Duration, Instant};

use shiftguard_sql::load::sample_load;
use shiftguard_sql::{ConnectSettings, Connection, DatabaseUrl};
use sqlx::Connection as _;

const DATABASE: &str = "shiftguard_load_bench";

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1/postgres".to_owned());
    if url.starts_with("mysql") {
        return mysql(&url).await;
    }
    let mut admin = sqlx::PgConnection::connect(&url).await.expect("connect");
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {DATABASE}"))
        .execute(&mut admin)
        .await
        .expect("drop");
    sqlx::raw_sql(&format!("CREATE DATABASE {DATABASE}"))
        .execute(&mut admin)
        .await
        .expect("create");
    let bench_url = format!("{}/{DATABASE}", url.rsplit_once('/').expect("a path").0);
    let mut app = sqlx::PgConnection::connect(&bench_url)
        .await
        .expect("connect to the bench database");
    sqlx::raw_sql(
        "CREATE EXTENSION pg_stat_statements; \
         CREATE TABLE users (id BIGINT PRIMARY KEY); \
         INSERT INTO users SELECT generate_series(1, 1000)",
    )
    .execute(&mut app)
    .await
    .expect("set up");
    for n in 1..=1_000 {
        let keys: Vec<String> = (1..=n).map(|k| k.to_string()).collect();
        sqlx::query(&format!(
            "SELECT count(*) FROM users WHERE id IN ({})",
            keys.join(", ")
        ))
        .execute(&mut app)
        .await
        .expect("statement");
    }
    let parsed = DatabaseUrl::parse(&bench_url).expect("url");
    // The app's sessions are the bench's own user's.
    let roles = [url::Url::parse(&bench_url)
        .expect("url")
        .username()
        .to_owned()];
    let mut connection = Connection::open(&parsed, ConnectSettings::default())
        .await
        .expect("open");
    let statements: i64 = match &mut connection {
        Connection::Postgres(pg) => sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_statements WHERE dbid = \
             (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_one(pg)
        .await
        .expect("count"),
        _ => unreachable!("PostgreSQL"),
    };
    let versions = [("1".to_owned(), "v1:bench".to_owned())];
    let mut snapshot_and_one_sample = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        sample_load(&mut connection, &versions, &roles, Duration::ZERO)
            .await
            .expect("sample");
        snapshot_and_one_sample.push(started.elapsed().as_secs_f64() * 1e3);
    }
    sample_load(&mut connection, &versions, &roles, Duration::from_secs(5))
        .await
        .expect("sample");
    // The database's own account of the sampler's statements: mean execution time of each.
    let own: Vec<(String, i64, f64)> = match &mut connection {
        Connection::Postgres(pg) => sqlx::query_as(
            "SELECT CASE WHEN query LIKE 'SELECT application_name%' THEN 'activity sample' \
             ELSE 'statements snapshot' END, calls, mean_exec_time \
             FROM pg_stat_statements WHERE dbid = \
             (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND (query LIKE 'SELECT application_name, query_id%' \
             OR query LIKE 'SELECT queryid, %') ORDER BY 1",
        )
        .fetch_all(pg)
        .await
        .expect("own statements"),
        _ => unreachable!("PostgreSQL"),
    };
    connection.close().await;
    app.close().await.expect("close");
    sqlx::raw_sql(&format!("DROP DATABASE {DATABASE}"))
        .execute(&mut admin)
        .await
        .expect("drop");
    let (p50, max) = p50_max(snapshot_and_one_sample);
    println!("statements in pg_stat_statements for the database: {statements}");
    println!("two snapshots + one activity sample: p50 {p50:.2} ms, max {max:.2} ms (20 rounds)");
    for (what, calls, mean) in &own {
        println!("{what}: {calls} calls, mean {mean:.3} ms on the server");
    }
    if let [(_, _, activity), (_, _, snapshot)] = own.as_slice() {
        println!(
            "one monitor run with a 5 s sample: 2 snapshots + 50 activity samples = {:.1} ms of server time",
            2.0 * snapshot + 50.0 * activity
        );
    }
}

/// Client p50 and max of `ms`.
fn p50_max(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    (ms[ms.len() / 2], ms[ms.len() - 1])
}

async fn mysql(url: &str) {
    let mut admin = sqlx::MySqlConnection::connect(url).await.expect("connect");
    for sql in [
        format!("DROP DATABASE IF EXISTS {DATABASE}"),
        format!("CREATE DATABASE {DATABASE}"),
    ] {
        sqlx::raw_sql(&sql)
            .execute(&mut admin)
            .await
            .expect("database");
    }
    let bench_url = format!("{}/{DATABASE}", url.rsplit_once('/').expect("a path").0);
    let mut sessions = Vec::new();
    for i in 0..50 {
        let mut app = sqlx::MySqlConnection::connect(&bench_url)
            .await
            .expect("connect to the bench database");
        let tag = if i % 2 == 0 { "v1:bench" } else { "v2:bench" };
        sqlx::raw_sql(&format!("SET @shiftguard_tag = '{tag}'"))
            .execute(&mut app)
            .await
            .expect("tag");
        if i == 0 {
            sqlx::raw_sql(
                "CREATE TABLE users (id BIGINT PRIMARY KEY); \
                 INSERT INTO users SELECT seq FROM seq_1_to_1000",
            )
            .execute(&mut app)
            .await
            .expect("set up");
        }
        for k in 0..20 {
            let n = i * 20 + k + 1;
            let keys: Vec<String> = (1..=n).map(|k| k.to_string()).collect();
            sqlx::raw_sql(&format!(
                "SELECT count(*) FROM users WHERE id IN ({})",
                keys.join(", ")
            ))
            .execute(&mut app)
            .await
            .expect("statement");
        }
        sessions.push(app);
    }
    let parsed = DatabaseUrl::parse(&bench_url).expect("url");
    // The app's sessions are the bench's own user's.
    let roles = [url::Url::parse(&bench_url)
        .expect("url")
        .username()
        .to_owned()];
    let mut connection = Connection::open(&parsed, ConnectSettings::default())
        .await
        .expect("open");
    let id = connection
        .fetch_strings("SELECT CAST(CONNECTION_ID() AS CHAR)")
        .await
        .expect("connection id");
    let id: i64 = id[0].parse().expect("a number");
    // The sampler's session's statement time so far, in ms, read from another session.
    let mut server_ms = async || -> f64 {
        sqlx::query_scalar(
            "SELECT CAST(SUM(s.SUM_TIMER_WAIT) / 1e9 AS DOUBLE) \
             FROM performance_schema.events_statements_summary_by_thread_by_event_name s \
             JOIN performance_schema.threads t ON t.THREAD_ID = s.THREAD_ID \
             WHERE t.PROCESSLIST_ID = ?",
        )
        .bind(id)
        .fetch_one(&mut admin)
        .await
        .expect("the sampler's statement time")
    };
    let versions = [
        ("1".to_owned(), "v1:bench".to_owned()),
        ("2".to_owned(), "v2:bench".to_owned()),
    ];
    let mut snapshot_and_one_sample = Vec::new();
    let before = server_ms().await;
    for _ in 0..20 {
        let started = Instant::now();
        let loads = sample_load(&mut connection, &versions, &roles, Duration::ZERO)
            .await
            .expect("sample");
        assert_eq!(loads[0].sessions, 25, "{loads:?}");
        snapshot_and_one_sample.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let rounds = server_ms().await;
    sample_load(&mut connection, &versions, &roles, Duration::from_secs(5))
        .await
        .expect("sample");
    let run = server_ms().await;
    connection.close().await;
    for session in sessions {
        session.close().await.expect("close");
    }
    sqlx::raw_sql(&format!("DROP DATABASE {DATABASE}"))
        .execute(&mut admin)
        .await
        .expect("drop");
    let (p50, max) = p50_max(snapshot_and_one_sample);
    let round = (rounds - before) / 20.0;
    let activity = (run - rounds - round) / 49.0;
    println!("tagged sessions: 50 (25 per version), 1,000 distinct statements between them");
    println!(
        "checks + two snapshots + one activity sample: p50 {p50:.2} ms, max {max:.2} ms on the client (20 rounds)"
    );
    println!("on the server: {round:.2} ms per round; an activity sample {activity:.3} ms");
    println!(
        "one monitor run with a 5 s sample (checks, 2 snapshots, 50 activity samples): {:.1} ms of server time",
        run - rounds
    );
}
