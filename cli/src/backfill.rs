//! `shiftguard backfill`: run a configured backfill, see where it stands, pause, resume, cancel
//! or reset it.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use shiftguard_aws::DynamoCheckpoints;
use shiftguard_core::backfill::{BackfillConfig, CheckpointStoreKind, Key, KeyRange, ShownKey};
use shiftguard_core::backfill::{Command, Reading, Signal, Status, emf_line, hold_emf_line};
use shiftguard_core::config::ProjectConfig;
use shiftguard_sql::DatabaseUrl;
use shiftguard_sql::backfill::{
    Checkpoints, Event, LagSource, Outcome as RunOutcome, Runner, StatusReport, now_ms,
};
use shiftguard_sql::checkpoint::SqlCheckpoints;

use crate::Outcome;

/// Run and steer the backfills defined in shiftguard.toml.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    shiftguard backfill run users_display_name --database-url sqlite:///tmp/app.db\n  \
    shiftguard backfill status --json\n  \
    shiftguard backfill pause users_display_name\n\n\
    Each subcommand's --help has more.")]
pub struct Args {
    #[command(subcommand)]
    command: BackfillCommand,
}

#[derive(Debug, clap::Subcommand)]
enum BackfillCommand {
    Run(RunArgs),
    Status(StatusArgs),
    /// Pause a backfill: a run in progress stops after its batch, later runs do nothing until
    /// `resume`
    Pause(NameArgs),
    /// Let a paused (or failed, once the cause is fixed) backfill run again
    Resume(NameArgs),
    /// Cancel a backfill: no run works on it again (`reset` starts it over)
    Cancel(NameArgs),
    /// Forget a backfill's checkpoint (and fence): the next run starts from the first key
    Reset(NameArgs),
}

/// Where the configuration and the database are.
#[derive(Debug, clap::Args)]
struct Common {
    /// Configuration file with the [[backfill]] definitions.
    #[arg(
        long,
        env = "SHIFTGUARD_CONFIG",
        default_value = "shiftguard.toml",
        value_name = "FILE"
    )]
    config: PathBuf,
    /// Database holding the table (and the SQL checkpoint table).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_name = "URL")]
    database_url: String,
    /// Seconds to wait for the database connection.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    connect_timeout: u64,
    /// Checkpoint store (overrides [checkpoint] store in the configuration). dynamodb uses the
    /// AWS SDK's standard configuration (credentials, AWS_REGION, AWS_ENDPOINT_URL_DYNAMODB).
    #[arg(long, value_name = "STORE", value_parser = ["sql", "dynamodb"])]
    checkpoint: Option<String>,
    /// Checkpoint table (overrides [checkpoint] table), e.g. the SAM stack's DynamoDB table, as
    /// the backfill Lambda is given it.
    #[arg(long, env = "SHIFTGUARD_CHECKPOINT_TABLE", value_name = "TABLE")]
    checkpoint_table: Option<String>,
}

/// Run one backfill until its pass is finished (swept; the next run verifies and marks it
/// complete), the time limit nears, or an operator steps in.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    shiftguard backfill run users_display_name --database-url postgres://app@db/app\n  \
    shiftguard backfill run users_display_name --max-seconds 240 --emf   # as the Lambda does\n  \
    shiftguard backfill run users_display_name --parallel 4   # a backfill with shards = 4\n\n\
    A run can be killed at any moment: each batch commits with its checkpoint, and the next run \
    resumes from there. Exit codes: 0 complete or stopped cleanly (time limit, paused), 1 the \
    backfill failed (the error is kept in its checkpoint), 2 could not run (bad configuration, \
    unreachable database), 75 another runner holds it.")]
