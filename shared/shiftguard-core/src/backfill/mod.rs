//! Backfill decisions, free of I/O: the checkpoint model and its status rules, batch sizing toward
//! a target duration, retry backoff, the rows/s throttle, progress estimates and the CloudWatch
//! Embedded Metric Format lines, and the backfill's configuration ([`BackfillConfig`]). The
//! executor in `shiftguard-sql` carries them out.

mod config;
mod health;
mod key;

pub use config::{BackfillConfig, CheckpointConfig, CheckpointStoreKind, Tuning};
pub use health::{Reading, Signal, first_hold, hold_emf_line};
pub use key::{Key, KeyRange, KeyValue, ShownKey};

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;

/// Where a backfill stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// A pass is under way (or was interrupted and will resume from the cursor).
    Running,
    /// An operator paused it; runs do nothing until `resume`.
    Paused,
    /// An operator cancelled it; runs do nothing until `reset`.
    Cancelled,
    /// The cursor passed the last key; the next run verifies nothing is pending now.
    Swept,
    /// A verification found no pending row. (Old writers may still add some: runs keep verifying.)
    Complete,
    /// A permanent error stopped it; `last_error` says which. `resume` retries.
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Cancelled => "cancelled",
            Status::Swept => "swept",
            Status::Complete => "complete",
            Status::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        [
            Status::Running,
            Status::Paused,
            Status::Cancelled,
            Status::Swept,
            Status::Complete,
            Status::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    /// What a run does when it finds the backfill in this status.
    pub fn on_run(self) -> RunStart {
        match self {
            Status::Running => RunStart::Resume,
            Status::Swept | Status::Complete => RunStart::Verify,
            Status::Paused | Status::Cancelled | Status::Failed => RunStart::Stay,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first step of a run, by status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunStart {
    /// Continue the pass from the cursor.
    Resume,
    /// Check whether anything is pending now; sweep again if so, else mark complete.
    Verify,
    /// Do nothing (paused, cancelled or failed: an operator decides).
    Stay,
}

/// An operator's command on a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Pause,
    Resume,
    Cancel,
}

impl Command {
    /// The status the command sets where it applies.
    pub fn sets(self) -> Status {
        match self {
            Command::Pause => Status::Paused,
            Command::Resume => Status::Running,
            Command::Cancel => Status::Cancelled,
        }
    }

    /// The status after the command, or why it does not apply.
    pub fn apply(self, status: Status) -> Result<Status, String> {
        match (self, status) {
            (Command::Pause, Status::Running | Status::Swept)
            | (Command::Resume, Status::Paused | Status::Failed) => Ok(self.sets()),
            (Command::Cancel, s) if s != Status::Cancelled => Ok(self.sets()),
            (command, status) => {
                Err(format!("cannot {command:?} a backfill that is {status}").to_lowercase())
            }
        }
    }
}

/// The persisted progress of one backfill.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Checkpoint {
    pub name: String,
    pub status: Status,
    /// The last key processed by the current pass (exclusive lower bound of the next batch).
    pub cursor: Option<Key>,
    /// Rows changed, over all passes.
    pub rows_updated: u64,
    /// Batches committed, over all passes.
    pub batches: u64,
    /// Passes started (the first, plus one per re-sweep after old writers added pending rows).
    pub passes: u64,
    pub lease_owner: Option<String>,
    /// Unix milliseconds.
    pub lease_expires_at: Option<i64>,
    pub last_error: Option<String>,
    /// Unix milliseconds.
    pub started_at: i64,
    pub updated_at: i64,
    pub completed_at: Option<i64>,
    /// Bumped by every write; conditional writes compare it.
    pub version: u64,
    /// A shard's keys (`None`: the backfill is not a shard).
    pub range: Option<KeyRange>,
}

impl Checkpoint {
    /// A new backfill, about to start its first pass.
    pub fn new(name: &str, now_ms: i64) -> Self {
        Checkpoint {
            name: name.to_owned(),
            status: Status::Running,
            cursor: None,
            rows_updated: 0,
            batches: 0,
            passes: 1,
            lease_owner: None,
            lease_expires_at: None,
            last_error: None,
            started_at: now_ms,
            updated_at: now_ms,
            completed_at: None,
            version: 0,
            range: None,
        }
    }
}

/// How far two runners' clocks may disagree: a lease counts as expired only this long after
/// its expiry by the reader's clock. (Correctness does not rest on it: the fence rolls back a
/// stale runner's batch; this only keeps runners from taking turns needlessly.)
pub const LEASE_CLOCK_SKEW_MS: i64 = 2_000;

impl Checkpoint {
    /// Whether `owner` may take the lease now: nobody holds it, `owner` does, or it expired
    /// (by more than [`LEASE_CLOCK_SKEW_MS`]).
    pub fn lease_available(&self, owner: &str, now_ms: i64) -> bool {
        match (&self.lease_owner, self.lease_expires_at) {
            (None, _) => true,
            (Some(holder), _) if holder == owner => true,
            (Some(_), Some(expires)) => expires.saturating_add(LEASE_CLOCK_SKEW_MS) < now_ms,
            (Some(_), None) => false,
        }
    }
}

/// The name of shard `k` (1-based) of backfill `name`: its checkpoint's and its lock's.
pub fn shard_name(name: &str, k: u32) -> String {
    format!("{name}.shard{k}")
}

/// A future returned by a [`CheckpointStore`].
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A checkpoint store outside the backfilled database (DynamoDB). Every write is conditional on
/// the stored `version` being `checkpoint.version - 1`, so two runners can never both advance.
/// (The SQL store is not behind this trait: it writes inside each batch's transaction.)
pub trait CheckpointStore: Send + Sync {
    /// What the store is, for messages: e.g. `dynamodb table shiftguard-checkpoints`.
    fn describe(&self) -> String;
    /// The checkpoint of `name`, read consistently.
    fn load<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<Checkpoint>>;
    /// Stores `checkpoint` unless one with its name exists (a store that keeps a reset's
    /// tombstone stores it with a version above the tombstone's).
    fn create<'a>(&'a self, checkpoint: &'a Checkpoint) -> StoreFuture<'a, ()>;
    /// Stores `checkpoint` if the stored version is `checkpoint.version - 1`; returns whether it did.
    fn write<'a>(&'a self, checkpoint: &'a Checkpoint) -> StoreFuture<'a, bool>;
    /// Deletes the checkpoint of `name` (a store may keep a tombstone in its place, so that its
    /// versions keep rising); returns whether there was one.
    fn delete<'a>(&'a self, name: &'a str) -> StoreFuture<'a, bool>;
}

/// A checkpoint store operation that failed (not a lost conditional write: that is `Ok(false)`).
#[derive(Debug, Error)]
#[error("{message}")]
pub struct StoreError {
    pub message: String,
    /// Worth retrying (throttling, a dropped connection).
    pub transient: bool,
}

/// Sizes batches toward a target duration: grows at most 25% per batch, shrinks up to half at
/// once, within [min, max], steering by an exponential moving average of the cost per row
/// (alpha 0.4, so the last few batches dominate).
#[derive(Clone, Debug)]
pub struct BatchSizer {
    size: u64,
    min: u64,
    max: u64,
    target_ms: f64,
    ms_per_row: Option<f64>,
}

const SIZER_ALPHA: f64 = 0.4;
const MAX_GROWTH: f64 = 1.25;
const MAX_SHRINK: f64 = 0.5;

impl BatchSizer {
    pub fn new(tuning: &Tuning) -> Self {
        BatchSizer {
            size: tuning.batch_size,
            min: tuning.min_batch_size,
            max: tuning.max_batch_size,
            target_ms: tuning.target_batch_ms as f64,
            ms_per_row: None,
        }
    }

    /// Rows for the next batch.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Learns from a committed batch that scanned `rows` key positions in `took`.
    pub fn observe(&mut self, rows: u64, took: Duration) {
        if rows == 0 {
            return;
        }
        let cost = took.as_secs_f64() * 1e3 / rows as f64;
        let smoothed = match self.ms_per_row {
            Some(previous) => SIZER_ALPHA * cost + (1.0 - SIZER_ALPHA) * previous,
            None => cost,
        };
        self.ms_per_row = Some(smoothed);
        let ideal = self.target_ms / smoothed.max(1e-6);
        let current = self.size as f64;
        let next = ideal.clamp(current * MAX_SHRINK, current * MAX_GROWTH);
        self.size = (next.round() as u64).clamp(self.min, self.max);
    }

    /// A batch hit a statement or lock timeout: halve it.
    pub fn on_timeout(&mut self) {
        self.size = (self.size / 2).max(self.min);
    }
}

/// Exponential backoff with jitter for transient errors: 100 ms, 200 ms, … capped at 10 s, each
/// scaled by a factor in [0.5, 1) from `jitter` in [0, 1).
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    let base_ms = 100f64 * 2f64.powi(attempt.min(16) as i32);
    Duration::from_secs_f64(base_ms.min(10_000.0) * (0.5 + jitter.clamp(0.0, 1.0) / 2.0) / 1e3)
}

