//! `shiftguard gate cutover|contract`: the two approvals after a traffic shift, as pipeline
//! steps. Reads the database (heads, pending rows, check queries in read-only transactions),
//! Lambda (aliases, versions, event source mappings, provisioned concurrency) and CloudWatch
//! (per-version metrics and invocations); the decisions are `shiftguard_core::release::approval`'s.

use std::path::PathBuf;
use std::time::Duration;

use shiftguard_aws::{CloudWatchAdapter, LambdaAdapter, LiveOnAws};
use shiftguard_core::RevisionGraph;
use shiftguard_core::config::ProjectConfig;
use shiftguard_core::release::checks::MAX_WINDOW_MINUTES;
use shiftguard_core::release::decide::{self, Release};
use shiftguard_core::release::gate::{GateResult, GateVerdict, Overall};
use shiftguard_core::release::{ApprovalRecord, Ports};
use shiftguard_sql::{ConnectSettings, DEFAULT_VERSION_TABLE, DatabaseUrl, SqlDatabase};

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

/// How a gate prints its decision.
#[derive(Debug, clap::Args)]
pub struct GateOutput {
    /// Output: human (a table), json (the decision record), markdown (a CI summary:
    /// `>> "$GITHUB_STEP_SUMMARY"`).
    #[arg(long, value_enum, default_value = "human")]
    format: GateFormat,
    /// Short for --format json.
    #[arg(long, conflicts_with = "format")]
    json: bool,
}

impl GateOutput {
    fn format(&self) -> GateFormat {
        if self.json {
            GateFormat::Json
        } else {
            self.format
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum GateFormat {
    Human,
    Json,
    Markdown,
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
    shiftguard gate cutover --manifest manifest.json --function users-api --alias live --json\n  \
    shiftguard gate cutover --manifest manifest.json --function users-api --alias live \\\n      \
    --format markdown >> \"$GITHUB_STEP_SUMMARY\"\n\n\
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
    #[command(flatten)]
    output: GateOutput,
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
    #[command(flatten)]
    output: GateOutput,
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let format = match &args.gate {
        GateCommand::Cutover(a) => a.output.format(),
        GateCommand::Contract(a) => a.output.format(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        match args.gate {
            GateCommand::Cutover(args) => {
                let loaded = Loaded::read(&args.rollout).await?;
                loaded.cutover(args.previous_version.as_deref()).await
            }
            GateCommand::Contract(args) => {
                let loaded = Loaded::read(&args.rollout).await?;
                let minutes = observation_minutes(args.observation_minutes, &loaded.config)?;
                loaded.contract(&args.revision, minutes).await
            }
        }
    });
    match result {
        Ok(record) => {
            match format {
                GateFormat::Human => print_record(&record),
                GateFormat::Json => println!("{}", serde_json::to_string_pretty(&record)?),
                GateFormat::Markdown => print!("{}", markdown(&record)),
            }
            Ok(outcome(record.result))
        }
        Err(error) => {
            if format == GateFormat::Json {
                let record =
                    serde_json::json!({ "result": "error", "error": format!("{error:#}") });
                println!("{record}");
            }
            Err(error)
        }
    }
}

/// The contract gate's observation window: `--observation-minutes`, else the configuration's.
pub fn observation_minutes(given: Option<u64>, config: &ProjectConfig) -> anyhow::Result<u64> {
    let minutes = given.unwrap_or(config.gates.observation_minutes);
    anyhow::ensure!(
        (1..=MAX_WINDOW_MINUTES).contains(&minutes),
        "--observation-minutes must be between 1 and {MAX_WINDOW_MINUTES} (30 days)"
    );
    Ok(minutes)
}

/// Exit code of a decision: 0 pass, 1 fail, 3 inconclusive.
fn outcome(overall: Overall) -> Outcome {
    match overall {
        Overall::Pass => Outcome::Safe,
        Overall::Fail => Outcome::NotSafe,
        Overall::Inconclusive => Outcome::Inconclusive,
    }
}

/// Everything a gate reads before it decides: the revisions, the configuration, the database
/// and the AWS adapters; the decisions themselves are `shiftguard_core::release::decide`'s.
pub struct Loaded<'a> {
    pub args: &'a Rollout,
    pub graph: RevisionGraph,
    pub config: ProjectConfig,
    pub url: DatabaseUrl,
    pub aws: LiveOnAws,
}

/// The ports the approvals read (no deployment: they judge the alias as it is).
type ApprovalPorts<'a> =
    Ports<'a, (), LambdaAdapter, CloudWatchAdapter, LiveOnAws, SqlDatabase<'a>>;

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
            aws: LiveOnAws {
                lambda: LambdaAdapter::new(&aws),
                cloudwatch: CloudWatchAdapter::new(&aws),
            },
        })
    }

    pub fn release(&self) -> Release<'_> {
        Release {
            graph: &self.graph,
            config: &self.config,
        }
    }

    pub fn app(&self) -> (&str, &str) {
        (&self.args.function, &self.args.alias)
    }

    /// One read-only session per decision (each check also runs in a read-only transaction).
    pub fn database(&self) -> SqlDatabase<'_> {
        let settings = ConnectSettings {
            timeout: Duration::from_secs(self.args.connect_timeout),
            ..ConnectSettings::default()
        };
        SqlDatabase::new(&self.url, &self.args.version_table, settings)
    }

    pub fn ports<'b>(&'b self, database: &'b SqlDatabase<'b>) -> ApprovalPorts<'b> {
        Ports {
            deployments: &(),
            functions: &self.aws.lambda,
            health: &self.aws.cloudwatch,
            live: &self.aws,
            database,
        }
    }

    /// The cutover decision now.
    pub async fn cutover(&self, previous_version: Option<&str>) -> anyhow::Result<ApprovalRecord> {
        let database = self.database();
        let ports = self.ports(&database);
        let record = decide::cutover(ports, self.release(), self.app(), previous_version).await;
        database.close().await;
        Ok(record?)
    }

    /// The contract decision for `revision` now.
    pub async fn contract(
        &self,
        revision: &str,
        observation_minutes: u64,
    ) -> anyhow::Result<ApprovalRecord> {
        let database = self.database();
        let ports = self.ports(&database);
        let window = Duration::from_secs(observation_minutes * 60);
        let record = decide::contract(ports, self.release(), self.app(), revision, window).await;
        database.close().await;
        Ok(record?)
    }
}

