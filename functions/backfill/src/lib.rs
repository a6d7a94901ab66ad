//! The backfill Lambda: invoked on a schedule with `{"backfill": "<name>"}` (or without a name:
//! every configured backfill that is not complete), it runs each until the invocation's deadline
//! nears, printing one CloudWatch Embedded Metric Format line per batch and per run, and
//! structured JSON logs. Laid out like every shiftguard Lambda: `config.rs` reads the
//! environment, [`Deps::build`] runs once per cold start, [`handle`] per event (the tests call
//! it directly), [`run`] is the whole function and `main.rs` only calls it.

pub mod config;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use shiftguard_aws::{DynamoCheckpoints, Notifier};
use shiftguard_core::backfill::CheckpointStoreKind;
use shiftguard_core::backfill::{Key, KeyRange, ShownKey, Status, emf_line, hold_emf_line};
use shiftguard_core::config::ProjectConfig;
use shiftguard_core::release::notify::{BackfillNews, backfill_notice};
use shiftguard_sql::DatabaseUrl;
use shiftguard_sql::backfill::{Checkpoints, Event, LagSource, Outcome, Runner, now_ms};
use shiftguard_sql::checkpoint::SqlCheckpoints;

use crate::config::FunctionConfig;

/// The invocation event. Any other fields (an EventBridge envelope, say) are ignored.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct BackfillEvent {
    /// One backfill by name; absent: every configured backfill that is not complete.
    #[serde(default)]
    pub backfill: Option<String>,
    /// A backfill with shards: the shard to start at (the state machine gives each of its
    /// concurrent invocations another); absent: one from the clock.
    #[serde(default)]
    pub first: Option<u32>,
}

/// What one backfill did in this invocation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunRecord {
    pub backfill: String,
    /// `busy`, `stayed`, `deadline`, `interrupted`, `swept`, `complete`, `skipped` or `error`.
    pub outcome: String,
    pub status: Option<Status>,
    pub rows_updated: u64,
    pub rows_scanned: u64,
    pub seconds: f64,
    pub error: Option<String>,
}

/// What the handler needs, built once per cold start.
#[derive(Debug)]
pub struct Deps {
    pub project: ProjectConfig,
    pub url: DatabaseUrl,
    pub dynamodb: Option<DynamoCheckpoints>,
    /// Replica URLs, by backfill, from the variables their `replica_url_env` names.
    pub replicas: HashMap<String, DatabaseUrl>,
    pub deadline_margin: Duration,
    /// Where completions, failures and stalls are told; none configured, nowhere.
    pub notifier: Option<Notifier>,
    /// What was told of each backfill since it last moved (per warm function: a cold start
    /// may tell a failure or a stall once more).
    pub told: Mutex<HashMap<String, &'static str>>,
}

