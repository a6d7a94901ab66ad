//! `shiftguard hold` and `shiftguard release`: an operator stops a deployment group's canary
//! between steps, and lets it go. The holds are one DynamoDB item per group that the gate
//! monitor and the hooks read (`SHIFTGUARD_HOLDS_TABLE`): the monitor publishes the group's
//! `hold` gate failing, so the alarm stops the shift before the next step; the hooks refuse.
//! Several operators may hold a group at once; each release lets one holder's hold go.

use serde::Serialize;
use shiftguard_aws::{CodeDeployAdapter, DynamoHolds};
use shiftguard_core::release::hold::Hold;

use crate::Outcome;

/// Hold a deployment group's canary between steps (or list the holds).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    shiftguard hold users-api/live --reason \"replica lag is climbing\" --table shiftguard-holds\n  \
    shiftguard hold users-api/next --reason \"not created yet\" --force\n  \
    shiftguard hold --list --json\n  \
    shiftguard release users-api/live\n\n\
    While a group is held the gate monitor publishes its `hold` gate as failing (GateFailing = 1, \
    so the alarm stops and rolls back the shift before its next step) and the pre- and \
    post-traffic hooks report Failed. Several operators may hold one group, each with a reason; \
    it stays held until each has released theirs. The group must be one CodeDeploy knows \
    (codedeploy:GetDeploymentGroup; --force for one not created yet). The table is the stack's \
    HoldsTable (--table or SHIFTGUARD_HOLDS_TABLE). Exit codes: 0 done, 2 bad input or an AWS \
    error (nothing written).")]
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
    /// Hold a group CodeDeploy does not know (yet), without asking it.
    #[arg(long)]
    force: bool,
    /// List the holds instead.
    #[arg(long, conflicts_with_all = ["group", "reason", "by", "force"])]
    list: bool,
    #[command(flatten)]
    table: Table,
}

/// Let a held deployment group's canary go on: your own hold, or every one.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    shiftguard release users-api/live --table shiftguard-holds\n  \
    shiftguard release users-api/live --by alice\n  \
    shiftguard release users-api/live --all\n\n\
    A release removes one holder's hold (--by, default $USER) and says who still holds the \
    group; --all removes every hold and says whose they were. Releasing a hold that is not \
    there is not an error (it says so). Exit codes: 0 done, 2 bad input or an AWS error.")]
pub struct ReleaseArgs {
    /// The deployment group: APPLICATION/GROUP.
    #[arg(value_name = "APPLICATION/GROUP")]
    group: String,
    /// Whose hold to remove (default: $USER).
    #[arg(long, conflicts_with = "all")]
    by: Option<String>,
    /// Remove every hold on the group.
    #[arg(long)]
    all: bool,
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

/// `APPLICATION/GROUP`, each part non-empty and without spaces or further slashes.
fn group_name(group: &str) -> anyhow::Result<(&str, &str)> {
    group
        .split_once('/')
        .filter(|(application, name)| {
            [application, name]
                .iter()
                .all(|part| !part.is_empty() && !part.contains(['/', ' ']))
        })
        .ok_or_else(|| {
            anyhow::anyhow!("`{group}` is not a deployment group: expected APPLICATION/GROUP")
        })
}

/// `--by`, else `$USER`.
fn holder(by: Option<String>) -> anyhow::Result<String> {
    by.or_else(|| std::env::var("USER").ok())
        .map(|by| by.trim().to_owned())
        .filter(|by| !by.is_empty() && !by.contains('\n'))
        .ok_or_else(|| anyhow::anyhow!("--by is required where $USER is not set"))
}

#[derive(Serialize)]
struct Held<'a> {
    action: &'a str,
    group: &'a str,
    hold: &'a Hold,
    /// The holder's own earlier hold it replaced, if any.
    replaced: Option<Hold>,
    /// Every hold on the group now.
    holds: Vec<Hold>,
}

#[derive(Serialize)]
struct Released<'a> {
    action: &'a str,
    group: &'a str,
    released: Vec<Hold>,
    remaining: Vec<Hold>,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

pub fn hold(args: HoldArgs) -> anyhow::Result<Outcome> {
    let runtime = runtime()?;
    let aws = runtime.block_on(aws_config::load_from_env());
    let holds = DynamoHolds::new(&aws, &args.table.name);
    if args.list {
        let holds = runtime.block_on(holds.list())?;
        if args.table.json {
            println!("{}", serde_json::to_string_pretty(&holds)?);
        } else if holds.is_empty() {
            println!("no deployment group is held");
        } else {
            holds.iter().for_each(|h| println!("{}", h.describe()));
        }
        return Ok(Outcome::Safe);
    }
    let group = args.group.as_deref().unwrap_or_default();
    let (application, name) = group_name(group)?;
    let reason = args.reason.as_deref().unwrap_or_default().trim();
    if reason.is_empty() || reason.contains('\n') {
        anyhow::bail!("--reason must be one non-empty line");
    }
    let by = holder(args.by)?;
    if !args.force {
        let known = runtime
            .block_on(CodeDeployAdapter::new(&aws).deployment_group_exists(application, name))?;
        if !known {
            anyhow::bail!(
                "CodeDeploy knows no deployment group `{name}` in application `{application}`: check the name, or --force to hold a group not created yet"
            );
        }
    }
    let hold = Hold {
        group: group.to_owned(),
        by,
        reason: reason.to_owned(),
        since_ms: shiftguard_sql::backfill::now_ms(),
    };
    let replaced = runtime.block_on(holds.add(&hold))?;
    let all = runtime.block_on(holds.get(group))?;
    if args.table.json {
        let done = Held {
            action: "held",
            group,
            hold: &hold,
            replaced,
            holds: all,
        };
        println!("{}", serde_json::to_string_pretty(&done)?);
    } else {
        println!("held: {}", hold.describe());
        for other in all.iter().filter(|h| h.by != hold.by) {
            println!("also {}", other.describe());
        }
    }
    Ok(Outcome::Safe)
}

pub fn release(args: ReleaseArgs) -> anyhow::Result<Outcome> {
    let (group, all) = (args.group.as_str(), args.all);
    group_name(group)?;
    let by = if all { None } else { Some(holder(args.by)?) };
    let runtime = runtime()?;
    let holds = DynamoHolds::new(
        &runtime.block_on(aws_config::load_from_env()),
        &args.table.name,
    );
    let done = runtime.block_on(async {
        match &by {
            Some(by) => holds.remove(group, by).await,
            None => holds.remove_all(group).await,
        }
    })?;
    if args.table.json {
        let out = Released {
            action: "released",
            group,
            released: done.removed,
            remaining: done.remaining,
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(Outcome::Safe);
    }
    for hold in &done.removed {
        println!("released: {}", hold.describe());
    }
    if done.removed.is_empty() {
        match &by {
            Some(by) => println!("{group} was not held by {by}"),
            None => println!("{group} was not held"),
        }
    }
    if done.remaining.is_empty() {
        if !done.removed.is_empty() {
            println!("{group} is no longer held");
        }
    } else {
        for hold in &done.remaining {
            println!("still {}", hold.describe());
        }
    }
    Ok(Outcome::Safe)
}
