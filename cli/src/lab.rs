//! `shiftguard lab`: rehearses a whole release of the running example on an embedded database,
//! with the real engine and gates: the revision graph of the example project, the compatibility
//! rule, the release decisions by the orchestrations the hooks, the monitor and `shiftguard gate`
//! call (`shiftguard_core::release::decide`: pre-traffic before the first step, between steps
//! after it, cutover, contract; over the production database port, with the lab's own budget:
//! absolute latency limits, no comparison with v1, no cutover health window), and the backfill
//! `Runner` of `shiftguard-sql` with its SQL checkpoint. What AWS provides in production (a weighted
//! alias, the versions' code, traffic and per-version metrics) is played in-process by
//! `lab/world.rs`, behind the ports the AWS adapters implement. Every stage states what the doctrine expects; the lab exits 0
//! only if every stage behaved so, which makes it a smoke test too.

pub(crate) mod report;
mod world;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use shiftguard_core::backfill::{BackfillConfig, Key, KeyRange, Tuning};
use shiftguard_core::config::ProjectConfig;
use shiftguard_core::release::checks::{CheckConfig, GateKind};
use shiftguard_core::release::decide::{self, Release, TrafficSettings};
use shiftguard_core::release::gate::{self, GateResult, GateVerdict, HealthBudget, VersionStamp};
use shiftguard_core::release::load::session_tag;
use shiftguard_core::release::{DecisionError, Ports};
use shiftguard_core::schema::scan::revision_from_source;
use shiftguard_core::{DatabaseState, RevisionGraph, check_build};
use shiftguard_sql::backfill::{
    Checkpoints, Event, LagSource, Outcome as RunOutcome, Runner, StatusReport,
};
use shiftguard_sql::checkpoint::SqlCheckpoints;
use shiftguard_sql::{ConnectSettings, Connection, DatabaseUrl, Dialect, SqlDatabase, read_heads};

use self::world::{ALIAS, Alias, Code, Counters, FUNCTION, LabCloud, Traffic, Version};
use crate::Outcome;

/// Rehearse a whole release (expand, canary, backfill, cutover, contract) on an embedded database.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    # The whole story on a temporary SQLite file, step by step:\n  \
    shiftguard lab\n\n  \
    # Smaller and faster, with a timeline chart:\n  \
    shiftguard lab --rows 20000 --report lab.html\n\n  \
    # On a scratch PostgreSQL database (its tables users, audit_log, alembic_version and\n  \
    # shiftguard_backfill are dropped and created):\n  \
    shiftguard lab --database-url postgres://app@127.0.0.1/scratch --json\n\n  \
    # The variant whose v2 finds users by an unindexed column: the database's view stops\n  \
    # the canary at 10% (PostgreSQL with pg_stat_statements, or MariaDB with performance_schema):\n  \
    shiftguard lab --variant missing-index --database-url postgres://app@127.0.0.1/scratch\n\n\
    Exit codes: 0 every stage behaved as the doctrine says, 1 one did not (named), 2 could not run.")]
pub struct Args {
    /// Database to rehearse on (its users, audit_log, alembic_version and shiftguard_backfill
    /// tables are replaced). Default: a temporary SQLite file.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Rows in the users table before the release.
    #[arg(long, default_value_t = 200_000, value_name = "N")]
    rows: u64,
    /// Print the record of the rehearsal as JSON instead of the narrative.
    #[arg(long)]
    json: bool,
    /// Write a self-contained HTML page with the timeline (traffic weights, backfill progress,
    /// gate verdicts).
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Another story: `missing-index`, v2 finds users by `display_name`, which the expand did
    /// not index; the per-version database gates stop the canary at 10% while errors and
    /// latency pass. Needs --database-url (PostgreSQL with pg_stat_statements, or MySQL/MariaDB
    /// with performance_schema).
    #[arg(long, value_enum, value_name = "VARIANT")]
    variant: Option<Variant>,
}

/// The lab's other stories.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Variant {
    /// v2 looks users up by an unindexed column.
    MissingIndex,
}

/// How long the missing-index variant samples the versions' database load between steps.
const DATABASE_SAMPLE: Duration = Duration::from_secs(3);

/// The example project's revision files, compiled in: the lab needs no checkout and no Python.
const REVISIONS: &[(&str, &str)] = &[
    (
        "d2ca87e6a2c7_create_users.py",
        include_str!("../../infra/example/migrations/versions/d2ca87e6a2c7_create_users.py"),
    ),
    (
        "836a014c0874_add_users_display_name.py",
        include_str!(
            "../../infra/example/migrations/versions/836a014c0874_add_users_display_name.py"
        ),
    ),
    (
        "569d43d582d6_index_users_email.py",
        include_str!("../../infra/example/migrations/versions/569d43d582d6_index_users_email.py"),
    ),
    (
        "448b4040d6f2_create_audit_log.py",
        include_str!("../../infra/example/migrations/versions/448b4040d6f2_create_audit_log.py"),
    ),
    (
        "3f55b760f0a3_merge_email_index_and_audit_branches.py",
        include_str!(
            "../../infra/example/migrations/versions/3f55b760f0a3_merge_email_index_and_audit_branches.py"
        ),
    ),
    (
        "172e330d1de0_drop_users_full_name.py",
        include_str!(
            "../../infra/example/migrations/versions/172e330d1de0_drop_users_full_name.py"
        ),
    ),
];

