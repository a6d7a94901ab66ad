//! Shards: a backfill split into `shards` contiguous key ranges, each an ordinary backfill of its
//! own (checkpoint `NAME.shardK`, lock or lease, verification within its range), so several
//! runners — processes, `--parallel` tasks, Lambda invocations — work at once and any of them
//! can die at any instant. The ranges are planned once, by the first runner, under the
//! backfill's own lock, from the key's distribution (the keys at even row offsets on its index,
//! so each shard holds about as many rows however the keys spread) and kept in the shards'
//! checkpoints. The backfill's own checkpoint starts `swept`: once every shard is complete, it
//! verifies the whole table and sweeps whatever old writers left behind the shards' cursors
//! (a shard once complete is not verified again: that whole-table verification covers it).
//! Correctness never rests on the plan: a gap or an overlap between ranges (a plan changed
//! mid-way) only costs work, because that final verification reads the whole table.

use std::time::{Duration, Instant};

use shiftguard_core::backfill::{
    BackfillConfig, BatchReport, Checkpoint, Command, Key, KeyRange, Status, shard_name,
};

use super::inspect::{Inspected, fetch_key, rows_query};
use super::statements::Statements;
use super::{
    BackfillError, Checkpoints, DEADLINE_SLACK, Event, Outcome, RunSummary, Runner, now_ms,
};
use crate::connection::{Bind, Connection, Kind};

/// How often a runner looks for another's plan while that one plans.
const PLAN_POLL: Duration = Duration::from_millis(100);

/// PostgreSQL: the bounds of the key column's histogram in the table's statistics (ANALYZE's
/// equi-depth histogram over a random sample of rows), in order, with the column's type.
const HISTOGRAM: &str = "SELECT b, format_type(a.atttypid, a.atttypmod) \
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = $2 \
     JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname \
       AND s.attname = a.attname AND s.inherited = (c.relkind = 'p'), \
     unnest(CAST(CAST(s.histogram_bounds AS TEXT) AS TEXT[])) WITH ORDINALITY AS h(b, i) \
     WHERE c.oid = CAST($1 AS regclass) ORDER BY h.i";

/// `n - 1` of a histogram's `bounds` at even places (its buckets hold as many rows each), so
/// the shards between them hold about as many rows.
fn quantiles<T: Clone>(bounds: &[T], n: u32) -> Vec<T> {
    let buckets = bounds.len().saturating_sub(1) as u64;
    if buckets == 0 {
        return Vec::new();
    }
    (1..u64::from(n))
        .map(|i| bounds[(buckets * i / u64::from(n)) as usize].clone())
        .collect()
}

impl Checkpoints<'_> {
    /// The same store, for another runner.
    fn share(&self) -> Checkpoints<'_> {
        match self {
            Checkpoints::Sql(table) => Checkpoints::Sql(table.clone()),
            Checkpoints::External(store) => Checkpoints::External(*store),
        }
    }
}

/// Shard `k`'s definition: the backfill's, under the shard's name, with its share of the rate
/// cap (the cap is for the whole backfill, however many shards run at once: at most
/// `max_concurrency` of them).
fn shard_config(config: &BackfillConfig, k: u32) -> BackfillConfig {
    let mut shard = config.clone();
    shard.name = shard_name(&config.name, k);
    let at_once = u64::from(config.tuning.concurrency());
    shard.tuning.max_rows_per_second = config
        .tuning
        .max_rows_per_second
        .map(|cap| (cap / at_once).max(1));
    shard.tuning.shards = 1;
    shard.tuning.max_concurrency = None;
    shard
}

/// Adds a shard run's report to the totals of the whole run.
fn add(totals: &mut BatchReport, report: &BatchReport) {
    totals.rows_updated += report.rows_updated;
    totals.rows_scanned += report.rows_scanned;
    totals.retries += report.retries;
    totals.errors += report.errors;
    totals.batch_ms = totals.batch_ms.max(report.batch_ms);
    totals.batch_size = report.batch_size;
    totals.replica_lag_ms = report.replica_lag_ms;
}

