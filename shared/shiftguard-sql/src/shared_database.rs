//! The shared database as the release decisions read it (the `SharedDatabase` port): Alembic
//! heads, backfills' first pending keys and check values. One session serves a whole decision
//! (or a monitor run): it opens on the first read and stays until [`SqlDatabase::close`], so a
//! pre-traffic decision connects once however many facts it reads. A read that fails drops the
//! session, so the next one starts on a fresh connection.

use std::sync::Mutex;
use std::time::Duration;

use shiftguard_core::backfill::{BackfillConfig, Key};
use shiftguard_core::release::DecisionError;
use shiftguard_core::release::checks::CheckConfig;
use shiftguard_core::release::ports::SharedDatabase;

use crate::alembic_version::read_heads;
use crate::backfill::first_pending_key;
use crate::connection::{ConnectSettings, Connection};
use crate::error::SqlError;
use crate::measure::measure;
use crate::url::DatabaseUrl;

/// The shared database over one lazily opened connection.
#[derive(Debug)]
pub struct SqlDatabase<'a> {
    url: &'a DatabaseUrl,
    version_table: &'a str,
    settings: ConnectSettings,
    /// The open session between reads (taken out while a read runs, so no lock is held
    /// across an await).
    session: Mutex<Option<Connection>>,
}

impl<'a> SqlDatabase<'a> {
    pub fn new(url: &'a DatabaseUrl, version_table: &'a str, settings: ConnectSettings) -> Self {
        SqlDatabase {
            url,
            version_table,
            settings,
            session: Mutex::new(None),
        }
    }

    /// Ends the session, if one is open.
    pub async fn close(&self) {
        if let Some(connection) = self.take() {
            connection.close().await;
        }
    }

    fn take(&self) -> Option<Connection> {
        self.session.lock().map_or(None, |mut s| s.take())
    }

    async fn open(&self) -> Result<Connection, DecisionError> {
        match self.take() {
            Some(connection) => Ok(connection),
            None => Connection::open(self.url, self.settings)
                .await
                .map_err(database_error),
        }
    }

    /// Keeps the session for the next read after `read` succeeded; after a failure the
    /// connection is dropped (its state is unknown).
    fn give_back<T, E>(&self, connection: Connection, read: &Result<T, E>) {
        if read.is_ok()
            && let Ok(mut session) = self.session.lock()
        {
            *session = Some(connection);
        }
    }
}

fn database_error(error: SqlError) -> DecisionError {
    DecisionError::Database(error.to_string())
}

impl SharedDatabase for SqlDatabase<'_> {
    fn target(&self) -> &str {
        self.url.target()
    }

    async fn heads(&self) -> Result<Vec<String>, DecisionError> {
        let mut connection = self.open().await?;
        let heads = read_heads(&mut connection, self.url, self.version_table).await;
        self.give_back(connection, &heads);
        heads.map_err(database_error)
    }

    async fn first_pending_key(
        &self,
        backfill: &BackfillConfig,
    ) -> Result<Option<Key>, DecisionError> {
        let mut connection = self.open().await?;
        let first = first_pending_key(&mut connection, self.url, backfill).await;
        self.give_back(connection, &first);
        first.map_err(database_error)
    }

    async fn measure(&self, check: &CheckConfig) -> Result<Option<f64>, DecisionError> {
        let query = check.query.as_deref().ok_or_else(|| {
            DecisionError::Configuration(format!("check {} has no query", check.name))
        })?;
        let limit = Duration::from_millis(check.statement_timeout_ms);
        let mut connection = self.open().await?;
        let value = measure(&mut connection, self.url, query, limit).await;
        self.give_back(connection, &value);
        value.map_err(database_error)
    }
}
