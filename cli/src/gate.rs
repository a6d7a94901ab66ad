//! `shiftguard gate cutover|contract`: the two approvals after a traffic shift, as pipeline
//! steps. Reads the database (heads, pending rows, check queries in read-only transactions),
//! Lambda (aliases, versions, event source mappings, provisioned concurrency) and CloudWatch
//! (per-version metrics and invocations); the decisions are `shiftguard_core::approval`'s.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use shiftguard_aws::live::{FunctionLive, live_versions};
use shiftguard_aws::{CloudWatchAdapter, LambdaAdapter};
use shiftguard_core::approval::{self, Shift};
use shiftguard_core::checks::{DATABASE_TAG, GateKind, MAX_WINDOW_MINUTES};
use shiftguard_core::compat::check_build;
use shiftguard_core::config::ProjectConfig;
use shiftguard_core::gate::{
    BackfillNow, Decision, GateResult, GateVerdict, HealthBudget, Overall, VersionStamp,
    health_gates,
};
use shiftguard_core::{DatabaseState, RevisionGraph};
use shiftguard_sql::backfill::first_pending_key;
use shiftguard_sql::measure::measure;
use shiftguard_sql::{ConnectSettings, Connection, DEFAULT_VERSION_TABLE, DatabaseUrl, read_heads};

use crate::Outcome;
use crate::migrations::Source;

/// Approve the cutover (flip the flag) or the contract migration.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    shiftguard gate cutover --manifest manifest.json --function users-api --alias live\n  \
    shiftguard gate contract --manifest manifest.json --function users-api --alias live \\\n      \
    --revision 172e330d1de0\n\n\
    Each subcommand's --help has more.")]
pub struct Args {
    #[command(subcommand)]
    gate: GateCommand,
}

#[derive(Debug, clap::Subcommand)]
enum GateCommand {
    Cutover(CutoverArgs),
    Contract(ContractArgs),
}

/// What both gates read: the revisions, the configuration, the database, the function.
#[derive(Debug, clap::Args)]
pub struct Rollout {
    #[command(flatten)]
    pub source: Source,
    /// Configuration with the [[backfill]] and [[check]] definitions and [gates].
    #[arg(
        long,
        env = "SHIFTGUARD_CONFIG",
        default_value = "shiftguard.toml",
        value_name = "FILE"
    )]
    pub config: PathBuf,
    /// The shared database: postgres://, mysql://, mariadb:// or sqlite: URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub database_url: String,
    /// The app's Lambda function.
    #[arg(long, value_name = "NAME")]
    pub function: String,
    /// Its weighted alias (the one CodeDeploy shifts).
    #[arg(long, value_name = "ALIAS")]
    pub alias: String,
    /// Alembic version table name, optionally schema.table.
    #[arg(long, default_value = DEFAULT_VERSION_TABLE, value_name = "TABLE")]
    pub version_table: String,
    /// Seconds to wait for the database connection.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub connect_timeout: u64,
    /// Checkpoint table (overrides [checkpoint] table; `status` reads backfill progress there).
    #[arg(long, env = "SHIFTGUARD_CHECKPOINT_TABLE", value_name = "TABLE")]
    pub checkpoint_table: Option<String>,
}

/// Cutover: the backfills are complete now, the cutover checks hold, and the way back is open.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    shiftguard gate cutover --migrations infra/example --function users-api --alias live\n  \
    shiftguard gate cutover --manifest manifest.json --function users-api --alias live --json\n\n\
    Passes when every backfill in [gates] cutover_backfills (default: every [[backfill]]) has \
    no pending rows now, every [[check]] with gates = [\"cutover\"] is within its threshold, and \
    the version before the alias's primary is still published and can run on the database \
    (the rollback path).\n\n\
    Exit codes: 0 pass, 1 fail, 2 could not decide, 3 inconclusive (a check had nothing to \
    judge on).")]
