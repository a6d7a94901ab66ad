//! `shiftguard status`: where a release stands — the alias's weights, every live version's
//! build revision and whether it can run on the database now, the database's heads, backfill
//! progress, and the cutover and contract gates' current verdicts.

use std::io::IsTerminal;
use std::time::Duration;

use serde::Serialize;
use shiftguard_aws::DynamoHolds;
use shiftguard_core::backfill::{ShownKey, pace};
use shiftguard_core::release::ApprovalRecord;
use shiftguard_core::release::decide;
use shiftguard_core::release::gate::{GateVerdict, Overall};
use shiftguard_core::release::hold::Hold;
use shiftguard_sql::backfill::{StatusReport, now_ms};

use crate::Outcome;
use crate::gate::{Loaded, Rollout, print_gates};

/// Show where a release stands.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    shiftguard status --migrations infra/example --function users-api --alias live\n  \
    shiftguard status --manifest manifest.json --function users-api --alias live --watch\n  \
    shiftguard status --manifest manifest.json --function users-api --alias live --json\n\n\
    The contract verdict is for --revision, by default the migrations' head when the database \
    is not there yet. Exit codes: 0 shown, 2 could not read (the gates' own verdicts do not \
    change the exit code; use `shiftguard gate` in pipelines).")]
pub struct Args {
    #[command(flatten)]
    rollout: Rollout,
    /// The contract revision to evaluate (default: the migrations' head).
    #[arg(long, value_name = "REV")]
    revision: Option<String>,
    /// Print the status as JSON on stdout (one line per refresh with --watch).
    #[arg(long)]
    json: bool,
    /// Refresh every SECONDS (default 10) until interrupted.
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "10")]
    watch: Option<u64>,
    /// The DynamoDB table of operators' holds (`shiftguard hold`): shows them.
    #[arg(long, env = "SHIFTGUARD_HOLDS_TABLE", value_name = "TABLE")]
    holds_table: Option<String>,
}

/// The status record (`--json`).
#[derive(Debug, Serialize)]
struct Status {
    function: String,
    alias: String,
    primary: String,
    additional: Vec<(String, f64)>,
    database: String,
    database_heads: Vec<String>,
    versions: Vec<VersionRow>,
    backfills: Vec<BackfillRow>,
    cutover: GateRow,
    contract: GateRow,
    /// Operators' holds, when a holds table is given: who, since when, why.
    #[serde(skip_serializing_if = "Option::is_none")]
    holds: Option<Vec<Hold>>,
}

#[derive(Debug, Serialize)]
struct VersionRow {
    version: String,
    /// Share of the alias's traffic (0 for versions live otherwise).
    weight: f64,
    schema_revision: Option<String>,
    compatible_now: bool,
    /// Why not, when not.
    reason: Option<String>,
    because: Vec<String>,
}

#[derive(Debug, Serialize)]
struct BackfillRow {
    name: String,
    status: String,
    percent: f64,
    /// Whether `percent` is an estimate from the table's statistics.
    percent_estimated: bool,
    rows_per_second: Option<f64>,
    eta_seconds: Option<u64>,
    /// The first key pending now (none: nothing pending), as [`ShownKey`] shows it.
    first_pending_key: Option<ShownKey>,
}

/// A gate's verdict, or why there is none.
#[derive(Debug, Serialize)]
struct GateRow {
    result: Option<Overall>,
    note: Option<String>,
    record: Option<ApprovalRecord>,
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let loaded = Loaded::read(&args.rollout).await?;
        let holds = match &args.holds_table {
            Some(table) => Some(DynamoHolds::new(&aws_config::load_from_env().await, table)),
            None => None,
        };
        loop {
            let read = read(&loaded, args.revision.as_deref(), holds.as_ref()).await;
            let status = match (read, args.watch) {
                (Ok(status), _) => status,
                (Err(error), None) => return Err(error),
                // Watching: one failed read (a network blip) is shown, and the next may work.
                (Err(error), Some(seconds)) => {
                    eprintln!("error: {error:#}");
                    tokio::time::sleep(Duration::from_secs(seconds.max(1))).await;
                    continue;
                }
            };
            if args.json {
                let json = if args.watch.is_some() {
                    serde_json::to_string(&status)?
                } else {
                    serde_json::to_string_pretty(&status)?
                };
                println!("{json}");
            } else {
                if args.watch.is_some() && std::io::stdout().is_terminal() {
                    print!("\x1b[2J\x1b[H");
                }
                print_status(&status);
            }
            let Some(seconds) = args.watch else {
                return Ok(Outcome::Safe);
            };
            tokio::time::sleep(Duration::from_secs(seconds.max(1))).await;
        }
    })
}

