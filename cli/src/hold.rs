//! `shiftguard hold` and `shiftguard release`: an operator stops a deployment group's canary
//! between steps, and lets it go. The hold is one DynamoDB item the gate monitor and the
//! pre-traffic hook read (`SHIFTGUARD_HOLDS_TABLE`): the monitor publishes the group's `hold`
//! gate failing, so the alarm stops the shift before the next step; the hook refuses.

use serde::Serialize;
use shiftguard_aws::DynamoHolds;
use shiftguard_core::release::hold::Hold;

use crate::Outcome;

/// Hold a deployment group's canary between steps (or list the holds).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    shiftguard hold users-api/live --reason \"replica lag is climbing\" --table shiftguard-holds\n  \
    shiftguard hold --list --json\n  \
    shiftguard release users-api/live\n\n\
    While a group is held the gate monitor publishes its `hold` gate as failing (GateFailing = 1, \
    so the alarm stops and rolls back the shift before its next step) and the pre-traffic hook \
    reports Failed. The table is the stack's HoldsTable (--table or SHIFTGUARD_HOLDS_TABLE). \
    Exit codes: 0 done, 2 bad input or an AWS error (nothing written).")]
pub struct HoldArgs {
    /// The deployment group: APPLICATION/GROUP, as CodeDeploy names them.
    #[arg(value_name = "APPLICATION/GROUP", required_unless_present = "list")]
    group: Option<String>,
    /// Why (shown by `status`, in the gate's reason and the monitor's records).
    #[arg(long, required_unless_present = "list")]
    reason: Option<String>,
    /// Who holds it (default: $USER).
    #[arg(long)]
    by: Option<String>,
    /// List the holds instead.
    #[arg(long, conflicts_with_all = ["group", "reason", "by"])]
    list: bool,
    #[command(flatten)]
    table: Table,
}

/// Let a held deployment group's canary go on.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    shiftguard release users-api/live --table shiftguard-holds\n\n\
    Releasing a group that is not held is not an error (it says so). Exit codes: 0 done, 2 bad \
    input or an AWS error.")]
pub struct ReleaseArgs {
    /// The deployment group: APPLICATION/GROUP.
    #[arg(value_name = "APPLICATION/GROUP")]
    group: String,
    #[command(flatten)]
    table: Table,
}

#[derive(Debug, clap::Args)]
pub struct Table {
    /// The DynamoDB table of holds.
    #[arg(long = "table", env = "SHIFTGUARD_HOLDS_TABLE", value_name = "TABLE")]
    name: String,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

impl Table {
    async fn holds(&self) -> DynamoHolds {
        DynamoHolds::new(&aws_config::load_from_env().await, &self.name)
    }
}

/// `APPLICATION/GROUP`, each part non-empty and without spaces or further slashes.
fn group_name(group: &str) -> anyhow::Result<&str> {
    let valid = group.split_once('/').is_some_and(|(application, name)| {
        [application, name]
            .iter()
            .all(|part| !part.is_empty() && !part.contains(['/', ' ']))
    });
    if valid {
        Ok(group)
    } else {
        anyhow::bail!("`{group}` is not a deployment group: expected APPLICATION/GROUP")
    }
}

#[derive(Serialize)]
struct Done<'a> {
    action: &'a str,
    group: &'a str,
    hold: Option<Hold>,
}

pub fn hold(args: HoldArgs) -> anyhow::Result<Outcome> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if args.list {
        let holds = runtime.block_on(async { args.table.holds().await.list().await })?;
        if args.table.json {
            println!("{}", serde_json::to_string_pretty(&holds)?);
        } else if holds.is_empty() {
            println!("no deployment group is held");
        } else {
            holds.iter().for_each(|h| println!("{}", h.describe()));
        }
        return Ok(Outcome::Safe);
    }
    let group = group_name(args.group.as_deref().unwrap_or_default())?;
    let reason = args.reason.as_deref().unwrap_or_default().trim();
    if reason.is_empty() || reason.contains('\n') {
        anyhow::bail!("--reason must be one non-empty line");
    }
    let by = args
        .by
        .or_else(|| std::env::var("USER").ok())
        .filter(|by| !by.trim().is_empty())
        .ok_or_else(|| anyhow::anyhow!("--by is required where $USER is not set"))?;
    let hold = Hold {
        group: group.to_owned(),
        by,
        reason: reason.to_owned(),
        since_ms: shiftguard_sql::backfill::now_ms(),
    };
    runtime.block_on(async { args.table.holds().await.put(&hold).await })?;
    if args.table.json {
        let done = Done {
            action: "held",
            group,
            hold: Some(hold),
        };
        println!("{}", serde_json::to_string_pretty(&done)?);
    } else {
        println!("held: {}", hold.describe());
    }
    Ok(Outcome::Safe)
}

pub fn release(args: ReleaseArgs) -> anyhow::Result<Outcome> {
    let group = group_name(&args.group)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let was = runtime.block_on(async { args.table.holds().await.delete(group).await })?;
    if args.table.json {
        let done = Done {
            action: "released",
            group,
            hold: was,
        };
        println!("{}", serde_json::to_string_pretty(&done)?);
    } else {
        match was {
            Some(hold) => println!("released: {}", hold.describe()),
            None => println!("{group} was not held"),
        }
    }
    Ok(Outcome::Safe)
}