/// How long to wait so that `rows` scanned since the run started stay under `max_per_second`.
pub fn rate_wait(rows: u64, elapsed: Duration, max_per_second: Option<u64>) -> Duration {
    match max_per_second {
        Some(cap) if cap > 0 => {
            let allowed_after = Duration::from_secs_f64(rows as f64 / cap as f64);
            allowed_after.saturating_sub(elapsed)
        }
        _ => Duration::ZERO,
    }
}

/// Rows left to scan, estimated from the key range (`min..=max`) and the table's row estimate.
pub fn remaining_estimate(min_key: i64, max_key: i64, cursor: Option<i64>, rows: u64) -> u64 {
    let Some(cursor) = cursor else { return rows };
    if max_key <= min_key || cursor >= max_key {
        return 0;
    }
    let left = (max_key - cursor.max(min_key)) as f64 / (max_key - min_key) as f64;
    (rows as f64 * left).round() as u64
}

/// A backfill's pace since it started: average rows updated per second, and the time left at
/// that pace given the share `percent` (0-100) of the key range covered. Scheduled runs with
/// pauses between them are averaged in, which is the pace that matters for an ETA.
pub fn pace(checkpoint: &Checkpoint, percent: f64, now_ms: i64) -> (Option<f64>, Option<Duration>) {
    let finished = matches!(checkpoint.status, Status::Swept | Status::Complete);
    let end = if finished {
        checkpoint.updated_at
    } else {
        now_ms
    };
    let elapsed_ms = end.saturating_sub(checkpoint.started_at);
    if elapsed_ms <= 0 {
        return (None, None);
    }
    let rate = checkpoint.rows_updated as f64 * 1000.0 / elapsed_ms as f64;
    let eta = match checkpoint.status {
        Status::Running if percent > 0.0 && percent < 100.0 => Some(Duration::from_millis(
            (elapsed_ms as f64 * (100.0 - percent) / percent) as u64,
        )),
        _ if finished => Some(Duration::ZERO),
        _ => None,
    };
    (Some(rate), eta)
}

