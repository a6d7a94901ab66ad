//! Reading and writing the checkpoint, in whichever store holds it: the SQL table of the
//! backfilled database or an external store (DynamoDB). Every write is conditional on the stored
//! version, so a write that returns `false` means someone else (an operator, another runner)
//! changed the checkpoint first. Errors are worded once here, so every caller names the store the
//! same way. The run's error records (a permanent failure, a transient error that ended the run)
//! are checkpoint writes too and live here.

use std::time::Instant;

use shiftguard_core::backfill::{Checkpoint, CheckpointStore, KeyRange, Status, backoff};

use super::{BackfillError, Checkpoints, DEADLINE_SLACK, Runner, jitter, now_ms};
use crate::connection::Connection;

/// The checkpoint marked failed with `error` kept.
fn failed(checkpoint: &Checkpoint, error: &str, now_ms: i64) -> Checkpoint {
    let mut failed = noted(checkpoint, error, now_ms);
    failed.status = Status::Failed;
    failed
}

/// The checkpoint with `error` kept and its status unchanged.
fn noted(checkpoint: &Checkpoint, error: &str, now_ms: i64) -> Checkpoint {
    let mut noted = checkpoint.clone();
    noted.last_error = Some(error.to_owned());
    noted.updated_at = now_ms;
    noted.version += 1;
    noted
}

impl Runner<'_> {
    /// The checkpoint this runner starts from where there is none: a shard's carries its
    /// range, wherever it is created, so that no shard is ever stored without one.
    pub(super) fn fresh_checkpoint(&self, now_ms: i64) -> Checkpoint {
        let mut fresh = Checkpoint::new(&self.config.name, now_ms);
        if self.range != KeyRange::default() {
            fresh.cursor = self.range.after.clone();
            fresh.range = Some(self.range.clone());
        }
        fresh
    }

    /// Creates the checkpoint store's table (SQL) and the checkpoint if they do not exist.
    pub(super) async fn prepare_store(
        &self,
        connection: &mut Connection,
    ) -> Result<(), BackfillError> {
        let fresh = self.fresh_checkpoint(now_ms());
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

    pub(super) async fn load_checkpoint(
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

    /// The stored checkpoint, without creating the SQL checkpoint table when it is missing
    /// (status and operator commands write nothing they need not; a table an older shiftguard
    /// created gains its new column once).
    pub(super) async fn stored_checkpoint(
        &self,
        connection: &mut Connection,
    ) -> Result<Option<Checkpoint>, BackfillError> {
        if let Checkpoints::Sql(table) = &self.checkpoints {
            let probe = format!("SELECT 1 FROM {} WHERE 1 = 0", table.table());
            if connection.execute(&probe, &[]).await.is_err() {
                return Ok(None);
            }
            table
                .upgrade(connection)
                .await
                .map_err(|e| self.store_error(self.sql_error(&e)))?;
        }
        self.load_checkpoint(connection).await
    }

    /// Writes `checkpoint` if the stored version is one less; returns whether it did.
    pub(super) async fn save(
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

    /// The SQL store writes inside the batch's transaction, on the condition of its version;
    /// an external store after the commit (see [`Runner::save_external`]), while the batch's
    /// progress goes to the fence here, on the condition of the lease's `epoch`. `false` when
    /// the condition fails: the batch must roll back.
    pub(super) async fn write_in_transaction(
        &self,
        connection: &mut Connection,
        next: &Checkpoint,
        epoch: Option<i64>,
    ) -> Result<bool, sqlx::Error> {
        match (&self.checkpoints, epoch) {
            (Checkpoints::Sql(table), _) => table.write(connection, next).await,
            (Checkpoints::External(_), Some(epoch)) => {
                self.advance_fence(connection, epoch, next).await
            }
            // No epoch (the lease was lost on a re-attach): the batch cannot be shown current.
            (Checkpoints::External(_), None) => Ok(false),
        }
    }

    /// Writes to an external store after a commit, retrying transient failures (throttling)
    /// with backoff while the deadline allows.
    pub(super) async fn save_external(
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

    /// Marks the backfill failed with the error kept (best effort) and returns the error.
    pub(super) async fn fail(
        &self,
        connection: &mut Connection,
        checkpoint: &mut Checkpoint,
        error: String,
    ) -> BackfillError {
        let failed = failed(checkpoint, &error, now_ms());
        if let Ok(true) = self.save(connection, &failed).await {
            *checkpoint = failed;
        }
        BackfillError::Failed {
            name: self.config.name.clone(),
            error,
        }
    }

    /// Keeps a transient error that ended a run, without changing the status.
    pub(super) async fn note_error(
        &self,
        connection: &mut Connection,
        checkpoint: &mut Checkpoint,
        error: &str,
    ) {
        let noted = noted(checkpoint, error, now_ms());
        if let Ok(true) = self.save(connection, &noted).await {
            *checkpoint = noted;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_keeps_the_error_and_bumps_the_version() {
        let mut checkpoint = Checkpoint::new("b", 1_000);
        checkpoint.version = 4;
        checkpoint.cursor = Some(shiftguard_core::backfill::Key::int(99));
        let next = failed(&checkpoint, "syntax error", 2_000);
        assert_eq!(next.status, Status::Failed);
        assert_eq!(next.last_error.as_deref(), Some("syntax error"));
        assert_eq!(
            (next.updated_at, next.version, next.cursor),
            (2_000, 5, Some(shiftguard_core::backfill::Key::int(99)))
        );
        let next = noted(&checkpoint, "lock timeout", 3_000);
        assert_eq!(next.status, Status::Running);
        assert_eq!(next.last_error.as_deref(), Some("lock timeout"));
        assert_eq!((next.updated_at, next.version), (3_000, 5));
    }
}