impl<'a> Runner<'a> {
    /// The definitions of every shard of this backfill (owned by the caller, so the shards'
    /// runners can borrow them).
    pub fn shard_configs(&self) -> Vec<BackfillConfig> {
        (1..=self.config.tuning.shards)
            .map(|k| shard_config(self.config, k))
            .collect()
    }

    /// A runner of one shard: this runner's database, store and owner over `range`.
    pub(super) fn shard_runner<'s>(
        &'s self,
        config: &'s BackfillConfig,
        range: KeyRange,
    ) -> Runner<'s> {
        Runner {
            url: self.url,
            config,
            checkpoints: self.checkpoints.share(),
            owner: self.owner.clone(),
            lag: self.lag.clone(),
            connect_timeout: self.connect_timeout,
            range,
        }
    }

    /// The shards' stored checkpoints, in order; `None` for a shard never planned.
    async fn stored_shards(
        &self,
        connection: &mut Connection,
        configs: &[BackfillConfig],
    ) -> Result<Vec<Option<Checkpoint>>, BackfillError> {
        let mut stored = Vec::with_capacity(configs.len());
        for config in configs {
            let runner = self.shard_runner(config, KeyRange::default());
            stored.push(runner.stored_checkpoint(connection).await?);
        }
        Ok(stored)
    }

    /// The shards' ranges as planned; planned now when a shard has none (while another runner
    /// plans, this one waits for its plan, until `deadline`).
    async fn plan(
        &self,
        configs: &[BackfillConfig],
        deadline: Instant,
        observe: &mut dyn FnMut(&Event),
    ) -> Result<Result<Vec<KeyRange>, Outcome>, BackfillError> {
        let mut connection = self.connect().await?;
        let planned = |stored: &[Option<Checkpoint>]| -> Option<Vec<KeyRange>> {
            stored
                .iter()
                .map(|c| c.as_ref().and_then(|c| c.range.clone()))
                .collect()
        };
        loop {
            if let Some(ranges) = planned(&self.stored_shards(&mut connection, configs).await?) {
                connection.close().await;
                return Ok(Ok(ranges));
            }
            if let Some(held) = self.try_lock(&mut connection).await? {
                let planned_now = self
                    .plan_locked(&mut connection, configs, planned, observe)
                    .await;
                self.unlock(&mut connection, held).await;
                connection.close().await;
                return planned_now.map(Ok);
            }
            if Instant::now() + PLAN_POLL + DEADLINE_SLACK > deadline {
                let holder = self.current_holder(&mut connection).await;
                connection.close().await;
                return Ok(Err(Outcome::Busy { holder }));
            }
            tokio::time::sleep(PLAN_POLL).await;
        }
    }

    async fn plan_locked(
        &self,
        connection: &mut Connection,
        configs: &[BackfillConfig],
        planned: impl Fn(&[Option<Checkpoint>]) -> Option<Vec<KeyRange>>,
        observe: &mut dyn FnMut(&Event),
    ) -> Result<Vec<KeyRange>, BackfillError> {
        // Another runner may have planned while this one waited for the lock.
        if let Some(ranges) = planned(&self.stored_shards(connection, configs).await?) {
            return Ok(ranges);
        }
        let Inspected { statements, .. } = self.inspect(connection).await?;
        let n = configs.len() as u32;
        let (boundaries, from_histogram) =
            self.sampled_boundaries(connection, &statements, n).await?;
        observe(&Event::Planned {
            shards: n,
            from_histogram,
        });
        let ranges = KeyRange::split(&boundaries);
        // Fewer distinct boundaries than shards (a small table): the last shards are empty.
        let ranges: Vec<KeyRange> = (0..configs.len())
            .map(|i| {
                ranges.get(i).cloned().unwrap_or_else(|| KeyRange {
                    after: boundaries.last().cloned(),
                    until: boundaries.last().cloned(),
                })
            })
            .collect();
        for (config, range) in configs.iter().zip(&ranges) {
            self.shard_runner(config, range.clone())
                .prepare_store(connection)
                .await?;
        }
        // The backfill's own checkpoint: verifies the whole table once the shards are done.
        self.prepare_store(connection).await?;
        self.verify_next(connection).await?;
        Ok(ranges)
    }

    /// The backfill's own checkpoint, when it has not begun a pass of its own (new, or resumed
    /// by an operator), is set to verify: the shards made the pass.
    async fn verify_next(&self, connection: &mut Connection) -> Result<(), BackfillError> {
        if let Some(mut own) = self.load_checkpoint(connection).await?
            && own.status == Status::Running
            && own.batches == 0
            && own.cursor.is_none()
        {
            own.status = Status::Swept;
            own.version += 1;
            self.save(connection, &own).await?;
        }
        Ok(())
    }

    /// PostgreSQL, a key of one column with a histogram in the table's statistics: `n - 1`
    /// boundaries at its quantiles, each the first key at or after the bound (the table as it
    /// is, typed as the runner reads keys). `None` otherwise.
    async fn histogram_boundaries(
        &self,
        connection: &mut Connection,
        statements: &Statements,
        n: u32,
    ) -> Result<Option<Vec<Key>>, BackfillError> {
        let [column] = statements.plan.columns.as_slice() else {
            return Ok(None);
        };
        if connection.dialect() != crate::url::Dialect::Postgres {
            return Ok(None);
        }
        let failed = |e: sqlx::Error| self.target_error(self.sql_error(&e));
        let binds = [
            Bind::Text(Some(self.config.table.clone())),
            Bind::Text(Some(column.name.clone())),
        ];
        let rows = connection
            .fetch_rows(HISTOGRAM, &binds, &[Kind::Text, Kind::Text])
            .await
            .map_err(failed)?;
        let bounds: Vec<(String, String)> = rows
            .iter()
            .filter_map(|r| Some((r[0].text()?.to_owned(), r[1].text()?.to_owned())))
            .collect();
        // Fewer than two bounds a shard (a histogram of very few distinct values) cannot be
        // split evenly: exact offsets instead.
        if bounds.len() <= n as usize * 2 {
            return Ok(None);
        }
        let column_type = &bounds[0].1;
        let sql = statements.at_or_after_sql(&self.config.table, column_type);
        let mut boundaries: Vec<Key> = Vec::new();
        for (bound, _) in quantiles(&bounds, n) {
            let row = connection
                .fetch_row(&sql, &[Bind::Text(Some(bound))], &statements.shape(&[]))
                .await
                .map_err(failed)?;
            match row.and_then(|row| statements.plan.key_from(&row)) {
                Some(key) if boundaries.last() != Some(&key) => boundaries.push(key),
                _ => {}
            }
        }
        Ok(Some(boundaries))
    }

    /// `n - 1` keys at even row offsets on the key's index, so each shard holds about as many
    /// rows whatever the keys' spread (and whether the boundaries came from the statistics'
    /// histogram). On PostgreSQL, a key of one column of an analyzed table is split at its
    /// histogram's quantiles, each found on the index: an offset would read the index up to
    /// it. Otherwise the rows come from the table's statistics, or are counted once when there
    /// are none yet (a table never analyzed), and each boundary is the key at its offset.
    async fn sampled_boundaries(
        &self,
        connection: &mut Connection,
        statements: &Statements,
        n: u32,
    ) -> Result<(Vec<Key>, bool), BackfillError> {
        let failed = |e: sqlx::Error| self.target_error(self.sql_error(&e));
        let (sql, binds) = rows_query(connection.dialect(), &self.config.table);
        let estimate = connection
            .fetch_row(&sql, &binds, &[Kind::Int])
            .await
            .map_err(failed)?
            .and_then(|r| r[0].int())
            .unwrap_or(0);
        let rows = if estimate > 0 {
            estimate
        } else {
            let sql = format!("SELECT count(*) FROM {}", self.config.table);
            connection
                .fetch_row(&sql, &[], &[Kind::Int])
                .await
                .map_err(failed)?
                .and_then(|r| r[0].int())
                .unwrap_or(0)
        };
        let rows = rows.max(0) as u64;
        if let Some(boundaries) = self.histogram_boundaries(connection, statements, n).await? {
            return Ok((boundaries, true));
        }
        let mut boundaries: Vec<Key> = Vec::new();
        for i in 1..u64::from(n) {
            let offset = (rows * i / u64::from(n)).saturating_sub(1);
            let binds = statements.binds(&statements.nth, None, None, offset);
            let key = fetch_key(connection, statements, &statements.nth, &binds)
                .await
                .map_err(|e| self.target_error(self.sql_error(&e)))?;
            match key {
                Some(key) if boundaries.last() != Some(&key) => boundaries.push(key),
                _ => {}
            }
        }
        Ok((boundaries, false))
    }

    /// Works the shards until the backfill is complete or the deadline: every shard that is
    /// not complete and whose lock is free, one after another from shard `first` (so runners
    /// started together spread out); once every shard is complete, the whole-table
    /// verification. All of it in one of the `max_concurrency` slots, if the backfill has a
    /// cap; nothing when every slot is taken. A backfill of one shard is simply run.
    pub async fn run_shards(
        &self,
        first: u32,
        deadline: Instant,
        observe: &mut dyn FnMut(&Event),
    ) -> Result<RunSummary, BackfillError> {
        if self.config.tuning.shards <= 1 {
            return self.run(deadline, observe).await;
        }
        let started = Instant::now();
        let work = self.work_shards(first, deadline, observe);
        Ok(self.in_slot(first, work).await?.unwrap_or(RunSummary {
            outcome: Outcome::Full {
                max_concurrency: self.config.tuning.concurrency(),
            },
            checkpoint: None,
            report: BatchReport::default(),
            elapsed: started.elapsed(),
        }))
    }

    async fn work_shards(
        &self,
        first: u32,
        deadline: Instant,
        observe: &mut dyn FnMut(&Event),
    ) -> Result<RunSummary, BackfillError> {
        let started = Instant::now();
        let summary = |outcome, report| RunSummary {
            outcome,
            checkpoint: None,
            report,
            elapsed: started.elapsed(),
        };
        let configs = self.shard_configs();
        let ranges = match self.plan(&configs, deadline, observe).await? {
            Ok(ranges) => ranges,
            Err(outcome) => return Ok(summary(outcome, BatchReport::default())),
        };
        let n = configs.len();
        let mut totals = BatchReport::default();
        // Two rounds of work at most, as a single runner makes one pass and then the next run
        // verifies: the second verifies what the first swept. While old writers insert, every
        // shard always has more to do; each run's work stays bounded all the same. A round in
        // which every shard left was another runner's waits for them (until the deadline), so
        // that someone verifies the whole table when the last shard is done. A shard already
        // complete is not verified again: the whole-table verification reads its range too.
        let mut rounds = 0;
        let started_ms = now_ms();
        while rounds < 2 {
            // Here too: a round of complete shards waiting on another's verification runs no
            // shard, whose own check would stop it.
            if Instant::now() + DEADLINE_SLACK * 2 > deadline {
                return Ok(summary(Outcome::Deadline, totals));
            }
            let (mut complete, mut worked) = (0, false);
            // One session for the round's reads of the shards' checkpoints, each read just
            // before its shard: another runner may have verified it a moment ago.
            let mut reads = self.connect().await?;
            for i in (0..n).map(|i| (i + first as usize) % n) {
                let shard = self.shard_runner(&configs[i], ranges[i].clone());
                let stored = shard.load_checkpoint(&mut reads).await?;
                if stored.is_some_and(|c| c.status == Status::Complete) {
                    complete += 1;
                    continue;
                }
                if Instant::now() + DEADLINE_SLACK * 2 > deadline {
                    return Ok(summary(Outcome::Deadline, totals));
                }
                let run = shard.run(deadline, observe).await?;
                add(&mut totals, &run.report);
                match run.outcome {
                    Outcome::Complete => complete += 1,
                    Outcome::Busy { .. } | Outcome::Full { .. } => {}
                    Outcome::Swept => worked = true,
                    Outcome::Deadline => return Ok(summary(Outcome::Deadline, totals)),
                    outcome @ (Outcome::Stayed(_) | Outcome::Interrupted) => {
                        return Ok(summary(outcome, totals));
                    }
                }
            }
            reads.close().await;
            if complete == n {
                let mut connection = self.connect().await?;
                let ready = self.verify_next(&mut connection).await;
                let own = match ready {
                    Ok(()) => self.load_checkpoint(&mut connection).await,
                    Err(error) => Err(error),
                };
                connection.close().await;
                let own = match own? {
                    // Another runner verified the whole table since this run began: this one
                    // need not read it again.
                    Some(own) if own.status == Status::Complete && own.updated_at >= started_ms => {
                        RunSummary {
                            outcome: Outcome::Complete,
                            checkpoint: Some(own),
                            report: BatchReport::default(),
                            elapsed: Duration::ZERO,
                        }
                    }
                    _ => self.run(deadline, observe).await?,
                };
                add(&mut totals, &own.report);
                if let Outcome::Busy { .. } = own.outcome {
                    // Another runner verifies right now: look again when it is done.
                    tokio::time::sleep(PLAN_POLL).await;
                    continue;
                }
                // The backfill's checkpoint as one: its rows and batches with the shards'.
                let mut checkpoint = own.checkpoint;
                if let Some(checkpoint) = checkpoint.as_mut() {
                    let mut connection = self.connect().await?;
                    let shards = self.stored_shards(&mut connection, &configs).await;
                    connection.close().await;
                    for shard in shards?.iter().flatten() {
                        checkpoint.rows_updated += shard.rows_updated;
                        checkpoint.batches += shard.batches;
                    }
                }
                return Ok(RunSummary {
                    checkpoint,
                    ..summary(own.outcome, totals)
                });
            }
            if worked {
                rounds += 1;
            } else {
                tokio::time::sleep(PLAN_POLL).await;
            }
        }
        Ok(summary(Outcome::Swept, totals))
    }

    /// The shards planned so far, each with its range (none when the backfill has one shard).
    /// A shard stored without a range (by an earlier version) is listed all the same, over the
    /// whole key space, so that no operator's command passes it by.
    pub(super) async fn planned_shards(
        &self,
    ) -> Result<Vec<(BackfillConfig, KeyRange)>, BackfillError> {
        if self.config.tuning.shards <= 1 {
            return Ok(Vec::new());
        }
        let configs = self.shard_configs();
        let mut connection = self.connect().await?;
        let stored = self.stored_shards(&mut connection, &configs).await?;
        connection.close().await;
        Ok(configs
            .into_iter()
            .zip(stored)
            .filter_map(|(config, c)| Some((config, c?.range.unwrap_or_default())))
            .collect())
    }

    /// Works the shards with `tasks` runners at once on this task (at most one per shard, and
    /// `max_concurrency`), each
    /// starting at another shard and holding its shards under an owner of its own (a lease one
    /// holds is not another's); their runs add up to one.
    pub async fn run_parallel(
        &self,
        tasks: u32,
        first: u32,
        deadline: Instant,
        observe: &mut dyn FnMut(&Event),
    ) -> Result<RunSummary, BackfillError> {
        let tasks = tasks.clamp(1, self.config.tuning.concurrency());
        let shared = std::cell::RefCell::new(observe);
        let runners: Vec<Runner> = (0..tasks)
            .map(|task| Runner {
                owner: match tasks {
                    1 => self.owner.clone(),
                    _ => format!("{}/{task}", self.owner),
                },
                ..self.shard_runner(self.config, self.range.clone())
            })
            .collect();
        let runs = runners.iter().zip(0u32..).map(|(runner, task)| {
            let shared = &shared;
            async move {
                let mut observe = |event: &Event| (shared.borrow_mut())(event);
                runner
                    .run_shards(first.wrapping_add(task), deadline, &mut observe)
                    .await
            }
        });
        join_all(runs.collect())
            .await
            .into_iter()
            .reduce(|a, b| Ok(combined(a?, b?)))
            .unwrap_or_else(|| unreachable!("at least one task"))
    }

    /// Every planned shard's own status.
    pub(super) async fn shard_status(&self) -> Result<Vec<super::StatusReport>, BackfillError> {
        let mut reports = Vec::new();
        for (config, range) in self.planned_shards().await? {
            reports.push(self.shard_runner(&config, range).own_status().await?);
        }
        Ok(reports)
    }

    /// An operator's command on every planned shard where it applies (pausing a complete
    /// shard does not); how many shards it changed. A shard whose checkpoint cannot be written
    /// is an error naming it (the shards before it are changed: say so, never exit 0).
    pub(super) async fn command_shards(&self, command: Command) -> Result<usize, BackfillError> {
        let mut changed = 0;
        for (config, range) in self.planned_shards().await? {
            match self.shard_runner(&config, range).own_command(command).await {
                Ok(Ok(_)) => changed += 1,
                Ok(Err(_does_not_apply)) => {}
                Err(BackfillError::Target { name, problem }) if changed > 0 => {
                    return Err(BackfillError::Target {
                        name,
                        problem: format!(
                            "{problem} ({changed} shard(s) before it were changed: run the command again)"
                        ),
                    });
                }
                Err(error) => return Err(error),
            }
        }
        Ok(changed)
    }
}

