//! `shiftguard migrate expand|contract`: a release's migrations applied by phase, so that no
//! pipeline applies a contract before its gate. `expand` applies the expand frontier (everything
//! reachable from the database's heads without a contract revision); `contract` runs the
//! contract gate and applies the one revision it approved. Both run the project's own Alembic,
//! one `alembic upgrade` target at a time, and read the version table back after each.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use shiftguard_core::rehearsal::described;
use shiftguard_core::release::ApprovalRecord;
use shiftguard_core::release::gate::Overall;
use shiftguard_core::schema::frontier::Frontier;
use shiftguard_core::schema::scan::load_migrations;
use shiftguard_core::{
    DatabaseState, Phase, PhaseSource, RevisionGraph, RevisionIndex, RevisionSet,
};
use shiftguard_sql::migrate_lock::MigrationLock;
use shiftguard_sql::rehearsal::tables;
use shiftguard_sql::{
    ConnectSettings, Connection, DEFAULT_VERSION_TABLE, DatabaseUrl, SqlError, read_heads,
};

use crate::Outcome;
use crate::gate::{self, Loaded, Rollout};
use crate::process::{self, Alembic, Finished, alembic_url, find_alembic, idle};

/// Apply a release's migrations by phase: the expand now, each contract after its gate.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    shiftguard migrate expand --migrations . --database-url \"$DATABASE_URL\" --dry-run\n  \
    shiftguard migrate expand --migrations . --json\n  \
    shiftguard migrate contract --revision 172e330d1de0 --migrations . \\\n      \
    --function users-api --alias live\n\n\
    Each subcommand's --help has more.")]
pub struct Args {
    #[command(subcommand)]
    migrate: MigrateCommand,
}

#[derive(Debug, clap::Subcommand)]
enum MigrateCommand {
    Expand(ExpandArgs),
    Contract(ContractArgs),
}

/// The expand: every revision reachable from the database's heads without applying a contract.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    shiftguard migrate expand --migrations . --database-url postgresql+psycopg://app@db/app\n  \
    shiftguard migrate expand --migrations services/users --dry-run --json\n\n\
    From the revisions the database has applied (its version table), the expand is every \
    revision that is not a contract and whose requirements are applied or in the expand \
    (branches and merges included). Its newest revisions are applied one `alembic upgrade` \
    at a time with the project's own Alembic; after each, the version table must hold exactly \
    what was planned. Contract revisions, and everything behind one, are listed: each waits \
    for `shiftguard migrate contract`.\n\n\
    The URL reaches Alembic as `sqlalchemy.url` (in a copy of alembic.ini), SQLALCHEMY_URL and \
    DATABASE_URL; without a driver, +psycopg and +pymysql are assumed.\n\n\
    Exit codes: 0 applied (or nothing to apply; --dry-run: the plan); 1 an Alembic command \
    failed or the version table is not what was planned (what was applied before is listed); \
    2 bad input or an unreadable database (nothing applied); 75 another `shiftguard migrate` \
    is migrating the database (nothing applied; try again).")]
struct ExpandArgs {
    /// The Alembic project directory (holding alembic.ini and/or pyproject.toml).
    #[arg(long, value_name = "DIR")]
    migrations: PathBuf,
    /// The database to migrate: postgres://, mysql://, sqlite: (or SQLAlchemy's spelling).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_name = "URL")]
    database_url: String,
    /// Print what would be applied, and apply nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Alembic version table name, optionally schema.table.
    #[arg(long, default_value = DEFAULT_VERSION_TABLE, value_name = "TABLE")]
    version_table: String,
    /// Seconds to wait for the database connection.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    connect_timeout: u64,
    /// The Alembic executable (default: `alembic` on PATH).
    #[arg(long, env = "SHIFTGUARD_ALEMBIC", value_name = "PATH")]
    alembic: Option<PathBuf>,
}

/// A contract revision, applied only when the contract gate passes.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    shiftguard migrate contract --revision 172e330d1de0 --migrations . \\\n      \
    --function users-api --alias live\n  \
    shiftguard migrate contract --revision 172e --migrations services/users \\\n      \
    --config services/users/shiftguard.toml --function users-api --alias live --json\n\n\
    Runs `shiftguard gate contract` (the same decision, the same arguments) and, when it \
    passes and the database is still where the gate saw it, `alembic upgrade REVISION` with \
    the project's own Alembic; the version table is read back.\n\n\
    Exit codes: 0 applied (or already applied); 1 the gate failed (nothing applied; each \
    blocker is listed) or Alembic failed; 2 could not decide (nothing applied); 3 \
    inconclusive (nothing applied); 75 another `shiftguard migrate` is migrating the database \
    (nothing applied).")]
