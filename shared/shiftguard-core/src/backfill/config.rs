//! A backfill's configuration: the `[[backfill]]` tables of `shiftguard.toml` (what to update,
//! how hard it may push the database) and `[checkpoint]` (where progress is kept). Each
//! definition validates itself; [`crate::config`] composes them into the file.

use serde::Deserialize;

use std::ops::RangeInclusive;

use crate::names::{is_identifier, is_name, is_table_name};
use crate::settings::all_within;
use crate::sql_fragments;

/// Where backfill checkpoints are kept.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    #[serde(default)]
    pub store: CheckpointStoreKind,
    /// The SQL table (created on first use) or the DynamoDB table.
    #[serde(default = "default_checkpoint_table")]
    pub table: String,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            store: CheckpointStoreKind::default(),
            table: default_checkpoint_table(),
        }
    }
}

fn default_checkpoint_table() -> String {
    "shiftguard_backfill".to_owned()
}

/// The checkpoint store technologies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckpointStoreKind {
    /// A table in the backfilled database, written in each batch's transaction.
    #[default]
    Sql,
    /// A DynamoDB item, written with a conditional update after each batch.
    Dynamodb,
}

/// One backfill: which rows are pending and how to fix them.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(from = "RawBackfill")]
pub struct BackfillConfig {
    /// Unique name; the checkpoint's key.
    pub name: String,
    /// Table to update (`table` or `schema.table`).
    pub table: String,
    /// The key the batches walk, in order: one column (`key = "id"`) or several
    /// (`key = ["tenant", "id"]`); unique, NOT NULL, of an integer, UUID, text or binary type,
    /// with an index whose leading columns are the key.
    pub key: Vec<String>,
    /// SQL predicate of rows still to do; also the guard that makes every batch idempotent.
    pub pending: String,
    /// SQL assignments (`col = expr, …`) that fix a pending row.
    pub set: String,
    /// Optional keys beside the required ones.
    pub tuning: Tuning,
}

/// How hard a backfill may push the database. Every field has a default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tuning {
    /// Rows per batch at the start of a run.
    pub batch_size: u64,
    pub min_batch_size: u64,
    pub max_batch_size: u64,
    /// The batch duration the sizer aims for, in milliseconds.
    pub target_batch_ms: u64,
    /// Sleep between batches, in milliseconds.
    pub pause_ms: u64,
    /// Wait while replica lag is above this, in milliseconds.
    pub max_replica_lag_ms: u64,
    /// SQL returning the replica lag in milliseconds (one row, one number), run on the primary.
    /// Overrides the dialect's own source (`pg_stat_replication` on PostgreSQL).
    pub replica_lag_query: Option<String>,
    /// Name of the environment variable holding a MySQL/MariaDB replica's URL, whose
    /// `SHOW REPLICA STATUS` gives the lag. (The URL itself never goes into this file.)
    pub replica_url_env: Option<String>,
    /// SQL returning one number (one row, one column), run before every batch: the backfill
    /// holds while it is above `throttle_max` (or NULL).
    pub throttle_query: Option<String>,
    pub throttle_max: u64,
    /// PostgreSQL: hold while a VACUUM (auto or manual) runs on the backfilled table (off by
    /// default: the backfill's own updates invite autovacuum, and an anti-wraparound one can
    /// run for hours).
    pub hold_on_vacuum: bool,
    /// PostgreSQL: hold while more WAL segments than this wait to be archived.
    pub max_archive_pending: Option<u64>,
    /// MySQL/MariaDB: hold while `Threads_running` is above this.
    pub max_threads_running: Option<u64>,
    /// Lock wait limit per statement, in milliseconds.
    pub lock_timeout_ms: u64,
    /// Statement time limit, in milliseconds.
    pub statement_timeout_ms: u64,
    /// Cap on rows scanned per second (none by default).
    pub max_rows_per_second: Option<u64>,
    /// Attempts for one batch that fails with a transient error before the run gives up.
    pub max_retries: u32,
    /// Key-range shards the backfill is split into (1: not split). Each has its own checkpoint
    /// and lock, so as many runners can work at once.
    pub shards: u32,
    /// The most runners that work this backfill's shards at once, wherever they run (none:
    /// one per shard). A run holds one of this many slots (a lock, or a lease) for its whole run.
    pub max_concurrency: Option<u32>,
    /// Lifetime of the lease in an external checkpoint store (DynamoDB), in milliseconds;
    /// every batch renews it. A runner killed with -9 holds the backfill up for at most this.
    pub lease_ttl_ms: u64,
    /// Show key values other than integers in logs, EMF lines, notices and gate reasons (off:
    /// a text key may be an e-mail address).
    pub show_keys: bool,
}

