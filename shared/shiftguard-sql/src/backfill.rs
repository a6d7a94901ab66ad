//! The backfill executor: set-based batches over an integer keyset cursor, one bounded
//! transaction per batch with the checkpoint written inside it, on PostgreSQL, MySQL/MariaDB and
//! SQLite. Decisions (batch size, backoff, status rules, rate cap) come from
//! `shiftguard_core::backfill`; this module carries them out.
//!
//! One runner at a time: PostgreSQL and MySQL take a session-level advisory lock that dies with
//! the connection, SQLite an advisory lock on a file beside the database that dies with the
//! process; so a runner killed with -9 never holds up the next.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shiftguard_core::backfill::{
    BatchReport, BatchSizer, Checkpoint, CheckpointStore, Command, RunStart, Status, backoff,
    rate_wait, remaining_estimate,
};
use shiftguard_core::config::BackfillConfig;
use thiserror::Error;

use crate::checkpoint::{SqlCheckpoints, placeholder};
use crate::connection::{Bind, ConnectSettings, Connection, Kind};
use crate::error::{ErrorClass, SqlError, classify};
use crate::url::{DatabaseUrl, Dialect};

/// Room left before a deadline for committing, releasing and reporting.
const DEADLINE_SLACK: Duration = Duration::from_millis(250);
/// How often to re-check replica lag while throttled.
const LAG_POLL: Duration = Duration::from_millis(500);

/// Why a run could not be carried out.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BackfillError {
    /// Could not connect, or the checkpoint table could not be used.
    #[error(transparent)]
    Sql(#[from] SqlError),
    /// The configured table, key or SQL fragments do not fit the database.
    #[error("backfill {name}: {problem}")]
    Target { name: String, problem: String },
    /// A permanent error: the backfill is now marked failed with this error.
    #[error("backfill {name} failed: {error}")]
    Failed { name: String, error: String },
    /// Transient errors went on past the retry limit; the checkpoint is intact.
    #[error("backfill {name} gave up after {attempts} attempts: {error}")]
    RetriesExhausted {
        name: String,
        attempts: u32,
        error: String,
    },
}

/// Where the replica lag comes from.
#[derive(Clone, Debug)]
pub enum LagSource {
    /// No lag check (SQLite, or no replica).
    None,
    /// `pg_stat_replication` on the primary.
    PostgresReplication,
    /// A configured query on the primary returning milliseconds.
    Query(String),
    /// `SHOW REPLICA STATUS` on a MySQL/MariaDB replica.
    MySqlReplica(DatabaseUrl),
}

impl LagSource {
    /// The lag source a backfill uses: its `replica_lag_query` when set; otherwise
    /// `pg_stat_replication` on PostgreSQL, the replica's status on MySQL when the edge resolved
    /// a replica URL, and none on SQLite.
    pub fn for_backfill(
        config: &BackfillConfig,
        dialect: Dialect,
        replica: Option<DatabaseUrl>,
    ) -> Self {
        match (&config.tuning.replica_lag_query, dialect, replica) {
            (Some(query), _, _) => LagSource::Query(query.clone()),
            (None, Dialect::Postgres, _) => LagSource::PostgresReplication,
            (None, Dialect::MySql, Some(replica)) => LagSource::MySqlReplica(replica),
            _ => LagSource::None,
        }
    }
}

/// A backfill's stored state, with what the database says now.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StatusReport {
    pub name: String,
    /// `None` when the backfill has never run.
    pub checkpoint: Option<Checkpoint>,
    /// The smallest key that matches `pending` now (`None`: nothing pending).
    pub first_pending_key: Option<i64>,
    /// Share of the key range the current pass has covered, 0-100.
    pub percent: f64,
}

/// What a run reports while it works.
#[derive(Clone, Debug)]
pub enum Event {
    /// The run holds the backfill and starts (or resumes) a pass.
    Started {
        checkpoint: Checkpoint,
        remaining_estimate: u64,
    },
    /// A batch committed.
    Batch {
        report: BatchReport,
        checkpoint: Checkpoint,
    },
    /// Replica lag is above the limit: waiting.
    Throttled { lag_ms: f64, max_ms: u64 },
    /// A batch failed with a transient error and will be retried.
    Retrying {
        attempt: u32,
        delay: Duration,
        error: String,
    },
    /// The cursor passed the last key; the next run verifies.
    Swept,
    /// A verification ran: `pending` rows found (a new pass starts) or none (complete).
    Verified { pending_from: Option<i64> },
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Another runner holds the backfill.
    Busy { holder: Option<String> },
    /// The backfill is paused, cancelled or failed: an operator decides; nothing was done.
    Stayed(Status),
    /// Stopped before the deadline with a consistent checkpoint; the next run resumes.
    Deadline,
    /// An operator paused, cancelled or reset the backfill during the run.
    Interrupted,
    /// The pass finished; the next run verifies that nothing is pending.
    Swept,
    /// A verification found no pending row.
    Complete,
}

/// The end of a run.
#[derive(Clone, Debug)]
pub struct RunSummary {
    pub outcome: Outcome,
    pub checkpoint: Option<Checkpoint>,
    /// Totals of this run.
    pub report: BatchReport,
    pub elapsed: Duration,
}

/// Where a runner keeps its checkpoint.
pub enum Checkpoints<'a> {
    /// A table in the backfilled database, written inside each batch's transaction: progress
    /// is exactly once. A session (or file) lock keeps other runners out.
    Sql(SqlCheckpoints),
    /// An external store (DynamoDB), written after each batch commits: a batch whose write is
    /// lost runs again and changes nothing (the pending guard), but its rows are not counted.
    /// A lease of `lease_ttl_ms` (tuning), renewed by every batch, keeps other runners out.
    External(&'a dyn CheckpointStore),
}

impl std::fmt::Debug for Checkpoints<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Checkpoints<'_> {
    fn describe(&self) -> String {
        match self {
            Checkpoints::Sql(table) => format!("checkpoint table {}", table.table()),
            Checkpoints::External(store) => store.describe(),
        }
    }
}

