//! PostgreSQL (14 or later): the statement statistics of `pg_stat_statements` before and after
//! the sample, and `pg_stat_activity` every [`super::INTERVAL`] in between. Each version's sessions
//! carry its tag in `application_name`; a session's `query_id` names the statement it runs or
//! last ran. A statement's deltas are shared among the tags in proportion to the samples in
//! which each tag's sessions showed it, so a statement both versions run counts for each by its
//! share (at a 10% canary mostly for the current version), and a statement only one runs counts
//! wholly for it.
//!
//! Needs `pg_stat_statements` loaded (`shared_preload_libraries`) and created in the database,
//! `compute_query_id` not `off`, and a role that may read other roles' statistics
//! (`pg_read_all_stats`, part of `pg_monitor`): without it PostgreSQL hides their statements and
//! sessions, which the sampler reports as an error rather than as no load. Costs two reads of
//! `pg_stat_statements` (one row per distinct statement of the database) and one small read of
//! `pg_stat_activity` per interval.

use std::collections::HashMap;
use std::time::Duration;

use shiftguard_core::release::load::{DatabaseLoad, LoadSource};

use super::{Counters, Scope, watch_sessions};
use crate::connection::{Cell, Connection, Kind};

/// The statements' counters of the app's roles (placeholders `roles`), without their text
/// (`pg_stat_statements(false)` does not read the file of query texts, as the view does for
/// every row), summed per `queryid`: a statement has a row per role and per nesting level. A
/// role that may not read other roles' statistics sees their `queryid` as NULL.
fn statements_sql(roles: &str) -> String {
    format!(
        "SELECT queryid, CAST(sum(calls) AS BIGINT), sum(total_exec_time), \
         CAST(sum(shared_blks_hit + shared_blks_read) AS BIGINT), CAST(sum(rows) AS BIGINT) \
         FROM pg_stat_statements(false) \
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         AND userid IN (SELECT oid FROM pg_roles WHERE rolname IN ({roles})) \
         GROUP BY queryid"
    )
}

const STATEMENTS_SHAPE: [Kind; 5] = [Kind::Int, Kind::Int, Kind::Float, Kind::Int, Kind::Int];

/// Every statement's counters of the app's roles; an error when some are hidden from this role.
async fn statements(
    connection: &mut Connection,
    scope: &Scope,
) -> Result<HashMap<i64, Counters>, String> {
    let rows = connection
        .fetch_rows(&statements_sql(&scope.only_roles), scope.role_binds(), &STATEMENTS_SHAPE)
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
            ..Counters::default()
        };
        statements.insert(query, counters);
    }
    Ok(statements)
}

const HIDDEN: &str = "other roles' statements and sessions are hidden from this role: GRANT pg_read_all_stats (or pg_monitor) to it";

/// The load of each `(version, tag)` over `sample`, in the order given; the error says what is
/// missing (the extension, the setting, the privilege).
pub(super) async fn sample(
    connection: &mut Connection,
    versions: &[(String, String)],
    scope: &Scope,
    sample: Duration,
) -> Result<Vec<DatabaseLoad>, String> {
    let setting = connection
        .fetch_strings("SELECT current_setting('compute_query_id')")
        .await
        .map_err(|e| format!("cannot read compute_query_id (PostgreSQL 14 or later?): {e}"))?;
    if setting.first().map(String::as_str) == Some("off") {
        return Err("compute_query_id is off: sessions name no statement".to_owned());
    }
    let before = statements(connection, scope).await?;
    // `state` is NULL for a session whose details this role may not see. Only the app's roles'
    // sessions in this database count: any session may set an application_name.
    let activity = format!(
        "SELECT application_name, query_id, \
         CASE WHEN state IS NULL THEN NULL WHEN state = 'active' THEN CAST(1 AS BIGINT) ELSE 0 END, \
         CASE WHEN wait_event_type = 'Lock' THEN CAST(1 AS BIGINT) ELSE 0 END, \
         CAST(pid AS BIGINT) \
         FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name IN ({}) AND usename IN ({})",
        scope.tags, scope.roles
    );
    let mut loads = super::loads(versions, LoadSource::PgStatStatements);
    let seen = watch_sessions(connection, &activity, scope, &mut loads, sample)
        .await
        .map_err(|e| e.unwrap_or_else(|| HIDDEN.to_owned()))?;
    let after = statements(connection, scope).await?;
    let mut shown: HashMap<i64, u64> = HashMap::new();
    for (query, n) in seen.iter().flatten() {
        *shown.entry(*query).or_default() += n;
    }
    for (load, queries) in loads.iter_mut().zip(&seen) {
        for (query, n) in queries {
            let Some(now) = after.get(query) else {
                continue;
            };
            let share = *n as f64 / shown[query] as f64;
            now.since(before.get(query)).add_share(load, share);
        }
    }
    Ok(loads)
}