struct RunArgs {
    /// Backfill name from the configuration.
    name: String,
    #[command(flatten)]
    common: Common,
    /// Stop cleanly before this many seconds (default: run until complete).
    #[arg(long, value_name = "SECONDS")]
    max_seconds: Option<u64>,
    /// Print a CloudWatch Embedded Metric Format line per batch and per run on stdout.
    #[arg(long)]
    emf: bool,
    /// Print the run summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// A backfill with `shards`: work this many shards at once from this process (other
    /// processes may work the rest; each shard has its own lock).
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    parallel: u32,
}

/// Show each backfill's checkpoint and whether rows are pending right now.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  shiftguard backfill status\n  shiftguard backfill status users_display_name --json"
)]
struct StatusArgs {
    /// Only this backfill.
    name: Option<String>,
    #[command(flatten)]
    common: Common,
    #[arg(long)]
    json: bool,
}

/// A backfill named in the configuration.
#[derive(Debug, clap::Args)]
struct NameArgs {
    name: String,
    #[command(flatten)]
    common: Common,
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match args.command {
            BackfillCommand::Run(args) => run_backfill(args).await,
            BackfillCommand::Status(args) => status(args).await,
            BackfillCommand::Pause(args) => steer(args, Some(Command::Pause)).await,
            BackfillCommand::Resume(args) => steer(args, Some(Command::Resume)).await,
            BackfillCommand::Cancel(args) => steer(args, Some(Command::Cancel)).await,
            BackfillCommand::Reset(args) => steer(args, None).await,
        }
    })
}

struct Loaded {
    config: ProjectConfig,
    url: DatabaseUrl,
    /// The external checkpoint store, when the configuration or --checkpoint chose one.
    dynamodb: Option<DynamoCheckpoints>,
}

async fn load(common: &Common) -> anyhow::Result<Loaded> {
    let mut config = crate::read_config(&common.config)?;
    if let Some(table) = &common.checkpoint_table {
        config.checkpoint.table.clone_from(table);
    }
    let url = DatabaseUrl::parse(&common.database_url)?;
    Loaded::new(config, url, common.checkpoint.as_deref()).await
}

impl Loaded {
    /// With the checkpoint store `store` names, else the configuration's.
    async fn new(
        config: ProjectConfig,
        url: DatabaseUrl,
        store: Option<&str>,
    ) -> anyhow::Result<Self> {
        let store = match store {
            Some("dynamodb") => CheckpointStoreKind::Dynamodb,
            Some(_) => CheckpointStoreKind::Sql,
            None => config.checkpoint.store,
        };
        let dynamodb = match store {
            CheckpointStoreKind::Dynamodb => {
                Some(DynamoCheckpoints::from_environment(&config.checkpoint.table).await)
            }
            CheckpointStoreKind::Sql => None,
        };
        Ok(Loaded {
            config,
            url,
            dynamodb,
        })
    }
}

/// Every configured backfill's status (checkpoint, pending now, progress), read from the
/// configuration's checkpoint store.
pub async fn reports(
    config: &ProjectConfig,
    url: &DatabaseUrl,
    connect_timeout: Duration,
) -> anyhow::Result<Vec<StatusReport>> {
    let loaded = Loaded::new(config.clone(), url.clone(), None).await?;
    let mut reports = Vec::new();
    for backfill in &loaded.config.backfill {
        reports.push(runner(&loaded, backfill, connect_timeout)?.status().await?);
    }
    Ok(reports)
}

fn find<'c>(config: &'c ProjectConfig, name: &str) -> anyhow::Result<&'c BackfillConfig> {
    config.backfill(name).ok_or_else(|| {
        let known: Vec<&str> = config.backfill.iter().map(|b| b.name.as_str()).collect();
        anyhow::anyhow!(
            "no backfill named {name} in the configuration (defined: {})",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        )
    })
}

