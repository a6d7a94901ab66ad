//! The runner's database session: one connection, with lock and statement timeouts set for the
//! whole session, so that inspection, verification and checkpoint reads can never hang behind a
//! migration's lock either (batches tighten them per transaction on PostgreSQL). The settings
//! differ per dialect: PostgreSQL takes milliseconds, MySQL/MariaDB whole seconds for lock waits,
//! and only MariaDB knows `max_statement_time`; SQLite waits through its busy timeout.

use std::time::Duration;

use shiftguard_core::backfill::Tuning;

use super::{BackfillError, Runner};
use crate::connection::{ConnectSettings, Connection, Kind};
use crate::url::Dialect;

/// PostgreSQL's session timeouts, in milliseconds.
fn postgres_setup(tuning: &Tuning) -> String {
    format!(
        "SET lock_timeout = '{}ms'; SET statement_timeout = '{}ms'",
        tuning.lock_timeout_ms, tuning.statement_timeout_ms
    )
}

/// MySQL/MariaDB's session timeouts: lock waits in whole seconds (at least one). The first
/// statement is MariaDB's (`max_statement_time`, seconds); the second, for MySQL proper, whose
/// `max_execution_time` (milliseconds) covers SELECT only.
fn mysql_setups(tuning: &Tuning) -> [String; 2] {
    let lock_seconds = tuning.lock_timeout_ms.div_ceil(1000).max(1);
    let statement_seconds = tuning.statement_timeout_ms as f64 / 1000.0;
    [
        format!(
            "SET SESSION innodb_lock_wait_timeout = {lock_seconds}, SESSION lock_wait_timeout = {lock_seconds}, SESSION max_statement_time = {statement_seconds}"
        ),
        format!(
            "SET SESSION innodb_lock_wait_timeout = {lock_seconds}, SESSION lock_wait_timeout = {lock_seconds}, SESSION max_execution_time = {}",
            tuning.statement_timeout_ms
        ),
    ]
}

impl Runner<'_> {
    /// MySQL/MariaDB: the session's id, for the watchdog that kills a batch's statement.
    pub(super) async fn session_id(
        &self,
        connection: &mut Connection,
    ) -> Result<Option<u64>, BackfillError> {
        if connection.dialect() != Dialect::MySql {
            return Ok(None);
        }
        let row = connection
            .fetch_row("SELECT CAST(CONNECTION_ID() AS SIGNED)", &[], &[Kind::Int])
            .await
            .map_err(|e| self.target_error(self.sql_error(&e)))?;
        Ok(row.and_then(|r| r[0].int()).map(|id| id as u64))
    }

    /// Kills the running statement of MySQL/MariaDB session `session_id`, from a session of
    /// its own (best effort: the statement may have ended meanwhile).
    pub(super) async fn kill_query(&self, session_id: u64) {
        if let Ok(mut killer) = self.connect().await {
            let _ = killer.raw(&format!("KILL QUERY {session_id}")).await;
            killer.close().await;
        }
    }

    /// Opens the runner's connection and sets the session's timeouts.
    pub(super) async fn connect(&self) -> Result<Connection, BackfillError> {
        let settings = ConnectSettings {
            timeout: self.connect_timeout,
            read_only: false,
            sqlite_busy_timeout: Duration::from_millis(self.config.tuning.lock_timeout_ms),
        };
        let mut connection = Connection::open(self.url, settings).await?;
        let cannot = |e: sqlx::Error| {
            self.target_error(format!("cannot set timeouts: {}", self.sql_error(&e)))
        };
        match connection.dialect() {
            Dialect::Postgres => {
                let setup = postgres_setup(&self.config.tuning);
                connection.raw(&setup).await.map_err(cannot)?;
            }
            Dialect::MySql => {
                let [mariadb, mysql] = mysql_setups(&self.config.tuning);
                if connection.raw(&mariadb).await.is_err() {
                    connection.raw(&mysql).await.map_err(cannot)?;
                }
            }
            Dialect::Sqlite => {}
        }
        Ok(connection)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuning(lock_timeout_ms: u64, statement_timeout_ms: u64) -> Tuning {
        Tuning {
            lock_timeout_ms,
            statement_timeout_ms,
            ..Tuning::default()
        }
    }

    #[test]
    fn postgres_takes_milliseconds() {
        assert_eq!(
            postgres_setup(&tuning(2_000, 30_000)),
            "SET lock_timeout = '2000ms'; SET statement_timeout = '30000ms'"
        );
    }

    #[test]
    fn mysql_lock_waits_round_up_to_whole_seconds_and_never_to_zero() {
        let [mariadb, mysql] = mysql_setups(&tuning(1_500, 2_500));
        assert_eq!(
            mariadb,
            "SET SESSION innodb_lock_wait_timeout = 2, SESSION lock_wait_timeout = 2, SESSION max_statement_time = 2.5"
        );
        assert_eq!(
            mysql,
            "SET SESSION innodb_lock_wait_timeout = 2, SESSION lock_wait_timeout = 2, SESSION max_execution_time = 2500"
        );
        let [mariadb, _] = mysql_setups(&tuning(200, 30_000));
        assert!(
            mariadb.starts_with(
                "SET SESSION innodb_lock_wait_timeout = 1, SESSION lock_wait_timeout = 1,"
            ),
            "{mariadb}"
        );
        assert!(mariadb.ends_with("max_statement_time = 30"), "{mariadb}");
    }
}
