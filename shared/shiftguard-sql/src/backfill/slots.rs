//! `max_concurrency`: the most runners that work one backfill's shards at once, wherever they
//! run (processes, `--parallel` tasks, Lambda invocations). A run of the shards first takes one
//! of that many slots, `NAME.slot1` … `NAME.slotC`, with the backfill's own kind of exclusion —
//! a session lock or a lock file that dies with its holder, or a lease in an external store,
//! renewed while the run goes — and holds it for the whole run. A run that finds every slot
//! taken does nothing and says so.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use shiftguard_core::backfill::{BackfillConfig, CheckpointStore, KeyRange};

use super::lock::renewed;
use super::{BackfillError, Checkpoints, Runner, now_ms};

/// Slot `j`'s definition: the backfill's, under the slot's name.
fn slot_config(config: &BackfillConfig, j: u32) -> BackfillConfig {
    let mut slot = config.clone();
    slot.name = format!("{}.slot{j}", config.name);
    slot
}

impl Runner<'_> {
    /// Runs `work` holding a free slot (looked for from slot `first` on); `None`, and `work`
    /// never started, when every slot is taken. Without a cap below the shards, simply runs it.
    pub(super) async fn in_slot<T>(
        &self,
        first: u32,
        work: impl Future<Output = Result<T, BackfillError>>,
    ) -> Result<Option<T>, BackfillError> {
        let cap = self.config.tuning.concurrency();
        if cap >= self.config.tuning.shards {
            return work.await.map(Some);
        }
        let configs: Vec<BackfillConfig> = (1..=cap).map(|j| slot_config(self.config, j)).collect();
        for j in (0..cap).map(|j| (first % cap + j) % cap) {
            let slot = self.shard_runner(&configs[j as usize], KeyRange::default());
            // A lease needs no database session; a lock is one.
            if let Checkpoints::External(store) = &slot.checkpoints {
                if slot.take_lease(*store).await?.is_none() {
                    continue;
                }
                let result = tokio::select! {
                    result = work => result,
                    never = slot.keep_lease(*store) => match never {},
                };
                slot.give_up_lease(*store).await;
                return result.map(Some);
            }
            let mut connection = slot.connect().await?;
            let Some(held) = slot.try_lock(&mut connection).await? else {
                connection.close().await;
                continue;
            };
            let result = work.await;
            slot.unlock(&mut connection, held).await;
            connection.close().await;
            return result.map(Some);
        }
        Ok(None)
    }

    /// Renews this runner's lease a third of its TTL at a time, for as long as it is polled (a
    /// lease lost meanwhile is not taken back: the cap is a limit on load, not on correctness).
    async fn keep_lease(&self, store: &dyn CheckpointStore) -> Infallible {
        let ttl = self.lease_ttl();
        loop {
            tokio::time::sleep(Duration::from_millis((ttl / 3) as u64)).await;
            if let Ok(Some(checkpoint)) = store.load(&self.config.name).await
                && checkpoint.lease_owner.as_deref() == Some(self.owner.as_str())
            {
                let _ = store.write(&renewed(&checkpoint, now_ms(), ttl)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backfill::fixtures::config;

    #[test]
    fn a_slot_is_named_after_the_backfill() {
        assert_eq!(slot_config(&config(), 2).name, "users_display_name.slot2");
    }
}