const BASE: &str = "d2ca87e6a2c7";
const EXPAND: [&str; 4] = [
    "836a014c0874",
    "569d43d582d6",
    "448b4040d6f2",
    "3f55b760f0a3",
];
const CONTRACT: &str = "172e330d1de0";
const BACKFILL: &str = "users_display_name";
/// Requests sent through the alias per traffic tick.
const REQUESTS_PER_TICK: usize = 200;
/// The contract gate's observation window, in traffic ticks.
const OBSERVATION_TICKS: u64 = 20;

/// What one backfill slice did.
struct Slice {
    /// How the run ended; `None`: killed.
    outcome: Option<RunOutcome>,
    /// The cursor the run started (or resumed) at.
    started_at: Option<Option<i64>>,
}

/// One gate verdict on the timeline.
#[derive(Debug, Serialize)]
pub struct GateEvent {
    pub t_ms: f64,
    pub stage: usize,
    /// The decision it was part of, e.g. `contract gate (172e330d1de0)`.
    pub decision: String,
    pub gate: String,
    pub verdict: &'static str,
    pub reason: Option<String>,
    pub value: Option<f64>,
    pub threshold: Option<String>,
}

/// Traffic weights and backfill progress at one moment.
#[derive(Debug, Serialize)]
pub struct Sample {
    pub t_ms: f64,
    /// Share of traffic per version (v1, v2).
    pub weights: Vec<f64>,
    pub backfill_percent: f64,
}

/// One stage of the story and whether it went as the doctrine says.
#[derive(Debug, Serialize)]
pub struct Stage {
    pub number: usize,
    pub title: String,
    pub expected: String,
    pub ok: bool,
    pub notes: Vec<String>,
}

/// The record of a rehearsal (`--json`, and the data of the HTML report).
#[derive(Debug, Serialize)]
pub struct Record {
    pub result: &'static str,
    pub database: String,
    pub rows: u64,
    pub seconds: f64,
    pub stages: Vec<Stage>,
    pub gates: Vec<GateEvent>,
    pub timeline: Vec<Sample>,
}

struct Lab {
    quiet: bool,
    variant: Option<Variant>,
    graph: RevisionGraph,
    url: DatabaseUrl,
    connection: Connection,
    /// The database user the versions connect as: the only one whose sessions are sampled
    /// (none on SQLite).
    database_user: Option<String>,
    versions: Vec<Version>,
    alias: Alias,
    traffic: Traffic,
    /// Counters since the last canary step, per version.
    window: Vec<Counters>,
    /// The traffic tick each version was last invoked in.
    last_invoked: Vec<Option<u64>>,
    tick: u64,
    /// The flag-on build of v2, published but never routed to (the premature attempt).
    unrouted: Vec<VersionStamp>,
    /// The backfill's progress at its last status read.
    backfill_percent: f64,
    /// The release's `shiftguard.toml`: the backfill, the cutover check, the gates' windows.
    config: ProjectConfig,
    checkpoints_table: &'static str,
    started: Instant,
    record: Record,
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if args.rows < 1_000 {
        bail!("--rows must be at least 1000 (the canary needs traffic to judge)");
    }
    if let Some(parent) = args.report.as_deref().and_then(|p| p.parent())
        && !parent.as_os_str().is_empty()
        && !parent.is_dir()
    {
        bail!("--report: directory {} does not exist", parent.display());
    }
    let scratch = tempfile::Builder::new()
        .prefix("shiftguard-lab-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let (raw_url, database) = match &args.database_url {
        Some(url) => (url.clone(), "the given database".to_owned()),
        None => {
            // An empty file is an empty SQLite database (shiftguard never creates one itself).
            let path = scratch.path().join("lab.db");
            std::fs::File::create(&path).context("cannot create the lab's SQLite file")?;
            (
                format!("sqlite://{}", path.display()),
                "SQLite (a temporary file)".to_owned(),
            )
        }
    };
    let url = DatabaseUrl::parse(&raw_url).context("--database-url")?;
    if args.variant.is_some() && url.dialect() == Dialect::Sqlite {
        bail!(
            "--variant missing-index needs --database-url of PostgreSQL (with pg_stat_statements) or MySQL/MariaDB (with performance_schema): SQLite keeps no statement statistics"
        );
    }
    let record = runtime.block_on(async {
        let mut lab = Lab::new(url, database, args.rows, args.json, args.variant).await?;
        lab.rehearse(args.rows).await?;
        anyhow::Ok(lab.finish())
    })?;
    if let Some(path) = &args.report {
        std::fs::write(path, report::html(&record))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&record)?);
    } else {
        let failed: Vec<String> = record
            .stages
            .iter()
            .filter(|s| !s.ok)
            .map(|s| format!("{}. {}", s.number, s.title))
            .collect();
        println!();
        if failed.is_empty() {
            println!(
                "lab: every stage behaved as the doctrine says ({:.1} s, {} rows, {}).",
                record.seconds, record.rows, record.database
            );
        } else {
            println!("lab: NOT as the doctrine says: {}", failed.join("; "));
        }
        if let Some(path) = &args.report {
            println!("report: {}", path.display());
        }
    }
    Ok(if record.result == "pass" {
        Outcome::Safe
    } else {
        Outcome::NotSafe
    })
}

fn graph() -> anyhow::Result<RevisionGraph> {
    let revisions = REVISIONS
        .iter()
        .map(|(file, source)| revision_from_source(source, file))
        .collect::<Result<Vec<_>, _>>()
        .context("the example's revision files")?;
    Ok(RevisionGraph::new(revisions)?)
}

