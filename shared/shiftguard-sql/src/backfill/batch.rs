//! One batch in one bounded transaction: read the next key bounds from the cursor, run the
//! set-based update over that key range (still guarded by `pending`, so a repeat changes
//! nothing), and write the SQL checkpoint inside the same transaction, so progress is exactly
//! once. An error rolls back and leaves the in-memory checkpoint as it was; the caller decides
//! whether to retry.

use std::time::{Duration, Instant};

use shiftguard_core::backfill::{Checkpoint, Key, Status};

use super::statements::{Statements, begin_batch, statement_budget_ms};
use super::{Checkpoints, DEADLINE_SLACK, Runner, now_ms};
use crate::connection::{Connection, Kind};

/// A batch that committed and moved the cursor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Committed {
    /// Key positions the batch covered.
    pub scanned: u64,
    /// Rows it changed (the pending ones among them).
    pub updated: u64,
    pub took: Duration,
}

/// What a batch's transaction answers to besides its own SQL.
#[derive(Clone, Copy, Debug)]
pub(super) struct Guards {
    /// The lease's epoch, checked in the fence (an external store).
    pub epoch: Option<i64>,
    /// MySQL/MariaDB: the session's id. MySQL's `max_execution_time` bounds SELECT only and the
    /// session's limits cannot follow the run's deadline, so a watchdog kills the batch's
    /// statement (`KILL QUERY`, from another session) when the batch outlasts its budget.
    pub session_id: Option<u64>,
}

/// How long after its budget (one statement's: the UPDATE is nearly all of a batch) a MySQL
/// batch's statement is killed, and how long the watchdog then waits for the batch to end
/// before it kills again; after three kills the session is given up.
const WATCHDOG_SLACK: Duration = Duration::from_millis(250);
const WATCHDOG_KILLS: u32 = 3;

/// What one batch attempt did.
#[derive(Debug)]
pub(super) enum BatchResult {
    Committed(Committed),
    /// No key was left after the cursor: the pass is finished (the status is now swept).
    PassFinished,
    /// The checkpoint changed under the batch (an operator): rolled back.
    Interrupted,
    /// Another runner took the lease since this one's was taken: the fence rolled it back.
    Fenced,
}

/// The batch's work inside its transaction, waiting for the commit.
struct Uncommitted {
    next: Checkpoint,
    scanned: u64,
    updated: u64,
    pass_finished: bool,
}

/// Why a batch's last key does not lie after the cursor, if it does not: an integer key read
/// past 2^63 − 1 (a MySQL `BIGINT UNSIGNED` value) wraps to a negative number, and the walk
/// would start over instead of moving on.
fn backwards(lower: Option<&Key>, upper: &Key) -> Option<String> {
    let (lower, upper) = (lower?.as_int()?, upper.as_int()?);
    (upper <= lower).then(|| {
        format!(
            "the key went backwards (from {lower} to {upper}): a key above 9223372036854775807 (BIGINT UNSIGNED) cannot be walked"
        )
    })
}