async fn read(
    loaded: &Loaded<'_>,
    revision: Option<&str>,
    holds: Option<&DynamoHolds>,
) -> anyhow::Result<Status> {
    let args = loaded.args;
    let database = loaded.database();
    let read = decide::versions_now(loaded.ports(&database), loaded.release(), loaded.app()).await;
    database.close().await;
    let fits = read?;
    let heads = fits.database_heads;
    let versions = fits
        .versions
        .into_iter()
        .map(|v| VersionRow {
            version: v.stamp.version,
            weight: v.weight,
            schema_revision: v.stamp.schema_revision,
            compatible_now: v.fits.passed(),
            reason: match v.fits.verdict {
                GateVerdict::Fail(reason) => Some(reason),
                _ => None,
            },
            because: v.because,
        })
        .collect();

    let reports = crate::backfill::reports(
        &loaded.config,
        &loaded.url,
        Duration::from_secs(args.connect_timeout),
    )
    .await?;
    let now = now_ms();
    let backfills = reports
        .iter()
        .map(|r| {
            let show_keys = loaded
                .config
                .backfill(&r.name)
                .is_some_and(|b| b.tuning.show_keys);
            backfill_row(r, show_keys, now)
        })
        .collect();

    let cutover = gate_row(loaded.cutover(None).await);
    let contract = match (revision, fits.unapplied_heads.as_slice()) {
        (Some(revision), _) => {
            let minutes = loaded.config.gates.observation_minutes;
            gate_row(loaded.contract(revision, minutes).await)
        }
        (None, []) => GateRow {
            result: None,
            note: Some("the database is at the migrations' head: nothing to contract".into()),
            record: None,
        },
        (None, [head]) => {
            let minutes = loaded.config.gates.observation_minutes;
            gate_row(loaded.contract(head, minutes).await)
        }
        (None, heads) => GateRow {
            result: None,
            note: Some(format!(
                "the migrations have {} unapplied heads ({}): give --revision",
                heads.len(),
                heads.join(", ")
            )),
            record: None,
        },
    };
    Ok(Status {
        function: args.function.clone(),
        alias: args.alias.clone(),
        primary: fits.routing.primary,
        additional: fits.routing.additional,
        database: loaded.url.target().to_owned(),
        database_heads: heads,
        versions,
        backfills,
        cutover,
        contract,
        holds: match holds {
            Some(holds) => Some(holds.list().await?),
            None => None,
        },
    })
}

fn backfill_row(report: &StatusReport, show_keys: bool, now: i64) -> BackfillRow {
    let (rate, eta) = match &report.checkpoint {
        Some(checkpoint) => pace(checkpoint, report.percent, now),
        None => (None, None),
    };
    BackfillRow {
        name: report.name.clone(),
        status: report
            .checkpoint
            .as_ref()
            .map_or("never run".to_owned(), |c| c.status.as_str().to_owned()),
        percent: report.percent,
        percent_estimated: report.percent_estimated,
        rows_per_second: rate,
        eta_seconds: eta.map(|d| d.as_secs()),
        first_pending_key: report
            .first_pending_key
            .clone()
            .map(|key| ShownKey::new(key, show_keys)),
    }
}

fn gate_row(evaluated: anyhow::Result<ApprovalRecord>) -> GateRow {
    match evaluated {
        Ok(record) => GateRow {
            result: Some(record.result),
            note: None,
            record: Some(record),
        },
        Err(error) => GateRow {
            result: None,
            note: Some(format!("could not decide: {error:#}")),
            record: None,
        },
    }
}

fn print_status(status: &Status) {
    println!(
        "{}:{}  on {}",
        status.function, status.alias, status.database
    );
    println!(
        "database heads  {}",
        if status.database_heads.is_empty() {
            "none".to_owned()
        } else {
            status.database_heads.join(", ")
        }
    );
    println!();
    println!(
        "{:<10} {:>7}  {:<14} {:<12} live because",
        "version", "weight", "built at", "fits now"
    );
    for v in &status.versions {
        println!(
            "{:<10} {:>6.0}%  {:<14} {:<12} {}",
            v.version,
            v.weight * 100.0,
            v.schema_revision.as_deref().unwrap_or("(no stamp)"),
            if v.compatible_now { "yes" } else { "NO" },
            v.because.join(", ")
        );
        if let Some(reason) = &v.reason {
            println!("           {reason}");
        }
    }
    println!();
    if status.backfills.is_empty() {
        println!("backfills: none configured");
    } else {
        println!(
            "{:<28} {:<10} {:>7} {:>10} {:>10}  pending now",
            "backfill", "status", "done", "rows/s", "ETA"
        );
        for b in &status.backfills {
            println!(
                "{:<28} {:<10} {:>7} {:>10} {:>10}  {}",
                b.name,
                b.status,
                crate::backfill::done(b.percent, b.percent_estimated),
                b.rows_per_second
                    .map_or("-".to_owned(), |r| format!("{r:.0}")),
                b.eta_seconds.map_or("-".to_owned(), human_duration),
                b.first_pending_key
                    .as_ref()
                    .map_or("no".to_owned(), |k| format!("yes (from key {k})")),
            );
        }
    }
    if let Some(holds) = &status.holds {
        println!();
        if holds.is_empty() {
            println!("holds: none");
        }
        for hold in holds {
            println!("HOLD: {}", hold.describe());
        }
    }
    for (name, row) in [("cutover", &status.cutover), ("contract", &status.contract)] {
        println!();
        match (&row.record, &row.note) {
            (Some(record), _) => {
                let about = match &record.revision {
                    Some(revision) => format!("{name} to {revision}"),
                    None => name.to_owned(),
                };
                println!(
                    "{about}: {}",
                    match record.result {
                        Overall::Pass => "PASS",
                        Overall::Fail => "FAIL",
                        Overall::Inconclusive => "INCONCLUSIVE",
                    }
                );
                print_gates(&record.gates);
            }
            (None, note) => println!("{name}: {}", note.as_deref().unwrap_or("-")),
        }
    }
}

fn human_duration(seconds: u64) -> String {
    match seconds {
        0 => "done".to_owned(),
        s if s < 120 => format!("{s}s"),
        s if s < 7_200 => format!("{}m", s / 60),
        s => format!("{}h{:02}m", s / 3_600, (s % 3_600) / 60),
    }
}
