//! `shiftguard check`: can every listed app build run on the database as it is now?

use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use shiftguard_core::schema::graph::RevisionIndex;
use shiftguard_core::{DatabaseState, Reason, RevisionGraph, Verdict, check_build};
use shiftguard_sql::{ConnectSettings, Connection, DEFAULT_VERSION_TABLE, DatabaseUrl, read_heads};

use crate::Outcome;
use crate::migrations::{Source, print_warnings};

/// Decide whether app builds can run on the database's current schema.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    # Before shifting traffic: both the running and the new build must fit the schema.\n  \
    shiftguard check --migrations infra/example/migrations \\\n      \
    --database-url sqlite:///tmp/app.db --app-revision 1c0de5 --app-revision 7e1f00\n\n  \
    # In a pipeline, with the URL from the environment and a decision record on stdout:\n  \
    DATABASE_URL=postgres://app@db/app shiftguard check --manifest manifest.json \\\n      \
    --app-revision \"$BUILD_REVISION\" --json\n\n\
    Exit codes: 0 every build is compatible, 1 at least one is not (reasons printed), \
    2 could not decide (bad input, unreachable database, database not under Alembic, \
    database at a revision the migrations do not contain).")]
pub struct Args {
    #[command(flatten)]
    source: Source,
    /// Database to read alembic_version from: postgres://, mysql://, mariadb:// or sqlite: URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_name = "URL")]
    database_url: String,
    /// Alembic head an app build was made against (its SHIFTGUARD_SCHEMA_REVISION); repeat for
    /// each build that may run. A unique prefix is enough.
    #[arg(long = "app-revision", value_name = "REV", required = true)]
    app_revisions: Vec<String>,
    /// Alembic version table name (as `version_table` in env.py), optionally schema.table.
    #[arg(long, default_value = DEFAULT_VERSION_TABLE, value_name = "TABLE")]
    version_table: String,
    /// Seconds to wait for the database connection.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    connect_timeout: u64,
    /// Print the decision record as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// The decision record printed by `--json`.
#[derive(Debug, Serialize)]
struct Decision<'a> {
    result: &'static str,
    database: DatabaseRecord<'a>,
    builds: Vec<BuildRecord<'a>>,
}

#[derive(Debug, Serialize)]
struct DatabaseRecord<'a> {
    target: &'a str,
    heads: Vec<&'a str>,
}

#[derive(Debug, Serialize)]
struct BuildRecord<'a> {
    app_revision: &'a str,
    compatible: bool,
    reasons: &'a [Reason],
    messages: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let result = decide(&args);
    if args.json
        && let Err(error) = &result
    {
        let record = serde_json::json!({ "result": "error", "error": format!("{error:#}") });
        println!("{record}");
    }
    result
}

fn decide(args: &Args) -> anyhow::Result<Outcome> {
    let graph = args.source.load()?;
    if !args.json {
        print_warnings(&graph);
    }
    let builds = resolve_builds(&graph, &args.app_revisions)?;
    let url = DatabaseUrl::parse(&args.database_url)?;
    let heads = read_database_heads(&url, args)?;
    let state = DatabaseState::new(&graph, &heads)?;
    let verdicts: Vec<(RevisionIndex, Verdict)> = builds
        .iter()
        .map(|&build| (build, check_build(&graph, build, &state)))
        .collect();
    let all_compatible = verdicts.iter().all(|(_, v)| v.is_compatible());

    if args.json {
        let decision = Decision {
            result: if all_compatible {
                "compatible"
            } else {
                "incompatible"
            },
            database: DatabaseRecord {
                target: url.target(),
                heads: heads.iter().map(String::as_str).collect(),
            },
            builds: verdicts
                .iter()
                .map(|(build, verdict)| BuildRecord {
                    app_revision: &graph.revision(*build).id,
                    compatible: verdict.is_compatible(),
                    reasons: verdict.reasons(),
                    messages: verdict.reasons().iter().map(ToString::to_string).collect(),
                })
                .collect(),
        };
        println!("{}", serde_json::to_string_pretty(&decision)?);
    } else {
        print_report(&graph, &url, &state, &verdicts);
    }
    Ok(if all_compatible {
        Outcome::Safe
    } else {
        Outcome::NotSafe
    })
}

fn resolve_builds(
    graph: &RevisionGraph,
    references: &[String],
) -> anyhow::Result<Vec<RevisionIndex>> {
    let mut builds = Vec::with_capacity(references.len());
    for reference in references {
        let build = graph
            .resolve(reference)
            .with_context(|| format!("--app-revision `{reference}`"))?;
        if !builds.contains(&build) {
            builds.push(build);
        }
    }
    Ok(builds)
}

fn read_database_heads(url: &DatabaseUrl, args: &Args) -> anyhow::Result<Vec<String>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let settings = ConnectSettings {
            timeout: Duration::from_secs(args.connect_timeout),
            ..ConnectSettings::default()
        };
        let mut connection = Connection::open(url, settings).await?;
        let heads = read_heads(&mut connection, url, &args.version_table).await;
        connection.close().await;
        Ok(heads?)
    })
}

fn print_report(
    graph: &RevisionGraph,
    url: &DatabaseUrl,
    state: &DatabaseState,
    verdicts: &[(RevisionIndex, Verdict)],
) {
    println!("database  {}", url.target());
    let heads: Vec<String> = state
        .heads()
        .iter()
        .map(|&i| {
            let revision = graph.revision(i);
            format!("{} ({})", revision.id, revision.phase)
        })
        .collect();
    println!(
        "heads     {}",
        if heads.is_empty() {
            "none (empty alembic_version: nothing applied)".to_owned()
        } else {
            heads.join(", ")
        }
    );
    let mut incompatible = 0;
    for (build, verdict) in verdicts {
        let id = &graph.revision(*build).id;
        if verdict.is_compatible() {
            println!("build {id}  compatible");
        } else {
            incompatible += 1;
            println!("build {id}  NOT compatible");
            for reason in verdict.reasons() {
                println!("  - {reason}");
            }
        }
    }
    if incompatible == 0 {
        println!("result: every build can run on this database");
    } else {
        println!(
            "result: {incompatible} of {} builds cannot run on this database",
            verdicts.len()
        );
    }
}
