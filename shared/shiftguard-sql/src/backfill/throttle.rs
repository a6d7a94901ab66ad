//! Keeping a backfill gentle between batches: wait while replicas lag behind the limit (so the
//! backfill never outruns replication), then honour the rows/s cap and the configured pause.
//! A lag that cannot be known (no replica status, stopped replication, a query answering NULL)
//! counts as infinitely behind: the backfill fails closed by waiting. Every wait renews an
//! external store's lease and gives up before the run's deadline.

use std::time::{Duration, Instant};

use shiftguard_core::backfill::Tuning;
use shiftguard_core::backfill::{Checkpoint, rate_wait};

use super::lock::Attached;
use super::statements::double;
use super::{BackfillError, Event, LagSource, Runner};
use crate::connection::{ConnectSettings, Connection, Kind};
use crate::url::{DatabaseUrl, Dialect};

/// How often to re-check replica lag while throttled.
const LAG_POLL: Duration = Duration::from_millis(500);

/// The query that reads the lag in milliseconds on the primary, for the sources that have one.
fn lag_query(dialect: Dialect, source: &LagSource) -> Option<String> {
    let value = match source {
        LagSource::PostgresReplication => double(
            dialect,
            "(SELECT COALESCE(EXTRACT(EPOCH FROM max(replay_lag)) * 1000, 0) FROM pg_stat_replication)",
        ),
        LagSource::Query(sql) => double(dialect, &format!("({sql})")),
        LagSource::None | LagSource::MySqlReplica(_) => return None,
    };
    Some(format!("SELECT {value}"))
}

/// The wait before the next batch: what keeps the run under the rows/s cap, plus the pause.
fn pacing(scanned: u64, elapsed: Duration, tuning: &Tuning) -> Duration {
    rate_wait(scanned, elapsed, tuning.max_rows_per_second) + Duration::from_millis(tuning.pause_ms)
}

impl Runner<'_> {
    /// Waits while replica lag is above the limit. `Ok(None)` when the deadline came first.
    pub(super) async fn wait_for_replicas(
        &self,
        connection: &mut Connection,
        checkpoint: &mut Checkpoint,
        deadline: Instant,
        observe: &mut dyn FnMut(&Event),
    ) -> Result<Option<f64>, BackfillError> {
        let max = self.config.tuning.max_replica_lag_ms;
        loop {
            let lag = self.replica_lag(connection).await?;
            if lag <= max as f64 {
                return Ok(Some(lag));
            }
            self.renew_lease(connection, checkpoint).await?;
            observe(&Event::Throttled {
                lag_ms: lag,
                max_ms: max,
            });
            if Instant::now() + LAG_POLL > deadline {
                return Ok(None);
            }
            tokio::time::sleep(LAG_POLL).await;
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
        self.renew_lease(&mut attached.connection, &mut attached.checkpoint)
            .await?;
        tokio::time::sleep(wait).await;
        Ok(true)
    }

    /// The replica lag in milliseconds, from the configured source (0 without one).
    async fn replica_lag(&self, connection: &mut Connection) -> Result<f64, BackfillError> {
        if let Some(query) = lag_query(connection.dialect(), &self.lag) {
            let row = connection
                .fetch_row(&query, &[], &[Kind::Float])
                .await
                .map_err(|e| self.lag_error(&e))?;
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
            .map_err(|e| self.lag_error(&e))?;
        replica.close().await;
        // No replica status, or replication stopped (NULL): fail closed as infinitely behind,
        // so the backfill waits instead of outrunning a broken replica.
        Ok(rows.map_or(f64::INFINITY, |seconds| seconds as f64 * 1000.0))
    }

    fn lag_error(&self, error: &sqlx::Error) -> BackfillError {
        self.target_error(format!(
            "cannot read replica lag: {}",
            self.sql_error(error)
        ))
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
            Some("SELECT CAST((SELECT ms FROM fake_lag) AS DOUBLE)")
        );
        assert_eq!(
            lag_query(Dialect::Sqlite, &query).as_deref(),
            Some("SELECT CAST((SELECT ms FROM fake_lag) AS REAL)")
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
