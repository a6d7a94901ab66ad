//! What sampling per-version database load costs the database, at 1,000 distinct statements
//! in `pg_stat_statements` (the monitor's own queries, timed from the client):
//!
//! ```sh
//! cargo run --release -p shiftguard-sql --example load_bench -- postgres://postgres@127.0.0.1/postgres
//! ```
//! It creates the database `shiftguard_load_bench` (dropped at the end), the extension in it,
//! and 1,000 distinct statements (`IN` lists of 1 to 1,000 keys, each a statement of its own in
//! PostgreSQL 15). Prints the client's time of two snapshots and one activity sample over 20
//! rounds, then the server's own mean time of each of the sampler's statements (as
//! `pg_stat_statements` counts them) and what a monitor run with a 5 s sample costs.

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
        sample_load(&mut connection, &versions, Duration::ZERO)
            .await
            .expect("sample");
        snapshot_and_one_sample.push(started.elapsed().as_secs_f64() * 1e3);
    }
    sample_load(&mut connection, &versions, Duration::from_secs(5))
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
    let stats = |mut ms: Vec<f64>| {
        ms.sort_by(f64::total_cmp);
        (ms[ms.len() / 2], ms[ms.len() - 1])
    };
    let (p50, max) = stats(snapshot_and_one_sample);
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
