//! The fence: with an external checkpoint store (DynamoDB), a runner whose lease expired while
//! it was stalled (a long GC pause, a frozen Lambda, a clock ahead) cannot commit a batch next
//! to the runner that took the lease over. Each lease taken has an epoch (the checkpoint's
//! version when it was taken); the backfilled database keeps, per backfill, the newest epoch
//! and the progress of the last batch committed under it, in `shiftguard_fence`. Every batch's
//! transaction ends by writing its progress there *on the condition that its epoch is still
//! the newest*; a stale runner's write matches no row and its batch is rolled back. A runner
//! that takes the lease raises the epoch first (waiting for a batch in flight to commit or roll
//! back) and then resumes from whichever is further, the external checkpoint or the fence: a
//! batch committed whose external write was lost is not done twice. So progress is exactly
//! once with either store, whatever the `pending` guard. (The SQL store needs no fence: its
//! checkpoint is written inside the batch's transaction, on the condition of its version.)

use shiftguard_core::backfill::{Checkpoint, Key};

use super::{BackfillError, Runner};
use crate::connection::{Bind, Connection, Kind};
use crate::error::{ErrorClass, classify};
use crate::url::Dialect;

/// The fence table, in the backfilled database.
pub const FENCE_TABLE: &str = "shiftguard_fence";

const CREATE: &str = "CREATE TABLE IF NOT EXISTS shiftguard_fence (\
     name VARCHAR(200) NOT NULL PRIMARY KEY, \
     epoch BIGINT NOT NULL, \
     version BIGINT NOT NULL DEFAULT 0, \
     cursor_key TEXT NULL, \
     batches BIGINT NOT NULL DEFAULT 0, \
     rows_updated BIGINT NOT NULL DEFAULT 0)";

/// Raises the stored epoch to `epoch` (never lowers it).
fn claim_sql(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Postgres => {
            "INSERT INTO shiftguard_fence (name, epoch) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET epoch = GREATEST(shiftguard_fence.epoch, EXCLUDED.epoch)"
        }
        Dialect::MySql => {
            "INSERT INTO shiftguard_fence (name, epoch) VALUES (?, ?) ON DUPLICATE KEY UPDATE epoch = GREATEST(epoch, VALUES(epoch))"
        }
        Dialect::Sqlite => {
            "INSERT INTO shiftguard_fence (name, epoch) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET epoch = max(epoch, excluded.epoch)"
        }
    }
}

/// A batch's progress, written only under the newest epoch. `version` changes with every batch,
/// so a match always changes the row (MySQL counts changed rows, not matched ones).
fn advance_sql(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Postgres => {
            "UPDATE shiftguard_fence SET version = $1, cursor_key = $2, batches = $3, rows_updated = $4 WHERE name = $5 AND epoch = $6"
        }
        _ => {
            "UPDATE shiftguard_fence SET version = ?, cursor_key = ?, batches = ?, rows_updated = ? WHERE name = ? AND epoch = ?"
        }
    }
}

fn select_sql(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Postgres => {
            "SELECT epoch, cursor_key, batches, rows_updated FROM shiftguard_fence WHERE name = $1"
        }
        _ => "SELECT epoch, cursor_key, batches, rows_updated FROM shiftguard_fence WHERE name = ?",
    }
}

/// What the fence holds for a backfill.
#[derive(Debug, PartialEq)]
struct Fenced {
    epoch: i64,
    cursor: Option<Key>,
    batches: i64,
    rows_updated: i64,
}

/// `checkpoint` moved on to the fence's progress when the fence is further: a batch committed
/// whose external write was lost.
fn caught_up(checkpoint: &mut Checkpoint, fenced: &Fenced) {
    if fenced.batches > checkpoint.batches as i64 {
        checkpoint.cursor = fenced.cursor.clone();
        checkpoint.batches = fenced.batches.max(0) as u64;
        checkpoint.rows_updated = fenced.rows_updated.max(0) as u64;
    }
}

