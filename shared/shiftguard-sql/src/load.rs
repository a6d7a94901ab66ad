//! What each app version costs the shared database, sampled on PostgreSQL: the statement
//! statistics of `pg_stat_statements` before and after the sample, and `pg_stat_activity` every
//! [`INTERVAL`] in between. Each version's sessions carry its tag in `application_name`
//! ([`shiftguard_core::release::load::session_tag`]); a session's `query_id` names the statement
//! it runs or last ran, so the statements seen in a tag's sessions are the version's, and their
//! deltas its calls, time, blocks and rows. A statement both versions run counts for both.
//!
//! Needs `pg_stat_statements` loaded (`shared_preload_libraries`) and created in the database,
//! and a role that may read other roles' statistics (`pg_read_all_stats`, part of `pg_monitor`).
//! Costs two reads of `pg_stat_statements` (one row per distinct statement of the database) and
//! one small read of `pg_stat_activity` per interval.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use shiftguard_core::release::load::DatabaseLoad;

use crate::connection::{Bind, Cell, Connection, Kind};

/// How often the sessions are sampled.
pub const INTERVAL: Duration = Duration::from_millis(100);

/// The statements' counters, without their text: `pg_stat_statements(false)` does not read the
/// file of query texts (the view does, for every row).
const STATEMENTS: &str = "SELECT queryid, calls, total_exec_time, \
     shared_blks_hit + shared_blks_read, rows FROM pg_stat_statements(false) \
     WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())";

const STATEMENTS_SHAPE: [Kind; 5] = [Kind::Int, Kind::Int, Kind::Float, Kind::Int, Kind::Int];

/// One statement's counters: calls, execution ms, shared blocks, rows.
#[derive(Clone, Copy, Debug, Default)]
struct Counters {
    calls: f64,
    exec_ms: f64,
    blocks: f64,
    rows: f64,
}

async fn statements(connection: &mut Connection) -> Result<HashMap<i64, Counters>, sqlx::Error> {
    let rows = connection
        .fetch_rows(STATEMENTS, &[], &STATEMENTS_SHAPE)
        .await?;
    let number = |cell: &Cell| cell.int().map_or(0.0, |n| n as f64);
    Ok(rows
        .iter()
        .filter_map(|row| {
            Some((
                row[0].int()?,
                Counters {
                    calls: number(&row[1]),
                    exec_ms: row[2].float().unwrap_or(0.0),
                    blocks: number(&row[3]),
                    rows: number(&row[4]),
                },
            ))
        })
        .collect())
}

/// The load of each `(version, tag)` over `sample`, in the order given. PostgreSQL only: the
/// error says what is missing (the dialect, the extension, the privilege).
pub async fn sample_load(
    connection: &mut Connection,
    versions: &[(String, String)],
    sample: Duration,
) -> Result<Vec<DatabaseLoad>, String> {
    if !matches!(connection, Connection::Postgres(_)) {
        return Err(
            "per-version database load is sampled on PostgreSQL only (pg_stat_statements)"
                .to_owned(),
        );
    }
    let missing = |e: sqlx::Error| {
        format!(
            "cannot read pg_stat_statements (loaded by shared_preload_libraries and created in this database with CREATE EXTENSION pg_stat_statements?): {e}"
        )
    };
    let before = statements(connection).await.map_err(missing)?;
    let tags: Vec<Bind> = versions
        .iter()
        .map(|(_, tag)| Bind::Text(Some(tag.clone())))
        .collect();
    let placeholders: Vec<String> = (1..=tags.len()).map(|i| format!("${i}")).collect();
    let activity = format!(
        "SELECT application_name, query_id, \
         CASE WHEN state = 'active' THEN CAST(1 AS BIGINT) ELSE 0 END, \
         CASE WHEN wait_event_type = 'Lock' THEN CAST(1 AS BIGINT) ELSE 0 END \
         FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name IN ({})",
        placeholders.join(", ")
    );
    let shape = [Kind::Text, Kind::Int, Kind::Int, Kind::Int];
    let mut loads: Vec<DatabaseLoad> = versions
        .iter()
        .map(|(version, tag)| DatabaseLoad {
            version: version.clone(),
            tag: tag.clone(),
            ..DatabaseLoad::default()
        })
        .collect();
    let mut seen: Vec<HashSet<i64>> = vec![HashSet::new(); versions.len()];
    let end = Instant::now() + sample;
    loop {
        let rows = connection
            .fetch_rows(&activity, &tags, &shape)
            .await
            .map_err(|e| format!("cannot read pg_stat_activity: {e}"))?;
        let mut at_once = vec![0u64; loads.len()];
        for row in &rows {
            let Some(i) = loads
                .iter()
                .position(|l| Some(l.tag.as_str()) == row[0].text())
            else {
                continue;
            };
            let load = &mut loads[i];
            load.session_samples += 1;
            load.active_samples += row[2].int().unwrap_or(0) as u64;
            load.lock_wait_samples += row[3].int().unwrap_or(0) as u64;
            at_once[i] += 1;
            if let Some(query) = row[1].int().filter(|q| *q != 0) {
                seen[i].insert(query);
            }
        }
        for (load, n) in loads.iter_mut().zip(at_once) {
            load.samples += 1;
            load.sessions = load.sessions.max(n);
        }
        if Instant::now() + INTERVAL > end {
            break;
        }
        tokio::time::sleep(INTERVAL).await;
    }
    let after = statements(connection).await.map_err(missing)?;
    for (load, queries) in loads.iter_mut().zip(&seen) {
        for query in queries {
            let (Some(now), then) = (after.get(query), before.get(query).copied()) else {
                continue;
            };
            let then = then.unwrap_or_default();
            // A reset in between (pg_stat_statements_reset) shows as fewer calls: count from 0.
            let then = if now.calls < then.calls {
                Counters::default()
            } else {
                then
            };
            load.calls += now.calls - then.calls;
            load.exec_ms += now.exec_ms - then.exec_ms;
            load.blocks += now.blocks - then.blocks;
            load.rows += now.rows - then.rows;
        }
    }
    Ok(loads)
}
