//! The hooks' decision path without AWS network time, on a local database:
//! `cargo run --release -p shiftguard-hooks --example decision_bench -- [POSTGRES_URL]`.
//!
//! Sets up a database like the example at its expand revision (an `alembic_version` row and a
//! 100,000-row users table with the backfill done), then times 500 rounds of the pre-traffic
//! decision as the hook makes it (`decide::pre_traffic` over the production database port),
//! with the deployment and the versions' stamps answered in-process instead of by AWS:
//! connect, read the Alembic heads, check the required backfill for pending rows, evaluate the
//! gates. It also times the decision with every fact in memory (the orchestration and gates
//! alone). Creates and drops the database `shiftguard_decision_bench`.

use std::time::{Duration, Instant};

use shiftguard_core::backfill::{BackfillConfig, Key};
use shiftguard_core::config::ProjectConfig;
use shiftguard_core::release::appspec::LambdaTarget;
use shiftguard_core::release::checks::CheckConfig;
use shiftguard_core::release::decide::{self, Release, TrafficSettings};
use shiftguard_core::release::gate::{SmokeOutcome, VersionStamp};
use shiftguard_core::release::hold::Hold;
use shiftguard_core::release::ports::{Deployments, FunctionVersions, SharedDatabase};
use shiftguard_core::release::{DecisionError, Ports, Routing};
use shiftguard_core::schema::scan::load_migrations;
use shiftguard_sql::{ConnectSettings, Connection, DatabaseUrl, SqlDatabase};

/// The deployment (v1 to v2) and the stamps, answered at once.
struct Stamps([VersionStamp; 2]);

impl Deployments for Stamps {
    async fn lambda_target(&self, _: &str) -> Result<LambdaTarget, DecisionError> {
        Ok(LambdaTarget {
            function: "users-api".into(),
            alias: "live".into(),
            current_version: "1".into(),
            target_version: "2".into(),
        })
    }

    async fn active_deployments(&self, _: &str, _: &str) -> Result<Vec<String>, DecisionError> {
        Ok(Vec::new())
    }

    async fn group_holds(&self, _: &str, _: &str) -> Result<Vec<Hold>, DecisionError> {
        Ok(Vec::new())
    }

    async fn deployment_holds(&self, _: &str) -> Result<Vec<Hold>, DecisionError> {
        Ok(Vec::new())
    }
}

impl FunctionVersions for Stamps {
    async fn stamp(&self, _: &str, version: &str) -> Result<VersionStamp, DecisionError> {
        Ok(self.0[usize::from(version == "2")].clone())
    }

    async fn versions(&self, _: &str) -> Result<Vec<VersionStamp>, DecisionError> {
        Ok(self.0.to_vec())
    }

    async fn routing(&self, _: &str, _: &str) -> Result<Routing, DecisionError> {
        Ok(Routing {
            primary: "1".into(),
            additional: Vec::new(),
        })
    }

    async fn invoke(&self, _: &str, _: &str, _: &str) -> Result<SmokeOutcome, DecisionError> {
        Err(DecisionError::Lambda("no smoke test here".into()))
    }
}

/// The database's answers, read once, for timing the decision without I/O.
struct Remembered {
    heads: Vec<String>,
}

impl SharedDatabase for Remembered {
    fn target(&self) -> &str {
        "remembered"
    }

    async fn heads(&self) -> Result<Vec<String>, DecisionError> {
        Ok(self.heads.clone())
    }

    async fn first_pending_key(&self, _: &BackfillConfig) -> Result<Option<Key>, DecisionError> {
        Ok(None)
    }

    async fn measure(&self, _: &CheckConfig) -> Result<Option<f64>, DecisionError> {
        Ok(None)
    }
}

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
    let stamps = Stamps([
        VersionStamp {
            version: "1".into(),
            schema_revision: Some("d2ca87e6a2c7".into()),
            required_backfills: vec![],
        },
        VersionStamp {
            version: "2".into(),
            schema_revision: Some("836a014c0874".into()),
            required_backfills: vec![backfill.name.clone()],
        },
    ]);
    let release = Release {
        graph: &graph,
        config: &config,
    };
    let settings = TrafficSettings::default();
    let mut rounds = Vec::with_capacity(500);
    for _ in 0..500 {
        let started = Instant::now();
        let database = SqlDatabase::new(&url, "alembic_version", ConnectSettings::default());
        decide_with(&stamps, release, &settings, &database).await;
        database.close().await;
        rounds.push(started.elapsed());
    }
    let remembered = Remembered {
        heads: vec!["836a014c0874".into()],
    };
    let mut gates_only = Vec::with_capacity(500);
    for _ in 0..500 {
        let started = Instant::now();
        decide_with(&stamps, release, &settings, &remembered).await;
        gates_only.push(started.elapsed());
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
    report(
        "pre-traffic: connect + heads + pending + gates",
        &mut rounds,
    );
    report(
        "pre-traffic, facts in memory (orchestration + gates)",
        &mut gates_only,
    );
}

/// The pre-traffic decision as the hook makes it, over `database`; it must pass.
async fn decide_with<D: SharedDatabase>(
    stamps: &Stamps,
    release: Release<'_>,
    settings: &TrafficSettings,
    database: &D,
) {
    let ports = Ports {
        deployments: stamps,
        functions: stamps,
        health: &(),
        live: &(),
        database,
    };
    let record = decide::pre_traffic(ports, release, settings, "d-bench")
        .await
        .expect("decided");
    assert!(record.decision.passed(), "{}", record.decision.failures());
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
