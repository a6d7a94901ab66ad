//! Keeping a backfill gentle between batches: wait while the database is under strain (replicas
//! lagging behind the limit, so the backfill never outruns replication; the configured
//! `throttle_query` above `throttle_max`; on PostgreSQL a VACUUM on the table or WAL waiting to
//! be archived; on MySQL/MariaDB too many running threads), then honour the rows/s cap and the
//! configured pause. A signal that cannot be known (no replica status, stopped replication, a
//! query answering NULL) counts as infinitely high: the backfill fails closed by waiting. Every
//! wait renews an external store's lease and gives up before the run's deadline.

use std::time::{Duration, Instant};

use shiftguard_core::backfill::{Checkpoint, Reading, Signal, Tuning, first_hold, rate_wait};

use super::lock::Attached;
use super::statements::double;
use super::{BackfillError, Event, LagSource, Runner};
use crate::connection::{Bind, Cell, ConnectSettings, Connection, Kind};
use crate::error::{ErrorClass, classify};
use crate::url::{DatabaseUrl, Dialect};
use shiftguard_core::sql_fragments::without_final_semicolon;

/// How often to re-check the signals while held.
const HOLD_POLL: Duration = Duration::from_millis(500);

/// A number from `sql` (one row, one column) as a float in the dialect's spelling.
fn number_query(dialect: Dialect, sql: &str) -> String {
    // The newline ends a trailing `--` comment before the closing parenthesis.
    let sql = without_final_semicolon(sql);
    format!("SELECT {}", double(dialect, &format!("({sql}\n)")))
}

/// VACUUMs (auto or manual) running on the table `$1`, its partitions or their TOAST tables,
/// PostgreSQL; -1 when this role cannot see autovacuum's workers (it needs `pg_read_all_stats`).
const VACUUMS: &str = "WITH rels AS (SELECT CAST(to_regclass($1) AS oid) AS oid \
    UNION SELECT CAST(relid AS oid) FROM pg_partition_tree(to_regclass($1))), \
    watched AS (SELECT oid FROM rels UNION SELECT c.reltoastrelid FROM pg_class c JOIN rels r ON r.oid = c.oid) \
    SELECT CAST(CASE WHEN pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') THEN \
    (SELECT count(*) FROM pg_stat_progress_vacuum v WHERE v.datname = current_database() \
    AND v.relid IN (SELECT oid FROM watched)) ELSE -1 END AS DOUBLE PRECISION)";
/// WAL segments waiting to be archived, PostgreSQL (needs pg_monitor or superuser).
const ARCHIVE_PENDING: &str = "SELECT CAST(count(*) AS DOUBLE PRECISION) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'";

/// The query that reads the lag in milliseconds on the primary, for the sources that have one.
fn lag_query(dialect: Dialect, source: &LagSource) -> Option<String> {
    let value = match source {
        LagSource::PostgresReplication => double(
            dialect,
            "(SELECT COALESCE(EXTRACT(EPOCH FROM max(replay_lag)) * 1000, 0) FROM pg_stat_replication)",
        ),
        LagSource::Query(sql) => {
            let sql = without_final_semicolon(sql);
            double(dialect, &format!("({sql}\n)"))
        }
        LagSource::None | LagSource::MySqlReplica(_) => return None,
    };
    Some(format!("SELECT {value}"))
}

/// The wait before the next batch: what keeps the run under the rows/s cap, plus the pause.
fn pacing(scanned: u64, elapsed: Duration, tuning: &Tuning) -> Duration {
    rate_wait(scanned, elapsed, tuning.max_rows_per_second) + Duration::from_millis(tuning.pause_ms)
}

