//! What one run carries from batch to batch — the batch sizer, the
//! deadline, the pace so far — and the run's report it adds up: each committed batch's own
//! report (what `Event::Batch` and the per-batch EMF line show) and the run's totals (the
//! `RunSummary` and the run's EMF line). Kept apart from the loop so the counting is testable
//! without a database.

use std::time::{Duration, Instant};

use shiftguard_core::backfill::BackfillConfig;
use shiftguard_core::backfill::{BatchReport, BatchSizer, Key};

use super::batch::Committed;
use super::retry::{Attempts, Retry};

/// What one run carries from batch to batch.
#[derive(Debug)]
pub(super) struct Pass {
    pub sizer: BatchSizer,
    /// The run's report so far.
    pub totals: BatchReport,
    /// Key positions scanned by this run (what the rate cap counts).
    pub scanned: u64,
    /// The last batch's duration (at first the target): the next starts only if it fits twice.
    pub last_batch: Duration,
    /// When the batches began (after attaching): what the rate cap and rows/s count from.
    pub started: Instant,
    pub deadline: Instant,
}

impl Pass {
    pub fn new(config: &BackfillConfig, started: Instant, deadline: Instant) -> Self {
        let tuning = &config.tuning;
        Pass {
            sizer: BatchSizer::new(tuning),
            totals: BatchReport::default(),
            scanned: 0,
            last_batch: Duration::from_millis(tuning.target_batch_ms),
            started,
            deadline,
        }
    }

    /// Counts a failed attempt of a batch, and its retry if there is one, in the batch's tally
    /// and in the run's totals.
    pub fn count_failure(&mut self, attempts: &mut Attempts, retry: Retry) {
        attempts.errors += 1;
        self.totals.errors += 1;
        if let Retry::After(_) = retry {
            attempts.retries += 1;
            self.totals.retries += 1;
        }
    }