/// One run of one backfill.
#[derive(Debug)]
pub struct Runner<'a> {
    pub url: &'a DatabaseUrl,
    pub config: &'a BackfillConfig,
    pub checkpoints: Checkpoints<'a>,
    /// Who this runner is (host, process, …), recorded as the lease owner.
    pub owner: String,
    pub lag: LagSource,
    pub connect_timeout: Duration,
}

/// Proof that this runner holds the backfill.
#[derive(Debug)]
enum Held {
    /// A lock of the database session: released by unlocking or by the session ending.
    Session,
    /// An advisory lock on a file: released when the file is closed (or the process dies).
    File(#[allow(dead_code)] std::fs::File),
    /// An in-memory SQLite database: nothing to exclude.
    Memory,
    /// A lease in an external store: released by clearing it (or by its expiry).
    Lease,
}

/// A runner attached to its backfill.
struct Attached {
    connection: Connection,
    checkpoint: Checkpoint,
    range: KeyRange,
    held: Held,
}

/// What the run learned about the target table.
#[derive(Clone, Copy, Debug)]
struct KeyRange {
    min: i64,
    max: i64,
}

/// Now, in Unix milliseconds (the unit of every checkpoint timestamp and EMF line).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A jitter sample in [0, 1) without a random number generator: the clock's low bits.
fn jitter() -> f64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    f64::from(nanos % 1_000) / 1_000.0
}

fn bigint(dialect: Dialect, expression: &str) -> String {
    match dialect {
        Dialect::MySql => format!("CAST({expression} AS SIGNED)"),
        Dialect::Postgres | Dialect::Sqlite => format!("CAST({expression} AS BIGINT)"),
    }
}

fn double(dialect: Dialect, expression: &str) -> String {
    match dialect {
        Dialect::MySql => format!("CAST({expression} AS DOUBLE)"),
        Dialect::Postgres => format!("CAST({expression} AS DOUBLE PRECISION)"),
        Dialect::Sqlite => format!("CAST({expression} AS REAL)"),
    }
}

/// The statements of one backfill, rendered once per dialect.
struct Statements {
    bounds: String,
    update: String,
    first_pending: String,
}

impl Statements {
    fn new(dialect: Dialect, config: &BackfillConfig) -> Self {
        let p = |n| placeholder(dialect, n);
        let (table, key) = (&config.table, &config.key);
        Statements {
            bounds: format!(
                "SELECT {}, count(*) FROM (SELECT {key} FROM {table} WHERE {key} > {} ORDER BY {key} LIMIT {}) w",
                bigint(dialect, &format!("max({key})")),
                p(1),
                p(2)
            ),
            update: format!(
                "UPDATE {table} SET {} WHERE {key} > {} AND {key} <= {} AND ({})",
                config.set,
                p(1),
                p(2),
                config.pending
            ),
            first_pending: format!(
                "SELECT {} FROM {table} WHERE ({})",
                bigint(dialect, &format!("min({key})")),
                config.pending
            ),
        }
    }
}

