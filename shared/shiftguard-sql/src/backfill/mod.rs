//! The backfill executor: set-based batches over a keyset cursor (an integer, UUID, text,
//! binary or composite key), one bounded
//! transaction per batch with the checkpoint written inside it, on PostgreSQL, MySQL/MariaDB and
//! SQLite. Decisions (batch size, backoff, status rules, rate cap) come from
//! `shiftguard_core::backfill`; this module carries them out.
//!
//! One runner at a time: PostgreSQL and MySQL take a session-level advisory lock that dies with
//! the connection, SQLite an advisory lock on a file beside the database that dies with the
//! process; so a runner killed with -9 never holds up the next.
//!
//! This file holds the public face (the [`Runner`], what it reports, how it fails) and the small
//! helpers every step shares. The work is split by responsibility, one file each:
//! - `statements`: the SQL text of a backfill, rendered once per dialect;
//! - `session`: the connection and its per-dialect lock and statement timeouts;
//! - `key`: whether a key can be walked, and how its values are read, bound and compared;
//! - `inspect`: the checks of the table, its key and the `set`/`pending` fragments;
//! - `lock`: the run lock, the external store's lease, attaching to and releasing a backfill;
//! - `fence`: with an external store, the epoch in the backfilled database that rolls back a
//!   stale runner's batch;
//! - `store`: reading and writing the checkpoint in whichever store holds it;
//! - `run`: the batch loop (attach, pace, batch, retry, settle, release);
//! - `pass`: what a run carries between batches, and the run's report it adds up;
//! - `retry`: the decision after a failed batch, and its count of errors and retries;
//! - `batch`: one batch's transaction;
//! - `throttle`: replica lag and the rows/s cap;
//! - `verify`: the check after a pass that nothing is pending any more;
//! - `commands`: status and the operator commands (pause, resume, cancel, reset);
//! - `shards`: a backfill split into key ranges, planned once, worked by several runners;
//! - `slots`: `max_concurrency`, the most runners at once across all of them.

mod batch;
mod commands;
mod fence;
mod inspect;
mod key;
mod lock;
mod pass;
mod retry;
mod run;
mod session;
mod shards;
mod slots;
mod statements;
mod store;
mod throttle;
mod verify;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shiftguard_core::backfill::BackfillConfig;
use shiftguard_core::backfill::{BatchReport, Checkpoint, CheckpointStore, Key, KeyRange, Status};
use thiserror::Error;

use crate::checkpoint::SqlCheckpoints;
use crate::error::SqlError;
use crate::url::{DatabaseUrl, Dialect};

pub use inspect::first_pending_key;

/// Room left before a deadline for committing, releasing and reporting.
const DEADLINE_SLACK: Duration = Duration::from_millis(250);

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
    /// The checkpoint changed while the run waited (a pause, a hold, a retry): another runner
    /// took the lease (`holder`), or an operator's command. The run ends as `Busy` or
    /// `Interrupted`; callers of [`Runner::run`] never see this error.
    #[error("backfill {name}: the lease was lost while waiting")]
    LeaseLost {
        name: String,
        holder: Option<String>,
    },
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
    pub first_pending_key: Option<Key>,
    /// Share of the current pass covered, 0-100.
    pub percent: f64,
    /// Whether `percent` is an estimate from the table's statistics (a key other than a single
    /// integer column) rather than the cursor's place in the key range.
    pub percent_estimated: bool,
    /// A backfill with shards: each shard's own report (the figures above add them up).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<StatusReport>,
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
    /// A health signal (replica lag, the throttle query, a VACUUM, …) is above its limit:
    /// waiting.
    Held(shiftguard_core::backfill::Reading),
    /// A batch failed with a transient error and will be retried.
    Retrying {
        attempt: u32,
        delay: Duration,
        error: String,
    },
    /// The cursor passed the last key; the next run verifies.
    Swept,
    /// A verification ran: `pending` rows found (a new pass starts) or none (complete).
    Verified { pending_from: Option<Key> },
    /// This runner planned the shards' ranges: at the quantiles of the statistics' histogram
    /// (PostgreSQL), or at exact row offsets on the key's index.
    Planned { shards: u32, from_histogram: bool },
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Another runner holds the backfill.
    Busy { holder: Option<String> },
    /// `max_concurrency` runners work the backfill's shards already: nothing was done.
    Full { max_concurrency: u32 },
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
    /// The keys this runner walks: all of them, or one shard's (see `shards`).
    pub range: KeyRange,
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