/// The longest a time setting may be: an hour (a batch, a lock wait, a lease).
const HOUR_MS: u64 = 3_600_000;

impl Tuning {
    /// How many runners may work the shards at once: `max_concurrency`, at most one per shard.
    pub fn concurrency(&self) -> u32 {
        let shards = self.shards.max(1);
        self.max_concurrency
            .map_or(shards, |cap| cap.clamp(1, shards))
    }

    /// Every numeric setting with its allowed range (README's configuration reference lists
    /// them): batches never hold the whole table, timeouts never outlast an hour, and every sum
    /// or product of two of them fits in 64 bits.
    pub fn ranges(&self) -> [(&'static str, Option<u64>, RangeInclusive<u64>); 16] {
        [
            ("batch_size", Some(self.batch_size), 1..=1_000_000),
            ("min_batch_size", Some(self.min_batch_size), 1..=1_000_000),
            ("max_batch_size", Some(self.max_batch_size), 1..=1_000_000),
            ("target_batch_ms", Some(self.target_batch_ms), 1..=60_000),
            ("pause_ms", Some(self.pause_ms), 0..=HOUR_MS),
            (
                "max_replica_lag_ms",
                Some(self.max_replica_lag_ms),
                0..=HOUR_MS,
            ),
            (
                "throttle_max",
                Some(self.throttle_max),
                0..=1_000_000_000_000,
            ),
            (
                "max_archive_pending",
                self.max_archive_pending,
                0..=1_000_000,
            ),
            ("max_threads_running", self.max_threads_running, 1..=100_000),
            ("lock_timeout_ms", Some(self.lock_timeout_ms), 1..=HOUR_MS),
            (
                "statement_timeout_ms",
                Some(self.statement_timeout_ms),
                1..=HOUR_MS,
            ),
            (
                "max_rows_per_second",
                self.max_rows_per_second,
                1..=100_000_000,
            ),
            ("max_retries", Some(u64::from(self.max_retries)), 0..=100),
            ("lease_ttl_ms", Some(self.lease_ttl_ms), 1_000..=4 * HOUR_MS),
            ("shards", Some(u64::from(self.shards)), 1..=64),
            (
                "max_concurrency",
                self.max_concurrency.map(u64::from),
                1..=64,
            ),
        ]
    }
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            batch_size: 1_000,
            min_batch_size: 100,
            max_batch_size: 100_000,
            target_batch_ms: 100,
            pause_ms: 0,
            max_replica_lag_ms: 1_500,
            replica_lag_query: None,
            replica_url_env: None,
            throttle_query: None,
            throttle_max: 0,
            hold_on_vacuum: false,
            max_archive_pending: None,
            max_threads_running: None,
            lock_timeout_ms: 2_000,
            statement_timeout_ms: 10_000,
            max_rows_per_second: None,
            max_retries: 8,
            shards: 1,
            max_concurrency: None,
            lease_ttl_ms: 30_000,
            show_keys: false,
        }
    }
}

/// A `[[backfill]]` table as written: tuning keys sit beside the required ones. (serde cannot
/// combine `flatten` with `deny_unknown_fields`, hence this flat twin of [`BackfillConfig`].)
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackfill {
    name: String,
    table: String,
    key: KeyColumns,
    pending: String,
    set: String,
    batch_size: Option<u64>,
    min_batch_size: Option<u64>,
    max_batch_size: Option<u64>,
    target_batch_ms: Option<u64>,
    pause_ms: Option<u64>,
    max_replica_lag_ms: Option<u64>,
    replica_lag_query: Option<String>,
    replica_url_env: Option<String>,
    throttle_query: Option<String>,
    throttle_max: Option<u64>,
    hold_on_vacuum: Option<bool>,
    max_archive_pending: Option<u64>,
    max_threads_running: Option<u64>,
    lock_timeout_ms: Option<u64>,
    statement_timeout_ms: Option<u64>,
    max_rows_per_second: Option<u64>,
    max_retries: Option<u32>,
    shards: Option<u32>,
    max_concurrency: Option<u32>,
    lease_ttl_ms: Option<u64>,
    show_keys: Option<bool>,
}

