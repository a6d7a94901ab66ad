//! MySQL/MariaDB: `performance_schema` counts every thread's statements by kind
//! (`events_statements_summary_by_thread_by_event_name`: calls, time, rows examined, sent and
//! affected), so each tagged session's counters before and after the sample give each version's
//! load exactly, with no sharing estimate; `performance_schema.threads` and InnoDB's
//! transactions, read every [`super::INTERVAL`], give its sessions' state. A session carries its tag in the user variable
//! `@shiftguard_tag` (`SET @shiftguard_tag = 'v2:orders-api'` after connecting: drivers such as
//! sqlx send no connection attributes) or in the connection attribute `program_name`.
//!
//! Needs `performance_schema = ON` in the server's configuration (read at start), its
//! `global_instrumentation` and `thread_instrumentation` consumers (on by default), and a user
//! with `SELECT` on `performance_schema` and `PROCESS` (InnoDB's transactions). A session that
//! disconnects during the sample takes its counters with it (both versions alike).

use std::collections::HashMap;
use std::time::Duration;

use shiftguard_core::release::load::{DatabaseLoad, LoadSource};

use super::{Counters, Scope, watch_sessions};
use crate::connection::{Bind, Connection, Kind};

/// Every thread with its tag (NULL for an untagged one), as a derived table.
const TAGGED: &str = "(SELECT t.THREAD_ID, t.PROCESSLIST_ID, t.PROCESSLIST_COMMAND, \
     t.PROCESSLIST_STATE, t.INSTRUMENTED, t.PROCESSLIST_USER, t.PROCESSLIST_DB, COALESCE(CAST(v.VARIABLE_VALUE AS CHAR), a.ATTR_VALUE) AS tag \
     FROM performance_schema.threads t \
     LEFT JOIN performance_schema.user_variables_by_thread v \
     ON v.THREAD_ID = t.THREAD_ID AND v.VARIABLE_NAME = 'shiftguard_tag' \
     LEFT JOIN performance_schema.session_connect_attrs a \
     ON a.PROCESSLIST_ID = t.PROCESSLIST_ID AND a.ATTR_NAME = 'program_name') tagged";

/// The sampler's checks: what must be on for the counters to count.
async fn check(connection: &mut Connection) -> Result<(), String> {
    let on = connection
        .fetch_strings("SELECT IF(@@performance_schema, 'on', 'off')")
        .await
        .map_err(|e| format!("cannot read @@performance_schema: {e}"))?;
    if on.first().map(String::as_str) != Some("on") {
        return Err(
            "performance_schema is off: set performance_schema = ON in the server's configuration (read at start)"
                .to_owned(),
        );
    }
    let off = connection
        .fetch_strings(
            "SELECT NAME FROM performance_schema.setup_consumers \
             WHERE NAME IN ('global_instrumentation', 'thread_instrumentation') AND ENABLED <> 'YES'",
        )
        .await
        .map_err(|e| {
            format!("cannot read performance_schema (GRANT SELECT ON performance_schema.* and PROCESS to this user): {e}")
        })?;
    if !off.is_empty() {
        return Err(format!(
            "performance_schema's consumer {} is off: UPDATE performance_schema.setup_consumers SET ENABLED = 'YES' WHERE NAME = '{}'",
            off[0], off[0]
        ));
    }
    // An instrument off counts nothing: no load, which is not the same as a cheap version.
    let untimed = connection
        .fetch_strings(
            "SELECT NAME FROM performance_schema.setup_instruments \
             WHERE NAME IN ('statement/com/Execute', 'statement/sql/select', \
             'statement/sql/insert', 'statement/sql/update', 'statement/sql/delete') \
             AND (ENABLED <> 'YES' OR TIMED <> 'YES')",
        )
        .await
        .map_err(|e| format!("cannot read performance_schema.setup_instruments: {e}"))?;
    if let Some(name) = untimed.first() {
        return Err(format!(
            "performance_schema's instrument {name} is not enabled and timed: UPDATE performance_schema.setup_instruments SET ENABLED = 'YES', TIMED = 'YES' WHERE NAME = '{name}'"
        ));
    }
    Ok(())
}

