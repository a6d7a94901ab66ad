//! What each app version costs the shared database, sampled on PostgreSQL (14 or later): the
//! statement statistics of `pg_stat_statements` before and after the sample, and
//! `pg_stat_activity` every [`INTERVAL`] in between. Each version's sessions carry its tag in
//! `application_name` ([`shiftguard_core::release::load::session_tag`]); a session's `query_id`
//! names the statement it runs or last ran. A statement's deltas are shared among the tags in
//! proportion to the samples in which each tag's sessions showed it, so a statement both
//! versions run counts for each by its share (at a 10% canary mostly for the current version),
//! and a statement only one runs counts wholly for it.
//!
//! Needs `pg_stat_statements` loaded (`shared_preload_libraries`) and created in the database,
//! `compute_query_id` not `off`, and a role that may read other roles' statistics
//! (`pg_read_all_stats`, part of `pg_monitor`): without it PostgreSQL hides their statements and
//! sessions, which the sampler reports as an error rather than as no load. Costs two reads of
//! `pg_stat_statements` (one row per distinct statement of the database) and one small read of
//! `pg_stat_activity` per interval.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use shiftguard_core::release::load::DatabaseLoad;

use crate::connection::{Bind, Cell, Connection, Kind};

/// How often the sessions are sampled.
pub const INTERVAL: Duration = Duration::from_millis(100);

/// The statements' counters, without their text (`pg_stat_statements(false)` does not read the
/// file of query texts, as the view does for every row), summed per `queryid`: a statement has
/// a row per role and per nesting level. A role that may not read other roles' statistics sees
/// their `queryid` as NULL.
const STATEMENTS: &str = "SELECT queryid, CAST(sum(calls) AS BIGINT), sum(total_exec_time), \
     CAST(sum(shared_blks_hit + shared_blks_read) AS BIGINT), CAST(sum(rows) AS BIGINT) \
     FROM pg_stat_statements(false) \
     WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
     GROUP BY queryid";

const STATEMENTS_SHAPE: [Kind; 5] = [Kind::Int, Kind::Int, Kind::Float, Kind::Int, Kind::Int];

/// One statement's counters: calls, execution ms, shared blocks, rows.
#[derive(Clone, Copy, Debug, Default)]
struct Counters {
    calls: f64,
    exec_ms: f64,
    blocks: f64,
    rows: f64,
}

/// Every statement's counters; an error when some are hidden from this role.
async fn statements(connection: &mut Connection) -> Result<HashMap<i64, Counters>, String> {
    let rows = connection
        .fetch_rows(STATEMENTS, &[], &STATEMENTS_SHAPE)
        .await
        .map_err(|e| {
            format!(
                "cannot read pg_stat_statements (loaded by shared_preload_libraries and created in this database with CREATE EXTENSION pg_stat_statements?): {e}"
            )
        })?;
    let number = |cell: &Cell| cell.int().map_or(0.0, |n| n as f64);
    let mut statements = HashMap::with_capacity(rows.len());
    for row in &rows {
        let Some(query) = row[0].int() else {
            return Err(HIDDEN.to_owned());
        };
        let counters = Counters {
            calls: number(&row[1]),
            exec_ms: row[2].float().unwrap_or(0.0),
            blocks: number(&row[3]),
            rows: number(&row[4]),
        };
        statements.insert(query, counters);
    }
    Ok(statements)
}

const HIDDEN: &str = "other roles' statements and sessions are hidden from this role: GRANT pg_read_all_stats (or pg_monitor) to it";

/// The load of each `(version, tag)` over `sample`, in the order given. PostgreSQL only: the
/// error says what is missing (the dialect, the extension, the setting, the privilege).
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
    let setting = connection
        .fetch_strings("SELECT current_setting('compute_query_id')")
        .await
        .map_err(|e| format!("cannot read compute_query_id (PostgreSQL 14 or later?): {e}"))?;
    if setting.first().map(String::as_str) == Some("off") {
        return Err("compute_query_id is off: sessions name no statement".to_owned());
    }
    let before = statements(connection).await?;
    let tags: Vec<Bind> = versions
        .iter()
        .map(|(_, tag)| Bind::Text(Some(tag.clone())))
        .collect();
    let placeholders: Vec<String> = (1..=tags.len()).map(|i| format!("${i}")).collect();
    // `state` is NULL for a session whose details this role may not see.
    let activity = format!(
        "SELECT application_name, query_id, \
         CASE WHEN state IS NULL THEN NULL WHEN state = 'active' THEN CAST(1 AS BIGINT) ELSE 0 END, \
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
    // Per tag, in how many samples its sessions showed each statement.
    let mut seen: Vec<HashMap<i64, u64>> = vec![HashMap::new(); versions.len()];
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
            let Some(active) = row[2].int() else {
                return Err(HIDDEN.to_owned());
            };
            let load = &mut loads[i];
            load.session_samples += 1;
            load.active_samples += active as u64;
            load.lock_wait_samples += row[3].int().unwrap_or(0) as u64;
            at_once[i] += 1;
            if let Some(query) = row[1].int().filter(|q| *q != 0) {
                *seen[i].entry(query).or_default() += 1;
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
    let after = statements(connection).await?;
    let mut shown: HashMap<i64, u64> = HashMap::new();
    for (query, n) in seen.iter().flatten() {
        *shown.entry(*query).or_default() += n;
    }
    for (load, queries) in loads.iter_mut().zip(&seen) {
        for (query, n) in queries {
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
            let share = *n as f64 / shown[query] as f64;
            load.calls += (now.calls - then.calls) * share;
            load.exec_ms += (now.exec_ms - then.exec_ms) * share;
            load.blocks += (now.blocks - then.blocks) * share;
            load.rows += (now.rows - then.rows) * share;
        }
    }
    Ok(loads)
}