/// The error helpers every step uses, so messages keep one shape.
impl Runner<'_> {
    fn target_error(&self, problem: impl Into<String>) -> BackfillError {
        BackfillError::Target {
            name: self.config.name.clone(),
            problem: problem.into(),
        }
    }

    /// A driver error's text with any URL or password taken out.
    fn sql_error(&self, error: &sqlx::Error) -> String {
        self.url.redact(&error.to_string())
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
}

/// Test fixtures shared by the files' unit tests.
#[cfg(test)]
mod fixtures {
    use shiftguard_core::backfill::{BackfillConfig, KeyRange, Tuning};
    use shiftguard_core::backfill::{Checkpoint, CheckpointStore, StoreFuture};

    use super::{Checkpoints, LagSource, Runner};
    use crate::checkpoint::SqlCheckpoints;
    use crate::url::DatabaseUrl;

    pub fn config() -> BackfillConfig {
        BackfillConfig {
            name: "users_display_name".to_owned(),
            table: "users".to_owned(),
            key: vec!["id".to_owned()],
            pending: "display_name IS NULL".to_owned(),
            set: "display_name = name".to_owned(),
            tuning: Tuning::default(),
        }
    }

    pub fn url(raw: &str) -> DatabaseUrl {
        DatabaseUrl::parse(raw).expect("url")
    }

    pub fn sql_runner<'a>(url: &'a DatabaseUrl, config: &'a BackfillConfig) -> Runner<'a> {
        Runner {
            url,
            config,
            checkpoints: Checkpoints::Sql(SqlCheckpoints::new("shiftguard_backfill").unwrap()),
            owner: "host:1".to_owned(),
            lag: LagSource::None,
            connect_timeout: std::time::Duration::from_secs(1),
            range: KeyRange::default(),
        }
    }

    /// An external store that is never called: the tests only need its name.
    pub struct NamedStore;

    impl CheckpointStore for NamedStore {
        fn describe(&self) -> String {
            "dynamodb table shiftguard-checkpoints".to_owned()
        }
        fn load<'a>(&'a self, _: &'a str) -> StoreFuture<'a, Option<Checkpoint>> {
            unreachable!("not used by unit tests")
        }
        fn create<'a>(&'a self, _: &'a Checkpoint) -> StoreFuture<'a, ()> {
            unreachable!("not used by unit tests")
        }
        fn write<'a>(&'a self, _: &'a Checkpoint) -> StoreFuture<'a, bool> {
            unreachable!("not used by unit tests")
        }
        fn delete<'a>(&'a self, _: &'a str) -> StoreFuture<'a, bool> {
            unreachable!("not used by unit tests")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{NamedStore, config, sql_runner, url};
    use super::*;

    #[test]
    fn the_lag_source_follows_the_query_then_the_dialect() {
        let mut config = config();
        let replica = url("mysql://root@127.0.0.1:3307/app");
        assert!(matches!(
            LagSource::for_backfill(&config, Dialect::Postgres, None),
            LagSource::PostgresReplication
        ));
        assert!(matches!(
            LagSource::for_backfill(&config, Dialect::MySql, Some(replica.clone())),
            LagSource::MySqlReplica(_)
        ));
        assert!(matches!(
            LagSource::for_backfill(&config, Dialect::MySql, None),
            LagSource::None
        ));
        assert!(matches!(
            LagSource::for_backfill(&config, Dialect::Sqlite, None),
            LagSource::None
        ));
        config.tuning.replica_lag_query = Some("SELECT 5".to_owned());
        assert!(matches!(
            LagSource::for_backfill(&config, Dialect::MySql, Some(replica)),
            LagSource::Query(q) if q == "SELECT 5"
        ));
    }

    #[test]
    fn store_errors_name_the_sql_table_but_not_an_external_store_twice() {
        let (url, config) = (url("sqlite::memory:"), config());
        let mut runner = sql_runner(&url, &config);
        assert_eq!(
            runner.store_error("disk full").to_string(),
            "backfill users_display_name: checkpoint table shiftguard_backfill: disk full"
        );
        let store = NamedStore;
        runner.checkpoints = Checkpoints::External(&store);
        assert_eq!(
            runner.store_error("throttled").to_string(),
            "backfill users_display_name: throttled"
        );
        assert_eq!(
            format!("{:?}", runner.checkpoints),
            "dynamodb table shiftguard-checkpoints"
        );
    }

    #[test]
    fn jitter_stays_in_the_unit_interval() {
        for _ in 0..100 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j), "{j}");
        }
    }
}