struct ContractArgs {
    #[command(flatten)]
    rollout: Rollout,
    /// The contract revision to apply (a unique prefix is enough).
    #[arg(long, value_name = "REV")]
    revision: String,
    /// Observation window (default: [gates] observation_minutes, 60).
    #[arg(long, value_name = "MINUTES")]
    observation_minutes: Option<u64>,
    /// Print the gate's record and what was applied as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// The Alembic executable (default: `alembic` on PATH).
    #[arg(long, env = "SHIFTGUARD_ALEMBIC", value_name = "PATH")]
    alembic: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let json = match &args.migrate {
        MigrateCommand::Expand(a) => a.json,
        MigrateCommand::Contract(a) => a.json,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        match args.migrate {
            MigrateCommand::Expand(args) => expand(args).await,
            MigrateCommand::Contract(args) => contract(args).await,
        }
    });
    if let Err(error) = &result
        && json
    {
        let record = serde_json::json!({ "result": "error", "error": format!("{error:#}") });
        println!("{record}");
    }
    result
}

/// One revision in a report.
#[derive(Debug, Serialize)]
struct Listed {
    revision: String,
    phase: Phase,
    phase_source: PhaseSource,
    message: Option<String>,
}

/// What `migrate expand` did, or would do.
#[derive(Debug, Serialize)]
struct ExpandReport {
    /// `applied`, `nothing_to_apply`, `dry_run` or `failed`.
    result: &'static str,
    database: String,
    heads_before: Vec<String>,
    heads_after: Vec<String>,
    /// The `alembic upgrade` targets, in order.
    targets: Vec<String>,
    /// What the expand applies (applied, or with --dry-run would apply), in order.
    applies: Vec<Listed>,
    /// Contract revisions that are next: each waits for its gate.
    contracts: Vec<Listed>,
    /// Revisions behind a contract.
    behind: Vec<String>,
    error: Option<String>,
    /// The lines of Alembic's output that carry its error.
    error_lines: Vec<String>,
}

async fn expand(args: ExpandArgs) -> anyhow::Result<Outcome> {
    let graph = load_migrations(&args.migrations)?.graph;
    let url = DatabaseUrl::parse(&args.database_url).context("--database-url")?;
    let migrator = Migrator {
        alembic: Alembic::new(find_alembic(args.alembic.as_deref())?, &args.migrations)?,
        alembic_url: alembic_url(&args.database_url, &url),
        url,
        version_table: args.version_table,
        connect_timeout: Duration::from_secs(args.connect_timeout),
    };
    // One `migrate` at a time on a database (a dry run only reads).
    let lock = if args.dry_run {
        None
    } else {
        match migrator.lock().await? {
            Some(lock) => Some(lock),
            None => return Ok(busy(&migrator, args.json)),
        }
    };
    let before = migrator.heads().await?;
    if before.is_empty() {
        migrator.expect_new_database().await?;
    }
    let state = DatabaseState::new(&graph, &before)?;
    let frontier = Frontier::of(&graph, &state);
    let list = |indexes: &[RevisionIndex]| -> Vec<Listed> {
        indexes.iter().map(|&i| listed(&graph, i)).collect()
    };
    let mut report = ExpandReport {
        result: if frontier.is_empty() {
            "nothing_to_apply"
        } else if args.dry_run {
            "dry_run"
        } else {
            "applied"
        },
        database: migrator.url.target().to_owned(),
        heads_after: before.clone(),
        heads_before: before,
        targets: ids(&graph, &frontier.targets),
        applies: list(&frontier.applies),
        contracts: list(&frontier.contracts),
        behind: ids(&graph, &frontier.behind),
        error: None,
        error_lines: Vec::new(),
    };
    let outcome = if args.dry_run {
        Outcome::Safe
    } else {
        apply_expand(&migrator, &graph, &state, &frontier, &mut report).await?
    };
    if let Some(lock) = lock {
        lock.release().await;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_expand(&report);
    }
    Ok(outcome)
}