    /// Learns from a committed batch and adds it to the run's totals; returns the batch's own
    /// report. `elapsed`: the run's time so far; `cursor`: the checkpoint's after the batch.
    pub fn record(
        &mut self,
        batch: Committed,
        attempts: Attempts,
        lag_ms: f64,
        remaining_estimate: u64,
        cursor: Option<Key>,
        elapsed: Duration,
    ) -> BatchReport {
        self.sizer.observe(batch.scanned, batch.took);
        self.last_batch = batch.took;
        self.scanned += batch.scanned;
        let report = BatchReport {
            rows_updated: batch.updated,
            rows_scanned: batch.scanned,
            batch_ms: batch.took.as_secs_f64() * 1e3,
            batch_size: self.sizer.size(),
            rows_per_second: self.scanned as f64 / elapsed.as_secs_f64().max(1e-9),
            remaining_estimate,
            replica_lag_ms: lag_ms,
            retries: u64::from(attempts.retries),
            errors: u64::from(attempts.errors),
            cursor: cursor.clone(),
        };
        let totals = &mut self.totals;
        totals.rows_updated += batch.updated;
        totals.rows_scanned += batch.scanned;
        totals.batch_size = report.batch_size;
        totals.batch_ms = totals.batch_ms.max(report.batch_ms);
        totals.rows_per_second = report.rows_per_second;
        totals.remaining_estimate = report.remaining_estimate;
        totals.replica_lag_ms = lag_ms;
        totals.cursor = cursor;
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backfill::fixtures::config;
    use crate::backfill::retry::decide_retry;
    use crate::error::ErrorClass;

    const HOUR: Duration = Duration::from_secs(3600);

    fn pass() -> Pass {
        let now = Instant::now();
        Pass::new(&config(), now, now + HOUR)
    }

    fn committed(scanned: u64, updated: u64, ms: u64) -> Committed {
        Committed {
            scanned,
            updated,
            took: Duration::from_millis(ms),
        }
    }

    #[test]
    fn a_batch_reports_its_errors_and_its_retries_each_from_its_own_count() {
        // Regression: the batch report set both `retries` and `errors` from one number.
        let mut pass = pass();
        let attempts = Attempts {
            errors: 3,
            retries: 2,
        };
        let report = pass.record(
            committed(10, 5, 20),
            attempts,
            0.0,
            0,
            Some(Key::int(10)),
            HOUR,
        );
        assert_eq!((report.errors, report.retries), (3, 2));
    }

    #[test]
    fn errors_count_every_failed_attempt_and_retries_only_those_tried_again() {
        let mut pass = pass();
        // A batch fails twice with a lock timeout, is retried twice, and commits.
        let mut attempts = Attempts::default();
        for _ in 0..2 {
            let retry = decide_retry(ErrorClass::Timeout, attempts.errors + 1, 8, HOUR, 0.0);
            pass.count_failure(&mut attempts, retry);
        }
        let report = pass.record(
            committed(100, 100, 20),
            attempts,
            0.0,
            0,
            Some(Key::int(100)),
            HOUR,
        );
        assert_eq!((report.errors, report.retries), (2, 2));
        // The next batch fails once and the deadline leaves no room to retry: the run ends
        // with one more error than retries.
        let mut attempts = Attempts::default();
        let retry = decide_retry(ErrorClass::Timeout, 1, 8, Duration::ZERO, 0.0);
        assert_eq!(retry, Retry::Deadline);
        pass.count_failure(&mut attempts, retry);
        assert_eq!(
            attempts,
            Attempts {
                errors: 1,
                retries: 0
            }
        );
        assert_eq!((pass.totals.errors, pass.totals.retries), (3, 2));
    }

    #[test]
    fn the_run_report_adds_rows_and_keeps_the_slowest_batch_and_the_latest_state() {
        let mut pass = pass();
        let first = pass.record(
            committed(1_000, 400, 80),
            Attempts::default(),
            12.0,
            9_000,
            Some(Key::int(1_000)),
            Duration::from_secs(1),
        );
        assert_eq!((first.rows_scanned, first.rows_updated), (1_000, 400));
        assert_eq!(first.batch_ms, 80.0);
        assert_eq!(first.rows_per_second, 1_000.0);
        assert_eq!(
            (first.remaining_estimate, first.cursor),
            (9_000, Some(Key::int(1_000)))
        );
        let second = pass.record(
            committed(1_000, 1_000, 40),
            Attempts::default(),
            3.0,
            8_000,
            Some(Key::int(2_000)),
            Duration::from_secs(4),
        );
        // Rows per second are the run's: 2,000 rows over 4 s.
        assert_eq!(second.rows_per_second, 500.0);
        let totals = &pass.totals;
        assert_eq!((totals.rows_scanned, totals.rows_updated), (2_000, 1_400));
        assert_eq!(totals.batch_ms, 80.0);
        assert_eq!(totals.rows_per_second, 500.0);
        assert_eq!(totals.replica_lag_ms, 3.0);
        assert_eq!(
            (totals.remaining_estimate, totals.cursor.clone()),
            (8_000, Some(Key::int(2_000)))
        );
        assert_eq!(totals.batch_size, second.batch_size);
        assert_eq!((totals.errors, totals.retries), (0, 0));
        assert_eq!(pass.scanned, 2_000);
        assert_eq!(pass.last_batch, Duration::from_millis(40));
    }

    #[test]
    fn the_batch_size_follows_the_sizer() {
        // Batches far faster than the 100 ms target: the next is larger, by at most 25%.
        let mut pass = pass();
        let start = pass.sizer.size();
        let report = pass.record(
            committed(start, 0, 1),
            Attempts::default(),
            0.0,
            0,
            None,
            HOUR,
        );
        assert_eq!(report.batch_size, start + start / 4);
        assert_eq!(pass.sizer.size(), report.batch_size);
    }
}