impl Runner<'_> {
    /// Raises the fence to `epoch` and catches `checkpoint` up with it; `false` when a newer
    /// epoch is there already (another runner took the lease since).
    pub(super) async fn claim_fence(
        &self,
        connection: &mut Connection,
        epoch: i64,
        checkpoint: &mut Checkpoint,
    ) -> Result<bool, BackfillError> {
        let failed =
            |e: sqlx::Error| self.store_error(format!("{FENCE_TABLE}: {}", self.sql_error(&e)));
        let name = Bind::Text(Some(self.config.name.clone()));
        connection.raw(CREATE).await.map_err(failed)?;
        let claimed = connection
            .execute(
                claim_sql(connection.dialect()),
                &[name.clone(), Bind::Int(Some(epoch))],
            )
            .await;
        match claimed {
            Ok(_) => {}
            // The row is locked by a stale runner's batch in flight: not this runner's turn.
            Err(e) if classify(&e) != ErrorClass::Permanent => return Ok(false),
            Err(e) => return Err(failed(e)),
        }
        let row = connection
            .fetch_row(
                select_sql(connection.dialect()),
                &[name],
                &[Kind::Int, Kind::Text, Kind::Int, Kind::Int],
            )
            .await
            .map_err(failed)?
            .ok_or_else(|| self.store_error(format!("{FENCE_TABLE}: the row vanished")))?;
        let cursor = match row[1].text() {
            Some(text) => Some(Key::parse(text).map_err(|e| {
                self.store_error(format!(
                    "{FENCE_TABLE}: the cursor {text} is not a key: {e}"
                ))
            })?),
            None => None,
        };
        let fenced = Fenced {
            epoch: row[0].int().unwrap_or(i64::MAX),
            cursor,
            batches: row[2].int().unwrap_or(0),
            rows_updated: row[3].int().unwrap_or(0),
        };
        if fenced.epoch != epoch {
            return Ok(false);
        }
        caught_up(checkpoint, &fenced);
        Ok(true)
    }

    /// Inside a batch's transaction: its progress, if `epoch` is still the newest.
    pub(super) async fn advance_fence(
        &self,
        connection: &mut Connection,
        epoch: i64,
        next: &Checkpoint,
    ) -> Result<bool, sqlx::Error> {
        let binds = [
            Bind::Int(Some(next.version as i64)),
            Bind::Text(next.cursor.as_ref().map(|c| c.to_json().to_string())),
            Bind::Int(Some(next.batches as i64)),
            Bind::Int(Some(next.rows_updated as i64)),
            Bind::Text(Some(self.config.name.clone())),
            Bind::Int(Some(epoch)),
        ];
        let changed = connection
            .execute(advance_sql(connection.dialect()), &binds)
            .await?;
        Ok(changed == 1)
    }

    /// Forgets the backfill's fence (a reset starts over); a missing table is nothing to forget.
    pub(super) async fn forget_fence(&self, connection: &mut Connection) {
        let sql = match connection.dialect() {
            Dialect::Postgres => "DELETE FROM shiftguard_fence WHERE name = $1",
            _ => "DELETE FROM shiftguard_fence WHERE name = ?",
        };
        let _ = connection
            .execute(sql, &[Bind::Text(Some(self.config.name.clone()))])
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fence_further_than_the_checkpoint_is_caught_up_with() {
        let mut checkpoint = Checkpoint::new("b", 0);
        checkpoint.cursor = Some(Key::int(10));
        checkpoint.batches = 3;
        checkpoint.rows_updated = 30;
        let behind = Fenced {
            epoch: 7,
            cursor: Some(Key::int(5)),
            batches: 2,
            rows_updated: 20,
        };
        caught_up(&mut checkpoint, &behind);
        assert_eq!(checkpoint.cursor, Some(Key::int(10)));
        let ahead = Fenced {
            epoch: 7,
            cursor: Some(Key::int(20)),
            batches: 4,
            rows_updated: 40,
        };
        caught_up(&mut checkpoint, &ahead);
        assert_eq!(
            (
                checkpoint.cursor,
                checkpoint.batches,
                checkpoint.rows_updated
            ),
            (Some(Key::int(20)), 4, 40)
        );
    }
}