/// Upgrades to each target in turn; after each, the version table must hold what was planned.
async fn apply_expand(
    migrator: &Migrator,
    graph: &RevisionGraph,
    state: &DatabaseState,
    frontier: &Frontier,
    report: &mut ExpandReport,
) -> anyhow::Result<Outcome> {
    let mut reached: Vec<RevisionIndex> = state.heads().to_vec();
    for &target in &frontier.targets {
        reached.push(target);
        let expected = graph.ancestors(reached.iter().copied());
        match migrator
            .upgrade_to(graph, target, &expected, &report.heads_after)
            .await
        {
            Ok(heads) => report.heads_after = heads,
            Err(failure) => {
                // Only what the version table shows applied is listed as applied.
                let now = DatabaseState::new(graph, &failure.heads).ok();
                report.applies.retain(|listed| {
                    let index = graph.index_of(&listed.revision);
                    now.as_ref()
                        .zip(index)
                        .is_some_and(|(now, index)| now.applied().contains(index))
                });
                report.result = "failed";
                report.heads_after = failure.heads;
                report.error = Some(failure.message);
                report.error_lines = failure.lines;
                return Ok(Outcome::NotSafe);
            }
        }
    }
    Ok(Outcome::Safe)
}

/// `a1, b2`, or `none`.
fn heads(heads: &[String]) -> String {
    if heads.is_empty() {
        "none".to_owned()
    } else {
        heads.join(", ")
    }
}

fn print_expand(report: &ExpandReport) {
    println!(
        "migrate expand: {} (heads: {})",
        report.database,
        heads(&report.heads_before)
    );
    let verb = match report.result {
        "dry_run" => "would apply",
        _ => "apply",
    };
    for revision in &report.applies {
        print_listed(verb, revision);
    }
    match report.result {
        "nothing_to_apply" => println!("nothing to apply: the expand is applied"),
        "dry_run" => println!(
            "dry run: nothing applied ({} revision(s) with `alembic upgrade` to {})",
            report.applies.len(),
            report.targets.join(", then ")
        ),
        "failed" => {
            print_failure("", report.error.as_deref(), &report.error_lines);
            println!("heads now: {}", heads(&report.heads_after));
        }
        _ => println!(
            "applied {} revision(s); heads now: {}",
            report.applies.len(),
            heads(&report.heads_after)
        ),
    }
    if !report.contracts.is_empty() {
        println!("waiting for the contract gate (shiftguard migrate contract --revision REV):");
        for revision in &report.contracts {
            print_listed("wait", revision);
        }
        if !report.behind.is_empty() {
            println!("  behind them: {}", report.behind.join(", "));
        }
    }
}

fn print_listed(verb: &str, revision: &Listed) {
    let line = format!(
        "  {verb:<11} {}  ({})  {}",
        revision.revision,
        described(revision.phase, revision.phase_source),
        revision.message.as_deref().unwrap_or("")
    );
    println!("{}", line.trim_end());
}

/// What `migrate contract` did after the gate.
#[derive(Debug, Serialize)]
struct ContractReport<'a> {
    /// `applied`, `already_applied`, `not_applied` (the gate did not pass) or `failed`.
    result: &'static str,
    gate: &'a ApprovalRecord,
    revision: String,
    /// The revisions `alembic upgrade` applied (the contract and what it requires).
    applied: Vec<Listed>,
    heads_after: Vec<String>,
    error: Option<String>,
    error_lines: Vec<String>,
}

async fn contract(args: ContractArgs) -> anyhow::Result<Outcome> {
    let Some(project) = &args.rollout.source.migrations else {
        anyhow::bail!(
            "migrate contract applies the revision with Alembic: give --migrations DIR (the Alembic project), not --manifest"
        );
    };
    let alembic = Alembic::new(find_alembic(args.alembic.as_deref())?, project)?;
    let loaded = Loaded::read(&args.rollout).await?;
    let minutes = gate::observation_minutes(args.observation_minutes, &loaded.config)?;
    let graph = &loaded.graph;
    let target = graph
        .resolve(&args.revision)
        .with_context(|| format!("--revision {}", args.revision))?;
    let migrator = Migrator {
        alembic,
        alembic_url: alembic_url(&args.rollout.database_url, &loaded.url),
        url: loaded.url.clone(),
        version_table: args.rollout.version_table.clone(),
        connect_timeout: Duration::from_secs(args.rollout.connect_timeout),
    };
    let record = loaded.contract(&args.revision, minutes).await?;
    let mut report = ContractReport {
        result: "not_applied",
        gate: &record,
        revision: graph.revision(target).id.clone(),
        applied: Vec::new(),
        heads_after: record.database_heads.clone(),
        error: None,
        error_lines: Vec::new(),
    };
    let outcome = match record.result {
        Overall::Pass => match migrator.lock().await? {
            Some(lock) => {
                let applied = apply_contract(&migrator, graph, target, &mut report).await;
                lock.release().await;
                applied?
            }
            None => return Ok(busy(&migrator, args.json)),
        },
        Overall::Fail => Outcome::NotSafe,
        Overall::Inconclusive => Outcome::Inconclusive,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        gate::print_record(&record);
        print_contract(&report);
    }
    Ok(outcome)
}