/// Polls every future on this task until all are done (the `--parallel` tasks share one thread,
/// as the runtime does: they wait on the database, not on the processor).
async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// Two tasks' runs as one: complete if either completed the backfill, else the first's end;
/// the rows of both.
fn combined(a: RunSummary, b: RunSummary) -> RunSummary {
    let (mut first, second) = if b.outcome == Outcome::Complete {
        (b, a)
    } else {
        (a, b)
    };
    add(&mut first.report, &second.report);
    first.elapsed = first.elapsed.max(second.elapsed);
    if first.checkpoint.is_none() {
        first.checkpoint = second.checkpoint;
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backfill::fixtures::config;

    fn run(outcome: Outcome, rows: u64) -> RunSummary {
        RunSummary {
            outcome,
            checkpoint: None,
            report: BatchReport {
                rows_updated: rows,
                rows_scanned: rows,
                ..BatchReport::default()
            },
            elapsed: std::time::Duration::from_secs(rows),
        }
    }

    #[test]
    fn a_histograms_quantiles_are_its_bounds_at_even_places() {
        // 101 bounds: 100 buckets of as many rows each.
        let bounds: Vec<u32> = (0..=100).collect();
        assert_eq!(quantiles(&bounds, 4), [25, 50, 75]);
        assert_eq!(quantiles(&bounds, 3), [33, 66]);
        assert!(quantiles(&[7], 4).is_empty());
        assert!(quantiles::<u32>(&[], 4).is_empty());
    }

    #[test]
    fn parallel_runs_add_up_and_a_completion_wins() {
        let one = combined(
            run(Outcome::Busy { holder: None }, 3),
            run(Outcome::Complete, 5),
        );
        assert_eq!(one.outcome, Outcome::Complete);
        assert_eq!((one.report.rows_updated, one.report.rows_scanned), (8, 8));
        assert_eq!(one.elapsed, std::time::Duration::from_secs(5));
        let other = combined(run(Outcome::Swept, 1), run(Outcome::Deadline, 1));
        assert_eq!(other.outcome, Outcome::Swept);
    }

    #[test]
    fn a_shard_is_the_backfill_under_its_own_name_with_a_share_of_the_rate() {
        let mut config = config();
        config.tuning.shards = 4;
        config.tuning.max_rows_per_second = Some(10_000);
        let shard = shard_config(&config, 3);
        assert_eq!(shard.name, "users_display_name.shard3");
        assert_eq!(shard.tuning.max_rows_per_second, Some(2_500));
        assert_eq!((shard.tuning.shards, shard.table.as_str()), (1, "users"));
        config.tuning.max_rows_per_second = Some(2);
        assert_eq!(shard_config(&config, 1).tuning.max_rows_per_second, Some(1));
        // Two at once at most: each shard may use half the rate.
        config.tuning.max_rows_per_second = Some(10_000);
        config.tuning.max_concurrency = Some(2);
        let shard = shard_config(&config, 3);
        assert_eq!(shard.tuning.max_rows_per_second, Some(5_000));
        assert_eq!(shard.tuning.max_concurrency, None);
    }
}