struct CutoverArgs {
    #[command(flatten)]
    rollout: Rollout,
    /// The version to roll back to (default: the highest published version below the
    /// alias's primary).
    #[arg(long, value_name = "VERSION")]
    previous_version: Option<String>,
    /// Print the decision record as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// Contract: every version that can still run is compatible with the database at REVISION.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    shiftguard gate contract --revision 172e330d1de0 --migrations infra/example \\\n      \
    --function users-api --alias live\n  \
    shiftguard gate contract --revision 172e --manifest manifest.json --function users-api \\\n      \
    --alias live --observation-minutes 120 --json\n\n\
    Simulates the database at REVISION and checks every version that can still run against it: \
    what any alias routes to, what event source mappings and provisioned concurrency point at, \
    $LATEST, and every other version invoked in the observation window (CloudWatch \
    Invocations by ExecutedVersion). The same for every function sharing the database \
    ([gates] shared_functions, or tagged shiftguard:database = [gates] database_tag). Also: \
    the alias is not shifting traffic, the backfills in [gates] contract_backfills (default: \
    all) are complete, and every [[check]] with gates = [\"contract\"] holds.\n\n\
    Exit codes: 0 pass, 1 fail (each blocker is listed), 2 could not decide, 3 inconclusive.")]
struct ContractArgs {
    #[command(flatten)]
    rollout: Rollout,
    /// The contract revision to approve (a unique prefix is enough).
    #[arg(long, value_name = "REV")]
    revision: String,
    /// Observation window (default: [gates] observation_minutes, 60).
    #[arg(long, value_name = "MINUTES")]
    observation_minutes: Option<u64>,
    /// Print the decision record as JSON on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let json = match &args.gate {
        GateCommand::Cutover(a) => a.json,
        GateCommand::Contract(a) => a.json,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        match args.gate {
            GateCommand::Cutover(args) => {
                let loaded = Loaded::read(&args.rollout).await?;
                cutover(&loaded, args.previous_version.as_deref()).await
            }
            GateCommand::Contract(args) => {
                let loaded = Loaded::read(&args.rollout).await?;
                let minutes = args
                    .observation_minutes
                    .unwrap_or(loaded.config.gates.observation_minutes);
                anyhow::ensure!(
                    (1..=MAX_WINDOW_MINUTES).contains(&minutes),
                    "--observation-minutes must be between 1 and {MAX_WINDOW_MINUTES} (30 days)"
                );
                contract(&loaded, &args.revision, minutes).await
            }
        }
    });
    match result {
        Ok(record) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&record)?);
            } else {
                print_record(&record);
            }
            Ok(outcome(record.result))
        }
        Err(error) => {
            if json {
                let record =
                    serde_json::json!({ "result": "error", "error": format!("{error:#}") });
                println!("{record}");
            }
            Err(error)
        }
    }
}

/// Exit code of a decision: 0 pass, 1 fail, 3 inconclusive.
fn outcome(overall: Overall) -> Outcome {
    match overall {
        Overall::Pass => Outcome::Safe,
        Overall::Fail => Outcome::NotSafe,
        Overall::Inconclusive => Outcome::Inconclusive,
    }
}

/// Everything a gate reads before it decides.
pub struct Loaded<'a> {
    pub args: &'a Rollout,
    pub graph: RevisionGraph,
    pub config: ProjectConfig,
    pub url: DatabaseUrl,
    pub lambda: LambdaAdapter,
    pub cloudwatch: CloudWatchAdapter,
}