fn runner<'a>(
    loaded: &'a Loaded,
    backfill: &'a BackfillConfig,
    connect_timeout: Duration,
) -> anyhow::Result<Runner<'a>> {
    let replica = match &backfill.tuning.replica_url_env {
        Some(variable) => {
            let value = std::env::var(variable).with_context(|| {
                format!(
                    "backfill {}: replica_url_env names {variable}, which is not set",
                    backfill.name
                )
            })?;
            Some(DatabaseUrl::parse(&value).with_context(|| variable.clone())?)
        }
        None => None,
    };
    Ok(Runner {
        url: &loaded.url,
        config: backfill,
        checkpoints: match &loaded.dynamodb {
            Some(store) => Checkpoints::External(store),
            None => Checkpoints::Sql(SqlCheckpoints::new(&loaded.config.checkpoint.table)?),
        },
        owner: owner(),
        lag: LagSource::for_backfill(backfill, loaded.url.dialect(), replica),
        connect_timeout,
        range: KeyRange::default(),
    })
}

/// What holds the backfill, for the progress line.
fn held(hold: &Reading) -> String {
    match hold.signal {
        Signal::ReplicaLag if hold.value.is_finite() => format!(
            "throttled: replica lag {:.0} ms > {:.0} ms",
            hold.value, hold.limit
        ),
        Signal::ReplicaLag => {
            "throttled: replica lag unknown (no replica status, or replication stopped)".to_owned()
        }
        Signal::Vacuum => "throttled: a VACUUM is running on the table".to_owned(),
        signal if hold.value.is_finite() => {
            format!("throttled: {signal} {} > {}", hold.value, hold.limit)
        }
        signal => format!(
            "throttled: {signal} unknown (NULL, no answer, or the database too busy to answer)"
        ),
    }
}

/// `host:pid`, recorded as the lease owner.
fn owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned());
    format!("{host}:{}", std::process::id())
}

async fn run_backfill(args: RunArgs) -> anyhow::Result<Outcome> {
    let loaded = load(&args.common).await?;
    let backfill = find(&loaded.config, &args.name)?;
    let deadline = Instant::now()
        + args.max_seconds.map_or(
            Duration::from_secs(100 * 365 * 24 * 3600),
            Duration::from_secs,
        );

    let show_keys = backfill.tuning.show_keys;
    let mut progress = Progress::new(&args.name, show_keys);
    let emf = args.emf;
    let name = args.name.clone();
    let mut observe = |event: &Event| {
        match event {
            Event::Batch { report, .. } if emf => {
                println!("{}", emf_line(&name, "batch", report, show_keys, now_ms()));
            }
            Event::Held(hold) if emf => println!("{}", hold_emf_line(&name, hold, now_ms())),
            _ => {}
        }
        progress.show(event);
    };
    let runner = runner(
        &loaded,
        backfill,
        Duration::from_secs(args.common.connect_timeout),
    )?;
    let result = runner
        .run_parallel(args.parallel, std::process::id(), deadline, &mut observe)
        .await;
    progress.finish();
    let summary = match result {
        Ok(summary) => summary,
        Err(error) => {
            let failed = matches!(
                error,
                shiftguard_sql::backfill::BackfillError::Failed { .. }
            );
            if failed {
                eprintln!("error: {error}");
                return Ok(Outcome::NotSafe);
            }
            return Err(error.into());
        }
    };
    if emf {
        println!(
            "{}",
            emf_line(&args.name, "run", &summary.report, show_keys, now_ms())
        );
    }
    let checkpoint = summary.checkpoint.as_ref();
    let what = match &summary.outcome {
        RunOutcome::Busy { holder } => format!(
            "skipped: another runner ({}) holds it",
            holder.as_deref().unwrap_or("unknown")
        ),
        RunOutcome::Full { max_concurrency } => {
            format!("skipped: max_concurrency = {max_concurrency} runners work its shards already")
        }
        RunOutcome::Stayed(Status::Failed) => format!(
            "nothing to do: it failed earlier ({}); fix the cause, then `shiftguard backfill resume`",
            checkpoint
                .and_then(|c| c.last_error.as_deref())
                .unwrap_or("no error kept")
        ),
        RunOutcome::Stayed(status) => format!("nothing to do: it is {status}"),
        RunOutcome::Deadline => "stopped before the time limit; the next run resumes".to_owned(),
        RunOutcome::Interrupted => format!(
            "stopped: an operator changed it to {}",
            checkpoint.map_or("(reset)".to_owned(), |c| c.status.to_string())
        ),
        RunOutcome::Swept => {
            "swept: the pass is finished; the next run verifies that nothing is pending".to_owned()
        }
        RunOutcome::Complete => "complete: nothing is pending".to_owned(),
    };
    if args.json {
        let record = serde_json::json!({
            "backfill": args.name,
            "outcome": what,
            "status": checkpoint.map(|c| c.status),
            "run": summary.report,
            "elapsed_seconds": summary.elapsed.as_secs_f64(),
            "checkpoint": checkpoint,
        });
        println!("{}", serde_json::to_string_pretty(&record)?);
    } else {
        let seconds = summary.elapsed.as_secs_f64();
        eprintln!(
            "backfill {}: {what} ({} rows updated, {} scanned in {:.1}s, {:.0} rows/s; total {} rows over {} batches)",
            args.name,
            summary.report.rows_updated,
            summary.report.rows_scanned,
            seconds,
            summary.report.rows_scanned as f64 / seconds.max(1e-9),
            checkpoint.map_or(0, |c| c.rows_updated),
            checkpoint.map_or(0, |c| c.batches),
        );
    }
    Ok(match summary.outcome {
        RunOutcome::Busy { .. } | RunOutcome::Full { .. } => Outcome::Busy,
        // Still failed from an earlier run: as much a failure as the run that failed.
        RunOutcome::Stayed(Status::Failed) => Outcome::NotSafe,
        _ => Outcome::Safe,
    })
}