/// The gates of a decision that failed.
fn failing(gates: &[GateResult]) -> Vec<String> {
    gates
        .iter()
        .filter(|g| matches!(g.verdict, GateVerdict::Fail(_)))
        .map(|g| g.gate.clone())
        .collect()
}

/// The release decisions' ports in the lab: its cloud in-process, its database as in production.
fn lab_ports<'a>(
    cloud: &'a LabCloud<'a>,
    database: &'a SqlDatabase<'a>,
) -> Ports<'a, LabCloud<'a>, LabCloud<'a>, LabCloud<'a>, LabCloud<'a>, SqlDatabase<'a>> {
    Ports {
        deployments: cloud,
        functions: cloud,
        health: cloud,
        live: cloud,
        database,
    }
}

fn stamp(version: &str, revision: &str, required_backfills: &[&str]) -> VersionStamp {
    VersionStamp {
        version: version.to_owned(),
        schema_revision: Some(revision.to_owned()),
        required_backfills: required_backfills.iter().map(|b| (*b).to_owned()).collect(),
    }
}

impl Lab {
    async fn new(
        url: DatabaseUrl,
        database: String,
        rows: u64,
        quiet: bool,
        variant: Option<Variant>,
    ) -> anyhow::Result<Lab> {
        let settings = ConnectSettings {
            read_only: false,
            ..ConnectSettings::default()
        };
        let mut connection = Connection::open(&url, settings).await?;
        // The user the versions connect as: the one role the database gates trust (a server's;
        // SQLite has no users and no database gates).
        let who = match url.dialect() {
            Dialect::Postgres => Some("SELECT CAST(session_user AS TEXT)"),
            Dialect::MySql => Some("SELECT SUBSTRING_INDEX(USER(), '@', 1)"),
            Dialect::Sqlite => None,
        };
        let database_user = match who {
            Some(who) => connection
                .fetch_strings(who)
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot read the database user: {}",
                        url.redact(&e.to_string())
                    )
                })?
                .into_iter()
                .next(),
            None => None,
        };
        let backfill = BackfillConfig {
            name: BACKFILL.to_owned(),
            table: "users".to_owned(),
            key: vec!["id".to_owned()],
            pending: "display_name IS NULL".to_owned(),
            set: "display_name = full_name".to_owned(),
            // Small batches, so the story has many of them to crash in the middle of.
            tuning: Tuning {
                batch_size: 1_000,
                max_batch_size: 4_000,
                target_batch_ms: 20,
                ..Tuning::default()
            },
        };
        let mismatches = CheckConfig {
            name: "display-name-mismatches".to_owned(),
            gates: vec![GateKind::Cutover],
            query: Some(
                "SELECT count(*) FROM users WHERE display_name IS NOT NULL AND full_name IS NOT NULL AND display_name <> full_name"
                    .to_owned(),
            ),
            metric: None,
            max: Some(0.0),
            min: None,
            statement_timeout_ms: 5_000,
            window_minutes: 15,
            min_invocations: 50,
        };
        let mut config = ProjectConfig {
            backfill: vec![backfill],
            check: vec![mismatches],
            ..ProjectConfig::default()
        };
        config.checkpoint.table = "shiftguard_backfill".to_owned();
        // One tick of the lab's traffic stands for a minute of the observation window; the
        // cutover's judgement of v2's health is the canary's (its window restarts at 100%).
        config.gates.observation_minutes = OBSERVATION_TICKS;
        config.gates.cutover_health_minutes = 0;
        Ok(Lab {
            quiet,
            variant,
            graph: graph()?,
            url,
            connection,
            database_user,
            versions: vec![
                Version {
                    stamp: stamp("1", BASE, &[]),
                    code: Code::OldOnly,
                },
                Version {
                    stamp: stamp("2", EXPAND[3], &[]),
                    code: match variant {
                        Some(Variant::MissingIndex) => Code::DualWriteFindByName,
                        None => Code::DualWrite,
                    },
                },
            ],
            alias: Alias {
                primary: 0,
                additional: None,
            },
            traffic: Traffic::new(rows as i64 + 1),
            window: vec![Counters::default(), Counters::default()],
            last_invoked: vec![None, None],
            tick: 0,
            unrouted: vec![stamp("2+flag", EXPAND[3], &[BACKFILL])],
            backfill_percent: 0.0,
            config,
            checkpoints_table: "shiftguard_backfill",
            started: Instant::now(),
            record: Record {
                result: "fail",
                database,
                rows,
                seconds: 0.0,
                stages: Vec::new(),
                gates: Vec::new(),
                timeline: Vec::new(),
            },
        })
    }

    fn say(&self, line: &str) {
        if !self.quiet {
            println!("{line}");
        }
    }

    fn elapsed_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1e3
    }

    fn stage(&mut self, title: &str, expected: &str) {
        let number = self.record.stages.len() + 1;
        self.say(&format!("\n{number}. {title}\n   expected: {expected}"));
        self.record.stages.push(Stage {
            number,
            title: title.to_owned(),
            expected: expected.to_owned(),
            ok: true,
            notes: Vec::new(),
        });
    }

    /// Records an outcome of the current stage: `ok` false marks the stage as not as expected.
    fn check(&mut self, ok: bool, note: String) {
        self.say(&format!("   {} {note}", if ok { "ok " } else { "NOT" }));
        if let Some(stage) = self.record.stages.last_mut() {
            stage.ok &= ok;
            stage.notes.push(note);
        }
    }

    /// Prints and records a decision's gates; returns its overall verdict.
    fn gates(&mut self, what: &str, gates: &[GateResult], overall: gate::Overall) -> gate::Overall {
        self.say(&format!("   {what}: {overall:?}"));
        let t_ms = self.elapsed_ms();
        let stage = self.record.stages.len();
        for result in gates {
            let (verdict, reason) = match &result.verdict {
                GateVerdict::Pass => ("pass", None),
                GateVerdict::Fail(reason) => ("fail", Some(reason.clone())),
                GateVerdict::Inconclusive(reason) => ("inconclusive", Some(reason.clone())),
            };
            let measured = match (result.value, &result.threshold) {
                (Some(value), Some(threshold)) => {
                    format!(" (value {value:.2}, threshold {threshold})")
                }
                (Some(value), None) => format!(" (value {value:.2})"),
                _ => String::new(),
            };
            self.say(&format!(
                "     {verdict:<12} {}{measured}{}",
                result.gate,
                reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ));
            self.record.gates.push(GateEvent {
                t_ms,
                stage,
                decision: what.to_owned(),
                gate: result.gate.clone(),
                verdict,
                reason,
                value: result.value,
                threshold: result.threshold.clone(),
            });
        }
        overall
    }

    async fn execute(&mut self, sql: &str) -> anyhow::Result<()> {
        self.connection
            .raw(sql)
            .await
            .with_context(|| format!("lab statement failed: {sql}"))
    }

    /// What `alembic upgrade <revision>` records: the revision replaces its parents as a head.
    async fn record_revision(&mut self, revision: &str) -> anyhow::Result<()> {
        let index = self.graph.index_of(revision).context("known revision")?;
        let parents: Vec<String> = self
            .graph
            .parents(index)
            .iter()
            .map(|&p| self.graph.revision(p).id.clone())
            .collect();
        for parent in parents {
            self.execute(&format!(
                "DELETE FROM alembic_version WHERE version_num = '{parent}'"
            ))
            .await?;
        }
        self.execute(&format!(
            "INSERT INTO alembic_version (version_num) VALUES ('{revision}')"
        ))
        .await
    }

    /// The example's DDL for one revision, as Alembic renders it for this database.
    fn ddl(&self, revision: &str) -> Vec<String> {
        let dialect = self.connection.dialect();
        let statements: Vec<&str> = match revision {
            BASE => vec![
                "CREATE TABLE users (id BIGINT NOT NULL PRIMARY KEY, full_name VARCHAR(200) NOT NULL, email VARCHAR(320) NOT NULL)",
            ],
            "836a014c0874" => match dialect {
                Dialect::Postgres => vec![
                    "ALTER TABLE users ADD COLUMN display_name VARCHAR(200)",
                    "ALTER TABLE users ALTER COLUMN full_name DROP NOT NULL",
                ],
                Dialect::MySql => vec![
                    "ALTER TABLE users ADD COLUMN display_name VARCHAR(200)",
                    "ALTER TABLE users MODIFY full_name VARCHAR(200) NULL",
                ],
                // SQLite cannot relax NOT NULL in place: Alembic's batch mode copies the table.
                Dialect::Sqlite => vec![
                    "CREATE TABLE _alembic_tmp_users (id BIGINT NOT NULL PRIMARY KEY, full_name VARCHAR(200), email VARCHAR(320) NOT NULL, display_name VARCHAR(200))",
                    "INSERT INTO _alembic_tmp_users (id, full_name, email) SELECT id, full_name, email FROM users",
                    "DROP TABLE users",
                    "ALTER TABLE _alembic_tmp_users RENAME TO users",
                ],
            },
            "569d43d582d6" => vec!["CREATE INDEX ix_users_email ON users (email)"],
            "448b4040d6f2" => vec![
                "CREATE TABLE audit_log (id INTEGER PRIMARY KEY, user_id BIGINT NOT NULL REFERENCES users (id), action VARCHAR(50) NOT NULL)",
            ],
            CONTRACT => vec!["ALTER TABLE users DROP COLUMN full_name"],
            _ => vec![],
        };
        statements.into_iter().map(str::to_owned).collect()
    }

    async fn upgrade(&mut self, revision: &str) -> anyhow::Result<()> {
        for statement in self.ddl(revision) {
            self.execute(&statement).await?;
        }
        self.record_revision(revision).await
    }

    async fn state(&mut self) -> anyhow::Result<(DatabaseState, Vec<String>)> {
        let heads = read_heads(&mut self.connection, &self.url, "alembic_version").await?;
        Ok((DatabaseState::new(&self.graph, &heads)?, heads))
    }

    fn runner(&self) -> anyhow::Result<Runner<'_>> {
        Ok(Runner {
            url: &self.url,
            config: &self.config.backfill[0],
            checkpoints: Checkpoints::Sql(SqlCheckpoints::new(self.checkpoints_table)?),
            owner: format!("lab-{}", std::process::id()),
            lag: LagSource::None,
            connect_timeout: Duration::from_secs(10),
            range: KeyRange::default(),
        })
    }

    /// The backfill's status (progress, checkpoint, first pending key): one read of the
    /// database; its progress goes into the timeline.
    async fn backfill_status(&mut self) -> anyhow::Result<StatusReport> {
        let status = self.runner()?.status().await?;
        self.backfill_percent = status.percent;
        Ok(status)
    }

    /// One tick of traffic through the alias, then a timeline sample.
    async fn tick(&mut self) {
        self.traffic
            .send(
                std::slice::from_mut(&mut self.connection),
                &self.versions,
                &self.alias,
                REQUESTS_PER_TICK,
                &mut self.window,
            )
            .await;
        self.tick += 1;
        for (version, weight) in self.alias.weights(self.versions.len()).iter().enumerate() {
            if *weight > 0.0 {
                self.last_invoked[version] = Some(self.tick);
            }
        }
        let sample = Sample {
            t_ms: self.elapsed_ms(),
            weights: self.alias.weights(self.versions.len()),
            backfill_percent: self.backfill_percent,
        };
        self.record.timeline.push(sample);
    }

    /// Starts a new metrics window (after a canary step, the cutover, the contract).
    fn reset_window(&mut self) {
        self.window = vec![Counters::default(); self.versions.len()];
    }

    /// The lab's cloud now, for the release decisions.
    fn cloud(&self) -> LabCloud<'_> {
        LabCloud {
            versions: &self.versions,
            unrouted: &self.unrouted,
            alias: &self.alias,
            window: &self.window,
            last_invoked: &self.last_invoked,
            tick: self.tick,
        }
    }

    fn release(&self) -> Release<'_> {
        Release {
            graph: &self.graph,
            config: &self.config,
        }
    }

    /// A traffic decision (pre-traffic before the first step, the monitor's between the others)
    /// for the deployment of `target`, as the hooks make it.
    async fn traffic_decision(
        &self,
        between_steps: bool,
        target: &str,
    ) -> Result<shiftguard_core::release::Evaluation, DecisionError> {
        let (cloud, database) = (self.cloud(), self.database());
        let ports = lab_ports(&cloud, &database);
        let settings = self.traffic_settings();
        let decided = if between_steps {
            decide::between_steps(ports, self.release(), &settings, target).await
        } else {
            decide::pre_traffic(ports, self.release(), &settings, target).await
        };
        database.close().await;
        decided
    }

    /// The cutover (`contract`: None) or the contract decision, as `shiftguard gate` makes it.
    async fn approval(
        &self,
        contract: Option<&str>,
    ) -> Result<shiftguard_core::release::ApprovalRecord, DecisionError> {
        let (cloud, database) = (self.cloud(), self.database());
        let ports = lab_ports(&cloud, &database);
        let app = (FUNCTION, ALIAS);
        let decided = match contract {
            None => decide::cutover(ports, self.release(), app, None).await,
            Some(revision) => {
                let window = Duration::from_secs(self.config.gates.observation_minutes * 60);
                decide::contract(ports, self.release(), app, revision, window).await
            }
        };
        database.close().await;
        decided
    }

    /// The decisions' own read-only session on the lab's database.
    fn database(&self) -> SqlDatabase<'_> {
        SqlDatabase::new(&self.url, "alembic_version", ConnectSettings::default())
    }

    async fn rehearse(&mut self, rows: u64) -> anyhow::Result<()> {
        // 1. Base schema, rows, v1 serving.
        self.stage(
            &format!("base schema ({BASE}) and {rows} users; v1 serves all traffic"),
            "v1 fits the schema it was built against",
        );
        for table in [
            "audit_log",
            "users",
            "alembic_version",
            self.checkpoints_table,
        ] {
            self.execute(&format!("DROP TABLE IF EXISTS {table}"))
                .await?;
        }
        self.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
            .await?;
        self.upgrade(BASE).await?;
        self.load_rows(rows).await?;
        let (state, _) = self.state().await?;
        let v1 = self.graph.index_of(BASE).context("base")?;
        let fits = check_build(&self.graph, v1, &state).is_compatible();
        self.check(
            fits,
            format!("{rows} rows loaded; v1 (built at {BASE}) fits"),
        );
        for _ in 0..5 {
            self.tick().await;
        }
        let errors = self.window[0].errors;
        self.check(
            errors == 0,
            format!(
                "v1 served {} requests, {errors} errors",
                self.window[0].invocations
            ),
        );

        // 2. Expand; v2 published; the pre-traffic gate for v1 + v2.
        self.stage(
            "expand (add users.display_name, index users.email, audit_log, merge); v2 (dual write) published",
            "the pre-traffic gate passes: the schema is inside both v1's and v2's windows",
        );
        for revision in EXPAND {
            self.upgrade(revision).await?;
        }
        let evaluation = self.traffic_decision(false, "2").await?;
        let decision = &evaluation.decision;
        let overall = self.gates(
            "pre-traffic gate (current v1, target v2)",
            &decision.gates,
            decision.overall(),
        );
        self.check(
            overall == gate::Overall::Pass,
            format!(
                "database at {}; pre-traffic gate {overall:?}",
                evaluation.database_heads.join(", ")
            ),
        );

        // 3. Premature attempts.
        self.stage(
            "premature: ship v2 with its flag on (needs the backfill), and apply the contract",
            "both BLOCKED, with the reasons",
        );
        let evaluation = self.traffic_decision(false, "2+flag").await?;
        let decision = &evaluation.decision;
        let overall = self.gates(
            "pre-traffic gate (target: v2 with the flag on)",
            &decision.gates,
            decision.overall(),
        );
        let blocked_by = failing(&decision.gates);
        self.check(
            blocked_by == [format!("backfill:{BACKFILL}")],
            format!("flag-on release {overall:?}, blocked by {blocked_by:?} only"),
        );
        let record = self.approval(Some(CONTRACT)).await?;
        let overall = self.gates(
            &format!("contract gate ({CONTRACT})"),
            &record.gates,
            record.result,
        );
        let blocked_by = failing(&record.gates);
        self.check(
            blocked_by.contains(&format!("live:{FUNCTION}:1")),
            format!("contract {overall:?}, blocked by {blocked_by:?}"),
        );

        if self.variant == Some(Variant::MissingIndex) {
            return self.canary_stopped_by_the_database().await;
        }

        // 4 and 5. Canary with the backfill running between the steps; a crash half-way.
        self.canary_and_backfill().await?;

        // 6. Cutover, contract.
        self.cutover_and_contract().await
    }

    async fn load_rows(&mut self, rows: u64) -> anyhow::Result<()> {
        let dialect = self.connection.dialect();
        let concat = |parts: &[&str]| match dialect {
            Dialect::MySql => format!("CONCAT({})", parts.join(", ")),
            _ => parts.join(" || "),
        };
        if dialect == Dialect::MySql {
            // Both stop recursive CTEs early by default; each knows only its own variable.
            for variable in ["cte_max_recursion_depth", "max_recursive_iterations"] {
                let set = format!("SET SESSION {variable} = {}", rows + 1);
                let _ = self.connection.raw(&set).await;
            }
        }
        let sql = format!(
            "INSERT INTO users (id, full_name, email) WITH RECURSIVE seq (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {rows}) SELECT n, {}, {} FROM seq",
            concat(&["'User '", "CAST(n AS CHAR(20))"]),
            concat(&["'u'", "CAST(n AS CHAR(20))", "'@example.com'"]),
        );
        let sql = if dialect == Dialect::Postgres {
            sql.replace("CAST(n AS CHAR(20))", "n::text")
        } else {
            sql
        };
        self.execute(&sql).await
    }

    /// Runs the backfill for a slice of time (the runner stops 250 ms before its deadline to
    /// commit and report, so a slice of 400 ms does about 150 ms of batches). `crash_at_key`: once
    /// a batch has passed that key, the run is dropped in the middle of its next batch, as a
    /// killed process would be. Returns the outcome (`None` for the crash).
    async fn backfill_slice(
        &mut self,
        slice: Duration,
        crash_at_key: Option<i64>,
    ) -> anyhow::Result<Slice> {
        let runner = self.runner()?;
        let crash = tokio::sync::Notify::new();
        let mut started_at = None;
        let mut observe = |event: &Event| match event {
            // The lab's key is one integer column.
            Event::Started { checkpoint, .. } => {
                started_at = Some(checkpoint.cursor.as_ref().and_then(Key::as_int))
            }
            Event::Batch { checkpoint, .. }
                if crash_at_key.is_some_and(|key| {
                    checkpoint
                        .cursor
                        .as_ref()
                        .and_then(Key::as_int)
                        .is_some_and(|c| c >= key)
                }) =>
            {
                crash.notify_one();
            }
            _ => {}
        };
        let deadline = Instant::now() + slice;
        let outcome = tokio::select! {
            summary = runner.run(deadline, &mut observe) => Some(summary?.outcome),
            () = crash.notified() => None,
        };
        Ok(Slice {
            outcome,
            started_at,
        })
    }

    fn progress(&self, percent: f64, note: &str) {
        let filled = (percent / 5.0).round() as usize;
        self.say(&format!(
            "   backfill [{}{}] {percent:5.1}% {note}",
            "#".repeat(filled.min(20)),
            "-".repeat(20 - filled.min(20))
        ));
    }

    /// Absolute budgets only: sub-millisecond latencies of an embedded database, compared as
    /// ratios with v1's on a few hundred samples, would fail on one disk flush. The
    /// missing-index variant samples each version's database load between steps.
    fn traffic_settings(&self) -> TrafficSettings {
        let mut settings = TrafficSettings {
            budget: HealthBudget {
                max_p95_ms: Some(250.0),
                max_p99_ms: Some(500.0),
                ..HealthBudget::default()
            },
            compare_with_current: false,
            ..TrafficSettings::default()
        };
        if self.variant.is_some() {
            settings.load.sample = DATABASE_SAMPLE;
            settings.load.roles = self.database_user.iter().cloned().collect();
        }
        settings
    }

    /// The gates before a canary step: the pre-traffic gates, then (after the first step) v2's
    /// health against v1's over the window since the last step.
    async fn step(&mut self, weight: f64) -> anyhow::Result<bool> {
        let between_steps = self.alias.additional.is_some();
        let evaluation = if between_steps && self.variant.is_some() {
            self.sampled_decision().await?
        } else {
            self.traffic_decision(between_steps, "2").await?
        };
        let decision = &evaluation.decision;
        let overall = self.gates(
            &format!("gates before v2 -> {:.0}%", weight * 100.0),
            &decision.gates,
            decision.overall(),
        );
        let pass = overall == gate::Overall::Pass;
        if pass {
            self.alias = if weight >= 1.0 {
                Alias {
                    primary: 1,
                    additional: None,
                }
            } else {
                Alias {
                    primary: 0,
                    additional: Some((1, weight)),
                }
            };
            self.reset_window();
        }
        Ok(pass)
    }

    /// The monitor's decision between steps while traffic flows, as it does in production
    /// while the database is sampled: each version's requests on its own session, tagged as
    /// the sample app tags them; the requests count in the window after.
    async fn sampled_decision(
        &mut self,
    ) -> Result<shiftguard_core::release::Evaluation, anyhow::Error> {
        let mut sessions = Vec::with_capacity(self.versions.len());
        for version in &self.versions {
            let settings = ConnectSettings {
                read_only: false,
                ..ConnectSettings::default()
            };
            let mut session = Connection::open(&self.url, settings).await?;
            let tag = session_tag(FUNCTION, &version.stamp.version);
            let set = match session.dialect() {
                Dialect::MySql => format!("SET @shiftguard_tag = '{tag}'"),
                _ => format!("SET application_name = '{tag}'"),
            };
            session
                .raw(&set)
                .await
                .context("tagging a version's session")?;
            sessions.push(session);
        }
        let mut counters = vec![Counters::default(); self.versions.len()];
        let stop = std::cell::Cell::new(false);
        // The generator is the one piece the traffic changes; the decision reads the rest.
        let mut generator = std::mem::replace(&mut self.traffic, Traffic::new(0));
        let (cloud, database) = (self.cloud(), self.database());
        let settings = self.traffic_settings();
        let decide = async {
            let ports = lab_ports(&cloud, &database);
            let decided = decide::between_steps(ports, self.release(), &settings, "2").await;
            stop.set(true);
            decided
        };
        let traffic = async {
            while !stop.get() {
                let sessions = sessions.as_mut_slice();
                generator
                    .send(sessions, &self.versions, &self.alias, 20, &mut counters)
                    .await;
            }
        };
        let (decided, ()) = tokio::join!(decide, traffic);
        database.close().await;
        self.traffic = generator;
        for session in sessions {
            session.close().await;
        }
        for (window, sampled) in self.window.iter_mut().zip(&counters) {
            window.add(sampled);
        }
        Ok(decided?)
    }

    /// The missing-index variant's canary: v2 at 10% looks users up by `display_name`; before
    /// the next step the database's view fails it, while its errors and latency pass.
    async fn canary_stopped_by_the_database(&mut self) -> anyhow::Result<()> {
        self.stage(
            "canary 10% -> 50%: v2 finds users by display_name, which the expand did not index",
            "the gates before 50% fail v2 on what it costs the database (time or work per call against v1's), while its errors and latency pass: the canary stops at 10%",
        );
        if self.connection.dialect() == Dialect::Postgres {
            // Where the extension cannot be created, the sample says why (a failing gate).
            let _ = self
                .connection
                .raw("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                .await;
        }
        let passed = self.step(0.10).await?;
        self.check(passed, "v2 at 10%".to_owned());
        if !passed {
            return Ok(());
        }
        let needed = 2 * self.traffic_settings().budget.min_invocations;
        for _ in 0..500 {
            if self.window[1].invocations >= needed {
                break;
            }
            self.tick().await;
        }
        let moved = self.step(0.5).await?;
        let decided: Vec<&GateEvent> = self
            .record
            .gates
            .iter()
            .rev()
            .take_while(|g| g.decision.starts_with("gates before v2 -> 50%"))
            .collect();
        let (mut database, mut health) = (Vec::new(), Vec::new());
        for gate in decided.into_iter().rev() {
            if gate.gate.starts_with("database:") {
                database.push((gate.gate.clone(), gate.verdict, gate.reason.clone()));
            } else if gate.gate.starts_with("health:") {
                health.push((gate.gate.clone(), gate.verdict));
            }
        }
        // Time per call, or (on a table small enough to scan under the 1 ms floor) the work
        // per call: blocks on PostgreSQL, rows examined on MySQL/MariaDB.
        let costs: Vec<String> = database
            .iter()
            .filter(|(gate, verdict, _)| gate != "database:sample" && *verdict == "fail")
            .map(|(gate, _, reason)| format!("{gate}: {}", reason.as_deref().unwrap_or_default()))
            .collect();
        self.check(
            !moved && !costs.is_empty(),
            format!(
                "the canary stayed at 10%: {}",
                if costs.is_empty() {
                    format!("no database gate failed on cost: {database:?}")
                } else {
                    costs.join("; ")
                }
            ),
        );
        self.check(
            !health.is_empty() && health.iter().all(|(_, verdict)| *verdict == "pass"),
            format!("errors and latency alone would have let v2 through: {health:?}"),
        );
        Ok(())
    }

    async fn canary_and_backfill(&mut self) -> anyhow::Result<()> {
        self.stage(
            "canary 10% -> 50% -> 100%, the backfill running between the steps; killed half-way",
            "every step's gates pass; the backfill resumes from its checkpoint after the kill; rows v1 writes meanwhile are caught by a later pass",
        );
        let passed = self.step(0.10).await?;
        self.check(passed, "v2 at 10%".to_owned());
        if !passed {
            return Ok(());
        }
        let half = (self.record.rows / 2) as i64;
        let mut killed = false;
        let mut steps = [0.5, 1.0].into_iter().peekable();
        let mut shown = 0.0;
        for round in 0.. {
            if round > 10_000 {
                bail!("the backfill did not complete");
            }
            self.tick().await;
            let slice = self
                .backfill_slice(Duration::from_millis(400), (!killed).then_some(half))
                .await?;
            let status = self.backfill_status().await?;
            let (percent, checkpoint) = (status.percent, status.checkpoint);
            let Some(outcome) = slice.outcome else {
                killed = true;
                let cursor = checkpoint.and_then(|c| c.cursor).and_then(|k| k.as_int());
                self.resume_after_the_kill(cursor, percent).await?;
                continue;
            };
            if percent - shown >= 10.0 || outcome == RunOutcome::Complete {
                self.progress(percent, "");
                shown = percent;
            }
            let passes = checkpoint.as_ref().map_or(0, |c| c.passes);
            // 50% once the backfill is half-way; 100% once a later pass has begun (the sweep
            // found rows v1 wrote after the first pass went by).
            let due = match steps.peek() {
                Some(&w) if w < 1.0 => percent >= 50.0,
                Some(_) => passes >= 2,
                None => false,
            };
            if due && let Some(weight) = steps.next() {
                // Bake: enough of v2's traffic since the last step to judge its health.
                let needed = 2 * self.traffic_settings().budget.min_invocations;
                for _ in 0..500 {
                    if self.window[1].invocations >= needed {
                        break;
                    }
                    self.tick().await;
                }
                let passed = self.step(weight).await?;
                self.check(passed, format!("v2 at {:.0}%", weight * 100.0));
                if !passed {
                    return Ok(());
                }
            }
            if outcome == RunOutcome::Complete && steps.peek().is_none() {
                let updated = checkpoint.as_ref().map_or(0, |c| c.rows_updated);
                let rows = self.record.rows;
                self.check(
                    status.first_pending_key.is_none() && passes >= 2 && updated > rows,
                    format!(
                        "backfill complete in {passes} passes: {updated} rows, the {rows} from before the release and {} v1 wrote during it, the last of them caught by pass {passes}; nothing pending",
                        updated.saturating_sub(rows)
                    ),
                );
                break;
            }
        }
        self.check(killed, "the backfill was killed half-way".to_owned());
        Ok(())
    }

    /// After the kill: the next run must start where the checkpoint says, not from the start.
    /// A server may hold the killed session's lock until it notices the disconnect: a busy
    /// answer is retried for a while.
    async fn resume_after_the_kill(
        &mut self,
        cursor: Option<i64>,
        percent: f64,
    ) -> anyhow::Result<()> {
        self.progress(
            percent,
            "KILLED mid-batch (the run was dropped; its open transaction rolled back)",
        );
        for _ in 0..50 {
            let resumed = self
                .backfill_slice(Duration::from_millis(400), None)
                .await?;
            if let Some(RunOutcome::Busy { .. }) = resumed.outcome {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            self.check(
                cursor.is_some() && resumed.started_at == Some(cursor),
                format!(
                    "the next run started at cursor {}, where the checkpoint said, not from the start (it ended {:?})",
                    cursor.map_or("none".to_owned(), |c| c.to_string()),
                    resumed.outcome
                ),
            );
            return Ok(());
        }
        self.check(false, "the backfill stayed busy after the kill".to_owned());
        Ok(())
    }

    async fn cutover_and_contract(&mut self) -> anyhow::Result<()> {
        self.stage(
            "cutover (flip v2's flag), then the contract (drop users.full_name)",
            "cutover passes; contract BLOCKED while v1 was invoked in the observation window, then passes; afterwards v1 cannot run",
        );
        for _ in 0..3 {
            self.tick().await;
        }
        let record = self.approval(None).await?;
        let overall = self.gates("cutover gate", &record.gates, record.result);
        self.check(
            overall == gate::Overall::Pass,
            format!("cutover {overall:?}; the flag flips"),
        );
        if overall != gate::Overall::Pass {
            return Ok(());
        }
        self.versions[1].code = Code::NewOnly;
        self.reset_window();
        for _ in 0..3 {
            self.tick().await;
        }
        let record = self.approval(Some(CONTRACT)).await?;
        let overall = self.gates(
            "contract gate, right after the cutover",
            &record.gates,
            record.result,
        );
        let blocked_by = failing(&record.gates);
        self.check(
            blocked_by == [format!("live:{FUNCTION}:1")],
            format!("contract {overall:?}: v1 ran within the window, blocked by {blocked_by:?}"),
        );
        for _ in 0..OBSERVATION_TICKS {
            self.tick().await;
        }
        let record = self.approval(Some(CONTRACT)).await?;
        let overall = self.gates(
            &format!("contract gate, {OBSERVATION_TICKS} ticks later"),
            &record.gates,
            record.result,
        );
        self.check(
            overall == gate::Overall::Pass,
            format!("contract {overall:?}"),
        );
        if overall != gate::Overall::Pass {
            return Ok(());
        }
        self.upgrade(CONTRACT).await?;
        let (state, _) = self.state().await?;
        let v1 = self.graph.index_of(BASE).context("base")?;
        let verdict = check_build(&self.graph, v1, &state);
        let write =
            world::write_user(&mut self.connection, Code::OldOnly, self.traffic.next_id).await;
        self.check(
            !verdict.is_compatible() && write.is_err(),
            format!(
                "contract applied; v1 cannot run: the rule says {}; its INSERT fails: {}",
                verdict
                    .reasons()
                    .first()
                    .map(|r| r.to_string())
                    .unwrap_or_default(),
                write.err().unwrap_or_default()
            ),
        );
        self.reset_window();
        for _ in 0..3 {
            self.tick().await;
        }
        let errors = self.window[1].errors;
        self.check(
            errors == 0,
            format!(
                "v2 (flag on) served {} requests after the contract, {errors} errors",
                self.window[1].invocations
            ),
        );
        Ok(())
    }

    fn finish(mut self) -> Record {
        self.record.seconds = self.started.elapsed().as_secs_f64();
        self.record.result = if self.record.stages.iter().all(|s| s.ok) {
            "pass"
        } else {
            "fail"
        };
        self.record
    }
}