impl Runner<'_> {
    fn target_error(&self, problem: impl Into<String>) -> BackfillError {
        BackfillError::Target {
            name: self.config.name.clone(),
            problem: problem.into(),
        }
    }

    fn sql_error(&self, error: &sqlx::Error) -> String {
        self.url.redact(&error.to_string())
    }

    async fn connect(&self) -> Result<Connection, BackfillError> {
        let settings = ConnectSettings {
            timeout: self.connect_timeout,
            read_only: false,
            sqlite_busy_timeout: Duration::from_millis(self.config.tuning.lock_timeout_ms),
        };
        let mut connection = Connection::open(self.url, settings).await?;
        if connection.dialect() == Dialect::Postgres {
            // For the whole session (inspection, verification, checkpoint reads), so a lock held
            // by a migration can never hang the runner; batches tighten these per transaction.
            let tuning = &self.config.tuning;
            let setup = format!(
                "SET lock_timeout = '{}ms'; SET statement_timeout = '{}ms'",
                tuning.lock_timeout_ms, tuning.statement_timeout_ms
            );
            connection.raw(&setup).await.map_err(|e| {
                self.target_error(format!("cannot set timeouts: {}", self.sql_error(&e)))
            })?;
        }
        if connection.dialect() == Dialect::MySql {
            // Per session: lock waits in whole seconds; MariaDB's statement limit in seconds.
            let tuning = &self.config.tuning;
            let lock_seconds = tuning.lock_timeout_ms.div_ceil(1000).max(1);
            let statement_seconds = tuning.statement_timeout_ms as f64 / 1000.0;
            let setup = format!(
                "SET SESSION innodb_lock_wait_timeout = {lock_seconds}, SESSION lock_wait_timeout = {lock_seconds}, SESSION max_statement_time = {statement_seconds}"
            );
            if connection.raw(&setup).await.is_err() {
                // MySQL proper has no max_statement_time; its max_execution_time covers SELECT.
                let setup = format!(
                    "SET SESSION innodb_lock_wait_timeout = {lock_seconds}, SESSION lock_wait_timeout = {lock_seconds}, SESSION max_execution_time = {}",
                    tuning.statement_timeout_ms
                );
                connection.raw(&setup).await.map_err(|e| {
                    self.target_error(format!("cannot set timeouts: {}", self.sql_error(&e)))
                })?;
            }
        }
        Ok(connection)
    }

    /// Checks that the table exists, the key is a unique integer column, and `pending` and `set`
    /// are valid SQL for this table (by running the update on no rows and rolling back).
    async fn inspect(&self, connection: &mut Connection) -> Result<KeyRange, BackfillError> {
        let (table, key) = (&self.config.table, &self.config.key);
        let dialect = connection.dialect();
        let (schema, bare_table) = match table.split_once('.') {
            Some((schema, bare)) => (Some(schema.to_owned()), bare.to_owned()),
            None => (None, table.clone()),
        };
        let text = |v: &str| Bind::Text(Some(v.to_owned()));
        let (sql, binds) = match dialect {
            Dialect::Postgres => (
                "SELECT format_type(a.atttypid, NULL), CAST(CASE WHEN EXISTS (SELECT 1 FROM pg_index i \
                 WHERE i.indrelid = a.attrelid AND i.indisunique AND i.indisvalid AND i.indnkeyatts = 1 \
                 AND i.indkey[0] = a.attnum AND i.indpred IS NULL) THEN 1 ELSE 0 END AS BIGINT), \
                 CAST(CASE WHEN a.attnotnull THEN 0 ELSE 1 END AS BIGINT) \
                 FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attname = $2 \
                 AND NOT a.attisdropped"
                    .to_owned(),
                vec![text(table), text(key)],
            ),
            Dialect::MySql => (
                // DATA_TYPE is a binary string on MySQL 8: cast it to text.
                "SELECT CAST(c.DATA_TYPE AS CHAR), CAST((SELECT COUNT(*) FROM information_schema.STATISTICS s \
                 WHERE s.TABLE_SCHEMA = c.TABLE_SCHEMA AND s.TABLE_NAME = c.TABLE_NAME \
                 AND s.COLUMN_NAME = c.COLUMN_NAME AND s.NON_UNIQUE = 0 AND s.SEQ_IN_INDEX = 1 \
                 AND NOT EXISTS (SELECT 1 FROM information_schema.STATISTICS s2 \
                 WHERE s2.TABLE_SCHEMA = s.TABLE_SCHEMA AND s2.TABLE_NAME = s.TABLE_NAME \
                 AND s2.INDEX_NAME = s.INDEX_NAME AND s2.SEQ_IN_INDEX = 2)) AS SIGNED), \
                 CAST(CASE WHEN c.IS_NULLABLE = 'NO' THEN 0 ELSE 1 END AS SIGNED) \
                 FROM information_schema.COLUMNS c WHERE c.TABLE_SCHEMA = COALESCE(?, DATABASE()) \
                 AND c.TABLE_NAME = ? AND c.COLUMN_NAME = ?"
                    .to_owned(),
                vec![Bind::Text(schema.clone()), text(&bare_table), text(key)],
            ),
            Dialect::Sqlite => (
                "SELECT c.type, CAST(CASE WHEN (c.pk = 1 AND (SELECT count(*) FROM pragma_table_info(?1) \
                 WHERE pk > 0) = 1) OR EXISTS (SELECT 1 FROM pragma_index_list(?1) il \
                 WHERE il.\"unique\" = 1 AND il.partial = 0 AND (SELECT count(*) FROM pragma_index_info(il.name)) = 1 \
                 AND (SELECT name FROM pragma_index_info(il.name)) = ?2) THEN 1 ELSE 0 END AS BIGINT), \
                 CAST(CASE WHEN c.\"notnull\" = 1 OR (c.pk = 1 AND upper(c.type) = 'INTEGER') THEN 0 ELSE 1 END AS BIGINT) \
                 FROM pragma_table_info(?1) c WHERE c.name = ?2"
                    .to_owned(),
                vec![text(&bare_table), text(key)],
            ),
        };
        let row = connection
            .fetch_row(&sql, &binds, &[Kind::Text, Kind::Int, Kind::Int])
            .await
            .map_err(|e| {
                self.target_error(format!(
                    "cannot inspect table {table}: {}",
                    self.sql_error(&e)
                ))
            })?;
        let Some(row) = row else {
            // Tell a missing table from a missing column.
            let probe = format!("SELECT 1 FROM {table} WHERE 1 = 0");
            return Err(match connection.execute(&probe, &[]).await {
                Err(_) => self.target_error(format!("table {table} does not exist")),
                Ok(_) => self.target_error(format!("table {table} has no column {key}")),
            });
        };
        let column_type = row[0].text().unwrap_or_default().to_ascii_lowercase();
        let integer = match dialect {
            Dialect::Sqlite => column_type.contains("int"),
            _ => [
                "smallint",
                "integer",
                "bigint",
                "int",
                "tinyint",
                "mediumint",
            ]
            .iter()
            .any(|t| column_type == *t || column_type.starts_with(&format!("{t} "))),
        };
        if !integer {
            return Err(self.target_error(format!(
                "key {table}.{key} is of type {column_type}: the keyset cursor needs an integer key"
            )));
        }
        if row[2].int() != Some(0) {
            return Err(self.target_error(format!(
                "key {table}.{key} can be NULL: rows with a NULL key would never be backfilled (make it NOT NULL)"
            )));
        }
        if row[1].int() != Some(1) {
            return Err(self.target_error(format!(
                "key {table}.{key} is not unique (no primary key or unique index on it alone): batches could skip or repeat rows"
            )));
        }

        // Validate the SQL fragments without writing: the update on no rows, rolled back.
        let dry_run = format!(
            "UPDATE {table} SET {} WHERE ({}) AND 1 = 0",
            self.config.set, self.config.pending
        );
        connection
            .raw("BEGIN")
            .await
            .map_err(|e| self.target_error(self.sql_error(&e)))?;
        let checked = connection.execute(&dry_run, &[]).await;
        let _ = connection.raw("ROLLBACK").await;
        checked.map_err(|e| {
            self.target_error(format!(
                "`set` or `pending` is not valid here: {}",
                self.sql_error(&e)
            ))
        })?;

        let range_sql = format!(
            "SELECT {}, {} FROM {table}",
            bigint(dialect, &format!("min({key})")),
            bigint(dialect, &format!("max({key})"))
        );
        let range = connection
            .fetch_row(&range_sql, &[], &[Kind::Int, Kind::Int])
            .await
            .map_err(|e| self.target_error(self.sql_error(&e)))?
            .unwrap_or_default();
        Ok(KeyRange {
            min: range.first().and_then(|c| c.int()).unwrap_or(0),
            max: range.get(1).and_then(|c| c.int()).unwrap_or(0),
        })
    }

    fn lease_ttl(&self) -> i64 {
        self.config.tuning.lease_ttl_ms as i64
    }

    /// The advisory lock's name: at most 64 characters (MySQL's limit), unique per database,
    /// store and backfill (a long name keeps its start and gains a hash of the whole).
    fn lock_name(&self) -> String {
        let store = match &self.checkpoints {
            Checkpoints::Sql(table) => table.table().to_owned(),
            Checkpoints::External(store) => store.describe(),
        };
        // MySQL's named locks are server-wide (PostgreSQL's advisory locks are per database):
        // name the database too, so backfills of two databases on one server never collide.
        let name = format!(
            "shiftguard:{}:{store}:{}",
            self.url.target(),
            self.config.name
        );
        if name.len() <= 64 {
            return name;
        }
        // FNV-1a: stable across runs and platforms, unlike the std hasher.
        let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        format!("{}:{hash:016x}", &name[..47])
    }

    /// An error of the checkpoint store. External stores' messages name the store already.
    fn store_error(&self, message: impl std::fmt::Display) -> BackfillError {
        match &self.checkpoints {
            Checkpoints::Sql(_) => {
                self.target_error(format!("{}: {message}", self.checkpoints.describe()))
            }
            Checkpoints::External(_) => self.target_error(message.to_string()),
        }
    }

    /// Creates the checkpoint store's table (SQL) and the checkpoint if they do not exist.
    async fn prepare_store(&self, connection: &mut Connection) -> Result<(), BackfillError> {
        let fresh = Checkpoint::new(&self.config.name, now_ms());
        match &self.checkpoints {
            Checkpoints::Sql(table) => {
                table
                    .ensure_table(connection)
                    .await
                    .map_err(|e| self.store_error(self.sql_error(&e)))?;
                table
                    .insert_if_absent(connection, &fresh)
                    .await
                    .map_err(|e| self.store_error(self.sql_error(&e)))
            }
            Checkpoints::External(store) => {
                store.create(&fresh).await.map_err(|e| self.store_error(e))
            }
        }
    }

    async fn load_checkpoint(
        &self,
        connection: &mut Connection,
    ) -> Result<Option<Checkpoint>, BackfillError> {
        match &self.checkpoints {
            Checkpoints::Sql(table) => table
                .load(connection, &self.config.name)
                .await
                .map_err(|e| self.store_error(self.sql_error(&e))),
            Checkpoints::External(store) => store
                .load(&self.config.name)
                .await
                .map_err(|e| self.store_error(e)),
        }
    }

    /// Writes `checkpoint` if the stored version is one less; returns whether it did.
    async fn save(
        &self,
        connection: &mut Connection,
        checkpoint: &Checkpoint,
    ) -> Result<bool, BackfillError> {
        match &self.checkpoints {
            Checkpoints::Sql(table) => table
                .write(connection, checkpoint)
                .await
                .map_err(|e| self.store_error(self.sql_error(&e))),
            Checkpoints::External(store) => store
                .write(checkpoint)
                .await
                .map_err(|e| self.store_error(e)),
        }
    }

    /// Writes to an external store after a commit, retrying transient failures (throttling)
    /// with backoff while the deadline allows.
    async fn save_external(
        &self,
        store: &dyn CheckpointStore,
        checkpoint: &Checkpoint,
        deadline: Instant,
    ) -> Result<bool, BackfillError> {
        let mut attempt = 0;
        loop {
            match store.write(checkpoint).await {
                Ok(written) => return Ok(written),
                Err(error) if error.transient && attempt < self.config.tuning.max_retries => {
                    let delay = backoff(attempt, jitter());
                    if Instant::now() + delay + DEADLINE_SLACK > deadline {
                        return Err(self.store_error(error));
                    }
                    attempt += 1;
                    tokio::time::sleep(delay).await;
                }
                Err(error) => return Err(self.store_error(error)),
            }
        }
    }

    /// External store: takes the lease unless another runner holds an unexpired one.
    async fn take_lease(&self, store: &dyn CheckpointStore) -> Result<Option<Held>, BackfillError> {
        let now = now_ms();
        store
            .create(&Checkpoint::new(&self.config.name, now))
            .await
            .map_err(|e| self.store_error(e))?;
        let Some(mut checkpoint) = store
            .load(&self.config.name)
            .await
            .map_err(|e| self.store_error(e))?
        else {
            return Err(self.store_error("the checkpoint vanished"));
        };
        if !checkpoint.lease_available(&self.owner, now) {
            return Ok(None);
        }
        checkpoint.lease_owner = Some(self.owner.clone());
        checkpoint.lease_expires_at = Some(now + self.lease_ttl());
        checkpoint.version += 1;
        let taken = store
            .write(&checkpoint)
            .await
            .map_err(|e| self.store_error(e))?;
        Ok(taken.then_some(Held::Lease))
    }

    /// Takes the run's exclusive right to the backfill: a lock that dies with its holder, so a
    /// runner killed with -9 never holds up the next. PostgreSQL: a session advisory lock; MySQL:
    /// `GET_LOCK`; SQLite: an advisory file lock on `<database>.shiftguard-<name>.lock`.
    /// `None` when another runner holds it.
    async fn try_lock(&self, connection: &mut Connection) -> Result<Option<Held>, BackfillError> {
        if let Checkpoints::External(store) = &self.checkpoints {
            return self.take_lease(*store).await;
        }
        let lock_name = self.lock_name();
        let lock_error = |e: sqlx::Error| {
            self.target_error(format!("cannot take the run lock: {}", self.sql_error(&e)))
        };
        let acquired = match connection.dialect() {
            Dialect::Postgres => connection
                .fetch_row(
                    "SELECT CAST(CASE WHEN pg_try_advisory_lock(hashtextextended($1, 0)) THEN 1 ELSE 0 END AS BIGINT)",
                    &[Bind::Text(Some(lock_name))],
                    &[Kind::Int],
                )
                .await
                .map_err(lock_error)?,
            Dialect::MySql => {
                connection
                    .fetch_row(
                        "SELECT CAST(GET_LOCK(?, 0) AS SIGNED)",
                        &[Bind::Text(Some(lock_name))],
                        &[Kind::Int],
                    )
                    .await
                    .map_err(lock_error)?
            }
            Dialect::Sqlite => {
                let Some(database) = self.url.sqlite_path() else {
                    // An in-memory database has one connection: nobody to exclude.
                    return Ok(Some(Held::Memory));
                };
                let mut path = database.as_os_str().to_owned();
                path.push(format!(".shiftguard-{}.lock", self.config.name));
                let file = std::fs::File::options()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
                    .map_err(|e| self.target_error(format!("cannot open lock file: {e}")))?;
                return match file.try_lock() {
                    Ok(()) => Ok(Some(Held::File(file))),
                    Err(std::fs::TryLockError::WouldBlock) => Ok(None),
                    Err(std::fs::TryLockError::Error(e)) => {
                        Err(self.target_error(format!("cannot lock {}: {e}", std::path::Path::new(&path).display())))
                    }
                };
            }
        };
        Ok((acquired.and_then(|r| r[0].int()) == Some(1)).then_some(Held::Session))
    }

    async fn unlock(&self, connection: &mut Connection, held: Held) {
        if !matches!(held, Held::Session) {
            return; // Dropping the file closes it, which releases the lock.
        }
        let lock_name = self.lock_name();
        let _ = match connection.dialect() {
            Dialect::Postgres => {
                connection
                    .execute(
                        "SELECT pg_advisory_unlock(hashtextextended($1, 0))",
                        &[Bind::Text(Some(lock_name))],
                    )
                    .await
            }
            Dialect::MySql => {
                connection
                    .execute("SELECT RELEASE_LOCK(?)", &[Bind::Text(Some(lock_name))])
                    .await
            }
            Dialect::Sqlite => Ok(0),
        };
    }

    /// Opens a connection, checks the target, takes the lock and loads the checkpoint.
    /// `Err(Outcome::Busy)` when another runner holds it.
    async fn attach(&self) -> Result<Result<Attached, Outcome>, BackfillError> {
        let mut connection = self.connect().await?;
        let range = self.inspect(&mut connection).await?;
        let Some(held) = self.try_lock(&mut connection).await? else {
            let holder = self.current_holder(&mut connection).await;
            connection.close().await;
            return Ok(Err(Outcome::Busy { holder }));
        };
        self.prepare_store(&mut connection).await?;
        let mut checkpoint = self
            .load_checkpoint(&mut connection)
            .await?
            .ok_or_else(|| self.store_error("the checkpoint vanished"))?;
        if matches!(self.checkpoints, Checkpoints::Sql(_)) {
            // Record who holds it, for `backfill status`; the lock is what excludes.
            checkpoint.lease_owner = Some(self.owner.clone());
            checkpoint.lease_expires_at = None;
            checkpoint.version += 1;
            self.save(&mut connection, &checkpoint).await?;
        }
        Ok(Ok(Attached {
            connection,
            checkpoint,
            range,
            held,
        }))
    }

    async fn current_holder(&self, connection: &mut Connection) -> Option<String> {
        self.load_checkpoint(connection)
            .await
            .ok()
            .flatten()
            .and_then(|c| c.lease_owner)
    }

    /// Runs until the backfill is complete, the deadline nears, or an operator intervenes.
    pub async fn run(
        &self,
        deadline: Instant,
        observe: &mut dyn FnMut(&Event),
    ) -> Result<RunSummary, BackfillError> {
        let started = Instant::now();
        let Attached {
            mut connection,
            mut checkpoint,
            range,
            mut held,
        } = match self.attach().await? {
            Ok(attached) => attached,
            Err(outcome) => {
                return Ok(RunSummary {
                    outcome,
                    checkpoint: None,
                    report: BatchReport::default(),
                    elapsed: started.elapsed(),
                });
            }
        };
        let result = self
            .work(
                &mut connection,
                &mut held,
                &mut checkpoint,
                range,
                deadline,
                started,
                observe,
            )
            .await;
        // Release: clear the lease fields (best effort) and the lock; closing ends both anyway.
        if checkpoint.lease_owner.as_deref() == Some(self.owner.as_str()) {
            let mut released = checkpoint.clone();
            released.lease_owner = None;
            released.lease_expires_at = None;
            released.version += 1;
            if let Ok(true) = self.save(&mut connection, &released).await {
                checkpoint = released;
            }
        }
        self.unlock(&mut connection, held).await;
        connection.close().await;
        let (outcome, report) = result?;
        Ok(RunSummary {
            outcome,
            checkpoint: Some(checkpoint),
            report,
            elapsed: started.elapsed(),
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn work(
        &self,
        connection: &mut Connection,
        held: &mut Held,
        checkpoint: &mut Checkpoint,
        range: KeyRange,
        deadline: Instant,
        started: Instant,
        observe: &mut dyn FnMut(&Event),
    ) -> Result<(Outcome, BatchReport), BackfillError> {
        let tuning = &self.config.tuning;
        let dialect = connection.dialect();
        let statements = Statements::new(dialect, self.config);
        let mut totals = BatchReport::default();
        let mut sizer = BatchSizer::new(tuning);
        let mut scanned_this_run = 0u64;
        let mut last_batch = Duration::from_millis(tuning.target_batch_ms);

        match checkpoint.status.on_run() {
            RunStart::Stay => return Ok((Outcome::Stayed(checkpoint.status), totals)),
            RunStart::Verify => {
                if self
                    .verify(connection, checkpoint, &statements, observe)
                    .await?
                {
                    return Ok((Outcome::Complete, totals));
                }
            }
            RunStart::Resume => {}
        }
        observe(&Event::Started {
            checkpoint: checkpoint.clone(),
            remaining_estimate: remaining_estimate(
                range.min,
                range.max,
                checkpoint.cursor,
                span(range),
            ),
        });

        loop {
            // Stop while a batch of the recent duration still fits, with room to commit.
            if Instant::now() + last_batch * 2 + DEADLINE_SLACK > deadline {
                return Ok((Outcome::Deadline, totals));
            }
            let lag_ms = match self
                .wait_for_replicas(connection, checkpoint, deadline, observe)
                .await?
            {
                Some(lag) => lag,
                None => return Ok((Outcome::Deadline, totals)),
            };
            let wait = rate_wait(
                scanned_this_run,
                started.elapsed(),
                tuning.max_rows_per_second,
            ) + Duration::from_millis(tuning.pause_ms);
            if !wait.is_zero() {
                if Instant::now() + wait > deadline {
                    return Ok((Outcome::Deadline, totals));
                }
                self.renew_lease(connection, checkpoint).await?;
                tokio::time::sleep(wait).await;
            }

            let mut attempt = 0u32;
            let batch = loop {
                match self
                    .batch(connection, checkpoint, &statements, sizer.size(), deadline)
                    .await
                {
                    Ok(batch) => break batch,
                    Err(error) => {
                        let class = classify(&error);
                        let message = self.sql_error(&error);
                        totals.errors += 1;
                        if class == ErrorClass::Permanent {
                            return Err(self.fail(connection, checkpoint, message).await);
                        }
                        attempt += 1;
                        if attempt > tuning.max_retries {
                            self.note_error(connection, checkpoint, &message).await;
                            return Err(BackfillError::RetriesExhausted {
                                name: self.config.name.clone(),
                                attempts: attempt,
                                error: message,
                            });
                        }
                        if class == ErrorClass::Timeout {
                            sizer.on_timeout();
                        }
                        let delay = backoff(attempt - 1, jitter());
                        if Instant::now() + delay + DEADLINE_SLACK > deadline {
                            self.note_error(connection, checkpoint, &message).await;
                            return Ok((Outcome::Deadline, totals));
                        }
                        totals.retries += 1;
                        observe(&Event::Retrying {
                            attempt,
                            delay,
                            error: message,
                        });
                        self.renew_lease(connection, checkpoint).await?;
                        tokio::time::sleep(delay).await;
                        if class == ErrorClass::Connection {
                            // Let go of a file lock before taking it again.
                            *held = Held::Memory;
                            match self.attach().await {
                                Ok(Ok(fresh)) => {
                                    *connection = fresh.connection;
                                    *checkpoint = fresh.checkpoint;
                                    *held = fresh.held;
                                }
                                // Our own old session may still hold the lock until the server
                                // notices it is gone; a connect may fail during a failover.
                                // Both use up the retry budget instead of ending the run.
                                Ok(Err(Outcome::Busy { holder }))
                                    if holder.as_deref() == Some(self.owner.as_str()) => {}
                                Ok(Err(outcome)) => return Ok((outcome, totals)),
                                Err(_) => {}
                            }
                        }
                    }
                }
            };

            // An external store is written now that the batch has committed.
            let batch = match (&batch, &self.checkpoints) {
                (BatchResult::Interrupted, _) | (_, Checkpoints::Sql(_)) => batch,
                (_, Checkpoints::External(store)) => {
                    if self.save_external(*store, checkpoint, deadline).await? {
                        batch
                    } else {
                        BatchResult::Interrupted
                    }
                }
            };
            match batch {
                BatchResult::Interrupted => {
                    if let Ok(Some(stored)) = self.load_checkpoint(connection).await {
                        *checkpoint = stored;
                    }
                    return Ok((Outcome::Interrupted, totals));
                }
                BatchResult::PassFinished => {
                    observe(&Event::Swept);
                    // The next run verifies: a full scan for pending rows right after the pass
                    // would cost as much as a tenth of the pass and find what old writers
                    // added in the last moments; later it also finds what they add meanwhile.
                    return Ok((Outcome::Swept, totals));
                }
                BatchResult::Committed {
                    scanned,
                    updated,
                    took,
                } => {
                    sizer.observe(scanned, took);
                    last_batch = took;
                    scanned_this_run += scanned;
                    let report = BatchReport {
                        rows_updated: updated,
                        rows_scanned: scanned,
                        batch_ms: took.as_secs_f64() * 1e3,
                        batch_size: sizer.size(),
                        rows_per_second: scanned_this_run as f64
                            / started.elapsed().as_secs_f64().max(1e-9),
                        remaining_estimate: remaining_estimate(
                            range.min,
                            range.max,
                            checkpoint.cursor,
                            span(range),
                        ),
                        replica_lag_ms: lag_ms,
                        retries: u64::from(attempt),
                        errors: u64::from(attempt),
                        cursor: checkpoint.cursor,
                    };
                    totals.rows_updated += updated;
                    totals.rows_scanned += scanned;
                    totals.batch_size = report.batch_size;
                    totals.batch_ms = totals.batch_ms.max(report.batch_ms);
                    totals.rows_per_second = report.rows_per_second;
                    totals.remaining_estimate = report.remaining_estimate;
                    totals.replica_lag_ms = lag_ms;
                    totals.cursor = checkpoint.cursor;
                    observe(&Event::Batch {
                        report,
                        checkpoint: checkpoint.clone(),
                    });
                }
            }
        }
    }

    /// One batch in one transaction: bounds, update, checkpoint. On error the transaction is
    /// rolled back and the in-memory checkpoint is unchanged.
    async fn batch(
        &self,
        connection: &mut Connection,
        checkpoint: &mut Checkpoint,
        statements: &Statements,
        size: u64,
        deadline: Instant,
    ) -> Result<BatchResult, sqlx::Error> {
        let started = Instant::now();
        // No statement may outlive the run's deadline.
        let left_ms = deadline
            .saturating_duration_since(started + DEADLINE_SLACK)
            .as_millis() as u64;
        let statement_ms = self
            .config
            .tuning
            .statement_timeout_ms
            .min(left_ms.max(100));
        let begin = match connection.dialect() {
            Dialect::Postgres => format!(
                "BEGIN; SET LOCAL lock_timeout = '{}ms'; SET LOCAL statement_timeout = '{statement_ms}ms'",
                self.config.tuning.lock_timeout_ms
            ),
            Dialect::MySql => "START TRANSACTION".to_owned(),
            // IMMEDIATE: take the write lock now, so a busy file fails fast and retries.
            Dialect::Sqlite => "BEGIN IMMEDIATE".to_owned(),
        };
        connection.raw(&begin).await?;
        let result = self
            .batch_body(connection, checkpoint, statements, size)
            .await;
        match result {
            Ok(Some(next)) => {
                if let Err(error) = connection.raw("COMMIT").await {
                    // A failed COMMIT (SQLite BUSY) can leave the transaction open.
                    let _ = connection.raw("ROLLBACK").await;
                    return Err(error);
                }
                let (scanned, updated, is_end) = next.1;
                *checkpoint = next.0;
                if is_end {
                    return Ok(BatchResult::PassFinished);
                }
                Ok(BatchResult::Committed {
                    scanned,
                    updated,
                    took: started.elapsed(),
                })
            }
            Ok(None) => {
                let _ = connection.raw("ROLLBACK").await;
                Ok(BatchResult::Interrupted)
            }
            Err(error) => {
                let _ = connection.raw("ROLLBACK").await;
                Err(error)
            }
        }
    }

    /// Inside the transaction. `None` when the checkpoint changed under us (operator).
    #[allow(clippy::type_complexity)]
    async fn batch_body(
        &self,
        connection: &mut Connection,
        checkpoint: &Checkpoint,
        statements: &Statements,
        size: u64,
    ) -> Result<Option<(Checkpoint, (u64, u64, bool))>, sqlx::Error> {
        let lower = checkpoint.cursor.unwrap_or(i64::MIN);
        let bounds = connection
            .fetch_row(
                &statements.bounds,
                &[Bind::Int(Some(lower)), Bind::Int(Some(size as i64))],
                &[Kind::Int, Kind::Int],
            )
            .await?
            .unwrap_or_default();
        let upper = bounds.first().and_then(|c| c.int());
        let scanned = bounds.get(1).and_then(|c| c.int()).unwrap_or(0).max(0) as u64;
        let now = now_ms();
        let mut next = checkpoint.clone();
        next.updated_at = now;
        next.version += 1;
        if matches!(self.checkpoints, Checkpoints::External(_)) {
            next.lease_expires_at = Some(now + self.lease_ttl());
        }
        let Some(upper) = upper.filter(|_| scanned > 0) else {
            next.status = Status::Swept;
            return Ok(self
                .write_in_transaction(connection, &next)
                .await?
                .then_some((next, (0, 0, true))));
        };
        let updated = connection
            .execute(
                &statements.update,
                &[Bind::Int(Some(lower)), Bind::Int(Some(upper))],
            )
            .await?;
        next.cursor = Some(upper);
        next.rows_updated += updated;
        next.batches += 1;
        Ok(self
            .write_in_transaction(connection, &next)
            .await?
            .then_some((next, (scanned, updated, false))))
    }

    /// The SQL store writes inside the batch's transaction; an external store after the commit
    /// (see [`Runner::work`]), so here it always "succeeds".
    async fn write_in_transaction(
        &self,
        connection: &mut Connection,
        next: &Checkpoint,
    ) -> Result<bool, sqlx::Error> {
        match &self.checkpoints {
            Checkpoints::Sql(table) => table.write(connection, next).await,
            Checkpoints::External(_) => Ok(true),
        }
    }

    /// After a pass: is anything pending now? None -> complete. Some -> a new pass from just
    /// before the first pending key. Returns whether the backfill is complete.
    async fn verify(
        &self,
        connection: &mut Connection,
        checkpoint: &mut Checkpoint,
        statements: &Statements,
        observe: &mut dyn FnMut(&Event),
    ) -> Result<bool, BackfillError> {
        let first = connection
            .fetch_row(&statements.first_pending, &[], &[Kind::Int])
            .await
            .map_err(|e| self.target_error(self.sql_error(&e)))?
            .and_then(|row| row[0].int());
        observe(&Event::Verified {
            pending_from: first,
        });
        let mut next = checkpoint.clone();
        let now = now_ms();
        next.updated_at = now;
        next.version += 1;
        match first {
            None => {
                next.status = Status::Complete;
                if checkpoint.status != Status::Complete {
                    next.completed_at = Some(now);
                }
            }
            Some(first) => {
                next.status = Status::Running;
                next.cursor = Some(first.saturating_sub(1));
                next.passes += 1;
                next.completed_at = None;
            }
        }
        if self.save(connection, &next).await? {
            *checkpoint = next;
        }
        Ok(first.is_none())
    }

    /// Waits while replica lag is above the limit. `Ok(None)` when the deadline came first.
    async fn wait_for_replicas(
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

    /// External store: renews the lease while the run waits, a third of the TTL at a time.
    async fn renew_lease(
        &self,
        connection: &mut Connection,
        checkpoint: &mut Checkpoint,
    ) -> Result<(), BackfillError> {
        let now = now_ms();
        if matches!(self.checkpoints, Checkpoints::Sql(_))
            || now - checkpoint.updated_at < self.lease_ttl() / 3
        {
            return Ok(());
        }
        let mut renewed = checkpoint.clone();
        renewed.updated_at = now;
        renewed.lease_expires_at = Some(now + self.lease_ttl());
        renewed.version += 1;
        if !self.save(connection, &renewed).await? {
            return Err(self.target_error(format!(
                "{}: the lease was lost while waiting",
                self.checkpoints.describe()
            )));
        }
        *checkpoint = renewed;
        Ok(())
    }

    async fn replica_lag(&self, connection: &mut Connection) -> Result<f64, BackfillError> {
        let dialect = connection.dialect();
        let lag_error = |e: sqlx::Error| {
            self.target_error(format!("cannot read replica lag: {}", self.sql_error(&e)))
        };
        let query = match &self.lag {
            LagSource::None => return Ok(0.0),
            LagSource::PostgresReplication => double(
                dialect,
                "(SELECT COALESCE(EXTRACT(EPOCH FROM max(replay_lag)) * 1000, 0) FROM pg_stat_replication)",
            ),
            LagSource::Query(sql) => double(dialect, &format!("({sql})")),
            LagSource::MySqlReplica(url) => {
                let mut replica = Connection::open(url, ConnectSettings::default()).await?;
                let rows = replica
                    .fetch_row_named(
                        "SHOW REPLICA STATUS",
                        &["Seconds_Behind_Master", "Seconds_Behind_Source"],
                    )
                    .await
                    .map_err(lag_error)?;
                replica.close().await;
                // No replica status, or replication stopped (NULL): fail closed as infinitely
                // behind, so the backfill waits instead of outrunning a broken replica.
                return Ok(rows.map_or(f64::INFINITY, |seconds| seconds as f64 * 1000.0));
            }
        };
        let row = connection
            .fetch_row(&format!("SELECT {query}"), &[], &[Kind::Float])
            .await
            .map_err(lag_error)?;
        // A configured query that answers NULL (or nothing) does not know the lag: fail closed.
        // (The PostgreSQL source answers 0 itself when no standby is connected.)
        Ok(row.and_then(|r| r[0].float()).unwrap_or(f64::INFINITY))
    }

    /// Marks the backfill failed with the error kept (best effort) and returns the error.
    async fn fail(
        &self,
        connection: &mut Connection,
        checkpoint: &mut Checkpoint,
        error: String,
    ) -> BackfillError {
        let mut failed = checkpoint.clone();
        failed.status = Status::Failed;
        failed.last_error = Some(error.clone());
        failed.updated_at = now_ms();
        failed.version += 1;
        if let Ok(true) = self.save(connection, &failed).await {
            *checkpoint = failed;
        }
        BackfillError::Failed {
            name: self.config.name.clone(),
            error,
        }
    }

    /// Keeps a transient error that ended a run, without changing the status.
    async fn note_error(
        &self,
        connection: &mut Connection,
        checkpoint: &mut Checkpoint,
        error: &str,
    ) {
        let mut noted = checkpoint.clone();
        noted.last_error = Some(error.to_owned());
        noted.updated_at = now_ms();
        noted.version += 1;
        if let Ok(true) = self.save(connection, &noted).await {
            *checkpoint = noted;
        }
    }
}

/// Operator commands and status: they need the checkpoint store, not the lock, except `reset`.
impl Runner<'_> {
    /// The stored checkpoint, if the backfill has ever run (nothing is created).
    pub async fn checkpoint(&self) -> Result<Option<Checkpoint>, BackfillError> {
        let mut connection = self.connect().await?;
        let checkpoint = self.stored_checkpoint(&mut connection).await?;
        connection.close().await;
        Ok(checkpoint)
    }

    /// The stored checkpoint and what is pending now.
    pub async fn status(&self) -> Result<StatusReport, BackfillError> {
        let mut connection = self.connect().await?;
        let range = self.inspect(&mut connection).await?;
        let checkpoint = self.stored_checkpoint(&mut connection).await?;
        let statements = Statements::new(connection.dialect(), self.config);
        let first_pending_key = connection
            .fetch_row(&statements.first_pending, &[], &[Kind::Int])
            .await
            .map_err(|e| self.target_error(self.sql_error(&e)))?
            .and_then(|row| row[0].int());
        connection.close().await;
        let percent = match &checkpoint {
            Some(c) if matches!(c.status, Status::Swept | Status::Complete) => 100.0,
            Some(c) => {
                let left = remaining_estimate(range.min, range.max, c.cursor, span(range)) as f64;
                (100.0 * (1.0 - left / span(range).max(1) as f64)).clamp(0.0, 100.0)
            }
            None => 0.0,
        };
        Ok(StatusReport {
            name: self.config.name.clone(),
            checkpoint,
            first_pending_key,
            percent,
        })
    }

    /// The stored checkpoint, without creating the SQL checkpoint table when it is missing
    /// (status and operator commands write nothing they need not).
    async fn stored_checkpoint(
        &self,
        connection: &mut Connection,
    ) -> Result<Option<Checkpoint>, BackfillError> {
        if let Checkpoints::Sql(table) = &self.checkpoints {
            let probe = format!("SELECT 1 FROM {} WHERE 1 = 0", table.table());
            if connection.execute(&probe, &[]).await.is_err() {
                return Ok(None);
            }
        }
        self.load_checkpoint(connection).await
    }

    /// Pauses, resumes or cancels; returns the new checkpoint.
    pub async fn command(&self, command: Command) -> Result<Checkpoint, BackfillError> {
        let mut connection = self.connect().await?;
        // Retry on a concurrent write (a runner committing a batch).
        for _ in 0..20 {
            let Some(mut checkpoint) = self.stored_checkpoint(&mut connection).await? else {
                return Err(self.target_error("has never run: nothing to change"));
            };
            checkpoint.status = command
                .apply(checkpoint.status)
                .map_err(|e| self.target_error(e))?;
            if command == Command::Resume {
                checkpoint.last_error = None;
            }
            checkpoint.updated_at = now_ms();
            checkpoint.version += 1;
            if self.save(&mut connection, &checkpoint).await? {
                connection.close().await;
                return Ok(checkpoint);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(self.target_error("the checkpoint kept changing; try again"))
    }

    /// Deletes the checkpoint so the next run starts over; refuses while a runner holds it.
    /// Returns whether there was a checkpoint.
    pub async fn reset(&self) -> Result<bool, BackfillError> {
        let mut connection = self.connect().await?;
        if self.stored_checkpoint(&mut connection).await?.is_none() {
            return Ok(false);
        }
        let Some(held) = self.try_lock(&mut connection).await? else {
            let holder = self
                .current_holder(&mut connection)
                .await
                .unwrap_or_else(|| "another runner".to_owned());
            return Err(self.target_error(format!(
                "is being run by {holder}: pause or cancel it first"
            )));
        };
        let deleted = match &self.checkpoints {
            Checkpoints::Sql(table) => table
                .delete(&mut connection, &self.config.name)
                .await
                .map_err(|e| self.store_error(self.sql_error(&e)))?,
            Checkpoints::External(store) => store
                .delete(&self.config.name)
                .await
                .map_err(|e| self.store_error(e))?,
        };
        self.unlock(&mut connection, held).await;
        connection.close().await;
        Ok(deleted)
    }
}

/// The first key that matches a backfill's `pending` predicate now (`None`: nothing pending),
/// for gates that require a backfill to be complete. Read-only.
pub async fn first_pending_key(
    connection: &mut Connection,
    url: &DatabaseUrl,
    config: &BackfillConfig,
) -> Result<Option<i64>, SqlError> {
    let statements = Statements::new(connection.dialect(), config);
    let row = connection
        .fetch_row(&statements.first_pending, &[], &[Kind::Int])
        .await
        .map_err(|e| SqlError::Query {
            target: url.target().to_owned(),
            reason: format!("backfill {}: {}", config.name, url.redact(&e.to_string())),
        })?;
    Ok(row.and_then(|r| r[0].int()))
}

/// The number of key positions in the range, as a row estimate (exact for dense keys).
fn span(range: KeyRange) -> u64 {
    (range.max.saturating_sub(range.min).saturating_add(1)).max(0) as u64
}

enum BatchResult {
    Committed {
        scanned: u64,
        updated: u64,
        took: Duration,
    },
    PassFinished,
    Interrupted,
}