/// Each tagged session's statement counters, by thread: (tag, counters).
async fn sessions(
    connection: &mut Connection,
    counters: &str,
    tags: &[Bind],
) -> Result<HashMap<i64, (String, Counters)>, String> {
    let shape = [
        Kind::Int,
        Kind::Text,
        Kind::Int,
        Kind::Float,
        Kind::Int,
        Kind::Int,
    ];
    let rows = connection
        .fetch_rows(counters, tags, &shape)
        .await
        .map_err(|e| format!("cannot read performance_schema's statement counters: {e}"))?;
    let number = |n: Option<i64>| n.map_or(0.0, |n| n as f64);
    Ok(rows
        .iter()
        .filter_map(|row| {
            let counters = Counters {
                calls: number(row[2].int()),
                exec_ms: row[3].float().unwrap_or(0.0),
                rows_examined: number(row[4].int()),
                rows: number(row[5].int()),
                ..Counters::default()
            };
            Some((row[0].int()?, (row[1].text()?.to_owned(), counters)))
        })
        .collect())
}

/// The load of each `(version, tag)` over `sample`, in the order given.
pub(super) async fn sample(
    connection: &mut Connection,
    versions: &[(String, String)],
    scope: &Scope,
    sample: Duration,
) -> Result<Vec<DatabaseLoad>, String> {
    check(connection).await?;
    // Only the app's users' sessions in this database count: any session may set the tag.
    let wanted = format!(
        "tagged.tag IN ({}) AND tagged.PROCESSLIST_USER IN ({}) AND tagged.PROCESSLIST_DB = DATABASE()",
        scope.tags, scope.roles
    );
    // Statements sent as text count as `statement/sql/*`; a prepared statement's execution
    // (sqlx prepares every query) as `statement/com/Execute`, with its time and rows; preparing
    // it, pings and the like are not calls, nor the `SET`s a driver sends as it connects.
    // Every tagged session is listed, one that has counted nothing yet too (with zeros).
    let counters = format!(
        "SELECT CAST(tagged.THREAD_ID AS SIGNED), tagged.tag, \
         CAST(COALESCE(SUM(s.COUNT_STAR), 0) AS SIGNED), COALESCE(SUM(s.SUM_TIMER_WAIT), 0) / 1e9, \
         CAST(COALESCE(SUM(s.SUM_ROWS_EXAMINED), 0) AS SIGNED), \
         CAST(COALESCE(SUM(s.SUM_ROWS_SENT + s.SUM_ROWS_AFFECTED), 0) AS SIGNED) \
         FROM {TAGGED} \
         LEFT JOIN performance_schema.events_statements_summary_by_thread_by_event_name s \
         ON s.THREAD_ID = tagged.THREAD_ID AND s.COUNT_STAR > 0 \
         AND ((s.EVENT_NAME LIKE 'statement/sql/%' AND s.EVENT_NAME <> 'statement/sql/set_option') \
         OR s.EVENT_NAME = 'statement/com/Execute') \
         WHERE {wanted} \
         GROUP BY tagged.THREAD_ID, tagged.tag"
    );
    // A thread waits for a lock when InnoDB says so (a row lock) or its state does (metadata
    // and table locks). An uninstrumented thread's "running" is NULL: its statements would not
    // be counted.
    let activity = format!(
        "SELECT tagged.tag, CAST(NULL AS SIGNED), \
         CASE WHEN tagged.INSTRUMENTED <> 'YES' THEN NULL \
         WHEN tagged.PROCESSLIST_COMMAND IN ('Query', 'Execute') THEN 1 ELSE 0 END, \
         CASE WHEN tagged.PROCESSLIST_STATE LIKE 'Waiting for%lock' \
         OR waiting.id IS NOT NULL THEN 1 ELSE 0 END, \
         CAST(tagged.THREAD_ID AS SIGNED) \
         FROM {TAGGED} \
         LEFT JOIN (SELECT trx_mysql_thread_id AS id FROM information_schema.INNODB_TRX \
         WHERE trx_state = 'LOCK WAIT') waiting ON waiting.id = tagged.PROCESSLIST_ID \
         WHERE {wanted}"
    );
    let before = sessions(connection, &counters, &scope.binds).await?;
    let mut loads = super::loads(versions, LoadSource::PerformanceSchema);
    watch_sessions(connection, &activity, scope, &mut loads, sample)
        .await
        .map_err(|e| {
            e.unwrap_or_else(|| {
                "a tagged session is not instrumented (performance_schema.setup_actors): its statements are not counted".to_owned()
            })
        })?;
    let after = sessions(connection, &counters, &scope.binds).await?;
    for (thread, (tag, now)) in &after {
        // A session tagged after the first snapshot would bring its counters from before it.
        let Some((_, then)) = before.get(thread).filter(|(first, _)| first == tag) else {
            continue;
        };
        let Some(load) = loads.iter_mut().find(|load| &load.tag == tag) else {
            continue;
        };
        now.since(Some(then)).add_share(load, 1.0);
    }
    Ok(loads)
}