async fn status(args: StatusArgs) -> anyhow::Result<Outcome> {
    let loaded = load(&args.common).await?;
    let names: Vec<&BackfillConfig> = match &args.name {
        Some(name) => vec![find(&loaded.config, name)?],
        None => loaded.config.backfill.iter().collect(),
    };
    let mut reports = Vec::new();
    for backfill in &names {
        reports.push(
            runner(
                &loaded,
                backfill,
                Duration::from_secs(args.common.connect_timeout),
            )?
            .status()
            .await?,
        );
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
        return Ok(Outcome::Safe);
    }
    println!(
        "{:<28} {:<10} {:>7} {:>14} {:>9} {:>7} {:>14}  pending now",
        "backfill", "status", "done", "rows updated", "batches", "passes", "cursor"
    );
    let rows = names.iter().zip(&reports).flat_map(|(backfill, r)| {
        let show_keys = backfill.tuning.show_keys;
        std::iter::once(r)
            .chain(r.shards.iter())
            .map(move |r| (show_keys, r))
    });
    for (show_keys, report) in rows {
        let pending = match &report.first_pending_key {
            Some(key) => format!("yes (from key {})", ShownKey::text(Some(key), show_keys)),
            None => "no".to_owned(),
        };
        match &report.checkpoint {
            Some(c) => println!(
                "{:<28} {:<10} {:>7} {:>14} {:>9} {:>7} {:>14}  {pending}{}",
                report.name,
                c.status.as_str(),
                done(report.percent, report.percent_estimated),
                c.rows_updated,
                c.batches,
                c.passes,
                c.cursor
                    .as_ref()
                    .map_or("-".to_owned(), |k| ShownKey::text(Some(k), show_keys)),
                c.last_error
                    .as_ref()
                    .map_or(String::new(), |e| format!("  last error: {e}")),
            ),
            None => println!(
                "{:<28} {:<10} {:>7}  {pending}",
                report.name, "never run", "-"
            ),
        }
    }
    Ok(Outcome::Safe)
}

/// The share done, `~` before an estimate (from table statistics, for keys other than one
/// integer column).
pub fn done(percent: f64, estimated: bool) -> String {
    let sign = if estimated { "~" } else { "" };
    format!("{sign}{percent:.1}%")
}

