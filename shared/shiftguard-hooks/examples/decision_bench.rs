//! The hooks' decision path without AWS network time, on a local database:
//! `cargo run --release -p shiftguard-hooks --example decision_bench -- [POSTGRES_URL]`.
//!
//! Sets up a database like the example at its expand revision (an `alembic_version` row and a
//! 100,000-row users table with the backfill done), then times 500 rounds of what a hook does
//! after reading the deployment: connect, read the Alembic heads, check the required backfill
//! for pending rows, and evaluate the pre-traffic gates. It also times the gates alone.
//! Creates and drops the database `shiftguard_decision_bench`.

use std::time::{Duration, Instant};

use shiftguard_core::DatabaseState;
use shiftguard_core::config::ProjectConfig;
use shiftguard_core::gate::{BackfillNow, VersionStamp, pre_traffic};
use shiftguard_core::scan::load_migrations;
use shiftguard_sql::backfill::first_pending_key;
use shiftguard_sql::{ConnectSettings, Connection, DatabaseUrl, read_heads};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let admin = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let admin_url = DatabaseUrl::parse(&admin).expect("url");
    run_admin(
        &admin_url,
        "DROP DATABASE IF EXISTS shiftguard_decision_bench",
    )
    .await;
    run_admin(&admin_url, "CREATE DATABASE shiftguard_decision_bench").await;
    let (server, _) = admin.rsplit_once('/').expect("database in URL");
    let url = DatabaseUrl::parse(&format!("{server}/shiftguard_decision_bench")).expect("url");
    let mut setup = Connection::open(
        &url,
        ConnectSettings {
            read_only: false,
            ..ConnectSettings::default()
        },
    )
    .await
    .expect("connect");
    setup
        .raw(
            "CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY); \
             INSERT INTO alembic_version VALUES ('836a014c0874'); \
             CREATE TABLE users (id BIGINT PRIMARY KEY, full_name TEXT, email TEXT, display_name TEXT); \
             INSERT INTO users SELECT g, 'User ' || g, 'u' || g, 'User ' || g FROM generate_series(1, 100000) g; \
             CREATE INDEX users_pending ON users (id) WHERE display_name IS NULL",
        )
        .await
        .expect("setup");
    setup.raw("VACUUM ANALYZE users").await.expect("vacuum");
    setup.close().await;

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/example");
    let graph = load_migrations(&root).expect("example migrations").graph;
    let config = ProjectConfig::parse(
        &std::fs::read_to_string(root.join("shiftguard.toml")).expect("config"),
    )
    .expect("config");
    let backfill = &config.backfill[0];
    let current = VersionStamp {
        version: "1".into(),
        schema_revision: Some("d2ca87e6a2c7".into()),
        required_backfills: vec![],
    };
    let target = VersionStamp {
        version: "2".into(),
        schema_revision: Some("836a014c0874".into()),
        required_backfills: vec![backfill.name.clone()],
    };

    let mut rounds = Vec::with_capacity(500);
    let mut gates_only = Vec::with_capacity(500);
    for _ in 0..500 {
        let started = Instant::now();
        let mut connection = Connection::open(&url, ConnectSettings::default())
            .await
            .expect("connect");
        let heads = read_heads(&mut connection, &url, "alembic_version")
            .await
            .expect("heads");
        let first = first_pending_key(&mut connection, &url, backfill)
            .await
            .expect("pending");
        connection.close().await;
        let evaluated = Instant::now();
        let state = DatabaseState::new(&graph, &heads).expect("state");
        let backfills = [BackfillNow {
            name: backfill.name.clone(),
            first_pending_key: first,
        }];
        let decision = pre_traffic(&graph, &state, &current, &target, &backfills);
        assert!(decision.passed(), "{}", decision.failures());
        gates_only.push(evaluated.elapsed());
        rounds.push(started.elapsed());
    }
    run_admin(&admin_url, "DROP DATABASE shiftguard_decision_bench").await;

    let report = |label: &str, samples: &mut Vec<Duration>| {
        samples.sort();
        let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
        println!(
            "{label:<48} p50 {:>8.3} ms   p99 {:>8.3} ms   max {:>8.3} ms",
            at(0.5).as_secs_f64() * 1e3,
            at(0.99).as_secs_f64() * 1e3,
            samples.last().copied().unwrap_or_default().as_secs_f64() * 1e3
        );
    };
    report("connect + heads + pending check + gates", &mut rounds);
    report(
        "gates alone (state closure + rule + backfills)",
        &mut gates_only,
    );
}

/// Runs one statement on the server's administrative database.
async fn run_admin(url: &DatabaseUrl, sql: &str) {
    let settings = ConnectSettings {
        read_only: false,
        ..ConnectSettings::default()
    };
    let mut connection = Connection::open(url, settings).await.expect("connect");
    connection.raw(sql).await.expect(sql);
    connection.close().await;
}