impl Runner<'_> {
    /// Waits while any health signal holds. `Ok(None)` when the deadline came first; else the
    /// replica lag last read, for the batch's report. A hold is reported when it starts and
    /// when the holding signal changes, not at every poll.
    pub(super) async fn wait_for_health(
        &self,
        connection: &mut Connection,
        checkpoint: &mut Checkpoint,
        deadline: Instant,
        observe: &mut dyn FnMut(&Event),
    ) -> Result<Option<f64>, BackfillError> {
        let mut reported: Option<Signal> = None;
        loop {
            // Reading the signals is bounded by the deadline too: a database too strained to
            // answer in time holds the backfill.
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(readings) = tokio::time::timeout(left, self.health(connection)).await else {
                return Ok(None);
            };
            let readings = readings?;
            let Some(hold) = first_hold(&readings) else {
                return Ok(Some(readings[0].value));
            };
            self.renew_lease(connection, checkpoint).await?;
            if reported != Some(hold.signal) {
                observe(&Event::Held(*hold));
                reported = Some(hold.signal);
            }
            if Instant::now() + HOLD_POLL > deadline {
                return Ok(None);
            }
            tokio::time::sleep(HOLD_POLL).await;
        }
    }

    /// Every configured signal, replica lag first.
    async fn health(&self, connection: &mut Connection) -> Result<Vec<Reading>, BackfillError> {
        let tuning = &self.config.tuning;
        let mut readings = vec![Reading {
            signal: Signal::ReplicaLag,
            value: self.replica_lag(connection).await?,
            limit: tuning.max_replica_lag_ms as f64,
        }];
        if let Some(sql) = &tuning.throttle_query {
            let value = self.throttle_query(connection, sql).await?;
            readings.push(Reading {
                signal: Signal::ThrottleQuery,
                value,
                limit: tuning.throttle_max as f64,
            });
        }
        let table = [Bind::Text(Some(self.config.table.clone()))];
        let mut checks: Vec<(Signal, &str, &[Bind], f64)> = Vec::new();
        if tuning.hold_on_vacuum {
            checks.push((Signal::Vacuum, VACUUMS, &table, 0.0));
        }
        if let Some(max) = tuning.max_archive_pending {
            checks.push((Signal::ArchivePending, ARCHIVE_PENDING, &[], max as f64));
        }
        for (signal, sql, binds, limit) in checks {
            let row = connection.fetch_row(sql, binds, &[Kind::Float]).await;
            let value = self.signal_value(signal, row)?;
            if signal == Signal::Vacuum && value < 0.0 {
                return Err(self.target_error(
                    "hold_on_vacuum needs a role with pg_read_all_stats (or a superuser): without it autovacuum's workers are invisible",
                ));
            }
            readings.push(Reading {
                signal,
                value,
                limit,
            });
        }
        if let Some(max) = tuning.max_threads_running {
            let running = connection
                .fetch_row_named("SHOW GLOBAL STATUS LIKE 'Threads_running'", &["Value"])
                .await
                .map(|n| n.map(|n| vec![Cell::Float(Some(n as f64))]));
            readings.push(Reading {
                signal: Signal::ThreadsRunning,
                value: self.signal_value(Signal::ThreadsRunning, running)?,
                limit: max as f64,
            });
        }
        Ok(readings)
    }

    /// A signal's number: NULL or no row is unknown, and so is a timeout or a transient error
    /// (a database too busy to answer): all hold. Other errors end the run, named.
    fn signal_value(
        &self,
        signal: Signal,
        row: Result<Option<Vec<Cell>>, sqlx::Error>,
    ) -> Result<f64, BackfillError> {
        match row {
            Ok(row) => Ok(row.and_then(|r| r[0].float()).unwrap_or(f64::INFINITY)),
            Err(e) if matches!(classify(&e), ErrorClass::Timeout | ErrorClass::Transient) => {
                Ok(f64::INFINITY)
            }
            Err(e) => Err(self.signal_error(signal, &e)),
        }
    }

    /// The configured `throttle_query`, in a read-only transaction so that it cannot change
    /// anything (it is rolled back either way).
    async fn throttle_query(
        &self,
        connection: &mut Connection,
        sql: &str,
    ) -> Result<f64, BackfillError> {
        let dialect = connection.dialect();
        let (begin, end) = match dialect {
            Dialect::Postgres => ("BEGIN READ ONLY", "ROLLBACK"),
            Dialect::MySql => ("START TRANSACTION READ ONLY", "ROLLBACK"),
            Dialect::Sqlite => ("PRAGMA query_only = ON", "PRAGMA query_only = OFF"),
        };
        connection
            .raw(begin)
            .await
            .map_err(|e| self.signal_error(Signal::ThrottleQuery, &e))?;
        let row = connection
            .fetch_row(&number_query(dialect, sql), &[], &[Kind::Float])
            .await;
        let ended = connection.raw(end).await;
        let value = self.signal_value(Signal::ThrottleQuery, row)?;
        ended.map_err(|e| self.signal_error(Signal::ThrottleQuery, &e))?;
        Ok(value)
    }

    /// A signal configured for another dialect would be silently ignored: refuse it.
    pub(super) fn check_signal_settings(&self, dialect: Dialect) -> Result<(), BackfillError> {
        let t = &self.config.tuning;
        let wrong = match dialect {
            Dialect::Postgres => t
                .max_threads_running
                .map(|_| "max_threads_running is for MySQL/MariaDB"),
            _ if t.hold_on_vacuum => Some("hold_on_vacuum is for PostgreSQL"),
            _ if t.max_archive_pending.is_some() => Some("max_archive_pending is for PostgreSQL"),
            Dialect::Sqlite if t.max_threads_running.is_some() => {
                Some("max_threads_running is for MySQL/MariaDB")
            }
            _ => None,
        };
        match wrong {
            Some(problem) => Err(self.target_error(problem)),
            None => Ok(()),
        }
    }

    /// Sleeps for the rows/s cap and the pause, after `scanned` rows since `started`.
    /// `false` when the wait would cross the deadline (nothing is waited then).
    pub(super) async fn pace(
        &self,
        attached: &mut Attached,
        scanned: u64,
        started: Instant,
        deadline: Instant,
    ) -> Result<bool, BackfillError> {
        let wait = pacing(scanned, started.elapsed(), &self.config.tuning);
        if wait.is_zero() {
            return Ok(true);
        }
        if Instant::now() + wait > deadline {
            return Ok(false);
        }
        // In slices of a third of the lease at most, renewing it between them: a long pause or
        // rate wait must not outlast the lease the run holds.
        let slice = Duration::from_millis((self.lease_ttl() / 3).max(1) as u64);
        let until = Instant::now() + wait;
        loop {
            self.renew_lease(&mut attached.connection, &mut attached.checkpoint)
                .await?;
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(true);
            }
            tokio::time::sleep(left.min(slice)).await;
        }
    }

    /// The replica lag in milliseconds, from the configured source (0 without one).
    async fn replica_lag(&self, connection: &mut Connection) -> Result<f64, BackfillError> {
        if let Some(query) = lag_query(connection.dialect(), &self.lag) {
            let row = connection
                .fetch_row(&query, &[], &[Kind::Float])
                .await
                .map_err(|e| self.signal_error(Signal::ReplicaLag, &e))?;
            // A configured query that answers NULL (or nothing) does not know the lag: fail
            // closed. (The PostgreSQL source answers 0 itself when no standby is connected.)
            return Ok(row.and_then(|r| r[0].float()).unwrap_or(f64::INFINITY));
        }
        match &self.lag {
            LagSource::MySqlReplica(url) => self.replica_status_lag(url).await,
            _ => Ok(0.0),
        }
    }

    /// `SHOW REPLICA STATUS` on a MySQL/MariaDB replica, over a connection of its own.
    async fn replica_status_lag(&self, url: &DatabaseUrl) -> Result<f64, BackfillError> {
        let mut replica = Connection::open(url, ConnectSettings::default()).await?;
        let rows = replica
            .fetch_row_named(
                "SHOW REPLICA STATUS",
                &["Seconds_Behind_Master", "Seconds_Behind_Source"],
            )
            .await
            .map_err(|e| self.signal_error(Signal::ReplicaLag, &e))?;
        replica.close().await;
        // No replica status, or replication stopped (NULL): fail closed as infinitely behind,
        // so the backfill waits instead of outrunning a broken replica.
        Ok(rows.map_or(f64::INFINITY, |seconds| seconds as f64 * 1000.0))
    }

    fn signal_error(&self, signal: Signal, error: &sqlx::Error) -> BackfillError {
        let what = match signal {
            Signal::ReplicaLag => "replica lag",
            Signal::ThrottleQuery => "the throttle_query",
            Signal::Vacuum => "the running VACUUMs",
            Signal::ArchivePending => {
                "the WAL archive status (max_archive_pending needs pg_monitor)"
            }
            Signal::ThreadsRunning => "Threads_running",
        };
        self.target_error(format!("cannot read {what}: {}", self.sql_error(error)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lag_is_read_as_a_float_in_each_dialect() {
        let query = LagSource::Query("SELECT ms FROM fake_lag".to_owned());
        assert_eq!(
            lag_query(Dialect::MySql, &query).as_deref(),
            Some("SELECT CAST((SELECT ms FROM fake_lag\n) AS DOUBLE)")
        );
        assert_eq!(
            lag_query(Dialect::Sqlite, &query).as_deref(),
            Some("SELECT CAST((SELECT ms FROM fake_lag\n) AS REAL)")
        );
        let postgres = lag_query(Dialect::Postgres, &LagSource::PostgresReplication).unwrap();
        assert!(
            postgres
                .starts_with("SELECT CAST((SELECT COALESCE(EXTRACT(EPOCH FROM max(replay_lag))")
        );
        assert!(postgres.ends_with("FROM pg_stat_replication) AS DOUBLE PRECISION)"));
        assert_eq!(lag_query(Dialect::Sqlite, &LagSource::None), None);
    }

    #[test]
    fn pacing_adds_the_pause_to_the_rate_cap() {
        let tuning = Tuning {
            max_rows_per_second: Some(1_000),
            pause_ms: 50,
            ..Tuning::default()
        };
        // 2,000 rows at 1,000/s may only be done after 2 s; 1.5 s have passed.
        assert_eq!(
            pacing(2_000, Duration::from_millis(1_500), &tuning),
            Duration::from_millis(550)
        );
        assert_eq!(
            pacing(500, Duration::from_secs(1), &tuning),
            Duration::from_millis(50)
        );
        assert_eq!(
            pacing(1_000_000, Duration::ZERO, &Tuning::default()),
            Duration::ZERO
        );
    }
}
