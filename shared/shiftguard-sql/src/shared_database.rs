//! The shared database as the release decisions read it (the `SharedDatabase` port): Alembic
//! heads, backfills' first pending keys and check values. One session serves a whole decision
//! (or a monitor run): it opens on the first read and stays until [`SqlDatabase::close`], so a
//! pre-traffic decision connects once however many facts it reads. A read that fails drops the
//! session, so the next one starts on a fresh connection.
//!
//! The session cannot write (see [`ConnectSettings::read_only`]), and with a deadline
//! ([`SqlDatabase::until`]) every read's statements are limited on the server to the time left,
//! so a read abandoned at the deadline (a table locked by a migration, a scan too long) is
//! cancelled by the database then, not left running on it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use shiftguard_core::backfill::{BackfillConfig, Key};
use shiftguard_core::release::DecisionError;
use shiftguard_core::release::checks::CheckConfig;
use shiftguard_core::release::load::DatabaseLoad;
use shiftguard_core::release::ports::SharedDatabase;

use crate::alembic_version::read_heads;
use crate::backfill::first_pending_key;
use crate::connection::{ConnectSettings, Connection};
use crate::error::SqlError;
use crate::load::sample_load;
use crate::measure::measure;
use crate::url::DatabaseUrl;

/// The shared database over one lazily opened connection.
#[derive(Debug)]
pub struct SqlDatabase<'a> {
    url: &'a DatabaseUrl,
    version_table: &'a str,
    settings: ConnectSettings,
    /// When the reads must be done by.
    deadline: Option<Instant>,
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
            deadline: None,
            session: Mutex::new(None),
        }
    }

    /// The same database, read by `deadline`: each read's statements are limited on the server
    /// to the time left.
    pub fn until(self, deadline: Instant) -> Self {
        SqlDatabase {
            deadline: Some(deadline),
            ..self
        }
    }

    /// What a read may take: nine tenths of the time left before the deadline, if there is
    /// one, so that the database stops a read in time for its error to be the reason reported.
    fn left(&self) -> Result<Option<Duration>, DecisionError> {
        match self.deadline {
            None => Ok(None),
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) if left >= Duration::from_millis(10) => Ok(Some(left - left / 10)),
                _ => Err(DecisionError::Deadline),
            },
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

    /// The session, with its statements limited to the time left.
    async fn open(&self) -> Result<Connection, DecisionError> {
        let mut connection = match self.take() {
            Some(connection) => connection,
            None => Connection::open(self.url, self.settings)
                .await
                .map_err(database_error)?,
        };
        if let Some(left) = self.left()? {
            connection.limit_statements(left).await.map_err(|e| {
                DecisionError::Database(format!(
                    "{}: cannot limit the session's statements: {}",
                    self.url.target(),
                    self.url.redact(&e.to_string())
                ))
            })?;
        }
        Ok(connection)
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

    async fn database_load(
        &self,
        versions: &[(String, String)],
        sample: Duration,
        roles: &[String],
    ) -> Result<Vec<DatabaseLoad>, DecisionError> {
        // Half the time left at most: the decision has more to do after the sample.
        let sample = self.left()?.map_or(sample, |left| sample.min(left / 2));
        let mut connection = self.open().await?;
        let load = sample_load(&mut connection, versions, roles, sample).await;
        self.give_back(connection, &load);
        load.map_err(|reason| {
            DecisionError::Database(format!(
                "{}: {}",
                self.url.target(),
                self.url.redact(&reason)
            ))
        })
    }

    async fn measure(&self, check: &CheckConfig) -> Result<Option<f64>, DecisionError> {
        let query = check.query.as_deref().ok_or_else(|| {
            DecisionError::Configuration(format!("check {} has no query", check.name))
        })?;
        let limit = Duration::from_millis(check.statement_timeout_ms);
        let limit = self.left()?.map_or(limit, |left| left.min(limit));
        let mut connection = self.open().await?;
        let value = measure(&mut connection, self.url, query, limit).await;
        self.give_back(connection, &value);
        value.map_err(database_error)
    }
}