/// What one batch (or one run summary) reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BatchReport {
    pub rows_updated: u64,
    pub rows_scanned: u64,
    pub batch_ms: f64,
    pub batch_size: u64,
    pub rows_per_second: f64,
    pub remaining_estimate: u64,
    pub replica_lag_ms: f64,
    pub retries: u64,
    pub errors: u64,
    pub cursor: Option<Key>,
}

/// The CloudWatch namespace of backfill metrics.
pub const METRIC_NAMESPACE: &str = "shiftguard/backfill";

/// One Embedded Metric Format log line (`event` is `batch` or `run`), dimension `Backfill`; the
/// cursor as [`ShownKey`] shows it.
pub fn emf_line(
    backfill: &str,
    event: &str,
    report: &BatchReport,
    show_keys: bool,
    timestamp_ms: i64,
) -> String {
    let metric = |name: &str, unit: &str| serde_json::json!({ "Name": name, "Unit": unit });
    serde_json::json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": METRIC_NAMESPACE,
                "Dimensions": [["Backfill"]],
                "Metrics": [
                    metric("RowsUpdated", "Count"),
                    metric("RowsScanned", "Count"),
                    metric("BatchDuration", "Milliseconds"),
                    metric("BatchSize", "Count"),
                    metric("RowsPerSecond", "Count/Second"),
                    metric("RemainingEstimate", "Count"),
                    metric("ReplicaLag", "Milliseconds"),
                    metric("Retries", "Count"),
                    metric("Errors", "Count"),
                ],
            }],
        },
        "Backfill": backfill,
        "event": event,
        "RowsUpdated": report.rows_updated,
        "RowsScanned": report.rows_scanned,
        "BatchDuration": report.batch_ms,
        "BatchSize": report.batch_size,
        "RowsPerSecond": report.rows_per_second,
        "RemainingEstimate": report.remaining_estimate,
        "ReplicaLag": report.replica_lag_ms,
        "Retries": report.retries,
        "Errors": report.errors,
        "cursor": report.cursor.clone().map(|key| ShownKey::new(key, show_keys)),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizer() -> BatchSizer {
        BatchSizer::new(&Tuning {
            batch_size: 1_000,
            min_batch_size: 100,
            max_batch_size: 50_000,
            target_batch_ms: 100,
            ..Tuning::default()
        })
    }

    #[test]
    fn sizer_grows_slowly_toward_the_target_and_stays_bounded() {
        let mut s = sizer();
        // 1 µs per row: the ideal is 100,000 rows, but growth is capped per batch and overall.
        let mut sizes = Vec::new();
        for _ in 0..30 {
            let rows = s.size();
            s.observe(rows, Duration::from_micros(rows));
            sizes.push(s.size());
        }
        assert_eq!(sizes[0], 1_250);
        assert!(
            sizes
                .windows(2)
                .all(|w| w[1] as f64 <= w[0] as f64 * 1.25 + 1.0)
        );
        assert_eq!(*sizes.last().expect("sizes"), 50_000);
    }

    #[test]
    fn sizer_shrinks_fast_when_batches_run_long() {
        let mut s = sizer();
        s.observe(1_000, Duration::from_millis(400));
        assert_eq!(s.size(), 500, "at most halved per batch");
        s.observe(500, Duration::from_millis(110));
        assert!(s.size() < 500);
        s.on_timeout();
        s.on_timeout();
        s.on_timeout();
        s.on_timeout();
        assert_eq!(s.size(), 100, "never below the minimum");
    }

    #[test]
    fn sizer_converges_on_the_target() {
        let mut s = sizer();
        // 20 µs per row: 5,000 rows make 100 ms.
        for _ in 0..40 {
            let rows = s.size();
            s.observe(rows, Duration::from_micros(rows * 20));
        }
        assert!((4_900..=5_100).contains(&s.size()), "{}", s.size());
    }

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        assert_eq!(backoff(0, 0.0), Duration::from_millis(50));
        assert_eq!(backoff(3, 0.0), Duration::from_millis(400));
        assert!(backoff(3, 0.999) < Duration::from_millis(800));
        assert_eq!(backoff(30, 0.0), Duration::from_secs(5));
    }

    #[test]
    fn rate_cap_waits_only_when_ahead() {
        let cap = Some(1_000);
        assert_eq!(
            rate_wait(500, Duration::from_millis(200), cap),
            Duration::from_millis(300)
        );
        assert_eq!(rate_wait(500, Duration::from_secs(1), cap), Duration::ZERO);
        assert_eq!(rate_wait(500, Duration::ZERO, None), Duration::ZERO);
    }

    #[test]
    fn status_rules() {
        assert_eq!(Status::Running.on_run(), RunStart::Resume);
        assert_eq!(Status::Swept.on_run(), RunStart::Verify);
        assert_eq!(Status::Complete.on_run(), RunStart::Verify);
        assert_eq!(Status::Paused.on_run(), RunStart::Stay);
        assert_eq!(Command::Pause.apply(Status::Running), Ok(Status::Paused));
        assert_eq!(Command::Resume.apply(Status::Failed), Ok(Status::Running));
        assert_eq!(
            Command::Resume.apply(Status::Complete),
            Err("cannot resume a backfill that is complete".to_owned())
        );
        for status in [
            "running",
            "paused",
            "cancelled",
            "swept",
            "complete",
            "failed",
        ] {
            assert_eq!(Status::parse(status).map(Status::as_str), Some(status));
        }
    }

    #[test]
    fn leases_expire() {
        let mut c = Checkpoint::new("b", 0);
        assert!(c.lease_available("me", 10));
        c.lease_owner = Some("other".into());
        c.lease_expires_at = Some(100);
        assert!(!c.lease_available("me", 50));
        assert!(c.lease_available("other", 50));
        // Expired, but within the clocks' possible disagreement: not yet.
        assert!(!c.lease_available("me", 101));
        assert!(!c.lease_available("me", 100 + LEASE_CLOCK_SKEW_MS));
        assert!(c.lease_available("me", 101 + LEASE_CLOCK_SKEW_MS));
        c.lease_expires_at = None;
        assert!(
            !c.lease_available("me", 1_000_000),
            "a lease without expiry is held"
        );
    }

    #[test]
    fn remaining_follows_the_cursor() {
        assert_eq!(remaining_estimate(1, 1_001, None, 1_000), 1_000);
        assert_eq!(remaining_estimate(1, 1_001, Some(501), 1_000), 500);
        assert_eq!(remaining_estimate(1, 1_001, Some(1_001), 1_000), 0);
    }

    #[test]
    fn emf_line_is_one_json_object_with_declared_metrics() {
        let report = BatchReport {
            rows_updated: 10,
            rows_scanned: 12,
            batch_ms: 3.5,
            cursor: Some(Key::int(42)),
            ..BatchReport::default()
        };
        let line = emf_line(
            "users_display_name",
            "batch",
            &report,
            false,
            1_700_000_000_000,
        );
        assert!(!line.contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&line).expect("json");
        let declared = value["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .expect("metrics");
        for metric in declared {
            let name = metric["Name"].as_str().expect("name");
            assert!(value[name].is_number(), "{name} has a value");
        }
        assert_eq!(value["RowsUpdated"], 10);
        assert_eq!(value["Backfill"], "users_display_name");
        assert_eq!(value["cursor"], 42);
        // A text key (an e-mail address, say) only with show_keys.
        let email = BatchReport {
            cursor: Key::new(vec![KeyValue::Text("ann@example.com".to_owned())]),
            ..report
        };
        let hidden = emf_line("users", "batch", &email, false, 0);
        assert!(!hidden.contains("ann@example.com"), "{hidden}");
        assert!(hidden.contains("\"cursor\":\"hidden\""), "{hidden}");
        assert!(emf_line("users", "batch", &email, true, 0).contains("ann@example.com"));
        assert_eq!(
            ShownKey::text(email.cursor.as_ref(), false),
            "(hidden; show_keys = true shows it)"
        );
        assert_eq!(ShownKey::text(Some(&Key::int(7)), false), "7");
    }

    #[test]
    fn pace_is_the_average_since_the_start() {
        let mut checkpoint = Checkpoint::new("b", 0);
        checkpoint.rows_updated = 5_000;
        let (rate, eta) = pace(&checkpoint, 25.0, 10_000);
        assert_eq!(rate, Some(500.0));
        assert_eq!(eta, Some(Duration::from_secs(30)));
        checkpoint.status = Status::Paused;
        assert_eq!(pace(&checkpoint, 25.0, 10_000).1, None);
        checkpoint.status = Status::Complete;
        checkpoint.updated_at = 20_000;
        assert_eq!(
            pace(&checkpoint, 100.0, 99_000),
            (Some(250.0), Some(Duration::ZERO))
        );
        assert_eq!(pace(&Checkpoint::new("b", 5), 0.0, 5), (None, None));
    }
}