impl<'a> Loaded<'a> {
    pub async fn read(args: &'a Rollout) -> anyhow::Result<Self> {
        // CloudWatch's dimensions and the event source mappings name the function by its bare
        // name: an ARN would match nothing there and pass.
        let plain = |name: &str| {
            (1..=64).contains(&name.len())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        anyhow::ensure!(
            plain(&args.function),
            "--function `{}`: give the function's name (letters, digits, `-`, `_`), not an ARN or a qualified name",
            args.function
        );
        anyhow::ensure!(
            plain(&args.alias),
            "--alias `{}`: give the alias's name",
            args.alias
        );
        let graph = args.source.load()?;
        let mut config = crate::read_config(&args.config)?;
        if let Some(table) = &args.checkpoint_table {
            config.checkpoint.table.clone_from(table);
        }
        let url = DatabaseUrl::parse(&args.database_url)?;
        let aws = aws_config::load_from_env().await;
        Ok(Loaded {
            args,
            graph,
            config,
            url,
            lambda: LambdaAdapter::new(&aws),
            cloudwatch: CloudWatchAdapter::new(&aws),
        })
    }

    /// The database now: heads, the named backfills' first pending keys, and the gate's SQL
    /// checks, each measured in a read-only transaction.
    pub async fn database(
        &self,
        backfills: &[String],
        gate: GateKind,
    ) -> anyhow::Result<DatabaseNow> {
        let settings = ConnectSettings {
            timeout: Duration::from_secs(self.args.connect_timeout),
            ..ConnectSettings::default()
        };
        let mut connection = Connection::open(&self.url, settings).await?;
        let read = async {
            let heads = read_heads(&mut connection, &self.url, &self.args.version_table).await?;
            let mut now = Vec::new();
            for name in backfills {
                let config = self
                    .config
                    .backfill(name)
                    .with_context(|| format!("no backfill named {name} in the configuration"))?;
                now.push(BackfillNow {
                    name: name.clone(),
                    first_pending_key: first_pending_key(&mut connection, &self.url, config)
                        .await?,
                });
            }
            let mut checks = Vec::new();
            for check in self.config.checks_for(gate) {
                if let Some(query) = &check.query {
                    let limit = Duration::from_millis(check.statement_timeout_ms);
                    let value = measure(&mut connection, &self.url, query, limit)
                        .await
                        .with_context(|| format!("check {}", check.name))?;
                    checks.push(check.judge(value));
                }
            }
            anyhow::Ok(DatabaseNow {
                heads,
                backfills: now,
                checks,
            })
        }
        .await;
        connection.close().await;
        read
    }

    /// The gate's metric checks, on the alias's primary version.
    pub async fn metric_checks(
        &self,
        gate: GateKind,
        primary: &str,
    ) -> anyhow::Result<Vec<GateResult>> {
        let mut results = Vec::new();
        if gate == GateKind::Cutover && !self.config.checks_for(gate).any(|c| c.metric.is_some()) {
            // The cutover always judges the primary's health; without a metric check of its
            // own, by the hooks' default budget over the last 15 minutes.
            let metrics = self
                .cloudwatch
                .version_metrics(
                    &self.args.function,
                    &self.args.alias,
                    primary,
                    Duration::from_secs(15 * 60),
                )
                .await?;
            results.extend(health_gates(&metrics, None, &HealthBudget::default()));
        }
        for check in self.config.checks_for(gate) {
            if check.metric.is_some() {
                let window = Duration::from_secs(check.window_minutes * 60);
                let metrics = self
                    .cloudwatch
                    .version_metrics(&self.args.function, &self.args.alias, primary, window)
                    .await?;
                results.push(check.judge_metrics(&metrics));
            }
        }
        Ok(results)
    }

    /// The alias's routing; a missing function or alias is an error, named.
    pub async fn alias(&self) -> anyhow::Result<(String, Vec<(String, f64)>)> {
        Ok(self
            .lambda
            .alias_routing(&self.args.function, &self.args.alias)
            .await?)
    }
}

/// What the database shows now.
pub struct DatabaseNow {
    pub heads: Vec<String>,
    pub backfills: Vec<BackfillNow>,
    pub checks: Vec<GateResult>,
}

/// The decision record a gate prints (`--json`) and explains.
#[derive(Debug, Serialize)]
pub struct Record {
    pub gate: GateKind,
    pub result: Overall,
    /// Contract: the revision approved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    pub database: String,
    pub database_heads: Vec<String>,
    pub function: String,
    pub alias: String,
    /// Contract: every function checked, with its aliases and live versions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub functions: Vec<FunctionLive>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub backfills: Vec<BackfillNow>,
    /// Cutover: the version the rollback would return to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_version: Option<VersionStamp>,
    pub gates: Vec<GateResult>,
}

pub async fn cutover(
    loaded: &Loaded<'_>,
    previous_version: Option<&str>,
) -> anyhow::Result<Record> {
    let args = loaded.args;
    let (primary, additional) = loaded.alias().await?;
    let backfills = loaded.config.gate_backfills(GateKind::Cutover);
    let db = loaded.database(&backfills, GateKind::Cutover).await?;
    let mut checks = db.checks;
    checks.extend(loaded.metric_checks(GateKind::Cutover, &primary).await?);
    let state = DatabaseState::new(&loaded.graph, &db.heads)?;
    let versions = loaded.lambda.versions(&args.function).await?;
    let previous = match previous_version {
        Some(version) => versions
            .iter()
            .find(|v| v.version == version)
            .cloned()
            .ok_or_else(|| format!("{} has no published version {version}", args.function)),
        None => previous_of(&versions, &primary).ok_or_else(|| {
            format!(
                "{} has no published version below {primary} to roll back to",
                args.function
            )
        }),
    };
    let shift = Shift {
        function: args.function.clone(),
        alias: args.alias.clone(),
        primary,
        additional,
    };
    let decision = approval::cutover(
        &loaded.graph,
        &state,
        &shift,
        previous.as_ref().map_err(Clone::clone),
        (&backfills, &db.backfills),
        checks,
    );
    Ok(Record {
        gate: GateKind::Cutover,
        result: decision.overall(),
        revision: None,
        database: loaded.url.target().to_owned(),
        database_heads: db.heads,
        function: args.function.clone(),
        alias: args.alias.clone(),
        functions: Vec::new(),
        backfills: db.backfills,
        rollback_version: previous.ok(),
        gates: decision.gates,
    })
}

/// The highest published version below `primary` (versions are numbered).
fn previous_of(versions: &[VersionStamp], primary: &str) -> Option<VersionStamp> {
    let primary: u64 = primary.parse().ok()?;
    versions
        .iter()
        .filter_map(|v| v.version.parse::<u64>().ok().map(|n| (n, v)))
        .filter(|(n, _)| *n < primary)
        .max_by_key(|(n, _)| *n)
        .map(|(_, v)| v.clone())
}

pub async fn contract(
    loaded: &Loaded<'_>,
    revision: &str,
    observation_minutes: u64,
) -> anyhow::Result<Record> {
    let (args, graph) = (loaded.args, &loaded.graph);
    let target = graph
        .resolve(revision)
        .with_context(|| format!("contract revision {revision}"))?;
    let revision = graph.revision(target).id.clone();
    // The alias must exist: a typo must not pass as "nothing live".
    let (primary, additional) = loaded.alias().await?;
    let backfills = loaded.config.gate_backfills(GateKind::Contract);
    let db = loaded.database(&backfills, GateKind::Contract).await?;
    let after = approval::state_after(graph, &db.heads, &revision)?;
    let mut checks = db.checks;
    checks.extend(loaded.metric_checks(GateKind::Contract, &primary).await?);

    let mut functions = vec![args.function.clone()];
    for shared in &loaded.config.gates.shared_functions {
        if !functions.contains(shared) {
            functions.push(shared.clone());
        }
    }
    if let Some(value) = &loaded.config.gates.database_tag {
        for tagged in loaded.lambda.functions_tagged(DATABASE_TAG, value).await? {
            if !functions.contains(&tagged) {
                functions.push(tagged);
            }
        }
    }
    // Only versions that could not run at the revision matter if invoked.
    let cannot_run = |stamp: &VersionStamp| {
        stamp
            .schema_revision
            .as_deref()
            .and_then(|r| graph.index_of(r))
            .is_none_or(|build| !check_build(graph, build, &after).is_compatible())
    };
    let window = Duration::from_secs(observation_minutes * 60);
    let mut records = Vec::new();
    let mut live = Vec::new();
    for function in &functions {
        let found = live_versions(
            &loaded.lambda,
            &loaded.cloudwatch,
            function,
            window,
            cannot_run,
        )
        .await?;
        live.extend(found.live.iter().cloned());
        records.push(found);
    }
    // The app's alias always; any other alias of a checked function while it splits traffic.
    let mut shifts = vec![Shift {
        function: args.function.clone(),
        alias: args.alias.clone(),
        primary,
        additional,
    }];
    shifts.extend(
        records
            .iter()
            .flat_map(|r| r.aliases.iter())
            .filter(|a| !a.additional.is_empty())
            .filter(|a| !(a.function == args.function && a.alias == args.alias))
            .cloned(),
    );
    let decision: Decision = approval::contract(
        graph,
        &after,
        &live,
        &shifts,
        (&backfills, &db.backfills),
        checks,
    );
    Ok(Record {
        gate: GateKind::Contract,
        result: decision.overall(),
        revision: Some(revision),
        database: loaded.url.target().to_owned(),
        database_heads: db.heads,
        function: args.function.clone(),
        alias: args.alias.clone(),
        functions: records,
        backfills: db.backfills,
        rollback_version: None,
        gates: decision.gates,
    })
}

/// The gates as a table, then the verdict.
pub fn print_record(record: &Record) {
    let about = match &record.revision {
        Some(revision) => format!("{} to {revision}", record.gate),
        None => record.gate.to_string(),
    };
    println!(
        "{about}: {}:{} on {} (heads: {})",
        record.function,
        record.alias,
        record.database,
        if record.database_heads.is_empty() {
            "none".to_owned()
        } else {
            record.database_heads.join(", ")
        }
    );
    print_gates(&record.gates);
    let named = |inconclusive: bool| {
        let names: Vec<&str> = record
            .gates
            .iter()
            .filter(|g| match g.verdict {
                GateVerdict::Pass => false,
                GateVerdict::Fail(_) => !inconclusive,
                GateVerdict::Inconclusive(_) => inconclusive,
            })
            .map(|g| g.gate.as_str())
            .collect();
        names.join(", ")
    };
    match record.result {
        Overall::Pass => println!("result: PASS ({} gates)", record.gates.len()),
        Overall::Fail => {
            let undecided = named(true);
            println!(
                "result: FAIL: blocked by {}{}",
                named(false),
                if undecided.is_empty() {
                    String::new()
                } else {
                    format!("; inconclusive: {undecided}")
                }
            );
        }
        Overall::Inconclusive => {
            println!(
                "result: INCONCLUSIVE: nothing to judge on for {}",
                named(true)
            );
        }
    }
}

/// One line per gate: verdict, name, value and threshold when measured, and the reason.
pub fn print_gates(gates: &[GateResult]) {
    let width = gates.iter().map(|g| g.gate.len()).max().unwrap_or(0);
    for gate in gates {
        let (verdict, reason) = match &gate.verdict {
            GateVerdict::Pass => ("pass", ""),
            GateVerdict::Fail(reason) => ("FAIL", reason.as_str()),
            GateVerdict::Inconclusive(reason) => ("inconclusive", reason.as_str()),
        };
        let measured = match (&gate.value, &gate.threshold) {
            (Some(value), Some(threshold)) => format!("value {value} (threshold {threshold})  "),
            (None, Some(threshold)) => format!("no value (threshold {threshold})  "),
            _ => String::new(),
        };
        let line = format!("  {verdict:<12}  {:<width$}  {measured}{reason}", gate.gate);
        println!("{}", line.trim_end());
    }
}
