//! The batch loop of one run: attach to the backfill, then batch after batch until the pass is
//! finished, the deadline nears or an operator intervenes, and release it. Between batches the
//! run waits for replicas and the rate cap; a failed batch is retried with backoff when the error
//! is transient (a dropped connection re-attaches first), marks the backfill failed when it is
//! permanent, and ends the run when the retries or the time run out. The run's report counts what
//! happened: rows, batches' sizes and durations, and errors and retries apart.

use std::ops::ControlFlow;
use std::time::Instant;

use shiftguard_core::backfill::{BatchReport, RunStart};

use super::batch::BatchResult;
use super::lock::{Attached, Held};
use super::pass::Pass;
use super::retry::{Attempts, Retry, decide_retry};
use super::{
    BackfillError, Checkpoints, DEADLINE_SLACK, Event, Outcome, RunSummary, Runner, jitter,
};
use crate::error::{ErrorClass, classify};

impl Runner<'_> {
    /// Runs until the backfill is complete, the deadline nears, or an operator intervenes.
    pub async fn run(
        &self,
        deadline: Instant,
        observe: &mut dyn FnMut(&Event),
    ) -> Result<RunSummary, BackfillError> {
        let started = Instant::now();
        let mut attached = match self.attach().await? {
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
        let result = self.work(&mut attached, deadline, observe).await;
        let checkpoint = self.release(attached).await;
        let (outcome, report) = result?;
        Ok(RunSummary {
            outcome,
            checkpoint: Some(checkpoint),
            report,
            elapsed: started.elapsed(),
        })
    }

    async fn work(
        &self,
        attached: &mut Attached,
        deadline: Instant,
        observe: &mut dyn FnMut(&Event),
    ) -> Result<(Outcome, BatchReport), BackfillError> {
        // The pace counts from the first batch, not from the run's start: a slow start
        // (connecting, inspecting) must not buy a burst of rows under the rate cap.
        let mut pass = Pass::new(self.config, Instant::now(), deadline);
        let ended = async {
            if let Some(outcome) = self.open_pass(attached, observe).await? {
                return Ok(outcome);
            }
            loop {
                if let ControlFlow::Break(outcome) = self.step(attached, &mut pass, observe).await?
                {
                    return Ok(outcome);
                }
            }
        }
        .await;
        let outcome = match ended {
            // The lease went while the run waited: another runner's turn, as when a batch is
            // fenced, or an operator's command.
            Err(BackfillError::LeaseLost { holder, .. }) => {
                if let Ok(Some(stored)) = self.load_checkpoint(&mut attached.connection).await {
                    attached.checkpoint = stored;
                }
                match holder {
                    Some(other) if other != self.owner => Outcome::Busy {
                        holder: Some(other),
                    },
                    _ => Outcome::Interrupted,
                }
            }
            other => other?,
        };
        Ok((outcome, pass.totals))
    }

    /// By the stored status: stay, verify (and end if complete), or go on; then announce the
    /// pass. `Some` when the run ends here.
    async fn open_pass(
        &self,
        attached: &mut Attached,
        observe: &mut dyn FnMut(&Event),
    ) -> Result<Option<Outcome>, BackfillError> {
        let Attached {
            connection,
            checkpoint,
            statements,
            extent,
            ..
        } = attached;
        match checkpoint.status.on_run() {
            RunStart::Stay => return Ok(Some(Outcome::Stayed(checkpoint.status))),
            RunStart::Verify => {
                if self
                    .verify(connection, checkpoint, statements, observe)
                    .await?
                {
                    return Ok(Some(Outcome::Complete));
                }
            }
            RunStart::Resume => {}
        }
        observe(&Event::Started {
            checkpoint: checkpoint.clone(),
            remaining_estimate: extent.remaining(checkpoint),
        });
        Ok(None)
    }

    /// One round of the loop: the deadline, replicas and pacing, one batch (with its retries),
    /// and what it means for the run.
    async fn step(
        &self,
        attached: &mut Attached,
        pass: &mut Pass,
        observe: &mut dyn FnMut(&Event),
    ) -> Result<ControlFlow<Outcome>, BackfillError> {
        let deadline = pass.deadline;
        // Stop while a batch of the recent duration still fits, with room to commit.
        if Instant::now() + pass.last_batch * 2 + DEADLINE_SLACK > deadline {
            return Ok(ControlFlow::Break(Outcome::Deadline));
        }
        let waited = self
            .wait_for_health(
                &mut attached.connection,
                &mut attached.checkpoint,
                deadline,
                observe,
            )
            .await?;
        let Some(lag_ms) = waited else {
            return Ok(ControlFlow::Break(Outcome::Deadline));
        };
        if !self
            .pace(attached, pass.scanned, pass.started, deadline)
            .await?
        {
            return Ok(ControlFlow::Break(Outcome::Deadline));
        }
        let (batch, attempts) = match self.attempt_batch(attached, pass, observe).await? {
            ControlFlow::Continue(tried) => tried,
            ControlFlow::Break(outcome) => return Ok(ControlFlow::Break(outcome)),
        };
        let batch = self.confirm(attached, batch, deadline).await?;
        Ok(self
            .settle(attached, pass, batch, attempts, lag_ms, observe)
            .await)
    }

    /// One batch, retried on transient errors. `Break` when the run ends without it.
    async fn attempt_batch(
        &self,
        attached: &mut Attached,
        pass: &mut Pass,
        observe: &mut dyn FnMut(&Event),
    ) -> Result<ControlFlow<Outcome, (BatchResult, Attempts)>, BackfillError> {
        let mut attempts = Attempts::default();
        loop {
            let guards = attached.guards();
            let tried = self
                .batch(
                    &mut attached.connection,
                    &mut attached.checkpoint,
                    &attached.statements,
                    pass.sizer.size(),
                    pass.deadline,
                    guards,
                )
                .await;
            let error = match tried {
                Ok(batch) => return Ok(ControlFlow::Continue((batch, attempts))),
                Err(error) => error,
            };
            let next = self
                .recover(attached, pass, &mut attempts, &error, observe)
                .await?;
            if let ControlFlow::Break(outcome) = next {
                return Ok(ControlFlow::Break(outcome));
            }
        }
    }

    /// After a failed attempt: mark the backfill failed, give up, stop for the deadline, or wait
    /// and let the caller retry (re-attaching first after a dropped connection).
    async fn recover(
        &self,
        attached: &mut Attached,
        pass: &mut Pass,
        attempts: &mut Attempts,
        error: &sqlx::Error,
        observe: &mut dyn FnMut(&Event),
    ) -> Result<ControlFlow<Outcome>, BackfillError> {
        let class = classify(error);
        let message = self.sql_error(error);
        let time_left = pass.deadline.saturating_duration_since(Instant::now());
        let max_retries = self.config.tuning.max_retries;
        let retry = decide_retry(class, attempts.errors + 1, max_retries, time_left, jitter());
        pass.count_failure(attempts, retry);
        let (connection, checkpoint) = (&mut attached.connection, &mut attached.checkpoint);
        let delay = match retry {
            Retry::Fail => return Err(self.fail(connection, checkpoint, message).await),
            Retry::GiveUp => {
                self.note_error(connection, checkpoint, &message).await;
                return Err(BackfillError::RetriesExhausted {
                    name: self.config.name.clone(),
                    attempts: attempts.errors,
                    error: message,
                });
            }
            Retry::Deadline => {
                self.note_error(connection, checkpoint, &message).await;
                return Ok(ControlFlow::Break(Outcome::Deadline));
            }
            Retry::After(delay) => delay,
        };
        if class == ErrorClass::Timeout {
            pass.sizer.on_timeout();
        }
        observe(&Event::Retrying {
            attempt: attempts.errors,
            delay,
            error: message,
        });
        self.renew_lease(connection, checkpoint).await?;
        tokio::time::sleep(delay).await;
        if class == ErrorClass::Connection {
            return Ok(self.reattach(attached).await);
        }
        Ok(ControlFlow::Continue(()))
    }

    /// After a dropped connection: a new session, lock and checkpoint (the key plan stays).
    async fn reattach(&self, attached: &mut Attached) -> ControlFlow<Outcome> {
        // Let go of a file lock before taking it again (a session lock went with its session;
        // a lease keeps its epoch, so batches stay fenced while re-attaching fails).
        if matches!(attached.held, Held::File { .. }) {
            attached.held = Held::Memory;
        }
        match self.attach().await {
            Ok(Ok(fresh)) => {
                attached.connection = fresh.connection;
                attached.checkpoint = fresh.checkpoint;
                attached.held = fresh.held;
                attached.session_id = fresh.session_id;
                ControlFlow::Continue(())
            }
            // Our own old session may still hold the lock until the server notices it is gone;
            // a connect may fail during a failover. Both use up the retry budget instead of
            // ending the run.
            Ok(Err(Outcome::Busy { holder })) if holder.as_deref() == Some(self.owner.as_str()) => {
                ControlFlow::Continue(())
            }
            Ok(Err(outcome)) => ControlFlow::Break(outcome),
            Err(_) => ControlFlow::Continue(()),
        }
    }

    /// An external store is written now that the batch has committed; a lost write (someone
    /// changed the checkpoint) ends the run: an interruption, or another runner's turn.
    async fn confirm(
        &self,
        attached: &Attached,
        batch: BatchResult,
        deadline: Instant,
    ) -> Result<BatchResult, BackfillError> {
        match (&batch, &self.checkpoints) {
            (BatchResult::Interrupted | BatchResult::Fenced, _) | (_, Checkpoints::Sql(_)) => {
                Ok(batch)
            }
            (_, Checkpoints::External(store)) => {
                let written = self
                    .save_external(*store, &attached.checkpoint, deadline)
                    .await?;
                if written {
                    return Ok(batch);
                }
                // The batch is committed and in the fence; the checkpoint moved on without it:
                // an operator's command, or another runner's lease (it resumes from the fence).
                let taken = store.load(&self.config.name).await.is_ok_and(|stored| {
                    stored.and_then(|s| s.lease_owner).as_deref() != Some(self.owner.as_str())
                });
                Ok(if taken {
                    BatchResult::Fenced
                } else {
                    BatchResult::Interrupted
                })
            }
        }
    }

    /// What a batch means for the run: it stops (interrupted, swept) or goes on, reported.
    async fn settle(
        &self,
        attached: &mut Attached,
        pass: &mut Pass,
        batch: BatchResult,
        attempts: Attempts,
        lag_ms: f64,
        observe: &mut dyn FnMut(&Event),
    ) -> ControlFlow<Outcome> {
        match batch {
            BatchResult::Interrupted => {
                if let Ok(Some(stored)) = self.load_checkpoint(&mut attached.connection).await {
                    attached.checkpoint = stored;
                }
                ControlFlow::Break(Outcome::Interrupted)
            }
            BatchResult::Fenced => {
                let holder = self.current_holder(&mut attached.connection).await;
                ControlFlow::Break(Outcome::Busy { holder })
            }
            BatchResult::PassFinished => {
                observe(&Event::Swept);
                // The next run verifies: a full scan for pending rows right after the pass
                // would cost as much as a tenth of the pass and find what old writers
                // added in the last moments; later it also finds what they add meanwhile.
                ControlFlow::Break(Outcome::Swept)
            }
            BatchResult::Committed(committed) => {
                let checkpoint = &attached.checkpoint;
                let report = pass.record(
                    committed,
                    attempts,
                    lag_ms,
                    attached.extent.remaining(checkpoint),
                    checkpoint.cursor.clone(),
                    pass.started.elapsed(),
                );
                observe(&Event::Batch {
                    report,
                    checkpoint: attached.checkpoint.clone(),
                });
                ControlFlow::Continue(())
            }
        }
    }
}