/// Applies the approved revision, if the database is still where the gate saw it.
async fn apply_contract(
    migrator: &Migrator,
    graph: &RevisionGraph,
    target: RevisionIndex,
    report: &mut ContractReport<'_>,
) -> anyhow::Result<Outcome> {
    let now = migrator.heads().await?;
    let mut seen = report.gate.database_heads.clone();
    seen.sort();
    if now != seen {
        anyhow::bail!(
            "the database moved while the gate decided (heads {seen:?}, now {now:?}): nothing applied; run it again"
        );
    }
    let state = DatabaseState::new(graph, &now)?;
    if state.applied().contains(target) {
        report.result = "already_applied";
        return Ok(Outcome::Safe);
    }
    let expected = graph.ancestors(state.heads().iter().copied().chain([target]));
    match migrator.upgrade_to(graph, target, &expected, &now).await {
        Ok(heads) => {
            report.result = "applied";
            report.applied = graph
                .topological()
                .filter(|&i| expected.contains(i) && !state.applied().contains(i))
                .map(|i| listed(graph, i))
                .collect();
            report.heads_after = heads;
            Ok(Outcome::Safe)
        }
        Err(failure) => {
            report.result = "failed";
            report.heads_after = failure.heads;
            report.error = Some(failure.message);
            report.error_lines = failure.lines;
            Ok(Outcome::NotSafe)
        }
    }
}

fn print_contract(report: &ContractReport) {
    match report.result {
        "applied" => {
            for revision in &report.applied {
                print_listed("applied", revision);
            }
            println!(
                "migrate contract: applied {}; heads now: {}",
                report.revision,
                heads(&report.heads_after)
            );
        }
        "already_applied" => println!(
            "migrate contract: {} is applied already: nothing to do",
            report.revision
        ),
        "failed" => print_failure(
            "migrate contract: ",
            report.error.as_deref(),
            &report.error_lines,
        ),
        _ => println!(
            "migrate contract: {} not applied: the gate did not pass",
            report.revision
        ),
    }
}

/// Another `shiftguard migrate` holds the database: exit 75, nothing applied.
fn busy(migrator: &Migrator, json: bool) -> Outcome {
    let message = format!(
        "another `shiftguard migrate` is migrating {}: nothing applied; run again when it ends",
        migrator.url.target()
    );
    if json {
        println!(
            "{}",
            serde_json::json!({ "result": "busy", "error": message })
        );
    }
    eprintln!("error: {message}");
    Outcome::Busy
}

/// `FAILED: <error>`, then the lines of Alembic's output that carry it.
fn print_failure(prefix: &str, error: Option<&str>, lines: &[String]) {
    println!("{prefix}FAILED: {}", error.unwrap_or("Alembic failed"));
    for line in lines {
        println!("  | {line}");
    }
}

/// An upgrade that did not end where it was planned to.
struct Failed {
    message: String,
    lines: Vec<String>,
    /// The version table afterwards (empty when it could not be read back).
    heads: Vec<String>,
}

/// The project's Alembic against one database, and shiftguard's own reading of its version
/// table.
struct Migrator {
    alembic: Alembic,
    url: DatabaseUrl,
    alembic_url: String,
    version_table: String,
    connect_timeout: Duration,
}

impl Migrator {
    /// The version table's rows, sorted; none when there is no version table yet (a database
    /// no release has migrated; a SQLite file Alembic will create).
    async fn heads(&self) -> anyhow::Result<Vec<String>> {
        if self.url.sqlite_path().is_some_and(|p| !p.exists()) {
            return Ok(Vec::new());
        }
        let settings = ConnectSettings {
            timeout: self.connect_timeout,
            ..ConnectSettings::default()
        };
        let mut connection = Connection::open(&self.url, settings).await?;
        let heads = read_heads(&mut connection, &self.url, &self.version_table).await;
        connection.close().await;
        match heads {
            Err(SqlError::NotUnderAlembic { .. }) => Ok(Vec::new()),
            heads => Ok(heads?),
        }
    }