/// The gates as a table, then the verdict.
pub fn print_record(record: &ApprovalRecord) {
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
            .filter(|g| g.decides())
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

/// The decision as a CI summary: what was judged, a row per gate, the verdict.
pub fn markdown(record: &ApprovalRecord) -> String {
    use crate::markdown::{cell, code, table};
    let about = match &record.revision {
        Some(revision) => format!("{} to {revision}", record.gate),
        None => record.gate.to_string(),
    };
    let result = match record.result {
        Overall::Pass => "PASS",
        Overall::Fail => "FAIL",
        Overall::Inconclusive => "INCONCLUSIVE",
    };
    let heads = if record.database_heads.is_empty() {
        "none".to_owned()
    } else {
        record.database_heads.join(", ")
    };
    let rows: Vec<Vec<String>> = record
        .gates
        .iter()
        .map(|gate| {
            let (mark, reason) = match &gate.verdict {
                GateVerdict::Pass => (":white_check_mark: pass", ""),
                GateVerdict::Fail(reason) => (":x: FAIL", reason.as_str()),
                GateVerdict::Inconclusive(reason) => {
                    (":grey_question: inconclusive", reason.as_str())
                }
            };
            vec![
                if gate.observed {
                    format!("{mark} (observed)")
                } else {
                    mark.to_owned()
                },
                code(&gate.gate),
                gate.value.map(|v| v.to_string()).unwrap_or_default(),
                gate.threshold.as_deref().map(cell).unwrap_or_default(),
                cell(reason),
            ]
        })
        .collect();
    format!(
        "### shiftguard gate {}: {result}

{} on {} (heads: {})

{}",
        cell(&about),
        code(&format!("{}:{}", record.function, record.alias)),
        cell(&record.database),
        cell(&heads),
        table(&["", "Gate", "Value", "Threshold", "Reason"], &rows)
    )
}

/// One line per gate: verdict (`(obs)` for an observe-only gate that did not pass), name, value
/// and threshold when measured, and the reason.
pub fn print_gates(gates: &[GateResult]) {
    let width = gates.iter().map(|g| g.gate.len()).max().unwrap_or(0);
    for gate in gates {
        let (verdict, reason) = match (&gate.verdict, gate.observed) {
            (GateVerdict::Pass, _) => ("pass", ""),
            (GateVerdict::Fail(reason), false) => ("FAIL", reason.as_str()),
            (GateVerdict::Fail(reason), true) => ("FAIL (obs)", reason.as_str()),
            (GateVerdict::Inconclusive(reason), false) => ("inconclusive", reason.as_str()),
            (GateVerdict::Inconclusive(reason), true) => ("incon. (obs)", reason.as_str()),
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