/// `key = "id"` or `key = ["tenant", "id"]`.
#[derive(Deserialize)]
#[serde(untagged)]
enum KeyColumns {
    One(String),
    Several(Vec<String>),
}

/// The most columns a key may have.
const MAX_KEY_COLUMNS: usize = 4;

impl From<RawBackfill> for BackfillConfig {
    fn from(raw: RawBackfill) -> Self {
        let d = Tuning::default();
        BackfillConfig {
            name: raw.name,
            table: raw.table,
            key: match raw.key {
                KeyColumns::One(column) => vec![column],
                KeyColumns::Several(columns) => columns,
            },
            pending: raw.pending,
            set: raw.set,
            tuning: Tuning {
                batch_size: raw.batch_size.unwrap_or(d.batch_size),
                min_batch_size: raw.min_batch_size.unwrap_or(d.min_batch_size),
                max_batch_size: raw.max_batch_size.unwrap_or(d.max_batch_size),
                target_batch_ms: raw.target_batch_ms.unwrap_or(d.target_batch_ms),
                pause_ms: raw.pause_ms.unwrap_or(d.pause_ms),
                max_replica_lag_ms: raw.max_replica_lag_ms.unwrap_or(d.max_replica_lag_ms),
                replica_lag_query: raw.replica_lag_query,
                replica_url_env: raw.replica_url_env,
                throttle_query: raw.throttle_query,
                throttle_max: raw.throttle_max.unwrap_or(d.throttle_max),
                hold_on_vacuum: raw.hold_on_vacuum.unwrap_or(d.hold_on_vacuum),
                max_archive_pending: raw.max_archive_pending,
                max_threads_running: raw.max_threads_running,
                lock_timeout_ms: raw.lock_timeout_ms.unwrap_or(d.lock_timeout_ms),
                statement_timeout_ms: raw.statement_timeout_ms.unwrap_or(d.statement_timeout_ms),
                max_rows_per_second: raw.max_rows_per_second,
                max_retries: raw.max_retries.unwrap_or(d.max_retries),
                shards: raw.shards.unwrap_or(d.shards),
                max_concurrency: raw.max_concurrency,
                lease_ttl_ms: raw.lease_ttl_ms.unwrap_or(d.lease_ttl_ms),
                show_keys: raw.show_keys.unwrap_or(d.show_keys),
            },
        }
    }
}

impl BackfillConfig {
    /// The key's columns as SQL writes them: `id`, or `tenant, id`.
    pub fn key_columns(&self) -> String {
        self.key.join(", ")
    }

    /// Why this backfill would be unsafe or cannot work, if so.
    pub fn problem(&self) -> Option<String> {
        self.check().err()
    }