    /// The database's migration lock, if no other `shiftguard migrate` holds it.
    async fn lock(&self) -> anyhow::Result<Option<MigrationLock>> {
        let settings = ConnectSettings {
            timeout: self.connect_timeout,
            read_only: false,
            ..ConnectSettings::default()
        };
        Ok(MigrationLock::try_take(&self.url, settings).await?)
    }

    /// A database without heads must be new: one with tables but no version table is one
    /// Alembic never migrated with this table (a wrong --version-table?), not one to migrate
    /// from nothing.
    async fn expect_new_database(&self) -> anyhow::Result<()> {
        if self.url.sqlite_path().is_some_and(|p| !p.exists()) || self.version_table.contains('.') {
            return Ok(());
        }
        let tables = tables(&self.url).await?;
        if !tables.is_empty() && !tables.contains(&self.version_table) {
            anyhow::bail!(
                "{} has {} table(s) but no version table `{}`: not a database this project's Alembic has migrated (--version-table names env.py's version_table); nothing applied",
                self.url.target(),
                tables.len(),
                self.version_table
            );
        }
        Ok(())
    }

    /// `alembic upgrade TARGET` on a database whose version table holds `before`, then the
    /// version table read back: it must have applied exactly `expected`. The heads after it;
    /// `Err(Failed)` when Alembic could not run or failed, the version table cannot be read
    /// back, or the database is elsewhere (something may have been applied by then).
    async fn upgrade_to(
        &self,
        graph: &RevisionGraph,
        target: RevisionIndex,
        expected: &RevisionSet,
        before: &[String],
    ) -> Result<Vec<String>, Failed> {
        let id = &graph.revision(target).id;
        let failed = |message: String, lines: Vec<String>, heads: Vec<String>| Failed {
            message: format!("`alembic upgrade {id}` {message}"),
            lines,
            heads,
        };
        let ran = match self.alembic.command(&self.alembic_url, &["upgrade", id]) {
            Ok(command) => process::run(command, Duration::MAX, idle).await,
            Err(error) => Err(error),
        };
        let done =
            ran.map_err(|e| failed(format!("could not run: {e:#}"), Vec::new(), before.to_vec()))?;
        self.show(&done);
        let heads = match self.heads().await {
            Ok(heads) => heads,
            Err(error) => {
                return Err(failed(
                    format!("ran, but the version table cannot be read back: {error:#}"),
                    done.error_lines(&self.url),
                    Vec::new(),
                ));
            }
        };
        if !done.succeeded() {
            return Err(failed(
                format!("failed: {}", done.error_line(&self.url)),
                done.error_lines(&self.url),
                heads,
            ));
        }
        let problem = match DatabaseState::new(graph, &heads) {
            Err(unknown) => Some(unknown.to_string()),
            Ok(_) if heads == before => Some(format!(
                "the version table still holds {before:?}: Alembic migrated some other database (env.py must take the URL from sqlalchemy.url, SQLALCHEMY_URL or DATABASE_URL)"
            )),
            Ok(state) if state.applied() != expected => {
                let unplanned: Vec<String> = graph
                    .topological()
                    .filter(|&i| state.applied().contains(i) && !expected.contains(i))
                    .map(|i| format!("{} ({})", graph.revision(i).id, graph.revision(i).phase))
                    .collect();
                Some(format!(
                    "the version table holds {heads:?}, not what was planned{}",
                    if unplanned.is_empty() {
                        String::new()
                    } else {
                        format!("; applied without a plan: {}", unplanned.join(", "))
                    }
                ))
            }
            Ok(_) => None,
        };
        match problem {
            Some(problem) => Err(failed(format!("ran, but {problem}"), Vec::new(), heads)),
            None => Ok(heads),
        }
    }

    /// Alembic's own account (its log lines) on stderr, for the pipeline's log.
    fn show(&self, done: &Finished) {
        for line in done.output.lines().filter(|l| !l.trim().is_empty()) {
            eprintln!("alembic: {}", self.url.redact(line));
        }
    }
}

fn listed(graph: &RevisionGraph, index: RevisionIndex) -> Listed {
    let revision = graph.revision(index);
    Listed {
        revision: revision.id.clone(),
        phase: revision.phase,
        phase_source: revision.phase_source,
        message: revision.message.clone(),
    }
}

fn ids(graph: &RevisionGraph, indexes: &[RevisionIndex]) -> Vec<String> {
    indexes
        .iter()
        .map(|&i| graph.revision(i).id.clone())
        .collect()
}