impl Deps {
    /// Reads the configuration file, resolves the database URL (from Secrets Manager when so
    /// configured) and creates the AWS clients from `aws` (in the function: the SDK's standard
    /// configuration from the environment).
    pub async fn build(
        config: &FunctionConfig,
        aws: &aws_config::SdkConfig,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Deps> {
        let mut project = ProjectConfig::read(&config.config_path)?;
        if let Some(store) = config.checkpoint_store {
            project.checkpoint.store = store;
        }
        if let Some(table) = &config.checkpoint_table {
            project.checkpoint.table = table.clone();
        }
        let raw_url = config.database.resolve(aws).await?;
        let url = DatabaseUrl::parse(&raw_url)?;
        let dynamodb = (project.checkpoint.store == CheckpointStoreKind::Dynamodb)
            .then(|| DynamoCheckpoints::from_config(aws, &project.checkpoint.table));
        let mut replicas = HashMap::new();
        for backfill in &project.backfill {
            if let Some(variable) = &backfill.tuning.replica_url_env {
                let value = lookup(variable).with_context(|| {
                    format!(
                        "backfill {}: replica_url_env names {variable}, which is not set",
                        backfill.name
                    )
                })?;
                replicas.insert(backfill.name.clone(), DatabaseUrl::parse(&value)?);
            }
        }
        Ok(Deps {
            project,
            url,
            dynamodb,
            replicas,
            deadline_margin: config.deadline_margin,
            notifier: Notifier::new(aws, &config.notify),
            told: Mutex::default(),
        })
    }
}

/// Runs the event's backfills until `deadline` (the invocation's, less the margin). Returns an
/// error, after running every selected backfill, when any of them failed.
pub async fn handle(
    event: BackfillEvent,
    deadline: Instant,
    deps: &Deps,
    owner: &str,
) -> anyhow::Result<Vec<RunRecord>> {
    let selected: Vec<&shiftguard_core::backfill::BackfillConfig> = match &event.backfill {
        Some(name) => vec![
            deps.project
                .backfill(name)
                .with_context(|| format!("no backfill named {name} in the configuration"))?,
        ],
        None => deps.project.backfill.iter().collect(),
    };
    let sql_checkpoints = SqlCheckpoints::new(&deps.project.checkpoint.table);
    let mut records = Vec::new();
    for backfill in selected {
        let started = Instant::now();
        let record = |outcome: &str, status: Option<Status>, error: Option<String>| RunRecord {
            backfill: backfill.name.clone(),
            outcome: outcome.to_owned(),
            status,
            rows_updated: 0,
            rows_scanned: 0,
            seconds: started.elapsed().as_secs_f64(),
            error,
        };
        if Instant::now() >= deadline {
            records.push(record("deadline", None, None));
            continue;
        }
        let checkpoints = match (&deps.dynamodb, &sql_checkpoints) {
            (Some(store), _) => Checkpoints::External(store),
            (None, Ok(table)) => Checkpoints::Sql(table.clone()),
            (None, Err(error)) => {
                records.push(record("error", None, Some(error.to_string())));
                continue;
            }
        };
        let runner = Runner {
            url: &deps.url,
            config: backfill,
            checkpoints,
            owner: owner.to_owned(),
            lag: LagSource::for_backfill(
                backfill,
                deps.url.dialect(),
                deps.replicas.get(&backfill.name).cloned(),
            ),
            connect_timeout: Duration::from_secs(10),
            range: KeyRange::default(),
        };
        if event.backfill.is_none()
            && let Ok(Some(checkpoint)) = runner.checkpoint().await
            && checkpoint.status == Status::Complete
        {
            records.push(record("skipped", Some(Status::Complete), None));
            continue;
        }
        let name = backfill.name.as_str();
        let mut held_by = None;
        let mut observe = |event: &Event| {
            if let Event::Held(reading) = event {
                held_by = Some(format!(
                    "{} {} above {}",
                    reading.signal.name(),
                    reading.value,
                    reading.limit
                ));
            }
            log_event(name, backfill.tuning.show_keys, event)
        };
        // A backfill with shards: concurrent invocations start at different shards, each
        // taking the free ones in turn.
        let first = event.first.unwrap_or((now_ms() % 1_000) as u32);
        match runner.run_shards(first, deadline, &mut observe).await {
            Ok(summary) => {
                println!(
                    "{}",
                    emf_line(
                        name,
                        "run",
                        &summary.report,
                        backfill.tuning.show_keys,
                        now_ms()
                    )
                );
                let outcome = match summary.outcome {
                    Outcome::Busy { .. } | Outcome::Full { .. } => "busy",
                    Outcome::Stayed(_) => "stayed",
                    Outcome::Deadline => "deadline",
                    Outcome::Interrupted => "interrupted",
                    Outcome::Swept => "swept",
                    Outcome::Complete => "complete",
                };
                tracing::info!(
                    backfill = name,
                    outcome,
                    rows_updated = summary.report.rows_updated,
                    "run finished"
                );
                // Still failed from an earlier invocation: keep failing, so the alarm stays on.
                let error = (summary.outcome == Outcome::Stayed(Status::Failed)).then(|| {
                    let kept = summary
                        .checkpoint
                        .as_ref()
                        .and_then(|c| c.last_error.clone());
                    format!(
                        "failed earlier: {}",
                        kept.unwrap_or_else(|| "no error kept".to_owned())
                    )
                });
                records.push(RunRecord {
                    rows_updated: summary.report.rows_updated,
                    rows_scanned: summary.report.rows_scanned,
                    status: summary.checkpoint.map(|c| c.status),
                    ..record(outcome, None, error)
                });
            }
            Err(error) => {
                tracing::error!(backfill = name, error = %error, "run failed");
                records.push(record("error", None, Some(error.to_string())));
            }
        }
        if let Some(last) = records.last() {
            // Within half the margin past the run's deadline: the rest is the invocation's.
            let until = deadline + deps.deadline_margin / 2;
            if tokio::time::timeout_at(until.into(), tell(deps, last, held_by))
                .await
                .is_err()
            {
                tracing::error!(backfill = name, "not notified before the deadline");
            }
        }
    }
    let failed: Vec<String> = records
        .iter()
        .filter_map(|r| r.error.as_ref().map(|e| format!("{}: {e}", r.backfill)))
        .collect();
    if failed.is_empty() {
        Ok(records)
    } else {
        anyhow::bail!("{}", failed.join("; "))
    }
}

/// What of a run is worth telling: a completion, a failure, a stall (a run to its deadline that
/// updated nothing while a health signal held it).
fn news(record: &RunRecord, held_by: Option<String>) -> Option<BackfillNews> {
    match record.outcome.as_str() {
        "complete" => Some(BackfillNews::Completed {
            rows_updated: record.rows_updated,
        }),
        "error" => Some(BackfillNews::Failed {
            error: record.error.clone().unwrap_or_default(),
        }),
        "deadline" if record.rows_updated == 0 => held_by.map(|held_by| BackfillNews::Stalled {
            held_by,
            seconds: record.seconds,
        }),
        _ => None,
    }
}

/// Tells the run's news, once per kind until the backfill moves again. A notice that cannot be
/// sent is logged: telling is not running.
async fn tell(deps: &Deps, record: &RunRecord, held_by: Option<String>) {
    let Some(notifier) = &deps.notifier else {
        return;
    };
    let news = news(record, held_by);
    let fresh = {
        let mut told = deps
            .told
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if record.rows_updated > 0 {
            told.remove(&record.backfill);
        }
        news.as_ref().is_some_and(|news| {
            told.insert(record.backfill.clone(), news.kind()) != Some(news.kind())
        })
    };
    let (Some(news), true) = (news, fresh) else {
        return;
    };
    let json = serde_json::to_value(record).unwrap_or_default();
    let notice = backfill_notice(&record.backfill, &news, json);
    if let Err(error) = notifier.send(&notice).await {
        tracing::error!(
            backfill = record.backfill.as_str(),
            error = error.message,
            "not notified"
        );
    }
}

/// EMF line per batch on stdout (CloudWatch turns it into metrics); other events as JSON logs.
/// Keys as [`ShownKey`] shows them.
fn log_event(name: &str, show_keys: bool, event: &Event) {
    let shown = |key: Option<&Key>| ShownKey::text(key, show_keys);
    match event {
        Event::Batch { report, .. } => {
            println!("{}", emf_line(name, "batch", report, show_keys, now_ms()))
        }
        Event::Started {
            checkpoint,
            remaining_estimate,
        } => tracing::info!(
            backfill = name,
            status = %checkpoint.status,
            cursor = %shown(checkpoint.cursor.as_ref()),
            remaining_estimate,
            "run started"
        ),
        Event::Held(hold) => {
            println!("{}", hold_emf_line(name, hold, now_ms()));
            tracing::warn!(
                backfill = name,
                signal = hold.signal.name(),
                value = hold.value,
                limit = hold.limit,
                "held: a health signal is above its limit"
            )
        }
        Event::Retrying {
            attempt,
            delay,
            error,
        } => tracing::warn!(
            backfill = name,
            attempt,
            delay_ms = delay.as_millis() as u64,
            error = error.as_str(),
            "retrying batch"
        ),
        Event::Swept => tracing::info!(backfill = name, "pass finished"),
        Event::Verified { pending_from } => {
            tracing::info!(
                backfill = name,
                pending_from = %shown(pending_from.as_ref()),
                "verified"
            )
        }
        Event::Planned {
            shards,
            from_histogram,
        } => tracing::info!(backfill = name, shards, from_histogram, "shards planned"),
    }
}

/// The whole Lambda function: configuration (from `environment`, the process environment in
/// `main`) and clients once per cold start, then one [`handle`] per invocation with the
/// invocation's deadline less the margin.
pub async fn run(
    environment: impl Fn(&str) -> Option<String>,
) -> Result<(), lambda_runtime::Error> {
    shiftguard_aws::init_json_logging();
    let config = FunctionConfig::from_lookup(&environment)?;
    // Every AWS call (the secret, each checkpoint write) ends within the margin, retries
    // included: a hung endpoint cannot hold a run past its deadline.
    let aws = shiftguard_aws::bounded(&aws_config::load_from_env().await, config.deadline_margin);
    let deps = Deps::build(&config, &aws, &environment).await?;
    let deps = &deps;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<BackfillEvent>| async move {
            let deadline =
                shiftguard_aws::deadline_instant(event.context.deadline, deps.deadline_margin);
            let owner = format!("lambda:{}", event.context.request_id);
            let records = handle(event.payload, deadline, deps, &owner).await?;
            Ok::<_, lambda_runtime::Error>(serde_json::to_value(records)?)
        },
    ))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_with_and_without_a_name() {
        let named: BackfillEvent =
            serde_json::from_str(r#"{"backfill":"users_display_name"}"#).expect("named");
        assert_eq!(named.backfill.as_deref(), Some("users_display_name"));
        let scheduled: BackfillEvent = serde_json::from_str(
            r#"{"version":"0","id":"1","detail-type":"Scheduled Event","source":"aws.events","detail":{}}"#,
        )
        .expect("EventBridge envelope");
        assert_eq!(scheduled.backfill, None);
    }
}