    fn check(&self) -> Result<(), String> {
        if !is_name(&self.name) {
            return Err(String::from(
                "name must be 1-100 letters, digits, `_` or `-`",
            ));
        }
        if !is_table_name(&self.table) {
            return Err(format!(
                "table `{}` is not a plain table name (letters, digits, `_`, optionally schema.table)",
                self.table
            ));
        }
        if self.key.is_empty() || self.key.len() > MAX_KEY_COLUMNS {
            return Err(format!(
                "key must name 1 to {MAX_KEY_COLUMNS} columns, not {}",
                self.key.len()
            ));
        }
        for (i, column) in self.key.iter().enumerate() {
            if !is_identifier(column) {
                return Err(format!("key `{column}` is not a plain column name"));
            }
            if self.key[..i].iter().any(|c| c.eq_ignore_ascii_case(column)) {
                return Err(format!("key names column `{column}` twice"));
            }
        }
        let pending = self.pending.trim();
        let trivially_true = ["", "true", "1", "1=1", "1 = 1", "(true)", "not false"]
            .contains(&pending.to_ascii_lowercase().as_str());
        if trivially_true {
            return Err(String::from(
                "`pending` must select only the rows still to do: it is the guard that makes re-running a batch harmless",
            ));
        }
        if self.set.trim().is_empty() {
            return Err(String::from("`set` is empty"));
        }
        for (field, fragment) in [("pending", &self.pending), ("set", &self.set)] {
            if let Some(problem) = sql_fragments::expression_problem(field, fragment) {
                return Err(problem);
            }
        }
        if sql_fragments::has_top_level_word(&self.set, "WHERE") {
            return Err(String::from(
                "`set` must hold only assignments: the WHERE clause is `pending`",
            ));
        }
        let t = &self.tuning;
        all_within(&t.ranges())?;
        if !(t.min_batch_size <= t.batch_size && t.batch_size <= t.max_batch_size) {
            return Err(format!(
                "batch sizes must satisfy min_batch_size ({}) <= batch_size ({}) <= max_batch_size ({})",
                t.min_batch_size, t.batch_size, t.max_batch_size
            ));
        }
        // Both are bounded above, so the product cannot overflow.
        if t.lease_ttl_ms < 2 * t.statement_timeout_ms {
            return Err(format!(
                "lease_ttl_ms ({}) must be at least twice statement_timeout_ms ({}): a batch must never outlive the lease it renews",
                t.lease_ttl_ms, t.statement_timeout_ms
            ));
        }
        if t.pause_ms >= t.lease_ttl_ms {
            return Err(format!(
                "pause_ms ({}) must be shorter than lease_ttl_ms ({}): a runner sleeping between batches would lose its lease",
                t.pause_ms, t.lease_ttl_ms
            ));
        }
        for (name, query) in [
            ("replica_lag_query", &t.replica_lag_query),
            ("throttle_query", &t.throttle_query),
        ] {
            if let Some(problem) = query
                .as_deref()
                .and_then(|q| sql_fragments::query_problem(name, q))
            {
                return Err(problem);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_one_runner_per_shard_and_max_concurrency_at_once() {
        let mut tuning = Tuning {
            shards: 4,
            ..Tuning::default()
        };
        assert_eq!(tuning.concurrency(), 4);
        tuning.max_concurrency = Some(2);
        assert_eq!(tuning.concurrency(), 2);
        tuning.max_concurrency = Some(9);
        assert_eq!(tuning.concurrency(), 4);
        assert_eq!(Tuning::default().concurrency(), 1);
    }

    #[test]
    fn a_key_is_one_column_or_several_distinct_ones() {
        let parse = |key: &str| {
            let raw: RawBackfill = toml::from_str(&format!(
                "name = \"b\"\ntable = \"t\"\nkey = {key}\npending = \"x IS NULL\"\nset = \"x = 1\""
            ))
            .expect("toml");
            BackfillConfig::from(raw)
        };
        let one = parse("\"id\"");
        assert_eq!(one.key, ["id"]);
        assert_eq!(one.problem(), None);
        let two = parse("[\"tenant\", \"id\"]");
        assert_eq!(two.key_columns(), "tenant, id");
        assert_eq!(two.problem(), None);
        for (key, problem) in [
            ("[]", "key must name 1 to 4 columns, not 0"),
            (
                "[\"a\", \"b\", \"c\", \"d\", \"e\"]",
                "key must name 1 to 4 columns, not 5",
            ),
            ("[\"id\", \"ID\"]", "key names column `ID` twice"),
            ("[\"a b\"]", "key `a b` is not a plain column name"),
        ] {
            assert_eq!(parse(key).problem().as_deref(), Some(problem), "{key}");
        }
    }

    #[test]
    fn every_number_is_checked_at_its_edges() {
        let base = || {
            let raw: RawBackfill = toml::from_str(
                "name = \"b\"\ntable = \"t\"\nkey = \"id\"\npending = \"x IS NULL\"\nset = \"x = 1\"\nlease_ttl_ms = 14400000",
            )
            .expect("toml");
            BackfillConfig::from(raw)
        };
        // Each range's two edges pass and one past each fails, naming the key and the range.
        let ranges = base().tuning.ranges();
        for (i, (key, _, range)) in ranges.iter().enumerate() {
            let with = |value: u64| {
                let mut config = base();
                let t = &mut config.tuning;
                // The batch sizes and the lease are related: move the related ones along.
                match i {
                    0..=2 => {
                        (t.min_batch_size, t.batch_size, t.max_batch_size) = (value, value, value)
                    }
                    3 => t.target_batch_ms = value,
                    4 => t.pause_ms = value,
                    5 => t.max_replica_lag_ms = value,
                    6 => t.throttle_max = value,
                    7 => t.max_archive_pending = Some(value),
                    8 => t.max_threads_running = Some(value),
                    9 => t.lock_timeout_ms = value,
                    10 => t.statement_timeout_ms = value,
                    11 => t.max_rows_per_second = Some(value),
                    12 => t.max_retries = u32::try_from(value).unwrap_or(u32::MAX),
                    13 => {
                        t.lease_ttl_ms = value;
                        t.statement_timeout_ms = (value / 2).clamp(1, HOUR_MS);
                    }
                    14 => t.shards = u32::try_from(value).unwrap_or(u32::MAX),
                    15 => t.max_concurrency = Some(u32::try_from(value).unwrap_or(u32::MAX)),
                    _ => unreachable!("16 ranges"),
                }
                config.problem()
            };
            assert_eq!(with(*range.start()), None, "{key} at {}", range.start());
            assert_eq!(with(*range.end()), None, "{key} at {}", range.end());
            let past = range.end() + 1;
            let expected = format!(
                "{key} = {past} is out of range: it must be between {} and {}",
                range.start(),
                range.end()
            );
            let found = with(past);
            // (min_batch_size is checked first when all three move together.)
            assert!(
                found
                    .as_deref()
                    .is_some_and(|p| p.contains("is out of range")),
                "{key}: {found:?}"
            );
            if !matches!(i, 0..=2) {
                assert_eq!(found.as_deref(), Some(expected.as_str()), "{key}");
            }
            if *range.start() > 0 {
                assert!(with(range.start() - 1).is_some(), "{key} below its range");
            }
        }
        // The values of the report: a lease that wrapped to -1, a batch of 9.2e18 rows.
        let mut huge = base();
        huge.tuning.lease_ttl_ms = u64::MAX;
        assert_eq!(
            huge.problem().as_deref(),
            Some(
                "lease_ttl_ms = 18446744073709551615 is out of range: it must be between 1000 and 14400000"
            )
        );
        let mut whole_table = base();
        whole_table.tuning.max_batch_size = 9_200_000_000_000_000_000;
        assert!(
            whole_table
                .problem()
                .is_some_and(|p| p.starts_with("max_batch_size = 9200000000000000000"))
        );
    }

    #[test]
    fn health_signals_parse_with_defaults_and_are_checked() {
        let parse = |extra: &str| {
            let raw: RawBackfill = toml::from_str(&format!(
                "name = \"b\"\ntable = \"t\"\nkey = \"id\"\npending = \"x IS NULL\"\nset = \"x = 1\"\n{extra}"
            ))
            .expect("toml");
            BackfillConfig::from(raw)
        };
        let defaults = parse("").tuning;
        assert_eq!(defaults.throttle_query, None);
        assert!(!defaults.hold_on_vacuum);
        assert_eq!(
            (defaults.max_archive_pending, defaults.max_threads_running),
            (None, None)
        );
        let set = parse(
            "throttle_query = \"SELECT 1\"\nthrottle_max = 3\nhold_on_vacuum = true\nmax_threads_running = 40",
        );
        assert_eq!(set.tuning.throttle_max, 3);
        assert!(set.tuning.hold_on_vacuum);
        assert_eq!(set.problem(), None);
        let sleepy = parse("pause_ms = 30000");
        assert_eq!(
            sleepy.problem().as_deref(),
            Some(
                "pause_ms (30000) must be shorter than lease_ttl_ms (30000): a runner sleeping between batches would lose its lease"
            )
        );
        let two = parse("throttle_query = \"SELECT 1; SELECT 2\"");
        assert_eq!(
            two.problem().as_deref(),
            Some("throttle_query must be one statement")
        );
        let zero = parse("max_threads_running = 0");
        assert!(
            zero.problem()
                .is_some_and(|p| p.contains("max_threads_running"))
        );
    }
}