async fn steer(args: NameArgs, command: Option<Command>) -> anyhow::Result<Outcome> {
    let loaded = load(&args.common).await?;
    let backfill = find(&loaded.config, &args.name)?;
    let runner = runner(
        &loaded,
        backfill,
        Duration::from_secs(args.common.connect_timeout),
    )?;
    match command {
        Some(command) => {
            let status = runner.command(command).await?;
            println!("backfill {}: {status}", args.name);
        }
        None => {
            let existed = runner.reset().await?;
            println!(
                "backfill {}: {}",
                args.name,
                if existed {
                    "reset; the next run starts over"
                } else {
                    "had no checkpoint"
                }
            );
        }
    }
    Ok(Outcome::Safe)
}

/// A progress bar on a terminal; elsewhere one plain line per second (and per notable event).
struct Progress {
    bar: Option<ProgressBar>,
    last_line: Instant,
    name: String,
    /// The backfill's `show_keys`: keys other than integers are hidden otherwise.
    show_keys: bool,
}

impl Progress {
    fn new(name: &str, show_keys: bool) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] {percent:>3}% {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_prefix(name.to_owned());
            bar
        });
        Progress {
            bar,
            last_line: Instant::now() - Duration::from_secs(10),
            name: name.to_owned(),
            show_keys,
        }
    }

    fn show(&mut self, event: &Event) {
        let show_keys = self.show_keys;
        let key = |key: Option<&Key>| match key {
            None => "start".to_owned(),
            some => ShownKey::text(some, show_keys),
        };
        let line = match event {
            Event::Started {
                checkpoint,
                remaining_estimate,
            } => {
                if let Some(bar) = &self.bar {
                    bar.set_length(*remaining_estimate);
                }
                Some(format!(
                    "started: status {}, cursor {}, about {remaining_estimate} rows to scan",
                    checkpoint.status,
                    key(checkpoint.cursor.as_ref())
                ))
            }
            Event::Batch { report, checkpoint } => {
                if let Some(bar) = &self.bar {
                    bar.inc(report.rows_scanned);
                    bar.set_message(format!(
                        "{} rows updated, {:.0} rows/s, batch {} rows in {:.0} ms",
                        checkpoint.rows_updated,
                        report.rows_per_second,
                        report.batch_size,
                        report.batch_ms
                    ));
                }
                (self.last_line.elapsed() >= Duration::from_secs(1)).then(|| {
                    format!(
                        "cursor {} | {} rows updated | {:.0} rows/s | batch {} rows, {:.0} ms | ~{} left",
                        key(checkpoint.cursor.as_ref()),
                        checkpoint.rows_updated,
                        report.rows_per_second,
                        report.batch_size,
                        report.batch_ms,
                        report.remaining_estimate
                    )
                })
            }
            Event::Held(hold) => Some(held(hold)),
            Event::Retrying {
                attempt,
                delay,
                error,
            } => Some(format!(
                "retry {attempt} in {} ms: {error}",
                delay.as_millis()
            )),
            Event::Swept => Some("pass finished".to_owned()),
            Event::Verified {
                pending_from: Some(key),
            } => Some(format!(
                "pending rows found again from key {}: sweeping",
                ShownKey::text(Some(key), show_keys)
            )),
            Event::Verified { pending_from: None } => Some("verified: nothing pending".to_owned()),
            Event::Planned {
                shards,
                from_histogram,
            } => Some(if *from_histogram {
                format!("planned {shards} shards from the table's statistics (pg_stats histogram)")
            } else {
                format!("planned {shards} shards at exact row offsets")
            }),
        };
        let Some(line) = line else { return };
        match &self.bar {
            Some(bar) => {
                if !matches!(event, Event::Batch { .. }) {
                    bar.println(line);
                }
            }
            None => {
                self.last_line = Instant::now();
                eprintln!("backfill {}: {line}", self.name);
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
