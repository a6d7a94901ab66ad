//! What operators do to a backfill outside a run: read its checkpoint and status, pause, resume
//! or cancel it, and reset it. These need the checkpoint store but not the run lock (a running
//! backfill sees the change at its next batch, whose conditional write fails), except `reset`,
//! which deletes the checkpoint and so must not race a runner: it holds every checkpoint (the
//! shards' too) before it changes any. None of them creates the SQL checkpoint table.

use std::time::Duration;

use shiftguard_core::backfill::{Checkpoint, Command, Status};

use super::inspect::{Extent, Inspected};
use super::lock::Held;
use super::{BackfillError, Checkpoints, Runner, StatusReport, now_ms};
use crate::connection::Connection;

/// How often `command` re-reads and retries when a runner's batch wrote first.
const COMMAND_TRIES: usize = 20;
const COMMAND_RETRY: Duration = Duration::from_millis(50);

/// Share of the current pass covered, 0-100.
fn percent(checkpoint: Option<&Checkpoint>, extent: Extent) -> f64 {
    match checkpoint {
        Some(c) if matches!(c.status, Status::Swept | Status::Complete) => 100.0,
        Some(c) => extent.percent(c),
        None => 0.0,
    }
}

/// A backfill's report with its shards' figures added up: rows and batches summed; the status
/// failed, paused or cancelled if a shard is, running while a shard is not complete, else the
/// backfill's own (its whole-table verification); the share done the shards' mean until then.
fn aggregate(mut own: StatusReport, shards: Vec<StatusReport>) -> StatusReport {
    if shards.is_empty() {
        return own;
    }
    let statuses: Vec<Status> = shards
        .iter()
        .map(|s| s.checkpoint.as_ref().map_or(Status::Running, |c| c.status))
        .collect();
    let shard_status = [Status::Failed, Status::Paused, Status::Cancelled]
        .into_iter()
        .find(|s| statuses.contains(s))
        .or_else(|| {
            statuses
                .iter()
                .any(|s| *s != Status::Complete)
                .then_some(Status::Running)
        });
    if let Some(checkpoint) = own.checkpoint.as_mut() {
        for shard in shards.iter().filter_map(|s| s.checkpoint.as_ref()) {
            checkpoint.rows_updated += shard.rows_updated;
            checkpoint.batches += shard.batches;
        }
        if let Some(status) = shard_status {
            checkpoint.status = status;
        }
    }
    if shard_status.is_some() {
        own.percent = shards.iter().map(|s| s.percent).sum::<f64>() / shards.len() as f64;
    }
    own.percent_estimated |= shards.iter().any(|s| s.percent_estimated);
    own.shards = shards;
    own
}

/// The checkpoint after `command`, or why it does not apply. Resuming clears the kept error.
fn commanded(checkpoint: &Checkpoint, command: Command, now_ms: i64) -> Result<Checkpoint, String> {
    let mut next = checkpoint.clone();
    next.status = command.apply(checkpoint.status)?;
    if command == Command::Resume {
        next.last_error = None;
    }
    next.updated_at = now_ms;
    next.version += 1;
    Ok(next)
}

