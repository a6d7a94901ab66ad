//! What each app version costs the shared database, sampled while both versions serve. Each
//! version's sessions carry its tag ([`shiftguard_core::release::load::session_tag`]); the
//! sampler reads the server's statement counters before and after the sample and the tagged
//! sessions' state every [`INTERVAL`] in between. PostgreSQL: [`postgres`]; MySQL/MariaDB:
//! [`mysql`].

mod mysql;
mod postgres;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use shiftguard_core::release::load::{DatabaseLoad, LoadSource};

use crate::connection::{Bind, Connection, Kind};

/// How often the sessions are sampled.
pub const INTERVAL: Duration = Duration::from_millis(100);

/// The load of each `(version, tag)` over `sample`, in the order given, counting only sessions
/// of the app's own database `roles` connected to this database and tagged when the sample
/// began: a tag is a label any session may carry, so another role's session, or one tagged
/// part-way, steers nothing. The error says what is missing (the roles, the dialect, the
/// extension or setting, the privilege).
pub async fn sample_load(
    connection: &mut Connection,
    versions: &[(String, String)],
    roles: &[String],
    sample: Duration,
) -> Result<Vec<DatabaseLoad>, String> {
    if roles.is_empty() {
        return Err(
            "no database roles to sample (SHIFTGUARD_DATABASE_ROLES): a session's tag alone is not trusted"
                .to_owned(),
        );
    }
    let scope = Scope::new(connection, versions, roles);
    match connection {
        Connection::Postgres(_) => postgres::sample(connection, versions, &scope, sample).await,
        Connection::MySql(_) => mysql::sample(connection, versions, &scope, sample).await,
        Connection::Sqlite(_) => Err(
            "per-version database load is sampled on PostgreSQL (pg_stat_statements) and MySQL/MariaDB (performance_schema), not SQLite"
                .to_owned(),
        ),
    }
}

/// A statement's or a session's counters: calls, execution ms, shared blocks (PostgreSQL), rows
/// examined (MySQL/MariaDB), rows returned or affected.
#[derive(Clone, Copy, Debug, Default)]
struct Counters {
    calls: f64,
    exec_ms: f64,
    blocks: f64,
    rows_examined: f64,
    rows: f64,
}

impl Counters {
    /// What was counted since `then` (nothing before: all of it). A reset in between
    /// (`pg_stat_statements_reset`, `TRUNCATE` of a summary table) shows as fewer calls: count
    /// from 0.
    fn since(self, then: Option<&Counters>) -> Counters {
        match then {
            Some(then) if then.calls <= self.calls => Counters {
                calls: self.calls - then.calls,
                exec_ms: self.exec_ms - then.exec_ms,
                blocks: self.blocks - then.blocks,
                rows_examined: self.rows_examined - then.rows_examined,
                rows: self.rows - then.rows,
            },
            _ => self,
        }
    }

    /// Adds `share` of these counters to `load`.
    fn add_share(self, load: &mut DatabaseLoad, share: f64) {
        load.calls += self.calls * share;
        load.exec_ms += self.exec_ms * share;
        load.blocks += self.blocks * share;
        load.rows_examined += self.rows_examined * share;
        load.rows += self.rows * share;
    }
}

/// An empty load per `(version, tag)`.
fn loads(versions: &[(String, String)], source: LoadSource) -> Vec<DatabaseLoad> {
    versions
        .iter()
        .map(|(version, tag)| DatabaseLoad {
            version: version.clone(),
            tag: tag.clone(),
            source,
            ..DatabaseLoad::default()
        })
        .collect()
}

/// Which sessions count, as SQL and its binds: the versions' tags (placeholders `tags`) and
/// the app's roles (placeholders `roles`), bound in that order as `binds`; and the roles alone
/// (`only_roles`, bound as [`Scope::role_binds`]).
struct Scope {
    tags: String,
    roles: String,
    binds: Vec<Bind>,
    only_roles: String,
    /// Where the roles start in `binds`.
    first_role: usize,
}

impl Scope {
    fn new(connection: &Connection, versions: &[(String, String)], roles: &[String]) -> Scope {
        let binds: Vec<Bind> = versions
            .iter()
            .map(|(_, tag)| tag)
            .chain(roles)
            .map(|text| Bind::Text(Some(text.clone())))
            .collect();
        Scope {
            tags: placeholders(connection, 1..=versions.len()),
            roles: placeholders(connection, versions.len() + 1..=binds.len()),
            only_roles: placeholders(connection, 1..=roles.len()),
            first_role: versions.len(),
            binds,
        }
    }

    /// The roles' binds alone, for `only_roles`.
    fn role_binds(&self) -> &[Bind] {
        &self.binds[self.first_role..]
    }
}

/// Bind placeholders number `n` in the connection's dialect, comma-separated.
fn placeholders(connection: &Connection, n: std::ops::RangeInclusive<usize>) -> String {
    let one = |i: usize| match connection {
        Connection::Postgres(_) => format!("${i}"),
        _ => "?".to_owned(),
    };
    n.map(one).collect::<Vec<_>>().join(", ")
}

/// Runs `activity` every [`INTERVAL`] until `sample` ends, binding the scope; its rows are one
/// per tagged session: tag, the statement it runs or last ran (NULL when unknown), whether it
/// runs one (1/0; NULL when hidden from this role), whether it waits for a lock (1/0), the
/// session's id. Only the sessions of the first read count (a session tagged later would bring
/// what it did before). Adds the sessions to `loads`; returns, per load, in how many samples its
/// sessions showed each statement. `Err(None)`: a session's state was hidden.
async fn watch_sessions(
    connection: &mut Connection,
    activity: &str,
    scope: &Scope,
    loads: &mut [DatabaseLoad],
    sample: Duration,
) -> Result<Vec<HashMap<i64, u64>>, Option<String>> {
    let shape = [Kind::Text, Kind::Int, Kind::Int, Kind::Int, Kind::Int];
    let mut seen: Vec<HashMap<i64, u64>> = vec![HashMap::new(); loads.len()];
    let mut first: Option<HashMap<i64, String>> = None;
    let end = Instant::now() + sample;
    loop {
        let rows = connection
            .fetch_rows(activity, &scope.binds, &shape)
            .await
            .map_err(|e| Some(format!("cannot read the sessions' activity: {e}")))?;
        let first = first.get_or_insert_with(|| {
            rows.iter()
                .filter_map(|row| Some((row[4].int()?, row[0].text()?.to_owned())))
                .collect()
        });
        let mut at_once = vec![0u64; loads.len()];
        for row in &rows {
            let tagged_at_first = row[4]
                .int()
                .and_then(|id| first.get(&id))
                .is_some_and(|tag| Some(tag.as_str()) == row[0].text());
            let Some(i) = loads
                .iter()
                .position(|l| Some(l.tag.as_str()) == row[0].text())
                .filter(|_| tagged_at_first)
            else {
                continue;
            };
            let active = row[2].int().ok_or(None)?;
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
    Ok(seen)
}