impl Runner<'_> {
    /// One batch in one transaction: bounds, update, checkpoint. On error the transaction is
    /// rolled back and the in-memory checkpoint is unchanged.
    pub(super) async fn batch(
        &self,
        connection: &mut Connection,
        checkpoint: &mut Checkpoint,
        statements: &Statements,
        size: u64,
        deadline: Instant,
        guards: Guards,
    ) -> Result<BatchResult, sqlx::Error> {
        let started = Instant::now();
        // No statement may outlive the run's deadline.
        let left = deadline.saturating_duration_since(started + DEADLINE_SLACK);
        let tuning = &self.config.tuning;
        let statement_ms = statement_budget_ms(tuning.statement_timeout_ms, left);
        let begin = begin_batch(connection.dialect(), tuning.lock_timeout_ms, statement_ms);
        connection.raw(&begin).await?;
        let body = self.batch_body(connection, checkpoint, statements, size, guards.epoch);
        let result = match guards.session_id {
            None => body.await,
            Some(session_id) => {
                let budget = Duration::from_millis(statement_ms) + WATCHDOG_SLACK;
                tokio::pin!(body);
                let mut wait = budget;
                let mut kills = 0;
                loop {
                    if let Ok(result) = tokio::time::timeout(wait, &mut body).await {
                        break result;
                    }
                    if kills == WATCHDOG_KILLS {
                        // The server does not stop it: leave this session to the re-attach.
                        break Err(sqlx::Error::Io(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "the batch's statement outlasted its budget and would not be killed",
                        )));
                    }
                    self.kill_query(session_id).await;
                    (kills, wait) = (kills + 1, WATCHDOG_SLACK * 4);
                }
            }
        };
        match result {
            Ok(Some(done)) => {
                if let Err(error) = connection.raw("COMMIT").await {
                    // A failed COMMIT (SQLite BUSY) can leave the transaction open.
                    let _ = connection.raw("ROLLBACK").await;
                    return Err(error);
                }
                *checkpoint = done.next;
                if done.pass_finished {
                    return Ok(BatchResult::PassFinished);
                }
                Ok(BatchResult::Committed(Committed {
                    scanned: done.scanned,
                    updated: done.updated,
                    took: started.elapsed(),
                }))
            }
            Ok(None) => {
                let _ = connection.raw("ROLLBACK").await;
                Ok(match self.checkpoints {
                    Checkpoints::Sql(_) => BatchResult::Interrupted,
                    Checkpoints::External(_) => BatchResult::Fenced,
                })
            }
            Err(error) => {
                // Bounded: after a statement the watchdog could not kill, the session may still
                // be busy with it (the re-attach replaces the session then).
                let _ = tokio::time::timeout(WATCHDOG_SLACK * 4, connection.raw("ROLLBACK")).await;
                Err(error)
            }
        }
    }

    /// Inside the transaction. `None` when the checkpoint changed under us (an operator), or
    /// the fence moved on (another runner's lease).
    async fn batch_body(
        &self,
        connection: &mut Connection,
        checkpoint: &Checkpoint,
        statements: &Statements,
        size: u64,
        epoch: Option<i64>,
    ) -> Result<Option<Uncommitted>, sqlx::Error> {
        let lower = checkpoint.cursor.as_ref();
        let bounds = statements.bounds(lower);
        let row = connection
            .fetch_row(
                &bounds.sql,
                &statements.binds(bounds, lower, None, size),
                &statements.shape(&[Kind::Int]),
            )
            .await?
            .unwrap_or_default();
        let width = statements.plan.columns.len();
        let upper = statements.plan.key_from(&row);
        let scanned = row.get(width).and_then(|c| c.int()).unwrap_or(0).max(0) as u64;
        let mut next = self.advanced(checkpoint, now_ms());
        let Some(upper) = upper.filter(|_| scanned > 0) else {
            next.status = Status::Swept;
            return Ok(self
                .write_in_transaction(connection, &next, epoch)
                .await?
                .then_some(Uncommitted {
                    next,
                    scanned: 0,
                    updated: 0,
                    pass_finished: true,
                }));
        };
        if let Some(problem) = backwards(lower, &upper) {
            // Permanent: the backfill is marked failed with the reason, never walked in circles.
            return Err(sqlx::Error::Decode(problem.into()));
        }
        let update = statements.update(lower);
        let updated = connection
            .execute(
                &update.sql,
                &statements.binds(update, lower, Some(&upper), size),
            )
            .await?;
        next.cursor = Some(upper);
        next.rows_updated += updated;
        next.batches += 1;
        Ok(self
            .write_in_transaction(connection, &next, epoch)
            .await?
            .then_some(Uncommitted {
                next,
                scanned,
                updated,
                pass_finished: false,
            }))
    }

    /// The checkpoint's next version, written at `now`; an external store's lease is renewed
    /// by every batch.
    fn advanced(&self, checkpoint: &Checkpoint, now: i64) -> Checkpoint {
        let mut next = checkpoint.clone();
        next.updated_at = now;
        next.version += 1;
        if matches!(self.checkpoints, Checkpoints::External(_)) {
            next.lease_expires_at = Some(now + self.lease_ttl());
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backfill::fixtures::{NamedStore, config, sql_runner, url};

    #[test]
    fn a_key_that_goes_backwards_is_a_problem() {
        assert_eq!(backwards(None, &Key::int(i64::MIN)), None);
        assert_eq!(backwards(Some(&Key::int(5)), &Key::int(6)), None);
        assert!(
            backwards(Some(&Key::int(i64::MAX)), &Key::int(i64::MIN))
                .is_some_and(|p| p.contains("BIGINT UNSIGNED"))
        );
    }

    #[test]
    fn every_batch_bumps_the_version_and_renews_only_an_external_lease() {
        let (url, mut config) = (url("sqlite::memory:"), config());
        config.tuning.lease_ttl_ms = 60_000;
        let mut runner = sql_runner(&url, &config);
        let mut checkpoint = Checkpoint::new("users_display_name", 1_000);
        checkpoint.version = 3;
        checkpoint.lease_expires_at = None;
        let next = runner.advanced(&checkpoint, 5_000);
        assert_eq!((next.version, next.updated_at), (4, 5_000));
        assert_eq!(next.lease_expires_at, None);
        let store = NamedStore;
        runner.checkpoints = Checkpoints::External(&store);
        let next = runner.advanced(&checkpoint, 5_000);
        assert_eq!(next.lease_expires_at, Some(65_000));
        assert_eq!(next.cursor, checkpoint.cursor);
    }
}