impl Runner<'_> {
    /// The stored checkpoint, if the backfill has ever run (nothing is created).
    pub async fn checkpoint(&self) -> Result<Option<Checkpoint>, BackfillError> {
        let mut connection = self.connect().await?;
        let checkpoint = self.stored_checkpoint(&mut connection).await?;
        connection.close().await;
        Ok(checkpoint)
    }

    /// The stored checkpoint and what is pending now.
    /// The stored checkpoint and what is pending now; for a backfill with shards, the figures
    /// of every shard added up, and each shard's report.
    pub async fn status(&self) -> Result<StatusReport, BackfillError> {
        let own = self.own_status().await?;
        Ok(aggregate(own, self.shard_status().await?))
    }

    /// This runner's own checkpoint and what is pending in its range now.
    pub(super) async fn own_status(&self) -> Result<StatusReport, BackfillError> {
        let mut connection = self.connect().await?;
        let Inspected { statements, extent } = self.inspect(&mut connection).await?;
        let checkpoint = self.stored_checkpoint(&mut connection).await?;
        let first_pending_key = self.pending_from(&mut connection, &statements).await?;
        connection.close().await;
        Ok(StatusReport {
            name: self.config.name.clone(),
            percent: percent(checkpoint.as_ref(), extent),
            percent_estimated: extent.estimated(),
            checkpoint,
            first_pending_key,
            shards: Vec::new(),
        })
    }

    /// Pauses, resumes or cancels; returns the status it set. A backfill with shards: each
    /// shard where it applies, and the backfill's own checkpoint where it applies (a failed
    /// shard is resumed while the whole-table checkpoint is swept); refused only where it
    /// applies nowhere.
    pub async fn command(&self, command: Command) -> Result<Status, BackfillError> {
        let shards_changed = self.command_shards(command).await?;
        match self.own_command(command).await? {
            Ok(own) => Ok(own.status),
            Err(_) if shards_changed > 0 => Ok(command.sets()),
            Err(does_not_apply) => Err(self.target_error(does_not_apply)),
        }
    }

    /// The command on this runner's own checkpoint: the checkpoint after it, or why it does
    /// not apply (`Ok(Err)`); an error when it could not be written.
    pub(super) async fn own_command(
        &self,
        command: Command,
    ) -> Result<Result<Checkpoint, String>, BackfillError> {
        let mut connection = self.connect().await?;
        // Retry on a concurrent write (a runner committing a batch).
        for _ in 0..COMMAND_TRIES {
            let Some(stored) = self.stored_checkpoint(&mut connection).await? else {
                connection.close().await;
                return Ok(Err("has never run: nothing to change".to_owned()));
            };
            let checkpoint = match commanded(&stored, command, now_ms()) {
                Ok(checkpoint) => checkpoint,
                Err(does_not_apply) => {
                    connection.close().await;
                    return Ok(Err(does_not_apply));
                }
            };
            if self.save(&mut connection, &checkpoint).await? {
                connection.close().await;
                return Ok(Ok(checkpoint));
            }
            tokio::time::sleep(COMMAND_RETRY).await;
        }
        Err(self.target_error("the checkpoint kept changing; try again"))
    }

    /// Deletes the checkpoint (a backfill with shards: every shard's too, and the next run plans
    /// them anew) so the next run starts over. Every checkpoint is held first (its lock or
    /// lease: the backfill's own first, since planning shards needs it, so none is planned
    /// meanwhile), and while a runner holds any of them nothing is changed; then every fence is
    /// raised, and only then is any checkpoint deleted. Returns whether there was a checkpoint.
    pub async fn reset(&self) -> Result<bool, BackfillError> {
        let own = self.hold_for_reset().await?;
        let planned = match self.planned_shards().await {
            Ok(planned) => planned,
            Err(error) => {
                if let Some((connection, held)) = own {
                    self.let_go(connection, held).await;
                }
                return Err(error);
            }
        };
        let shards: Vec<Runner> = planned
            .iter()
            .map(|(config, range)| self.shard_runner(config, range.clone()))
            .collect();
        let mut held = Vec::new();
        let mut refused = None;
        for runner in &shards {
            match runner.hold_for_reset().await {
                Ok(Some(hold)) => held.push((runner, hold)),
                Ok(None) => {}
                Err(error) => {
                    refused = Some(error);
                    break;
                }
            }
        }
        if let Some((connection, hold)) = own {
            held.push((self, (connection, hold)));
        }
        // The fences, where a stale batch in flight may make the step wait or fail: nothing is
        // deleted unless every one is raised.
        if refused.is_none() {
            for (runner, (connection, _)) in &mut held {
                if let Err(error) = runner.retire_fence_of_external_store(connection).await {
                    refused = Some(error);
                    break;
                }
            }
        }
        if let Some(error) = refused {
            for (runner, (connection, hold)) in held {
                runner.let_go(connection, hold).await;
            }
            return Err(error);
        }
        let (mut existed, mut failed) = (false, None);
        for (runner, (mut connection, hold)) in held {
            match runner.delete_checkpoint(&mut connection).await {
                Ok(deleted) => existed |= deleted,
                Err(error) => {
                    failed.get_or_insert(error);
                }
            }
            runner.let_go(connection, hold).await;
        }
        failed.map_or(Ok(existed), Err)
    }

    /// This runner's checkpoint held for a reset: `None` when there is none; an error naming
    /// the holder when a runner has it.
    async fn hold_for_reset(&self) -> Result<Option<(Connection, Held)>, BackfillError> {
        let mut connection = self.connect().await?;
        if self.stored_checkpoint(&mut connection).await?.is_none() {
            connection.close().await;
            return Ok(None);
        }
        let Some(held) = self.try_lock(&mut connection).await? else {
            let holder = self
                .current_holder(&mut connection)
                .await
                .unwrap_or_else(|| "another runner".to_owned());
            connection.close().await;
            return Err(self.target_error(format!(
                "is being run by {holder}: pause or cancel it first (nothing was reset)"
            )));
        };
        Ok(Some((connection, held)))
    }

    /// Gives back what [`Runner::hold_for_reset`] took.
    async fn let_go(&self, mut connection: Connection, held: Held) {
        self.unlock(&mut connection, held).await;
        connection.close().await;
    }

    /// With an external store, raises the fence (see [`Runner::retire_fence`]).
    async fn retire_fence_of_external_store(
        &self,
        connection: &mut Connection,
    ) -> Result<(), BackfillError> {
        match &self.checkpoints {
            Checkpoints::External(_) => self.retire_fence(connection).await,
            Checkpoints::Sql(_) => Ok(()),
        }
    }

    /// Deletes the checkpoint (an external store's becomes a tombstone); whether there was one.
    async fn delete_checkpoint(&self, connection: &mut Connection) -> Result<bool, BackfillError> {
        match &self.checkpoints {
            Checkpoints::Sql(table) => table
                .delete(connection, &self.config.name)
                .await
                .map_err(|e| self.store_error(self.sql_error(&e))),
            Checkpoints::External(store) => store
                .delete(&self.config.name)
                .await
                .map_err(|e| self.store_error(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(status: Status, cursor: Option<i64>) -> Checkpoint {
        let mut checkpoint = Checkpoint::new("b", 1_000);
        checkpoint.status = status;
        checkpoint.cursor = cursor.map(shiftguard_core::backfill::Key::int);
        checkpoint
    }

    #[test]
    fn percent_follows_the_cursor_through_the_key_range() {
        let range = Extent::Keys { min: 1, max: 100 };
        assert_eq!(percent(None, range), 0.0);
        assert_eq!(percent(Some(&at(Status::Running, None)), range), 0.0);
        assert_eq!(percent(Some(&at(Status::Running, Some(100))), range), 100.0);
        let half = percent(Some(&at(Status::Paused, Some(50))), range);
        assert!((49.0..=51.0).contains(&half), "{half}");
        // A finished pass is 100% whatever the cursor says.
        assert_eq!(percent(Some(&at(Status::Swept, Some(3))), range), 100.0);
        assert_eq!(percent(Some(&at(Status::Complete, None)), range), 100.0);
        // A cursor beyond an emptied table's range stays within 0-100.
        let empty = Extent::Keys { min: 0, max: 0 };
        assert_eq!(percent(Some(&at(Status::Running, Some(7))), empty), 100.0);
    }

    #[test]
    fn commands_change_the_status_bump_the_version_and_resume_clears_the_error() {
        let mut failed = at(Status::Failed, Some(10));
        failed.last_error = Some("syntax error".to_owned());
        failed.version = 2;
        let resumed = commanded(&failed, Command::Resume, 9_000).expect("resumable");
        assert_eq!(resumed.status, Status::Running);
        assert_eq!(resumed.last_error, None);
        assert_eq!((resumed.version, resumed.updated_at), (3, 9_000));
        let cancelled = commanded(&failed, Command::Cancel, 9_000).expect("cancellable");
        assert_eq!(cancelled.last_error.as_deref(), Some("syntax error"));
        assert_eq!(
            commanded(&at(Status::Complete, None), Command::Pause, 9_000),
            Err("cannot pause a backfill that is complete".to_owned())
        );
    }
}
